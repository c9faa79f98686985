"""`exprforge.SymbolicRegressor`: a scikit-learn estimator over the evolve search core
(evolve/tasks/regress.py does the scoring and the constant fitting).

    reg = SymbolicRegressor(generations=40, random_state=0).fit(X, y)
    reg.equations_          # the Pareto front: complexity, loss, equation, sympy
    reg.predict(X); reg.sympy(); reg.latex(); reg.kernel("llvm"); reg.torch()

Input policy (checked before any search starts; every refusal is a ValueError that
names the column):
- NaN or inf in X or y is refused: drop or impute those rows first.
- Non-numeric columns, mismatched lengths and fewer than MIN_ROWS rows are refused.
- A constant column, or a column equal to an earlier one, carries no information of its
  own: it is dropped from the variables with a warning (predict still takes it). When
  no column is left, fit refuses.
- Variable names: DataFrame columns (made valid identifiers: other characters become _,
  names that are ops or keywords get a trailing _), else x0, x1, ...
"""
from __future__ import annotations

import math
import numbers
import re
import time
import warnings

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

MIN_ROWS = 5
SELECTIONS = ("best", "accuracy", "score")
_TINY = 1e-30         # a loss floor for log-loss scores (an exact fit has loss ~1e-32)
SEARCH_SHARE = 0.9    # of time_budget; the rest snaps constants of the front
EXACT_LOSS = 1e-20    # a formula exact in float64 scores ~1e-30; wrong forms with tightly
                      # fitted constants (sin(0.007x - 1.57) for a cubic) reach 1e-13


