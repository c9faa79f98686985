"""PolyCom activations (Zhuo et al. 2025, "Polynomial Composition Activations").

    PolyReLU(x) = a1 relu(x) + a2 relu(x)**2 + a3 relu(x)**3 + b
    PolyNorm(x) = a1 n(x) + a2 n(x**2) + a3 n(x**3) + b,   n(u) = u * rsqrt(mean(u**2) + eps)

with the mean over the last axis, learnable a = (1/3, 1/3, 1/3) and b = 0 at init. Each
formula is one exprforge program whose coefficients are kernel arguments, compiled for
the torch target: the forward kernel and every gradient (input and coefficients) come
from the engine; PolyNorm's backward is the IR's vector-Jacobian product through its
three row means (engine.derive.vjp), not a formula written here.

The paper's code indexes its weight from the cubic term down (weight[0] * n(x**3));
here weight[i - 1] multiplies the degree-i term, as in the paper's equations.
"""
from __future__ import annotations

from functools import cache

import torch

from exprforge.engine.expr import F, Expr, var
from exprforge.targets.build import compile_kernel

ARGS = ("x", "a1", "a2", "a3", "b")


def polyrelu_expr(dtype: str = "float32") -> Expr:
    x, a1, a2, a3, b = (var(n, dtype) for n in ARGS)
    r = F.relu(x)
    return a1 * r + a2 * r ** 2 + a3 * r ** 3 + b


def polynorm_expr(dtype: str = "float32", eps: float = 1e-6) -> Expr:
    x, a1, a2, a3, b = (var(n, dtype) for n in ARGS)

    def n(u):   # times the reciprocal root, as the paper's code (torch.rsqrt): per row
        return u * (1 / F.sqrt(F.rmean(u * u, axis=-1) + eps))   # then one multiply each
    return a1 * n(x) + a2 * n(x * x) + a3 * n(x * x * x) + b


@cache
def _kernel(name: str, dtype: str, eps: float | None = None):
    expr = polyrelu_expr(dtype) if name == "polyrelu" else polynorm_expr(dtype, eps)
    return compile_kernel(expr, "torch", None, ARGS)


def _kernel_dtype(x: torch.Tensor) -> str:
    return "float64" if x.dtype == torch.float64 else "float32"


class _PolyCom(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.full((3,), 1 / 3))
        self.bias = torch.nn.Parameter(torch.zeros(1))

    def _apply_kernel(self, kernel, x):
        w = self.weight.to(x.dtype)
        return kernel(x, *w.unbind(), self.bias.to(x.dtype))


class PolyReLU(_PolyCom):
    """sum_{i=1..3} weight[i-1] * relu(x)**i + bias, elementwise, on a generated kernel.
    float64 inputs run a float64 kernel; other float dtypes run in float32."""

    def forward(self, x):
        return self._apply_kernel(_kernel("polyrelu", _kernel_dtype(x)), x)


class PolyNorm(_PolyCom):
    """sum_{i=1..3} weight[i-1] * n(x**i) + bias, n(u) = u * rsqrt(mean(u**2, -1) + eps),
    on a generated kernel (the means are over the last axis)."""

    def __init__(self, eps: float = 1e-6):
        super().__init__()
        self.eps = float(eps)

    def forward(self, x):
        return self._apply_kernel(_kernel("polynorm", _kernel_dtype(x), self.eps), x)

    def extra_repr(self):
        return f"eps={self.eps}"
