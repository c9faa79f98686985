"""Range-reduction templates (evolve/templates.py): the whole float32 program (reduction +
core + reconstruction) with a good core gives IEEE's answers at the special inputs,
`affine` describes how the result depends on the core, and the reference evaluator and
the compiled LLVM kernel agree bit for bit.

Good cores are written independently of the search: Taylor polynomials for exp and exp2
(constant term exactly 1, so exp(0) and exp2(k) can be exact), and for log and log2 the
template's own seed forms fitted on a dense grid of the core interval (p(0) = 0 exactly
by construction: log(1) = 0, log2(2^k) = k). The tests cover the float32 reductions
(exp, exp2, log, log2), not the float64-inside sigmoid, tanh and erf.
"""
import math

import numpy as np
import pytest

import exprforge as xf
from exprforge.engine.errors import ulp_error, ulp_of
from exprforge.engine.evaluate import evaluate
from exprforge.engine.expr import const, make, retype, var
from exprforge.evolve.fitting import fit, with_constants
from exprforge.evolve.tasks.approx import seed_cores, truth, truth_fast
from exprforge.evolve.templates import F32_MAX, TEMPLATES, Template, plain, template_for

F32 = np.float32
NAMES = ["exp", "exp2", "log", "log2"]   # the float32 range reductions under test
LN2 = math.log(2)


def horner(t, coeffs):
    p = const(float(F32(coeffs[-1])), "float32")
    for c in reversed(coeffs[:-1]):
        p = make("fma", [p, t, const(float(F32(c)), "float32")])
    return p


def fitted_log_core(name: str, degree: int = 10):
    t = TEMPLATES[name]
    lo, hi = t.core_interval
    f = np.unique(np.linspace(lo, hi, 4001).astype(F32)).astype(np.float64)
    y = np.log1p(f) / (1.0 if name == "log" else LN2)
    w = np.where(y == 0, 0.0, 1.0 / ulp_of(y, "float32"))
    # log: f + f^2 q(f) (leading term exact); log2: f q(f) (its leading term is 1/ln2),
    # in the template's core dtype (log2 computes inside in float64)
    core = seed_cores(t, degree)[0 if name == "log" else 1]
    values, _ = fit(core, {"f": f}, y, w, dtype=t.core_dtype)
    return with_constants(core, values, t.core_dtype)


@pytest.fixture(scope="module")
def cores():
    r, rlo = var("r", "float32"), var("rlo", "float32")
    q = horner(r, [1 / math.factorial(i) for i in range(2, 8)])
    return {
        # exp(r + rlo) ~ 1 + r + r^2 q(r) + rlo
        "exp": make("fma", [r * r, q, rlo]) + r + const(1.0, "float32"),
        "exp2": horner(r, [LN2 ** i / math.factorial(i) for i in range(8)]),
        "log": fitted_log_core("log"),
        "log2": fitted_log_core("log2"),
    }


@pytest.fixture(scope="module")
def programs(cores):
    return {name: TEMPLATES[name].program(core) for name, core in cores.items()}


def to32(y):
    with np.errstate(over="ignore"):
        return np.asarray(y).astype(F32)


def run(program, xs):
    return np.asarray(evaluate(program, {"x": np.asarray(xs, F32)}))


def bits_equal(a, b):
    """Same float32 bits, any NaN matching any NaN."""
    a, b = np.asarray(a, F32), np.asarray(b, F32)
    return (a.view(np.uint32) == b.view(np.uint32)) | (np.isnan(a) & np.isnan(b))


def domain_sample(t: Template, n: int, seed: int) -> np.ndarray:
    """Random float32 points of the template's domain: uniform in value (exp-like) or
    in log (log-like, every binade), plus the ends."""
    rng = np.random.default_rng(seed)
    lo, hi = t.domain
    if lo > 0:
        x = np.exp(rng.uniform(math.log(lo), math.log(hi), n))
    else:
        x = rng.uniform(lo, hi, n)
    with np.errstate(over="ignore"):
        x = np.concatenate([x.astype(F32), np.array([lo, hi], F32)])
    return x[np.isfinite(x) & (x >= F32(lo)) & (x <= F32(hi))]


# --- the cores are good: the whole program is accurate ------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_whole_program_is_accurate_with_a_good_core(programs, name):
    """Sanity for the cores the tests below use: under 1 ULP."""
    t = TEMPLATES[name]
    x = domain_sample(t, 100_000, seed=1)
    if name.startswith("log"):   # near 1 the result is small: the demanding binades
        x = np.concatenate([x, np.random.default_rng(2).uniform(0.5, 2, 50_000).astype(F32)])
    err = ulp_error(run(programs[name], x), truth_fast(name, x))
    assert err.max() < 1.0, x[np.argmax(err)]


