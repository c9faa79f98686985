"""PolyReLU and PolyNorm against the paper's formulas written in torch, and gradcheck."""
import numpy as np
import pytest
import torch
from torch.func import functional_call

from exprforge.codegen.lower import Reduce, RowReduce
from exprforge.nn import PolyNorm, PolyReLU
from exprforge.nn.polycom import _kernel

from .references import polynorm_reference, polyrelu_reference

MODULES = [(PolyReLU, polyrelu_reference), (PolyNorm, polynorm_reference)]
SHAPES = [(3, 5), (2, 3, 4), (1, 16)]


def _module(cls, dtype=torch.float64):
    m = cls().to(dtype)
    with torch.no_grad():  # away from the init, so each coefficient's role shows
        m.weight.copy_(torch.tensor([0.7, -0.4, 0.3]))
        m.bias.fill_(0.2)
    return m


def _input(shape, dtype=torch.float64, seed=0):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    return x + torch.sign(x) * 0.05  # off relu's kink at 0


@pytest.mark.parametrize("cls", [PolyReLU, PolyNorm])
def test_initial_coefficients_are_the_papers(cls):
    m = cls()
    torch.testing.assert_close(m.weight.detach(), torch.full((3,), 1 / 3))
    torch.testing.assert_close(m.bias.detach(), torch.zeros(1))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("cls,reference", MODULES)
def test_forward_float32_matches_the_formula(cls, reference, shape):
    m, x = _module(cls, torch.float32), _input(shape, torch.float32)
    y = m(x)
    assert y.dtype == torch.float32 and y.shape == x.shape
    torch.testing.assert_close(y, reference(x, m.weight, m.bias), rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("cls,reference", MODULES)
def test_gradcheck_input_and_every_coefficient(cls, reference, shape):
    m = _module(cls)
    x = _input(shape).requires_grad_()
    w = m.weight.detach().clone().requires_grad_()
    b = m.bias.detach().clone().requires_grad_()

    def f(x, w, b):
        return functional_call(m, {"weight": w, "bias": b}, (x,))
    assert torch.autograd.gradcheck(f, (x, w, b))


@pytest.mark.parametrize("cls,reference", MODULES)
def test_gradients_equal_the_references(cls, reference):
    m = _module(cls)
    x = _input((8, 32), seed=1).requires_grad_()
    g = torch.randn(8, 32, dtype=torch.float64)
    got = torch.autograd.grad(m(x), (x, m.weight, m.bias), g)
    w, b = m.weight.detach().requires_grad_(), m.bias.detach().requires_grad_()
    xr = x.detach().requires_grad_()
    want = torch.autograd.grad(reference(xr, w, b), (xr, w, b), g)
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-10)


def test_polynorm_backward_is_a_kernel_with_row_sums():
    """The input gradient is one generated program whose row means and sums over the
    last axis run in generated loops (RowReduce), none through NumPy."""
    k = _kernel("polynorm", "float64", 1e-6)
    steps = k.backward_kernel((0,)).plan.steps
    assert not any(isinstance(s, Reduce) for s in steps)
    # the means' counts are the rows' length (rcount), not sums of ones
    assert {op for s in steps if isinstance(s, RowReduce) for op in s.ops} == \
        {"rmean", "rsum", "rcount"}
    assert {s.axes for s in steps if isinstance(s, RowReduce)} == {(-1,)}


def test_eps_is_part_of_the_kernel():
    x = torch.zeros(2, 4, dtype=torch.float64)
    x[0, 0] = 1e-3  # mean(x**2) = 2.5e-7, comparable to eps
    for eps in (1e-6, 1e-2):
        m = _module(PolyNorm).double()
        m.eps = eps
        torch.testing.assert_close(m(x), polynorm_reference(x, m.weight, m.bias, eps))


def test_a_training_step_moves_the_coefficients():
    m = PolyNorm()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    x = torch.randn(16, 8, generator=torch.Generator().manual_seed(0))
    loss = (m(x) - x.sin()).pow(2).mean()
    loss.backward()
    opt.step()
    assert not torch.equal(m.weight.detach(), torch.full((3,), 1 / 3))
    assert (m(x) - x.sin()).pow(2).mean() < loss


def test_parameter_gradients_are_summed_in_the_input_gradients_loop():
    """PolyReLU's backward is one loop: the input gradient per element and the four
    scalar parameters' gradients summed as it goes (no full-size arrays for them)."""
    k = _kernel("polyrelu", "float64")
    flat = ((2, ()),) * 2 + ((0, (-2, -1)),) * 4   # grad_out, x: (8, 32); the parameters: ()
    backward = k.backward_kernel((0, 1, 2, 3, 4), True, flat)
    (step,) = backward.plan.steps
    assert isinstance(step, RowReduce) and sorted(step.ops) == ["", "rsum", "rsum", "rsum", "rsum"]
    rng = np.random.default_rng(0)
    g, x = rng.standard_normal((2, 8, 32))
    grads = backward.cpu(g, x, 0.3, -0.2, 0.1, 0.05)
    assert [np.shape(a) for a in grads] == [(8, 32)] + [(1, 1)] * 4
    r = np.maximum(x, 0)
    want = [(g * r).sum(), (g * r * r).sum(), (g * r ** 3).sum(), g.sum()]
    np.testing.assert_allclose([float(a[0, 0]) for a in grads[1:]], want, rtol=1e-12)
