"""`exprforge approx` (search a float32 or float64 approximation, verify it, store it)
and `exprforge verify` (the exhaustive check of any float32 kernel, a sampled check of a
float64 one)."""
from __future__ import annotations

import sys

from exprforge.cli import UserError, _number, _progress_bar


# --- approx -------------------------------------------------------------------------------

def _add_approx(p):
    p.add_argument("function", help="a unary function of the op table, e.g. exp, log2, erf")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"),
                   help="float32 (checked on every input) or float64 (checked on a sample)")
    p.add_argument("--domain", nargs=2, type=float, metavar=("LO", "HI"),
                   help="input interval (default: the function's whole domain in --dtype)")
    p.add_argument("--max-ulp", type=float, default=1.0, help="goal: max error (default 1.0)")
    p.add_argument("--cost", choices=("ops", "cycles"), default="cycles")
    p.add_argument("--generations", type=int, default=30)
    p.add_argument("--population", type=int, default=48)
    p.add_argument("--seed", type=int, default=0)
    who = p.add_mutually_exclusive_group()
    who.add_argument("--workers", type=int, help="evaluate on N local processes")
    who.add_argument("--scheduler", help="evaluate on a Dask cluster: tcp://HOST:PORT")
    p.add_argument("--timeout", type=float, help="search time limit in seconds")
    p.add_argument("--template", help="range-reduction template (default: the function's)")
    p.add_argument("--name", help="store name (default FUNC_f32 or FUNC_f64)")
    p.add_argument("--out", help="run directory (default: under the kernel store)")
    p.add_argument("--no-verify", action="store_true", help="skip the final check")
    p.add_argument("--resume", action="store_true",
                   help="continue the search from --out DIR's checkpoint (same seed)")


def run_approx(args) -> dict:
    from exprforge.approx import run
    from exprforge.evolve.tasks.approx import check_function
    for flag, value in (("--generations", args.generations), ("--population", args.population)):
        if value < 1:
            raise UserError(f"{flag} must be at least 1")
    if args.population < 4:
        raise UserError("--population must be at least 4")
    if args.workers is not None and args.workers < 1:
        raise UserError("--workers must be at least 1")
    if args.domain and not args.domain[0] <= args.domain[1]:
        raise UserError(f"empty domain {args.domain[0]} > {args.domain[1]}")
    if args.resume and not args.out:
        raise UserError("--resume needs --out DIR (the run directory holding the checkpoint)")
    try:
        check_function(args.function)
        return run(args.function, args.domain, args.max_ulp, args.cost, args.generations,
                   args.population, args.seed, args.timeout, args.workers, args.scheduler,
                   args.out, args.name, args.template, verify=not args.no_verify,
                   resume=args.resume, dtype=args.dtype,
                   progress=_progress_bar("approx") if sys.stderr.isatty() else None)
    except (ValueError, ConnectionError) as e:
        raise UserError(str(e)) from None


def show_approx(r: dict) -> str:
    from exprforge.approx import show
    return show(r)


# --- verify -------------------------------------------------------------------------------

def _float_text(text: str) -> float:
    """A number as decimal or hex float text (0x1.62e43p+6)."""
    return float.fromhex(text) if "0x" in text.lower() else float(text)


def _add_verify(p):
    p.add_argument("kernel", help='a stored kernel NAME, or expression text in x (float32 '
                                  'unless --dtype float64), compiled for llvm, e.g. "exp(x)"')
    p.add_argument("--against", required=True, metavar="FUNC",
                   help="the true function: a unary op (exp, log, erf, tanh, sigmoid, ...) "
                        "or an expression of one variable")
    p.add_argument("--domain", nargs=2, type=_float_text, metavar=("LO", "HI"),
                   help="check every float32 in [LO, HI] (default: every finite float); "
                        "a float64 kernel on a random sample of it")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="the type of x in expression text (stored kernels carry theirs)")
    p.add_argument("--samples", type=int,
                   help="float64: points to check (default 2^24 with a long double "
                        "reference, 2^15 with mpmath alone)")
    p.add_argument("--seed", type=int, default=0, help="float64: the sample's seed")
    # argparse before 3.13 takes -1e-3, -0x1p-3 or -inf for an option: they are numbers here
    import re
    p._negative_number_matcher = re.compile(r"^-(\d|\.\d|inf)", re.IGNORECASE)


def run_verify(args) -> dict:
    from exprforge.evolve.verify import verify
    from exprforge.targets.store import CorruptEntry
    try:
        kernel = args.kernel
        if not kernel.isidentifier():   # text: its variable in --dtype
            from exprforge.engine.parse import parse
            kernel = parse(kernel, dtype=args.dtype)
        if args.samples is not None and args.samples < 2:
            raise ValueError("--samples must be at least 2")
        report = verify(kernel, args.against, domain=args.domain, samples=args.samples,
                        seed=args.seed)
    except (ValueError, TypeError, LookupError, NotImplementedError, CorruptEntry) as e:
        raise UserError(e.args[0] if e.args else str(e)) from None

    def safe(v):  # JSON has no inf or NaN: _number spells them as strings
        if isinstance(v, dict):
            return {k: safe(x) for k, x in v.items()}
        return [safe(x) for x in v] if isinstance(v, (list, tuple)) else \
            (_number(v) if isinstance(v, float) else v)
    return safe(report.as_dict())


def show_verify(r: dict) -> str:
    def g(v):
        return f"{v:.6g}" if isinstance(v, float) else str(v)
    notes = ("" if r["exact_max"] else "; max not certain") + \
        (f"; {r['undecided']} borderline points judged in {r['reference']}"
         if r["undecided"] else "")
    how = "" if r["method"] == "exhaustive" else \
        f" (a random sample; reference in {r['reference']})"
    lines = [f"{r['kernel']}  against {r['function']}  on [{g(r['domain'][0])}, "
             f"{g(r['domain'][1])}]: {r['n']} {r['dtype']} inputs{how} in "
             f"{r['seconds']:.1f} s",
             f"max error          {g(r['max_ulp'])} ULP at x = {g(r['argmax'])} "
             f"({r['argmax_hex']})",
             f"mean error         {g(r['mean_ulp'])} ULP",
             f"correctly rounded  {100 * r['correctly_rounded']:.4f}%  "
             f"({r['rechecked']} points decided by mpmath{notes})",
             "special values" + ("" if r["ok"] else "  (FAILED)")]
    lines += [f"  {'ok  ' if s['passed'] else 'FAIL'}  {s['name']:22s} x = {s['hex']:15s} -> "
              f"{g(s['output'])}  (expected {g(s['expected'])})" for s in r["specials"]]
    return "\n".join(lines)


COMMANDS = {
    "verify": (_add_verify, run_verify, show_verify,
               "check a kernel against the true function: float32 on every input, float64 "
               "on a sample"),
    "approx": (_add_approx, run_approx, show_approx,
               "search a float32 or float64 approximation of a function, verify it, store it"),
}
