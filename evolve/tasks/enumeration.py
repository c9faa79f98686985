"""Enumerated seeds for symbolic regression: every constant-free formula up to a size,
built bottom up from the variables and 1 with the problem's ops, one per distinct value
vector (as in exhaustive symbolic regression, Bartlett et al. 2023, and bottom-up
program synthesis), then the best fits of y by one or two of them plus a constant.

GP assembles a product or a nested argument like sin(x**2)*cos(x) or sin(x + x**2)
rarely: every partial form scores worse than a smooth polynomial with more constants.
Enumeration finds the small ones outright; a linear fit on top supplies the outer scale
and offset, the sum of two covers formulas twice the enumerated size. The seeds only
start the search, which refits and snaps their constants like any candidate.
"""
from __future__ import annotations

import numpy as np

from exprforge.engine.expr import Expr, const, make, var
from exprforge.engine.ops import OPS

ROWS = 48             # the enumeration's values: on this many of the fit rows (fixed)
MAX_SIZE = 8          # largest formula enumerated, in tree nodes
LIMIT = 40_000        # distinct functions kept over all sizes (then enumeration stops)
PARTNERS = 64         # best single fits each tried with every other function as a pair
SEEDS = 3             # seeds taken from the single fits, and as many from the pairs
BOUND = 1e12          # values beyond this are dropped (exp(exp(x)) is never a start)


