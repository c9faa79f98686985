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
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

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

    def program(self, core: Expr, x: Expr | None = None) -> Expr:
        """The whole float32 program: the core's variables replaced by the reduction."""
        x = x if x is not None else var("x", "float32")
        reduced = self.reduce(x)
        mapping = {var(n, self.core_dtype): reduced[n] for n in self.core_vars}
        return self.rebuild(core.subs(mapping), x, reduced)

    def reduced_values(self, x32: np.ndarray) -> dict:
        """The reduced values at float32 points, computed exactly as the program does."""
        from exprforge.engine.evaluate import evaluate
        x = var("x", "float32")
        return {name: np.asarray(evaluate(e, {"x": x32})) for name, e in self.reduce(x).items()}


def periodic_seams(step: float):
    """k*step and (k + 1/2)*step: where round(x/step) changes and r is at its ends."""
    def seams(lo, hi, rng):
        k = np.arange(np.ceil(lo / step), np.floor(hi / step) + 1)
        centers = np.concatenate([(k + 0.5) * step, k * step])
        return rng.choice(centers, size=min(400, centers.size), replace=False), 64
    return seams


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


def _scale(p: Expr, k: Expr) -> Expr:
    """p * 2^k for -151 <= k <= 129: two normal halves, so only the last multiply rounds."""
    ki = make("cast", [k], "int32")
    k1 = make("shr", [ki, _i(1)])
    return (p * _pow2(k1)) * _pow2(ki - k1)


def _exp_reduce(x: Expr) -> dict:
    xc = _clamp(x, -104.0, 89.0)
    k = make("round", [xc * _f(1 / math.log(2))])
    r1 = _fma(k, _f(-LN2_HI), xc)        # exact (Cody-Waite)
    r = _fma(k, _f(-LN2_LO), r1)
    e = _fma(k, _f(-LN2_LO), r1 - r)     # r1 - r is exact: e is what rounding r lost
    return {"r": r, "rlo": e, "k": k}


def _exp2_reduce(x: Expr) -> dict:
    xc = _clamp(x, -151.0, 129.0)
    k = make("round", [xc])
    return {"r": xc - k, "k": k}


def _scale_affine(x, values):
    return np.ldexp(1.0, values["k"].astype(np.int64)), 0.0


def _exp_rebuild(p, x, reduced):
    return _scale(p, reduced["k"])


def _log_reduce(x: Expr) -> dict:
    tiny = x < _f(2.0 ** -126)
    xs = make("where", [tiny, x * _f(2.0 ** 23), x])
    bits = make("bitcast", [xs], "int32")
    k = make("shr", [bits - _i(SQRT_HALF_BITS), _i(23)])
    m = make("bitcast", [bits - make("shl", [k, _i(23)])], "float32")
    kf = make("cast", [k - make("where", [tiny, _i(23), _i(0)])], "float32")
    return {"f": m - _f(1.0), "k": kf}


def _log_specials(y: Expr, x: Expr) -> Expr:
    finite_positive = (x > _f(0.0)) & (x < _f(math.inf))
    special = make("where", [x.eq(_f(0.0)), _f(-math.inf),
                             make("where", [x.eq(_f(math.inf)), _f(math.inf), _f(math.nan)])])
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
                    _scale_affine, "exp(r + rlo)", seams=periodic_seams(math.log(2))),
    "exp2": Template("exp2", "exp2", (-150.0 + 2.0 ** -16, 128.0 - 2.0 ** -17), ("r",), (-0.5, 0.5),
                     _exp2_reduce, _exp_rebuild, _scale_affine, "2^r", seams=periodic_seams(1.0)),
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
    """where(a < 2, a*P(a^2), Q(a)): P of degree+3 for erf(a)/a, Q of degree+5 for erf
    on [2, 4] (placeholder coefficients, all distinct)."""
    a = var("a", "float64")
    p = _horner(a * a, [1.1 - 0.01 * i for i in range(degree + 4)], "float64")
    q = _horner(a, [0.9 - 0.01 * i for i in range(degree + 6)], "float64")
    return [make("where", [a < _d(ERF_SPLIT), a * p, q])]


