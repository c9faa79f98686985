"""Problem sets for benchmarks/bench_regress.py: Nguyen-1..12, the AI Feynman table and the
Strogatz systems, each as (name, truth text, variable names, X, y) data sets.

- Nguyen: the definitions of Uy et al. (2011) with the sampling of Petersen et al.
  (DSR, ICLR 2021, Table 1 of its appendix): 20 points, U(-1, 1) for Nguyen-1..6,
  U(0, 2) for 7, U(0, 4) for 8, U(0, 1) for the two-variable 9..12.
- Feynman: ../shared/data/feynman/FeynmanEquations.csv (formulas, variables, ranges);
  points drawn uniformly from each variable's range, as the original database did.
- Strogatz: ../shared/data/strogatz/strogatz_odes.csv; each system integrated here
  from the 4 initial conditions of the original data, sampled every 0.1 time units
  over 10 (SRBench's convention), with scipy's solve_ivp (LSODA, rtol 1e-10).
Truth formulas are parsed with exprforge's parser (never eval) and evaluated with
engine.evaluate.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from exprforge.engine.evaluate import evaluate
from exprforge.engine.parse import parse
from exprforge.evolve.solution import unalias   # cot(a) -> (1/tan(a)): the parser has no cot

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

NGUYEN = [  # name, formula, variables, low, high (20 points each)
    ("Nguyen-1", "x**3 + x**2 + x", "x", -1, 1),
    ("Nguyen-2", "x**4 + x**3 + x**2 + x", "x", -1, 1),
    ("Nguyen-3", "x**5 + x**4 + x**3 + x**2 + x", "x", -1, 1),
    ("Nguyen-4", "x**6 + x**5 + x**4 + x**3 + x**2 + x", "x", -1, 1),
    ("Nguyen-5", "sin(x**2)*cos(x) - 1", "x", -1, 1),
    ("Nguyen-6", "sin(x) + sin(x + x**2)", "x", -1, 1),
    ("Nguyen-7", "log(x + 1) + log(x**2 + 1)", "x", 0, 2),
    ("Nguyen-8", "sqrt(x)", "x", 0, 4),
    ("Nguyen-9", "sin(x) + sin(y**2)", "x,y", 0, 1),
    ("Nguyen-10", "2*sin(x)*cos(y)", "x,y", 0, 1),
    ("Nguyen-11", "x**y", "x,y", 0, 1),
    ("Nguyen-12", "x**4 - x**3 + y**2/2 - y", "x,y", 0, 1),
]
NGUYEN_OPS = ("add", "sub", "mul", "div", "sin", "cos", "exp", "log")


@dataclass
class Problem:
    name: str
    truth: str            # formula text (exprforge syntax)
    names: list           # variable names, the columns of X
    X: np.ndarray
    y: np.ndarray
    positive: tuple = ()  # variables sampled from positive ranges only


def _evaluate(text: str, names, X) -> np.ndarray:
    expr = parse(text, dtype="float64")
    env = {n: X[:, i] for i, n in enumerate(names) if n in expr.var_names()}
    with np.errstate(all="ignore"):
        return np.broadcast_to(np.asarray(evaluate(expr, env), np.float64), (len(X),)).copy()


def nguyen(seed: int, rows: int = 20) -> list[Problem]:
    return sampled(NGUYEN, seed, rows)


def sampled(table, seed: int, rows: int, salt=()) -> list[Problem]:
    """Problems from (name, formula, "x,y", low, high) rows: `rows` points uniform in
    [low, high) for every variable, drawn from the seed, the row's place and `salt`."""
    out = []
    for k, (name, truth, names, low, high) in enumerate(table):
        names = names.split(",")
        rng = np.random.default_rng([seed, k, *salt])
        X = rng.uniform(low, high, (rows, len(names)))
        positive = tuple(names) if low >= 0 else ()
        out.append(Problem(name, truth, names, X, _evaluate(truth, names, X), positive))
    return out


