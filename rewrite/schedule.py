"""Running rules under time, size and round limits, in two phases.

1. The shrinking rules (each rewrite's result has fewer ops than what it matched), the
   constant folding and the domain facts run to saturation first: cheap, and they find
   most simplifications.
2. Then rounds: one iteration of the expanding rules (commutativity, association,
   distribution, definitions unfolded...), then the shrinking ones to saturation again.
   These can grow the e-graph without end, so rounds stop once the cheapest extraction
   has not improved for `patience` rounds, or at a limit.

egglog has no time or size limit of its own and an iteration cannot be interrupted, so
limits are checked between commands, and a round is not started when it would likely
overrun them (rounds grow about geometrically). (Details: docs/egglog-notes.md.)
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

SHRINK_ITERATIONS = 8   # bounded: a shrinking chain could in principle go on
GROWTH = 4  # assume the next round costs and grows at least this many times the last


@dataclass
class RunResult:
    stop_reason: str   # saturated | stalled | goal | node_limit | time_limit | iteration_limit
    iterations: int
    nodes: int
    fired: list = field(default_factory=list)   # (iteration, rule name, matches)
    best: tuple | None = None   # judge's (cost, program) of the cheapest extraction seen


def run_phased(session, *, timeout: float, node_limit: int, iter_limit: int, start: float,
               root: str | None = None, judge=None, until=None,
               patience: int | None = None) -> RunResult:
    """Run the shrinking phase, then expansion rounds, until saturation, a limit, until()
    holding, or (with `patience`) no cheaper extraction for `patience` rounds.

    With a root, its cheapest term is extracted after every round (patience or not) and
    judge(extraction) gives its (cost, program), by default egglog's own cost and the
    extraction; the best is kept. egglog extracts by tree cost, so a later round's
    extraction can cost more by a DAG cost than an earlier one."""
    judge = judge or (lambda extraction: (extraction[0], extraction))
    fired, it = [], 0
    best, stale, fresh = None, 0, True
    size, last, growth = session.size(), 0.0, GROWTH
    reason = "iteration_limit"
    while it < iter_limit:
        if until is not None and until():
            reason = "goal"
            break
        now = time.perf_counter()
        if now - start + growth * last > timeout:
            reason = "time_limit"
            break
        if it and size * growth > node_limit:
            reason = "node_limit"
            break
        changed, matches = session.run("(run expand)") if it else (False, {})
        shrunk, more = _shrink(session)
        changed = changed or shrunk
        for name, n in more.items():
            matches[name] = matches.get(name, 0) + n
        it += 1
        fresh = fresh and not changed
        last = time.perf_counter() - now
        fired.extend((it, name, n) for name, n in sorted(matches.items()))
        # the next round may grow as fast as the last did (squaring chains: 5x, 6x,
        # 14x, then 45x to 400,000 nodes and seconds past the timeout)
        size, before = session.size(), size
        growth = max(GROWTH, size / max(before, 1))
        if size > node_limit:
            reason = "node_limit"
            break
        if not changed and it > 1:
            reason = "saturated"
            break
        if root is not None:
            candidate, fresh = judge(session.extract(root)), True
            better = best is None or candidate[0] < best[0]
            best, stale = (candidate, 0) if better else (best, stale + 1)
            if patience is not None and stale >= patience:
                reason = "stalled"
                break
    else:
        if until is not None and until():
            reason = "goal"
    if root is not None and (best is None or not fresh):
        candidate = judge(session.extract(root))
        best = candidate if best is None or candidate[0] < best[0] else best
    return RunResult(reason, it, size, fired, best)


def _shrink(session) -> tuple[bool, dict]:
    """Iterations of the shrinking rules until nothing changes, at most SHRINK_ITERATIONS:
    (changed, matches per rule). One command each, because egglog's (repeat n ...) runs
    all n iterations even once saturated (~0.03 ms each here: most of a small call's
    rule time)."""
    changed, matches = False, {}
    for _ in range(SHRINK_ITERATIONS):
        step, found = session.run("(run shrink)")
        for name, n in found.items():
            matches[name] = matches.get(name, 0) + n
        if not step:
            break
        changed = True
    return changed, matches
