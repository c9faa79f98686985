"""Symbolic regression (evolve/tasks/regress.py, exprforge.SymbolicRegressor): a small
problem recovered exactly from a fixed seed; the same seed gives the same front; the
scikit-learn conventions (params, clone, pickling, pandas names); predict agrees with
the compiled kernel and with SymPy; every bad input is refused before the search."""
import pickle
import sys
import warnings

import numpy as np
import pytest

import pandas as pd  # noqa: E402
import sympy  # noqa: E402

from sklearn.base import clone  # noqa: E402
from sklearn.utils.estimator_checks import (  # noqa: E402
    check_get_params_invariance, check_set_params,
)

from exprforge.engine.parse import parse  # noqa: E402
from exprforge.evolve.tasks.regress import (  # noqa: E402
    LOSS_CAP, RegressionProblem, fit_least_squares,
)
from exprforge.regressor import SymbolicRegressor  # noqa: E402

SMALL = dict(population=100, generations=20, random_state=0)


def data(n=20, seed=0):
    x = np.random.default_rng(seed).uniform(-1, 1, (n, 1))
    return x, x[:, 0] ** 2 + x[:, 0]


@pytest.fixture(scope="module")
def fitted():
    X, y = data()
    return SymbolicRegressor(**SMALL).fit(X, y)


def test_recovers_x_squared_plus_x(fitted):
    X, y = data()
    assert fitted.stopped_ == "exact"
    assert fitted.equations_["loss"].min() < 1e-12
    chosen = fitted.sympy()
    x0 = sympy.Symbol("x0", real=True)
    residual = sympy.expand(chosen - (x0 ** 2 + x0))
    coeffs = [abs(float(c)) for c in sympy.Poly(residual, x0).all_coeffs()] \
        if residual.free_symbols else [abs(float(residual))]
    assert max(coeffs) < 1e-9, chosen
    np.testing.assert_allclose(fitted.predict(X), y, atol=1e-9)
    assert fitted.score(X, y) > 1 - 1e-12


def test_front_table(fitted):
    table = fitted.equations_
    assert list(table.columns[:4]) == ["complexity", "loss", "equation", "sympy"]
    assert table["complexity"].is_monotonic_increasing
    assert table["loss"].is_monotonic_decreasing
    assert fitted.latex() == sympy.latex(fitted.sympy())
    from exprforge.regressor import _select
    assert _select(table, "accuracy") == int(np.argmin(table["loss"]))
    assert _select(table, "score") == int(np.argmax(table["score"]))
    best = _select(table, "best")   # an exact fit: only exact ones qualify
    assert table["loss"].iloc[best] <= 1.5 * max(table["loss"].min(), 1e-30)


def test_same_seed_same_front():
    X, y = data(seed=1)
    runs = [SymbolicRegressor(population=24, generations=3, random_state=7, workers=w).fit(X, y)
            for w in (None, None, 2)]       # serial twice, then a process pool
    a, b, c = (r.equations_[["complexity", "loss", "equation"]] for r in runs)
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(a, c)


def test_sklearn_params_and_clone():
    reg = SymbolicRegressor(population=10, generations=2, ops=("add", "mul"))
    check_get_params_invariance("SymbolicRegressor", reg)
    check_set_params("SymbolicRegressor", reg)
    copy = clone(reg)
    assert copy.get_params() == reg.get_params() and copy is not reg
    reg.set_params(population=12, model_selection="accuracy")
    assert reg.population == 12 and clone(reg).model_selection == "accuracy"


def test_pickle_fitted(fitted):
    X, _ = data()
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(again.predict(X), fitted.predict(X))
    assert again.equations_["equation"].tolist() == fitted.equations_["equation"].tolist()


def test_pandas_names_and_kernel_and_sympy():
    rng = np.random.default_rng(2)
    frame = pd.DataFrame({"speed": rng.uniform(0.5, 2, 30), "mass": rng.uniform(1, 3, 30)})
    y = 0.5 * frame["mass"] * frame["speed"] ** 2
    reg = SymbolicRegressor(population=60, generations=8, ops=("add", "sub", "mul"),
                            random_state=0).fit(frame, y)
    assert list(reg.feature_names_in_) == ["speed", "mass"]
    text = " ".join(reg.equations_["equation"])
    assert "speed" in text and "mass" in text
    pred = reg.predict(frame)
    kernel = reg.kernel("llvm")
    assert kernel.args == ("speed", "mass")
    np.testing.assert_allclose(kernel(frame["speed"].to_numpy(), frame["mass"].to_numpy()),
                               pred, rtol=1e-12, atol=1e-12)
    symbols = sorted(reg.sympy().free_symbols, key=lambda s: ["speed", "mass"].index(s.name))
    f = sympy.lambdify(symbols, reg.sympy(), "numpy")
    cols = [frame[s.name].to_numpy() for s in symbols]
    np.testing.assert_allclose(np.broadcast_to(f(*cols), pred.shape), pred, rtol=1e-9,
                               atol=1e-12)


