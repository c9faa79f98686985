"""Stored kernels as attributes: `from exprforge.kernels import NAME` loads the kernel
saved with exprforge.save(kernel, NAME) from its compiled artifact (nothing compiles
when the artifact is in the store; if it is missing or damaged it is rebuilt)."""
from __future__ import annotations

_LOADED: dict = {}


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    if name not in _LOADED:
        from exprforge.targets import store
        from exprforge.targets.build import load
        try:
            _LOADED[name] = load(name)
        except (LookupError, store.CorruptEntry) as e:
            raise ImportError(str(e), name=__name__) from None
    return _LOADED[name]


def __dir__():
    from exprforge.targets.store import list_names
    return sorted(set(list_names()) | set(globals()))
