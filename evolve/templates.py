"""Range-reduction templates written in the IR: the search evolves a small core on a
reduced interval, and the whole program (reduction + core + reconstruction) is what is
scored and verified.

A Template turns x into named reduced values (float32 Exprs of x: the core's inputs and
auxiliaries such as the exponent k), and rebuilds the result from the core's value p.
Its `affine` says, in float64, how the result depends on p at each point
(y = a*p + b): constant fitting uses it to give the core its own target and weights.

- exp:  k = round(x/ln2); r = x - k*ln2 in two Cody-Waite steps with FMA, and rlo the
        rounding error of r (rlo), so a core may use exp(r + rlo) ~ p(r) + rlo*p(r). The result
        p * 2^k is built from exponent bits in two halves (each 2^j stays normal, so
        subnormal results round once). x is clamped first so k fits, and the clamp
        keeps NaN (comparisons with NaN are false).
- exp2: k = round(x); r = x - k (exact); same reconstruction.
- log, log2: x = m * 2^k with m in [sqrt(1/2), sqrt(2)) from the bits (subnormals are
        scaled by 2^23 first); the core approximates log1p(f) (or log2(1+f)) on
        f = m - 1, which is exact; y = k*ln2 + p with a two-part ln2. Zero, negative,
        infinite and NaN inputs are selected at the end.
- plain: no reduction; the core is the function itself on the domain (any unary op).

Float64 programs (TEMPLATES_F64) cannot compute inside in a wider type, so their
templates keep the leading terms exact and let the core supply only a small tail:
- exp:  the same Cody-Waite reduction in float64 (rlo included); the core q(r) ~
        (e^r - 1 - r)/r^2 and e^r = 1 + (r + (r^2 q + rlo)): only the last two
        additions round at the result's scale.
- exp2: k = round(x), r = x - k, then r*ln2 as a double-double (FMA) and exp's core.
- log, log2: the float64 exponent/mantissa split, s = f/(2 + f) and the core R(s) ~
        2 s^2/3 + 2 s^4/5 + ...: log1p(f) = f - (f^2/2 - s (f^2/2 + R)) (as fdlibm's
        e_log.c arranges it: the error of s only touches the small terms); log2 scales
        by 1/ln2 as a double-double and adds k by an exact two-sum.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import mpmath as mp
import numpy as np

from exprforge.engine.errors import ulp_of
from exprforge.engine.expr import Expr, const, make, var

F32_MAX = float(np.finfo(np.float32).max)
LN2_HI = 0.693145751953125          # 12 significant bits: k * LN2_HI is exact for |k| < 2^12
LN2_LO = 1.428606765330187e-06      # ln2 - LN2_HI, rounded to float32
LN2_HI_LOG = 0.693359375            # log's split (float32 ln2 = LN2_HI_LOG + LN2_LO_LOG)
LN2_LO_LOG = -2.12194440e-4
SQRT_HALF_BITS = 0x3F3504F3         # float32 bits of sqrt(1/2)
LN2_LO64 = 2.3190468138462996e-17   # ln2 - float64(ln2) (mpmath)


@dataclass(frozen=True)
class Template:
    name: str
    function: str                       # the op-table function the program approximates
    domain: tuple[float, float]         # float32 inputs where the result is finite and nonzero
    core_vars: tuple[str, ...]          # reduced values a core may use (the first is the main one)
    core_interval: tuple[float, float]  # range of the main core variable
    reduce: Callable[[Expr], dict]      # x -> {name: Expr}
    rebuild: Callable[[Expr, Expr, dict], Expr]   # (p, x, reduced) -> program
    affine: Callable[[np.ndarray, dict], tuple]   # (x, reduced values) -> (a, b), float64
    core_function: str                  # what the core approximates on core_interval (docs)
    relative: bool = True               # seed cores start from 1 (False: from 0)
    degrees: tuple[int, int] = (3, 8)   # seed polynomial degrees
    seeds: Callable | None = None       # degree -> seed cores (None: Horner polynomials)
    dense: tuple = ()                   # x intervals the training set samples densely
    core_dtype: str = "float32"         # float64: the program computes inside in float64
    max_size: int = 40                  # tree nodes a core may have
    extra_ops: tuple = ()               # primitives the core needs beyond the search's ops
    seams: Callable | None = None       # (lo, hi, rng) -> (x where the reduction switches,
                                        # spread in ULPs): the training set samples there
    core_fit: Callable | None = None    # reduced values -> (target, weight) of the core,
                                        # for results not affine in the core's value
    dtype: str = "float32"              # the program's argument and result

    def program(self, core: Expr, x: Expr | None = None) -> Expr:
        """The whole program: the core's variables replaced by the reduction."""
        x = x if x is not None else var("x", self.dtype)
        reduced = self.reduce(x)
        mapping = {var(n, self.core_dtype): reduced[n] for n in self.core_vars}
        return self.rebuild(core.subs(mapping), x, reduced)

    def reduced_values(self, x: np.ndarray) -> dict:
        """The reduced values at points of the template's dtype, computed exactly as the
        program does."""
        from exprforge.engine.evaluate import evaluate
        v = var("x", self.dtype)
        x = np.asarray(x, self.dtype)
        return {name: np.asarray(evaluate(e, {"x": x})) for name, e in self.reduce(v).items()}


