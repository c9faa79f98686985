"""`exprforge regress DATA.csv --target y` (symbolic regression of one column on others,
through xf.SymbolicRegressor) and `exprforge discover-ode TRAJ.csv --time t` (an ODE
system from trajectories, through xf.discover_ode). Both read a CSV with pandas and
write a run directory (--out DIR, default under the kernel store):

- regress: hall_of_fame.csv (the Pareto front), pareto.png, checkpoint.pkl (--resume
  continues from it), config.json, model.json (the chosen formula and its scores).
- discover-ode: equations.json, hall_of_fame_STATE.csv and pareto_STATE.png per state,
  config.json.

Bad data (a missing column, NaN or inf, a non-numeric column, too few rows, nothing
but constant columns) is a user error: one line on stderr, exit status 2. Warnings
(a constant column dropped, a non-numeric column left out) are one line each on stderr.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from exprforge.cli import UserError, _jsonable, _progress_bar

SELECTIONS = ("best", "accuracy", "score")   # regressor.SELECTIONS; importing it loads
                                             # scikit-learn, too slow for every command
_TINY = 1e-30                                # loss floor on log-scale plots
_SAME_RUN = ("data_sha256", "target", "features", "ops", "seed", "population", "max_size")


# --- shared: reading the CSV, options, run directories ---------------------------------

def _add_search_options(p):
    p.add_argument("--ops", help="comma-separated op names (default: add, sub, mul, div, "
                                 "sin, cos, exp, log)")
    p.add_argument("--time-budget", "--timeout", dest="time_budget", type=float,
                   metavar="S", help="search time limit in seconds")
    p.add_argument("--generations", type=int, help="default 40")
    p.add_argument("--population", type=int, help="default 200")
    p.add_argument("--max-size", type=int, help="largest formula in nodes (default 30)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="run directory (default: under the kernel store)")


def _regressor_params(args) -> dict:
    """SymbolicRegressor parameters the user gave (the others keep its defaults)."""
    params = {"random_state": args.seed}
    if args.ops is not None:
        params["ops"] = tuple(_name_list(args.ops, "op"))
    for name in ("time_budget", "generations", "population", "max_size"):
        if getattr(args, name) is not None:
            params[name] = getattr(args, name)
    return params


def _read_csv(path: str):
    import pandas as pd
    try:
        df = pd.read_csv(path)
    except FileNotFoundError:
        raise UserError(f"no such file: {path}") from None
    except pd.errors.EmptyDataError:
        raise UserError(f"{path} is empty") from None
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise UserError(f"cannot read {path} as CSV: {_one_line(e)}") from None
    if len(df) == 0:
        raise UserError(f"{path} has a header but no rows")
    df.columns = [str(c) for c in df.columns]
    return df


def _one_line(e) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _check_columns(df, names, path, what="column") -> None:
    missing = [n for n in names if n not in df.columns]
    if missing:
        raise UserError(f"no {what} {', '.join(map(repr, missing))} in {path}; its columns: "
                        f"{', '.join(df.columns)}")


def _name_list(text: str, what: str = "column") -> list[str]:
    names = [c.strip() for c in text.split(",") if c.strip()]
    if not names:
        raise UserError(f"empty {what} list {text!r}")
    return names


def _is_number_column(series) -> bool:
    import pandas as pd
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _other_numeric_columns(df, exclude, path: str, what: str) -> list[str]:
    """Every numeric column not in `exclude`: a user error when there is none, else the
    non-numeric ones left out are named in a warning."""
    others = [c for c in df.columns if c not in exclude]
    numeric = [c for c in others if _is_number_column(df[c])]
    if not numeric:
        raise UserError(f"no numeric {what} column in {path}; its columns: "
                        f"{', '.join(df.columns)}")
    for c in others:
        if c not in numeric:
            _warn(f"column {c!r} is not numeric ({df[c].dtype}): left out")
    return numeric


def _warn(message: str) -> None:
    print(f"exprforge: warning: {_one_line(message)}", file=sys.stderr)


class _Warnings:
    """Warnings raised inside (a constant column dropped, ...) as one line each on stderr."""

    def __enter__(self):
        self._catch = warnings.catch_warnings(record=True)
        self._caught = self._catch.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, kind, value, tb):
        self._catch.__exit__(kind, value, tb)
        if kind is None:              # an error is reported alone, in its one line
            for message in dict.fromkeys(str(w.message) for w in self._caught):
                _warn(message)
        return False


class _Progress:
    """The search's progress callback: remembers the first and last generation reported
    (a resumed run starts past 1) and draws a bar when stderr is a terminal."""

    def __init__(self, label: str):
        self.first = self.last = self.total = None
        self.bar = _progress_bar(label) if sys.stderr.isatty() else None

    def __call__(self, generation, total, summary):
        self.first = generation if self.first is None else self.first
        self.last, self.total = generation, total
        if self.bar:
            self.bar(generation, total, summary)

    def close(self):
        if self.bar and self.last is not None and self.last < self.total:
            print(file=sys.stderr)   # the search stopped early: end the bar's line


def _run_dir(args, command: str) -> Path:
    from exprforge.runs import default_run_dir
    return Path(args.out) if args.out else default_run_dir(command, Path(args.data).stem)


def _make_dir(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the run directory {run_dir}: "
                        f"{e.strerror or _one_line(e)}") from None


def _write_json(path: Path, value) -> None:
    path.write_text(json.dumps(_jsonable(value), indent=1, default=_plain) + "\n")


def _plain_json(value):
    """`value` made of JSON types only (what _write_json would write)."""
    return json.loads(json.dumps(_jsonable(value), default=_plain))


def _plain(value):
    """json.dumps' fallback: NumPy scalars and arrays, then text (e.g. SymPy)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _write_front(run_dir: Path, regressor, suffix: str, title: str) -> list[str]:
    """hall_of_fame{suffix}.csv and pareto{suffix}.png of a fitted SymbolicRegressor."""
    from exprforge.runs import plot_front
    table = regressor.equations_.copy()
    table["sympy"] = table["sympy"].map(str)
    name = f"hall_of_fame{suffix}.csv"
    table[["complexity", "loss", "equation", "score", "sympy"]].to_csv(run_dir / name,
                                                                         index=False)
    written = [name]
    if plot_front(run_dir / f"pareto{suffix}.png", table["complexity"].tolist(),
                  [max(v, _TINY) for v in table["loss"]], xlabel="complexity (nodes)",
                  ylabel="loss (MSE / variance)", title=title, chosen=regressor.best_index_):
        written.append(f"pareto{suffix}.png")
    return written


