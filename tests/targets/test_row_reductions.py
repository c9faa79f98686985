"""Sums and means over axes that include the last run inside generated loops (RowReduce)
on both CPU targets, in NumPy's order (pairwise along rows, rows added in C order): the
same bits as the reference evaluator (np.sum, np.mean, np.var) for every row length,
broadcast input, reduced axis before the row, empty array and thread split."""
import numpy as np
import pytest

import exprforge as xf
from exprforge.codegen.lower import (PAIRWISE_BLOCK, Reduce, RowReduce, lower,
                                     pairwise_schedule)
from exprforge.engine.evaluate import evaluate
from exprforge.engine.parse import parse
from tests.targets.test_cpu_kernels import TARGETS, _same_bits

LENGTHS = [1, 3, 7, 8, 9, 15, 16, 127, 128, 129, 136, 255, 256, 300, 1000, 4099]


def _pairwise_model(values, dtype):
    """The schedule run as its stack machine on Python floats rounded to `dtype`."""
    rnd, stack, k = np.dtype(dtype).type, [], 0
    for op in pairwise_schedule(len(values)):
        if op > 0:
            block = values[k:k + op]
            k += op
            if op < 8:
                total = rnd(0)
                for v in block:
                    total = rnd(total + v)
            else:
                lanes = list(block[:8])
                end = op - op % 8
                for i in range(8, end, 8):
                    lanes = [rnd(a + b) for a, b in zip(lanes, block[i:i + 8])]
                r = lanes
                total = rnd(rnd(rnd(r[0] + r[1]) + rnd(r[2] + r[3])) +
                            rnd(rnd(r[4] + r[5]) + rnd(r[6] + r[7])))
                for v in block[end:]:
                    total = rnd(total + v)
            stack.append(total)
        elif op == 0:
            high = stack.pop()
            stack.append(rnd(stack.pop() + high))
    return stack[0] if stack else rnd(0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_schedule_is_numpys_summation_order(dtype):
    rng = np.random.default_rng(1)
    for n in LENGTHS + [0, 2, 65536 + 13]:
        values = (rng.standard_normal(n) * 10.0 ** rng.integers(-3, 4, n)).astype(dtype)
        assert _pairwise_model(values, dtype) == np.sum(values)
        ops = pairwise_schedule(n)
        assert ops[-1] == -1 and sum(k for k in ops if k > 0) == n
        assert all(k <= PAIRWISE_BLOCK for k in ops)


def test_plan_fuses_trailing_float_sums_only():
    x32 = {"x": "float32", "y": "float32"}
    plan = lower(parse("x / sqrt(mean(x * x, axis=-1) + 1e-6)", vars=x32),
                                  rows=True)
    assert isinstance(plan.steps[0], RowReduce) and len(plan.steps) == 3
    (reduce,) = [s for s in plan.steps if isinstance(s, RowReduce)]
    assert reduce.ops == ("rmean",) and reduce.axes == (-1,)
    assert dict(reduce.params).keys() == {"v_x"}      # x * x is computed in the loop
    # sqrt(mean + eps) is a per-row value: a loop of its own, not one per element
    assert any(dict(s.params).keys() == {reduce.name} for s in plan.steps
               if not isinstance(s, RowReduce))
    # not fused: axes without the last, a max
    for text, v in [("sum(x, axis=-2)", x32), ("sum(x, axis=(-3, -2))", x32),
                    ("max(x, axis=-1)", x32)]:
        steps = lower(parse(text, vars=v), rows=True).steps
        assert [type(s) for s in steps] == [Reduce]
    # a sum of ones is a count: the row's length, nothing added per element
    (count,) = lower(parse("sum(where(True, 1, x * y), axis=-1)", vars=x32), rows=True).steps
    assert count.ops == ("rcount",)
    # a variance over trailing axes is two means, both in loops
    steps = lower(parse("var(x, axis=-1)", vars=x32), rows=True).steps
    assert [type(s) for s in steps] == [RowReduce, RowReduce]
    # targets without RowReduce keep NumPy's reduction
    assert [type(s) for s in lower(parse("var(x, axis=-1)", vars=x32)).steps] == [Reduce]


CASES = [
    ("sum(x, axis=-1)", lambda n: {"x": (3, n)}),
    ("mean(x * y + 1, axis=-1)", lambda n: {"x": (2, n), "y": (1, n)}),
    ("x / sqrt(mean(x * x, axis=-1) + 1e-6) + var(x, axis=-1) * y",
     lambda n: {"x": (4, n), "y": (4, 1)}),
    ("var(x, axis=(-2, -1))", lambda n: {"x": (2, 3, 2, n)}),
    ("sum(x - y, axis=(-2, -1))", lambda n: {"x": (3, 2, n), "y": (n,)}),   # y copied along rows
    ("mean(x * y, axis=(-3, -2, -1))", lambda n: {"x": (2, 2, 2, n), "y": (2, 1, 1, 1)}),
    # reduced axes before a kept one: rows added into their result in C order
    ("var(x, axis=(-4, -2, -1))", lambda n: {"x": (3, 2, 2, n)}),
    ("var(x, axis=(-4, -2, -1))", lambda n: {"x": (3, 1, 2, n)}),   # one row: all pairwise
    ("sum(x * y, axis=(-3, -1)) + mean(x, axis=(-3, -1))",
     lambda n: {"x": (2, 4, 3, n), "y": (3, 1)}),
    ("mean(x, axis=(-4, -1))", lambda n: {"x": (5, 1, 1, n)}),
    # counts (the vjps' sums of ones): the row's length, not added up; in one loop with
    # a real sum, alone, and over rows added into their result
    ("x / sum(where(True, 1, x * y), axis=-1) + sum(x, axis=-1)",
     lambda n: {"x": (3, n), "y": (1, n)}),
    ("sum(where(True, 1, x), axis=-1)", lambda n: {"x": (2, n)}),
    ("sum(where(True, 1, x - y), axis=(-3, -1)) * mean(x, axis=(-3, -1))",
     lambda n: {"x": (2, 4, 3, n), "y": (3, 1)}),
    # a long argument (over LONG_BODY instructions): groups of 8 computed side by side,
    # each lane still in NumPy's order
    ("sum((((((((0.3*x + y)*x - 0.5)*x + 0.25)*x - y)*x + 0.5)*x - y)*x + 1) / (1 + x*x),"
     " axis=-1) + x * y", lambda n: {"x": (3, n), "y": (3, 1)}),
]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("text,shapes", CASES)
def test_row_reductions_match_the_evaluator_bit_for_bit(target, dtype, text, shapes):
    e = parse(text, vars={"x": dtype, "y": dtype})
    k = xf.compile(e, target=target)
    assert any(isinstance(s, RowReduce) for s in k.plan.steps)
    rng = np.random.default_rng(len(text))
    for n in LENGTHS:
        env = {name: (rng.standard_normal(shape) * 3 + 0.5).astype(dtype)
               for name, shape in shapes(n).items()}
        args = [env.get(a, np.ones(1, dtype)) for a in k.args]
        _same_bits(k(*args), evaluate(e, {a: v for a, v in zip(k.args, args)}))


# Arguments with C library calls: their values are the target's (libm's, within the
# documented ULP bound of NumPy's), so the reference sums the target's own elementwise
# values with NumPy.
LIBM_CASES = [
    # computed 8 elements at a time on vectors: calls lane by lane, selects, casts from
    # and to integers and bools, ldexp
    "exp(x * 0.1) * where(x > y, x, -y) + int32(x * 4) + ldexp(y, int32(x > 0))",
    # a where with heavy sides is a branch: computed one element at a time
    "where(x > y, exp(x) * sin(x) + cos(x * y) * atan(x) + tanh(y) * erf(x) + asinh(x), x * y)",
]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("text", LIBM_CASES)
@pytest.mark.parametrize("op", ["sum", "mean"])
def test_row_reductions_sum_the_targets_own_values_in_numpys_order(target, dtype, text, op):
    v = {"x": dtype, "y": dtype}
    values = xf.compile(parse(text, vars=v), target=target, args=("x", "y"))
    k = xf.compile(parse(f"{op}({text}, axis=-1)", vars=v), target=target, args=("x", "y"))
    assert any(isinstance(s, RowReduce) for s in k.plan.steps)
    rng = np.random.default_rng(11)
    for n in LENGTHS:
        x = (rng.standard_normal((5, n)) * 3 + 0.5).astype(dtype)   # 5 rows: lanes, then one
        y = (rng.standard_normal((5, 1)) * 3).astype(dtype)
        want = getattr(np, op)(values(x, y), axis=-1, keepdims=True)
        _same_bits(k(x, y), want)


@pytest.mark.filterwarnings("ignore:Mean of empty slice")
@pytest.mark.parametrize("target", TARGETS)
def test_special_values_empty_rows_out_and_threads(target):
    e = parse("mean(x * y, axis=-1) + sum(x, axis=-1)", vars={"x": "float32", "y": "float32"})
    k = xf.compile(e, target=target)
    x = np.random.default_rng(3).standard_normal((64, 200)).astype(np.float32)
    x[1, 5], x[2, 7], x[3, 0], x[3, 1] = np.nan, np.inf, np.inf, -np.inf
    y = np.float32(-2.0)
    want = evaluate(e, {"x": x, "y": y})
    _same_bits(k(x, y), want)
    _same_bits(k(x.T.copy().T, y), want)                   # a non-contiguous input
    out = np.empty((64, 1), np.float32)
    assert k(x, y, out=out) is out
    _same_bits(out, want)
    _same_bits(xf.compile(e, target=target, parallel=True)(x, y), want)
    with np.errstate(all="ignore"):
        for shape in [(0, 5), (4, 0), (0, 0)]:
            empty = np.zeros(shape, np.float32)
            _same_bits(k(empty, y), evaluate(e, {"x": empty, "y": y}))
    with pytest.raises(ValueError, match="reduction"):
        k(np.float32(1.0), y)   # no axis to reduce
    zeros = np.full((3, 16), -0.0, np.float32)           # NumPy's sums start at +0
    _same_bits(k(zeros, np.float32(1)), evaluate(e, {"x": zeros, "y": np.float32(1)}))


@pytest.mark.filterwarnings("ignore:Mean of empty slice")
@pytest.mark.parametrize("target", TARGETS)
def test_accumulated_rows_special_values_and_empty(target):
    e = parse("mean(x, axis=(-3, -1)) - sum(x, axis=(-3, -1))", vars={"x": "float64"})
    k = xf.compile(e, target=target, parallel=True)
    x = np.random.default_rng(7).standard_normal((6, 5, 300))
    x[0, 1, 2], x[3, 2, 0] = np.nan, -np.inf
    _same_bits(k(x), evaluate(e, {"x": x}))
    with np.errstate(all="ignore"):
        for shape in [(0, 5, 3), (2, 0, 3), (2, 5, 0), (1, 1, 1)]:
            empty = np.zeros(shape)
            _same_bits(k(empty), evaluate(e, {"x": empty}))
    zeros = np.full((3, 2, 16), -0.0)
    _same_bits(k(zeros), evaluate(e, {"x": zeros}))


@pytest.mark.parametrize("target", TARGETS)
def test_parallel_rows_match_serial(target):
    e = parse("x / sqrt(mean(x * x, axis=-1) + 1e-6)", vars={"x": "float64"})
    x = np.random.default_rng(5).standard_normal((4096, 300))
    _same_bits(xf.compile(e, target=target, parallel=True)(x), evaluate(e, {"x": x}))


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("axes", ["-1", "(-2, -1)", "(-3, -1)"])
def test_elementwise_results_share_the_reduction_loop(target, axes):
    """An elementwise result of the reduced arguments' shape is stored by the RowReduce
    loop as it goes (one pass over the inputs): a layer's input gradient and its
    parameters' summed gradients, say."""
    v = {"x": "float32", "y": "float32"}
    exprs = (parse("x * y + 1", vars=v), parse(f"sum(x * y, axis={axes})", vars=v),
             parse(f"mean(x * y * y, axis={axes})", vars=v), parse("x * y > 0", vars=v))
    k = xf.compile(exprs, target=target, parallel=True)
    (step,) = k.plan.steps
    assert isinstance(step, RowReduce) and sorted(step.ops) == ["", "", "rmean", "rsum"]
    rng = np.random.default_rng(9)
    for shape, yshape in [((4, 3, 300), (300,)), ((2, 5, 7), (5, 1)), ((64, 3, 4097), (1,))]:
        x = rng.standard_normal(shape).astype(np.float32)
        y = rng.standard_normal(yshape).astype(np.float32)
        got = k(x, y)
        want = [evaluate(e, {"x": x, "y": y}) for e in exprs]
        for a, b in zip(got[:3], want[:3]):
            _same_bits(a, b)
        assert got[3].dtype == bool and np.array_equal(got[3], want[3])


@pytest.mark.parametrize("target", TARGETS)
def test_reductions_of_reductions_and_literals(target):
    """A reduction of a reduction runs as NumPy's (its argument is an array already); a
    value of literals alone stays in the loop, not a step of its own."""
    x = np.random.default_rng(2).standard_normal((5, 6)).astype(np.float32)
    for text in ["sum(mean(x, axis=-1), axis=-1)", "sum(sum(x, axis=-2), axis=-1)",
                 "sum(max(x, axis=-1), axis=-1)", "mean(var(x, axis=-1), axis=(-2, -1))"]:
        e = parse(text, vars={"x": "float32"})
        _same_bits(xf.compile(e, target=target)(x), evaluate(e, {"x": x}))
    k = xf.compile(parse("x * exp(0.5) + 1", vars={"x": "float32"}), target=target)
    assert len(k.plan.steps) == 1


@pytest.mark.parametrize("target", TARGETS)
def test_scalars_join_the_per_row_values(target):
    """With `scalars`, a value of reductions and a scalar parameter (a * 1/sqrt(mean))
    gets a per-row loop instead of being formed per element; the kernel's bits are the
    evaluator's whatever the parameter's shape turns out to be (a full array breaks the
    promise: slower, still right)."""
    from exprforge.targets.build import compile_kernel
    e = parse("x * (a / sqrt(mean(x * x, axis=-1) + 1e-6)) + b",
              vars={"x": "float32", "a": "float32", "b": "float32"})
    plain = lower(e, rows=True)
    promised = lower(e, rows=True, scalars=("a",))

    def per_row_reads(plan):
        return [set(dict(s.params)) for s in plan.steps
                if not isinstance(s, RowReduce) and "v_x" not in dict(s.params)]
    assert not any("v_a" in p for p in per_row_reads(plain))
    assert any("v_a" in p for p in per_row_reads(promised))
    k = compile_kernel(e, target, None, ("x", "a", "b"), scalars=("a",))
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 37)).astype(np.float32)
    for a in (np.float32(0.75), rng.standard_normal((5, 1)).astype(np.float32),
              rng.standard_normal((5, 37)).astype(np.float32)):
        b = np.float32(0.25)
        _same_bits(k(x, a, b), evaluate(e, {"x": x, "a": a, "b": b}))


