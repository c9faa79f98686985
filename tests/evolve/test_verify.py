"""Exhaustive float32 verification (evolve/verify.py) and `exprforge verify`: every float32
of small domains, checked against engine.errors' metrics and the mpmath oracle."""
import math

import numpy as np
import pytest

import exprforge as xf
from exprforge.engine.errors import count_float32, float32_range, summarize, ulp_error
from exprforge.evolve.verify import verify, verify_function
from tests.exprforge.test_cli import assert_user_error, run, run_json

LN2 = math.log(2)


@pytest.fixture(scope="module")
def libm_exp():
    return xf.compile("exp(x)", target="llvm", approx=False)  # calls libm's expf


def _special(report, name):
    return next(s for s in report.specials if s["name"] == name)


def test_libm_exp_on_every_float_of_1_2(libm_exp):
    r = verify(libm_exp, "exp", domain=(1, 2))
    assert r.n == count_float32(1, 2) == 2 ** 23 + 1
    assert 0.5 <= r.max_ulp < 1 and r.correctly_rounded > 0.99 and 0.2 < r.mean_ulp < 0.3
    assert 1 <= r.argmax <= 2 and float.fromhex(r.argmax_hex) == r.argmax
    assert r.worst[0]["input"] == r.argmax and r.worst[0]["ulp"] == r.max_ulp
    assert [w["ulp"] for w in r.worst] == sorted((w["ulp"] for w in r.worst), reverse=True)
    assert r.ok and r.exact_max and r.undecided == 0 and r.reference_error < 1e-6
    d = r.as_dict()
    assert d["ok"] and d["domain"] == [1.0, 2.0] and d["n"] == r.n


def test_text_is_verified_as_written(libm_exp):
    """Expression text runs its exp through the C library, as written (compile's default
    would inline the library's program)."""
    r = verify("exp(x)", "exp", domain=(1, 1.01))
    assert r.kernel == "exp(x)"
    assert r.max_ulp == verify(libm_exp, "exp", domain=(1, 1.01)).max_ulp


def test_figures_match_engine_errors(libm_exp):
    """The fused reduction gives ulp_error's numbers (no exact zeros in this domain)."""
    r = verify(libm_exp, "exp", domain=(-0.6, -0.5), chunk=100_000)
    x = np.concatenate(list(float32_range(-0.6, -0.5)))
    err = ulp_error(libm_exp(x), np.exp(x.astype(np.float64)))
    s = summarize(err)
    assert r.n == s.n
    assert r.max_ulp == pytest.approx(s.max_ulp, abs=2e-6)
    assert err[np.searchsorted(x, r.argmax)] == pytest.approx(s.max_ulp, abs=2e-6)
    assert r.mean_ulp == pytest.approx(s.mean_ulp, abs=1e-9)
    assert r.correctly_rounded == pytest.approx(s.correctly_rounded, abs=r.rechecked / r.n)


def test_wrong_kernels_max_where_expected():
    """exp(x)*(1 + 2**-20) is off by 8 ULP times the mantissa of exp(x) (up to 16 ULP, plus
    an ULP of roundings), worst where exp(x) nears 2, just below x = ln 2; a kernel wrong
    at one input has its max there."""
    r = verify("exp(x) * (1 + 2**-20)", "exp", domain=(0.6, 0.75))
    assert 15.5 < r.max_ulp < 17 and r.correctly_rounded == 0.0
    assert not r.ok and _special(r, "+0")["output"] == 1 + 2 ** -20  # exp(0) is 1
    assert math.log(1.875) < r.argmax < LN2  # where 8 * mantissa > 15
    spike = verify("where(x == 1.5, exp(x) * 1.001, exp(x))", "exp", domain=(1.25, 1.75))
    assert spike.argmax == 1.5 and spike.argmax_hex == "0x1.8p+0"
    assert spike.max_ulp == pytest.approx(0.001 * math.exp(1.5) * 2 ** 21, abs=1)
    assert spike.worst[1]["ulp"] < 1


def test_nan_special_fails_for_a_kernel_that_returns_zero():
    r = verify("where(x != x, 0, exp(x))", "exp", domain=(1, 1.001))
    assert not _special(r, "nan")["passed"] and not r.ok
    assert all(s["passed"] for s in r.specials if s["name"] != "nan")


def test_signed_zero_and_ieee_specials():
    tanh = verify("tanh(x)", "tanh", domain=(0.5, 0.5005))
    assert tanh.ok and math.copysign(1, _special(tanh, "-0")["expected"]) == -1
    assert _special(tanh, "+inf")["expected"] == 1.0
    lost_sign = verify("tanh(x) + 0.0", "tanh", domain=(0.5, 0.5005))  # -0 + 0 = +0
    assert not _special(lost_sign, "-0")["passed"] and _special(lost_sign, "+0")["passed"]
    log = verify("log(x)", "log", domain=(2, 2.001))
    assert log.ok and _special(log, "+0")["expected"] == -np.inf
    assert np.isnan(_special(log, "-inf")["expected"])


def test_exp_thresholds():
    r = verify("exp(x)", "exp", domain=(1, 1.001))
    by_name = {s["name"]: s for s in r.specials}
    assert by_name["overflow (x>0)"]["hex"] == "0x1.62e43p+6"          # 88.72284
    assert by_name["subnormal from (x<0)"]["hex"] == "-0x1.5d58ap+6"   # -87.33655
    assert by_name["zero from (x<0)"]["hex"] == "-0x1.9fe36ap+6"       # -103.97208
    assert by_name["overflow (x>0)"]["expected"] == np.inf and r.ok


