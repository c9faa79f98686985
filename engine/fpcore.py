"""FPCore reader: FPBench's s-expression benchmark format -> engine Exprs.

    read_fpcores(text) -> [FPCore]       read_fpcore(text) -> FPCore (exactly one)
    read_fpcores_lenient(text) -> ([FPCore], [(core name or index, message)])
    load_fpcore_file(path) -> [FPCore]

Supported: (FPCore [ident] (args) :prop value ... body) with numbers (decimal, n/d,
hex, (digits m e b)), the ops of the op table that have an FPCore spelling, n-ary
comparisons (chained with and; != pairwise), n-ary and/or, if, let (parallel), let*
(sequential), PI E LN2 PI_2 PI_4 TRUE FALSE INFINITY NAN, and (! ...) annotations that
keep the core's precision. Everything else (loops, tensors, cast, other ops and
constants, other precisions) raises FPCoreError naming the construct and the core.
Nothing is evaluated: the text is tokenized, read into lists, and built node by node.
"""
from __future__ import annotations

import keyword
import math
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

from .evaluate import evaluate
from .expr import Expr, concretize, const, make, named, reserved_names, var
from .ops import OPS
from .parse import ParseError, hex_float


class FPCoreError(ParseError):
    """Malformed or unsupported FPCore text; `pos` points at the offending form."""


@dataclass(frozen=True)
class FPCore:
    name: str | None                 # :name, else the core's identifier, else None
    args: tuple[str, ...]            # IR variable names, in argument order
    arg_names: tuple[str, ...]       # the FPCore's own argument names
    expr: Expr
    pre: Expr | None                 # the whole :pre, dtype bool
    domain: dict                     # {IR name: (lo, hi)}: the variable-vs-constant bounds
                                     # in :pre's top-level and, rounded as dtype rounds them
    dtype: str = "float64"
    properties: dict = field(default_factory=dict)  # other :key -> string or raw text

    @property
    def name_map(self) -> dict[str, str]:
        """Original argument name -> IR variable name."""
        return dict(zip(self.arg_names, self.args))


# --- FPCore spellings, read off the op table -------------------------------------------

_OPS = {(o.fpcore, o.arity): o.name for o in OPS.values() if o.fpcore and o.group != "const"}
_ARITIES: dict[str, list[int]] = {}
for _name, _arity in _OPS:
    _ARITIES.setdefault(_name, []).append(_arity)
_COMPARISONS = {o.fpcore for o in OPS.values() if o.fpcore and o.out == "B" and o.args == "TT"}
_CONNECTIVES = {o.fpcore for o in OPS.values()
                if o.fpcore and o.args == "BB" and "associative" in o.props}
_CONSTANTS = {o.fpcore: (lambda n=o.name: named(n)) for o in OPS.values() if o.group == "const"}
_CONSTANTS.update({"PI_2": lambda: make("div", (named("pi"), 2)),
                   "PI_4": lambda: make("div", (named("pi"), 4)),
                   "TRUE": lambda: const(True), "FALSE": lambda: const(False),
                   "INFINITY": lambda: const("inf"), "NAN": lambda: const("nan")})
_PRECISIONS = {"binary64": "float64", "binary32": "float32"}
_ORDER = {"<": ((0, 1),), "<=": ((0, 1),), ">": ((1, 0),), ">=": ((1, 0),),
          "==": ((0, 1), (1, 0))}  # (op a b) bounds (a, b)[i] <= (a, b)[j] for each (i, j)

# --- reading s-expressions ---------------------------------------------------------------

_TOKEN = re.compile(r'(?P<space>\s+|;[^\n]*)|(?P<open>[(\[])|(?P<close>[)\]])'
                    r'|(?P<str>"(?:[^"\\]|\\.)*")|(?P<atom>[^\s()\[\]";]+)')
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE]([+-]?\d+))?\Z")
_RATIONAL = re.compile(r"([+-]?\d+)/(\d+)\Z")
_HEX = re.compile(r"[+-]?0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?\d+)?\Z")
_NUMBERISH = re.compile(r"[+-]?\.?\d")
_MAX_EXPONENT = 100_000


class Atom(NamedTuple):
    kind: str   # "sym", "num" or "str"
    text: str   # the token (a string's decoded value)
    pos: int
    end: int


class SList(list):
    """A parenthesized list; pos and end are offsets of its brackets."""
    pos: int = 0
    end: int = 0


