"""Numba target: the rendered module is written into the store and imported from there,
so Numba's own cache (cache=True, in the folder's __pycache__) holds the machine code
and a later process loads it without compiling. Whether anything compiled is read
from Numba's event stream ("numba:compile"), not guessed from timings."""
from __future__ import annotations

import numpy as np

from exprforge.codegen import numba as renderer
from exprforge.codegen.lower import Plan, Program

from .kernel import Kernel
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
    runners = {p.name: getattr(module, f"kernel_{p.name}") for p in plan.programs
               if not p.constant}
    return runners, bool(compiles.buffer)


class NumbaKernel(Kernel):
    """Each Program is a NumPy ufunc: broadcasting and out= are NumPy's own."""

    def run_program(self, program: Program, arrays, out):
        ufunc = self.runners[program.name]
        if out is not None:
            if out.dtype != np.dtype(program.dtype):
                raise TypeError(f"out has dtype {out.dtype}; the kernel returns {program.dtype}")
            if not out.flags.c_contiguous:  # Numba 0.68's ufuncs fill strided outputs wrongly
                np.copyto(out, ufunc(*arrays))
                return out
            return ufunc(*arrays, out=out)
        return ufunc(*arrays)

    @property
    def ufunc(self):
        """The NumPy ufunc of an elementwise kernel."""
        if not self.plan.elementwise or self.plan.steps[0].constant:
            raise AttributeError("only an elementwise kernel with variables is one ufunc")
        return self.runners[self.plan.steps[0].name]


KERNEL = NumbaKernel


def platform_key() -> str:
    import numba
    return f"numba {numba.__version__}"  # Numba checks the CPU itself when loading its cache
