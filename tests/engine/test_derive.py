"""Symbolic derivatives: every differentiable row of the op table against mpmath's
numerical derivative of the row's mp_fn, the chain rule against finite differences,
subgradient conventions, reductions (directional derivatives), piecewise-constant
integer parts, and the clean-up of results."""
import mpmath as mp
import numpy as np
import pytest

from exprforge.engine.derive import derive
from exprforge.engine.evaluate import evaluate
from exprforge.engine.expr import F, const, make, var
from exprforge.engine.ops import OPS
from exprforge.engine.parse import parse

DIFF_ROWS = sorted(n for n, o in OPS.items() if o.group == "elementwise" and o.out == "T"
                   and o.tkind in ("float", "num") and (o.deriv is not None or o.jvp is not None))
STEP_ROWS = ["ceil", "floor", "round", "sign", "trunc"]  # derivative zero almost everywhere
N_POINTS = 20

# moderate sub-ranges of the row's domain where finite differences are meaningful;
# rows not listed use their domain clipped to [-3, 3] and pulled in from its ends
SUBRANGE = {
    "tan": [(-1.3, 1.3)],
    "pow": [(0.2, 4.0), (-3.0, 3.0)],
}


def _distance_to_int(v):
    return np.abs(v - np.round(v))


# points to reject: kinks, jumps and poles, per row (args are float64 arrays)
AWAY_FROM_KINK = {
    "abs": lambda a: np.abs(a[0]) > 0.1,
    "relu": lambda a: np.abs(a[0]) > 0.1,
    "sign": lambda a: np.abs(a[0]) > 0.1,
    "cbrt": lambda a: np.abs(a[0]) > 0.1,
    "copysign": lambda a: (np.abs(a[0]) > 0.1) & (np.abs(a[1]) > 0.1),
    "min": lambda a: np.abs(a[0] - a[1]) > 0.1,
    "max": lambda a: np.abs(a[0] - a[1]) > 0.1,
    "floor": lambda a: _distance_to_int(a[0]) > 0.05,
    "ceil": lambda a: _distance_to_int(a[0]) > 0.05,
    "trunc": lambda a: _distance_to_int(a[0]) > 0.05,
    "round": lambda a: _distance_to_int(a[0] - 0.5) > 0.05,
    "fmod": lambda a: _distance_to_int(a[0] / a[1]) > 0.05,
    "atan2": lambda a: np.hypot(a[0], a[1]) > 0.2,
    "hypot": lambda a: np.hypot(a[0], a[1]) > 0.2,
}


def subranges(name):
    o = OPS[name]
    if name in SUBRANGE:
        out = SUBRANGE[name]
    else:
        out = []
        for lo, hi in o.domain:
            lo, hi = max(lo, -3.0), min(hi, 3.0)
            pad = 0.05 * (hi - lo)
            out.append((lo + pad, hi - pad))
    for (lo, hi), (dlo, dhi) in zip(out, o.domain):
        assert dlo <= lo < hi <= dhi, (name, (lo, hi), (dlo, dhi))
    return out


def sample_points(name, rng):
    """N_POINTS argument tuples inside the row's domain, away from kinks."""
    o = OPS[name]
    keep = AWAY_FROM_KINK.get(name, lambda a: np.ones(len(a[0]), bool))
    cols = []
    for letter, (lo, hi) in zip(o.args, subranges(name)):
        if letter == "I":
            cols.append(rng.integers(int(np.ceil(lo)), int(np.floor(hi)), 10 * N_POINTS,
                                     endpoint=True).astype(np.int32))
        else:
            cols.append(rng.uniform(lo, hi, 10 * N_POINTS))
    ok = keep([c.astype(np.float64) for c in cols])
    cols = [c[ok][:N_POINTS] for c in cols]
    assert len(cols[0]) == N_POINTS, name
    return cols


def row_expr(name, dtype="float64"):
    o = OPS[name]
    args = [var(f"a{i}", dtype if letter == "T" else "int32") for i, letter in enumerate(o.args)]
    return make(name, args), args


