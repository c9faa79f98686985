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

import itertools
import math
import time
from dataclasses import dataclass, field

import numpy as np

from exprforge.engine.derive import cleanup, derive
from exprforge.engine.evaluate import apply_node, evaluate
from exprforge.engine.expr import Expr, const, make, rebuild, var
from exprforge.engine.parse import parse

from ..executors import FitnessCache, derive_seed
from ..fitting import parameters, with_constants
from ..primitives import primitive_set
from ..search import Evaluated
from .enumeration import enumerated_terms

NGUYEN_OPS = ("add", "sub", "mul", "div", "sin", "cos", "exp", "log")
LOSS_CAP = 1e30        # the loss of a formula that is NaN or infinite somewhere
MAX_FIT_ROWS = 2000    # constants are fitted on at most this many rows (all are scored)
SNAP_FLOOR = 1e-14     # snapping may always raise the loss this much (relative RMS 1e-7)
SNAP_PASSES = 3
DENOMINATORS = (1, 2, 3, 4, 5, 6, 8, 10)
PI_DENOMINATORS = (1, 2, 3, 4, 6)     # snapping also tries p*pi/q (a phase of pi/2, ...)
SIGNIFICANT = 2          # ... and decimals of up to this many digits (0.075, 1.5e-3)
NOISE_SLACK = 2.0        # snapping accepts a loss up to this times the noise's own
POLY_DEGREES = (0, 6, 4, 3, 2)   # seed polynomials' degree by number of variables (4+: 2)
RATIONAL_DEGREES = {1: (4, 2), 2: (3, 2), 3: (2, 2), 4: (2, 1)}   # (numerator,
#   denominator) total degree of the rational seeds by number of variables; none for 5+
RATIONAL_SEEDS = 3       # the rational seeds kept (the lowest losses)
TRIG_PAIRS = 4           # trigonometric seeds use x_i +- x_j for up to this many variables
TRIG_COLUMNS = 64        # and none when the library is wider (elimination costs ~k**3)


def fit_least_squares(core: Expr, inputs: dict, target: np.ndarray,
                      max_nfev: int = 20, fixed: dict | None = None) -> np.ndarray:
    """Constants of `core` (in fitting.parameters order) minimizing the sum of squared
    residuals, from the core's own values as the start; at most max_nfev*(k+1)
    evaluations for k constants. `fixed` maps constant indices to values held, not
    fitted. Returns the start when the solve fails or does not improve it."""
    expr, params, values = parameters(core)
    fixed = fixed or {}
    values[list(fixed)] = list(fixed.values())
    if fixed:
        expr = expr.subs({params[i]: const(float(v), "float64") for i, v in fixed.items()})
    free = [i for i in range(len(values)) if i not in fixed]
    if free:
        values[free] = _fit_free(expr, [params[i] for i in free], values[free], inputs,
                                 target, max_nfev)
    return values


