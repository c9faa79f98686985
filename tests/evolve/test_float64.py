"""Float64 approximations: double-double truth and its ULP error, the float64 range
reductions with independently written cores, the sampled verification, the search end
to end, the CLI, and the shipped float64 library entries.

Good cores are written independently of the search: Taylor coefficients from mpmath
(exp's tail (e^r - 1 - r)/r^2 to degree 13, log's R(s) = sum 2 s^(2j)/(2j+1) to s^20),
far more accurate than float64, so the whole program's error is the template's own
rounding.
"""
import ctypes
import ctypes.util
import json
import math

import mpmath as mp
import numpy as np
import pytest

import exprforge as xf
from exprforge.engine.errors import (float_keys, floats_of_keys, ulp_error, ulp_error_dd,
                                     ulps)
from exprforge.engine.evaluate import evaluate, oracle
from exprforge.engine.expr import const, make, var
from exprforge.evolve.library import library, program
from exprforge.evolve.tasks.approx import approximate, problem_for, truth_dd
from exprforge.evolve.templates import TEMPLATES_F64, template_for
from exprforge.evolve.verify import sample_points, verify, verify_sampled
from tests.exprforge.test_cli import run

F64_MAX = float(np.finfo(np.float64).max)


# --- keys and errors ----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_float_keys_are_the_total_order(dtype):
    info = np.finfo(dtype)
    x = np.array([-np.inf, -float(info.max), -1.0, -float(info.smallest_subnormal), -0.0, 0.0,
                  float(info.smallest_subnormal), 1.0, float(info.max), np.inf], dtype)
    k = float_keys(x)
    assert np.all(np.diff(k) > 0)                     # strictly increasing, -0 < +0
    assert k[4] == -1 and k[5] == 0
    back = floats_of_keys(k, dtype)
    assert np.array_equal(back.view(f"u{x.itemsize}"), x.view(f"u{x.itemsize}"))
    step = [1, 2, 3, 5, 6, 7, 8]                     # -0 + 1 is +0, not the smallest float
    with np.errstate(over="ignore"):
        assert np.all(floats_of_keys(k[step] + 1, dtype) == np.nextafter(x[step], np.inf))


def _mp_errors(c, t):
    """The oracle-side error (verify's: the binade of the exact value itself)."""
    from exprforge.evolve.verify import _mp_error
    with mp.workprec(200):
        return np.array([_mp_error(float(ci), ti, "float64") for ci, ti in zip(c, t)])


def test_ulp_error_dd_equals_the_mpf_path():
    """Exact values of every kind: normal and subnormal, both signs, just below and
    above powers of two; results 0, 1 and 2 floats from the rounded truth."""
    rng = np.random.default_rng(0)
    with mp.workprec(200):
        normal = [mp.mpf(v) * (1 + mp.mpf(2) ** -60 * rng.integers(-99, 99))
                  for v in rng.standard_normal(60) * 10.0 ** rng.integers(-300, 300, 60)]
        subnormal = [mp.mpf(2) ** -1074 * (mp.mpf(int(rng.integers(1, 1 << 40))) / 7)
                     for _ in range(30)]
        powers = [mp.mpf(2) ** int(e) * (1 + s * mp.mpf(2) ** -int(d))
                  for e, s, d in zip(rng.integers(-1000, 1000, 40), rng.choice([-1, 1], 40),
                                     rng.integers(54, 70, 40))]
        exact = normal + subnormal + powers
        exact += [-t for t in exact]
    hi, rest = _dd(exact)
    for step in (0, 1, 2):
        for direction in (np.inf, -np.inf):
            c = hi.copy()
            for _ in range(step):
                c = np.nextafter(c, direction)
            assert np.allclose(ulp_error_dd(c, hi, rest), _mp_errors(c, exact), rtol=1e-12,
                               atol=1e-9)


def _dd(exact):
    with mp.workprec(200):
        hi = np.array([float(t) for t in exact])   # mpf -> float rounds to nearest
        from exprforge.engine.errors import ulp_of
        unit = ulp_of(hi, "float64")
        rest = np.array([float((t - h) / u) for t, h, u in zip(exact, hi, unit)])
    return hi, rest


