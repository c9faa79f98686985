"""Exhaustive float32 verification: a unary kernel checked on every float32 of a domain.

Every finite float32 in the domain goes through the kernel, in chunks on threads (the
LLVM loop, NumPy's big ops and the Numba reduction below release the GIL). The reference
is the true function evaluated in float64 (engine.evaluate of the op or Expr); each error
is ulp_error(y32, ref64): fractional ULPs of the exact value's binade, overflow judged as
IEEE rounding would (an exact 0 counts in ULPs of the smallest subnormal, 2**-149).

What is exact. An op-table function's float64 reference is within a few float64 ULPs of
the truth, so each float64 error is within W = 1e-6 ULP (~500 float64 ULPs) of the exact
one. Where that can change an answer the 128-bit mpmath oracle decides: errors within W
of 0.5; errors of 0.25 or more whose reference lies next to a power of two (the truth
may be in the other binade: the error halves or doubles); results at the overflow
threshold; every point within 2W of the largest error. So n, max_ulp and its argmax
(unless `exact_max` is False: a chunk held more near-max points than it keeps), the share
correctly rounded (unless `undecided` > 0: borderline points past the recheck budget,
judged in float64) and the special values are exact; mean_ulp and the worst list's
entries below the max are float64 figures (each error within W, or a factor 2 off for
small errors next to a power of two).
An Expr reference evaluated in float64 can be far less accurate (cancellation):
`reference_error` is the largest error of the float64 reference at the rechecked points
(float32 ULPs); above W the figures are not to be trusted.

Speed: the whole float32 range of exp (2.24e9 inputs, libm's expf through LLVM) takes
49 CPU seconds here, about 21 ns an input, most of it the float64 reference.

Float64 kernels cannot be checked on every input (2^64): verify_sampled checks a
random sample (half uniform over the float64s of the domain, so every binade is seen,
half uniform in value, plus the domain's ends) and the same special values. The
reference is the function in long double where NumPy computes it so (x87's 64-bit
significand: within W64 = 2^-8 float64 ULPs of the truth), with the oracle deciding
the same kinds of points as above; otherwise (erf, expressions) the oracle at every
point, on a smaller sample. Its max is the sample's, not the domain's; it is exact for
the sample (`exact_max`) when every point within 2*W64 of it and every point whose
error the binade or the overflow threshold may double was decided by the oracle, and
the share correctly rounded is exact unless `undecided` > 0.
"""
from __future__ import annotations

import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import cache

import mpmath as mp
import numpy as np

from exprforge.engine.dtypes import BITS, FORMAT
from exprforge.engine.errors import (_bounds32, _floats32, float_bounds, float_keys,
                                     floats_of_keys, ulp_of, ulps)
from exprforge.engine.evaluate import evaluate, exact, oracle, prepare, round_mpf
from exprforge.engine.expr import Expr, make, var
from exprforge.engine.ops import OPS
from exprforge.engine.parse import parse

W = 1e-6                  # bound on |float64 error - exact error|, in float32 ULPs
TOP = 16                  # worst points each chunk keeps
RECHECK_BUDGET = 1 << 15  # oracle calls at most (20-170 us each)
W64 = 2.0 ** -8           # bound on |long double error - exact error|, in float64 ULPs
SAMPLES = 1 << 24         # float64 points checked against a long double reference
ORACLE_SAMPLES = 1 << 15  # ... against the oracle alone
RECHECK_BUDGET_F64 = 1 << 17
OVERFLOW64 = np.ldexp(np.longdouble(1), 1024) - np.ldexp(np.longdouble(1), 970)  # rounds to inf
MAX32 = float(np.finfo(np.float32).max)
OVERFLOW = 2.0 ** 128 - 2.0 ** 103  # true values from here on round to inf in float32


