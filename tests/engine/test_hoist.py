"""hoist_constant_factors: factors that do not change along a sum's axes are taken out of
it (exact over the reals), and only those."""
import numpy as np
import pytest

from exprforge.engine.derive import hoist_constant_factors
from exprforge.engine.evaluate import evaluate
from exprforge.engine.expr import Expr
from exprforge.engine.parse import parse

SHAPES = {"g": (3, 5), "x": (3, 5), "a": (), "w": (1, 5), "c": (3, 1)}
RANKS = {n: len(s) for n, s in SHAPES.items()}


def _values(rng):
    return {n: rng.uniform(0.5, 2.0, s) for n, s in SHAPES.items()}


def _reductions(e: Expr):
    return [n for n in e.toposort() if n.op in ("rsum", "rmean")]


@pytest.mark.parametrize("text, flat, taken", [
    # a scalar parameter and a row's value leave a row sum; a literal too
    ("sum(g * (a * (x / sqrt(mean(x * x, axis=-1)))), axis=-1)", {"a": (-2, -1)},
     {"a", "sqrt"}),
    ("mean(-(g * 3) * x, axis=-1)", {}, {"3"}),
    # w varies along the row (-1) but not down the column (-2)
    ("sum(w * g * x, axis=-2)", {"w": (-2,)}, {"w"}),
    ("sum(w * g * x, axis=-1)", {"w": (-2,)}, set()),
    # c has length 1 on the last axis, but nothing says so: it stays inside
    ("sum(c * g, axis=-1)", {}, set()),
    ("sum(c * g, axis=-1)", {"c": (-1,)}, {"c"}),
    # a division by a constant value becomes a factor 1 / value outside
    ("sum(g * x / mean(x, axis=-1), axis=-1)", {}, {"mean"}),
])
def test_constant_factors_leave_the_sum_and_the_value_stays(text, flat, taken):
    e = parse(text, vars={n: "float64" for n in SHAPES})
    h = hoist_constant_factors(e, flat, RANKS)
    outer = max(_reductions(h), key=lambda n: len(n.toposort()))   # the sum itself
    inside = {n.op if n.op != "var" else n.name for n in outer.args[0].toposort()} | \
        {str(n.attr) for n in outer.args[0].toposort() if n.op == "const"}
    for name in taken:
        assert name not in inside, (name, str(h))
    if not taken:
        assert h is e
    rng = np.random.default_rng(0)
    env = _values(rng)
    np.testing.assert_allclose(evaluate(h, env), evaluate(e, env), rtol=1e-13)


def test_shared_sums_become_one():
    """A parameter's gradient and a mean's cotangent that sum the same product up to row
    values end as the same sum node (PolyNorm's three means and three coefficients)."""
    e = parse("sum(g * (x * r), axis=-1) + sum(g * (a * (-(x * r) * r)), axis=-1)",
              vars={n: "float64" for n in ("g", "x", "a", "r")})
    e = e.subs({parse("r", vars={"r": "float64"}): parse("1 / sqrt(mean(x * x, axis=-1))",
                                                         vars={"x": "float64"})})
    h = hoist_constant_factors(e, {"a": (-2, -1)}, {"g": 2, "x": 2, "a": 0})
    sums = {n for n in _reductions(h) if n.op == "rsum"}
    assert len(sums) == 1 and str(next(iter(sums)).args[0]) == "g * x"


def test_the_sum_keeps_a_factor_of_its_rank():
    """In sum(a * y, (-2, -1)) with a of shape (4,) and y of (1, 1), y is constant along
    both axes, but a alone has no axis -2: y stays in the sum."""
    e = parse("sum(a * y, axis=(-2, -1))", vars={"a": "float64", "y": "float64"})
    flat = {"a": (-2,), "y": (-2, -1)}
    h = hoist_constant_factors(e, flat, {"a": 1, "y": 2})
    env = {"a": np.arange(1.0, 5.0), "y": np.full((1, 1), 0.5)}
    np.testing.assert_allclose(evaluate(h, env), evaluate(e, env), rtol=1e-15)
    # with y of rank 2 and a as well, y leaves
    h2 = hoist_constant_factors(e, flat, {"a": 2, "y": 2})
    assert str(h2) != str(e)
    env2 = {"a": np.arange(1.0, 5.0)[None, :], "y": np.full((1, 1), 0.5)}
    np.testing.assert_allclose(evaluate(h2, env2), evaluate(e, env2), rtol=1e-15)
