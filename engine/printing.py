"""Printers: plain text (Python syntax the parser reads back to the same node), LaTeX,
and repr. All work over the DAG in topological order, without recursion.

Text rules that make the round trip exact:
- literals are exact (decimal, or hex float when that is shorter); a literal is
  annotated with its dtype, float32(0.5), only where context would not give it back;
- an implicit cast prints as float64(x);
- a shared subexpression is bound once with := and reused by name, so a DAG prints
  in size proportional to its node count.
"""
from __future__ import annotations

from fractions import Fraction

from .expr import Expr

ATOM = 14
UNARY = 12
_MIN_SHARED_SIZE = 4  # shared subtrees smaller than this are simply written twice

GREEK = {"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa",
         "lambda", "mu", "nu", "xi", "omicron", "rho", "sigma", "tau", "upsilon", "phi", "chi",
         "psi", "omega", "Gamma", "Delta", "Theta", "Lambda", "Xi", "Sigma", "Phi", "Psi", "Omega"}


# --- literals ---------------------------------------------------------------------------

def format_fraction(q: Fraction) -> str:
    """Exact text of a terminating rational: decimal, or hex float when that is shorter."""
    sign = "-" if q < 0 else ""
    q = abs(q)
    if q.denominator == 1:
        return sign + str(q.numerator)
    decimal = _exact_decimal(q)
    if q.denominator & (q.denominator - 1) == 0 and len(decimal) > 20:
        return sign + _hex_float(q)
    return sign + decimal


def _exact_decimal(q: Fraction) -> str:
    d, twos, fives = q.denominator, 0, 0
    while d % 2 == 0:
        d //= 2
        twos += 1
    while d % 5 == 0:
        d //= 5
        fives += 1
    k = max(twos, fives)
    digits = str(q.numerator * 10 ** k // q.denominator)  # exact: q * 10^k is an integer
    exp10 = -k
    stripped = digits.rstrip("0")
    exp10 += len(digits) - len(stripped)
    digits = stripped
    point = len(digits) + exp10  # position of the decimal point from the left
    if -5 <= point <= 0:
        return "0." + "0" * -point + digits
    if 0 < point < len(digits):
        return digits[:point] + "." + digits[point:]
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else ".0")
    return f"{mantissa}e{point - 1}"


def _hex_float(q: Fraction) -> str:
    n, d = q.numerator, q.denominator  # d is a power of two
    e = n.bit_length() - 1 - (d.bit_length() - 1)
    frac = Fraction(n, d) / Fraction(2) ** e - 1  # in [0, 1)
    digits = ""
    while frac:
        frac *= 16
        digit = int(frac)
        digits += "0123456789abcdef"[digit]
        frac -= digit
    return f"0x1{'.' + digits if digits else ''}p{e:+d}"


def literal_text(node: Expr) -> str:
    v = node.attr
    if isinstance(v, bool):
        return "True" if v else "False"
    if isinstance(v, str):
        return {"inf": "inf", "-inf": "-inf", "nan": "nan", "-0": "-0.0"}[v]
    if isinstance(v, int):
        return str(v)
    text = format_fraction(v)
    if node.dtype == "~f" and v.denominator == 1:
        text += ".0"  # a weak float stays a float when read back
    return text


def _is_literal(node: Expr) -> bool:
    return node.op == "const" or node.spec.group == "const"


def _literal_prec(node: Expr) -> int:
    if node.op == "const" and (node.attr in ("-inf", "-0") or
                               (not isinstance(node.attr, str) and node.attr < 0)):
        return UNARY
    return ATOM


def _needs_dtype(parent: Expr | None, index: int) -> bool:
    """Would the literal at parent.args[index] come back with another dtype if bare?"""
    if parent is None:
        return True  # the root: callers only ask for strong literals
    child = parent.args[index]
    if child.is_weak or child.dtype == "bool":
        return False
    letter = parent.spec.args[index]
    if letter == "B":
        return False
    if letter == "I" and child.dtype == "int32":
        return False
    return not any(j != index and parent.spec.args[j] == letter and not _is_literal(a)
                   for j, a in enumerate(parent.args))


# --- text ---------------------------------------------------------------------------------

def to_text(root: Expr) -> str:
    """Python-syntax text that `parse` turns back into the identical node."""
    size, uses = {}, {}
    for node in root.toposort():
        size[node] = 1 + sum(size[a] for a in node.args)
        for a in node.args:
            uses[a] = uses.get(a, 0) + 1
    first_edge = _first_edges(root)
    taken, names, counter = set(root.var_names()), {}, 0
    for n in first_edge:  # discovery order is textual order
        if uses[n] > 1 and n.args and size[n] >= _MIN_SHARED_SIZE:
            while f"t{counter}" in taken:
                counter += 1
            names[n] = f"t{counter}"
            counter += 1
    text: dict[Expr, tuple[str, int]] = {}

    def ref(parent, i, child):
        if child in names:
            if first_edge[child] == (parent, i):
                return f"({names[child]} := {text[child][0]})", ATOM
            return names[child], ATOM
        if _is_literal(child) and _needs_dtype(parent, i):
            return f"{child.dtype}({text[child][0]})", ATOM
        return text[child]

    for node in root.toposort():
        text[node] = _node_text(node, ref)
    if _is_literal(root) and not root.is_weak and root.dtype != "bool":
        return f"{root.dtype}({text[root][0]})"
    return text[root][0]


