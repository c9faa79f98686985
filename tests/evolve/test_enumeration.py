"""Enumerated regression seeds (evolve/tasks/enumeration.py): the enumeration keeps one
formula per value vector, smallest first, with the problem's ops only, and its values
are the formulas' values; the affine fits of one or two formulas find sums and products
that GP assembles slowly; SymbolicRegressor recovers such a formula exactly."""
import tracemalloc

import numpy as np
import sympy

from exprforge.engine.evaluate import evaluate
from exprforge.engine.printing import to_text
from exprforge.evolve.tasks.enumeration import enumerate_functions, enumerated_terms
from exprforge.evolve.tasks.regress import SNAP_FLOOR, RegressionProblem
from exprforge.regressor import SymbolicRegressor


def columns(n=24, seed=0):
    rng = np.random.default_rng(seed)
    return {"x": rng.uniform(0.5, 2.0, n), "y": rng.uniform(-1.0, 1.0, n)}


def ops_of(expr):
    return {node.op for node in expr.toposort()}


def test_enumeration_is_distinct_smallest_first_and_evaluates_to_its_values():
    cols = columns()
    ops = ("add", "mul", "sin", "log")
    exprs, values, sizes = enumerate_functions(cols, ops, max_size=6, limit=5000)
    assert len(exprs) == len(values) == len(sizes) > 100
    assert np.all(np.diff(sizes) >= 0)
    keys = {row.astype(np.float32).tobytes() for row in values}
    assert len(keys) == len(exprs)                              # one per value vector
    flat = np.ptp(values, axis=1) <= 1e-9 * np.max(np.abs(values), axis=1)
    assert [(exprs[i].op, exprs[i].value) for i in np.flatnonzero(flat)] == \
        [("const", 1.0)]                                        # the literal only
    rng = np.random.default_rng(1)
    for i in rng.choice(len(exprs), 200, replace=False):
        e = exprs[i]
        assert e.tree_size() == sizes[i]
        assert ops_of(e) <= set(ops) | {"var", "const"}
        got = np.broadcast_to(evaluate(e, {n: cols[n] for n in e.var_names()}), (24,))
        np.testing.assert_allclose(got, values[i], rtol=1e-12, atol=1e-300)
    assert to_text(exprs[-1]) == to_text(exprs[len(exprs) - 1])


def test_enumeration_order():
    # leaves, then by size: unary ops first, then binary ones over pairs of sizes, the
    # smaller left operand first; duplicates (y + x, x * 1) and constants (sin(1)) left out
    exprs, _, _ = enumerate_functions(columns(), ("add", "mul", "sin"), 3, 100)
    assert [to_text(exprs[i]) for i in range(len(exprs))] == [
        "x", "y", "float64(1)", "sin(x)", "sin(y)", "sin(sin(x))", "sin(sin(y))",
        "x + x", "x + y", "x + 1", "y + y", "y + 1", "x * x", "x * y", "y * y"]


