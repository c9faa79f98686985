"""LLVM target: the IR is optimized for this CPU and emitted as object code into the
store; loading a kernel is linking that object code into an MCJIT engine, with no
optimization or code generation. The loops are called through ctypes, which releases
the GIL, so `parallel=True` runs rows (or parts of one row) on threads."""
from __future__ import annotations

import ctypes
import weakref
from functools import cache

from exprforge.codegen import llvm as renderer
from exprforge.codegen.lower import Plan, RowReduce

from .kernel import _FIRST_ROW, LoopKernel
from .store import CorruptEntry, read_checked, write_checked, write_once

NAME = "llvm"
has = renderer.has
ROW_REDUCTIONS = True   # the renderer spells RowReduce loops
OPTIONS = {"fastmath": False, "contract": False, "parallel": False}


@cache
def _llvm():
    import llvmlite.binding as llvm
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    return llvm


def _new_target_machine():
    llvm = _llvm()
    target = llvm.Target.from_triple(llvm.get_process_triple())
    return target.create_target_machine(cpu=llvm.get_host_cpu_name(),
                                        features=llvm.get_host_cpu_features().flatten(),
                                        opt=3, reloc="default", codemodel="jitdefault")


@cache
def target_machine():
    """The machine code generator for compiling. An MCJIT engine takes ownership of its
    target machine (and adjusts it), so each engine gets its own (_new_target_machine)."""
    return _new_target_machine()


def platform_key() -> str:
    llvm = _llvm()
    import llvmlite
    return (f"llvmlite {llvmlite.__version__} {llvm.get_process_triple()} "
            f"{llvm.get_host_cpu_name()} {llvm.get_host_cpu_features().flatten()}")


def source_of(plan: Plan, options: dict) -> str:
    """The LLVM IR text."""
    module = renderer.render(plan, fastmath=options["fastmath"], contract=options["contract"],
                             triple=_llvm().get_process_triple())
    return str(module)


@cache
def _pass_builder():
    llvm = _llvm()
    tuning = llvm.create_pipeline_tuning_options(speed_level=3)
    tuning.loop_vectorization = True
    tuning.slp_vectorization = True
    return llvm.create_pass_builder(target_machine(), tuning)


def compile_object(text: str) -> bytes:
    llvm = _llvm()
    module = llvm.parse_assembly(text)
    module.verify()
    builder = _pass_builder()
    builder.getModulePassManager().run(module, builder)
    return target_machine().emit_object(module)


def materialize(plan: Plan, directory, options: dict, key: str, text: str):
    """(runners, compiled?): object code linked from `directory`, or compiled into it."""
    compiled = False
    if (directory / "kernel.json").exists():
        _, files = read_checked(directory, "kernel.json")
        obj = files["kernel.o"]
    else:
        obj = compile_object(text)
        compiled = True
        write_once(directory / "kernel.ll", text)
        write_checked(directory, "kernel.json", {"kernel.o": obj})
    return _link(obj, plan), compiled


def stored_source(directory, options: dict) -> str | None:
    """The IR text an artifact was compiled from (None when it is not there)."""
    try:
        return (directory / "kernel.ll").read_text()
    except (OSError, UnicodeDecodeError):
        return None


def _link(obj: bytes, plan: Plan) -> dict:
    return link([obj], {p.name: (p.name, prototype(p)) for p in plan.programs
                        if not p.constant})


def prototype(p):
    """The ctypes type of the loop of Program p (see targets.kernel.loop_layout). Every
    argument is declared a pointer: int64 and pointers pass alike on 64-bit machines, and
    ctypes converts a Python int to a pointer in less than half the time (12 arguments:
    0.8 against 1.7 us a call here)."""
    triples = len(p.params) + 2 * isinstance(p, RowReduce)   # schedule, result rows
    return ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * (2 + 3 * triples + len(p.outputs)))


def link(objects: list[bytes], functions: dict) -> dict:
    """Runners from object code linked into a new MCJIT engine: functions maps a runner's
    name to (symbol, ctypes prototype). Undefined symbols resolve in this process."""
    llvm = _llvm()
    empty = llvm.parse_assembly("")
    empty.triple = llvm.get_process_triple()
    engine = llvm.create_mcjit_compiler(empty, _new_target_machine())
    files = [llvm.ObjectFileRef.from_data(obj) for obj in objects]
    for f in files:
        engine.add_object_file(f)
    engine.finalize_object()
    runners = {}
    for name, (symbol, proto) in functions.items():
        address = engine.get_function_address(symbol)
        if not address:
            raise CorruptEntry(f"object code has no function {symbol}")
        runners[name] = proto(address)
    # the code lives as long as its engine; LLVM may still point into the objects' bytes
    runners["_keep"] = (engine, files, objects)
    return runners


def address(a) -> int:
    """The address of a contiguous array's data: through the buffer protocol for a
    writable one (~0.45 us here, against ~1.5 us for a.ctypes.data, which builds a helper
    object: a loop with 14 inputs takes 30 of them per call)."""
    try:
        return ctypes.addressof(ctypes.c_char.from_buffer(a))
    except (TypeError, ValueError):   # read-only, or empty
        return a.ctypes.data


_TABLES: dict = {}   # id -> address of a row table (tables are cached and reused)


def table_address(table) -> int:
    """address(table), remembered while the table lives (the layout caches keep them)."""
    known = _TABLES.get(id(table))
    if known is None:
        known = _TABLES[id(table)] = address(table)
        weakref.finalize(table, _TABLES.pop, id(table), None)
    return known


class LLVMKernel(LoopKernel):
    """The loops are C functions taking pointers; ctypes releases the GIL while they run."""

    def launch(self, fn, row, rows, col, cols, width, operands, results):
        args = [rows, cols]
        for a, table, step in operands:
            args += [address(a) + col * step * a.itemsize,
                     table_address(table) + row * 8, step]
        fn(*args, *[address(r) + (row * width + col) * r.itemsize for r in results])

    def launcher(self, runner, rows, cols, width, operands):
        fixed, slots = [rows, cols], []
        for a, table, step in operands:
            if type(a) is int:
                slots.append((len(fixed), a))
                fixed.append(0)
            else:
                fixed.append(address(a))
            fixed += [table_address(table), step]

        def run(arrays, results):
            args = fixed.copy()
            for at, k in slots:
                args[at] = address(arrays[k])
            runner(*args, *[address(r) for r in results])
        run.operands = operands   # the tables and constant arrays live as long as it
        return run

    def launch_whole(self, runner, arrays, result, n):
        first = table_address(_FIRST_ROW)
        runner(1, n, *[x for a in arrays for x in (address(a), first, 1)], address(result))


KERNEL = LLVMKernel
