"""Rebuild evolve/library.json: search, verify and record each function.

    .venv/bin/python scripts/build_library.py [FUNC ...] [--generations G] [--population P]
        [--dtype float64]

An entry is written only when the check (every float32; for float64 a random sample of
2^24 points) meets the goal (max < 1 ULP and IEEE special values); other functions are
reported and left out.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from exprforge.approx import run
from exprforge.evolve.library import SUFFIX

LIBRARY = Path(__file__).resolve().parent.parent / "evolve" / "library.json"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("functions", nargs="*", default=["exp", "exp2", "log", "log2"])
    p.add_argument("--generations", type=int, default=12)
    p.add_argument("--population", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="/tmp/exprforge-library-runs")
    p.add_argument("--template", help="range-reduction template (default: the function's)")
    p.add_argument("--max-ulp", type=float, default=1.0, help="goal (default 1.0)")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    args = p.parse_args()
    library = json.loads(LIBRARY.read_text()) if LIBRARY.exists() else {}
    for f in args.functions:
        began = time.time()
        r = run(f, generations=args.generations, population=args.population, seed=args.seed,
                out=f"{args.out}/{f}_{args.dtype}", save=False, template=args.template,
                max_ulp=args.max_ulp, dtype=args.dtype)
        v = r["verification"]
        command = (f"exprforge approx {f} --generations {args.generations} "
                   f"--population {args.population} --seed {args.seed}"
                   + (f" --template {args.template}" if args.template else "")
                   + (f" --dtype {args.dtype}" if args.dtype != "float32" else "")
                   + (f" --max-ulp {args.max_ulp}" if args.max_ulp != 1.0 else ""))
        print(f"{f}: max {v['max_ulp']:.4f} ULP, ok={v['ok']}, {time.time() - began:.0f} s")
        if v["max_ulp"] >= args.max_ulp or not v["ok"]:
            print(f"  {f} left out: the goal (< {args.max_ulp} ULP, IEEE specials) was not met")
            continue
        library[f"{f}_{SUFFIX[args.dtype]}"] = {
            "function": f, "dtype": args.dtype, "template": r["template"],
            "program": r["chosen"]["program"], "domain": r["domain"],
            "max_ulp": v["max_ulp"], "argmax": v["argmax"], "mean_ulp": v["mean_ulp"],
            "correctly_rounded": v["correctly_rounded"], "inputs_checked": v["n"],
            "check": v["method"], "reference": v["reference"],
            "specials_ok": v["ok"], "ops": r["chosen"]["ops"], "cycles": r["chosen"]["cost"],
            "seed": args.seed, "command": command, "search_seconds": r["seconds"],
            "verified_on": f"{platform.machine()} {platform.system()}, "
                           f"{time.strftime('%Y-%m-%d')}"}
        LIBRARY.write_text(json.dumps(library, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