def _front_rows(regressor) -> list[dict]:
    return [{"complexity": int(r.complexity), "loss": float(r.loss), "equation": r.equation,
             "score": float(r.score)} for r in regressor.equations_.itertuples()]


def _show_front(front, chosen: int) -> list[str]:
    lines = ["  complexity        loss   score  equation"]
    for i, r in enumerate(front):
        mark = "*" if i == chosen else " "
        score = r["score"] or 0.0               # no "-0.00"
        lines.append(f"{mark} {r['complexity']:10d}  {_g(r['loss']):>10}  {score:6.2f}  "
                     f"{r['equation']}")
    return lines


def _g(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --- regress ------------------------------------------------------------------------------

def _add_regress(p):
    p.add_argument("data", metavar="DATA.csv", help="a CSV file with a header row")
    p.add_argument("--target", required=True, metavar="COL", help="the column to explain")
    p.add_argument("--features", metavar="A,B,...",
                   help="comma-separated feature columns (default: every other numeric column)")
    _add_search_options(p)
    who = p.add_mutually_exclusive_group()
    who.add_argument("--workers", type=int, help="evaluate on N local processes")
    who.add_argument("--scheduler", help="evaluate on a Dask cluster: tcp://HOST:PORT")
    p.add_argument("--selection", choices=SELECTIONS, default="best",
                   help="which front member is the model: best (default), accuracy, score")
    p.add_argument("--noise-std", type=float, metavar="S",
                   help="the standard deviation of the noise in the target, when known: "
                        "constants may then snap to simple values that fit to that level")
    p.add_argument("--resume", action="store_true",
                   help="continue the search from --out DIR's checkpoint (same settings)")


def run_regress(args) -> dict:
    if args.workers is not None and args.workers < 1:
        raise UserError("--workers must be at least 1")
    if args.resume and not args.out:
        raise UserError("--resume needs --out DIR (the run directory holding the checkpoint)")
    df = _read_csv(args.data)
    _check_columns(df, [args.target], args.data)
    if args.features:
        features = _name_list(args.features)
        _check_columns(df, features, args.data)
        if args.target in features:
            raise UserError(f"the target {args.target!r} cannot also be a feature")
    else:
        features = _other_numeric_columns(df, [args.target], args.data, "feature")
    from exprforge.regressor import SymbolicRegressor
    params = {**_regressor_params(args), "model_selection": args.selection,
              "workers": args.scheduler or args.workers, "noise_std": args.noise_std}
    reg = SymbolicRegressor(**params)
    run_dir = _run_dir(args, "regress")
    config = {"command": "regress", "data": str(args.data),
              "data_sha256": _file_digest(args.data), "target": args.target,
              "features": features, "seed": args.seed, "resume": args.resume,
              "scheduler": args.scheduler,
              **{k: v for k, v in reg.get_params().items() if k not in ("random_state",)}}
    checkpoint = run_dir / "checkpoint.pkl"
    if args.resume:
        _check_resumable(run_dir, checkpoint, config)
    elif checkpoint.exists():     # a new run in an old directory: its checkpoint goes
        checkpoint.unlink()
    created = not run_dir.exists()
    _make_dir(run_dir)
    _write_json(run_dir / "config.json", config)
    progress = _Progress("regress")
    began = time.monotonic()
    try:
        with _Warnings():
            reg.fit(df[features], df[args.target], checkpoint=str(checkpoint),
                    resume=args.resume, progress=progress)
    except (ValueError, ConnectionError) as e:
        if created and not checkpoint.exists():   # nothing ran: leave no directory behind
            (run_dir / "config.json").unlink()
            run_dir.rmdir()
        raise UserError(_one_line(e)) from None
    finally:
        progress.close()
    seconds = time.monotonic() - began
    return _regress_result(reg, df, args, features, run_dir, progress, seconds)


def _check_resumable(run_dir: Path, checkpoint: Path, config: dict) -> None:
    from exprforge.evolve.search import load_checkpoint
    if not checkpoint.exists():
        raise UserError(f"no checkpoint.pkl in {run_dir} to resume from")
    try:
        load_checkpoint(checkpoint)
        before = json.loads((run_dir / "config.json").read_text())
    except OSError:
        raise UserError(f"cannot resume: no readable config.json in {run_dir} to check "
                        "the settings against") from None
    except ValueError as e:
        raise UserError(f"cannot resume: {_one_line(e)}") from None
    changed = [k for k in _SAME_RUN if k in before and _jsonable(config[k]) != before[k]]
    if changed:
        raise UserError(f"cannot resume: {', '.join(changed)} changed since the run in "
                        f"{run_dir} (only --generations and --time-budget may change)")


def _regress_result(reg, df, args, features, run_dir, progress, seconds) -> dict:
    from exprforge.engine.printing import to_text
    best = reg.equations_.iloc[reg.best_index_]
    model = {"target": args.target, "features": features, "used_features": reg.used_features_,
             "equation": str(best["sympy"]), "equation_short": best["equation"],
             "expr": to_text(reg.expr_), "loss": float(best["loss"]),
             "complexity": int(best["complexity"]),
             "r2": float(reg.score(df[features], df[args.target])),
             "selection": args.selection, "stopped": reg.stopped_,
             "seconds": round(seconds, 3), "evaluations": int(reg.n_evals_),
             "generation": progress.last if progress.last is not None else
             _checkpoint_generation(run_dir / "checkpoint.pkl"),
             "resumed_from": progress.first if args.resume else None}
    _write_json(run_dir / "model.json", model)
    files = ["config.json", "checkpoint.pkl", "model.json"] + \
        _write_front(run_dir, reg, "", f"{args.target}: Pareto front")
    return {**model, "front": _front_rows(reg), "chosen_index": int(reg.best_index_),
            "run_dir": str(run_dir), "files": sorted(f for f in files
                                                      if (run_dir / f).exists())}


def _checkpoint_generation(path: Path) -> int:
    """The last generation a checkpoint holds (0: none was run)."""
    from exprforge.evolve.search import load_checkpoint
    try:
        return int(load_checkpoint(path)["generation"])
    except (ValueError, KeyError):
        return 0


def show_regress(r: dict) -> str:
    lines = [f"{r['target']} = {r['equation_short']}",
             f"loss {_g(r['loss'])}   R^2 {r['r2']:.6f}   complexity {r['complexity']}   "
             f"(selection: {r['selection']})",
             f"{r['generation']} generations, {r['evaluations']} formulas scored, "
             f"{r['seconds']:.1f} s, stopped: {r['stopped']}", "",
             "Pareto front (* the model):", *_show_front(r["front"], r["chosen_index"]), "",
             f"run directory: {r['run_dir']}"]
    return "\n".join(lines)


# --- discover-ode -------------------------------------------------------------------------

def _add_discover_ode(p):
    p.add_argument("data", metavar="TRAJ.csv", help="a CSV file with a header row")
    p.add_argument("--time", required=True, metavar="COL", help="the time column")
    p.add_argument("--states", metavar="X,Y,...",
                   help="comma-separated state columns (default: every other numeric "
                        "column but the trajectory column)")
    p.add_argument("--trajectory", metavar="COL",
                   help="a column whose value tells which trajectory a row belongs to")
    p.add_argument("--derivative", choices=("auto", "savgol", "spline", "finite"),
                   default="auto", help="how dX/dt is estimated (default auto)")
    _add_search_options(p)


def run_discover_ode(args) -> dict:
    df = _read_csv(args.data)
    _check_columns(df, [args.time], args.data, "time column")
    if args.trajectory is not None:
        _check_columns(df, [args.trajectory], args.data, "trajectory column")
        if args.trajectory == args.time:
            raise UserError("--trajectory and --time name the same column")
    special = [args.time] + ([args.trajectory] if args.trajectory else [])
    if args.states:
        states = _name_list(args.states)
        _check_columns(df, states, args.data)
        overlap = [s for s in states if s in special]
        if overlap:
            raise UserError(f"{', '.join(map(repr, overlap))} cannot be a state: it is the "
                            "time or trajectory column")
    else:
        states = _other_numeric_columns(df, special, args.data, "state")
    for c in [args.time] + states:
        if not _is_number_column(df[c]):
            raise UserError(f"column {c!r} is not numeric ({df[c].dtype})")
    try:
        from exprforge.ode import discover_ode
    except ImportError as e:
        raise UserError(f"discover-ode is not available in this build ({e})") from None
    from exprforge.engine.printing import to_text
    params = _regressor_params(args)
    seed = params.pop("random_state")
    time_budget = params.pop("time_budget", None)
    ops = params.pop("ops", None)
    if ops is not None:
        params["ops"] = ops
    run_dir = _run_dir(args, "discover-ode")
    config = {"command": "discover-ode", "data": str(args.data),
              "data_sha256": _file_digest(args.data), "time": args.time, "states": states,
              "trajectory": args.trajectory, "derivative": args.derivative, "seed": seed,
              "time_budget": time_budget,
              **params}
    trajectory = df[args.trajectory].to_numpy() if args.trajectory else None
    created = not run_dir.exists()
    _make_dir(run_dir)
    _write_json(run_dir / "config.json", config)
    began = time.monotonic()
    try:
        with _Warnings():
            model = discover_ode(df[args.time].to_numpy(np.float64),
                                 df[states].to_numpy(np.float64), names=list(states),
                                 trajectory=trajectory, derivative=args.derivative,
                                 time_budget=time_budget, random_state=seed, **params)
    except ValueError as e:
        if created:                                # nothing ran: leave no directory behind
            (run_dir / "config.json").unlink()
            run_dir.rmdir()
        raise UserError(_one_line(e)) from None
    seconds = time.monotonic() - began
    _write_json(run_dir / "equations.json", model.to_dict())
    files = ["config.json", "equations.json"]
    per_state = {}
    for name in model.names:
        reg = model.regressors[name]
        files += _write_front(run_dir, reg, f"_{_file_label(name)}",
                              f"d{name}/d{args.time}: Pareto front")
        best = reg.equations_.iloc[reg.best_index_]
        per_state[name] = {"equation": str(model.equations[name]),
                           "equation_short": best["equation"],
                           "expr": to_text(model.exprs[name]),
                           "loss": float(best["loss"]), "complexity": int(best["complexity"]),
                           "front": _front_rows(reg), "chosen_index": int(reg.best_index_)}
    return {"time": args.time, "states": list(model.names), "trajectory": args.trajectory,
            "equations": {n: s["equation"] for n, s in per_state.items()},
            "fits": per_state, "model": _plain_json(model.to_dict()),
            "seconds": round(seconds, 3),
            "run_dir": str(run_dir), "files": files}


def _file_label(name: str) -> str:
    import re
    return re.sub(r"[^\w.-]", "_", name)


def show_discover_ode(r: dict) -> str:
    lines = []
    for name, fit in r["fits"].items():
        lines.append(f"d{name}/d{r['time']} = {fit['equation_short']}   (loss {_g(fit['loss'])}, "
                     f"complexity {fit['complexity']})")
    lines += [f"{len(r['states'])} states in {r['seconds']:.1f} s", "",
              f"run directory: {r['run_dir']}"]
    return "\n".join(lines)


COMMANDS = {
    "regress": (_add_regress, run_regress, show_regress,
                "symbolic regression: a formula for one CSV column in terms of the others"),
    "discover-ode": (_add_discover_ode, run_discover_ode, show_discover_ode,
                     "discover an ODE system dx/dt = f(x) from trajectories in a CSV"),
}
