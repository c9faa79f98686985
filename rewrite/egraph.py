"""The egglog bridge, generated from the op table: the language, Expr <-> term, domain
facts, constant folding, bounded runs and extraction.

One sort holds every value. Leaves are variables (by name; the Expr's own variable node,
with its dtype, comes back), exact rational literals (BigRat) and special literals
(inf, nan, -0, True, False). Each op row becomes one constructor whose cost is the
row's cost under the chosen model; ops with an attribute (casts, reductions) carry it
as a String. Literals come back weak, so dtypes are restored by the context they meet,
exactly as when the user wrote them.

egglog has no time or node limit of its own and cannot be interrupted, so a run is a
loop of single iterations under a back-off scheduler whose match limit doubles each
step; size and clock are checked between steps. (Details: docs/egglog-notes.md.)
"""
from __future__ import annotations

import inspect
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cache

import egglog as eg

from exprforge.engine.expr import Expr, const, make, named
from exprforge.engine.ops import OPS

FACTS = ("positive", "nonneg", "nonzero", "finite")
_LET_EVERY = 50  # egglog registers deep terms slowly unless intermediate results are named
_DEPTH = 50_000  # egglog's Python layer recurses over terms: deep inputs need headroom


@contextmanager
def deep_recursion():
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, _DEPTH))
    try:
        yield
    finally:
        sys.setrecursionlimit(limit)


# --- the language --------------------------------------------------------------------------

@dataclass
class Language:
    sort: type
    var: object
    rat: object
    special: object
    ops: dict            # op name -> constructor
    names: dict          # constructor -> op name
    facts: dict          # fact name -> relation
    cost_model: str


def _op_cost(name: str, model: str) -> int:
    o = OPS[name]
    if model == "ops":
        return 0 if o.group == "const" else 1
    return max(1, round(o.cost)) if o.group != "const" else 1


@cache
def language(cost_model: str = "cycles") -> Language:
    """The egglog language for one cost model (constructor costs are fixed at declaration)."""
    if cost_model not in ("ops", "cycles"):
        raise ValueError(f"unknown cost model {cost_model!r}; use 'ops' or 'cycles'")
    tag = f"xf{cost_model}"

    class Math(eg.Expr, egg_sort=f"{tag}_Math"):
        @classmethod
        def var(cls, name: eg.StringLike) -> Math: ...

        @classmethod
        def rat(cls, value: eg.BigRatLike) -> Math: ...

        @classmethod
        def special(cls, name: eg.StringLike) -> Math: ...

    ops = {}
    for name, o in OPS.items():
        if o.group == "leaf":
            continue
        arg_types = [Math] * o.arity + ([eg.String] if o.group in ("convert", "reduce") else [])
        ops[name] = _constructor(f"{tag}_{name}", arg_types, Math, _op_cost(name, cost_model))
    facts = {f: eg.relation(f"{tag}_{f}", Math) for f in FACTS}
    return Language(Math, Math.var, Math.rat, Math.special, ops,
                    {fn: n for n, fn in ops.items()}, facts, cost_model)


def _constructor(egg_name: str, arg_types: list, result: type, cost: int):
    """An egglog constructor from a typed stub (egglog reads the signature; no exec)."""
    params = [inspect.Parameter(f"a{i}", inspect.Parameter.POSITIONAL_OR_KEYWORD)
              for i in range(len(arg_types))]

    def stub(*args): ...
    stub.__name__ = stub.__qualname__ = egg_name
    stub.__module__ = __name__
    stub.__signature__ = inspect.Signature(params)
    stub.__annotations__ = {f"a{i}": t for i, t in enumerate(arg_types)} | {"return": result}
    return eg.function(egg_fn=egg_name, cost=cost)(stub)


def big_rat(q: Fraction) -> eg.BigRat:
    """An exact BigRat of any size (BigRat(n, d) goes through 64-bit ints)."""
    return eg.BigRat(eg.BigInt.from_string(str(q.numerator)),
                     eg.BigInt.from_string(str(q.denominator)))


# --- Expr <-> egglog terms ---------------------------------------------------------------------

