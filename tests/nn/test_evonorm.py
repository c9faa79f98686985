"""EvoNorm-B0 and -S0 against the paper's formulas written in torch (train and eval mode),
gradcheck through the generated kernels, and the programs on Triton (a GPU when there is
one, else Triton's interpreter)."""
import os

import numpy as np
import pytest
import torch
from torch.func import functional_call

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"  # read when triton is first imported

from exprforge.codegen.lower import Reduce, RowReduce  # noqa: E402
from exprforge.nn import EvoNormB0, EvoNormS0  # noqa: E402
from exprforge.nn.evonorm import (ARGS, B0_EVAL_ARGS, _kernel, evonorm_b0_expr,  # noqa: E402
                                  evonorm_s0_expr, s0_groups)
from exprforge.targets.build import compile_kernel  # noqa: E402

from .references import (EVONORM_EPS as EPS, assert_gradients_match,  # noqa: E402
                         assert_triton_backward_matches, b0_reference, s0_reference,
                         variance)


def _input(shape, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    scale = torch.rand(1, shape[1], 1, 1, generator=g, dtype=dtype) * 3 + 0.2
    return torch.randn(shape, generator=g, dtype=dtype) * scale + 0.5


def _module(cls, channels, dtype=torch.float64, seed=1, **kw):
    m = cls(channels, **kw).to(dtype)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # away from the init, so each parameter's role shows
        for p, (lo, hi) in zip((m.v, m.gamma, m.beta), ((-1, 1), (0.5, 1.5), (-0.5, 0.5))):
            p.copy_(torch.rand(p.shape, generator=g, dtype=dtype) * (hi - lo) + lo)
    return m


def _params(m):
    return m.v, m.gamma, m.beta


B0_SHAPES = [(4, 3, 5, 6), (2, 8, 4, 4), (1, 5, 3, 7), (8, 16, 2, 2)]
S0_CASES = [((2, 64, 3, 3), 32), ((3, 12, 4, 5), 12), ((2, 48, 2, 3), 24), ((1, 40, 4, 4), 20),
            ((2, 6, 5, 5), 6)]


def test_s0_groups_are_32_reduced_until_they_divide_channels():
    assert [s0_groups(c) for c in (64, 32, 48, 40, 12, 7, 1)] == [32, 32, 24, 20, 12, 7, 1]
    assert s0_groups(12, groups=8) == 6
    assert EvoNormS0(48).groups == 24


def test_initial_parameters_and_running_variance():
    m = EvoNormB0(5)
    for p, value in zip(_params(m), (1, 1, 0)):
        assert p.shape == (1, 5, 1, 1) and bool((p == value).all())
    assert bool((m.running_var == 1).all())


@pytest.mark.parametrize("shape", B0_SHAPES)
def test_b0_training_forward_float32_and_running_variance(shape):
    m, x = _module(EvoNormB0, shape[1], torch.float32), _input(shape, torch.float32)
    y = m(x)
    assert y.dtype == torch.float32 and y.shape == x.shape
    torch.testing.assert_close(y, b0_reference(x, *_params(m)), rtol=3e-6, atol=3e-6)
    torch.testing.assert_close(m.running_var, 0.9 + 0.1 * variance(x, (0, 2, 3)))
    m(x * 2)
    torch.testing.assert_close(m.running_var, 0.9 * (0.9 + 0.1 * variance(x, (0, 2, 3)))
                               + 0.1 * variance(x * 2, (0, 2, 3)))


@pytest.mark.parametrize("shape", B0_SHAPES)
def test_b0_eval_uses_the_running_variance(shape):
    m, x = _module(EvoNormB0, shape[1], torch.float32, momentum=0.3), _input(shape, torch.float32)
    m(_input(shape, torch.float32, seed=5))
    m.eval()
    before = m.running_var.clone()
    y = m(x)
    torch.testing.assert_close(m.running_var, before, rtol=0, atol=0)  # eval leaves it
    torch.testing.assert_close(y, b0_reference(x, *_params(m), running_var=before),
                               rtol=3e-6, atol=3e-6)
    with pytest.raises(AssertionError):  # and differs from the batch statistics
        torch.testing.assert_close(y, b0_reference(x, *_params(m)))


@pytest.mark.parametrize("shape,groups", S0_CASES)
def test_s0_forward_float32_train_and_eval(shape, groups):
    m, x = _module(EvoNormS0, shape[1], torch.float32), _input(shape, torch.float32)
    assert m.groups == groups
    want = s0_reference(x, *_params(m), groups)
    torch.testing.assert_close(m(x), want, rtol=3e-6, atol=3e-6)
    m.eval()
    torch.testing.assert_close(m(x), want, rtol=3e-6, atol=3e-6)


def _gradcheck(m, x):
    params = [p.detach().clone().requires_grad_() for p in _params(m)]

    def f(x, v, gamma, beta):
        return functional_call(m, {"v": v, "gamma": gamma, "beta": beta}, (x,))
    assert torch.autograd.gradcheck(f, (x.requires_grad_(), *params))


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(3, 2, 3, 4), (2, 3, 2, 3)])
def test_b0_gradcheck_input_and_parameters(shape, training):
    m = _module(EvoNormB0, shape[1])
    m.running_var.fill_(1.7)
    m.train(training)
    x = _input(shape, seed=2)
    between = variance(x, (0, 2, 3)) if training else m.running_var
    instance = m.v * x + torch.sqrt(variance(x, (2, 3)) + EPS)
    wins = instance > torch.sqrt(between + EPS)
    assert wins.any() and not wins.all()  # both sides of the max are checked
    _gradcheck(m, x)


