"""How much of the FPBench suite the FPCore reader takes, and whether what it builds runs.

Run:  .venv/bin/python benchmarks/bench_fpcore_parse.py [--data DIR] [--points N] [--seed S]
      -> table on stdout + benchmarks/results/fpcore_parse.json

Reads every *.fpcore file in DIR (default: ../shared/data/fpbench next to the repository)
with the lenient reader, counts parsed and failed cores with a histogram of the failure
reasons, and evaluates each parsed core (float64) at random points inside its domain
that also satisfy its :pre, to check that evaluation does not raise.
"""
import argparse
import collections
import datetime
import json
import math
import re
import sys
import time
from pathlib import Path

import numpy as np

from exprforge.engine.evaluate import evaluate
from exprforge.engine.fpcore import read_fpcores_lenient

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "fpbench"
OUT_JSON = ROOT / "benchmarks" / "results" / "fpcore_parse.json"
HOW_TO_GET = """FPBench data not found at {path}.
Get it from https://github.com/FPBench/FPBench (MIT): copy the folder benchmarks/
(the *.fpcore files) there, or pass --data DIR:
    git clone --depth 1 https://github.com/FPBench/FPBench /tmp/FPBench
    .venv/bin/python benchmarks/bench_fpcore_parse.py --data /tmp/FPBench/benchmarks"""


def reason(message: str) -> str:
    """Histogram key: the construct named in the message, else its first words."""
    m = re.match(r"unsupported FPCore construct '([^']*)'", message)
    if m:
        return f"unsupported '{m.group(1)}'"
    return " ".join(message.split()[:3])


def sample(lo: float, hi: float, n: int, rng) -> np.ndarray:
    """n points in [lo, hi]; log-uniform magnitudes (1e-3..1e3) on unbounded sides."""
    mag = 10.0 ** rng.uniform(-3, 3, n)
    if math.isfinite(lo) and math.isfinite(hi):
        return rng.uniform(lo, hi, n) if hi > lo else np.full(n, lo)
    if math.isfinite(lo):
        return lo + mag
    if math.isfinite(hi):
        return hi - mag
    return mag * rng.choice([-1.0, 1.0], n)


def check_evaluation(core, points: int, rng) -> dict:
    """Evaluate at `points` domain points that satisfy :pre (rejection from 4096 draws)."""
    draws = 4096
    env = {n: sample(*core.domain[n], draws, rng) for n in core.args}
    keep = np.ones(draws, dtype=bool)
    if core.pre is not None:
        keep = np.broadcast_to(evaluate(core.pre, env, dtype="float64"), (draws,))
    idx = np.flatnonzero(keep)[:points]
    satisfied = len(idx) > 0
    if not satisfied:  # still check that it runs
        idx = np.arange(points)
    env = {n: v[idx] for n, v in env.items()}
    try:
        out = np.broadcast_to(evaluate(core.expr, env, dtype="float64"), (len(idx),))
    except Exception as e:  # what this benchmark is here to catch
        return {"ok": False, "pre_satisfied": satisfied, "error": f"{type(e).__name__}: {e}"}
    finite = bool(np.all(np.isfinite(out))) if out.dtype.kind == "f" else True
    return {"ok": True, "pre_satisfied": satisfied, "finite": finite}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--points", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=OUT_JSON)
    args = ap.parse_args(argv)
    files = sorted(args.data.glob("*.fpcore")) if args.data.is_dir() else []
    if not files:
        print(HOW_TO_GET.format(path=args.data))
        return 0
    rng = np.random.default_rng(args.seed)
    reasons, per_file = collections.Counter(), {}
    totals = collections.Counter()
    for path in files:
        text = path.read_text(encoding="utf-8")
        t0 = time.perf_counter()
        cores, errors = read_fpcores_lenient(text)
        seconds = time.perf_counter() - t0
        reasons.update(reason(msg) for _, msg in errors)
        evals = {f"{i}: {c.name}": check_evaluation(c, args.points, rng)  # names may repeat
                 for i, c in enumerate(cores)}
        row = {"total": len(cores) + len(errors), "parsed": len(cores), "failed": len(errors),
               "parse_seconds": round(seconds, 4),
               "eval_ok": sum(e["ok"] for e in evals.values()),
               "eval_finite": sum(e.get("finite", False) for e in evals.values()),
               "pre_unsatisfied": [n for n, e in evals.items() if not e["pre_satisfied"]],
               "eval_errors": {n: e["error"] for n, e in evals.items() if not e["ok"]},
               "errors": [[name, msg] for name, msg in errors]}
        per_file[path.name] = row
        totals.update({k: row[k] for k in ("total", "parsed", "failed", "eval_ok",
                                           "eval_finite")})
    result = {"total": totals["total"], "parsed": totals["parsed"], "failed": totals["failed"],
              "reasons": dict(reasons.most_common()),
              "eval_ok": totals["eval_ok"], "eval_finite": totals["eval_finite"],
              "points_per_core": args.points, "seed": args.seed, "data": str(args.data),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "files": per_file}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    print(f"{'file':28} {'cores':>5} {'parsed':>6} {'failed':>6} {'eval ok':>7} {'finite':>6}")
    for name, row in per_file.items():
        print(f"{name:28} {row['total']:5d} {row['parsed']:6d} {row['failed']:6d} "
              f"{row['eval_ok']:7d} {row['eval_finite']:6d}")
    print(f"{'TOTAL':28} {result['total']:5d} {result['parsed']:6d} {result['failed']:6d} "
          f"{result['eval_ok']:7d} {result['eval_finite']:6d}")
    print("\nfailure reasons:")
    for r, n in reasons.most_common():
        print(f"  {n:4d}  {r}")
    for name, row in per_file.items():
        for core, err in row["eval_errors"].items():
            print(f"  evaluation error in {name} / {core}: {err}", file=sys.stderr)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
