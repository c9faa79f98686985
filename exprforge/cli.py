"""The `exprforge` command. Each subcommand computes a result dict; --json prints it as
JSON on stdout, otherwise it is shown as text. A user error prints one line on stderr
and exits 2, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from fractions import Fraction

import numpy as np

import exprforge as xf
from exprforge.engine import dtypes as dt
from exprforge.engine.evaluate import literal_value, prepare
from exprforge.engine.expr import _exact as exact_literal


class UserError(Exception):
    """Bad input from the user: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage plus a line; we want one line
        raise UserError(message)


# --- eval ---------------------------------------------------------------------------------

def _add_eval(p):
    p.add_argument("expr", help='expression text, e.g. "exp(x) - 1"')
    p.add_argument("values", nargs="*", metavar="NAME=VALUE",
                   help="variable values (exact decimal or hex float; comma lists give arrays)")
    p.add_argument("--dtype", default="float64", choices=dt.DTYPES[:4],
                   help="dtype of the program and its variables (default float64)")
    p.add_argument("--check", action="store_true",
                   help="also compute the exact value (mpmath) and the error in ULPs")
    p.add_argument("--prec", type=int, default=256, help="bits of precision for --check")


def _input_values(pairs, expr) -> dict:
    env = {}
    types = {v.name: v.dtype for v in expr.variables()}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise UserError(f"expected NAME=VALUE, got {pair!r}")
        if name in env:
            raise UserError(f"{name} is given twice")
        if name not in types:
            known = ", ".join(types) or "none"
            raise UserError(f"{name} is not a variable of the expression (variables: {known})")
        try:
            values = [exact_literal(t)[0] for t in text.split(",")]
            if dt.is_int(types[name]) and any(isinstance(v, str) or
                                              (isinstance(v, Fraction) and v.denominator != 1)
                                              for v in values):
                raise ValueError(f"{name} is {types[name]}: values must be integers")
            env[name] = np.array([literal_value(v, types[name]) for v in values]).reshape(-1) \
                if "," in text else literal_value(values[0], types[name])
        except (ValueError, TypeError, ZeroDivisionError, OverflowError) as e:
            raise UserError(f"bad value for {name}: {text!r} ({e})") from None
    missing = [n for n in types if n not in env]
    if missing:
        raise UserError(f"no value given for {', '.join(missing)} (pass NAME=VALUE)")
    return env


def _number(x):
    """JSON-safe number: finite floats as numbers, others as strings."""
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    x = float(x)
    return x if math.isfinite(x) else ("nan" if x != x else ("inf" if x > 0 else "-inf"))


def _listify(a, fn=_number):
    a = np.asarray(a)
    return fn(a.item()) if a.ndim == 0 else [fn(v) for v in a.ravel()]


def _shortest(v, dtype):
    """Shortest text that reads back as the same value of `dtype`."""
    if dt.is_float(dtype):
        return np.format_float_positional(np.asarray(v, dtype=dtype)[()], unique=True, trim="-") \
            if np.isfinite(v) and 1e-5 <= abs(float(v)) < 1e16 or v == 0 else \
            np.format_float_scientific(np.asarray(v, dtype=dtype)[()], unique=True, trim="-")
    return str(v)