def _fit_free(expr: Expr, params: list, start: np.ndarray, inputs: dict,
              target: np.ndarray, max_nfev: int) -> np.ndarray:
    from scipy.optimize import least_squares
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
    noise_std: float | None = None   # of y, when known (snap() accepts a loss near it)
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
        # the loss a true formula would have, from the noise alone (when known)
        self.noise_loss = 0.0 if self.noise_std is None else \
            float(self.noise_std) ** 2 / self.scale
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
        """The variables, each in a linear form a*x + b, additive polynomials (a
        polynomial in each variable, summed) of degree 1 up to POLY_DEGREES[#vars], the
        full quadratic for 2-4 variables, target transforms (transformed), rational
        functions (rational), sums of trigonometric terms (trigonometric), affine fits
        of one or two enumerated formulas (enumeration.enumerated_terms) and a power
        law (power_law); the search fills the rest of the population at random. The
        coefficients of the polynomials are fitted by one linear solve each, like any
        formula linear in its constants."""
        xs = [var(n, "float64") for n in self.names]
        out = list(self.extra_seeds) + list(xs)
        if "add" in self.ops and "mul" in self.ops:
            literals = _Literals()
            out += [polynomial([x], 1, literals) for x in xs]
            degrees = POLY_DEGREES[min(len(xs), len(POLY_DEGREES) - 1)]
            out += [polynomial(xs, d, literals) for d in range(1 if len(xs) > 1 else 2,
                                                               degrees + 1)]
            if 2 <= len(xs) <= 4:
                out.append(quadratic(xs, literals))
            out += transformed(self, xs, literals)
            out += rational(self, xs)
            out += trigonometric(self, xs)
            out += [polynomial(terms, 1, literals)
                    for terms in enumerated_terms(self, SNAP_FLOOR)]
        law = power_law(self.X, self.y, self.names, self.ops)
        return out + ([law] if law is not None else [])

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

    def evaluate(self, expr: Expr, refit: bool = True, fixed: dict | None = None) -> Evaluated:
        if refit:
            rows = self.fit_rows
            values = fit_least_squares(expr, self.columns(rows), self.y[rows], fixed=fixed)
            if len(values):
                expr = with_constants(expr, values, "float64")
        return Evaluated(expr, (self.loss(expr), float(expr.tree_size())))

    def snap(self, item: Evaluated, deadline: float | None = None) -> Evaluated:
        """`item` with constants moved to simple values (0, integers, then fractions with
        small denominators, taken from the latest refit) wherever refitting the others
        keeps the loss within what one free parameter is worth by the Bayesian
        information criterion (a factor exp(log(n) / n) for n rows: 1.5% at 400 rows,
        0.09% at 10,000; on exact data the SNAP_FLOOR decides), or keeps it within
        NOISE_SLACK times the loss the noise alone gives (noise_std**2 / var(y), when
        noise_std is known: the formula then fits as well as a true one would), then
        tidied (0*x and x*1 terms gone): 1.00001*x becomes x, and under noise a
        spurious 0.001*y**2 goes.
        Stops trying at `deadline` (time.monotonic())."""
        expr = item.expr
        _, _, values = parameters(expr)
        rows = self.fit_rows
        columns, target = self.columns(rows), self.y[rows]
        fixed: dict = {}
        worth = np.exp(np.log(self.y.size) / self.y.size)
        for _ in range(SNAP_PASSES):   # a refit can leave 1e-18 where a 0 was refused
            before = len(fixed)
            for i in map(int, np.argsort([_distance_to_simple(v) for v in values])):
                for candidate in [] if i in fixed else _simple_values(values[i]):
                    if deadline is not None and time.monotonic() > deadline:
                        return self.tidy(item)
                    trial_values = fit_least_squares(expr, columns, target,
                                                     fixed={**fixed, i: candidate})
                    trial = with_constants(expr, trial_values, "float64")
                    loss = self.loss(trial)
                    if loss <= max(item.objectives[0] * worth + SNAP_FLOOR,
                                   NOISE_SLACK * self.noise_loss):
                        fixed[i], values = candidate, trial_values
                        item = Evaluated(trial, (loss, float(trial.tree_size())))
                        break
            if len(fixed) == before:
                break
        return self.tidy(item)

    def tidy(self, item: Evaluated) -> Evaluated:
        """item without terms that vanish on real data: 0*e, 0/e, e*1, e+0, ... (fine for
        a regression formula on finite data, not in IEEE arithmetic, so only here)."""
        expr, previous = item.expr, None
        while expr is not previous:   # folding 0 + 0 can make a new 0 * e
            previous, expr = expr, cleanup(rebuild(expr, _drop_zero_products))
        if expr is item.expr:
            return item
        return Evaluated(expr, (self.loss(expr), float(expr.tree_size())))


def _drop_zero_products(node: Expr, args) -> Expr | None:
    zero = [a.op == "const" and a.value == 0 for a in args]
    if node.op == "mul" and any(zero) or node.op == "div" and zero[0]:
        return const(0.0, node.dtype)
    return None