@dataclass
class VerifyReport:
    function: str
    kernel: str
    domain: tuple             # the float32 ends checked
    n: int
    max_ulp: float
    argmax: float
    argmax_hex: str
    mean_ulp: float
    correctly_rounded: float
    seconds: float
    specials: list = field(default_factory=list)
    worst: list = field(default_factory=list)
    rechecked: int = 0        # points decided by the mpmath oracle
    undecided: int = 0        # borderline points left to float64 (over the recheck budget)
    exact_max: bool = True
    reference_error: float = 0.0
    dtype: str = "float32"
    method: str = "exhaustive"    # or "sampled" (float64)
    reference: str = "float64"    # what computed the reference: float64, long double, mpmath

    @property
    def ok(self) -> bool:
        return all(s["passed"] for s in self.specials)

    def as_dict(self) -> dict:
        return {**asdict(self), "domain": list(self.domain), "ok": self.ok}


def reference(against) -> tuple[str, Expr, str]:
    """(label, float64 Expr of one variable, its name) for an op name, an Expr or text."""
    if isinstance(against, str) and against.isidentifier():
        o = OPS.get(against)
        if o is None or o.arity != 1 or o.group != "elementwise" or o.args != "T" \
                or o.tkind not in ("float", "num"):
            raise ValueError(f"unknown function {against!r}: give a unary op such as exp, "
                             "log, erf, tanh, sigmoid, or an expression of one variable")
        return against, make(against, (var("x"),)), "x"
    expr = parse(against, dtype="float64") if isinstance(against, str) else against
    if not isinstance(expr, Expr) or len(expr.variables()) != 1:
        raise ValueError("the reference must be an op name or an expression of one variable")
    label = against if isinstance(against, str) else str(expr)
    return label, prepare(expr, "float64"), expr.var_names()[0]


def _kernel_of(obj):
    from exprforge.targets.build import compile_kernel, load
    from exprforge.targets.kernel import Kernel
    if isinstance(obj, str) and obj.isidentifier():
        from exprforge.evolve.library import library
        if obj in library():   # a shipped approximation (the store first, as an import)
            import exprforge.kernels
            obj = getattr(exprforge.kernels, obj)
        else:
            obj = load(obj)    # a stored name (LookupError when there is none)
    elif isinstance(obj, (str, Expr)):   # as written: its exp, tanh, ... are the C library's
        obj = compile_kernel(obj, "llvm", approx=False)
    if not isinstance(obj, Kernel) or obj.target not in ("llvm", "numba"):
        raise ValueError("verify takes an llvm or numba Kernel, an Expr, text or a stored "
                         f"kernel's name, not {obj!r}")
    params = obj.plan.params
    if len(params) != 1 or params[0][1] != obj.dtype or obj.dtype not in ("float32", "float64"):
        sig = ", ".join(f"{n}: {d}" for n, d in params)
        raise ValueError("verify needs a kernel of one float32 (or float64) argument "
                         f"returning the same type; this one is ({sig}) -> {obj.dtype}")
    return obj


def verify(kernel_or_expr, against, domain=None, chunk: int = 1 << 22,
           threads: int | None = None, samples: int | None = None,
           seed: int = 0) -> VerifyReport:
    """Check a kernel of one argument (a Kernel, an Expr or text compiled for llvm, or a
    stored kernel's name) against `against` (a unary op's name or an Expr of one
    variable) on `domain` = (lo, hi) (None: every finite float): a float32 kernel on
    every float32 there, a float64 kernel on `samples` random points (verify_sampled);
    see the module doc."""
    kernel = _kernel_of(kernel_or_expr)
    named = isinstance(kernel_or_expr, str) and kernel_or_expr.isidentifier()
    name = kernel_or_expr if named else str(kernel.expr)
    if kernel.dtype == "float64":
        return verify_sampled(kernel, against, domain, samples, seed, threads, name=name)
    if samples is not None:
        raise ValueError("float32 kernels are checked on every input: samples is for float64")
    return verify_function(kernel, against, domain, chunk, threads, name=name)


