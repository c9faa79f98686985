"""The paper layers' programs on the Triton target: on a GPU when there is one, else in
Triton's interpreter (TRITON_INTERPRET=1, set before triton is imported). The modules
reach Triton only with CUDA tensors, so here their programs (forward and the derived
backward) are compiled for Triton directly and compared with the CPU kernels."""
import os

import numpy as np
import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

from exprforge.nn.l_mul import lmul_matmul_program, lmul_program  # noqa: E402
from exprforge.nn.polycom import ARGS, _kernel, polynorm_expr, polyrelu_expr  # noqa: E402
from exprforge.targets.build import compile_kernel  # noqa: E402

from .references import (assert_triton_backward_matches, SPECIALS, lmul_reference, polynorm_reference,  # noqa: E402
                         polyrelu_reference, same_bits)

COEFFS = (torch.tensor(0.7), torch.tensor(-0.4), torch.tensor(0.3), torch.tensor([0.2]))


@pytest.mark.parametrize("make,reference", [(polyrelu_expr, polyrelu_reference),
                                            (polynorm_expr, polynorm_reference)])
def test_polycom_forward(make, reference):
    k = compile_kernel(make("float32"), "triton", None, ARGS)
    x = torch.randn(4, 3, 16, generator=torch.Generator().manual_seed(0))
    got = k(x, *COEFFS).cpu()
    want = reference(x, torch.stack(COEFFS[:3]), COEFFS[3])
    torch.testing.assert_close(got, want, rtol=2e-6, atol=2e-6)


def test_polynorm_backward_programs():
    """Every gradient program of PolyNorm (input and the four coefficients) on Triton
    gives the CPU kernel's values."""
    cpu = _kernel("polynorm", "float64", 1e-6)
    g = torch.Generator().manual_seed(1)
    args = [torch.randn(5, 8, generator=g, dtype=torch.float64),
            torch.randn(5, 8, generator=g, dtype=torch.float64)] + \
        [c.double() for c in COEFFS]
    assert_triton_backward_matches(cpu, args)


@pytest.mark.parametrize("m", [2, 3, 4, 7])
def test_lmul_bits(m):
    k = compile_kernel(lmul_program(m), "triton", None, ("x", "y"))
    rng = np.random.default_rng(m)
    x, y = rng.standard_normal((2, 3000)).astype(np.float32)
    bits = rng.integers(-2 ** 31, 2 ** 31, (2, 3000)).astype(np.int32).view(np.float32)
    for a, b in ((x, y), tuple(bits), (SPECIALS[:, None], SPECIALS[None, :])):
        assert same_bits(k(a, b).cpu().numpy(), lmul_reference(a, b, m))


def test_lmul_matmul_program():
    k = compile_kernel(lmul_matmul_program(3), "triton", None, ("x", "y"))
    rng = np.random.default_rng(0)
    a = rng.standard_normal((6, 5)).astype(np.float32)
    b = rng.standard_normal((5, 4)).astype(np.float32)
    got = k(a[:, :, None], b[None]).cpu().numpy()[:, 0]
    want = lmul_reference(a[:, :, None], b[None], 3).astype(np.float64).sum(axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
