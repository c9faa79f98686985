"""EvoNorm (Liu et al. 2020, "Evolving Normalization-Activation Layers"), NCHW:

    B0:  y = x / max(sqrt(var_{N,H,W}(x) + eps), v*x + sqrt(var_{H,W}(x) + eps)) * gamma + beta
    S0:  y = x * sigmoid(v*x) / sqrt(var_{H,W,C/g}(x) + eps) * gamma + beta

v, gamma, beta are learnable, shaped (1, C, 1, 1); v = gamma = 1 and beta = 0 at init. The
variances are the biased ones (the paper's tf.nn.moments). Each formula is one exprforge
program with its reductions (rvar over numbered axes), compiled for the torch target: the
forward kernel and every gradient (input, v, gamma, beta) come from the engine
(engine.derive.vjp through the reductions), none is written here.

B0 uses the batch variance in training and a moving average of it in eval mode. The eval
program is the training program with the batch variance node replaced by a variable
`running_var`; the moving average is a third small program,
(1 - momentum) * running_var + momentum * batch_var, run without autograd after each
training forward on the batch variance that forward saved for its backward.
S0 is batch-independent, so it has one program for both modes: the module reshapes x
to (N, g, C/g, H, W) around the call so that the group variance is a reduction over the
last three axes (reshapes are views; the arithmetic is the kernel's).
"""
from __future__ import annotations

from functools import cache

import torch

from exprforge.engine.expr import F, Expr, var
from exprforge.targets.build import compile_kernel

ARGS = ("x", "v", "gamma", "beta")
B0_EVAL_ARGS = ARGS + ("running_var",)
NHW, HW, GROUP = (-4, -2, -1), (-2, -1), (-3, -2, -1)


def batch_variance(x: Expr) -> Expr:
    return x.var(axis=NHW)


def evonorm_b0_expr(dtype: str = "float32", eps: float = 1e-5, training: bool = True) -> Expr:
    x, v, gamma, beta = (var(n, dtype) for n in ARGS)
    between = batch_variance(x) if training else var("running_var", dtype)
    instance = v * x + F.sqrt(x.var(axis=HW) + eps)
    return x / F.max(F.sqrt(between + eps), instance) * gamma + beta


def running_var_expr(dtype: str = "float32", momentum: float = 0.1) -> Expr:
    running, batch = var("running_var", dtype), var("batch_var", dtype)
    return (1 - momentum) * running + momentum * batch


def evonorm_s0_expr(dtype: str = "float32", eps: float = 1e-5) -> Expr:
    """On x grouped as (N, g, C/g, H, W) and parameters as (1, g, C/g, 1, 1)."""
    x, v, gamma, beta = (var(n, dtype) for n in ARGS)
    return x * F.sigmoid(v * x) / F.sqrt(x.var(axis=GROUP) + eps) * gamma + beta


@cache
def _kernel(name: str, dtype: str, constant: float):
    """constant: eps, or momentum for the running variance."""
    if name == "b0":
        return compile_kernel(evonorm_b0_expr(dtype, constant), "torch", None, ARGS)
    if name == "b0_eval":
        return compile_kernel(evonorm_b0_expr(dtype, constant, training=False), "torch",
                              None, B0_EVAL_ARGS)
    if name == "running_var":
        return compile_kernel(running_var_expr(dtype, constant), "torch", None,
                              ("running_var", "batch_var"))
    # float32's sigmoid (forward and backward) is the library's verified program by
    # default (0.53 ULP on every input, plain arithmetic that vectorizes); float64 keeps
    # the C library
    return compile_kernel(evonorm_s0_expr(dtype, constant), "torch", None, ARGS)


def _kernel_dtype(x: torch.Tensor) -> str:
    return "float64" if x.dtype == torch.float64 else "float32"


def s0_groups(channels: int, groups: int = 32) -> int:
    """The largest group count <= `groups` that divides `channels`."""
    g = max(1, min(groups, channels))
    while channels % g:
        g -= 1
    return g


class _EvoNorm(torch.nn.Module):
    def __init__(self, channels: int, eps: float):
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be positive, got {channels}")
        self.channels, self.eps = int(channels), float(eps)
        shape = (1, self.channels, 1, 1)
        self.v = torch.nn.Parameter(torch.ones(shape))
        self.gamma = torch.nn.Parameter(torch.ones(shape))
        self.beta = torch.nn.Parameter(torch.zeros(shape))

    def _check(self, x):
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"{type(self).__name__}({self.channels}) takes NCHW input with "
                             f"{self.channels} channels, got shape {tuple(x.shape)}")

    def _params(self, x):
        return [p.to(x.dtype) for p in (self.v, self.gamma, self.beta)]


class EvoNormB0(_EvoNorm):
    """x / max(sqrt(var_{N,H,W}(x) + eps), v*x + sqrt(var_{H,W}(x) + eps)) * gamma + beta
    on generated kernels; eval mode uses the moving average `running_var` of the batch
    variance (momentum as in torch's BatchNorm: new = (1 - m) * old + m * batch)."""

    def __init__(self, channels: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__(channels, eps)
        self.momentum = float(momentum)
        self.register_buffer("running_var", torch.ones(1, self.channels, 1, 1))

    def forward(self, x):
        self._check(x)
        dtype = _kernel_dtype(x)
        if not self.training:
            running = self.running_var.to(x.dtype)
            return _kernel("b0_eval", dtype, self.eps)(x, *self._params(x), running)
        kernel = _kernel("b0", dtype, self.eps)
        y, *saved = kernel.with_saved(x, *self._params(x))
        with torch.no_grad():
            batch = saved[kernel.saved.index(batch_variance(var("x", dtype)))]
            update = _kernel("running_var", dtype, self.momentum)
            self.running_var.copy_(update(self.running_var.to(x.dtype), batch))
        return y

    def extra_repr(self):
        return f"{self.channels}, eps={self.eps}, momentum={self.momentum}"


class EvoNormS0(_EvoNorm):
    """x * sigmoid(v*x) / sqrt(var_{H,W,C/g}(x) + eps) * gamma + beta on a generated kernel,
    with g the largest divisor of C not above `groups`; the same in train and eval mode."""

    def __init__(self, channels: int, groups: int = 32, eps: float = 1e-5):
        super().__init__(channels, eps)
        self.groups = s0_groups(self.channels, groups)

    def forward(self, x):
        self._check(x)
        n, c, h, w = x.shape
        grouped = (1, self.groups, c // self.groups, 1, 1)
        params = [p.reshape(grouped) for p in self._params(x)]
        y = _kernel("s0", _kernel_dtype(x), self.eps)(
            x.reshape(n, self.groups, c // self.groups, h, w), *params)
        return y.reshape(n, c, h, w)

    def extra_repr(self):
        return f"{self.channels}, groups={self.groups}, eps={self.eps}"
