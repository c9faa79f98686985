"""Approximation search (AutoNumerics-Zero style): evolve the core of a range-reduction
template so that the whole program (float32 or float64) is accurate (max ULP) and cheap
(ops or cycles), both measured on the program that will be compiled.

Training set: the domain's ends and thresholds, points evenly spaced in value and in
float order (so every binade is seen), random points, and points where the
reduction's seams lie. Ground truth: the mpmath oracle, rounded to float64 for float32
programs (29 bits to spare for float32 ULPs) and kept as a double-double hi + lo for
float64 programs. A candidate's constants are fitted in float64 toward the minimax
error of the whole program (evolve/fitting), rounded to the core's dtype, and the
program is scored in its dtype by the reference evaluator, which rounds every op
exactly as the compiled kernels do.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from exprforge.engine.errors import (float_bounds, float_keys, floats_of_keys, ulp_error,
                                     ulp_error_dd, ulp_of)
from exprforge.engine.evaluate import evaluate, exact, oracle, round_mpf
from exprforge.engine.expr import Expr, const, make, var
from exprforge.engine.ops import OPS
from exprforge.rewrite.cost import cost as program_cost

from ..fitting import fit, with_constants
from ..primitives import from_expr, primitive_set
from ..search import Evaluated
from ..templates import Template, template_for
from ..verify import uniform_in

DEFAULT_OPS = ("add", "sub", "mul", "fma")
ERROR_CAP = 1e12   # an objective for programs that fail (NaN, inf, huge errors)
VALIDATION_F64 = 1 << 14   # float64 validation points (oracle calls)


def target_expr(function) -> Expr:
    """The function to approximate as a float64 Expr of x: a unary op's name, or an
    expression (text or Expr) of one variable."""
    from ..verify import reference
    _, expr, name = reference(function)
    return expr.subs({var(name, "float64"): var("x", "float64")}) if name != "x" else expr


def truth(function, x32: np.ndarray) -> np.ndarray:
    """The exact function value at float32 points, correctly rounded to float64."""
    return np.asarray(exact(target_expr(function), {"x": x32.astype(np.float64)},
                            dtype="float64"), np.float64)


def truth_dd(function, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The exact function value at float64 points as (hi, rest): hi correctly rounded
    to float64, rest = (exact - hi) / ulp(hi) (the oracle at 160 bits); the pair that
    engine.errors.ulp_error_dd takes."""
    import mpmath as mp
    values = oracle(target_expr(function), {"x": np.asarray(x, np.float64)}, prec=160)
    hi, rest = np.empty(len(values)), np.zeros(len(values))
    for i, t in enumerate(values):
        hi[i] = round_mpf(t, "float64")
    finite = np.isfinite(hi)
    unit = ulp_of(np.where(finite, hi, 0.0), "float64")
    with mp.workprec(160):
        for i in np.flatnonzero(finite).tolist():
            rest[i] = float((values[i] - hi[i]) / unit[i])
    return hi, rest


def check_function(function) -> None:
    if isinstance(function, str) and function.isidentifier():
        row = OPS.get(function)
        if row is None or row.group != "elementwise" or row.arity != 1 or row.out != "T" \
                or row.tkind != "float":
            unary = sorted(n for n, r in OPS.items() if r.group == "elementwise"
                           and r.arity == 1 and r.tkind == "float" and r.out == "T")
            raise ValueError(f"{function!r} is not a unary float function of the op table; "
                             f"choose one of: {', '.join(unary)} (or give an expression "
                             "of x)")
    else:
        target_expr(function)   # an expression of one variable, or a clear ValueError


