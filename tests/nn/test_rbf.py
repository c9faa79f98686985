"""GaussianRBF against the direct (not expanded) formula written in torch, gradcheck
through the generated kernel and the matmuls, and the kernel on Triton (a GPU when there
is one, else Triton's interpreter)."""
import os

import numpy as np
import pytest
import torch
from torch.func import functional_call

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"  # read when triton is first imported

from exprforge.codegen.lower import Reduce  # noqa: E402
from exprforge.nn import GaussianRBF  # noqa: E402
from exprforge.nn.rbf import ARGS, _kernel, rbf_expr  # noqa: E402
from exprforge.targets.build import compile_kernel  # noqa: E402

from .references import assert_gradients_match, assert_triton_backward_matches  # noqa: E402


def basis_reference(f, centers, scales):
    """phi_j(f) = exp(-sum_d s_jd**2 (f_d - c_jd)**2), pair by pair."""
    diff = f.unsqueeze(-2) - centers                       # (..., J, D)
    return torch.exp(-(scales ** 2 * diff ** 2).sum(-1))


def rbf_reference(f, centers, scales, weight, bias):
    return basis_reference(f, centers, scales) @ weight.T + bias


def _layer(d, j, out, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    m = GaussianRBF(d, j, out).to(dtype)
    with torch.no_grad():  # scales differ by center and direction
        m.scales.copy_(torch.rand(j, d, dtype=dtype) * 1.5 + 0.2)
        m.linear.bias.uniform_(-0.5, 0.5)
    return m


def _features(shape, dtype=torch.float64, seed=1):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype) * 2 - 1


def _weights(m):
    return m.centers, m.scales, m.linear.weight, m.linear.bias


CASES = [((7, 3), 5, 2), ((2, 4, 2), 9, 3), ((16, 8), 32, 1), ((1, 1), 1, 1)]


@pytest.mark.parametrize("shape,j,out", CASES)
def test_forward_float32_matches_the_direct_formula(shape, j, out):
    m, f = _layer(shape[-1], j, out, torch.float32), _features(shape, torch.float32)
    y = m(f)
    assert y.dtype == torch.float32 and y.shape == shape[:-1] + (out,)
    torch.testing.assert_close(m.basis(f), basis_reference(f, m.centers, m.scales),
                               rtol=1e-5, atol=2e-6)
    torch.testing.assert_close(y, rbf_reference(f, *_weights(m)), rtol=1e-5, atol=1e-5)


def test_float64_agrees_closely_and_a_center_gives_one():
    m = _layer(4, 6, 2)
    f = torch.cat([_features((10, 4)), m.centers.detach()[:2]])
    phi = m.basis(f)
    torch.testing.assert_close(phi, basis_reference(f, m.centers, m.scales),
                               rtol=1e-12, atol=1e-14)
    # at a center the expanded distance cancels to ~0 and may round below it: clamped
    assert phi.max() <= 1 and torch.allclose(phi[10, 0], torch.ones((), dtype=phi.dtype))


@pytest.mark.parametrize("shape,j,out", [((5, 3), 4, 2), ((2, 3, 2), 3, 2)])
def test_gradcheck_input_and_every_parameter(shape, j, out):
    m = _layer(shape[-1], j, out)
    f = _features(shape).requires_grad_()
    names = ("centers", "scales", "linear.weight", "linear.bias")
    params = [p.detach().clone().requires_grad_() for p in _weights(m)]

    def fn(f, *ps):
        return functional_call(m, dict(zip(names, ps)), (f,))
    assert torch.autograd.gradcheck(fn, (f, *params))


def test_gradients_equal_the_direct_formulas_float32():
    m, f = _layer(6, 16, 3, torch.float32), _features((32, 6), torch.float32).requires_grad_()
    g = torch.randn(32, 3, generator=torch.Generator().manual_seed(2))
    assert_gradients_match(m, rbf_reference, (f, *_weights(m)), g, rtol=1e-4, atol=1e-5)


def test_the_kernel_holds_the_per_center_sum():
    k = _kernel("float64", False)
    assert [s.node.attr for s in k.plan.steps if isinstance(s, Reduce)] == [(-2,)]


def test_float32_uses_the_library_exp_forward_and_backward():
    """approx (the default): no libm exp in the float32 kernel or its backward kernels;
    approx=False keeps it; both agree with the direct formula (see the tests above)."""
    fast, libm = _kernel("float32", True), _kernel("float32", False)
    ops = {n.op for n in fast.expr.toposort()}
    assert "exp" not in ops
    assert "exp" in {n.op for n in libm.expr.toposort()}
    for e in fast.backward_kernel(tuple(fast.differentiable)).expr:
        assert "exp" not in {n.op for n in e.toposort()}
    m = _layer(3, 4, 2, torch.float32)
    f = _features((8, 3), torch.float32)
    plain = GaussianRBF(3, 4, 2, approx=False)
    plain.load_state_dict(m.state_dict())
    torch.testing.assert_close(m(f), plain(f), rtol=1e-6, atol=1e-6)


def test_wrong_feature_count_is_refused():
    with pytest.raises(ValueError, match="features"):
        GaussianRBF(3, 4, 1)(torch.randn(5, 2))


def test_a_training_step_lowers_the_loss():
    # seeded: the layer's init draws from torch's global generator. At lr 0.05 one Adam
    # step overshot on 5 of 20 seeds (a flaky test); at 0.01 on none.
    torch.manual_seed(0)
    m = GaussianRBF(2, 16, 1)
    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    f = _features((64, 2), torch.float32)
    target = torch.sin(3 * f[:, :1]) * f[:, 1:]
    loss = (m(f) - target).pow(2).mean()
    loss.backward()
    opt.step()
    assert (m(f) - target).pow(2).mean() < loss


# --- Triton ----------------------------------------------------------------------------

def _kernel_args(dtype):
    m, f = _layer(3, 5, 2, dtype), _features((6, 3), dtype)
    with torch.no_grad():
        s2 = m.scales ** 2
        return [f * f @ s2.T, f @ (s2 * m.centers).T, m.scales.T.contiguous(),
                m.centers.T.contiguous()]


def test_triton_forward():
    k = compile_kernel(rbf_expr("float32"), "triton", None, ARGS)
    args = _kernel_args(torch.float32)
    torch.testing.assert_close(k(*args).cpu(), _kernel("float32", True)(*args), rtol=2e-6,
                               atol=1e-7)


def test_triton_backward_programs():
    cpu = _kernel("float64", False)
    args = _kernel_args(torch.float64)
    grad = torch.randn(args[0].shape, generator=torch.Generator().manual_seed(3),
                       dtype=torch.float64)
    arrays = [grad, *args]
    assert_triton_backward_matches(cpu, arrays)
