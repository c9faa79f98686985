"""von Mises-Fisher fitting on the log-Bessel kernels, and Wood's (1994) sampler.

The maximum-likelihood concentration solves A_p(kappa) = I_{p/2}(kappa) / I_{p/2-1}(kappa)
= R, the mean resultant length. A_p is formed as exp(log I_{p/2} - log I_{p/2-1}), so it
stays finite for p in the tens of thousands, where I (and SciPy's ive) over/underflow.
"""
from __future__ import annotations

import numpy as np

from exprforge.nn.bessel import log_besseli


def log_ratio(p: int, kappa, logi=log_besseli):
    """log A_p(kappa) = log I_{p/2}(kappa) - log I_{p/2-1}(kappa)."""
    kappa = np.asarray(kappa, dtype=np.float64)
    with np.errstate(invalid="ignore"):            # inf - inf from a failing `logi`: NaN
        return logi(np.full_like(kappa, p / 2), kappa) - logi(np.full_like(kappa, p / 2 - 1), kappa)


def solve_kappa(rbar: float, p: int, logi=log_besseli, iters: int = 100) -> float:
    """kappa with A_p(kappa) = rbar: Newton in s = log kappa, kept inside a bisection
    bracket. d log A / ds = kappa (1 - A^2) / A - (p - 1). NaN if A turns NaN (a failing
    `logi`)."""
    if not 0 < rbar < 1:
        raise ValueError(f"mean resultant length must lie in (0, 1), got {rbar}")
    target = np.log(rbar)
    lo, hi = np.log(1e-300), np.log(1e300)
    s = np.log(rbar * (p - rbar ** 2) / (1 - rbar ** 2))     # Banerjee et al. (2005) start
    for _ in range(iters):
        kappa = np.exp(s)
        la = float(log_ratio(p, kappa, logi))
        if not np.isfinite(la):
            return float("nan")
        f = la - target
        lo, hi = (s, hi) if f < 0 else (lo, s)
        a = np.exp(la)
        slope = kappa * (1 - a * a) / a - (p - 1)
        step = f / slope if slope > 0 else np.inf
        nxt = s - step
        if not lo < nxt < hi:
            nxt = 0.5 * (lo + hi)
        if abs(nxt - s) < 1e-14 * max(1.0, abs(s)):
            return float(np.exp(nxt))
        s = nxt
    return float(np.exp(s))


def fit_vmf(X, logi=log_besseli):
    """Maximum-likelihood von Mises-Fisher fit to unit vectors X (n, p): (mean direction,
    kappa). X may be a NumPy array or a torch tensor; the fit runs in float64."""
    X = np.asarray(X.detach().cpu() if hasattr(X, "detach") else X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] < 2:
        raise ValueError(f"fit_vmf takes unit vectors shaped (n, p >= 2), got {X.shape}")
    total = X.mean(axis=0)
    rbar = float(np.linalg.norm(total))
    return total / rbar, solve_kappa(rbar, X.shape[1], logi)


def sample_vmf(mu, kappa: float, n: int, rng=None) -> np.ndarray:
    """n draws from vMF(mu, kappa) on the unit sphere in p = len(mu) dimensions, by Wood's
    rejection sampler for w = <x, mu> and a uniform direction orthogonal to mu."""
    rng = np.random.default_rng(rng)
    mu = np.asarray(mu, dtype=np.float64)
    mu = mu / np.linalg.norm(mu)
    p = mu.shape[0]
    m1 = p - 1
    b = m1 / (2 * kappa + np.sqrt(4 * kappa ** 2 + m1 ** 2))   # Wood's b, without cancellation
    x0 = (1 - b) / (1 + b)
    c = kappa * x0 + m1 * np.log(1 - x0 * x0)
    w = np.empty(0)
    while w.size < n:
        z = rng.beta(m1 / 2, m1 / 2, size=2 * (n - w.size) + 8)
        cand = (1 - (1 + b) * z) / (1 - (1 - b) * z)
        u = rng.uniform(size=z.size)
        ok = kappa * cand + m1 * np.log(1 - x0 * cand) - c >= np.log(u)
        w = np.concatenate([w, cand[ok]])
    w = w[:n]
    tangent = rng.standard_normal((n, p))
    tangent -= np.outer(tangent @ mu, mu)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    return w[:, None] * mu + np.sqrt(np.maximum(1 - w * w, 0))[:, None] * tangent
