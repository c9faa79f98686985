"""Symbolic regression and ODE discovery: exprforge vs gplearn, side by side, same data,
same time budget, same run.

    .venv/bin/python benchmarks/bench_regress.py [--parts nguyen,feynman,strogatz]
        [--seeds 5] [--budget 30] [--feynman 25] [--feynman-budget 60] [--noise 0,0.01]
        -> benchmarks/results/regress.json

- Nguyen-1..12 (benchmarks/regress_data.py): exact recovery per problem and seed: the
  chosen formula minus the truth simplifies to 0 after rounding constants to 6 decimals
  (exprforge.check_solution, kind "exact"). Function set add, sub, mul, div, sin, cos,
  exp, log for both tools.
- Feynman: a random subset (fixed seed) of the AI Feynman table, 10,000 points each,
  noise 0 and Gaussian noise of std 0.01 x RMS(y): SRBench's symbolic-solution rate
  (difference or ratio constant after rounding, and R^2 > 0.5 on held-out points).
- Strogatz: the 7 systems integrated from their 4 initial conditions; exprforge's
  discover_ode vs gplearn fitted on the same estimated derivatives (the same rows: 5%
  trimmed at each end, 20% discarded where two estimators disagree); symbolic recovery
  of each of the 14 right-hand sides.
- gplearn 0.4 with SRBench's settings (population 1000, tournament 20, parsimony 0.001,
  p_crossover 0.9, ...; cavalab/srbench experiment/methods/gplearn/regressor.py), exp
  added as a protected function (gplearn has none); it has no time limit, so it is run
  one generation at a time (warm_start) until the budget is spent or its mean absolute
  error is below 1e-10. exprforge stops at its budget or at an exact fit.
Time to solution: the seconds a run took when it ended with a solution.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import regress_data as data  # noqa: E402

import exprforge as xf  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "regress.json"
FEYNMAN_OPS = ("add", "sub", "mul", "div", "sqrt", "exp", "log", "sin", "cos")
GPLEARN_NAMES = {"add": "add", "sub": "sub", "mul": "mul", "div": "div", "sqrt": "sqrt",
                 "log": "log", "sin": "sin", "cos": "cos"}


# --- the two tools ----------------------------------------------------------------------

def run_exprforge(X, y, names, ops, budget, seed):
    import pandas as pd
    start = time.perf_counter()
    reg = xf.SymbolicRegressor(ops=ops, population=200, generations=10 ** 6,
                               time_budget=budget, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reg.fit(pd.DataFrame(X, columns=names), y)
    return reg.sympy(), time.perf_counter() - start, reg.predict


def _protected_exp(x):
    with np.errstate(over="ignore"):
        return np.where(x < 100.0, np.exp(np.minimum(x, 100.0)), 0.0)


def run_gplearn(X, y, names, ops, budget, seed):
    from gplearn.functions import make_function
    from gplearn.genetic import SymbolicRegressor
    functions = [GPLEARN_NAMES[o] for o in ops if o in GPLEARN_NAMES]
    if "exp" in ops:
        functions.append(make_function(function=_protected_exp, name="exp", arity=1))
    est = SymbolicRegressor(population_size=1000, generations=1, tournament_size=20,
                            init_depth=(2, 6), metric="mean absolute error",
                            parsimony_coefficient=0.001, p_crossover=0.9,
                            p_subtree_mutation=0.01, p_hoist_mutation=0.01,
                            p_point_mutation=0.01, p_point_replace=0.05,
                            function_set=functions, warm_start=True, random_state=seed)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        while True:
            est.fit(X, y)
            if est._program.raw_fitness_ < 1e-10 or time.perf_counter() - start >= budget:
                break
            est.set_params(generations=est.generations + 1)
    return gplearn_sympy(est._program.program, names), time.perf_counter() - start, est.predict


def gplearn_sympy(program: list, names):
    """A gplearn program (prefix list of functions, feature indices, floats) as SymPy,
    built node by node (no parsing of its text)."""
    import sympy as sp
    symbols = [sp.Symbol(n, real=True) for n in names]
    # gplearn's log and sqrt act on |x|; on a number that matters (SRBench's PLOG/PSQRT
    # take the absolute value of numbers only, as here)
    ops = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
           "div": lambda a, b: a / b,
           "sqrt": lambda a: sp.sqrt(abs(a) if a.is_number else a),
           "log": lambda a: sp.log(abs(a) if a.is_number else a),
           "sin": sp.sin, "cos": sp.cos, "exp": sp.exp}
    pos = 0

    def node():
        nonlocal pos
        item = program[pos]
        pos += 1
        if isinstance(item, (int, np.integer)):
            return symbols[int(item)]
        if isinstance(item, float):
            return sp.Float(item)
        return ops[item.name](*[node() for _ in range(item.arity)])

    return node()


TOOLS = {"exprforge": run_exprforge, "gplearn": run_gplearn}


# --- the parts -----------------------------------------------------------------------------

def _r2(predict, X, y) -> float:
    with np.errstate(all="ignore"):
        p = np.asarray(predict(X), np.float64)
    if not np.all(np.isfinite(p)):
        return float("-inf")
    return float(1 - np.mean((p - y) ** 2) / np.var(y))


def judge(model, problem, test_X, test_y, predict, exact_only: bool) -> dict:
    r2 = _r2(predict, test_X, test_y)
    if not exact_only and r2 <= 0.5:      # SRBench checks only models with R^2 > 0.5
        return {"solved": False, "kind": "inaccurate", "r2": r2, "model": str(model)}
    return {**_check(model, problem, test_X, exact_only), "r2": r2, "model": str(model)}


def _check(model, problem, X, exact_only: bool) -> dict:
    """The symbolic check on 64 random rows of X. Solved only when SymPy confirms it: a
    verdict of the numeric screen alone (simplify timed out) is counted apart."""
    rows = np.random.default_rng(0).choice(len(X), min(64, len(X)), replace=False)
    samples = {n: X[rows, i] for i, n in enumerate(problem.names)}
    check = xf.check_solution(model, problem.truth, samples=samples, positive=problem.positive,
                              timeout=10.0)
    match = check.kind == "exact" if exact_only else check.is_solution
    return {"solved": bool(match and check.method == "symbolic"),
            "numeric_only": bool(match and check.method != "symbolic"),
            "kind": check.kind, "method": check.method}


def part_nguyen(seeds: int, budget: float) -> dict:
    records = []
    for seed in range(seeds):
        tests = {p.name: p for p in data.nguyen(seed + 1000, rows=1000)}
        for p in data.nguyen(seed):
            test = tests[p.name]
            for tool, run in TOOLS.items():
                model, seconds, predict = run(p.X, p.y, p.names, data.NGUYEN_OPS, budget, seed)
                r = judge(model, p, test.X, test.y, predict, exact_only=True)
                records.append({"problem": p.name, "seed": seed, "tool": tool,
                                "seconds": seconds, **r})
                print(f"{p.name} seed {seed} {tool}: {'SOLVED' if r['solved'] else '-'} "
                      f"{seconds:.1f}s {r['model']}", flush=True)
    return {"budget_s": budget, "seeds": seeds, "records": records,
            "summary": _summary(records, "problem")}


def part_feynman(count: int, budget: float, noises, seed: int = 0) -> dict:
    records = []
    for noise in noises:
        test = {p.name: p for p in data.feynman(count, seed, rows=2000, noise=0.0)}
        # test points drawn with another stream: same equations, fresh points
        test = {p.name: p for p in data.feynman([*test], seed + 1, rows=2000)}
        for p in data.feynman(count, seed, noise=noise):
            t = test[p.name]
            for tool, run in TOOLS.items():
                model, seconds, predict = run(p.X, p.y, p.names, FEYNMAN_OPS, budget, 0)
                r = judge(model, p, t.X, t.y, predict, exact_only=False)
                records.append({"problem": p.name, "noise": noise, "tool": tool,
                                "seconds": seconds, **r})
                print(f"{p.name} noise {noise} {tool}: {'SOLVED' if r['solved'] else '-'} "
                      f"({r['kind']}, R2 {r['r2']:.4f}) {seconds:.1f}s {r['model']}", flush=True)
    return {"budget_s": budget, "count": count, "selection_seed": seed, "noises": list(noises),
            "equations": sorted({r["problem"] for r in records}), "records": records,
            "summary": {str(n): _summary([r for r in records if r["noise"] == n], "problem")
                        for n in noises}}


TRIM, DISCARD = 0.05, 0.2   # discover_ode's defaults, written out: gplearn gets the same rows


def part_strogatz(budget: float, noise: float = 0.0) -> dict:
    """discover_ode for exprforge; gplearn on the derivatives discover_ode estimated."""
    from exprforge.evolve.tasks.ode import estimate_derivatives
    records = []
    for system, truths, t, X, labels in data.strogatz(noise):
        names = ["x", "y"]
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = xf.discover_ode(t, X, names, trajectory=labels, time_budget=2 * budget,
                                    trim=TRIM, discard=DISCARD,
                                    random_state=0, ops=data.NGUYEN_OPS, population=200,
                                    generations=10 ** 6)   # the budget is the limit
        ode_seconds = time.perf_counter() - start
        d = estimate_derivatives(t, X, trajectory=labels, trim=TRIM, discard=DISCARD)
        for j, (state, truth) in enumerate(zip(names, truths)):
            problem = data.Problem(f"{system}.d{state}", truth, names, d.X, d.dX[:, j])
            fits = {"exprforge": (model.equations[state], ode_seconds / 2,
                                  model.regressors[state].predict),
                    "gplearn": run_gplearn(d.X, d.dX[:, j], names, data.NGUYEN_OPS, budget, 0)}
            for tool, (found, seconds, predict) in fits.items():
                r = judge(found, problem, d.X, d.dX[:, j], predict, exact_only=False)
                records.append({"problem": problem.name, "tool": tool, "seconds": seconds, **r})
                print(f"{problem.name} {tool}: {'SOLVED' if r['solved'] else '-'} "
                      f"({r['kind']}) {seconds:.1f}s {r['model']}", flush=True)
    return {"budget_s_per_equation": budget, "noise": noise, "records": records,
            "summary": _summary(records, "problem")}


def _summary(records, key) -> dict:
    out = {}
    for tool in TOOLS:
        mine = [r for r in records if r["tool"] == tool]
        solved = [r for r in mine if r["solved"]]
        per = {}
        for r in mine:
            per.setdefault(r[key], []).append(r["solved"])
        out[tool] = {"runs": len(mine), "solved": len(solved),
                     "rate": len(solved) / max(len(mine), 1),
                     "numeric_only": sum(r.get("numeric_only", False) for r in mine),
                     "per_problem": {k: sum(v) for k, v in per.items()},
                     "median_seconds_to_solution":
                         float(np.median([r["seconds"] for r in solved])) if solved else None}
    return out


def rejudge(out: dict) -> None:
    """Re-run the symbolic check on stored records (the models are re-read with
    exprforge's parser, their R^2 kept): for when the check changed after a run."""
    from exprforge.engine.parse import parse
    problems = {}
    if "nguyen" in out:
        problems.update({(p.name, True): p for p in data.nguyen(1000, rows=1000)})
    if "feynman" in out:
        names = out["feynman"]["equations"]
        problems.update({(p.name, False): p for p in data.feynman(names, 1, rows=2000)})
    for part, exact_only in (("nguyen", True), ("feynman", False)):
        if part not in out:
            continue
        for r in out[part]["records"]:
            if not exact_only and r["r2"] <= 0.5:
                continue
            p = problems[(r["problem"], exact_only)]
            text = re.sub(r"\bE\b", "exp(1)", r["model"].replace("Abs(", "abs("))
            try:    # SymPy's printing: its Abs and E are exprforge's abs and exp(1)
                verdict = _check(parse(text, dtype="float64"), p, p.X, exact_only)
            except (xf.ParseError, ValueError) as e:   # zoo, I, ...: kept as judged
                print(f"{part} {r['problem']} {r['tool']}: kept ({e})", flush=True)
                continue
            if verdict["solved"] != r["solved"]:
                print(f"{part} {r['problem']} {r['tool']}: {r['solved']} -> "
                      f"{verdict['solved']} ({verdict['kind']}) {r['model']}", flush=True)
            r.update(verdict)
        summaries = out[part]["summary"]
        if part == "nguyen":
            out[part]["summary"] = _summary(out[part]["records"], "problem")
        else:
            out[part]["summary"] = {n: _summary([r for r in out[part]["records"]
                                                 if str(r["noise"]) == n], "problem")
                                    for n in summaries}


def _commit() -> str:
    import subprocess
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, cwd=Path(__file__).parent).stdout.strip()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", default="nguyen,feynman,strogatz")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budget", type=float, default=30.0, help="seconds per Nguyen run")
    ap.add_argument("--feynman", type=int, default=25, help="equations (of 100)")
    ap.add_argument("--feynman-budget", type=float, default=60.0)
    ap.add_argument("--strogatz-budget", type=float, default=30.0)
    ap.add_argument("--noise", default="0,0.01")
    ap.add_argument("--rejudge", action="store_true",
                    help="only re-check the stored models with the current check")
    args = ap.parse_args(argv)
    if args.rejudge:
        out = json.loads(RESULTS.read_text())
        rejudge(out)
        out["rejudged"] = f"{time.strftime('%Y-%m-%d')} at commit {_commit()}"
        RESULTS.write_text(json.dumps(out, indent=1, default=str) + "\n")
        return
    parts = args.parts.split(",")
    new = {"date": time.strftime("%Y-%m-%d"),
           "machine": f"{platform.machine()}, {os.cpu_count()} cores",
           "command": "benchmarks/bench_regress.py " + " ".join(argv or sys.argv[1:]),
           "commit": _commit()}
    if "nguyen" in parts:
        new["nguyen"] = part_nguyen(args.seeds, args.budget)
    if "feynman" in parts:
        new["feynman"] = part_feynman(args.feynman, args.feynman_budget,
                                      [float(v) for v in args.noise.split(",")])
    if "strogatz" in parts:
        new["strogatz"] = part_strogatz(args.strogatz_budget)
    # read just before writing: parts may run as separate processes side by side
    out = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    commands = out.get("commands", {})
    commands.update({part: f"{new['command']} (commit {new['commit']})" for part in parts})
    out.update({k: v for k, v in new.items() if k not in ("command", "commit")},
               commands=commands)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1, default=str) + "\n")
    for part in ("nguyen", "feynman", "strogatz"):
        if part in out and part in parts:
            print(part, json.dumps({k: v for k, v in out[part]["summary"].items()}, default=str))


if __name__ == "__main__":
    main()