@dataclass(frozen=True)
class PeriodicSeams:
    """k*step and (k + 1/2)*step: where round(x/step) changes and r is at its ends; within
    [-limit, limit] (whole-line domains: beyond it the function is flat or its sign
    alone). A class, not a
    closure, so a template pickles for process workers."""
    step: float
    limit: float = math.inf

    def __call__(self, lo, hi, rng):
        lo, hi = max(lo, -self.limit), min(hi, self.limit)
        k = np.arange(np.ceil(lo / self.step), np.floor(hi / self.step) + 1)
        centers = np.concatenate([(k + 0.5) * self.step, k * self.step])
        return rng.choice(centers, size=min(400, centers.size), replace=False), 64


def _log_seams(lo, hi, rng):
    """m near sqrt(2) (k changes) and near 1 (f ~ 0), in every binade, and x near 1."""
    k = rng.integers(-126, 128, size=400).astype(np.float64)
    base = np.where(rng.random(400) < 0.5, np.sqrt(2.0), 1.0) * 2.0 ** k
    return np.concatenate([base, np.ones(400)]), 2000


def _f(v) -> Expr:
    return const(float(np.float32(v)), "float32")


def _i(v: int) -> Expr:
    return const(int(v), "int32")


def _fma(a, b, c) -> Expr:
    return make("fma", [a, b, c])


def _clamp(x: Expr, lo: float, hi: float) -> Expr:
    # where(), not min/max: fmin/fmax would turn NaN into a bound
    return make("where", [x > _f(hi), _f(hi), make("where", [x < _f(lo), _f(lo), x])])


def _pow2(j: Expr) -> Expr:
    """2^j as float32 from exponent bits, for -126 <= j <= 127."""
    return make("bitcast", [make("shl", [j + _i(127), _i(23)])], "float32")


def _scale(p: Expr, k: Expr, dtype: str = "float32") -> Expr:
    """p * 2^k (float32: -151 <= k <= 129; float64: -1076 <= k <= 1024): two normal
    halves, so only the last multiply rounds (a subnormal result rounds once)."""
    ints, one, pow2 = (("int32", _i(1), _pow2) if dtype == "float32" else
                       ("int64", _l(1), _pow2_64))
    ki = make("cast", [k], ints)
    k1 = make("shr", [ki, one])
    return (p * pow2(k1)) * pow2(ki - k1)


def _exp_reduce(x: Expr, dtype: str = "float32") -> dict:
    """Cody-Waite: k = round(x/ln2), r = x - k*ln2 in two FMA steps (the first exact),
    rlo what rounding r lost (r1 - r is exact, or off by ~1e-8 ULP where |r| << |k lo|)."""
    lit, clamp, (lo, hi), (ln2_hi, ln2_lo) = (
        (_f, _clamp, (-104.0, 89.0), (LN2_HI, LN2_LO)) if dtype == "float32" else
        (_d, _clamp64, (-746.0, 710.0), (LN2_HI64, LN2_LO64_CW)))
    xc = clamp(x, lo, hi)
    k = make("round", [xc * lit(1 / math.log(2))])
    r1 = _fma(k, lit(-ln2_hi), xc)
    r = _fma(k, lit(-ln2_lo), r1)
    return {"r": r, "rlo": _fma(k, lit(-ln2_lo), r1 - r), "k": k}


def _exp2_reduce(x: Expr) -> dict:
    xc = _clamp(x, -151.0, 129.0)
    k = make("round", [xc])
    return {"r": xc - k, "k": k}


def _scale_affine(x, values):
    return np.ldexp(1.0, values["k"].astype(np.int64)), 0.0


