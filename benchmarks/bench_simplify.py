"""exprforge.simplify vs sympy.simplify (and sympy.cse for DAG cost), side by side in one run.

Run:  .venv/bin/python benchmarks/bench_simplify.py [--data DIR] [--random N] [--seed S]
          [--timeout T] [--limit L] [--workers W] [--quick]
      -> markdown tables on stdout + benchmarks/results/simplify.json

Inputs (the same for every tool):
- every FPBench core the FPCore reader takes (DIR default: ../shared/data/fpbench next to
  the repository), its body only, as float64 (binary32 cores are retyped to float64);
- N random expressions (default 300) from numpy's Generator with a fixed seed: ops
  add sub mul div neg sqrt exp log sin cos pow abs, small integer and one-decimal
  literals, 1-3 variables, 2-5 levels of ops (a pow's exponent is a literal half the time).

Tools, each call timed with perf_counter around the call only, inside a worker process:
- exprforge: rewrite.simplify.simplify_full(e, cost="cycles", timeout=T) (defaults, no
  assumptions: the result must hold for every real input);
- exprforge.finite: the same with assume_finite=True (every variable finite: what SymPy
  assumes of a real symbol, and true of every sampled point, so x - x may become 0);
- sympy.simplify: simplify(to_sympy(e)), converted back with from_sympy;
- sympy.cse: cse(to_sympy(e)), its replacements substituted back as shared nodes of one
  exprforge Expr (Exprs are hash-consed, so the input's DAG cost already counts repeated
  subtrees once: the table reports the input's tree and DAG costs next to cse's DAG cost).
Every task runs in a pool of spawned worker processes under a hard wall limit L: a task
that overruns is killed with its worker (recorded as a timeout, time = L), so a SymPy hang
cannot stall the run. Workers warm up (egglog rule compilation, SymPy caches) before
taking tasks, so no tool pays a one-off start-up inside a measured call.

Costs: rewrite.cost.cost(expr, "cycles") on the DAG. A tool that fails or times out is
taken to return its input (ratio 1, cost not decreased) in the summaries. from_sympy
brings SymPy's x**2 back as pow (38 cycles against 1 for x*x), so every cost is also
given after lowering literal integer powers to multiplications ("powi" columns), which
is what a compiler does with them; the head-to-head is reported both ways.

Soundness: each output is compared with its input with engine.evaluate.exact (mpmath
oracle, 100 bits, rounded to float64) at seeded points: 32 with every variable uniform in
[-3, 3], 32 log-uniform in [1e-3, 1e3], and for FPBench cores also up to 32 inside the
core's :pre. A point is *unsound* where the input is finite and the output is not within
relative 1e-9 (a NaN or inf output included), and that disagreement survives
re-evaluation: a point counts once both sides are stable between two of 400, 1600 and
6400 bits and still disagree; it is dropped if they agree at some precision (the 100-bit
value of 1 - 1/(1 + exp(-415)) is 0) and counted as *unresolved* if neither happens
(sin of a 10**500 argument). A point *changes the domain* where the input is NaN and the
output finite, at 100 and at 400 bits (SymPy cancels x/x, for instance). Points where the
oracle raises or runs past its time or memory limit are skipped (exp(exp(exp(20))) needs
a 10**8-bit exponent).
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import importlib.metadata
import json
import math
import multiprocessing as mp
import os
import platform
import signal
import subprocess
import sys
import time
from fractions import Fraction
from multiprocessing.connection import wait
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "fpbench"
OUT_JSON = ROOT / "benchmarks" / "results" / "simplify.json"
HOW_TO_GET = """FPBench data not found at {path}; going on with the random inputs only.
Get it from https://github.com/FPBench/FPBench (MIT): copy the folder benchmarks/
(the *.fpcore files) there, or pass --data DIR:
    git clone --depth 1 https://github.com/FPBench/FPBench /tmp/FPBench
    .venv/bin/python benchmarks/bench_simplify.py --data /tmp/FPBench/benchmarks"""

TOOLS = ("exprforge", "exprforge.finite", "sympy.simplify", "sympy.cse")
EXPRFORGE = ("exprforge", "exprforge.finite")
RANDOM_OPS = ("add", "sub", "mul", "div", "neg", "sqrt", "exp", "log", "sin", "cos", "pow", "abs")
RANDOM_VARS = ("x", "y", "z")
RTOL = 1e-9
PREC, CONFIRM_PRECS = 100, (400, 1600, 6400)
ORACLE_ALL_S, ORACLE_POINT_S = 20.0, 1.0  # oracle time limits, all points / one point


# --- inputs ------------------------------------------------------------------------------

def random_literal(rng):
    from exprforge.engine.expr import const
    if rng.random() < 0.6:
        return const(int(rng.integers(-5, 6)))
    return const(Fraction(int(rng.choice([-1, 1]) * rng.integers(1, 51)), 10))


def random_expr(rng):
    """One expression: 2-5 levels of ops over 1-3 float64 variables."""
    from exprforge.engine.expr import const, make, var
    from exprforge.engine.ops import OPS
    levels, nvars = int(rng.integers(2, 6)), int(rng.integers(1, 4))
    names = [var(n, "float64") for n in RANDOM_VARS[:nvars]]

    def leaf():
        return names[int(rng.integers(nvars))] if rng.random() < 0.7 else random_literal(rng)

    def grow(depth, top=False):
        if depth == 0 or (not top and rng.random() < 0.25):
            return leaf()
        op = RANDOM_OPS[int(rng.integers(len(RANDOM_OPS)))]
        if op == "pow" and rng.random() < 0.5:
            exponent = const(Fraction(str(rng.choice(["2", "3", "-1", "0.5", "-2", "1.5"]))))
            return make(op, (grow(depth - 1), exponent))
        return make(op, [grow(depth - 1) for _ in range(OPS[op].arity)])

    return grow(levels, top=True)


def random_inputs(n: int, seed: int) -> list:
    """n distinct random expressions with 2-5 levels of ops and at least one variable."""
    rng = np.random.default_rng(seed)
    out, seen = [], set()
    while len(out) < n:
        e = random_expr(rng)
        if e.is_weak or not e.variables() or not 3 <= e.depth() <= 6 or e in seen:
            continue
        seen.add(e)
        out.append(e)
    return out


def fpbench_inputs(data: Path) -> tuple[list, int]:
    """[(label, core)] for every core the reader takes, and how many it refused."""
    from exprforge.engine.fpcore import read_fpcores_lenient
    cores, refused = [], 0
    for path in sorted(data.glob("*.fpcore")):
        parsed, errors = read_fpcores_lenient(path.read_text(encoding="utf-8"))
        refused += len(errors)
        cores += [(f"{path.name}#{i} {c.name}", c) for i, c in enumerate(parsed)]
    return cores, refused


def domain_points(core, n: int, rng) -> dict | None:
    """Up to n points inside the core's :pre (rejection from 4096 draws), float64."""
    from exprforge.engine.evaluate import evaluate
    draws = 4096
    env = {}
    for name in core.args:
        lo, hi = core.domain[name]
        mag = 10.0 ** rng.uniform(-3, 3, draws)
        env[name] = (rng.uniform(lo, hi, draws) if math.isfinite(lo) and math.isfinite(hi)
                     else lo + mag if math.isfinite(lo) else hi - mag if math.isfinite(hi)
                     else mag * rng.choice([-1.0, 1.0], draws))
    keep = np.ones(draws, dtype=bool)
    if core.pre is not None:
        keep = np.broadcast_to(evaluate(core.pre, env, dtype="float64"), (draws,))
    idx = np.flatnonzero(keep)[:n]
    return {k: v[idx] for k, v in env.items()} if len(idx) else None