def run_eval(args) -> dict:
    try:
        expr = xf.parse(args.expr, dtype=args.dtype)
    except xf.ParseError as e:
        raise UserError(f"cannot parse expression: {e}") from None
    expr = prepare(expr, args.dtype)
    env = _input_values(args.values, expr)
    try:
        value = xf.evaluate(expr, env)
    except (ValueError, TypeError) as e:  # e.g. a reduction over an axis the input lacks
        raise UserError(f"cannot evaluate: {e}") from None
    types = {v.name: v.dtype for v in expr.variables()}
    result = {"expr": xf.to_text(expr), "dtype": expr.dtype,
              "inputs": {k: _listify(v) for k, v in env.items()},
              "inputs_text": {k: _listify(v, lambda x, t=types[k]: _shortest(x, t))
                              for k, v in env.items()},
              "value": _listify(value), "value_text": _listify(value, lambda v: _shortest(
                  v, expr.dtype))}
    if args.check:
        if args.prec < 2:
            raise UserError("--prec must be at least 2 bits")
        if not dt.is_float(expr.dtype):
            raise UserError("--check needs a float-valued expression")
        truth = xf.oracle(expr, env, prec=args.prec)
        rounded = xf.exact(expr, env, prec=args.prec)
        err = xf.ulp_error(np.asarray(value), truth)
        result.update({
            "exact": _listify(truth, lambda v: _mp_text(v)),
            "exact_rounded": _listify(rounded),
            "ulp_error": _listify(err),
            "ulps_from_correctly_rounded": _listify(xf.ulps(value, rounded)),
            "correctly_rounded": _listify(xf.ulps(value, rounded) == 0, bool),
            "prec_bits": args.prec,
        })
    return result


def _mp_text(v) -> str:
    import mpmath as mp
    if isinstance(v, mp.mpf):
        return mp.nstr(v, 25, min_fixed=-5, max_fixed=16)
    return str(v)


def show_eval(r: dict) -> str:
    inputs = ", ".join(f"{k} = {v}" for k, v in r["inputs_text"].items())
    lines = [f"{r['expr']}   [{r['dtype']}]" + (f"   at {inputs}" if inputs else ""),
             f"value    {r['value_text']}"]
    if "exact" in r:
        lines += [f"exact    {r['exact']}",
                  f"error    {_fmt_ulps(r['ulp_error'])} ULP   "
                  f"({_rounding_note(r)})"]
    return "\n".join(lines)


def _rounding_note(r: dict) -> str:
    ok = r["correctly_rounded"]
    if ok is True or (isinstance(ok, list) and all(ok)):
        return "correctly rounded"
    return f"ULPs from the correctly rounded result: {_fmt_ulps(r['ulps_from_correctly_rounded'])}"


def _fmt_ulps(e):
    return ", ".join(_fmt_ulps(x) for x in e) if isinstance(e, list) else \
        (f"{e:.3g}" if isinstance(e, float) else str(e))


# --- simplify -----------------------------------------------------------------------------

def _add_simplify(p):
    p.add_argument("expr", help='expression text, e.g. "(a+b)**2 - (a-b)**2"')
    p.add_argument("--cost", default="cycles", choices=["ops", "cycles"],
                   help="cost model to minimize (default cycles)")
    p.add_argument("--assume", action="append", default=[], metavar="FACT:VAR",
                   help="a fact about a variable: positive, nonneg, nonzero or finite "
                        "(repeatable), e.g. --assume positive:x")
    p.add_argument("--assume-finite", action="store_true", help="every variable is finite")
    p.add_argument("--timeout", type=float, default=1.0, help="seconds (default 1)")
    p.add_argument("--node-limit", type=int, default=50_000, help="e-graph size limit")
    p.add_argument("--patience", type=int, default=None, metavar="K",
                   help="stop after K expansion rounds without a cheaper program "
                        "(default 3; 0 runs until saturation or a limit)")
    p.add_argument("--dtype", default="float64", choices=dt.DTYPES[:4],
                   help="dtype of undeclared variables")
    p.add_argument("--explain", action="store_true", help="list the rules that fired")


def run_simplify(args) -> dict:
    from exprforge.rewrite.simplify import PATIENCE, simplify_full
    patience = PATIENCE if args.patience is None else (args.patience or None)
    if patience is not None and patience < 0:
        raise UserError("--patience must be 0 or more")
    try:
        r = simplify_full(args.expr, cost=args.cost, assume=args.assume,
                          assume_finite=args.assume_finite, timeout=args.timeout,
                          node_limit=args.node_limit, patience=patience, dtype=args.dtype)
    except xf.ParseError as e:
        raise UserError(f"cannot parse expression: {e}") from None
    except ValueError as e:
        raise UserError(str(e)) from None
    out = {"input": xf.to_text(r.original), "result": xf.to_text(r.expr),
           "cost_model": r.cost_model, "input_cost": r.cost_before, "result_cost": r.cost_after,
           "seconds": round(r.seconds, 4), "stop_reason": r.stop_reason,
           "iterations": r.iterations, "egraph_nodes": r.nodes}
    if args.explain:
        out["fired"] = [{"iteration": i, "rule": name, "matches": n} for i, name, n in r.fired]
    return out