def test_ulp_error_dd_below_a_power_of_two_and_at_the_ends():
    with mp.workprec(200):
        exact = [mp.mpf(1) - mp.mpf(2) ** -60, mp.mpf(2) ** -1074 * mp.mpf(0.75),
                 mp.mpf(F64_MAX) * 2, mp.mpf(1)]
    hi, rest = _dd(exact[:2])
    assert hi[0] == 1.0 and rest[0] < 0
    c = np.array([np.nextafter(1.0, 0), 5e-324])
    # 1 - 2^-53 is 1 - 2^-60 off by about 2^-53: one ULP of the binade below
    assert ulp_error_dd(c, hi, rest) == pytest.approx(_mp_errors(c, exact[:2]), abs=1e-12)
    assert ulp_error_dd(np.array([np.inf, F64_MAX]), np.array([np.inf, np.inf]),
                        np.zeros(2)).tolist() == [0.0, np.inf]
    assert ulp_error_dd(np.array([np.nan, np.nan, 1.0]), np.array([np.nan, 1.0, np.nan]),
                        np.zeros(3)).tolist() == [0.0, 2.0 ** 64, 2.0 ** 64]


def test_truth_dd_is_the_oracle_split():
    x = np.array([-3.5, 0.0, 1e-300, 700.0, -744.0])
    hi, rest = truth_dd("exp", x)
    t = oracle(make("exp", [var("x", "float64")]), {"x": x}, prec=200)
    with mp.workprec(200):
        for h, r, v in zip(hi, rest, t):
            assert h == float(v)
            from exprforge.engine.errors import ulp_of
            unit = float(ulp_of(h, "float64"))
            assert abs(mp.mpf(h) + mp.mpf(r) * unit - v) <= unit * mp.mpf(2) ** -50
            assert abs(r) <= 0.5


# --- templates ------------------------------------------------------------------------------

def _exp_core():
    with mp.workprec(120):
        coeffs = [float(1 / mp.factorial(i + 2)) for i in range(13)]
    r = var("r", "float64")
    p = const(coeffs[-1], "float64")
    for c in reversed(coeffs[:-1]):
        p = make("fma", [p, r, const(c, "float64")])
    return p


def _log_core():
    s = var("s", "float64")
    z = s * s
    p = const(2.0 / 21, "float64")
    for j in range(9, 0, -1):
        p = make("fma", [p, z, const(2.0 / (2 * j + 1), "float64")])
    return z * p


CORES = {"exp": _exp_core, "exp2": _exp_core, "log": _log_core, "log2": _log_core,
         "sigmoid": _exp_core, "tanh": _exp_core}


@pytest.fixture(scope="module")
def programs():
    return {n: TEMPLATES_F64[n].program(CORES[n]()) for n in TEMPLATES_F64}


@pytest.mark.parametrize("name", sorted(TEMPLATES_F64))
def test_whole_program_is_under_one_ulp_with_a_good_core(programs, name):
    t = TEMPLATES_F64[name]
    x = sample_points(t.domain, 6000, seed=1)
    hi, rest = truth_dd(name, x)
    err = ulp_error_dd(np.asarray(evaluate(programs[name], {"x": x})), hi, rest)
    assert err.max() < 1.0, (name, x[np.argmax(err)], err.max())
    assert np.median(err) < 0.3


@pytest.mark.parametrize("name", sorted(TEMPLATES_F64))
def test_kernel_equals_the_reference_evaluator(programs, name):
    x = sample_points(TEMPLATES_F64[name].domain, 4000, seed=2)
    x = np.concatenate([x, [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, 5e-324, F64_MAX,
                            -F64_MAX]])
    k = xf.compile(programs[name], target="llvm")
    with np.errstate(all="ignore"):
        ref = np.asarray(evaluate(programs[name], {"x": x}), np.float64)
    assert np.array_equal(k(x).view(np.int64), ref.view(np.int64))


