"""Symbolic regression on the search core: evolve float64 formulas over named features,
minimizing (normalized squared error, size).

Loss: mean squared error over the whole data divided by the target's variance, so 0
is exact and 1 is no better than predicting the mean. Predictions come from
engine.evaluate on whole columns (NumPy, vectorized); a prediction that is NaN or
infinite anywhere scores LOSS_CAP. Complexity: the node count of the formula written
as a tree (leaves included), the usual measure in symbolic regression.

Constants: each candidate's float literals (fitting.parameters) are fitted by plain
least squares in float64: one linear solve when the formula is linear in them, else
scipy's Levenberg-Marquardt with the symbolic Jacobian (engine.derive), value and
gradients evaluated in one walk. Not fitting.fit: that one iterates toward minimax
(Lawson), right for ULP bounds, wrong for a mean squared loss.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from exprforge.engine.derive import derive
from exprforge.engine.evaluate import apply_node, evaluate
from exprforge.engine.expr import Expr, const, make, var

from ..executors import FitnessCache, derive_seed
from ..fitting import parameters, with_constants
from ..primitives import primitive_set
from ..search import Evaluated

NGUYEN_OPS = ("add", "sub", "mul", "div", "sin", "cos", "exp", "log")
LOSS_CAP = 1e30        # the loss of a formula that is NaN or infinite somewhere
MAX_FIT_ROWS = 2000    # constants are fitted on at most this many rows (all are scored)


def fit_least_squares(core: Expr, inputs: dict, target: np.ndarray,
                      max_nfev: int = 20) -> np.ndarray:
    """Constants of `core` (in fitting.parameters order) minimizing the sum of squared
    residuals, from the core's own values as the start; at most max_nfev*(k+1)
    evaluations for k constants. Returns the start when the solve fails or does not
    improve it."""
    from scipy.optimize import least_squares
    expr, params, start = parameters(core)
    if len(start) == 0:
        return start
    grads = [derive(expr, p) for p in params]
    names = {p.name for p in params}
    linear = not any(names & set(g.var_names()) for g in grads)
    program = _Program([expr, *grads], [p.name for p in params], inputs, len(target))

    def sse(c):
        r = program(c)[0] - target
        return float(r @ r) if np.all(np.isfinite(r)) else np.inf

    with np.errstate(all="ignore"), _one_blas_thread():   # small solves: threads contend
        best, best_sse = start, sse(start)
        try:
            if linear:          # y = J c + offset, J fixed: one linear solve
                value, *cols = program(start)
                J = np.stack(cols, axis=1)
                offset = value - J @ start
                if np.all(np.isfinite(J)) and np.all(np.isfinite(offset)):
                    c = np.linalg.lstsq(J, target - offset, rcond=None)[0]
                    if sse(c) < best_sse:
                        best = c
                return best
            if not np.isfinite(best_sse):
                return best

            def residual(c):
                r = program(c)[0] - target
                return np.where(np.isfinite(r), r, 1e150)

            def jacobian(c):
                J = np.stack(program(c)[1:], axis=1)
                return np.where(np.isfinite(J), J, 0.0)

            method = "lm" if len(target) >= len(start) else "trf"
            sol = least_squares(residual, start, jac=jacobian, method=method,
                                max_nfev=max_nfev * (len(start) + 1))
            if sse(sol.x) < best_sse:
                best = sol.x
        except (np.linalg.LinAlgError, ValueError):
            pass
    return best


class _Program:
    """Several Exprs over the same inputs evaluated in one walk (shared nodes once), as
    functions of the parameter vector: the value and its gradients for the fitter,
    without engine.evaluate's per-call graph walk setup."""

    def __init__(self, roots, params, inputs: dict, n: int):
        order = {}
        for root in roots:
            order.update(dict.fromkeys(root.toposort()))
        self.order, self.roots, self.params, self.n = list(order), roots, params, n
        self.inputs = {k: np.asarray(v, np.float64) for k, v in inputs.items()}
        self._last = (None, None)

    def __call__(self, c) -> list:
        key = np.asarray(c, np.float64).tobytes()
        if self._last[0] == key:
            return self._last[1]
        env = dict(self.inputs)
        env.update({name: np.float64(v) for name, v in zip(self.params, c)})
        values = {}
        for node in self.order:
            if node.op == "var":
                values[node] = env[node.name]
            else:
                values[node] = apply_node(node, [values[a] for a in node.args])
        out = [np.broadcast_to(values[r], (self.n,)) for r in self.roots]
        self._last = (key, out)
        return out


