"""Error metrics: ULP distances (Herbie's ordinals), fractional ULP error against exact
values (float64 fast path and mpmath path), summaries, and the float32 enumerator."""
import numpy as np
import pytest

from exprforge.engine.errors import (ErrorStats, bits_of_error, count_float32,
                                     float32_range, ordinal, summarize, ulp_error, ulps)
from exprforge.engine.evaluate import exact, oracle
from exprforge.engine.expr import make, var

FLOATS = [np.float32, np.float64]
NAN_DISTANCE = {np.float32: 2.0 ** 32, np.float64: 2.0 ** 64}
# ordinal of +inf: the bit pattern 0x7F800000 / 0x7FF0000000000000
INF_ORDINAL = {np.float32: 2 ** 31 - 2 ** 23, np.float64: 2 ** 63 - 2 ** 52}


def arr(values, ftype):
    return np.array(values, dtype=ftype)


def random_floats(ftype, n, rng):
    """Random bit patterns: every binade, subnormals, zeros, infinities and NaNs alike."""
    itype = np.uint32 if ftype is np.float32 else np.uint64
    bits = rng.integers(0, np.iinfo(itype).max, n, dtype=itype, endpoint=True)
    return bits.view(ftype)


# --- ulps ------------------------------------------------------------------------------

@pytest.mark.parametrize("ftype", FLOATS)
class TestUlps:
    def test_signed_zeros_are_zero_apart(self, ftype):
        assert ulps(arr(0.0, ftype), arr(-0.0, ftype)) == 0
        assert ulps(arr(-0.0, ftype), arr(0.0, ftype)) == 0

    def test_zero_to_smallest_subnormal_is_one(self, ftype):
        tiny = np.finfo(ftype).smallest_subnormal
        assert ulps(arr(0.0, ftype), arr(tiny, ftype)) == 1
        assert ulps(arr(-0.0, ftype), arr(tiny, ftype)) == 1
        assert ulps(arr(-tiny, ftype), arr(0.0, ftype)) == 1

    def test_subnormals_either_side_of_zero_are_two_apart(self, ftype):
        tiny = np.finfo(ftype).smallest_subnormal
        assert ulps(arr(-tiny, ftype), arr(tiny, ftype)) == 2

    def test_largest_finite_to_infinity_is_one(self, ftype):
        big = np.finfo(ftype).max
        assert ulps(arr(big, ftype), arr(np.inf, ftype)) == 1
        assert ulps(arr(-np.inf, ftype), arr(-big, ftype)) == 1

    def test_infinity_to_infinity_counts_exactly(self, ftype):
        got = ulps(arr(-np.inf, ftype), arr(np.inf, ftype))
        assert got.dtype == np.float64
        assert float(got) == float(2 * INF_ORDINAL[ftype])
        assert float(got) > 0  # no wrap-around in int64 for float64
        assert ulps(arr(np.inf, ftype), arr(np.inf, ftype)) == 0

    def test_extremes_of_the_finite_range(self, ftype):
        big = np.finfo(ftype).max
        assert float(ulps(arr(-big, ftype), arr(big, ftype))) == float(2 * (INF_ORDINAL[ftype] - 1))

    def test_nan_conventions(self, ftype):
        nan = arr(np.nan, ftype)
        assert ulps(nan, nan) == 0
        assert ulps(nan, -nan) == 0
        for other in (1.0, 0.0, -np.inf, np.inf):
            assert ulps(nan, arr(other, ftype)) == NAN_DISTANCE[ftype]
            assert ulps(arr(other, ftype), nan) == NAN_DISTANCE[ftype]

    def test_neighbours_are_one_apart(self, ftype):
        rng = np.random.default_rng(1)
        x = random_floats(ftype, 5000, rng)
        x = x[np.isfinite(x)]
        tiny = np.finfo(ftype).smallest_subnormal
        x = np.concatenate([x, arr([0.0, -0.0, tiny, -tiny, np.finfo(ftype).max,
                                    -np.finfo(ftype).max, np.finfo(ftype).tiny], ftype)])
        with np.errstate(over="ignore"):
            up = np.nextafter(x, arr(np.inf, ftype))
            down = np.nextafter(x, arr(-np.inf, ftype))
        np.testing.assert_array_equal(ulps(x, up), 1.0)
        np.testing.assert_array_equal(ulps(down, x), 1.0)
        # two steps in one direction are two apart, including across zero
        np.testing.assert_array_equal(ulps(down, up)[(x != 0)], 2.0)

    def test_agrees_with_ordinal_difference(self, ftype):
        rng = np.random.default_rng(2)
        a, b = random_floats(ftype, 3000, rng), random_floats(ftype, 3000, rng)
        ok = ~(np.isnan(a) | np.isnan(b))
        want = np.abs(ordinal(a[ok]).astype(object) - ordinal(b[ok]).astype(object))
        np.testing.assert_array_equal(ulps(a[ok], b[ok]), want.astype(np.float64))

    def test_symmetric(self, ftype):
        rng = np.random.default_rng(3)
        a, b = random_floats(ftype, 5000, rng), random_floats(ftype, 5000, rng)
        a[:50] = np.nan  # include NaNs on one side and on both
        b[25:75] = np.nan
        np.testing.assert_array_equal(ulps(a, b), ulps(b, a))

    def test_broadcasting(self, ftype):
        a = arr([[1.0], [2.0], [-1.0]], ftype)
        b = arr([1.0, np.nextafter(ftype(1), ftype(2)), 2.0, -0.0], ftype)
        got = ulps(a, b)
        assert got.shape == (3, 4)
        for i in range(3):
            for j in range(4):
                assert got[i, j] == ulps(a[i, 0], b[j])
        assert got[0, 0] == 0 and got[0, 1] == 1
        step = 2 ** 23 if ftype is np.float32 else 2 ** 52  # floats in one binade
        assert got[0, 2] == step
        assert got[2, 0] == 2 * float(ordinal(arr(1.0, ftype)))  # -1 to 1
        assert got[2, 3] == got[0, 3] == float(ordinal(arr(1.0, ftype)))

    def test_bits_of_error(self, ftype):
        rng = np.random.default_rng(4)
        a, b = random_floats(ftype, 2000, rng), random_floats(ftype, 2000, rng)
        np.testing.assert_array_equal(bits_of_error(a, b), np.log2(ulps(a, b) + 1.0))
        one = arr(1.0, ftype)
        assert bits_of_error(one, one) == 0
        assert bits_of_error(one, np.nextafter(one, arr(2, ftype))) == 1
        assert bits_of_error(one, arr(np.nan, ftype)) == pytest.approx(
            np.log2(NAN_DISTANCE[ftype] + 1))


