"""Numba target: Numba compiles the rendered module (written into the store as
kernel.py), and the machine code of its loops, C functions, is stored next to it with
the symbols it needs. Loading a kernel links that code as the LLVM target does, without
importing Numba (which takes a quarter of a second); only a kernel with a matmul imports
it, for the matmul's own module (matmul.py, from Numba's cache in the folder's
__pycache__). Whether anything compiled is read from Numba's event stream
("numba:compile") and from whether the loops' module had to run, not from timings."""
from __future__ import annotations

import hashlib
import importlib.util
import sys
from functools import cache
from pathlib import Path

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

# What Numba's C functions call beyond the C library and Python: to take the GIL, and on
# the path that reports an error raised in a loop, which no loop takes (error_model=
# "numpy", no allocation, no bounds checks). Numba defines these in its own runtime,
# which a loaded kernel runs without; here the error path reports a SystemError (printed
# as unraisable by the C function, as Numba's own helpers would).
_RUNTIME_IR = r"""
@PyExc_SystemError = external global i8*
@message = private constant [60 x i8] c"exprforge: a Numba loop raised; its results are incomplete\0A\00"
declare i32 @PyGILState_Ensure()
declare void @PyGILState_Release(i32)
declare void @PyErr_SetString(i8*, i8*)
declare void @free(i8*)
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
define i8* @numba_unpickle(i8* %data, i32 %n, i8* %hashed) {
  ret i8* null
}
define i8* @numba_runtime_build_excinfo_struct(i8* %gv, i8* %args) {
  ret i8* null
}
define void @numba_do_raise(i8* %exc) {
  %type = load i8*, i8** @PyExc_SystemError
  %text = getelementptr [60 x i8], [60 x i8]* @message, i64 0, i64 0
  call void @PyErr_SetString(i8* %type, i8* %text)
  ret void
}
define void @NRT_Free(i8* %p) {
  call void @free(i8* %p)
  ret void
}
"""
RUNTIME = ("numba_gil_ensure", "numba_gil_release", "numba_unpickle",
           "numba_runtime_build_excinfo_struct", "numba_do_raise", "NRT_Free")


MATMUL = "\n# --- matmul.py ---\n"   # joins the two modules in the source (and the key)


def source_of(plan: Plan, options: dict) -> str:
    fastmath = True if options["fastmath"] else ({"contract"} if options["contract"] else False)
    source = renderer.render(plan, fastmath=fastmath, title=str(plan.expr))
    if options["matmul"]:
        source += MATMUL + renderer.render_matmul(plan, parallel=options["parallel"],
                                                  fastmath=fastmath, title=str(plan.expr))
    return source


def stored_source(directory, options: dict) -> str | None:
    """The source an artifact was compiled from (None when it is not there)."""
    try:
        source = (directory / "kernel.py").read_text()
        if options["matmul"]:
            source += MATMUL + (directory / "matmul.py").read_text()
    except (OSError, UnicodeDecodeError):
        return None
    return source


@cache
def _compiler_runtime() -> None:
    """Make the compiler runtime's functions (libgcc_s) visible to JIT linking: with
    fastmath, LLVM turns pow(x, float(n)) into llvm.powi, whose code calls __powidf2,
    which no LLVM IR of Numba's names (so _resolve cannot see it) and which Numba's own
    link then aborts the process on (Numba issue #9554) when the library was loaded
    privately or not at all."""
    import ctypes
    try:   # by its soname: ctypes.util.find_library runs ldconfig (~2+ ms a load)
        ctypes.CDLL("libgcc_s.so.1", mode=ctypes.RTLD_GLOBAL)
    except OSError:   # not there: such kernels fail to link, the others are unaffected
        pass


def _import(directory, source: str, name: str, filename: str):
    """(module, compiled?): the rendered module, compiled by Numba or from its cache."""
    from numba.core import event

    _compiler_runtime()
    fresh = name not in sys.modules
    with event.install_recorder("numba:compile") as compiles:
        module = import_source(directory, source, name, filename)
    # a @cfunc compiles as its module runs, without a compile event
    return module, bool(compiles.buffer) or (fresh and filename == "kernel.py")