def _exp_rebuild(p, x, reduced):
    return _scale(p, reduced["k"])


def _log_split(x: Expr) -> tuple[Expr, Expr]:
    """x = (1 + f) * 2^k with 1 + f in [sqrt(1/2), sqrt(2)), from the bits (subnormals
    scaled by 2^mantissa-bits first): (f, k as a float of x's dtype); f is exact."""
    if x.dtype == "float32":
        c, n, bits_of, tiny, mant, half = _f, _i, "int32", 2.0 ** -126, 23, SQRT_HALF_BITS
    else:
        c, n, bits_of, tiny, mant, half = _d, _l, "int64", 2.0 ** -1022, 52, SQRT_HALF_BITS64
    small = x < c(tiny)
    xs = make("where", [small, x * c(2.0 ** mant), x])
    bits = make("bitcast", [xs], bits_of)
    k = make("shr", [bits - n(half), n(mant)])
    m = make("bitcast", [bits - make("shl", [k, n(mant)])], x.dtype)
    kf = make("cast", [k - make("where", [small, n(mant), n(0)])], x.dtype)
    return m - c(1.0), kf


def _log_reduce(x: Expr) -> dict:
    f, k = _log_split(x)
    return {"f": f, "k": k}


def _log_specials(y: Expr, x: Expr) -> Expr:
    """y where x is finite and positive; IEEE's -inf at 0, inf at inf, NaN below 0."""
    c = _f if x.dtype == "float32" else _d
    finite_positive = (x > c(0.0)) & (x < c(math.inf))
    special = make("where", [x.eq(c(0.0)), c(-math.inf),
                             make("where", [x.eq(c(math.inf)), c(math.inf), c(math.nan)])])
    return make("where", [finite_positive, y, special])


def _log_rebuild(p, x, reduced):
    k = reduced["k"]
    return _log_specials(_fma(k, _f(LN2_HI_LOG), _fma(k, _f(LN2_LO_LOG), p)), x)


def _log2_reduce(x: Expr) -> dict:
    """log's reduction, then f and k widened to float64 (exactly)."""
    reduced = _log_reduce(x)
    return {n: make("cast", [e], "float64") for n, e in reduced.items()}


def _log2_rebuild(p, x, reduced):
    # in float64, k + p rounds once (in float32, k + p and p itself each round: 1.2 ULP)
    return _log_specials(make("cast", [reduced["k"] + p], "float32"), x)


def _log_affine(x, values):
    return 1.0, values["k"].astype(np.float64) * math.log(2)


def _log2_affine(x, values):
    return 1.0, values["k"].astype(np.float64)


def _plain_reduce(x: Expr) -> dict:
    return {"x": x}


def _plain_rebuild(p, x, reduced):
    return p


def _plain_affine(x, values):
    return 1.0, 0.0


_SQRT2 = math.sqrt(2)
TEMPLATES = {
    "exp": Template("exp", "exp", (-103.97208, 88.72283172607422), ("r", "rlo"),
                    (-0.5 * math.log(2), 0.5 * math.log(2)), _exp_reduce, _exp_rebuild,
                    _scale_affine, "exp(r + rlo)", seams=PeriodicSeams(math.log(2))),
    "exp2": Template("exp2", "exp2", (-150.0 + 2.0 ** -16, 128.0 - 2.0 ** -17), ("r",), (-0.5, 0.5),
                     _exp2_reduce, _exp_rebuild, _scale_affine, "2^r", seams=PeriodicSeams(1.0)),
    "log": Template("log", "log", (2.0 ** -149, F32_MAX), ("f",),
                    (1 / _SQRT2 - 1, _SQRT2 - 1), _log_reduce, _log_rebuild, _log_affine,
                    "log1p(f)", relative=False, degrees=(5, 12), seams=_log_seams),
    "log2": Template("log2", "log2", (2.0 ** -149, F32_MAX), ("f",),
                     (1 / _SQRT2 - 1, _SQRT2 - 1), _log2_reduce, _log2_rebuild, _log2_affine,
                     "log2(1 + f) (float64)", relative=False, degrees=(5, 11),
                     core_dtype="float64", seams=_log_seams),
}


def _horner(t: Expr, coeffs, dtype: str) -> Expr:
    p = const(float(coeffs[-1]), dtype)
    for c in reversed(coeffs[:-1]):
        p = make("fma", [p, t, const(float(c), dtype)])
    return p


