"""The torch target: a custom op that opcheck accepts, gradients gradcheck confirms."""
import numpy as np
import pytest
import torch

import exprforge as xf
from exprforge.codegen.lower import Reduce, RowReduce
from exprforge.engine.evaluate import evaluate
from exprforge.targets.kernel import unit_axes

CASES = ["x * y + sin(x)",
         "where(x > 0, x, 0.1 * x) + abs(y)",   # selections and kinks
         "sigmoid(x) * exp(-y * y) / (1 + x * x)",
         "sqrt(x * x + y * y + 1) - log1p(x * x)"]


def _inputs(shape_x=(4, 3), shape_y=(3,), seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape_x, generator=g, dtype=torch.float64)
    y = torch.randn(*shape_y, generator=g, dtype=torch.float64)
    return x + torch.sign(x) * 0.05, y  # keep x off the kink at 0


@pytest.mark.parametrize("cpu", ["llvm", "numba"])
@pytest.mark.parametrize("text", CASES)
def test_opcheck_and_gradcheck(text, cpu):
    k = xf.compile(xf.parse(text), target="torch", cpu=cpu)
    x, y = _inputs()
    result = torch.library.opcheck(k.op, (x, y))
    assert set(result.values()) == {"SUCCESS"}, result
    xr, yr = x.clone().requires_grad_(), y.clone().requires_grad_()
    assert torch.autograd.gradcheck(k, (xr, yr))


def test_forward_matches_the_reference_in_float32():
    e = xf.parse("x * tanh(0.5 * y) - y / (x * x + 1)", dtype="float32")
    k = xf.compile(e, target="torch")
    x, y = (t.float() for t in _inputs((5, 3), (3,)))
    got = k(x, y)
    assert got.dtype == torch.float32 and got.shape == (5, 3)
    same_code = xf.compile(e, target="llvm")(x.numpy(), y.numpy())
    np.testing.assert_array_equal(got.numpy(), same_code)
    # libm's tanhf and NumPy's differ by an ULP here and there
    np.testing.assert_allclose(got.numpy(), evaluate(e, {"x": x.numpy(), "y": y.numpy()}),
                               rtol=0, atol=1e-6)


def test_gradient_of_a_broadcast_argument_is_summed():
    k = xf.compile(xf.parse("x * y"), target="torch")
    x = torch.randn(4, 3, dtype=torch.float64)
    y = torch.randn(3, dtype=torch.float64, requires_grad=True)
    k(x, y).sum().backward()
    torch.testing.assert_close(y.grad, x.sum(0))


def test_integer_and_bool_arguments_get_no_gradient():
    k = xf.compile(xf.parse("where(b, x * float64(n), -x)", vars={"b": "bool", "n": "int32",
                                                                  "x": "float64"}), target="torch")
    x = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([True, False, True])
    n = torch.tensor([2, 3, 4], dtype=torch.int32)
    k(b, n, x).sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([2.0, -1.0, 4.0], dtype=torch.float64))


def test_reduction_runs_forward_and_differentiates():
    e = xf.parse("x / sqrt(mean(x * x, axis=-1) + 1e-6)")
    k = xf.compile(e, target="torch")
    x = torch.randn(3, 5, dtype=torch.float64)
    np.testing.assert_array_equal(k(x).numpy(), evaluate(e, {"x": x.numpy()}))
    assert torch.autograd.gradcheck(k, (x.requires_grad_(),))


def test_torch_compile_traces_through_the_op():
    k = xf.compile(xf.parse("x * x + y"), target="torch")
    x, y = _inputs()
    fn = torch.compile(lambda a, b: k(a, b) * 2, backend="eager", fullgraph=True)
    torch.testing.assert_close(fn(x, y), (x * x + y) * 2)


def test_gradients_of_unused_arguments_and_constants():
    k = xf.compile(xf.parse("x * x"), target="torch", args=("x", "y"))
    x = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    y = torch.ones(3, 1, dtype=torch.float64, requires_grad=True)
    gx, gy = torch.autograd.grad(k(x, y).sum(), [x, y], allow_unused=True)
    torch.testing.assert_close(gx, 2 * x.detach())
    assert gy is None or not gy.any()
    c = xf.compile(xf.parse("2.0"), target="torch", args=("x",))
    (g,) = torch.autograd.grad(c(x).sum(), [x], allow_unused=True)
    assert g is None or not g.any()


