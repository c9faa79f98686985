"""Like terms of sums and the literal factors and signs of products brought together: an
equal form of the input that simplify adds to the e-graph next to it. The
associativity and commutativity rules reach it too, but only for short chains: the
orderings of eight terms outgrow any node limit first.

Over the extended reals a sum is NaN as soon as +inf and -inf both occur, in any
grouping, and a product as soon as 0 and +-inf both occur; otherwise neither depends on
grouping or order. So reordering and regrouping the terms of a sum, or the factors of a
product, is exact, and so are taking signs and rational literals out of a product and
adding rational literals. Coefficients of one term are added only when they have the
same sign: 2t + 3t = 5t holds at t = inf, but 2t - t is NaN there, not t. A term with
both signs is written P*t - N*t, and the e-graph's coefficient rules
(egraph.coefficient_text) cancel that once t is known finite.
"""
from __future__ import annotations

from fractions import Fraction

from exprforge.engine.expr import Expr, make

from .egraph import rational

_SUM = ("add", "sub", "neg")
_PRODUCT = ("mul", "neg")


def _is_rational(node: Expr) -> bool:
    return node.op == "const" and isinstance(node.value, (Fraction, int)) \
        and not isinstance(node.value, bool)


def _in(node: Expr, ops, dtype="float64") -> bool:
    return node.op in ops and node.dtype == dtype


def gather_sums(root: Expr) -> Expr:
    """root with every float64 sum and product in it gathered (see the module text)."""
    return _Gathering(root).result


class _Gathering:
    def __init__(self, root: Expr):
        nodes = root.toposort()
        users: dict[Expr, list[Expr]] = {}
        for node in nodes:
            for a in node.args:
                users.setdefault(a, []).append(node)

        def inner(node, ops):   # used only inside chains of its kind: gathered with them
            return node is not root and all(_in(u, ops) for u in users[node])

        self.rank = {node: i for i, node in enumerate(nodes)}   # the order of factors
        self.memo: dict[Expr, Expr] = {}
        for node in nodes:
            args = tuple(self.memo[a] for a in node.args)
            gathered = None
            if _in(node, _SUM) and not inner(node, _SUM):
                gathered = self.sum(node)
            elif _in(node, ("mul",)) and not inner(node, ("mul",)):
                coef, factors, folded = self.product(node)
                gathered = _times(coef, _chain(factors)) if folded else None
            self.memo[node] = gathered if gathered is not None else (
                node if args == node.args else make(node.op, args, node.attr))
        self.result = self.memo[root]

    def product(self, head: Expr) -> tuple[Fraction, tuple, bool]:
        """(rational coefficient, the other factors in a fixed order, whether a sign or
        literal was folded) of the product rooted at head."""
        coef, factors, folds = Fraction(1), [], 0
        stack = [head]
        while stack:
            node = stack.pop()
            if _in(node, _PRODUCT):
                if node.op == "neg":
                    coef, folds = -coef, folds + 1
                stack.extend(reversed(node.args))
            elif _is_rational(node):
                coef, folds = coef * Fraction(node.value), folds + 1
            else:
                factors.append(node)
        factors.sort(key=self.rank.__getitem__)
        return coef, tuple(self.memo[f] for f in factors), folds >= 2 or folds and not factors

    def sum(self, head: Expr) -> Expr | None:
        """The sum rooted at head with its terms (gathered inside) side by side and its
        literal last; None when that is the sum as it stands."""
        # (factors, zero) -> [positive, negative] coefficients. A term with coefficient 0
        # stays apart: 0*t is NaN at t = inf, which no sum with t's other copies shows
        parts: dict[tuple, list[Fraction]] = {}
        constant, terms, literals, last = Fraction(0), 0, 0, None
        stack = [(head, Fraction(1))]
        while stack:
            node, sign = stack.pop()
            if _in(node, _SUM):
                if node.op == "neg":
                    stack.append((node.args[0], -sign))
                else:  # the right operand pushed first: terms come out left to right
                    stack.append((node.args[1], sign if node.op == "add" else -sign))
                    stack.append((node.args[0], sign))
                continue
            last = node
            if _is_rational(node):
                constant += sign * Fraction(node.value)
                literals += 1
                continue
            terms += 1
            coef, factors = (self.product(node)[:2] if _in(node, ("mul",))
                             else (Fraction(1), (self.memo[node],)))
            coef *= sign
            if not factors:
                constant += coef
                literals += 1
                continue
            pos_neg = parts.setdefault((factors, coef == 0), [Fraction(0), Fraction(0)])
            pos_neg[0 if coef >= 0 else 1] += abs(coef)
        if terms == len(parts) and (literals == 0 or literals == 1 and _is_rational(last)):
            return None
        out = None
        for (factors, _), (pos, neg) in parts.items():
            term = _chain(factors)
            if pos and neg:
                piece, negative = make("sub", (_times(pos, term), _times(neg, term))), False
            else:
                piece, negative = _times(pos or neg, term), not pos and neg
            if out is None:
                out = make("neg", (piece,)) if negative else piece
            else:
                out = make("sub" if negative else "add", (out, piece))
        if out is None:
            return rational(constant)
        if constant:
            out = make("sub" if constant < 0 else "add", (out, rational(abs(constant))))
        return out


def _chain(factors: tuple) -> Expr | None:
    out = None
    for f in factors:
        out = f if out is None else make("mul", (out, f))
    return out


def _times(coef: Fraction, term: Expr | None) -> Expr:
    if term is None:
        return rational(coef)
    if coef == 1:
        return term
    if coef == -1:
        return make("neg", (term,))
    return make("mul", (rational(coef), term))
