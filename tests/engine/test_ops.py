"""The op table: every row's NumPy implementation against its mpmath ground truth, the
dtype rules against NumPy's own promotion, and the table's internal consistency."""
import numpy as np
import pytest

from exprforge.engine import dtypes as dt
from exprforge.engine.errors import ulp_error
from exprforge.engine.evaluate import evaluate, exact, oracle
from exprforge.engine.expr import const, make, var
from exprforge.engine.ops import OPS

FLOAT_ROWS = sorted(n for n, o in OPS.items() if o.group == "elementwise" and o.out == "T"
                    and o.tkind in ("float", "num") and set(o.args) == {"T"})


def sample(interval, n, rng):
    """Points in an op's sampling interval: log-uniform over wide ranges, else uniform."""
    lo, hi = interval
    if lo > 0 and hi / lo > 1e3:
        return np.exp(rng.uniform(np.log(lo), np.log(hi), n))
    if lo < 0 < hi and hi - lo > 1e4:
        return np.exp(rng.uniform(np.log(1e-30), np.log(hi), n)) * rng.choice([-1, 1], n)
    return rng.uniform(lo, hi, n)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", FLOAT_ROWS)
def test_numpy_implementation_within_documented_ulps(name, dtype):
    o = OPS[name]
    rng = np.random.default_rng(sum(map(ord, name + dtype)))
    args = [var(f"a{i}", dtype) for i in range(o.arity)]
    env = {f"a{i}": sample(o.domain[i], 400, rng).astype(dtype) for i in range(o.arity)}
    e = make(name, args)
    got = evaluate(e, env)
    assert got.dtype == dtype
    err = ulp_error(got, oracle(e, env, prec=160))
    bound = max(0.5, o.ulp32 if dtype == "float32" else o.ulp64)
    worst = int(np.argmax(err))
    assert err[worst] <= bound, (name, dtype, {k: v[worst] for k, v in env.items()}, err[worst])


SPECIALS = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 5e-324, 1e300])


@pytest.mark.parametrize("name", [n for n in FLOAT_ROWS if OPS[n].arity == 1])
def test_special_values_agree_with_oracle(name):
    """NaN where the real function is undefined, the right infinity where it diverges."""
    e = make(name, (var("a", "float64"),))
    got = evaluate(e, {"a": SPECIALS})
    truth = exact(e, {"a": SPECIALS}, prec=200)
    for x, g, t in zip(SPECIALS, got, truth):
        if np.isnan(t) or np.isnan(g):
            assert np.isnan(t) and np.isnan(g), (name, x, g, t)
        elif np.isinf(t) or np.isinf(g):
            assert g == t, (name, x, g, t)
        else:  # finite: within the documented error (checked closely above)
            assert abs(g - t) <= 4 * np.spacing(abs(t)) + 1e-300, (name, x, g, t)


INT_ROWS = ["add", "sub", "mul", "neg", "abs", "min", "max", "bitand", "bitor", "bitxor",
            "bitnot", "shl", "shr"]


@pytest.mark.parametrize("dtype", ["int32", "int64"])
@pytest.mark.parametrize("name", INT_ROWS)
def test_integer_ops_wrap_like_numpy(name, dtype):
    o = OPS[name]
    rng = np.random.default_rng(len(name))
    info = np.iinfo(dtype)
    env = {f"a{i}": rng.integers(info.min, info.max, 200, dtype=dtype, endpoint=True)
           for i in range(o.arity)}
    if name in ("shl", "shr"):
        env["a1"] = rng.integers(0, info.bits, 200, dtype=dtype)
    e = make(name, [var(f"a{i}", dtype) for i in range(o.arity)])
    got = evaluate(e, env)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, exact(e, env))


@pytest.mark.parametrize("name", ["lt", "le", "gt", "ge", "eq", "ne"])
def test_comparisons_agree_with_oracle(name):
    vals = np.array([-np.inf, -1.5, -0.0, 0.0, 1.5, np.inf, np.nan, 2.0])
    x, y = np.meshgrid(vals, vals)
    e = make(name, (var("a", "float32"), var("b", "float32")))
    env = {"a": x.astype("float32"), "b": y.astype("float32")}
    got = evaluate(e, env)
    assert got.dtype == bool
    np.testing.assert_array_equal(got, oracle(e, env).astype(bool))


def test_logic_ops_truth_tables():
    a, b = np.array([True, True, False, False]), np.array([True, False, True, False])
    env = {"p": a, "q": b}
    p, q = var("p", "bool"), var("q", "bool")
    np.testing.assert_array_equal(evaluate(p & q, env), a & b)
    np.testing.assert_array_equal(evaluate(p | q, env), a | b)
    np.testing.assert_array_equal(evaluate(~p, env), ~a)
    assert (p & q).op == "and" and (~p).op == "not"


