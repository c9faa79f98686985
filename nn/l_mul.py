"""L-Mul (Luo and Sun 2024, "Addition is All You Need for Energy-efficient Language Models").

A float product by one integer addition of the operands' bit patterns:

    x * y  ~  (1 + xm + ym + 2**-l(m)) * 2**(xe + ye),   l(m) = m (m <= 3), 3 (m = 4), 4 (m > 4)

for float32 operands whose mantissas are truncated to m bits (m = 2..7), sign by XOR.
Adding the patterns |x| + |y| - bits(1.0) + 2**(23 - l) adds the exponents and the
mantissa fields at once, as the paper's hardware does: where s = xm + ym + 2**-l reaches 1
(or 2, possible for m >= 4) the mantissa sum carries into the exponent, so the value is
(1 + frac(s)) * 2**(xe + ye + floor(s)) (the formula's 1 + s would not be a normalized
mantissa). The result is not exact even by a power of two: lmul(1, 1) is
1 + 2**-l. The program is written in the IR (bitcast, and, xor, int add, compares) and
compiled by the engine; `lmul_program(m)` returns it.

The paper leaves special values aside (it targets fp8/bf16 inference); here they follow
IEEE where that makes sense:
  - a zero operand gives a zero, signed by XOR; subnormal operands count as zero (as with
    DAZ: their exponent field is 0, which the integer addition cannot use);
  - results below the smallest normal float32 (2**-126) flush to zero, signed;
  - results at or above 2**128 overflow to inf, signed;
  - inf times a nonzero operand is inf; inf times zero (or a subnormal) is NaN; a NaN
    operand gives NaN (checked before truncation, which would turn some NaNs into inf).
"""
from __future__ import annotations

import sys
from functools import cache

import numpy as np

from exprforge.engine.expr import F, Expr, const, var
from exprforge.targets.build import compile_kernel

MANTISSAS = range(2, 8)
BIAS = 0x3F800000          # bits of 1.0: the exponent bias in place
INF = 0x7F800000
QNAN = 0x7FC00000
MIN_NORMAL = 0x00800000
SIGN = -0x80000000         # the sign bit as an int32
MATMUL_CHUNK = 1 << 22     # elements of the (M, K, N) product array per Triton call (CUDA)


def offset_exponent(m: int) -> int:
    """l(m) of the paper: the 2**-l(m) term that stands for the dropped xm * ym."""
    return m if m <= 3 else 3 if m == 4 else 4


def _check(m):
    if m not in MANTISSAS:
        raise ValueError(f"L-Mul takes m = 2..7 mantissa bits, not {m!r}")


def lmul_program(m: int, x: Expr | None = None, y: Expr | None = None) -> Expr:
    """L-Mul of two float32 Exprs (default: variables x, y) as an IR program."""
    _check(m)
    x = var("x", "float32") if x is None else x
    y = var("y", "float32") if y is None else y
    bx, by = x.bitcast("int32"), y.bitcast("int32")
    ax, ay = bx & 0x7FFFFFFF, by & 0x7FFFFFFF
    keep = 0x7FFFFFFF & ~((1 << (23 - m)) - 1)      # exponent and the top m mantissa bits
    tx, ty = ax & keep, ay & keep
    sign = (bx ^ by) & const(SIGN, "int32")
    zero = (ax < MIN_NORMAL) | (ay < MIN_NORMAL)
    nan = (ax > INF) | (ay > INF) | (ax.eq(INF) & (ay < MIN_NORMAL)) | \
        (ay.eq(INF) & (ax < MIN_NORMAL))
    inf = ax.eq(INF) | ay.eq(INF)
    # tx - (BIAS - offset) + ty, with the range checks made before the sum so that no
    # selected lane overflows int32
    t = tx - (BIAS - (1 << (23 - offset_exponent(m))))
    over = t >= INF - ty
    under = t < MIN_NORMAL - ty
    magnitude = F.where(nan, QNAN, F.where(inf, INF, F.where(zero | under, 0,
                                                              F.where(over, INF, t + ty))))
    return (magnitude | sign).bitcast("float32")


def lmul_matmul_program(m: int) -> Expr:
    """sum over axis -2 of lmul(x, y): x shaped (..., M, K, 1), y (..., 1, K, N)."""
    return F.rsum(lmul_program(m), axis=-2)