def verify_function(fn, against, domain=None, chunk: int = 1 << 22, threads: int | None = None,
                    name: str | None = None) -> VerifyReport:
    """verify() for any vectorized callable from float32 arrays to float32 arrays (e.g.
    np.exp, to compare NumPy with a kernel)."""
    began = time.perf_counter()
    label, ref, vname = reference(against)
    if domain is not None and len(domain) != 2:
        raise ValueError(f"domain is (lo, hi), got {domain!r}")
    lo, hi = (-MAX32, MAX32) if domain is None else map(float, domain)
    if np.isnan(lo) or np.isnan(hi):
        raise ValueError("domain bounds must not be NaN")
    if lo > hi:
        raise ValueError(f"empty domain: lo {lo} > hi {hi}")
    a, b = _bounds32(max(lo, -MAX32), min(hi, MAX32))  # finite floats; infinities are specials
    if a > b or chunk < 1:
        raise ValueError(f"no float32 lies in [{lo}, {hi}]" if a > b else "chunk must be >= 1")

    def run(start):
        return _check_chunk(fn, ref, vname, start, min(start + chunk, b + 1))
    with ThreadPoolExecutor(threads or os.cpu_count() or 1) as pool:
        parts = list(pool.map(run, range(a, b + 1, chunk)))
    ends = _floats32(np.array([a, b]))
    return VerifyReport(function=label, kernel=name or getattr(fn, "__name__", repr(fn)),
                        domain=(float(ends[0]), float(ends[1])), **_combine(parts, ref, vname),
                        specials=_specials(fn, ref, vname, ends),
                        seconds=round(time.perf_counter() - began, 3))


# --- the exhaustive pass ------------------------------------------------------------------

@cache
def _numba():
    import numba

    @numba.njit(nogil=True)
    def fill(start, bits):  # float32 bits of the total-order keys start, start + 1, ...
        for i in range(bits.size):
            k = start + i
            bits[i] = k if k >= 0 else (-k - 1) | 0x80000000

    @numba.njit(nogil=True)
    def rare(c, e, w):  # (error, borderline?) where c or the reference is inf or NaN
        if c != c or e != e:
            return (0.0 if (c != c and e != e) else 2.0 ** 32), False
        if math.isinf(c):
            near = abs(abs(e) - OVERFLOW) <= w * 2.0 ** 104
            if np.float64(np.float32(e)) == c:
                return 0.0, near
            if math.isinf(e):
                return math.inf, False
            return abs(math.copysign(MAX32, c) - e) / 2.0 ** 104 + 1.0, near
        return math.inf, False

    @numba.njit(nogil=True)
    def reduce(y, ref, ref_bits, inv_unit, w, border, border_err, top_err, top_idx):
        """One pass, no temporaries: the sum of the errors, how many float64 calls
        correctly rounded, the borderline points, the TOP worst. Branch-free where it
        can be: a mispredicted branch per point costs more than the arithmetic."""
        near = np.uint64(int(w * 2.0 ** 29) + 1)  # W in float64 ULPs of the reference
        mant_top, inf_field = np.uint64((1 << 52) - 1), np.uint64(0x7FF)
        lo_field, span = np.uint64(897), np.uint64(1150 - 897)  # binades 2**-126 .. 2**127
        total, cr, nb = 0.0, 0, 0
        for i in range(y.size):
            c, e, bits = np.float64(y[i]), ref[i], ref_bits[i]
            field_ = (bits >> np.uint64(52)) & inf_field
            if field_ != inf_field and abs(c) <= MAX32:  # both finite (NaN fails <=)
                err = abs(c - e) * inv_unit[field_]
                # next to a power of two (the reference's mantissa within `near` of 0 or
                # 1) the truth's binade may be the other one: the error halves or doubles
                wrapped = ((bits & mant_top) + near) & mant_top
                flag = (err >= 0.25 - w) & (field_ - lo_field <= span) & (wrapped < near + near)
            else:
                err, flag = rare(c, e, w)
            cr += err <= 0.5
            if flag | (abs(err - 0.5) <= w):
                if nb < border.size:
                    border[nb], border_err[nb] = i, err
                nb += 1
            total += err
            if err > top_err[0]:  # ascending list of the worst: insert in place
                j = 0
                while j + 1 < top_err.size and top_err[j + 1] < err:
                    top_err[j], top_idx[j] = top_err[j + 1], top_idx[j + 1]
                    j += 1
                top_err[j], top_idx[j] = err, i
        return total, cr, nb
    return fill, reduce