def sample_points(names, n: int, rng, core=None) -> dict:
    """{var: float64 array}: n uniform in [-3, 3], n log-uniform in [1e-3, 1e3], and up to
    n from the core's domain."""
    env = {v: np.concatenate([rng.uniform(-3, 3, n), 10.0 ** rng.uniform(-3, 3, n)])
           for v in names}
    inside = domain_points(core, n, rng) if core is not None and names else None
    if inside:
        env = {v: np.concatenate([env[v], inside[v]]) for v in names}
    return env


# --- worker side -------------------------------------------------------------------------

def _warm_up():
    import sympy as sp

    from exprforge.engine.parse import parse
    from exprforge.rewrite.simplify import simplify_full
    simplify_full(parse("(x * 1 + 0) * (y + 2 * 3) - sin(x)**2"), timeout=1.0)
    x = sp.Symbol("x", real=True)
    sp.simplify(sp.sin(x) ** 2 + sp.cos(x) ** 2 + (x ** 2 - 1) / (x - 1))
    sp.cse(sp.exp(x + 1) * sp.exp(x + 1) + x)


def task_exprforge(expr, timeout, assume_finite=False):
    from exprforge.rewrite.simplify import simplify_full
    t0 = time.perf_counter()
    r = simplify_full(expr, cost="cycles", timeout=timeout, assume_finite=assume_finite)
    seconds = time.perf_counter() - t0
    return {"expr": r.expr, "seconds": seconds, "stop_reason": r.stop_reason,
            "iterations": r.iterations, "nodes": r.nodes, "own_seconds": r.seconds,
            "cost_before": r.cost_before, "cost_after": r.cost_after}


