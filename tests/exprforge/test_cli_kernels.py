"""exprforge compile and exprforge kernels list | show | rm | bench."""
import numpy as np
import pytest

from tests.exprforge.test_cli import assert_user_error, run, run_json


@pytest.fixture(autouse=True)
def fresh_store(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPRFORGE_CACHE_DIR", str(tmp_path / "store"))


def test_compile_store_list_show_bench_rm(capsys):
    r = run_json(capsys, "compile", "x * sigmoid(1.702 * x)", "--name", "gelu_s",
                 "--target", "llvm")
    assert r["name"] == "gelu_s" and r["target"] == "llvm" and r["dtype"] == "float32"
    assert r["compiled"] and not r["from_store"] and r["args"] == ["x"]
    listed = run_json(capsys, "kernels", "list")
    assert [k["name"] for k in listed["kernels"]] == ["gelu_s"]
    shown = run_json(capsys, "kernels", "show", "gelu_s")
    assert shown["from_store"] and not shown["compiled"] and "define void" in shown["source"]
    bench = run_json(capsys, "kernels", "bench", "gelu_s", "--size", "2000")
    assert bench["size"] == 2000 and bench["kernel_elements_per_s"] > 0
    code, out, _ = run(capsys, "kernels", "rm", "gelu_s")
    assert code == 0 and "removed" in out
    assert run_json(capsys, "kernels", "list")["kernels"] == []
    from exprforge.targets.build import load
    with pytest.raises(LookupError):
        load("gelu_s")


def test_compile_text_output_and_source(capsys):
    code, out, _ = run(capsys, "compile", "x*y + 1", "--target", "numba", "--args", "y,x",
                       "--show-source")
    assert code == 0 and "numba kernel (y, x)" in out and "@njit" in out


def test_compile_matmul_and_load_it(capsys):
    r = run_json(capsys, "compile", "max(a, b) * 2", "--name", "maxmm", "--matmul",
                 "--dtype", "float64")
    assert r["options"]["matmul"] is True
    from exprforge.targets.build import load
    k = load("maxmm")
    a, b = np.arange(6.0).reshape(2, 3), np.arange(12.0).reshape(3, 4)
    want = (2 * np.maximum(a[:, :, None], b[None, :, :])).sum(axis=1)
    np.testing.assert_array_equal(k.matmul(a, b), want)


def test_torch_kernel_with_threads(capsys):
    r = run_json(capsys, "compile", "x * 2 + 1", "--target", "torch", "--parallel",
                 "--name", "twice")
    assert r["options"]["parallel"] is True
    from exprforge.targets.build import load
    assert load("twice").options["parallel"] is True


def test_stored_kernel_imports(capsys):
    run_json(capsys, "compile", "2*x - y", "--name", "lin", "--dtype", "float64")
    from exprforge.targets.build import load
    k = load("lin")
    assert k(np.float64(3), np.float64(1)) == 5.0 and k.cache_info["hit"]


@pytest.mark.parametrize("argv,match", [
    (("compile", "x +"), "invalid syntax|unexpected|expected"),
    (("compile", "x + 1", "--name", "9lives"), "invalid kernel name"),
    (("compile", "x + 1", "--args", "y"), "leaves out"),
    (("compile", "x + 1", "--target", "triton", "--parallel"), "--parallel to those and torch"),
    (("compile", "x + 1", "--target", "torch", "--fastmath"), "apply to numba and llvm"),
    (("compile", "x * y", "--target", "llvm", "--matmul"), "applies to numba"),
    (("compile", "x + 1", "--matmul"), "two arguments"),
    (("kernels", "show", "nothing"), "no stored kernel"),
    (("kernels", "show"), "needs a kernel NAME"),
    (("kernels", "rm", "nothing"), "no stored kernel"),
])
def test_user_errors(capsys, argv, match):
    import re
    line = assert_user_error(capsys, *argv)
    assert re.search(match, line), line


def test_missing_kernel_message_keeps_its_quotes(capsys):
    line = assert_user_error(capsys, "kernels", "rm", "nope")
    assert line.endswith("no stored kernel named 'nope'")
