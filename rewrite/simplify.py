"""simplify: e-graph rewriting with rules as data, bounded by time, size and iterations,
extracting the cheapest equivalent program under a cost model.

Soundness: every rule is a real-number identity under its stated assumptions (see
rewrite/rules.py); facts come from `assume` (positive:x, nonneg:x, nonzero:x, finite:x),
from assume_finite (every variable finite), or are derived in the e-graph. The result is
never costlier than the input: if extraction finds nothing cheaper, the input is returned.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cache

import egglog as eg

from exprforge.engine.expr import Expr, concretize
from exprforge.engine.parse import parse

from . import rules as rules_mod
from .cost import cost as cost_of
from .egraph import (FACTS, Bridge, analysis_rules, deep_recursion, folding_rules, language,
                     run_bounded)


# Iterations without a cheaper extraction before stopping; None runs to a limit. Off by
# default: measured on six textbook cases, patience 2-4 ran 2.5x faster but missed
# (a+b)**2 - (a-b)**2 -> 4ab, which needs about six iterations of expansion first.
PATIENCE = None


@dataclass
class Simplified:
    expr: Expr
    original: Expr
    cost_model: str
    cost_before: float
    cost_after: float
    seconds: float
    stop_reason: str      # saturated | stalled | time_limit | node_limit | iteration_limit
    iterations: int
    nodes: int
    fired: list = field(default_factory=list)   # (iteration, rule name, matches), in order


def _parse_assumptions(assume, expr: Expr) -> list[tuple[str, str]]:
    out = []
    names = set(expr.var_names())
    for item in assume:
        fact, _, name = item.partition(":") if isinstance(item, str) else item
        if fact not in FACTS:
            raise ValueError(f"unknown assumption {fact!r}; use one of {', '.join(FACTS)}")
        if name not in names:
            raise ValueError(f"assumption names {name!r}, which is not a variable of the "
                             f"expression ({', '.join(sorted(names)) or 'none'})")
        out.append((fact, name))
    return out


@cache
def _compiled_rules(cost_model: str, groups: tuple | None):
    """egglog rewrites for the selected rule groups, with labels for explain."""
    lang = language(cost_model)
    bridge = Bridge(lang)
    rewrites, labels = [], {}
    for rule in rules_mod.rules(groups):
        lhs, rhs = rules_mod.pattern(rule)
        names = sorted(set(lhs.var_names()) | set(rhs.var_names()))
        pvars = {n: eg.var(n, lang.sort) for n in names}
        conds = []
        for entry in rule.assume:
            fact, _, rest = entry.partition("(")
            conds.append(lang.facts[fact](pvars[rest.rstrip(")")]))
        a, b = bridge.to_term(lhs, pvars), bridge.to_term(rhs, pvars)
        # a direction whose left side is a bare variable or literal would match every
        # term (x -> exp(log(x)), 1 -> sin(x)**2 + cos(x)**2): only the other is used
        pairs = [(a, b)] + ([(b, a)] if rule.both_ways and rhs.args else [])
        if not lhs.args:
            pairs = [(b, a)] if rule.both_ways else []
        for left, right in pairs:
            r = eg.rewrite(left).to(right, *conds)
            rewrites.append(r)
            labels[r.decl] = rule.name
    for r in folding_rules(lang):
        rewrites.append(r)
        labels[r.decl] = "constant-fold"
    return rewrites, labels


def simplify_full(expr, cost: str = "cycles", rules=None, assume=(), assume_finite: bool = False,
                  timeout: float = 1.0, node_limit: int = 50_000, iter_limit: int = 30,
                  patience: int | None = PATIENCE, dtype: str = "float64") -> Simplified:
    """Simplify and report: costs, time, which limit stopped the run, the rules that fired.

    `timeout` bounds the e-graph work (building, running, extracting); the one-time
    compilation of the rules in a process is not counted against it, but is in .seconds."""
    began = time.perf_counter()
    original = parse(expr, dtype=dtype) if isinstance(expr, str) else expr
    if not isinstance(original, Expr):
        raise TypeError("simplify takes an Expr or expression text")
    if timeout <= 0 or node_limit <= 0 or iter_limit <= 0:
        raise ValueError("timeout, node_limit and iter_limit must be positive")
    facts = _parse_assumptions(assume, original)
    groups = tuple(rules) if rules is not None else None
    rewrites, labels = _compiled_rules(cost, groups)  # once per process: not in the budget
    lang = language(cost)
    start = time.perf_counter()
    bridge = Bridge(lang)
    with deep_recursion():
        graph, (term,), ruleset = _setup(lang, bridge, [original], facts, assume_finite, rewrites)
        result = run_bounded(graph, ruleset, term, timeout=timeout, node_limit=node_limit,
                             iter_limit=iter_limit, labels=labels, start=start,
                             patience=patience)
        extracted = bridge.from_term(graph.extract(term))
    if extracted.is_weak and not original.is_weak:
        extracted = concretize(extracted, original.dtype)
    before, after = cost_of(original, cost), cost_of(extracted, cost)
    if after > before or extracted.dtype != original.dtype:
        extracted, after = original, before
    return Simplified(extracted, original, cost, before, after, time.perf_counter() - began,
                      result.stop_reason, result.iterations, result.nodes, result.fired)


def simplify(expr, cost: str = "cycles", rules=None, assume=(), assume_finite: bool = False,
             timeout: float = 1.0, node_limit: int = 50_000, patience: int | None = PATIENCE,
             explain: bool = False):
    """The cheapest equivalent program found; with explain=True also the rules that fired
    in order, as (iteration, rule name, matches)."""
    r = simplify_full(expr, cost=cost, rules=rules, assume=assume, assume_finite=assume_finite,
                      timeout=timeout, node_limit=node_limit, patience=patience)
    return (r.expr, r.fired) if explain else r.expr


def prove(lhs, rhs, rules=None, assume=(), assume_finite: bool = False, timeout: float = 2.0,
          node_limit: int = 100_000, dtype: str = "float64") -> bool:
    """True when the rules show lhs == rhs (under the assumptions) within the limits.
    False means "not shown", not "different"."""
    start = time.perf_counter()
    a = parse(lhs, dtype=dtype) if isinstance(lhs, str) else lhs
    b = parse(rhs, dtype=dtype) if isinstance(rhs, str) else rhs
    both = a + b if not (a.dtype == "bool" or b.dtype == "bool") else a.eq(b)
    facts = _parse_assumptions(assume, both)
    rewrites, labels = _compiled_rules("ops", tuple(rules) if rules is not None else None)
    lang = language("ops")
    with deep_recursion():
        graph, (ta, tb), ruleset = _setup(lang, Bridge(lang), [a, b], facts, assume_finite,
                                          rewrites)
        goal = eg.eq(ta).to(tb)
        run_bounded(graph, ruleset, ta, timeout=timeout, node_limit=node_limit, iter_limit=30,
                    labels=labels, start=start, until=lambda: graph.check_bool(goal))
        return graph.check_bool(goal)


def _setup(lang, bridge, exprs, facts, assume_finite, rewrites):
    """A fresh e-graph holding `exprs`, the stated facts, and the ruleset to run."""
    graph = eg.EGraph()
    terms = [bridge.to_term(e, graph=graph) for e in exprs]
    graph.register(*terms)
    for fact, name in facts:
        graph.register(lang.facts[fact](lang.var(name)))
    if assume_finite:
        for name in sorted({n for e in exprs for n in e.var_names()}):
            graph.register(lang.facts["finite"](lang.var(name)))
    ruleset = eg.ruleset(*rewrites, *analysis_rules(lang), name=f"run_{id(graph)}")
    return graph, terms, ruleset