def task_sympy_simplify(expr):
    import sympy as sp

    from exprforge.engine.sympy_bridge import from_sympy, to_sympy
    s = to_sympy(expr)
    t0 = time.perf_counter()
    out = sp.simplify(s)
    seconds = time.perf_counter() - t0
    row = {"seconds": seconds, "sympy_out": _short(out)}
    try:
        row["expr"] = from_sympy(out, dtype="float64")
    except Exception as e:  # what SymPy returned has no exprforge form
        row["error"] = f"from_sympy: {type(e).__name__}: {e}"
    return row


def task_sympy_cse(expr):
    import sympy as sp

    from exprforge.engine.sympy_bridge import from_sympy, to_sympy
    s = to_sympy(expr)
    t0 = time.perf_counter()
    replacements, reduced = sp.cse(s, symbols=sp.numbered_symbols("cse_tmp_"))
    seconds = time.perf_counter() - t0
    row = {"seconds": seconds, "replacements": len(replacements)}
    try:
        shared = {}
        for sym, value in replacements:  # each may use the ones before it
            shared[sym.name] = from_sympy(value, dtype="float64", vars=shared)
        row["expr"] = from_sympy(reduced[0], dtype="float64", vars=shared)
    except Exception as e:
        row["error"] = f"from_sympy: {type(e).__name__}: {e}"
    return row


class _Slow(Exception):
    """The oracle took too long at a point (exp(exp(exp(20))) has a 10**8-bit exponent)."""


@contextlib.contextmanager
def _time_limit(seconds):
    def alarm(signum, frame):
        raise _Slow
    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


_ORACLE_ERRORS = (OverflowError, ValueError, ZeroDivisionError, MemoryError, _Slow)


def _exact(expr, env, prec, idx=None):
    """(float64 values, mask of points where the oracle raised or was too slow), at the
    points idx (default all; the others are NaN and not failed)."""
    from exprforge.engine.evaluate import exact
    n = len(next(iter(env.values()))) if env else 1
    idx = np.arange(n) if idx is None else np.asarray(idx, dtype=int)
    values, failed = np.full(n, np.nan), np.zeros(n, dtype=bool)
    if not len(idx):
        return values, failed
    try:
        with _time_limit(ORACLE_ALL_S):
            sub = {k: v[idx] for k, v in env.items()}
            values[idx] = np.broadcast_to(exact(expr, sub, dtype="float64", prec=prec),
                                          (len(idx),))
        return values, failed
    except _ORACLE_ERRORS:
        pass  # some point has no value the oracle can reach: one at a time
    for i in idx:
        try:
            with _time_limit(ORACLE_POINT_S):
                values[i] = exact(expr, {k: v[i:i + 1] for k, v in env.items()},
                                  dtype="float64", prec=prec).reshape(-1)[0]
        except _ORACLE_ERRORS:
            failed[i] = True
    return values, failed


def _same(x, y):
    """Equal within RTOL, or both the same non-finite value."""
    with np.errstate(all="ignore"):
        return (np.isnan(x) & np.isnan(y)) | (x == y) | (
            np.isfinite(y) & (np.abs(x - y) <= RTOL * np.maximum(np.abs(x), np.abs(y))))


