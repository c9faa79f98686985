"""Reference evaluation: one walk over the DAG, two interpretations read off the op table.

- evaluate(): NumPy arrays with exact dtype semantics. A float32 program rounds every op
  to float32, as a kernel would; literals are correctly rounded from their exact value.
- oracle(): the real-number meaning, on object arrays of mpmath numbers at a chosen
  precision. Integer and bit-level ops keep their finite meaning (a bitcast first
  rounds its operand to its dtype). mpmath has no signed zero, so x/0 is +-inf by the
  sign of x. exact() rounds the oracle's values correctly to a dtype.
"""
from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache

import mpmath as mp
import numpy as np

from . import dtypes as dt
from .expr import Expr, concretize, retype


def _leaf_arrays(expr: Expr, env, convert):
    env = env or {}
    missing = [n for n in expr.var_names() if n not in env]
    if missing:
        raise KeyError(f"no value given for variable(s) {', '.join(missing)}")
    return {v: convert(v, env[v.name]) for v in expr.variables()}


def _input_array(v: Expr, value) -> np.ndarray:
    a = np.asarray(value)
    if a.dtype == v.dtype:
        return a
    if a.dtype.kind == "f" and not dt.is_float(v.dtype):
        raise TypeError(f"variable {v.name} is {v.dtype}; got float data")
    if a.dtype.kind not in "biuf":
        raise TypeError(f"variable {v.name}: cannot use {a.dtype} data")
    return a.astype(v.dtype)


def prepare(expr: Expr, dtype: str | None) -> Expr:
    """The program evaluate() runs: retyped to `dtype` and with a weak root made concrete."""
    if dtype is not None:
        dt.check(dtype)
        if dt.is_float(dtype):
            expr = retype(expr, dtype)
    if not expr.is_weak:
        return expr
    return concretize(expr, dtype or ("int64" if expr.dtype == "~i" else "float64"))


def evaluate(expr: Expr, env=None, dtype: str | None = None) -> np.ndarray:
    """Evaluate on NumPy arrays (broadcasting). `dtype` retypes a float program first."""
    expr = prepare(expr, dtype)
    values = _leaf_arrays(expr, env, _input_array)
    with np.errstate(all="ignore"):
        for node in expr.toposort():
            if node not in values:
                values[node] = apply_node(node, [values[a] for a in node.args])
    return np.asarray(values[expr])


def apply_node(node: Expr, args):
    """One node on NumPy arrays: its op, the result in the node's dtype."""
    o = node.spec
    if node.op == "const":
        return literal_value(node.attr, node.dtype)
    if o.group == "const":
        return named_value(node.op, node.dtype)
    if o.group == "reduce":
        out = o.np_fn(args[0], axis=node.attr, keepdims=True)
    elif o.group == "convert":
        out = o.np_fn(args[0], node.attr)
    else:
        out = o.np_fn(*args)
    out = np.asarray(out)
    if out.dtype != node.dtype:  # never widen: each op's result has the node's dtype
        out = out.astype(node.dtype)
    return out


@lru_cache(maxsize=4096)
def literal_value(value, dtype: str):
    """A literal as a NumPy scalar of `dtype`, correctly rounded from its exact value."""
    if isinstance(value, str):
        return np.array({"inf": np.inf, "-inf": -np.inf, "nan": np.nan, "-0": -0.0}[value],
                        dtype=dtype)
    if dt.is_float(dtype):
        return np.array(dt.round_fraction(Fraction(value), dtype), dtype=dtype)
    return np.array(value, dtype=dtype)


@lru_cache(maxsize=64)
def named_value(name: str, dtype: str):
    from .ops import OPS
    with mp.workprec(256):
        v = OPS[name].mp_fn()
    return np.array(round_mpf(v, dtype), dtype=dtype)


# --- the mpmath oracle ------------------------------------------------------------------

def oracle(expr: Expr, env=None, prec: int = 128) -> np.ndarray:
    """Real-number value of `expr` at each point, as an object array of mpf (or int/bool)."""
    expr = concretize(expr) if expr.is_weak else expr
    with mp.workprec(prec):
        values = _leaf_arrays(expr, env, _mp_input)
        for node in expr.toposort():
            if node not in values:
                values[node] = _mp_node(node, [values[a] for a in node.args])
        return values[expr]


def _mp_scalar(x, dtype):
    if dt.is_float(dtype):
        return mp.mpf(float(x))  # exact: every binary64 is an mpf
    return bool(x) if dtype == "bool" else int(x)


