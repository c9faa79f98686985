"""Error metrics in units in the last place, and an exhaustive float32 enumerator.

ULP distance follows Herbie: floats are mapped to ordinals (consecutive floats are
consecutive integers, +0 and -0 are both 0, infinities are one past the largest
finite); two NaNs are 0 apart, a NaN and a number are 2**bits apart (the maximum).
Bits of error = log2(ulps + 1).

ulp_error() is the fractional error of a computed float against the exact real value,
in ULPs of the exact value's binade: a correctly rounded result has error <= 0.5.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterator

import mpmath as mp
import numpy as np

from . import dtypes as dt

_INT_OF = {np.dtype("float32"): np.int32, np.dtype("float64"): np.int64}


def _float_array(x) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype not in _INT_OF:
        raise TypeError(f"ULP metrics take float32 or float64 arrays, got {a.dtype}")
    return a


def ordinal(x) -> np.ndarray:
    """Monotone integer image of floats (int64): +-0 -> 0, next float up -> +1."""
    a = _float_array(x)
    bits = a.view(_INT_OF[a.dtype]).astype(np.int64)
    magnitude = bits & np.int64(np.iinfo(_INT_OF[a.dtype]).max)
    return np.where(bits < 0, -magnitude, magnitude)


def ulps(a, b) -> np.ndarray:
    """Elementwise ULP distance between two float arrays of the same dtype (float64 counts)."""
    a, b = np.broadcast_arrays(_float_array(a), _float_array(b))
    if a.dtype != b.dtype:
        raise TypeError(f"ulps needs one dtype, got {a.dtype} and {b.dtype}")
    oa, ob = ordinal(a), ordinal(b)
    # |oa - ob| can exceed int64 for float64: take it in uint64, where it always fits
    with np.errstate(over="ignore"):  # modular arithmetic on purpose
        d = oa.astype(np.uint64) - ob.astype(np.uint64)
        dist = np.where(oa >= ob, d, np.uint64(0) - d).astype(np.float64)
    na, nb = np.isnan(a), np.isnan(b)
    dist = np.where(na & nb, 0.0, dist)
    return np.where(na ^ nb, float(2 ** (8 * a.dtype.itemsize)), dist)


def bits_of_error(a, b) -> np.ndarray:
    return np.log2(ulps(a, b) + 1.0)


def ulp_of(x, dtype: str) -> np.ndarray:
    """Size of one ULP of `dtype` at the real values x (float64 array): 2^(e - p + 1)."""
    prec, emin, _ = dt.FORMAT[dtype]
    x = np.abs(np.asarray(x, dtype=np.float64))
    _, e = np.frexp(x)  # x = m * 2^e, m in [0.5, 1); frexp(0) = (0, 0)
    e = np.where(x == 0, emin, np.maximum(e - 1, emin))  # at 0: the smallest subnormal
    return np.ldexp(1.0, e - (prec - 1))


def ulp_error(computed, exact) -> np.ndarray:
    """Fractional ULP error of `computed` against the exact values.

    For float32 results, `exact` may be a float64 array (the true value rounded to
    float64, 29 spare bits); otherwise pass an object array of mpf from the oracle.
    Overflow is judged as IEEE rounding would: a true value past the largest float
    rounds to inf, so inf there is exact.
    """
    c = _float_array(computed)
    dtype = str(c.dtype)
    exact = np.asarray(exact)
    if exact.dtype == object:
        errs = np.frompyfunc(lambda ci, ei: _mp_ulp_error(float(ci), ei, dtype), 2, 1)(c, exact)
        return np.asarray(errs, dtype=object).astype(np.float64)
    if dtype != "float32" or exact.dtype != np.float64:
        raise TypeError("for float64 results pass exact values as mpf (oracle output)")
    return _ulp_error_f32(c, exact)


def ulp_error_dd(computed, hi, rest) -> np.ndarray:
    """ulp_error of float64 results against exact values given as hi (the exact value
    rounded to float64) and rest = (exact - hi) / ulp(hi), |rest| <= 1/2 (in ULPs, so
    it does not underflow next to subnormal hi): vectorized, where the mpf path costs
    ~10 us a point. Exact to ~2^-50 ULP."""
    c = np.asarray(computed, np.float64)
    hi, rest = np.asarray(hi, np.float64), np.asarray(rest, np.float64)
    big = float(np.finfo(np.float64).max)
    with np.errstate(all="ignore"):
        unit = ulp_of(np.clip(hi, -big, big), "float64")
        # (c - hi) is exact when c is near hi, and dividing by a power of two is too
        err = np.abs((c - hi) / unit - rest)
        # hi a power of two with the rest toward zero: the exact value is in the binade
        # below, whose ULP is half as large
        mant, _ = np.frexp(np.abs(hi))
        below = (mant == 0.5) & (rest * np.sign(hi) < 0) & \
            (np.abs(hi) > np.finfo(np.float64).tiny)
        err = np.where(below, 2 * err, err)
        inf_c = np.isinf(c)
        beyond = np.abs((np.clip(c, -big, big) - hi) / unit - rest) + 1.0
        err = np.where(inf_c, np.where(c == hi, 0.0, beyond), err)
        err = np.where(np.isinf(hi) & ~inf_c, np.inf, err)
    nan_c, nan_e = np.isnan(c), np.isnan(hi)
    err = np.where(nan_c & nan_e, 0.0, err)
    return np.where(nan_c ^ nan_e, 2.0 ** 64, err)


def _ulp_error_f32(c: np.ndarray, ex: np.ndarray) -> np.ndarray:
    c64 = c.astype(np.float64)
    with np.errstate(all="ignore"):
        rounded = ex.astype(np.float32).astype(np.float64)  # exact's float32 rounding
        max32 = float(np.finfo(np.float32).max)
        unit = ulp_of(np.clip(ex, -max32, max32), "float32")
        err = np.abs(c64 - ex) / unit
        # infinities: exact when the true value rounds to the same infinity
        inf_c = np.isinf(c64)
        same_inf = inf_c & (rounded == c64)
        # otherwise count an infinity as one ULP past the largest finite float
        beyond = np.abs(np.clip(c64, -max32, max32) - ex) / unit + 1.0
        err = np.where(inf_c, np.where(same_inf, 0.0, beyond), err)
        err = np.where(np.isinf(ex) & ~inf_c, np.inf, err)
    nan_c, nan_e = np.isnan(c64), np.isnan(ex)
    err = np.where(nan_c & nan_e, 0.0, err)
    return np.where(nan_c ^ nan_e, 2.0 ** 32, err)


def _mp_ulp_error(c: float, e, dtype: str) -> float:
    from .evaluate import round_mpf
    bits = dt.BITS[dtype]
    if not isinstance(e, mp.mpf):
        e = mp.mpf(e)
    if mp.isnan(e) or c != c:
        return 0.0 if (mp.isnan(e) and c != c) else float(2 ** bits)
    r = round_mpf(e, dtype)
    if np.isinf(c) or mp.isinf(e):
        if r == c:
            return 0.0
        if mp.isinf(e):
            return float("inf")
        big = float(np.finfo(dtype).max)
        c = float(np.copysign(big, c))
        return float(abs(mp.mpf(c) - e) / mp.mpf(ulp_of(min(abs(float(e)), big), dtype))) + 1.0
    unit = mp.mpf(float(ulp_of(min(abs(float(e)), float(np.finfo(dtype).max)), dtype)))
    return float(abs(mp.mpf(c) - e) / unit)


@dataclass
class ErrorStats:
    n: int
    max_ulp: float
    mean_ulp: float
    correctly_rounded: float  # share of results equal to the exact value's rounding
    argmax: int               # index of the worst point

    def as_dict(self) -> dict:
        return asdict(self)


def summarize(errors: np.ndarray) -> ErrorStats:
    """Summary of fractional ULP errors (from ulp_error)."""
    e = np.asarray(errors, dtype=np.float64).ravel()
    if e.size == 0:
        return ErrorStats(0, 0.0, 0.0, 1.0, -1)
    i = int(np.argmax(e))
    return ErrorStats(n=int(e.size), max_ulp=float(e[i]), mean_ulp=float(np.mean(e)),
                      correctly_rounded=float(np.mean(e <= 0.5)), argmax=i)


# --- exhaustive float32 enumeration ------------------------------------------------------

def _key32(x: float) -> int:
    """Total-order key of a float32 with -0 < +0: k >= 0 are +floats, k < 0 negatives."""
    bits = int(np.array(x, dtype=np.float32).view(np.uint32))
    return bits if bits < 0x80000000 else -((bits & 0x7FFFFFFF) + 1)


def _floats32(keys: np.ndarray) -> np.ndarray:
    bits = np.where(keys >= 0, keys, (-keys - 1) | 0x80000000).astype(np.uint32)
    return bits.view(np.float32)


def count_float32(lo: float, hi: float) -> int:
    """Number of float32 values x with lo <= x <= hi (both zeros counted)."""
    a, b = _bounds32(lo, hi)
    return max(0, b - a + 1)


def _bounds32(lo: float, hi: float) -> tuple[int, int]:
    if np.isnan(lo) or np.isnan(hi):
        raise ValueError("domain bounds must not be NaN")
    with np.errstate(over="ignore"):
        f_lo, f_hi = np.float32(lo), np.float32(hi)
    # compare as Python floats: NEP 50 would round lo to float32 and always find equality
    if float(f_lo) < lo:  # rounding moved the bound outside the interval: step inward
        f_lo = np.nextafter(f_lo, np.float32(np.inf))
    if float(f_hi) > hi:
        f_hi = np.nextafter(f_hi, np.float32(-np.inf))
    return _key32(f_lo), _key32(f_hi)


_KEY_INT = {"float32": (np.uint32, 0x80000000), "float64": (np.uint64, 1 << 63)}


def float_keys(x) -> np.ndarray:
    """Total-order keys (int64) of float32 or float64 values, -0 < +0: consecutive floats
    have consecutive keys; k >= 0 are the positive floats."""
    a = _float_array(x)
    uint, sign = _KEY_INT[str(a.dtype)]
    bits = a.view(uint).astype(np.uint64)
    magnitude = (bits & np.uint64(sign - 1)).astype(np.int64)
    return np.where(bits >= np.uint64(sign), -magnitude - 1, magnitude)


def floats_of_keys(keys, dtype: str) -> np.ndarray:
    """The floats of `dtype` with the given total-order keys (inverse of float_keys)."""
    uint, sign = _KEY_INT[dtype]
    k = np.asarray(keys, np.int64)
    bits = np.where(k >= 0, k, -k - 1).astype(np.uint64) | \
        np.where(k >= 0, np.uint64(0), np.uint64(sign))
    return bits.astype(uint).view(dtype)


def float_bounds(lo: float, hi: float, dtype: str) -> tuple[int, int]:
    """Keys of the first and last float of `dtype` in [lo, hi]."""
    if dtype == "float32":
        return _bounds32(lo, hi)
    if np.isnan(lo) or np.isnan(hi):
        raise ValueError("domain bounds must not be NaN")
    lo, hi = float(lo), float(hi)
    return int(float_keys(np.array([lo]))[0]), int(float_keys(np.array([hi]))[0])


def float32_range(lo: float = -np.inf, hi: float = np.inf,
                  chunk: int = 1 << 22) -> Iterator[np.ndarray]:
    """Every float32 in [lo, hi] in increasing order (-0 before +0), in chunks."""
    a, b = _bounds32(lo, hi)
    for start in range(a, b + 1, chunk):
        stop = min(start + chunk, b + 1)
        yield _floats32(np.arange(start, stop, dtype=np.int64))