def task_check(expr, outputs, env):
    """Per tool: points compared, unsound points, domain-changing points, first example."""
    a, a_failed = _exact(expr, env, PREC)
    result = {}
    for tool, out in outputs.items():
        try:
            result[tool] = _compare(expr, out, env, a, a_failed)
        except Exception as e:  # reported per tool
            result[tool] = {"error": f"{type(e).__name__}: {_short(e)}"}
    return result


def _escalate(expr, out, env, i):
    """Decide a point where input and output disagree at PREC bits: 'sound' once they
    agree (or the input is not finite) at a higher precision, 'unsound' once both sides
    are stable between two precisions and still disagree, else 'unresolved' (sin of a
    10**200 argument needs more digits than any of these precisions)."""
    point = {k: v[i:i + 1] for k, v in env.items()}
    prev = None
    for prec in CONFIRM_PRECS:
        (a, fa), (b, fb) = _exact(expr, point, prec), _exact(out, point, prec)
        if fa[0] or fb[0]:
            return "unresolved", None
        if not np.isfinite(a[0]) or _same(a, b)[0]:
            return "sound", None
        if prev is not None and _same(prev[0], a)[0] and _same(prev[1], b)[0]:
            return "unsound", (float(a[0]), float(b[0]), prec)
        prev = (a, b)
    return "unresolved", None


def _compare(expr, out, env, a, a_failed) -> dict:
    """One output against the input values a (a_failed: where the oracle gave up)."""
    b, b_failed = _exact(out, env, PREC, np.flatnonzero(~a_failed))
    valid = ~a_failed & ~b_failed
    row = {"points": int(valid.sum()), "oracle_failed": int((a_failed | b_failed).sum()),
           "unsound_points": 0, "unresolved_points": 0, "domain_points": 0}
    for i in np.flatnonzero(valid & np.isfinite(a) & ~_same(a, b)):
        verdict, values = _escalate(expr, out, env, i)
        if verdict == "sound":
            continue
        row[verdict + "_points"] += 1
        if verdict == "unsound" and "unsound_example" not in row:
            row["unsound_example"] = {"point": {k: float(v[i]) for k, v in env.items()},
                                      "input": values[0], "output": values[1],
                                      "prec": values[2]}
    domain = np.flatnonzero(valid & np.isnan(a) & np.isfinite(b))
    if len(domain):  # confirmed at a higher precision
        a2, fa = _exact(expr, env, CONFIRM_PRECS[0], domain)
        b2, fb = _exact(out, env, CONFIRM_PRECS[0], domain)
        domain = [i for i in domain if not (fa[i] or fb[i]) and np.isnan(a2[i])
                  and np.isfinite(b2[i])]
        row["domain_points"] = len(domain)
        if domain:
            i = domain[0]
            row["domain_example"] = {"point": {k: float(v[i]) for k, v in env.items()},
                                     "input": float(a2[i]), "output": float(b2[i])}
    return row


TASKS = {"exprforge": task_exprforge,
         "exprforge.finite": lambda **kw: task_exprforge(assume_finite=True, **kw),
         "sympy.simplify": task_sympy_simplify,
         "sympy.cse": task_sympy_cse, "check": task_check}


def _short(s, limit=300) -> str:
    text = str(s)
    return text if len(text) <= limit else text[:limit] + "..."


def worker_main(conn, mem_gb):
    sys.setrecursionlimit(20_000)
    if mem_gb:  # a runaway call (SymPy, or the oracle's 10**9-bit integers) fails alone
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (int(mem_gb * 2**30), int(mem_gb * 2**30)))
    _warm_up()
    conn.send("ready")
    while True:
        msg = conn.recv()
        if msg is None:
            return
        key, kind, payload = msg
        try:
            result = TASKS[kind](**payload)
        except Exception as e:  # reported per task; the worker goes on
            result = {"error": f"{type(e).__name__}: {_short(e)}"}
        conn.send((key, result))


# --- parent side: a pool whose tasks can be killed one by one ---------------------------