def test_torch_module(fitted):
    import torch
    X, _ = data()
    module = fitted.torch()
    out = module(torch.as_tensor(X))
    np.testing.assert_allclose(out.detach().numpy(), fitted.predict(X), rtol=1e-12, atol=1e-12)


def test_max_evals_and_warm_start():
    X, y = data(seed=3)
    x = X[:, 0]   # three terms: beyond what the seeds fit exactly
    y = np.sin(2 * x) + x ** 3 + 0.3 * np.exp(-x * x) * np.cos(5 * x)
    reg = SymbolicRegressor(population=20, generations=50, max_evals=30, random_state=0)
    reg.fit(X, y)
    assert reg.stopped_ == "max_evals" and reg.n_evals_ < 30 + 2 * 20
    best = reg.equations_["loss"].min()
    reg.set_params(warm_start=True, generations=2, max_evals=None)
    reg.fit(X, y)
    # started from the previous front (refitting it moves the loss only by rounding)
    assert reg.equations_["loss"].min() <= best * (1 + 1e-6)


def test_import_is_light():
    import subprocess
    code = "import sys, exprforge; assert 'sklearn' not in sys.modules; exprforge.SymbolicRegressor"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- the task on its own ------------------------------------------------------------------

def test_least_squares_fits_nonlinear_constants():
    x = np.linspace(-1, 1, 40)
    core = parse("exp(0.3 * x) + 0.1", dtype="float64")
    values = fit_least_squares(core, {"x": x}, np.exp(1.7 * x) - 0.4)
    np.testing.assert_allclose(sorted(values), sorted([1.7, -0.4]), atol=1e-8)


def test_problem_scores():
    x = np.linspace(0.5, 2, 20)[:, None]
    problem = RegressionProblem(x, 3 * x[:, 0], ("x",))
    exact = problem.evaluate(parse("x * 1.5", dtype="float64"))
    assert exact.objectives[0] < 1e-20 and exact.objectives[1] == 3
    mean = problem.evaluate(parse("x * 0 + 4.5", dtype="float64"), refit=False)
    assert mean.objectives[0] == pytest.approx(np.mean((4.5 - 3 * x) ** 2) / np.var(3 * x))
    assert problem.evaluate(parse("log(x - 1)", dtype="float64")).objectives[0] == LOSS_CAP
    assert pickle.loads(pickle.dumps(problem)).cache is None


# --- bad input --------------------------------------------------------------------------

def bad(X, y, match):
    with pytest.raises(ValueError, match=match):
        SymbolicRegressor(population=4, generations=1).fit(X, y)


def test_nan_and_inf_name_the_column():
    frame = pd.DataFrame({"a": [1.0, 2, 3, 4, 5, 6], "b": [1.0, np.nan, 3, 4, 5, 7]})
    bad(frame, np.arange(6.0), "column 'b' has 1 NaN")
    X = np.arange(12.0).reshape(6, 2)
    X[3, 0] = np.inf
    bad(X, np.arange(6.0), "column 'x0'")
    bad(np.arange(12.0).reshape(6, 2), [0, 1, 2, np.nan, 4, 5], "target 'y' has 1 NaN")


def test_shapes_rows_and_types():
    X = np.arange(12.0).reshape(6, 2)
    bad(X, np.arange(5.0), "6 rows but y has 5")
    bad(X[:4], np.arange(4.0), "at least 5")
    bad(np.arange(6.0), np.arange(6.0), "2-D")
    frame = pd.DataFrame({"a": np.arange(6.0), "kind": list("abcdef")})
    bad(frame, np.arange(6.0), "column 'kind' is not numeric")
    bad(np.array([["1", "x"]] * 6), np.arange(6.0), "not numeric")
    bad(X, list("abcdef"), "not numeric")
    with pytest.raises(ValueError, match="unknown op"):
        SymbolicRegressor(ops=("add", "frobnicate")).fit(X, np.arange(6.0))
    with pytest.raises(ValueError, match="model_selection"):
        SymbolicRegressor(model_selection="nope").fit(X, np.arange(6.0))


