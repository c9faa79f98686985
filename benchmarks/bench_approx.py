"""Shipped approximations vs NumPy's float32 functions and glibc's libm, side by side.

    .venv/bin/python benchmarks/bench_approx.py [FUNC ...]   -> benchmarks/results/approx.json

For each function of evolve/library.json, on its whole float32 domain:
- accuracy by the exhaustive check (evolve.verify) of: the library program (LLVM kernel),
  numpy's float32 function, and libm's float function (expf, logf, ...) called once per
  element from an exprforge LLVM loop (the kernel of "exp(x)");
- throughput at N = 1e7, one thread, best of 7 calls, each allocating its output;
  ratios to numpy are what to read (this machine is shared);
- a baseline of the same accuracy: the smallest-degree Taylor polynomial in the same
  range-reduction template within the library program's max ULP on 2^20 validation
  points, and its op count (`--baselines-only` recomputes just these).
Then the search itself: an exp search from a fixed seed (time to a program under 1 ULP
on the training set, the chosen program's exhaustive check), and the same small search
run serially, on a process pool and on a Dask LocalCluster: the fronts must be equal.
"""
from __future__ import annotations

import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np

import exprforge as xf
from exprforge.engine.expr import const, make, var
from exprforge.evolve.tasks.approx import _validation_points, problem_for, truth_fast
from exprforge.evolve.verify import verify, verify_function
from exprforge.evolve.library import library
from exprforge.rewrite.cost import cost

RESULTS = Path(__file__).parent / "results" / "approx.json"
N = 10_000_000


def taylor(function: str, i: int) -> float:
    """Coefficient i of the core's Taylor series at 0 (what the template's core computes:
    exp(r) for exp and sigmoid, expm1(r) for tanh)."""
    if function in ("exp", "sigmoid"):
        return 1.0 / math.factorial(i)
    if function == "tanh":
        return 0.0 if i == 0 else 1.0 / math.factorial(i)
    if function == "exp2":
        return math.log(2) ** i / math.factorial(i)
    if function in ("log", "log2"):
        c = 0.0 if i == 0 else (-1) ** (i + 1) / i
        return c / math.log(2) if function == "log2" else c
    raise ValueError(function)


def taylor_baseline(function: str, template: str | None = None, goal: float = 1.0,
                    max_degree: int = 24) -> dict:
    """The smallest Taylor degree whose program (same template) is within `goal` ULP on
    2^20 validation points (a sample: it favours the baseline a little)."""
    if function == "erf":   # its core is two pieces; one series on [0, 4] is no baseline
        return {"degree": None, "ops": None, "max_ulp_sampled": None}
    problem = problem_for(function, template=template, n_train=256)
    x = _validation_points(problem, 1 << 20, seed=7)
    y = truth_fast(function, x)
    dtype = problem.template.core_dtype
    t = var(problem.template.core_vars[0], dtype)
    for degree in range(2, max_degree + 1):
        p = const(float(np.asarray(taylor(function, degree), dtype)), dtype)
        for i in reversed(range(degree)):
            p = make("fma", [p, t, const(float(np.asarray(taylor(function, i), dtype)), dtype)])
        program = problem.program(p)
        err = problem.max_ulp(program, x, y)
        if err <= goal:
            return {"degree": degree, "ops": cost(program, "ops"), "max_ulp_sampled": err}
    return {"degree": None, "ops": None, "max_ulp_sampled": None}


def numpy_function(f: str):
    """NumPy's float32 function; SciPy's where NumPy has none (erf, sigmoid = expit)."""
    if hasattr(np, f):
        return getattr(np, f)
    import scipy.special as sc
    return {"erf": sc.erf, "sigmoid": sc.expit}[f]


def best_time(fn, x, repeats: int = 7) -> float:
    fn(x)
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        fn(x)
        best = min(best, time.perf_counter() - t)
    return best


def search_figures(seed: int = 0) -> dict:
    import tempfile
    from exprforge.approx import run
    began = time.monotonic()
    firsts = []

    def progress(gen, total, summary):
        if summary["best"] < 1.0 and not firsts:
            firsts.append((gen, time.monotonic() - began))
    with tempfile.TemporaryDirectory() as out:
        r = run("exp", generations=8, population=24, seed=seed, out=out, save=False,
                progress=progress)
    v = r["verification"]
    return {"function": "exp", "generations": 8, "population": 24, "seed": seed,
            "seconds_total": r["seconds"], "first_under_1ulp": firsts[0] if firsts else None,
            "chosen_ops": r["chosen"]["ops"], "exhaustive_max_ulp": v["max_ulp"],
            "exhaustive_seconds": v["seconds"], "inputs_checked": v["n"]}


