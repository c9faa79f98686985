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
    y = np.sin(2 * X[:, 0]) + X[:, 0] ** 3
    reg = SymbolicRegressor(population=20, generations=50, max_evals=30, random_state=0)
    reg.fit(X, y)
    assert reg.stopped_ == "max_evals" and reg.n_evals_ < 30 + 2 * 20
    best = reg.equations_["loss"].min()
    reg.set_params(warm_start=True, generations=2, max_evals=None)
    reg.fit(X, y)
    assert reg.equations_["loss"].min() <= best   # started from the previous front


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