def _erf_seeds(degree: int) -> list[Expr]:
    """where(a < 2, a*P(u), Q(w)): P of degree+3 for erf(a)/a in u = a^2/2 - 1, Q of
    degree+5 for erf in w = a - 3 (placeholder coefficients, all distinct). u and w
    lie in [-1, 1], where monomials are well conditioned for the fit and Horner's rule
    loses nothing; in a itself a degree-14 polynomial on [2, 4] cancels to ~1e-8."""
    a, u, w = (var(n, "float64") for n in ("a", "u", "w"))
    p = _horner(u, [1.1 - 0.01 * i for i in range(degree + 4)], "float64")
    q = _horner(w, [0.9 - 0.01 * i for i in range(degree + 6)], "float64")
    return [make("where", [a < _d(ERF_SPLIT), a * p, q])]


def _erf_reduce(x: Expr) -> dict:
    a = _clamp64(abs(make("cast", [x], "float64")), 0.0, 4.0)   # erf(4) rounds to 1
    return {"a": a, "u": a * a * _d(0.5) - _d(1.0), "w": a - _d(3.0)}


def _erf_seams(lo, hi, rng):
    """Both sides of the split between the two pieces."""
    return np.array([-ERF_SPLIT, ERF_SPLIT]).repeat(250), 1 << 16


def _erf_fit(values):
    """The core's target erf(a) of the clamped a (for |x| > 4 the program's erf(4) rounds
    to 1 as erf(x) does; fitting those rows to erf(x) = 1 would ask the core for two
    values at a = 4), weighted in float32 ULPs."""
    from scipy.special import erf
    target = erf(values["a"].astype(np.float64))   # a few float64 ULPs: ~1e-8 float32 ULP
    return target, 1.0 / ulp_of(target, "float32")


def _erf_rebuild(p, x, reduced):
    return make("cast", [make("copysign", [p, make("cast", [x], "float64")])], "float32")


def _sign_affine(x, values):
    return np.sign(x).astype(np.float64), 0.0


# --- float64 inside: sigmoid and tanh ----------------------------------------------------
# A float32 result needs ~2^-26 relative accuracy before its one rounding. Computed in
# float32, 1/(1 + exp(-x)) or 1 - 2/(exp(2a) + 1) add up several roundings and the
# error of exp itself (each ~0.5 ULP); in float64 those are 2^-53 and only the core's
# approximation error and the final rounding remain. x (float32) widens exactly, so
# clamping, 2a and the Cody-Waite reduction are exact or nearly so.

def _d(v) -> Expr:
    return const(float(v), "float64")


def _pow2_64(k: Expr) -> Expr:
    """2^k as float64 from exponent bits, for -1022 <= k <= 1023."""
    ki = make("cast", [k], "int64")
    return make("bitcast", [make("shl", [ki + const(1023, "int64"), const(52, "int64")])],
                "float64")


def _reduce64(z: Expr) -> dict:
    """z = k*ln2 + r in float64, |r| <= ln2/2 (r exact to ~2^-60 relative)."""
    k = make("round", [z * _d(1 / math.log(2))])
    r = _fma(k, _d(-LN2_LO64), _fma(k, _d(-math.log(2)), z))
    return {"r": r, "k": k}


def _sigmoid_reduce(x: Expr) -> dict:
    z = _clamp64(-make("cast", [x], "float64"), -120.0, 120.0)   # e^-120: below float32's range
    return _reduce64(z)


def _sigmoid_rebuild(p, x, reduced):
    e = p * _pow2_64(reduced["k"])                               # exp(-x)
    return make("cast", [_d(1.0) / (_d(1.0) + e)], "float32")


def _tanh_reduce(x: Expr) -> dict:
    a = _clamp64(abs(make("cast", [x], "float64")), 0.0, 10.0)  # tanh(10) rounds to 1
    return _reduce64(a + a)


def _tanh_rebuild(p, x, reduced):
    s = _pow2_64(reduced["k"])
    em1 = _fma(s, p, s - _d(1.0))                                # expm1(2a) = 2^k q + 2^k - 1
    y = em1 / (em1 + _d(2.0))
    return make("cast", [make("copysign", [y, make("cast", [x], "float64")])], "float32")


def _clamp64(x: Expr, lo: float, hi: float) -> Expr:
    return make("where", [x > _d(hi), _d(hi), make("where", [x < _d(lo), _d(lo), x])])


