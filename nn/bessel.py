"""log I_v(x) and log K_v(x) in log space (after Plesner, Sorensen, Hauberg 2024), x > 0, v >= 0.

Each is one exprforge program in (v, x); every region is computed and `where` picks:

  log I, v >= 25        uniform (Debye) expansion, 12 terms of u_k(t) / v**k
  log I, v < 25, x<=10  power series (x/2)**v / Gamma(v+1) * sum_k (x**2/4)**k / (k! (v+1)_k),
                        30 terms, with log Gamma(1+v) written out (a (zeta(k) - 1) series
                        near its zeros at v = 0, 1; Stirling after a shift above)
  log I, v < 25, x>10   Debye at v + m >= 25 (m integer), then m steps of the downward
                        recurrence for the ratio I_{n-1}/I_n, which is stable
  log K, v >= 25        Debye
  log K, v < 25         K_mu and K_{mu+1} (mu = v - floor v) from the integral
                        K_mu(x) e**x = int_0^inf exp(-2x sinh(t/2)**2) cosh(mu t) dt by a
                        64-node trapezoid rule (exponentially accurate; the step scales with
                        the integrand's width, so one rule covers every x), then the upward
                        recurrence, which is stable for K

No region forms I or K themselves, so nothing overflows or underflows for finite results.
The ratio I_{m+1}/I_m that seeds the I recurrence is formed as a difference of the Debye
phases written to avoid cancellation (log r = g(m+1) - g(m) + ..., not logI(m+1) - logI(m)).

Derivatives in x (torch): d/dx log I_v = I_{v+1}/I_v + v/x and
d/dx log K_v = -K_{v-1}/K_v - v/x (= -K_{v+1}/K_v + v/x, used here, since v - 1 < 0
is outside the kernels' domain; K_{-v} = K_v would also do). The backward evaluates the
same compiled kernels at v + 1; v gets no gradient.
"""
from __future__ import annotations

import math
from fractions import Fraction
from functools import cache

import numpy as np

from exprforge.engine.expr import F, Expr, var

ARGS = ("v", "x")
DEBYE_V = 25        # Debye from here on (12 terms reach round-off from v = 20 on);
                    # below it the recurrences climb to it
DEBYE_TERMS = 12
SERIES_X = 10.0     # log I power series for x <= this (when v < DEBYE_V)
SERIES_TERMS = 30
QUAD_NODES = 64     # trapezoid nodes for K_mu, K_{mu+1}
CHUNK = 8           # recurrence ratios multiplied before one log (each <= 5e7 for x >= 1e-6)


