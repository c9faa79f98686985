"""Constant fitting for a candidate core: weighted least squares, then Lawson's iteration
toward the minimax (smallest maximum weighted error) solution, in float64; the caller
rounds the constants to the program's dtype and scores the rounded program in it.

The core's float literals become parameters c0, c1, ... (a literal used at several
places in the DAG is one parameter). The Jacobian comes from symbolic derivatives of
the core (engine.derive); the model is solved by Gauss-Newton steps, which is exact in
one step for the usual case, a core linear in its constants (a polynomial).
"""
from __future__ import annotations

import numpy as np

from exprforge.engine.derive import derive
from exprforge.engine.evaluate import evaluate, literal_value
from exprforge.engine.expr import Expr, const, retype, var

_PARAM = "c_"   # parameter names c_0, c_1, ...: leading letters no variable of ours uses


_COMPARE = frozenset({"lt", "le", "gt", "ge", "eq", "ne"})


def fitted_literals(core: Expr) -> list[Expr]:
    """The float literals fitting may change, in a fixed order. Thresholds (literals
    compared against) stay: the error is not differentiable in them."""
    compared = {a for n in core.toposort() if n.op in _COMPARE for a in n.args}
    return [n for n in core.toposort()
            if n.op == "const" and n.dtype.startswith("float") and n not in compared]


def parameters(core: Expr) -> tuple[Expr, list[Expr], np.ndarray]:
    """(core in float64 with literals replaced by parameter variables, the parameters,
    their current values)."""
    literals = fitted_literals(core)
    values = np.array([float(literal_value(n.attr, n.dtype)) for n in literals])
    params = [var(f"{_PARAM}{i}", "float64") for i in range(len(literals))]
    mapping = {lit: p for lit, p in zip(literals, params)}
    return retype(core.subs(mapping), "float64"), params, values


def with_constants(core: Expr, values, dtype: str) -> Expr:
    """`core` with its float literals (in parameters() order) set to `values`, rounded
    to `dtype`."""
    literals = fitted_literals(core)
    rounded = [float(np.asarray(v, dtype=dtype)) for v in values]
    return core.subs({lit: const(v, dtype) for lit, v in zip(literals, rounded)})


class Model:
    """A parametrized core evaluated in float64 on fixed inputs."""

    def __init__(self, core: Expr, inputs: dict, n: int):
        self.expr, self.params, self.start = parameters(core)
        self.n = n
        self.inputs = {k: np.asarray(v, dtype=np.float64) for k, v in inputs.items()
                       if k in core.var_names()}
        self._grads = self._linear = self._jacobian = None

    def __call__(self, c) -> np.ndarray:
        env = dict(self.inputs)
        env.update({p.name: float(v) for p, v in zip(self.params, c)})
        return np.broadcast_to(evaluate(self.expr, env), (self.n,)).astype(np.float64)

    @property
    def linear(self) -> bool:
        """Whether the core is linear in its constants (no parameter in any derivative)."""
        if self._linear is None:
            self._derivatives()
            names = {p.name for p in self.params}
            self._linear = not any(names & set(g.var_names()) for g in self._grads)
        return self._linear

    def _derivatives(self):
        if self._grads is None:
            self._grads = [derive(self.expr, p) for p in self.params]

    def jacobian(self, c) -> np.ndarray:
        if self.linear and self._jacobian is not None:
            return self._jacobian
        self._derivatives()
        env = dict(self.inputs)
        env.update({p.name: float(v) for p, v in zip(self.params, c)})
        cols = [np.broadcast_to(evaluate(g, env), (self.n,)) for g in self._grads]
        J = np.stack(cols, axis=1).astype(np.float64)
        if self.linear:
            self._jacobian = J
        return J