def _mp_input(v: Expr, value):
    a = _input_array(v, value)
    with np.errstate(all="ignore"):
        if a.ndim == 0:
            return np.array(_mp_scalar(a, v.dtype), dtype=object)
        return np.frompyfunc(lambda x: _mp_scalar(x, v.dtype), 1, 1)(a)


def _wrap(x, dtype):
    if dt.is_int(dtype):
        bits = dt.BITS[dtype]
        return ((int(x) + (1 << (bits - 1))) % (1 << bits)) - (1 << (bits - 1))
    if dtype == "bool":
        return bool(x)
    return x


def _mp_node(node: Expr, args):
    o = node.spec
    if node.op == "const":
        v = node.attr
        if isinstance(v, str):
            return np.array({"inf": mp.inf, "-inf": -mp.inf, "nan": mp.nan, "-0": mp.mpf(0)}[v],
                            dtype=object)
        return np.array(mp.mpf(v.numerator) / v.denominator if isinstance(v, Fraction) else v,
                        dtype=object)
    if o.group == "const":
        return np.array(o.mp_fn(), dtype=object)
    if o.group == "reduce":
        return _mp_reduce(node, args[0])
    if o.group == "convert":
        fn = _mp_cast if node.op == "cast" else _mp_bitcast
        src = node.args[0].dtype
        return np.frompyfunc(lambda x: fn(x, src, node.attr), 1, 1)(args[0])
    if node.op == "where":  # a condition array picks per element
        return np.where(np.asarray(args[0], dtype=bool), args[1], args[2])
    out = np.frompyfunc(o.mp_fn, o.arity, 1)(*args)
    if node.dtype != "float32" and node.dtype != "float64":
        out = np.frompyfunc(lambda x: _wrap(x, node.dtype), 1, 1)(out)
    return out


def _mp_cast(x, src, to):
    if dt.is_float(to):
        return mp.mpf(x) if not isinstance(x, bool) else mp.mpf(int(x))
    if to == "bool":
        return bool(x != 0)
    if isinstance(x, mp.mpf) and not mp.isfinite(x):  # no integer meaning: do what NumPy does
        with np.errstate(all="ignore"):
            return int(np.array(float(x)).astype(to))
    return _wrap(int(mp.floor(x) if x >= 0 else mp.ceil(x)), to)


def _mp_bitcast(x, src, to):
    if dt.is_float(src):
        bits = np.array(round_mpf(x, src), dtype=src).view(to)
        return int(bits)
    return mp.mpf(float(np.array(int(x), dtype=src).view(to)))


def _mp_reduce(node: Expr, x):
    axes = tuple(a + x.ndim for a in node.attr)
    if min(axes, default=0) < 0:
        raise ValueError(f"reduction over axes {node.attr} of a {x.ndim}-d array")
    count = int(np.prod([x.shape[a] for a in axes]))
    total = np.sum(x, axis=axes, keepdims=True) if node.op != "rmax" else None
    if node.op == "rsum":
        return total
    if node.op == "rmean":
        return total / count
    if node.op == "rvar":
        centered = x - total / count
        return np.sum(centered * centered, axis=axes, keepdims=True) / count
    return np.max(x, axis=axes, keepdims=True)


def round_mpf(x, dtype: str) -> float:
    """Correctly round an mpf (or int) to a float of `dtype`."""
    if isinstance(x, (bool, int)):
        return dt.round_fraction(Fraction(int(x)), dtype)
    if mp.isnan(x):
        return float("nan")
    if mp.isinf(x):
        return float(x)
    sign, man, exp, bc = x._mpf_
    _, emin, emax = dt.FORMAT[dtype]
    top = exp + bc  # |x| < 2**top: decide far overflow/underflow before building integers
    if top > emax + 2:
        return -math.inf if sign else math.inf
    if top < emin - 60:
        return -0.0 if sign else 0.0
    q = Fraction(man) * (Fraction(2) ** exp if exp >= 0 else Fraction(1, 2 ** -exp))
    return dt.round_fraction(-q if sign else q, dtype)


def exact(expr: Expr, env=None, dtype: str | None = None, prec: int = 128) -> np.ndarray:
    """The oracle's values correctly rounded to `dtype` (default: the expression's)."""
    values = oracle(expr, env, prec)
    target = dtype or (expr.dtype if not expr.is_weak else "float64")
    if dt.is_float(target):
        rounded = np.frompyfunc(lambda v: round_mpf(v, target), 1, 1)(values)
        return np.asarray(rounded, dtype=object).astype(target)
    return np.asarray(values).astype(target)
