"""The op table: one row per operation, the single source of truth.

Every other layer reads these rows: evaluation (numpy and mpmath columns), dtype
inference (the signature columns), printing and parsing (text, latex), the SymPy
and FPCore bridges, cost models (cycles), derivatives (deriv) and rewriting
(props). A back end adds only its spelling of each op.

Signatures. `args` has one letter per argument: T (the promoted type variable),
I (an integer slot, promoted separately) or B (bool). `out` is T, B (bool) or
"@" (the dtype named by the node's `to` attribute). `tkind` constrains T:
  float  ints and bools become float64, as NumPy does for exp(int)
  num    int or float      int  ints only      bits  ints or bool      any  anything

Derivative rules take (args, out, f): the argument Exprs, the node itself, and
a namespace of builders (f.cos(x), f.where(c, a, b), ...); they return one
partial derivative per argument (None for a non-differentiable argument).

Costs are cycles per element of a compiled loop, see COST_SOURCE below.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cache
from typing import Callable

import mpmath as mp
import numpy as np

from . import dtypes as dt

INF = math.inf

COST_SOURCE = (
    "Measured on this machine (Intel Emerald Rapids, 2.5 GHz) by benchmarks/op_costs.py: "
    "net cycles per element of a numba loop over 2**16 float64 values, less a copy loop "
    "(benchmarks/results/op_costs.json), rounded. Ops that hide behind the loop's memory "
    "traffic (add, mul, compare, select, bit ops, rounding) are set to 1; div uses numba's "
    "default error model (3.3 cycles)."
)


@dataclass(frozen=True)
class Op:
    name: str
    arity: int
    args: str                      # signature letters, one per argument
    out: str                       # "T", "B" or "@"
    tkind: str                     # constraint on T
    np_fn: Callable | None         # numpy implementation, exact dtype semantics
    mp_fn: Callable | None         # mpmath implementation, the ground truth
    group: str = "elementwise"     # leaf | const | elementwise | reduce | convert
    text: str | None = None        # function spelling for printing/parsing (default: name)
    infix: str | None = None       # operator symbol when printed infix
    prec: int = 14                 # Python precedence when infix/prefix
    latex: str | None = None       # template with {0}, {1}, ... (default: \operatorname)
    sympy: str | Callable | None = None   # sympy function name, or builder(sympy, *args)
    fpcore: str | None = None      # FPCore operator name
    cost: float = 1.0              # cycles per element
    deriv: Callable | None = None  # (args, out, f) -> tuple of partials
    jvp: Callable | None = None    # (args, out, tangents, f) -> derivative along the tangents;
                                   # for selections and reductions, where partials won't do
    vjp: Callable | None = None    # reductions: (c, u, out, f) -> the cotangent of argument u,
                                   # given c, the cotangent of out summed over out's axes
    props: frozenset = field(default_factory=frozenset)
    aliases: tuple = ()            # extra names the parser accepts (numpy, C spellings)
    identity: int | None = None    # neutral element (add: 0, mul: 1)
    domain: tuple = ()             # per-argument sampling interval where the op is finite
    ulp32: float = 0.0             # max ULP error of np_fn vs exact, float32 (0: correctly
    ulp64: float = 0.0             # rounded); measured over samples of `domain`, see README

    @property
    def spelling(self) -> str:
        return self.text or self.name


# --- mpmath helpers: real results only, IEEE-style infinities -------------------------

def _real(fn):
    """Wrap an mpmath function: complex or undefined results become NaN."""
    def g(*a):
        if any(isinstance(x, mp.mpf) and mp.isnan(x) for x in a):
            return mp.nan
        try:
            r = fn(*a)
        except (ValueError, ZeroDivisionError, OverflowError):
            return mp.nan
        if isinstance(r, mp.mpc):
            return r.real if r.imag == 0 else mp.nan
        return r
    g.__name__ = getattr(fn, "__name__", "mp_fn")
    return g


def _mp_div(a, b):
    if b == 0:
        return mp.nan if a == 0 or mp.isnan(a) else mp.inf * mp.sign(a)
    return a / b


# mpmath never overflows, so exp(exp(exp(20))) would take forever. Past 2**(2**4096) every
# value rounds to inf (or 0) in every dtype we have: stop there.
_HUGE_EXPONENT = 2 ** 4096  # far past any float, far below what takes mpmath forever


def _bounded_exp(fn, scale=1.0):
    # fn grows like exp(scale * |x|): beyond the bound answer with its limit at +-inf
    def g(x):
        if mp.isfinite(x) and abs(x) * scale > _HUGE_EXPONENT:
            return fn(mp.inf if x > 0 else -mp.inf)
        return fn(x)
    g.__name__ = getattr(fn, "__name__", "bounded")
    return g


def _mp_pow(a, b):
    if a == 0 and b < 0:
        return mp.inf
    if a < 0 and b != mp.floor(b):
        return mp.nan
    if mp.isfinite(a) and mp.isfinite(b) and a != 0 and abs(a) != 1:
        log2_result = b * mp.log(abs(a), 2)
        if abs(log2_result) > _HUGE_EXPONENT:
            big = mp.inf if log2_result > 0 else mp.mpf(0)
            negative = a < 0 and int(b) % 2 == 1
            return -big if negative else big
    return mp.power(a, b)


def _mp_round(x):  # ties to even
    if mp.isinf(x) or mp.isnan(x):
        return x
    f = mp.floor(x)
    d = x - f
    if d > 0.5 or (d == 0.5 and int(f) % 2 == 1):
        return f + 1
    return f


def _mp_fmod(a, b):
    # C fmod is exact: compute it with rationals (mpmath's fmod follows other conventions)
    if not (mp.isfinite(a) and mp.isfinite(b)) or b == 0:
        return a if (mp.isfinite(a) and mp.isinf(b)) else mp.nan
    qa, qb = _fraction(a), _fraction(b)
    r = qa - qb * int(qa / qb)
    return mp.mpf(r.numerator) / r.denominator


def _fraction(x):
    sign, man, exp, _ = x._mpf_
    q = Fraction(man) * Fraction(2) ** exp
    return -q if sign else q


def _mp_erfc(x):
    # mpmath overflows past x ~ 1e150; there erfc(x) ~ exp(-x^2) / (x sqrt(pi)) is far
    # below every float, so the leading asymptotic term rounds the same
    if x > 1e6:
        return mp.exp(-x * x) / (x * mp.sqrt(mp.pi))
    return mp.erfc(x)


def _mp_sign(x):
    return mp.mpf(mp.sign(x)) if not mp.isnan(x) else x


def _mp_minmax(pick):  # C fmin/fmax: a NaN argument is ignored
    def g(a, b):
        if mp.isnan(a):
            return b
        if mp.isnan(b):
            return a
        return pick(a, b)
    return g


# --- numpy helpers ------------------------------------------------------------------

@cache
def _fma_ufunc():
    """Correctly rounded fused multiply-add: numpy has none, so compile llvm.fma once."""
    import numba
    from numba import types
    from numba.extending import intrinsic

    @intrinsic
    def _fma(typingctx, a, b, c):
        sig = a(a, b, c)

        def codegen(context, builder, signature, args):
            return builder.fma(*args)
        return sig, codegen

    @numba.vectorize(["float32(float32, float32, float32)",
                      "float64(float64, float64, float64)"], cache=False)
    def fma(a, b, c):
        return _fma(a, b, c)
    del types
    return fma


def _np_fma(a, b, c):
    return _fma_ufunc()(a, b, c)


def _zero_like(x):
    return np.zeros((), dtype=np.asarray(x).dtype)


def _np_relu(x):
    return np.maximum(x, _zero_like(x))


def _np_cast(x, to):
    with np.errstate(invalid="ignore", over="ignore"):
        return np.asarray(x).astype(to)


def _np_bitcast(x, to):
    a = np.asarray(x)  # (ascontiguousarray would turn a 0-d array into 1-d)
    return (a if a.flags.c_contiguous else np.array(a, order="C")).view(to)


@cache
def _special():
    """scipy.special, imported at the first call that needs it: importing it takes ~140 ms
    here, two thirds of `import exprforge` (and of loading a stored kernel in a new
    process)."""
    from scipy import special
    return special


def _np_erf(x, *args, **kwargs):
    return _special().erf(x, *args, **kwargs)


def _np_erfc(x, *args, **kwargs):
    return _special().erfc(x, *args, **kwargs)


def _np_sigmoid(x, *args, **kwargs):
    return _special().expit(x, *args, **kwargs)


# --- derivative helpers (f is the builder namespace) ------------------------------

def _d_pow(a, out, f):
    x, y = a
    return (y * f.pow(x, y - 1), out * f.log(x))


def _jvp_minmax(first_wins):
    # select the tangent: a product with where(c, 1, 0) would turn inf/NaN into NaN
    def jvp(a, out, t, f):
        return f.where(first_wins(a[0], a[1]), t[0], t[1])
    return jvp


# --- the table ----------------------------------------------------------------------

POS = (1e-30, 1e30)     # sampling intervals (the sampler goes log-uniform on wide ones)
WIDE = (-1e30, 1e30)
UNIT = (-1.0, 1.0)
MOD = (-80.0, 80.0)     # exp-family arguments that stay finite in float32
TRIG = (-100.0, 100.0)
NUM = frozenset()


# reverse-mode helpers for the reductions' vjp column. Float counts are exact below 2**24
# elements per reduction (2**53 in float64). The vjps multiply by 1 / count, a row's
# value, rather than divide: c may hold a parameter, which makes it a value per element.
def _spread(c, u, f):
    return f.where(True, c, u)  # c broadcast to u's shape, so that a later sum sees it all


def _count(u, out, f):
    return f.rsum(f.where(True, 1, u), axis=out.attr)  # elements reduced into each result


def is_count(node) -> bool:
    """Whether node is a sum of ones spread to an argument's shape, as _count writes
    it: the number of elements reduced, which a back end may take from the shape (the
    same as NumPy's pairwise sum of ones below 2**24 elements in float32, 2**53 in
    float64)."""
    if node.op != "rsum" or node.args[0].op != "where":
        return False
    cond, one = node.args[0].args[:2]
    return cond.op == "const" and cond.attr is True and one.op == "const" and one.attr == 1


def _row(name, arity, args, out="T", tkind="float", **kw):
    return Op(name=name, arity=arity, args=args, out=out, tkind=tkind, **kw)


def _unary(name, np_fn, mp_fn, deriv, *, cost, domain=WIDE, ulp32=0.0, ulp64=0.0, tkind="float", **kw):
    kw.setdefault("sympy", name)
    kw.setdefault("fpcore", name)
    return _row(name, 1, "T", tkind=tkind, np_fn=np_fn, mp_fn=_real(mp_fn), deriv=deriv,
                cost=cost, domain=(domain,), ulp32=ulp32, ulp64=ulp64, **kw)


ROWS = [
    # leaves: a variable (attr: name, axes) and an exact literal (attr: value)
    _row("var", 0, "", group="leaf", np_fn=None, mp_fn=None, cost=0.0),
    _row("const", 0, "", group="leaf", np_fn=None, mp_fn=None, cost=0.0),
    # named constants: weak floats, correctly rounded to the program's dtype
    _row("pi", 0, "", group="const", np_fn=None, mp_fn=lambda: +mp.pi, sympy="pi",
         fpcore="PI", latex=r"\pi", cost=0.0),
    _row("e", 0, "", group="const", np_fn=None, mp_fn=lambda: +mp.e, sympy="E",
         fpcore="E", latex=r"e", cost=0.0),
    _row("ln2", 0, "", group="const", np_fn=None, mp_fn=lambda: +mp.ln2,
         sympy=lambda s: s.log(2), fpcore="LN2", latex=r"\ln 2", cost=0.0),

    # arithmetic
    _row("add", 2, "TT", tkind="num", np_fn=np.add, mp_fn=lambda a, b: a + b, infix="+", prec=10,
         latex="{0} + {1}", sympy=lambda s, a, b: a + b, fpcore="+", cost=1.0,
         deriv=lambda a, out, f: (1, 1), props=frozenset({"commutative", "associative"}),
         identity=0, domain=(WIDE, WIDE)),
    _row("sub", 2, "TT", tkind="num", np_fn=np.subtract, mp_fn=lambda a, b: a - b, infix="-",
         prec=10, latex="{0} - {1}", sympy=lambda s, a, b: a - b, fpcore="-", cost=1.0,
         deriv=lambda a, out, f: (1, -1), domain=(WIDE, WIDE)),
    _row("mul", 2, "TT", tkind="num", np_fn=np.multiply, mp_fn=lambda a, b: a * b, infix="*",
         prec=11, latex=r"{0} \cdot {1}", sympy=lambda s, a, b: a * b, fpcore="*", cost=1.0,
         deriv=lambda a, out, f: (a[1], a[0]), props=frozenset({"commutative", "associative"}),
         identity=1, domain=((-1e15, 1e15), (-1e15, 1e15))),
    _row("div", 2, "TT", np_fn=np.true_divide, mp_fn=_mp_div, infix="/", prec=11,
         latex=r"\frac{{{0}}}{{{1}}}", sympy=lambda s, a, b: a / b, fpcore="/", cost=3.0,
         deriv=lambda a, out, f: (1 / a[1], -out / a[1]), domain=(WIDE, POS)),
    _row("neg", 1, "T", tkind="num", np_fn=np.negative, mp_fn=lambda a: -a, infix="-", prec=12,
         latex="-{0}", sympy=lambda s, a: -a, fpcore="-", cost=1.0,
         deriv=lambda a, out, f: (-1,), props=frozenset({"involution"}), domain=(WIDE,)),
    _row("fma", 3, "TTT", np_fn=_np_fma, mp_fn=lambda a, b, c: a * b + c,
         sympy=lambda s, a, b, c: a * b + c, fpcore="fma", cost=1.0,
         deriv=lambda a, out, f: (a[1], a[0], 1), domain=((-1e10, 1e10),) * 3),
    _row("pow", 2, "TT", np_fn=np.power, mp_fn=_real(_mp_pow), infix="**", prec=13,
         latex="{0}^{{{1}}}", sympy=lambda s, a, b: a ** b, fpcore="pow", cost=38.0,
         deriv=_d_pow, domain=((1e-3, 1e3), (-4.0, 4.0)), ulp32=1.5, ulp64=1.0),
    _row("abs", 1, "T", tkind="num", np_fn=np.abs, mp_fn=abs, latex=r"\left|{0}\right|",
         sympy="Abs", fpcore="fabs", cost=1.0,
         deriv=lambda a, out, f: (f.sign(a[0]),), domain=(WIDE,)),
    _row("sign", 1, "T", tkind="num", np_fn=np.sign, mp_fn=_mp_sign, sympy="sign", cost=1.0,
         latex=r"\operatorname{{sign}}\left({0}\right)",
         deriv=lambda a, out, f: (0,), domain=(WIDE,)),
    _row("min", 2, "TT", tkind="num", np_fn=np.fmin, mp_fn=_mp_minmax(min), sympy="Min",
         fpcore="fmin", cost=1.0, jvp=_jvp_minmax(lambda x, y: x <= y),
         props=frozenset({"commutative", "associative", "idempotent"}), domain=(WIDE, WIDE)),
    _row("max", 2, "TT", tkind="num", np_fn=np.fmax, mp_fn=_mp_minmax(max), sympy="Max",
         fpcore="fmax", cost=1.0, jvp=_jvp_minmax(lambda x, y: x >= y),
         props=frozenset({"commutative", "associative", "idempotent"}), domain=(WIDE, WIDE)),
    _row("relu", 1, "T", tkind="num", np_fn=_np_relu, mp_fn=lambda a: max(a, mp.mpf(0)),
         sympy=lambda s, a: s.Max(a, 0), cost=1.0,
         jvp=lambda a, out, t, f: f.where(a[0] > 0, t[0], 0), domain=(WIDE,)),
    _row("copysign", 2, "TT", np_fn=np.copysign, mp_fn=lambda a, b: abs(a) * (-1 if b < 0 else 1),
         sympy=None, fpcore="copysign", cost=1.0,  # SymPy has none (Abs*sign is wrong at 0)
         deriv=lambda a, out, f: (f.sign(a[0]) * f.copysign(1, a[1]), 0), domain=(WIDE, WIDE)),

    # roots, exponentials, logarithms
    _unary("sqrt", np.sqrt, mp.sqrt, lambda a, out, f: (0.5 / out,), cost=2.0, domain=POS,
           latex=r"\sqrt{{{0}}}"),
    _unary("cbrt", np.cbrt, lambda x: mp.sign(x) * mp.cbrt(abs(x)),
           lambda a, out, f: (1 / (3 * out * out),), cost=48.0, domain=WIDE, ulp32=2.0, ulp64=3.0,
           sympy=lambda s, a: s.sign(a) * s.Abs(a) ** s.Rational(1, 3),  # sympy.cbrt is complex
           latex=r"\sqrt[3]{{{0}}}"),
    _unary("exp", np.exp, _bounded_exp(mp.exp), lambda a, out, f: (out,), cost=16.0, domain=MOD,
           ulp32=3.0, ulp64=1.0, latex="e^{{{0}}}"),
    _unary("exp2", np.exp2, _bounded_exp(lambda x: mp.power(2, x)), lambda a, out, f: (out * f.ln2(),),
           cost=8.0, domain=(-120.0, 120.0), ulp32=1.5, ulp64=1.0, latex="2^{{{0}}}",
           sympy=lambda s, a: 2 ** a),
    _unary("expm1", np.expm1, _bounded_exp(mp.expm1), lambda a, out, f: (out + 1,), cost=38.0, domain=MOD,
           ulp32=2.0, ulp64=1.0, sympy=lambda s, a: s.exp(a) - 1,
           latex=r"\left(e^{{{0}}} - 1\right)"),
    _unary("log", np.log, mp.log, lambda a, out, f: (1 / a[0],), aliases=("ln",), cost=15.0, domain=POS,
           ulp32=2.0, ulp64=1.0, latex=r"\log\left({0}\right)"),
    _unary("log2", np.log2, lambda x: mp.log(x, 2), lambda a, out, f: (1 / (a[0] * f.ln2()),),
           cost=11.0, domain=POS, ulp32=1.5, ulp64=1.0, sympy=lambda s, a: s.log(a, 2),
           latex=r"\log_2\left({0}\right)"),
    _unary("log10", np.log10, mp.log10, lambda a, out, f: (1 / (a[0] * f.log(10)),),
           cost=24.0, domain=POS, ulp32=2.5, ulp64=1.0, sympy=lambda s, a: s.log(a, 10),
           latex=r"\log_{{10}}\left({0}\right)"),
    _unary("log1p", np.log1p, mp.log1p, lambda a, out, f: (1 / (a[0] + 1),), cost=34.0,
           domain=(-0.999, 1e30), ulp32=1.5, ulp64=1.0, sympy=lambda s, a: s.log(1 + a),
           latex=r"\log\left(1 + {0}\right)"),

    # trigonometric
    _unary("sin", np.sin, mp.sin, lambda a, out, f: (f.cos(a[0]),), cost=56.0, domain=TRIG,
           ulp32=1.5, ulp64=1.0, props=frozenset({"odd"})),
    _unary("cos", np.cos, mp.cos, lambda a, out, f: (-f.sin(a[0]),), cost=62.0, domain=TRIG,
           ulp32=1.5, ulp64=1.0, props=frozenset({"even"})),
    _unary("tan", np.tan, mp.tan, lambda a, out, f: (1 + out * out,), cost=61.0, domain=TRIG,
           ulp32=3.0, ulp64=1.0, props=frozenset({"odd"})),
    _unary("asin", np.arcsin, mp.asin, lambda a, out, f: (1 / f.sqrt(1 - a[0] * a[0]),),
           aliases=("arcsin",), cost=54.0, domain=UNIT, ulp32=3.0, ulp64=1.0, props=frozenset({"odd"})),
    _unary("acos", np.arccos, mp.acos, lambda a, out, f: (-1 / f.sqrt(1 - a[0] * a[0]),),
           aliases=("arccos",), cost=55.0, domain=UNIT, ulp32=2.0, ulp64=1.0),
    _unary("atan", np.arctan, mp.atan, lambda a, out, f: (1 / (1 + a[0] * a[0]),), aliases=("arctan",), cost=21.0,
           domain=WIDE, ulp32=1.5, ulp64=1.0, props=frozenset({"odd"})),
    _row("atan2", 2, "TT", np_fn=np.arctan2, mp_fn=_real(mp.atan2), sympy="atan2",
         fpcore="atan2", cost=81.0, ulp32=2.0, ulp64=1.0, domain=(WIDE, WIDE),
         deriv=lambda a, out, f: (a[1] / (a[0] * a[0] + a[1] * a[1]),
                                  -a[0] / (a[0] * a[0] + a[1] * a[1]))),

    # hyperbolic
    _unary("sinh", np.sinh, _bounded_exp(mp.sinh), lambda a, out, f: (f.cosh(a[0]),), cost=54.0, domain=MOD,
           ulp32=1.5, ulp64=1.5, props=frozenset({"odd"})),
    _unary("cosh", np.cosh, _bounded_exp(mp.cosh), lambda a, out, f: (f.sinh(a[0]),), cost=21.0, domain=MOD,
           ulp32=2.0, ulp64=1.0, props=frozenset({"even"})),
    _unary("tanh", np.tanh, mp.tanh, lambda a, out, f: (1 - out * out,), cost=68.0, domain=TRIG,
           ulp32=1.5, ulp64=1.0, props=frozenset({"odd"})),
    _unary("asinh", np.arcsinh, mp.asinh, lambda a, out, f: (1 / f.sqrt(a[0] * a[0] + 1),),
           aliases=("arcsinh",), cost=38.0, domain=(-1e15, 1e15), ulp32=1.0, ulp64=1.0, props=frozenset({"odd"})),
    _unary("acosh", np.arccosh, mp.acosh, lambda a, out, f: (1 / f.sqrt(a[0] * a[0] - 1),),
           aliases=("arccosh",), cost=28.0, domain=(1.0, 1e15), ulp32=1.5, ulp64=1.0),
    _unary("atanh", np.arctanh, mp.atanh, lambda a, out, f: (1 / (1 - a[0] * a[0]),),
           aliases=("arctanh",), cost=72.0, domain=UNIT, ulp32=1.5, ulp64=1.5, props=frozenset({"odd"})),

    # special functions and activations
    _unary("erf", _np_erf, mp.erf,
           lambda a, out, f: (2 / f.sqrt(f.pi()) * f.exp(-(a[0] * a[0])),), cost=49.0,
           domain=(-10.0, 10.0), ulp32=1.0, ulp64=3.0, props=frozenset({"odd"})),
    _unary("erfc", _np_erfc, _mp_erfc,
           lambda a, out, f: (-2 / f.sqrt(f.pi()) * f.exp(-(a[0] * a[0])),), cost=51.0,
           domain=(-10.0, 9.0), ulp32=1.0, ulp64=80.0),
    _unary("sigmoid", _np_sigmoid, lambda x: 1 / (1 + mp.exp(-x)),
           lambda a, out, f: (out * (1 - out),), cost=16.0, domain=MOD, ulp32=2.0, ulp64=2.0,
           sympy=lambda s, a: 1 / (1 + s.exp(-a)), fpcore=None,
           latex=r"\sigma\left({0}\right)"),

    # rounding: exact in every dtype
    _unary("floor", np.floor, mp.floor, lambda a, out, f: (0,), cost=1.0),
    _unary("ceil", np.ceil, mp.ceil, lambda a, out, f: (0,), cost=1.0, sympy="ceiling"),
    _unary("round", np.rint, _mp_round, lambda a, out, f: (0,), cost=1.0, fpcore="nearbyint",
           sympy=None),  # ties to even; SymPy's round has no symbolic form
    _unary("trunc", np.trunc, lambda x: mp.floor(x) if x >= 0 else mp.ceil(x),
           lambda a, out, f: (0,), cost=1.0, sympy=None),
    _row("hypot", 2, "TT", np_fn=np.hypot, mp_fn=_real(mp.hypot), fpcore="hypot",
         sympy=lambda s, a, b: s.sqrt(a * a + b * b), cost=57.0, ulp32=1.0, ulp64=1.0,
         domain=(WIDE, WIDE), deriv=lambda a, out, f: (a[0] / out, a[1] / out)),
    _row("fmod", 2, "TT", np_fn=np.fmod, mp_fn=_real(_mp_fmod), fpcore="fmod", cost=31.0,
         sympy=None, domain=((-1e6, 1e6), (1e-3, 1e3)),
         deriv=lambda a, out, f: (1, -f.trunc(a[0] / a[1]))),

    # comparisons, selection, logic
    *[_row(n, 2, "TT", out="B", tkind=k, np_fn=fn, mp_fn=m, infix=s, prec=5,
           latex="{0} " + lx + " {1}", sympy=sy, fpcore=s, cost=1.0, domain=(WIDE, WIDE))
      for n, fn, m, s, lx, sy, k in [
          ("lt", np.less, lambda a, b: a < b, "<", "<", "StrictLessThan", "num"),
          ("le", np.less_equal, lambda a, b: a <= b, "<=", r"\le", "LessThan", "num"),
          ("gt", np.greater, lambda a, b: a > b, ">", ">", "StrictGreaterThan", "num"),
          ("ge", np.greater_equal, lambda a, b: a >= b, ">=", r"\ge", "GreaterThan", "num"),
          ("eq", np.equal, lambda a, b: a == b, "==", "=", "Equality", "any"),
          ("ne", np.not_equal, lambda a, b: a != b, "!=", r"\ne", "Unequality", "any")]],
    _row("where", 3, "BTT", tkind="any", np_fn=np.where,
         mp_fn=lambda c, a, b: a if c else b, fpcore="if", cost=1.0,
         sympy=lambda s, c, a, b: s.Piecewise((a, c), (b, True)),
         latex=r"\begin{{cases}} {1} & {0} \\ {2} & \text{{otherwise}} \end{{cases}}",
         jvp=lambda a, out, t, f: f.where(a[0], t[1], t[2])),
    _row("and", 2, "BB", out="B", tkind="any", np_fn=np.logical_and,
         mp_fn=lambda a, b: bool(a) and bool(b), infix="and", prec=3, latex=r"{0} \land {1}",
         sympy="And", fpcore="and", cost=1.0, props=frozenset({"commutative", "associative"})),
    _row("or", 2, "BB", out="B", tkind="any", np_fn=np.logical_or,
         mp_fn=lambda a, b: bool(a) or bool(b), infix="or", prec=2, latex=r"{0} \lor {1}",
         sympy="Or", fpcore="or", cost=1.0, props=frozenset({"commutative", "associative"})),
    _row("not", 1, "B", out="B", tkind="any", np_fn=np.logical_not, mp_fn=lambda a: not a,
         infix="not", prec=4, latex=r"\lnot {0}", sympy="Not", fpcore="not", cost=1.0),

    # integer and bit-level ops (range reduction, L-Mul); ints wrap around like C
    *[_row(n, 2, "TT", tkind="bits", np_fn=fn, mp_fn=m, infix=s, prec=p, cost=1.0,
           latex="{0} " + lx + " {1}", props=pr)
      for n, fn, m, s, p, lx, pr in [
          ("bitand", np.bitwise_and, lambda a, b: a & b, "&", 8, r"\mathbin{\&}",
           frozenset({"commutative", "associative"})),
          ("bitor", np.bitwise_or, lambda a, b: a | b, "|", 6, r"\mathbin{|}",
           frozenset({"commutative", "associative"})),
          ("bitxor", np.bitwise_xor, lambda a, b: a ^ b, "^", 7, r"\oplus",
           frozenset({"commutative", "associative"}))]],
    _row("bitnot", 1, "T", tkind="bits", np_fn=np.invert, mp_fn=lambda a: ~a, infix="~",
         prec=12, latex=r"\lnot {0}", cost=1.0),
    _row("shl", 2, "TT", tkind="int", np_fn=np.left_shift, mp_fn=lambda a, b: a << b,
         infix="<<", prec=9, latex=r"{0} \ll {1}", cost=1.0),
    _row("shr", 2, "TT", tkind="int", np_fn=np.right_shift, mp_fn=lambda a, b: a >> b,
         infix=">>", prec=9, latex=r"{0} \gg {1}", cost=1.0),  # arithmetic shift
    _row("ldexp", 2, "TI", np_fn=np.ldexp, mp_fn=lambda a, n: mp.ldexp(a, int(n)),
         sympy=lambda s, a, n: a * 2 ** n, cost=16.0, domain=(WIDE, (-20, 20)),
         latex=r"{0} \cdot 2^{{{1}}}", deriv=lambda a, out, f: (f.ldexp(1, a[1]), None)),
    _row("cast", 1, "T", out="@", tkind="any", group="convert", np_fn=_np_cast, mp_fn=None,
         cost=1.0, deriv=lambda a, out, f: (1 if dt.is_float(out.dtype) else 0,)),
    _row("bitcast", 1, "T", out="@", tkind="any", group="convert", np_fn=_np_bitcast,
         mp_fn=None, cost=0.0),

    # reductions over axes (attr: axes, resolved to negative positions); keepdims always
    # Their jvp is the derivative along a tangent t (the same axes attribute is reused).
    _row("rsum", 1, "T", group="reduce", text="sum", np_fn=np.sum, mp_fn=None, cost=1.0,
         jvp=lambda a, out, t, f: f.rsum(t[0], axis=out.attr),
         vjp=lambda c, u, out, f: _spread(c, u, f)),
    _row("rmean", 1, "T", group="reduce", text="mean", np_fn=np.mean, mp_fn=None, cost=1.0,
         jvp=lambda a, out, t, f: f.rmean(t[0], axis=out.attr),
         vjp=lambda c, u, out, f: _spread(c * (1 / _count(u, out, f)), u, f)),
    _row("rvar", 1, "T", group="reduce", text="var", np_fn=np.var, mp_fn=None, cost=3.0,
         jvp=lambda a, out, t, f: 2 * f.rmean((a[0] - f.rmean(a[0], axis=out.attr)) * t[0],
                                              axis=out.attr),
         vjp=lambda c, u, out, f: 2 * c * (1 / _count(u, out, f)) * (u - f.rmean(u, axis=out.attr))),
    # ties share the gradient evenly, as torch.amax does
    _row("rmax", 1, "T", group="reduce", text="max", np_fn=np.max, mp_fn=None, cost=1.0,
         jvp=lambda a, out, t, f: f.rsum(f.where(a[0].eq(out), t[0], 0), axis=out.attr)
         / f.rsum(f.where(a[0].eq(out), 1, 0), axis=out.attr),
         vjp=lambda c, u, out, f: f.where(u.eq(out), c / f.rsum(f.where(u.eq(out), 1, 0),
                                                                axis=out.attr), 0)),
]

OPS: dict[str, Op] = {row.name: row for row in ROWS}
assert len(OPS) == len(ROWS), "duplicate op names"


def op(name: str) -> Op:
    try:
        return OPS[name]
    except KeyError:
        raise KeyError(f"unknown op {name!r}") from None


# --- dtype inference from the signature columns ------------------------------------

def _constrain(t: str, tkind: str, opname: str) -> str:
    k = "f" if t == "~f" else "i" if t == "~i" else dt.kind(t)
    weak = t.startswith("~")
    if tkind == "float" and k != "f":
        return "~f" if weak else "float64"
    ok = {"num": "if", "int": "i", "bits": "ib", "any": "bif", "float": "f"}[tkind]
    if k not in ok:
        raise TypeError(f"{opname} does not take {t.lstrip('~') if not weak else 'literal'} "
                        f"operands of kind {'bool' if k == 'b' else 'float' if k == 'f' else 'int'}")
    return t


def infer(o: Op, arg_types: tuple[str, ...], to: str | None = None):
    """Return (target dtype per argument, result dtype) for op `o` applied to `arg_types`.

    Weak literal types ("~f", "~i") in a slot take the slot's dtype when any argument of
    that slot is strong; a node whose T slots are all weak stays weak.
    """
    if len(arg_types) != o.arity:
        raise TypeError(f"{o.spelling} takes {o.arity} argument(s), got {len(arg_types)}")
    t_slots = [t for letter, t in zip(o.args, arg_types) if letter == "T"]
    i_slots = [t for letter, t in zip(o.args, arg_types) if letter == "I"]
    T = _constrain(dt.promote(t_slots), o.tkind, o.spelling) if t_slots else None
    I = dt.promote(i_slots) if i_slots else None
    if I is not None:
        I = "int32" if I == "~i" else I
        if not dt.is_int(I):
            raise TypeError(f"{o.spelling}: argument must be an integer, got {I.lstrip('~')}")
    targets = []
    for letter, t in zip(o.args, arg_types):
        want = {"T": T, "I": I, "B": "bool"}[letter]
        if letter == "B" and t != "bool":
            raise TypeError(f"{o.spelling}: condition must be bool, got {t.lstrip('~')}")
        targets.append(want)
    if o.out == "T":
        out = T if T is not None else "~f"
    elif o.out == "B":
        out = "bool"
    else:
        out = _convert_target(o, T, to)
    return tuple(targets), out


def _convert_target(o: Op, src: str, to: str | None) -> str:
    if to is None:
        raise TypeError(f"{o.name} needs a target dtype: {o.name}(x, to='int32')")
    dt.check(to)
    if src is None or src.startswith("~"):
        src = {"~f": "float64", "~i": "int64"}.get(src, "float64")
    if o.name == "bitcast":
        pair = dt.SAME_WIDTH_INT.get(src) or dt.SAME_WIDTH_FLOAT.get(src)
        if pair != to:
            raise TypeError(f"bitcast reinterprets float32<->int32 and float64<->int64, "
                            f"not {src}->{to}")
    return to