@pytest.mark.parametrize("name, x, want", [
    ("exp", 0.0, 1.0), ("exp", -0.0, 1.0), ("exp", np.inf, np.inf), ("exp", -np.inf, 0.0),
    ("exp", 710.0, np.inf), ("exp", -746.0, 0.0), ("exp2", 10.0, 1024.0),
    ("exp2", -1074.0, 5e-324), ("exp2", 1023.0, 2.0 ** 1023), ("exp2", 1024.0, np.inf),
    ("log", 1.0, 0.0), ("log", 0.0, -np.inf), ("log", -0.0, -np.inf), ("log", -1.0, np.nan),
    ("log", np.inf, np.inf), ("log2", 2.0 ** -1074, -1074.0), ("log2", 2.0 ** 1000, 1000.0),
    ("log2", 0.5, -1.0), ("log2", -np.inf, np.nan),
    ("sigmoid", 0.0, 0.5), ("sigmoid", -0.0, 0.5), ("sigmoid", np.inf, 1.0),
    ("sigmoid", -np.inf, 0.0), ("sigmoid", 800.0, 1.0), ("sigmoid", -800.0, 0.0),
    ("sigmoid", 5e-324, 0.5), ("sigmoid", np.nan, np.nan),
    ("tanh", 0.0, 0.0), ("tanh", -0.0, -0.0), ("tanh", np.inf, 1.0), ("tanh", -np.inf, -1.0),
    ("tanh", 5e-324, 5e-324), ("tanh", -1e-300, -1e-300), ("tanh", 40.0, 1.0),
    ("tanh", np.nan, np.nan)])
def test_exact_results_and_special_inputs(programs, name, x, want):
    got = float(evaluate(programs[name], {"x": np.array([x])})[0])
    if math.isnan(want):
        assert math.isnan(got)
    else:
        assert got == want and math.copysign(1, got) == math.copysign(1, want)


def test_exp_of_nan_is_nan_and_exp2_of_integers_is_exact(programs):
    assert np.isnan(evaluate(programs["exp"], {"x": np.array([np.nan])})[0])
    k = np.arange(-1074, 1024, dtype=np.float64)
    assert np.array_equal(evaluate(programs["exp2"], {"x": k}), np.ldexp(1.0, k.astype(int)))


def test_log_of_subnormals_and_exp_of_subnormal_results(programs):
    x = np.array([5e-324, 1e-320, 3e-310, 2.2e-308])
    hi, rest = truth_dd("log", x)
    assert ulp_error_dd(evaluate(programs["log"], {"x": x}), hi, rest).max() < 1
    x = np.linspace(-745.0, -708.5, 500)
    hi, rest = truth_dd("exp", x)
    assert ulp_error_dd(evaluate(programs["exp"], {"x": x}), hi, rest).max() < 1


def test_template_for_float64():
    assert template_for("exp", dtype="float64") is TEMPLATES_F64["exp"]
    t = template_for("sin", (0.0, 1.0), dtype="float64")
    assert t.name == "plain" and t.dtype == "float64" and t.core_dtype == "float64"
    with pytest.raises(ValueError, match="sin has no float64 range-reduction template"):
        template_for("sin", dtype="float64")
    with pytest.raises(ValueError, match="approximations are float32 or float64, not int32"):
        template_for("exp", dtype="int32")


# --- sampled verification -------------------------------------------------------------------

def test_sample_points_cover_the_binades_and_the_ends():
    x = sample_points((1e-300, 1e300), 20000, seed=0)
    assert x.min() == 1e-300 and x.max() == 1e300
    exponents = np.frexp(x)[1]
    assert np.unique(exponents).size > 1500        # 1994 binades in all
    assert x.size == 20000


def _c_exp():
    """The C library's scalar exp (glibc's is within 0.51 ULP), elementwise. Not np.exp:
    NumPy's own AVX-512 exp is 0.70 ULP off on some machines."""
    libm = ctypes.CDLL(ctypes.util.find_library("m"))
    libm.exp.restype, libm.exp.argtypes = ctypes.c_double, [ctypes.c_double]
    scalar = np.frompyfunc(libm.exp, 1, 1)
    return lambda a: scalar(a).astype(np.float64)