_CONTROLLER = None


def _one_blas_thread():
    global _CONTROLLER
    if _CONTROLLER is None:    # inspecting the loaded BLAS libraries costs ~5 ms: once
        from threadpoolctl import ThreadpoolController
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1)


@dataclass
class RegressionProblem:
    """The search problem for one data set: picklable (workers get the data; the fitness
    cache stays with the caller)."""
    X: np.ndarray                    # (rows, features), float64, finite
    y: np.ndarray                    # (rows,), float64, finite
    names: tuple                     # one valid variable name per feature
    ops: tuple = NGUYEN_OPS
    seed: int = 0
    extra_seeds: tuple = ()          # Exprs to start from (warm start: a previous front)
    cache: object = field(default_factory=FitnessCache)

    def __post_init__(self):
        self.X = np.ascontiguousarray(self.X, dtype=np.float64)
        self.y = np.ascontiguousarray(self.y, dtype=np.float64).reshape(-1)
        self.names = tuple(self.names)
        if self.X.ndim != 2 or self.X.shape[1] != len(self.names) or \
                self.X.shape[0] != self.y.shape[0]:
            raise ValueError(f"X {self.X.shape}, y {self.y.shape} and {len(self.names)} "
                             "names do not agree")
        variance = float(np.var(self.y))
        self.scale = variance if variance > 0 else 1.0   # a constant target: plain MSE
        rows = np.arange(self.y.size)
        if rows.size > MAX_FIT_ROWS:   # a fixed random subset, the same in every worker
            rng = np.random.default_rng(derive_seed(self.seed, "fit rows") % 2**63)
            rows = np.sort(rng.choice(rows, MAX_FIT_ROWS, replace=False))
        self.fit_rows = rows

    def __getstate__(self):
        state = dict(self.__dict__)
        state["cache"] = None        # the caller's, and it grows every generation
        return state

    @property
    def pset(self):
        return primitive_set(self.ops, self.names, "float64", constants=(),
                             ephemeral=(-2.0, 2.0))

    def columns(self, rows=None) -> dict:
        X = self.X if rows is None else self.X[rows]
        return {n: X[:, i] for i, n in enumerate(self.names)}

    def seeds(self) -> list[Expr]:
        """The variables, each variable in a linear form a*x + b, and the full linear
        model; the search fills the rest of the population at random. Literals are
        distinct (equal literals would be one shared parameter)."""
        xs = [var(n, "float64") for n in self.names]
        out = list(self.extra_seeds) + list(xs)
        out += [make("add", [make("mul", [const(1.0 + 2.0 ** -8 * i, "float64"), x]),
                             const(0.5, "float64")]) for i, x in enumerate(xs)]
        if len(xs) > 1:
            total = const(0.5, "float64")
            for i, x in enumerate(xs):
                term = make("mul", [const(1.0 + 2.0 ** -8 * i, "float64"), x])
                total = make("add", [total, term])
            out.append(total)
        return out

    def predict(self, expr: Expr, X=None) -> np.ndarray:
        env = self.columns() if X is None else {n: X[:, i] for i, n in enumerate(self.names)}
        with np.errstate(all="ignore"):
            out = evaluate(expr, {k: v for k, v in env.items() if k in expr.var_names()})
        return np.broadcast_to(np.asarray(out, np.float64), (len(next(iter(env.values()))),))

    def loss(self, expr: Expr) -> float:
        pred = self.predict(expr)
        if not np.all(np.isfinite(pred)):
            return LOSS_CAP
        r = pred - self.y
        with np.errstate(all="ignore"):
            value = float(r @ r) / r.size / self.scale
        return min(value, LOSS_CAP) if np.isfinite(value) else LOSS_CAP

    def evaluate(self, expr: Expr, refit: bool = True) -> Evaluated:
        if refit:
            rows = self.fit_rows
            values = fit_least_squares(expr, self.columns(rows), self.y[rows])
            if len(values):
                expr = with_constants(expr, values, "float64")
        return Evaluated(expr, (self.loss(expr), float(expr.tree_size())))
