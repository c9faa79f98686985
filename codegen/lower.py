"""Lowering: an Expr DAG to straight-line SSA programs a renderer can spell.

The pipeline, one stage per line (see `lower`):
  prepare      retype to the kernel dtype, give a literal-only root its dtype
  decompose    rewrite the ops a target lacks into ops it has (the one place this happens)
  strength     x**2, x**3, x**4 and x**-1 as multiplications or a division
  split        cut the DAG at reductions: elementwise programs and reduction steps; the
               elementwise parts that read the same inputs share one program (one loop);
               with rows=True a float sum or mean over axes that include the last is a
               RowReduce, a loop that computes its argument per element and sums each
               row (a variance is the mean of squared deviations from the mean there, as
               NumPy computes it)
  linearize    each elementwise part to SSA, every shared node computed once; a `where`
               whose sides carry real work becomes a `Branch` that runs only its taken side

A renderer sees only `Program`s: parameters, a list of `Instr` and `Branch`, and the
outputs it stores (one, unless several expressions were compiled together).
Other reductions stay outside the generated loops as `Reduce` steps (run by the target
through NumPy), so a renderer that spells elementwise ops is complete; CPU renderers
also spell RowReduce. A renderer that cannot branch per
element (Triton) reads `Program.flat()`, the same program with every Branch a `where`.
"""
from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass

from exprforge.engine import dtypes as dt
from exprforge.engine.evaluate import literal_value, named_value, prepare
from exprforge.engine.expr import Expr, F, rebuild
from exprforge.engine.ops import OPS, is_count


@dataclass(frozen=True)
class Instr:
    out: str                 # SSA name assigned
    op: str                  # op table name, or "const"
    args: tuple              # SSA or parameter names
    dtype: str
    attr: object = None      # const: the value (a NumPy scalar of dtype); convert: target dtype


@dataclass(frozen=True)
class Branch:
    """out = then_result if cond else else_result, where only the taken side's
    instructions run. Each side's values are used only inside that side."""
    out: str
    cond: str
    then: tuple              # Instr | Branch, ...
    then_result: str
    orelse: tuple
    else_result: str
    dtype: str

    def flat(self) -> list:
        """The eager equivalent: both sides, then a select."""
        return [*_flat(self.then), *_flat(self.orelse),
                Instr(self.out, "where", (self.cond, self.then_result, self.else_result),
                      self.dtype)]


def _flat(body) -> list:
    return [x for item in body for x in (item.flat() if isinstance(item, Branch) else [item])]


@dataclass(frozen=True)
class Program:
    """One elementwise loop body: out_k = f_k(params...) for each output k. Several
    outputs share one loop (and each value they share) when they read the same inputs."""
    name: str
    params: tuple            # ((name, dtype), ...) in call order
    body: tuple              # Instr | Branch, ...
    outputs: tuple           # ((SSA name, dtype), ...): one array written per output
    nodes: tuple             # the subexpression each output computes

    @property
    def constant(self) -> bool:
        return not self.params

    @property
    def result(self) -> str:
        """The SSA name of a one-output program's value."""
        (name, _), = self.outputs
        return name

    @property
    def dtype(self) -> str:
        (_, dtype), = self.outputs
        return dtype

    @property
    def node(self) -> Expr:
        (node,) = self.nodes
        return node

    def flat(self) -> tuple:
        """The body with every Branch replaced by both sides and a `where`."""
        return tuple(_flat(self.body))

    @property
    def returns(self) -> tuple:
        """The SSA names the body computes per element for the loop to store."""
        return tuple(name for name, _ in self.outputs)


@dataclass(frozen=True)
class RowReduce(Program):
    """Reductions over `axes` (they include the last axis) in one loop over rows x cols:
    cols spans the trailing reduced axes, and the sum over a row of the per-element value
    `values[k]` (SSA in the body) is one output value, or is added to one when the other
    reduced axes are longer than 1 (rows in C order, as NumPy accumulates them); a mean
    is then divided by the count. Outputs whose op is "" are elementwise values of the
    loop's full shape, stored per element as the loop goes. Each row is summed in NumPy's
    pairwise order (see pairwise_schedule): the result has NumPy's bits for the argument
    as a C-contiguous array (targets.kernel.reduced_layout says how the target lays it
    out). A loop that adds rows into shared results runs on one thread."""
    values: tuple = ()       # per output: the SSA name of its summand (or stored value)
    ops: tuple = ()          # per output: "rsum", "rmean", "rcount" (a sum of ones: the
                             # row's length, its summand unused), or "" for a value
                             # stored per element (an elementwise result of the loop's shape)
    axes: tuple = ()         # the reduced axes, negative, sorted

    @property
    def returns(self) -> tuple:
        return self.values