def test_verify_sampled_measures_a_known_error():
    """The C library's exp (near correctly rounded) and the same two floats off."""
    exp = _c_exp()
    good = verify_sampled(exp, "exp", domain=(-700, 700), samples=200_000)
    assert good.max_ulp < 0.51 and good.correctly_rounded > 0.999
    assert good.reference == "long double" and good.method == "sampled" and good.ok
    assert good.reference_error < 2.0 ** -8

    def off(a):
        return np.nextafter(np.nextafter(exp(a), np.inf), np.inf)
    bad = verify_sampled(off, "exp", domain=(-700, 700), samples=200_000)
    # 2 floats up is 2-2.5 ULPs; 4-4.5 where exp(x) is just below a power of two (x ~ 0)
    assert 2.0 <= bad.max_ulp < 4.51 and bad.correctly_rounded < 0.01
    assert bad.argmax == bad.worst[0]["input"]
    x = np.array([bad.argmax])
    t = oracle(make("exp", [var("x", "float64")]), {"x": x}, prec=128)
    from exprforge.evolve.verify import _mp_error
    with mp.workprec(128):
        want = _mp_error(float(off(x)[0]), t[0], "float64")
    assert bad.max_ulp == pytest.approx(want, abs=1e-9)
    assert bad.reference_error < 2.0 ** -8
    assert not bad.ok                               # exp(0) = 1 came out 2 floats up


def test_verify_sampled_without_long_double_uses_the_oracle():
    from scipy.special import erf
    r = verify_sampled(erf, "erf", domain=(-3, 3), samples=3000)
    assert r.reference == "mpmath" and r.n == 3000 and r.exact_max
    assert 0.5 <= r.max_ulp < 10            # SciPy's float64 erf is not correctly rounded
    x = np.array([r.argmax])
    t = oracle(make("erf", [var("x", "float64")]), {"x": x}, prec=128)
    assert r.max_ulp == pytest.approx(float(ulp_error(erf(x), t)[0]), abs=1e-9)


def test_verify_dispatches_on_the_kernel_dtype():
    k = xf.compile(xf.parse("exp(x)", vars={"x": "float64"}), target="llvm")
    r = verify(k, "exp", domain=(-5, 5), samples=10_000)
    assert r.dtype == "float64" and r.n == 10_000 and r.max_ulp < 0.51
    k32 = xf.compile(xf.parse("exp(x)", vars={"x": "float32"}), target="llvm")
    with pytest.raises(ValueError, match="samples is for float64"):
        verify(k32, "exp", domain=(0, 1), samples=100)


def test_verify_sampled_bad_input():
    with pytest.raises(ValueError, match="lo <= hi"):
        verify_sampled(np.exp, "exp", domain=(1.0, 0.0))
    with pytest.raises(ValueError, match="samples must be at least 2"):
        verify_sampled(np.exp, "exp", domain=(0.0, 1.0), samples=1)
    with pytest.raises(ValueError, match="verify needs float64 results"):
        verify_sampled(lambda a: np.exp(a).astype(np.float32), "exp", domain=(0, 1),
                       samples=100)


# --- the search, the CLI, the library ---------------------------------------------------------

def test_approximate_exp2_float64_end_to_end():
    r = approximate("exp2", dtype="float64", generations=2, population=8, seed=0,
                    validation_points=2000)
    assert r.chosen is not None and r.chosen.program.dtype == "float64"
    assert r.chosen.validation_max_ulp < 1.0
    k = xf.compile(r.chosen.program, target="llvm")
    rep = verify(k, "exp2", domain=r.domain, samples=50_000)
    assert rep.max_ulp < 1.0 and rep.ok


def test_problem_scores_float64_ulps():
    p = problem_for("log", dtype="float64")
    assert p.x.dtype == np.float64 and p.y_rest is not None
    assert np.all(np.abs(p.y_rest[np.isfinite(p.y)]) <= 0.5)
    err, cost = p.evaluate(p.seeds()[-1]).objectives
    assert err < 1.0 and cost > 20
    assert p.fingerprint == ("approx", "log", "log", "float64", TEMPLATES_F64["log"].domain)