def _first_edges(root: Expr) -> dict:
    """For each node below root, the (parent, index) edge through which the text first
    reaches it: a left-to-right depth-first walk that does not re-enter seen nodes."""
    first, seen, stack = {}, {root}, [(root, 0)]
    while stack:
        node, i = stack.pop()
        if i < len(node.args):
            stack.append((node, i + 1))
            child = node.args[i]
            if child not in seen:
                seen.add(child)
                first[child] = (node, i)
                stack.append((child, 0))
    return first


def _node_text(node: Expr, ref) -> tuple[str, int]:
    o = node.spec
    if node.op == "var":
        return node.name, ATOM
    if node.op == "const":
        return literal_text(node), _literal_prec(node)
    if o.group == "const":
        return node.op, ATOM
    args = [ref(node, i, a) for i, a in enumerate(node.args)]
    if o.group == "convert":
        if node.op == "cast":
            return f"{node.attr}({args[0][0]})", ATOM
        return f"bitcast({args[0][0]}, {node.attr})", ATOM
    if o.group == "reduce":
        axes = node.attr[0] if len(node.attr) == 1 else node.attr
        return f"{o.spelling}({args[0][0]}, axis={axes})", ATOM
    if o.infix and o.arity == 1:
        (s, p), = args
        sep = " " if o.infix.isalpha() else ""
        return f"{o.infix}{sep}{_paren(s, p, o.prec)}", o.prec
    if o.infix:
        (ls, lp), (rs, rp) = args
        if o.infix == "**":  # right associative; the exponent may be a unary expression
            return f"{_paren(ls, lp, o.prec + 1)}**{_paren(rs, rp, UNARY)}", o.prec
        chained = o.out == "B" and o.args == "TT"  # Python chains a < b < c: no left nesting
        left_need = o.prec + 1 if chained else o.prec
        return f"{_paren(ls, lp, left_need)} {o.infix} {_paren(rs, rp, o.prec + 1)}", o.prec
    return f"{o.spelling}({', '.join(s for s, _ in args)})", ATOM


def _paren(s: str, p: int, need: int) -> str:
    return s if p >= need else f"({s})"


def to_repr(root: Expr) -> str:
    """`parse(...)` call that rebuilds the identical node."""
    decl = []
    for v in root.variables():
        spec = repr(v.dtype) if v.axes is None else repr((v.dtype, v.axes))
        decl.append(f"{v.name!r}: {spec}")
    return f"parse({to_text(root)!r}, vars={{{', '.join(decl)}}})"


# --- LaTeX --------------------------------------------------------------------------------

def to_latex(root: Expr) -> str:
    out: dict[Expr, tuple[str, int]] = {}
    for node in root.toposort():
        out[node] = _latex_node(node, [out[a] for a in node.args])
    return out[root][0]


def _latex_name(name: str) -> str:
    base, _, sub = name.partition("_")
    base = "\\" + base if base in GREEK else base if len(base) == 1 else rf"\mathrm{{{base}}}"
    return f"{base}_{{{sub}}}" if sub else base


def _latex_node(node: Expr, args) -> tuple[str, int]:
    o = node.spec
    if node.op == "var":
        return _latex_name(node.name), ATOM
    if node.op == "const":
        v = node.attr
        if isinstance(v, str):
            return {"inf": r"\infty", "-inf": r"-\infty", "nan": r"\mathrm{NaN}",
                    "-0": "-0"}[v], ATOM
        s = literal_text(node).removesuffix(".0")
        if "e" in s and not s.startswith("0x"):
            m, e = s.split("e")
            s = rf"{m} \cdot 10^{{{int(e)}}}"
        return s, _literal_prec(node)
    if o.group == "const":
        return o.latex, ATOM
    if o.group == "convert":
        return (args[0][0] if node.op == "cast" else
                rf"\operatorname{{bitcast}}_{{{node.attr}}}\left({args[0][0]}\right)"), ATOM
    if o.group == "reduce":
        return rf"\operatorname{{{o.spelling}}}_{{{node.attr}}}\left({args[0][0]}\right)", ATOM
    if o.latex and o.infix:
        if o.arity == 1:
            return o.latex.format(_lparen(*args[0], o.prec)), o.prec
        if o.infix == "**":
            return o.latex.format(_lparen(args[0][0], args[0][1], o.prec + 1), args[1][0]), o.prec
        if o.name == "div":
            return o.latex.format(args[0][0], args[1][0]), ATOM
        return o.latex.format(_lparen(*args[0], o.prec), _lparen(*args[1], o.prec + 1)), o.prec
    if o.latex:
        return o.latex.format(*(s for s, _ in args)), ATOM
    inner = ", ".join(s for s, _ in args)
    return rf"\operatorname{{{o.spelling}}}\left({inner}\right)", ATOM


def _lparen(s: str, p: int, need: int) -> str:
    return s if p >= need else rf"\left({s}\right)"
