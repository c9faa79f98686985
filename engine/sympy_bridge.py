"""Expr <-> SymPy, both ways by walking trees (never sympify on text).

Spellings come from the op table's `sympy` column: a SymPy function name, a builder
(sympy, *args) -> expr, or None, in which case the op travels as an undefined SymPy
function of its own name (round, trunc, fmod, bit ops) so it survives the round trip.
SymPy's normal form (Add, Mul, Pow) comes back as sub, div, sqrt, exp and cbrt where
it reads as those. Casts vanish (SymPy is dtype-free); reductions have no SymPy form.
"""
from __future__ import annotations

from fractions import Fraction

import sympy as sp

from . import dtypes as dt
from .expr import Expr, const, make, named, var
from .ops import OPS


def to_sympy(expr: Expr):
    out = {}
    for node in expr.toposort():
        out[node] = _to_sympy_node(node, [out[a] for a in node.args])
    return out[expr]


def _to_sympy_node(node: Expr, args):
    o = node.spec
    if node.op == "var":
        return sp.Symbol(node.name, real=True) if dt.is_float(node.dtype) else \
            sp.Symbol(node.name, integer=True) if dt.is_int(node.dtype) else sp.Symbol(node.name)
    if node.op == "const":
        v = node.attr
        if isinstance(v, bool):
            return sp.true if v else sp.false
        if isinstance(v, str):
            return {"inf": sp.oo, "-inf": -sp.oo, "nan": sp.nan, "-0": sp.Integer(0)}[v]
        return sp.Rational(v.numerator, v.denominator) if isinstance(v, Fraction) else sp.Integer(v)
    if o.group == "reduce":
        raise ValueError(f"reduction {o.spelling} has no SymPy form")
    if node.op == "cast" and dt.is_float(node.attr):
        return args[0]
    spelling = o.sympy
    if spelling is None:
        fn = sp.Function(node.op if o.group != "convert" else f"{node.op}_{node.attr}")
        return fn(*args)
    if isinstance(spelling, str):
        return getattr(sp, spelling) if o.group == "const" else getattr(sp, spelling)(*args)
    return spelling(sp, *args)


def _sympy_names() -> dict:
    """SymPy class name -> op name, read off the op table."""
    return {o.sympy: o.name for o in OPS.values()
            if isinstance(o.sympy, str) and o.group == "elementwise"}


_FROM_CLASS = _sympy_names()


def from_sympy(s, dtype: str = "float64", vars=None) -> Expr:
    """Convert a SymPy expression; symbols become variables of `dtype` (or as in vars)."""
    declared = dict(vars or {})
    done: dict = {}
    stack = [(s, False)]
    while stack:
        node, ready = stack.pop()
        if ready:
            done[node] = _from_sympy_node(node, [done[a] for a in _children(node)], dtype,
                                          declared)
            continue
        if node in done:
            continue
        stack.append((node, True))
        stack.extend((a, False) for a in reversed(_children(node)))
    return done[s]


def _children(s) -> list:
    if isinstance(s, sp.Piecewise):
        return [x for pair in s.args for x in pair]
    if isinstance(s, (sp.Symbol, sp.Number, sp.NumberSymbol)) or not s.args:
        return []
    return list(s.args)


def _number(s) -> Expr:
    if s is sp.nan:
        return const("nan")
    if s in (sp.oo, -sp.oo, sp.zoo):
        return const("-inf" if s == -sp.oo else "inf")
    if isinstance(s, sp.Integer):
        return const(int(s))
    if isinstance(s, sp.Rational):
        q = Fraction(int(s.p), int(s.q))
        try:
            return const(q)
        except ValueError:  # no finite decimal (1/3): keep it a correctly rounded division
            return make("div", (const(q.numerator), const(q.denominator)))
    if isinstance(s, sp.Float):
        sign, man, exp, _ = s._mpf_
        q = Fraction(man) * Fraction(2) ** exp
        return const(-q if sign else q)
    raise ValueError(f"no exprforge literal for SymPy number {s}")


