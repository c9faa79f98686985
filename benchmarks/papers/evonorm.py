"""EvoNorm (Liu et al. 2020): BN-ReLU vs GN-ReLU vs EvoNorm-B0 vs EvoNorm-S0 in a small
pre-activation ResNet on a synthetic image task, at batch 64 and batch 4.

Run:  .venv/bin/python benchmarks/papers/evonorm.py [--quick] [--out PATH]
      -> a markdown table on stdout + benchmarks/results/papers_evonorm.json

Task (generated here; training set seed 0, test set seed 1): 16x16 RGB images of 6
classes: horizontal, vertical or diagonal stripes or a checkerboard (random period 3-5 px
and phase, in a random patch of 8-16 px), a disk or a ring (random radius and position).
Background colour random, pattern colour = background +- a random contrast, a random
brightness ramp, Gaussian pixel noise (0.25), then a random per-image gain exp(U(-1, 1))
and offset N(0, 0.3^2). Inputs standardized per channel with the training set's
statistics. N_TRAIN training and N_TEST test images, balanced classes.
Model: conv3x3(3->16) - block(16, stride 2) - block(16->32, stride 2) - norm-act -
global average pool - linear(32->6); a block is pre-activation, x + conv(na(conv(na(x)))),
with a 1x1 strided conv of na(x) as the skip. Each "na" is the layer compared:
BatchNorm2d + ReLU, GroupNorm(8) + ReLU, EvoNormB0, or EvoNormS0(groups=8) (32 groups
would be one channel per group at 16 channels; GN gets the same 8). Five norm-activation
layers, about 20k parameters.
Training: Adam, learning rate LR at batch 64 and LR * sqrt(batch / 64) at other batches
(the square-root scaling rule for Adam), cosine decay to 0, float32, one thread. Runs:
batch 64 for 18 epochs, batch 64 for 6 epochs, batch 4 for 6 epochs. The paper's protocol
is equal epochs (batch 64 vs batch 4 at 6 epochs), but on this budget batch 64 then gets
only ~100 steps and is far from converged, so the 18-epoch batch-64 runs are the
converged large-batch reference; GN-ReLU, which does not depend on the batch, anchors the
comparison. Test accuracy in eval mode (BN's and B0's moving averages of the batch
statistics, as at inference). The same data and initial conv/linear weights per seed
across layers and batch sizes.
EvoNorm layers run exprforge kernels (torch target: LLVM forward kernels, backward
kernels derived through the reductions by engine.derive.vjp); BN and GN are torch's.
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

from exprforge.nn import EvoNormB0, EvoNormS0  # noqa: E402
from training import minibatch_adam  # noqa: E402  (benchmarks/papers/training.py)

SIZE, CLASSES, GROUPS, NOISE, GAIN, OFFSET = 16, 6, 8, 0.25, 1.0, 0.3
N_TRAIN, N_TEST = 1000, 1200
LR, SEEDS = 5e-3, 4
RUNS = ((64, 18), (64, 6), (4, 6))   # (batch, epochs)
LAYERS = {
    "BN-ReLU": lambda c: torch.nn.Sequential(torch.nn.BatchNorm2d(c), torch.nn.ReLU()),
    "GN-ReLU": lambda c: torch.nn.Sequential(torch.nn.GroupNorm(GROUPS, c), torch.nn.ReLU()),
    "EvoNorm-B0": lambda c: EvoNormB0(c),
    "EvoNorm-S0": lambda c: EvoNormS0(c, groups=GROUPS),
}
SHAPES = ("h-stripes", "v-stripes", "d-stripes", "checker", "disk", "ring")


# --- the task ----------------------------------------------------------------------------

def _pattern(kind, yy, xx, rng):
    """The class's 0/1 pattern: a texture in a random patch, or a disk or ring."""
    if kind in ("disk", "ring"):
        r = rng.uniform(3.5, 6.5)
        cy, cx = rng.uniform(r, SIZE - r, 2)
        d2 = (yy - cy) ** 2 + (xx - cx) ** 2
        return (d2 <= r ** 2) & ((d2 >= (r * 0.55) ** 2) if kind == "ring" else True)
    period, phase = rng.uniform(3, 5), rng.uniform(0, 2 * np.pi)
    u = {"h-stripes": yy, "v-stripes": xx, "d-stripes": (xx + yy) / np.sqrt(2),
         "checker": None}[kind]
    if u is None:
        wave = np.sin(2 * np.pi * yy / period + phase) * np.sin(2 * np.pi * xx / period)
    else:
        wave = np.sin(2 * np.pi * u / period + phase)
    h, w = rng.integers(8, SIZE + 1, 2)
    top, left = rng.integers(0, SIZE - h + 1), rng.integers(0, SIZE - w + 1)
    patch = (yy >= top) & (yy < top + h) & (xx >= left) & (xx < left + w)
    return patch & (wave > 0)


