"""Reference evaluation (exact dtype semantics) and the mpmath oracle."""
from fractions import Fraction

import mpmath as mp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from exprforge.engine import dtypes as dt
from exprforge.engine.evaluate import evaluate, exact, named_value, round_mpf
from exprforge.engine.expr import const, make, var
from exprforge.engine.parse import parse
from tests.strategies import float_exprs

x32 = var("x", "float32")


def test_float32_in_float32_out_no_silent_upcast():
    e = parse("exp(x) * 0.1 + sqrt(abs(x)) / 3", vars={"x": "float32"})
    out = evaluate(e, {"x": np.linspace(-2, 2, 9, dtype=np.float32)})
    assert out.dtype == np.float32


def test_every_op_rounds_to_float32_as_a_kernel_would():
    # (a + b) - a in float32 loses b's low bits; a float64 detour would keep them
    e = parse("(x + y) - x", vars={"x": "float32", "y": "float32"})
    got = evaluate(e, {"x": np.float32(1e8), "y": np.float32(1.5)})
    assert got == np.float32(np.float32(1e8) + np.float32(1.5)) - np.float32(1e8)
    assert got != np.float32(1.5)


def test_evaluate_with_dtype_retypes_the_program():
    e = parse("x * 0.1 + 1")  # float64 variables
    got = evaluate(e, {"x": [1.0, 2.0]}, dtype="float32")
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, np.float32([1, 2]) * np.float32(0.1) + np.float32(1))


def test_broadcasting():
    e = parse("x * y + 1")
    out = evaluate(e, {"x": np.arange(3.0).reshape(3, 1), "y": np.arange(4.0)})
    assert out.shape == (3, 4)
    np.testing.assert_array_equal(out, np.arange(3.0).reshape(3, 1) * np.arange(4.0) + 1)


def test_literals_are_correctly_rounded_to_the_dtype():
    for text in ["0.1", "1e-45", "3.4028235677973366e38", "0.3333333333333333333333333"]:
        got = evaluate(parse(text), dtype="float32")
        assert got == np.float32(dt.round_fraction(Fraction(text), "float32"))


@settings(max_examples=300, deadline=None)
@given(st.fractions(min_value=-1e6, max_value=1e6, max_denominator=10 ** 9))
def test_round_fraction_is_correct_rounding(q):
    for dtype, ftype in (("float32", np.float32), ("float64", np.float64)):
        r = dt.round_fraction(q, dtype)
        below, above = sorted([ftype(r), np.nextafter(ftype(r), ftype(np.inf) if
                                                    Fraction(float(r)) < q else ftype(-np.inf))])
        # r is the nearest float: no float is closer to q
        assert abs(Fraction(float(r)) - q) <= abs(Fraction(float(below)) - q)
        assert abs(Fraction(float(r)) - q) <= abs(Fraction(float(above)) - q)


def test_named_constants_correctly_rounded():
    assert named_value("pi", "float32") == np.float32(3.14159265)
    assert named_value("pi", "float64") == np.pi
    assert named_value("ln2", "float64") == np.log(2.0)


def test_fma_is_correctly_rounded_and_differs_from_mul_add():
    rng = np.random.default_rng(0)
    a, b, c = (rng.standard_normal(2000).astype(np.float32) for _ in range(3))
    got = evaluate(parse("fma(a, b, c)", dtype="float32"), {"a": a, "b": b, "c": c})
    exact_values = [dt.round_fraction(Fraction(float(p)) * Fraction(float(q)) + Fraction(float(r)),
                                      "float32") for p, q, r in zip(a, b, c)]
    np.testing.assert_array_equal(got, np.float32(exact_values))
    assert np.any(got != a * b + c)  # otherwise this test would prove nothing


def test_reductions_over_named_axes():
    v = var("v", "float32", axes=("N", "C", "H", "W"))
    data = np.random.default_rng(1).standard_normal((2, 3, 4, 5)).astype(np.float32)
    got = evaluate(parse("v / sqrt(var(v, axis=(H, W)) + 1e-5)", vars={"v": v}), {"v": data})
    want = data / np.sqrt(data.var(axis=(2, 3), keepdims=True) + np.float32(1e-5))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6)
    for name, fn in [("sum", np.sum), ("mean", np.mean), ("max", np.max)]:
        got = evaluate(parse(f"{name}(v, axis=-1)", vars={"v": v}), {"v": data})
        np.testing.assert_allclose(got, fn(data, axis=-1, keepdims=True), rtol=1e-6)


def test_oracle_reductions_agree_with_numpy_in_float64():
    data = np.random.default_rng(2).standard_normal((3, 7))
    for name in ["sum", "mean", "var", "max"]:
        e = parse(f"{name}(x, axis=-1)")
        np.testing.assert_allclose(exact(e, {"x": data}), evaluate(e, {"x": data}), rtol=1e-12)


def test_integer_wraparound_matches_the_oracle():
    e = parse("n * 65536 + 7", vars={"n": "int32"})
    n = np.array([2 ** 15, -(2 ** 16), 12345], dtype=np.int32)
    np.testing.assert_array_equal(evaluate(e, {"n": n}), exact(e, {"n": n}))