@cache
def _inv_units() -> np.ndarray:
    """1 / (float32 ULP) for each float64 exponent field; an exact 0 counts as 2**-149."""
    return np.ldexp(1.0, 23 - np.clip(np.arange(2048) - 1023, -126, 127))


def _ref64(ref: Expr, vname: str, x: np.ndarray, to=np.float64) -> np.ndarray:
    """The float64 reference at x (rounded to `to`: to float32, IEEE's expected value)."""
    with np.errstate(all="ignore"):
        return np.asarray(evaluate(ref, {vname: x}), dtype=np.float64).astype(to, copy=False)


def _check_chunk(fn, ref, vname, start, stop) -> dict:
    fill, reduce = _numba()
    bits = np.empty(stop - start, np.uint32)
    fill(start, bits)
    x = bits.view(np.float32)
    with np.errstate(all="ignore"):  # overflow to inf, NaN from NaN: what is checked
        y = np.asarray(fn(x))
    if y.dtype != np.float32 or y.shape != x.shape:
        raise ValueError(f"the function under test returned {y.dtype} {y.shape}; "
                         "verify needs float32 results, one per input")
    e = _ref64(ref, vname, x)
    border, border_err = np.empty(RECHECK_BUDGET, np.int64), np.empty(RECHECK_BUDGET)
    top_err, top_idx = np.full(TOP, -1.0), np.zeros(TOP, np.int64)
    total, cr, nb = reduce(y, e, e.view(np.uint64), _inv_units(), W, border, border_err,
                           top_err, top_idx)
    keep = top_err >= 0
    bi, ti = border[:min(nb, border.size)], top_idx[keep]
    return {"n": x.size, "sum": total, "cr": cr, "n_border": nb,
            "border": (x[bi], y[bi], border_err[:bi.size]),
            "top": (x[ti], y[ti], top_err[keep]), "full": bool(keep.all())}


def _combine(parts, ref, vname) -> dict:
    n, total = sum(p["n"] for p in parts), sum(p["sum"] for p in parts)
    cr = sum(p["cr"] for p in parts)  # float64's verdict; the oracle corrects it below
    tx, ty, terr = (np.concatenate(col) for col in zip(*(p["top"] for p in parts)))
    bx, by, berr = (np.concatenate(col) for col in zip(*(p["border"] for p in parts)))
    gmax = terr.max()
    near_max = (terr >= gmax - 2 * W) & (terr < 2.0 ** 31)
    # a chunk whose kept worst points are all near the max may have dropped others as bad
    exact_max = gmax >= 2.0 ** 31 or near_max.sum() <= RECHECK_BUDGET and not any(
        p["full"] and p["top"][2].min() >= gmax - 2 * W for p in parts)
    # the oracle decides the near-max points first, then the borderline ones
    rx, ry, rerr = (np.concatenate(c)[:RECHECK_BUDGET] for c in
                    ((tx[near_max], bx), (ty[near_max], by), (terr[near_max], berr)))
    keys, first = np.unique(rx.view(np.uint32), return_index=True)
    rx, ry, rerr = rx[first], ry[first], rerr[first]
    exact_err, exact_cr, ref_err = _recheck(ref, vname, rx, ry)
    total += float(np.sum(exact_err - rerr))
    cr += int(np.sum(exact_cr)) - int(np.sum(rerr <= 0.5))
    # the worst: the kept points with the oracle's errors where it was asked
    fixed = dict(zip(keys.tolist(), exact_err.tolist()))
    terr = np.array([fixed.pop(k, v) for k, v in zip(tx.view(np.uint32).tolist(), terr)])
    rest = np.isin(keys, list(fixed))  # rechecked, not kept: a binade may have doubled them
    tx, ty = np.concatenate([tx, rx[rest]]), np.concatenate([ty, ry[rest]])
    terr = np.concatenate([terr, exact_err[rest]])
    order = np.lexsort((tx, -terr))  # worst first; ties: the smaller input
    worst = [{"input": float(tx[i]), "hex": _hex(tx[i]), "output": float(ty[i]),
              "ulp": float(terr[i])} for i in order[:5]]
    top = order[0]
    undecided = sum(p["n_border"] for p in parts) - int(np.isin(keys, bx.view(np.uint32)).sum())
    return {"n": n, "max_ulp": float(terr[top]), "argmax": float(tx[top]),
            "argmax_hex": _hex(tx[top]), "mean_ulp": total / n, "correctly_rounded": cr / n,
            "worst": worst, "rechecked": int(rx.size), "undecided": undecided,
            "exact_max": bool(exact_max and not undecided), "reference_error": ref_err}


