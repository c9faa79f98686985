"""PolyCom (Zhuo et al. 2025): PolyNorm and PolyReLU vs ReLU and GELU in a small MLP on a
synthetic regression target made of high-order interactions.

Run:  .venv/bin/python benchmarks/papers/polycom.py [--quick] [--out PATH]
      -> a markdown table on stdout + benchmarks/results/papers_polycom.json

Task: x in R^16, coordinates uniform on [-sqrt(3), sqrt(3)] (unit variance); the target is
a sum of TERMS products of 3 or 4 distinct coordinates with N(0, 1) coefficients (one fixed
random draw, seed 0), scaled to unit variance. Training targets carry N(0, NOISE^2) noise;
test targets are noiseless, so the test MSE is the approximation error alone (0 is a
perfect fit; 1 is predicting the mean).
Model: Linear(16, h1) - act - Linear(h1, h2) - act - Linear(h2, 1). Widths are chosen so
every model has exactly the same number of parameters: PolyNorm and PolyReLU (4 learnable
coefficients per activation) use (63, 63), ReLU and GELU (torch builtins) use (60, 67):
5175 parameters each.
Training: Adam (lr LR, cosine decay to 0), batch BATCH, EPOCHS epochs, float32, one
thread; the same data and initialization seed per seed index across activations (the
initial weights differ by shape). PolyNorm and PolyReLU run exprforge kernels (the torch
target: LLVM forward and backward kernels; PolyNorm's backward derived through its row
means). Reported: test MSE over SEEDS seeds (mean and sample std), and the wall time.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from exprforge.nn import PolyNorm, PolyReLU  # noqa: E402
from training import minibatch_adam  # noqa: E402  (benchmarks/papers/training.py)

D, TERMS, NOISE = 16, 6, 0.1
N_TRAIN, N_TEST = 16384, 8192
LR, BATCH, EPOCHS, SEEDS = 3e-3, 128, 12, 3
WIDTHS = {"PolyNorm": (63, 63), "PolyReLU": (63, 63), "ReLU": (60, 67), "GELU": (60, 67)}
ACTIVATIONS = {"PolyNorm": PolyNorm, "PolyReLU": PolyReLU, "ReLU": torch.nn.ReLU,
               "GELU": torch.nn.GELU}


def make_task(seed: int = 0):
    rng = np.random.default_rng(seed)
    subsets = [rng.choice(D, size=rng.choice([3, 4]), replace=False) for _ in range(TERMS)]
    coeffs = rng.standard_normal(TERMS)

    def target(x):
        return sum(c * np.prod(x[:, s], axis=1) for c, s in zip(coeffs, subsets))

    probe = rng.uniform(-math.sqrt(3), math.sqrt(3), (200_000, D))
    scale = target(probe).std()
    return subsets, coeffs, lambda x: target(x) / scale


def data(target, n, seed, noise):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-math.sqrt(3), math.sqrt(3), (n, D))
    y = target(x) + noise * rng.standard_normal(n)
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y[:, None], dtype=torch.float32)


def model(name: str):
    h1, h2 = WIDTHS[name]
    act = ACTIVATIONS[name]
    return torch.nn.Sequential(torch.nn.Linear(D, h1), act(), torch.nn.Linear(h1, h2), act(),
                               torch.nn.Linear(h2, 1))


def train(name, seed, train_set, test_set, epochs):
    torch.manual_seed(seed)
    net = model(name)
    x, y = train_set
    run = minibatch_adam(net, x, y, torch.nn.functional.mse_loss, LR, BATCH, epochs, seed)
    with torch.no_grad():
        test_mse = torch.nn.functional.mse_loss(net(test_set[0]), test_set[1]).item()
        train_mse = torch.nn.functional.mse_loss(net(x), y).item()
    return {"test_mse": test_mse, "train_mse": train_mse, "seconds": run["seconds"],
            "parameters": sum(p.numel() for p in net.parameters())}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 epochs, 1 seed: for trying")
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    ap.add_argument("--seeds", type=int, default=SEEDS)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/papers_polycom.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    epochs, seeds = (2, 1) if args.quick else (args.epochs, args.seeds)
    began = time.perf_counter()
    subsets, coeffs, target = make_task()
    runs = {name: [] for name in ACTIVATIONS}
    for seed in range(seeds):
        train_set = data(target, N_TRAIN, 100 + seed, NOISE)
        test_set = data(target, N_TEST, 200 + seed, 0.0)
        for name in ACTIVATIONS:
            runs[name].append(train(name, seed, train_set, test_set, epochs))
            print(f"seed {seed} {name:9s} test MSE {runs[name][-1]['test_mse']:.4f} "
                  f"({runs[name][-1]['seconds']} s)", file=sys.stderr)
    summary = {}
    for name, rs in runs.items():
        mse = np.array([r["test_mse"] for r in rs])
        summary[name] = {"test_mse_mean": float(mse.mean()),
                         "test_mse_std": float(mse.std(ddof=1)) if len(mse) > 1 else 0.0,
                         "train_mse_mean": float(np.mean([r["train_mse"] for r in rs])),
                         "parameters": rs[0]["parameters"], "widths": WIDTHS[name],
                         "seconds_per_run": float(np.mean([r["seconds"] for r in rs]))}
    result = {
        "machine": {"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "python": platform.python_version(),
                    "torch": torch.__version__, "threads": torch.get_num_threads()},
        "config": {"d": D, "terms": [sorted(map(int, s)) for s in subsets],
                   "coefficients": coeffs.tolist(), "noise": NOISE, "n_train": N_TRAIN,
                   "n_test": N_TEST, "lr": LR, "batch": BATCH, "epochs": epochs,
                   "seeds": seeds, "quick": args.quick, "method": __doc__},
        "summary": summary, "runs": runs,
        "total_seconds": round(time.perf_counter() - began, 1),
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print("| activation | params | test MSE (mean ± std, 3 seeds) | train MSE | s / run |")
    print("|---|---|---|---|---|")
    for name, s in sorted(summary.items(), key=lambda kv: kv[1]["test_mse_mean"]):
        print(f"| {name} | {s['parameters']} | {s['test_mse_mean']:.4f} ± {s['test_mse_std']:.4f} "
              f"| {s['train_mse_mean']:.4f} | {s['seconds_per_run']:.1f} |")
    print(f"total {result['total_seconds']} s")


if __name__ == "__main__":
    main()