def test_enumeration_uses_only_float_ops_and_bounded_memory():
    cols = columns()
    exprs, values, _ = enumerate_functions(cols, ("add", "mul", "lt", "where", "not", "shl"),
                                           4, 10**6)
    assert values.dtype == np.float64
    assert set().union(*(ops_of(exprs[i]) for i in range(len(exprs)))) <= \
        {"add", "mul", "var", "const"}
    # 150 features with add and mul only: the binary blocks are evaluated in slices
    # (whole, the first size-5 block alone takes ~1.3 GB; the peak was ~4.7 GB)
    rng = np.random.default_rng(2)
    wide = {f"f{i}": rng.uniform(1, 2, 48) for i in range(150)}
    tracemalloc.start()
    try:
        exprs, values, _ = enumerate_functions(wide, ("add", "mul"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(exprs) == values.shape[0] == 40_000
    assert peak < 400e6, peak


def test_too_few_rows_give_no_terms():
    problem = RegressionProblem(np.array([[1.0], [2.0]]), np.array([1.0, 3.0]), ("x",))
    assert enumerated_terms(problem, SNAP_FLOOR) == []


def test_enumeration_stops_at_its_limit_and_reaches_nested_products():
    cols = columns()
    exprs, values, _ = enumerate_functions(cols, ("add", "mul", "cos", "exp"), 7, 777)
    assert len(exprs) == len(values) == 777
    exprs, values, _ = enumerate_functions(cols, ("add", "mul", "cos", "exp"), 7, 10**6)
    target = np.cos(cols["x"] * cols["y"]) * np.exp(cols["y"])   # 7 nodes
    assert np.min(np.max(np.abs(values - target), axis=1)) < 1e-12


def test_terms_of_single_and_pair_fits():
    cols = columns(40)
    X = np.column_stack([cols["x"], cols["y"]])
    single = RegressionProblem(X, 2.5 * cols["x"] * np.sin(cols["y"]) - 0.75, ("x", "y"))
    first = enumerated_terms(single, SNAP_FLOOR)[0]
    assert len(first) == 1
    got = evaluate(first[0], cols)
    np.testing.assert_allclose(got, cols["x"] * np.sin(cols["y"]), rtol=1e-12)
    y = 3 * np.cos(cols["x"] * cols["y"]) + 0.5 * np.log(cols["x"])
    pair = RegressionProblem(X, y, ("x", "y"))
    terms = enumerated_terms(pair, SNAP_FLOOR)
    fits = [t for t in terms if len(t) == 2]
    assert fits
    A = np.column_stack([np.ones(40)] + [np.broadcast_to(evaluate(t, cols), (40,))
                                         for t in fits[0]])
    resid = y - A @ np.linalg.lstsq(A, y, rcond=None)[0]
    assert np.sqrt(np.mean(resid ** 2)) < 1e-10 * np.std(y)


def test_no_terms_for_a_constant_target():
    cols = columns()
    problem = RegressionProblem(np.column_stack([cols["x"]]), np.full(24, 3.0), ("x",))
    assert enumerated_terms(problem, SNAP_FLOOR) == []


def test_regressor_recovers_a_product_plus_a_term_exactly():
    cols = columns(30, seed=4)
    X = np.column_stack([cols["x"], cols["y"]])
    y = 3 * np.cos(cols["x"] * cols["y"]) + 0.5 * np.log(cols["x"])
    reg = SymbolicRegressor(population=60, generations=5, random_state=0).fit(X, y)
    x0, x1 = sorted(reg.sympy().free_symbols, key=str)
    truth = 3 * sympy.cos(x0 * x1) + sympy.log(x0) / 2
    assert sympy.simplify(reg.sympy() - truth) == 0, reg.sympy()


def test_terms_are_never_a_formula_plus_a_constant_of_another():
    # x + 1 (or x + x + x - 1) fits exactly what x fits: only the smallest is offered, so a
    # seed never has an inner constant that the intercept already provides
    cols = columns(40)
    X = np.column_stack([cols["x"], cols["y"]])
    noise = 1e-3 * np.random.default_rng(5).standard_normal(40)
    problem = RegressionProblem(X, -cols["x"] - 0.1 * cols["y"] + noise, ("x", "y"))

    def direction(t):
        v = np.broadcast_to(evaluate(t, cols), (40,)) - 0
        v = v - v.mean()
        v = v / np.linalg.norm(v)
        return np.round(v * np.sign(v[np.argmax(np.abs(v) > 1e-6)]), 9).tobytes()

    seen = {}
    for terms in enumerated_terms(problem, SNAP_FLOOR):
        for t in terms:
            d = direction(t)
            assert seen.setdefault(d, to_text(t)) == to_text(t), (seen[d], to_text(t))
    assert "x + 1" not in seen.values() and "y + 1" not in seen.values()
