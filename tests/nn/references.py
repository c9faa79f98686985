"""Independent references for the paper layers' tests: the formulas in torch, and an
L-Mul that decodes each operand into (exponent, mantissa) with np.frexp and applies the
paper's formula in float64, the mantissa sum's carry going into the exponent as the
integer addition does: (1 + frac(s)) * 2**(xe + ye + floor(s)), s = xm + ym + 2**-l(m);
then the special-value rules of nn/l_mul.py."""
import numpy as np
import torch

TINY = 2.0 ** -126


def l_of(m):
    return m if m <= 3 else 3 if m == 4 else 4


def lmul_reference(x, y, m):
    x, y = np.broadcast_arrays(np.asarray(x, np.float32), np.asarray(y, np.float32))
    with np.errstate(all="ignore"):
        x, y = x.astype(np.float64), y.astype(np.float64)
        fx, ex = np.frexp(np.abs(x))     # |x| = fx * 2**ex, fx in [0.5, 1)
        fy, ey = np.frexp(np.abs(y))
        xm = np.floor((2 * fx - 1) * 2.0 ** m) / 2.0 ** m   # mantissa truncated to m bits
        ym = np.floor((2 * fy - 1) * 2.0 ** m) / 2.0 ** m
        s = xm + ym + 2.0 ** -l_of(m)
        e = (ex - 1) + (ey - 1)
        carry = np.floor(s)   # 0, 1, or 2 (m >= 4: the offset can push the sum past 2)
        value = np.ldexp(1 + (s - carry), e + carry.astype(np.int64))
        value = np.where(value < TINY, 0.0, value)                  # flush underflow
        value = np.where(value >= 2.0 ** 128, np.inf, value)        # overflow
        zero = (np.abs(x) < TINY) | (np.abs(y) < TINY)              # zeros and subnormals
        inf = np.isinf(x) | np.isinf(y)
        value = np.where(zero, 0.0, value)
        value = np.where(inf, np.inf, value)
        value = np.where(np.isnan(x) | np.isnan(y) | (inf & zero), np.nan, value)
        negative = np.signbit(x) ^ np.signbit(y)
    return np.where(negative, -value, value).astype(np.float32)


SPECIALS = np.array([0.0, -0.0, 1e-45, -1e-40, 1.1754944e-38, 1.0, -1.0, 0.5, 2.0, -3.0,
                     1.9999, 1e20, 3.4e38, -3.4e38, 1e-20, np.inf, -np.inf, np.nan],
                    dtype=np.float32)


def same_bits(a, b):
    """Bit-identical, any NaN matching any NaN."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    assert a.shape == b.shape
    nan = np.isnan(a)
    assert np.array_equal(nan, np.isnan(b))
    return np.array_equal(a[~nan].view(np.int32), b[~nan].view(np.int32))


def polyrelu_reference(x, w, b):
    r = torch.relu(x)
    return w[0] * r + w[1] * r ** 2 + w[2] * r ** 3 + b


def polynorm_reference(x, w, b, eps=1e-6):
    def n(u):
        return u * torch.rsqrt(u.pow(2).mean(-1, keepdim=True) + eps)
    return w[0] * n(x) + w[1] * n(x ** 2) + w[2] * n(x ** 3) + b


EVONORM_EPS = 1e-5


def variance(x, dims):
    return x.var(dim=dims, correction=0, keepdim=True)


def b0_reference(x, v, gamma, beta, running_var=None, eps=EVONORM_EPS):
    between = variance(x, (0, 2, 3)) if running_var is None else running_var
    instance = v * x + torch.sqrt(variance(x, (2, 3)) + eps)
    return x / torch.maximum(torch.sqrt(between + eps), instance) * gamma + beta


def s0_reference(x, v, gamma, beta, groups, eps=EVONORM_EPS):
    n, c, h, w = x.shape
    std = torch.sqrt(variance(x.reshape(n, groups, c // groups * h * w), (2,)) + eps)
    std = std.repeat_interleave(c // groups, dim=1).reshape(n, c, 1, 1)
    return x * torch.sigmoid(v * x) / std * gamma + beta


def assert_triton_backward_matches(cpu, arrays):
    """The gradient program of the torch kernel `cpu` (one result per argument), compiled
    for Triton, gives the CPU backward kernel's values on (grad, *inputs) = arrays."""
    from exprforge.targets.build import compile_kernel
    backward = cpu.backward_kernel(tuple(range(len(cpu.plan.params))))
    k = compile_kernel(backward.plan.expr, "triton", None, backward.plan.params)
    got, want = k(*arrays), backward.cpu(*(a.numpy() for a in arrays))
    assert len(got) == len(want) == len(cpu.plan.params)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a.cpu().numpy(), b, rtol=1e-12, atol=1e-12)


def assert_gradients_match(layer, reference, inputs, cotangent, rtol, atol):
    """The gradients of sum(cotangent * layer(inputs[0])) with respect to every tensor of
    `inputs` (the input, then the layer's parameters) equal those of the torch reference
    formula reference(*inputs)."""
    got = torch.autograd.grad(layer(inputs[0]), inputs, cotangent)
    leaves = [t.detach().requires_grad_() for t in inputs]
    want = torch.autograd.grad(reference(*leaves), leaves, cotangent)
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e, rtol=rtol, atol=atol)
