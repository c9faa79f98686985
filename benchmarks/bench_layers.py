"""Paper layers on generated kernels vs the same formulas in torch, eager and compiled.

Run:  .venv/bin/python benchmarks/bench_layers.py [--quick] [--threads N] [--out PATH]
      -> a markdown table on stdout + benchmarks/results/layers.json (layers_threadsN.json)

Side by side in one run, float32, on one thread (--threads: torch.set_num_threads(N),
which exprforge's torch kernels follow as torch's own ops do): the time of one training step's layer work
(forward, then backward of a fixed random cotangent, so the incoming gradient is an
ordinary contiguous tensor) for
  - exprforge: the layer of exprforge.nn (generated LLVM kernels; the backward is one
    derived kernel for all the gradients);
  - torch: the paper's formula written in torch (the tests' independent references; for
    the RBF layer the expanded GEMM form exprforge uses, the fast way to write it);
  - torch.compile: that formula under torch.compile (inductor, CPU), the backward traced
    by AOTAutograd; its compile time is excluded (warm-up calls) and reported apart.
Each figure is the best of ROUNDS rounds of REPS steps, the implementations taking turns
round by round; the same inputs and parameters for every implementation. Reported: ms per step and each peer's time over exprforge's.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import exprforge.nn as xnn  # noqa: E402
from tests.nn.references import (b0_reference, polynorm_reference,  # noqa: E402
                                 polyrelu_reference, s0_reference)

OUT_JSON = ROOT / "benchmarks/results/layers.json"
REPS, ROUNDS = 5, 20


def rbf_torch(f, centers, scales, weight, bias):
    """The expanded GEMM form in torch: the same matmuls, then the combination and exp."""
    s2 = scales * scales
    d = (f * f) @ s2.T - 2 * (f @ (s2 * centers).T) + (s2 * centers * centers).sum(-1)
    return torch.exp(-torch.clamp(d, min=0)) @ weight.T + bias


def cases(quick: bool):
    """(name, exprforge module, torch formula on (input, *parameters), input shape)."""
    n = 1024 if quick else 4096
    s0 = xnn.EvoNormS0(64)
    rbf = xnn.GaussianRBF(8, 64, 3, init_scale=0.5)
    b0 = xnn.EvoNormB0(64)
    return [
        ("PolyReLU", xnn.PolyReLU(), lambda x, w, b: polyrelu_reference(x, w, b), (n, 256)),
        ("PolyNorm", xnn.PolyNorm(), lambda x, w, b: polynorm_reference(x, w, b), (n, 256)),
        ("EvoNorm-B0 (train)", b0, lambda x, v, g, b: b0_reference(x, v, g, b, eps=b0.eps),
         (n // 128, 64, 16, 16)),
        ("EvoNorm-S0", s0, lambda x, v, g, b: s0_reference(x, v, g, b, s0.groups, s0.eps),
         (n // 128, 64, 16, 16)),
        ("GaussianRBF 8-64-3", rbf,
         lambda f, c, s, w, b: rbf_torch(f, c, s, w, b), (4 * n, 8)),
    ]


def parameters(module):
    if isinstance(module, xnn.GaussianRBF):
        return [module.centers, module.scales, module.linear.weight, module.linear.bias]
    return list(module.parameters())


def best_ms(steps: dict) -> dict:
    """Best ms per step of each implementation; the rounds take turns, so that a slow
    spell of this shared machine falls on all of them alike."""
    for step in steps.values():
        step()
        step()
    best = dict.fromkeys(steps, float("inf"))
    for _ in range(ROUNDS):
        for name, step in steps.items():
            began = time.perf_counter()
            for _ in range(REPS):
                step()
            best[name] = min(best[name], (time.perf_counter() - began) / REPS)
    return {name: b * 1e3 for name, b in best.items()}


def measure(name, module, formula, shape):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g).requires_grad_()
    params = parameters(module)
    with torch.no_grad():   # parameters off their initial values, the same for everyone
        for p in params:
            p.add_(torch.randn(p.shape, generator=g) * 0.1)
    cotangent = torch.randn(module(x).shape, generator=g)
    leaves = [x, *params]

    def step_of(fn):
        def step():
            grads = torch.autograd.grad(fn(x, *params), leaves, cotangent)
            return grads
        return step
    compiled = torch.compile(formula, backend="inductor")
    began = time.perf_counter()
    step_of(compiled)()
    compile_s = time.perf_counter() - began
    # the three give the same gradients (a check, not a timing: float32, loose)
    want = step_of(formula)()
    for got in (step_of(lambda x, *p: module(x))(), step_of(compiled)()):
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, rtol=2e-3, atol=2e-3)
    ms = best_ms({"exprforge": step_of(lambda x, *p: module(x)), "torch": step_of(formula),
                  "torch.compile": step_of(compiled)})
    return {"shape": list(shape), "ms": {k: round(v, 3) for k, v in ms.items()},
            "ratio_to_exprforge": {k: round(v / ms["exprforge"], 2) for k, v in ms.items()
                                   if k != "exprforge"},
            "torch_compile_first_call_s": round(compile_s, 2)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a quarter of the sizes")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (1)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.threads < 1:
        ap.error("--threads must be at least 1")
    out = args.out or (OUT_JSON if args.threads == 1 else
                       OUT_JSON.with_name(f"layers_threads{args.threads}.json"))
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    rows = {}
    for name, module, formula, shape in cases(args.quick):
        rows[name] = measure(name, module, formula, shape)
        print(f"{name}: {rows[name]['ms']}", file=sys.stderr)
    result = {"machine": {"date": time.strftime("%Y-%m-%dT%H:%M:%S"),
                          "python": platform.python_version(), "torch": torch.__version__,
                          "cpu": platform.processor() or platform.machine(),
                          "threads": torch.get_num_threads()},
              "config": {"quick": args.quick, "reps": REPS, "rounds": ROUNDS,
                         "dtype": "float32", "method": __doc__},
              "rows": rows, "total_seconds": round(time.perf_counter() - began, 1)}
    out.write_text(json.dumps(result, indent=1) + "\n")
    print("| layer (float32, forward + backward) | shape | exprforge ms | torch ms | "
          "torch.compile ms | torch / exprforge | torch.compile / exprforge |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        ms, ratio = r["ms"], r["ratio_to_exprforge"]
        print(f"| {name} | {'x'.join(map(str, r['shape']))} | {ms['exprforge']:.2f} | "
              f"{ms['torch']:.2f} | {ms['torch.compile']:.2f} | {ratio['torch']:.2f} | "
              f"{ratio['torch.compile']:.2f} |")
    print(f"total {result['total_seconds']} s")


if __name__ == "__main__":
    main()
