"""Is a model a symbolic solution of the true formula? SRBench's definition (La Cava et al.
2021): after rounding every constant to 6 decimals (pi and e included, as numbers), either
truth - model is a constant (0: "exact", else "offset") or model / truth is ("scale").

The check never hangs: a numeric screen on sample points (difference or ratio constant
to 1e-8 relative; a fitted approximation good to 1e-7 fails it) decides "not a solution" at
once; a screen that finds a constant is confirmed symbolically: first in-process by a
size-bounded expand/cancel, then by sympy.simplify(ratio=1) in a separate spawned process
that is killed after `timeout` seconds (on a timeout the screen's verdict stands, method
"numeric"). The worker is started once per process and reused (1.5-2 s to start here);
like exprforge's process executors it uses spawn, so a script that calls this needs the
`if __name__ == "__main__":` guard. A model that is identically 0 is no solution (its
ratio 0 is constant, but SRBench's R^2 > 0.5 filter would have rejected it).
Variables are real symbols; `positive=` names those assumed positive (the Feynman table
samples every variable from a positive range; sqrt(x**2) == x only holds then).
"""
from __future__ import annotations

import multiprocessing
import os
import re
import threading
import time
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

# Spellings in formula tables that exprforge's parser lacks: f(a) -> (1/g(a)).
ALIASES = {"cot": "tan", "sec": "cos", "csc": "sin"}
_ALIAS_CALL = re.compile(r"\b(" + "|".join(ALIASES) + r")\s*\(")
_EXACT_DENOMINATOR = 1000  # fractions p/q with q <= this are kept exact (1/2, 1/3, ...)
_START_LIMIT = 30.0        # seconds allowed for the worker to start (not part of timeout)


@dataclass(frozen=True)
class SolutionCheck:
    is_solution: bool
    kind: str          # "exact" | "offset" | "scale" | "none" | "undecided"
    difference: str    # truth - model, constants rounded (simplified when that was needed)
    ratio: str         # model / truth, likewise
    method: str        # "symbolic" | "numeric"
    seconds: float

    def __bool__(self) -> bool:
        return self.is_solution


def unalias(text: str) -> str:
    """Formula text with cot, sec and csc written through tan, cos and sin (spellings of
    the Strogatz table that exprforge's parser lacks): cot(a) -> (1/tan(a))."""
    while m := _ALIAS_CALL.search(text):
        depth, i = 1, m.end()
        while depth and i < len(text):
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        if depth:
            break  # unbalanced: let the parser report it
        inner = text[m.end():i - 1]
        text = f"{text[:m.start()]}(1/{ALIASES[m.group(1)]}({inner})){text[i:]}"
    return text


def _to_sympy(x, role: str):
    import sympy as sp
    from exprforge.engine.expr import Expr
    from exprforge.engine.parse import ParseError, parse
    from exprforge.engine.sympy_bridge import to_sympy
    if isinstance(x, str):
        try:
            x = parse(unalias(x), dtype="float64")
        except ParseError as e:
            raise ValueError(f"{role} does not parse: {e}") from None
    if isinstance(x, Expr):
        return to_sympy(x)
    if isinstance(x, (int, float)):
        return sp.Float(x)
    if isinstance(x, sp.Basic):
        return x
    raise ValueError(f"{role} must be an Expr, a SymPy expression or text, "
                     f"not {type(x).__name__}")


def _round(e, decimals: int):
    """Every number (pi, e, sqrt(2) too) evaluated and rounded to `decimals`, as an exact
    rational; a number within 1e-12 of a small-denominator fraction (1/2, 1/6, ...) becomes
    that fraction, so that evaluating x/6 does not round it to 0.166667*x."""
    import sympy as sp
    e = e.evalf(15)
    swap = {}
    for a in e.atoms(sp.Number):
        if a.is_Integer or not a.is_finite:
            continue
        r = sp.Rational(a)
        v = Fraction(int(r.p), int(r.q))
        near = v.limit_denominator(_EXACT_DENOMINATOR)
        v = near if abs(near - v) <= 1e-12 * max(1, abs(v)) else round(v, decimals)
        swap[a] = sp.Rational(v.numerator, v.denominator)
    return e.xreplace(swap)


def _constant(e) -> bool:
    return not e.free_symbols and e.is_finite is True and e.is_extended_real is True


def _split_logs(e, factor: bool):
    """Logs of products split where SymPy's assumptions allow it (positive factors), with
    factor=True after factoring their arguments: log(x**3 + x**2 + x + 1) - log(x + 1) -
    log(x**2 + 1) goes to 0 for positive x, which simplify alone does not find. Factoring
    can run for minutes (multivariate, big coefficients): only in the killable worker."""
    import sympy as sp
    if not e.has(sp.log):
        return e
    if factor:
        e = e.replace(sp.log, lambda a: sp.log(sp.factor(a)))
    return sp.expand_log(e)


def _cheap(e, decimals: int):
    """e through expand and cancel when that is cheap (small e, small integer powers of
    sums), else e itself."""
    import sympy as sp
    e = _split_logs(e, factor=False) if len(str(e)) <= 400 else e
    if e.free_symbols and len(str(e)) <= 400 and all(
            not p.base.is_Add or p.exp.is_Integer and abs(p.exp) <= 6 for p in e.atoms(sp.Pow)):
        return _round(sp.cancel(sp.expand(e)), decimals)
    return e


