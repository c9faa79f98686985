"""The kernel store: compiled artifacts keyed by content hash, and user-given names.

Layout under the cache directory (EXPRFORGE_CACHE_DIR, else $XDG_CACHE_HOME/exprforge,
else ~/.cache/exprforge):
  artifacts/KEY/        one compiled kernel: its source, object code, metadata
  names/NAME.json       a saved kernel: the expression and how to compile it, and KEY
  log.jsonl             one line per artifact lookup: hit, miss, rebuilt (the hit record)

KEY is a sha256 over the expression, target, dtype, options and exprforge version.
Files are written to a temporary name in the same folder and renamed into place, so a
reader never sees half a file and concurrent writers of the same entry are harmless.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

STATS = Counter()   # this process's lookups: hit, miss, rebuilt
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class CorruptEntry(Exception):
    """An artifact that cannot be loaded; the store rebuilds it."""


def cache_dir() -> Path:
    root = os.environ.get("EXPRFORGE_CACHE_DIR")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(xdg, "exprforge")
    return Path(root)


def content_key(spec: dict) -> str:
    from exprforge import __version__
    text = json.dumps({"exprforge": __version__, **spec}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def artifact_dir(key: str) -> Path:
    return cache_dir() / "artifacts" / key


def _temp_copy(path: Path, data: bytes | str) -> str:
    """A temporary file holding `data` in path's folder (renamed or linked into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
    except BaseException:
        _unlink(tmp)
        raise
    return tmp


def write_atomic(path: Path, data: bytes | str) -> None:
    """Replace `path` with `data` in one rename."""
    tmp = _temp_copy(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise


def write_once(path: Path, data: bytes | str) -> bool:
    """Create `path` with `data` unless it exists (the first writer wins, atomically).
    Returns True when this call created it."""
    if path.exists():  # (a read-only store still loads)
        return False
    tmp = _temp_copy(path, data)
    try:
        os.link(tmp, path)   # fails if path exists: never replaces a file a reader may hold
        return True
    except FileExistsError:
        return False
    finally:
        _unlink(tmp)


_IMPORTING = threading.Lock()   # one import of a kernel module at a time: a module is in
                                # sys.modules before its code has run


def import_source(directory: Path, source: str, module_name: str,
                  filename: str = "kernel.py"):
    """The module `source`, written once as directory/filename and imported from there
    (kernel compilers cache their work next to the file). Raises CorruptEntry when the
    stored file is not `source` or an existing entry fails to import."""
    path = directory / filename
    fresh = write_once(path, source)
    if path.read_text() != source:
        raise CorruptEntry(f"{path} does not hold the kernel's source")
    with _IMPORTING:
        return _import_file(path, module_name, fresh)


def _import_file(path: Path, module_name: str, fresh: bool):
    module = sys.modules.get(module_name)
    if module is not None and getattr(module, "__file__", None) == str(path):
        return module
    try:
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # caches (Numba's) refer to the module by name
        spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(module_name, None)
        if fresh:  # our own new source failed: a bug to report, not a damaged entry
            raise
        raise CorruptEntry(f"{path}: {type(e).__name__}: {e}") from e
    return module


def write_checked(directory: Path, meta_name: str, files: dict, **meta) -> None:
    """Write `files` (name -> bytes) into directory, then meta_name: their checksums and
    `meta`. The metadata comes last, so an entry that has it is complete."""
    for name, data in files.items():
        write_once(directory / name, data)
    sums = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    write_once(directory / meta_name, json.dumps({"files": sums, **meta}))


def read_checked(directory: Path, meta_name: str) -> tuple[dict, dict]:
    """(meta, name -> bytes) of an entry written by write_checked; CorruptEntry when
    anything is missing or does not match its checksum (damaged code is never linked)."""
    try:
        meta = json.loads((directory / meta_name).read_text())
        if "files" not in meta:   # entries of LLVM kernels from before write_checked
            meta = {**meta, "files": {"kernel.o": meta["sha256"]}}
        if not isinstance(meta["files"], dict):
            raise TypeError("'files' is not a mapping")
        files = {name: (directory / name).read_bytes() for name in meta["files"]}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CorruptEntry(f"{directory}: {type(e).__name__}: {e}") from e
    for name, data in files.items():
        if hashlib.sha256(data).hexdigest() != meta["files"][name]:
            raise CorruptEntry(f"{directory / name} does not match its checksum")
    return meta, files


def discard(directory: Path) -> None:
    """Move a corrupt artifact folder aside and delete it (readers keep their open files)."""
    if not directory.exists():
        return
    trash = directory.with_name(f".{directory.name}.{os.getpid()}.{time.monotonic_ns()}.trash")
    try:
        os.rename(directory, trash)
    except OSError:
        return  # another process moved it first
    shutil.rmtree(trash, ignore_errors=True)


def _unlink(path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def record(event: str, key: str, **fields) -> None:
    """Count a lookup and append it to the hit record (log.jsonl)."""
    STATS[event] += 1
    line = json.dumps({"event": event, "key": key, "pid": os.getpid(), "time": time.time(),
                       **fields}) + "\n"
    path = cache_dir() / "log.jsonl"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:  # one short append per line: atomic on POSIX
            f.write(line)
    except OSError:  # a read-only store: the in-process STATS still count
        pass


# --- names -------------------------------------------------------------------------------

def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or name.startswith("__"):
        raise ValueError(f"invalid kernel name {name!r}: use a Python identifier")
    return name


def name_path(name: str) -> Path:
    return cache_dir() / "names" / f"{check_name(name)}.json"


def save_entry(name: str, entry: dict) -> Path:
    path = name_path(name)
    write_atomic(path, json.dumps(entry, indent=1, sort_keys=True))
    return path


def read_entry(name: str) -> dict:
    path = name_path(name)
    try:
        entry = json.loads(path.read_text())
    except FileNotFoundError:
        known = ", ".join(list_names()) or "none"
        raise LookupError(f"no stored kernel named {name!r} in {cache_dir()} "
                          f"(stored: {known})") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise CorruptEntry(f"stored kernel {name!r} ({path}) is corrupt: {e}; "
                           f"remove it and save it again") from None
    if not isinstance(entry, dict) or not {"text", "vars", "target"} <= entry.keys():
        raise CorruptEntry(f"stored kernel {name!r} ({path}) is incomplete; "
                           "remove it and save it again")
    return entry


def list_names() -> list[str]:
    folder = cache_dir() / "names"
    return sorted(p.stem for p in folder.glob("*.json")) if folder.exists() else []


def remove_entry(name: str) -> None:
    path = name_path(name)
    if not path.exists():
        raise LookupError(f"no stored kernel named {name!r}")
    path.unlink()
