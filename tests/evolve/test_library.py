"""The shipped library of verified approximations: each entry compiles, agrees with its
verification record on samples, handles IEEE special values, and imports as a kernel."""
import importlib

import numpy as np
import pytest

import exprforge as xf
from exprforge.engine.errors import ulp_error
from exprforge.evolve.library import library, program
from exprforge.evolve.tasks.approx import truth

ENTRIES = sorted(n for n, e in library().items() if e["dtype"] == "float32")  # float64:
REQUIRED = {"exp_f32", "exp2_f32", "log_f32"}                           # test_float64.py


def test_library_has_the_verified_functions():
    assert REQUIRED <= set(ENTRIES)
    for name in ENTRIES:
        e = library()[name]
        assert e["max_ulp"] < 1.0 and e["specials_ok"], name
        assert e["inputs_checked"] > 10 ** 8, name     # a whole float32 domain, not a sample
        assert e["command"].startswith("exprforge approx "), name


@pytest.fixture(scope="module", params=ENTRIES)
def compiled(request):
    name = request.param
    return name, library()[name], xf.compile(program(name), target="llvm")


def _sample(entry, n=4000, seed=0):
    lo, hi = entry["domain"]
    rng = np.random.default_rng(seed)
    if lo > 0:   # log-like domains span every binade
        x = np.exp(rng.uniform(np.log(lo), np.log(hi), n))
    else:
        x = np.concatenate([rng.uniform(lo, hi, n // 2), rng.uniform(-5, 5, n // 2)])
    x = x.astype(np.float32)
    return x[(x >= np.float32(lo)) & (x <= np.float32(hi))]


def test_error_on_samples_within_the_record(compiled):
    name, entry, kernel = compiled
    x = _sample(entry)
    x = np.append(x, np.float32(entry["argmax"]))       # the recorded worst input
    err = ulp_error(kernel(x), truth(entry["function"], x))
    assert err.max() <= entry["max_ulp"] + 1e-9
    assert err[-1] == pytest.approx(entry["max_ulp"], abs=1e-6)


def test_kernel_equals_the_reference_evaluator(compiled):
    name, entry, kernel = compiled
    x = _sample(entry, seed=1)
    ours = kernel(x)
    ref = np.asarray(xf.evaluate(kernel.expr, {"x": x}), np.float32)
    assert np.array_equal(ours.view(np.int32), ref.view(np.int32))


SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 1e-45, -1e-45, 3.4e38, -3.4e38]


def test_special_values_follow_ieee(compiled):
    name, entry, kernel = compiled
    fn = entry["function"]
    x = np.array(SPECIAL, np.float32)
    got = kernel(x)
    want = np.asarray(xf.exact(xf.parse(f"{fn}(x)", vars={"x": "float32"}), {"x": x}),
                      np.float32)
    # the oracle has no signed zero: NumPy/SciPy in float64 follow IEEE there (tanh(-0) = -0)
    ieee = np.asarray(xf.evaluate(xf.parse(f"{fn}(x)"), {"x": x.astype(np.float64)}), np.float32)
    want = np.where(want == 0, ieee, want)
    with np.errstate(invalid="ignore"):
        for xi, g, w in zip(x, got, want):
            if np.isnan(w):
                assert np.isnan(g), (name, xi)
            elif w == 0 or np.isinf(w) or abs(w) == 1:
                # exact results: zeros keep their sign, infinities and +-1 are exact
                assert g == w and np.signbit(g) == np.signbit(w), (name, xi, g, w)
            else:
                assert ulp_error(np.float32([g]), np.float64([w]))[0] < 1, (name, xi, g, w)


def test_import_from_kernels_compiles_once_and_stores(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPRFORGE_CACHE_DIR", str(tmp_path))
    kernels = importlib.import_module("exprforge.kernels")
    monkeypatch.setattr(kernels, "_LOADED", {})
    from exprforge.kernels import exp_f32
    assert "exp_f32" in dir(kernels)
    x = np.float32([0.0, 1.0, -1.0, 10.0])
    assert exp_f32(x).dtype == np.float32
    assert exp_f32(np.float32([0.0]))[0] == 1.0
    assert (tmp_path / "names" / "exp_f32.json").exists()   # saved: later imports load it


def test_unknown_library_name_is_an_import_error():
    with pytest.raises(ImportError, match="no stored kernel"):
        from exprforge.kernels import nope_f32  # noqa: F401
    with pytest.raises(LookupError, match="no approximation"):
        program("nope_f32")


def test_compile_with_library_functions():
    """approx=True inlines the library's programs: no libm call is left, and each
    function's result is the library program's, bit for bit."""
    e = xf.parse("x * sigmoid(1.702 * x) + tanh(x) - exp(x / 8) + log2(abs(x) + 1)",
                 dtype="float32")
    plain = xf.compile(e, target="llvm", approx=False)
    fast = xf.compile(e, target="llvm", approx=True)
    used = {n.op for n in fast.expr.toposort()}
    assert not used & {"sigmoid", "tanh", "exp", "log2"}
    x = np.random.default_rng(2).standard_normal(50_000).astype(np.float32) * 4
    exact = xf.exact(e, {"x": x[:2000]})
    # each of the four calls is within 1 ULP; the sum's rounding adds the same to both
    assert xf.ulps(fast(x[:2000]), exact).max() <= xf.ulps(plain(x[:2000]), exact).max() + 4
    tanh_fast = xf.compile("tanh(x)", target="llvm", approx=True)
    assert np.array_equal(tanh_fast(x), xf.compile(program("tanh_f32"), target="llvm")(x))
    # float64 calls take the float64 programs; a function without one keeps libm
    keep = xf.compile(xf.parse("exp(x) + erf(x)", dtype="float64"), target="llvm",
                      approx=True)
    assert {n.op for n in keep.expr.toposort()} & {"exp", "erf"} == {"erf"}
    assert "erf_f64" not in library() and "exp_f64" in library()


def test_torch_target_with_approx_differentiates_the_function_not_its_program():
    """The backward of exp(x) * y with approx=True is exp(x) * y (inlined as the library
    program again), not the derivative of the program's bit operations."""
    import torch
    k = xf.compile("exp(x) * y", target="torch", approx=True)
    assert "exp" not in {n.op for n in k.expr.toposort()}
    x = torch.linspace(-5, 5, 101, dtype=torch.float32, requires_grad=True)
    y = torch.linspace(1, 2, 101, dtype=torch.float32, requires_grad=True)
    k(x, y).sum().backward()
    torch.testing.assert_close(x.grad, torch.exp(x.detach()) * y.detach(), rtol=3e-7, atol=0)
    torch.testing.assert_close(y.grad, torch.exp(x.detach()), rtol=2e-7, atol=0)
    for e in k.backward_kernel(tuple(k.differentiable)).expr:
        assert "exp" not in {n.op for n in e.toposort()}
    assert k.options["approx"] is True
    # with a dtype: inlined after the retyping, differentiated in that dtype too
    e64 = xf.parse("exp(x) * y", dtype="float64")
    k32 = xf.compile(e64, target="torch", dtype="float32", approx=True)
    assert "exp" not in {n.op for n in k32.expr.toposort()} and k32.source_expr.dtype == "float32"
    back = k32.backward_kernel(tuple(k32.differentiable))
    assert back.dtype == "float32" and len(back.expr) == 2
    for e in back.expr:
        assert e.dtype == "float32" and "exp" not in {n.op for n in e.toposort()}
    # retyped to float64: the float64 program where the library has one, else libm
    k64 = xf.compile(xf.parse("exp(x) + erf(x)", dtype="float32"), target="llvm",
                     dtype="float64", approx=True)
    assert {n.op for n in k64.expr.toposort()} & {"exp", "erf"} == {"erf"}


def test_float32_calls_take_the_library_programs_by_default():
    """approx=None (the default) inlines the float32 programs (each checked on every
    float32 input: test_library_has_the_verified_functions) on the CPU targets, keeps
    libm for float64, and approx=False keeps it everywhere: in a torch kernel's backward
    kernels too (erf's derivative brings an exp), and in a kernel stored before the
    default existed."""
    import torch

    from exprforge.targets import store
    from exprforge.targets.build import load

    def calls(k):
        return {n.op for e in (k.expr if isinstance(k.expr, tuple) else (k.expr,))
                for n in e.toposort()} & {"exp", "erf", "tanh"}
    for target in ("llvm", "numba", "torch"):
        k = xf.compile("tanh(x) + exp(x)", target=target)
        assert k.options["approx"] == "float32" and not calls(k), target
    x = np.linspace(-3, 3, 1001, dtype=np.float32)
    assert np.array_equal(xf.compile("tanh(x)", target="llvm")(x),
                          xf.compile("tanh(x)", target="llvm", approx=True)(x))
    k64 = xf.compile(xf.parse("exp(x)", dtype="float64"), target="llvm")
    assert calls(k64) == {"exp"} and k64.options["approx"] == "float32"
    assert calls(xf.compile("tanh(x)", target="llvm", approx=False)) == {"tanh"}

    plain, default = (xf.compile("erf(x)", target="torch", approx=a) for a in (False, None))
    assert calls(plain.backward_kernel(tuple(plain.differentiable))) == {"exp"}
    assert not calls(default.backward_kernel(tuple(default.differentiable)))
    t = torch.linspace(-2, 2, 51, requires_grad=True)
    plain(t).sum().backward()
    torch.testing.assert_close(t.grad, 2 / np.pi ** 0.5 * torch.exp(-t.detach() ** 2))

    xf.save(xf.compile("tanh(x)", target="llvm", approx=False), "old_tanh")
    entry = store.read_entry("old_tanh")
    del entry["options"]["approx"]   # as saved before approx had a default
    store.save_entry("old_tanh", entry)
    assert calls(load("old_tanh")) == {"tanh"}
    with pytest.raises(ValueError, match="approx must be"):
        xf.compile("tanh(x)", target="llvm", approx="float16")
    assert xf.compile("tanh(x)", target="llvm", approx=np.True_).options["approx"] is True
    assert xf.compile("tanh(x)", target="llvm", approx=0).options["approx"] is False


def test_cli_compile_approx(capsys):
    from exprforge.cli import main
    assert main(["compile", "tanh(x)", "--target", "llvm", "--approx", "--json"]) == 0
    import json
    out = json.loads(capsys.readouterr().out)
    assert out["expr"] == "tanh(x)" and out["options"]["approx"]   # as given; what runs:
    assert "tanh" not in out["program"] and "float64" in out["program"]
    assert out["library_programs"] == ["tanh (float32)"]
    # by default too, and said in the text; --no-approx keeps the C library
    assert main(["compile", "tanh(x) * exp(x)", "--target", "llvm"]) == 0
    assert "library's verified programs for exp (float32), tanh (float32)" in \
        capsys.readouterr().out
    assert main(["compile", "tanh(x)", "--target", "llvm", "--no-approx", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["options"]["approx"] is False and "library_programs" not in out