def test_float_data_for_an_int_argument_is_refused():
    k = xf.compile(xf.parse("x * float64(i)", vars={"x": "float64", "i": "int32"}), target="torch")
    with pytest.raises(TypeError, match="argument i is int32"):
        k(torch.tensor([1.0]), torch.tensor([1.7]))


def test_the_gradients_come_from_one_kernel_of_several_results():
    """The backward of f(x, y) is one op: one loop writes both gradients, and opcheck
    accepts it (its fake gives a list of shapes)."""
    k = xf.compile(xf.parse("x * y + sin(x)"), target="torch")
    back = k.backward_kernel((0, 1), full=True)   # y * g reads x, g; x * g reads y, g
    assert back.plan.many and len(back.plan.programs) == 1
    assert len(back.plan.programs[0].outputs) == 2
    g, (x, y) = torch.randn(4, 3, dtype=torch.float64), _inputs()
    result = torch.library.opcheck(back.op, (g, x, y))
    assert set(result.values()) == {"SUCCESS"}, result
    gx, gy = back(g, x, y)
    torch.testing.assert_close(gx, g * (y + torch.cos(x)), rtol=1e-15, atol=0)
    torch.testing.assert_close(gy, g * x, rtol=0, atol=0)
    with pytest.raises(TypeError, match="no backward"):
        back.backward_kernel((0,))
    with pytest.raises(ValueError, match="must have the shape every argument"):
        back(g[:1], x, y)       # grad_out is not the full shape: refused, not wrong
    assert len(k.backward_kernel((0, 1)).plan.programs) == 2    # without full: a loop each


@pytest.mark.parametrize("cpu", ["llvm", "numba"])
def test_the_forward_saves_its_reductions_for_the_backward(cpu):
    """A program with reductions: the op returns them after its result (the kernel's
    call gives the result alone), opcheck and torch.compile accept it, and its backward
    reads them instead of computing them again, with the same gradients to the bit."""
    e = xf.parse("(x - mean(x, axis=-1)) / sqrt(var(x, axis=-1) + 1e-5) * y + sum(x * y, axis=-1)")
    k = xf.compile(e, target="torch", cpu=cpu)
    assert [n.op for n in k.saved] == ["rmean", "rvar", "rsum"]   # the variance's mean is x's
    x, y = _inputs((4, 6), (6,), seed=2)
    result, *stats = k.op(x, y)
    assert [tuple(s.shape) for s in stats] == [(4, 1)] * 3
    np.testing.assert_array_equal(k(x, y).numpy(), result.numpy())
    np.testing.assert_array_equal(stats[1].numpy(), np.var(x.numpy(), axis=-1, keepdims=True))
    checked = torch.library.opcheck(k.op, (x, y.clone().requires_grad_()))
    assert set(checked.values()) == {"SUCCESS"}, checked
    fn = torch.compile(lambda a, b: k(a, b) * 2, backend="eager", fullgraph=True)
    torch.testing.assert_close(fn(x, y), result * 2)
    xr, yr = x.clone().requires_grad_(), y.clone().requires_grad_()
    assert torch.autograd.gradcheck(k, (xr, yr))
    g = torch.randn(4, 6, dtype=torch.float64)
    flat = unit_axes([g.shape, x.shape, y.shape] + [s.shape for s in stats])
    reading = k.backward_kernel((0, 1), True, flat, saved=True)
    computing = k.backward_kernel((0, 1), True, flat[:3])
    assert reading.args[3:] == ("saved_0", "saved_1", "saved_2")

    def reductions(kernel):   # sums and means computed (a row's count is not one)
        return sum(1 if isinstance(s, Reduce) else
                   sum(op not in ("", "rcount") for op in s.ops) if isinstance(s, RowReduce)
                   else 0 for s in kernel.plan.steps)
    assert reductions(reading) < reductions(computing)
    for a, b in zip(reading(g, x, y, *stats), computing(g, x, y)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    (gx,) = torch.autograd.grad(k(xr, y), xr, g)    # the op's own backward
    np.testing.assert_array_equal(gx.numpy(), computing(g, x, y)[0].numpy())
