"""Kernel: a compiled Plan, called like a NumPy ufunc with one array per argument.

The steps of a Plan run in order: Programs (elementwise loops, and RowReduce loops on
the CPU targets, which sum in NumPy's order) through the target's compiled code, other
reductions through NumPy (the same calls the reference evaluator makes); either way a
reduction gives the evaluator's bits. Targets supply `run_program`; targets on other
array types (Triton, on torch tensors) also override the conversions.
"""
from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor, wait
from functools import cache, cached_property, lru_cache, partial

import numpy as np

from exprforge.codegen.lower import (Branch, Plan, Program, Reduce, RowReduce,
                                     pairwise_schedule)
from exprforge.engine.evaluate import apply_node, evaluate
from exprforge.engine.ops import OPS

from .memory import _DTYPES, empty


class Kernel(ABC):
    def __init__(self, plan: Plan, target: str, dtype: str, source: str, options: dict,
                 runners: dict, key: str = "", cache_info: dict | None = None):
        self.plan = plan
        self.target = target
        self.dtype = dtype
        self.source = source
        self.options = dict(options)
        self.runners = runners           # Program name -> compiled callable
        self.key = key                   # the store's content hash
        self.cache_info = cache_info or {}   # {"hit": bool, "compiled": bool, "seconds": s}

    @property
    def expr(self):
        """The program the kernel runs (with approx=True, the library programs inlined)."""
        return self.plan.expr

    @cached_property
    def source_expr(self):
        """The expression as given (retyped to the kernel's dtype), before approx=True
        inlined the library's programs: what the torch target differentiates (exp, not
        its approximating program) and what `kernels bench` compares with NumPy. Parsed
        from the stored spec once per kernel."""
        spec = self.cache_info.get("spec")
        if not self.options.get("approx") or spec is None:
            return self.plan.expr
        from exprforge.engine.evaluate import prepare

        from .build import expr_of
        expr = expr_of(spec)
        if isinstance(expr, tuple):
            return tuple(prepare(e, spec["dtype"]) for e in expr)
        return prepare(expr, spec["dtype"])

    @property
    def args(self) -> tuple:
        return tuple(name for name, _ in self.plan.params)

    def __repr__(self):
        sig = ", ".join(f"{n}: {d}" for n, d in self.plan.params)
        if self.plan.many:
            results = ", ".join(f"{e.dtype}: {e}" for e in self.expr)
            return f"<exprforge.Kernel {self.target} ({sig}) -> ({results})>"
        return f"<exprforge.Kernel {self.target} ({sig}) -> {self.expr.dtype}: {self.expr}>"

    def __call__(self, *arrays, out=None):
        if len(arrays) != len(self.plan.params):
            raise TypeError(f"kernel takes {len(self.plan.params)} argument(s) "
                            f"({', '.join(self.args)}), got {len(arrays)}")
        if out is not None and self.plan.many:
            raise TypeError("out= takes one array; this kernel returns a tuple of them")
        env = {"v_" + name: self.convert(a, want, name)
               for (name, want), a in zip(self.plan.params, arrays)}
        if self.plan.full is not None:
            self.check_full(env)
        return self.run_steps(env, out, self.run_program)

    def run_steps(self, env: dict, out, run_program):
        """The plan's steps on `env` (the converted arguments, by "v_" + name), the
        Programs through run_program (run_program's signature): the result(s)."""
        results = self.plan.results
        step = self._one_loop
        if step is not None:   # the usual kernel: one loop, one result
            (value,) = run_program(step, [env[p] for p, _ in step.params], [out])
            return self.finish(value, out)
        outs = {results[0]: out} if out is not None else {}
        for step in self.plan.steps:
            if isinstance(step, Reduce):
                env[step.name] = self.deliver(self.reduce(step, env[step.arg]),
                                              outs.get(step.name))
            elif step.constant:
                env[step.name] = self.deliver(self.constant(step), outs.get(step.name))
            else:
                names = [name for name, _ in step.outputs]
                values = run_program(step, [env[p] for p, _ in step.params],
                                     [outs.get(name) for name in names])
                env.update(zip(names, values))
        if self.plan.many:
            return tuple(self.finish(env[name], None) for name in results)
        return self.finish(env[results[0]], out)

    @cached_property
    def _one_loop(self):
        """The plan's one Program when that is all it is (one result, not a constant)."""
        steps = self.plan.steps
        if len(steps) == 1 and isinstance(steps[0], Program) and not self.plan.many \
                and not steps[0].constant:
            return steps[0]
        return None

    def check_full(self, env: dict):
        """The plan's `full` argument has the shape all arguments broadcast to, and the
        other names in `full` that shape up to leading 1s."""
        first, *same = self.plan.full_names
        full = env["v_" + first]
        if not all(broadcasts_to(a.shape, full.shape) for a in env.values()) or \
                any(_unpadded(env["v_" + name].shape) != _unpadded(full.shape)
                    for name in same):
            also = f" (and {', '.join(same)}, that shape)" if same else ""
            raise ValueError(f"argument {first} must have the shape every argument "
                             f"broadcasts to{also}; got shapes "
                             f"{[tuple(a.shape) for a in env.values()]}")
        if self.plan.flat:   # the layouts the loops were grouped by
            names = [name for name, _ in self.plan.params]
            found = dict(zip(names, unit_axes(env["v_" + n].shape for n in names)))
            for name, ndim, axes in self.plan.flat:
                if found[name] != (ndim, axes):
                    raise ValueError(f"argument {name} must have {ndim} dimensions, of "
                                     f"length 1 on axes {axes} (this kernel was made for "
                                     f"that); got shape {tuple(env['v_' + name].shape)}")

    # --- hooks a target may override ---------------------------------------------------
    def convert(self, a, want: str, name: str):
        """An input as an array of the parameter's dtype (NumPy's same_kind casting)."""
        a = np.asarray(a)
        if a.dtype is not _DTYPES[want] and a.dtype != _DTYPES[want]:
            if a.dtype.kind == "f" and want[0] in "ib" or not np.can_cast(a.dtype, want, "same_kind"):
                raise TypeError(f"argument {name} is {want}; cannot use {a.dtype} data")
            a = a.astype(want)
        return a

    @abstractmethod
    def run_program(self, program: Program, arrays, outs: list) -> list:
        """Run one elementwise Program on converted arrays: its outputs, in order (each
        into its entry of `outs` when that is not None)."""

    def reduce(self, step: Reduce, array):
        return apply_node(step.node, [array])

    def constant(self, program: Program):
        return evaluate(program.node)

    def deliver(self, value, out):
        if out is None:
            return value
        if out.dtype != value.dtype:
            raise TypeError(f"out has dtype {out.dtype}; the kernel returns {value.dtype}")
        np.copyto(out, value)
        return out

    def finish(self, value, out):
        if out is not None:
            return out
        value = np.asarray(value)
        return value[()] if value.ndim == 0 else value  # a scalar for scalars, as ufuncs do



