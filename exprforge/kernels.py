"""Stored kernels as attributes: `from exprforge.kernels import NAME` loads the kernel
saved with exprforge.save(kernel, NAME) from its compiled artifact (nothing compiles
when the artifact is in the store; if it is missing or damaged it is rebuilt).

Names the store does not have are looked up in the library of verified approximations
shipped with the package (evolve/library.json: exp_f32, log_f32, ...): the program's
IR text is compiled for LLVM once and saved in the store under its name.
"""
from __future__ import annotations

from exprforge.evolve.library import library, program

_LOADED: dict = {}   # name -> (the stored entry's key when loaded, the kernel)


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
            kernel = _from_library(name)
            _LOADED[name] = (kernel.key, kernel)
            return kernel
        # reload on first use, or when saved again since; compared with the entry's key,
        # not the kernel's: a kernel rebuilt under a new key (a changed renderer or
        # library program) is loaded once, not on every access
        if _LOADED.get(name, (None,))[0] != key:
            _LOADED[name] = (key, load(name))
    except (LookupError, ValueError, store.CorruptEntry) as e:
        raise ImportError(str(e), name=__name__) from None
    return _LOADED[name][1]


def __dir__():
    from exprforge.targets.store import list_names
    return sorted(set(list_names()) | set(library()) | set(globals()))