@cache
def _debye_polys(n: int) -> list[list[Fraction]]:
    """u_k(t) = t**k Q_k(t**2); returns the coefficients of Q_1..Q_n (low degree first), from
    u_{k+1} = t^2 (1 - t^2) u_k' / 2 + int_0^t (1 - 5 s^2) u_k(s) ds / 8 (DLMF 10.41.10)."""
    u, out = [Fraction(1)], []
    for _ in range(n):
        d = [i * c for i, c in enumerate(u)][1:] + [Fraction(0)]           # u'
        nxt = [Fraction(0)] * (len(u) + 4)
        for i, c in enumerate(d):                                          # t^2 (1-t^2) u'/2
            nxt[i + 2] += c / 2
            nxt[i + 4] -= c / 2
        for i, c in enumerate(u):                                          # int (1-5s^2) u / 8
            nxt[i + 1] += c / (8 * (i + 1))
            nxt[i + 3] += -5 * c / (8 * (i + 3))
        while nxt and nxt[-1] == 0:
            nxt.pop()
        u = nxt
        k = len(out) + 1
        out.append([u[k + 2 * j] for j in range((len(u) - k + 1) // 2)])  # odd/even parts only
    return out


def _poly(coefs, y):
    acc = float(coefs[-1])
    for c in reversed(coefs[:-1]):
        acc = acc * y + float(c)
    return acc


def _debye_sum(nu: Expr, r: Expr, sign: float) -> Expr:
    """sum_{k>=1} (sign)^k u_k(t) / nu^k, t = nu / r, r = hypot(nu, x)."""
    t = nu / r
    w, tau = sign * (t / nu), t * t
    acc = None
    for q in reversed(_debye_polys(DEBYE_TERMS)):
        term = _poly(q, tau)
        acc = term if acc is None else term + w * acc
    return w * acc


def _phase(nu: Expr, x: Expr, r: Expr) -> Expr:
    """g = nu eta(x/nu) = sqrt(nu^2 + x^2) + nu log(x / (nu + sqrt(nu^2 + x^2)))."""
    return r + nu * F.log(x / (nu + r))


def _log_i_debye(nu, x):
    r = F.hypot(nu, x)
    return (_phase(nu, x, r) - 0.5 * math.log(2 * math.pi) - 0.5 * F.log(r)
            + F.log1p(_debye_sum(nu, r, 1.0)))


def _log_k_debye(nu, x):
    r = F.hypot(nu, x)
    return (-_phase(nu, x, r) + 0.5 * math.log(math.pi / 2) - 0.5 * F.log(r)
            + F.log1p(_debye_sum(nu, r, -1.0)))


def _log_ratio_i_debye(nu, x):
    """log(I_{nu+1}(x) / I_nu(x)) from the Debye forms, without their large cancellation."""
    r0, r1 = F.hypot(nu, x), F.hypot(nu + 1, x)
    dr = (2 * nu + 1) / (r0 + r1)
    dphase = dr + F.log(x / (nu + 1 + r1)) - nu * F.log1p((1 + dr) / (nu + r0))
    s0, s1 = _debye_sum(nu, r0, 1.0), _debye_sum(nu + 1, r1, 1.0)
    return (dphase - 0.25 * F.log1p((2 * nu + 1) / (r0 * r0))
            + F.log1p((s1 - s0) / (1 + s0)))


@cache
def _lgamma_constants():
    import mpmath
    mpmath.mp.dps = 40
    small = [float((-1) ** k * (mpmath.zeta(k) - 1) / k) for k in range(2, 31)]
    stirling = [float(mpmath.bernoulli(2 * k) / (2 * k * (2 * k - 1))) for k in range(1, 11)]
    return small, stirling, float(1 - mpmath.euler)


def _lgamma1p(v: Expr) -> Expr:
    """log Gamma(1 + v) for 0 <= v < DEBYE_V, accurate near its zeros (v = 0, 1)."""
    small, stirling, c1 = _lgamma_constants()
    u = F.where(v < 0.5, v, v - 1)                 # log Gamma(2 + u) = u(1-gamma) + ...
    acc = small[-1]
    for c in reversed(small[:-1]):
        acc = acc * u + c
    near = u * (c1 + u * acc) - F.where(v < 0.5, F.log1p(v), 0.0)
    w = v + 1
    z = w + 8                                      # Stirling at z >= 9, shifted back
    zi = 1 / z
    tail = stirling[-1]
    for c in reversed(stirling[:-1]):
        tail = tail * (zi * zi) + c
    shift = w
    for i in range(1, 8):
        shift = shift * (w + i)
    far = ((z - 0.5) * F.log(z) - z + 0.5 * math.log(2 * math.pi) + tail * zi
           - F.log(shift))
    return F.where(v < 1.5, near, far)


def _log_i_series(v, x):
    q = x * x * 0.25
    s = None
    for k in range(SERIES_TERMS, 0, -1):
        a = q / (k * (v + k))
        s = a if s is None else a * (1 + s)
    return v * F.log(x * 0.5) - _lgamma1p(v) + F.log1p(s)


def _log_i_recur(v, x):
    m = F.max(F.ceil(DEBYE_V - v), 0.0)             # steps down from the Debye order
    top = v + m
    ratio = F.exp(_log_ratio_i_debye(top, x))     # I_{top+1} / I_top
    total, prod, n = None, 1.0, top
    for j in range(1, DEBYE_V + 1):
        on = m >= j
        ratio = F.where(on, 1 / (2 * n / x + ratio), ratio)   # I_n / I_{n-1}
        prod = prod * F.where(on, ratio, 1.0)
        n = n - 1
        if j % CHUNK == 0 or j == DEBYE_V:
            total = F.log(prod) if total is None else total + F.log(prod)
            prod = 1.0
    return _log_i_debye(top, x) - total


def log_besseli_expr(dtype: str = "float64") -> Expr:
    v, x = (var(n, dtype) for n in ARGS)
    recur = _log_i_recur(v, x)                     # v >= DEBYE_V: no steps, Debye at v
    return F.where(x <= SERIES_X, F.where(v < DEBYE_V, _log_i_series(v, x), recur), recur)


def _log_k_small_order(v, x):
    """log K_v for 0 <= v < DEBYE_V: quadrature for K_mu, K_{mu+1}, then upward recurrence."""
    fl = F.floor(v)
    mu = v - fl
    # truncation point: the integrand is below e**-45 of its scale there
    t0 = 2 * F.asinh(F.sqrt(45 / (2 * x)))
    h = 2 * F.asinh(F.sqrt((45 + 2 * t0) / (2 * x))) / QUAD_NODES
    j0 = j1 = None
    for j in range(QUAD_NODES + 1):
        t = h * j
        half = F.sinh(t * 0.5)
        ch = 1 + 2 * half * half                   # cosh t
        sh = 2 * half * F.sqrt(1 + half * half)   # sinh t
        e = F.exp(mu * t)
        cm, sm = 0.5 * (e + 1 / e), 0.5 * (e - 1 / e)
        wgt = F.exp(-2 * x * half * half) * (0.5 if j == 0 else 1.0)
        a0, a1 = wgt * cm, wgt * (cm * ch + sm * sh)
        j0 = a0 if j0 is None else j0 + a0
        j1 = a1 if j1 is None else j1 + a1
    log_k_mu = F.log(h * j0) - x
    s = j1 / j0                                    # K_{mu+1} / K_mu
    prod = F.where(fl >= 1, s, 1.0)
    total = None
    for j in range(1, DEBYE_V):
        s = 1 / s + 2 * (mu + j) / x               # K_{mu+j+1} / K_{mu+j}
        prod = prod * F.where(fl >= j + 1, s, 1.0)
        if j % CHUNK == 0 or j == DEBYE_V - 1:
            total = F.log(prod) if total is None else total + F.log(prod)
            prod = 1.0
    return log_k_mu + total


def log_besselk_expr(dtype: str = "float64") -> Expr:
    v, x = (var(n, dtype) for n in ARGS)
    return F.where(v >= DEBYE_V, _log_k_debye(v, x), _log_k_small_order(v, x))


@cache
def _kernel(which: str, target: str, dtype: str):
    from exprforge.targets.build import compile_kernel
    expr = log_besseli_expr(dtype) if which == "i" else log_besselk_expr(dtype)
    return compile_kernel(expr, target, None, ARGS)


def _numpy(which, v, x):
    v, x = np.asarray(v), np.asarray(x)
    single = v.dtype == np.float32 and x.dtype == np.float32     # float32 in, float32 out
    v, x = np.broadcast_arrays(v.astype(np.float64), x.astype(np.float64))
    out = _kernel(which, "llvm", "float64")(v, x)
    return out.astype(np.float32) if single else out


def _torch_fn():
    import torch

    class LogBessel(torch.autograd.Function):
        @staticmethod
        def forward(ctx, which, v, x):
            kernel = _kernel(which, "torch", "float64")
            v64, x64 = torch.broadcast_tensors(v.detach().double(), x.detach().double())
            out = kernel(v64.contiguous(), x64.contiguous())
            ctx.which = which
            ctx.save_for_backward(v64, x64, out)
            return out.to(x.dtype)

        @staticmethod
        def backward(ctx, grad):
            v, x, out = ctx.saved_tensors
            up = _kernel(ctx.which, "torch", "float64")((v + 1).contiguous(), x.contiguous())
            ratio = torch.exp(up - out)              # I_{v+1}/I_v or K_{v+1}/K_v
            d = ratio + v / x if ctx.which == "i" else -ratio + v / x
            return None, None, grad * d.to(grad.dtype)
    return LogBessel


_FN = None


def _dispatch(which, v, x):
    try:
        import torch
    except ImportError:                             # pragma: no cover
        torch = None
    if torch is not None and (isinstance(v, torch.Tensor) or isinstance(x, torch.Tensor)):
        global _FN
        _FN = _FN or _torch_fn()
        ref = x if isinstance(x, torch.Tensor) else v
        dtype = ref.dtype if ref.is_floating_point() else torch.float64
        v = torch.as_tensor(v, dtype=dtype, device=ref.device)
        x = torch.as_tensor(x, dtype=dtype, device=ref.device)
        shape = torch.broadcast_shapes(v.shape, x.shape)
        out = _FN.apply(which, v, x)
        return out.reshape(shape)
    return _numpy(which, v, x)


def log_besseli(v, x):
    """log I_v(x) for v >= 0, x > 0, elementwise with broadcasting, on NumPy arrays (llvm
    kernel) or torch tensors (torch kernel, autograd in x). Computed in float64 (float32
    inputs are widened and the result rounded back: there is no float32 program yet)."""
    return _dispatch("i", v, x)


def log_besselk(v, x):
    """log K_v(x) for v >= 0, x > 0; as log_besseli."""
    return _dispatch("k", v, x)


def mp_log_bessel(fn: str, v, x) -> float:
    """The reference: log of mpmath's I_v(x) (fn "i") or K_v(x) (fn "k") at 50 digits;
    NaN where mpmath's series give up (very large v and x)."""
    import mpmath
    f = mpmath.besseli if fn == "i" else mpmath.besselk
    with mpmath.workdps(50):
        try:
            return float(mpmath.log(f(mpmath.mpf(float(v)), mpmath.mpf(float(x)),
                                      maxterms=20000)))
        except mpmath.libmp.NoConvergence:
            return np.nan