class SymbolicRegressor(RegressorMixin, BaseEstimator):
    """Symbolic regression: NSGA-II over formulas of `ops` (op-table names), minimizing
    (loss, complexity); loss is the MSE divided by var(y), complexity the node count.

    time_budget: seconds for the fit: SEARCH_SHARE of it for the search (checked between
    generations), the rest for snapping the front's constants to simple values.
    max_size: the largest formula reported, in nodes (seed models the search starts from,
    such as fitted quadratics, may be larger; they count once snapped and tidied).
    max_evals: stop
    after the generation in which this many distinct formulas have been scored (it can
    overshoot by one generation). The search also stops once some formula has loss
    below EXACT_LOSS (exact in float64). model_selection: "accuracy" (lowest loss),
    "score" (largest drop of log loss per unit of complexity against the next simpler
    front member; the simplest is compared with predicting the mean, loss 1 at
    complexity 0), "best" (the highest score among those within 1.5x the lowest loss).
    warm_start: a second fit starts from the previous Pareto front. workers: None or 1
    serial, N a local process pool, "tcp://HOST:PORT" a Dask cluster (the same result as
    serial for a seed). noise_std: the standard deviation of the noise in y, when known
    (discover_ode passes its estimate of the derivatives' error): snapping a constant to
    a simple value may then raise the loss by up to the noise's share of the variance.
    """

    def __init__(self, ops=("add", "sub", "mul", "div", "sin", "cos", "exp", "log"),
                 population=200, generations=40, max_size=30, time_budget=None,
                 max_evals=None, random_state=None, model_selection="best",
                 warm_start=False, workers=None, noise_std=None):
        self.ops = ops
        self.population = population
        self.generations = generations
        self.max_size = max_size
        self.time_budget = time_budget
        self.max_evals = max_evals
        self.random_state = random_state
        self.model_selection = model_selection
        self.warm_start = warm_start
        self.workers = workers
        self.noise_std = noise_std

    # --- fitting ------------------------------------------------------------------------
    def fit(self, X, y, *, checkpoint=None, resume=False, progress=None):
        """checkpoint: a file the search writes after each generation; resume=True
        continues from it (same random_state). progress(generation, generations,
        summary) is called after each generation."""
        from exprforge.evolve.executors import make_executor
        from exprforge.evolve.search import SearchConfig, pareto, search
        from exprforge.evolve.tasks.regress import RegressionProblem
        started = time.monotonic()
        self._check_params()
        columns, Xa = _features(X)
        ya = _target(y, len(Xa))
        keep = _informative(Xa, columns)
        names = _identifiers(columns)
        previous = tuple(self._front_exprs()) if self.warm_start and \
            getattr(self, "used_features_", None) == [names[i] for i in keep] else ()
        seed = _seed(self.random_state)
        problem = RegressionProblem(Xa[:, keep], ya, tuple(names[i] for i in keep),
                                    tuple(self.ops), seed, previous, self.noise_std)
        config = SearchConfig(population=self.population, generations=self.generations,
                              seed=seed, timeout=None if self.time_budget is None else
                              SEARCH_SHARE * self.time_budget, max_size=self.max_size,
                              constant_moves=0.0)  # constants are refitted by least squares
        stop = _Stop(problem.cache, self.max_evals)
        executor = (make_executor(scheduler=self.workers) if isinstance(self.workers, str) else
                    make_executor(self.workers) if self.workers not in (None, 1) else None)

        def report(*generation):
            if progress is not None:
                progress(*generation)
            stop(*generation)
        try:
            result = search(problem, config, executor=executor, checkpoint=checkpoint,
                            resume=resume, progress=report)
            front, self.stopped_ = result.front, result.stopped
        except _Stopped as reason:   # every program scored is in the fitness cache
            scored = list(problem.cache.results.values())
            if checkpoint is not None:   # and, when resumed, in the checkpoint's archive
                scored += _archive(checkpoint)
            front, self.stopped_ = pareto(scored), str(reason)
        finally:
            if executor is not None:
                executor.close()
        # 1.00001*x -> x where the data allow, in what is left of the budget; seeds may be
        # larger than max_size (a fitted quadratic), the formulas reported may not
        deadline = None if self.time_budget is None else started + self.time_budget
        front = pareto([e for e in (problem.snap(e, deadline) for e in front)
                        if e.objectives[1] <= self.max_size])
        self.n_evals_ = problem.cache.misses
        if hasattr(X, "columns"):
            self.feature_names_in_ = np.asarray(columns, dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self.n_features_in_ = Xa.shape[1]
        self.variable_names_ = names
        self.used_features_ = [names[i] for i in keep]
        self._front = [(e.expr, float(e.objectives[0]), int(e.objectives[1])) for e in front]
        self.equations_ = _table(self._front)
        self.best_index_ = _select(self.equations_, self.model_selection)
        self.expr_ = self._front[self.best_index_][0]
        return self

    def _check_params(self):
        from exprforge.engine.ops import OPS
        if isinstance(self.ops, str) or not all(isinstance(o, str) for o in self.ops):
            raise ValueError(f"ops must be a list of op names, got {self.ops!r}")
        unknown = [o for o in self.ops if o not in OPS]
        if unknown:
            raise ValueError(f"unknown op(s) {', '.join(unknown)}")
        if self.model_selection not in SELECTIONS:
            raise ValueError(f"model_selection must be one of {', '.join(SELECTIONS)}, "
                             f"not {self.model_selection!r}")
        for name in ("population", "generations", "max_size"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.max_evals is not None and not (isinstance(self.max_evals, numbers.Integral)
                                               and self.max_evals >= 1):
            raise ValueError(f"max_evals must be a positive integer, got {self.max_evals!r}")
        if self.time_budget is not None and not self.time_budget > 0:
            raise ValueError(f"time_budget must be positive seconds, got {self.time_budget!r}")
        if self.noise_std is not None and not (isinstance(self.noise_std, numbers.Real)
                                               and 0 <= self.noise_std < math.inf):
            raise ValueError(f"noise_std must be a finite number >= 0, got {self.noise_std!r}")

    def _front_exprs(self):
        return [e for e, _, _ in getattr(self, "_front", [])]

    # --- using the model ----------------------------------------------------------------
    def predict(self, X):
        check_is_fitted(self, "expr_")
        from exprforge.engine.evaluate import evaluate
        columns, Xa = _features(X)
        fitted = getattr(self, "feature_names_in_", None)
        if fitted is not None and hasattr(X, "columns") and list(fitted) != columns:
            raise ValueError(f"X has columns {columns}; the model was fitted on "
                             f"{list(fitted)} (same names, same order)")
        if Xa.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {Xa.shape[1]} features; the model was fitted on "
                             f"{self.n_features_in_}")
        env = {n: Xa[:, i] for i, n in enumerate(self.variable_names_)
               if n in self.expr_.var_names()}
        with np.errstate(all="ignore"):
            out = evaluate(self.expr_, env)
        return np.broadcast_to(np.asarray(out, np.float64), (len(Xa),)).copy()

    def sympy(self, index=None):
        """The chosen formula (or front member `index`) as SymPy, constants as Floats."""
        check_is_fitted(self, "expr_")
        return self.equations_["sympy"].iloc[self.best_index_ if index is None else index]

    def latex(self, index=None) -> str:
        import sympy as sp
        return sp.latex(self.sympy(index))

    def kernel(self, target: str = "llvm", index=None, **options):
        """A compiled kernel of the chosen formula, called with one float64 column per
        feature, in the order of the training columns (unused ones are ignored)."""
        check_is_fitted(self, "expr_")
        import exprforge as xf
        expr = self.expr_ if index is None else self._front[index][0]
        return xf.compile(expr, target=target, dtype="float64",
                          args=[(n, "float64") for n in self.variable_names_], **options)

    def torch(self, index=None):
        """A torch.nn.Module: forward(X) with X of shape (rows, features) -> (rows,),
        through the torch-target kernel (autograd included)."""
        return _torch_module(self.kernel("torch", index))


class _Stopped(Exception):
    """Raised from the progress callback to end a search between generations."""


class _Stop:
    """The search's progress callback: stop at an exact fit or after max_evals."""

    def __init__(self, cache, max_evals):
        self.cache, self.max_evals = cache, max_evals

    def __call__(self, generation, generations, summary):
        if summary["best"] < EXACT_LOSS:
            raise _Stopped("exact")
        if self.max_evals is not None and self.cache.misses >= self.max_evals:
            raise _Stopped("max_evals")


def _archive(checkpoint) -> list:
    """The Evaluated programs of a search checkpoint (written before each progress call)."""
    from exprforge.evolve.search import load_checkpoint
    return list(load_checkpoint(checkpoint)["archive"].values())


# --- input checks ---------------------------------------------------------------------

def _features(X):
    """(column names, float64 array): refuse what cannot be a finite numeric matrix."""
    if hasattr(X, "columns") and hasattr(X, "dtypes"):         # a pandas DataFrame
        import pandas as pd
        columns = [str(c) for c in X.columns]
        for c, dtype in zip(columns, X.dtypes):
            if not (pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)):
                raise ValueError(f"column {c!r} is not numeric ({dtype}): encode or drop it")
        data = X.to_numpy(dtype=np.float64)
    else:
        data = np.asarray(X)
        if data.ndim == 1:
            raise ValueError("X must be 2-D (rows, features); for one feature use "
                             "X.reshape(-1, 1)")
        columns = [f"x{i}" for i in range(data.shape[1])] if data.ndim == 2 else []
        if data.dtype.kind not in "iuf":
            try:
                data = data.astype(np.float64)
            except (TypeError, ValueError):
                raise ValueError(f"X is not numeric ({data.dtype}): encode or drop the "
                                 "non-numeric columns") from None
        data = data.astype(np.float64)
    if data.ndim != 2:
        raise ValueError(f"X must be 2-D (rows, features), got shape {data.shape}")
    if data.shape[1] == 0:
        raise ValueError("X has no columns")
    for i, c in enumerate(columns):
        bad = ~np.isfinite(data[:, i])
        if bad.any():
            raise ValueError(f"column {c!r} has {int(bad.sum())} NaN or infinite value(s) "
                             f"(first at row {int(np.argmax(bad))}): drop or impute those "
                             "rows")
    return columns, data