@cache
def _kernel(kind: str, m: int, target: str):
    if kind == "mul":
        return compile_kernel(lmul_program(m), target, None, ("x", "y"))
    if kind == "matmul":
        return compile_kernel(lmul_program(m), "numba", None, ("x", "y"), matmul=True)
    return compile_kernel(lmul_matmul_program(m), target, None, ("x", "y"))


def _torch():
    import torch
    return torch


def _is_tensor(a) -> bool:
    torch = sys.modules.get("torch")  # a tensor means torch is loaded; never import it here
    return torch is not None and isinstance(a, torch.Tensor)


def _straight_through(approx, exact_fn, inputs):
    """approx's value with exact_fn's gradient (straight-through)."""
    return _straight_through_function().apply(exact_fn, approx, *inputs)


@cache
def _straight_through_function():
    torch = _torch()

    class StraightThrough(torch.autograd.Function):
        @staticmethod
        def forward(ctx, exact_fn, approx, *args):
            ctx.exact_fn = exact_fn
            ctx.save_for_backward(*args)
            return approx

        @staticmethod
        def backward(ctx, grad):
            args = [a.detach().requires_grad_(True) for a in ctx.saved_tensors]
            with torch.enable_grad():
                out = ctx.exact_fn(*args)
            return (None, None, *torch.autograd.grad(out, args, grad, allow_unused=True))

    return StraightThrough


def _as_float32(a):
    torch = _torch()
    return a if a.dtype == torch.float32 else a.float()


def lmul(x, y, m: int = 3):
    """Elementwise L-Mul of x and y (NumPy arrays or torch tensors; broadcasting), in
    float32. On tensors it runs the torch target's kernel (LLVM on the CPU, Triton on
    CUDA); its gradient is straight-through: that of the exact product x * y."""
    _check(m)
    if not (_is_tensor(x) or _is_tensor(y)):
        return _kernel("mul", m, "llvm")(np.asarray(x), np.asarray(y))
    torch = _torch()
    x, y = (_as_float32(torch.as_tensor(a)) for a in (x, y))
    approx = _kernel("mul", m, "torch")(x.detach(), y.detach())
    if not (x.requires_grad or y.requires_grad) or not torch.is_grad_enabled():
        return approx
    return _straight_through(approx, torch.mul, (x, y))


def lmul_matmul(a, b, m: int = 3):
    """a @ b with every product by L-Mul and the sums in float32, in the order of k
    (NumPy arrays or torch tensors, batched like matmul, 2-D or more). On the CPU the
    L-Mul program runs inside a generated matmul loop nest (Numba, matmul=True); on CUDA
    the (M, K, N) products are made in chunks of MATMUL_CHUNK elements by the Triton
    kernel of `lmul_matmul_program` and summed over K. Gradient: straight-through (exact
    matmul's)."""
    _check(m)
    if not (_is_tensor(a) or _is_tensor(b)):
        return _kernel("matmul", m, "numba").matmul(np.asarray(a, np.float32),
                                                    np.asarray(b, np.float32))
    torch = _torch()
    a, b = (_as_float32(torch.as_tensor(t)) for t in (a, b))
    if a.is_cuda or b.is_cuda:
        approx = _chunked(_kernel("sum", m, "torch"), a.detach(), b.detach(),
                          lambda parts, axis: torch.cat(parts, dim=axis))
    else:
        _shapes(a, b)
        approx = torch.from_numpy(_kernel("matmul", m, "numba").matmul(
            a.detach().numpy(), b.detach().numpy()))
    if not (a.requires_grad or b.requires_grad) or not torch.is_grad_enabled():
        return approx
    return _straight_through(approx, torch.matmul, (a, b))


def _shapes(a, b):
    if a.ndim < 2 or b.ndim < 2:
        raise ValueError("lmul_matmul takes arrays of 2 or more dimensions")
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"lmul_matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} "
                         "do not match in K")


def _chunked(kernel, a, b, concat):
    _shapes(a, b)
    batch = int(np.prod(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]), dtype=np.int64))
    m_rows, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    rows = max(1, MATMUL_CHUNK // max(1, batch * k * n))
    yb = b[..., None, :, :]
    parts = [kernel(a[..., i:i + rows, :, None], yb)[..., 0, :]
             for i in range(0, max(m_rows, 1), rows)]
    return parts[0] if len(parts) == 1 else concat(parts, -2)
