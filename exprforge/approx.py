"""`exprforge approx` end to end: search, verification, store, run directory.

The search (evolve.tasks.approx) proposes a front of programs; the cheapest whose
validation error is under the goal is compiled (LLVM) and checked on every float32 of
its domain (a float64 program: on a random sample of 2^24 points, evolve.verify). If
the check finds it over the goal, the next candidates are tried. The verified program
is saved in the kernel store as FUNC_f32 (FUNC_f64). The run
directory holds config.json, pareto.csv, checkpoint.pkl, the chosen program's IR text
and kernel source, verify.json, and two plots (pareto.png, error.png).
"""
from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

from exprforge.engine.printing import to_text
from exprforge.evolve.library import SUFFIX
from exprforge.runs import default_run_dir, plot_front

VERIFY_TRIES = 3


def run(function: str, domain=None, max_ulp: float = 1.0, cost: str = "cycles",
        generations: int = 30, population: int = 48, seed: int = 0, timeout: float | None = None,
        workers: int | None = None, scheduler: str | None = None, out: str | None = None,
        name: str | None = None, template: str | None = None, verify: bool = True,
        save: bool = True, progress=None, resume: bool = False, dtype: str = "float32") -> dict:
    from exprforge.evolve.executors import make_executor
    from exprforge.evolve.tasks.approx import approximate
    if name is None and not function.isidentifier():
        raise ValueError("an approximation of an expression needs a store name (--name)")
    began = time.monotonic()
    run_dir = Path(out) if out else default_run_dir("approx", function if function.isidentifier()
                                                    else "expr")
    run_dir.mkdir(parents=True, exist_ok=True)
    config = {"function": function, "dtype": dtype, "domain": list(domain) if domain else None,
              "max_ulp": max_ulp, "cost": cost, "generations": generations,
              "population": population, "seed": seed, "timeout": timeout,
              "workers": workers, "scheduler": scheduler, "template": template,
              "command": " ".join(["exprforge"] + sys.argv[1:]) if sys.argv else None}
    (run_dir / "config.json").write_text(json.dumps(config, indent=1))
    with make_executor(workers=workers, scheduler=scheduler) as executor:
        result = approximate(function, domain, dtype=dtype, max_ulp=max_ulp, cost=cost,
                             population=population, generations=generations, seed=seed,
                             timeout=timeout, executor=executor,
                             checkpoint=str(run_dir / "checkpoint.pkl"), template=template,
                             progress=progress, resume=resume)
    _write_front(run_dir / "pareto.csv", result.front)
    chosen, report, kernel = result.chosen, None, None
    if verify and chosen is not None:
        chosen, report, kernel = _verify_best(result, whole=domain is None)
    name = name or f"{function}_{SUFFIX[dtype]}"
    saved = None
    if save and kernel is not None and (report is None or
                                        (report["max_ulp"] < max_ulp and report["ok"])):
        import exprforge as xf
        xf.save(kernel, name)
        saved = name
    if chosen is not None:
        (run_dir / "program.txt").write_text(to_text(chosen.program) + "\n")
        if kernel is not None:
            (run_dir / "kernel.ll").write_text(kernel.source)
    if report is not None:
        (run_dir / "verify.json").write_text(json.dumps(report, indent=1))
    try:
        plots = _plots(run_dir, result, chosen)
    except Exception as e:   # a plot must not lose the run: everything else is written
        import warnings
        warnings.warn(f"plots not written: {type(e).__name__}: {e}", stacklevel=2)
        plots = []
    return {"function": function, "dtype": dtype, "template": result.template,
            "domain": list(result.domain),
            "goal_max_ulp": max_ulp, "front": [c.as_dict() for c in result.front],
            "chosen": chosen.as_dict() if chosen else None, "verification": report,
            "saved_as": saved, "run_dir": str(run_dir), "plots": plots,
            "generations": result.search.generations, "stopped": result.search.stopped,
            "evaluations": result.search.evaluations,
            "seconds": round(time.monotonic() - began, 2)}


def _verify_best(result, whole: bool):
    """Compile and exhaustively check the chosen program, then the next candidates under
    the goal (by validation error) if it fails: (candidate, report dict, kernel).
    On the function's whole domain every IEEE special value must come out right; on a
    domain the user chose, only the special inputs inside it count."""
    import exprforge as xf
    from exprforge.evolve.verify import verify
    pool = [result.chosen] + [c for c in result.front if c is not result.chosen
                              and c.validation_max_ulp is not None
                              and c.validation_max_ulp < result.max_ulp]
    best = None
    for candidate in pool[:VERIFY_TRIES]:
        kernel = xf.compile(candidate.program, target="llvm")
        report = verify(kernel, result.function, domain=result.domain).as_dict()
        lo, hi = result.domain
        report["ok"] = all(s["passed"] for s in report["specials"]
                           if whole or lo <= s["input"] <= hi)
        if best is None or report["max_ulp"] < best[1]["max_ulp"]:
            best = (candidate, report, kernel)
        if report["max_ulp"] < result.max_ulp and report["ok"]:
            return candidate, report, kernel
    return best