def test_ulps_refuses_mixed_dtypes():
    with pytest.raises(TypeError):
        ulps(np.array([1.0], np.float32), np.array([1.0], np.float64))
    with pytest.raises(TypeError):
        ulps(np.array([1.0], np.float64), np.array([1.0], np.float32))


@pytest.mark.parametrize("itype", [np.int32, np.int64, np.uint32, bool])
def test_ulps_refuses_integer_arrays(itype):
    with pytest.raises(TypeError):
        ulps(np.array([1, 2], itype), np.array([1, 2], itype))
    with pytest.raises(TypeError):
        ulps(np.array([1.0, 2.0], np.float32), np.array([1, 2], itype))
    with pytest.raises(TypeError):
        bits_of_error(np.array([1, 2], itype), np.array([1, 2], itype))


# --- ulp_error ---------------------------------------------------------------------------

def wide_float64(n, rng):
    """float64 values over float32's whole range, subnormals included, both signs."""
    mag = np.exp(rng.uniform(np.log(1e-44), np.log(3e38), n))
    return mag * rng.choice([-1.0, 1.0], n)


def test_correctly_rounded_results_are_within_half_an_ulp():
    rng = np.random.default_rng(5)
    ex = wide_float64(20000, rng)
    c = ex.astype(np.float32)
    err = ulp_error(c, ex)
    assert err.dtype == np.float64 and err.shape == ex.shape
    assert np.all(err <= 0.5)
    assert np.all(err >= 0)
    # the other float32 bracketing the exact value is between half and one ULP off, and
    # the two errors add up to one ULP of the exact value's binade
    other = np.where(c.astype(np.float64) >= ex, np.nextafter(c, np.float32(-np.inf)),
                     np.nextafter(c, np.float32(np.inf)))
    err2 = ulp_error(other, ex)
    assert np.all((err2 >= 0.5) & (err2 <= 1.5))
    np.testing.assert_allclose(err + err2, 1.0, rtol=0, atol=1e-6)