def fit(core: Expr, inputs: dict, target: np.ndarray, weight: np.ndarray,
        lawson_steps: int = 12, newton_steps: int = 4,
        dtype: str | None = None) -> tuple[np.ndarray, float]:
    """Constants minimizing max_i weight_i * |core(inputs_i) - target_i| (approximately):
    (values in parameters() order, the weighted max error they reach, in float64).
    With `dtype`, the values are representable in it: for a core linear in its
    constants they are rounded one at a time, the others refitted after each (so a
    later constant compensates an earlier one's rounding, as fpminimax does), and the
    better of that and plain rounding is returned. A core without constants returns
    its empty vector and its error."""
    from threadpoolctl import threadpool_limits
    model = Model(core, inputs, len(target))
    c = model.start.copy()
    # small solves: BLAS threads only contend (10-100x slower on a busy machine)
    with np.errstate(all="ignore"), threadpool_limits(1):
        if len(c) == 0 or len(target) == 0:
            return c, _max_error(model, c, target, weight) if len(target) else np.inf
        lawson = np.full(len(target), 1.0 / len(target))
        best, best_err = c.copy(), _max_error(model, c, target, weight)
        best_weights = weight * np.sqrt(lawson)
        for step in range(lawson_steps + 1):
            c = _weighted_least_squares(model, c, target, weight * np.sqrt(lawson), newton_steps)
            residual = np.abs(model(c) - target) * weight
            err = float(np.max(residual)) if np.all(np.isfinite(residual)) else np.inf
            if err < best_err:
                best, best_err = c.copy(), err
                best_weights = weight * np.sqrt(lawson)
            if not np.isfinite(err) or err == 0:
                break
            lawson = lawson * residual  # Lawson: weight the points where the error is large
            lawson /= lawson.sum()
            if not np.all(np.isfinite(lawson)):
                break
        if dtype is None:
            return best, best_err
        plain = _rounded(best, dtype)
        options = [(plain, _max_error(model, plain, target, weight))]
        if model.linear and np.isfinite(best_err):
            turn = _round_in_turn(model, best, target, best_weights, dtype)
            options.append((turn, _max_error(model, turn, target, weight)))
        return min(options, key=lambda o: o[1])


def _rounded(c, dtype: str) -> np.ndarray:
    return np.asarray(c, dtype=dtype).astype(np.float64)


def _round_in_turn(model: Model, c, target, w, dtype: str) -> np.ndarray:
    c = np.array(c, dtype=np.float64)
    J = model.jacobian(c)
    offset = model(c) - J @ c                    # the part no constant multiplies
    influence = np.linalg.norm(J * w[:, None], axis=0) * np.abs(c)
    free = list(np.argsort(-influence, kind="stable"))
    while free:
        i = free.pop(0)
        c[i] = _rounded(c[i], dtype)
        if not free:
            break
        fixed = [j for j in range(len(c)) if j not in free]
        rhs = (target - offset - J[:, fixed] @ c[fixed]) * w
        A = J[:, free] * w[:, None]
        scale = np.linalg.norm(A, axis=0)
        scale[scale == 0] = 1.0
        sol = np.linalg.lstsq(A / scale, rhs, rcond=None)[0] / scale
        if np.all(np.isfinite(sol)):
            c[free] = sol
    return c


def _weighted_least_squares(model: Model, c, target, w, steps: int):
    if model.linear:  # y = J c + y0 with J fixed: one solve
        steps = 1
    for _ in range(steps):
        r = (target - model(c)) * w
        J = model.jacobian(c) * w[:, None]
        if not (np.all(np.isfinite(r)) and np.all(np.isfinite(J))):
            break
        # scale columns: polynomial columns differ by orders of magnitude
        scale = np.linalg.norm(J, axis=0)
        scale[scale == 0] = 1.0
        delta = np.linalg.lstsq(J / scale, r, rcond=None)[0] / scale
        c = c + delta
        if np.max(np.abs(delta) / np.maximum(np.abs(c), 1e-300)) < 1e-15:
            break
    return c


def _max_error(model, c, target, weight) -> float:
    residual = np.abs(model(c) - target) * weight
    return float(np.max(residual)) if np.all(np.isfinite(residual)) else np.inf