def mp_partial(name, point, i):
    """mpmath's numerical derivative of the row's mp_fn in argument i, the others fixed."""
    fn = OPS[name].mp_fn
    with mp.workdps(40):
        args = [mp.mpf(float(v)) if OPS[name].args[j] == "T" else int(v)
                for j, v in enumerate(point)]

        def along(t):
            return fn(*args[:i], t, *args[i + 1:])
        return float(mp.diff(along, args[i]))


def evaluate_full(e, env, shape):
    return np.broadcast_to(evaluate(e, env), shape)


def literal_ones_multiplied(e):
    """mul nodes with a literal 1 (or a cast of one) as an argument."""
    def is_one(a):
        while a.op == "cast":
            a = a.args[0]
        return a.op == "const" and not isinstance(a.attr, (str, bool)) and a.attr == 1
    return [n for n in e.toposort() if n.op == "mul" and any(is_one(a) for a in n.args)]


@pytest.mark.parametrize("name", DIFF_ROWS)
def test_row_derivative_matches_mpmath(name):
    o = OPS[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    e, args = row_expr(name)
    cols = sample_points(name, rng)
    env = {f"a{i}": c for i, c in enumerate(cols)}
    for i, (letter, a) in enumerate(zip(o.args, args)):
        d = derive(e, a.name)
        assert not literal_ones_multiplied(d), (name, i, str(d))
        if letter != "T":  # an integer argument: piecewise constant, so zero
            assert d.op == "const" and d.attr == 0, (name, i, str(d))
            continue
        assert d.dtype == "float64"
        got = evaluate_full(d, env, (N_POINTS,))
        want = np.array([mp_partial(name, [c[k] for c in cols], i) for k in range(N_POINTS)])
        assert np.all(np.isfinite(want)), (name, i)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9,
                                   err_msg=f"d {name} / d arg{i}: {d}")


@pytest.mark.parametrize("name", STEP_ROWS)
def test_step_functions_have_zero_derivative(name):
    assert name in DIFF_ROWS
    e, (x,) = row_expr(name)
    d = derive(e, "a0")
    assert d.op == "const" and d.attr == 0 and d.dtype == "float64"
    pts = np.array([-2.7, -1.3, -0.2, 0.3, 1.7, 2.2, 1e10 + 0.25])
    np.testing.assert_array_equal(evaluate_full(d, {"a0": pts}, pts.shape), 0.0)
    # and the product rule keeps the step function as a factor: (s(x) * x)' = s(x)
    d2 = derive(e * x, "a0")
    np.testing.assert_array_equal(evaluate(d2, {"a0": pts}), evaluate(e, {"a0": pts}))


@pytest.mark.parametrize("name", DIFF_ROWS)
def test_float32_rows_give_float32_derivatives(name):
    o = OPS[name]
    e, args = row_expr(name, "float32")
    assert e.dtype == "float32"
    env = {f"a{i}": c.astype(np.float32) if o.args[i] == "T" else c
           for i, c in enumerate(sample_points(name, np.random.default_rng(0)))}
    for letter, a in zip(o.args, args):
        if letter != "T":
            continue
        d = derive(e, a.name)
        assert d.dtype == "float32", (name, str(d))
        assert evaluate(d, env).dtype == np.float32, (name, str(d))


# --- the chain rule -------------------------------------------------------------------------

COMPOSITES = [
    ("exp(sin(x) * y) / (1 + x * x)", [(-2, 2), (-1.5, 1.5)]),
    ("atan2(x * y, x + 1)", [(0.2, 2), (-2, 2)]),
    ("where(x > 0, sqrt(x), -x)", [(-3, 3), (-1, 1)]),
    ("log1p(hypot(x, y)) * tanh(x - y)", [(-2, 2), (-2, 2)]),
    ("x ** y + y ** x", [(0.3, 3), (0.3, 3)]),
    ("sigmoid(x * y) * x / (1 + y * y)", [(-3, 3), (-3, 3)]),
    ("(t := sin(x) * cos(y)) * t + cbrt(t + 2)", [(-3, 3), (-3, 3)]),
    ("fma(x, y, exp2(-x)) - erf(x * 0.5) * erfc(y)", [(-2, 2), (-2, 2)]),
    ("ldexp(x, 3) * y", [(-2, 2), (-2, 2)]),
]