def _nearby_simple(c: float, limit: int = 3) -> list[float]:
    """Simple numbers near c (c itself when it is one): up to `limit` fractions within
    1% of max(1, |c|) of c, the smallest denominator first; then c rounded to
    SIGNIFICANT digits or fewer (textbook constants: 0.075, 0.05) where that moves it
    by under 1% of |c|; then the nearest multiple p*pi/q (q in PI_DENOMINATORS;
    regressor's sympy() shows it with pi) within the first window, if any."""
    near = 0.01 * max(1.0, abs(c))
    fractions = [round(c * d) / d for d in DENOMINATORS]
    out = list(dict.fromkeys(v for v in fractions if abs(v - c) <= near))[:limit]
    decimals = [float(f"{c:.{k - 1}e}") for k in range(1, SIGNIFICANT + 1)]
    out += [v for v in dict.fromkeys(decimals) if abs(v - c) <= 0.01 * abs(c) and
            v not in out]
    pis = sorted((v for _, _, v in pi_multiples(c) if abs(v - c) <= near and v not in out),
                 key=lambda v: abs(v - c))
    return out + pis[:1]


def pi_multiples(c: float) -> list[tuple]:
    """(p, q, p*pi/q) nearest c for each q in PI_DENOMINATORS, p != 0."""
    out = []
    for q in PI_DENOMINATORS:
        p = round(c * q / math.pi)
        if p:
            out.append((p, q, p * math.pi / q))
    return out


def _simple_values(c: float) -> list[float]:
    """What snapping tries for c: 0 first (a redundant constant, as d in log(c*x) - d,
    goes once the others are refitted), then the nearby simple numbers."""
    return ([0.0] if c != 0 else []) + [v for v in _nearby_simple(c) if v != 0]


def _distance_to_simple(c: float) -> float:
    return min((abs(v - c) for v in _nearby_simple(c, 1)), default=abs(c))


def power_law(X: np.ndarray, y: np.ndarray, names, ops) -> Expr | None:
    """A seed c * prod(x_i ** a_i) fitted in log space, exponents rounded to halves,
    built from the ops at hand (pow, else products and quotients with sqrt or
    exp(a*log(x)) for halves); None when the data or the ops do not allow it (some
    x <= 0, y changing sign). Monomials in positive variables are common in physics
    (two in five of the AI Feynman equations) and GP finds them slowly."""
    if not (np.all(X > 0) and (np.all(y > 0) or np.all(y < 0))):
        return None
    A = np.column_stack([np.log(X), np.ones(len(y))])
    with np.errstate(all="ignore"):
        coef = np.linalg.lstsq(A, np.log(np.abs(y)), rcond=None)[0]
    halves = np.round(coef[:-1] * 2) / 2
    up, down = [], []
    for name, a in zip(names, halves):
        if a != 0 and np.isfinite(a):
            factor = _power(var(name, "float64"), abs(float(a)), ops)
            if factor is None:
                return None
            (up if a > 0 else down).append(factor)
    if not up and not down or (down and "div" not in ops) or "mul" not in ops:
        return None
    scale = const(float(np.sign(y[0]) * np.exp(coef[-1])), "float64")
    term = _product([scale] + up)
    return make("div", [term, _product(down)]) if down else term


def _product(factors: list[Expr]) -> Expr:
    out = factors[0]
    for f in factors[1:]:
        out = make("mul", [out, f])
    return out


def _power(x: Expr, a: float, ops) -> Expr | None:
    """x ** a (a > 0, a multiple of 1/2) from the ops at hand, or None."""
    if "pow" in ops:   # distinct starts: equal literals would be one shared parameter
        return make("pow", [x, const(a + 2.0 ** -30 * len(x.name), "float64")])
    whole, half = int(a), a % 1 == 0.5
    factors = [x] * whole
    if half:
        if "sqrt" in ops:
            factors.append(make("sqrt", [x]))
        elif "exp" in ops and "log" in ops:
            factors.append(make("exp", [make("mul", [const(0.5, "float64"),
                                                       make("log", [x])])]))
        else:
            return None
    return _product(factors)


