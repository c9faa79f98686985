"""Constant fitting (evolve/fitting.py): weighted least squares, then Lawson's iteration
toward the minimax solution, on a core's float literals.

The minimax claims are checked against an independent optimum: the discrete minimax
polynomial is a linear program (scipy's HiGHS), and plain weighted least squares is
numpy's lstsq on the weighted Vandermonde matrix.
"""
import math

import numpy as np
import pytest
from scipy.optimize import linprog

from exprforge.engine.evaluate import evaluate
from exprforge.engine.expr import const, make, var
from exprforge.engine.printing import to_text
from exprforge.evolve.fitting import Model, fit, parameters, with_constants

T64 = var("t", "float64")
T32 = var("t", "float32")


def horner(t, coeffs, dtype="float64"):
    """coeffs[0] + t*(coeffs[1] + t*(...)) as nested fma, literals rounded to `dtype`
    (a float32 literal keeps the exact value it is given until evaluated)."""
    p = const(float(np.asarray(coeffs[-1], dtype)), dtype)
    for c in reversed(coeffs[:-1]):
        p = make("fma", [p, t, const(float(np.asarray(c, dtype)), dtype)])
    return p


def placeholders(degree):
    """Distinct start values (equal literals would be one parameter)."""
    return [0.1 * (i + 1) + 2.0 ** -10 * i for i in range(degree + 1)]


def by_start_value(core, values):
    """Map fitted values (parameters() order) back to the literals' start values."""
    _, _, start = parameters(core)
    assert len(start) == len(values)
    return dict(zip(start.tolist(), np.asarray(values).tolist()))


def vandermonde(x, degree):
    return np.stack([x ** i for i in range(degree + 1)], axis=1)


def lp_minimax(x, y, w, degree):
    """The polynomial minimizing max_i w_i |p(x_i) - y_i|: an LP in (coefficients, e)."""
    V = vandermonde(x, degree) * w[:, None]
    wy = w * y
    n = degree + 1
    ones = np.ones((len(x), 1))
    a_ub = np.vstack([np.hstack([V, -ones]), np.hstack([-V, -ones])])
    b_ub = np.concatenate([wy, -wy])
    cost = np.zeros(n + 1)
    cost[-1] = 1.0
    res = linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=[(None, None)] * n + [(0, None)],
                  method="highs")
    assert res.success, res.message
    return res.x[:n], res.x[-1]


# --- linear cores (polynomials) ------------------------------------------------------------

def test_recovers_a_polynomial_from_noiseless_data():
    truth = [0.5, -1.25, 0.75, 0.125]
    x = np.linspace(-1.0, 1.0, 301)
    y = vandermonde(x, 3) @ truth
    core = horner(T64, placeholders(3))
    values, err = fit(core, {"t": x}, y, np.ones_like(x))
    fitted = by_start_value(core, values)
    got = [fitted[s] for s in placeholders(3)]          # coefficient of t^i
    np.testing.assert_allclose(got, truth, rtol=0, atol=1e-13)
    assert err < 1e-13


def test_float32_core_is_fitted_in_float64():
    """A float32 core (as the search has) is fitted in float64: the recovered values are
    not rounded to float32 until with_constants."""
    truth = [1 / 3, 0.1, -0.7]
    x = np.linspace(-0.5, 0.5, 200)
    y = vandermonde(x, 2) @ truth
    core = horner(T32, placeholders(2), "float32")
    values, err = fit(core, {"t": x}, y, np.ones_like(x))
    fitted = by_start_value(core, values)
    got = [fitted[float(np.float32(s))] for s in placeholders(2)]
    np.testing.assert_allclose(got, truth, rtol=0, atol=1e-14)
    assert got[0] != float(np.float32(1 / 3))
    assert err < 1e-14