def test_ties_are_decided_by_the_oracle():
    """x + 2**-23 against x + 2**-24: every error is exactly 0.5 ULP, which float64 cannot
    decide; the oracle finds it correctly rounded only where ties-to-even picks it, i.e.
    where x has an odd last bit."""
    lo, hi = 1.0, 1.0002
    r = verify("x + 2**-23", "x + 2**-24", domain=(lo, hi))
    x = np.concatenate(list(float32_range(lo, hi)))
    odd = int(np.sum(x.view(np.uint32) & 1))
    assert r.max_ulp == 0.5 and r.rechecked == r.n and r.undecided == 0
    assert r.correctly_rounded == odd / r.n
    both = verify("x + 2**-24", "x + 2**-24", domain=(lo, hi))  # rounds ties to even
    assert both.correctly_rounded == 1.0


@pytest.mark.parametrize("lo,hi,chunk", [(-1e-44, 1e-44, 3), (0.999, 1.001, 997), (2.0, 2.0, 5)])
def test_chunks_cover_every_float_once(lo, hi, chunk):
    seen = []

    def fn(x):
        seen.append(x.copy())
        return np.exp(x)  # (verify ignores floating-point warnings from the function)
    r = verify_function(fn, "exp", domain=(lo, hi), chunk=chunk, threads=2)
    want = np.concatenate(list(float32_range(lo, hi)))
    inputs = np.concatenate(seen[:-1])  # the last call checks the special values
    assert r.n == count_float32(lo, hi) == want.size == inputs.size
    assert np.array_equal(np.sort(inputs.view(np.uint32)), np.sort(want.view(np.uint32)))


def test_numpy_function_and_infinite_bounds():
    big = float(np.finfo(np.float32).max)
    r = verify_function(np.exp, "exp", domain=(3e38, np.inf))  # the finite floats only
    assert r.n == count_float32(3e38, big) and r.domain == (float(np.float32(3e38)), big)
    assert r.kernel == "exp" and r.max_ulp == 0 and r.ok
    assert verify_function(np.exp, "exp", domain=(1, 1.5), chunk=1 << 20).max_ulp < 4


@pytest.mark.parametrize("kernel,against,kw,match", [
    ("x * y", "exp", {}, r"one float32 \(or float64\) argument"),
    (xf.parse("exp(float64(x))", vars={"x": "float32"}), "exp", {}, "returning the same type"),
    ("exp(x)", "nosuch", {}, "unknown function"),
    ("exp(x)", "exp(x) + y", {}, "one variable"),
    ("exp(x)", "exp", {"domain": (2, 1)}, "lo 2.0 > hi 1.0"),
    ("exp(x)", "exp", {"domain": (float("nan"), 1)}, "NaN"),
    ("exp(x)", "exp", {"domain": (1.00000001, 1.00000002)}, "no float32"),
    ("exp(x)", "exp", {"samples": 100}, "samples is for float64"),
])
def test_bad_input_is_a_value_error(kernel, against, kw, match):
    with pytest.raises(ValueError, match=match):
        verify(kernel, against, **kw)


def test_non_float32_function_is_refused():
    with pytest.raises(ValueError, match="float32 results"):
        verify_function(lambda x: np.exp(x.astype(np.float64)), "exp", domain=(1, 1.001))


# --- the CLI ------------------------------------------------------------------------------

@pytest.fixture
def fresh_store(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPRFORGE_CACHE_DIR", str(tmp_path / "store"))


def test_cli_json_on_text_and_on_a_stored_kernel(capsys, fresh_store):
    r = run_json(capsys, "verify", "exp(x)", "--against", "exp", "--domain", "1", "1.001")
    assert r["n"] == count_float32(1, 1.001) and r["ok"] and r["max_ulp"] < 1
    assert r["specials"][0]["input"] == "nan" and r["specials"][1]["output"] == "inf"
    xf.save(xf.compile("exp(x) * (1 + 2**-20)", target="llvm"), "wrong_exp")
    s = run_json(capsys, "verify", "wrong_exp", "--against", "exp",
                 "--domain", "0x1.5cp-1", "0.7")
    assert s["kernel"] == "wrong_exp" and s["function"] == "exp"   # a stored name: shown
    assert s["max_ulp"] > 15 and s["domain"][0] == float.fromhex("0x1.5cp-1")


def test_cli_text_output(capsys, fresh_store):
    code, out, _ = run(capsys, "verify", "tanh(x) + 0.0", "--against", "tanh",
                       "--domain", "-1e-1", "-0.0999")
    assert code == 0 and "max error" in out and "correctly rounded" in out
    assert "FAIL  -0" in out and "(FAILED)" in out


@pytest.mark.parametrize("argv,match", [
    (("verify", "x * y", "--against", "exp"), r"one float32 \(or float64\) argument"),
    (("verify", "exp(x)", "--against", "nosuch"), "unknown function"),
    (("verify", "exp(x)", "--against", "exp", "--domain", "2", "1"), "lo 2.0 > hi 1.0"),
    (("verify", "exp(x)", "--against", "exp", "--domain", "nan", "1"), "NaN"),
    (("verify", "exp(x)", "--against", "exp", "--domain", "1"), "expected 2 arguments"),
    (("verify", "exp(x", "--against", "exp"), "."),
    (("verify", "no_such_kernel", "--against", "exp"), "no stored kernel"),
    (("verify", "exp(x)"), "--against"),
])
def test_cli_user_errors(capsys, fresh_store, argv, match):
    import re
    line = assert_user_error(capsys, *argv)
    assert re.search(match, line), line
