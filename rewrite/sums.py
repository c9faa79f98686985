"""Like terms of a sum brought together: an equal form of the input that simplify adds
to the e-graph next to it. The associativity and commutativity rules reach it too, but
only for short sums: the orderings of eight terms outgrow any node limit first.

Over the extended reals a sum is NaN as soon as +inf and -inf both occur, in any
grouping, so reordering the terms of a sum and regrouping them is exact. Coefficients of
one term are added only when they have the same sign: 2t + 3t = 5t holds at t = inf, but
2t - t is NaN there, not t. A term with both signs is written P*t - N*t, and the
e-graph's coefficient rules (egraph.coefficient_text) cancel that once t is known finite.
Rational literals are added exactly.
"""
from __future__ import annotations

from fractions import Fraction

from exprforge.engine.expr import Expr, make

from .egraph import rational

_SUM = ("add", "sub", "neg")


def _is_rational(node: Expr) -> bool:
    return node.op == "const" and isinstance(node.value, (Fraction, int)) \
        and not isinstance(node.value, bool)


def gather_sums(root: Expr) -> Expr:
    """root with the terms of every float64 sum in it gathered (see the module text)."""
    nodes = root.toposort()
    inner = set()   # sums used only by sums of their dtype: gathered with their users
    users: dict[Expr, list[Expr]] = {}
    for node in nodes:
        for a in node.args:
            users.setdefault(a, []).append(node)
    for node in nodes:
        if _is_sum(node) and node is not root and all(
                _is_sum(u) and u.dtype == node.dtype for u in users[node]):
            inner.add(node)
    memo: dict[Expr, Expr] = {}
    for node in nodes:
        args = tuple(memo[a] for a in node.args)
        rebuilt = node if args == node.args else make(node.op, args, node.attr)
        gathered = _gather(node, memo) if _is_sum(node) and node not in inner else None
        memo[node] = rebuilt if gathered is None else gathered
    return memo[root]


def _is_sum(node: Expr) -> bool:
    return node.op in _SUM and node.dtype == "float64"


def _times(coef: Fraction, term: Expr) -> Expr:
    return term if coef == 1 else make("mul", (rational(coef), term))


def _gather(head: Expr, memo: dict) -> Expr:
    """The sum rooted at head with its terms (gathered inside) side by side; None when
    no term occurs twice and at most one literal does."""
    parts: dict[Expr, list[Fraction]] = {}   # term -> [positive, negative] coefficients
    constant, terms, literals = Fraction(0), 0, 0
    stack = [(head, Fraction(1))]
    while stack:
        node, sign = stack.pop()
        if node.op in _SUM and node.dtype == head.dtype:
            if node.op == "neg":
                stack.append((node.args[0], -sign))
            else:  # the right operand pushed first: terms come out left to right
                stack.append((node.args[1], sign if node.op == "add" else -sign))
                stack.append((node.args[0], sign))
            continue
        if _is_rational(node):
            constant += sign * Fraction(node.value)
            literals += 1
            continue
        terms += 1
        coef, term = sign, node
        if node.op == "mul" and node.dtype == head.dtype:
            a, b = node.args
            if _is_rational(a) and a.value != 0:
                coef, term = sign * Fraction(a.value), b
            elif _is_rational(b) and b.value != 0:
                coef, term = sign * Fraction(b.value), a
        pos_neg = parts.setdefault(memo[term], [Fraction(0), Fraction(0)])
        pos_neg[0 if coef > 0 else 1] += abs(coef)
    if terms == len(parts) and literals <= 1:
        return None
    out = None
    for term, (pos, neg) in parts.items():
        if pos and neg:
            piece, negative = make("sub", (_times(pos, term), _times(neg, term))), False
        else:
            piece, negative = _times(pos or neg, term), not pos
        if out is None:
            out = make("neg", (piece,)) if negative else piece
        else:
            out = make("sub" if negative else "add", (out, piece))
    if out is None:
        return rational(constant)
    if constant:
        out = make("sub" if constant < 0 else "add", (out, rational(abs(constant))))
    return out
