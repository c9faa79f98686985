"""`exprforge.discover_ode`: a symbolic ODE system dx/dt = f(x) from sampled trajectories.

    model = discover_ode(t, X, names=["x", "y"], random_state=0)
    print(model)                                    # dx/dt = ..., dy/dt = ...
    solve_ivp(model.rhs, (0, 10), y0)               # compiled right-hand side
    model.simulate(t_eval, y0)                      # (len(t_eval), states)

Derivatives are estimated per trajectory (evolve/tasks/ode.py: Savitzky-Golay with a
GCV window on uniform times, else a GCV smoothing spline), and each right-hand side is
fitted on the smoothed states (noise on the inputs biases a regression; the smoothed
states carry much less of it). 5% of the points at each end of every trajectory are
dropped (their derivatives are one-sided estimates). One SymbolicRegressor per state.
"""
from __future__ import annotations

import numpy as np

from exprforge.evolve.tasks.ode import estimate_derivatives

DEFAULT_OPS = ("add", "sub", "mul", "div", "sin", "cos", "exp", "log")


def discover_ode(t, X, names=None, *, trajectory=None, derivative: str = "auto",
                 ops=DEFAULT_OPS, time_budget=None, random_state=None, trim=0.05,
                 discard=0.2, **regressor_params) -> "ODEModel":
    """Fit dX/dt = f(X), one symbolic regression per state. t, X: one trajectory
    (arrays (rows,), (rows, states)), several with `trajectory` labels per row, or lists
    of arrays, one per trajectory. names: the states (default: X's DataFrame columns,
    else x0, x1, ...). derivative: "auto", "savgol", "spline" or "finite". trim: points
    dropped at each end of each trajectory; discard: the fraction of rows left out of the
    fits where a second derivative estimator disagrees most (see estimate_derivatives);
    on the rows kept, the RMS gap between the two estimators becomes each regressor's
    noise_std (how far snapping may move a constant). time_budget: seconds in all,
    split evenly across the states. Other keywords go to SymbolicRegressor (population,
    generations, max_size, max_evals, model_selection, workers, noise_std)."""
    import pandas as pd

    from exprforge.regressor import SymbolicRegressor
    names = _names(X, names)
    Xs = [_values(x) for x in X] if isinstance(X, (list, tuple)) else _values(X)
    data = estimate_derivatives(t, Xs, derivative, trajectory=trajectory, trim=trim,
                                discard=discard)
    if data.X.shape[1] != len(names):
        raise ValueError(f"{len(names)} names for {data.X.shape[1]} states")
    if time_budget is not None and not time_budget > 0:
        raise ValueError(f"time_budget must be positive seconds, got {time_budget!r}")
    budget = None if time_budget is None else time_budget / len(names)
    frame = pd.DataFrame(data.X, columns=names)
    regressors = {}
    for j, name in enumerate(names):
        noise = None if data.error is None else float(data.error[j])
        reg = SymbolicRegressor(**{"ops": tuple(ops), "time_budget": budget,
                                   "random_state": random_state, "noise_std": noise,
                                   **regressor_params})
        regressors[name] = reg.fit(frame, data.dX[:, j])
    return ODEModel(names, regressors, data.method)


class ODEModel:
    """A discovered system: names, exprs (state -> Expr), equations (state -> SymPy),
    regressors (state -> fitted SymbolicRegressor), rhs(t, y) for solve_ivp."""

    def __init__(self, names, regressors: dict, derivative: str = ""):
        self.names = list(names)
        self.regressors = dict(regressors)
        self.derivative = derivative
        self.exprs = {n: r.expr_ for n, r in self.regressors.items()}
        self.equations = {n: r.sympy() for n, r in self.regressors.items()}
        self._kernels = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_kernels"] = None          # compiled code: rebuilt from the store on use
        return state

    @property
    def kernels(self) -> list:
        """One compiled float64 kernel per state (numba), taking every state in `names`
        order."""
        if self._kernels is None:
            import exprforge as xf
            self._kernels = []
            for n in self.names:
                reg = self.regressors[n]
                self._kernels.append(xf.compile(
                    self.exprs[n], target="numba", dtype="float64",
                    args=[(v, "float64") for v in reg.variable_names_]))
        return self._kernels

    def rhs(self, t, y):
        """dy/dt at y: shape (states,) as solve_ivp calls it, or (states, k) when it is
        called with vectorized=True. t is unused (the system is autonomous)."""
        y = np.array(y, dtype=np.float64)     # a copy, contiguous, of the kernels' dtype
        if y.shape[:1] != (len(self.names),):
            raise ValueError(f"y has shape {y.shape}; expected ({len(self.names)}, ...)")
        kernels = self._kernels if self._kernels is not None else self.kernels
        flat = y.ndim == 1
        # 1-element arrays take the kernels' cheapest call: a 2-state call ~15 us here
        cols = y.reshape(-1, 1) if flat else y
        out = np.empty(y.shape)
        with np.errstate(all="ignore"):
            for i, k in enumerate(kernels):
                v = k(*cols)          # 0-d when the formula ignores its inputs: broadcast
                out[i] = v[0] if flat and np.ndim(v) else v
        return out

    def simulate(self, t_eval, y0, method: str = "LSODA", **options) -> np.ndarray:
        """The trajectory from y0 at times t_eval (from t_eval[0]): (len(t_eval), states).
        Raises RuntimeError when the integration fails (e.g. a blow-up)."""
        from scipy.integrate import solve_ivp
        t_eval = np.asarray(t_eval, dtype=np.float64)
        y0 = np.asarray(y0, dtype=np.float64)
        if t_eval.ndim != 1 or len(t_eval) < 1:
            raise ValueError("t_eval must be a 1-D array of times")
        if y0.shape != (len(self.names),):
            raise ValueError(f"y0 has shape {y0.shape}; expected ({len(self.names)},)")
        options.setdefault("rtol", 1e-8)
        options.setdefault("atol", 1e-10)
        sol = solve_ivp(self.rhs, (t_eval[0], t_eval[-1]), y0, method=method,
                        t_eval=t_eval, **options)
        if not sol.success:
            raise RuntimeError(f"integration failed: {sol.message}")
        return sol.y.T

    def _row(self, name):
        reg = self.regressors[name]
        return reg.equations_.iloc[reg.best_index_]

    def to_dict(self) -> dict:
        """JSON-ready: state -> {equation, loss, complexity}, in `names` order."""
        out = {}
        for n in self.names:
            row = self._row(n)
            out[n] = {"equation": str(self.equations[n]), "loss": float(row["loss"]),
                      "complexity": int(row["complexity"])}
        return out

    def __str__(self):
        return "\n".join(f"d{n}/dt = {self._row(n)['equation']}" for n in self.names)

    def __repr__(self):
        lines = "; ".join(str(self).splitlines())
        return f"<exprforge.ODEModel {lines}>"


def _names(X, names) -> list:
    first = X[0] if isinstance(X, (list, tuple)) and len(X) else X
    if names is None:
        if hasattr(first, "columns"):
            return [str(c) for c in first.columns]
        width = np.shape(first)[1] if np.ndim(first) == 2 else 0
        return [f"x{i}" for i in range(width)] or ["x0"]
    if isinstance(names, str):
        names = [s.strip() for s in names.split(",")]
    names = [str(n) for n in names]
    if len(set(names)) != len(names):
        raise ValueError(f"state names must be distinct, got {names}")
    return names


def _values(X):
    return X.to_numpy(dtype=np.float64) if hasattr(X, "to_numpy") else X