def _serve(conn):
    import sympy as sp
    conn.send("ready")
    while True:
        diff, ratio, decimals = conn.recv()
        out = []
        for text in (diff, ratio):
            if text is not None:
                # srepr of expressions we built ourselves, never user text
                text = sp.srepr(_round(sp.simplify(_split_logs(sp.sympify(text), True),
                                                   ratio=1), decimals))
            out.append(text)
        conn.send(out)


_worker = None  # (process, connection, owner pid), started on first use
_lock = threading.Lock()


def _simplify_both(diff, ratio, decimals, timeout):
    """Simplified, rounded (diff, ratio) (None where not asked), or None on a timeout."""
    global _worker
    import sympy as sp
    with _lock:
        try:
            if _worker is not None and _worker[2] != os.getpid():
                _worker = None          # a forked child: the worker is its parent's
            if _worker is None or not _worker[0].is_alive():
                ctx = multiprocessing.get_context("spawn")
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_serve, args=(child,), daemon=True)
                proc.start()
                _worker = (proc, parent, os.getpid())
                if not parent.poll(_START_LIMIT) or parent.recv() != "ready":
                    raise TimeoutError
            proc, conn, _ = _worker
            conn.send([None if e is None else sp.srepr(e) for e in (diff, ratio)] + [decimals])
            if not conn.poll(timeout):
                raise TimeoutError
            # srepr texts our own worker made from expressions we sent, never user text
            return [None if t is None else sp.sympify(t) for t in conn.recv()]
        except (TimeoutError, EOFError, OSError, AssertionError):  # slow, crashed, no children
            if _worker is not None:
                _worker[0].kill()
                _worker[0].join()
                _worker = None
            return None


def _points(names, positive, samples, rng):
    if isinstance(samples, dict):
        missing = [n for n in names if n not in samples]
        if missing:
            raise ValueError(f"samples has no points for {', '.join(missing)}")
        return [np.asarray(samples[n], dtype=np.float64) for n in names]
    n = 64 if samples is None else int(samples)
    return [rng.uniform(0.5, 2, n) if v in positive else rng.uniform(-2, 2, n) for v in names]


def _screen(truth, model, symbols, points, decimals, tol=1e-8):
    """Numeric verdict: "exact" | "offset" | "scale" | "none", or None if undecidable."""
    import sympy as sp
    try:
        with np.errstate(all="ignore"):
            f = sp.lambdify(symbols, [truth, model], "numpy")
            t, m = (np.broadcast_to(np.asarray(v, dtype=np.complex128), points[0].shape
                                    if points else ()).ravel() for v in f(*points))
    except Exception:  # noqa: BLE001 - functions numpy lacks, overflow in int powers, ...
        return None
    ok = np.isfinite(t) & np.isfinite(m) & (np.abs(t.imag) + np.abs(m.imag) == 0)
    if ok.sum() < max(4, ok.size // 4):
        return None
    t, m = t[ok].real, m[ok].real
    d = t - m
    c = np.median(d)
    if np.all(np.abs(d - c) <= tol * (np.abs(t) + np.abs(m))):
        return "exact" if round(float(c), decimals) == 0 else "offset"
    nz = t != 0
    if nz.any():
        c = np.median(m[nz] / t[nz])
        if c != 0 and np.all(np.abs(m - c * t) <= tol * (np.abs(m) + np.abs(c * t))):
            return "scale"
    return "none"


def check_solution(model, truth, variables=None, *, decimals: int = 6, timeout: float = 5.0,
                   samples=None, positive=()) -> SolutionCheck:
    """Whether `model` is a symbolic solution of `truth` in SRBench's sense (see above).
    model, truth: an Expr, a SymPy expression or text. variables: the allowed names.
    samples: points for the numeric screen, a count (default 64, uniform on [0.5, 2] for
    positive names, else [-2, 2]) or {name: array}. positive: names assumed positive."""
    start = time.perf_counter()
    import sympy as sp
    sides = [_to_sympy(model, "model"), _to_sympy(truth, "truth")]
    names = sorted({s.name for e in sides for s in e.free_symbols})
    if variables is not None:
        extra = [n for n in names if n not in set(variables)]
        if extra:
            raise ValueError(f"names not among the variables: {', '.join(extra)}")
    positive = set(positive)
    symbols = [sp.Symbol(n, positive=True) if n in positive else sp.Symbol(n, real=True)
               for n in names]
    by_name = dict(zip(names, symbols))
    model, truth = (_round(e.xreplace({s: by_name[s.name] for s in e.free_symbols}), decimals)
                    for e in sides)
    diff, ratio = _round(truth - model, decimals), _round(model / truth, decimals)
    points = _points(names, positive, samples, np.random.default_rng(0))
    kind = _screen(truth, model, symbols, points, decimals)

    def done(kind, method, d=diff, r=ratio):
        return SolutionCheck(kind in ("exact", "offset", "scale"), kind, str(d), str(r),
                             method, time.perf_counter() - start)

    if kind == "none":
        return done(kind, "numeric")
    if _constant(d := _cheap(diff, decimals)):  # in-process first: the worker costs ~1.5 s
        return done("exact" if d == 0 else "offset", "symbolic", d)
    if _constant(r := _cheap(ratio, decimals)) and r != 0:
        return done("scale", "symbolic", d, r)
    simple = _simplify_both(diff, ratio if kind in ("scale", None) else None, decimals, timeout)
    if simple is None:
        return done(kind or "undecided", "numeric")
    d, r = simple
    if _constant(d):
        return done("exact" if d == 0 else "offset", "symbolic", d, ratio if r is None else r)
    if r is not None and _constant(r) and r != 0:
        return done("scale", "symbolic", d, r)
    return done("none", "symbolic", d, ratio if r is None else r)