class Bridge:
    """Converts between Exprs and terms of one language, remembering attributes."""

    def __init__(self, lang: Language):
        self.lang = lang
        self.attrs: dict[str, object] = {}
        self.variables: dict[str, Expr] = {}

    def attr_text(self, attr) -> str:
        text = repr(attr)
        self.attrs[text] = attr
        return text

    def literal(self, node: Expr):
        v = node.attr
        if isinstance(v, bool) or isinstance(v, str):
            return self.lang.special(str(v))
        return self.lang.rat(big_rat(Fraction(v)))

    def to_term(self, root: Expr, pattern_vars: dict | None = None, graph=None):
        """Term for root. pattern_vars maps variable names to egglog pattern variables;
        with `graph`, deep terms are registered in steps (named with let)."""
        terms, depth = {}, {}
        for i, node in enumerate(root.toposort()):
            depth[node] = 1 + max((depth[a] for a in node.args), default=0)
            if node.op == "var":
                if pattern_vars is not None:
                    terms[node] = pattern_vars[node.name]
                    continue
                self.variables[node.name] = node
                terms[node] = self.lang.var(node.name)
                continue
            if node.op == "const":
                terms[node] = self.literal(node)
                continue
            args = [terms[a] for a in node.args]
            if node.spec.group in ("convert", "reduce"):
                args.append(eg.String(self.attr_text(node.attr)))
            term = self.lang.ops[node.op](*args)
            if graph is not None and depth[node] % _LET_EVERY == 0:
                term = graph.let(f"_xf{i}", term)
            terms[node] = term
        return terms[root]

    def from_term(self, term) -> Expr:
        """Walk an extracted term back into an Expr (memoized: extracted terms share)."""
        memo: dict = {}
        stack = [(term, False)]
        while stack:
            t, ready = stack.pop()
            key = eg.expr_parts(t)
            if key in memo and not ready:
                continue
            fn = eg.get_callable_fn(t)
            children = self._children(t, fn)
            if not ready:
                stack.append((t, True))
                stack.extend((c, False) for c in children if eg.expr_parts(c) not in memo)
                continue
            memo[key] = self._build(t, fn, [memo[eg.expr_parts(c)] for c in children])
        return memo[eg.expr_parts(term)]

    def _children(self, t, fn):
        if fn is None or fn == self.lang.var or fn == self.lang.rat or fn == self.lang.special:
            return []
        args = eg.get_callable_args(t)
        name = self.lang.names[fn]
        if OPS[name].group in ("convert", "reduce"):
            args = args[:-1]
        return list(args)

    def _build(self, t, fn, args) -> Expr:
        if fn == self.lang.var:  # equal, not identical: egglog makes new function objects
            return self.variables[eg.get_literal_value(eg.get_callable_args(t)[0])]
        if fn == self.lang.rat:
            q = eg.get_callable_args(t)[0].value
            try:
                return const(q)
            except ValueError:  # no finite decimal: a correctly rounded division
                return make("div", (const(q.numerator), const(q.denominator)))
        if fn == self.lang.special:
            text = eg.get_literal_value(eg.get_callable_args(t)[0])
            return const({"True": True, "False": False}.get(text, text))
        name = self.lang.names[fn]
        o = OPS[name]
        if o.group == "const":
            return named(name)
        attr = None
        if o.group in ("convert", "reduce"):
            attr = self.attrs[eg.get_literal_value(eg.get_callable_args(t)[-1])]
        return make(name, args, attr)


# --- facts and folding ------------------------------------------------------------------------

def analysis_rules(lang: Language) -> list:
    """Derive domain facts. Every fact excludes NaN (positive and nonneg admit +inf,
    nonzero admits +-inf), so each derivation needs inputs known not to be NaN:
    inf/inf, 0*inf and inf-inf are where NaN would sneak in."""
    a, b, e = eg.vars_("a b e", lang.sort)
    p = eg.var("p", eg.BigRat)
    pos, nonneg, nonzero, finite = (lang.facts[f] for f in FACTS)
    op = lang.ops
    zero = eg.BigRat(0, 1)

    def derive(pattern, *conditions):
        return lambda *facts: eg.rule(eg.eq(e).to(pattern), *conditions).then(
            *(f(e) for f in facts))
    rules = [
        derive(lang.rat(p))(finite),
        derive(lang.rat(p), p > zero)(pos),
        derive(lang.rat(p), p >= zero)(nonneg),
        derive(lang.rat(p), p < zero)(nonzero),
        eg.rule(pos(e)).then(nonneg(e), nonzero(e)),
        derive(op["add"](a, b), pos(a), pos(b))(pos),            # no -inf: no inf - inf
        derive(op["mul"](a, b), pos(a), pos(b))(pos),
        derive(op["div"](a, b), pos(a), pos(b), finite(b))(pos),  # inf/inf is NaN
        derive(op["add"](a, b), nonneg(a), nonneg(b))(nonneg),
        derive(op["mul"](a, b), nonneg(a), nonneg(b), finite(a), finite(b))(nonneg),  # 0*inf
        derive(op["mul"](a, b), nonzero(a), nonzero(b))(nonzero),
        derive(op["neg"](a), nonzero(a))(nonzero),
        derive(op["exp"](a), finite(a))(pos, finite),
        derive(op["sqrt"](a), nonneg(a))(nonneg),
        derive(op["sqrt"](a), pos(a))(pos),
        derive(op["abs"](a), finite(a))(nonneg),
        derive(op["abs"](a), nonzero(a))(pos),
        derive(op["mul"](a, a), finite(a))(nonneg),
        derive(op["cosh"](a), finite(a))(pos, finite),
    ]
    for name in ("add", "sub", "mul"):  # the oracle's reals never overflow
        rules.append(derive(op[name](a, b), finite(a), finite(b))(finite))
    for name in ("neg", "sin", "cos", "tanh", "atan", "sigmoid", "erf", "abs"):
        rules.append(derive(op[name](a), finite(a))(finite))
    for c in ("pi", "e", "ln2"):
        rules.append(derive(op[c]())(pos, finite))
    return rules


