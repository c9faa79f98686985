"""The `exprforge` command. Each subcommand computes a result dict; --json prints it as
JSON on stdout, otherwise it is shown as text. A user error prints one line on stderr
and exits 2, never a traceback.

This module is the entry point (main, the parser, UserError, helpers the subcommands
share) and holds eval and simplify; the other subcommands live in groups beside it:
cli_kernels (compile, kernels), cli_search (approx, verify), cli_regress (regress,
discover-ode).
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


# --- helpers the subcommands share ------------------------------------------------------

def _number(x):
    """JSON-safe number: finite floats as numbers, others as strings."""
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    x = float(x)
    return x if math.isfinite(x) else ("nan" if x != x else ("inf" if x > 0 else "-inf"))


def _progress_bar(label: str):
    def show(gen, total, summary):
        done = int(30 * gen / max(total, 1))
        print(f"\r{label} [{'#' * done}{'.' * (30 - done)}] {gen}/{total}  best "
              f"{summary['best']:.4g}  front {summary['front']}", end="", file=sys.stderr,
              flush=True)
        if gen >= total:
            print(file=sys.stderr)
    return show


def _jsonable(value):
    """JSON has no NaN or infinities: they are written as the strings "nan", "inf", "-inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if value != value else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


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


COMMANDS = {
    "eval": (_add_eval, run_eval, show_eval,
             "evaluate an expression at given values, with --check its ULP error"),
    "simplify": (_add_simplify, run_simplify, show_simplify,
                 "simplify an expression by e-graph rewriting under a cost model"),
}


def commands() -> dict:
    """Every subcommand: name -> (add_arguments, run, show, help), in --help's order.
    Each sibling module cli_*.py holds a group of subcommands and its own COMMANDS."""
    from exprforge import cli_kernels, cli_regress, cli_search
    return {**COMMANDS, **cli_kernels.COMMANDS, **cli_search.COMMANDS, **cli_regress.COMMANDS}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="exprforge", description="exprforge: math in, fast verified kernels out")
    parser.add_argument("--version", action="version", version=f"exprforge {xf.__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    parser.commands = {}
    for name, (add, _, _, help_text) in commands().items():
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


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = _parse(parser, argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return 2
        _, run, show, _ = commands()[args.command]
        result = run(args)
    except UserError as e:
        print(f"exprforge: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:   # searches write their checkpoint each generation
        print("exprforge: interrupted", file=sys.stderr)
        return 130
    print(json.dumps(_jsonable(result), indent=2) if args.json else show(result))
    return 0


if __name__ == "__main__":   # python -m exprforge.cli: the one module object the others import
    from exprforge.cli import main as _main
    sys.exit(_main())
