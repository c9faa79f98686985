"""log_besseli / log_besselk against mpmath per region, the Wronskian and recurrences in
log space, gradcheck in x, finiteness where SciPy overflows or underflows, and the same
programs on Triton (a GPU when there is one, else Triton's interpreter)."""
import os

import numpy as np
import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"  # read when triton is first imported

from exprforge.nn import log_besseli, log_besselk  # noqa: E402
from exprforge.nn.bessel import ARGS, log_besseli_expr, log_besselk_expr, mp_log_bessel  # noqa: E402
from exprforge.targets.build import compile_kernel  # noqa: E402




# (v range, x range), log-uniform, covering every region of both programs: v >= 25 is
# Debye; below, log I switches from its series to the recurrence at x = 10 and log K from
# Temme's series to the trapezoid rule at x = 2 and to Steed's fraction at x = 5
REGIONS = {"x <= 2": ((1e-3, 24.9), (1e-6, 2.0)), "2 < x <= 5": ((1e-3, 24.9), (2.0, 5.0)),
           "5 < x <= 10": ((1e-3, 24.9), (5.0, 10.0)), "x > 10": ((1e-3, 24.9), (10.0, 1e6)),
           "debye": ((25.0, 1e4), (1e-6, 1e6))}


def points(region, n, seed):
    rng = np.random.default_rng(seed)
    (v0, v1), (x0, x1) = REGIONS[region]
    v = 10 ** rng.uniform(np.log10(v0), np.log10(v1), n)
    x = 10 ** rng.uniform(np.log10(x0), np.log10(x1), n)
    return v, x


@pytest.mark.parametrize("fn", ["i", "k"])
@pytest.mark.parametrize("region", sorted(REGIONS))
def test_matches_mpmath(fn, region):
    # mpmath's besselk takes ~2 s a point for 2 < x < 10: fewer points there
    n = 4 if fn == "k" and region in ("2 < x <= 5", "5 < x <= 10") else 12
    v, x = points(region, n, seed=len(region))
    got = (log_besseli if fn == "i" else log_besselk)(v, x)
    want = np.array([mp_log_bessel(fn, a, b) for a, b in zip(v, x)])
    keep = np.isfinite(want)
    assert keep.sum() >= n - n // 3
    got, want, v, x = got[keep], want[keep], v[keep], x[keep]
    # relative error, except near a zero of the log (I or K close to 1), where it is absolute
    err = np.abs(got - want) / np.maximum(np.abs(want), 1.0)
    assert err.max() < 5e-14, (v[err.argmax()], x[err.argmax()], err.max())


@pytest.mark.parametrize("fn", ["i", "k"])
def test_float32_program_within_a_few_ulps_of_float64(fn):
    # at the same float32 inputs, against the float64 program (itself within 5e-14 of
    # mpmath, above); relative error, absolute near a zero of the log, as above. 8
    # units of 2**-24 is 4 float32 ulps: the large terms of the log are formed in
    # float64, so no cancellation near log = 0 costs more
    f = log_besseli if fn == "i" else log_besselk
    for region in sorted(REGIONS):
        v, x = (a.astype(np.float32) for a in points(region, 4000, seed=7))
        got = f(v, x)
        assert got.dtype == np.float32
        want = f(v.astype(np.float64), x.astype(np.float64))
        err = np.abs(got - want) / np.maximum(np.abs(want), 1.0)
        assert np.all(np.isfinite(got)), region
        assert err.max() < 8 * 2.0 ** -24, (region, v[err.argmax()], x[err.argmax()],
                                             err.max() / 2.0 ** -24)