def folding_rules(lang: Language) -> list:
    """Exact arithmetic on rational literals (real-number meaning, so it is sound)."""
    p, q = eg.vars_("p q", eg.BigRat)
    R, op = lang.rat, lang.ops
    zero, one = eg.BigRat(0, 1), eg.BigInt(1)
    limit_hi, limit_lo = eg.BigRat(64, 1), eg.BigRat(-64, 1)
    return [
        eg.rewrite(op["add"](R(p), R(q))).to(R(p + q)),
        eg.rewrite(op["sub"](R(p), R(q))).to(R(p - q)),
        eg.rewrite(op["mul"](R(p), R(q))).to(R(p * q)),
        eg.rewrite(op["neg"](R(p))).to(R(-p)),
        eg.rewrite(op["div"](R(p), R(q))).to(R(p / q), eg.ne(q).to(zero)),
        # small integer powers of nonzero rationals
        eg.rewrite(op["pow"](R(p), R(q))).to(
            R(p ** q), eg.eq(q.denom).to(one), q <= limit_hi, q >= limit_lo,
            eg.ne(p).to(zero)),
    ]


# --- running --------------------------------------------------------------------------------

@dataclass
class RunResult:
    term: object
    stop_reason: str          # saturated | node_limit | time_limit | iteration_limit
    iterations: int
    nodes: int
    fired: list = field(default_factory=list)   # (iteration, rule name, matches)


def graph_size(graph) -> int:
    return sum(n for _, n in graph.all_function_sizes())


def run_bounded(graph, ruleset, root_term, *, timeout: float, node_limit: int,
                iter_limit: int, labels: dict, start: float, until=None,
                patience: int | None = None) -> RunResult:
    """Iterate until saturation, a limit, or until() holds; says which stopped it.

    An iteration cannot be interrupted, so the loop also stops when the next one would
    likely overrun the time limit (iterations grow: assume four times the last). With
    `patience`, it stops ("stalled") once the cheapest extraction has not improved for
    that many iterations: expansive rules can grow the graph long after the best
    program was found."""
    fired, reason, it, last = [], "iteration_limit", 0, 0.0
    size = graph_size(graph)
    best, stale = None, 0
    for it in range(1, iter_limit + 1):
        if until is not None and until():
            reason, it = "goal", it - 1
            break
        now = time.perf_counter()
        if now - start + 4 * last > timeout:  # iterations grow about geometrically
            reason, it = "time_limit", it - 1
            break
        match_limit = min(1000 * 2 ** (it - 1), 16_000)
        report = graph.run(eg.run(ruleset, scheduler=eg.back_off(match_limit=match_limit,
                                                                 ban_length=2)))
        last = time.perf_counter() - now
        matches: dict[str, int] = {}  # both directions of a rule share its name
        for key, count in report.num_matches_per_rule.items():
            if count and key in labels:
                matches[labels[key]] = matches.get(labels[key], 0) + count
        fired.extend((it, name, n) for name, n in sorted(matches.items()))
        new_size = graph_size(graph)
        if new_size > node_limit:
            reason = "node_limit"
            break
        if patience is not None:
            _, now_cost = graph.extract(root_term, include_cost=True)
            best, stale = (now_cost, 0) if best is None or now_cost < best else (best, stale + 1)
            if stale >= patience:
                reason = "stalled"
                break
        if new_size == size and not any(r.rule_set_report.changed for r in report.iterations):
            # back-off may have banned rules: saturated only if a plain iteration agrees
            if not graph.run(ruleset).updated and graph_size(graph) == size:
                reason = "saturated"
                break
            new_size = graph_size(graph)
        size = new_size
    else:
        it = iter_limit
    return RunResult(root_term, reason, it, graph_size(graph), fired)
