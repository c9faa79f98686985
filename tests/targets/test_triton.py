"""The Triton target against the reference evaluator.

Without a GPU the kernels run in Triton's interpreter on the CPU (TRITON_INTERPRET=1, set
before triton is imported). There, libdevice calls run NumPy stand-ins, so transcendental
results equal NumPy's; the ULP bounds below are checked against exact values either way.
Compiling for a real GPU without one is checked too: every spelling is compiled to PTX for
sm_90 and the instructions that make arithmetic exact are looked for.
"""
import importlib.util
import os
import re

import numpy as np
import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"  # read by triton when a kernel module is imported

import triton  # noqa: E402

from exprforge.codegen import triton as renderer  # noqa: E402
from exprforge.codegen.lower import lower  # noqa: E402
from exprforge.engine.errors import ulps  # noqa: E402
from exprforge.engine.evaluate import evaluate, exact  # noqa: E402
from exprforge.engine.ops import OPS  # noqa: E402
from exprforge.engine.parse import parse  # noqa: E402
from exprforge.targets import store  # noqa: E402
from exprforge.targets import triton as target  # noqa: E402
from exprforge.targets.build import compile_kernel  # noqa: E402

INT_OF = {np.dtype("float32"): np.int32, np.dtype("float64"): np.int64}
SPECIALS32 = np.array([0.0, -0.0, 1e-45, -1e-45, 1e-40, -3e-39, 1.1754944e-38, 1.0, -1.0,
                       0.5, -2.5, 0.1, 3.0, 1e10, -1e-10, 3.4028235e38, -3.4028235e38,
                       np.inf, -np.inf, np.nan], dtype=np.float32)