class LoopKernel(Kernel):
    """A target whose Programs are loops over a result laid out as rows x cols (C order),
    loop(rows, cols, a0, r0, c0, ..., out0, ...): input k's element (i, j) is
    ak[rk[i] + j * ck], with ck = 1 along the row or 0 where the input is constant along
    it (see loop_layout). NumPy's broadcasting and out= are done here, without copying a
    broadcast input; an input that is not C-contiguous is copied (at its own size)."""

    # Threads pay off once a call has about this many cycles of work (waking a thread of
    # the pool took ~0.1 ms on this VM): a 1-cycle add needs 2**20 elements, libm's exp
    # (16) 65536, silu made of the library's sigmoid (43 ops, 5 cycles on vectors)
    # 210,000 (it took 85 us serial and 173 us on two threads at 1e5, before this
    # counted vectors; 808 and 556 us at 1e6).
    PARALLEL_WORK = 1 << 20
    SIMD_LANES = 8
    VECTOR_COST = 5    # a proxy read off the op table's costs: ops this dear are taken
                       # for calls that do not vectorize (the renderers know exactly;
                       # this only decides on threads)

    def __call__(self, *arrays, out=None):
        # The usual call, kept cheap: one loop, arrays of the parameters' dtypes, one
        # shape, C-contiguous, an out= (if any) of that shape and the result's dtype,
        # writable and apart from the inputs; anything else takes the general path, which
        # gives the same result.
        fast = self._fast
        if fast is not None and len(arrays) == len(fast[1]):
            shape = getattr(arrays[0], "shape", None)
            if shape and all(type(a) is np.ndarray and a.dtype is d and a.shape == shape
                             and a.flags.c_contiguous for a, d in zip(arrays, fast[1])):
                n = arrays[0].size
                # (fast[4] counts every core; a torch kernel may be held to one thread)
                if 0 < n and (n < fast[4] or self.workers() <= 1):
                    if out is None:
                        result = empty(shape, fast[3])
                    elif type(out) is np.ndarray and out.dtype is fast[3] and \
                            out.shape == shape and out.flags.c_contiguous and \
                            out.flags.writeable and \
                            not any(np.may_share_memory(out, a) for a in arrays):
                        result = out
                    else:
                        result = None
                    if result is not None:
                        self.launch_whole(fast[0], [arrays[i] for i in fast[2]], result, n)
                        return result
        key = self._replay_key(arrays) if out is None else None
        if key is None:
            return super().__call__(*arrays, out=out)
        env = {"v_" + name: a for (name, _), a in zip(self.plan.params, arrays)}
        recipe = self._recipes.get(key, False)
        if recipe:
            return self.run_steps(env, None, partial(self._replay_program, recipe))
        if recipe is None:    # calls of these shapes take the general path
            return super().__call__(*arrays)
        if self.plan.full is not None:
            self.check_full(env)
        if len(self._recipes) >= 64:
            self._recipes.clear()
        recipe = {}
        result = self.run_steps(env, None, partial(self._record_program, recipe))
        self._recipes[key] = None if recipe.pop(None, False) else recipe
        return result

    # A call on small arrays spends most of its time working out each loop's layout from
    # the shapes (a row reduction of 1x256: 3 of 10 us). The first call with given
    # shapes (arrays of the parameters' dtypes, C-contiguous, no out=, one thread)
    # records what each loop was launched with; later calls with those shapes launch the
    # same on their arrays.
    def _replay_key(self, arrays):
        if self.options.get("parallel") or len(arrays) != len(self.plan.params):
            return None
        dtypes = self._param_dtypes
        if not all(type(a) is np.ndarray and a.dtype == d and a.flags.c_contiguous
                   for a, d in zip(arrays, dtypes)):
            return None
        return tuple(a.shape for a in arrays)

    @cached_property
    def _param_dtypes(self):
        return [_DTYPES[d] for _, d in self.plan.params]

    @cached_property
    def _recipes(self) -> dict:
        return {}

    def _record_program(self, recipe: dict, program: Program, arrays, outs):
        """run_program, noting in recipe[program.name] its results' shapes and dtypes
        and its launches, each input as its index in `arrays` (and a RowReduce's shape,
        for its results: zeros where it adds rows into them, then the means divided);
        recipe[None] = True when a launch read anything else (a copy of an input) or
        covered a thread's share."""
        launches = []

        def launch(runner, row, rows, col, cols, width, operands, results):
            launches.append((runner, row, rows, col, cols, width, operands))
            self.launch(runner, row, rows, col, cols, width, operands, results)
        values = self.run_program(program, arrays, outs, launch=launch)
        reduced_over = tuple(np.broadcast_shapes(*(a.shape for a in arrays))) \
            if isinstance(program, RowReduce) else None
        noted = []
        for runner, row, rows, col, cols, width, operands in launches:
            inputs, extra = operands[:len(arrays)], operands[len(arrays):]
            if row or col or \
                    not all(_same_data(op, a) for (op, _, _), a in zip(inputs, arrays)):
                recipe[None] = True   # a thread's share, a copy of an input
            noted.append(self.launcher(runner, rows, cols, width, [
                (k, table, step) for k, (_, table, step) in enumerate(inputs)] + extra))
        recipe[program.name] = ([(v.shape, v.dtype) for v in values], noted, reduced_over)
        return values

    def _replay_program(self, recipe: dict, program: Program, arrays, outs):
        shapes, launchers, reduced_over = recipe[program.name]
        results = [empty(shape, dtype) for shape, dtype in shapes] if reduced_over is None \
            else _row_results(program, reduced_over)
        flat = [r.reshape(-1) for r in results]
        for launcher in launchers:
            launcher(arrays, flat)
        if reduced_over is not None:
            _divide_means(program, reduced_over, results)
        return results

    def launcher(self, runner, rows: int, cols: int, width: int, operands):
        """A callable (arrays, results) running launch(runner, 0, rows, 0, cols, width,
        ...) with the operands `operands`, where an int k stands for arrays[k] (flat);
        a target may work out here what does not change from call to call."""
        def run(arrays, results):
            found = [(arrays[a].reshape(-1) if type(a) is int else a, table, step)
                     for a, table, step in operands]
            self.launch(runner, 0, rows, 0, cols, width, found, results)
        return run

    @cached_property
    def _fast(self):
        """(runner, parameter dtypes, the loop's parameters as indices into them, result
        dtype, the fewest elements worth threads) for a plan of one loop over variables
        alone; else None."""
        step = self._one_loop
        if step is None or isinstance(step, RowReduce) or self.plan.full is not None:
            return None
        index = {"v_" + name: i for i, (name, _) in enumerate(self.plan.params)}
        if not all(p in index for p, _ in step.params):
            return None
        (_, dtype), = step.outputs
        threads = self.options.get("parallel") and _workers() > 1
        return (self.runners[step.name], [_DTYPES[d] for _, d in self.plan.params],
                [index[p] for p, _ in step.params], _DTYPES[dtype],
                self.parallel_elements(step) if threads else math.inf)

    def launch_whole(self, runner, arrays, result, n: int):
        """runner over n elements: C-contiguous arrays of the result's shape, one row."""
        operands = [(a.reshape(-1), _FIRST_ROW, 1) for a in arrays]
        self.launch(runner, 0, 1, 0, n, n, operands, [result.reshape(-1)])

    def parallel_elements(self, program: Program) -> float:
        """The fewest elements for which `program` runs on threads. The op table's costs
        are a scalar loop's; a body of plain arithmetic (no branch, every op under
        VECTOR_COST) runs on vectors of about SIMD_LANES."""
        costs = [OPS[i.op].cost for i in program.flat() if i.op != "const"]
        cycles = sum(costs)
        if max(costs, default=0) < self.VECTOR_COST and \
                not any(isinstance(i, Branch) for i in program.body):
            cycles /= self.SIMD_LANES
        return self.PARALLEL_WORK / max(cycles, 1.0)

    def workers(self) -> int:
        """Threads a parallel=True call shares its work among: every core (a torch
        kernel's follow torch.get_num_threads())."""
        return _workers()

    def parallel_worth(self, program: Program, n: int) -> bool:
        return n >= self.parallel_elements(program)

    def run_program(self, program: Program, arrays, outs, launch=None):
        launch = launch or self.launch
        first = arrays[0].shape
        shape = first if all(a.shape == first for a in arrays) else \
            np.broadcast_shapes(*(a.shape for a in arrays))
        if isinstance(program, RowReduce):
            return self._run_rows(program, shape, arrays, outs, launch)
        if all(o is None for o in outs):   # the usual call: fresh results
            results = [empty(shape, dtype) for _, dtype in program.outputs]
            self._run(program, shape, arrays, results, launch)
            return results
        for out, (_, dtype) in zip(outs, program.outputs):
            if out is None:
                continue
            if out.dtype != np.dtype(dtype):
                raise TypeError(f"out has dtype {out.dtype}; the kernel returns {dtype}")
            if not out.flags.writeable:   # the loops write through its address regardless
                raise ValueError("out is read-only")
            if np.broadcast_shapes(shape, out.shape) != out.shape:
                raise ValueError(f"out has shape {out.shape}; the result has shape {shape}")
            shape = out.shape
        # an out= overlapping an input, or not contiguous, is computed aside and copied
        direct = [out is not None and out.flags.c_contiguous and out.shape == shape and
                  not any(np.may_share_memory(out, a) for a in arrays) for out in outs]
        results = [out if ok else empty(shape, dtype)
                   for out, ok, (_, dtype) in zip(outs, direct, program.outputs)]
        self._run(program, shape, arrays, results, launch)
        for k, (out, ok) in enumerate(zip(outs, direct)):
            if out is not None and not ok:
                np.copyto(out, results[k])
                results[k] = out
        return results

    def _run(self, program: Program, shape: tuple, arrays, results, launch):
        n = results[0].size
        if not n:
            return
        rows, cols, operands = loop_layout(shape, arrays)
        runner, results = self.runners[program.name], [r.reshape(-1) for r in results]
        workers = self.workers()
        if not (self.options.get("parallel") and workers > 1 and
                self.parallel_worth(program, n)) or 1 < rows < workers:
            launch(runner, 0, rows, 0, cols, cols, operands, results)
            return
        # threads take equal shares of the rows, or of the one row
        size = rows if rows > 1 else cols
        bounds = [size * k // workers for k in range(workers + 1)]
        jobs = [(bounds[k], bounds[k + 1] - bounds[k]) for k in range(workers)]
        jobs = [(start, count, 0, cols) if rows > 1 else (0, 1, start, count)
                for start, count in jobs if count]
        _share(lambda job: launch(runner, *job, cols, operands, results), jobs)

    def _run_rows(self, program: RowReduce, shape: tuple, arrays, outs, launch):
        """A RowReduce over `shape` (see reduced_layout): each row's sum is one output
        value, or is added to one (in row order: serial) when reduced axes lie before
        the row's; means are divided by the count after that. Its elementwise outputs
        (op "") have the full shape."""
        shape = tuple(shape)
        _, split, accumulate = reduced_layout(shape, program.axes)
        results = _row_results(program, shape)
        rows, cols = math.prod(shape[:split]), math.prod(shape[split:])
        if rows:
            rows, cols, operands = loop_layout(shape, arrays, split)
            operands.append((_schedule(cols), _FIRST_ROW, 0))   # never indexed by row
            operands.append((_output_rows(shape, split, program.axes) if accumulate
                             else _FIRST_ROW, _FIRST_ROW, int(accumulate)))
            runner, flat = self.runners[program.name], [r.reshape(-1) for r in results]
            workers = self.workers()
            if self.options.get("parallel") and workers > 1 and rows >= workers and \
                    not accumulate and self.parallel_worth(program, rows * cols):
                widths = [1 if op else cols for op in program.ops]   # elements per row

                def run(start, count):   # results from row `start`: views (width 0)
                    launch(runner, start, count, 0, cols, 0, operands,
                           [r[start * w:] for r, w in zip(flat, widths)])
                bounds = [rows * k // workers for k in range(workers + 1)]
                _share(lambda k: run(bounds[k], bounds[k + 1] - bounds[k]), range(workers))
            else:
                launch(runner, 0, rows, 0, cols, 0, operands, flat)
        _divide_means(program, shape, results)
        return [self.deliver(r, out) for r, out in zip(results, outs)]

    @abstractmethod
    def launch(self, runner, row: int, rows: int, col: int, cols: int, width: int,
               operands, results):
        """Run the loop over `rows` rows from `row`, `cols` elements of each from `col`,
        of a result `width` elements wide: operands are (1-D array, int64 row table, step
        along the row) triples, results the 1-D arrays it writes, one per output. It must
        release the GIL: parallel=True calls it from threads."""


@cache
def _workers() -> int:
    return os.cpu_count() or 1


@cache
def _pool():
    return ThreadPoolExecutor(max_workers=_workers())


def _share(work, shares) -> None:
    """work(share) for every share, the first on this thread and the others on the pool
    (one hand-off fewer, and this thread does not sleep while they run)."""
    first, *rest = shares
    pending = [_pool().submit(work, s) for s in rest]
    try:
        work(first)
    finally:   # every share is done before the caller sees a result or an error
        wait(pending)
    for f in pending:
        f.result()


def _unpadded(shape) -> tuple:
    """shape without its leading 1s."""
    shape = tuple(shape)
    while shape and shape[0] == 1:
        shape = shape[1:]
    return shape


def unit_axes(shapes) -> tuple:
    """Per shape, (its number of dimensions, its axes of length 1: negative, up to the
    longest shape's rank, those it lacks included)."""
    return _unit_axes(tuple(tuple(s) for s in shapes))


@lru_cache(maxsize=256)
def _unit_axes(shapes: tuple) -> tuple:
    rank = max(map(len, shapes), default=0)
    return tuple((len(s), tuple(sorted(tuple(i - len(s) for i, d in enumerate(s) if d == 1) +
                                       tuple(range(-rank, -len(s))))))
                 for s in map(tuple, shapes))


def _row_results(program: RowReduce, shape: tuple) -> list:
    """A RowReduce's results over `shape`: zeros where it adds rows into them."""
    reduced, _, accumulate = reduced_layout(shape, program.axes)
    return [empty(shape, dtype) if not op else
            (np.zeros if accumulate else empty)(reduced, dtype)
            for (_, dtype), op in zip(program.outputs, program.ops)]


def _divide_means(program: RowReduce, shape: tuple, results: list):
    """Where the RowReduce added rows into its results, its means are the sums divided
    after that, as np.mean does: the float64 quotient by the count (intp)."""
    if not reduced_layout(shape, program.axes)[2]:
        return
    count = np.intp(math.prod(shape[a] for a in program.axes))
    for r, op in zip(results, program.ops):
        if op == "rmean":
            with np.errstate(invalid="ignore", divide="ignore"):
                np.true_divide(r, count, out=r, casting="unsafe")


def _same_data(view, a) -> bool:
    """Whether `view` (a flat operand) is all of `a`'s data, not a copy."""
    return view.size == a.size and (not a.size or
                                    view.__array_interface__["data"][0] ==
                                    a.__array_interface__["data"][0])


def broadcasts_to(shape, full) -> bool:
    """Whether an array of `shape` broadcasts to `full` without changing it."""
    return len(shape) <= len(full) and all(
        d in (1, f) for d, f in zip(reversed(tuple(shape)), reversed(tuple(full))))


_FIRST_ROW = np.zeros(1, np.int64)




@lru_cache(maxsize=512)
def reduced_layout(shape: tuple, axes: tuple):
    """(result shape, split, accumulate) of a reduction of an array of `shape` over `axes`
    (negative, including -1), laid out as NumPy sums a C-contiguous array: the dimensions
    from `split` on (the trailing reduced ones and those of length 1, coalesced) are one
    row summed pairwise; a reduced dimension before `split` (accumulate) adds rows into
    the same result element, in C order."""
    d = len(shape)
    if -min(axes) > d:
        raise ValueError(f"a reduction over axes {axes} of an array of shape {shape}")
    reduced = {a + d for a in axes}
    split = d
    while split > 0 and (split - 1 in reduced or shape[split - 1] == 1):
        split -= 1
    result = tuple(1 if i in reduced else n for i, n in enumerate(shape))
    return result, split, any(shape[i] != 1 for i in range(split) if i in reduced)


@lru_cache(maxsize=256)
def _output_rows(shape: tuple, split: int, axes: tuple):
    """For each row of a RowReduce that accumulates, its result element's flat index."""
    return _row_table(shape, reduced_layout(shape, axes)[0], split)


def _row_table(shape: tuple, p: tuple, split: int):
    """For each row (the dimensions of `shape` before `split`, in C order), the flat
    index of its first element in a C-contiguous array of shape p (p's dimensions are
    `shape`'s or 1: an array broadcast to `shape`)."""
    table, stride = np.zeros(shape[:split], np.int64), 1
    for i in reversed(range(len(shape))):
        if i < split and p[i] != 1:
            table += np.arange(shape[i], dtype=np.int64).reshape(
                (-1,) + (1,) * (split - 1 - i)) * stride
        stride *= p[i]
    return table.reshape(-1)


@lru_cache(maxsize=256)
def _schedule(n: int):
    """pairwise_schedule(n) as the int64 array the RowReduce loops read (never written)."""
    return np.array(pairwise_schedule(n), np.int64)


def _unstretched(a):
    """A view already broadcast (stride 0, as torch's expand gives) as the smaller array
    it repeats: its length 1 on those dimensions, so nothing is copied to read it."""
    if a.ndim == 0 or 0 not in a.strides or a.size <= 1:
        return a
    return a[tuple(slice(0, 1) if s == 0 else slice(None) for s in a.strides)]


def loop_layout(shape: tuple, arrays, split: int | None = None):
    """(rows, cols, operands): the result's shape as rows x cols, where cols covers the
    trailing dimensions on which every input either follows the result or is constant,
    and for each input (flat data, int64 table of each row's first element, 1 or 0: its
    step along a row). A mean over the last axis broadcast back over it is constant along
    the row; a scalar everywhere; a (1, C, 1, 1) parameter of an (N, C, H, W) input is
    constant along rows of H * W. Nothing is copied but inputs that are not C-contiguous.
    `split` fixes the rows as the dimensions before it (a RowReduce's); an input neither
    following nor constant on all the dimensions after it is broadcast on them (a copy)."""
    if split is None and all(a.size == 1 or (a.shape == shape and a.flags.c_contiguous)
                             for a in arrays):
        # the usual case, kept cheap: one row of the whole result
        return 1, math.prod(shape), [(a.reshape(-1), _FIRST_ROW, int(a.shape == shape))
                                     for a in arrays]
    arrays = [_unstretched(a) for a in arrays]
    rows, cols, plans = _layout(tuple(shape), tuple(a.shape for a in arrays), split)
    operands = []
    for a, (table, step, stretched) in zip(arrays, plans):
        if stretched is not None:
            a = np.broadcast_to(a, stretched)
        operands.append((np.ascontiguousarray(a).reshape(-1), table, step))
    return rows, cols, operands


@lru_cache(maxsize=512)
def _layout(shape: tuple, shapes: tuple, split: int | None):
    """loop_layout's decisions, which depend on shapes alone (cached: a layer calls its
    kernels with the same shapes every step): (rows, cols, [(row table, step, shape to
    broadcast the input to or None)]). The tables are shared: nothing writes them."""
    d = len(shape)
    padded = [(1,) * (d - len(s)) + s for s in shapes]
    stretched = [None] * len(shapes)

    def follows(p, first):   # p follows the result, or is constant, on dims first..
        return len({p[i] == shape[i] for i in range(first, d) if shape[i] != 1}) <= 1
    if split is None:
        split = d
        while split > 0 and all(follows(p, split - 1) for p in padded):
            split -= 1
    else:
        for k, p in enumerate(padded):
            if not follows(p, split):
                padded[k] = stretched[k] = p[:split] + shape[split:]
    plans = []
    for p, stretch in zip(padded, stretched):
        step = int(all(p[i] == shape[i] for i in range(split, d)))
        plans.append((_row_table(shape, p, split) if split else _FIRST_ROW, step, stretch))
    return math.prod(shape[:split]), math.prod(shape[split:]), plans