def enumerate_functions(columns: dict, ops, max_size: int = MAX_SIZE,
                        limit: int = LIMIT) -> tuple[list, np.ndarray]:
    """Constant-free formulas over `columns` (name -> float64 vector) and the literal 1,
    smallest first, each unary op of `ops` applied to every smaller formula and each
    binary op to every pair whose sizes add up, keeping one formula per value vector
    (compared in float32, so x*x and exp(2*log(x)) are one), only finite values within
    BOUND, and no constant but the literal 1 (the search fits constants anyway).
    Returns (formulas, their values as a (formulas, rows) array, their sizes); stops
    at `limit` formulas. Deterministic: the order depends only on the inputs."""
    names = list(columns)
    n = len(next(iter(columns.values())))
    unary = [OPS[o] for o in ops if o in OPS and OPS[o].arity == 1 and OPS[o].np_fn]
    binary = [OPS[o] for o in ops if o in OPS and OPS[o].arity == 2 and OPS[o].np_fn]
    leaves = [var(name, "float64") for name in names] + [const(1.0, "float64")]
    nodes: list = list(leaves)       # a leaf Expr, or (op name, argument indices)
    blocks: list = [np.vstack([columns[name] for name in names] + [np.ones(n)])]
    by_size: dict[int, np.ndarray] = {1: np.arange(len(leaves))}
    seen = {row.tobytes() for row in blocks[0].astype(np.float32)}
    count = len(leaves)

    def keep(block, parts) -> bool:
        """Append the rows of `block` that are new and not constant; parts(j) gives the
        (op, arguments) of row j. False once `limit` is reached."""
        nonlocal count
        with np.errstate(all="ignore"):
            ok = np.all(np.isfinite(block), axis=1) & np.all(np.abs(block) <= BOUND, axis=1)
            ok &= np.ptp(block, axis=1) > 1e-12 * np.max(np.abs(block), axis=1)
            keys = block.astype(np.float32)
        new = []
        for j in np.flatnonzero(ok):
            key = keys[j].tobytes()
            if key not in seen:
                seen.add(key)
                new.append(j)
                if count + len(new) >= limit:
                    break
        if new:
            nodes.extend(parts(int(j)) for j in new)
            blocks.append(block[new])
            by_size[size] = np.concatenate([by_size.get(size, np.zeros(0, int)),
                                            np.arange(count, count + len(new))])
            count += len(new)
        return count < limit

    values = blocks[0]
    for size in range(2, max_size + 1):
        values = np.vstack(blocks)
        blocks[:] = [values]
        for op in unary:
            idx = by_size.get(size - 1)
            if idx is None:
                continue
            with np.errstate(all="ignore"):
                block = op.np_fn(values[idx])
            if not keep(block, lambda j, op=op, idx=idx: (op.name, (idx[j],))):
                return _built(nodes), np.vstack(blocks), _sizes(by_size, count)
        for left in range(1, size - 1):
            a, b = by_size.get(left), by_size.get(size - 1 - left)
            if a is None or b is None:
                continue
            for op in binary:
                if "commutative" in op.props and left > size - 1 - left:
                    continue   # the same pairs as (right, left)
                with np.errstate(all="ignore"):
                    block = op.np_fn(values[a][:, None, :], values[b][None, :, :]).reshape(-1, n)
                if not keep(block, lambda j, op=op, a=a, b=b:
                            (op.name, (a[j // len(b)], b[j % len(b)]))):
                    return _built(nodes), np.vstack(blocks), _sizes(by_size, count)
    return _built(nodes), np.vstack(blocks), _sizes(by_size, count)


def _sizes(by_size: dict, count: int) -> np.ndarray:
    out = np.zeros(count, int)
    for size, idx in by_size.items():
        out[idx] = size
    return out


class _built:
    """The formulas of enumerate_functions, built as Exprs on first access (most are
    never looked at)."""

    def __init__(self, nodes):
        self.nodes, self.exprs = nodes, {}

    def __len__(self):
        return len(self.nodes)

    def __getitem__(self, i) -> Expr:
        i = int(i)
        if i not in self.exprs:
            node = self.nodes[i]
            self.exprs[i] = node if isinstance(node, Expr) else \
                make(node[0], [self[j] for j in node[1]])
        return self.exprs[i]


def enumerated_terms(problem, floor: float) -> list[list[Expr]]:
    """The terms of the best fits y ~ c0 + c1*f: [f] for the SEEDS best single formulas
    f of enumerate_functions, and y ~ c0 + c1*f + c2*g: [f, g] for the SEEDS best pairs
    (f among the PARTNERS best singles and the PARTNERS smallest formulas, g any), by
    residual on ROWS of the problem's fit rows; residuals below `floor` times the
    target's energy count as 0, and ties go to the smaller formulas."""
    fit = problem.fit_rows
    rows = fit[np.linspace(0, len(fit) - 1, min(ROWS, len(fit))).astype(int)]
    exprs, V, sizes = enumerate_functions(problem.columns(rows), problem.ops)
    y = problem.y[rows]
    yc = y - y.mean()
    energy = float(yc @ yc)
    if not energy > 0:
        return []
    Vc = V - V.mean(axis=1, keepdims=True)
    norms2 = np.einsum("ij,ij->i", Vc, Vc)
    live = norms2 > 1e-20 * np.einsum("ij,ij->i", V, V)   # the literal 1 fits nothing
    proj = Vc @ yc
    rss1 = np.where(live, energy - proj ** 2 / np.where(live, norms2, 1.0), np.inf)
    cut = floor * energy
    ranked = [int(i) for i in np.lexsort((sizes, np.maximum(rss1, cut))) if live[i]]
    pairs = {}
    for f in dict.fromkeys(ranked[:PARTNERS] + [i for i in range(len(exprs)) if live[i]][:PARTNERS]):
        u = Vc[f] / np.sqrt(norms2[f])
        G = Vc - np.outer(Vc @ u, u)                  # every formula, less its part along f
        e = yc - (yc @ u) * u
        g2 = np.einsum("ij,ij->i", G, G)
        ok = live & (g2 > 1e-8 * norms2)              # not f again, up to rounding
        gain = np.where(ok, (G @ e) ** 2 / np.where(ok, g2, 1.0), -np.inf)
        g = int(np.argmax(gain))
        if np.isfinite(gain[g]):
            key = (min(f, g), max(f, g))
            pairs[key] = (max(float(e @ e - gain[g]), cut), int(sizes[f] + sizes[g]))
    best = sorted(pairs, key=pairs.get)[:SEEDS]
    return [[exprs[i]] for i in ranked[:SEEDS]] + [[exprs[f], exprs[g]] for f, g in best]
