"""The DEAP bridge: primitive sets read off the op table, and tree <-> Expr conversion.

Trees come from DEAP's own generators and variation operators (seeded), so the tests
exercise what a search will feed the adapter. Each tree's meaning is checked against a
tiny interpreter over the DEAP nodes that never builds an Expr.
"""
import copy
import functools
import math
import pickle
import random
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
from deap import gp

import exprforge as xf
from exprforge.engine.evaluate import evaluate
from exprforge.engine.expr import const, make, named, var
from exprforge.engine.ops import OPS
from exprforge.evolve.primitives import (
    Bool, Float32, Float64, from_expr, primitive_set, to_expr,
)
from exprforge.rewrite.cost import cost

# every op a float primitive set can hold, read off the table: new rows get tested too
FLOAT_OPS = [n for n, o in OPS.items() if o.group == "elementwise"
             and o.tkind not in ("int", "bits") and "I" not in o.args]
ARITHMETIC = ["add", "sub", "mul", "div", "neg", "min", "max", "abs", "lt", "where"]
VARS = ["x", "y"]
SPECIALS = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40, -3e38, 1.0], np.float32)


@pytest.fixture(autouse=True)
def _keep_global_random():
    # DEAP draws from the global `random`; leave it as other tests found it
    state = random.getstate()
    yield
    random.setstate(state)


@functools.cache
def full_set(dtype="float32"):
    return primitive_set(FLOAT_OPS, VARS, dtype)


def random_trees(pset, seed, n, generator=gp.genHalfAndHalf, max_depth=6):
    random.seed(seed)
    return [gp.PrimitiveTree(generator(pset, 2, max_depth)) for _ in range(n)]


def inputs(dtype="float32", n=64, seed=0):
    rng = np.random.default_rng(seed)
    env = {v: rng.uniform(-4, 4, n).astype(dtype) for v in VARS}
    env["x"][: len(SPECIALS)] = SPECIALS
    env["y"][-len(SPECIALS):] = SPECIALS
    return env


NAMED_F32 = {"pi": np.float32(math.pi), "e": np.float32(math.e), "ln2": np.float32(math.log(2))}


def run_tree(tree, env):
    """The tree's value straight from its DEAP nodes and the op table's numpy column."""
    stack = []
    with np.errstate(all="ignore"):
        for node in reversed(tree):
            if isinstance(node, gp.Primitive):
                stack.append(OPS[node.name].np_fn(*[stack.pop() for _ in range(node.arity)]))
            elif isinstance(type(node), gp.MetaEphemeral):
                stack.append(np.float32(node.value))
            elif node.ret is Bool:
                stack.append(np.bool_(node.value))
            else:
                stack.append(env[node.name] if node.name in env else NAMED_F32[node.name])
    return stack[0]


def same_bits(a, b, shape):
    a = np.broadcast_to(np.asarray(a, np.float32), shape)
    b = np.broadcast_to(np.asarray(b, np.float32), shape)
    return np.array_equal(a.view(np.uint32), b.view(np.uint32))


def has_negated_literal(tree):
    return any(isinstance(n, gp.Primitive) and n.name == "neg"
               and isinstance(type(tree[i + 1]), gp.MetaEphemeral) for i, n in enumerate(tree))


# --- the primitive set ------------------------------------------------------------------

def test_primitives_are_exactly_the_ops_asked_for_with_their_signatures():
    pset = primitive_set(["add", "exp", "lt", "where", "not", "fma"], VARS)
    prims = {p.name: p for ps in pset.primitives.values() for p in ps}
    assert set(prims) == {"add", "exp", "lt", "where", "not", "fma"}
    assert prims["add"].args == [Float32, Float32] and prims["add"].ret is Float32
    assert prims["exp"].args == [Float32] and prims["fma"].arity == 3
    assert prims["lt"].args == [Float32, Float32] and prims["lt"].ret is Bool
    assert prims["where"].args == [Bool, Float32, Float32] and prims["where"].ret is Float32
    assert prims["not"].args == [Bool] and prims["not"].ret is Bool
    assert pset.ret is Float32 and pset.arguments == VARS
    assert all(pset.mapping[v].name == v == pset.mapping[v].value for v in VARS)
    terminals = {t.name for ts in pset.terminals.values() for t in ts}
    assert terminals == {"x", "y", "pi", "e", "ln2", "const", "True", "False"}


def test_dtype_picks_the_float_tag_and_bool_terminals_only_when_used():
    pset = primitive_set(["add", "mul"], ["u"], "float64", constants=(), ephemeral=None)
    assert pset.ret is Float64 and pset.mapping["add"].args == [Float64, Float64]
    assert {t.name for ts in pset.terminals.values() for t in ts} == {"u"}


def test_every_float_op_in_the_table_fits_in_a_primitive_set():
    pset = full_set()
    assert {p.name for ps in pset.primitives.values() for p in ps} == set(FLOAT_OPS)
    assert {"add", "exp", "sigmoid", "where", "and", "eq"} <= set(FLOAT_OPS)


