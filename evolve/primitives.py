"""The DEAP bridge: a typed primitive set read off the op table, and the one adapter
between DEAP trees and Exprs.

DEAP trees are only the genome the variation operators work on. What a tree means is
the Expr `to_expr` builds; fitness comes from evaluating that Expr (engine.evaluate or
a compiled kernel). `gp.compile`, which evals strings, is never used: the callables a
DEAP primitive set has to hold here refuse to run. Cost of a tree: rewrite.cost.cost
on its Expr (shared subtrees are paid once, as in a kernel).
"""
from __future__ import annotations

import random

import numpy as np
from deap import gp

from exprforge.engine import dtypes as dt
from exprforge.engine.evaluate import literal_value
from exprforge.engine.expr import NAMED_CONSTANTS, Expr, concretize, const, make, named, var
from exprforge.engine.ops import OPS


# DEAP joins a node to a slot only when their type classes match (issubclass), so each
# kind of value gets its own unrelated marker class: floats never land in bool slots.
class Float32:
    """DEAP type tag: a float32 value."""


class Float64:
    """DEAP type tag: a float64 value."""


class Bool:
    """DEAP type tag: a bool value (comparisons, logic, the condition of `where`)."""


TYPE_TAGS = {"float32": Float32, "float64": Float64, "bool": Bool}
CONSTANT = "const"        # name of the ephemeral constant (an op name, so never a variable's)
_ARG_PREFIX = "_arg"      # DEAP's placeholder argument names; a variable can't start with _


def _not_evaluable(*_):
    raise TypeError("DEAP trees are not run directly: convert with to_expr and evaluate the Expr")


class ConstantDraw:
    """Ephemeral constant generator: uniform on [low, high], rounded to the dtype so the
    tree holds exactly the value the kernel will use. It draws from the global `random`,
    the stream DEAP's generators and mutations draw from, so one random.seed() fixes
    trees and constants alike. A class (not a lambda) so trees pickle to workers."""

    def __init__(self, low: float, high: float, dtype: str):
        self.low, self.high, self.dtype = float(low), float(high), dtype

    def __call__(self) -> float:
        return float(np.array(random.uniform(self.low, self.high), dtype=self.dtype))


class OpPrimitiveSet(gp.PrimitiveSetTyped):
    """A typed DEAP primitive set that also records what its names mean in the IR."""

    def __init__(self, dtype: str, variables: list[str]):
        float_tag = TYPE_TAGS[dtype]
        super().__init__("program", [float_tag] * len(variables), float_tag, prefix=_ARG_PREFIX)
        self.renameArguments(**{f"{_ARG_PREFIX}{i}": v for i, v in enumerate(variables)})
        for v in variables:  # DEAP renames only the value; make the name agree with it
            self.mapping[v].name = v
        self.dtype = dtype
        self.ops: tuple[str, ...] = ()
        self.constant_class = None  # the ephemeral constant's class, when there is one


def primitive_set(ops, variables, dtype: str = "float32", constants=NAMED_CONSTANTS,
                  ephemeral=(-1.0, 1.0)) -> OpPrimitiveSet:
    """A DEAP PrimitiveSetTyped for programs of `dtype` over `variables`.

    ops: names of elementwise op-table rows; each becomes a primitive typed by its row's
      signature (T slots are `dtype`, B slots bool). constants: named constants (pi, e,
      ln2) as terminals. ephemeral: (low, high) for random constants, or None.
    When some op takes a bool, True and False are terminals too: a typed tree must be
    able to end a bool branch at its depth limit.
    """
    if not dt.is_float(dtype):
        raise TypeError(f"a primitive set computes floats: dtype must be float32 or "
                        f"float64, not {dtype!r}")
    variables = list(variables)
    for v in variables:
        var(v, dtype)  # same naming rules as the IR (raises on reserved or invalid names)
    if len(set(variables)) != len(variables):
        raise ValueError(f"repeated variable names in {variables}")
    pset = OpPrimitiveSet(dtype, variables)
    pset.ops = tuple(dict.fromkeys(ops))
    for name in pset.ops:
        args, ret = op_signature(name, dtype)
        pset.addPrimitive(_not_evaluable, args, ret, name=name)
    _check_generable(pset)
    for c in constants:
        if c not in NAMED_CONSTANTS:
            raise ValueError(f"unknown constant {c!r}; known: {', '.join(NAMED_CONSTANTS)}")
        pset.addTerminal(_not_evaluable, TYPE_TAGS[dtype], name=c)
    if any(Bool in p.args for p in _all_primitives(pset)):
        pset.addTerminal(True, Bool)
        pset.addTerminal(False, Bool)
    if ephemeral is not None:
        low, high = ephemeral
        pset.addEphemeralConstant(CONSTANT, ConstantDraw(low, high, dtype), TYPE_TAGS[dtype])
        pset.constant_class = pset.mapping[CONSTANT]
    if not pset.terminals[TYPE_TAGS[dtype]]:
        raise ValueError("the primitive set has no float terminals: give variables, "
                         "constants or an ephemeral interval")
    return pset


def op_signature(name: str, dtype: str):
    """DEAP (argument types, return type) of op `name` in a `dtype` program."""
    if name not in OPS:
        raise ValueError(f"unknown op {name!r}")
    row = OPS[name]
    if row.group != "elementwise":
        hint = "; pass it in constants=" if row.group == "const" else ""
        raise ValueError(f"{name} is a {row.group} op: a primitive set holds elementwise "
                         f"ops only{hint}")
    if row.tkind in ("int", "bits") or "I" in row.args:
        raise ValueError(f"{name} works on integers: a {dtype} primitive set has only "
                         f"{dtype} and bool values")
    tag = {"T": TYPE_TAGS[dtype], "B": Bool}
    return [tag[letter] for letter in row.args], tag[row.out]