@pytest.mark.parametrize("name", sorted(TEMPLATES_F64))
def test_core_weight_is_the_result_ulps_per_unit_of_core(programs, name):
    """core_fit's weight: how many ULPs of the result one unit of change in the core
    moves, checked by moving the core by delta and counting the result's floats."""
    t = TEMPLATES_F64[name]
    rng = np.random.default_rng(3)
    x = np.exp(rng.uniform(-5, 12, 400)) if name.startswith("log") else \
        rng.uniform(-40, 40, 400) if name in ("sigmoid", "tanh") else rng.uniform(-700, 700, 400)
    values = t.reduced_values(x)
    target, weight = t.core_fit(values)
    main = var(t.core_vars[0], "float64")
    delta = 2.0 ** -30
    moved = t.program(CORES[name]() + const(delta, "float64"))
    base = np.asarray(evaluate(programs[name], {"x": x}))
    shifted = np.asarray(evaluate(moved, {"x": x}))
    counted = ulps(shifted, base)
    ok = np.abs(values[main.name]) > 1e-3      # away from s = 0, r = 0 (weight ~ 0)
    assert ok.sum() > 300
    np.testing.assert_allclose(counted[ok], weight[ok] * delta, rtol=0.02, atol=2)
    assert np.all(np.isfinite(target[ok]))


def test_cli_verify_float64_text(capsys):
    code, out, err = run(capsys, "verify", "exp(x)", "--dtype", "float64", "--against", "exp",
                         "--samples", "20000", "--domain", "-10", "10")
    assert code == 0, err
    assert "20000 float64 inputs (a random sample; reference in long double)" in out
    assert "special values\n" in out


def test_cli_approx_float64_plain_template(capsys, tmp_path):
    code, out, err = run(capsys, "approx", "sin", "--dtype", "float64", "--domain", "0",
                         "0.25", "--generations", "2", "--population", "8", "--out",
                         str(tmp_path / "run"), "--name", "sin_small_f64", "--json")
    assert code == 0, err
    r = json.loads(out)
    v = r["verification"]
    assert r["dtype"] == "float64" and v["method"] == "sampled" and v["dtype"] == "float64"
    assert (r["saved_as"] == "sin_small_f64") == (v["max_ulp"] < 1.0 and v["ok"])
    assert (tmp_path / "run" / "error.png").exists() == bool(r["plots"][1:])


F64_ENTRIES = sorted(n for n, e in library().items() if e["dtype"] == "float64")


def test_library_has_float64_entries():
    assert {"exp_f64", "log_f64"} <= set(F64_ENTRIES)
    for name in F64_ENTRIES:
        e = library()[name]
        assert e["max_ulp"] < 1.0 and e["specials_ok"] and e["check"] == "sampled"
        assert e["inputs_checked"] >= 1 << 24


@pytest.mark.parametrize("name", F64_ENTRIES)
def test_float64_library_entry_within_its_record(name):
    e = library()[name]
    k = xf.compile(program(name), target="llvm")
    x = np.append(sample_points(e["domain"], 20_000, seed=5), e["argmax"])
    err = ulp_error_dd(k(x), *truth_dd(e["function"], x))
    assert err.max() <= e["max_ulp"] + 1e-9
    assert err[-1] == pytest.approx(e["max_ulp"], abs=1e-6)


def test_float64_library_imports_and_inlines():
    from exprforge.kernels import exp_f64
    x = np.linspace(-700, 700, 1001)
    assert ulps(exp_f64(x), np.exp(x)).max() <= 1
    k = xf.compile(xf.parse("exp(x) * 2", vars={"x": "float64"}), target="llvm", approx=True)
    assert "exp" not in {n.op for n in k.expr.toposort()}
    assert np.array_equal(k(x), exp_f64(x) * 2)