@pytest.mark.parametrize("target", TARGETS)
def test_inputs_of_the_full_shape_share_one_reduction_loop(target):
    """full=(g, x): x has g's shape, so the sums of x alone and those of g and x run in
    one loop over the rows; the bits are the evaluator's, and an x of another shape is
    refused."""
    from exprforge.targets.build import compile_kernel
    v = {"g": "float32", "x": "float32"}
    roots = tuple(parse(t, vars=v) for t in ("g * x / sqrt(mean(x * x, axis=-1) + 1e-6)",
                                              "sum(g * x, axis=-1) + sum(x, axis=-1)"))
    one = lower(roots, args=("g", "x"), rows=True, full="g")
    both = lower(roots, args=("g", "x"), rows=True, full=("g", "x"))
    assert sum(isinstance(s, RowReduce) for s in one.steps) == 2
    assert sum(isinstance(s, RowReduce) for s in both.steps) == 1
    k = compile_kernel(roots, target, None, ("g", "x"), full=("g", "x"))
    rng = np.random.default_rng(4)
    g, x = rng.standard_normal((2, 6, 37)).astype(np.float32)
    for got, e in zip(k(g, x), roots):
        _same_bits(got, evaluate(e, {"g": g, "x": x}))
    with pytest.raises(ValueError, match="that shape"):
        k(g, x[:1])
    with pytest.raises(ValueError, match="that shape"):   # empty, of another shape
        k(np.ones((0, 37), np.float32), np.ones((0, 1), np.float32))


