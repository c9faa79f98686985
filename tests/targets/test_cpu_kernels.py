"""CPU kernels (Numba, LLVM) against the reference evaluator: bit-identical where IEEE
fixes the result, within the documented ULP bound where libm decides, NumPy semantics."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import exprforge as xf
from exprforge.engine.errors import ulps
from exprforge.engine.evaluate import evaluate, exact
from exprforge.engine.expr import make, var
from exprforge.engine.ops import OPS
from tests.strategies import float_exprs

TARGETS = ["numba", "llvm"]
LIBM_ULP_BOUND = 4   # README: glibc's libm; measured <= 2 ULP on samples of every op

SPECIALS = {"float32": [0.0, -0.0, 1e-45, -3e-42, 1.1754944e-38, 3.4028235e38, -3.4028235e38,
                        np.inf, -np.inf, np.nan, 1.0, -1.5, 0.1, 7e-30, -2.5e10],
            "float64": [0.0, -0.0, 5e-324, -1e-310, 2.2250738585072014e-308,
                        1.7976931348623157e308, np.inf, -np.inf, np.nan, 1.0, -1.5, 0.1]}


def _inputs(names, dtype, n=96, seed=0):
    """Arrays mixing special values and random floats of many magnitudes."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in names:
        special = rng.choice(np.array(SPECIALS[dtype], dtype), n // 3)
        scale = np.exp(rng.uniform(-30, 30, n - n // 3))
        random = rng.standard_normal(n - n // 3) * scale
        out[name] = rng.permutation(np.concatenate([special, random.astype(dtype)]))
    return out


def _same_bits(a, b):
    """Bitwise equal, with every NaN equal to every NaN (payloads are not specified)."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    nan = np.isnan(a)
    np.testing.assert_array_equal(nan, np.isnan(b))
    ints = {4: np.int32, 8: np.int64}[a.itemsize]
    np.testing.assert_array_equal(a[~nan].view(ints), b[~nan].view(ints))


def _call(kernel, env):
    return kernel(*[env[n] for n in kernel.args])


EXACT_OPS = ["add", "sub", "mul", "div", "sqrt", "fma", "neg", "abs"]


@pytest.mark.parametrize("target", TARGETS)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(e=float_exprs("float32", max_depth=4, ops=EXACT_OPS))
def test_correctly_rounded_programs_are_bit_identical(target, e):
    env = _inputs(e.var_names(), "float32")
    _same_bits(_call(xf.compile(e, target=target), env), evaluate(e, env))


@pytest.mark.parametrize("target", TARGETS)
def test_float64_program_bit_identical(target):
    e = xf.parse("fma(u, v, -w) / sqrt(abs(u) + 1e-300) - (u * v - w)")
    env = _inputs(["u", "v", "w"], "float64", n=300, seed=3)
    _same_bits(_call(xf.compile(e, target=target), env), evaluate(e, env))


LIBM_OPS = sorted(n for n, o in OPS.items() if o.group == "elementwise" and o.tkind == "float"
                  and o.out == "T" and set(o.args) == {"T"} and n not in EXACT_OPS)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", LIBM_OPS)
def test_libm_ops_within_bound(target, name):
    """Samples of the op's domain against the exact result; special values (every pair,
    for two arguments) against NumPy's IEEE behaviour."""
    o = OPS[name]
    rng = np.random.default_rng(7)
    for dtype in ("float32", "float64"):
        vs = [var(v, dtype) for v in "xyz"[:o.arity]]
        kernel = xf.compile(make(name, vs), target=target)
        sample = {}
        for (lo, hi), v in zip(o.domain, vs):
            wide = hi - lo > 1e4
            values = np.exp(rng.uniform(-20, np.log(hi), 150)) if wide else rng.uniform(lo, hi, 150)
            if wide and lo < 0:
                values *= rng.choice([-1, 1], 150)
            sample[v.name] = values.astype(dtype)
        got = _call(kernel, sample)
        assert got.dtype == np.dtype(dtype)
        worst = ulps(got, exact(kernel.expr, sample)).max()
        assert worst <= LIBM_ULP_BOUND, f"{name} {dtype}: {worst} ULP"
        grid = np.meshgrid(*[np.array(SPECIALS[dtype], dtype)] * o.arity)
        special = {v.name: g.ravel() for v, g in zip(vs, grid)}
        worst = ulps(_call(kernel, special), evaluate(kernel.expr, special)).max()
        assert worst <= LIBM_ULP_BOUND, f"{name} {dtype} at special values: {worst} ULP"


@pytest.mark.parametrize("target", TARGETS)
def test_integer_and_bool_programs(target):
    n, s, b = var("n", "int32"), var("s", "int32"), var("b", "bool")
    e = make("where", (b, (n << s) + (n >> s), n * n - make("bitnot", (n,)))) + (n & 12) + (s ^ 5)
    rng = np.random.default_rng(1)
    env = {"n": np.concatenate([[0, 1, -1, 2**31 - 1, -2**31, 7, -9],
                                rng.integers(-2**31, 2**31, 60)]).astype(np.int32)}
    env["s"] = np.resize(np.array([0, 1, 5, 31, 32, 33, -1, -40, 100], np.int32), env["n"].size)
    env["b"] = rng.random(env["n"].size) < 0.5
    got = _call(xf.compile(e, target=target), env)
    np.testing.assert_array_equal(got, evaluate(e, env))
    assert got.dtype == np.int32


@pytest.mark.parametrize("target", TARGETS)
def test_bitcasts_comparisons_and_casts(target):
    e = xf.parse("where(x >= 0, bitcast(bitcast(x, int32) + 1, float32), ldexp(x, int32(3)))"
                 " + float32(x != x) + float32(int32(y))", vars={"x": "float32", "y": "float32"})
    env = _inputs(["x"], "float32", n=120)
    env["y"] = np.random.default_rng(2).uniform(-1e6, 1e6, 120).astype(np.float32)  # in range
    _same_bits(_call(xf.compile(e, target=target), env), evaluate(e, env))


@pytest.mark.parametrize("target", TARGETS)
def test_mixed_dtypes_and_integer_variables(target):
    e = xf.parse("float32(n) * x + float64(x) * 2", vars={"n": "int64", "x": "float32"})
    env = {"n": np.arange(-5, 5, dtype=np.int64), "x": np.linspace(-1, 1, 10, dtype=np.float32)}
    got = _call(xf.compile(e, target=target), env)
    assert got.dtype == np.float64
    _same_bits(got, evaluate(e, env))


# --- NumPy semantics ----------------------------------------------------------------------

E = "x * y - 1.5 / (y + 3)"
V32 = {"x": "float32", "y": "float32"}


@pytest.fixture(scope="module", params=TARGETS)
def kernel(request):
    return xf.compile(xf.parse(E, vars=V32), target=request.param)


def _ref(x, y):
    return evaluate(xf.parse(E, vars=V32), {"x": x, "y": y})


def test_broadcasting(kernel):
    x = np.linspace(-2, 2, 7, dtype=np.float32)[:, None]
    y = np.linspace(0, 1, 5, dtype=np.float32)[None, :]
    _same_bits(kernel(x, y), _ref(x, y))
    _same_bits(kernel(x, np.float32(0.5)), _ref(x, np.float32(0.5)))


def test_scalars_give_a_scalar(kernel):
    r = kernel(np.float32(2), np.float32(3))
    assert np.ndim(r) == 0 and r.dtype == np.float32
    assert r == _ref(np.float32(2), np.float32(3))


def test_float32_stays_float32_and_python_floats_adopt_it(kernel):
    x = np.ones(4, np.float32)
    assert kernel(x, x).dtype == np.float32
    assert kernel(x, 2.0).dtype == np.float32
    assert kernel(np.ones(4), 2.0).dtype == np.float32  # the kernel's dtype, like a float32 ufunc
    with pytest.raises(TypeError, match="argument"):
        kernel(x)


def test_out_argument(kernel):
    x = np.linspace(-1, 1, 12, dtype=np.float32)
    y = np.linspace(2, 3, 12, dtype=np.float32)
    out = np.empty(12, np.float32)
    assert kernel(x, y, out=out) is out
    _same_bits(out, _ref(x, y))
    strided = np.zeros(24, np.float32)[::2]
    kernel(x, y, out=strided)
    _same_bits(strided, _ref(x, y))
    with pytest.raises(TypeError, match="dtype"):
        kernel(x, y, out=np.empty(12, np.float64))
    with pytest.raises(ValueError):
        kernel(x, y, out=np.empty(5, np.float32))


def test_empty_and_non_contiguous_inputs(kernel):
    empty = np.empty((0, 3), np.float32)
    r = kernel(empty, empty)
    assert r.shape == (0, 3) and r.dtype == np.float32
    base = np.random.default_rng(0).standard_normal((6, 8)).astype(np.float32)
    x, y = base.T, base[:, ::2][:, :1]           # transposed and strided views
    _same_bits(kernel(base[::2], base[1::2]), _ref(base[::2], base[1::2]))
    _same_bits(kernel(x, y.T), _ref(x, y.T))


def test_read_only_inputs(kernel):
    """Read-only arrays (a DataFrame's values, broadcast views) are inputs like any other."""
    x = np.random.default_rng(1).standard_normal(10).astype(np.float32)
    y = x[::-1].copy()
    frozen = x.copy()
    frozen.setflags(write=False)
    _same_bits(kernel(frozen, y), _ref(x, y))
    _same_bits(kernel(np.broadcast_to(x[:1], (10,)), y), _ref(np.broadcast_to(x[:1], (10,)), y))


@pytest.mark.parametrize("target", TARGETS)
def test_the_usual_call_matches_the_general_path(target):
    """Arrays of one shape and the kernel's dtype take a short path: the same bits and
    shape as with out= (the general path), with arguments in the kernel's order, an
    argument the program does not read, and 2-D and read-only arrays."""
    e = xf.parse("x - 2 * y", vars=V32)
    k = xf.compile(e, target=target, args=("y", "unused", "x"))
    rng = np.random.default_rng(5)
    x, y, unused = rng.standard_normal((3, 4, 6)).astype(np.float32)
    y.setflags(write=False)
    got = k(y, unused, x)
    out = np.empty((4, 6), np.float32)
    k(y, unused, x, out=out)
    assert got.shape == (4, 6) and got.dtype == np.float32
    _same_bits(got, out)
    _same_bits(got, evaluate(e, {"x": x, "y": y}))


@pytest.mark.parametrize("target", TARGETS)
def test_parallel_matches_serial(target, monkeypatch):
    """Threads give the serial kernel's bits; they run only where the work pays for
    them (a body of plain arithmetic counts its op costs over SIMD_LANES), and small
    calls of a parallel kernel take the one-loop fast path."""
    from exprforge.targets import kernel as kernel_module
    shares = []
    real = kernel_module._share
    monkeypatch.setattr(kernel_module, "_share",
                        lambda work, jobs: shares.append(len(list(jobs))) or real(work, jobs))
    e = xf.parse("sqrt(x * x + 1) * exp(-x)", dtype="float32")
    x = np.random.default_rng(0).standard_normal(1_000_001).astype(np.float32)
    k = xf.compile(e, target=target, parallel=True)
    _same_bits(k(x), xf.compile(e, target=target)(x))
    assert shares == [2] or kernel_module._workers() == 1
    shares.clear()
    _same_bits(k(x[:50_001]), xf.compile(e, target=target)(x[:50_001]))
    assert shares == []


def test_shares_on_threads_finish_before_an_error_reaches_the_caller():
    """A share failing on the calling thread does not leave the others writing into the
    caller's arrays after it has seen the error."""
    import time

    from exprforge.targets.kernel import _share
    done = []

    def work(k):
        if k == 0:
            raise RuntimeError("first share")
        time.sleep(0.2)
        done.append(k)
    with pytest.raises(RuntimeError, match="first share"):
        _share(work, [0, 1])
    assert done == [1]


@pytest.mark.parametrize("target", TARGETS)
def test_reductions_over_named_axes(target):
    x = var("x", "float32", axes=("N", "C"))
    e = x / make("sqrt", (make("rmean", (x * x,), "C") + 1e-6,)) + make("rvar", (x,), "N") \
        - make("rmax", (x,), ("N", "C")) + make("rsum", (x,), "N")
    data = np.random.default_rng(4).standard_normal((5, 7)).astype(np.float32)
    k = xf.compile(e, target=target)
    _same_bits(k(data), evaluate(e, {"x": data}))


def test_llvm_contraction_is_explicit():
    import llvmlite.binding as llvm
    e = xf.parse("x * y + z", dtype="float32")
    env = _inputs(["x", "y", "z"], "float32", n=300, seed=5)
    finite = {k: np.nan_to_num(v, posinf=1.0, neginf=-1.0) for k, v in env.items()}
    unfused = evaluate(e, finite)
    fused = evaluate(xf.parse("fma(x, y, z)", dtype="float32"), finite)
    assert not np.array_equal(unfused, fused)  # the inputs do tell the two apart
    _same_bits(_call(xf.compile(e, target="llvm"), finite), unfused)
    contracted = _call(xf.compile(e, target="llvm", contract=True), finite)
    if llvm.get_host_cpu_features().flatten().find("+fma") >= 0:
        _same_bits(contracted, fused)
    else:
        assert np.all((contracted == unfused) | (contracted == fused))


def test_compile_errors():
    with pytest.raises(ValueError, match="unknown target"):
        xf.compile("x + 1", target="cuda")
    with pytest.raises(TypeError, match="no option"):
        xf.compile("x + 1", target="llvm", vectorize=True)
    with pytest.raises(TypeError, match="Expr or expression text"):
        xf.compile(42)


def test_constant_expression():
    k = xf.compile("2.5 * 4", target="llvm")
    assert k() == 10.0 and k.args == ()


@pytest.mark.parametrize("target", TARGETS)
def test_signed_zero_through_sign_relu_and_overlapping_out(target):
    x = np.float32([-0.0, 0.0, -2.0, np.nan, 3.0])
    for text in ("sign(x)", "relu(x)"):
        e = xf.parse(text, vars={"x": "float32"})
        _same_bits(xf.compile(e, target=target)(x), evaluate(e, {"x": x}))
    k = xf.compile(xf.parse("x * 2", vars={"x": "float32"}), target=target)
    a = np.arange(5, dtype=np.float32)
    k(a[:-1], out=a[1:])                 # out overlaps the input, as NumPy allows
    np.testing.assert_array_equal(a, np.float32([0, 0, 2, 4, 6]))


def test_torch_kernels_share_work_among_torch_threads(monkeypatch):
    import torch

    from exprforge.targets import kernel as kernel_module
    shares = []
    real = kernel_module._share
    monkeypatch.setattr(kernel_module, "_share",
                        lambda work, jobs: shares.append(len(list(jobs))) or real(work, jobs))
    e = xf.parse("sqrt(x * x + 1) * exp(-x)", dtype="float32")
    x = torch.randn(1_000_001, requires_grad=True)
    k = xf.compile(e, target="torch", parallel=True)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = k(x)
        grad_one, = torch.autograd.grad(one.sum(), x)
        assert shares == []
        torch.set_num_threads(2)
        two = k(x)
        grad_two, = torch.autograd.grad(two.sum(), x)
        assert shares == [2, 2] or kernel_module._workers() == 1   # forward, backward
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two) and torch.equal(grad_one, grad_two)
    serial = xf.compile(e, target="torch")
    assert torch.equal(serial(x), one)
    shares.clear()
    torch.set_num_threads(2)
    try:
        serial(x)
    finally:
        torch.set_num_threads(before)
    assert shares == []   # parallel is off by default


@pytest.mark.parametrize("target", TARGETS)
def test_out_of_every_kind_on_the_one_loop_kernel(target):
    # the cheap call takes a plain out=; the others (in place, read-only, another dtype
    # or shape, a view with strides) take the general path: the same results or errors
    k = xf.compile(xf.parse("x * 2 + y", vars={"x": "float32", "y": "float32"}),
                   target=target)
    x, y = np.arange(6, dtype=np.float32), np.full(6, 0.5, np.float32)
    want = x * 2 + y
    out = np.full(6, np.nan, np.float32)
    assert k(x, y, out=out) is out
    np.testing.assert_array_equal(out, want)
    a = x.copy()
    assert k(a, y, out=a) is a                  # in place: each element read, then written
    np.testing.assert_array_equal(a, want)
    wide = np.zeros(12, np.float32)
    k(x, y, out=wide[::2])
    np.testing.assert_array_equal(wide[::2], want)
    assert not wide[1::2].any()
    frozen = np.zeros(6, np.float32)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        k(x, y, out=frozen)
    assert not frozen.any()
    with pytest.raises(TypeError, match="dtype"):
        k(x, y, out=np.zeros(6, np.float64))
    with pytest.raises(ValueError, match="shape"):
        k(x, y, out=np.zeros(5, np.float32))


@pytest.mark.parametrize("target", TARGETS)
def test_ldexp_with_a_64_bit_exponent_does_not_wrap(target):
    e = xf.parse("ldexp(x, j)", vars={"x": "float64", "j": "int64"})
    env = {"x": np.ones(4), "j": np.array([2**62, 2**32 + 1, -2**40, 3], np.int64)}
    np.testing.assert_array_equal(_call(xf.compile(e, target=target), env), evaluate(e, env))


def test_text_compiles_as_float32():
    k = xf.compile("x * 2 + 1", target="llvm")
    assert k(np.float32([1, 2])).dtype == np.float32
    assert xf.compile("x * 2 + 1", target="llvm", dtype="float64")(1.0).dtype == np.float64


def test_numba_matmul_sums_the_program_over_k_in_order():
    k = xf.compile(xf.parse("x * y", vars={"x": "float64", "y": "float64"}), target="numba",
                   matmul=True)
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((2, 1, 4, 9)), rng.standard_normal((3, 9, 5))
    got = k.matmul(a, b)
    assert got.shape == (2, 3, 4, 5) and got.dtype == np.float64
    np.testing.assert_allclose(got, np.matmul(a, b), rtol=1e-13, atol=1e-13)
    # one b for every batch element (a weight matrix): its batch joins a's rows
    for right in (b[1], b[1:2], b[1][None, None]):
        np.testing.assert_allclose(k.matmul(a, right), np.matmul(a, right), rtol=1e-13,
                                   atol=1e-13)
    readonly = np.broadcast_to(b[1], (3, 9, 5))
    np.testing.assert_allclose(k.matmul(a[0, 0], readonly), np.matmul(a[0, 0], readonly),
                               rtol=1e-13, atol=1e-13)
    # in the order of k, in the program's dtype: the same bits as adding the rows one by one
    f = xf.compile(xf.parse("max(x, y) - x * y", vars={"x": "float32", "y": "float32"}),
                   target="numba", matmul=True)
    a32, b32 = a[0, 0].astype(np.float32), b[0].astype(np.float32)
    want = np.zeros((4, 5), np.float32)
    for i in range(9):
        want += f(a32[:, i, None], b32[None, i, :])
    _same_bits(f.matmul(a32, b32), want)
    assert np.array_equal(k.matmul(np.ones((3, 0)), np.ones((0, 2))), np.zeros((3, 2)))
    threads = xf.compile(xf.parse("x * y", vars={"x": "float64", "y": "float64"}),
                         target="numba", matmul=True, parallel=True)
    assert "prange(out.shape[1])" in threads.source
    np.testing.assert_array_equal(threads.matmul(a, b), got)   # rows apart: same sums


def test_numba_matmul_errors():
    plain = xf.compile(xf.parse("x * y", vars={"x": "float64", "y": "float64"}), target="numba")
    with pytest.raises(TypeError, match="matmul=True"):
        plain.matmul(np.ones((2, 2)), np.ones((2, 2)))
    k = xf.compile(xf.parse("x * y", vars={"x": "float64", "y": "float64"}), target="numba",
                   matmul=True)
    with pytest.raises(ValueError, match="do not match"):
        k.matmul(np.ones((2, 3)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="2 or more"):
        k.matmul(np.ones(3), np.ones((3, 2)))
    with pytest.raises(ValueError, match="two arguments"):
        xf.compile(xf.parse("x * y + z", vars={"x": "float64", "y": "float64",
                                                "z": "float64"}), target="numba", matmul=True)


SEVERAL = ["exp(x) * y", "exp(x) + y", "sum(exp(x) * y, axis=-1)", "x", "2.5", "exp(x) * y"]


@pytest.mark.parametrize("target", TARGETS)
def test_a_tuple_of_expressions_is_one_kernel_of_several_results(target):
    """Each result equals its expression evaluated alone, bit for bit: shared values,
    broadcast inputs, a reduction, a variable, a constant and a repeated expression."""
    v = {"x": "float64", "y": "float64"}
    exprs = tuple(xf.parse(t, vars=v) for t in SEVERAL)
    k = xf.compile(exprs, target=target)
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((3, 5)), rng.standard_normal(5)
    got = k(x, y)
    assert isinstance(got, tuple) and len(got) == len(exprs)
    for e, value in zip(exprs, got):
        _same_bits(value, evaluate(e, {"x": x, "y": y}))
    assert "->" in repr(k) and len(k.expr) == len(exprs)
    with pytest.raises(TypeError, match="out= takes one array"):
        k(x, y, out=np.empty((3, 5)))


def test_kernel_of_several_results_from_text_and_its_errors():
    k = xf.compile(("x * 2", "x + 1"), target="llvm")
    a, b = k(np.float32([1, 2]))
    assert a.dtype == b.dtype == np.float32 and a.tolist() == [2, 4] and b.tolist() == [2, 3]
    with pytest.raises(ValueError, match="at least one"):
        xf.compile((), target="llvm")
    with pytest.raises(TypeError, match="Expr or expression text"):
        xf.compile(("x", 3), target="llvm")


LAYOUTS = [  # shapes of x, m, p: (the layout's rows x cols for their broadcast)
    ((6, 5), (6, 1), ()),            # a row's mean, a scalar: 6 x 5
    ((6, 5), (1, 5), (6, 1)),        # a row vector, a column: 6 x 5
    ((2, 3, 4, 5), (1, 3, 1, 1), (2, 3, 4, 5)),   # a per-channel parameter: 6 x 20
    ((4, 5), (3, 1, 1), (5,)),       # broadcast to a new leading axis: 12 x 5
    ((7,), (), (7,)),                # one row
]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("shapes", LAYOUTS)
def test_broadcast_inputs_are_read_in_place(target, shapes):
    """Inputs constant along the result's rows (row means, per-channel parameters,
    scalars) are read through row tables: the same bits as NumPy, serial or threaded,
    non-contiguous inputs included."""
    e = xf.parse("x * m + sqrt(abs(p)) - m / (p + 3)", dtype="float64")  # correctly rounded
    rng = np.random.default_rng(3)
    x, m, p = (rng.standard_normal(s) for s in shapes)
    want = evaluate(e, {"m": m, "p": p, "x": x})
    for parallel in (False, True):
        k = xf.compile(e, target=target, parallel=parallel)
        _same_bits(k(m, p, x), want)
    stretched = np.broadcast_to(m, want.shape)   # a stride-0 view: read as the small array
    _same_bits(xf.compile(e, target=target)(stretched, p, x), want)
    if x.ndim == 2:   # a transposed input is copied at its own size, then read the same way
        xt = np.asfortranarray(x)
        _same_bits(xf.compile(e, target=target)(m, p, xt), want)


def test_loop_layout_keeps_rows_whose_inputs_run_or_stay():
    from exprforge.targets.kernel import loop_layout
    arrays = [np.zeros(s) for s in ((2, 3, 4, 5), (1, 3, 1, 1), ())]
    rows, cols, operands = loop_layout((2, 3, 4, 5), arrays)
    assert (rows, cols) == (6, 20)
    (_, x_rows, x_step), (_, c_rows, c_step), (_, s_rows, s_step) = operands
    assert x_step == 1 and x_rows.tolist() == [20 * i for i in range(6)]
    assert c_step == 0 and c_rows.tolist() == [0, 1, 2, 0, 1, 2]
    assert s_step == 0 and s_rows.tolist() == [0] * 6
    assert loop_layout((8, 3), [np.zeros((8, 3)), np.zeros(())])[:2] == (1, 24)
    stretched = np.broadcast_to(np.zeros((8, 1)), (8, 3))      # as torch's expand gives
    rows, cols, operands = loop_layout((8, 3), [np.zeros((8, 3)), stretched])
    assert (rows, cols) == (8, 3) and operands[1][0].size == 8 and operands[1][2] == 0


def test_large_broadcast_kernels_split_rows_over_threads():
    """Big enough to run on threads: rows split (many rows) and one row split."""
    e = xf.parse("sqrt(x * x + m) / (abs(x) + 1)", dtype="float32")
    rng = np.random.default_rng(5)
    for shape, mshape in (((1500, 1000), (1500, 1)), ((1_500_007,), ())):  # a rest too
        x = rng.standard_normal(shape).astype(np.float32)
        m = np.abs(rng.standard_normal(mshape)).astype(np.float32)
        for target in TARGETS:
            serial = xf.compile(e, target=target)(m, x)
            _same_bits(xf.compile(e, target=target, parallel=True)(m, x), serial)
            _same_bits(serial, evaluate(e, {"m": m, "x": x}))


@pytest.mark.parametrize("target", TARGETS)
def test_large_results_reuse_memory_nothing_refers_to(target):
    """A large result's memory serves a later result once nothing refers to it: not
    while a view of it or a tensor on it lives, whose values stay as they were."""
    import gc

    import torch
    k = xf.compile(xf.parse("x * 2 + 1", vars={"x": "float32"}), target=target)
    x = np.arange(1 << 17, dtype=np.float32)   # 512 KB
    first = k(x)
    address = first.ctypes.data
    view = first[5:]
    del first
    gc.collect()
    other = k(x + 1)                # the view holds it
    assert not np.shares_memory(other, view)
    np.testing.assert_array_equal(view, x[5:] * 2 + 1)
    tensor = torch.from_numpy(other)
    del other, view
    gc.collect()
    other = k(x + 2)                # the first block again; the tensor holds the second
    assert other.ctypes.data == address and other.flags.writeable
    assert not np.shares_memory(other, tensor.numpy())
    np.testing.assert_array_equal(tensor.numpy(), (x + 1) * 2 + 1)
    del other, tensor
    gc.collect()
    again = k(x + 3)
    np.testing.assert_array_equal(again, (x + 3) * 2 + 1)
    small = k(x[:10])
    assert small.base is None   # small arrays are NumPy's own


LONG_BODY_TEXT = ("(((((((((0.3*x + r)*x - s)*x + 0.25)*x - r)*x + 0.5)*x - s)*x + r)*x + 1)"
                  " / (1 + x*x)) * s - r")


@pytest.mark.parametrize("text", ["0.7*relu(x) + 0.2*x*x + r * x - s", LONG_BODY_TEXT])
@pytest.mark.parametrize("target", TARGETS)
def test_large_results_stored_past_the_cache_are_the_same_bits(target, text):
    """Results of STREAM_BYTES and more go through non-temporal vector stores (LLVM) when
    each output's rows start on 64-byte boundaries, and long bodies are computed in
    vector pieces in cache too: the same bits as the evaluator for one row or many, rows
    of any length (vectors, then the chunk's last elements one by one; rows too short
    for the vectors), inputs constant along the row, small results, and an out= that is
    not aligned (normal stores)."""
    from exprforge.codegen.llvm import LONG_BODY, STREAM_BYTES
    v = {"x": "float32", "r": "float32", "s": "float32"}
    e = xf.parse(text, vars=v)
    k = xf.compile(e, target=target, args=("x", "r", "s"))
    assert target != "llvm" or "!nontemporal" in k.source
    if text == LONG_BODY_TEXT:
        assert sum(n.op != "var" for n in e.toposort()) > LONG_BODY
    rng = np.random.default_rng(11)
    n = STREAM_BYTES // 4 + 37
    s = np.float32(0.25)
    for shape, rshape in [((n,), ()), ((n // 1024, 1024), (n // 1024, 1)),
                          ((n // 1000, 1000), (n // 1000, 1)), ((n // 250, 250), (250,)),
                          ((n // 100, 100), (100,)), ((5003,), ()), ((37, 300), (37, 1))]:
        x = rng.standard_normal(shape).astype(np.float32)
        r = rng.standard_normal(rshape).astype(np.float32)
        want = evaluate(e, {"x": x, "r": r, "s": s})
        _same_bits(k(x, r, s), want)
        out = np.empty(x.size + 1, np.float32)[1:].reshape(shape)   # 4 bytes off
        assert k(x, r, s, out=out) is out
        _same_bits(out, want)
