"""Text -> Expr through an allowlist over Python's own AST. Nothing in the text is ever
evaluated: `ast.parse` only builds a syntax tree, and every node type we do not know
is refused with a ParseError that points at its position.

Syntax: Python expressions. ** is power; ^ & | << >> ~ are bit operations on integers
(& | ~ are also and/or/not on booleans); `a if c else b` and where(c, a, b) select;
chained comparisons work; float32(x) converts; bitcast(x, int32) reinterprets bits;
sum/mean/var/max(x, axis=...) reduce; `(t := e)` names a shared subexpression.
Literals are exact: 0.1 is one tenth until a dtype rounds it; hex floats (0x1.8p3) too.
"""
from __future__ import annotations

import ast
import difflib
import re
import sys
from fractions import Fraction

from . import dtypes as dt
from .expr import Expr, as_expr, const, make, named, reserved_names, var, NAMED_CONSTANTS
from .ops import OPS

MAX_LENGTH = 1_000_000
_AST_DEPTH = 50_000

_HEX_FLOAT = re.compile(r"(?<![\w.])0[xX](?=[0-9a-fA-F.]*[0-9a-fA-F])[0-9a-fA-F]*\.?[0-9a-fA-F]*"
                        r"[pP][+-]?[0-9]+")
_HEX_PARTS = re.compile(r"([+-]?)0[xX]([0-9a-fA-F]*)(?:\.([0-9a-fA-F]*))?[pP]([+-]?[0-9]+)\Z")

_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**",
           ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^", ast.LShift: "<<", ast.RShift: ">>"}
_CMPOPS = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}
_HINTS = {ast.Mod: "'%' is not supported; use fmod(a, b)",
          ast.FloorDiv: "'//' is not supported; use floor(a / b)",
          ast.MatMult: "'@' is not supported"}


class ParseError(ValueError):
    """Bad expression text. `pos` is the 0-based character offset of the problem."""

    def __init__(self, message: str, text: str = "", pos: int | None = None):
        self.message, self.text, self.pos = message, text, pos
        where = f" (at position {pos + 1})" if pos is not None else ""
        super().__init__(message + where)

    def caret(self) -> str:
        """The offending line with a ^ under the position."""
        if self.pos is None:
            return str(self)
        start = self.text.rfind("\n", 0, self.pos) + 1
        end = self.text.find("\n", self.pos)
        line = self.text[start:end if end >= 0 else len(self.text)]
        return f"{self}\n  {line}\n  {' ' * (self.pos - start)}^"


def hex_float(text: str) -> Fraction:
    """Exact value of a C99 hex float literal such as 0x1.8p3 or -0X1.FFFFFEP+127."""
    m = _HEX_PARTS.match(text.strip())
    if not m or not (m.group(2) or m.group(3)):
        raise ValueError(f"not a hex float: {text!r}")
    sign, whole, frac, exp = m.group(1), m.group(2), m.group(3) or "", int(m.group(4))
    mantissa = int((whole or "0") + frac, 16)
    value = Fraction(mantissa, 16 ** len(frac)) * Fraction(2) ** exp
    return -value if sign == "-" else value


def _function_table():
    """(spelling, arity) -> op name for ops callable by name, read off the op table."""
    table = {}
    for o in OPS.values():
        if o.group not in ("elementwise",):
            continue
        for spelling in (o.spelling,) + o.aliases:
            table[(spelling, o.arity)] = o.name
    return table


_FUNCTIONS = _function_table()
_REDUCTIONS = {o.spelling: o.name for o in OPS.values() if o.group == "reduce"}
_INFIX = {(o.infix, o.arity): o.name for o in OPS.values() if o.infix}