def test_constant_and_repeated_columns_are_dropped():
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, 12)
    frame = pd.DataFrame({"a": a, "const": 3.0, "a copy": a, "bad name!": rng.uniform(size=12)})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reg = SymbolicRegressor(population=8, generations=1, random_state=0).fit(frame, 2 * a)
    messages = " ".join(str(w.message) for w in caught)
    assert "'const' is constant" in messages and "'a copy' repeats column 'a'" in messages
    assert reg.used_features_ == ["a", "bad_name_"]
    assert reg.predict(frame).shape == (12,)
    with pytest.warns(UserWarning, match="'k' is constant"):
        bad(pd.DataFrame({"k": [1.0] * 6}), np.arange(6.0), "every column of X is constant")


# --- seeds, snapping and model choice ---------------------------------------------------

def test_snapping_makes_near_exact_constants_exact():
    from exprforge.regressor import _sympy
    X, y = data()
    p = RegressionProblem(X, y, ("x0",))
    near = p.evaluate(parse("1.00001 * x0 * x0 + x0 * exp(3e-6 * x0)", dtype="float64"),
                      refit=False)
    snapped = p.snap(near)
    assert snapped.objectives[0] < 1e-28 < near.objectives[0]
    x0 = sympy.Symbol("x0", real=True)
    assert sympy.simplify(_sympy(snapped.expr) - (x0 ** 2 + x0)) == 0


def test_snapping_finds_multiples_of_pi_and_sympy_shows_them():
    from exprforge.regressor import _sympy
    X, _ = data()
    y = 0.5 * X[:, 0] - np.sin(X[:, 0])
    p = RegressionProblem(X, y, ("x0",))
    near = p.evaluate(parse("0.5 * x0 + cos(x0 + 1.5708)", dtype="float64"), refit=False)
    snapped = p.snap(near)
    assert snapped.objectives[0] < 1e-28 < near.objectives[0]
    x0 = sympy.Symbol("x0", real=True)
    assert _sympy(snapped.expr) == x0 / 2 - sympy.sin(x0)   # cos(x0 + pi/2), written by SymPy
    assert _sympy(parse("x0 + 1.5708", dtype="float64")).atoms(sympy.Float)   # no snap: a float
    from exprforge.evolve.tasks.regress import _nearby_simple
    from exprforge.regressor import _pi_multiple
    for c in (2 * np.pi * 1.0002, -1.5 * np.pi, 4 * np.pi):   # fractions do not crowd pi out
        assert any(_pi_multiple(v) is not None for v in _nearby_simple(c))


def test_snapping_keeps_constants_the_data_need():
    X, y = data()
    p = RegressionProblem(X, 1.3 * y, ("x0",))   # 1.3 is not within 1% of a simple value
    snapped = p.snap(p.evaluate(parse("1.0 * (x0 * x0 + x0)", dtype="float64")))
    assert snapped.objectives[0] < 1e-28
    values = [float(n.value) for n in snapped.expr.toposort() if n.op == "const"]
    assert values and abs(values[0] - 1.3) < 1e-12


def test_power_law_seed_finds_a_monomial():
    from exprforge.evolve.tasks.regress import power_law
    X = np.random.default_rng(1).uniform(1, 5, (200, 3))
    y = -0.25 * X[:, 0] * X[:, 1] ** 2 / X[:, 2] ** 1.5
    for ops in [("add", "mul", "div", "sqrt"), ("add", "mul", "div", "exp", "log"),
                ("add", "mul", "div", "pow")]:
        p = RegressionProblem(X, y, ("a", "b", "c"), ops=ops)
        seed = power_law(X, y, p.names, ops)
        assert {n.op for n in seed.toposort()} <= set(ops) | {"var", "const"}
        assert p.evaluate(seed).objectives[0] < 1e-24
    assert power_law(X, y, ("a", "b", "c"), ("add", "mul")) is None   # no div for c**-1.5
    assert power_law(X - 2, y, ("a", "b", "c"), ("add", "mul", "div", "sqrt")) is None


