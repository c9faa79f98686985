"""Autograd through reductions in the torch target (engine.derive.vjp), which PolyNorm's
backward rests on: gradcheck on programs with sums, means, variances and maxima, nested,
broadcast and over named axes."""
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import exprforge as xf
from exprforge.engine.derive import vjp
from exprforge.engine.expr import var

CASES = [
    ("x / sqrt(mean(x * x, axis=-1) + 1e-6)", {"x": (3, 5)}),
    ("a * x / sqrt(mean(x * x * x * x, axis=-1) + 1e-6) + b", {"x": (3, 5), "a": (), "b": (1,)}),
    ("sum(x, axis=-1)", {"x": (3, 4)}),                         # a reduction as the result
    ("sum(x * y, axis=-2)", {"x": (4, 3, 1), "y": (3, 5)}),      # a matmul
    ("x * var(x * y, axis=-1)", {"x": (3, 5), "y": (5,)}),
    ("sum(exp(x - max(x, axis=-1)), axis=-1)", {"x": (2, 6)}),  # max, then a sum of it
    ("x - mean(x - mean(x, axis=-1), axis=(-1, -2))", {"x": (2, 3, 4)}),  # nested
    ("w * mean(x, axis=-1)", {"x": (3, 4), "w": (3, 7)}),        # cotangent wider than x
    ("mean(x, axis=-2) * x", {"x": (1, 4)}),                     # over a length-1 axis
    # a parameter broadcast on more axes than the program reduces (its gradient is summed
    # over those first, then the rest), and on axes before a kept one
    ("(x - mean(x, axis=-2)) / sqrt(var(x, axis=-2) + 1e-5) * g", {"x": (4, 3), "g": ()}),
    ("x / sqrt(var(x, axis=(-4, -2, -1)) + 1e-5) * g + b",
     {"x": (3, 2, 2, 5), "g": (1, 2, 1, 1), "b": (2, 1, 1)}),
]


# gradient terms of different shapes added together: each is summed over its variable's
# length-1 axes on its own (a sum of their total counted the shorter term once per
# element of the longer one)
MIXED_TERMS = [
    ("a * x + sum(a, axis=-1)", {"a": (2, 1), "x": (2, 3)}),
    ("sum(x * mean(x, axis=-1), axis=-1) + mean(x, axis=-1)", {"x": (4, 5)}),
    ("mean(x * (x * y), axis=(-2, -1)) * ((y * y) / (1.5 + a * a))",
     {"a": (1, 4, 1), "x": (4, 5), "y": ()}),
    ("b * sum(x, axis=-1) + b * x", {"b": (1, 1), "x": (3, 4)}),
]


@pytest.mark.parametrize("text,shapes", CASES)
def test_gradcheck_through_reductions(text, shapes):
    k = xf.compile(xf.parse(text), target="torch")
    g = torch.Generator().manual_seed(0)
    inputs = [torch.randn(shapes[n], generator=g, dtype=torch.float64).requires_grad_()
              for n in k.args]
    assert torch.autograd.gradcheck(k, inputs)


@pytest.mark.parametrize("cpu", ["llvm", "numba"])
@pytest.mark.parametrize("text,shapes", MIXED_TERMS)
def test_terms_of_different_shapes_are_summed_on_their_own(text, shapes, cpu):
    k = xf.compile(xf.parse(text), target="torch", cpu=cpu)
    g = torch.Generator().manual_seed(1)
    inputs = [torch.randn(shapes[n], generator=g, dtype=torch.float64).requires_grad_()
              for n in k.args]
    assert torch.autograd.gradcheck(k, inputs)


def test_named_axes():
    x = var("x", "float64", axes=("N", "C"))
    k = xf.compile(x - x.mean(axis="N") * x.var(axis="C"), target="torch")
    assert torch.autograd.gradcheck(k, [torch.randn(4, 3, dtype=torch.float64,
                                                    requires_grad=True)])


