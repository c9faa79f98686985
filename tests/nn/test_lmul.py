"""L-Mul against an independent decoding reference, its properties, the L-Mul matmul and
the attention layer."""
import math

import numpy as np
import pytest
import torch

from exprforge.nn import LMulAttention, lmul, lmul_matmul
from exprforge.nn import l_mul as module

from .references import SPECIALS, l_of, lmul_reference, same_bits

MS = range(2, 8)


def operands(seed=0, n=20000):
    """N(0,1) pairs, random bit patterns (every exponent, NaN payloads, subnormals), and
    pairs whose products straddle overflow (2**128) and underflow (2**-126)."""
    rng = np.random.default_rng(seed)
    normal = rng.standard_normal((2, n)).astype(np.float32)
    bits = rng.integers(-2 ** 31, 2 ** 31, (2, n)).astype(np.int32).view(np.float32)
    e = rng.integers(-70, 70, n)
    edge_x = np.ldexp(rng.uniform(1, 2, n), e)
    edge_y = np.ldexp(rng.uniform(1, 2, n), np.where(e > 0, 127 - e, -126 - e) +
                      rng.integers(-2, 2, n)) * rng.choice([-1, 1], n)
    edge = np.stack([edge_x, edge_y]).astype(np.float32)
    return np.concatenate([normal, bits, edge], axis=1)


@pytest.mark.parametrize("m", MS)
def test_bits_equal_the_decoding_reference(m):
    x, y = operands(m)
    assert same_bits(lmul(x, y, m), lmul_reference(x, y, m))
    sx, sy = SPECIALS[:, None], SPECIALS[None, :]   # every pair of special values
    assert same_bits(lmul(sx, sy, m), lmul_reference(sx, sy, m))


@pytest.mark.parametrize("m", MS)
def test_commutative_and_signs_by_xor(m):
    x, y = operands(10 + m)
    xy = lmul(x, y, m)
    assert same_bits(xy, lmul(y, x, m))
    ok = ~np.isnan(xy)
    assert same_bits(lmul(-x, y, m)[ok], -xy[ok])
    assert same_bits(lmul(-x, -y, m)[ok], xy[ok])


@pytest.mark.parametrize("m", MS)
def test_not_exact_on_powers_of_two_but_scales_by_them(m):
    # lmul(1, 1) carries the offset 2**-l(m): L-Mul is not exact even there
    assert lmul(np.float32(1), np.float32(1), m) == 1 + 2.0 ** -l_of(m)
    rng = np.random.default_rng(m)
    x, y = rng.standard_normal((2, 1000)).astype(np.float32)
    for k in (-20, -1, 1, 7, 30):
        p = np.float32(2.0 ** k)
        assert same_bits(lmul(x * p, y, m), lmul(x, y, m) * p)
        assert same_bits(lmul(x, p, m), lmul(x, np.float32(1), m) * p)


def truncated(x, m):
    return (x.view(np.int32) & np.int32(~((1 << (23 - m)) - 1))).view(np.float32)


@pytest.mark.parametrize("m", MS)
def test_error_against_the_truncated_operands_is_bounded(m):
    """The error depends only on the two m-bit mantissas: it lies in (-7.3%, 2**-l(m)],
    the top at the mantissas' zero (lmul(1, 1)). Measured over every mantissa pair."""
    x, y = np.random.default_rng(m).standard_normal((2, 50000)).astype(np.float32)
    x, y = x[np.abs(x) > 1e-3], y[np.abs(x) > 1e-3]
    y = np.where(np.abs(y) > 1e-3, y, 1).astype(np.float32)
    exact = truncated(x, m).astype(np.float64) * truncated(y, m)
    rel = lmul(x, y, m) / exact - 1
    assert rel.min() > -0.073 and rel.max() <= 2.0 ** -l_of(m)


@pytest.mark.parametrize("m", [2, 4, 7])
def test_monotone_in_each_operand(m):
    x = np.sort(np.abs(operands(m, 5000)[0]))
    x = x[np.isfinite(x)]
    for y in (np.float32(0.3), np.float32(-7.5), np.float32(1e30)):
        r = np.abs(lmul(x, y, m))
        assert np.all(r[1:] >= r[:-1])


def test_special_values():
    f = np.float32
    assert np.signbit(lmul(f(-0.0), f(3), 3)) and lmul(f(-0.0), f(3), 3) == 0
    assert not np.signbit(lmul(f(-0.0), f(-3), 3))
    assert lmul(f(1e-40), f(1e30), 3) == 0           # subnormal operand counts as zero
    assert np.isnan(lmul(f(0), f(np.inf), 3)) and np.isnan(lmul(f(np.nan), f(1), 3))
    assert lmul(f(-np.inf), f(2), 3) == -np.inf
    assert lmul(f(3e38), f(3e38), 3) == np.inf       # overflow
    assert lmul(f(-1e-30), f(1e-30), 3) == 0 and np.signbit(lmul(f(-1e-30), f(1e-30), 3))


