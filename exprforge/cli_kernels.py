"""`exprforge compile` and `exprforge kernels list | show | rm | bench`: kernels built
from expression text, and the kernel store."""
from __future__ import annotations

import argparse

import numpy as np

import exprforge as xf
from exprforge.cli import UserError
from exprforge.engine import dtypes as dt

TARGETS = ("numba", "llvm", "triton", "torch")


def _add_compile(p):
    p.add_argument("expr", help='expression text, e.g. "x * sigmoid(1.702 * x)"')
    p.add_argument("--name", help="store the kernel under NAME (from exprforge.kernels import NAME)")
    p.add_argument("--target", default="numba", choices=TARGETS)
    p.add_argument("--dtype", default="float32", choices=dt.FLOATS,
                   help="dtype of the program and its variables (default float32)")
    p.add_argument("--args", help="comma-separated argument order (default: names sorted)")
    p.add_argument("--parallel", action="store_true",
                   help="numba/llvm: use all cores; torch: torch's intra-op threads")
    p.add_argument("--contract", action="store_true", help="let LLVM fuse a*b+c into FMAs")
    p.add_argument("--fastmath", action="store_true", help="allow reassociation (changes results)")
    p.add_argument("--matmul", action="store_true",
                   help="numba, a program f(a, b): also kernel.matmul(A, B) = sum over k of "
                        "f(A[..., i, k], B[..., k, j])")
    p.add_argument("--approx", action=argparse.BooleanOptionalAction, default=None,
                   help="the shipped verified programs (< 1 ULP) for exp, log, tanh, ... "
                        "instead of the C library (they vectorize): --approx for float32 and "
                        "float64, --no-approx for neither; default: float32 on numba, llvm "
                        "and torch")
    p.add_argument("--show-source", action="store_true", help="print the generated source")


def _kernel_options(args) -> dict:
    if args.matmul and args.target != "numba":
        raise UserError(f"--matmul applies to numba, not {args.target}")
    if args.target not in ("numba", "llvm"):
        if args.contract or args.fastmath or (args.parallel and args.target != "torch"):
            raise UserError(f"--contract/--fastmath apply to numba and llvm, --parallel to "
                            f"those and torch, not {args.target}")
        return {"parallel": True} if args.parallel else {}
    options = {"parallel": args.parallel, "contract": args.contract, "fastmath": args.fastmath}
    return {**options, "matmul": True} if args.matmul else options


def _library_calls(kernel) -> list:
    """The functions of the kernel's expression that run as the library's programs."""
    def calls(e):
        roots = e if isinstance(e, tuple) else (e,)
        return {(n.op, n.dtype) for r in roots for n in r.toposort() if n.args}
    return sorted(f"{op} ({dtype})" for op, dtype in calls(kernel.source_expr) - calls(kernel.expr))


def _kernel_info(kernel, name=None) -> dict:
    info = kernel.cache_info
    library = _library_calls(kernel) if kernel.options.get("approx") else []
    program = {"program": str(kernel.expr), "library_programs": library} if library else {}
    return {"name": name, "expr": str(kernel.source_expr), **program, "target": kernel.target,
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
    if r.get("library_programs"):
        lines.append(f"runs the library's verified programs for {', '.join(r['library_programs'])}"
                     " (--no-approx: the C library's)")
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
    t_numpy = best(lambda: xf.evaluate(kernel.source_expr, env))   # exp, not exp_f32's program
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


COMMANDS = {
    "compile": (_add_compile, run_compile, show_compile,
                "compile an expression into a kernel (numba, llvm, triton, torch), optionally stored"),
    "kernels": (_add_kernels, run_kernels, show_kernels,
                "list, show, remove or benchmark stored kernels"),
}
