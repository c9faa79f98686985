"""Test configuration. Under CI, hypothesis draws the same examples every run (derandomize),
so a submission's result does not depend on luck; locally it explores new examples each
run, which is how it finds bugs."""
import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

# Compiled kernels go to a private store per test process, never into ~/.cache.
import atexit  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

_STORE = tempfile.mkdtemp(prefix="exprforge-test-store-")
os.environ["EXPRFORGE_CACHE_DIR"] = _STORE
atexit.register(shutil.rmtree, _STORE, ignore_errors=True)