def test_polynomial_seeds_recover_a_quartic_with_the_full_op_set():
    x = np.random.default_rng(2).uniform(-1, 1, (20, 2))
    y = x[:, 0] ** 4 - x[:, 0] ** 3 + x[:, 1] ** 2 / 2 - x[:, 1]
    reg = SymbolicRegressor(population=100, generations=5, random_state=0).fit(x, y)
    assert reg.stopped_ == "exact"
    x0, x1 = sympy.symbols("x0 x1", real=True)
    assert sympy.simplify(reg.sympy() - (x0 ** 4 - x0 ** 3 + x1 ** 2 / 2 - x1)) == 0


def test_simplest_exact_formula_is_chosen():
    """The first front member competes against predicting the mean: when it is exact
    (y = x1 with x0 unused), "best" picks it over larger ones of equal loss."""
    from exprforge.regressor import _select, _table
    a, b = parse("x1", dtype="float64"), parse("x1 + 1e-9 * x0", dtype="float64")
    table = _table([(a, 1e-8, 1), (b, 0.9e-8, 5)])
    assert _select(table, "best") == 0
    assert _select(table, "accuracy") == 1


def test_front_respects_max_size_though_seeds_are_larger():
    """The seed quadratic of 4 variables has 77 nodes; with max_size=12 nothing reported
    is larger, and the sqrt-of-quadratic seed, once snapped and tidied, is what fits."""
    X = np.random.default_rng(4).uniform(1, 5, (200, 4))
    y = np.sqrt((X[:, 1] - X[:, 0]) ** 2 + (X[:, 3] - X[:, 2]) ** 2)
    ops = ("add", "sub", "mul", "div", "sqrt")
    small = SymbolicRegressor(ops=ops, population=30, generations=2, max_size=12,
                              random_state=0).fit(X, y)
    assert small.equations_["complexity"].max() <= 12
    wide = SymbolicRegressor(ops=ops, population=30, generations=2, max_size=40,
                             random_state=0).fit(X, y)
    assert wide.equations_["loss"].min() < 1e-20
    assert wide.equations_["complexity"].iloc[wide.best_index_] <= 40


def test_rational_seed_recovers_a_sparse_rational():
    """y = (x*z - 1)/(z**2 + 3): the linearized fit with lead z**2 and backward
    elimination gives exactly the 2 + 1 true terms, and the seed is exact."""
    from exprforge.engine.expr import var
    from exprforge.evolve.tasks.regress import rational
    X = np.random.default_rng(5).uniform(-2, 2, (300, 2))
    y = (X[:, 0] * X[:, 1] - 1) / (X[:, 1] ** 2 + 3)
    p = RegressionProblem(X, y, ("x", "z"))
    seeds = rational(p, [var("x", "float64"), var("z", "float64")])
    best = min(seeds, key=p.loss)
    assert p.loss(best) < 1e-24
    values = sorted(float(n.value) for n in best.toposort() if n.op == "const")
    assert np.allclose(values, [-1, 1, 3], rtol=1e-12)    # no spurious term
    x, z = sympy.symbols("x z", real=True)
    from exprforge.regressor import _sympy
    rounded = _sympy(best).xreplace({f: round(f) for f in _sympy(best).atoms(sympy.Float)})
    assert sympy.simplify(rounded - (x * z - 1) / (z ** 2 + 3)) == 0
    assert rational(RegressionProblem(X, y, ("x", "z"), ops=("add", "mul", "sin")),
                    [var("x", "float64"), var("z", "float64")]) == []   # no div


def test_elimination_path_and_the_gap_choice():
    """On exact data the gap choice keeps exactly the true columns; with noise the BIC
    choice is offered too; degenerate input gives no path."""
    from exprforge.evolve.tasks.regress import elimination_path, sparse_choices
    rng = np.random.default_rng(6)
    F = rng.normal(size=(200, 8))
    target = 3 * F[:, 1] - 0.5 * F[:, 4]
    path = elimination_path(F, target)
    assert [size for _, _, size in path] == list(range(8, -1, -1))   # to empty
    chosen = sparse_choices(path, float(target @ target), 200)[0]
    assert np.flatnonzero(chosen).tolist() == [1, 4]
    assert np.allclose(chosen[[1, 4]], [3, -0.5])
    noisy = target + 0.01 * rng.normal(size=200)
    choices = sparse_choices(elimination_path(F, noisy), float(noisy @ noisy), 200)
    assert all(set(np.flatnonzero(c)) >= {1, 4} for c in choices)
    keep = elimination_path(F, target, required=[0])   # column 0 is the last to go
    assert np.flatnonzero(keep[-2][0]).tolist() == [0]
    assert elimination_path(F[:5], target[:5]) == []            # fewer rows than columns
    # a zero column is left out; of duplicated columns one goes first, at no cost
    zero = elimination_path(np.c_[F, np.zeros(200)], target)
    assert len(zero) == 9 and all(c[8] == 0 for c, _, _ in zero)
    twin = elimination_path(np.c_[F[:, 1], F], target)
    assert twin[1][1] < 1e-20 and np.count_nonzero(twin[1][0][[0, 2]]) == 1
    chosen = sparse_choices(twin, float(target @ target), 200)[0]
    assert np.count_nonzero(chosen) == 2 and np.isclose(chosen[5], -0.5)