def make_images(n, seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64) + 0.5
    labels = np.arange(n) % CLASSES
    rng.shuffle(labels)
    images = np.empty((n, 3, SIZE, SIZE), np.float32)
    for i, label in enumerate(labels):
        mask = _pattern(SHAPES[label], yy, xx, rng)
        background = rng.uniform(0, 1, 3)
        contrast = rng.choice([-1, 1]) * rng.uniform(0.3, 0.8) + rng.normal(0, 0.15, 3)
        ramp = rng.normal(0, 0.03, 2)
        image = background[:, None, None] + ramp[0] * (yy - 8) + ramp[1] * (xx - 8)
        image = image + mask * contrast[:, None, None]
        image = image + rng.normal(0, NOISE, image.shape)
        images[i] = image * np.exp(rng.uniform(-GAIN, GAIN)) + rng.normal(0, OFFSET)
    return torch.from_numpy(images), torch.from_numpy(labels)


def standardize(train_set, test_set):
    """Per-channel mean and std of the training images, applied to both (as usual)."""
    mean = train_set[0].mean(dim=(0, 2, 3), keepdim=True)
    std = train_set[0].std(dim=(0, 2, 3), keepdim=True)
    return [((x - mean) / std, y) for x, y in (train_set, test_set)]


# --- the model -----------------------------------------------------------------------------

class Block(torch.nn.Module):
    def __init__(self, layer, c_in, c_out, stride):
        super().__init__()
        self.na1, self.na2 = layer(c_in), layer(c_out)
        self.conv1 = torch.nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.conv2 = torch.nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.skip = None if stride == 1 and c_in == c_out else \
            torch.nn.Conv2d(c_in, c_out, 1, stride, bias=False)

    def forward(self, x):
        a = self.na1(x)
        shortcut = x if self.skip is None else self.skip(a)
        return shortcut + self.conv2(self.na2(self.conv1(a)))


def model(name):
    layer = LAYERS[name]
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, 1, 1, bias=False), Block(layer, 16, 16, 2),
        Block(layer, 16, 32, 2), layer(32), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(32, CLASSES))


def _initial_weights(seed):
    """Conv and linear weights per seed, the same for every layer type (the norm layers'
    own parameters start at their fixed inits)."""
    torch.manual_seed(seed)
    return {k: v for k, v in model("BN-ReLU").state_dict().items()
            if "conv" in k or "skip" in k or k.startswith(("0.", "6."))}


