"""Kernels whose transcendental calls are the library's verified programs (approx=True;
for float32 the default) against the same kernels calling the C library, NumPy, torch eager and torch.compile.

    .venv/bin/python benchmarks/bench_library_kernels.py  -> results/library_kernels.json

float32, N = 1e7, one thread for every tool, tools taking turns batch by batch (the best
batch kept); ratios are what to read on this shared machine. Accuracy: max ULP against
the exact value (mpmath) on 20000 of the inputs.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch

import exprforge as xf

RESULTS = Path(__file__).parent / "results" / "library_kernels.json"
N = 10_000_000
EXPRS = {
    "silu": ("x * sigmoid(1.702 * x)", lambda x: x * torch.sigmoid(1.702 * x)),
    "gelu_tanh": ("0.5*x*(1 + tanh(0.7978845608*(x + 0.044715*x*x*x)))",
                  lambda x: 0.5 * x * (1 + torch.tanh(0.7978845608 * (x + 0.044715 * x * x * x)))),
    "gauss": ("exp(-0.5*x*x) * 0.3989422804", lambda x: torch.exp(-0.5 * x * x) * 0.3989422804),
    "softplus_log": ("log(1 + exp(x))", lambda x: torch.log(1 + torch.exp(x))),
}


def side_by_side(fns: dict, rounds: int = 5) -> dict:
    best = {k: math.inf for k in fns}
    for f in fns.values():
        f()
    for _ in range(rounds):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            best[k] = min(best[k], time.perf_counter() - t)
    return best


def main():
    torch.set_num_threads(1)
    x = np.random.default_rng(0).uniform(-6, 6, N).astype(np.float32)
    xt = torch.from_numpy(x)
    rows = []
    for name, (text, fn) in EXPRS.items():
        e = xf.parse(text, dtype="float32")
        libm = xf.compile(e, target="llvm", approx=False)
        lib = xf.compile(e, target="llvm", approx=True)
        compiled = torch.compile(fn)
        env = {"x": x}
        times = side_by_side({
            "xf.llvm approx": lambda: lib(x), "xf.llvm libm": lambda: libm(x),
            "numpy": lambda: xf.evaluate(e, env), "torch": lambda: fn(xt),
            "torch.compile": lambda: compiled(xt)})
        exact = xf.exact(e, {"x": x[:20000]})
        ulp = {"xf.llvm approx": xf.ulps(lib(x[:20000]), exact).max(),
               "xf.llvm libm": xf.ulps(libm(x[:20000]), exact).max(),
               "numpy": xf.ulps(np.asarray(xf.evaluate(e, {"x": x[:20000]}), np.float32),
                                exact).max(),
               "torch.compile": xf.ulps(compiled(xt[:20000]).numpy(), exact).max()}
        row = {"expr": name, "text": text, "ms": {k: v * 1e3 for k, v in times.items()},
               "approx_speedup": {k: v / times["xf.llvm approx"] for k, v in times.items()},
               "max_ulp": {k: float(v) for k, v in ulp.items()}}
        rows.append(row)
        print(name, {k: f"{v * 1e3:.1f} ms" for k, v in times.items()},
              {k: f"{v:.0f}" for k, v in ulp.items()}, flush=True)
    RESULTS.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "n": N,
                                   "threads": 1, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