def test_float32_gradient_matches_torch():
    k = xf.compile(xf.parse("x * sigmoid(sum(x * x, axis=-1))", dtype="float32"),
                   target="torch")
    x = torch.randn(6, 10, requires_grad=True)
    (got,) = torch.autograd.grad(k(x).sum(), x)
    xr = x.detach().requires_grad_()
    (want,) = torch.autograd.grad((xr * torch.sigmoid((xr * xr).sum(-1, keepdim=True))).sum(), xr)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_ties_of_max_share_the_gradient_as_torch_does():
    k = xf.compile(xf.parse("max(x, axis=-1)"), target="torch")
    x = torch.tensor([[1.0, 3.0, 3.0, 2.0]], dtype=torch.float64, requires_grad=True)
    (got,) = torch.autograd.grad(k(x).sum(), x)
    torch.testing.assert_close(got, torch.tensor([[0.0, 0.5, 0.5, 0.0]], dtype=torch.float64))


def test_vjp_is_plain_reverse_mode_without_reductions():
    e = xf.parse("x * y + sin(x)")
    g = var("g", "float64")
    grads = vjp(e, g, ["x", "y", "z"])
    assert grads["z"] is None
    assert grads["y"] is g * var("x", "float64")


# --- random programs: reductions of broadcast inputs ---------------------------------------
SHAPES = [(), (4,), (1, 4), (3, 1), (3, 4), (1, 1), (2, 1, 4), (1, 3, 1)]
AXES = ["-1", "-2", "(-2, -1)", "(-3, -1)"]


@st.composite
def reduction_programs(draw, depth=4):
    """Smooth random programs over a, x, y with sums, means and variances over the last
    axes."""
    def grow(d):
        pick = draw(st.integers(0, 7)) if d else 0
        if pick == 0:
            return draw(st.sampled_from(["a", "x", "y"]))
        if pick in (1, 2):
            return f"({grow(d - 1)} {'+*'[pick - 1]} {grow(d - 1)})"
        if pick == 3:
            return f"{draw(st.sampled_from(['sin', 'tanh']))}({grow(d - 1)})"
        if pick == 4:
            return f"({grow(d - 1)} / (1.5 + {grow(d - 1)} ** 2))"
        op = draw(st.sampled_from(["sum", "mean", "var"]))
        return f"{op}({grow(d - 1)}, axis={draw(st.sampled_from(AXES))})"
    shapes = {n: draw(st.sampled_from(SHAPES)) for n in "axy"}
    return grow(depth), shapes


@settings(max_examples=25, deadline=None)
@given(reduction_programs())
def test_random_programs_with_reductions_pass_gradcheck(program):
    """Gradients through reductions of inputs broadcast in every way against finite
    differences: terms of different shapes, nested reductions, parameters summed."""
    text, shapes = program
    e = xf.parse(text)
    g = torch.Generator().manual_seed(0)
    env = {n: torch.randn(shapes.get(n, ()), generator=g, dtype=torch.float64)
           for n in (v.name for v in e.variables())}
    try:   # a reduction over an axis its argument lacks: not a program
        xf.evaluate(e, {n: t.numpy() for n, t in env.items()})
    except ValueError:
        assume(False)
    k = xf.compile(e, target="torch")
    inputs = [env[n].requires_grad_() for n in k.args]
    assert torch.autograd.gradcheck(k, inputs)


def test_a_sum_whose_rank_comes_from_a_broadcast_input():
    """Found by the property test above: y of shape (1, 1) gives a * y the rank the sum
    needs; the backward may not take y out of it."""
    k = xf.compile(xf.parse("sin(sum(a * y, axis=(-2, -1)))"), target="torch")
    g = torch.Generator().manual_seed(2)
    shapes = {"a": (4,), "y": (1, 1)}
    inputs = [torch.randn(shapes[n], generator=g, dtype=torch.float64).requires_grad_()
              for n in k.args]
    assert torch.autograd.gradcheck(k, inputs)
