"""simplify: e-graph rewriting with rules as data, bounded by time, size and rounds,
extracting the cheapest equivalent program under a cost model.

Soundness: every rule is a real-number identity under its stated assumptions (see
rewrite/rules.py); facts come from `assume` (positive:x, nonneg:x, nonzero:x, finite:x),
from assume_finite (every variable finite), or are derived in the e-graph. The result is
never costlier than the input: if extraction finds nothing cheaper, the input is returned.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from exprforge.engine.expr import Expr, concretize
from exprforge.engine.parse import parse

from . import rules as rules_mod
from .cost import cost as cost_of
from .egraph import (FACTS, Bridge, Program, analysis_text, drop_session, folding_text,
                     language_text, literal_pruning_text, power_text, quote, session,
                     coefficient_text)
from .schedule import run_phased
from .sums import gather_sums

# Expansion rounds without a cheaper extraction before stopping; None runs to a limit.
# Rounds come after the shrinking rules have saturated (rewrite/schedule.py).
PATIENCE = 3


@dataclass
class Simplified:
    expr: Expr
    original: Expr
    cost_model: str
    cost_before: float
    cost_after: float
    seconds: float
    stop_reason: str      # saturated | stalled | time_limit | node_limit | iteration_limit
                          # | tree_limit (not run: see TREE_LIMIT)
    iterations: int       # the shrinking phase, then one per expansion round
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


TREE_LIMIT = 100_000   # egglog writes an extracted term out as a tree: a DAG whose tree
                      # is larger (d = d * d thirty times: 2^30 nodes) took seconds or
                      # killed the process allocating 64 GB; such inputs are returned as is


def _tree_size(e: Expr, cap: int) -> int:
    """Nodes of `e` written out as a tree, counted up to cap + 1."""
    size = {}
    for n in e.toposort():
        size[n] = min(cap + 1, 1 + sum(size[a] for a in n.args))
    return size[e]


def _ops(e: Expr) -> int:
    """Operations in a pattern written out as a tree (variables are free)."""
    size = {}
    for n in e.toposort():
        size[n] = (n.op != "var") + sum(size[a] for a in n.args)
    return size[e]


def _shrinks(left: Expr, right: Expr) -> bool:
    """Whether a rewrite direction belongs to the shrink ruleset: fewer ops on the right,
    and no new class besides literals (the right side is a variable, a literal, or one
    op over variables and literals), so saturating these rules cannot grow the e-graph
    by more than a node per match."""
    return _ops(right) < _ops(left) and all(not a.args for a in right.args)


def _program(cost_model: str, groups: tuple | None) -> Program:
    """The egglog program: the language, the selected rules (each direction in the
    shrink or the expand ruleset), constant folding and the domain facts."""
    bridge = Bridge()
    lines, labels = [language_text(cost_model)], {}

    def add(label, lhs, rhs, conds, ruleset):
        name = f"{label}#{len(labels)}"
        when = f" :when ({conds})" if conds else ""
        lines.append(f'(rewrite {lhs} {rhs}{when} :ruleset {ruleset} :name "{name}")')
        labels[name] = label

    used = {"add", "sub", "mul", "div", "neg", "pow", "abs", "sqrt"}   # folding's ops
    for rule in rules_mod.rules(groups):
        lhs, rhs = rules_mod.pattern(rule)
        used |= {n.op for side in (lhs, rhs) for n in side.toposort() if n.args}
        pvars = {n: f"_{n}" for n in set(lhs.var_names()) | set(rhs.var_names())}
        conds = " ".join(f"(is_{fact} _{v})" for fact, v in rules_mod.conditions(rule))
        # a direction whose left side is a bare variable or literal would match every
        # term (x -> exp(log(x)), 1 -> sin(x)**2 + cos(x)**2): only the other is used
        pairs = [(lhs, rhs)] + ([(rhs, lhs)] if rule.both_ways and rhs.args else [])
        if not lhs.args:
            pairs = [(rhs, lhs)] if rule.both_ways else []
        for left, right in pairs:
            ruleset = "shrink" if _shrinks(left, right) else "expand"
            add(rule.name, bridge.pattern(left, pvars), bridge.pattern(right, pvars), conds,
                ruleset)
    for lhs, rhs, conds in folding_text():
        add("constant-fold", lhs, rhs, conds, "shrink")
    for lhs, rhs, conds in coefficient_text():
        add("coefficient", lhs, rhs, conds, "shrink")
    add("pow-int", *power_text(), "shrink")   # bounded: the exponent only decreases
    lines += analysis_text() + literal_pruning_text(sorted(used))
    return Program("\n".join(lines), labels)


def _session(cost_model: str, groups: tuple | None):
    key = (cost_model, groups)
    return key, session(key, lambda: _program(cost_model, groups))


def _load(sess, bridge, exprs, facts, assume_finite) -> list[str]:
    """Add `exprs`, each with its like terms gathered (sums.gather_sums) as an equal
    form, and the stated facts to the session; a reference to each expr."""
    gathered = [gather_sums(e) for e in exprs]
    extra = [g for e, g in zip(exprs, gathered) if g is not e]
    commands, refs = bridge.terms(list(exprs) + extra)
    alias = iter(refs[len(exprs):])
    commands += [f"(union {ref} {next(alias)})"
                 for e, g, ref in zip(exprs, gathered, refs) if g is not e]
    names = {n for e in exprs for n in e.var_names()}
    stated = set(facts) | ({("finite", n) for n in names} if assume_finite else set())
    if stated:
        commands.append(" ".join(f"(is_{fact} (Var {quote(name)}))"
                                 for fact, name in sorted(stated)))
    sess.add(commands)
    return refs[:len(exprs)]


def simplify_full(expr, cost: str = "cycles", rules=None, assume=(), assume_finite: bool = False,
                  timeout: float = 1.0, node_limit: int = 50_000, iter_limit: int = 30,
                  patience: int | None = PATIENCE, dtype: str = "float64") -> Simplified:
    """Simplify and report: costs, time, which limit stopped the run, the rules that fired.

    `timeout` bounds the e-graph work (building, running, extracting); the one-time
    compilation of the rules in a thread is not counted against it, but is in .seconds."""
    began = time.perf_counter()
    original = parse(expr, dtype=dtype) if isinstance(expr, str) else expr
    if not isinstance(original, Expr):
        raise TypeError("simplify takes an Expr or expression text")
    if timeout <= 0 or node_limit <= 0 or iter_limit <= 0:
        raise ValueError("timeout, node_limit and iter_limit must be positive")
    facts = _parse_assumptions(assume, original)
    if _tree_size(original, TREE_LIMIT) > TREE_LIMIT:
        c = cost_of(original, cost)
        return Simplified(original, original, cost, c, c, time.perf_counter() - began,
                          "tree_limit", 0, 0, [])
    key, sess = _session(cost, tuple(rules) if rules is not None else None)
    start = time.perf_counter()
    bridge = Bridge()
    before = cost_of(original, cost)

    def judge(extraction):
        """(DAG cost, program) of an extracted term; the input where that is no cheaper
        or the dtype came back different."""
        _, dag, term = extraction
        program = bridge.from_term(dag, term)
        if program.is_weak and not original.is_weak:
            program = concretize(program, original.dtype)
        c = cost_of(program, cost)
        return (before, original) if c > before or program.dtype != original.dtype \
            else (c, program)

    try:
        with sess.scope():
            (ref,) = _load(sess, bridge, [original], facts, assume_finite)
            result = run_phased(sess, timeout=timeout, node_limit=node_limit,
                                iter_limit=iter_limit, start=start, root=ref, judge=judge,
                                patience=patience)
    except BaseException:  # egglog panics may leave the e-graph unusable
        drop_session(key)
        raise
    after, extracted = result.best
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
    key, sess = _session("ops", tuple(rules) if rules is not None else None)
    try:
        with sess.scope():
            ra, rb = _load(sess, Bridge(), [a, b], facts, assume_finite)
            result = run_phased(sess, timeout=timeout, node_limit=node_limit, iter_limit=30,
                                start=start, until=lambda: sess.equal(ra, rb))
            return result.stop_reason == "goal" or sess.equal(ra, rb)
    except BaseException:
        drop_session(key)
        raise
