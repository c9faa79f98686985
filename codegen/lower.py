"""Lowering: an Expr DAG to straight-line SSA programs a renderer can spell.

The pipeline, one stage per line (see `lower`):
  prepare      retype to the kernel dtype, give a literal-only root its dtype
  decompose    rewrite the ops a target lacks into ops it has (the one place this happens)
  strength     x**2, x**3, x**4 and x**-1 as multiplications or a division
  split        cut the DAG at reductions: elementwise programs and reduction steps
  linearize    each elementwise part to SSA, every shared node computed once; a `where`
               whose sides carry real work becomes a `Branch` that runs only its taken side

A renderer sees only `Program`s: parameters, a list of `Instr` and `Branch`, one result.
Reductions stay outside the generated loops as `Reduce` steps (run by the target), so
every renderer only has to spell elementwise ops. A renderer that cannot branch per
element (Triton) reads `Program.flat()`, the same program with every Branch a `where`.
"""
from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass

from exprforge.engine import dtypes as dt
from exprforge.engine.evaluate import literal_value, named_value, prepare
from exprforge.engine.expr import Expr, F, rebuild
from exprforge.engine.ops import OPS


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
    """One elementwise loop body: out = f(params...)."""
    name: str
    params: tuple            # ((name, dtype), ...) in call order
    body: tuple              # Instr | Branch, ...
    result: str
    dtype: str
    node: Expr               # the subexpression computed

    @property
    def constant(self) -> bool:
        return not self.params

    def flat(self) -> tuple:
        """The body with every Branch replaced by both sides and a `where`."""
        return tuple(_flat(self.body))


@dataclass(frozen=True)
class Reduce:
    """out = reduction of the array `arg` over `axes` (keepdims), run by the target."""
    name: str
    node: Expr               # the reduction node (op, axes, dtype)
    arg: str


@dataclass(frozen=True)
class Plan:
    expr: Expr               # the expression compiled (retyped to the kernel's dtype)
    lowered: Expr            # the same after decomposition: what the steps compute
    params: tuple            # ((variable name, dtype), ...) in kernel call order
    steps: tuple             # Program | Reduce, in order; the last one's name is the result

    @property
    def programs(self):
        return [s for s in self.steps if isinstance(s, Program)]

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


# --- splitting at reductions and linearizing -----------------------------------------------

def lower(expr: Expr, dtype: str | None = None, args=None, has=lambda op: True) -> Plan:
    """The plan a target compiles: elementwise Programs and Reduce steps.

    `args` fixes the kernel's parameter order (default: the variable names sorted);
    names not in the expression are allowed (the kernel ignores their values)."""
    prepared = prepare(expr, dtype)
    expr = decompose(strength(prepared), has)
    params = _params(expr, args)
    materialized = _materialized(expr)
    names = {v: "v_" + v.name for v in expr.variables()}
    names.update({n: f"s{i}" for i, n in enumerate(n for n in expr.toposort()
                                                   if n in materialized)})
    steps = []
    for node in expr.toposort():
        if node not in materialized:
            continue
        if node.spec.group == "reduce":
            steps.append(Reduce(names[node], node, names[node.args[0]]))
        else:
            steps.append(linearize(node, names[node], names, stop=materialized))
    return Plan(prepared, expr, params, tuple(steps))


def _params(expr: Expr, args):
    """((name, dtype), ...): `args` entries are names or (name, dtype) pairs; a name the
    expression does not use takes its given dtype, else the expression's float dtype."""
    dtypes = {v.name: v.dtype for v in expr.variables()}
    if args is None:
        return tuple((n, dtypes[n]) for n in sorted(dtypes))
    pairs = [(a, None) if isinstance(a, str) else tuple(a) for a in args]
    names = [n for n, _ in pairs]
    if len(set(names)) != len(names):
        raise ValueError(f"args repeats a name: {names}")
    missing = sorted(set(dtypes) - set(names))
    if missing:
        raise ValueError(f"args {names} leaves out variable(s) {', '.join(missing)}")
    fallback = expr.dtype if dt.is_float(expr.dtype) else "float64"
    return tuple((n, dtypes.get(n) or d or fallback) for n, d in pairs)


def _materialized(expr: Expr) -> set:
    """Nodes whose whole array is needed: the root, each reduction and its argument."""
    out = {expr}
    for n in expr.toposort():
        if n.spec.group == "reduce":
            out |= {n, n.args[0]}
    return {n for n in out if n.op != "var" or n is expr}


# A `where` runs only its taken side when a side has at least this much work of its own
# (op-table cycles): a branch costs a possible misprediction (~15-20 cycles) and stops the
# loop from vectorizing, which a cheap select (a clamp, an overflow guard) keeps.
# Measured here (llvm, 2^20 float64, sides of exp calls, x > 0 on random or sorted x):
# a 16-cycle side is 7% slower as a branch on random signs, 2x faster on sorted ones; at
# 35 cycles the branch wins either way (16%, 46%); with sides of a few cycles LLVM turns
# the branch back into a select. 128 is on the safe side: no shipped kernel branches.
LAZY_CYCLES = 128


def linearize(root: Expr, name: str, names: dict, stop=frozenset()) -> Program:
    """SSA for the elementwise DAG under `root`; nodes in `stop` (other than root) and
    variables are parameters, named by `names`."""
    order = _postorder(root, stop)
    inputs = [n for n in order if n is not root and (n.op == "var" or n in stop)]
    ssa = {n: names[n] for n in inputs}
    params = sorted({(names[n], n.dtype) for n in inputs})
    if root.op == "var":  # the whole program is one variable: copy it
        param = "v_" + root.name
        body, params = [Instr(name, "cast", (param,), root.dtype, root.dtype)], [(param, root.dtype)]
        return Program(name, tuple(params), tuple(body), name, root.dtype, root)
    rank = {n: i for i, n in enumerate(order)}
    lazy = _lazy_wheres(root, order, set(inputs))
    counter = itertools.count()

    def instr(node, scope):
        out = name if node is root else f"t{next(counter)}"
        if node.op == "const":
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

    body = block([root], set(inputs))
    return Program(name, tuple(params), tuple(body), name, root.dtype, root)


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


def _lazy_wheres(root: Expr, order: list, inputs: set) -> set:
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


def _postorder(root: Expr, stop) -> list:
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if node in seen:
            continue
        seen.add(node)
        stack.append((node, True))
        if node is root or node not in stop:
            stack.extend((a, False) for a in reversed(node.args) if a not in seen)
    return order