def _write_front(path: Path, front) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["cost", "ops", "train_max_ulp", "validation_max_ulp", "core", "program"])
        for c in front:
            d = c.as_dict()
            w.writerow([d["cost"], d["ops"], d["train_max_ulp"], d["validation_max_ulp"],
                        d["core"], d["program"]])


def _plots(run_dir: Path, result, chosen) -> list:
    if not plot_front(run_dir / "pareto.png", [c.cost for c in result.front],
                      [max(c.train_max_ulp, 1e-3) for c in result.front], xlabel="cost",
                      ylabel="max ULP (training set)", title=f"{result.function}: Pareto front",
                      goal=result.max_ulp):
        return []                   # no matplotlib
    import matplotlib.pyplot as plt

    from exprforge.engine.errors import ulp_error, ulp_error_dd
    from exprforge.engine.evaluate import evaluate
    from exprforge.evolve.tasks.approx import truth_dd, truth_fast
    written = ["pareto.png"]
    if chosen is not None:
        lo, hi = result.domain
        if hi - lo > 1e30 and lo < 0:   # the whole line (tanh, sigmoid, erf): where it is not flat
            lo, hi = max(lo, -64.0), min(hi, 64.0)
        dtype = chosen.program.dtype
        n = 200_001 if dtype == "float32" else 4001   # float64: each point an oracle call
        with np.errstate(over="ignore"):
            x = (np.linspace(lo / 2, hi / 2, n) * 2).astype(dtype)   # halved: no overflow
            if hi / max(lo, 1e-300) > 1e6 and lo > 0:  # log-like domains: by magnitude
                x = np.geomspace(lo, hi, n).astype(dtype)
        x = x[np.isfinite(x)]
        with np.errstate(all="ignore"):
            y = np.asarray(evaluate(chosen.program, {"x": x}))
        err = ulp_error_dd(y, *truth_dd(result.function, x)) if dtype == "float64" else \
            ulp_error(y.astype(np.float32), truth_fast(result.function, x))
        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.plot(x, err, ",", alpha=0.5)
        if lo > 0 and hi / lo > 1e6:
            ax.set_xscale("log")
        ax.set_xlabel("x")
        ax.set_ylabel("error (ULP)")
        ax.set_title(f"{result.function}: chosen program's error")
        fig.tight_layout()
        fig.savefig(run_dir / "error.png", dpi=100)
        plt.close(fig)
        written.append("error.png")
    return written


def show(r: dict) -> str:
    lines = [f"{r['function']} (template {r['template']}, domain {r['domain']}): "
             f"{r['generations']} generations, {r['evaluations']} programs, "
             f"{r['seconds']} s, stopped: {r['stopped']}",
             "", "Pareto front (cost, ops, max ULP on the training set / validation):"]
    for c in r["front"]:
        v = f"{c['validation_max_ulp']:.3f}" if c["validation_max_ulp"] is not None else "-"
        lines.append(f"  {c['cost']:6.1f} {c['ops']:5.0f}  {min(c['train_max_ulp'], 1e9):12.3f}"
                     f"  {v:>8}")
    if r["chosen"]:
        lines += ["", f"chosen: {r['chosen']['program']}"]
    v = r["verification"]
    if v:
        check = "exhaustive check" if v.get("method", "exhaustive") == "exhaustive" else \
            f"sampled check ({v['reference']} reference)"
        lines.append(f"{check}: {v['n']} {v.get('dtype', 'float32')} inputs in "
                     f"{v['seconds']:.1f} s: "
                     f"max {v['max_ulp']:.4f} ULP at x = {v['argmax']!r}, mean "
                     f"{v['mean_ulp']:.4f}, correctly rounded {100 * v['correctly_rounded']:.2f}%"
                     f", special values {'ok' if v['ok'] else 'FAIL'}")
    if r["saved_as"]:
        lines.append(f"saved: from exprforge.kernels import {r['saved_as']}")
    elif r["chosen"]:
        lines.append(f"not saved: the goal of {r['goal_max_ulp']} ULP was not met")
    lines.append(f"run directory: {r['run_dir']}")
    return "\n".join(lines)
