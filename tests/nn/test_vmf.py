"""fit_vmf recovers kappa from Wood-sampled data; the sampler's mean cosine matches A_p."""
import mpmath
import numpy as np
import pytest

from exprforge.nn import fit_vmf
from exprforge.nn.vmf import log_ratio, sample_vmf, solve_kappa


def test_log_ratio_matches_mpmath():
    for p, kappa in [(3, 0.5), (64, 40.0), (1000, 3000.0)]:
        with mpmath.workdps(40):
            want = float(mpmath.log(mpmath.besseli(p / 2, kappa) /
                                    mpmath.besseli(p / 2 - 1, kappa)))
        assert abs(float(log_ratio(p, kappa)) - want) < 1e-12 * max(1.0, abs(want))


@pytest.mark.parametrize("p,kappa", [(3, 1e-3), (10, 5.0), (500, 250.0), (20000, 4e4)])
def test_solve_kappa_inverts_the_ratio(p, kappa):
    rbar = float(np.exp(log_ratio(p, kappa)))
    assert solve_kappa(rbar, p) == pytest.approx(kappa, rel=1e-9)


def test_sampler_mean_cosine_is_a_p():
    p, kappa = 50, 30.0
    mu = np.zeros(p)
    mu[3] = 1.0
    X = sample_vmf(mu, kappa, 20000, rng=0)
    assert np.allclose(np.linalg.norm(X, axis=1), 1)
    assert X[:, 3].mean() == pytest.approx(float(np.exp(log_ratio(p, kappa))), abs=0.005)


def test_fit_vmf_recovers_kappa():
    rng = np.random.default_rng(3)
    p, kappa = 256, 400.0
    mu = rng.standard_normal(p)
    X = sample_vmf(mu, kappa, 4000, rng=rng)
    mean, got = fit_vmf(X)
    assert got == pytest.approx(kappa, rel=0.02)
    assert mean @ (mu / np.linalg.norm(mu)) > 0.99


def test_fit_vmf_rejects_bad_shapes():
    with pytest.raises(ValueError):
        fit_vmf(np.ones(5))
