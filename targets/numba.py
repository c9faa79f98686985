"""Numba target: the rendered module is written into the store and imported from there,
so Numba's own cache (cache=True, in the folder's __pycache__) holds the machine code
and a later process loads it without compiling. Whether anything compiled is read
from Numba's event stream ("numba:compile"), not guessed from timings."""
from __future__ import annotations

from exprforge.codegen import numba as renderer
from exprforge.codegen.lower import Plan

import numpy as np

from .kernel import LoopKernel
from .store import import_source

NAME = "numba"
has = renderer.has
ROW_REDUCTIONS = True   # the renderer spells RowReduce loops
OPTIONS = {"parallel": False, "fastmath": False, "contract": False, "matmul": False}


def source_of(plan: Plan, options: dict) -> str:
    fastmath = True if options["fastmath"] else ({"contract"} if options["contract"] else False)
    return renderer.render(plan, parallel=options["parallel"], fastmath=fastmath, cache=True,
                           title=str(plan.expr), matmul=options["matmul"])


def materialize(plan: Plan, directory, options: dict, key: str, source: str):
    """(runners, compiled?) for `plan`, loaded from `directory` or built into it."""
    from numba.core import event

    with event.install_recorder("numba:compile") as compiles:
        module = import_source(directory, source, f"exprforge_kernel_{key[:24]}")
    runners = {p.name: getattr(module, f"kernel_{p.name}")
               for p in plan.programs if not p.constant}
    if options["matmul"]:
        runners["matmul"] = module.matmul
    return runners, bool(compiles.buffer)


class NumbaKernel(LoopKernel):
    """The loops are Numba functions over arrays that release the GIL."""

    def operands(self, rows, cols, operands):
        # the loops are compiled for writable arrays: a read-only one is copied, once
        return rows, cols, [(a if a.flags.writeable else a.copy(), table, step)
                            for a, table, step in operands]

    def launch(self, loop, row, rows, col, cols, width, operands, results):
        if row or col:   # a thread's share: views starting at its first element
            operands = [(a[col * step:], table[row:], step) for a, table, step in operands]
            results = [r[row * width + col:] for r in results]
        loop(rows, cols, *[x for triple in operands for x in triple], *results)

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
    import numba
    return f"numba {numba.__version__}"  # Numba checks the CPU itself when loading its cache
