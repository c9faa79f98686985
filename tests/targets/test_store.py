"""The kernel store: import in a fresh process without compiling, concurrent writers,
corrupt entries rebuilt, names and locations."""
import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import exprforge as xf
from exprforge.targets import store

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fresh_store(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPRFORGE_CACHE_DIR", str(tmp_path / "store"))
    return tmp_path / "store"


def _python(code: str, store_dir: Path) -> dict:
    """Run code in a new interpreter using `store_dir`; it prints one JSON line last."""
    env = {**os.environ, "EXPRFORGE_CACHE_DIR": str(store_dir)}
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _log(store_dir: Path) -> list:
    return [json.loads(line) for line in (store_dir / "log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("target", ["numba", "llvm"])
def test_import_in_a_new_process_does_not_compile(fresh_store, target):
    e = xf.parse("x * exp(-x * x) + 0.25", dtype="float32")
    kernel = xf.compile(e, target=target)
    assert kernel.cache_info["compiled"] and not kernel.cache_info["hit"]
    xf.save(kernel, "bump")
    result = _python("""
        import json, os, sys, numpy as np
        from exprforge.kernels import bump
        x = np.linspace(-2, 2, 5, dtype=np.float32)
        values = bump(x).tolist()
        heavy = sorted({"scipy.special", "sympy", "egglog", "torch", "numba"} & set(sys.modules))
        print(json.dumps({"hit": bump.cache_info["hit"], "compiled": bump.cache_info["compiled"],
                          "pid": os.getpid(), "values": values, "target": bump.target,
                          "heavy": heavy}))
    """, fresh_store)
    assert result["hit"] and not result["compiled"] and result["target"] == target
    # a load imports none of these (scipy.special alone took ~140 ms of a ~220 ms load;
    # Numba ~250 ms: a Numba kernel's loops load as object code)
    assert result["heavy"] == []
    x = np.linspace(-2, 2, 5, dtype=np.float32)
    np.testing.assert_array_equal(np.float32(result["values"]), kernel(x))
    record = [r for r in _log(fresh_store) if r["pid"] == result["pid"]]
    assert [r["event"] for r in record] == ["hit"] and record[0]["compiled"] is False


def test_two_processes_saving_the_same_kernel_at_once(fresh_store):
    code = textwrap.dedent("""
        import json, numpy as np, exprforge as xf
        k = xf.compile(xf.parse("sin(x) * x + 3", dtype="float32"), target="{target}")
        xf.save(k, "twin_{target}")
        print(json.dumps({{"value": float(k(np.float32(0.5)))}}))
    """)
    env = {**os.environ, "EXPRFORGE_CACHE_DIR": str(fresh_store)}
    for target in ("llvm", "numba"):
        procs = [subprocess.Popen([sys.executable, "-c", code.format(target=target)], env=env,
                                  cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for _ in range(2)]
        outs = [p.communicate(timeout=300) for p in procs]
        assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
        values = {json.loads(o[0].strip().splitlines()[-1])["value"] for o in outs}
        assert len(values) == 1
        loaded = _python(f"""
            import json
            from exprforge.kernels import twin_{target} as k
            print(json.dumps({{"hit": k.cache_info["hit"], "value": float(k(0.5))}}))
        """, fresh_store)
        assert loaded["hit"] and {loaded["value"]} == values
    assert not list(fresh_store.rglob("*.tmp"))  # no temporary file left behind


def _artifact(kernel) -> Path:
    return store.artifact_dir(kernel.key)


def test_corrupt_object_code_is_rebuilt_with_a_warning(fresh_store):
    e = xf.parse("x * x + 1", dtype="float32")
    kernel = xf.compile(e, target="llvm")
    obj = _artifact(kernel) / "kernel.o"
    obj.write_bytes(b"\x7fELF garbage" + obj.read_bytes()[100:])
    with pytest.warns(UserWarning, match="corrupt"):
        again = xf.compile(e, target="llvm")
    assert again(np.float32(3)) == np.float32(10) and again.cache_info["compiled"]
    assert "rebuilt" in [r["event"] for r in _log(fresh_store)]
    assert xf.compile(e, target="llvm").cache_info["hit"]  # and the rebuilt entry is good


def test_numba_kernels_load_as_object_code_without_numba(fresh_store):
    # ldexp (Numba's math.ldexp calls a helper of Numba's runtime), a row mean (its loop
    # object names Numba's error-reporting helpers), bools and several results
    # and, under fastmath, x ** float(n): LLVM makes it llvm.powi, a compiler-runtime call
    exprs = {"scaled": xf.parse("ldexp(x, n)", vars={"x": "float64", "n": "int32"}),
             "powi": xf.parse("x ** float32(n)", vars={"x": "float32", "n": "int32"}),
             "rowmean": xf.parse("x / sqrt(mean(x * x, axis=-1) + 1e-6)",
                                 vars={"x": ("float32", ("i", "j"))}),
             "flags": xf.parse("where(b, x, -x) > 0.5", vars={"b": "bool", "x": "float32"})}
    rng = np.random.default_rng(3)
    inputs = {"scaled": (np.int32([3, -2, 900, -1100]), np.array([1.5, 3.0, 2.0, 2.0])),
              "rowmean": (rng.standard_normal((3, 37)).astype(np.float32),),
              "flags": (rng.random(9) < 0.5, rng.standard_normal(9).astype(np.float32)),
              "powi": (np.int32([2, 3, -1, 0]), np.float32([1.5, 2.0, 4.0, 7.0]))}
    want = {}
    for name, e in exprs.items():
        k = xf.compile(e, target="numba", fastmath=name == "powi")
        xf.save(k, name)
        want[name] = k(*inputs[name])
        (fresh_store.parent / f"{name}_in.pickle").write_bytes(pickle.dumps(inputs[name]))
    result = _python(f"""
        import json, pickle, sys
        from exprforge.kernels import scaled, rowmean, flags, powi
        out = {{}}
        for name, k in (("scaled", scaled), ("rowmean", rowmean), ("flags", flags),
                        ("powi", powi)):
            with open(f"{fresh_store.parent}/{{name}}_in.pickle", "rb") as f:
                args = pickle.load(f)
            out[name] = [k(*args).tolist(), k.cache_info["hit"]]
        print(json.dumps({{"out": out, "numba": "numba" in sys.modules}}))
    """, fresh_store)
    assert result["numba"] is False
    for name, (values, hit) in result["out"].items():
        assert hit
        np.testing.assert_array_equal(np.array(values, dtype=want[name].dtype), want[name])


def test_numba_entries_of_two_processes_never_mix(fresh_store):
    # Numba's symbols carry a count of what the process compiled before, so two processes
    # make different object bytes for one kernel: each entry's metadata must name its own
    e = xf.parse("x * 3 - 1", dtype="float32")
    folder = _artifact(xf.compile(e, target="numba"))
    (folder / "numba.json").unlink()      # as if this process's metadata were not written
    _python("""
        import json, exprforge as xf
        xf.compile(xf.parse("x * x + 7", dtype="float32"), target="numba")   # counts on
        k = xf.compile(xf.parse("x * 3 - 1", dtype="float32"), target="numba")
        print(json.dumps({"compiled": k.cache_info["compiled"]}))
    """, fresh_store)
    result = _python("""
        import json, warnings, numpy as np, exprforge as xf
        warnings.simplefilter("error")
        k = xf.compile(xf.parse("x * 3 - 1", dtype="float32"), target="numba")
        print(json.dumps({"hit": k.cache_info["hit"], "value": float(k(np.float32(2)))}))
    """, fresh_store)
    assert result == {"hit": True, "value": 5.0}


@pytest.mark.parametrize("target", ["llvm", "numba", "torch"])
def test_a_saved_kernel_loads_without_rendering_its_source_again(fresh_store, monkeypatch,
                                                                target):
    from exprforge.targets import build
    e = xf.parse("x * sigmoid(1.5 * x) + 0.5", dtype="float32")
    kernel = xf.compile(e, target=target)
    xf.save(kernel, "swish")
    module = build.target_module(target)
    rendered = []
    real = module.source_of
    monkeypatch.setattr(module, "source_of", lambda *a: rendered.append(1) or real(*a))
    loaded = build.load("swish")
    assert loaded.cache_info["hit"] and rendered == [] and loaded.source == kernel.source
    x = np.linspace(-3, 3, 7, dtype=np.float32)
    want = kernel(x) if target != "torch" else kernel(torch_tensor(x)).numpy()
    got = loaded(x) if target != "torch" else loaded(torch_tensor(x)).numpy()
    np.testing.assert_array_equal(got, want)
    # other exprforge code (or a stored source that is not the one the key hashes):
    # rendered again, and the same artifact found by its key
    digest = build.code_digest
    monkeypatch.setattr(build, "code_digest", lambda: "other")
    assert build.load("swish").cache_info["hit"] and rendered == [1]
    monkeypatch.setattr(build, "code_digest", digest)
    name = "kernel.ll" if target != "numba" else "kernel.py"
    path = _artifact(kernel) / name
    path.write_text(path.read_text() + "\n; edited")
    assert build.load("swish").cache_info["hit"] and rendered == [1, 1]


def torch_tensor(x):
    import torch
    return torch.from_numpy(x)


def test_llvm_entries_of_the_older_metadata_still_load(fresh_store):
    # before write_checked, kernel.json held {"sha256": <checksum of kernel.o>}
    import hashlib
    e = xf.parse("x * 5 + 2", dtype="float32")
    folder = _artifact(xf.compile(e, target="llvm"))
    obj = (folder / "kernel.o").read_bytes()
    (folder / "kernel.json").write_text(json.dumps({"sha256": hashlib.sha256(obj).hexdigest()}))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = xf.compile(e, target="llvm")
    assert again.cache_info["hit"] and again(np.float32(1)) == 7
    (folder / "kernel.json").write_text(json.dumps({"sha256": "0" * 64}))
    with pytest.warns(UserWarning, match="corrupt"):
        assert xf.compile(e, target="llvm")(np.float32(1)) == 7


@pytest.mark.parametrize("damage", ["metadata", "object", "symbols", "source", "types",
                                    "undefined"])
def test_damaged_numba_entries_are_rebuilt(fresh_store, damage):
    e = xf.parse("x - 2", dtype="float32")
    k = xf.compile(e, target="llvm")
    (_artifact(k) / "kernel.json").write_text('{"sha2')
    with pytest.warns(UserWarning, match="corrupt"):
        assert xf.compile(e, target="llvm")(np.float32(5)) == 3
    e = xf.parse("x * y - 2", dtype="float32")
    matmul = damage == "source"   # a matmul kernel imports its module (Numba's code)
    folder = _artifact(xf.compile(e, target="numba", matmul=matmul))
    meta = json.loads((folder / "numba.json").read_text())
    if damage == "metadata":
        (folder / "numba.json").write_text('{"files')
    elif damage == "object":
        (obj,) = [folder / f for f in meta["files"] if f.startswith("kernel_")]
        obj.write_bytes(obj.read_bytes()[:-64])
    elif damage == "symbols":
        (folder / "numba.json").write_text(json.dumps({**meta, "symbols": {}}))
    elif damage == "types":
        (folder / "numba.json").write_text(json.dumps({**meta, "symbols": None}))
    elif damage == "undefined":
        (folder / "numba.json").write_text(json.dumps({**meta, "undefined": 5}))
    else:
        (folder / "matmul.py").write_text((folder / "matmul.py").read_text()[:40])
    with pytest.warns(UserWarning, match="corrupt"):
        again = xf.compile(e, target="numba", matmul=matmul)
    assert again(np.float32(5), np.float32(1)) == 3
    assert xf.compile(e, target="numba", matmul=matmul).cache_info["hit"]


def test_damaged_numba_cache_of_a_matmul_is_recompiled(fresh_store):
    e = xf.parse("a * b / 4", dtype="float32")
    k = xf.compile(e, target="numba", matmul=True)
    assert list((_artifact(k) / "__pycache__").glob("*.nbc"))
    for f in (_artifact(k) / "__pycache__").glob("*.nbc"):
        f.write_bytes(b"not a pickle")
    result = _python("""
        import json, numpy as np, exprforge as xf, warnings
        warnings.simplefilter("ignore")
        k = xf.compile(xf.parse("a * b / 4", dtype="float32"), target="numba", matmul=True)
        a = np.full((2, 3), 2, np.float32)
        print(json.dumps({"value": float(k(np.float32(2), np.float32(4))),
                          "matmul": k.matmul(a, a.T).tolist()}))
    """, fresh_store)
    assert result["value"] == 2 and result["matmul"] == [[3.0, 3.0], [3.0, 3.0]]


def test_corrupt_name_entry_is_a_clear_import_error(fresh_store):
    xf.save(xf.compile("x + 1", target="llvm"), "broken")
    store.name_path("broken").write_text("{not json")
    with pytest.raises(ImportError, match="corrupt"):
        from exprforge.kernels import broken  # noqa: F401
    with pytest.raises(ImportError, match="no stored kernel named 'absent'"):
        from exprforge.kernels import absent  # noqa: F401


def test_names_and_listing(fresh_store):
    k = xf.compile("x * 2", target="llvm")
    for bad in ("1abc", "a-b", "__dunder", ""):
        with pytest.raises(ValueError, match="invalid kernel name"):
            xf.save(k, bad)
    xf.save(k, "double")
    assert store.list_names() == ["double"]
    with pytest.raises(FileExistsError):
        xf.save(k, "double", overwrite=False)
    store.remove_entry("double")
    assert store.list_names() == []
    with pytest.raises(LookupError):
        store.remove_entry("double")


def test_store_location(monkeypatch, tmp_path):
    monkeypatch.delenv("EXPRFORGE_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert store.cache_dir() == tmp_path / "xdg" / "exprforge"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert store.cache_dir() == tmp_path / "home" / ".cache" / "exprforge"
    monkeypatch.setenv("EXPRFORGE_CACHE_DIR", str(tmp_path / "mine"))
    assert store.cache_dir() == tmp_path / "mine"


def test_key_depends_on_what_defines_the_artifact(fresh_store):
    e = xf.parse("x + 1", dtype="float32")
    keys = {xf.compile(e, target="llvm").key, xf.compile(e, target="numba").key,
            xf.compile(e, target="llvm", contract=True).key,
            xf.compile(xf.parse("x + 1", dtype="float64"), target="llvm").key}
    assert len(keys) == 4
    assert xf.compile(e, target="llvm").key == xf.compile(e, target="llvm").key


def test_a_name_saved_again_loads_the_new_kernel(fresh_store):
    import exprforge.kernels as kernels
    xf.save(xf.compile("x + 1", target="llvm"), "again")
    assert kernels.again(np.float32(1)) == 2
    xf.save(xf.compile("x * 100", target="llvm"), "again")
    assert kernels.again(np.float32(1)) == 100


def test_a_kernel_rebuilt_under_a_new_key_loads_once(fresh_store, monkeypatch):
    """An entry whose key no longer matches what its spec builds (the renderer or a
    library program changed since it was saved) is rebuilt on first use and then kept,
    not loaded again on every attribute access."""
    import exprforge.kernels as kernels
    from exprforge.targets import build
    xf.save(xf.compile("x + 2", target="llvm"), "stale")
    entry = store.read_entry("stale")
    store.save_entry("stale", {**entry, "key": "0" * len(entry["key"])})
    loads = []
    real_load = build.load
    monkeypatch.setattr(build, "load", lambda name: loads.append(name) or real_load(name))
    assert kernels.stale(np.float32(1)) == 3 and kernels.stale(np.float32(2)) == 4
    assert loads == ["stale"]


def test_loading_writes_nothing(fresh_store):
    e = xf.parse("x - 1", dtype="float32")
    for target in ("llvm", "numba"):
        xf.compile(e, target=target)
    (fresh_store / "log.jsonl").unlink()
    (fresh_store / "log.jsonl").mkdir()  # the hit record cannot be appended to
    before = {p: p.stat().st_mtime_ns for p in fresh_store.rglob("*") if p.is_file()}
    for target in ("llvm", "numba"):
        k = xf.compile(e, target=target)
        assert k.cache_info["hit"] and k(np.float32(3)) == 2
    after = {p: p.stat().st_mtime_ns for p in fresh_store.rglob("*") if p.is_file()}
    assert after == before


def test_a_kernel_of_several_results_is_saved_and_loaded(fresh_store):
    e = (xf.parse("exp(x) * y", dtype="float32"), xf.parse("sum(x, axis=-1)", dtype="float32"))
    kernel = xf.compile(e, target="llvm")
    xf.save(kernel, "pair")
    result = _python("""
        import json, numpy as np
        from exprforge.kernels import pair
        a, b = pair(np.float32([[1, 2], [3, 4]]), np.float32([1, -1]))
        print(json.dumps({"hit": pair.cache_info["hit"], "a": a.tolist(), "b": b.tolist()}))
    """, fresh_store)
    x, y = np.float32([[1, 2], [3, 4]]), np.float32([1, -1])
    a, b = kernel(x, y)
    assert result["hit"] and b.tolist() == [[3], [7]]
    np.testing.assert_array_equal(np.float32(result["a"]), a)   # libm's exp: the same code
    np.testing.assert_array_equal(np.float32(result["b"]), b)