class _Literals:
    """Distinct starting values for seed coefficients (equal literals would be one
    shared parameter)."""

    def __init__(self):
        self.count = 0

    def __call__(self) -> Expr:
        self.count += 1
        return const(1.0 + 2.0 ** -10 * self.count, "float64")


def polynomial(xs: list[Expr], degree: int, literal) -> Expr:
    """c + sum over x of x*(c1 + x*(c2 + ... x*c_degree)) (Horner form per variable)."""
    total = literal()
    for x in xs:
        inner = literal()
        for _ in range(degree - 1):
            inner = make("add", [literal(), make("mul", [x, inner])])
        total = make("add", [total, make("mul", [x, inner])])
    return total


def quadratic(xs: list[Expr], literal) -> Expr:
    """The full quadratic: c + sum c_i x_i + sum_{i <= j} c_ij x_i x_j."""
    total = polynomial(xs, 1, literal)
    for i, a in enumerate(xs):
        for b in xs[i:]:
            total = make("add", [total, make("mul", [literal(), make("mul", [a, b])])])
    return total


# (op wrapped around the polynomial, the target transform it undoes, in the IR); a
# transform is used only where op(transform(y)) gives y back on the data
TRANSFORMS = (("sqrt", "y * y"), ("exp", "log(y)"), ("log", "exp(y)"))


def transformed(problem: "RegressionProblem", xs: list[Expr], literal) -> list[Expr]:
    """Seeds op(P) with P the quadratic (additive for 5+ variables; for one variable
    the polynomial of degree POLY_DEGREES[1], as the plain seeds) fitted to the
    transformed target, for each op of TRANSFORMS at hand: y = sqrt((x2-x1)**2 + ...)
    is a quadratic in y**2, log(x + 1) + log(x**2 + 1) a cubic in exp(y). AI Feynman
    tries such transforms of y before its polynomial fits; here they only start the
    search. P's coefficients come from one linear solve on the fit rows."""
    rows = problem.fit_rows
    y, columns = problem.y[rows], problem.columns(rows)
    out = []
    for op, transform in TRANSFORMS:
        if op not in problem.ops:
            continue
        t = parse(transform, vars={"y": "float64"})
        with np.errstate(all="ignore"):
            target = np.asarray(evaluate(t, {"y": y}), np.float64)
            back = np.asarray(evaluate(make(op, [t]), {"y": y}), np.float64)
        if not (np.all(np.isfinite(target)) and
                np.allclose(back, y, rtol=1e-9, atol=1e-12 * np.max(np.abs(y)))):
            continue
        poly = polynomial(xs, POLY_DEGREES[1], literal) if len(xs) == 1 else \
            quadratic(xs, literal) if len(xs) <= 4 else polynomial(xs, 2, literal)
        values = fit_least_squares(poly, columns, target)
        out.append(make(op, [with_constants(poly, values, "float64")]))
    return out


