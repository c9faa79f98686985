"""Shipped float64 approximations vs NumPy's float64 functions and glibc's libm.

    .venv/bin/python benchmarks/bench_approx64.py [FUNC ...]  -> benchmarks/results/approx64.json

For each float64 function of evolve/library.json (FUNC_f64), on its whole domain:
- accuracy on one random sample of 2^24 float64s (evolve.verify.verify_sampled: half
  uniform over the floats, half uniform in value, a long double reference and the
  oracle deciding borderline and near-max points), the same sample for: the library
  program (LLVM kernel), NumPy's float64 function, and libm's (exp, log, ...) called
  once per element from an exprforge LLVM loop (the kernel of "exp(x)"; sigmoid:
  SciPy's expit, and 1/(1 + exp(-x)) with libm's exp);
- throughput at N = 1e7, one thread, best of 7 calls, each allocating its output
  (sigmoid's points uniform in [-40, 40], tanh's in [-20, 20]);
- a baseline of the same accuracy: the smallest Taylor degree of the template's core
  (exp's tail (e^r - 1 - r)/r^2, log's R(s)) within the library program's max ULP on
  2^14 validation points (oracle truth), and its op count.
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
from bench_approx import compare_row, numpy_function
from exprforge.engine.expr import const, make, var
from exprforge.evolve.library import library, program
from exprforge.evolve.tasks.approx import _validation_points, problem_for, truth_dd
from exprforge.evolve.verify import verify, verify_sampled
from exprforge.rewrite.cost import cost

RESULTS = Path(__file__).parent / "results" / "approx64.json"
N = 10_000_000
SAMPLES = 1 << 24
# domains that are the whole line: timed where the function is neither flat nor +-1
TIME_RANGE = {"sigmoid": (-40.0, 40.0), "tanh": (-20.0, 20.0)}


def taylor_core(function: str, degree: int):
    """The template core's Taylor polynomial: exp, exp2, sigmoid and tanh (exp's core)
    sum r^i/(i+2)!, i < degree;
    log/log2 z * sum 2 z^j/(2j+3), j < degree, z = s^2."""
    if function in ("exp", "exp2", "sigmoid", "tanh"):
        r = var("r", "float64")
        coeffs = [1.0 / math.factorial(i + 2) for i in range(degree)]
        t = r
    else:
        s = var("s", "float64")
        t = s * s
        coeffs = [2.0 / (2 * j + 3) for j in range(degree)]
    p = const(coeffs[-1], "float64")
    for c in reversed(coeffs[:-1]):
        p = make("fma", [p, t, const(c, "float64")])
    return p if function in ("exp", "exp2", "sigmoid", "tanh") else t * p


def taylor_baseline(function: str, goal: float, max_degree: int = 24) -> dict:
    problem = problem_for(function, dtype="float64", n_train=256)
    x = _validation_points(problem, 1 << 14, seed=7)
    y = truth_dd(function, x)
    for degree in range(2, max_degree + 1):
        prog = problem.program(taylor_core(function, degree))
        err = problem.max_ulp(prog, x, y)
        if err <= goal:
            return {"degree": degree, "ops": cost(prog, "ops"), "max_ulp_sampled": err}
    return {"degree": None, "ops": None, "max_ulp_sampled": None}


def main(functions):
    rows = []
    lib = library()
    rng = np.random.default_rng(0)
    for f in functions:
        entry = lib[f"{f}_f64"]
        domain = tuple(entry["domain"])
        base = taylor_baseline(f, entry["max_ulp"])
        ours = xf.compile(program(f"{f}_f64"), target="llvm")
        libm = xf.compile(xf.parse(f"{f}(x)", vars={"x": "float64"}), target="llvm")
        np_fn = numpy_function(f)      # SciPy's expit for sigmoid
        reports = {"exprforge": verify(ours, f, domain=domain, samples=SAMPLES).as_dict(),
                   "numpy": verify_sampled(lambda a: np_fn(a), f, domain=domain,
                                           samples=SAMPLES).as_dict(),
                   "libm": verify(libm, f, domain=domain, samples=SAMPLES).as_dict()}
        lo, hi = TIME_RANGE.get(f, domain)
        xs = np.exp(rng.uniform(np.log(lo), np.log(hi), N)) if lo > 0 else rng.uniform(lo, hi, N)
        rows.append(compare_row(f, entry, base, reports,
                                {"exprforge": ours, "numpy": np_fn, "libm": libm}, xs,
                                keys=("reference", "undecided")))
    out = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, "
           f"{__import__('os').cpu_count()} cores", "n": N, "samples": SAMPLES, "rows": rows}
    RESULTS.parent.mkdir(exist_ok=True)
    if RESULTS.exists():   # a partial run keeps the other functions' rows
        old = {r["function"]: r for r in json.loads(RESULTS.read_text())["rows"]}
        old.update({r["function"]: r for r in rows})
        out["rows"] = list(old.values())
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:] or [e["function"] for e in library().values() if e["dtype"] == "float64"])