def show_simplify(r: dict) -> str:
    lines = [f"input    {r['input']}   ({r['cost_model']} cost {r['input_cost']:g})",
             f"result   {r['result']}   ({r['cost_model']} cost {r['result_cost']:g})",
             f"time     {r['seconds']:.3f} s, {r['iterations']} iterations, "
             f"{r['egraph_nodes']} e-graph nodes, stopped: {r['stop_reason']}"]
    for f in r.get("fired", []):
        lines.append(f"  iteration {f['iteration']}: {f['rule']} x{f['matches']}")
    return "\n".join(lines)


# --- approx -------------------------------------------------------------------------------

def _add_approx(p):
    p.add_argument("function", help="a unary function of the op table, e.g. exp, log2, erf")
    p.add_argument("--dtype", default="float32", choices=("float32",))
    p.add_argument("--domain", nargs=2, type=float, metavar=("LO", "HI"),
                   help="input interval (default: the function's whole float32 domain)")
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
    p.add_argument("--name", help="store name (default FUNC_f32)")
    p.add_argument("--out", help="run directory (default: under the kernel store)")
    p.add_argument("--no-verify", action="store_true", help="skip the exhaustive check")
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
                   resume=args.resume,
                   progress=_progress_bar("approx") if sys.stderr.isatty() else None)
    except (ValueError, ConnectionError) as e:
        raise UserError(str(e)) from None


def _progress_bar(label: str):
    def show(gen, total, summary):
        done = int(30 * gen / max(total, 1))
        print(f"\r{label} [{'#' * done}{'.' * (30 - done)}] {gen}/{total}  best "
              f"{summary['best']:.4g}  front {summary['front']}", end="", file=sys.stderr,
              flush=True)
        if gen >= total:
            print(file=sys.stderr)
    return show


def show_approx(r: dict) -> str:
    from exprforge.approx import show
    return show(r)


# --- compile and kernels ----------------------------------------------------------------

TARGETS = ("numba", "llvm", "triton", "torch")


def _add_compile(p):
    p.add_argument("expr", help='expression text, e.g. "x * sigmoid(1.702 * x)"')
    p.add_argument("--name", help="store the kernel under NAME (from exprforge.kernels import NAME)")
    p.add_argument("--target", default="numba", choices=TARGETS)
    p.add_argument("--dtype", default="float32", choices=dt.FLOATS,
                   help="dtype of the program and its variables (default float32)")
    p.add_argument("--args", help="comma-separated argument order (default: names sorted)")
    p.add_argument("--parallel", action="store_true", help="numba/llvm: use all cores")
    p.add_argument("--contract", action="store_true", help="let LLVM fuse a*b+c into FMAs")
    p.add_argument("--fastmath", action="store_true", help="allow reassociation (changes results)")
    p.add_argument("--approx", action="store_true",
                   help="use the shipped verified programs (< 1 ULP) for exp, log, tanh, ... "
                        "instead of the C library: they vectorize")
    p.add_argument("--show-source", action="store_true", help="print the generated source")


def _kernel_options(args) -> dict:
    if args.target not in ("numba", "llvm"):
        if args.parallel or args.contract or args.fastmath:
            raise UserError(f"--parallel/--contract/--fastmath apply to numba and llvm, "
                            f"not {args.target}")
        return {}
    return {"parallel": args.parallel, "contract": args.contract, "fastmath": args.fastmath}