# --- special inputs: IEEE answers ----------------------------------------------------------

SPECIALS = {
    "exp": [(np.nan, np.nan), (np.inf, np.inf), (-np.inf, 0.0), (0.0, 1.0), (-0.0, 1.0),
            (88.73, np.inf), (1000.0, np.inf), (F32_MAX, np.inf),
            (-104.0, 0.0), (-1000.0, 0.0), (-F32_MAX, 0.0)],
    "exp2": [(np.nan, np.nan), (np.inf, np.inf), (-np.inf, 0.0), (0.0, 1.0), (-0.0, 1.0),
             (128.0, np.inf), (1000.0, np.inf), (F32_MAX, np.inf),
             (-150.0, 0.0), (-151.0, 0.0), (-1000.0, 0.0), (-F32_MAX, 0.0)],
    "log": [(np.nan, np.nan), (np.inf, np.inf), (-np.inf, np.nan), (0.0, -np.inf),
            (-0.0, -np.inf), (1.0, 0.0), (-1.0, np.nan), (-1e-45, np.nan),
            (-F32_MAX, np.nan)],
    "log2": [(np.nan, np.nan), (np.inf, np.inf), (-np.inf, np.nan), (0.0, -np.inf),
             (-0.0, -np.inf), (1.0, 0.0), (-1.0, np.nan), (-1e-45, np.nan),
             (-F32_MAX, np.nan)],
}


@pytest.mark.parametrize("name,x,want", [(n, x, w) for n, rows in SPECIALS.items()
                                         for x, w in rows])
def test_special_inputs_are_exact(programs, name, x, want):
    got = run(programs[name], [x])
    assert bits_equal(got, [want]).all(), (x, got[0], want)   # zeros: +0, not -0


def test_exp_subnormal_results_within_one_ulp(programs):
    """exp(x) for x in (-103.97, -87.3]: subnormal results, rounded once (by the last
    multiply of the two-halves scaling)."""
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.uniform(-103.97208, -87.34, 1500),
                        [-100.0, -103.0, -103.9, -87.4]]).astype(F32)
    y = truth("exp", x)
    assert (np.abs(y) < 2.0 ** -126).all() and (y > 0).all()
    err = ulp_error(run(programs["exp"], x), y)
    assert err.max() <= 1.0, x[np.argmax(err)]


def test_exp_overflow_and_underflow_thresholds(programs):
    """The last finite / first infinite and the last nonzero / first zero inputs."""
    last_finite = F32(float.fromhex("0x1.62e42ep+6"))     # 88.7228317...
    first_inf = np.nextafter(last_finite, F32(np.inf))
    x = np.array([last_finite, first_inf], F32)
    y = truth("exp", x)
    assert np.isfinite(y[0]) and np.isinf(to32(y)[1])
    got = run(programs["exp"], x)
    assert np.isinf(got[1]) and ulp_error(got, y)[0] <= 1.0
    # 2^-150 is the rounding boundary to zero (a tie: to even, 0)
    lo = F32(-103.97208)
    x = np.array([np.nextafter(lo, F32(-np.inf)), lo], F32)
    assert to32(truth("exp", x)).tolist() == [0.0, 2.0 ** -149]
    assert ulp_error(run(programs["exp"], x), truth("exp", x)).max() <= 1.0


def test_exp2_of_integers_is_exact(programs):
    k = np.arange(-149, 128)
    got = run(programs["exp2"], k.astype(F32))
    want = np.ldexp(F32(1), k).astype(F32)
    assert bits_equal(got, want).all(), k[~bits_equal(got, want)]


def test_exp2_subnormal_and_half_integer_results(programs):
    """Half-integers are where round(x) ties; subnormal results round once."""
    rng = np.random.default_rng(4)
    x = np.concatenate([np.arange(-300, 256) / 2.0, rng.uniform(-150, -126, 1500)]).astype(F32)
    err = ulp_error(run(programs["exp2"], x), truth("exp2", x))
    assert err.max() <= 1.0, x[np.argmax(err)]


def test_log_of_one_is_positive_zero(programs):
    for name in ("log", "log2"):
        got = run(programs[name], [1.0])
        assert got[0] == 0 and not np.signbit(got[0])


@pytest.mark.parametrize("name", ["log", "log2"])
def test_log_of_subnormals_within_one_ulp(programs, name):
    rng = np.random.default_rng(5)
    bits = rng.integers(1, 1 << 23, 1500, dtype=np.uint32)
    x = np.concatenate([bits.view(F32), np.ldexp(F32(1), np.arange(-149, -126)).astype(F32),
                        [F32(2.0 ** -126) - np.float32(2.0 ** -149)]]).astype(F32)
    assert (x < 2.0 ** -126).all() and (x > 0).all()
    err = ulp_error(run(programs[name], x), truth(name, x))
    assert err.max() <= 1.0, x[np.argmax(err)]