def train(name, seed, batch, train_set, test_set, epochs):
    net = model(name)
    net.load_state_dict(_initial_weights(seed), strict=False)
    lr = LR * math.sqrt(batch / 64)
    x, y = train_set
    run = minibatch_adam(net, x, y, torch.nn.functional.cross_entropy, lr, batch, epochs, seed)
    with torch.no_grad():
        test_acc = (net(test_set[0]).argmax(1) == test_set[1]).float().mean().item()
        train_acc = (net(x).argmax(1) == y).float().mean().item()
    return {"test_acc": test_acc, "train_acc": train_acc, "seconds": run["seconds"],
            "steps": run["steps"], "lr": lr,
            "parameters": sum(p.numel() for p in net.parameters())}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 seed, 400 images, 1/3 epochs")
    ap.add_argument("--seeds", type=int, default=SEEDS)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/papers_evonorm.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    seeds, n_train = (1, 400) if args.quick else (args.seeds, N_TRAIN)
    plan = [(b, max(1, e // 3) if args.quick else e) for b, e in RUNS]
    began = time.perf_counter()
    train_set, test_set = standardize(make_images(n_train, 0), make_images(N_TEST, 1))
    runs = {(name, b, e): [] for b, e in plan for name in LAYERS}
    for seed in range(seeds):
        for batch, epochs in plan:
            for name in LAYERS:
                r = train(name, seed, batch, train_set, test_set, epochs)
                runs[name, batch, epochs].append(r)
                print(f"seed {seed} batch {batch:2d} x {epochs:2d} epochs {name:10s} test acc "
                      f"{r['test_acc']:.3f} train {r['train_acc']:.3f} ({r['seconds']} s)",
                      file=sys.stderr)
    summary = {}
    for (name, batch, epochs), rs in runs.items():
        acc = np.array([r["test_acc"] for r in rs])
        summary.setdefault(name, {"parameters": rs[0]["parameters"]})[
            f"batch {batch}, {epochs} epochs"] = {
            "test_acc_mean": float(acc.mean()), "test_acc_runs": acc.tolist(),
            "train_acc_mean": float(np.mean([r["train_acc"] for r in rs])),
            "steps": rs[0]["steps"], "lr": rs[0]["lr"],
            "seconds_per_run": float(np.mean([r["seconds"] for r in rs]))}
    result = {
        "machine": {"date": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    "python": platform.python_version(), "torch": torch.__version__,
                    "threads": torch.get_num_threads()},
        "config": {"size": SIZE, "classes": list(SHAPES), "n_train": n_train, "n_test": N_TEST,
                   "lr_at_batch_64": LR, "runs": plan, "seeds": seeds, "groups": GROUPS,
                   "quick": args.quick, "method": __doc__},
        "summary": summary,
        "runs": {f"{name} batch {b} x {e}": rs for (name, b, e), rs in runs.items()},
        "total_seconds": round(time.perf_counter() - began, 1),
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(table(summary, [f"batch {b}, {e} epochs" for b, e in plan]))
    print(f"total {result['total_seconds']} s; {seeds} seed(s): mean (runs)")


def table(summary, keys):
    """Markdown: accuracy per run kind (keys: large batch long, large batch, small batch),
    the small batch's change from the converged large batch, and its gap to GN-ReLU."""
    rows = ["| layer | params | " + " | ".join(f"test acc, {k}" for k in keys) +
            " | small batch minus converged large batch | small batch minus GN-ReLU | s / run |",
            "|---|---|" + "---|" * len(keys) + "---|---|---|"]
    gn = summary["GN-ReLU"][keys[2]]["test_acc_mean"]
    for name, s in summary.items():
        small = s[keys[2]]["test_acc_mean"]
        seconds = ", ".join(f"{s[k]['seconds_per_run']:.0f}" for k in keys)
        rows.append(f"| {name} | {s['parameters']} | " + " | ".join(_cell(s[k]) for k in keys)
                    + f" | {100 * (small - s[keys[0]]['test_acc_mean']):+.1f} pts"
                    f" | {100 * (small - gn):+.1f} pts | {seconds} |")
    return "\n".join(rows)


def _cell(s):
    runs = ", ".join(f"{100 * a:.1f}" for a in s["test_acc_runs"])
    return f"{100 * s['test_acc_mean']:.1f}% ({runs})"


if __name__ == "__main__":
    main()