def training_points(template: Template, domain, n: int = 3000, seed: int = 0) -> np.ndarray:
    lo, hi = (float(v) for v in domain)
    rng = np.random.default_rng(seed)
    ft = np.dtype(template.dtype).type
    with np.errstate(over="ignore"):
        even = (np.linspace(lo / 2, hi / 2, n // 3) * 2).astype(ft)   # halved: no overflow
        ordered = _ordinal_spaced(lo, hi, n // 3, template.dtype)
        rand = uniform_in(rng, lo, hi, n // 3).astype(ft)
    edges = [lo, hi, np.nextafter(ft(lo), ft(np.inf)), np.nextafter(ft(hi), ft(-np.inf))]
    seams = _seams(template, lo, hi, rng)
    dense = [uniform_in(rng, max(a, lo), min(b, hi), n // 3).astype(ft)
             for a, b in template.dense
             if max(a, lo) < min(b, hi)]
    x = np.concatenate([even, ordered, rand, np.array(edges, ft), seams, *dense]).astype(ft)
    x = x[(x >= ft(lo)) & (x <= ft(hi)) & np.isfinite(x)]
    return np.unique(x)


def _ordinal_spaced(lo: float, hi: float, n: int, dtype: str = "float32") -> np.ndarray:
    a, b = float_bounds(lo, hi, dtype)
    if dtype == "float32":   # float32 keys are exact in float64 (and seeds reproduce)
        keys = np.linspace(a, b, n).astype(np.int64)
    else:                    # float64 keys pass 2^53: spaced in exact integers
        keys = np.array([a + (b - a) * i // max(n - 1, 1) for i in range(n)], np.int64)
    return floats_of_keys(np.unique(keys), dtype)


def _seams(template: Template, lo, hi, rng) -> np.ndarray:
    """Points around the template's seams, a few ULPs to each side."""
    if template.seams is None:
        return np.zeros(0, template.dtype)
    centers, spread = template.seams(lo, hi, rng)
    x = np.asarray(centers, np.float64).astype(template.dtype)
    return _ulp_step(x, rng.integers(-spread, spread + 1, size=x.size))


def _ulp_step(x: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """x moved by `steps` floats of its dtype (in value order, across zero)."""
    return floats_of_keys(float_keys(x) + steps, str(x.dtype))


@dataclass
class ApproxProblem:
    """The search problem for one function: picklable, so workers can evaluate."""
    function: str
    template: Template
    domain: tuple
    cost_model: str = "cycles"
    ops: tuple = DEFAULT_OPS
    degree: tuple | None = None      # seed polynomial degrees (inclusive); None: the template's
    n_train: int = 1 << 15           # points scored (the max ULP objective)
    n_fit: int = 2000                # of which constants are fitted on
    seed: int = 0
    cache: object = None
    x: np.ndarray = field(init=False, repr=False)
    y: np.ndarray = field(init=False, repr=False)      # exact values (float64: rounded)
    y_rest: np.ndarray | None = field(init=False, repr=False, default=None)  # float64

    @property
    def dtype(self) -> str:
        return self.template.dtype

    @property
    def fingerprint(self) -> tuple:
        """What a checkpoint must match to be resumed on this problem."""
        return ("approx", str(self.function), self.template.name, self.dtype,
                tuple(map(float, self.domain)))

    def __post_init__(self):
        check_function(self.function)
        self.x = training_points(self.template, self.domain, self.n_train, self.seed)
        if self.dtype == "float64":
            self.y, self.y_rest = truth_dd(self.function, self.x)
        else:
            self.y = truth(self.function, self.x)
        reduced = self.template.reduced_values(self.x)
        with np.errstate(all="ignore"):
            if self.template.core_fit is not None:
                target, weight = self.template.core_fit(reduced)
                a = np.ones_like(target)
            else:
                a, b = self.template.affine(self.x, reduced)
                a = np.broadcast_to(np.asarray(a, np.float64), self.x.shape)
                target = (self.y - b) / a
                big = float(np.finfo(self.dtype).max)
                weight = np.abs(a) / ulp_of(np.clip(self.y, -big, big), self.dtype)
        usable = np.isfinite(target) & np.isfinite(weight) & (self.y != 0) & (a != 0) & \
            np.isfinite(self.y) & (weight > 0)
        fit_rows = np.flatnonzero(usable)
        if fit_rows.size > self.n_fit:  # a spread-out subset, plus the extremes of the core input
            main = reduced[self.template.core_vars[0]][fit_rows]
            order = fit_rows[np.argsort(main, kind="stable")]
            fit_rows = np.unique(order[np.linspace(0, order.size - 1, self.n_fit).astype(int)])
        self.core_inputs = {n: reduced[n][fit_rows].astype(np.float64)
                            for n in self.template.core_vars}
        self.core_target, self.core_weight = target[fit_rows], weight[fit_rows]

    @property
    def pset(self):
        return primitive_set(self.ops + self.template.extra_ops, self.template.core_vars,
                             self.template.core_dtype, constants=())

    def seeds(self) -> list[Expr]:
        lo, hi = self.degree or self.template.degrees
        return [s for d in range(lo, hi + 1) for s in seed_cores(self.template, d)]

    def program(self, core: Expr) -> Expr:
        return self.template.program(core)

    def evaluate(self, core: Expr, refit: bool = True) -> Evaluated:
        if refit:
            values, _ = fit(core, self.core_inputs, self.core_target, self.core_weight,
                            dtype=self.template.core_dtype)
            core = with_constants(core, values, self.template.core_dtype)
        program = self.program(core)
        err = self.max_ulp(program)
        return Evaluated(core, (err, program_cost(program, self.cost_model)))

    def max_ulp(self, program: Expr, x=None, y=None) -> float:
        """Max ULP error at x (default: the training set) against y: exact values
        rounded to float64, or for float64 programs truth_dd's pair (hi, rest)."""
        x, y = (self.x, (self.y, self.y_rest) if self.dtype == "float64" else self.y) \
            if x is None else (x, y)
        with np.errstate(all="ignore"):
            out = evaluate(program, {"x": x})
        if self.dtype == "float64":
            err = ulp_error_dd(np.asarray(out, np.float64), *y)
        else:
            err = ulp_error(np.asarray(out, np.float32), y)
        worst = float(np.max(err)) if err.size else 0.0
        return min(worst, ERROR_CAP) if np.isfinite(worst) else ERROR_CAP


def seed_cores(template: Template, degree: int) -> list[Expr]:
    """Horner polynomials of `degree` in the template's main variable, with constants to
    be fitted; for exp also one that adds the reduction's rounding error rlo."""
    if template.seeds is not None:
        return template.seeds(degree)
    dtype = template.core_dtype
    t = var(template.core_vars[0], dtype)

    def horner(coeffs):
        p = const(float(coeffs[-1]), dtype)
        for c in reversed(coeffs[:-1]):
            p = make("fma", [p, t, const(float(c), dtype)])
        return p

    # placeholder coefficients near 1/i!, all distinct: equal literals are one DAG node,
    # so they would be one parameter
    start = [(1.0 + 2.0 ** -10 * i) / math.factorial(i) for i in range(degree + 1)]
    seeds = [horner(start)] if template.relative else []
    if not template.relative:   # log-like: t*q(t) and t + t^2 q(t), exact near t = 0
        q = horner([-0.5 + 0.01 * i for i in range(max(degree - 1, 1))])   # distinct
        seeds.append(make("fma", [t * t, q, t]))
        seeds.append(t * horner([(-1) ** i / (i + 1) for i in range(degree)]))
        seeds.append(horner([2.0 ** -30] + [(-1) ** i / (i + 1) for i in range(degree)]))
    if "rlo" in template.core_vars:
        e = var("rlo", "float32")
        q = horner(start[2:]) if degree >= 3 else const(0.5, "float32")
        seeds.append((make("fma", [t * t, q, e]) + t) + const(1.0, "float32"))
    return seeds


def problem_for(function: str, domain=None, template: str | None = None,
                dtype: str = "float32", **options) -> ApproxProblem:
    check_function(function)
    if domain is not None:
        if len(domain) != 2 or not all(np.isfinite(float(v)) for v in domain):
            raise ValueError(f"domain must be two finite numbers (lo, hi), got {domain!r}")
        if not float(domain[0]) <= float(domain[1]):
            raise ValueError(f"empty domain: lo {domain[0]} > hi {domain[1]}")
    t = template_for(function, domain, template, dtype)
    problem = ApproxProblem(function, t, tuple(domain) if domain is not None else t.domain,
                            **options)
    undefined = np.isnan(problem.y)
    if undefined.any():
        bad = problem.x[undefined]
        raise ValueError(f"{function} is undefined (NaN) on part of the domain "
                         f"{problem.domain}, e.g. at x = {float(bad[0])!r}: restrict the "
                         "domain to where it is real")
    if np.isfinite(problem.y).sum() < 16 or len(problem.core_target) < 4:
        raise ValueError(f"{function} is not finite on enough of the domain "
                         f"{problem.domain} to fit a program")
    return problem


# --- the whole search: evolve, pick, validate --------------------------------------------

@dataclass
class Candidate:
    core: Expr
    program: Expr
    train_max_ulp: float
    cost: float
    ops: float
    validation_max_ulp: float | None = None

    def as_dict(self) -> dict:
        from exprforge.engine.printing import to_text
        return {"core": to_text(self.core), "program": to_text(self.program),
                "train_max_ulp": self.train_max_ulp, "validation_max_ulp": self.validation_max_ulp,
                "cost": self.cost, "ops": self.ops}


@dataclass
class ApproxResult:
    function: str
    template: str
    domain: tuple
    front: list            # Candidates, cheapest first
    chosen: Candidate | None
    search: object         # SearchResult
    max_ulp: float         # the goal


def approximate(function: str, domain=None, dtype: str = "float32", max_ulp: float = 1.0,
                cost: str = "cycles", population: int = 48, generations: int = 30,
                seed: int = 0, timeout: float | None = None, executor=None,
                checkpoint: str | None = None, resume: bool = False, template: str | None = None,
                ops=DEFAULT_OPS, progress=None, validation_points: int = 1 << 20) -> ApproxResult:
    """Search for a float32 or float64 program approximating `function` on `domain`
    (default: the template's whole domain). Returns the Pareto front (cost vs max ULP on
    the training set), each front member under `max_ulp` re-measured on
    `validation_points` more points (float64: at most 2^14, each costs an oracle call),
    and the chosen program: the cheapest whose validation error is under `max_ulp` (else
    the most accurate). Verification (exhaustive for float32, sampled for float64) is
    the caller's next step (evolve.verify), since it needs a compiled kernel."""
    from ..search import SearchConfig, search
    if dtype not in ("float32", "float64"):
        raise ValueError(f"approximations are float32 or float64, not {dtype}")
    if not max_ulp > 0:   # also refuses NaN
        raise ValueError(f"max_ulp must be positive, got {max_ulp}")
    problem = problem_for(function, domain, template, dtype, cost_model=cost, ops=tuple(ops),
                          seed=seed)
    # every seed must stay changeable (a child over the limits is replaced by its parent,
    # so a seed over them was only ever refitted): the limits reach the largest seed
    trees = [from_expr(e, problem.pset) for e in problem.seeds()]
    config = SearchConfig(population=population, generations=generations, seed=seed,
                          timeout=timeout,
                          max_size=max([problem.template.max_size] + [len(t) for t in trees]),
                          max_depth=max([SearchConfig.max_depth] + [t.height for t in trees]))
    result = search(problem, config, executor=executor, checkpoint=checkpoint, resume=resume,
                    progress=progress)
    front = [_candidate(problem, e) for e in result.front]
    if dtype == "float64":
        xv = _validation_points(problem, min(validation_points, VALIDATION_F64), seed)
        yv = truth_dd(function, xv)
    else:
        xv = _validation_points(problem, validation_points, seed)
        yv = truth_fast(function, xv)
    for c in front:
        if c.train_max_ulp < max_ulp:
            c.validation_max_ulp = max(problem.max_ulp(c.program, xv, yv), c.train_max_ulp)
    good = [c for c in front if c.validation_max_ulp is not None and c.validation_max_ulp < max_ulp]
    chosen = good[0] if good else min(front, key=lambda c: c.train_max_ulp, default=None)
    return ApproxResult(function, problem.template.name, problem.domain, front, chosen, result,
                        max_ulp)


def _candidate(problem: ApproxProblem, ev) -> Candidate:
    program = problem.program(ev.expr)
    return Candidate(ev.expr, program, float(ev.objectives[0]), float(ev.objectives[1]),
                     program_cost(program, "ops"))


def _validation_points(problem: ApproxProblem, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    lo, hi = problem.domain
    ft = np.dtype(problem.dtype).type
    with np.errstate(over="ignore"):
        x = np.concatenate([uniform_in(rng, lo, hi, n // 2).astype(ft),
                            _ordinal_spaced(lo, hi, n // 2, problem.dtype)])
    return x[np.isfinite(x) & (x >= ft(lo)) & (x <= ft(hi))]


def truth_fast(function: str, x32: np.ndarray) -> np.ndarray:
    """The function in float64 (NumPy/SciPy, a few float64 ULPs from exact: ~2^-28
    float32 ULPs), for validation sets too large for the oracle."""
    return np.asarray(evaluate(target_expr(function), {"x": x32.astype(np.float64)}),
                      np.float64)