def test_bitcast_and_back():
    e = parse("bitcast(bitcast(x, int32) + 1, float32)", vars={"x": "float32"})
    xs = np.float32([1.0, -2.5, 1e-40])
    np.testing.assert_array_equal(evaluate(e, {"x": xs}), np.nextafter(xs, np.float32(np.inf) *
                                                                       np.sign(xs)))
    np.testing.assert_array_equal(exact(e, {"x": xs}), evaluate(e, {"x": xs}))


@pytest.mark.parametrize("text,x,want", [
    ("exp(x)", np.inf, np.inf), ("exp(x)", -np.inf, 0.0), ("log(x)", 0.0, -np.inf),
    ("sqrt(x)", -1.0, np.nan), ("x / x", 0.0, np.nan), ("1 / x", 0.0, np.inf),
    ("asin(x)", 2.0, np.nan), ("x - x", np.inf, np.nan), ("max(x, 1)", np.nan, 1.0),
])
def test_special_values_numpy_and_oracle(text, x, want):
    e = parse(text)
    for got in (evaluate(e, {"x": x}), exact(e, {"x": x})):
        assert (np.isnan(got) and np.isnan(want)) or got == want


def test_exact_programs_agree_with_the_oracle_bit_for_bit():
    rng = np.random.default_rng(3)
    env = {k: rng.standard_normal(200).astype(np.float32) for k in "xyz"}
    e = parse("fma(x, y, z) / sqrt(abs(x) + 1) - y", vars={k: "float32" for k in "xyz"})
    # one rounding per op, so compare op by op: each node against its oracle rounding
    for node in e.toposort():
        if node.args:
            inner = {a: evaluate(a, {k: env[k] for k in a.var_names()}) for a in node.args}
            args = [var(f"a{i}", a.dtype) for i, a in enumerate(node.args)]
            one = make(node.op, args, node.attr)
            sub_env = {f"a{i}": inner[a] for i, a in enumerate(node.args)}
            np.testing.assert_array_equal(evaluate(one, sub_env), exact(one, sub_env))


def test_missing_variables_and_bad_data():
    with pytest.raises(KeyError, match="y"):
        evaluate(parse("x + y"), {"x": 1.0})
    with pytest.raises(TypeError):
        evaluate(parse("n + 1", vars={"n": "int32"}), {"n": 1.5})


def test_round_mpf_extremes_without_huge_integers():
    with mp.workprec(100):
        assert round_mpf(mp.exp(mp.mpf(10) ** 10), "float64") == np.inf
        assert round_mpf(-mp.exp(-mp.mpf(10) ** 10), "float32") == 0.0
        assert np.signbit(round_mpf(-mp.exp(-mp.mpf(10) ** 10), "float32"))
        assert round_mpf(mp.mpf(2) ** -149, "float32") == np.float32(1e-45)


@settings(max_examples=100, deadline=None)
@given(float_exprs("float64", max_depth=4,
                   ops=["add", "sub", "mul", "div", "neg", "sqrt", "fma", "abs", "min", "max"]))
def test_correctly_rounded_single_ops_of_random_programs(e):
    """Each node of a program of correctly rounded ops equals its oracle rounding."""
    rng = np.random.default_rng(4)
    env = {v: rng.uniform(-10, 10, 20) for v in e.var_names()}
    values = {}
    for node in e.toposort():
        values[node] = evaluate(node, {k: env[k] for k in node.var_names()})
    for node in e.toposort():
        if node.args and node.spec.group == "elementwise":
            args = [var(f"a{i}", a.dtype) for i, a in enumerate(node.args)]
            one = make(node.op, args, node.attr)
            sub = {f"a{i}": np.broadcast_to(values[a], (20,)) for i, a in enumerate(node.args)}
            if node.op == "div" and np.any(sub["a1"] == 0):
                continue  # the oracle has no signed zero: x/-0 is documented as +-inf by x
            np.testing.assert_array_equal(evaluate(one, sub), exact(one, sub))


def test_constant_expression_in_a_chosen_dtype():
    assert evaluate(parse("1/3"), dtype="float32") == np.float32(1) / np.float32(3)
    assert evaluate(const(2) * 3).dtype == np.int64


def test_oracle_does_not_hang_on_towering_exponents():
    """mpmath never overflows; values past 2**(2**20) round to inf or 0 in every dtype."""
    e = parse("exp(exp(exp(x)))")
    np.testing.assert_array_equal(exact(e, {"x": np.array([20.0, -50.0])}), [np.inf, np.e])
    assert exact(parse("x**x**abs(x**x)"), {"x": np.array([1000.0])})[0] == np.inf
    assert exact(parse("(-x)**y"), {"x": np.array([1e6]), "y": np.array([300001.0])})[0] == -np.inf
    assert exact(parse("x**y"), {"x": np.array([1e6]), "y": np.array([-3e5])})[0] == 0.0