def executor_agreement(seed: int = 3) -> dict:
    from exprforge.engine.printing import to_text
    from exprforge.evolve.executors import DaskExecutor, ProcessExecutor, SerialExecutor
    from exprforge.evolve.tasks.approx import approximate
    fronts, seconds = {}, {}
    for name, make_ex in (("serial", SerialExecutor), ("process", lambda: ProcessExecutor(2)),
                          ("dask", lambda: DaskExecutor(workers=2))):
        t = time.monotonic()
        with make_ex() as ex:
            r = approximate("exp2", generations=3, population=12, seed=seed, executor=ex,
                            validation_points=1 << 12)
        seconds[name] = time.monotonic() - t
        fronts[name] = [(to_text(c.core), c.train_max_ulp, c.cost) for c in r.front]
    return {"function": "exp2", "seed": seed, "generations": 3, "population": 12,
            "front_size": len(fronts["serial"]), "seconds": seconds,
            "process_equals_serial": fronts["process"] == fronts["serial"],
            "dask_equals_serial": fronts["dask"] == fronts["serial"]}


def compare_row(f, entry, base, reports, fns, xs, keys=()) -> dict:
    """One function's row: each tool's check report and its best time on xs (ratios to
    NumPy's), printed as it is measured. `keys`: more report fields to keep."""
    times = {k: best_time(fn, xs) for k, fn in fns.items()}
    row = {"function": f, "date": time.strftime("%Y-%m-%d"), "domain": list(entry["domain"]),
           "ops": entry["ops"], "taylor_baseline": base,
           "tools": {k: {"max_ulp": r["max_ulp"], "argmax": r["argmax"],
                         "mean_ulp": r["mean_ulp"], "correctly_rounded": r["correctly_rounded"],
                         "specials_ok": r["ok"], "inputs": r["n"],
                         **{key: r[key] for key in keys},
                         "check_seconds": r["seconds"], "ms_at_1e7": times[k] * 1e3,
                         "speed_vs_numpy": times["numpy"] / times[k]}
                     for k, r in reports.items()}}
    print(f"{f}: ops {entry['ops']} (Taylor {base['degree']}: {base['ops']}) | " + " | ".join(
        f"{k} {v['max_ulp']:.3f} ULP, {100 * v['correctly_rounded']:.2f}% CR, "
        f"{v['ms_at_1e7']:.1f} ms ({v['speed_vs_numpy']:.2f}x numpy)"
        for k, v in row["tools"].items()), flush=True)
    return row


def main(functions):
    rows = []
    lib = library()
    x_bench = np.random.default_rng(0)
    for f in functions:
        entry = lib[f"{f}_f32"]
        domain = tuple(entry["domain"])
        base = taylor_baseline(f, entry["template"], entry["max_ulp"])
        ours = xf.compile(xf.parse(entry["program"], vars={"x": "float32"}), target="llvm")
        libm = xf.compile(f"{f}(x)", target="llvm")
        np_fn = numpy_function(f)
        reports = {
            "exprforge": verify(ours, f, domain=domain).as_dict(),
            "numpy": verify_function(lambda a: np_fn(a), f, domain=domain).as_dict(),
            "libm": verify(libm, f, domain=domain).as_dict(),
        }
        lo, hi = domain
        xs = (np.exp(x_bench.uniform(np.log(max(lo, 1e-30)), np.log(hi), N)) if lo > 0
              else x_bench.uniform(lo, hi, N)).astype(np.float32)
        rows.append(compare_row(f, entry, base, reports,
                                {"exprforge": ours, "numpy": np_fn, "libm": libm}, xs))
    out = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, "
           f"{__import__('os').cpu_count()} cores", "n": N, "rows": rows}
    if set(functions) == {e["function"] for e in library().values() if e["dtype"] == "float32"}:
        out["search"] = search_figures()
        print("search:", out["search"], flush=True)
        out["executors"] = executor_agreement()
        print("executors:", out["executors"], flush=True)
    RESULTS.parent.mkdir(exist_ok=True)
    if RESULTS.exists() and len(functions) < sum(e["dtype"] == "float32" for e in lib.values()):
        previous = json.loads(RESULTS.read_text())
        old = {r["function"]: r for r in previous["rows"]}
        old.update({r["function"]: r for r in rows})
        out = {**previous, **out, "rows": list(old.values())}
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")


def baselines_only():
    """Recompute the Taylor baselines of the stored rows (cheap; no exhaustive checks)."""
    out = json.loads(RESULTS.read_text())
    for row in out["rows"]:
        entry = library()[f"{row['function']}_f32"]
        row["taylor_baseline"] = taylor_baseline(row["function"], entry["template"],
                                                 entry["max_ulp"])
        print(row["function"], row["taylor_baseline"], flush=True)
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    if sys.argv[1:] == ["--baselines-only"]:
        baselines_only()
    else:
        main(sys.argv[1:] or [e["function"] for e in library().values()
                              if e["dtype"] == "float32"])