def central_difference(e, env, name, h=1e-5):
    x = env[name]
    step = h * np.maximum(1.0, np.abs(x))
    up = evaluate(e, {**env, name: x + step})
    down = evaluate(e, {**env, name: x - step})
    return (up - down) / (2 * step)


@pytest.mark.parametrize("text,ranges", COMPOSITES, ids=[t for t, _ in COMPOSITES])
def test_chain_rule_against_finite_differences(text, ranges):
    e = parse(text, vars={"x": "float64", "y": "float64"})
    rng = np.random.default_rng(len(text))
    env = {n: rng.uniform(lo, hi, 200) for n, (lo, hi) in zip("xy", ranges)}
    keep = np.abs(env["x"]) > 0.05  # away from the kink of the where
    env = {n: v[keep][:40] for n, v in env.items()}
    for name in "xy":
        d = derive(e, name)
        assert not literal_ones_multiplied(d), str(d)
        got = evaluate_full(d, env, env["x"].shape)
        np.testing.assert_allclose(got, central_difference(e, env, name), rtol=1e-5, atol=1e-7,
                                   err_msg=f"d({text})/d{name} = {d}")


def test_where_piecewise_derivative_values():
    e = parse("where(x > 0, sqrt(x), -x)")
    d = derive(e, "x")
    np.testing.assert_allclose(evaluate(d, {"x": np.array([4.0, 0.25, -2.0])}), [0.25, 1.0, -1.0])


# --- subgradient conventions ------------------------------------------------------------------

def test_abs_and_relu_have_zero_derivative_at_zero():
    x = var("x")
    pts = np.array([-0.0, 0.0, -2.0, 3.0])
    np.testing.assert_array_equal(evaluate(derive(abs(x), "x"), {"x": pts}), [0, 0, -1, 1])
    np.testing.assert_array_equal(evaluate(derive(F.relu(x), "x"), {"x": pts}), [0, 0, 0, 1])


@pytest.mark.parametrize("op", ["min", "max"])
def test_min_max_pick_the_first_argument_on_ties(op):
    x, y = var("x"), var("y")
    pts = {"x": np.array([1.5, -2.0, 0.0, 1.0, 3.0]), "y": np.array([1.5, -2.0, -0.0, 2.0, 2.0])}
    wins = {"min": [1, 1, 1, 1, 0], "max": [1, 1, 1, 0, 1]}[op]
    e = make(op, (x, y))
    np.testing.assert_array_equal(evaluate(derive(e, "x"), pts), wins)
    np.testing.assert_array_equal(evaluate(derive(e, "y"), pts), [1 - w for w in wins])
    # swapped arguments: the first argument is now y
    e2 = make(op, (y, x))
    np.testing.assert_array_equal(evaluate(derive(e2, "y"), pts)[:3], [1, 1, 1])
    np.testing.assert_array_equal(evaluate(derive(e2, "x"), pts)[:3], [0, 0, 0])


def test_min_max_select_tangents_without_nan():
    # where the other branch's tangent is infinite, the selected one is still clean
    x = var("x")
    e = make("min", (F.sqrt(x), const(5.0)))
    np.testing.assert_array_equal(evaluate(derive(e, "x"), {"x": np.array([0.0, 100.0])}),
                                  [np.inf, 0.0])
    e = make("max", (const(5.0), F.sqrt(x)))
    np.testing.assert_array_equal(evaluate(derive(e, "x"), {"x": np.array([0.0])}), [0.0])


def test_where_does_not_leak_nan_from_the_other_branch():
    e = parse("where(x > 0, sqrt(x), 0)")
    d = derive(e, "x")
    got = evaluate(d, {"x": np.array([-1.0, 4.0])})
    np.testing.assert_array_equal(got, [0.0, 0.25])


# --- variables, dtypes -------------------------------------------------------------------------

def test_derivative_of_an_absent_variable_is_a_zero_literal():
    x, y = var("x"), var("y")
    for wrt in ("z", var("z")):
        d = derive(x * y + F.sin(x), wrt)
        assert d.op == "const" and d.attr == 0 and d.dtype == "float64"
    d = derive(var("x", "float32") * 2, "z")
    assert d.op == "const" and d.attr == 0 and d.dtype == "float32"