@pytest.mark.parametrize("ops, variables, dtype, message", [
    (["add", "bitand"], VARS, "float32", "integers"),
    (["add", "ldexp"], VARS, "float32", "integers"),
    (["add", "cast"], VARS, "float32", "elementwise"),
    (["add", "rsum"], VARS, "float32", "elementwise"),
    (["add", "pi"], VARS, "float32", "constants="),
    (["add", "frobnicate"], VARS, "float32", "unknown op"),
    (["add", "where"], VARS, "float32", "comparison"),
    (["lt"], VARS, "float32", "float32-valued op"),
    (["add"], ["exp"], "float32", "reserved"),
    (["add"], ["x", "x"], "float32", "repeated"),
    (["add"], VARS, "int32", "float32 or float64"),
])
def test_unusable_primitive_sets_are_refused_up_front(ops, variables, dtype, message):
    with pytest.raises((ValueError, TypeError), match=message):
        primitive_set(ops, variables, dtype)


def test_a_set_with_no_float_terminals_is_refused():
    with pytest.raises(ValueError, match="terminals"):
        primitive_set(["add"], [], constants=(), ephemeral=None)


def test_repeated_calls_in_one_process_each_give_a_working_set():
    sets = [primitive_set(["add", "mul"], VARS, ephemeral=(lo, lo + 1)) for lo in (0, 10, 20)]
    for lo, pset in zip((0, 10, 20), sets):
        random.seed(1)
        drawn = [pset.constant_class().value for _ in range(50)]
        assert all(lo <= v <= lo + 1 and v == float(np.float32(v)) for v in drawn)
        for tree in random_trees(pset, 2, 10):
            assert to_expr(from_expr(to_expr(tree, pset), pset), pset) is to_expr(tree, pset)


def test_import_creates_nothing_in_deaps_creator():
    code = ("import deap.creator as c; before = set(vars(c)); "
            "import exprforge.evolve.primitives; assert set(vars(c)) == before")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- tree <-> Expr -----------------------------------------------------------------------

@pytest.mark.parametrize("generator", [gp.genHalfAndHalf, gp.genGrow, gp.genFull])
def test_random_trees_round_trip_and_evaluate_like_the_tree(generator):
    pset, env = full_set(), inputs()
    for tree in random_trees(pset, 11, 300, generator):
        e = to_expr(tree, pset)  # typed generation: make() never raises a type error
        back = from_expr(e, pset)
        assert to_expr(back, pset) is e
        if not has_negated_literal(tree):  # neg(literal) folds into the literal, as in make()
            assert back == tree
        want = run_tree(tree, env)
        used = {v: env[v] for v in e.var_names()}
        assert same_bits(evaluate(e, used), want, env["x"].shape), str(tree)
        assert same_bits(evaluate(to_expr(back, pset), used), want, env["x"].shape)


def test_shared_subtrees_become_one_node_and_are_written_out_again():
    pset = primitive_set(["add", "mul"], VARS)
    x = var("x", "float32")
    e = x * x + x * x
    tree = from_expr(e, pset)
    assert str(tree) == "add(mul(x, x), mul(x, x))" and len(tree) == 7
    assert to_expr(tree, pset) is e and e.node_count() == 3
    assert cost(e, "ops") == 2 and cost(e, "ops", dag=False) == 3


def test_constants_keep_their_exact_value():
    pset = primitive_set(["add"], VARS)
    c = pset.constant_class
    tree = gp.PrimitiveTree([pset.mapping["add"], pset.mapping["x"], c.__new__(c)])
    tree[2].value = 0.1  # a double that is no float32: the Expr holds exactly this double
    e = to_expr(tree, pset)
    assert e.args[1].value == Fraction(0.1)
    assert evaluate(e.args[1]) == np.float32(0.1)


def test_a_literal_comes_back_as_the_float_it_evaluates_to():
    pset = primitive_set(["add"], VARS)
    # exactly between two float32s plus a little: rounding via float64 would tie to 1.0
    q = 1 + Fraction(1, 2**24) + Fraction(1, 2**60)
    e = make("add", (var("x", "float32"), const(q, "float32")))
    value = from_expr(e, pset)[2].value
    assert value == 1 + 2.0**-23 == float(evaluate(e.args[1]))
    env = {"x": np.float32([0.0, 1.5])}
    assert same_bits(evaluate(to_expr(from_expr(e, pset), pset), env), evaluate(e, env), (2,))


@pytest.mark.parametrize("value", [-0.0, math.inf, -math.inf, math.nan, 2.0**-149,
                                   3.4028234663852886e38])
def test_special_constants_round_trip(value):
    pset = primitive_set(["add"], VARS)
    e = make("add", (var("x", "float32"), const(value, "float32")))
    back = from_expr(e, pset)
    assert to_expr(back, pset) is e
    assert np.float32(back[2].value).tobytes() == np.float32(value).tobytes()


