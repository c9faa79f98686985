"""Enumerated seeds for symbolic regression: constant-free formulas built bottom up from
the variables and 1 with the problem's ops, smallest first, one per distinct value
vector (as in exhaustive symbolic regression, Bartlett et al. 2023, and bottom-up
program synthesis), then the best fits of y by one or two of them plus a constant.

GP assembles a product or a nested argument like x*sin(y) or cos(x*y)*exp(x) rarely:
every partial form scores worse than a smooth polynomial with more constants.
Enumeration finds the small ones outright; a linear fit on top supplies the outer scale
and offset, the sum of two covers formulas twice the enumerated size. Constants inside
(sin(2.5*x)) are beyond it, as are formulas past LIMIT (with the default ops: every
formula of 7 nodes in one variable, 6 in two, 5 in five). The seeds only start the
search, which refits and snaps their constants like any candidate.
"""
from __future__ import annotations

import numpy as np

from exprforge.engine.expr import Expr, const, make, var
from exprforge.engine.ops import OPS

from ..primitives import TYPE_TAGS, op_signature

FLOAT = TYPE_TAGS["float64"]

ROWS = 48             # the enumeration's values: on this many of the fit rows (fixed)
MAX_SIZE = 8          # largest formula enumerated, in tree nodes
LIMIT = 40_000        # distinct functions kept over all sizes (then enumeration stops)
BLOCK = 50_000        # candidate rows evaluated at once (memory: BLOCK * ROWS floats)
PARTNERS = 64         # best single fits each tried with every other function as a pair
SEEDS = 3             # seeds taken from the single fits, and as many from the pairs
BOUND = 1e100         # values beyond this are dropped (their squares must stay finite)


def _float_ops(ops, arity):
    """The ops of `ops` that map floats to floats elementwise with this arity, by the
    signature the primitive set gives them (comparisons, logic and integer ops left out)."""
    out = []
    for name in ops:
        try:
            args, ret = op_signature(name, "float64")
        except ValueError:
            continue
        if len(args) == arity and ret is FLOAT and all(a is FLOAT for a in args) and \
                OPS[name].np_fn is not None:
            out.append(OPS[name])
    return out


def _keys(block: np.ndarray) -> np.ndarray:
    """Per row, a value vector's identity: its values over their largest power of two,
    rounded to float32, and that power (so x*x and exp(2*log(x)) are one, and rows far
    outside float32's range still differ)."""
    scale = np.frexp(np.max(np.abs(block), axis=1))[1]
    mantissas = np.ldexp(block, -scale[:, None]).astype(np.float32)
    return np.concatenate([mantissas.view(np.int32), scale[:, None].astype(np.int32)], axis=1)