def test_one_ulp_off_in_the_middle_of_a_binade():
    one = np.float32(1.5)
    assert ulp_error(np.array([one]), np.array([1.5]))[0] == 0
    up = np.nextafter(one, np.float32(2))
    assert ulp_error(np.array([up]), np.array([1.5]))[0] == 1.0
    assert ulp_error(np.array([up]), np.array([1.5 + 2.0 ** -24]))[0] == 0.5
    # subnormals: one ULP is the smallest subnormal
    tiny = float(np.finfo(np.float32).smallest_subnormal)
    assert ulp_error(np.array([np.float32(0)]), np.array([tiny]))[0] == 1.0
    assert ulp_error(np.array([np.float32(0)]), np.array([tiny / 4]))[0] == 0.25


def test_float32_fast_path_agrees_with_the_mpmath_path():
    rng = np.random.default_rng(6)
    x = var("x", "float64")
    e = make("exp", (x,))
    env = {"x": rng.uniform(-100, 88, 300)}
    truth_mp = oracle(e, env, prec=160)                 # object array of mpf
    truth64 = exact(e, env, dtype="float64", prec=160)  # the same, rounded to float64
    for shift in (0, 1, -3):
        c = truth64.astype(np.float32)
        if shift:
            c = (c.view(np.int32) + np.int32(shift)).view(np.float32)
        fast, slow = ulp_error(c, truth64), ulp_error(c, truth_mp)
        assert slow.dtype == np.float64
        np.testing.assert_allclose(fast, slow, rtol=1e-6, atol=1e-8)
    # subnormal and wide float32 results, where the exact values are float64 exactly
    vals = np.concatenate([wide_float64(500, rng), rng.uniform(-1e-38, 1e-38, 200)])
    truth_mp = oracle(x, {"x": vals})
    c = vals.astype(np.float32)
    c[::3] = np.nextafter(c[::3], np.float32(np.inf))
    np.testing.assert_allclose(ulp_error(c, vals), ulp_error(c, truth_mp), rtol=1e-6, atol=1e-12)


def test_mp_path_takes_the_binade_of_the_exact_value():
    x = var("x", "float64")
    ex = oracle(x, {"x": np.array([1.5, 2.0 ** -140])})
    c = np.array([np.nextafter(np.float32(1.5), np.float32(2)), np.float32(0)])
    np.testing.assert_array_equal(ulp_error(c, ex), [1.0, 2.0 ** -140 / 2.0 ** -149])


def test_overflow_to_infinity_is_exact_when_the_truth_rounds_to_infinity():
    with np.errstate(over="ignore"):
        c = np.exp(np.array([89.0], dtype=np.float32))
    assert np.isposinf(c[0])
    truth = np.exp(np.array([89.0]))  # ~4.5e38, past float32's rounding threshold
    assert truth[0] > float(np.finfo(np.float32).max)
    assert ulp_error(c, truth)[0] == 0
    assert ulp_error(-c, -truth)[0] == 0
    # the mpmath path agrees
    x = var("x", "float64")
    assert ulp_error(c, oracle(make("exp", (x,)), {"x": np.array([89.0])}))[0] == 0


def test_finite_result_where_the_truth_overflows_is_far_off():
    big = np.float32(np.finfo(np.float32).max)
    truth = np.exp(np.array([89.0]))
    err = ulp_error(np.array([big]), truth)[0]
    assert err > 1e6
    x = var("x", "float64")
    err_mp = ulp_error(np.array([big]), oracle(make("exp", (x,)), {"x": np.array([89.0])}))[0]
    assert err_mp == pytest.approx(err, rel=1e-6)
    # the truth infinite itself: a finite answer is infinitely wrong
    assert ulp_error(np.array([big]), np.array([np.inf]))[0] == np.inf
    # the wrong infinity is wrong
    assert ulp_error(np.array([-np.float32(np.inf)]), truth)[0] > 1e6


def test_just_past_the_largest_float_rounds_back_to_it():
    big = float(np.finfo(np.float32).max)
    half = 2.0 ** (127 - 24)  # half an ULP at the top binade
    below_threshold = np.array([big + 0.5 * half])
    assert ulp_error(np.array([np.float32(big)]), below_threshold)[0] <= 0.5
    inf_err = ulp_error(np.array([np.float32(np.inf)]), below_threshold)[0]
    assert inf_err > 0.5