class KillablePool:
    """Spawned workers, one task each at a time; a task past its wall limit is killed
    together with its worker, which is replaced."""

    def __init__(self, workers: int, mem_gb: float = 0, start_limit: float = 600.0):
        self.ctx = mp.get_context("spawn")
        self.mem_gb = mem_gb
        self.start_limit = start_limit
        self.slots = [self._start() for _ in range(workers)]
        self.restarts = 0

    def _start(self) -> dict:
        parent, child = self.ctx.Pipe()
        proc = self.ctx.Process(target=worker_main, args=(child, self.mem_gb), daemon=True)
        proc.start()
        child.close()
        return {"proc": proc, "conn": parent, "ready": False, "task": None,
                "deadline": time.monotonic() + self.start_limit}

    def _replace(self, i):
        slot = self.slots[i]
        slot["proc"].kill()  # this worker only, by the process we started
        slot["proc"].join()
        slot["conn"].close()
        self.slots[i] = self._start()
        self.restarts += 1

    def run(self, tasks, progress=None) -> dict:
        """tasks: [(key, kind, payload, limit)] -> {key: result}."""
        pending, results = collections.deque(tasks), {}
        while pending or any(s["task"] for s in self.slots):
            for s in self.slots:
                if s["ready"] and s["task"] is None and pending:
                    key, kind, payload, limit = pending.popleft()
                    s["conn"].send((key, kind, payload))
                    s["task"], s["deadline"] = (key, limit), time.monotonic() + limit
            waiting = [s["deadline"] for s in self.slots if s["task"] or not s["ready"]]
            timeout = max(0.0, min(waiting) - time.monotonic()) if waiting else None
            for conn in wait([s["conn"] for s in self.slots], timeout):
                i = next(j for j, s in enumerate(self.slots) if s["conn"] is conn)
                s = self.slots[i]
                try:
                    msg = conn.recv()
                except (EOFError, OSError):
                    code = s["proc"].exitcode
                    if s["task"] is None:
                        raise RuntimeError(f"a worker died while starting (exit code {code})")
                    results[s["task"][0]] = {"error": f"worker died (exit code {code})"}
                    self._replace(i)
                    continue
                if msg == "ready":
                    s["ready"] = True
                    continue
                results[msg[0]] = msg[1]
                s["task"] = None
                if progress:
                    progress(len(results))
            now = time.monotonic()
            for i, s in enumerate(self.slots):
                if now <= s["deadline"]:
                    continue
                if s["task"] is None and not s["ready"]:
                    raise RuntimeError("a worker did not start within the start-up limit")
                if s["task"] is not None:
                    key, limit = s["task"]
                    results[key] = {"timeout": True, "seconds": limit}
                    self._replace(i)
        return results

    def close(self):
        for s in self.slots:
            try:
                s["conn"].send(None)
            except (OSError, BrokenPipeError):
                pass
            s["proc"].join(timeout=10)
            if s["proc"].is_alive():
                s["proc"].kill()


# --- costs -------------------------------------------------------------------------------

def lower_powi(e):
    """pow(x, n) for a literal integer 2 <= |n| <= 64 as multiplications (repeated
    squaring; 1 / that for n < 0), as a compiler lowers it. from_sympy returns SymPy's
    x**2 as pow (38 cycles), so SymPy outputs are also costed after this neutral lowering,
    applied alike to every input and output ("_powi" fields)."""
    from exprforge.engine.expr import const, make, rebuild

    def visit(node, args):
        if node.op != "pow" or args[1].op != "const" or isinstance(args[1].attr, str):
            return None
        n = Fraction(args[1].attr)
        if n.denominator != 1 or not 2 <= abs(n) <= 64:
            return None
        k, base, result = abs(int(n)), args[0], None
        while k:
            if k & 1:
                result = base if result is None else make("mul", (result, base))
            k >>= 1
            if k:
                base = make("mul", (base, base))
        return result if n > 0 else make("div", (const(1), result))
    return rebuild(e, visit)


def costs(e) -> dict:
    from exprforge.rewrite.cost import cost
    low = lower_powi(e)
    return {"cost": cost(e, "cycles"), "cost_powi": cost(low, "cycles")}


# --- summaries ---------------------------------------------------------------------------

def _share(flags) -> float | None:
    flags = list(flags)
    return round(sum(flags) / len(flags), 4) if flags else None


def _pct(values, q) -> float | None:
    return round(float(np.percentile(values, q)), 5) if len(values) else None


