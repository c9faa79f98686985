"""LMulAttention: multi-head self-attention whose two matmuls (Q K^T and P V) multiply by
L-Mul (see nn/l_mul.py); projections and softmax stay exact, as in the paper's attention
experiments."""
from __future__ import annotations

import math

import torch

from .l_mul import lmul_matmul


class LMulAttention(torch.nn.Module):
    """Self-attention on (batch, time, d_model) inputs. `m` (2..7) picks L-Mul's mantissa
    bits for Q K^T and P V; m=None multiplies exactly (torch.matmul), so one module can
    be trained exact and evaluated with L-Mul by setting `.m`.

    Gradients with L-Mul are straight-through: the backward pass is the exact matmul's
    (the paper uses L-Mul for inference; its bit-level product has no useful derivative).
    """

    def __init__(self, d_model: int, n_heads: int, m: int | None = None, bias: bool = True):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not a multiple of n_heads {n_heads}")
        self.n_heads, self.m = n_heads, m
        self.qkv = torch.nn.Linear(d_model, 3 * d_model, bias=bias)
        self.out = torch.nn.Linear(d_model, d_model, bias=bias)

    def matmul(self, a, b):
        return torch.matmul(a, b) if self.m is None else lmul_matmul(a, b, self.m)

    def forward(self, x, mask=None):
        """`mask`: bool, broadcastable to (batch, heads, time, time); True is kept."""
        batch, time, d = x.shape
        q, k, v = self.qkv(x).view(batch, time, 3, self.n_heads, d // self.n_heads) \
            .permute(2, 0, 3, 1, 4)
        scores = self.matmul(q, k.transpose(-1, -2)) / math.sqrt(d // self.n_heads)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        y = self.matmul(torch.softmax(scores, dim=-1), v)
        return self.out(y.transpose(1, 2).reshape(batch, time, d))

    def extra_repr(self):
        return f"n_heads={self.n_heads}, m={self.m}"