def test_log2_of_powers_of_two_is_exact(programs):
    k = np.arange(-149, 128)
    got = run(programs["log2"], np.ldexp(F32(1), k).astype(F32))
    assert bits_equal(got, k.astype(F32)).all(), k[~bits_equal(got, k.astype(F32))]


def test_log_of_powers_of_two_within_one_ulp(programs):
    k = np.arange(-149, 128)
    x = np.ldexp(F32(1), k).astype(F32)
    err = ulp_error(run(programs["log"], x), truth("log", x))
    assert err.max() <= 1.0, x[np.argmax(err)]


@pytest.mark.parametrize("name", ["log", "log2"])
def test_log_of_largest_and_smallest_floats(programs, name):
    x = np.array([F32_MAX, np.nextafter(F32(F32_MAX), F32(0)), 2.0 ** -149, 2.0 ** -126], F32)
    err = ulp_error(run(programs[name], x), truth(name, x))
    assert err.max() <= 1.0


# --- the reduction -------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_reduced_core_input_stays_in_the_core_interval(name):
    t = TEMPLATES[name]
    x = domain_sample(t, 50_000, seed=6)
    main = t.reduced_values(x)[t.core_vars[0]].astype(np.float64)
    lo, hi = t.core_interval
    slack = 1e-6 * (hi - lo)
    assert main.min() >= lo - slack and main.max() <= hi + slack


def test_exp_reduction_keeps_the_rounding_error():
    """r + rlo is x - k ln2 to ~1e-11 (the float32 two-part ln2 is good to ~2^-44):
    far below float32's 6e-8, so exp(x) = 2^k exp(r + rlo) to full accuracy."""
    t = TEMPLATES["exp"]
    x = domain_sample(t, 50_000, seed=7)
    v = t.reduced_values(x)
    exact_r = x.astype(np.float64) - v["k"].astype(np.float64) * LN2
    assert np.max(np.abs(v["r"].astype(np.float64) + v["rlo"] - exact_r)) < 1e-10
    assert (v["k"] == np.round(v["k"])).all()


def test_exp2_reduction_is_exact():
    t = TEMPLATES["exp2"]
    x = domain_sample(t, 50_000, seed=8)
    v = t.reduced_values(x)
    assert (v["r"].astype(np.float64) + v["k"].astype(np.float64) == x.astype(np.float64)).all()


@pytest.mark.parametrize("name", ["log", "log2"])
def test_log_reduction_is_exact(name):
    """x = (1 + f) * 2^k exactly, subnormals included."""
    t = TEMPLATES[name]
    x = np.concatenate([domain_sample(t, 50_000, seed=9),
                        np.random.default_rng(9).integers(1, 1 << 23, 2000, dtype=np.uint32)
                        .view(F32)])
    v = t.reduced_values(x)
    back = np.ldexp(1.0 + v["f"].astype(np.float64), v["k"].astype(np.int64))
    assert (back == x.astype(np.float64)).all()


# --- affine tells the truth ----------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_affine_describes_the_program(cores, programs, name):
    """y = a * p + b at every point, with p the core on the reduced values. With p the
    core as the program computes it (float32; log2: float64), only the reconstruction
    rounds: once for exp, exp2 (p * 2^k) and log2 (k + p), so 1/2 ULP; log's two-part
    ln2 adds a little. With the core in float64, as the fitter sees it, a few ULPs."""
    t = TEMPLATES[name]
    x = domain_sample(t, 50_000, seed=10)
    reduced = t.reduced_values(x)
    a, b = t.affine(x, reduced)
    core = cores[name]
    p_prog = np.asarray(evaluate(core, {n: reduced[n] for n in t.core_vars}), np.float64)
    p64 = np.asarray(evaluate(retype(core, "float64"),
                              {n: reduced[n].astype(np.float64) for n in t.core_vars}))
    y = run(programs[name], x)
    assert ulp_error(y, a * p_prog + b).max() <= (1.0 if name == "log" else 0.5 + 1e-9)
    assert ulp_error(y, a * p64 + b).max() <= 3.0


def test_plain_template_is_the_core_itself():
    t = plain("sin", (-1.0, 1.0))
    x = var("x", "float32")
    core = horner(x, [0, 1, 0, -1 / 6, 0, 1 / 120, 0, -1 / 5040])
    pts = np.linspace(-1, 1, 1001, dtype=F32)
    assert bits_equal(run(t.program(core), pts), run(core, pts)).all()
    a, b = t.affine(pts, t.reduced_values(pts))
    assert (np.broadcast_to(a, pts.shape) == 1).all() and (np.broadcast_to(b, pts.shape) == 0).all()
    assert t.core_vars == ("x",) and t.core_interval == (-1.0, 1.0) and t.function == "sin"