def parse(text: str, vars=None, dtype: str = "float64") -> Expr:
    """Parse expression text into an Expr.

    vars: optional {name: dtype | (dtype, axes) | var Expr} declaring variables;
    undeclared names become variables of `dtype`.
    """
    if not isinstance(text, str):
        raise ParseError(f"expected expression text, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ParseError(f"expression longer than {MAX_LENGTH} characters")
    bad = next((i for i, ch in enumerate(text) if ord(ch) > 126 or (ord(ch) < 32 and ch not in
                                                                    "\t\n\r")), None)
    if bad is not None:
        raise ParseError(f"unexpected character {text[bad]!r}", text, bad)
    if not text.strip():
        raise ParseError("empty expression", text, 0)
    try:
        dt.check(dtype)
    except TypeError as e:
        raise ParseError(str(e)) from None
    return _Converter(text, _declare(vars, dtype), dtype).run()


def _declare(vars, dtype) -> dict[str, Expr]:
    declared = {}
    for name, spec in (vars or {}).items():
        try:
            if isinstance(spec, Expr):
                if spec.op != "var" or spec.name != name:
                    raise ValueError(f"vars[{name!r}] must be the variable {name}")
                declared[name] = spec
            elif isinstance(spec, tuple):
                declared[name] = var(name, spec[0], spec[1] if len(spec) > 1 else None)
            else:
                declared[name] = var(name, spec or dtype)
        except (TypeError, ValueError) as e:
            raise ParseError(f"bad declaration of {name!r}: {e}") from None
    return declared


class _Converter:
    def __init__(self, text: str, declared: dict, dtype: str):
        self.text, self.declared, self.dtype = text, declared, dtype
        self.hex: dict[str, Fraction] = {}
        self.bound: dict[str, Expr] = {}
        self.line_starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]

    # --- positions and errors ----------------------------------------------------------
    def pos(self, node) -> int | None:
        line = getattr(node, "lineno", None)
        return None if line is None else self.offset(line, node.col_offset)

    def offset(self, line: int, col: int) -> int:
        """Character offset in the user's text of (line, col) in the wrapped source."""
        if line > len(self.line_starts):  # the closing parenthesis we added
            return len(self.text.rstrip())
        if line == 1:
            col -= 1  # the opening parenthesis we added
        return max(0, min(self.line_starts[line - 1] + col, len(self.text)))

    def error(self, message: str, node=None, pos=None):
        return ParseError(message, self.text, self.pos(node) if node is not None else pos)

    # --- driver ------------------------------------------------------------------------
    def run(self) -> Expr:
        # the parentheses allow leading blanks and line breaks; pos() maps offsets back
        source = "(" + _HEX_FLOAT.sub(self._hex_placeholder, self.text) + "\n)"
        limit = sys.getrecursionlimit()
        try:
            # CPython builds the AST recursively: a 3000-term sum needs a higher limit.
            # 50000 stays well inside the C stack (it overflows near 300000 here).
            sys.setrecursionlimit(max(limit, _AST_DEPTH))
            tree = ast.parse(source, mode="eval")
        except SyntaxError as e:
            pos = None
            if e.lineno is not None and e.offset:
                pos = self.offset(e.lineno, e.offset - 1)
            raise ParseError(f"syntax error: {e.msg}", self.text, pos) from None
        except RecursionError:
            raise ParseError(f"expression nests deeper than {_AST_DEPTH}", self.text) from None
        except (ValueError, MemoryError, OverflowError) as e:
            raise ParseError(f"cannot parse: {type(e).__name__}: {e}", self.text) from None
        finally:
            sys.setrecursionlimit(limit)
        self.source = source
        return self.convert(tree.body)

    def _hex_placeholder(self, m) -> str:
        name = f"_h{len(self.hex)}"
        if len(name) > len(m.group(0)):
            raise ParseError("too many hex float literals", self.text, m.start())
        name = name.ljust(len(m.group(0)), "_")  # same length keeps every position true
        self.hex[name] = hex_float(m.group(0))
        return name

    def convert(self, root) -> Expr:
        """Post-order over the AST with an explicit stack (no recursion limit)."""
        done: dict[int, Expr] = {}
        stack = [(root, False)]
        while stack:
            node, ready = stack.pop()
            if ready:
                done[id(node)] = self.build(node, [done[id(c)] for c in self.children(node)])
                continue
            stack.append((node, True))
            for child in reversed(self.children(node)):
                stack.append((child, False))
        return done[id(root)]

    def children(self, node) -> list:
        t = type(node)
        if t is ast.BinOp:
            return [node.left, node.right]
        if t is ast.UnaryOp:
            return [node.operand]
        if t is ast.BoolOp:
            return list(node.values)
        if t is ast.Compare:
            return [node.left, *node.comparators]
        if t is ast.IfExp:
            return [node.body, node.test, node.orelse]  # textual order
        if t is ast.Call:
            if not isinstance(node.func, ast.Name):
                raise self.error("only plain function names can be called", node)
            if node.func.id == "bitcast":
                return list(node.args[:1])
            return list(node.args)
        if t is ast.NamedExpr:
            return [node.value]
        if t in (ast.Constant, ast.Name):
            return []
        raise self.error(f"{_describe(node)} is not allowed in an expression", node)

    # --- building ------------------------------------------------------------------------
    def build(self, node, args: list[Expr]) -> Expr:
        try:
            return self._build(node, args)
        except ParseError:
            raise
        except (TypeError, ValueError, OverflowError, KeyError, ZeroDivisionError) as e:
            raise self.error(str(e).strip("'\""), node) from None

    def _build(self, node, args):
        t = type(node)
        if t is ast.Constant:
            return self.literal(node)
        if t is ast.Name:
            return self.name(node)
        if t is ast.BinOp:
            return self.binop(node, *args)
        if t is ast.UnaryOp:
            if isinstance(node.op, ast.UAdd):
                return args[0]
            if isinstance(node.op, ast.USub):
                return make("neg", args)
            if isinstance(node.op, ast.Not):
                return make("not", args)
            return ~args[0]
        if t is ast.BoolOp:
            name = "and" if isinstance(node.op, ast.And) else "or"
            out = args[0]
            for a in args[1:]:
                out = make(name, (out, a))
            return out
        if t is ast.Compare:
            out = None
            for left, cmp, right in zip(args, node.ops, args[1:]):
                symbol = _CMPOPS.get(type(cmp))
                if symbol is None:
                    raise self.error(f"comparison {type(cmp).__name__} is not allowed", node)
                term = make(_INFIX[(symbol, 2)], (left, right))
                out = term if out is None else make("and", (out, term))
            return out
        if t is ast.IfExp:
            body, test, orelse = args
            return make("where", (test, body, orelse))
        if t is ast.NamedExpr:
            name = node.target.id
            if name in self.declared or name in reserved_names() or name.startswith("_"):
                raise self.error(f"cannot bind {name!r}: it is a variable or reserved name", node)
            self.bound[name] = args[0]
            return args[0]
        if t is ast.Call:
            return self.call(node, args)
        raise self.error(f"{_describe(node)} is not allowed in an expression", node)

    def literal(self, node) -> Expr:
        v = node.value
        if isinstance(v, bool):
            return const(v)
        if isinstance(v, int):
            return const(v)
        if isinstance(v, float):
            segment = ast.get_source_segment(self.source, node)
            return const(segment)  # exact decimal text, not the rounded double
        raise self.error(f"{type(v).__name__} literals are not allowed", node)

    def name(self, node) -> Expr:
        n = node.id
        if n in self.hex:
            return const(self.hex[n])
        if n in self.bound:
            return self.bound[n]
        if n in ("inf", "nan"):
            return const(n)
        if n in NAMED_CONSTANTS:
            return named(n)
        if n in self.declared:
            return self.declared[n]
        if n in dt.DTYPES:
            raise self.error(f"{n} is a dtype; convert with {n}(x)", node)
        if n.startswith("_"):
            raise self.error(f"names may not start with '_': {n}", node)
        if n in reserved_names():
            raise self.error(f"{n} is a function; call it, e.g. {n}(x)", node)
        return var(n, self.dtype)

    def binop(self, node, left, right) -> Expr:
        symbol = _BINOPS.get(type(node.op))
        if symbol is None:
            raise self.error(_HINTS.get(type(node.op), "operator not allowed"), node)
        if symbol in ("&", "|"):
            return (left & right) if symbol == "&" else (left | right)
        if symbol == "^" and (dt.is_float(left.dtype) or dt.is_float(right.dtype)
                              or "~f" in (left.dtype, right.dtype)):
            raise self.error("'^' is bitwise xor on integers; use ** for powers", node)
        return make(_INFIX[(symbol, 2)], (left, right))

    def call(self, node, args) -> Expr:
        fname = node.func.id
        kw = {k.arg: k.value for k in node.keywords}
        if any(k is None for k in kw) or any(isinstance(a, ast.Starred) for a in node.args):
            raise self.error("* and ** arguments are not allowed", node)
        if fname in dt.DTYPES:
            self._arity(node, fname, args, 1, kw)
            return make("cast", args, fname)
        if fname == "bitcast":
            if len(node.args) != 2 or kw:
                raise self.error("bitcast takes (x, dtype), e.g. bitcast(x, int32)", node)
            target = node.args[1]
            to = target.id if isinstance(target, ast.Name) else getattr(target, "value", None)
            if to not in dt.DTYPES:
                raise self.error("bitcast's second argument must be a dtype name", target)
            return make("bitcast", args, to)
        reduction = _REDUCTIONS.get(fname)
        if reduction and (len(args) == 1 or "axis" in kw):
            if set(kw) - {"axis"}:
                raise self.error(f"{fname} takes only the keyword axis=", node)
            axis = self._axis(kw["axis"]) if "axis" in kw else -1
            self._arity(node, fname, args, 1, {})
            return make(reduction, args, axis)
        if kw:
            raise self.error(f"{fname} takes no keyword arguments", node)
        if fname in NAMED_CONSTANTS:
            raise self.error(f"{fname} is a constant, not a function", node)
        op = _FUNCTIONS.get((fname, len(args)))
        if op is None:
            arities = sorted(a for (s, a) in _FUNCTIONS if s == fname)
            if arities:
                raise self.error(f"{fname} takes {' or '.join(map(str, arities))} argument(s),"
                                 f" got {len(args)}", node)
            close = difflib.get_close_matches(fname, {s for s, _ in _FUNCTIONS}, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise self.error(f"unknown function {fname!r}{hint}", node.func)
        return make(op, args)

    def _arity(self, node, fname, args, n, kw):
        if len(args) != n or kw:
            raise self.error(f"{fname} takes {n} argument(s)", node)

    def _axis(self, node):
        def one(n):
            if isinstance(n, ast.Constant) and isinstance(n.value, (int, str)) \
                    and not isinstance(n.value, bool):
                return n.value
            if isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.USub) and \
                    isinstance(n.operand, ast.Constant) and type(n.operand.value) is int:
                return -n.operand.value
            if isinstance(n, ast.Name):
                return n.id
            raise self.error("axis must be an int, a name or a tuple of them", n)
        if isinstance(node, ast.Tuple):
            return tuple(one(e) for e in node.elts)
        return one(node)


def _describe(node) -> str:
    names = {ast.Attribute: "attribute access", ast.Subscript: "indexing",
             ast.Lambda: "lambda", ast.ListComp: "a comprehension", ast.List: "a list",
             ast.Dict: "a dict", ast.Tuple: "a tuple", ast.Starred: "a starred argument",
             ast.JoinedStr: "an f-string", ast.Await: "await", ast.Yield: "yield"}
    return names.get(type(node), type(node).__name__)


__all__ = ["parse", "ParseError", "hex_float", "as_expr"]