def test_polynomial_cores_are_linear_in_their_constants():
    x = np.linspace(0, 1, 10)
    assert Model(horner(T64, placeholders(4)), {"t": x}, 10).linear
    nonlinear = (const(1.0) * T64 + const(0.3)) * (const(0.25) * T64 + const(-0.7))
    assert not Model(nonlinear, {"t": x}, 10).linear


def test_lawson_zero_steps_is_weighted_least_squares():
    """lawson_steps=0 is one weighted least-squares solve: numpy's lstsq agrees."""
    x = np.linspace(-0.35, 0.35, 801)
    y = np.exp(x)
    w = 1.0 / y                                        # relative error weights
    core = horner(T64, placeholders(4))
    values, err = fit(core, {"t": x}, y, w, lawson_steps=0)
    fitted = by_start_value(core, values)
    got = np.array([fitted[s] for s in placeholders(4)])
    V = vandermonde(x, 4)
    want = np.linalg.lstsq(V * w[:, None], y * w, rcond=None)[0]
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    assert err == pytest.approx(np.max(w * np.abs(V @ want - y)), rel=1e-6)


@pytest.mark.parametrize("weighted", [False, True], ids=["absolute", "relative"])
def test_lawson_improves_on_least_squares_for_exp(weighted):
    """exp on [-0.35, 0.35], degree 4: least squares is ~2x off the minimax error;
    Lawson's iteration gets within a few percent of the LP optimum."""
    x = np.linspace(-0.35, 0.35, 1001)
    y = np.exp(x)
    w = 1.0 / y if weighted else np.ones_like(x)
    core = horner(T64, placeholders(4))
    _, lsq_err = fit(core, {"t": x}, y, w, lawson_steps=0)
    values, err = fit(core, {"t": x}, y, w)
    _, optimum = lp_minimax(x, y, w, 4)
    assert err <= lsq_err
    assert err < 0.6 * lsq_err                         # a real improvement
    assert optimum * (1 - 1e-9) <= err <= 1.05 * optimum
    # the returned error is the error of the returned constants
    fitted = by_start_value(core, values)
    coeffs = [fitted[s] for s in placeholders(4)]
    assert err == pytest.approx(np.max(w * np.abs(vandermonde(x, 4) @ coeffs - y)), rel=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_weighted_minimax_never_worse_than_least_squares(seed):
    """Whatever the weights, the Lawson result's weighted max error is at most the plain
    weighted least-squares one (and at least the LP optimum)."""
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(-1, 1, 400))
    y = np.sin(3 * x) + 0.1 * x ** 5
    w = rng.uniform(0.1, 10.0, x.size)
    core = horner(T64, placeholders(3))
    _, lsq_err = fit(core, {"t": x}, y, w, lawson_steps=0)
    _, err = fit(core, {"t": x}, y, w)
    _, optimum = lp_minimax(x, y, w, 3)
    assert optimum * (1 - 1e-9) <= err <= lsq_err


def test_core_without_constants_returns_an_empty_vector_and_its_error():
    x = np.linspace(-1, 1, 50)
    y = np.cos(x)
    w = np.full_like(x, 2.0)
    values, err = fit(T64 * T64 - T64, {"t": x}, y, w)
    assert isinstance(values, np.ndarray) and values.shape == (0,)
    assert err == pytest.approx(np.max(2.0 * np.abs(x * x - x - y)), rel=1e-15)


# --- non-linear cores ---------------------------------------------------------------------

def test_nonlinear_core_recovers_a_representable_target():
    """(c0 t + c1)(c2 t + c3): Gauss-Newton reaches a quadratic with real roots."""
    core = (const(1.0) * T64 + const(0.3)) * (const(0.25) * T64 + const(-0.7))
    x = np.linspace(-0.35, 0.35, 1001)
    y = (2 * x + 1) * (0.5 * x - 3)
    model = Model(core, {"t": x}, x.size)
    start_err = np.max(np.abs(model(model.start) - y))
    values, err = fit(core, {"t": x}, y, np.ones_like(x))
    assert start_err > 1
    assert err < 1e-12
    assert np.max(np.abs(model(values) - y)) == pytest.approx(err, abs=1e-15)