@pytest.fixture(scope="module", autouse=True)
def private_store(tmp_path_factory):
    """Kernels of this module go to a store of their own, never into ~/.cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EXPRFORGE_CACHE_DIR", str(tmp_path_factory.mktemp("triton-store")))
        yield


def build(text, **vars):
    return compile_kernel(parse(text, vars=vars), "triton")


def run(text, env, **vars):
    """(kernel result as NumPy, reference result) for `text` on the arrays `env`."""
    e = parse(text, vars=vars)
    k = compile_kernel(e, "triton")
    result = k(*(env[name] for name in k.args))
    assert isinstance(result, torch.Tensor)
    return result.cpu().numpy(), evaluate(e, env)


def assert_same_bits(result, reference):
    """Bit-identical, except that any NaN matches any NaN (GPUs return one canonical NaN)."""
    assert result.dtype == reference.dtype and result.shape == reference.shape
    nan = np.isnan(result) if result.dtype.kind == "f" else np.zeros(result.shape, bool)
    if result.dtype.kind == "f":
        assert np.array_equal(nan, np.isnan(reference))
        result, reference = result.view(INT_OF[result.dtype]), reference.view(INT_OF[result.dtype])
    assert np.array_equal(result[~nan], reference[~nan])


def grid(values):
    """Every pair of `values`, as a column and a row (their broadcast is the pair table)."""
    return values[:, None], values[None, :]


# --- exact arithmetic ----------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "x + y", "x - y", "x * y", "x / y", "sqrt(x)", "fma(x, y, x)", "-x", "abs(x)",
    "min(x, y)", "max(x, y)", "copysign(x, y)", "floor(x)", "ceil(x)", "round(x)", "trunc(x)",
    "fmod(x, y)", "sign(x)", "relu(x)", "fma(x, y, -(x * y)) + sqrt(x * x + y) / (y - 0.1)",
])
def test_float32_arithmetic_is_bit_identical_on_special_values(text):
    x, y = grid(SPECIALS32)
    assert_same_bits(*run(text, {"x": x, "y": y}, x="float32", y="float32"))


def test_float32_arithmetic_is_bit_identical_on_random_values():
    rng = np.random.default_rng(0)
    x, y, z = (rng.standard_normal(500).astype(np.float32) * 10.0 ** rng.integers(-20, 20, 500)
               for _ in range(3))
    text = "fma(x, y, z) - x * y / z + sqrt(abs(z)) * (x - y) + 0.1"
    assert_same_bits(*run(text, {"x": x, "y": y, "z": z}, x="float32", y="float32", z="float32"))


def test_float64_arithmetic_is_bit_identical():
    x, y = grid(SPECIALS32.astype(np.float64) * 1e-300)
    text = "x / y + sqrt(x) * y - fma(x, y, 0.1)"
    assert_same_bits(*run(text, {"x": x, "y": y}, x="float64", y="float64"))


def test_literals_are_exact_values_of_their_dtype():
    x = np.float32([1.0, -0.0])
    text = "x * 0.1 + (x - 1e-45) * 3.4028235e38 + where(x > 0, -0.0, 1e-40)"
    assert_same_bits(*run(text, {"x": x}, x="float32"))
    assert_same_bits(*run("x * 0.1 + 1e-310", {"x": np.float64([1.0, 3.0])}, x="float64"))


def test_ldexp_reaches_subnormals_and_overflow():
    x, n = np.float32([1.5, -3.0, 1e-40, np.inf])[:, None], np.int32([-160, -140, 0, 100, 300])
    assert_same_bits(*run("ldexp(x, n)", {"x": x, "n": n}, x="float32", n="int32"))
    assert_same_bits(*run("ldexp(x, n)", {"x": x, "n": n.astype(np.int64) * 2**33},
                          x="float32", n="int64"))


def test_literal_first_arguments_broadcast_against_blocks():
    x, n = np.float32([-1.5, 0.0, 0.5, 3.0]), np.int32([-3, 0, 1, 200])
    text = "pow(2, x) + ldexp(1.5, n) + atan2(1, x) + exp(0.5)"
    assert_same_bits(*run(text, {"x": x, "n": n}, x="float32", n="int32"))


# --- transcendental ops: ULP bounds --------------------------------------------------------

# Largest distance, in ULPs (errors.ulps), from the correctly rounded float32 result.
# Interpreter: measured over 4000 samples of each op's domain (the NumPy/SciPy functions
# that stand in for libdevice there; sigmoid is the decomposition 1 / (1 + exp(-x))).
# GPU: CUDA's documented bounds for its math library, not measured here.
INTERPRETER_ULPS = {"exp": 2, "exp2": 1, "expm1": 2, "log": 2, "log2": 1, "log10": 2,
                    "log1p": 1, "sin": 1, "cos": 1, "tan": 3, "asin": 3, "acos": 1, "atan": 1,
                    "sinh": 1, "cosh": 2, "tanh": 1, "asinh": 1, "acosh": 1, "atanh": 1,
                    "erf": 0, "erfc": 0, "cbrt": 2, "pow": 1, "atan2": 2, "hypot": 0,
                    "sigmoid": 2}
CUDA_ULPS = {"exp": 2, "exp2": 2, "expm1": 1, "log": 1, "log2": 1, "log10": 2, "log1p": 1,
             "sin": 2, "cos": 2, "tan": 4, "asin": 2, "acos": 2, "atan": 2, "sinh": 3,
             "cosh": 2, "tanh": 2, "asinh": 3, "acosh": 4, "atanh": 3, "erf": 2, "erfc": 4,
             "cbrt": 1, "pow": 4, "atan2": 3, "hypot": 3, "sigmoid": 4}
BOUNDS = INTERPRETER_ULPS if target.interpreting() else CUDA_ULPS


def sample(lo, hi, n, rng):
    """Float32 values in [lo, hi]: half uniform, half uniform in bit pattern (every binade)."""
    def key(v):  # monotone integer image of a float32
        b = int(np.float32(v).view(np.int32))
        return b if b >= 0 else -(b & 0x7FFFFFFF)
    keys = rng.integers(key(lo), key(hi) + 1, n // 2)
    bits = np.where(keys >= 0, keys, (-keys) | np.int64(-2**31)).astype(np.int32)
    uniform = rng.uniform(lo, hi, n - n // 2).astype(np.float32)
    return np.concatenate([bits.view(np.float32), uniform])


@pytest.mark.parametrize("op", sorted(INTERPRETER_ULPS))
def test_transcendental_op_within_ulp_bound(op):
    rng = np.random.default_rng(len(op))
    row = OPS[op]
    names = "xy"[:row.arity]
    env = {n: sample(*row.domain[i], 300, rng) for i, n in enumerate(names)}
    text = f"{op}({', '.join(names)})"
    e = parse(text, vars={n: "float32" for n in names})
    result = compile_kernel(e, "triton")(*env.values()).cpu().numpy()
    worst = ulps(result, exact(e, env)).max()
    assert worst <= BOUNDS[op], f"{op}: {worst} ULPs"
    specials = dict(zip(names, grid(SPECIALS32) if row.arity == 2 else (SPECIALS32,)))
    result = compile_kernel(e, "triton")(*specials.values()).cpu().numpy()
    assert ulps(result, evaluate(e, specials)).max() <= BOUNDS[op]


# --- integers, bits, selection -------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_integer_arithmetic_wraps_around(dtype):
    info = np.iinfo(dtype)
    x, y = grid(np.array([info.min, info.min + 1, -7, -1, 0, 1, 3, info.max - 1, info.max],
                         dtype=dtype))
    for text in ["x + y", "x - y", "x * y + 1", "-x", "abs(x)", "min(x, y)", "max(x, y)",
                 "x & y | ~x ^ y"]:
        assert_same_bits(*run(text, {"x": x, "y": y}, x=dtype, y=dtype))


@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_shifts_follow_numpy_for_every_count(dtype):
    x = np.array([-5, -1, 0, 1, 5, np.iinfo(dtype).min, np.iinfo(dtype).max], dtype=dtype)
    n = np.array([-64, -33, -1, 0, 1, 30, 31, 32, 33, 63, 64, 100], dtype=dtype)
    for text in ["x << n", "x >> n"]:
        assert_same_bits(*run(text, {"x": x[:, None], "n": n[None, :]}, x=dtype, n=dtype))


@pytest.mark.parametrize("floats, ints", [("float32", "int32"), ("float64", "int64")])
def test_bitcast_round_trips_keep_every_bit(floats, ints):
    rng = np.random.default_rng(1)
    info = np.iinfo(ints)
    n = rng.integers(info.min, info.max, 400, dtype=ints)  # NaN payloads included
    result, _ = run(f"bitcast(bitcast(n, {floats}), {ints})", {"n": n}, n=ints)
    assert np.array_equal(result, n)
    x = np.concatenate([SPECIALS32.astype(floats), n.view(floats)])
    result, _ = run(f"bitcast(bitcast(x, {ints}), {floats})", {"x": x}, x=floats)
    assert np.array_equal(result.view(ints), x.view(ints))
    next_up = f"bitcast(bitcast(x, {ints}) + 1, {floats})"  # the next float above a positive x
    assert_same_bits(*run(next_up, {"x": np.abs(SPECIALS32).astype(floats)}, x=floats))


def test_where_and_comparisons_treat_nan_as_unordered():
    x, y = grid(SPECIALS32)
    vars = {"x": "float32", "y": "float32"}
    for text in ["x < y", "x <= y", "x > y", "x >= y", "x == y", "x != y",
                 "where((x < y) and not (x != x) or y >= 3, x, -y)",
                 "where(x == y, 1, 0) + where(x != x, 2.5, y)"]:
        result, reference = run(text, {"x": x, "y": y}, **vars)
        assert_same_bits(result, reference)


def test_casts_between_dtypes_match_numpy_in_range():
    x = np.float32([-2.5, -0.5, -0.0, 0.0, 0.5, 1.5, 2.5, 3e9, np.inf])
    assert_same_bits(*run("int32(x) + int32(int64(x * 2)) * 0", {"x": x[:7]}, x="float32"))
    assert_same_bits(*run("float32(x) + float32(n)", {"x": x.astype(np.float64) / 3,
                                                      "n": np.int64(2**40 + 1)},
                          x="float64", n="int64"))
    result, reference = run("bool(x) and not bool(int32(x))", {"x": x[:7]}, x="float32")
    assert_same_bits(result, reference)


# --- plans, broadcasting, calling conventions ---------------------------------------------

def test_reduction_plan_matches_numpy_to_a_few_ulps():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 33)).astype(np.float32)
    result, reference = run("x / sqrt(mean(x * x, axis=-1) + 1e-6)", {"x": x}, x="float32")
    assert result.shape == (4, 33) and ulps(result, reference).max() <= 4
    result, reference = run("var(x, axis=-1) + sum(x, axis=-1)", {"x": x}, x="float32")
    assert result.shape == (4, 1) and ulps(result, reference).max() <= 64
    assert_same_bits(*run("x - max(x, axis=(-2, -1))", {"x": x}, x="float32"))


def test_plans_without_an_elementwise_kernel():
    constant = build("2 ** 0.5 * 3")
    assert constant.args == () and constant().item() == evaluate(constant.expr).item()
    total = build("sum(x, axis=-1)", x="float64")
    out = torch.empty((2, 1), dtype=torch.float64)
    x = np.arange(6.0).reshape(2, 3)
    assert total(x, out=out) is out and out.flatten().tolist() == [3.0, 12.0]


def test_broadcasting_of_scalars_columns_and_rows():
    k = build("x * y + 1", x="float32", y="float32")
    column, row = np.float32([[1], [2], [3]]), np.float32([[10, 20]])
    assert_same_bits(k(column, row).cpu().numpy(), column * row + 1)
    assert k(column, 2.0).shape == (3, 1)
    scalar = k(np.float32(2), np.float32(3))
    assert scalar.shape == () and scalar.item() == 7.0


def test_out_receives_the_result():
    k = build("x * 2 - y", x="float32", y="float32")
    x, y = torch.arange(6, dtype=torch.float32).reshape(2, 3), torch.ones(3)
    out = torch.empty((2, 3), dtype=torch.float32, device=x.device)
    assert k(x, y, out=out) is out and torch.equal(out, x * 2 - y)
    strided = torch.empty((3, 2), dtype=torch.float32).T  # not contiguous
    assert k(x, y, out=strided) is strided and torch.equal(strided, x * 2 - y)
    array = np.empty((2, 3), np.float32)
    assert k(x.numpy(), y.numpy(), out=array) is array and np.array_equal(array, x.numpy() * 2 - 1)
    with pytest.raises(TypeError, match="out has dtype"):
        k(x, y, out=torch.empty((2, 3), dtype=torch.float64))


def test_empty_inputs_do_not_launch():
    k = build("x + y", x="float32", y="float32")
    k.runners = {name: _no_launch for name in k.runners}
    assert k(np.zeros(0, np.float32), np.float32(1)).shape == (0,)
    assert k(np.zeros((0, 3), np.float32), np.ones((1, 3), np.float32)).shape == (0, 3)


def _no_launch(*args):
    raise AssertionError("an empty kernel launched")


def test_arguments_are_converted_with_same_kind_casting():
    k = compile_kernel(parse("x + float32(n)", vars={"x": "float32", "n": "int32"}), "triton",
                       args=("x", "n"))
    result = k(np.float64([1.5]), torch.tensor([2], dtype=torch.int64))
    assert result.dtype == torch.float32 and result.item() == 3.5
    assert k(torch.tensor([1.5], dtype=torch.bfloat16), 1).item() == 2.5
    with pytest.raises(TypeError, match="argument n is int32"):
        k(np.float32([1]), np.float32([2]))
    with pytest.raises(TypeError, match="argument n is int32"):
        k(np.float32([1]), torch.tensor([2.0]))


def test_store_holds_the_source_and_a_second_compile_is_a_hit():
    first = build("x * 3 + 0.25", x="float32")
    second = build("x * 3 + 0.25", x="float32")
    assert second.cache_info["hit"] and second.source == first.source
    stored = (store.artifact_dir(first.key) / "kernel.py").read_text()
    assert stored == first.source and "@triton.jit" in stored
    assert str(store.cache_dir()).startswith(os.environ["EXPRFORGE_CACHE_DIR"])


# --- the source for a GPU ------------------------------------------------------------------

def test_gpu_source_tunes_block_sizes_on_n():
    plan = lower(parse("x + 1", vars={"x": "float32"}), has=renderer.has)
    source = renderer.render(plan)
    assert '@triton.autotune(configs=CONFIGS, key=["n"])' in source
    assert source.count("triton.Config(") == len(renderer.CONFIGS) == 3


POINTER = {"float32": "*fp32", "float64": "*fp64", "int32": "*i32", "int64": "*i64",
           "bool": "*i1"}


def ptx_for_sm90(folder, text, contract=False, **vars):
    """PTX instructions of the rendered kernel for an H100, compiled here without one
    (Triton's compile cache goes to `folder`, not ~/.triton)."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    plan = lower(parse(text, vars=vars), has=renderer.has)
    program = plan.programs[-1]
    path = folder / f"kernel_{len(list(folder.glob('*.py')))}.py"  # triton reads the file
    path.write_text(renderer.render(plan, contract=contract))
    signature = {f"{n}_ptr": POINTER[d] for n, d in program.params}
    signature.update({f"out{k}_ptr": POINTER[d] for k, (_, d) in enumerate(program.outputs)})
    signature.update(n="i32", BLOCK="constexpr")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRITON_INTERPRET", "0")  # build JITFunctions and real libdevice calls
        mp.setenv("TRITON_CACHE_DIR", str(folder / "triton-cache"))
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        jit = getattr(module, f"kernel_{program.name}").fn
        compiled = triton.compile(ASTSource(jit, signature, constexprs={"BLOCK": 1024}),
                                  target=GPUTarget("cuda", 90, 32),
                                  options={"enable_fp_fusion": contract,
                                           "enable_reflect_ftz": False})
    return set(re.findall(r"^\s*([a-z][\w.]*)", compiled.asm["ptx"], re.M))


needs_cuda_backend = pytest.mark.skipif(
    "nvidia" not in triton.backends.backends, reason="this triton has no CUDA back end")


@needs_cuda_backend
def test_every_spelling_compiles_for_a_gpu(tmp_path):
    unary = ["sqrt", "cbrt", "exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "sin",
             "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "tanh", "asinh", "acosh",
             "atanh", "erf", "erfc", "floor", "ceil", "round", "trunc", "abs", "sign", "relu"]
    text = (" + ".join(f"{f}(x)" for f in unary) + " + pow(x, y) + min(x, y) + max(x, y)"
            " + copysign(x, y) + atan2(x, y) + hypot(x, y) + fmod(x, y)"
            " + ldexp(x, n) + ldexp(1.5, n)"
            " + where((x < y) and not (x == y) or x != y, x, -y)"
            " + float32(bitcast(x, int32) >> n) + float32(int32(x) << n)")
    assert "sqrt.rn.f32" in ptx_for_sm90(tmp_path, text, x="float32", y="float32", n="int32")
    text = "x / y + sqrt(x) * 0.1 + bitcast(bitcast(x, int64) << n, float64)"
    ptx = ptx_for_sm90(tmp_path, text, x="float64", y="float64", n="int64")
    assert {"div.rn.f64", "sqrt.rn.f64"} <= ptx


@needs_cuda_backend
def test_gpu_division_and_sqrt_are_correctly_rounded_and_nothing_is_fused(tmp_path):
    ptx = ptx_for_sm90(tmp_path, "x / y + sqrt(x) * y", x="float32", y="float32")
    assert {"div.rn.f32", "sqrt.rn.f32", "mul.rn.f32", "add.rn.f32"} <= ptx
    assert not {"div.full.f32", "div.approx.f32", "sqrt.approx.f32", "fma.rn.f32"} & ptx
    fused = ptx_for_sm90(tmp_path, "x * y + x", contract=True, x="float32", y="float32")
    assert "fma.rn.f32" in fused


def test_a_kernel_of_several_results_writes_each():
    k = compile_kernel(tuple(parse(t, vars={"x": "float64", "y": "float64"}) for t in
                             ("x * y + 1", "exp(x) * y", "sum(x * y, axis=-1)")), "triton")
    x, y = np.arange(6.0).reshape(2, 3) / 4, np.float64([1, -2, 3])
    first, second, total = k(x, y)
    assert_same_bits(first.cpu().numpy(), x * y + 1)
    assert ulps(second.cpu().numpy(), np.exp(x) * y).max() <= 2
    assert total.shape == (2, 1) and np.allclose(total.cpu().numpy(), (x * y).sum(-1, keepdims=True))


def test_a_torch_backward_kernel_runs_as_on_the_cpu():
    """The torch op's backward on CUDA tensors runs its kernel of several gradients here:
    gradients of different shapes, parameters summed where broadcast."""
    from exprforge.targets.kernel import unit_axes
    from exprforge.targets.torch_op import _cuda_forward
    k = compile_kernel(parse("mean(x * (x * y), axis=(-2, -1)) * ((y * y) / (1.5 + a * a))"
                             " + b * x"), "torch")
    rng = np.random.default_rng(3)
    shapes = {"a": (1, 4, 1), "x": (4, 5), "y": (), "b": (5,)}
    inputs = [torch.from_numpy(rng.standard_normal(shapes[n])) for n in k.args]
    grad = torch.from_numpy(rng.standard_normal((1, 4, 5)))
    back = k.backward_kernel(tuple(k.differentiable), True,
                             unit_axes([grad.shape] + [t.shape for t in inputs]))
    on_cpu = back.cpu(grad.numpy(), *(t.numpy() for t in inputs))
    on_triton = _cuda_forward(back, [grad, *inputs])
    assert [tuple(t.shape) for t in on_triton] == [np.shape(c) for c in on_cpu]
    for c, t in zip(on_cpu, on_triton):
        np.testing.assert_allclose(t.cpu().numpy(), c, rtol=1e-12, atol=1e-14)


def test_the_torch_target_on_cuda_keeps_libdevice_unless_approx_is_true(monkeypatch):
    """The float32 library programs are the CPU's default; on CUDA tensors the torch op's
    Triton kernel keeps tanh (libdevice) unless the kernel was compiled with approx=True."""
    from exprforge.targets import build
    from exprforge.targets.torch_op import _cuda_forward
    made = []
    real = build.compile_kernel
    monkeypatch.setattr(build, "compile_kernel",
                        lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    x = torch.linspace(-3, 3, 64, dtype=torch.float32)
    for approx, kept in ((None, True), ("float32", True), (True, False)):
        k = compile_kernel(parse("tanh(x) * 2", dtype="float32"), "torch", approx=approx)
        (out,) = [_cuda_forward(k, [x])]
        assert ("tanh" in {n.op for n in made[-1].expr.toposort()}) == kept, approx
        np.testing.assert_allclose(out.cpu().numpy(), np.tanh(x.numpy()) * 2, rtol=3e-7)


def test_the_torch_forward_with_saved_reductions_runs_as_on_the_cpu():
    """On CUDA tensors the op's forward is a Triton kernel of the result and the
    reductions it saves for the backward."""
    from exprforge.targets.torch_op import _cuda_forward
    k = compile_kernel(parse("x / sqrt(var(x, axis=-1) + 1e-5) * y"), "torch")
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((3, 7)), rng.standard_normal(7)
    want = k.forward_kernel(x, y)
    got = _cuda_forward(k, [torch.from_numpy(x), torch.from_numpy(y)])
    assert len(got) == len(want) == 1 + len(k.saved) == 3
    for a, b in zip(got, want):
        np.testing.assert_allclose(a.cpu().numpy(), b, rtol=1e-13, atol=1e-15)