@dataclass(frozen=True)
class RelativeFit:
    """The core's target fn(r), weighted relatively (a class: templates must pickle)."""
    fn: Callable

    def __call__(self, values):
        r = values["r"].astype(np.float64)
        target = self.fn(r)
        with np.errstate(divide="ignore"):
            return target, np.where(target != 0, 1.0 / np.abs(target), 0.0)


def _exp2_64_reduce(x: Expr) -> dict:
    xd = _clamp64(make("cast", [x], "float64"), -152.0, 130.0)
    k = make("round", [xd])
    return {"r": xd - k, "k": k}                                  # exact


def _exp2_64_rebuild(p, x, reduced):
    return make("cast", [p * _pow2_64(reduced["k"])], "float32")  # one rounding, even subnormal


ERF_SPLIT = 2.0
TEMPLATES["erf"] = Template(
    "erf", "erf", (-F32_MAX, F32_MAX), ("a", "u", "w"), (0.0, 4.0), _erf_reduce, _erf_rebuild,
    _sign_affine, "erf(a), a in [0, 4] (float64)", degrees=(3, 12), seeds=_erf_seeds,
    core_fit=_erf_fit, seams=_erf_seams,
    dense=((-4.0, 4.0), (-1e-3, 1e-3)), core_dtype="float64", max_size=96,
    extra_ops=("where", "lt"))
TEMPLATES["exp2_64"] = Template(
    "exp2_64", "exp2", (-150.0 + 2.0 ** -16, 128.0 - 2.0 ** -17), ("r",), (-0.5, 0.5),
    _exp2_64_reduce, _exp2_64_rebuild, None, "2^r (float64)", degrees=(5, 10),
    core_dtype="float64", core_fit=RelativeFit(np.exp2), seams=PeriodicSeams(1.0))
TEMPLATES["sigmoid"] = Template(
    "sigmoid", "sigmoid", (-F32_MAX, F32_MAX), ("r",), (-0.5 * math.log(2), 0.5 * math.log(2)),
    _sigmoid_reduce, _sigmoid_rebuild, None, "exp(r) (float64)", degrees=(3, 7),
    dense=((-20.0, 20.0),), core_dtype="float64", core_fit=RelativeFit(np.exp))
TEMPLATES["tanh"] = Template(
    "tanh", "tanh", (-F32_MAX, F32_MAX), ("r",), (-0.5 * math.log(2), 0.5 * math.log(2)),
    _tanh_reduce, _tanh_rebuild, None, "expm1(r) (float64)", relative=False, degrees=(3, 7),
    dense=((-10.0, 10.0), (-0.01, 0.01)), core_dtype="float64", core_fit=RelativeFit(np.expm1))


def plain(function: str, domain: tuple[float, float], dtype: str = "float32") -> Template:
    """No reduction: the core approximates `function` on `domain` directly."""
    return Template("plain", function, tuple(domain), ("x",), tuple(domain), _plain_reduce,
                    _plain_rebuild, _plain_affine, f"{function}(x)", relative=False,
                    core_dtype=dtype, dtype=dtype)


def template_for(function: str, domain=None, name: str | None = None,
                 dtype: str = "float32") -> Template:
    """The template for `function` in `dtype`: its range reduction when one is written
    (and the domain, if given, lies inside the template's), else the plain template."""
    templates = {"float32": TEMPLATES, "float64": TEMPLATES_F64}.get(dtype)
    if templates is None:
        raise ValueError(f"approximations are float32 or float64, not {dtype}")
    if name == "plain" or (name is None and function not in templates):
        if domain is None:
            raise ValueError(f"{function} has no {dtype} range-reduction template: give a "
                             "domain")
        return plain(str(function), domain, dtype)
    t = templates.get(name or function)
    if t is None:
        raise ValueError(f"no {dtype} template {name!r}; templates: plain, "
                         f"{', '.join(templates)}")
    if t.function != function:
        raise ValueError(f"template {t.name} computes {t.function}, not {function}")
    if domain is not None and not (t.domain[0] <= domain[0] <= domain[1] <= t.domain[1]):
        return plain(function, domain, dtype) if name is None else _outside(t, domain)
    return t


def _outside(t: Template, domain):
    raise ValueError(f"domain {domain} is outside template {t.name}'s {t.domain}")


# --- float64 programs ---------------------------------------------------------------------