@pytest.mark.parametrize("target", TARGETS)
def test_values_of_one_layout_share_loops(target):
    """Given `flat` (each argument's dimensions and axes of length 1), per-row values
    share a loop whatever they read: two saved row values and a row sum of the input
    (a backward reading its forward's statistics). The bits are the evaluator's, and an
    argument of another layout is refused."""
    from exprforge.targets.build import compile_kernel
    v = {"g": "float32", "x": "float32", "m": "float32", "n": "float32"}
    roots = tuple(parse(t, vars=v) for t in (
        "g / sqrt(m + 1e-6) + x * x / sqrt(n + 1e-6)",
        "x * sum(g * x, axis=-1) / (m * sqrt(m + 1e-6)) + x * x * sum(g, axis=-1) / n"))
    args = ("g", "x", "m", "n")
    flat = {"g": (2, ()), "x": (2, ()), "m": (2, (-1,)), "n": (2, (-1,))}

    def per_row(plan):   # the loops over the rows alone: reading neither g nor x
        return [s for s in plan.steps if not isinstance(s, (RowReduce, Reduce)) and
                not {"v_g", "v_x"} & set(dict(s.params))]
    options = dict(args=args, rows=True, full=("g", "x"), scalars=("m", "n"))
    assert len(per_row(lower(roots, **options))) > 1
    assert len(per_row(lower(roots, flat=flat, **options))) == 1
    with pytest.raises(ValueError, match="needs full"):
        lower(roots, args=args, flat=flat)
    k = compile_kernel(roots, target, None, args, full=("g", "x"), scalars=("m", "n"),
                       flat=flat)
    rng = np.random.default_rng(6)
    g, x = rng.standard_normal((2, 6, 37)).astype(np.float32)
    m, n = rng.uniform(0.5, 2, (2, 6, 1)).astype(np.float32)
    for got, e in zip(k(g, x, m, n), roots):
        _same_bits(got, evaluate(e, {"g": g, "x": x, "m": m, "n": n}))
    with pytest.raises(ValueError, match="length 1 on axes"):
        k(g, x, np.broadcast_to(m, g.shape).copy(), n)