def _erf_reduce(x: Expr) -> dict:
    return {"a": _clamp64(abs(make("cast", [x], "float64")), 0.0, 4.0)}  # erf(4) rounds to 1


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


def _relative_fit(fn):
    def core_fit(values):
        r = values["r"].astype(np.float64)
        target = fn(r)
        with np.errstate(divide="ignore"):
            return target, np.where(target != 0, 1.0 / np.abs(target), 0.0)
    return core_fit


def _exp2_64_reduce(x: Expr) -> dict:
    xd = _clamp64(make("cast", [x], "float64"), -152.0, 130.0)
    k = make("round", [xd])
    return {"r": xd - k, "k": k}                                  # exact


def _exp2_64_rebuild(p, x, reduced):
    return make("cast", [p * _pow2_64(reduced["k"])], "float32")  # one rounding, even subnormal


ERF_SPLIT = 2.0
TEMPLATES["erf"] = Template(
    "erf", "erf", (-F32_MAX, F32_MAX), ("a",), (0.0, 4.0), _erf_reduce, _erf_rebuild,
    _sign_affine, "erf(a), a in [0, 4] (float64)", degrees=(3, 9), seeds=_erf_seeds,
    dense=((-4.0, 4.0), (-1e-3, 1e-3)), core_dtype="float64", max_size=96,
    extra_ops=("where", "lt"))
TEMPLATES["exp2_64"] = Template(
    "exp2_64", "exp2", (-150.0 + 2.0 ** -16, 128.0 - 2.0 ** -17), ("r",), (-0.5, 0.5),
    _exp2_64_reduce, _exp2_64_rebuild, None, "2^r (float64)", degrees=(5, 10),
    core_dtype="float64", core_fit=_relative_fit(np.exp2), seams=periodic_seams(1.0))
TEMPLATES["sigmoid"] = Template(
    "sigmoid", "sigmoid", (-F32_MAX, F32_MAX), ("r",), (-0.5 * math.log(2), 0.5 * math.log(2)),
    _sigmoid_reduce, _sigmoid_rebuild, None, "exp(r) (float64)", degrees=(3, 7),
    dense=((-20.0, 20.0),), core_dtype="float64", core_fit=_relative_fit(np.exp))
TEMPLATES["tanh"] = Template(
    "tanh", "tanh", (-F32_MAX, F32_MAX), ("r",), (-0.5 * math.log(2), 0.5 * math.log(2)),
    _tanh_reduce, _tanh_rebuild, None, "expm1(r) (float64)", relative=False, degrees=(3, 7),
    dense=((-10.0, 10.0), (-0.01, 0.01)), core_dtype="float64", core_fit=_relative_fit(np.expm1))


def plain(function: str, domain: tuple[float, float]) -> Template:
    """No reduction: the core approximates `function` on `domain` directly."""
    return Template("plain", function, tuple(domain), ("x",), tuple(domain), _plain_reduce,
                    _plain_rebuild, _plain_affine, f"{function}(x)", relative=False)


def template_for(function: str, domain=None, name: str | None = None) -> Template:
    """The template for `function`: its range reduction when one is written (and the
    domain, if given, lies inside the template's), else the plain template."""
    if name == "plain" or (name is None and function not in TEMPLATES):
        if domain is None:
            raise ValueError(f"{function} has no range-reduction template: give a domain")
        return plain(str(function), domain)
    t = TEMPLATES.get(name or function)
    if t is None:
        raise ValueError(f"no template {name!r}; templates: plain, {', '.join(TEMPLATES)}")
    if t.function != function:
        raise ValueError(f"template {t.name} computes {t.function}, not {function}")
    if domain is not None and not (t.domain[0] <= domain[0] <= domain[1] <= t.domain[1]):
        return plain(function, domain) if name is None else _outside(t, domain)
    return t


def _outside(t: Template, domain):
    raise ValueError(f"domain {domain} is outside template {t.name}'s {t.domain}")