@pytest.mark.parametrize("shape,groups", [((2, 6, 2, 3), 2), ((2, 4, 3, 3), 4)])
def test_s0_gradcheck_input_and_parameters(shape, groups):
    m = _module(EvoNormS0, shape[1], groups=groups)
    assert m.groups == groups
    _gradcheck(m, _input(shape, seed=3))


def test_gradients_equal_the_references_float32():
    for m, reference in ((_module(EvoNormB0, 6, torch.float32), b0_reference),
                         (_module(EvoNormS0, 6, torch.float32, groups=3),
                          lambda *a: s0_reference(*a, 3))):
        x = _input((4, 6, 5, 5), torch.float32, seed=4).requires_grad_()
        g = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
        assert_gradients_match(m, reference, (x, *_params(m)), g, rtol=2e-4, atol=2e-5)


def test_backward_is_derived_through_the_reductions():
    """The input gradient of B0 is one generated program reducing over (N, H, W) and (H, W)."""
    steps = _kernel("b0", "float64", EPS).backward_kernel((0,)).plan.steps
    axes = {s.node.attr for s in steps if isinstance(s, Reduce)} | \
        {n.attr for s in steps if isinstance(s, RowReduce) for n in s.nodes}
    assert {(-4, -2, -1), (-2, -1)} <= axes


def test_wrong_input_is_refused():
    with pytest.raises(ValueError, match="NCHW"):
        EvoNormB0(3)(torch.randn(2, 4, 3, 3))
    with pytest.raises(ValueError, match="NCHW"):
        EvoNormS0(3)(torch.randn(2, 3, 3))


def test_a_training_step_lowers_the_loss():
    m = EvoNormS0(8, groups=4)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    x = _input((4, 8, 3, 3), torch.float32)
    target = torch.tanh(x)
    loss = (m(x) - target).pow(2).mean()
    loss.backward()
    opt.step()
    assert (m(x) - target).pow(2).mean() < loss


# --- Triton ----------------------------------------------------------------------------

TRITON = [("b0", evonorm_b0_expr, ARGS),
          ("b0_eval", lambda dtype, eps: evonorm_b0_expr(dtype, eps, False), B0_EVAL_ARGS),
          ("s0", evonorm_s0_expr, ARGS)]


def _triton_args(name, dtype):
    """x and the parameters (and running_var for eval), grouped for S0 as its module does."""
    g = torch.Generator().manual_seed(6)
    x = _input((3, 4, 3, 5), dtype)
    shape = (1, 4, 1, 1)
    if name == "s0":
        x, shape = x.reshape(3, 2, 2, 3, 5), (1, 2, 2, 1, 1)
    n = len(B0_EVAL_ARGS if name == "b0_eval" else ARGS) - 1
    return [x] + [torch.rand(shape, generator=g, dtype=dtype) + 0.5 for _ in range(n)]


@pytest.mark.parametrize("name,make,args", TRITON)
def test_triton_forward(name, make, args):
    k = compile_kernel(make("float32", EPS), "triton", None, args)
    inputs = _triton_args(name, torch.float32)
    want = _kernel(name, "float32", EPS)(*inputs)
    torch.testing.assert_close(k(*inputs).cpu(), want, rtol=3e-6, atol=3e-6)


@pytest.mark.parametrize("name", ["b0", "s0"])
def test_triton_backward_programs(name):
    """Every gradient program (input and the three parameters) on Triton gives the CPU
    kernel's values."""
    cpu = _kernel(name, "float64", EPS)
    inputs = _triton_args(name, torch.float64)
    grad = torch.randn(inputs[0].shape, generator=torch.Generator().manual_seed(7),
                       dtype=torch.float64)
    arrays = [grad, *inputs]
    assert_triton_backward_matches(cpu, arrays)


def test_s0_float32_sigmoid_is_the_library_program():
    """float32 S0 inlines the verified sigmoid program, forward and backward (it
    vectorizes; a libm expf per element does not); float64 keeps the C library."""
    def ops(e):
        return {n.op for n in e.toposort()}
    k32, k64 = _kernel("s0", "float32", EPS), _kernel("s0", "float64", EPS)
    assert not {"exp", "sigmoid"} & ops(k32.expr)
    for e in k32.backward_kernel(tuple(k32.differentiable)).expr:
        assert not {"exp", "sigmoid"} & ops(e)
    assert {"exp", "sigmoid"} & ops(k64.expr) and k64.options["approx"] == "float32"