def test_derive_with_respect_to_a_node():
    x, y = var("x"), var("y")
    assert derive(x * y, x) is y
    assert derive(x * y, y) is x
    assert derive(x, x).op == "const" and derive(x, x).attr == 1
    with pytest.raises(TypeError):
        derive(x * y, x + y)


def test_float32_expressions_keep_float32():
    x, y = var("x", "float32"), var("y", "float32")
    e = F.exp(F.sin(x) * y) / (1 + x * x) + F.atan2(x, y) ** 2
    env = {"x": np.linspace(0.1, 2, 7, dtype=np.float32),
           "y": np.linspace(-2, 2, 7, dtype=np.float32)}
    for name in "xy":
        d = derive(e, name)
        assert d.dtype == "float32"
        assert all(n.dtype != "float64" for n in d.toposort()), str(d)
        got = evaluate(d, env)
        assert got.dtype == np.float32
        want = evaluate(derive(e, name), env, dtype="float64")
        np.testing.assert_allclose(got, want, rtol=1e-4)
    assert derive(x * 3, "x").dtype == "float32"


# --- reductions: derivatives along an all-ones change of x ---------------------------------------

def directional(e, x, h=1e-6):
    return (evaluate(e, {"x": x + h}) - evaluate(e, {"x": x - h})) / (2 * h)


X2 = np.random.default_rng(11).uniform(-2, 2, (4, 6))


@pytest.mark.parametrize("text,closed_form", [
    ("sum(x * x, axis=-1)", lambda x: np.sum(2 * x, axis=-1, keepdims=True)),
    ("mean(x * x, axis=-1)", lambda x: np.mean(2 * x, axis=-1, keepdims=True)),
    ("var(x * x, axis=-1)", lambda x: 2 * np.mean((x * x - np.mean(x * x, -1, keepdims=True))
                                                  * 2 * x, axis=-1, keepdims=True)),
    ("max(x * x, axis=-1)", lambda x: 2 * np.take_along_axis(
        x, np.argmax(x * x, axis=-1)[:, None], axis=-1)),
    ("var(x, axis=-1)", lambda x: np.zeros((x.shape[0], 1))),  # a shift leaves var alone
    ("sum(exp(x), axis=-2)", lambda x: np.sum(np.exp(x), axis=-2, keepdims=True)),
    ("sum(sin(x), axis=(-2, -1))", lambda x: np.sum(np.cos(x), keepdims=True)),
])
def test_reduction_directional_derivative(text, closed_form):
    e = parse(text)
    d = derive(e, "x")
    got = evaluate(d, {"x": X2})
    want = closed_form(X2)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got, directional(e, X2), rtol=1e-6, atol=1e-7)


def test_max_reduction_splits_the_tangent_over_ties():
    x = var("x")
    d = derive(x.max(), "x")
    got = evaluate(d, {"x": np.array([[1.0, 3.0, 3.0], [0.0, -1.0, 2.0]])})
    np.testing.assert_array_equal(got, [[1.0], [1.0]])
    d = derive((x * x).max(), "x")  # ties at 3 and -3: tangents 6 and -6 average to 0
    np.testing.assert_array_equal(evaluate(d, {"x": np.array([[3.0, -3.0, 1.0]])}), [[0.0]])


@pytest.mark.parametrize("text,want", [
    ("x - mean(x, axis=-1)", lambda x: np.zeros_like(x)),
    ("sum(x, axis=-1)", lambda x: np.full((x.shape[0], 1), float(x.shape[1]))),
    ("mean(x, axis=-1) * 2", lambda x: np.full((x.shape[0], 1), 2.0)),
    ("x * mean(x, axis=-1)", lambda x: np.mean(x, axis=-1, keepdims=True) + x),
])
def test_constant_tangent_reaching_a_reduction(text, want):
    e = parse(text)
    d = derive(e, "x")
    got = np.broadcast_to(evaluate(d, {"x": X2}), evaluate(e, {"x": X2}).shape)
    np.testing.assert_allclose(got, want(X2), atol=1e-12)
    np.testing.assert_allclose(got, directional(e, X2), rtol=1e-6, atol=1e-7)