LN2_HI64 = float.fromhex("0x1.62e42ff000000p-1")   # ln2 to 2^-32: k * LN2_HI64 is exact
LN2_LO64_CW = -4.2009150726810846e-11                # ln2 - LN2_HI64 (mpmath)
LN2_64 = math.log(2)                                 # 0x1.62e42fefa39efp-1
INV_LN2_HI = 1 / math.log(2)                         # 0x1.71547652b82fep+0
INV_LN2_LO = 2.0355273740931033e-17                  # 1/ln2 - INV_LN2_HI (mpmath)
SQRT_HALF_BITS64 = 0x3FE6A09E667F3BCD               # float64 bits of sqrt(1/2)
F64_MAX = float(np.finfo(np.float64).max)


def _l(v: int) -> Expr:
    return const(int(v), "int64")


def _exp_f64_reduce(x: Expr) -> dict:
    return _exp_reduce(x, "float64")


def _exp2_f64_reduce(x: Expr) -> dict:
    xc = _clamp64(x, -1076.0, 1025.0)
    k = make("round", [xc])
    t = xc - k                               # exact
    r = t * _d(LN2_64)
    rlo = _fma(t, _d(LN2_64), -r) + t * _d(LN2_LO64)   # t*ln2 - r, to ~2^-106
    return {"r": r, "rlo": rlo, "k": k}


def _exp_f64_rebuild(q, x, reduced):
    r = reduced["r"]
    return _scale(_d(1.0) + (r + _fma(r * r, q, reduced["rlo"])), reduced["k"], "float64")


def _exp_f64_fit(values):
    """The core's target (e^r - 1 - r)/r^2 in mpmath, weighted so that an error of 1 in
    the core counts r^2 / ulp(e^r) float64 ULPs."""
    r = values["r"].astype(np.float64)
    with mp.workprec(120):
        target = np.array([float((mp.expm1(v) - v) / (v * v)) if v else 0.5
                           for v in map(mp.mpf, r.tolist())])
    return target, r * r / ulp_of(np.exp(r), "float64")


def _exp_f64_seeds(degree: int) -> list[Expr]:
    r = var("r", "float64")
    return [_horner(r, [(1.0 + 2.0 ** -10 * i) / math.factorial(i + 2)
                        for i in range(degree - 1)], "float64")]


def _log_f64_reduce(x: Expr) -> dict:
    f, k = _log_split(x)
    return {"s": f / (_d(2.0) + f), "f": f, "k": k}


def _log1p_pieces(R: Expr, reduced: dict) -> tuple[Expr, Expr]:
    """log1p(f) = f + lo, lo = -(f^2/2 - s (f^2/2 + R)) (f exact, lo small)."""
    f, s = reduced["f"], reduced["s"]
    hfsq = _d(0.5) * f * f
    return f, -(hfsq - s * (hfsq + R))


def _log_f64_rebuild(R, x, reduced):
    f, lo = _log1p_pieces(R, reduced)
    k = reduced["k"]
    # k*ln2_hi is exact; the rest is added to it last (fdlibm's order)
    return _log_specials(k * _d(LN2_HI64) + ((lo + k * _d(LN2_LO64_CW)) + f), x)


def _log2_f64_rebuild(R, x, reduced):
    f, lo = _log1p_pieces(R, reduced)
    k = reduced["k"]
    ph = f * _d(INV_LN2_HI)
    pl = _fma(f, _d(INV_LN2_HI), -ph)        # exact: f/ln2 = ph + pl + f*INV_LN2_LO
    hi = k + ph                              # two-sum (|k| >= 1 > |ph| or k = 0)
    err = (k - hi) + ph
    small = err + (pl + (f * _d(INV_LN2_LO) + lo * _d(INV_LN2_HI)))
    return _log_specials(hi + small, x)


def _log_f64_target(values):
    """R's target f - (f - log1p(f))/s for the computed s, in mpmath (an error of 1 in R
    moves log1p(f) by s)."""
    f, s = values["f"].astype(np.float64), values["s"].astype(np.float64)
    with mp.workprec(120):
        target = np.array([float(fv - (fv - mp.log1p(fv)) / sv) if sv else 0.0
                           for fv, sv in zip(map(mp.mpf, f.tolist()), map(mp.mpf, s.tolist()))])
    return target, f, s, values["k"].astype(np.float64)


def _log_f64_fit(values):
    target, f, s, k = _log_f64_target(values)
    return target, np.abs(s) / ulp_of(k * math.log(2) + np.log1p(f), "float64")


def _log2_f64_fit(values):
    target, f, s, k = _log_f64_target(values)
    return target, np.abs(s) / math.log(2) / ulp_of(k + np.log2(1 + f), "float64")


