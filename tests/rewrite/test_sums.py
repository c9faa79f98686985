"""Gathering like terms of sums: exact over the extended reals, inf and NaN included."""
import numpy as np
from hypothesis import given, settings

from exprforge.engine.evaluate import exact
from exprforge.engine.expr import const, var
from exprforge.engine.parse import parse
from exprforge.rewrite.simplify import prove, simplify_full
from exprforge.rewrite.sums import gather_sums
from tests.strategies import float_exprs

# no huge or tiny finite values: the oracle's precision would decide, not the rewrite
# (-1e300 + 1 + 1e300 and 1e-300 - 1 + 1 are 0 at 200 bits)
SPECIAL = [0.0, -0.0, np.inf, -np.inf, np.nan, 0.5, 2.0, -3.5]


def _agree(a, b, names):
    rng = np.random.default_rng(1)
    n = 64
    env = {v: rng.uniform(-4, 4, n) for v in names}
    for i, v in enumerate(names):   # special values in every variable, in varied pairings
        env[v][: len(SPECIAL)] = np.roll(SPECIAL, i)
    before = np.broadcast_to(exact(a, env, prec=200), (n,))
    after = np.broadcast_to(exact(b, {k: env[k] for k in b.var_names()}, prec=200), (n,))
    np.testing.assert_array_equal(np.isnan(after), np.isnan(before))
    both = ~np.isnan(before)
    np.testing.assert_allclose(after[both], before[both], rtol=1e-12, atol=1e-300)


def test_like_terms_side_by_side():
    assert gather_sums(parse("x0 + x1 - x2 + (x1 + x2 - x0) + (x2 + x0 - x1)")) is \
        parse("2 * x0 - x0 + (2 * x1 - x1) + (2 * x2 - x2)")
    assert gather_sums(parse("3*x + 2*x + 1 + y - 0.5")) is parse("5 * x + y + 0.5")
    assert gather_sums(parse("x*y + 2 + x*y*3")) is parse("4 * (x * y) + 2")
    assert gather_sums(parse("cos(x - x) + sin(y + y)")) is parse("cos(x - x) + sin(2 * y)")
    # u * 0 is NaN at u = inf: it must not join u's other copies
    assert gather_sums(parse("u + (u + (u + (u * 0 + u)))")) is parse("4 * u + 0 * u")
    e = parse("x + y * 2")
    assert gather_sums(e) is e


@settings(max_examples=400, deadline=None)
# no exp: exp(exp(exp(...))) of a few units has more digits than the oracle can hold
@given(float_exprs("float64", max_depth=5, ops=["add", "sub", "neg", "mul", "sqrt", "abs"]))
def test_gathering_is_exact_everywhere(e):
    _agree(e, gather_sums(e), e.var_names())


def test_simplify_cancels_gathered_terms_only_when_finite():
    text = "x0 + x1 - x2 + (x1 + x2 - x0) + (x2 + x0 - x1)"
    assert simplify_full(text, assume_finite=True).expr is parse("x0 + x1 + x2")
    r = simplify_full(text)   # at x0 = inf the input is NaN, so x0 must not cancel
    _agree(parse(text), r.expr, ["x0", "x1", "x2"])
    assert simplify_full("3*x + 2*x - x*4", assume_finite=True).expr is parse("x")


def test_literal_sums_keep_their_dtype():
    # a float64 sum of literals folds to a float64 literal, not a weak one that a cast
    # above would take as its own (bitcast would read 3, not the bits of 3.0)
    assert gather_sums(parse("float64(1) + float64(2)")) is const(3, "float64")
    e = parse("bitcast(float64(1) + float64(2), int64) + i", vars={"i": "int64"})
    assert exact(gather_sums(e), {"i": np.array([0])})[0] == exact(e, {"i": np.array([0])})[0]
    assert not prove("bitcast(float64(1) + float64(2), int64)", "int64(3)")
    t = "bool(float64(0.25) + float64(0.25))"
    assert prove(t, t)


def test_shared_subterms_are_walked_once():
    # d = -(d*d) k times is 2k + 3 nodes; walking it as a tree would be 2^k
    d = var("x", "float64") + const(1.0)
    for _ in range(40):
        d = -(d * d)
    assert gather_sums(d).node_count() <= d.node_count()
    d = var("x", "float64")
    for _ in range(40):
        d = d + d
    assert gather_sums(d).node_count() <= d.node_count() + 1


def test_huge_coefficients_are_not_gathered():
    t = "x" + " * 1e300" * 15      # 10**4500: more digits than egglog's text can carry
    assert gather_sums(parse(t)) is parse(t)
    assert prove(t, t)