# NumPy's pairwise summation (numpy/_core/src/umath/loops_utils.h.src, pairwise_sum):
# a run of at most 128 elements is summed in 8 interleaved partial sums (sequentially
# from 0 below 8 elements); a longer run splits at half, rounded down to a multiple of 8.
PAIRWISE_BLOCK = 128
PAIRWISE_STACK = 64   # partial sums a row's schedule holds at once (log2 of its length)


def pairwise_schedule(n: int) -> list:
    """NumPy's summation order for a row of n, as a program for a stack machine: k > 0
    sums the next k elements (one block) onto the stack, 0 adds the top two, -1 ends."""
    ops = []

    def visit(n):
        if n <= PAIRWISE_BLOCK:
            ops.append(n)
            return
        half = n // 2 - (n // 2) % 8
        visit(half)
        visit(n - half)
        ops.append(0)
    if n:
        visit(n)
    return ops + [-1]


@dataclass(frozen=True)
class Reduce:
    """out = reduction of the array `arg` over `axes` (keepdims), run by the target."""
    name: str
    node: Expr               # the reduction node (op, axes, dtype)
    arg: str


@dataclass(frozen=True)
class Plan:
    expr: Expr | tuple       # the expression(s) compiled (retyped to the kernel's dtype)
    lowered: Expr | tuple    # the same after decomposition: what the steps compute
    params: tuple            # ((variable name, dtype), ...) in kernel call order
    steps: tuple             # Program | Reduce, in order
    results: tuple           # the step outputs holding each expression's value, in order
    full: str | tuple | None = None  # the variable(s) of the result's shape (see lower)
    flat: tuple = ()         # ((name, ndim, axes of length 1), ...) the kernel was made for

    @property
    def full_names(self) -> tuple:
        return full_names(self.full)

    @property
    def programs(self):
        return [s for s in self.steps if isinstance(s, Program)]

    @property
    def many(self) -> bool:
        """Compiled from a tuple of expressions: the kernel returns a tuple of arrays."""
        return isinstance(self.expr, tuple)

    @property
    def elementwise(self) -> bool:
        return len(self.steps) == 1 and isinstance(self.steps[0], Program)


# --- decompositions: ops a back end lacks, written with ops it has ------------------------
# Each builder takes the node's arguments and returns an equivalent Expr (same dtype).

DECOMPOSITIONS = {
    "sigmoid": lambda x: 1 / (1 + F.exp(-x)),
    # NaN passes through and -0 becomes +0, as with np.maximum(x, 0) and np.sign
    "relu": lambda x: F.where(x > 0, x, F.where(x.ne(x), x, 0)),
    "sign": lambda x: F.where(x > 0, 1, F.where(x < 0, -1, F.where(x.ne(x), x, 0))),
}


def decompose(expr: Expr, has) -> Expr:
    """Rewrite every op for which `has(op)` is false, until only ops the target has remain."""
    for _ in range(8):  # a decomposition may itself use an op the target lacks
        missing = {n.op for n in expr.toposort()
                   if not _is_leaf(n) and n.spec.group != "reduce" and not has(n.op)}
        if not missing:
            return expr
        unknown = sorted(missing - DECOMPOSITIONS.keys())
        if unknown:
            raise NotImplementedError(f"this target cannot compute {', '.join(unknown)} "
                                      "and no decomposition is known")
        expr = rebuild(expr, lambda node, args: DECOMPOSITIONS[node.op](*args)
                       if node.op in missing else None)
    raise RuntimeError("decompositions do not terminate")


# x**n for a small literal integer n: pow is a libm call (38 cycles), a product is one
# cycle and vectorizes. x*x and 1/x are the correctly rounded x**2 and x**-1; x*x*x and
# (x*x)*(x*x) round twice (within 2 ULP of x**n), as numexpr, torch and compilers do.
POWERS = {2: lambda x: x * x, 3: lambda x: x * x * x, 4: lambda x: (t := x * x) * t,
          -1: lambda x: 1 / x}


