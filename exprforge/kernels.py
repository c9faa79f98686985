"""Stored kernels as attributes: `from exprforge.kernels import NAME` loads the kernel
saved with exprforge.save(kernel, NAME) from its compiled artifact (nothing compiles
when the artifact is in the store; if it is missing or damaged it is rebuilt).

Names the store does not have are looked up in the library of verified approximations
shipped with the package (evolve/library.json: exp_f32, log_f32, ...): the program's
IR text is compiled for LLVM once and saved in the store under its name.
"""
from __future__ import annotations

from exprforge.evolve.library import library, program

_LOADED: dict = {}


def _from_library(name: str):
    import exprforge as xf
    kernel = xf.compile(program(name), target="llvm")
    xf.save(kernel, name)
    return kernel


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    from exprforge.targets import store
    from exprforge.targets.build import load
    try:
        try:
            key = store.read_entry(name).get("key")
        except LookupError:
            if name not in library():
                raise
            _LOADED[name] = _from_library(name)
            return _LOADED[name]
        cached = _LOADED.get(name)
        if cached is None or cached.key != key:  # first use, or saved again since
            _LOADED[name] = load(name)
    except (LookupError, ValueError, store.CorruptEntry) as e:
        raise ImportError(str(e), name=__name__) from None
    return _LOADED[name]


def __dir__():
    from exprforge.targets.store import list_names
    return sorted(set(list_names()) | set(library()) | set(globals()))