def test_float32_programs_are_float32_with_float64_large_terms():
    with pytest.raises(ValueError, match="float16"):
        log_besseli_expr("float16")
    for build, narrow_ops in ((log_besseli_expr, {"log1p", "exp", "hypot"}),
                              (log_besselk_expr, {"log1p", "exp", "sinh", "asinh"})):
        e = build("float32")
        nodes = e.toposort()
        assert e.dtype == "float32" and {n.dtype for n in nodes if n.op == "var"} \
            == {"float32"}
        by_dtype = {d: {n.op for n in nodes if n.dtype == d} for d in ("float32", "float64")}
        assert "log" in by_dtype["float64"]                      # the leading logs
        assert narrow_ops <= by_dtype["float32"], narrow_ops - by_dtype["float32"]
        assert len(nodes) < len(build("float64").toposort())   # shorter series


def test_float32_continuous_where_the_k_method_changes():
    from exprforge.nn.bessel import TERMS
    edge = np.float32(TERMS["float32"].hankel_x)
    v = np.float32([0.0, 0.3, 0.5, 7.2, 24.5])
    for fn in (log_besseli, log_besselk):
        below = fn(v, np.full(v.shape, edge))
        above = fn(v, np.full(v.shape, np.nextafter(edge, np.float32(99))))
        want = fn(v.astype(np.float64), np.full(v.shape, float(edge)))
        assert np.all(np.abs(below - want) <= 8 * 2.0 ** -24 * np.maximum(np.abs(want), 1))
        assert np.all(np.abs(above - below) <= 16 * 2.0 ** -24 * np.maximum(np.abs(want), 1))


def test_log_k_at_huge_x_and_its_gradient():
    # Steed's continued fraction overflows from x ~ 1.5e11 (float64), ~100 (float32): the
    # Hankel expansion takes over; log K_v(x) -> -x + log(pi / 2x) / 2
    v = np.array([0.0, 0.3, 24.9, 12.0])
    x = np.array([1e12, 1e20, 3e38, 1e300])
    want = -x + 0.5 * np.log(np.pi / (2 * x))
    np.testing.assert_allclose(log_besselk(v, x), want, rtol=1e-15)
    got32 = log_besselk(v[:3].astype(np.float32), x[:3].astype(np.float32))
    np.testing.assert_allclose(got32, want[:3].astype(np.float32), rtol=2e-7)
    xt = torch.tensor([1e12, 1e20], dtype=torch.float32, requires_grad=True)
    log_besselk(torch.tensor([0.3, 2.0]), xt).sum().backward()
    np.testing.assert_allclose(xt.grad.numpy(), [-1.0, -1.0], rtol=1e-6)


@pytest.mark.parametrize("fn", [log_besseli, log_besselk])
def test_continuous_where_the_method_changes(fn):
    from exprforge.nn.bessel import CHUNK, DEBYE_V, QUAD_X, SERIES_X, TEMME_X, TERMS
    v = np.array([0.0, 0.5, 0.5000001, 3.3, 11.0, 24.5, DEBYE_V])
    terms = TERMS["float64"]   # and the tiers of fewer terms, and the large-x expansion
    tiers = [edge for edge, _ in terms.series_x + terms.temme_x] + [terms.large_x]
    for edge in (TEMME_X, QUAD_X, SERIES_X, *tiers):
        # one ulp apart, on the two sides of the switch (x <= edge is the lower method)
        below, above = fn(v, np.full(v.shape, edge)), fn(v, np.full(v.shape, np.nextafter(edge, 99)))
        assert np.all(np.abs(above - below) <= 2e-12 * np.maximum(np.abs(below), 1.0))
    x = np.array([1e-5, 0.9, 3.0, 7.0, 50.0, 1e4])
    below, above = fn(np.full(x.shape, np.nextafter(DEBYE_V, 0)), x), fn(np.full(x.shape, DEBYE_V), x)
    assert np.all(np.abs(above - below) <= 1e-12 * np.maximum(np.abs(below), 1.0))
    # log K climbs at most CHUNK steps up to order CHUNK + 1 (v < CHUNK + 1.5), else all
    edge = CHUNK + 1.5
    below = fn(np.full(x.shape, np.nextafter(edge, 0)), x)
    above = fn(np.full(x.shape, edge), x)
    assert np.all(np.abs(above - below) <= 1e-12 * np.maximum(np.abs(below), 1.0))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_finite_up_to_the_largest_x(dtype):
    # log I ~ x - log(2 pi x) / 2 and log K ~ -x + log(pi / 2x) / 2 there: 2 pi x and 2x
    # overflow, the logs of x alone do not
    top = np.finfo(dtype).max
    x = np.array([top / 8, top / 3, top / 2, top], dtype)
    for v in (np.zeros(4, dtype), np.full(4, 7.5, dtype), np.full(4, 30.0, dtype)):
        i, k = log_besseli(v, x), log_besselk(v, x)
        np.testing.assert_allclose(i.astype(np.float64), x, rtol=1e-6)
        np.testing.assert_allclose(k.astype(np.float64), -x.astype(np.float64), rtol=1e-6)


