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

from exprforge.engine.expr import Expr, concretize, make

from .egraph import rational

_SUM = ("add", "sub", "neg")
_PRODUCT = ("mul", "neg")
_MAX_BITS = 4000   # a larger coefficient is not gathered (egglog reads literals as text)
SPLICE = 8


def _is_rational(node: Expr) -> bool:
    return node.op == "const" and isinstance(node.value, (Fraction, int)) \
        and not isinstance(node.value, bool)


def _in(node: Expr, ops) -> bool:
    return node.op in ops and node.dtype == "float64"


def _huge(q: Fraction) -> bool:
    return max(q.numerator.bit_length(), q.denominator.bit_length()) > _MAX_BITS


def gather_sums(root: Expr) -> Expr:
    """root with every float64 sum and product in it gathered (see the module text)."""
    return _Gathering(root).result


class _Gathering:
    """One pass over the DAG. Each sum (product) is walked once from its head, through
    the nodes of its kind that have no other user; a shared node is a term (factor) of
    every sum (product) that uses it and is gathered on its own, so the work stays linear
    in the DAG, not in its tree."""

    def __init__(self, root: Expr):
        nodes = root.toposort()
        users: dict[Expr, list[Expr]] = {}
        for node in nodes:
            for a in node.args:
                users.setdefault(a, []).append(node)
        # which walk passes through a node: "sum", "product", or none (a head or a leaf)
        self.region: dict[Expr, str | None] = {}
        for node in reversed(nodes):
            (u, *more) = users.get(node, [None])
            kind = None
            if u is not None and not more and node is not root:
                if _in(node, _SUM) and _in(u, _SUM) and self.region[u] != "product":
                    kind = "sum"
                elif _in(node, _PRODUCT) and (_in(u, ("mul",)) or _in(u, ("neg",))
                                               and self.region[u] == "product"):
                    kind = "product"
            self.region[node] = kind
        self.index = {node: i for i, node in enumerate(nodes)}   # the order of factors
        self.products: dict[Expr, tuple | None] = {}
        self.factors: dict[Expr, list] = {}   # a product's factors as input nodes
        self.memo: dict[Expr, Expr] = {}
        for node in nodes:
            args = tuple(self.memo[a] for a in node.args)
            gathered = None
            if self.region[node] is None:
                if _in(node, _SUM):
                    gathered = self.sum(node)
                elif _in(node, ("mul",)) and self.product(node):
                    coef, factors, folded = self.product(node)
                    gathered = _times(coef, _chain(factors)) if folded else None
            if gathered is not None and gathered.dtype != node.dtype:
                gathered = concretize(gathered, node.dtype)   # all literals: keep float64
            self.memo[node] = gathered if gathered is not None else (
                node if args == node.args else make(node.op, args, node.attr))
        self.result = self.memo[root]

    def product(self, head: Expr) -> tuple[Fraction, tuple, bool] | None:
        """(rational coefficient, the other factors in a fixed order, whether signs or
        literals were folded) of the product rooted at head; None when the coefficient
        would be huge. A shared product of at most SPLICE factors is taken apart too
        (x*y and 3*(x*y) are like terms); a larger one stays whole, which bounds the work
        on DAGs such as d = d*d."""
        if head not in self.products:
            coef, factors, folds = Fraction(1), [], 0
            stack = [head]
            while stack:
                node = stack.pop()
                if node is head or self.region[node] == "product":
                    if node.op == "neg":
                        coef, folds = -coef, folds + 1
                    stack.extend(reversed(node.args))
                    continue
                if _is_rational(node):
                    coef, folds = coef * Fraction(node.value), folds + 1
                    continue
                inner = _in(node, ("mul",)) and self.product(node)
                if inner and len(inner[1]) <= SPLICE:
                    coef, folds = coef * inner[0], folds + (inner[0] != 1)
                    factors.extend(self.factors[node])
                else:
                    factors.append(node)
            factors.sort(key=self.index.__getitem__)
            self.factors[head] = factors
            self.products[head] = None if _huge(coef) else (
                coef, tuple(self.memo[f] for f in factors), folds >= 2 or folds and not factors)
        return self.products[head]

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
            if node is head or self.region[node] == "sum":
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
            split = _in(node, ("mul",)) and self.product(node)
            coef, factors = split[:2] if split else (Fraction(1), (self.memo[node],))
            coef *= sign
            if not factors:
                constant += coef
                literals += 1
                continue
            pos_neg = parts.setdefault((factors, coef == 0), [Fraction(0), Fraction(0)])
            pos_neg[0 if coef >= 0 else 1] += abs(coef)
        if terms == len(parts) and (literals == 0 or literals == 1 and _is_rational(last)):
            return None
        if _huge(constant) or any(_huge(q) for pair in parts.values() for q in pair):
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