def _data_file(folder: str, name: str) -> Path:
    path = DATA / folder / name
    if not path.exists():
        raise SystemExit(f"{path} is missing: this benchmark reads ../shared/data/{folder} "
                         f"(see its README.md for where the table comes from)")
    return path


def feynman_table() -> list[dict]:
    """The 100 equations: name, output, formula, [(variable, low, high), ...]."""
    path = _data_file("feynman", "FeynmanEquations.csv")
    rows = []
    with open(path, encoding="utf-8-sig", newline="") as f:
        for r in csv.DictReader(f):
            if not r["Filename"]:
                continue
            n = int(r["# variables"])
            ranges = [(r[f"v{i}_name"], float(r[f"v{i}_low"]), float(r[f"v{i}_high"]))
                      for i in range(1, n + 1)]
            rows.append({"name": r["Filename"], "output": r["Output"],
                         "formula": r["Formula"], "ranges": ranges})
    return rows


def feynman(names_or_count, seed: int, rows: int = 10_000, noise: float = 0.0) -> list[Problem]:
    """Feynman problems: the named equations, or `count` drawn with `seed` from the 100.
    Gaussian noise of std noise * RMS(y) is added to y."""
    table = feynman_table()
    if isinstance(names_or_count, int):
        pick = np.random.default_rng(seed).choice(len(table), names_or_count, replace=False)
        chosen = [table[i] for i in sorted(pick)]
    else:
        by_name = {r["name"]: r for r in table}
        chosen = [by_name[n] for n in names_or_count]
    out = []
    for k, r in enumerate(chosen):
        names = [v for v, _, _ in r["ranges"]]
        rng = np.random.default_rng([seed, k, int(noise * 1e6)])
        X = np.column_stack([rng.uniform(lo, hi, rows) for _, lo, hi in r["ranges"]])
        y = _evaluate(r["formula"], names, X)
        if noise:
            y = y + rng.normal(0.0, noise * np.sqrt(np.mean(y ** 2)), rows)
        positive = tuple(v for v, lo, _ in r["ranges"] if lo > 0)
        out.append(Problem(r["name"], r["formula"], names, X, y, positive))
    return out


def strogatz_table() -> list[dict]:
    path = _data_file("strogatz", "strogatz_odes.csv")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["ics"] = [tuple(float(v) for v in pair.strip(" ()").split(","))
                    for pair in r["ics_in_data"].split(";")]
    return rows


def strogatz(noise: float = 0.0, seed: int = 0):
    """Per system: (name, (dx_dt, dy_dt) truth texts, t (rows,), X (rows, 2), labels)
    with the 4 trajectories stacked; noise: Gaussian, std noise * RMS of each state."""
    from scipy.integrate import solve_ivp
    out = []
    for k, r in enumerate(strogatz_table()):
        rhs = [parse(unalias(r[col]), dtype="float64") for col in ("dx_dt", "dy_dt")]

        def f(t, s, rhs=rhs):
            env = {"x": np.float64(s[0]), "y": np.float64(s[1])}
            return [float(evaluate(e, {n: env[n] for n in e.var_names()})) for e in rhs]

        t = np.round(np.arange(0, float(r["t_span"]) + 1e-9, float(r["sample_time"])), 10)
        t = t[: int(r["points_per_ic"])]
        ts, Xs, labels = [], [], []
        for i, ic in enumerate(r["ics"]):
            sol = solve_ivp(f, (t[0], t[-1]), ic, method="LSODA", t_eval=t, rtol=1e-10,
                            atol=1e-12)
            if not sol.success:
                raise RuntimeError(f"{r['system']}: integration failed ({sol.message})")
            ts.append(t)
            Xs.append(sol.y.T)
            labels.append(np.full(len(t), i))
        X = np.concatenate(Xs)
        if noise:
            rng = np.random.default_rng([seed, k])
            X = X + rng.normal(0.0, 1.0, X.shape) * noise * np.sqrt(np.mean(X ** 2, axis=0))
        out.append((r["system"], (unalias(r["dx_dt"]), unalias(r["dy_dt"])), np.concatenate(ts),
                    X, np.concatenate(labels)))
    return out