def test_snapping_to_short_decimals_and_with_known_noise():
    """0.0750004 snaps to the textbook 0.075 (no fraction with a small denominator is
    near); with a systematic error in the data (as in estimated derivatives) the fitted
    constants absorb some of it and the exact ones are refused, unless noise_std says
    the rise is within the error."""
    from exprforge.evolve.tasks.regress import _nearby_simple
    assert 0.075 in _nearby_simple(0.0750004) and 0.05 in _nearby_simple(0.0500013)
    assert 0.08 not in _nearby_simple(0.0750004)   # decimals move c by under 1% of |c|
    X = np.random.default_rng(7).uniform(1, 3, (400, 1))
    exact = X[:, 0] * (1 - 0.075 * X[:, 0])
    noise = 1e-4 * np.sin(5 * X[:, 0])
    formula = parse("x0 * (1 - 0.07 * x0)", dtype="float64")
    for noise_std, snaps in [(None, False), (1e-4, True)]:
        p = RegressionProblem(X, exact + noise, ("x0",), noise_std=noise_std)
        snapped = p.snap(p.evaluate(formula))
        values = sorted(float(n.value) for n in snapped.expr.toposort() if n.op == "const")
        assert (values == [0.075, 1.0]) == snaps, values
    with pytest.raises(ValueError, match="noise_std"):
        SymbolicRegressor(noise_std=-1.0).fit(X, exact)


def test_trigonometric_seed_finds_a_sum_of_phases():
    """y = 2*cos(a + b) - 0.3*a**2 + sin(c): the sparse fit over the library keeps the
    three true terms; without sin or cos there is no such seed."""
    from exprforge.engine.expr import var
    from exprforge.evolve.tasks.regress import trigonometric
    X = np.random.default_rng(9).uniform(-3, 3, (500, 3))
    y = 2 * np.cos(X[:, 0] + X[:, 1]) - 0.3 * X[:, 0] ** 2 + np.sin(X[:, 2])
    p = RegressionProblem(X, y, ("a", "b", "c"))
    xs = [var(n, "float64") for n in ("a", "b", "c")]
    best = min(trigonometric(p, xs), key=p.loss)
    assert p.loss(best) < 1e-24
    values = sorted(float(n.value) for n in best.toposort() if n.op == "const")
    assert np.allclose(values, [-0.3, 1, 2], rtol=1e-12)
    assert trigonometric(RegressionProblem(X, y, ("a", "b", "c"),
                                           ops=("add", "mul", "sin")), xs) == []
    # every seed converts to a search tree, with or without "sub" among the ops
    from exprforge.evolve.primitives import from_expr, to_expr
    for ops in [("add", "sub", "mul", "div", "sin", "cos"), ("add", "mul", "div", "sin", "cos")]:
        q = RegressionProblem(X, y, ("a", "b", "c"), ops=ops)
        for seed in q.seeds():
            assert to_expr(from_expr(seed, q.pset), q.pset) == seed


def test_transformed_seed_of_one_variable_is_the_full_polynomial():
    """log(x + 1) + log(x**2 + 1) is log of a cubic: the exp(y) transform fitted with the
    degree-6 polynomial of the plain seeds gives it exactly."""
    from exprforge.engine.expr import var
    from exprforge.evolve.tasks.regress import _Literals, transformed
    x = np.random.default_rng(10).uniform(0, 2, (20, 1))
    y = np.log(x[:, 0] + 1) + np.log(x[:, 0] ** 2 + 1)
    p = RegressionProblem(x, y, ("x",))
    seeds = transformed(p, [var("x", "float64")], _Literals())
    logs = [s for s in seeds if s.op == "log"]
    assert len(logs) == 1 and p.loss(logs[0]) < 1e-24