# --- float64: a sample -------------------------------------------------------------------

def _long_double(ref: Expr, vname: str):
    """The reference op computed in long double (a callable), or None: only for a single
    op of the variable whose NumPy function keeps long double, and only where long
    double is x87's 64-bit significand."""
    if np.finfo(np.longdouble).nmant < 63 or ref.op not in OPS or \
            ref.args != (var(vname, "float64"),) or OPS[ref.op].np_fn is None:
        return None
    fn = OPS[ref.op].np_fn
    try:
        with np.errstate(all="ignore"):
            probe = fn(np.array([0.5, 1.5], np.longdouble))
    except (TypeError, ValueError):
        return None
    return fn if getattr(probe, "dtype", None) == np.longdouble else None


def uniform_in(rng, lo: float, hi: float, n: int) -> np.ndarray:
    """n float64s uniform in [lo, hi], also where hi - lo overflows."""
    return rng.uniform(lo / 2, hi / 2, n) * 2


def sample_points(domain, n: int, seed: int = 0, dtype: str = "float64") -> np.ndarray:
    """n points of `domain`: the two ends, half uniform over its floats (every binade),
    half uniform in value."""
    lo, hi = map(float, domain)
    a, b = float_bounds(lo, hi, dtype)
    rng = np.random.default_rng(seed)
    keys = np.concatenate([[a, b], rng.integers(a, b, max(n // 2 - 2, 0), endpoint=True)])
    with np.errstate(over="ignore"):
        by_value = uniform_in(rng, lo, hi, n - keys.size).astype(dtype)
    x = np.concatenate([floats_of_keys(keys, dtype), by_value])
    return x[np.isfinite(x) & (x >= lo) & (x <= hi)]


def _ld_errors(y: np.ndarray, t: np.ndarray):
    """(errors in float64 ULPs, points the oracle must decide) of float64 results y
    against long double references t: as ulp_error_dd, plus flags for errors within W64
    of 1/2, references next to a power of two and at the overflow threshold."""
    big = float(np.finfo(np.float64).max)
    with np.errstate(all="ignore"):
        t64 = t.astype(np.float64)
        unit = ulp_of(np.clip(t64, -big, big), "float64")
        mant, _ = np.frexp(np.abs(t64))
        # t64 rounded up to a power of two: the truth is in the binade below (normal)
        below = (np.abs(t) < np.abs(t64)) & (np.abs(t64) > np.finfo(np.float64).tiny)
        unit = np.where((mant == 0.5) & below, unit / 2, unit)
        err = (np.abs(y.astype(np.longdouble) - t) / unit.astype(np.longdouble)).astype(np.float64)
        edge = np.abs(mant - 0.5) < 2.0 ** -50  # the truth may be in the other binade
        inf_y = np.isinf(y)
        beyond = np.abs(np.clip(y, -big, big).astype(np.longdouble) - t).astype(np.float64) / unit
        err = np.where(inf_y, np.where(t64 == y, 0.0, beyond + 1.0), err)
        err = np.where(np.isinf(t64) & ~inf_y, np.inf, err)
        # at the overflow threshold the long double's rounding to float64 may be the
        # wrong side of it
        near_overflow = np.abs(np.abs(t) - OVERFLOW64) <= W64 * 2.0 ** 971
        # 2: the error may be off by a factor 2 (binade) or 1 (overflow): it may change
        # the max; 1: within W64 of 1/2: it may change only the share correctly rounded
        flag = np.where((edge & (err >= 0.25)) | near_overflow, 2,
                        (np.abs(err - 0.5) <= W64).astype(int))
    ny, nt = np.isnan(y), np.isnan(t64)
    err = np.where(ny & nt, 0.0, np.where(ny ^ nt, 2.0 ** 64, err))
    return err, np.where(ny | nt, 0, flag)


def _ld_mpf(v) -> mp.mpf:
    """A long double's exact value."""
    mant, e = np.frexp(np.longdouble(v))      # mant * 2^64 is an integer (64-bit significand)
    return mp.mpf(int(np.ldexp(mant, 64))) * mp.mpf(2) ** (int(e) - 64)


def verify_sampled(fn, against, domain=None, samples: int | None = None, seed: int = 0,
                   threads: int | None = None, name: str | None = None,
                   chunk: int = 1 << 20) -> VerifyReport:
    """Check a float64 function (a Kernel or any vectorized callable from float64 arrays
    to float64 arrays) on a random sample of `domain` (see the module doc): `samples`
    points (default 2^24 with a long double reference, 2^15 with the oracle alone)."""
    began = time.perf_counter()
    label, ref, vname = reference(against)
    big = float(np.finfo(np.float64).max)
    lo, hi = (-big, big) if domain is None else map(float, domain)
    if len(domain or (0, 0)) != 2 or np.isnan(lo) or np.isnan(hi) or lo > hi:
        raise ValueError(f"domain is (lo, hi) with lo <= hi, got {domain!r}")
    lo, hi = max(lo, -big), min(hi, big)
    ld = _long_double(ref, vname)
    n = samples if samples is not None else (SAMPLES if ld is not None else ORACLE_SAMPLES)
    if n < 2:
        raise ValueError("samples must be at least 2")
    x = sample_points((lo, hi), n, seed)

    def run(start):   # the oracle's precision is process-wide: its chunks run serially
        xs = x[start:start + chunk]
        with np.errstate(all="ignore"):
            y = np.asarray(fn(xs))
        if y.dtype != np.float64 or y.shape != xs.shape:
            raise ValueError(f"the function under test returned {y.dtype} {y.shape}; "
                             "verify needs float64 results, one per input")
        if ld is None:
            t = oracle(ref, {vname: xs}, prec=128)
            with mp.workprec(128):
                err = np.array([_mp_error(c, v, "float64") for c, v in zip(y.tolist(), t)])
            return y, err, np.zeros(xs.size, int)
        with np.errstate(all="ignore"):
            t = ld(xs.astype(np.longdouble))
        return (y, *_ld_errors(y, t))
    with ThreadPoolExecutor(1 if ld is None else threads or os.cpu_count() or 1) as pool:
        parts = list(pool.map(run, range(0, x.size, chunk)))
    y, err, flag = (np.concatenate(c) for c in zip(*parts))
    # the oracle decides the points within 2*W64 of the max, then those whose error may
    # pass it, then those that may round the other way
    near_max = np.flatnonzero(err >= err.max() - 2 * W64) if ld is not None else \
        np.zeros(0, np.int64)
    may_pass = np.setdiff1d(np.flatnonzero(flag == 2), near_max)
    borderline = np.setdiff1d(np.flatnonzero(flag == 1), near_max)
    ask = np.concatenate([near_max, may_pass, borderline])[:RECHECK_BUDGET_F64]
    ref_err = 0.0
    if ask.size:
        truth = oracle(ref, {vname: x[ask]}, prec=128)
        with np.errstate(all="ignore"):
            t_ld = ld(x[ask].astype(np.longdouble)) if ld is not None else None
        cr_exact = []
        with mp.workprec(128):
            for j, (i, t) in enumerate(zip(ask.tolist(), truth)):
                err[i] = _mp_error(float(y[i]), t, "float64")
                r = round_mpf(t, "float64")
                cr_exact.append(y[i] == r or (y[i] != y[i] and r != r))
                if t_ld is not None and mp.isfinite(t) and np.isfinite(t_ld[j]):
                    # the long double reference's own error, in float64 ULPs
                    ref_err = max(ref_err, float(abs(_ld_mpf(t_ld[j]) - t) /
                                                 _mp_unit(t, "float64")))
    cr = err <= 0.5
    if ask.size:
        cr[ask] = cr_exact
    order = np.lexsort((x, -err))
    top = order[0]
    worst = [{"input": float(x[i]), "hex": _hex(x[i]), "output": float(y[i]),
              "ulp": float(err[i])} for i in order[:5]]
    undecided = int(near_max.size + may_pass.size + borderline.size - ask.size)
    ends = np.array([x.min(), x.max()])
    specials = _specials(fn, ref, vname, ends, "float64")
    return VerifyReport(
        function=label, kernel=name or getattr(fn, "__name__", repr(fn)),
        domain=(float(ends[0]), float(ends[1])), n=int(x.size), max_ulp=float(err[top]),
        argmax=float(x[top]), argmax_hex=_hex(x[top]), mean_ulp=float(np.mean(err)),
        correctly_rounded=float(np.mean(cr)), specials=specials, worst=worst,
        rechecked=int(ask.size), undecided=undecided,
        exact_max=bool(near_max.size + may_pass.size <= RECHECK_BUDGET_F64),
        reference_error=ref_err, dtype="float64", method="sampled",
        reference="long double" if ld is not None else "mpmath",
        seconds=round(time.perf_counter() - began, 3))


# --- the oracle ---------------------------------------------------------------------------

def _mp_unit(t, dtype: str = "float32"):
    """One ULP of `dtype` in the binade of the exact value t (an exact 0: the smallest
    subnormal)."""
    prec, emin, _ = FORMAT[dtype]
    a = min(abs(t), mp.mpf(float(np.finfo(dtype).max)))
    return mp.mpf(2) ** (max(mp.frexp(a)[1] - 1 if a else emin, emin) - (prec - 1))


def _mp_error(c: float, t, dtype: str = "float32") -> float:
    """ulp_error of `c` (a float of `dtype`) against the exact value t; engine.errors'
    ulp_error with mpf takes the binade of t rounded to float64, which may be the next
    one up."""
    if c != c or mp.isnan(t):
        return 0.0 if (c != c and mp.isnan(t)) else 2.0 ** BITS[dtype]
    extra = 0.0
    if np.isinf(c):
        if round_mpf(t, dtype) == c:
            return 0.0
        c, extra = math.copysign(float(np.finfo(dtype).max), c), 1.0
    if mp.isinf(t):
        return math.inf
    return float(abs(mp.mpf(c) - t) / _mp_unit(t, dtype)) + extra


def _recheck(ref, vname, xs, cs):
    """Exact errors and correct rounding at xs, and the largest error of the float64
    reference there (float32 ULPs)."""
    truth = oracle(ref, {vname: xs}, prec=128)
    errs, crs, ref_err = [], [], 0.0
    with mp.workprec(128):
        for c, e, t in zip(cs.tolist(), _ref64(ref, vname, xs).tolist(), truth):
            errs.append(_mp_error(c, t))
            r = round_mpf(t, "float32")
            crs.append(c == r or (c != c and r != r))
            if mp.isfinite(t) and math.isfinite(e):
                ref_err = max(ref_err, float(abs(mp.mpf(e) - t) / _mp_unit(t)))
    return np.array(errs, np.float64), np.array(crs, bool), ref_err


# --- special values -----------------------------------------------------------------------

def _specials(fn, ref, vname, ends, dtype: str = "float32") -> list:
    """IEEE inputs (NaN, +-inf, +-0) must give the float64 reference's value exactly (NaN
    for NaN; the sign of a zero where a zero goes in); the domain ends and the thresholds,
    inputs like any other, pass within one float of the correctly rounded value."""
    named = [("nan", np.nan), ("+inf", np.inf), ("-inf", -np.inf), ("+0", 0.0), ("-0", -0.0),
             ("domain lo", ends[0]), ("domain hi", ends[1]), *_thresholds(ref, vname, dtype)]
    x = np.array([v for _, v in named], dtype)
    want = _ref64(ref, vname, x, dtype)
    want[5:] = exact(ref, {vname: x[5:]}, dtype=dtype)
    with np.errstate(all="ignore"):
        got = np.asarray(fn(x), dtype=dtype)
    apart = ulps(got, want)
    out = []
    for i, (name, _) in enumerate(named):
        zero_sign = want[i] != 0 or x[i] != 0 or np.signbit(got[i]) == np.signbit(want[i])
        out.append({"name": name, "input": float(x[i]), "hex": _hex(x[i]),
                    "output": float(got[i]), "expected": float(want[i]), "ulps": int(apart[i]),
                    "passed": bool(apart[i] <= 1 if i >= 5 else apart[i] == 0 and zero_sign)})
    return out


def _thresholds(ref, vname, dtype: str = "float32") -> list:
    """Going out from +-1 (or +-2) to +-max, where the function overflows or underflows
    at the end: the first input whose true value rounds to inf (overflow), below the
    smallest normal (subnormal) or to 0. Bisection on the float64 reference, then the
    oracle's word."""
    big, tiny = float(np.finfo(dtype).max), float(np.finfo(dtype).tiny)

    def floats(k):
        return floats_of_keys(np.array([k]), dtype)

    def rd(k, by_oracle=False):
        x = floats(k)
        return exact(ref, {vname: x}, dtype=dtype)[0] if by_oracle else \
            _ref64(ref, vname, x, dtype)[0]

    def key(v):
        return int(float_keys(np.array([v], dtype))[0])

    found = []
    for side, s in (("x>0", 1.0), ("x<0", -1.0)):
        end = key(s * big)
        starts = [k for k in (key(s), key(2 * s)) if tiny <= abs(rd(k)) < np.inf]
        tests = [("overflow", np.isinf)] if np.isinf(rd(end)) else []
        if rd(end) == 0:
            tests += [("subnormal from", lambda v: abs(v) < tiny),
                      ("zero from", lambda v: v == 0)]
        for name, pred in tests if starts else ():
            a, b = starts[0], end   # pred(a) is false, pred(b) true
            while abs(b - a) > 1:
                m = (a + b) // 2
                a, b = (a, m) if pred(rd(m)) else (m, b)
            step = 1 if b > a else -1
            for _ in range(4):  # the float64 reference may be off by a float
                if not pred(rd(b, True)):
                    b += step
                elif pred(rd(b - step, True)):
                    b -= step
                else:
                    break
            found.append((f"{name} ({side})", float(floats(b)[0])))
    return found


def _hex(x) -> str:
    """A float32's hex text, without float64's trailing zeros: 0x1.62e43p+6."""
    mant, p, exp = float(x).hex().partition("p")
    return f"{mant.rstrip('0').rstrip('.')}{p}{exp}" if p else mant