def _target(y, rows: int) -> np.ndarray:
    name = getattr(y, "name", None) or "y"
    try:
        arr = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"target {name!r} is not numeric") from None
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"y must be 1-D, got shape {arr.shape}")
    if arr.shape[0] != rows:
        raise ValueError(f"X has {rows} rows but y has {arr.shape[0]}")
    if rows < MIN_ROWS:
        raise ValueError(f"{rows} rows: symbolic regression needs at least {MIN_ROWS}")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(f"target {name!r} has {int(bad.sum())} NaN or infinite value(s) "
                         f"(first at row {int(np.argmax(bad))}): drop those rows")
    return arr


def _informative(X: np.ndarray, columns) -> list[int]:
    """Indices of the columns kept as variables (constant and repeated ones dropped)."""
    keep = []
    for i, c in enumerate(columns):
        if np.all(X[:, i] == X[0, i]):
            warnings.warn(f"column {c!r} is constant: dropped from the variables",
                          UserWarning, stacklevel=3)
        elif any(np.array_equal(X[:, i], X[:, j]) for j in keep):
            twin = next(columns[j] for j in keep if np.array_equal(X[:, i], X[:, j]))
            warnings.warn(f"column {c!r} repeats column {twin!r}: dropped from the variables",
                          UserWarning, stacklevel=3)
        else:
            keep.append(i)
    if not keep:
        raise ValueError("every column of X is constant: there is nothing to regress on")
    return keep