def test_nan_errors():
    nan32 = np.array([np.nan], dtype=np.float32)
    assert ulp_error(nan32, np.array([np.nan]))[0] == 0
    assert ulp_error(nan32, np.array([1.0]))[0] == 2.0 ** 32
    assert ulp_error(np.array([1.0], np.float32), np.array([np.nan]))[0] == 2.0 ** 32
    assert ulp_error(np.array([np.inf], np.float32), np.array([np.nan]))[0] == 2.0 ** 32
    import mpmath as mp
    obj = np.array([mp.nan, mp.mpf(1), mp.nan], dtype=object)
    with np.errstate(invalid="ignore"):
        got = ulp_error(np.array([np.nan, np.nan, 1.0], dtype=np.float32), obj)
        got64 = ulp_error(np.array([np.nan, np.nan, 1.0], dtype=np.float64), obj)
    np.testing.assert_array_equal(got, [0.0, 2.0 ** 32, 2.0 ** 32])
    np.testing.assert_array_equal(got64, [0.0, 2.0 ** 64, 2.0 ** 64])


def test_float64_results_need_mpf_exact_values():
    with pytest.raises(TypeError):
        ulp_error(np.array([1.0]), np.array([1.0]))
    with pytest.raises(TypeError):  # float32 exact values are not exact enough either
        ulp_error(np.array([1.0], np.float32), np.array([1.0], np.float32))
    with pytest.raises(TypeError):
        ulp_error(np.array([1, 2]), np.array([1.0, 2.0]))
    import mpmath as mp
    with mp.workprec(128):
        ex = np.array([mp.mpf(1) + mp.mpf(2) ** -60], dtype=object)
    assert ulp_error(np.array([1.0]), ex)[0] == pytest.approx(2.0 ** -8)


# --- summarize -----------------------------------------------------------------------------

def test_summarize_fields():
    errs = np.array([[0.1, 0.5, 2.0], [0.6, 0.0, 1.0]])
    s = summarize(errs)
    assert isinstance(s, ErrorStats)
    assert s.n == 6
    assert s.max_ulp == 2.0
    assert s.argmax == 2
    assert s.mean_ulp == pytest.approx(4.2 / 6)
    assert s.correctly_rounded == pytest.approx(3 / 6)  # 0.1, 0.5 and 0.0
    assert s.as_dict() == {"n": 6, "max_ulp": 2.0, "mean_ulp": s.mean_ulp,
                           "correctly_rounded": s.correctly_rounded, "argmax": 2}


def test_summarize_argmax_points_at_the_worst_input():
    rng = np.random.default_rng(7)
    ex = wide_float64(1000, rng)
    c = ex.astype(np.float32)
    c[417] = np.nextafter(np.nextafter(c[417], np.float32(np.inf)), np.float32(np.inf))
    s = summarize(ulp_error(c, ex))
    assert s.argmax == 417
    assert 1.5 <= s.max_ulp <= 2.5
    assert s.correctly_rounded == pytest.approx(999 / 1000)


def test_summarize_infinite_errors():
    s = summarize(np.array([0.0, np.inf, 3.0]))
    assert s.max_ulp == np.inf and s.argmax == 1 and s.correctly_rounded == pytest.approx(1 / 3)


def test_summarize_empty():
    s = summarize(np.array([]))
    assert s == ErrorStats(n=0, max_ulp=0.0, mean_ulp=0.0, correctly_rounded=1.0, argmax=-1)


# --- float32 enumeration -----------------------------------------------------------------

def collect(lo, hi, **kw):
    chunks = list(float32_range(lo, hi, **kw))
    for c in chunks:
        assert c.dtype == np.float32
    return np.concatenate(chunks) if chunks else np.array([], np.float32), chunks


def assert_consecutive(x):
    """Increasing, each the next float32 after the one before (-0 then +0 allowed)."""
    up = np.nextafter(x[:-1], np.float32(np.inf))
    zero_pair = (x[:-1] == 0) & np.signbit(x[:-1]) & (x[1:] == 0) & ~np.signbit(x[1:])
    ok = (up == x[1:]) & ~((x[:-1] == 0) & (x[1:] == 0))  # nextafter(0) is a subnormal
    assert np.all(ok | zero_pair)


def test_one_binade():
    x, chunks = collect(1.0, 2.0)
    assert len(x) == 2 ** 23 + 1 == count_float32(1.0, 2.0)
    assert len(chunks) == 3  # default chunk is 2**22
    assert x[0] == 1 and x[-1] == 2
    assert np.all(np.diff(x) > 0)
    assert np.all(np.nextafter(x[:-1], np.float32(3)) == x[1:])


def test_both_zeros_negative_first():
    x, _ = collect(-0.0, 0.0)
    assert len(x) == 2 == count_float32(-0.0, 0.0)
    assert np.all(x == 0)
    assert np.signbit(x[0]) and not np.signbit(x[1])