# --- reference evaluator == compiled LLVM kernel ------------------------------------------

def differential_inputs(n: int, seed: int) -> np.ndarray:
    """Random float32 bit patterns (all signs, subnormals, NaN payloads, infinities),
    values in the exp-like domains, near-ties of round(x/ln2) and round(x), and specials."""
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 1 << 32, n // 2, dtype=np.uint64).astype(np.uint32).view(F32)
    vals = rng.uniform(-160, 140, n // 4).astype(F32)
    ks = np.arange(-152, 131)
    ties = np.concatenate([((ks + 0.5) * LN2), ks / 2.0]).astype(F32)
    steps = np.concatenate([np.nextafter(ties, F32(np.inf)), np.nextafter(ties, F32(-np.inf))])
    pos = np.abs(raw[: n // 4])
    specials = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, F32_MAX,
                         -F32_MAX, 2.0 ** -149, -(2.0 ** -149), 2.0 ** -126, 88.73, -104.0,
                         128.0, -150.0], F32)
    return np.concatenate([raw, vals, ties, steps, pos, specials]).astype(F32)


@pytest.mark.parametrize("name", NAMES + ["plain"])
def test_reference_evaluator_equals_llvm_kernel(programs, name):
    if name == "plain":
        t = plain("sin", (-1.0, 1.0))
        program = t.program(horner(var("x", "float32"), [0, 1, 0, -1 / 6, 0, 1 / 120]))
    else:
        program = programs[name]
    x = differential_inputs(100_000, seed=11)
    kernel = xf.compile(program, target="llvm")
    got = np.asarray(kernel(x))
    want = run(program, x)
    assert got.dtype == F32 and got.shape == x.shape
    same = bits_equal(got, want)
    assert same.all(), list(zip(x[~same][:5], got[~same][:5], want[~same][:5]))


# --- the domains --------------------------------------------------------------------------

def _ends(t):
    lo, hi = F32(t.domain[0]), F32(t.domain[1])
    with np.errstate(over="ignore"):
        return np.array([np.nextafter(lo, F32(-np.inf)), lo, hi, np.nextafter(hi, F32(np.inf))],
                        F32)


@pytest.mark.parametrize("name", NAMES)
def test_domain_is_tight(name):
    """One float past each end, the result is 0, inf or NaN (or -inf for log(0))."""
    y = to32(truth(name, _ends(TEMPLATES[name])))
    assert not np.isfinite(y[0]) or y[0] == 0
    assert not np.isfinite(y[3]) or y[3] == 0


@pytest.mark.parametrize("name", NAMES)
def test_domain_ends_give_finite_nonzero_results(name):
    """The documented meaning of Template.domain: float32 inputs where the result is
    finite and nonzero (the ends included)."""
    y = to32(truth(name, _ends(TEMPLATES[name])[1:3]))
    assert np.isfinite(y).all() and (y != 0).all(), y


# --- template_for ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_template_for_a_function_with_one(name):
    assert template_for(name) is TEMPLATES[name]
    lo, hi = TEMPLATES[name].domain
    inner = (lo + (hi - lo) / 4, hi - (hi - lo) / 4)
    assert template_for(name, inner) is TEMPLATES[name]
    assert template_for(name, inner, name) is TEMPLATES[name]


def test_template_for_falls_back_to_plain():
    t = template_for("sin", (-1, 1))
    assert t.name == "plain" and t.function == "sin" and t.domain == (-1, 1)
    assert t.core_vars == ("x",)
    # a domain outside the reduction's: plain, unless that template was asked for by name
    t = template_for("exp", (-200.0, 0.0))
    assert t.name == "plain" and t.function == "exp"
    t = template_for("exp", (0.0, 1.0), "plain")
    assert t.name == "plain" and t.domain == (0.0, 1.0)


def test_template_for_errors_clearly():
    with pytest.raises(ValueError,
                       match="sin has no float32 range-reduction template: give a domain"):
        template_for("sin")
    with pytest.raises(ValueError, match="give a domain"):
        template_for("exp", None, "plain")
    with pytest.raises(ValueError, match="no float32 template 'nope'; templates: plain, exp"):
        template_for("exp", None, "nope")
    with pytest.raises(ValueError, match="template log computes log, not exp"):
        template_for("exp", None, "log")
    with pytest.raises(ValueError, match=r"outside template exp's"):
        template_for("exp", (-200.0, 0.0), "exp")
