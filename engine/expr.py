"""Expr: the one IR node. Immutable and hash-consed: structurally equal nodes are the
same object, so an expression with shared parts is a DAG and `a is b` is structural
equality. `==` is that identity (so Exprs work as dict keys); comparisons that build
nodes are `<`, `<=`, `>`, `>=` and the methods `.eq()` / `.ne()`.

Every node has a dtype. Python literals are *weak* ("~f", "~i") and take the dtype of
what they meet (NumPy's NEP 50); where two strong dtypes meet, an explicit `cast`
node is inserted, so each node's arguments carry exactly the dtypes its op expects.
"""
from __future__ import annotations

import hashlib
import keyword
import re
import threading
import weakref
from fractions import Fraction
from functools import cache
from numbers import Integral, Real

import numpy as np

from . import dtypes as dt
from .ops import OPS, op as get_op, infer

_INTERN: "weakref.WeakValueDictionary[tuple, Expr]" = weakref.WeakValueDictionary()
_LOCK = threading.Lock()

NAMED_CONSTANTS = tuple(n for n, o in OPS.items() if o.group == "const")
_DECIMAL_EXPONENT_LIMIT = 5000  # |exponent| beyond which a decimal is inf or zero in every dtype
SPECIAL_FLOATS = ("inf", "-inf", "nan", "-0")  # Fraction has no signed zero
_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")


@cache
def reserved_names() -> frozenset:
    """Names a variable may not take: op spellings and aliases, constants, dtypes, and
    Python keywords (the text form is Python syntax)."""
    names = {o.spelling for o in OPS.values()} | set(OPS) | set(dt.DTYPES)
    names |= {a for o in OPS.values() for a in o.aliases} | set(keyword.kwlist)
    return frozenset(names | {"inf", "nan", "bitcast", "where"})