def _log64_seams(lo, hi, rng):
    """log's seams in float64's binades."""
    k = rng.integers(-1022, 1024, size=400).astype(np.float64)
    base = np.where(rng.random(400) < 0.5, np.sqrt(2.0), 1.0) * 2.0 ** k
    return np.concatenate([base, np.ones(400)]), 2000


def _log_f64_seeds(degree: int) -> list[Expr]:
    """R(s) = z P(z), z = s^2, P of `degree` coefficients near 2/3, 2/5, ... (distinct)."""
    s = var("s", "float64")
    z = s * s
    return [z * _horner(z, [2.0 / (2 * i + 3) * (1 + 2.0 ** -12 * i) for i in range(degree)],
                        "float64")]


def _sigmoid_f64_reduce(x: Expr) -> dict:
    """exp's reduction of -|x| (<= 0): e = exp(-|x|) is in (0, 1]; x itself for the fit."""
    return {**_exp_reduce(-abs(x), "float64"), "x": x}


def _sigmoid_f64_fit(values):
    """exp's core target; weighted by sigmoid's ULPs per unit of the core: the core moves
    e = 2^k e^r by 2^k r^2, and sigmoid by that over (1 + e)^2."""
    target, _ = _exp_f64_fit(values)
    r, k, x = (values[n].astype(np.float64) for n in ("r", "k", "x"))
    e = np.ldexp(np.exp(r), k.astype(int))
    y = np.where(x < 0, e, 1.0) / (1 + e)
    return target, np.ldexp(r * r, k.astype(int)) / (1 + e) ** 2 / ulp_of(y, "float64")


def _two_sum_fast(a: Expr, b: Expr) -> tuple[Expr, Expr]:
    """(s, err) with s + err = a + b exactly, for |a| >= |b| (Dekker)."""
    s = a + b
    return s, (a - s) + b


def _exp_dd(q, reduced) -> tuple[Expr, Expr, Expr, Expr]:
    """t = e^r - 1 = r + (r^2 q + rlo) and e^r = 1 + t, each as a double-double:
    (t, t_lo, big, lo) (|r| >= |r^2 q + rlo|, |t| < 1)."""
    r = reduced["r"]
    t, t_lo = _two_sum_fast(r, _fma(r * r, q, reduced["rlo"]))
    big, big_lo = _two_sum_fast(_d(1.0), t)
    return t, t_lo, big, big_lo + t_lo


def _over_one_plus_exp(n, n_lo, big, lo, k) -> Expr:
    """(n + n_lo) / (1 + e), e = 2^k (big + lo) <= 1 carried as a double-double, divided
    with one FMA correction: only this last division rounds at the result's scale."""
    e, e_lo = _scale(big, k, "float64"), _scale(lo, k, "float64")
    d, d_lo = _two_sum_fast(_d(1.0), e)                              # 1 + e, e <= 1
    d_lo = d_lo + e_lo
    y = n / d
    rem = _fma(-y, d, n) + (n_lo - y * d_lo)                        # n + n_lo - y (d + d_lo)
    return y + rem / d


def _sigmoid_f64_rebuild(q, x, reduced):
    """sigmoid = N / (1 + e), e = exp(-|x|) = 2^k e^r: N = 1 for x >= 0; for x < 0,
    N = e^r (unscaled: 2^k times its low word would drop into the subnormals) and the
    quotient is scaled by 2^k once at the end."""
    _, _, big, lo = _exp_dd(q, reduced)
    k, neg = reduced["k"], x < _d(0.0)
    n, n_lo = make("where", [neg, big, _d(1.0)]), make("where", [neg, lo, _d(0.0)])
    y = _over_one_plus_exp(n, n_lo, big, lo, k)
    return make("where", [neg, _scale(y, k, "float64"), y])


def _tanh_f64_reduce(x: Expr) -> dict:
    """exp's reduction of -2|x| (<= 0, exact doubling): e = exp(-2|x|) in (0, 1]."""
    a = abs(x)
    return {**_exp_reduce(-(a + a), "float64"), "x": x}