def rational(problem: "RegressionProblem", xs: list[Expr]) -> list[Expr]:
    """Seeds P/Q, P and Q sparse polynomials (total degrees RATIONAL_DEGREES), fitted
    linearly as in SINDy-PI: y*Q = P is linear in the coefficients once one monomial of
    Q, the lead, has coefficient 1. For each non-constant lead: least squares of y*lead
    on P's monomials and -y*m for Q's other monomials m, then backward elimination
    (elimination_path), from which two models are taken (sparse_choices). The
    RATIONAL_SEEDS leads whose first choice (the gap's) has the lowest loss give the
    seeds. Rational right-hand sides (saturation x/(1 + x), x*y/(1 + x**2)) are common in ODE
    models and slow for GP to assemble."""
    degrees = RATIONAL_DEGREES.get(len(xs))
    if degrees is None or not {"add", "mul", "div"} <= set(problem.ops):
        return []
    rows = problem.fit_rows
    X, y = problem.X[rows], problem.y[rows]
    numerator, denominator = (_monomials(len(xs), d) for d in degrees)
    with np.errstate(all="ignore"):
        N = np.column_stack([np.prod(X[:, list(m)], axis=1) for m in numerator])
        D = {m: np.prod(X[:, list(m)], axis=1) for m in denominator}
    leads = []
    for lead in denominator[1:]:
        others = [m for m in denominator if m != lead]
        with np.errstate(all="ignore"):
            F = np.column_stack([N] + [-y * D[m] for m in others])
            target = y * D[lead]
        if not (np.all(np.isfinite(F)) and np.all(np.isfinite(target))):
            continue
        path = elimination_path(F, target, required=range(len(numerator)))
        exprs = []
        for coef in sparse_choices(path, float(target @ target), len(target)):
            if not np.any(coef[:len(numerator)]):
                continue
            top = _weighted_sum([_monomial(xs, m) for m in numerator], coef[:len(numerator)])
            rest = _weighted_sum([_monomial(xs, m) for m in others], coef[len(numerator):])
            bottom = _monomial(xs, lead)
            bottom = bottom if rest is None else make("add", [bottom, rest])
            exprs.append(make("div", [top, bottom]))
        losses = [problem.loss(e) for e in exprs]
        if exprs and losses[0] < LOSS_CAP:
            leads.append((losses[0], [e for e, v in zip(exprs, losses) if v < LOSS_CAP]))
    leads.sort(key=lambda item: item[0])
    return list(dict.fromkeys(e for _, exprs in leads[:RATIONAL_SEEDS] for e in exprs))


def trigonometric(problem: "RegressionProblem", xs: list[Expr]) -> list[Expr]:
    """Seeds sum c_k * f_k, sparse, over SINDy's usual library: the monomials of degree
    up to 2 (1 for 5+ variables) and sin and cos of each variable and, for up to
    TRIG_PAIRS variables, of each pair's sum and difference; fitted by backward
    elimination (elimination_path), two models taken (sparse_choices). Pendulum and
    coupled-phase models (0.5*sin(x - y) - sin(x)) are such sums, and GP rarely
    assembles several trigonometric terms with the right phases at once. None for a
    library of more than TRIG_COLUMNS terms (21+ variables)."""
    ops = set(problem.ops)
    if not {"sin", "cos", "add", "mul"} <= ops:
        return []
    args = list(xs)
    if len(xs) <= TRIG_PAIRS:
        for a, b in itertools.combinations(xs, 2):
            args += [make("add", [a, b])] + ([make("sub", [a, b])] if "sub" in ops else [])
    degree = 2 if len(xs) <= 4 else 1
    terms = [_monomial(xs, m) for m in _monomials(len(xs), degree)] + \
        [make(f, [a]) for a in args for f in ("sin", "cos")]
    if len(terms) > TRIG_COLUMNS:
        return []
    rows = problem.fit_rows
    columns, y = problem.columns(rows), problem.y[rows]
    with np.errstate(all="ignore"):
        F = np.column_stack([np.ones(len(rows)) if t is None else np.broadcast_to(
            evaluate(t, {n: columns[n] for n in t.var_names()}), (len(rows),))
            for t in terms])
    if not np.all(np.isfinite(F)):
        return []
    path = elimination_path(F, y)
    return [_weighted_sum(terms, c) for c in sparse_choices(path, float(y @ y), len(y))
            if np.any(c)]