def strength(expr: Expr) -> Expr:
    def visit(node, args):
        if node.op != "pow" or args[1].op != "const" or isinstance(args[1].attr, str):
            return None
        n = args[1].attr
        return POWERS[int(n)](args[0]) if n == int(n) and int(n) in POWERS else None
    return rebuild(expr, visit)


def _is_leaf(node: Expr) -> bool:
    return node.op in ("var", "const") or node.spec.group == "const"


def full_names(full) -> tuple:
    """lower's `full` (None, a name, or names) as a tuple of names."""
    return () if full is None else (full,) if isinstance(full, str) else tuple(full)


# --- splitting at reductions and linearizing -----------------------------------------------

def lower(expr, dtype: str | None = None, args=None, has=lambda op: True,
          full: str | tuple | None = None, rows: bool = False,
          scalars: tuple = (), flat: dict | None = None) -> Plan:
    """The plan a target compiles: elementwise Programs and Reduce steps.

    `expr` is an Expr or a tuple of them (a kernel with one result per expression; the
    values they share are computed once). Elementwise steps that read the same inputs
    share one loop. `full` names a variable every other input broadcasts to (the kernel
    checks it): then every step reading it has its shape, and they share a loop too. A
    tuple of names: the first is that variable, the others have exactly its shape (the
    kernel checks that too), so reductions over any of them share loops.
    `args` fixes the kernel's parameter order (default: the variable names sorted);
    names not in the expression are allowed (the kernel ignores their values).
    rows: the target runs RowReduce steps (float sums and means over axes that include
    the last, their arguments computed in the loop, never stored); reductions sharing
    axes and inputs share one loop. `scalars` names variables small next to the result
    and constant where it varies most (a scalar parameter, a row's saved mean): values
    computed from them and from reductions alone get loops of their own over those
    smaller shapes, not computed once per element of the result (right for any shapes;
    only the speed depends on the promise). `flat` (with `full`) gives each variable's
    number of dimensions and its axes of length 1 (negative, padded to the longest:
    targets.kernel.unit_axes), which the kernel checks: then values of the same
    dimensions and the same axes of length 1 have the same shape, and share loops
    whatever they read (a row's saved mean and a row sum of the input)."""
    many = isinstance(expr, (tuple, list))
    roots = tuple(expr) if many else (expr,)
    if not roots:
        raise ValueError("nothing to compile: the tuple of expressions is empty")
    prepared = tuple(prepare(e, dtype) for e in roots)
    lowered = tuple(decompose(strength(e), has) for e in prepared)
    if rows:
        lowered = tuple(_variances_as_means(e) for e in lowered)
    order = list(dict.fromkeys(n for e in lowered for n in e.toposort()))
    params = _params(lowered, args)
    fulls = full_names(full)
    if full is not None and (not fulls or not set(fulls) <= set(dict(params))):
        raise ValueError(f"full={full!r} is not one of the kernel's arguments")
    if flat and full is None:
        raise ValueError("flat= needs full=: shapes agree only where all broadcast to one")
    flat = {n: (int(d), tuple(sorted(a))) for n, (d, a) in (flat or {}).items()
            if n in dict(params)}
    layout = _layouts(order, flat) if flat else {}
    fused = {n for n in order if rows and _row_reducible(n)}
    materialized = _materialized(lowered, order, fused)
    if rows:
        materialized |= _per_row(order, materialized, frozenset(scalars))
    names = {n: f"s{i}" for i, n in enumerate(n for n in order if n in materialized)}
    values = {n: "v_" + n.name if n.op == "var" else names.get(n) for n in order}
    # Steps in order; an elementwise node joins an earlier loop of the same shape when
    # everything it reads is computed before that loop or per element in it. Its shape
    # is the broadcast of its atoms' shapes (or, given `flat`, its layout): the
    # variables, Reduce results and RowReduce steps it reads through the elementwise
    # steps before it (the reductions of one RowReduce share a shape).
    # A loop with reductions (a RowReduce) runs over its arguments' shape, so elementwise
    # nodes of that shape join it too: their values are stored as it goes.
    slots, step_of, loops, atoms, axes_of = [], {}, {}, {}, {}
    for node in order:
        if node not in materialized:
            continue
        if node.spec.group == "reduce" and node not in fused:
            step_of[node] = len(slots)
            atoms[node] = frozenset((node,))
            slots.append(Reduce(names[node], node, values[node.args[0]]))
            continue
        inputs = _inputs(node.args[0] if node in fused else node, materialized)
        ready = max((step_of[n] for n in inputs if n.op != "var"), default=-1)
        reads = frozenset().union(*(atoms.get(n, frozenset((n,))) for n in inputs))
        # the full shape: reading `full`, or an elementwise result that read it
        reads_full = any(isinstance(a, Expr) and a.op == "var" and a.name in fulls
                         for a in reads)
        known = layout.get(node.args[0] if node in fused else node)
        shape = known if isinstance(known, tuple) else \
            "full" if reads_full else reads or node   # a constant: a step of its own
        axes = tuple(sorted(node.attr)) if node in fused else None
        # a loop after everything it reads, or the last loop it reads from when that loop
        # computes what it reads per element (not a row sum, known only at a row's end)
        per_element = ready >= 0 and not any(step_of[n] == ready for n in inputs if n in fused)

        def fits(k):
            return (k > ready or k == ready and per_element) and \
                (axes is None or axes_of[k] in (None, axes))
        slot = next((k for k in loops.get(shape, ()) if fits(k)), None)
        if slot is None:
            slot = len(slots)
            loops.setdefault(shape, []).append(slot)
            slots.append([])
            axes_of[slot] = None
        if axes is not None:
            axes_of[slot] = axes
        slots[slot].append(node)
        step_of[node] = slot
        atoms[node] = frozenset((("rows", slot),)) if node in fused else reads
    steps = tuple(s if isinstance(s, Reduce) else
                  _row_reduce(s, fused, names, values, materialized) if axes_of[k] else
                  linearize(s, names, values, stop=materialized) for k, s in enumerate(slots))
    results = tuple(names[e] for e in lowered)
    flat = tuple((n, d, a) for n, (d, a) in sorted(flat.items()))
    if many:
        return Plan(prepared, lowered, params, steps, results, full, flat)
    return Plan(prepared[0], lowered[0], params, steps, results, full, flat)


