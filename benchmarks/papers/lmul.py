"""L-Mul (Luo and Sun 2024): the accuracy of multiplying by one integer addition, against
fp8 and bf16 products, and what it does to a trained transformer's attention.

Run:  .venv/bin/python benchmarks/papers/lmul.py [--quick] [--out PATH]
      -> markdown tables on stdout + benchmarks/results/papers_lmul.json

1. Precision. N_PAIRS pairs (x, y) of float32 N(0, 1) values (seed 0). Each method's
   product is compared with the exact product of the original float32 operands (float64,
   exact): relative error |p - xy| / |xy|, mean over all pairs (and the median and the
   95th percentile). Methods: exprforge.nn.lmul with m = 2..7 mantissa bits (operands
   truncated to m bits inside); "truncate m" = the exact product of the m-bit-truncated
   operands (what L-Mul's approximation adds to truncation); fp8 e4m3, fp8 e5m2 and bf16 =
   the exact product of the operands rounded to nearest in those formats (torch's
   float8_e4m3fn, float8_e5m2, bfloat16 conversions). fp8 e4m3 flushes |x| < 2**-10 to
   zero (relative error 1 for that pair); those pairs are counted. The paper's claims
   checked: L-Mul with a 4-bit mantissa is about as accurate as e4m3 (here: its mean error
   within 10% of e4m3's, or lower), and L-Mul with a 3-bit mantissa is more accurate than
   e5m2 (lower mean error).
2. Attention. A 2-layer pre-LN transformer encoder (d = 32, 2 heads, MLP 4d, learned
   positions; exprforge.nn.LMulAttention as its attention) is trained with exact
   attention (m=None) to sort sequences of SEQ tokens from VOCAB symbols (per-position
   cross-entropy; Adam, STEPS steps of BATCH fresh random sequences). The trained model is
   then evaluated on N_EVAL held-out sequences with exact attention and with both
   attention matmuls (Q K^T and P V) by L-Mul for m = 2..7: token accuracy and whole-
   sequence accuracy. Projections, softmax, MLP stay exact, as in the paper.
3. Cost. lmul_matmul vs torch.matmul on a (64, 64, 64) @ (64, 64, 64) batch, one thread:
   the L-Mul program inside a generated Numba loop nest (k before j, the inner loop
   vectorized) against a BLAS matmul.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from exprforge.nn import LMulAttention, lmul, lmul_matmul  # noqa: E402

N_PAIRS = 1_000_000
MS = range(2, 8)
FORMATS = {"fp8 e4m3": "float8_e4m3fn", "fp8 e5m2": "float8_e5m2", "bf16": "bfloat16"}
VOCAB, SEQ, D_MODEL, HEADS, LAYERS = 16, 12, 32, 2, 2
STEPS, BATCH, LR, N_EVAL = 1500, 128, 2e-3, 4096
ABOUT_AS_ACCURATE = 1.10   # "about as accurate": mean error at most 10% above


def rel_error_stats(p, exact):
    rel = np.abs(p.astype(np.float64) - exact) / np.abs(exact)
    return {"mean": float(rel.mean()), "median": float(np.median(rel)),
            "p95": float(np.quantile(rel, 0.95)), "max": float(rel.max())}


def truncated(x, m):
    return (x.view(np.int32) & np.int32(~((1 << (23 - m)) - 1))).view(np.float32)


def precision(n):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((2, n)).astype(np.float32)
    keep = (x != 0) & (y != 0)
    x, y = x[keep], y[keep]
    exact = x.astype(np.float64) * y
    rows = {}
    for m in MS:
        rows[f"L-Mul m={m}"] = rel_error_stats(lmul(x, y, m), exact)
        rows[f"truncate m={m}"] = rel_error_stats(truncated(x, m).astype(np.float64)
                                                  * truncated(y, m), exact)
    for label, dtype in FORMATS.items():
        dt = getattr(torch, dtype)
        rx, ry = (torch.from_numpy(v).to(dt).to(torch.float64).numpy() for v in (x, y))
        rows[label] = rel_error_stats(rx * ry, exact)
        rows[label]["pairs_flushed_to_zero"] = int(((rx == 0) | (ry == 0)).sum())
    claims = {
        "lmul4_about_as_accurate_as_e4m3": {
            "ratio": rows["L-Mul m=4"]["mean"] / rows["fp8 e4m3"]["mean"],
            "holds": rows["L-Mul m=4"]["mean"] <= ABOUT_AS_ACCURATE * rows["fp8 e4m3"]["mean"]},
        "lmul3_better_than_e5m2": {
            "ratio": rows["L-Mul m=3"]["mean"] / rows["fp8 e5m2"]["mean"],
            "holds": rows["L-Mul m=3"]["mean"] < rows["fp8 e5m2"]["mean"]},
    }
    return {"pairs": int(len(x)), "rows": rows, "claims": claims}


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1, self.ln2 = torch.nn.LayerNorm(D_MODEL), torch.nn.LayerNorm(D_MODEL)
        self.attn = LMulAttention(D_MODEL, HEADS)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(D_MODEL, 4 * D_MODEL), torch.nn.GELU(),
                                       torch.nn.Linear(4 * D_MODEL, D_MODEL))

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class Sorter(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(VOCAB, D_MODEL)
        self.pos = torch.nn.Parameter(0.02 * torch.randn(SEQ, D_MODEL))
        self.blocks = torch.nn.ModuleList(Block() for _ in range(LAYERS))
        self.head = torch.nn.Sequential(torch.nn.LayerNorm(D_MODEL),
                                        torch.nn.Linear(D_MODEL, VOCAB))

    def set_m(self, m):
        for b in self.blocks:
            b.attn.m = m

    def forward(self, tokens):
        x = self.embed(tokens) + self.pos
        for b in self.blocks:
            x = b(x)
        return self.head(x)


def batch(n, g):
    tokens = torch.randint(0, VOCAB, (n, SEQ), generator=g)
    return tokens, tokens.sort(dim=-1).values


def accuracy(model, tokens, target):
    with torch.no_grad():
        pred = torch.cat([model(t).argmax(-1) for t in tokens.split(1024)])
    right = pred == target
    return {"token_accuracy": right.float().mean().item(),
            "sequence_accuracy": right.all(-1).float().mean().item()}


def attention(steps, n_eval):
    torch.manual_seed(0)
    model = Sorter()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, LR, total_steps=steps, pct_start=0.1)
    g = torch.Generator().manual_seed(1)
    began = time.perf_counter()
    for _ in range(steps):
        tokens, target = batch(BATCH, g)
        loss = torch.nn.functional.cross_entropy(model(tokens).flatten(0, 1), target.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    train_s = time.perf_counter() - began
    tokens, target = batch(n_eval, torch.Generator().manual_seed(2))
    rows = {}
    for m in (None, *MS):
        model.set_m(m)
        began = time.perf_counter()
        rows["exact" if m is None else f"L-Mul m={m}"] = {
            **accuracy(model, tokens, target), "seconds": round(time.perf_counter() - began, 2)}
    exact = rows["exact"]
    for r in rows.values():
        r["token_accuracy_change"] = r["token_accuracy"] - exact["token_accuracy"]
        r["sequence_accuracy_change"] = r["sequence_accuracy"] - exact["sequence_accuracy"]
    return {"train_seconds": round(train_s, 1), "final_loss": loss.item(), "rows": rows}


def cost():
    a, b = torch.randn(64, 64, 64), torch.randn(64, 64, 64)
    out = {}
    for label, fn in (("torch.matmul", torch.matmul), ("lmul_matmul m=3",
                                                       lambda p, q: lmul_matmul(p, q, 3))):
        fn(a, b)
        began, n = time.perf_counter(), 0
        while time.perf_counter() - began < 0.5:
            fn(a, b)
            n += 1
        out[label] = (time.perf_counter() - began) / n
    return {"shape": "(64, 64, 64) @ (64, 64, 64)", "seconds": out,
            "slowdown": out["lmul_matmul m=3"] / out["torch.matmul"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1e5 pairs, 200 steps: for trying")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/papers_lmul.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    began = time.perf_counter()
    prec = precision(100_000 if args.quick else N_PAIRS)
    att = attention(200 if args.quick else STEPS, 512 if args.quick else N_EVAL)
    result = {
        "machine": {"date": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    "python": platform.python_version(), "torch": torch.__version__,
                    "threads": torch.get_num_threads()},
        "config": {"pairs": N_PAIRS, "vocab": VOCAB, "seq": SEQ, "d_model": D_MODEL,
                   "heads": HEADS, "layers": LAYERS, "steps": STEPS, "batch": BATCH,
                   "lr": LR, "n_eval": N_EVAL, "quick": args.quick, "method": __doc__},
        "precision": prec, "attention": att, "cost": cost(),
    }
    result["total_seconds"] = round(time.perf_counter() - began, 1)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print("| product | mean rel. error | median | p95 |\n|---|---|---|---|")
    for label, r in prec["rows"].items():
        print(f"| {label} | {r['mean']:.4f} | {r['median']:.4f} | {r['p95']:.4f} |")
    for name, c in prec["claims"].items():
        print(f"{name}: ratio {c['ratio']:.3f}, holds: {c['holds']}")
    print("\n| attention matmuls | token acc. | sequence acc. | change (token) |\n|---|---|---|---|")
    for label, r in att["rows"].items():
        print(f"| {label} | {r['token_accuracy']:.4f} | {r['sequence_accuracy']:.4f} "
              f"| {r['token_accuracy_change']:+.4f} |")
    print(f"training {att['train_seconds']} s; lmul_matmul {result['cost']['slowdown']:.0f}x "
          f"torch.matmul; total {result['total_seconds']} s")


if __name__ == "__main__":
    main()