def _tanh_f64_rebuild(q, x, reduced):
    """tanh|x| = (1 - e) / (1 + e), e = exp(-2|x|) = 2^k (1 + t) with t = expm1(r) a
    double-double: 1 - e = (1 - 2^k) - 2^k t keeps its relative accuracy as x -> 0
    (where 1 - e itself would cancel), then the division, then the sign."""
    t, t_lo, big, lo = _exp_dd(q, reduced)
    k = reduced["k"]
    p2 = _scale(_d(1.0), k, "float64")                               # 2^k, k <= 0
    a, a_lo = _two_sum_fast(_d(1.0), -p2)                            # 1 - 2^k (k < -53: inexact)
    n, n_lo = _two_sum_fast(a, -(p2 * t))                            # |1 - 2^k| >= |2^k t|
    n_lo = n_lo + (a_lo - p2 * t_lo)
    return make("copysign", [_over_one_plus_exp(n, n_lo, big, lo, k), x])


def _tanh_f64_fit(values):
    """exp's core target; weighted by tanh's ULPs per unit of the core: the core moves e
    by 2^k r^2, and (1 - e)/(1 + e) by twice that over (1 + e)^2."""
    target, _ = _exp_f64_fit(values)
    r, k = (values[n].astype(np.float64) for n in ("r", "k"))
    e = np.ldexp(np.exp(r), k.astype(int))
    y = np.abs(np.tanh(values["x"].astype(np.float64)))
    return target, 2 * np.ldexp(r * r, k.astype(int)) / (1 + e) ** 2 / ulp_of(y, "float64")


_EXP_LO64 = float.fromhex("-0x1.74910d52d3051p+9")   # below it exp(x) rounds to 0 (mpmath)
_EXP_HI64 = float.fromhex("0x1.62e42fefa39efp+9")    # above it exp(x) rounds to inf
_F64 = dict(core_dtype="float64", dtype="float64")
TEMPLATES_F64 = {
    "exp": Template("exp", "exp", (_EXP_LO64, _EXP_HI64), ("r",),
                    (-0.5 * math.log(2), 0.5 * math.log(2)), _exp_f64_reduce, _exp_f64_rebuild,
                    None, "(e^r - 1 - r)/r^2", degrees=(9, 12), seeds=_exp_f64_seeds,
                    core_fit=_exp_f64_fit, seams=PeriodicSeams(math.log(2)), **_F64),
    "exp2": Template("exp2", "exp2", (float(np.nextafter(-1075.0, 0)),
                                      float(np.nextafter(1024.0, 0))), ("r",),
                     (-0.5 * math.log(2), 0.5 * math.log(2)), _exp2_f64_reduce,
                     _exp_f64_rebuild, None, "(e^r - 1 - r)/r^2, r = t ln2",
                     degrees=(9, 12), seeds=_exp_f64_seeds, core_fit=_exp_f64_fit,
                     seams=PeriodicSeams(1.0), **_F64),
    "sigmoid": Template("sigmoid", "sigmoid", (-F64_MAX, F64_MAX), ("r",),
                        (-0.5 * math.log(2), 0.5 * math.log(2)), _sigmoid_f64_reduce,
                        _sigmoid_f64_rebuild, None, "(e^r - 1 - r)/r^2 of exp(-|x|)",
                        degrees=(9, 12), seeds=_exp_f64_seeds, core_fit=_sigmoid_f64_fit,
                        dense=((-40.0, 40.0), (-1.0, 1.0)),
                        seams=PeriodicSeams(math.log(2), 746.0), **_F64),
    "tanh": Template("tanh", "tanh", (-F64_MAX, F64_MAX), ("r",),
                     (-0.5 * math.log(2), 0.5 * math.log(2)), _tanh_f64_reduce,
                     _tanh_f64_rebuild, None, "(e^r - 1 - r)/r^2 of exp(-2|x|)",
                     degrees=(9, 12), seeds=_exp_f64_seeds, core_fit=_tanh_f64_fit,
                     dense=((-20.0, 20.0), (-1e-3, 1e-3)),
                     seams=PeriodicSeams(math.log(2) / 2, 20.0), **_F64),
    "log": Template("log", "log", (5e-324, F64_MAX), ("s",), (-0.1716, 0.1716),
                    _log_f64_reduce, _log_f64_rebuild, None, "R(s), log1p(f) = f - s(f - R)",
                    degrees=(5, 8), seeds=_log_f64_seeds, core_fit=_log_f64_fit,
                    seams=_log64_seams, **_F64),
    "log2": Template("log2", "log2", (5e-324, F64_MAX), ("s",), (-0.1716, 0.1716),
                     _log_f64_reduce, _log2_f64_rebuild, None, "R(s), as log's",
                     degrees=(5, 8), seeds=_log_f64_seeds, core_fit=_log2_f64_fit,
                     seams=_log64_seams, **_F64),
}
