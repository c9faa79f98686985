"""Numba target: the rendered module is written into the store and imported from there,
so Numba's own cache (cache=True, in the folder's __pycache__) holds the machine code
and a later process loads it without compiling. Whether anything compiled is read
from Numba's event stream ("numba:compile"), not guessed from timings."""
from __future__ import annotations

from exprforge.codegen import numba as renderer
from exprforge.codegen.lower import Plan

from .kernel import LoopKernel
from .store import import_source

NAME = "numba"
has = renderer.has
OPTIONS = {"parallel": False, "fastmath": False, "contract": False}


def source_of(plan: Plan, options: dict) -> str:
    fastmath = True if options["fastmath"] else ({"contract"} if options["contract"] else False)
    return renderer.render(plan, parallel=options["parallel"], fastmath=fastmath, cache=True,
                           title=str(plan.expr))


def materialize(plan: Plan, directory, options: dict, key: str, source: str):
    """(runners, compiled?) for `plan`, loaded from `directory` or built into it."""
    from numba.core import event

    with event.install_recorder("numba:compile") as compiles:
        module = import_source(directory, source, f"exprforge_kernel_{key[:24]}")
    runners = {p.name: (getattr(module, f"kernel_{p.name}"),
                        getattr(module, f"kernel_{p.name}_parallel", None))
               for p in plan.programs if not p.constant}
    return runners, bool(compiles.buffer)


class NumbaKernel(LoopKernel):
    """The loops are Numba functions over arrays; with parallel=True, large ones run the
    prange twin on Numba's threads."""

    def launch(self, loops, n, operands, result, parallel):
        loop = loops[1] if parallel and loops[1] is not None else loops[0]
        # the loops are compiled for writable arrays; Numba types a read-only one apart
        operands = [(a if a.flags.writeable else a.copy(), s) for a, s in operands]
        loop(n, *[x for pair in operands for x in pair], result)


KERNEL = NumbaKernel


def platform_key() -> str:
    import numba
    return f"numba {numba.__version__}"  # Numba checks the CPU itself when loading its cache