def _layouts(order: list, flat: dict) -> dict:
    """Per node, ("layout", ndim, axes of length 1) of its value, from its variables'
    (`flat`); "any" for a value of literals alone (it broadcasts to anything); None where
    a variable is not in `flat`. With every variable broadcasting to one shape, equal
    layouts are equal shapes."""
    out = {}
    for n in order:
        if n.op == "var":
            known = flat.get(n.name)
            out[n] = ("layout", known[0], frozenset(known[1])) if known else None
        elif _is_leaf(n):
            out[n] = "any"
        else:
            found = [out[a] for a in n.args]
            if None in found:
                out[n] = None
                continue
            found = [k for k in found if k != "any"]
            if not found:
                out[n] = "any"
                continue
            ones = frozenset.intersection(*(k[2] for k in found))
            if n.spec.group == "reduce":   # kept dims: length 1 on its axes too
                ones |= frozenset(n.attr)
            out[n] = ("layout", max(k[1] for k in found), ones)
    return out


def _inputs(node: Expr, stop) -> frozenset:
    """What an elementwise step reads: variables and other materialized nodes (a
    variable that is a result reads itself)."""
    if node.op == "var":
        return frozenset((node,))
    return frozenset(n for n in _postorder([node], stop)
                     if n is not node and (n.op == "var" or n in stop))


def _params(roots: tuple, args):
    """((name, dtype), ...): `args` entries are names or (name, dtype) pairs; a name the
    expressions do not use takes its given dtype, else the first expression's float dtype."""
    dtypes = {v.name: v.dtype for e in roots for v in e.variables()}
    if args is None:
        return tuple((n, dtypes[n]) for n in sorted(dtypes))
    pairs = [(a, None) if isinstance(a, str) else tuple(a) for a in args]
    names = [n for n, _ in pairs]
    if len(set(names)) != len(names):
        raise ValueError(f"args repeats a name: {names}")
    missing = sorted(set(dtypes) - set(names))
    if missing:
        raise ValueError(f"args {names} leaves out variable(s) {', '.join(missing)}")
    fallback = roots[0].dtype if dt.is_float(roots[0].dtype) else "float64"
    return tuple((n, dtypes.get(n) or d or fallback) for n, d in pairs)