def _kernel_info(kernel, name=None) -> dict:
    info = kernel.cache_info
    return {"name": name, "expr": str(kernel.expr), "target": kernel.target,
            "dtype": kernel.dtype, "args": list(kernel.args), "key": kernel.key,
            "options": kernel.options, "from_store": info.get("hit", False),
            "compiled": info.get("compiled", False), "seconds": round(info.get("seconds", 0), 4)}


def run_compile(args) -> dict:
    try:
        expr = xf.parse(args.expr, dtype=args.dtype)
        order = [a.strip() for a in args.args.split(",")] if args.args else None
        kernel = xf.compile(expr, target=args.target, args=order, approx=args.approx,
                            **_kernel_options(args))
        if args.name:
            xf.save(kernel, args.name)
    except (xf.ParseError, ValueError, TypeError, NotImplementedError, RuntimeError) as e:
        raise UserError(str(e)) from None
    result = _kernel_info(kernel, args.name)
    if args.show_source:
        result["source"] = kernel.source
    return result


def show_compile(r: dict) -> str:
    how = "loaded from the store" if r["from_store"] else "compiled"
    lines = [f"{r['target']} kernel ({', '.join(r['args'])}) -> {r['dtype']}: {r['expr']}",
             f"{how} in {r['seconds'] * 1000:.1f} ms; key {r['key'][:16]}"]
    if r["name"]:
        lines.append(f"stored as {r['name']}:  from exprforge.kernels import {r['name']}")
    if "source" in r:
        lines += ["", r["source"]]
    return "\n".join(lines)


def _add_kernels(p):
    p.add_argument("action", choices=("list", "show", "rm", "bench"))
    p.add_argument("name", nargs="?", help="kernel name (show, rm, bench)")
    p.add_argument("--size", type=int, default=1_000_000, help="bench: elements (default 1e6)")
    p.add_argument("--seed", type=int, default=0, help="bench: seed of the random inputs")


def run_kernels(args) -> dict:
    from exprforge.targets import store
    from exprforge.targets.build import load
    if args.action == "list":
        entries = []
        for name in store.list_names():
            try:
                e = store.read_entry(name)
                entries.append({"name": name, "target": e["target"], "expr": e["text"]})
            except store.CorruptEntry as err:
                entries.append({"name": name, "error": str(err)})
        return {"action": "list", "store": str(store.cache_dir()), "kernels": entries}
    if not args.name:
        raise UserError(f"kernels {args.action} needs a kernel NAME")
    try:
        if args.action == "rm":
            store.remove_entry(args.name)
            return {"action": "rm", "name": args.name}
        kernel = load(args.name)
    except (LookupError, ValueError, store.CorruptEntry) as e:
        raise UserError(e.args[0] if e.args else str(e)) from None
    if args.action == "show":
        return {"action": "show", **_kernel_info(kernel, args.name), "source": kernel.source}
    if args.size <= 0:
        raise UserError("--size must be positive")
    return {"action": "bench", **_kernel_info(kernel, args.name),
            **_bench(kernel, args.size, args.seed)}


def _bench(kernel, size: int, seed: int) -> dict:
    """Elements per second of the kernel and of the NumPy reference on the same inputs."""
    import time
    rng = np.random.default_rng(seed)
    inputs = []
    for _, d in kernel.plan.params:
        a = rng.standard_normal(size) if dt.is_float(d) else rng.integers(-100, 100, size)
        inputs.append(a.astype(d))
    if kernel.target in ("triton", "torch"):
        import torch
        inputs = [torch.from_numpy(a) for a in inputs]
    env = {n: np.asarray(a) for (n, _), a in zip(kernel.plan.params, inputs)}

    def best(fn):
        fn()
        times = []
        for _ in range(5):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times)
    t_kernel = best(lambda: kernel(*inputs))
    t_numpy = best(lambda: xf.evaluate(kernel.expr, env))
    return {"size": size, "kernel_seconds": t_kernel, "numpy_seconds": t_numpy,
            "kernel_elements_per_s": size / t_kernel, "speedup_vs_numpy": t_numpy / t_kernel}