def test_small_samples_and_float32_bounds():
    assert sample_points((1.0, 2.0), 2).tolist() == [1.0, 2.0]
    assert len(sample_points((1.0, 2.0), 3)) == 3
    x = sample_points((np.float32(1), np.float32(2)), 100)   # float64 points all the same
    assert x.size == 100 and np.unique(x).size > 90


def test_float64_domain_wider_than_float64_differences():
    p = problem_for("atan", domain=(-1e308, 1e308), dtype="float64", n_train=600)
    assert p.x.min() >= -1e308 and p.x.max() <= 1e308 and np.unique(p.x).size > 300


def test_float32_training_points_are_unchanged():
    """The float32 spacing in float order is linspace's (the library's recorded search
    commands reproduce their programs with it)."""
    from exprforge.engine.errors import _bounds32, _floats32
    from exprforge.evolve.tasks.approx import _ordinal_spaced
    a, b = _bounds32(-103.97, 88.72)
    want = _floats32(np.unique(np.linspace(a, b, 1000).astype(np.int64)))
    assert np.array_equal(_ordinal_spaced(-103.97, 88.72, 1000), want)


def test_oracle_path_keeps_mpmath_precision_and_is_the_same_on_any_threads():
    from scipy.special import erf
    prec = mp.mp.prec
    one = verify_sampled(erf, "erf", domain=(-3, 3), samples=400, chunk=50, threads=1)
    four = verify_sampled(erf, "erf", domain=(-3, 3), samples=400, chunk=50, threads=4)
    assert mp.mp.prec == prec
    assert (one.max_ulp, one.mean_ulp) == (four.max_ulp, four.mean_ulp)


def test_resume_refuses_another_problem(tmp_path):
    ck = str(tmp_path / "ck.pkl")
    approximate("exp2", domain=(0.0, 1.0), generations=1, population=4, checkpoint=ck,
                validation_points=100)
    with pytest.raises(ValueError, match="from another problem"):
        approximate("exp2", domain=(0.0, 1.0), dtype="float64", generations=2, population=4,
                    checkpoint=ck, resume=True, validation_points=100)


def test_verify_a_shipped_name_without_importing_it_first():
    r = verify("log_f64", "log", domain=(1e-10, 1e10), samples=20_000)
    assert r.dtype == "float64" and r.max_ulp <= library()["log_f64"]["max_ulp"] + 1e-9


def test_sigmoid_where_it_is_not_trivial(programs):
    """Both sides of 0 to where it rounds to 1 and into the subnormal results."""
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.uniform(-40, 40, 4000), rng.uniform(-745, -700, 3000),
                        [-707.3460400767101, -709.0895299835498, -1e-300, 1e-300, 36.7,
                         37.5]])   # the first two: 0.79 and 0.74 ULP when e's low word
    hi, rest = truth_dd("sigmoid", x)   # was scaled by 2^k on its own (subnormal)
    err = ulp_error_dd(np.asarray(evaluate(programs["sigmoid"], {"x": x})), hi, rest)
    normal = np.abs(hi) >= np.finfo(np.float64).tiny
    assert err[normal].max() < 0.6, (x[normal][np.argmax(err[normal])], err[normal].max())
    # subnormal results (x < -708.4) round twice: the quotient, then its scaling by 2^k
    assert err.max() < 0.76, (x[np.argmax(err)], err.max())


def test_tanh_near_zero_and_where_it_rounds_to_one(programs):
    """1 - exp(-2|x|) cancels as x -> 0: the template keeps expm1 as a double-double;
    near 18.7, 1 - 2^k itself is inexact (k < -53) and is carried too."""
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.uniform(-20, 20, 3000), np.exp(rng.uniform(-700, 0, 1000)),
                        np.linspace(18.0, 19.5, 500), -np.exp(rng.uniform(-30, 0, 500))])
    hi, rest = truth_dd("tanh", x)
    err = ulp_error_dd(np.asarray(evaluate(programs["tanh"], {"x": x})), hi, rest)
    assert err.max() < 0.75, (x[np.argmax(err)], err.max())