# --- dtype rules: NumPy's promotion, checked against NumPy itself ----------------------------

LITERALS = [2, 2.5]  # bool arithmetic is refused by the IR: test_bool_arithmetic_is_refused


@pytest.mark.parametrize("left", ["float32", "float64", "int32", "int64"])
@pytest.mark.parametrize("right", ["float32", "float64", "int32", "int64"] + LITERALS)
def test_add_promotes_as_numpy_does(left, right):
    a = np.ones(3, dtype=left)
    b = np.ones(3, dtype=right) if isinstance(right, str) else right
    expected = (a + b).dtype
    rhs = var("b", right) if isinstance(right, str) else const(right)
    assert make("add", (var("a", left), rhs)).dtype == str(expected)


@pytest.mark.parametrize("dtype", ["int32", "float32"])
def test_float_functions_of_ints_are_float64_like_numpy(dtype):
    e = make("exp", (var("a", dtype),))
    assert e.dtype == str(np.exp(np.ones(2, dtype=dtype)).dtype)


def test_true_division_of_ints_is_float64():
    assert make("div", (var("a", "int32"), var("b", "int32"))).dtype == "float64"


def test_bool_arithmetic_is_refused():
    with pytest.raises(TypeError):
        make("add", (var("p", "bool"), var("q", "bool")))


def test_mixed_floats_insert_an_explicit_cast():
    e = make("mul", (var("a", "float32"), var("b", "float64")))
    assert e.dtype == "float64"
    assert e.args[0].op == "cast" and e.args[0].attr == "float64"


@pytest.mark.parametrize("src,to,ok", [("float32", "int32", True), ("float64", "int64", True),
                                       ("int32", "float32", True), ("float32", "int64", False),
                                       ("float64", "int32", False)])
def test_bitcast_only_between_equal_widths(src, to, ok):
    if ok:
        assert make("bitcast", (var("a", src),), to).dtype == to
    else:
        with pytest.raises(TypeError):
            make("bitcast", (var("a", src),), to)


def test_ldexp_takes_an_integer_exponent():
    e = make("ldexp", (var("a", "float32"), 3))
    assert e.dtype == "float32" and e.args[1].dtype == "int32"
    with pytest.raises(TypeError):
        make("ldexp", (var("a", "float32"), var("b", "float32")))


def test_shift_refuses_floats():
    with pytest.raises(TypeError):
        make("shl", (var("a", "float32"), 1))


# --- the table itself --------------------------------------------------------------------------

REQUIRED = ("add sub mul div neg fma abs min max sqrt cbrt pow exp exp2 expm1 log log2 log10 log1p "
            "sin cos tan asin acos atan atan2 sinh cosh tanh asinh acosh atanh erf erfc sigmoid "
            "relu floor ceil round trunc copysign where lt le gt ge eq ne and or not ldexp "
            "bitand bitor bitxor bitnot shl shr cast bitcast pi e ln2 rsum rmean rvar rmax").split()


def test_table_covers_the_required_ops():
    assert not [n for n in REQUIRED if n not in OPS]


@pytest.mark.parametrize("name", sorted(OPS))
def test_every_row_is_complete(name):
    o = OPS[name]
    assert o.arity == len(o.args)
    assert o.cost >= 0
    if o.group == "elementwise":
        assert o.np_fn is not None and o.mp_fn is not None
        assert len(o.domain) in (0, o.arity)
    differentiable = o.group in ("elementwise", "reduce") and o.out == "T" and o.tkind in (
        "float", "num")
    if differentiable:
        assert o.deriv is not None or o.jvp is not None, f"{name} has no derivative rule"


def test_dtype_rules_match_every_floating_numpy_implementation():
    """No op's NumPy column widens float32: the evaluator never has to cast back."""
    x = np.linspace(0.1, 0.9, 5, dtype=np.float32)
    for name in FLOAT_ROWS:
        o = OPS[name]
        out = o.np_fn(*([x] * o.arity))
        assert np.asarray(out).dtype == np.float32, name


def test_promotion_written_once_weak_rules():
    assert dt.promote(["float32", "~f"]) == "float32"
    assert dt.promote(["int32", "~f"]) == "float64"
    assert dt.promote(["int32", "~i"]) == "int32"
    assert dt.promote(["~i", "~f"]) == "~f"
    assert dt.promote(["float32", "int64"]) == "float64"