def show_kernels(r: dict) -> str:
    if r["action"] == "list":
        if not r["kernels"]:
            return f"no stored kernels in {r['store']}"
        return "\n".join(f"{k['name']:20s} {k.get('target', '?'):7s} {k.get('expr', k.get('error'))}"
                         for k in r["kernels"])
    if r["action"] == "rm":
        return f"removed {r['name']}"
    if r["action"] == "show":
        return show_compile(r) + "\n\n" + r["source"]
    return (show_compile(r) + f"\n{r['size']} elements: {r['kernel_elements_per_s']:.3g} "
            f"elements/s, {r['speedup_vs_numpy']:.2f}x NumPy")


# --- verify -------------------------------------------------------------------------------

def _float_text(text: str) -> float:
    """A number as decimal or hex float text (0x1.62e43p+6)."""
    return float.fromhex(text) if "0x" in text.lower() else float(text)


def _add_verify(p):
    p.add_argument("kernel", help='a stored kernel NAME, or expression text in x (float32), '
                                  'compiled for llvm, e.g. "exp(x)"')
    p.add_argument("--against", required=True, metavar="FUNC",
                   help="the true function: a unary op (exp, log, erf, tanh, sigmoid, ...) "
                        "or an expression of one variable")
    p.add_argument("--domain", nargs=2, type=_float_text, metavar=("LO", "HI"),
                   help="check every float32 in [LO, HI] (default: every finite float32)")
    # argparse before 3.13 takes -1e-3, -0x1p-3 or -inf for an option: they are numbers here
    import re
    p._negative_number_matcher = re.compile(r"^-(\d|\.\d|inf)", re.IGNORECASE)


def run_verify(args) -> dict:
    from exprforge.evolve.verify import verify
    from exprforge.targets.store import CorruptEntry
    try:
        report = verify(args.kernel, args.against, domain=args.domain)
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
        (f"; {r['undecided']} borderline points judged in float64" if r["undecided"] else "")
    lines = [f"{r['kernel']}  against {r['function']}  on [{g(r['domain'][0])}, "
             f"{g(r['domain'][1])}]: {r['n']} float32 inputs in {r['seconds']:.1f} s",
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
    "eval": (_add_eval, run_eval, show_eval,
             "evaluate an expression at given values, with --check its ULP error"),
    "simplify": (_add_simplify, run_simplify, show_simplify,
                 "simplify an expression by e-graph rewriting under a cost model"),
    "compile": (_add_compile, run_compile, show_compile,
                "compile an expression into a kernel (numba, llvm, triton, torch), optionally stored"),
    "kernels": (_add_kernels, run_kernels, show_kernels,
                "list, show, remove or benchmark stored kernels"),
    "verify": (_add_verify, run_verify, show_verify,
               "check a float32 kernel on every float32 of a domain against the true function"),
    "approx": (_add_approx, run_approx, show_approx,
               "search a float32 approximation of a function, verify it on every input, store it"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="exprforge", description="exprforge: math in, fast verified kernels out")
    parser.add_argument("--version", action="version", version=f"exprforge {xf.__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    parser.commands = {}
    for name, (add, _, _, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
        add(p)
        parser.commands[name] = p
    return parser


def _parse(parser, argv):
    """Options may sit between a command's positionals (`eval EXPR --dtype float32 x=1`):
    argparse allows that only within one parser, so the command's parser reads its part."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in parser.commands:
        args = parser.commands[argv[0]].parse_intermixed_args(argv[1:])
        args.command = argv[0]
        return args
    return parser.parse_args(argv)


def _jsonable(value):
    """JSON has no NaN or infinities: they are written as the strings "nan", "inf", "-inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if value != value else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = _parse(parser, argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return 2
        _, run, show, _ = COMMANDS[args.command]
        result = run(args)
    except UserError as e:
        print(f"exprforge: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(_jsonable(result), indent=2) if args.json else show(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