# --- integer-valued parts are piecewise constant --------------------------------------------------

def test_floor_times_x():
    e = parse("floor(x) * x")
    d = derive(e, "x")
    pts = np.array([-2.5, -0.3, 0.4, 1.5, 7.25])
    np.testing.assert_array_equal(evaluate(d, {"x": pts}), np.floor(pts))
    assert d is parse("floor(x)")


def test_range_reduction_derivative():
    # exp(x) = 2^k * exp(x - k ln2) with k = int32(floor(x / ln2)): the derivative is exp(x)
    x = var("x")
    k = make("cast", (F.floor(x / F.ln2()),), "int32")
    r = x - make("cast", (k,), "float64") * F.ln2()
    e = F.ldexp(F.exp(r), k)
    d = derive(e, "x")
    pts = np.linspace(-20, 20, 37) + 0.1
    np.testing.assert_allclose(evaluate(e, {"x": pts}), np.exp(pts), rtol=1e-14)
    np.testing.assert_allclose(evaluate(d, {"x": pts}), np.exp(pts), rtol=1e-14)
    np.testing.assert_allclose(evaluate(d, {"x": pts}), central_difference(e, {"x": pts}, "x"),
                               rtol=1e-6)


def test_integer_casts_and_comparisons_contribute_nothing():
    x = var("x")
    e = make("cast", (make("cast", (x * 3,), "int64"),), "float64") + F.where(x > 1, 2.0, 1.0)
    d = derive(e, "x")
    assert d.op == "const" and d.attr == 0
    # a float-to-float cast passes the tangent through
    x32 = var("x", "float32")
    d = derive(make("cast", (x32 * x32,), "float64"), "x")
    np.testing.assert_allclose(evaluate(d, {"x": np.float32([1.5, -2.0])}), [3.0, -4.0])


def test_bitcast_of_bits_of_x_cannot_be_differentiated():
    x = var("x", "float32")
    bits = make("bitcast", (x,), "int32")
    mantissa = make("bitcast", ((bits & 0x007FFFFF) | 0x3F800000,), "float32")
    with pytest.raises(ValueError, match="bitcast"):
        derive(mantissa * x, "x")
    with pytest.raises(ValueError):
        derive(make("bitcast", (bits + 1,), "float32"), x)
    # bits that do not depend on x are fine, and an int result of a bitcast is constant
    n = var("n", "int32")
    d = derive(make("bitcast", (n,), "float32") * x, "x")
    assert d is make("bitcast", (n,), "float32")
    assert derive(make("cast", (bits,), "float32") + x, "x").attr == 1


# --- clean-up --------------------------------------------------------------------------------------

def test_product_derivative_is_the_other_factor():
    x, y = var("x"), var("y")
    assert derive(x * y, "x") is y
    assert derive(y * x, "x") is y


def test_scaled_variable():
    x = var("x")
    d = derive(3 * x, "x")
    assert float(evaluate(d, {"x": np.array([1.0, 2.0])}).ravel()[0]) == 3.0
    np.testing.assert_array_equal(np.broadcast_to(evaluate(d, {"x": np.ones(3)}), (3,)), 3.0)
    assert d.op == "const" and d.attr == 3


def test_cube_prints_as_three_x_squared():
    x = var("x")
    assert str(derive(x ** 3, "x")) == "3 * x**2"


@pytest.mark.parametrize("text", [t for t, _ in COMPOSITES] + [
    "x * 1 + 0 + y", "x / 1 - 0", "-(-x) * y", "exp(x) * (x + 1)", "sum(x * y, axis=-1)",
    "x - mean(x, axis=-1)", "sqrt(x) * 1.0", "relu(x) * max(x, y)",
])
def test_no_multiplication_by_literal_one(text):
    e = parse(text, vars={"x": "float64", "y": "float64"})
    for name in "xy":
        d = derive(e, name)
        assert not literal_ones_multiplied(d), str(d)