def test_positive_zero_alone():
    x, _ = collect(0.0, 0.0)
    assert len(x) == 1 == count_float32(0.0, 0.0)
    assert x[0] == 0 and not np.signbit(x[0])
    x, _ = collect(-0.0, -0.0)
    assert len(x) == 1 and np.signbit(x[0])


def test_whole_line_count():
    assert count_float32(-np.inf, np.inf) == 2 ** 32 - 2 ** 24 + 2
    assert count_float32(0.0, np.inf) == 2 ** 31 - 2 ** 23 + 1  # +0 .. +inf
    assert count_float32(-np.inf, -0.0) == 2 ** 31 - 2 ** 23 + 1


def test_whole_line_ends():
    first = next(float32_range(chunk=4))
    assert list(first) == [-np.inf, -np.finfo(np.float32).max,
                           np.nextafter(-np.finfo(np.float32).max, np.float32(0)),
                           np.nextafter(np.nextafter(-np.finfo(np.float32).max, np.float32(0)),
                                        np.float32(0))]


def test_small_chunks_cover_without_gaps_or_repeats():
    tiny = float(np.finfo(np.float32).smallest_subnormal)
    lo, hi = -50 * tiny, 50 * tiny
    x, chunks = collect(lo, hi, chunk=7)
    n = count_float32(lo, hi)
    assert n == 102  # 50 negatives, -0, +0, 50 positives
    assert len(x) == n
    assert all(len(c) == 7 for c in chunks[:-1]) and 1 <= len(chunks[-1]) <= 7
    assert len(np.unique(x.view(np.uint32))) == n
    assert_consecutive(x)
    assert x[0] == np.float32(lo) and x[-1] == np.float32(hi)
    # the same interval in one chunk gives the same values
    whole, _ = collect(lo, hi, chunk=1 << 10)
    np.testing.assert_array_equal(x.view(np.uint32), whole.view(np.uint32))


def test_chunks_across_binades():
    x, chunks = collect(0.9, 4.1, chunk=1000003)
    assert len(x) == count_float32(0.9, 4.1) and len(chunks) > 1
    assert_consecutive(x)


@pytest.mark.parametrize("lo,hi", [(0.1, 0.7), (0.7, 0.9), (1 / 3, 2 / 3), (-0.7, -0.1),
                                   (1e-45, 3e-45)])
def test_bounds_not_float32_step_inward(lo, hi):
    # compare as float64: under NEP 50 `np.float32 < python float` is done in float32
    assert float(np.float32(lo)) != lo and float(np.float32(hi)) != hi  # not float32s
    x, _ = collect(lo, hi, chunk=1 << 20)
    assert len(x) == count_float32(lo, hi)
    assert float(x[0]) >= lo and float(np.nextafter(x[0], np.float32(-np.inf))) < lo
    assert float(x[-1]) <= hi and float(np.nextafter(x[-1], np.float32(np.inf))) > hi


def test_bounds_beyond_the_float32_range():
    big = np.finfo(np.float32).max
    with np.errstate(over="ignore"):
        x, _ = collect(3e38, 1e39)
    assert x[-1] == big and np.all(np.isfinite(x))
    with np.errstate(over="ignore"):
        assert count_float32(-1e39, 1e39) == count_float32(-np.inf, np.inf) - 2


def test_empty_interval():
    assert count_float32(2.0, 1.0) == 0
    assert list(float32_range(2.0, 1.0)) == []


def test_interval_between_two_floats_is_empty():
    assert count_float32(0.1, 0.1) == 0  # no float32 is one tenth
    assert list(float32_range(0.1, 0.1)) == []


@pytest.mark.parametrize("lo,hi", [(np.nan, 1.0), (0.0, np.nan), (np.nan, np.nan)])
def test_nan_bounds_are_refused(lo, hi):
    with pytest.raises(ValueError):
        count_float32(lo, hi)
    with pytest.raises(ValueError):
        list(float32_range(lo, hi))


def test_ulp_of_zero_is_the_smallest_subnormal():
    from exprforge.engine.errors import ulp_of
    assert ulp_of(np.float64(0.0), "float32") == 2.0 ** -149
    assert ulp_of(np.float64(0.0), "float64") == 2.0 ** -1074
    # a nonzero result where the exact value is 0 is as many ULPs off as it has subnormals
    assert ulp_error(np.float32([1e-45, 0.0, -0.0]), np.float64([0.0, 0.0, 0.0])).tolist() == \
        [1.0, 0.0, 0.0]