def summarize_tool(rows, tool, timeout) -> dict:
    rs = [r["tools"][tool] for r in rows]
    times = [t["seconds"] for t in rs if t.get("seconds") is not None]
    out = {
        "n": len(rs), "ok": sum(t.get("cost") is not None for t in rs),
        "timeouts": sum(bool(t.get("timeout")) for t in rs),
        "failures": sum(bool(t.get("error")) for t in rs),
        "median_s": _pct(times, 50), "p95_s": _pct(times, 95),
        "max_s": round(max(times), 5) if times else None,
    }
    for suffix in ("", "_powi"):
        pairs = [(r["cost_dag" + suffix], _out_cost(r, tool, suffix)) for r in rows]
        ratios = [b / a for a, b in pairs if a > 0]
        out["cost_decreased" + suffix] = _share(b < a for a, b in pairs)
        out["cost_increased" + suffix] = _share(b > a for a, b in pairs)
        out["mean_cost_ratio" + suffix] = round(float(np.mean(ratios)), 4) if ratios else None
    out.update({
        "unsound": sum(t.get("check", {}).get("unsound_points", 0) > 0 for t in rs),
        "changes_domain": sum(t.get("check", {}).get("domain_points", 0) > 0 for t in rs),
        "unresolved": sum(t.get("check", {}).get("unresolved_points", 0) > 0 for t in rs),
        "unchecked": sum(t.get("cost") is not None and "points" not in t.get("check", {})
                         for t in rs),
    })
    if tool in EXPRFORGE:
        out["stop_reasons"] = dict(collections.Counter(t.get("stop_reason", "none")
                                                       for t in rs).most_common())
        out["over_timeout"] = sum(t.get("seconds", 0) > timeout for t in rs)
    return out


def _out_cost(row, tool, suffix=""):
    """A tool's output cost; its input's when it failed or timed out."""
    t = row["tools"][tool]
    return t["cost" + suffix] if t.get("cost") is not None else row["cost_dag" + suffix]


def head_to_head(rows, summary, variant="exprforge") -> dict:
    out = {}
    for suffix in ("", "_powi"):
        xf = [_out_cost(r, variant, suffix) for r in rows]
        sy = [_out_cost(r, "sympy.simplify", suffix) for r in rows]
        guarded = [min(s, r["cost_dag" + suffix]) for s, r in zip(sy, rows)]  # SymPy, but
        both = [(a, b) for a, b, r in zip(xf, sy, rows)            # keeping the input when
                if r["tools"]["sympy.simplify"].get("cost") is not None]  # it is no cheaper
        cse = [_out_cost(r, "sympy.cse", suffix) for r in rows]
        out.update({
            "xf_le_sympy" + suffix: _share(a <= b for a, b in zip(xf, sy)),
            "xf_lt_sympy" + suffix: _share(a < b for a, b in zip(xf, sy)),
            "xf_gt_sympy" + suffix: _share(a > b for a, b in zip(xf, sy)),
            "xf_le_sympy_guarded" + suffix: _share(a <= b for a, b in zip(xf, guarded)),
            "xf_lt_sympy_guarded" + suffix: _share(a < b for a, b in zip(xf, guarded)),
            "xf_le_sympy_when_sympy_ok" + suffix: _share(a <= b for a, b in both),
            "xf_lt_sympy_when_sympy_ok" + suffix: _share(a < b for a, b in both),
            "xf_le_cse" + suffix: _share(a <= b for a, b in zip(xf, cse)),
            "mean_input_tree_cost" + suffix: round(float(np.mean(
                [r["cost_tree" + suffix] for r in rows])), 2),
            "mean_input_dag_cost" + suffix: round(float(np.mean(
                [r["cost_dag" + suffix] for r in rows])), 2),
            "mean_cse_dag_cost" + suffix: round(float(np.mean(cse)), 2),
            "mean_xf_dag_cost" + suffix: round(float(np.mean(xf)), 2),
        })
    out["n_sympy_ok"] = summary["sympy.simplify"]["ok"]
    m_xf, m_sy = summary[variant]["median_s"], summary["sympy.simplify"]["median_s"]
    out["time_ratio_median"] = round(m_sy / m_xf, 3) if m_xf and m_sy else None
    return out