def test_log_k_far_below_the_stated_range_of_x():
    # the upward recurrence's 2(mu + j)/x would overflow a chunk of steps below x ~ 1e-30
    v, x = np.array([24.9, 3.0, 0.5, 12.3]), np.array([1e-40, 1e-200, 1e-300, 1e-100])
    want = np.array([mp_log_bessel("k", a, b) for a, b in zip(v, x)])
    np.testing.assert_allclose(log_besselk(v, x), want, rtol=1e-14)


def test_integer_and_zero_orders():
    for v, x in [(0.0, 1e-6), (0.0, 2.5), (1.0, 3.0), (7.0, 40.0), (0.0, 1e5)]:
        for fn, f in (("i", log_besseli), ("k", log_besselk)):
            want = mp_log_bessel(fn, v, x)
            assert abs(f(np.array([v]), np.array([x]))[0] - want) <= 1e-14 * max(abs(want), 1e-3)


def test_small_x_i0_keeps_relative_accuracy():
    x = np.array([1e-6, 1e-4, 1e-2])
    got = log_besseli(np.zeros(3), x)                   # log I_0(x) ~ x**2 / 4
    want = np.array([mp_log_bessel("i", 0, b) for b in x])
    assert np.allclose(got, want, rtol=1e-14, atol=0)


def test_wronskian_in_log_space():
    rng = np.random.default_rng(1)
    v = 10 ** rng.uniform(-3, 4, 400)
    x = 10 ** rng.uniform(-6, 6, 400)
    a = log_besseli(v, x) + log_besselk(v + 1, x)
    b = log_besseli(v + 1, x) + log_besselk(v, x)
    scale = np.abs(log_besseli(v, x)) + np.abs(log_besselk(v, x)) + 1
    assert np.all(np.abs(np.logaddexp(a, b) + np.log(x)) < 1e-13 * scale)


def test_recurrences():
    rng = np.random.default_rng(2)
    v = rng.uniform(1, 120, 300)
    x = 10 ** rng.uniform(-3, 2, 300)
    li = [log_besseli(v + d, x) for d in (-1, 0, 1)]
    lk = [log_besselk(v + d, x) for d in (-1, 0, 1)]
    rhs_i = np.log(2 * v / x) + li[1]                   # I_{v-1} - I_{v+1} = (2v/x) I_v
    lhs_i = li[0] + np.log1p(-np.exp(li[2] - li[0]))
    rhs_k = np.log(2 * v / x) + lk[1]                   # K_{v+1} - K_{v-1} = (2v/x) K_v
    lhs_k = lk[2] + np.log1p(-np.exp(lk[0] - lk[2]))
    scale = np.abs(li[1]) + np.abs(lk[1]) + 1
    assert np.all(np.abs(lhs_i - rhs_i) < 1e-12 * scale)
    assert np.all(np.abs(lhs_k - rhs_k) < 1e-12 * scale)