@pytest.mark.parametrize("target", TARGETS)
def test_calls_of_known_shapes_replay_the_recorded_launches(target):
    """A kernel of several loops records, on its first call with given shapes, what each
    loop was launched with, and launches the same on later calls with those shapes: the
    results are the evaluator's whatever the data (new arrays, the same array twice,
    read-only arrays); other shapes record again; a RowReduce that adds rows into its
    results (a sum over an axis before the row) starts from zeros each call, with no rows
    too; a stretched input is not replayed, and is still right."""
    v = {"x": "float32", "y": "float32"}
    roots = tuple(parse(t, vars=v) for t in (
        "x * y / sqrt(mean(x * x, axis=-1) + 1e-6)", "sum(x * y, axis=-1) + 1",
        "sum(x * y, axis=(-3, -1))"))
    k = xf.compile(roots, target=target)
    rng = np.random.default_rng(8)

    def check(x, y):
        got = k(x, y)
        for a, e in zip(got, roots):
            _same_bits(a, evaluate(e, {"x": x, "y": y}))
        return got
    x, y = rng.standard_normal((2, 5, 7, 33)).astype(np.float32)
    first = check(x, y)
    for _ in range(2):   # the sum over axis -3 adds rows into zeros: replayed too
        check(*rng.standard_normal((2, 5, 7, 33)).astype(np.float32))
    assert all(k._recipes.values())
    acc = xf.compile(tuple(parse(t, vars=v) for t in (
        "sum(x * y, axis=(-3, -1))", "mean(x * y, axis=(-3, -1))")), target=target)
    empty = np.ones((0, 3, 4), np.float32)
    for _ in range(3):   # no rows: zeros and NaNs each time, not memory left from before
        junk = [np.full((1, 3, 1), 7.5, np.float32) for _ in range(50)]
        del junk
        total, mean = acc(empty, empty)
        assert not total.any() and np.isnan(mean).all()
    row_only = xf.compile(roots[:2], target=target)
    for shape in [(5, 33), (5, 33), (2, 3, 16), (5, 33)]:
        a, b, c = rng.standard_normal((3, *shape)).astype(np.float32)
        c.flags.writeable = False
        for args in [(a, b), (a, a), (b, a), (c, b), (b, c)]:
            got = row_only(*args)
            for r, e in zip(got, roots[:2]):
                _same_bits(r, evaluate(e, {"x": args[0], "y": args[1]}))
        assert row_only._recipes[((5, 33), (5, 33))]   # read-only c replays it too
    again = row_only(x[0, 0], y[0, 0])
    assert not np.shares_memory(again[0], row_only(x[0, 0], y[0, 0])[0])
    c = rng.standard_normal((5, 1)).astype(np.float32)
    for _ in range(2):   # c is stretched along the row for the RowReduce: not replayed
        for r, e in zip(row_only(c, x[0, :5]), roots[:2]):
            _same_bits(r, evaluate(e, {"x": c, "y": x[0, :5]}))
    assert first[0].shape == x.shape