@cache
def _runtime_object() -> bytes:
    return llvm.compile_object(_RUNTIME_IR)


def materialize(plan: Plan, directory, options: dict, key: str, source: str):
    """(runners, compiled?): the loops' object code linked from `directory`, or compiled
    by Numba into it."""
    programs = [p for p in plan.programs if not p.constant]
    loops, _, matmul = source.partition(MATMUL)
    compiled = False
    if (directory / META).exists():
        meta, files = read_checked(directory, META)
    else:
        module, compiled = _import(directory, loops, f"exprforge_kernel_{key[:24]}",
                                   "kernel.py")
        runtime = _runtime_object()
        files, symbols, undefined = {f"runtime.{_digest(runtime)}.o": runtime}, {}, set()
        for p in programs:
            loop = getattr(module, f"kernel_{p.name}")
            # the object code Numba's own cache would hold; named by its checksum, since
            # Numba's symbols (and so the bytes) depend on what the process compiled before
            obj = loop._library.serialize_using_object_code()[2][0]
            files[f"kernel_{p.name}.{_digest(obj)}.o"] = obj
            symbols[p.name] = loop.native_name
            undefined |= _undefined(loop._library._final_module)
        undefined -= set(RUNTIME)
        _resolve(undefined, "compiled")   # a call of Numba's runtime left: a renderer bug
        write_checked(directory, META, files, symbols=symbols, undefined=sorted(undefined))
        meta = {"symbols": symbols, "undefined": sorted(undefined)}
    symbols, undefined = meta.get("symbols"), meta.get("undefined", [])
    if not isinstance(symbols, dict) or set(symbols) != {p.name for p in programs} or \
            not isinstance(undefined, list) or not all(isinstance(n, str) for n in undefined):
        raise CorruptEntry(f"{directory / META} does not name the kernel's loops and the "
                           "symbols they call")
    _compiler_runtime()
    _resolve(undefined, "stored")
    runners = llvm.link(list(files.values()), {
        p.name: (symbols[p.name], llvm.prototype(p)) for p in programs})
    if options["matmul"]:
        module, again = _import(directory, matmul, f"exprforge_matmul_{key[:24]}",
                                "matmul.py")
        runners["matmul"], compiled = module.matmul, compiled or again
    return runners, compiled


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _undefined(module) -> set:
    """The symbols an LLVM module (Numba's final one) declares and does not define."""
    names = {f.name for f in module.functions if f.is_declaration}
    names |= {g.name for g in module.global_variables if g.is_declaration}
    return {n for n in names if not n.startswith("llvm.")}


def _resolve(names, kernel: str) -> None:
    """Check that each symbol the loops call is in the process (the C library's and
    Python's): an MCJIT link takes a symbol it cannot find as address 0, and the first
    call would jump there."""
    import ctypes
    process = ctypes.CDLL(None)
    missing = [n for n in names if not hasattr(process, n)]
    if missing:
        raise ImportError(f"the {kernel} kernel's code calls {', '.join(missing)}, "
                          "which this process does not define (Numba's runtime is not "
                          "linked into kernels)")


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
def _numba_package():
    """Numba's installed folder, found without importing it."""
    spec = importlib.util.find_spec("numba")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the numba target needs Numba installed")
    return Path(list(spec.submodule_search_locations)[0])


@cache
def _numba_version() -> str:
    """Numba's version without importing Numba (a quarter of a second) or
    importlib.metadata (~15 ms): the name of its installed metadata folder."""
    found = sorted(_numba_package().parent.glob("numba-*.dist-info"))
    if len(found) == 1:
        return found[0].name.removeprefix("numba-").removesuffix(".dist-info")
    from importlib.metadata import version
    return version("numba")