def test_nonlinear_core_reduces_the_error_for_exp():
    core = (const(1.0) * T64 + const(0.3)) * (const(0.25) * T64 + const(-0.7))
    x = np.linspace(-0.35, 0.35, 1001)
    y = np.exp(x)
    model = Model(core, {"t": x}, x.size)
    start_err = np.max(np.abs(model(model.start) - y))
    values, err = fit(core, {"t": x}, y, np.ones_like(x))
    assert err < 0.05 * start_err
    # the best quadratic is a lower bound for this product of two linear factors
    _, optimum = lp_minimax(x, y, np.ones_like(x), 2)
    assert err >= optimum * (1 - 1e-9)
    assert np.max(np.abs(model(values) - y)) == pytest.approx(err, rel=1e-12)


def test_fit_never_returns_worse_than_the_start():
    """A degenerate start (proportional factors: a rank-2 Jacobian) where undamped
    Gauss-Newton steps overshoot: fit keeps the best constants seen, here the start."""
    core = (const(1.0) * T64 + const(0.5)) * (const(0.25) * T64 + const(0.125))
    x = np.linspace(-0.35, 0.35, 1001)
    y = (2 * x + 1) * (0.5 * x - 3)
    model = Model(core, {"t": x}, x.size)
    start_err = np.max(np.abs(model(model.start) - y))
    values, err = fit(core, {"t": x}, y, np.ones_like(x))
    assert err <= start_err
    assert np.max(np.abs(model(values) - y)) == pytest.approx(err, rel=1e-12)


# --- parameters and with_constants --------------------------------------------------------

def test_with_constants_rounds_to_float32_exactly():
    coeffs = [0.5, 0.25, 0.125]
    core = horner(T32, coeffs, "float32")
    _, _, start = parameters(core)
    values = [0.1, 1 / 3, -math.pi]                    # in parameters() order
    out = with_constants(core, values, "float32")
    lits = [n for n in out.toposort() if n.op == "const"]
    assert all(n.dtype == "float32" for n in lits)
    assert parameters(out)[2].tolist() == [float(np.float32(v)) for v in values]
    # the same program as one written with the rounded constants in their places
    new = dict(zip(start.tolist(), values))
    want = horner(T32, [float(np.float32(new[c])) for c in coeffs], "float32")
    assert out is want or to_text(out) == to_text(want)
    x = np.linspace(-1, 1, 33, dtype=np.float32)
    res = np.asarray(evaluate(out, {"t": x}))
    assert res.dtype == np.float32
    np.testing.assert_array_equal(res, np.asarray(evaluate(want, {"t": x})))


def test_with_constants_substitutes_all_literals_at_once():
    """Swapping two literals' values is a simultaneous substitution, not a chain."""
    core = make("fma", [const(0.5, "float32"), T32, const(0.25, "float32")])
    swapped = with_constants(core, [0.25, 0.5], "float32")
    assert to_text(swapped) == to_text(
        make("fma", [const(0.25, "float32"), T32, const(0.5, "float32")]))


def test_with_constants_of_the_start_values_is_the_same_core():
    core = horner(T32, placeholders(5), "float32")
    _, _, start = parameters(core)
    assert to_text(with_constants(core, start, "float32")) == to_text(core)


def test_parameters_replace_literals_by_float64_variables():
    core = horner(T32, placeholders(3), "float32")
    expr, params, start = parameters(core)
    assert len(params) == len(start) == 4
    assert all(p.op == "var" and p.dtype == "float64" for p in params)
    assert len({p.name for p in params}) == 4
    assert expr.dtype == "float64"
    assert not any(n.op == "const" and n.dtype.startswith("float") for n in expr.toposort())
    assert sorted(start.tolist()) == sorted(float(np.float32(v)) for v in placeholders(3))