def _forms(text: str):
    """Yield the top-level data of `text` one at a time (iteratively: no recursion)."""
    if not isinstance(text, str):
        raise FPCoreError(f"expected FPCore text, got {type(text).__name__}")
    stack: list[SList] = []
    expected = 0
    for m in _TOKEN.finditer(text):
        kind, tok, pos = m.lastgroup, m.group(), m.start()
        if pos != expected:  # the only thing no token matches: a string never closed
            raise FPCoreError("unterminated string", text, expected)
        expected = m.end()
        if kind == "space":
            continue
        if kind == "open":
            lst = SList()
            lst.pos, lst.opener = pos, tok
            stack.append(lst)
            continue
        if kind == "close":
            if not stack:
                raise FPCoreError(f"unexpected '{tok}' with no open parenthesis", text, pos)
            item = stack.pop()
            if {"(": ")", "[": "]"}[item.opener] != tok:
                raise FPCoreError(f"'{item.opener}' at position {item.pos + 1} closed by "
                                  f"'{tok}'", text, pos)
            item.end = m.end()
        elif kind == "str":
            item = Atom("str", re.sub(r"\\(.)", r"\1", tok[1:-1], flags=re.S), pos, m.end())
        else:
            item = Atom("num" if _NUMBERISH.match(tok) else "sym", tok, pos, m.end())
        if stack:
            stack[-1].append(item)
        else:
            yield item
    if expected != len(text):
        raise FPCoreError("unterminated string", text, expected)
    if stack:
        raise FPCoreError("unbalanced parentheses: this '(' is never closed", text,
                          stack[-1].pos)


def _number(atom: Atom, text: str):
    """Exact value of a number token: a Fraction, or "-0"."""
    t = atom.text
    try:
        if _HEX.match(t):
            value = hex_float(t if "p" in t.lower() else t + "p0")
        elif m := _RATIONAL.match(t):
            value = Fraction(int(m.group(1)), int(m.group(2)))
        elif m := _DECIMAL.match(t):
            if m.group(1) and abs(int(m.group(1))) > _MAX_EXPONENT:
                raise ValueError("exponent out of range")
            value = Fraction(t)
        else:
            raise ValueError("not a number")
    except (ValueError, ZeroDivisionError) as e:
        raise FPCoreError(f"bad number '{t}': {e}", text, atom.pos) from None
    return "-0" if value == 0 and t.startswith("-") else value


def _literal(value) -> Expr:
    """An exact literal. A rational with no decimal form becomes p / q: correctly rounded
    whenever p and q are exact in the dtype (|p|, |q| <= 2**24 for float32)."""
    try:
        return const(value)
    except ValueError:  # const refuses fractions with no finite decimal form
        p, q = Fraction(value.numerator), Fraction(value.denominator)
        return make("div", (const(p), const(q)))


def _is_sym(node, text=None) -> bool:
    return isinstance(node, Atom) and node.kind == "sym" and (text is None or node.text == text)


def _split_props(items):
    """(:key value)* prefix of items -> ({":key": node}, the rest)."""
    props, i = {}, 0
    while i < len(items) and _is_sym(items[i]) and items[i].text.startswith(":"):
        if i + 1 >= len(items):
            return props, items[i:]  # a key with no value: the caller reports it
        props[items[i].text] = items[i + 1]
        i += 2
    return props, items[i:]


# --- building one core -------------------------------------------------------------------