def _identifiers(columns) -> list[str]:
    from exprforge.engine.expr import reserved_names
    reserved, out = reserved_names(), []
    for c in columns:
        name = re.sub(r"\W", "_", c, flags=re.ASCII)
        if not name or not name[0].isalpha() or name.startswith("c_"):
            name = "x_" + name   # c_N are the constant fitter's parameter names
        while name in reserved or name in out:
            name += "_"
        out.append(name)
    return out


def _seed(random_state) -> int:
    if isinstance(random_state, numbers.Integral):
        return int(random_state)
    from sklearn.utils import check_random_state
    return int(check_random_state(random_state).randint(2**31 - 1))


# --- the front ------------------------------------------------------------------------

def _table(front):
    import pandas as pd
    rows = []
    for expr, loss, complexity in front:
        s = _sympy(expr)
        rows.append({"complexity": complexity, "loss": loss, "equation": _short(s),
                     "sympy": s})
    table = pd.DataFrame(rows, columns=["complexity", "loss", "equation", "sympy"])
    logs = np.log(np.maximum(table["loss"].to_numpy(float), _TINY))
    steps = np.diff(table["complexity"].to_numpy(float), prepend=0.0)
    # the first row against the mean predictor: loss 1 (log 0) at complexity 0
    table["score"] = -np.diff(logs, prepend=0.0) / np.maximum(steps, 1.0)
    return table


def _sympy(expr):
    """SymPy of an Expr, with binary-fraction constants shown as Floats, except the
    doubles nearest p*pi/q (what snapping puts there), shown as such: cos(y + pi/2)
    then reads -sin(y)."""
    import sympy as sp

    from exprforge.engine.sympy_bridge import to_sympy
    s = to_sympy(expr)
    odd = {r: _pi_multiple(float(r)) or sp.Float(float(r), 17) for r in s.atoms(sp.Rational)
           if not r.is_Integer and r.q > 64}
    return s.xreplace(odd) if odd else s


def _pi_multiple(value: float):
    """p*pi/q as SymPy when `value` is exactly the double nearest it (q in the snapping's
    PI_DENOMINATORS), else None."""
    import sympy as sp

    from exprforge.evolve.tasks.regress import pi_multiples
    for p, q, v in pi_multiples(value):
        if v == value:
            return sp.pi * sp.Rational(p, q)
    return None


def _short(s) -> str:
    """Text of a SymPy formula with its floats to 6 significant digits."""
    import sympy as sp
    return str(s.xreplace({f: sp.Float(f, 6) for f in s.atoms(sp.Float)}))


def _select(table, how: str) -> int:
    loss = table["loss"].to_numpy(float)
    if how == "accuracy":
        return int(np.argmin(loss))
    score = table["score"].to_numpy(float)
    if how == "score":
        return int(np.argmax(score))
    near = np.flatnonzero(loss <= 1.5 * max(loss.min(), _TINY))
    return int(near[np.argmax(score[near])])


def _torch_module(kernel):
    import torch

    class SymbolicModule(torch.nn.Module):
        """forward(X): the formula on the columns of X (rows, features)."""

        def __init__(self, kernel):
            super().__init__()
            self.kernel = kernel

        def forward(self, X):
            out = self.kernel(*[X[:, i] for i in range(X.shape[1])])
            return out.expand(X.shape[0]) if out.dim() == 0 else out

    return SymbolicModule(kernel)
