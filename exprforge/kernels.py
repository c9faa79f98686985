"""Stored kernels as attributes: `from exprforge.kernels import NAME` loads the kernel
saved with exprforge.save(kernel, NAME) from its compiled artifact (nothing compiles
when the artifact is in the store; if it is missing or damaged it is rebuilt)."""
from __future__ import annotations

_LOADED: dict = {}


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    from exprforge.targets import store
    from exprforge.targets.build import load
    try:
        key = store.read_entry(name).get("key")
        cached = _LOADED.get(name)
        if cached is None or cached.key != key:  # first use, or saved again since
            _LOADED[name] = load(name)
    except (LookupError, ValueError, store.CorruptEntry) as e:
        raise ImportError(str(e), name=__name__) from None
    return _LOADED[name]


def __dir__():
    from exprforge.targets.store import list_names
    return sorted(set(list_names()) | set(globals()))
