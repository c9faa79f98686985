"""Expr: hash-consing, the DAG, dtype inference with weak literals, exact literals,
substitution, pickling, and repr round trips."""
import pickle
import threading
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings

from exprforge.engine.evaluate import evaluate
from exprforge.engine.expr import Expr, concretize, const, make, named, retype, var
from exprforge.engine.parse import parse
from tests.strategies import any_exprs, float_exprs

x32, y32 = var("x", "float32"), var("y", "float32")


def test_structurally_equal_nodes_are_one_object():
    a = parse("exp(x) * y + 1", vars={"x": "float32", "y": "float32"})
    b = make("add", (make("mul", (make("exp", (x32,)), y32)), 1))
    assert a is b
    assert parse("exp(x)") is not parse("exp(x)", dtype="float32")  # dtypes differ


def test_shared_subexpressions_make_a_dag():
    e = parse("(x*y + 1) * (x*y + 1) + sin(x*y + 1)")
    # x, y, x*y, 1, x*y+1, the product, sin(...), the sum: 8 distinct nodes
    assert e.node_count() == 8
    assert e.tree_size() == 18
    order = e.toposort()
    position = {n: i for i, n in enumerate(order)}
    assert all(position[a] < position[n] for n in order for a in n.args)
    assert order[-1] is e


def test_a_deep_chain_needs_no_recursion():
    e = var("x")
    for i in range(20000):
        e = e + i
    assert e.depth() == 20001
    assert pickle.loads(pickle.dumps(e)) is e


def test_exponential_tree_is_linear_dag():
    e = var("x")
    for _ in range(200):
        e = e * e + 1
    assert e.node_count() == 402  # 2 nodes per level, plus x and the literal 1
    assert e.tree_size() > 2 ** 200


def test_weak_literals_take_the_dtype_they_meet():
    assert (x32 * 0.1).dtype == "float32"
    assert (0.1 * x32).args[0].dtype == "float32"
    assert (2 * named("pi") * x32).dtype == "float32"
    n = var("n", "int32")
    assert (n + 2).dtype == "int32"
    assert (n + 2.5).dtype == "float64"
    assert const(2.5).dtype == "~f" and const(2).dtype == "~i"
    assert (const(2) + 3).dtype == "~i"


def test_literals_are_exact():
    assert const("0.1").value == Fraction(1, 10)
    assert const(0.1).value == Fraction(0.1)  # a Python float is its exact binary value
    assert const("0x1.8p3").value == 12
    assert const("-0.0").value == "-0" and const(-0.0).value == "-0"
    assert const(float("inf")).value == "inf"
    with pytest.raises(ValueError, match="division"):
        const(Fraction(1, 3))
    with pytest.raises(TypeError):
        const(0.5, "int32")
    with pytest.raises(OverflowError):
        const(2 ** 40, "int32")


def test_negating_a_literal_gives_the_negative_literal():
    assert make("neg", (const("0.5"),)) is const("-0.5")
    assert make("neg", (const(0.0),)).value == "-0"
    assert make("neg", (const("-0.0"),)).value == 0
    assert make("neg", (const(-(2 ** 31), "int32"),)).value == -(2 ** 31)  # wraps like int32


def test_cast_of_a_literal_is_a_typed_literal():
    c = make("cast", (const("0.1"),), "float32")
    assert c.op == "const" and c.dtype == "float32" and c.value == Fraction(1, 10)
    assert make("cast", (named("pi"),), "float32") is named("pi", "float32")


def test_casting_to_the_same_dtype_is_the_node_itself():
    assert make("cast", (x32,), "float32") is x32


def test_reduction_axes_resolve_names_to_negative_positions():
    v = var("v", "float32", axes=("N", "C", "H", "W"))
    assert v.var(axis=("H", "W")).attr == (-2, -1)
    assert v.mean(axis=("N", "H", "W")).attr == (-4, -2, -1)
    assert v.sum(axis=1).attr == (-3,)
    with pytest.raises(ValueError):
        v.sum(axis="T")
    with pytest.raises(ValueError):
        x32.sum(axis=0)  # no axis names: positions must be negative


def test_invalid_and_reserved_names():
    for bad in ["exp", "e", "pi", "float32", "lambda", "None", "1x", "_x", "x.y", ""]:
        with pytest.raises(ValueError):
            var(bad)


def test_expr_has_no_truth_value():
    with pytest.raises(TypeError):
        bool(x32 < y32)


def test_substitution():
    e = parse("x*x + y")
    out = e.subs({"x": parse("z + 1")})
    assert out is parse("(z + 1)*(z + 1) + y")
    assert e.subs({parse("x*x"): var("w")}) is parse("w + y")


def test_retype_switches_float_leaves_and_casts():
    e = parse("exp(x) * 0.1 + float64(y)", vars={"x": "float32", "y": "float32"})
    assert e.dtype == "float64"
    r = retype(e, "float32")
    assert r.dtype == "float32"
    assert all(n.dtype in ("float32", "~f") for n in r.toposort())
    with pytest.raises(TypeError):
        retype(parse("bitcast(x, int32)", vars={"x": "float32"}), "float64")


def test_concretize_a_constant_expression():
    e = parse("1/3")
    assert e.is_weak
    assert concretize(e, "float32").dtype == "float32"
    assert evaluate(e, dtype="float32") == np.float32(1) / np.float32(3)


def test_variables_are_sorted_by_name():
    assert parse("z + a*m").var_names() == ["a", "m", "z"]


def test_digest_is_stable_and_distinguishes():
    a, b = parse("x + 0.1"), parse("x + 0.1", dtype="float32")
    assert a.digest() == parse("x + 0.1").digest() != b.digest()
    assert len(a.digest()) == 64


def test_interning_is_thread_safe():
    results = []

    def build():
        results.append(parse("sin(x) * cos(y) + x / (1 + y*y)"))
    threads = [threading.Thread(target=build) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r is results[0] for r in results)


@settings(max_examples=150, deadline=None)
@given(any_exprs())
def test_repr_rebuilds_the_identical_node(e):
    assert eval(repr(e), {"parse": parse}) is e  # the test may eval; the library never does


@settings(max_examples=100, deadline=None)
@given(float_exprs("float32"))
def test_pickle_round_trip(e):
    assert pickle.loads(pickle.dumps(e)) is e


def test_expr_cannot_be_built_directly():
    with pytest.raises(TypeError):
        Expr()