def _from_sympy_node(s, args, dtype, declared) -> Expr:
    if isinstance(s, sp.Symbol):
        name = s.name
        if name not in declared:
            declared[name] = var(name, dtype)
        spec = declared[name]
        return spec if isinstance(spec, Expr) else var(name, spec)
    if isinstance(s, sp.Number) or s in (sp.oo, -sp.oo, sp.zoo, sp.nan):
        return _number(s)
    if s is sp.pi:
        return named("pi")
    if s is sp.E:
        return named("e")
    if s is sp.true or s is sp.false:
        return const(bool(s))
    if isinstance(s, sp.Add):
        return _fold_add(args)
    if isinstance(s, sp.Mul):
        return _fold_mul(s, args)
    if isinstance(s, sp.Pow):
        return _power(s, args)
    if isinstance(s, sp.exp):
        return make("exp", args)
    if isinstance(s, sp.log):
        return make("log", args[:1]) if len(args) == 1 else make("log", args[:1]) / make(
            "log", args[1:])
    if isinstance(s, sp.Piecewise):
        pairs = list(zip(args[0::2], args[1::2]))
        out = pairs[-1][0]
        if s.args[-1].cond != sp.true:  # no case holds: SymPy's Piecewise is undefined there
            out = make("where", (pairs[-1][1], out, const("nan")))
        for value, cond in reversed(pairs[:-1]):
            out = make("where", (cond, value, out))
        return out
    cls = type(s).__name__
    if cls in _RECIPROCALS:  # functions SymPy introduces that the op table spells otherwise
        return make("div", (const(1), make(_RECIPROCALS[cls], args)))
    if cls == "re":  # exprforge variables are real
        return args[0]
    if cls == "im":
        return const(0)
    if cls in ("Min", "Max", "And", "Or"):
        op = _FROM_CLASS[cls]
        out = args[0]
        for a in args[1:]:
            out = make(op, (out, a))
        return out
    if cls in _FROM_CLASS:
        return make(_FROM_CLASS[cls], args)
    if isinstance(s, sp.core.function.AppliedUndef):
        if cls in OPS:
            return make(cls, args)
        op, _, to = cls.partition("_")  # cast_int32, bitcast_int64 (see _to_sympy_node)
        if op in ("cast", "bitcast") and to in dt.DTYPES:
            return make(op, args, to)
    raise ValueError(f"no exprforge op for SymPy {cls}")


_RECIPROCALS = {"cot": "tan", "sec": "cos", "csc": "sin", "coth": "tanh", "sech": "cosh",
                "csch": "sinh"}


def _fold_add(args):
    # terms with a leading minus become subtractions: a + (-b) -> a - b
    pos = [a for a in args if a.op != "neg"]
    neg = [a.args[0] for a in args if a.op == "neg"]
    out = pos[0] if pos else make("neg", (neg.pop(0),))
    for a in pos[1:]:
        out = make("add", (out, a))
    for a in neg:
        out = make("sub", (out, a))
    return out


def _fold_mul(s, args):
    numer, denom, negate = [], [], False
    for sym, a in zip(s.args, args):
        if sym == -1:
            negate = not negate
        elif a.op == "div" and a.args[0].op == "const" and a.args[0].attr == 1:
            denom.append(a.args[1])  # x**-1 came back as 1/x
        else:
            numer.append(a)
    out = numer[0] if numer else const(1)
    for a in numer[1:]:
        out = make("mul", (out, a))
    for a in denom:
        out = make("div", (out, a))
    return make("neg", (out,)) if negate else out


def _power(s, args):
    base, exponent = args
    e = s.args[1]
    if s.args[0] is sp.E:
        return make("exp", (exponent,))
    if e == sp.Rational(1, 2):
        return make("sqrt", (base,))
    if e == sp.Rational(1, 3) and isinstance(s.args[0], sp.Abs):
        return make("cbrt", (base,))  # equal only for a nonnegative base: x**(1/3) is NaN at x < 0
    if e == -1:
        return make("div", (const(1), base))
    if e == sp.Rational(-1, 2):
        return make("div", (const(1), make("sqrt", (base,))))
    if isinstance(e, sp.Integer) and e < 0:
        return make("div", (const(1), make("pow", (base, const(int(-e))))))
    return make("pow", (base, exponent))