def enumerate_functions(columns: dict, ops, max_size: int = MAX_SIZE,
                        limit: int = LIMIT) -> tuple:
    """Constant-free formulas over `columns` (name -> float64 vector) and the literal 1,
    by size: each unary op of `ops` applied to every formula one node smaller, then each
    binary op to every pair whose sizes add up (the smaller left operand first), keeping
    one formula per value vector (_keys), only finite values within BOUND, and no
    constant but the literal 1 (the search fits constants anyway). Stops after `limit`
    formulas, which may be inside a size. Returns (formulas: indexable, built on
    access; their values, a (formulas, rows) array; their sizes). Deterministic."""
    names = list(columns)
    n = len(next(iter(columns.values())))
    unary, binary = _float_ops(ops, 1), _float_ops(ops, 2)
    leaves = [var(name, "float64") for name in names] + [const(1.0, "float64")]
    nodes: list = list(leaves)       # a leaf Expr, or (op name, argument indices)
    blocks: list = [np.vstack([columns[name] for name in names] + [np.ones(n)])]
    by_size: dict[int, np.ndarray] = {1: np.arange(len(leaves))}
    seen = {row.tobytes() for row in _keys(blocks[0])}
    count = len(leaves)

    def keep(size, block, parts) -> bool:
        """Append the rows of `block` that are new and not constant; parts(j) gives the
        (op, arguments) of row j. False once `limit` is reached."""
        nonlocal count
        with np.errstate(all="ignore"):
            big = np.max(np.abs(block), axis=1)
            ok = np.all(np.isfinite(block), axis=1) & (big <= BOUND)
            ok &= np.ptp(block, axis=1) > 1e-9 * big
        rows = np.flatnonzero(ok)
        new = []
        if rows.size:
            for j, key in zip(rows, _keys(block[rows])):
                key = key.tobytes()
                if key not in seen:
                    seen.add(key)
                    new.append(int(j))
                    if count + len(new) >= limit:
                        break
        if new:
            nodes.extend(parts(j) for j in new)
            blocks.append(block[new])
            by_size[size] = np.concatenate([by_size.get(size, np.zeros(0, int)),
                                            np.arange(count, count + len(new))])
            count += len(new)
        return count < limit

    def result():
        sizes = np.zeros(count, int)
        for size, idx in by_size.items():
            sizes[idx] = size
        return _Built(nodes), np.vstack(blocks), sizes

    for size in range(2, max_size + 1):
        values = np.vstack(blocks)
        blocks[:] = [values]
        idx = by_size.get(size - 1)
        for op in unary if idx is not None else ():
            with np.errstate(all="ignore"):
                block = op.np_fn(values[idx])
            if not keep(size, block, lambda j, op=op, idx=idx: (op.name, (idx[j],))):
                return result()
        for left in range(1, size - 1):
            a, b = by_size.get(left), by_size.get(size - 1 - left)
            if a is None or b is None:
                continue
            step = max(1, BLOCK // len(b))
            for op in binary:
                if "commutative" in op.props and left > size - 1 - left:
                    continue   # the same pairs as (right, left)
                for start in range(0, len(a), step):
                    part = a[start:start + step]
                    with np.errstate(all="ignore"):
                        block = op.np_fn(values[part][:, None, :],
                                         values[b][None, :, :]).reshape(-1, n)
                    if not keep(size, block, lambda j, op=op, part=part, b=b:
                                (op.name, (part[j // len(b)], b[j % len(b)]))):
                        return result()
    return result()


class _Built:
    """The formulas of enumerate_functions, built as Exprs on first access (most are
    never looked at)."""

    def __init__(self, nodes):
        self.nodes, self.exprs = nodes, {}

    def __len__(self):
        return len(self.nodes)

    def __getitem__(self, i) -> Expr:
        i = range(len(self.nodes))[i]          # an index, negative ones included
        if i not in self.exprs:
            node = self.nodes[i]
            self.exprs[i] = node if isinstance(node, Expr) else \
                make(node[0], [self[j] for j in node[1]])
        return self.exprs[i]


def _first_of_each_direction(Vc: np.ndarray, norms2: np.ndarray) -> np.ndarray:
    """True for the first (smallest) formula of each centered direction up to sign: the
    fits see only that, and a formula that is another plus a constant (x1 + x1 + x1 - 1
    next to x1) would give the seed a constant the intercept already provides, whose
    least-squares split between the two is decided by rounding."""
    unit = Vc / np.sqrt(norms2)[:, None]
    lead = np.argmax(np.abs(unit) > 1e-6, axis=1)
    unit *= np.where(unit[np.arange(len(unit)), lead] < 0, -1.0, 1.0)[:, None]
    _, first = np.unique(np.round(unit, 9), axis=0, return_index=True)
    out = np.zeros(len(unit), bool)
    out[first] = True
    return out


def enumerated_terms(problem, floor: float) -> list[list[Expr]]:
    """The terms of the best fits y ~ c0 + c1*f: [f] for the SEEDS best single formulas
    f of enumerate_functions, and y ~ c0 + c1*f + c2*g: [f, g] for the SEEDS best pairs
    (f among the PARTNERS best singles and the PARTNERS smallest formulas, g any), by
    residual on ROWS of the problem's fit rows; residuals below `floor` times the
    target's energy count as 0, and ties go to the smaller formulas."""
    fit = problem.fit_rows
    rows = fit[np.linspace(0, len(fit) - 1, min(ROWS, len(fit))).astype(int)]
    y = problem.y[rows]
    yc = y - y.mean()
    energy = float(yc @ yc)
    if rows.size < 3 or not energy > 0:
        return []
    exprs, V, sizes = enumerate_functions(problem.columns(rows), problem.ops)
    Vc = V - V.mean(axis=1, keepdims=True)
    norms2 = np.einsum("ij,ij->i", Vc, Vc)
    live = norms2 > 1e-20 * np.einsum("ij,ij->i", V, V)   # the literal 1 fits nothing
    live &= _first_of_each_direction(Vc, np.where(live, norms2, 1.0))
    proj = Vc @ yc
    rss1 = np.where(live, energy - proj ** 2 / np.where(live, norms2, 1.0), np.inf)
    cut = floor * energy
    ranked = [int(i) for i in np.lexsort((sizes, np.maximum(rss1, cut))) if live[i]]
    smallest = [int(i) for i in np.flatnonzero(live)[:PARTNERS]]
    partners = list(dict.fromkeys(ranked[:PARTNERS] + smallest))
    if not partners:
        return []
    # for each partner f (unit vector u) and every g: the residual of y on [1, f, g] is
    # |e|**2 - ((g.e)**2 / |g - (g.u)u|**2) with e = yc - (yc.u)u, g.e = g.yc - (yc.u)(g.u)
    # and |g - (g.u)u|**2 = |g|**2 - (g.u)**2: one product for all pairs
    U = Vc[partners] / np.sqrt(norms2[partners])[:, None]
    A = Vc @ U.T                                      # (formulas, partners): g.u
    yu = U @ yc
    g2 = norms2[:, None] - A * A
    ok = live[:, None] & (g2 > 1e-6 * norms2[:, None])   # not f again, nor nearly f
    gain = np.where(ok, (proj[:, None] - yu * A) ** 2 / np.where(ok, g2, 1.0), -np.inf)
    best_g = np.argmax(gain, axis=0)
    pairs = {}
    for k, f in enumerate(partners):
        g = int(best_g[k])
        if np.isfinite(gain[g, k]):
            rss = max(float(energy - yu[k] ** 2 - gain[g, k]), cut)
            pairs[(min(f, g), max(f, g))] = (rss, int(sizes[f] + sizes[g]))
    best = sorted(pairs, key=pairs.get)[:SEEDS]
    return [[exprs[i]] for i in ranked[:SEEDS]] + [[exprs[f], exprs[g]] for f, g in best]