class _Core:
    def __init__(self, text: str, label: str):
        self.text, self.label, self.dtype = text, label, "float64"

    def error(self, message, node) -> FPCoreError:
        return FPCoreError(f"{message} in core {self.label}", self.text, node.pos)

    def unsupported(self, construct, node, detail="") -> FPCoreError:
        return self.error(f"unsupported FPCore construct '{construct}'{detail}", node)

    def make(self, opname, args, node) -> Expr:
        o = OPS[opname]  # FPCore has no bool arithmetic (the IR would promote to int)
        if o.tkind != "any" and any(t == "T" and a.dtype == "bool" for t, a in zip(o.args, args)):
            raise self.error(f"type error: {o.fpcore} takes real numbers, not booleans", node)
        try:
            return make(opname, args)
        except (TypeError, ValueError, OverflowError) as e:
            raise self.error(f"type error: {e}", node) from None

    def precision(self, node) -> str:
        if _is_sym(node) and node.text in _PRECISIONS:
            return _PRECISIONS[node.text]
        raw = self.text[node.pos:node.end]
        raise self.unsupported(f":precision {raw}", node, " (only binary64 and binary32)")

    # --- expressions ---
    def expr(self, node, env) -> Expr:
        if isinstance(node, Atom):
            if node.kind == "num":
                return _literal(_number(node, self.text))
            if node.kind == "str":
                raise self.error("a string is not an expression", node)
            return self.symbol(node, env)
        if not node or not _is_sym(node[0]):
            raise self.error("expected (operator arguments...)", node)
        head, rest = node[0].text, node[1:]
        if head in ("let", "let*"):
            return self.let(node, env, sequential=head == "let*")
        if head == "!":
            return self.annotation(node, env)
        if head == "digits":
            return _literal(self.digits(node))
        if head not in _ARITIES:
            raise self.unsupported(head, node)
        return self.apply(head, [self.expr(a, env) for a in rest], node)

    def symbol(self, atom, env) -> Expr:
        t = atom.text
        if t in env:
            return env[t]
        if t in _CONSTANTS:
            return _CONSTANTS[t]()
        if t.startswith(":"):
            raise self.error(f"property {t} where an expression belongs", atom)
        if re.fullmatch(r"[A-Z][A-Z0-9_]*", t):
            raise self.unsupported(t, atom, " (unknown constant)")
        raise self.error(f"unbound variable '{t}'", atom)

    def apply(self, head, args, node) -> Expr:
        n = len(args)
        if head in _COMPARISONS and n >= 3:
            pairs = ([(a, b) for i, a in enumerate(args) for b in args[i + 1:]] if head == "!="
                     else list(zip(args, args[1:])))  # != means pairwise distinct
            return self.apply("and", [self.make(_OPS[(head, 2)], p, node) for p in pairs], node)
        if head in _CONNECTIVES and n != 2:
            if n == 0:
                return const(head == "and")
            out = args[0]
            if out.dtype != "bool":
                raise self.error(f"type error: {head} takes booleans, got {out.dtype}", node)
            for a in args[1:]:
                out = self.make(_OPS[(head, 2)], (out, a), node)
            return out
        if (head, n) not in _OPS:
            want = " or ".join(map(str, sorted(_ARITIES[head])))
            raise self.error(f"'{head}' takes {want} argument(s), got {n}", node)
        return self.make(_OPS[(head, n)], args, node)

    def let(self, node, env, sequential) -> Expr:
        kind = node[0].text
        if len(node) != 3 or not isinstance(node[1], SList):
            raise self.error(f"{kind} takes ([name expr] ...) and a body", node)
        inner, seen = dict(env), set()
        for b in node[1]:
            if not (isinstance(b, SList) and len(b) == 2 and _is_sym(b[0])):
                raise self.error(f"a {kind} binding is [name expr]", b)
            if b[0].text in seen and not sequential:
                raise self.error(f"'{b[0].text}' bound twice in let", b)
            seen.add(b[0].text)
            inner[b[0].text] = self.expr(b[1], inner if sequential else env)
        return self.expr(node[2], inner)

    def annotation(self, node, env) -> Expr:
        props, rest = _split_props(node[1:])
        if len(rest) != 1:
            raise self.error("(! :key value ... expr) takes one expression", node)
        if ":precision" in props and self.precision(props[":precision"]) != self.dtype:
            raw = self.text[props[":precision"].pos:props[":precision"].end]
            raise self.unsupported("!", node, f" changing the precision to {raw}")
        rnd = props.get(":round")
        if rnd is not None and not _is_sym(rnd, "nearestEven"):
            raise self.unsupported("!", node, f" with :round {self.text[rnd.pos:rnd.end]}")
        return self.expr(rest[0], env)

    def digits(self, node) -> Fraction:
        parts = node[1:]
        if len(parts) != 3 or not all(isinstance(p, Atom) and re.fullmatch(r"[+-]?\d+", p.text)
                                      for p in parts):
            raise self.error("digits takes three integers (digits m e b)", node)
        m, e, b = (int(p.text) for p in parts)
        if b < 2 or abs(e) > _MAX_EXPONENT:
            raise self.error("digits needs a base >= 2 and a moderate exponent", node)
        return Fraction(m) * Fraction(b) ** e

    # --- :pre -> domain ---
    def domain(self, pre, env, names) -> dict:
        box = {n: [-math.inf, math.inf] for n in names}
        for c in _conjuncts(pre):
            if not (isinstance(c, SList) and len(c) >= 3 and _is_sym(c[0])
                    and c[0].text in _ORDER):
                continue
            sides = [self.side(x, env) for x in c[1:]]
            for pair in zip(sides, sides[1:]):
                for small, big in ((pair[i], pair[j]) for i, j in _ORDER[c[0].text]):
                    if isinstance(small, str) and isinstance(big, float):
                        box[small][1] = min(box[small][1], big)
                    elif isinstance(big, str) and isinstance(small, float):
                        box[big][0] = max(box[big][0], small)
        return {n: tuple(b) for n, b in box.items()}

    def side(self, node, env):
        """A variable's IR name, a constant's value as the core's dtype rounds it, or None."""
        if _is_sym(node) and node.text in env and env[node.text].op == "var":
            return env[node.text].name
        if isinstance(node, Atom) and node.kind == "str":
            return None
        e = self.expr(node, env)
        if e.variables() or e.dtype == "bool":
            return None
        v = float(evaluate(concretize(e, self.dtype)))  # exactly what :pre compares with
        return None if math.isnan(v) else v


def _conjuncts(node):
    if isinstance(node, SList) and node and _is_sym(node[0], "and"):
        return [c for part in node[1:] for c in _conjuncts(part)]
    return [node]