def test_finite_on_extreme_inputs():
    v = np.array([0, 0, 1e4, 1e4, 0.5, 24.999, 25, 3e3])
    x = np.array([1e-6, 1e6, 1e-6, 1e6, 1e-6, 1e-6, 1e6, 1e-3])
    for f in (log_besseli, log_besselk):
        assert np.all(np.isfinite(f(v, x)))
        assert np.all(np.isfinite(f(v.astype(np.float32), x.astype(np.float32))))
    assert log_besseli(1e4, 1e-6) < -2e5 and log_besselk(1e4, 1e-6) > 2e5


def test_torch_broadcasting_dtype_and_numpy_agree():
    v = torch.tensor([[0.0], [2.5], [300.0]], dtype=torch.float64)
    x = torch.tensor([0.1, 5.0, 1e3], dtype=torch.float64)
    out = log_besseli(v, x)
    assert out.shape == (3, 3) and out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), log_besseli(v.numpy(), x.numpy()), rtol=1e-15)
    assert log_besselk(v.float(), x.float()).dtype == torch.float32
    assert log_besseli(np.float32([1.0]), np.float32([2.0])).dtype == np.float32
    # float32 tensors run the float32 program, as float32 arrays do
    np.testing.assert_allclose(log_besselk(v.float(), x.float()).numpy(),
                               log_besselk(v.float().numpy(), x.float().numpy()), rtol=2e-7)


@pytest.mark.parametrize("fn", [log_besseli, log_besselk])
def test_float32_gradient_matches_float64(fn):
    v = np.array([0.0, 0.7, 3.0, 60.0, 2e3, 24.0])
    x = np.array([0.3, 12.0, 2.0, 80.0, 1e3, 7.0])
    grads = []
    for dtype in (torch.float32, torch.float64):
        xt = torch.tensor(x, dtype=dtype, requires_grad=True)
        fn(torch.tensor(v, dtype=dtype), xt).sum().backward()
        assert xt.grad.dtype == dtype
        grads.append(xt.grad.double().numpy())
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-5)


@pytest.mark.parametrize("fn", [log_besseli, log_besselk])
def test_gradcheck_in_x(fn):
    v = torch.tensor([0.0, 0.7, 3.0, 60.0, 2e3], dtype=torch.float64)
    x = torch.tensor([0.3, 12.0, 2.0, 80.0, 1e3], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: fn(v, x), (x,), eps=1e-6, atol=1e-7, rtol=1e-6)


def test_derivative_identities():
    v, x = np.array([0.5, 4.0, 70.0]), np.array([2.0, 9.0, 30.0])
    xt = torch.tensor(x, requires_grad=True)
    log_besseli(torch.tensor(v), xt).sum().backward()
    want = np.exp(log_besseli(v + 1, x) - log_besseli(v, x)) + v / x
    np.testing.assert_allclose(xt.grad.numpy(), want, rtol=1e-13)
    xt.grad = None
    log_besselk(torch.tensor(v), xt).sum().backward()
    # d/dx log K_v = -K_{v-1}/K_v - v/x
    want = -np.exp(log_besselk(np.abs(v - 1), x) - log_besselk(v, x)) - v / x
    np.testing.assert_allclose(xt.grad.numpy(), want, rtol=1e-12)


@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-13), ("float32", 4e-7)])
@pytest.mark.parametrize("expr,fn", [(log_besseli_expr, log_besseli),
                                     (log_besselk_expr, log_besselk)])
def test_triton_matches_cpu(expr, fn, dtype, rtol):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    v = np.array([0.0, 0.7, 3.0, 60.0, 2e3, 20.0, 1.5, 10.0], dtype)
    x = np.array([1e-6, 12.0, 2.0, 80.0, 1e3, 1e5, 4.0, 45.0], dtype)
    kernel = compile_kernel(expr(dtype), "triton", None, ARGS)
    got = kernel(torch.tensor(v, device=device), torch.tensor(x, device=device)).cpu().numpy()
    assert got.dtype == dtype
    np.testing.assert_allclose(got, fn(v, x), rtol=rtol)