def test_arrays_broadcast_and_come_back_float32():
    x = np.linspace(-2, 2, 12).reshape(3, 4)       # float64 data: computed in float32
    r = lmul(x, np.float32([1.5, -0.25, 3, 1]), 4)
    assert r.dtype == np.float32 and r.shape == (3, 4)
    assert same_bits(r, lmul_reference(x.astype(np.float32), np.float32([1.5, -0.25, 3, 1]), 4))
    with pytest.raises(ValueError, match="m = 2..7"):
        lmul(x, x, 8)


def test_tensors_run_the_torch_kernel_with_a_straight_through_gradient():
    x = torch.randn(4, 3, requires_grad=True)
    y = torch.randn(3, requires_grad=True)
    r = lmul(x, y, 4)
    want = lmul_reference(x.detach().numpy(), y.detach().numpy(), 4)
    assert same_bits(r.detach().numpy(), want)
    gx, gy = torch.autograd.grad(r.sum(), (x, y))
    torch.testing.assert_close(gx, y.detach().expand(4, 3))
    torch.testing.assert_close(gy, x.detach().sum(0))


def matmul_reference(a, b, m):
    """Products by the reference L-Mul, summed in float32 by the same NumPy reduction."""
    return np.sum(lmul_reference(a[..., :, :, None], b[..., None, :, :], m), axis=-2)


@pytest.mark.parametrize("m", [3, 4])
def test_matmul_products_by_lmul_sums_in_float32(m, monkeypatch):
    rng = np.random.default_rng(m)
    a = rng.standard_normal((2, 5, 7)).astype(np.float32)
    b = rng.standard_normal((7, 3)).astype(np.float32)
    want = matmul_reference(a, np.broadcast_to(b, (2, 7, 3)), m)
    assert same_bits(lmul_matmul(a, b, m), want)
    # the CUDA path (products made in chunks of rows, summed over K) on CPU tensors
    monkeypatch.setattr(module, "MATMUL_CHUNK", 30)  # a few rows per kernel call
    chunked = module._chunked(module._kernel("sum", m, "torch"), torch.from_numpy(a),
                              torch.from_numpy(b), lambda parts, axis: torch.cat(parts, axis))
    assert same_bits(chunked.numpy(), want)
    exact = a.astype(np.float64) @ b
    assert np.abs(want - exact).max() < 0.2 * np.abs(exact).max()


def test_matmul_on_tensors_and_its_straight_through_gradient():
    a = torch.randn(3, 4, 6, requires_grad=True)
    b = torch.randn(3, 6, 2, requires_grad=True)
    r = lmul_matmul(a, b, 3)
    assert r.shape == (3, 4, 2)
    want = matmul_reference(a.detach().numpy(), b.detach().numpy(), 3)
    assert same_bits(r.detach().numpy(), want)
    g = torch.randn(3, 4, 2)
    got = torch.autograd.grad(r, (a, b), g)
    ar, br = a.detach().requires_grad_(), b.detach().requires_grad_()
    want = torch.autograd.grad(ar @ br, (ar, br), g)
    for x, w in zip(got, want):
        torch.testing.assert_close(x, w)
    with pytest.raises(ValueError, match="do not match"):
        lmul_matmul(a, a, 3)


def attention_reference(att, x, mm, mask=None):
    """The attention formula, with `mm` as both matmuls."""
    batch, time, d = x.shape
    h = att.n_heads
    q, k, v = att.qkv(x).detach().view(batch, time, 3, h, d // h).permute(2, 0, 3, 1, 4)
    scores = torch.as_tensor(mm(q.numpy(), k.transpose(-1, -2).numpy())) / math.sqrt(d // h)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    y = torch.as_tensor(mm(torch.softmax(scores, -1).numpy(), v.numpy()))
    return att.out(y.transpose(1, 2).reshape(batch, time, d)).detach()


@pytest.mark.parametrize("m", [None, 3])
def test_attention_uses_lmul_for_both_matmuls(m):
    torch.manual_seed(0)
    att = LMulAttention(16, 2, m=m)
    x = torch.randn(3, 5, 16)
    mask = torch.ones(5, 5, dtype=torch.bool).tril()
    mm = np.matmul if m is None else (lambda a, b: matmul_reference(a, b, m))
    for msk in (None, mask):
        torch.testing.assert_close(att(x, msk).detach(), attention_reference(att, x, mm, msk),
                                   rtol=1e-5, atol=1e-6)


def test_attention_trains_through_lmul():
    torch.manual_seed(1)
    att = LMulAttention(8, 2, m=4)
    x = torch.randn(2, 4, 8)
    att(x).pow(2).sum().backward()
    grads = [p.grad for p in att.parameters()]
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)
