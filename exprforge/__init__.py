"""exprforge: math in, fast verified kernels out.

    import exprforge as xf
    e = xf.parse("exp(x) - 1", vars={"x": "float32"})
    xf.evaluate(e, {"x": values})            # float32 in, float32 out, every op rounded
    xf.exact(e, {"x": values})                # the true value, correctly rounded (mpmath)
    xf.ulps(computed, reference)              # elementwise ULP distance
    xf.grad(e, "x")                           # symbolic derivative, an Expr
    k = xf.compile(e, target="llvm")          # a fast kernel: k(values)
    xf.save(k, "my_expm1")                    # from exprforge.kernels import my_expm1
"""
from __future__ import annotations

__version__ = "0.1.0"

from exprforge.engine.derive import derive, grad
from exprforge.engine.errors import (ErrorStats, bits_of_error, count_float32, float32_range,
                                     summarize, ulp_error, ulps)
from exprforge.engine.evaluate import exact, oracle
from exprforge.engine.evaluate import evaluate as _evaluate
from exprforge.engine.expr import Expr, concretize, const, make, named, retype, var
from exprforge.engine.ops import OPS
from exprforge.engine.parse import ParseError, parse
from exprforge.engine.printing import to_latex, to_text


def simplify(expr, cost: str = "cycles", rules=None, assume=(), assume_finite: bool = False,
             timeout: float = 1.0, node_limit: int = 50_000, explain: bool = False):
    """Simplify by e-graph rewriting (egglog): the cheapest equivalent program found within
    the limits. See exprforge.rewrite.simplify for the soundness policy."""
    from exprforge.rewrite.simplify import simplify as _simplify  # egglog loads on first use
    return _simplify(expr, cost=cost, rules=rules, assume=assume, assume_finite=assume_finite,
                     timeout=timeout, node_limit=node_limit, explain=explain)


def prove(lhs, rhs, assume=(), assume_finite: bool = False, timeout: float = 2.0) -> bool:
    """True when the rewrite rules show lhs == rhs under the assumptions (False: not shown)."""
    from exprforge.rewrite.simplify import prove as _prove
    return _prove(lhs, rhs, assume=assume, assume_finite=assume_finite, timeout=timeout)


def to_sympy(expr):
    """The expression as a SymPy expression (SymPy is imported on first use)."""
    from exprforge.engine.sympy_bridge import to_sympy as _to_sympy
    return _to_sympy(expr)


def from_sympy(s, dtype: str = "float64", vars=None):
    """An Expr from a SymPy expression (see exprforge.engine.sympy_bridge.from_sympy)."""
    from exprforge.engine.sympy_bridge import from_sympy as _from_sympy
    return _from_sympy(s, vars=vars, dtype=dtype)


def compile(expr, target: str = "numba", dtype: str | None = None, args=None,
            approx: bool | str | None = None, **options):
    """Compile an Expr (or expression text) into a Kernel for `target`: "numba" (NumPy
    ufuncs), "llvm" (llvmlite MCJIT), "triton" (GPU, on torch tensors) or "torch" (a
    torch custom op with autograd). Text's variables are float32 unless `dtype` says
    otherwise. Call it with one array per name in `kernel.args`
    (`args`, else the variable names sorted). A tuple of expressions compiles into one
    kernel returning a tuple of arrays, computing what they share once (no autograd
    for such a kernel on the torch target). Options: numba/llvm parallel=, fastmath=,
    contract= (let LLVM fuse a*b+c into an FMA); torch cpu="llvm"|"numba",
    parallel=True (the CPU loops share large calls among torch.get_num_threads()
    threads); numba
    matmul=True for a program f(a, b) of two arguments also gives
    `kernel.matmul(A, B)` = sum over k of f(A[..., i, k], B[..., k, j]), a matmul with f
    as the product (batched like np.matmul, summed in order of k in f's dtype; with
    parallel=True its rows run on Numba's threads).
    approx: float32 exp, exp2, log, log2, erf, tanh and sigmoid become the shipped
    programs verified under 1 ULP on every float32 input (evolve/library.json): plain
    arithmetic that vectorizes, where the C library is called once per element. That is
    the default (approx=None) on the CPU targets (numba, llvm, and torch's CPU kernels);
    approx=False keeps the C library everywhere; Triton (and the torch target on CUDA
    tensors) keeps libdevice unless approx=True, which also replaces float64 exp, exp2,
    log, log2, sigmoid and tanh by programs under 1 ULP on a 2^24-point sample (glibc's
    are 0.5 ULP). fastmath=True lets LLVM reassociate inside the programs too (their
    bound is then not guaranteed). `kernel.expr` is the program with them inlined,
    `kernel.source_expr` the expression as given; the torch target differentiates the
    latter and inlines them in its backward kernels.
    Compiled code is kept in the kernel store and reused by later calls and processes."""
    from exprforge.targets.build import compile_kernel
    return compile_kernel(expr, target, dtype, args, approx=approx, **options)


def save(kernel, name: str, overwrite: bool = True):
    """Store a compiled kernel under `name`; `from exprforge.kernels import NAME` loads it."""
    from exprforge.targets.build import save as _save
    return _save(kernel, name, overwrite)


def approximate(function: str, domain=None, dtype: str = "float32", max_ulp: float = 1.0,
                **options):
    """Search a float32 program approximating a unary op-table function on `domain`
    (default: its whole float32 domain): an evolve.tasks.approx.ApproxResult with the
    Pareto front (cost vs max ULP) and the chosen program. Options: cost="cycles"|"ops",
    population, generations, seed, timeout, executor, checkpoint, resume, template.
    Verify the choice on every float32 with exprforge.evolve.verify.verify."""
    from exprforge.evolve.tasks.approx import approximate as _approximate
    return _approximate(function, domain, dtype, max_ulp, **options)


def evaluate(expr, env=None, dtype: str | None = None):
    """Evaluate an Expr (or expression text) on NumPy arrays with exact dtype semantics."""
    if isinstance(expr, str):
        expr = parse(expr, dtype=dtype or "float64")
    return _evaluate(expr, env, dtype)


def __getattr__(name):   # SymbolicRegressor imports scikit-learn: only on first use
    if name == "SymbolicRegressor":
        from exprforge.regressor import SymbolicRegressor
        return SymbolicRegressor
    if name == "discover_ode":
        from exprforge.ode import discover_ode
        return discover_ode
    if name == "check_solution":   # imports SymPy when called
        from exprforge.evolve.solution import check_solution
        return check_solution
    raise AttributeError(f"module 'exprforge' has no attribute {name!r}")


__all__ = ["__version__", "Expr", "OPS", "ParseError", "parse", "evaluate", "exact", "oracle",
           "ulps", "ulp_error", "bits_of_error", "summarize", "ErrorStats", "float32_range",
           "count_float32", "grad", "derive", "var", "const", "named", "make", "concretize",
           "retype", "to_text", "to_latex", "to_sympy", "from_sympy", "simplify", "prove", "compile", "save", "approximate",
           "SymbolicRegressor", "discover_ode", "check_solution"]