def test_shared_equal_literals_are_one_parameter():
    """Documented behaviour: equal literals are one DAG node, hence ONE parameter. A core
    writing the same placeholder twice cannot give the two places different values:
    fma(c, t, c) fits 3t + 3 exactly, but 2t + 3 only as the best single c."""
    core = make("fma", [const(0.5), T64, const(0.5)])
    _, params, start = parameters(core)
    assert len(params) == 1 and start.tolist() == [0.5]
    x = np.linspace(-1, 1, 201)
    values, err = fit(core, {"t": x}, 3 * x + 3, np.ones_like(x))
    assert values.tolist() == pytest.approx([3.0]) and err < 1e-14
    values, err = fit(core, {"t": x}, 2 * x + 3, np.ones_like(x))
    # c(t + 1) - (2t + 3) is -1 at t = -1 whatever c: the best max error is 1, reached
    # for every c in [2, 3]
    assert len(values) == 1 and 2 <= values[0] <= 3
    assert err == pytest.approx(1.0, abs=1e-12)
    # with_constants sets both places
    out = with_constants(core, [2.0], "float64")
    assert to_text(out) == to_text(make("fma", [const(2.0), T64, const(2.0)]))


def test_constants_rounding_to_the_same_float32_merge():
    """Consequence of sharing: two fitted values that round to one float32 become one
    literal, so the rounded core has one parameter fewer."""
    core = make("fma", [const(0.5, "float32"), T32, const(0.25, "float32")])
    out = with_constants(core, [0.3, 0.3 + 1e-12], "float32")
    assert len(parameters(out)[1]) == 1


# --- constants representable in the program's dtype ---------------------------------------

@pytest.mark.parametrize("weighted", [False, True], ids=["absolute", "relative"])
def test_fit_in_float32_is_representable_and_no_worse_than_rounding(weighted):
    """fit(dtype=float32): values that are float32 numbers, and a weighted max error no
    worse than rounding the float64 solution (rounding in turn with refits is tried and
    kept only when better)."""
    x = np.linspace(-0.35, 0.35, 1001)
    y = np.exp(x)
    w = (1.0 / y if weighted else np.ones_like(x)) * 2.0 ** 24   # in float32 ULPs
    core = horner(T32, placeholders(4), "float32")
    c64, err64 = fit(core, {"t": x}, y, w)
    c32, err32 = fit(core, {"t": x}, y, w, dtype="float32")
    assert (np.asarray(c32, np.float32).astype(np.float64) == c32).all()
    model = Model(core, {"t": x}, x.size)
    rounded = np.asarray(c64, np.float32).astype(np.float64)
    naive = np.max(w * np.abs(model(rounded) - y))
    assert err32 == pytest.approx(np.max(w * np.abs(model(c32) - y)), rel=1e-12)
    assert err32 <= naive
    # no float32 constants beat the best real ones (Lawson's float64 result itself is
    # only near-optimal, so a rounded solution may edge below it)
    _, optimum = lp_minimax(x, y, w / 2.0 ** 24, 4)
    assert err32 >= optimum * 2.0 ** 24 * (1 - 1e-9)
    assert err32 <= 1.1 * err64


def test_thresholds_are_not_fitted():
    """Literals a comparison reads (thresholds) are not parameters: the error is not
    differentiable in them. with_constants leaves them as they are."""
    core = make("where", [T64 < const(0.25), const(1.5) * T64, const(0.75)])
    _, params, start = parameters(core)
    assert sorted(start.tolist()) == [0.75, 1.5]
    x = np.linspace(-1, 1, 401)
    y = np.where(x < 0.25, 3.0 * x, -2.0)
    values, err = fit(core, {"t": x}, y, np.ones_like(x))
    assert err < 1e-12
    assert sorted(np.round(values, 12).tolist()) == [-2.0, 3.0]
    out = with_constants(core, values, "float64")
    assert "0.25" in to_text(out)
