"""Numba target: Numba compiles the rendered module (written into the store as
kernel.py), and the machine code of its loops, C functions, is stored next to it.
Loading a kernel links that code as the LLVM target does, without importing Numba
(which takes a quarter of a second); only a kernel with a matmul imports it, for the
matmul's own compiled code (Numba's cache, in the folder's __pycache__). Whether
anything compiled is read from Numba's event stream ("numba:compile"), not guessed
from timings."""
from __future__ import annotations

from functools import cache

import numpy as np

from exprforge.codegen import numba as renderer
from exprforge.codegen.lower import Plan

from . import llvm
from .llvm import LLVMKernel
from .store import CorruptEntry, import_source, read_checked, write_checked

NAME = "numba"
has = renderer.has
ROW_REDUCTIONS = True   # the renderer spells RowReduce loops
OPTIONS = {"parallel": False, "fastmath": False, "contract": False, "matmul": False}
META = "numba.json"     # the loops' object files, their checksums and symbols

# Numba's C functions take the GIL through these to report an error; the loops raise
# none (error_model="numpy", no allocation), but their object code names them
_GIL_IR = """
declare i32 @PyGILState_Ensure()
declare void @PyGILState_Release(i32)
define void @numba_gil_ensure(i32* %state) {
  %s = call i32 @PyGILState_Ensure()
  store i32 %s, i32* %state
  ret void
}
define void @numba_gil_release(i32* %state) {
  %s = load i32, i32* %state
  call void @PyGILState_Release(i32 %s)
  ret void
}
"""


def source_of(plan: Plan, options: dict) -> str:
    fastmath = True if options["fastmath"] else ({"contract"} if options["contract"] else False)
    return renderer.render(plan, parallel=options["parallel"], fastmath=fastmath, cache=True,
                           title=str(plan.expr), matmul=options["matmul"])


def _import(directory, source: str, key: str):
    """(module, compiled?): the rendered module, compiled by Numba or from its cache."""
    from numba.core import event

    with event.install_recorder("numba:compile") as compiles:
        module = import_source(directory, source, f"exprforge_kernel_{key[:24]}")
    return module, bool(compiles.buffer)


@cache
def _gil_object() -> bytes:
    return llvm.compile_object(_GIL_IR)


def materialize(plan: Plan, directory, options: dict, key: str, source: str):
    """(runners, compiled?): the loops' object code linked from `directory`, or compiled
    by Numba into it."""
    programs = [p for p in plan.programs if not p.constant]
    compiled = False
    if (directory / META).exists():
        meta, files = read_checked(directory, META)
    else:
        module, compiled = _import(directory, source, key)
        files, symbols = {"gil.o": _gil_object()}, {}
        for p in programs:
            loop = getattr(module, f"kernel_{p.name}")
            # the object code Numba's own cache would hold
            obj = loop._library.serialize_using_object_code()[2][0]
            files[f"kernel_{p.name}.o"], symbols[p.name] = obj, loop.native_name
        write_checked(directory, META, files, symbols=symbols)
        meta = {"symbols": symbols}
    symbols = meta.get("symbols", {})
    if set(symbols) != {p.name for p in programs}:
        raise CorruptEntry(f"{directory / META} does not name the kernel's loops")
    runners = llvm.link(list(files.values()), {
        p.name: (symbols[p.name], llvm.prototype(p)) for p in programs})
    if options["matmul"]:
        module, again = _import(directory, source, key)
        runners["matmul"], compiled = module.matmul, compiled or again
    return runners, compiled


class NumbaKernel(LLVMKernel):
    """The loops are C functions taking pointers, called as the LLVM target's are."""

    def matmul(self, a, b):
        """sum over k of f(a[..., i, k], b[..., k, j]) for the kernel's program f(a, b),
        batched and broadcast like np.matmul (2-D or more), accumulated in the program's
        dtype in the order of k; f = a * b is a matmul. Needs compile(..., matmul=True)."""
        run = self.runners.get("matmul")
        if run is None:
            raise TypeError("this kernel has no matmul: compile it with matmul=True")
        (an, ad), (bn, bd) = self.plan.params
        a, b = self.convert(a, ad, an), self.convert(b, bd, bn)
        if a.ndim < 2 or b.ndim < 2:
            raise ValueError("matmul takes arrays of 2 or more dimensions")
        (m, k), (k2, n) = a.shape[-2:], b.shape[-2:]
        if k != k2:
            raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not match in K")
        batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        count = int(np.prod(batch, dtype=np.int64))

        def flat(x, rows, cols):  # contiguous, writable (the loop is compiled for that)
            if x.shape[:-2] != batch:
                x = np.broadcast_to(x, batch + x.shape[-2:])
            return _writable(x.reshape(count, rows, cols))
        if all(d == 1 for d in b.shape[:-2]):  # one b for all: the batch joins a's rows
            left = flat(a, m, k).reshape(1, count * m, k)
            right = _writable(b.reshape(1, k, n))
        else:
            left, right = flat(a, m, k), flat(b, k, n)
        out = np.zeros((left.shape[0], left.shape[1], n), self.dtype)
        if out.size and k:
            run(left, right, out)
        return out.reshape(batch + (m, n))


def _writable(x):
    """x itself when C-contiguous and writable (what the loops are compiled for), else a
    copy that is."""
    return x if x.flags.c_contiguous and x.flags.writeable else np.array(x, order="C")


KERNEL = NumbaKernel


def platform_key() -> str:
    # machine code for this CPU, as the LLVM target's, and the Numba that made it
    return f"numba {_numba_version()} {llvm.platform_key()}"


@cache
def _numba_version() -> str:
    """Numba's version without importing Numba (a quarter of a second) or
    importlib.metadata (~15 ms): the name of its installed metadata folder."""
    import importlib.util
    from pathlib import Path
    spec = importlib.util.find_spec("numba")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the numba target needs Numba installed")
    package = Path(list(spec.submodule_search_locations)[0])
    found = sorted(package.parent.glob("numba-*.dist-info"))
    if len(found) == 1:
        return found[0].name.removeprefix("numba-").removesuffix(".dist-info")
    from importlib.metadata import version
    return version("numba")