def _materialized(roots: tuple, order: list, fused=frozenset()) -> set:
    """Nodes whose whole array is needed: the roots, each reduction and the argument of
    each reduction not `fused` (a RowReduce computes its argument in its loop)."""
    out = set(roots)
    for n in order:
        if n.spec.group == "reduce":
            out |= {n} if n in fused else {n, n.args[0]}
    return {n for n in out if n.op != "var" or n in roots}


# A value computed only from reductions (a row's sqrt(mean + eps)) is worth its own loop
# over the reduced arrays when it costs at least this much per element (op-table cycles)
# where the full-size loops would recompute it: there it is one more buffered input.
PER_ROW_CYCLES = 2.0


def _per_row(order: list, materialized: set, scalars=frozenset()) -> set:
    """Nodes that read no input except through reductions and `scalars` (and read one of
    those), cost PER_ROW_CYCLES or more, and feed a node that does read an input:
    computed once per reduced element, in a loop of their own, rather than once per
    element of a full-size loop."""
    small, cost, reduced = {}, {}, {}
    for n in order:
        if n.op == "var":
            # a scalar is constant where the reductions are (a forward's saved row
            # value is one): values of it alone are worth a loop of their own too
            small[n] = reduced[n] = n.name in scalars
            cost[n] = 0.0
        elif _is_leaf(n) or n.spec.group == "reduce":
            small[n], cost[n], reduced[n] = True, 0.0, n.spec.group == "reduce"
        else:
            small[n] = all(small[a] for a in n.args)
            if small[n]:
                cost[n] = OPS[n.op].cost + sum(cost[a] for a in set(n.args)
                                               if a not in materialized)
                reduced[n] = any(reduced[a] for a in n.args)
    feeds_big = {a for n in order if not small[n] for a in n.args}
    # (a value of literals alone stays in the loop: it is folded there, not a step)
    return {n for n in order if small[n] and reduced[n] and n in feeds_big
            and n.spec.group != "reduce" and cost[n] >= PER_ROW_CYCLES}


def _float_over_last_axis(node: Expr, ops: tuple) -> bool:
    return node.op in ops and dt.is_float(node.dtype) and -1 in node.attr


def _row_reducible(node: Expr) -> bool:
    """A float sum or mean over axes including the last, of something elementwise (not
    itself a reduction: a loop computes its argument per element) reading an input."""
    if not _float_over_last_axis(node, ("rsum", "rmean")):
        return False
    arg = node.args[0]
    return arg.spec.group != "reduce" and bool(arg.variables())


def _variances_as_means(expr: Expr) -> Expr:
    """var(u) over axes including the last as mean((u - mean(u))**2), NumPy's own steps
    for np.var (the same bits), so that both means run as RowReduce loops."""
    def visit(node, args):
        if not _float_over_last_axis(node, ("rvar",)):
            return None
        u = args[0]
        d = u - u.mean(axis=node.attr)
        return (d * d).mean(axis=node.attr)
    return rebuild(expr, visit)


def _row_reduce(nodes: list, fused: set, names: dict, values: dict, stop) -> RowReduce:
    """One RowReduce for reductions over the same axes of the same inputs, and for the
    elementwise nodes of their arguments' shape (stored per element)."""
    reductions = [n for n in nodes if n in fused]
    stored = [n for n in nodes if n not in fused]
    summands = list(dict.fromkeys(n.args[0] for n in reductions))
    first = names[nodes[0]]
    own = {a: names[a] if a in stored else f"{first}_e{k}" for k, a in enumerate(summands)}
    p = linearize(list(dict.fromkeys(stored + summands)), {**names, **own}, values,
                  stop=stop)
    outputs = tuple((names[n], n.dtype) for n in reductions + stored)
    return RowReduce(first, p.params, p.body, outputs, tuple(reductions + stored),
                     values=tuple(own[n.args[0]] for n in reductions) +
                     tuple(names[n] for n in stored),
                     ops=tuple("rcount" if is_count(n) else n.op for n in reductions) +
                     ("",) * len(stored),
                     axes=tuple(sorted(reductions[0].attr)))


# A `where` runs only its taken side when a side has at least this much work of its own
# (op-table cycles): a branch costs a possible misprediction (~15-20 cycles) and stops the
# loop from vectorizing, which a cheap select (a clamp, an overflow guard) keeps.
# Measured here (llvm, 2^20 float64, sides of exp calls, x > 0 on random or sorted x):
# a 16-cycle side is 7% slower as a branch on random signs, 2x faster on sorted ones; at
# 35 cycles the branch wins either way (16%, 46%); with sides of a few cycles LLVM turns
# the branch back into a select. 128 is on the safe side: no shipped kernel branches.
LAZY_CYCLES = 128