def summarize(rows, timeout) -> dict:
    out = {}
    for subset in ("fpbench", "random", "all"):
        part = [r for r in rows if subset == "all" or r["source"] == subset]
        if not part:
            continue
        tools = {t: summarize_tool(part, t, timeout) for t in TOOLS}
        h2h = {}
        for variant in EXPRFORGE:
            h = h2h[variant] = head_to_head(part, tools, variant)
            h["goals"] = {
                "median_time_20x_lower": bool(h["time_ratio_median"]
                                              and h["time_ratio_median"] >= 20),
                "cost_le_sympy_on_90pct": h["xf_le_sympy"] >= 0.9,
                "cost_le_sympy_on_90pct_powi": h["xf_le_sympy_powi"] >= 0.9,
                "unsound_zero": tools[variant]["unsound"] == 0,
            }
        out[subset] = {"n": len(part), "tools": tools, "head_to_head": h2h}
    return out


def markdown(summary, config) -> str:
    def f(v, pct=False):
        if v is None:
            return "-"
        return f"{100 * v:.1f}%" if pct else (f"{v:.3g}" if isinstance(v, float) else str(v))
    lines = [f"exprforge.simplify (timeout {config['timeout']} s) vs sympy.simplify and "
             f"sympy.cse; hard limit {config['limit']} s per call; cycles cost model on the "
             "DAG; \"powi\": integer powers lowered to multiplications before costing", "",
             "| inputs | tool | n | timeouts | failures | median s | p95 s | cost decreased "
             "| mean cost ratio | ratio (powi) | unsound | changes domain |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for subset, s in summary.items():
        for tool, t in s["tools"].items():
            lines.append(f"| {subset} | {tool} | {t['n']} | {t['timeouts']} | {t['failures']} | "
                         f"{f(t['median_s'])} | {f(t['p95_s'])} | "
                         f"{f(t['cost_decreased'], True)} | {f(t['mean_cost_ratio'])} | "
                         f"{f(t['mean_cost_ratio_powi'])} | "
                         f"{t['unsound']} | {t['changes_domain']} |")
    lines += ["", "| inputs | exprforge | median time sympy / exprforge | cost <= sympy | "
              "< sympy | > sympy | <= sympy (powi) | < sympy (powi) | < sympy-or-input | "
              "<= cse | input cost tree / DAG | cse DAG | exprforge DAG |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
              "| ---: | ---: |"]
    for subset, s in summary.items():
        for variant, h in s["head_to_head"].items():
            lines.append(f"| {subset} | {variant} | {f(h['time_ratio_median'])}x | "
                         f"{f(h['xf_le_sympy'], True)} | {f(h['xf_lt_sympy'], True)} | "
                         f"{f(h['xf_gt_sympy'], True)} | {f(h['xf_le_sympy_powi'], True)} | "
                         f"{f(h['xf_lt_sympy_powi'], True)} | "
                         f"{f(h['xf_lt_sympy_guarded'], True)} | {f(h['xf_le_cse'], True)} | "
                         f"{h['mean_input_tree_cost']} / {h['mean_input_dag_cost']} | "
                         f"{h['mean_cse_dag_cost']} | {h['mean_xf_dag_cost']} |")
    return "\n".join(lines)


# --- run ---------------------------------------------------------------------------------

def versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("exprforge", "sympy", "egglog", "numpy", "mpmath"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    try:
        out["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, text=True,
                                           capture_output=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, text=True, capture_output=True).stdout.split("\n")
        out["git_modified"] = [line[3:] for line in dirty if line.strip()]
    except OSError:
        pass
    return out


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"platform": platform.platform(), "cpu": cpu, "cpus": os.cpu_count()}


def build_inputs(args) -> tuple[list, dict]:
    from exprforge.engine.expr import retype
    from exprforge.rewrite.cost import cost
    files = sorted(args.data.glob("*.fpcore")) if args.data.is_dir() else []
    if not files:
        print(HOW_TO_GET.format(path=args.data), file=sys.stderr)
    cores, refused = fpbench_inputs(args.data) if files else ([], 0)
    if args.quick:
        cores = cores[:40]
    inputs = [(label, "fpbench", retype(c.expr, "float64"), c) for label, c in cores]
    inputs += [(f"random#{i}", "random", e, None)
               for i, e in enumerate(random_inputs(args.random, args.seed))]
    rows = []
    for i, (label, source, e, core) in enumerate(inputs):
        rng = np.random.default_rng([args.seed, 1, i])
        rows.append({"id": label, "source": source, "expr": str(e),
                     "cost_tree": cost(e, "cycles", dag=False), "cost_dag": cost(e, "cycles"),
                     "cost_tree_powi": cost(lower_powi(e), "cycles", dag=False),
                     "cost_dag_powi": cost(lower_powi(e), "cycles"),
                     "_expr": e, "_env": sample_points(e.var_names(), args.points, rng, core),
                     "tools": {}})
    return rows, {"fpbench_parsed": len(cores), "fpbench_refused": refused}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--random", type=int, default=300, help="random expressions (default 300)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=1.0, help="exprforge's own time limit")
    ap.add_argument("--limit", type=float, default=10.0, help="hard wall limit per call")
    ap.add_argument("--check-limit", type=float, default=300.0,
                    help="hard wall limit per soundness check")
    ap.add_argument("--points", type=int, default=32, help="points per sampling scheme")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--mem-gb", type=float, default=6.0,
                    help="address-space limit per worker (0: none)")
    ap.add_argument("--quick", action="store_true", help="first 40 FPBench cores + 40 random")
    ap.add_argument("--out", type=Path, default=OUT_JSON)
    args = ap.parse_args(argv)
    if args.quick:
        args.random = min(args.random, 40)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                 "RAYON_NUM_THREADS"):
        os.environ.setdefault(name, "1")  # one core per worker: tools compete fairly
    started = time.perf_counter()
    rows, data_info = build_inputs(args)
    tty = sys.stderr.isatty()

    def progress(stage, total):
        return (lambda done: print(f"\r{stage}: {done}/{total}", end="", file=sys.stderr)) \
            if tty else None

    pool = KillablePool(args.workers, args.mem_gb)
    try:
        tasks = []
        for i, r in enumerate(rows):
            for tool in TOOLS:
                payload = {"expr": r["_expr"]}
                if tool in EXPRFORGE:
                    payload["timeout"] = args.timeout
                tasks.append(((i, tool), tool, payload, args.limit))
        t0 = time.perf_counter()
        results = pool.run(tasks, progress("simplify", len(tasks)))
        tool_seconds = time.perf_counter() - t0
        checks = []
        for (i, tool), res in sorted(results.items()):
            rows[i]["tools"][tool] = res
        for i, r in enumerate(rows):
            outs = {t: res["expr"] for t, res in r["tools"].items() if res.get("expr") is not None}
            checks.append((i, "check", {"expr": r["_expr"], "outputs": outs, "env": r["_env"]},
                           args.check_limit))
        t0 = time.perf_counter()
        verdicts = pool.run(checks, progress("\ncheck", len(checks)))
        check_seconds = time.perf_counter() - t0
        restarts = pool.restarts
    finally:
        pool.close()
    if tty:
        print(file=sys.stderr)
    for i, r in enumerate(rows):
        verdict = verdicts.get(i, {})
        for tool, res in r["tools"].items():
            out = res.pop("expr", None)
            if out is not None:
                res.update(costs(out))
                res["output"] = _short(out, 2000)
            if tool in verdict:
                res["check"] = verdict[tool]
            elif out is not None:
                res["check"] = {"error": verdict.get("error") or
                                ("timeout" if verdict.get("timeout") else "not checked")}
        del r["_expr"], r["_env"]
    summary = summarize(rows, args.timeout)
    config = {"seed": args.seed, "random": args.random, "quick": args.quick,
              "timeout": args.timeout, "limit": args.limit, "check_limit": args.check_limit,
              "points_per_scheme": args.points, "rtol": RTOL, "oracle_prec": PREC,
              "confirm_precs": CONFIRM_PRECS, "oracle_limits_s": [ORACLE_ALL_S, ORACLE_POINT_S],
              "workers": args.workers, "mem_gb": args.mem_gb, "cost_model": "cycles",
              "data": str(args.data), **data_info, "random_ops": RANDOM_OPS,
              "worker_restarts": restarts, "tool_seconds": round(tool_seconds, 1),
              "check_seconds": round(check_seconds, 1),
              "total_seconds": round(time.perf_counter() - started, 1),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "versions": versions(), "machine": machine()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"config": config, "summary": summary, "rows": rows},
                                   indent=1, default=str) + "\n")
    print(markdown(summary, config))
    print(f"\n{len(rows)} inputs in {config['total_seconds']} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