def test_named_and_bool_terminals_become_named_constants_and_bool_literals():
    pset = primitive_set(["add", "lt", "where"], VARS)
    tree = gp.PrimitiveTree([pset.mapping[n] for n in ("where", "True", "pi", "ln2")])
    e = to_expr(tree, pset)
    assert e.args[0] is const(True, "bool") and e.args[1] is named("pi", "float32")
    assert from_expr(e, pset) == tree


def test_float32_weak_expression_is_given_the_set_dtype():
    pset = primitive_set(["add"], VARS)
    weak = make("add", (const(1.5), named("pi")))
    assert to_expr(from_expr(weak, pset), pset).dtype == "float32"


@pytest.mark.parametrize("expr, message", [
    (make("exp", (var("x", "float32"),)), "op 'exp'.*not in the primitive set.*add, mul"),
    (var("x", "float32") + var("z", "float32"), "variable 'z'"),
    (var("x", "float64") * 2, "float64"),
    (make("cast", (var("x", "float32"),), "float64"), "float64"),
    (var("x", "float32") < 1, "op 'lt'"),
])
def test_from_expr_names_what_the_set_cannot_express(expr, message):
    pset = primitive_set(["add", "mul"], VARS)
    with pytest.raises(ValueError, match=message):
        from_expr(expr, pset)


def test_from_expr_without_ephemeral_constants_refuses_literals():
    pset = primitive_set(["add"], VARS, ephemeral=None)
    with pytest.raises(ValueError, match="ephemeral"):
        from_expr(var("x", "float32") + 2, pset)


def test_from_expr_refuses_a_tree_exponentially_larger_than_the_dag():
    e = var("x", "float32")
    for _ in range(30):
        e = e * e
    with pytest.raises(ValueError, match="max_size"):
        from_expr(e, primitive_set(["mul"], VARS))


def test_to_expr_refuses_nodes_from_another_set():
    other = primitive_set(["exp", "add"], VARS)
    tree = gp.PrimitiveTree([other.mapping["exp"], other.mapping["x"]])
    with pytest.raises(ValueError, match="'exp' is not in this primitive set"):
        to_expr(tree, primitive_set(["add"], VARS))


# --- DEAP's variation operators, determinism, pickling -------------------------------------

def test_variation_operators_keep_trees_convertible():
    pset, env = full_set(), inputs()
    grow = functools.partial(gp.genGrow, min_=0, max_=2)
    operators = [
        lambda t, u: gp.mutUniform(t, grow, pset),
        lambda t, u: gp.mutNodeReplacement(t, pset),
        lambda t, u: gp.mutInsert(t, pset),
        lambda t, u: gp.mutShrink(t),
        lambda t, u: gp.mutEphemeral(t, "one"),
        lambda t, u: gp.mutEphemeral(t, "all"),
        lambda t, u: gp.cxOnePoint(t, u),
    ]
    trees = random_trees(pset, 5, 60)
    for i, (a, b) in enumerate(zip(trees, trees[1:])):
        for op in operators:
            for child in op(copy.deepcopy(a), copy.deepcopy(b)):
                e = to_expr(child, pset)
                assert to_expr(from_expr(e, pset), pset) is e
                used = {v: env[v] for v in e.var_names()}
                assert same_bits(evaluate(e, used), run_tree(child, env), env["x"].shape)


def test_the_same_seed_gives_the_same_trees_and_exprs():
    pset = full_set()
    first, second = random_trees(pset, 42, 40), random_trees(pset, 42, 40)
    assert first == second
    rebuilt = primitive_set(FLOAT_OPS, VARS)  # a fresh set: the same Exprs again
    third = random_trees(rebuilt, 42, 40)
    assert [str(t) for t in third] == [str(t) for t in first]
    assert all(to_expr(a, pset) is to_expr(c, rebuilt) for a, c in zip(first, third))
    assert random_trees(pset, 43, 40) != first


def test_trees_and_sets_pickle_for_worker_processes():
    pset = full_set()
    trees = random_trees(pset, 8, 20)
    pset2, trees2 = pickle.loads(pickle.dumps((pset, trees)))
    assert [to_expr(t, pset2) for t in trees2] == [to_expr(t, pset) for t in trees]


def test_gp_compile_is_refused():
    pset = primitive_set(["add"], VARS)
    tree = gp.PrimitiveTree([pset.mapping["add"], pset.mapping["x"], pset.mapping["y"]])
    with pytest.raises(TypeError, match="to_expr"):
        gp.compile(tree, pset)(1.0, 2.0)


def test_converted_trees_compile_to_kernels_that_agree_with_evaluate():
    pset, env = primitive_set(ARITHMETIC, VARS), inputs()
    trees = [t for t in random_trees(pset, 3, 40) if set(to_expr(t, pset).var_names()) == set(VARS)]
    for tree in trees[:4]:
        e = to_expr(tree, pset)
        kernel = xf.compile(e, target="llvm")
        got = kernel(*[env[n] for n in kernel.args])
        assert same_bits(got, evaluate(e, env), env["x"].shape), str(tree)
