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

from exprforge.engine.errors import _bounds32, _floats32, _key32, ulps
from exprforge.engine.evaluate import evaluate, exact, oracle, prepare, round_mpf
from exprforge.engine.expr import Expr, make, var
from exprforge.engine.ops import OPS
from exprforge.engine.parse import parse

W = 1e-6                  # bound on |float64 error - exact error|, in float32 ULPs
TOP = 16                  # worst points each chunk keeps
RECHECK_BUDGET = 1 << 15  # oracle calls at most (20-170 us each)
MAX32 = float(np.finfo(np.float32).max)
TINY32 = float(np.finfo(np.float32).tiny)
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
        obj = load(obj)  # a stored name (LookupError when there is none)
    elif isinstance(obj, (str, Expr)):
        obj = compile_kernel(obj, "llvm")
    if not isinstance(obj, Kernel) or obj.target not in ("llvm", "numba"):
        raise ValueError("verify takes an llvm or numba Kernel, an Expr, text or a stored "
                         f"kernel's name, not {obj!r}")
    params = obj.plan.params
    if len(params) != 1 or params[0][1] != "float32" or obj.dtype != "float32":
        sig = ", ".join(f"{n}: {d}" for n, d in params)
        raise ValueError("verify needs a kernel of one float32 argument returning float32; "
                         f"this one is ({sig}) -> {obj.dtype}")
    return obj


def verify(kernel_or_expr, against, domain=None, dtype: str = "float32", chunk: int = 1 << 22,
           threads: int | None = None) -> VerifyReport:
    """Check a float32 kernel (a Kernel, an Expr or text compiled for llvm, or a stored
    kernel's name) on every float32 in `domain` = (lo, hi) (None: every finite float32)
    against `against` (a unary op's name or an Expr of one variable); see the module doc."""
    if dtype != "float32":
        raise ValueError(f"verify checks float32 kernels, not {dtype}")
    kernel = _kernel_of(kernel_or_expr)
    return verify_function(kernel, against, domain, chunk, threads, name=str(kernel.expr))


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


# --- the oracle ---------------------------------------------------------------------------

def _mp_unit(t):
    """One float32 ULP in the binade of the exact value t (an exact 0: 2**-149)."""
    a = min(abs(t), mp.mpf(MAX32))
    return mp.mpf(2) ** (max(mp.frexp(a)[1] - 1 if a else -126, -126) - 23)


def _mp_error(c: float, t) -> float:
    """ulp_error of float32 `c` against the exact value t; engine.errors.ulp_error with
    mpf takes the binade of t rounded to float64, which may be the next one up."""
    if c != c or mp.isnan(t):
        return 0.0 if (c != c and mp.isnan(t)) else 2.0 ** 32
    extra = 0.0
    if np.isinf(c):
        if round_mpf(t, "float32") == c:
            return 0.0
        c, extra = math.copysign(MAX32, c), 1.0
    if mp.isinf(t):
        return math.inf
    return float(abs(mp.mpf(c) - t) / _mp_unit(t)) + extra


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

def _specials(fn, ref, vname, ends) -> list:
    """IEEE inputs (NaN, +-inf, +-0) must give the float64 reference's value exactly (NaN
    for NaN; the sign of a zero where a zero goes in); the domain ends and the thresholds,
    inputs like any other, pass within one float of the correctly rounded value."""
    named = [("nan", np.nan), ("+inf", np.inf), ("-inf", -np.inf), ("+0", 0.0), ("-0", -0.0),
             ("domain lo", ends[0]), ("domain hi", ends[1]), *_thresholds(ref, vname)]
    x = np.array([v for _, v in named], np.float32)
    want = _ref64(ref, vname, x, np.float32)
    want[5:] = exact(ref, {vname: x[5:]}, dtype="float32")
    with np.errstate(all="ignore"):
        got = np.asarray(fn(x), dtype=np.float32)
    apart = ulps(got, want)
    out = []
    for i, (name, _) in enumerate(named):
        zero_sign = want[i] != 0 or x[i] != 0 or np.signbit(got[i]) == np.signbit(want[i])
        out.append({"name": name, "input": float(x[i]), "hex": _hex(x[i]),
                    "output": float(got[i]), "expected": float(want[i]), "ulps": int(apart[i]),
                    "passed": bool(apart[i] <= 1 if i >= 5 else apart[i] == 0 and zero_sign)})
    return out


def _thresholds(ref, vname) -> list:
    """Going out from +-1 (or +-2) to +-max, where the function overflows or underflows
    at the end: the first input whose true value rounds to inf (overflow), below 2**-126
    (subnormal) or to 0. Bisection on the float64 reference, then the oracle's word."""
    def r32(k, by_oracle=False):
        x = _floats32(np.array([k]))
        return exact(ref, {vname: x}, dtype="float32")[0] if by_oracle else \
            _ref64(ref, vname, x, np.float32)[0]

    found = []
    for side, s in (("x>0", 1.0), ("x<0", -1.0)):
        end = _key32(s * MAX32)
        starts = [k for k in (_key32(s), _key32(2 * s)) if TINY32 <= abs(r32(k)) < np.inf]
        tests = [("overflow", np.isinf)] if np.isinf(r32(end)) else []
        if r32(end) == 0:
            tests += [("subnormal from", lambda v: abs(v) < TINY32),
                      ("zero from", lambda v: v == 0)]
        for name, pred in tests if starts else ():
            a, b = starts[0], end   # pred(a) is false, pred(b) true
            while abs(b - a) > 1:
                m = (a + b) // 2
                a, b = (a, m) if pred(r32(m)) else (m, b)
            step = 1 if b > a else -1
            for _ in range(4):  # double rounding through float64 may be off by a float
                if not pred(r32(b, True)):
                    b += step
                elif pred(r32(b - step, True)):
                    b -= step
                else:
                    break
            found.append((f"{name} ({side})", float(_floats32(np.array([b]))[0])))
    return found


def _hex(x) -> str:
    """A float32's hex text, without float64's trailing zeros: 0x1.62e43p+6."""
    mant, p, exp = float(x).hex().partition("p")
    return f"{mant.rstrip('0').rstrip('.')}{p}{exp}" if p else mant