def _all_primitives(pset):
    return [pset.mapping[name] for name in pset.ops]


def _check_generable(pset: OpPrimitiveSet) -> None:
    # DEAP's generators fill every slot below the depth limit with a primitive of the
    # slot's type and fail (IndexError) mid-search when there is none: refuse up front
    prims = _all_primitives(pset)
    if not any(p.ret is pset.ret for p in prims):
        raise ValueError(f"the primitive set needs at least one {pset.dtype}-valued op")
    takes_bool = [p.name for p in prims if Bool in p.args]
    if takes_bool and not any(p.ret is Bool for p in prims):
        raise ValueError(f"{', '.join(takes_bool)} take a bool: add a comparison "
                         "(lt, le, gt, ge, eq, ne) to the ops")


# --- the adapter ----------------------------------------------------------------------

def to_expr(tree, pset: OpPrimitiveSet) -> Expr:
    """The Expr a DEAP tree (or individual) means.

    Built bottom-up with make(), so equal subtrees become one shared node and a neg of a
    literal folds into the literal, as everywhere in the IR. Float constants keep the
    tree's exact value.
    """
    operands = []
    for node in reversed(tree):  # prefix order read backwards: arguments come first
        if isinstance(node, gp.Primitive):
            if pset.mapping.get(node.name) != node:
                raise ValueError(f"primitive {node.name!r} is not in this primitive set")
            if len(operands) < node.arity:
                raise ValueError("malformed tree: a primitive lacks arguments")
            args = [operands.pop() for _ in range(node.arity)]
            operands.append(make(node.name, args))
        else:
            operands.append(_leaf_expr(node, pset))
    if len(operands) != 1:
        raise ValueError(f"malformed tree: {len(operands)} roots")
    return operands[0]


def _leaf_expr(node, pset: OpPrimitiveSet) -> Expr:
    if isinstance(type(node), gp.MetaEphemeral):  # by kind, not class: pickling makes new classes
        if node.ret is not pset.ret:
            raise ValueError(f"constant {node.value!r} is not a {pset.dtype} constant")
        return const(node.value, pset.dtype)
    if pset.mapping.get(node.name) != node:
        raise ValueError(f"terminal {node.name!r} is not in this primitive set")
    if node.ret is Bool:
        return const(bool(node.value), "bool")
    if node.name in pset.arguments:
        return var(node.name, pset.dtype)
    return named(node.name, pset.dtype)


def from_expr(expr: Expr, pset: OpPrimitiveSet, max_size: int = 100_000) -> gp.PrimitiveTree:
    """The DEAP tree of an Expr: shared nodes are written out at each use.

    Raises ValueError, naming the node, for anything the primitive set cannot express
    (an op it lacks, an unknown variable, another dtype), and for a tree over `max_size`
    nodes (sharing can make the tree exponentially larger than the DAG).
    """
    if expr.is_weak:
        expr = concretize(expr, pset.dtype)
    size = expr.tree_size()
    if size > max_size:
        raise ValueError(f"the tree of this Expr has {size} nodes, more than max_size={max_size}")
    deap_nodes = {node: _deap_node(node, pset) for node in expr.toposort()}
    tree, pending = [], [expr]
    while pending:
        node = pending.pop()
        item = deap_nodes[node]
        tree.append(_constant(pset, item) if isinstance(item, float) else item)
        pending.extend(reversed(node.args))
    return gp.PrimitiveTree(tree)


def _deap_node(node: Expr, pset: OpPrimitiveSet):
    """The DEAP primitive or terminal for one Expr node (a float for a float constant)."""
    if node.dtype not in (pset.dtype, "bool"):
        raise ValueError(f"{node.op} node {node} is {node.dtype}, the primitive set is "
                         f"{pset.dtype} (retype the Expr first)")
    if node.op == "const":
        if node.dtype == "bool":
            return _terminal(pset, str(node.value), f"bool literal {node.value}")
        if pset.constant_class is None:
            raise ValueError(f"literal {node} needs an ephemeral constant; the primitive "
                             "set has none")
        return float(literal_value(node.attr, node.dtype))  # what the Expr literal evaluates to
    if node.op == "var":
        if node.name not in pset.arguments:
            raise ValueError(f"variable {node.name!r} is not among the primitive set's "
                             f"variables {pset.arguments}")
        return pset.mapping[node.name]
    if node.spec.group == "const":
        return _terminal(pset, node.op, f"constant {node.op}")
    if node.op not in pset.ops:
        raise ValueError(f"op {node.op!r} (in {node}) is not in the primitive set; "
                         f"it has: {', '.join(pset.ops)}")
    return pset.mapping[node.op]


def _terminal(pset: OpPrimitiveSet, name: str, what: str):
    if name not in pset.mapping:
        raise ValueError(f"{what} is not in the primitive set")
    return pset.mapping[name]


def _constant(pset: OpPrimitiveSet, value: float):
    # a fresh ephemeral per position (constant fitting may set values in place); built
    # without __init__, which would draw a random value and shift DEAP's random stream
    c = object.__new__(pset.constant_class)
    c.value = value
    return c