def linearize(roots, names: dict, values: dict, stop=frozenset()) -> Program:
    """SSA for the elementwise DAG under `roots`, one output each, named by `names`;
    variables and the nodes in `stop` (other than the roots) are parameters, named by
    `values`."""
    roots, is_root = list(roots), set(roots)
    order = _postorder(roots, stop)
    inputs = [n for n in order if n.op == "var" or (n in stop and n not in is_root)]
    ssa = {n: values[n] for n in inputs}
    params = sorted({(values[n], n.dtype) for n in inputs})
    outputs = tuple((names[r], r.dtype) for r in roots)
    rank = {n: i for i, n in enumerate(order)}
    lazy = _lazy_wheres(order, set(inputs))
    counter = itertools.count()

    def instr(node, scope):
        out = names[node] if node in is_root else f"t{next(counter)}"
        if node.op == "var":  # an output that is an input: copied
            item = Instr(out, "cast", (ssa[node],), node.dtype, node.dtype)
        elif node.op == "const":
            item = Instr(out, "const", (), node.dtype, literal_value(node.attr, node.dtype))
        elif node.spec.group == "const":
            item = Instr(out, "const", (), node.dtype, named_value(node.op, node.dtype))
        elif node in lazy:
            cond, then, orelse = node.args
            item = Branch(out, ssa[cond], tuple(block([then], scope)), ssa[then],
                          tuple(block([orelse], scope)), ssa[orelse], node.dtype)
        else:
            attr = node.attr if node.spec.group == "convert" else None
            item = Instr(out, node.op, tuple(ssa[a] for a in node.args), node.dtype, attr)
        ssa[node] = out
        return item

    def block(results, done):
        """Items computing `results` given the nodes in `done`; the sides of lazy wheres
        become sub-blocks, and a node two sides need is computed here, once."""
        own = _reach(results, done, lazy)
        while True:
            sides = [_reach([w.args[k]], done | own, ()) for w in own if w in lazy for k in (1, 2)]
            shared = {n for n, c in Counter(n for side in sides for n in side).items() if c > 1}
            if not shared:
                break
            own |= _reach(shared, done | own, lazy)
        scope = done | own
        return [instr(n, scope) for n in sorted(own, key=rank.__getitem__)]

    body = block(roots, set(inputs) - is_root)
    return Program(names[roots[0]], tuple(params), tuple(body), outputs, tuple(roots))


def _reach(roots, done, lazy) -> set:
    """Nodes needed for `roots` beyond `done`; a lazy where's sides are not followed."""
    seen, stack = set(), [r for r in roots if r not in done]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        args = node.args[:1] if node in lazy else node.args
        stack.extend(a for a in args if a not in done and a not in seen)
    return seen


def _lazy_wheres(order: list, inputs: set) -> set:
    """The wheres worth a branch: a side whose exclusive work (nodes nothing else in the
    program needs) reaches LAZY_CYCLES."""
    wheres = [n for n in order if n.op == "where" and n not in inputs]
    if not wheres:
        return set()
    uses = Counter(a for n in order if n not in inputs for a in n.args)
    return {w for w in wheres
            if any(_exclusive_cost(w.args[k], uses, inputs) >= LAZY_CYCLES for k in (1, 2))}


def _exclusive_cost(side: Expr, uses: Counter, inputs: set) -> float:
    """Cycles of the nodes under `side` that only `side` needs: a node is exclusive once
    each of its uses comes from an exclusive node (`side` itself: when its where is its
    only user)."""
    reached, total, stack = Counter(), 0.0, [side]
    while stack:
        node = stack.pop()
        reached[node] += 1
        if reached[node] < uses[node] or node in inputs:
            continue
        total += OPS[node.op].cost
        stack.extend(node.args)
    return total


def _postorder(roots, stop) -> list:
    """The nodes under `roots`, each after its arguments; a node in `stop` that is not a
    root is a leaf."""
    order, seen, is_root = [], set(), set(roots)
    stack = [(r, False) for r in reversed(roots)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if node in seen:
            continue
        seen.add(node)
        stack.append((node, True))
        if node in is_root or node not in stop:
            stack.extend((a, False) for a in reversed(node.args) if a not in seen)
    return order