def sparse_choices(path: list, energy: float, n: int) -> list[np.ndarray]:
    """Two models from an elimination path: the one before the largest relative rise of
    the residual (the gap between fitting the data and fitting its noise: on exact
    data, dropping a spurious term raises the residual by little, a true one by orders
    of magnitude), and the one of lowest BIC n*log(RSS/n) + k*log(n) (the same when
    they agree). Residuals are floored at SNAP_FLOOR times the target's energy, so
    rounding noise does not count as signal."""
    if not path:
        return []
    floor = SNAP_FLOOR * energy
    logs = np.log([rss + floor for _, rss, _ in path])
    gap = int(np.argmax(np.diff(logs))) if len(path) > 1 else 0
    sizes = np.array([size for _, _, size in path])
    bic = n * (logs - math.log(n)) + sizes * math.log(n)
    return [path[i][0] for i in dict.fromkeys([gap, int(np.argmin(bic))])]


def _monomials(count: int, degree: int) -> list[tuple]:
    """Monomials in `count` variables up to total `degree`, as sorted index tuples (the
    constant () first)."""
    return [m for d in range(degree + 1)
            for m in itertools.combinations_with_replacement(range(count), d)]


def _monomial(xs: list[Expr], m: tuple) -> Expr | None:
    """The product of xs[i] for i in m; None for the constant monomial ()."""
    return _product([xs[i] for i in m]) if m else None


def _weighted_sum(terms: list, coef) -> Expr | None:
    """sum of c * term over the nonzero coefficients c (a term None is the constant 1);
    None when every coefficient is 0."""
    out = None
    for term, c in zip(terms, coef):
        if c != 0:
            piece = const(float(c), "float64")
            piece = piece if term is None else make("mul", [piece, term])
            out = piece if out is None else make("add", [out, piece])
    return out


def elimination_path(F: np.ndarray, target: np.ndarray, required=()) -> list:
    """Backward elimination for the least-squares fit of target on F's columns: from
    all columns (less any that are 0 on every row), drop one at a time the column whose
    removal raises the residual least (while the columns are dependent, one in their
    null space: it costs nothing), keeping one of the `required` columns while any is
    left. Returns [(coefficients, 0 for dropped columns; residual sum of squares;
    number of columns)], the most columns first, the empty model last; [] when there
    are no more rows than columns or the data are not finite."""
    n, k = F.shape
    with np.errstate(all="ignore"):
        norms = np.linalg.norm(F, axis=0)
        energy = float(target @ target)
    if n <= k or not (np.all(np.isfinite(norms)) and 0 < energy < np.inf):
        return []
    active = [i for i in range(k) if norms[i] > 0]
    Fs = F / np.where(norms > 0, norms, 1.0)
    required = set(required)
    path = []
    while active:
        with np.errstate(all="ignore"):
            step = _elimination_step(Fs[:, active], target)
        if step is None:
            return path
        beta, rss, rise = step
        coef = np.zeros(k)
        coef[active] = beta / norms[active]
        path.append((coef, rss, len(active)))
        last = [i for i, c in enumerate(active) if c in required]
        if len(last) == 1 and len(active) > 1:
            rise[last] = np.inf
        del active[int(np.argmin(rise))]
    path.append((np.zeros(k), energy, 0))
    return path


def _elimination_step(A: np.ndarray, target: np.ndarray):
    """(least-squares coefficients on A's columns, residual sum of squares, each
    column's cost of removal), or None when they are not finite."""
    U, S, Vt = np.linalg.svd(A, full_matrices=False)
    keep = S > S[0] * A.shape[1] * np.finfo(float).eps
    beta = Vt[keep].T @ ((U[:, keep].T @ target) / S[keep])
    r = target - A @ beta
    rss = float(r @ r)
    if not (np.all(np.isfinite(beta)) and np.isfinite(rss)):
        return None
    if not np.all(keep):    # dependent columns: drop one the others can stand in for
        return beta, rss, -np.abs(Vt[-1])
    # the residual's rise when column i goes: beta_i^2 / ((A^T A)^-1)_ii
    return beta, rss, beta ** 2 / np.sum((Vt.T / S) ** 2, axis=1)