def _ir_names(names) -> list[str]:
    """Valid, unique, non-reserved IR names; names already valid keep themselves."""
    reserved = reserved_names() | set(keyword.kwlist) | set(keyword.softkwlist)

    def ok(n):
        return re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", n) is not None and n not in reserved
    used = {n for n in names if ok(n)}
    out = []
    for n in names:
        if ok(n):
            out.append(n)
            continue
        cand = re.sub(r"[^A-Za-z0-9_]", "_", n)
        cand = cand if re.match(r"[A-Za-z]", cand) else "v" + cand
        while cand in reserved or cand in used:
            cand += "_"
        used.add(cand)
        out.append(cand)
    return out


def _label(form, index) -> tuple[str | int, str]:
    """(name or index, text for messages) of a top-level form, even a broken one."""
    items = form[1:] if isinstance(form, SList) else []
    name = items[0].text if items and _is_sym(items[0]) else None
    for i, item in enumerate(items[:-1]):
        if _is_sym(item, ":name") and isinstance(items[i + 1], Atom):
            name = items[i + 1].text
    return (name, f"'{name}'") if name is not None else (index, f"#{index}")


def _read_core(form, text: str, index: int) -> FPCore:
    label = _label(form, index)[1]
    core = _Core(text, label)
    if not (isinstance(form, SList) and form and _is_sym(form[0], "FPCore")):
        raise core.error("expected (FPCore (args...) body)", form)
    items = form[1:]
    ident = items[0].text if items and _is_sym(items[0]) else None
    items = items[1:] if ident is not None else items
    if not items or not isinstance(items[0], SList):
        raise core.error("FPCore needs an argument list", form)
    props, rest = _split_props(items[1:])
    if len(rest) != 1 or (_is_sym(rest[0]) and rest[0].text.startswith(":")):
        raise core.error("FPCore needs properties (:key value) then exactly one body", form)
    if ":precision" in props:
        core.dtype = core.precision(props[":precision"])
    arg_names = []
    for a in items[0]:
        if not _is_sym(a):
            what = "!" if isinstance(a, SList) and a and _is_sym(a[0], "!") else "dimension"
            raise core.unsupported(what, a, " (argument annotations and dimensions)")
        if a.text in arg_names:
            raise core.error(f"argument '{a.text}' appears twice", a)
        arg_names.append(a.text)
    names = _ir_names(arg_names)
    env = {o: var(n, core.dtype) for o, n in zip(arg_names, names)}
    try:
        expr = core.expr(rest[0], env)
        pre, domain = None, {n: (-math.inf, math.inf) for n in names}
        if ":pre" in props:
            pre = core.expr(props[":pre"], env)
            if pre.dtype != "bool":
                raise core.error(":pre must be a boolean expression", props[":pre"])
            domain = core.domain(props[":pre"], env, names)
    except RecursionError:
        raise core.error("expression nested too deeply", form) from None
    name_node = props.get(":name")
    name = (name_node.text if isinstance(name_node, Atom) and name_node.kind == "str" else
            text[name_node.pos:name_node.end] if name_node is not None else ident)
    other = {k[1:]: (v.text if isinstance(v, Atom) and v.kind == "str" else text[v.pos:v.end])
             for k, v in props.items() if k not in (":name", ":pre", ":precision")}
    return FPCore(name, tuple(names), tuple(arg_names), concretize(expr, core.dtype), pre,
                  domain, core.dtype, other)


# --- public API ----------------------------------------------------------------------------

def read_fpcores(text: str) -> list[FPCore]:
    """Every FPCore in `text`; the first problem raises FPCoreError."""
    return [_read_core(form, text, i) for i, form in enumerate(list(_forms(text)))]


def read_fpcore(text: str) -> FPCore:
    """The one FPCore in `text`."""
    cores = read_fpcores(text)
    if len(cores) != 1:
        raise FPCoreError(f"expected exactly one FPCore, found {len(cores)}", text, 0)
    return cores[0]


def read_fpcores_lenient(text: str):
    """(cores, [(core name or index, message)]): each top-level form on its own."""
    cores, errors, forms, index = [], [], _forms(text), 0
    while True:
        try:
            form = next(forms)
        except StopIteration:
            return cores, errors
        except FPCoreError as e:  # unreadable from here on: the forms before it count
            errors.append((index, str(e)))
            return cores, errors
        try:
            cores.append(_read_core(form, text, index))
        except FPCoreError as e:
            errors.append((_label(form, index)[0], str(e)))
        index += 1


def load_fpcore_file(path) -> list[FPCore]:
    return read_fpcores(Path(path).read_text(encoding="utf-8"))


__all__ = ["FPCore", "FPCoreError", "read_fpcore", "read_fpcores", "read_fpcores_lenient",
           "load_fpcore_file"]