class Expr:
    __slots__ = ("op", "args", "attr", "dtype", "_hash", "__weakref__")

    op: str
    args: tuple
    attr: object
    dtype: str

    def __new__(cls, *a, **k):
        raise TypeError("build Exprs with exprforge.engine.expr.make / var / const, or parse")

    # --- identity, hashing, pickling ---------------------------------------------
    def __hash__(self):
        return self._hash

    def __reduce__(self):
        return (from_nodes, (to_nodes(self),))

    def __bool__(self):
        raise TypeError("an Expr has no truth value; use where(cond, a, b) for selection")

    # --- structure ----------------------------------------------------------------
    @property
    def spec(self):
        return get_op(self.op)

    @property
    def is_leaf(self) -> bool:
        return not self.args

    @property
    def is_weak(self) -> bool:
        return self.dtype.startswith("~")

    @property
    def name(self) -> str:
        if self.op != "var":
            raise AttributeError(f"{self.op} node has no name")
        return self.attr[0]

    @property
    def axes(self):
        """Declared axis names of a variable (None when not declared)."""
        return self.attr[1] if self.op == "var" else None

    @property
    def value(self):
        """Exact value of a literal: Fraction for floats, int, bool, or 'inf'/'-inf'/'nan'."""
        if self.op != "const":
            raise AttributeError(f"{self.op} node has no literal value")
        return self.attr

    def toposort(self) -> list["Expr"]:
        """Unique nodes in post-order (arguments before users), left to right. Iterative."""
        order, seen, stack = [], set(), [(self, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
                continue
            if id(node) in seen:
                continue
            seen.add(id(node))
            stack.append((node, True))
            for a in reversed(node.args):
                if id(a) not in seen:
                    stack.append((a, False))
        return order

    def node_count(self) -> int:
        """Number of distinct nodes (shared subexpressions count once)."""
        return len(self.toposort())

    def tree_size(self) -> int:
        """Number of nodes if every shared subexpression were written out again."""
        size = {}
        for n in self.toposort():
            size[n] = 1 + sum(size[a] for a in n.args)
        return size[self]

    def depth(self) -> int:
        d = {}
        for n in self.toposort():
            d[n] = 1 + max((d[a] for a in n.args), default=0)
        return d[self]

    def variables(self) -> list["Expr"]:
        """Variable nodes, sorted by name."""
        return sorted((n for n in self.toposort() if n.op == "var"), key=lambda v: v.name)

    def var_names(self) -> list[str]:
        return [v.name for v in self.variables()]

    def subs(self, mapping) -> "Expr":
        """Substitute variables (by name or node) or any subexpression (by node)."""
        table = {}
        for k, v in mapping.items():
            v = as_expr(v)
            if isinstance(k, str):
                for node in self.variables():
                    if node.name == k:
                        table[node] = v
            else:
                table[k] = v
        return rebuild(self, lambda node, args: table.get(node) if node in table else None)

    def digest(self) -> str:
        """Stable content hash (sha256 hex) of the DAG, the same in every process."""
        h = hashlib.sha256()
        for op, args, attr, dtype in to_nodes(self):
            h.update(repr((op, args, _attr_key(attr), dtype)).encode())
        return h.hexdigest()

    # --- printing -------------------------------------------------------------------
    def __repr__(self):
        from .printing import to_repr
        return to_repr(self)

    def __str__(self):
        from .printing import to_text
        return to_text(self)

    # --- operator overloading ---------------------------------------------------------
    def __add__(self, o): return make("add", (self, o))
    def __radd__(self, o): return make("add", (o, self))
    def __sub__(self, o): return make("sub", (self, o))
    def __rsub__(self, o): return make("sub", (o, self))
    def __mul__(self, o): return make("mul", (self, o))
    def __rmul__(self, o): return make("mul", (o, self))
    def __truediv__(self, o): return make("div", (self, o))
    def __rtruediv__(self, o): return make("div", (o, self))
    def __pow__(self, o): return make("pow", (self, o))
    def __rpow__(self, o): return make("pow", (o, self))
    def __neg__(self): return make("neg", (self,))
    def __pos__(self): return self
    def __abs__(self): return make("abs", (self,))
    def __lt__(self, o): return make("lt", (self, o))
    def __le__(self, o): return make("le", (self, o))
    def __gt__(self, o): return make("gt", (self, o))
    def __ge__(self, o): return make("ge", (self, o))
    def __and__(self, o): return _logic_or_bits("and", "bitand", self, o)
    def __rand__(self, o): return _logic_or_bits("and", "bitand", o, self)
    def __or__(self, o): return _logic_or_bits("or", "bitor", self, o)
    def __ror__(self, o): return _logic_or_bits("or", "bitor", o, self)
    def __xor__(self, o): return make("bitxor", (self, o))
    def __rxor__(self, o): return make("bitxor", (o, self))
    def __lshift__(self, o): return make("shl", (self, o))
    def __rlshift__(self, o): return make("shl", (o, self))
    def __rshift__(self, o): return make("shr", (self, o))
    def __rrshift__(self, o): return make("shr", (o, self))

    def __invert__(self):
        return make("not" if self.dtype == "bool" else "bitnot", (self,))

    def eq(self, o): return make("eq", (self, o))
    def ne(self, o): return make("ne", (self, o))
    def cast(self, to): return make("cast", (self,), to)
    def bitcast(self, to): return make("bitcast", (self,), to)
    def sum(self, axis=-1): return make("rsum", (self,), axis)
    def mean(self, axis=-1): return make("rmean", (self,), axis)
    def var(self, axis=-1): return make("rvar", (self,), axis)
    def max(self, axis=-1): return make("rmax", (self,), axis)


def _logic_or_bits(logic, bits, a, b):
    a, b = as_expr(a), as_expr(b)
    return make(logic if a.dtype == b.dtype == "bool" else bits, (a, b))


def _attr_key(attr):
    if isinstance(attr, Fraction):
        return ("Q", attr.numerator, attr.denominator)
    return attr


# --- interning ---------------------------------------------------------------------------

def _intern(op: str, args: tuple, attr, dtype: str) -> Expr:
    key = (op, args, _attr_key(attr), dtype)
    with _LOCK:
        node = _INTERN.get(key)
        if node is None:
            node = object.__new__(Expr)
            node.op, node.args, node.attr, node.dtype = op, args, attr, dtype
            node._hash = hash(key)
            _INTERN[key] = node
        return node


# --- leaves ------------------------------------------------------------------------------

def var(name: str, dtype: str = "float64", axes=None) -> Expr:
    """A typed variable. `axes` optionally names its dimensions, e.g. ("N", "C", "H", "W")."""
    if not isinstance(name, str) or not _IDENT.match(name):
        raise ValueError(f"invalid variable name {name!r}: use letters, digits and _, "
                         "starting with a letter")
    if name in reserved_names():
        raise ValueError(f"{name!r} is a reserved name (an op, constant or dtype)")
    dt.check(dtype)
    if axes is not None:
        axes = tuple(axes)
        if not all(isinstance(a, str) and a for a in axes) or len(set(axes)) != len(axes):
            raise ValueError(f"axes must be distinct non-empty names, got {axes!r}")
    return _intern("var", (), (name, axes), dtype)


def _exact(value):
    """(exact value, weak kind) of a Python/NumPy number or literal text."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value), "bool"
    if isinstance(value, Integral):
        return int(value), "~i"
    if isinstance(value, str):
        value = value.strip().lower()
        if value in ("inf", "+inf", "infinity"):
            return "inf", "~f"
        if value in ("-inf", "-infinity"):
            return "-inf", "~f"
        if value == "nan":
            return "nan", "~f"
        if value in ("-0", "-0.0", "-0e0"):
            return "-0", "~f"
        if value.lstrip("+-").startswith("0x"):
            from .parse import hex_float
            return hex_float(value), "~f"
        text = value.replace("_", "")
        mantissa, _, exponent = text.partition("e")
        if exponent.lstrip("+-").isdigit() and abs(int(exponent)) > _DECIMAL_EXPONENT_LIMIT:
            # past every float: the exact value would be a huge integer and only round to
            # inf or zero anyway (1e99999999999 would otherwise take forever to build)
            negative = mantissa.startswith("-")
            if float(mantissa or "0") == 0:
                return ("-0" if negative else Fraction(0)), "~f"
            if int(exponent) > 0:
                return ("-inf" if negative else "inf"), "~f"
            return ("-0" if negative else Fraction(0)), "~f"
        return _exact(Fraction(text))
    if isinstance(value, Fraction):
        d = value.denominator
        while d % 2 == 0:
            d //= 2
        while d % 5 == 0:
            d //= 5
        if d != 1:
            raise ValueError(f"{value} has no finite decimal form; write it as a division")
        return value, "~f"
    if isinstance(value, Real):
        f = float(value)
        if f != f:
            return "nan", "~f"
        if f in (float("inf"), float("-inf")):
            return ("inf" if f > 0 else "-inf"), "~f"
        if f == 0 and np.signbit(f):
            return "-0", "~f"
        return Fraction(f), "~f"
    raise TypeError(f"cannot make a literal from {type(value).__name__}")


def const(value, dtype: str | None = None) -> Expr:
    """An exact literal. With no dtype it is weak: it adopts the dtype of what it meets.

    Floats are held exactly (Fraction; 0.1 given as text stays one tenth, not the
    double nearest it); NumPy scalars keep their dtype.
    """
    if dtype is None and isinstance(value, np.generic) and not isinstance(value, np.bool_):
        dtype = str(value.dtype)
    v, kind = _exact(value)
    target = dtype if dtype is not None else kind
    if target != kind:
        dt.check(target)
        if dt.is_float(target):
            v = Fraction(v) if isinstance(v, (int, bool)) else v
        elif dt.is_int(target):
            if isinstance(v, str) or (isinstance(v, Fraction) and v.denominator != 1):
                raise TypeError(f"literal {_show(v)} is not an integer, cannot be {target}")
            v = int(v)
            lo, hi = -(1 << (dt.BITS[target] - 1)), (1 << (dt.BITS[target] - 1)) - 1
            if not lo <= v <= hi:
                raise OverflowError(f"literal {v} does not fit in {target}")
        else:  # bool
            if v not in (0, 1):
                raise TypeError(f"literal {_show(v)} is not a bool")
            v = bool(v)
    if isinstance(v, int) and not isinstance(v, bool) and target in ("~f",) + dt.FLOATS:
        v = Fraction(v)
    return _intern("const", (), v, target)


def _show(v):
    return str(float(v)) if isinstance(v, Fraction) else str(v)


def named(name: str, dtype: str = "~f") -> Expr:
    """A named constant (pi, e, ln2), weak unless a float dtype is given."""
    if name not in NAMED_CONSTANTS:
        raise ValueError(f"unknown constant {name!r}; known: {', '.join(NAMED_CONSTANTS)}")
    if dtype != "~f" and not dt.is_float(dtype):
        raise TypeError(f"constant {name} must be a float, not {dtype}")
    return _intern(name, (), None, dtype)


def as_expr(x) -> Expr:
    return x if isinstance(x, Expr) else const(x)


# --- building nodes ----------------------------------------------------------------------

_BOOL_FORMS = {"bitand": "and", "bitor": "or", "bitnot": "not"}


def make(opname: str, args=(), attr=None) -> Expr:
    """Build (or find) the node opname(args) with dtype inference, casts and checks."""
    o = get_op(opname)
    if o.group == "leaf":
        raise TypeError("use var() or const() for leaves")
    if o.group == "const":
        if args:
            raise TypeError(f"{opname} takes no arguments")
        return named(opname, attr or "~f")
    args = tuple(as_expr(a) for a in args)
    if opname in _BOOL_FORMS and args and all(a.dtype == "bool" for a in args):
        opname, o = _BOOL_FORMS[opname], get_op(_BOOL_FORMS[opname])  # one node per meaning
    if opname == "neg" and len(args) == 1 and args[0].op == "const":
        return _negated_literal(args[0])  # one node for -0.5 however it was written
    to = attr if o.group == "convert" else None
    if o.group == "convert" and args and args[0].is_weak and to is not None:
        return _concretize(args[0], dt.check(to), explicit=True)  # float32(0.5) is a literal
    targets, out = infer(o, tuple(a.dtype for a in args), to=to)
    fixed = []
    for a, want in zip(args, targets):
        if want is None or want.startswith("~"):
            if a.is_weak and not out.startswith("~"):  # a strong result from weak operands:
                want = "float64" if want == "~f" else "int64"  # the slot's default dtype
            else:
                fixed.append(a)
                continue
        fixed.append(_coerce(a, want))
    if o.group == "reduce":
        attr = _resolve_axes(fixed[0], attr)
    elif o.group == "convert":
        attr = to
        if fixed[0].dtype == to and opname == "cast":
            return fixed[0]
    elif attr is not None:
        raise TypeError(f"{opname} takes no attribute")
    return _intern(opname, tuple(fixed), attr, out)


def _negated_literal(c: Expr) -> Expr:
    v = c.attr
    if isinstance(v, bool):
        raise TypeError("cannot negate a bool")
    if isinstance(v, str):
        v = {"inf": "-inf", "-inf": "inf", "nan": "nan", "-0": Fraction(0)}[v]
    elif isinstance(v, Fraction):
        v = "-0" if v == 0 else -v
    elif dt.is_int(c.dtype):  # wraps around like the integer op would
        bits = dt.BITS[c.dtype]
        v = ((-v + (1 << (bits - 1))) % (1 << bits)) - (1 << (bits - 1))
    else:
        v = -v
    return const(v, None if c.is_weak else c.dtype)


def _coerce(a: Expr, want: str) -> Expr:
    if a.dtype == want:
        return a
    if a.is_weak:
        return _concretize(a, want)
    return _intern("cast", (a,), want, want)


def _concretize(node: Expr, dtype: str, explicit: bool = False) -> Expr:
    """Give a weak (literal-only) subtree a concrete dtype."""
    if not node.is_weak:
        return node
    if node.op == "const":
        if node.dtype == "~f" and not dt.is_float(dtype) and not explicit:
            raise TypeError(f"float literal {_show(node.attr)} used as {dtype}")
        if explicit and dt.is_int(dtype) and isinstance(node.attr, Fraction):
            return const(int(node.attr), dtype)  # int32(2.7) truncates like a cast
        return const(node.attr, dtype)
    if node.spec.group == "const":
        if not dt.is_float(dtype):
            if explicit:
                return make("cast", (named(node.op, "float64"),), dtype)
            raise TypeError(f"constant {node.op} used as {dtype}")
        return named(node.op, dtype)
    o = node.spec
    if o.out != "T":
        raise TypeError(f"cannot give {node.op} the dtype {dtype}")
    if dt.is_int(dtype) and node.dtype == "~f":
        if explicit:
            return make("cast", (_concretize(node, "float64"),), dtype)
        raise TypeError(f"float-valued literal expression used as {dtype}")
    new_args = []
    for letter, a in zip(o.args, node.args):
        slot = {"T": dtype, "I": "int32", "B": "bool"}[letter]
        new_args.append(_concretize(a, slot) if a.is_weak else a)
    return make(node.op, new_args, node.attr)


def concretize(node: Expr, dtype: str = "float64") -> Expr:
    """The expression with its weak (all-literal) root given `dtype`; strong ones unchanged."""
    return _concretize(node, dtype, explicit=True) if node.is_weak else node


def _resolve_axes(arg: Expr, axis) -> tuple:
    """Normalize reduction axes to a sorted tuple of negative positions (keepdims)."""
    if axis is None:
        raise TypeError("reductions need axis=: an int, a name, or a tuple of them")
    axes = axis if isinstance(axis, tuple) else (axis,)
    names = axis_names(arg)
    out = set()
    for a in axes:
        if isinstance(a, (int, np.integer)) and not isinstance(a, bool):
            a = int(a)
            if names is not None and a >= 0:
                a -= len(names)
            if a >= 0:
                raise ValueError(f"axis {a}: use negative axes (counted from the last) "
                                 "unless the variables declare axis names")
            out.add(a)
        elif isinstance(a, str):
            if names is None or a not in names:
                raise ValueError(f"axis {a!r} is not among the declared axes {names}")
            out.add(names.index(a) - len(names))
        else:
            raise TypeError(f"axis must be an int or a name, got {a!r}")
    if not out:
        raise ValueError("reduction over no axes")
    return tuple(sorted(out))


def axis_names(e: Expr):
    """Broadcast axis names of an expression (right-aligned merge of its variables')."""
    result = None
    for v in e.variables():
        if v.axes is None:
            continue
        if result is None:
            result = v.axes
            continue
        longer, shorter = (result, v.axes) if len(result) >= len(v.axes) else (v.axes, result)
        if longer[len(longer) - len(shorter):] != shorter:
            raise ValueError(f"variables have conflicting axes {result} and {v.axes}")
        result = longer
    return result


def rebuild(root: Expr, visit) -> Expr:
    """Rebuild bottom-up: visit(node, new_args) returns a replacement node or None."""
    new = {}
    for node in root.toposort():
        args = tuple(new[a] for a in node.args)
        replaced = visit(node, args)
        if replaced is not None:
            new[node] = replaced
        elif all(x is y for x, y in zip(args, node.args)):
            new[node] = node
        else:
            new[node] = make(node.op, args, node.attr)
    return new[root]


def retype(root: Expr, dtype: str) -> Expr:
    """Switch every float leaf and float cast target to `dtype` (float32 <-> float64)."""
    if not dt.is_float(dtype):
        raise TypeError(f"retype takes a float dtype, got {dtype}")

    def visit(node, args):
        if node.op == "var" and dt.is_float(node.dtype):
            return var(node.name, dtype, node.axes)
        if node.op == "const" and dt.is_float(node.dtype):
            return const(node.attr, dtype)
        if node.spec.group == "const" and dt.is_float(node.dtype):
            return named(node.op, dtype)
        if node.op == "cast" and dt.is_float(node.attr):
            return make("cast", args, dtype)
        return None
    return rebuild(root, visit)


# --- flat serialization (pickle, digest) -------------------------------------------------

def to_nodes(root: Expr) -> list[tuple]:
    order = root.toposort()
    index = {n: i for i, n in enumerate(order)}
    return [(n.op, tuple(index[a] for a in n.args), n.attr, n.dtype) for n in order]


def from_nodes(nodes: list[tuple]) -> Expr:
    built = []
    for op, args, attr, dtype in nodes:
        built.append(_intern(op, tuple(built[i] for i in args), attr, dtype))
    return built[-1]


class _Builders:
    """f.exp(x), f.where(c, a, b), f.pi(): one builder per op, read off the op table."""

    def __getattr__(self, name):
        if name not in OPS:
            raise AttributeError(name)
        return lambda *args, **kw: make(name, args, kw.get("to", kw.get("axis")))


F = _Builders()
