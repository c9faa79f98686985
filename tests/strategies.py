"""Hypothesis strategies shared by the tests: random typed expressions built from the op
table, so every new op row is exercised without touching the tests."""
from __future__ import annotations

from fractions import Fraction

from hypothesis import strategies as st

from exprforge.engine.expr import Expr, const, make, named, var
from exprforge.engine.ops import OPS

FLOAT_VARS = {"float32": [var(n, "float32") for n in ("x", "y", "z")],
              "float64": [var(n, "float64") for n in ("u", "v", "w")]}
INT_VARS = [var("n", "int32"), var("m", "int32")]

ELEMENTWISE = sorted(n for n, o in OPS.items() if o.group == "elementwise")
FLOAT_OPS = sorted(n for n in ELEMENTWISE if OPS[n].tkind in ("float", "num")
                   and OPS[n].out == "T" and set(OPS[n].args) == {"T"})


def literals():
    return st.one_of(
        st.integers(-20, 20).map(const),
        st.fractions(max_denominator=64).filter(
            lambda q: _terminating(q)).map(const),
        st.sampled_from(["0.1", "-0.0", "inf", "1e-30", "0x1.8p3", "-2.5e10"]).map(const),
        st.sampled_from(["pi", "e", "ln2"]).map(named),
    )


def _terminating(q: Fraction) -> bool:
    d = q.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


@st.composite
def float_exprs(draw, dtype="float32", max_depth=5, ops=None):
    """A random float-valued Expr whose variables are all of `dtype`."""
    ops = ops or FLOAT_OPS
    leaves = st.one_of(st.sampled_from(FLOAT_VARS[dtype]), literals())

    def grow(depth):
        if depth == 0 or draw(st.integers(0, 3)) == 0:
            return draw(leaves)
        name = draw(st.sampled_from(ops))
        args = [grow(depth - 1) for _ in range(OPS[name].arity)]
        return make(name, args)

    e = grow(max_depth)
    if e.is_weak or e.dtype != dtype:
        e = make("add", (e, FLOAT_VARS[dtype][0]))
    return e


@st.composite
def any_exprs(draw, max_depth=4):
    """Random expressions over every elementwise op, including bool and int ones,
    casts and bitcasts; combinations the dtype rules refuse are skipped."""
    leaves = st.one_of(st.sampled_from(FLOAT_VARS["float32"] + FLOAT_VARS["float64"] + INT_VARS),
                       literals(), st.booleans().map(const))

    def grow(depth):
        if depth == 0 or draw(st.integers(0, 3)) == 0:
            return draw(leaves)
        kind = draw(st.integers(0, 9))
        if kind == 0:
            a = grow(depth - 1)
            to = draw(st.sampled_from(["float32", "float64", "int32", "int64"]))
            try:
                return make("cast", (a,), to)
            except (TypeError, OverflowError):  # refused as NumPy refuses them
                return a
        name = draw(st.sampled_from(ELEMENTWISE))
        args = [grow(depth - 1) for _ in range(OPS[name].arity)]
        try:
            return make(name, args)
        except (TypeError, ValueError, OverflowError):
            return args[0] if args else draw(leaves)

    return grow(max_depth)


def declarations(e: Expr) -> dict:
    return {v.name: (v.dtype, v.axes) if v.axes else v.dtype for v in e.variables()}
