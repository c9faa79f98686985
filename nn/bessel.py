"""log I_v(x) and log K_v(x) in log space (after Plesner, Sorensen, Hauberg 2024), x > 0, v >= 0.

Each is one exprforge program in (v, x) whose `where`s pick a region; the compiled CPU
kernels run only the region taken (see codegen.lower's branches), Triton computes all:

  log I, v >= 25        uniform (Debye) expansion, 12 terms of u_k(t) / v**k
  log I, v < 25, x<=10  power series (x/2)**v / Gamma(v+1) * sum_k (x**2/4)**k / (k! (v+1)_k),
                        30 terms, with log Gamma(1+v) written out (a (zeta(k) - 1) series
                        near its zeros at v = 0, 1; Stirling after a shift above)
  log I, v < 25, x>10   Debye at top = v + m >= 25 (m integer), then m steps of the
                        downward recurrence I_{n-1} = I_{n+1} + (2n/x) I_n, which is stable;
                        from x = 1e4 on the large-x expansion (9 terms)
  log K, v >= 25        Debye
  log K, v < 25         K_mu and K_{mu+1}, mu = v - n in [-1/2, 1/2), by Temme's series for
                        x <= 2, the trapezoid rule on K_mu(x) e**x = int_0^inf
                        exp(-2x sinh(t/2)**2) cosh(mu t) dt (64 nodes) for 2 < x <= 5,
                        Steed's continued fraction CF2 up to x = 1e3 and the Hankel
                        expansion above; then n steps of the upward recurrence
                        K_{j+1} = K_{j-1} + (2j/x) K_j, which is stable for K

The term counts above are float64's, and the most any element takes: the power series
and Temme's take fewer below x = 0.1, 1 and 0.2 (Terms: series_x, temme_x), and K's upward
recurrence at most CHUNK steps for orders up to CHUNK + 1, each such tier a branch.
The float32 programs (float32 in and out) use fewer (Terms: each series stops at
float32's round-off), the Hankel expansion from x = 30 and I's large-x one from x = 1e3;
they form the large terms of the logarithm (the Debye phase, v log(x/2) -
log Gamma(1 + v), -x, the recurrences' log scales), Temme's series and the recurrences
in float64, so that a result near 0 (I or K near 1) does not lose what those terms
cancel: within 8 * 2**-24 of the float64 programs, relative (absolute below 1).

The recurrences run on unnormalized values, rescaled every few steps (one division and
one log per CHUNK steps instead of a division per step).
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
from dataclasses import dataclass
from fractions import Fraction
from functools import cache

import numpy as np

from exprforge.engine.expr import F, Expr, var

ARGS = ("v", "x")
DEBYE_V = 25        # Debye from here on; below it the recurrences climb to it
SERIES_X = 10.0     # log I power series for x <= this (when v < DEBYE_V)
TEMME_X = 2.0       # log K, v < DEBYE_V: Temme's series for x <= this,
QUAD_X = 5.0        # the trapezoid rule up to this, Steed's continued fraction above
WIDE = "float64"    # the large terms of the logarithms, in every program (see Terms)
CHUNK = 8           # recurrence steps between rescalings (the I recurrence runs at
                    # x > SERIES_X, K's is scaled: each step's coefficient is <= 26)


@dataclass(frozen=True)
class Terms:
    """The lengths of the series of one precision (each the fewest that reach its
    round-off on the region where it is used; see tests/nn/test_bessel.py)."""
    debye: int          # u_k(t) / v**k terms (12 reach float64 round-off from v = 20 on)
    series: int         # terms of the log I power series (x <= SERIES_X)
    lgamma: int         # (zeta(k) - 1) terms of log Gamma(2 + u), |u| <= 1/2
    stirling: int       # Stirling terms of log Gamma at z >= 9
    temme: int          # terms of Temme's series
    rgamma: int         # Taylor terms of 1/Gamma(1 + z), |z| <= 1/2
    quad: int           # trapezoid nodes for K_mu, K_{mu+1}
    steed: int          # steps of Steed's continued fraction
    hankel_x: float     # log K, v < DEBYE_V: the large-x (Hankel) expansion above this x
    hankel: int         # with this many terms (Steed's q_k overflow from x ~ 100 in
                        # float32, x ~ 1.5e11 in float64; the first term left out is
                        # below 1e-24 at x = 1e3 and 1e-10 at x = 30)
    # Fewer terms where a series converges faster, as (edge, terms) from the narrowest
    # edge out; each tier is a branch of the compiled loops (see _tiers)
    series_x: tuple     # the log I power series, for x <= edge
    temme_x: tuple      # Temme's series, for x <= edge
    large_x: float      # log I, v < DEBYE_V: the large-x expansion from this x on
    large: int          # with this many terms


TERMS = {"float64": Terms(debye=12, series=30, lgamma=29, stirling=10, temme=20, rgamma=26,
                          quad=64, steed=30, hankel_x=1e3, hankel=8,
                          # each at least one more than the fewest whose first term left
                          # out is below 2**-56 (float32: 2**-26) over its tier (the
                          # large-x terms over v < DEBYE_V, the series' terms by their
                          # bound at the edge). Tried and dropped: Debye sums by v (their
                          # first terms are shared, so computed before the branch: no
                          # gain). The Debye region's own code is the same whatever the
                          # tiers, but its speed is not: with an edge at x = 0.01, or 5
                          # terms below x = 0.1, it ran 45% slower here (LLVM's register
                          # allocation of the whole loop spilled differently); 7 did not
                          series_x=((0.1, 7), (1.0, 11)), temme_x=((0.2, 7),),
                          large_x=1e4, large=9),
         # each about one and a half times the fewest that reach float32 round-off (the
         # Debye and log Gamma tails by their bounds: the first Debye term left out,
         # u_6(t) / 25**6, is <= 1.7e-10, the first Stirling term <= 1.2e-10; the others
         # measured against the float64 program)
         "float32": Terms(debye=5, series=16, lgamma=14, stirling=4, temme=12, rgamma=14,
                          quad=24, steed=12, hankel_x=30.0, hankel=6,
                          series_x=((0.1, 3), (1.0, 6)), temme_x=((0.2, 4),),
                          large_x=1e3, large=8)}


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


def _tiers(value, tiers, build, most):
    """build(n) with the n of the first (edge, n) in tiers with value <= edge, else
    build(most): a nest of wheres, whose sides the CPU kernels branch on, so an element
    runs only its own series (what the sides share is computed before the branch)."""
    out = build(most)
    for edge, n in reversed(tiers):
        out = F.where(value <= edge, build(n), out)
    return out


def _debye_sum(nu: Expr, r: Expr, sign: float, n: int) -> Expr:
    """sum_{k=1..n} (sign)^k u_k(t) / nu^k, t = nu / r, r = hypot(nu, x)."""
    t = nu / r
    w, tau = sign * (t / nu), t * t
    acc = None
    for q in reversed(_debye_polys(n)):
        term = _poly(q, tau)
        acc = term if acc is None else term + w * acc
    return w * acc


def _phase(nu: Expr, x: Expr, r: Expr) -> Expr:
    """g = nu eta(x/nu) = sqrt(nu^2 + x^2) + nu log(x / (nu + sqrt(nu^2 + x^2)))."""
    return r + nu * F.log(x / (nu + r))


def _narrow(e, dtype):
    """e in `dtype` (a no-op when it is already, and for Python numbers)."""
    return e if not isinstance(e, Expr) or e.dtype == dtype else e.cast(dtype)


def _wide(e):
    return _narrow(e, WIDE)


def _log_debye(nu, x, terms, narrow, sign):
    """log I (sign 1) or log K (sign -1) by Debye; nu and x in WIDE, the sum in `narrow`."""
    r = F.hypot(nu, x)
    lead = _phase(nu, x, r) - 0.5 * math.log(2 * math.pi) if sign > 0 else \
        -_phase(nu, x, r) + 0.5 * math.log(math.pi / 2)
    total = _debye_sum(_narrow(nu, narrow), _narrow(r, narrow), float(sign), terms.debye)
    return lead - 0.5 * F.log(r) + _wide(F.log1p(total))


def _log_ratio_i_debye(nu, x, terms):
    """log(I_{nu+1}(x) / I_nu(x)) from the Debye forms, without their large cancellation."""
    r0, r1 = F.hypot(nu, x), F.hypot(nu + 1, x)
    dr = (2 * nu + 1) / (r0 + r1)
    dphase = dr + F.log(x / (nu + 1 + r1)) - nu * F.log1p((1 + dr) / (nu + r0))
    s0, s1 = _debye_sum(nu, r0, 1.0, terms.debye), _debye_sum(nu + 1, r1, 1.0, terms.debye)
    return (dphase - 0.25 * F.log1p((2 * nu + 1) / (r0 * r0))
            + F.log1p((s1 - s0) / (1 + s0)))


@cache
def _lgamma_constants():
    import mpmath
    mpmath.mp.dps = 40
    small = [float((-1) ** k * (mpmath.zeta(k) - 1) / k) for k in range(2, 31)]
    stirling = [float(mpmath.bernoulli(2 * k) / (2 * k * (2 * k - 1))) for k in range(1, 11)]
    return small, stirling, float(1 - mpmath.euler)


def _lgamma1p(v: Expr, terms: Terms) -> Expr:
    """log Gamma(1 + v) for 0 <= v < DEBYE_V, accurate near its zeros (v = 0, 1)."""
    small, stirling, c1 = _lgamma_constants()
    small, stirling = small[:terms.lgamma], stirling[:terms.stirling]
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


def _log_i_series(v, x, terms):
    q = x * x * 0.25

    def series(n):
        s = None
        for k in range(n, 0, -1):
            a = q / (k * (v + k))
            s = a if s is None else a * (1 + s)
        return s
    s = _tiers(x, terms.series_x, series, terms.series)
    v, x = _wide(v), _wide(x)
    return v * F.log(x * 0.5) - _lgamma1p(v, terms) + _wide(F.log1p(s))


def _three_term(prev, cur, coef, active, back=1.0, steps=DEBYE_V):
    """Run y_{j+1} = back * y_{j-1} + coef(j) y_j from (y_0, y_1) = (prev, cur) for j = 1
    .. steps, each step only where active(j); returns (prev, cur, log scale): the last
    two values divided by exp(log scale). No divisions but one per CHUNK steps, where the
    pair is rescaled so that nothing overflows."""
    total = None
    for j in range(1, steps + 1):
        on = active(j)
        prev, cur = F.where(on, cur, prev), F.where(on, back * prev + coef(j) * cur, cur)
        if j % CHUNK == 0 or j == steps:
            scale = F.log(_wide(cur))
            total = scale if total is None else total + scale
            prev, cur = prev / cur, 1.0
    return prev, cur, total


def _log_i_recur(v, x, terms):
    """Debye at top = v + m >= DEBYE_V, then m steps of the downward recurrence
    I_{n-1} = I_{n+1} + (2n/x) I_n, which is stable, from (I_{top+1}, I_top) / I_top."""
    m = F.max(F.ceil(DEBYE_V - _wide(v)), 0.0)
    top = _wide(v) + m
    # I_{top+1} / I_top in the program's precision, the recurrence in WIDE (float32
    # steps would cost ~25 ulps)
    ratio = F.exp(_log_ratio_i_debye(_narrow(top, v.dtype), x, terms))
    inv = 2 / _wide(x)
    _, cur, total = _three_term(_wide(ratio), 1.0, lambda j: (top - (j - 1)) * inv,
                                lambda j: m >= j)
    return _log_debye(top, _wide(x), terms, v.dtype, 1) + total + F.log(_wide(cur))


def _terms(dtype: str) -> Terms:
    if dtype not in TERMS:
        raise ValueError(f"log-Bessel programs exist for {sorted(TERMS)}, not {dtype!r}")
    return TERMS[dtype]


def log_besseli_expr(dtype: str = "float64") -> Expr:
    terms = _terms(dtype)
    v, x = (var(n, dtype) for n in ARGS)
    large = F.where(x < terms.large_x, _log_i_recur(v, x, terms), _log_i_large_x(v, x, terms))
    small = F.where(x <= SERIES_X, _log_i_series(v, x, terms), large)
    out = F.where(v >= DEBYE_V, _log_debye(_wide(v), _wide(x), terms, dtype, 1), small)
    return _narrow(out, dtype)


@cache
def _rgamma_taylor(n: int):
    """c_k with 1/Gamma(1 + z) = sum c_k z**k (an entire function), k < n."""
    import mpmath
    with mpmath.workdps(40):
        return [float(c) for c in mpmath.taylor(mpmath.rgamma, 1, n - 1)]


def _k_temme(mu, x, terms, n=None):
    """(log K_mu(x), K_{mu+1}(x) / K_mu(x)) for |mu| <= 1/2, x <= TEMME_X: Temme's series
    to n terms (terms.temme by default)
    (Temme 1975; the form of Numerical Recipes' bessik), its gamma terms from the Taylor
    series of 1/Gamma(1 + z), split into odd and even parts so nothing cancels at mu = 0."""
    c = _rgamma_taylor(terms.rgamma)
    mu2 = mu * mu
    odd, even = c[-1] if len(c) % 2 == 0 else c[-2], c[-2] if len(c) % 2 == 0 else c[-1]
    for k in range(len(c) - 3, -1, -1):        # Horner in mu**2 over each parity
        if k % 2:
            odd = odd * mu2 + c[k]
        else:
            even = even * mu2 + c[k]
    gam1, gam2 = -odd, even                    # (1/G(1-mu) - 1/G(1+mu)) / 2mu, their mean
    gampl, gammi = gam2 - mu * gam1, gam2 + mu * gam1   # 1/Gamma(1+mu), 1/Gamma(1-mu)
    pimu = math.pi * mu
    fact = F.where(pimu.eq(0), 1.0, pimu / F.sin(pimu))
    d = -F.log(x * 0.5)
    e = mu * d
    fact2 = F.where(e.eq(0), 1.0, F.sinh(e) / e)
    ff = fact * (gam1 * F.cosh(e) + gam2 * fact2 * d)
    ee = F.exp(e)
    p, q = 0.5 * ee / gampl, 0.5 / (ee * gammi)
    total, total1, cc, quarter = ff, p, 1.0, x * x * 0.25
    for i in range(1, (n or terms.temme) + 1):
        ff = (i * ff + p + q) / (i * i - mu2)
        cc = cc * quarter / i
        p, q = p / (i - mu), q / (i + mu)
        total, total1 = total + cc * ff, total1 + cc * (p - i * ff)
    return F.log(_wide(total)), total1 * 2 / (x * total)


def _k_quadrature(mu, x, terms):
    """(log K_mu(x), K_{mu+1} / K_mu) for |mu| <= 1/2 from the integral
    K_mu(x) e**x = int_0^inf exp(-2x sinh(t/2)**2) cosh(mu t) dt, trapezoid rule."""
    # truncation point: the integrand is below e**-45 of its scale there
    t0 = 2 * F.asinh(F.sqrt(45 / (2 * x)))
    h = 2 * F.asinh(F.sqrt((45 + 2 * t0) / (2 * x))) / terms.quad
    j0 = j1 = None
    for j in range(terms.quad + 1):
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
    return F.log(_wide(h * j0)) - _wide(x), j1 / j0


def _k_steed(mu, x, terms):
    """(log K_mu(x), K_{mu+1} / K_mu) for |mu| <= 1/2, x > QUAD_X: Steed's continued
    fraction CF2 with Temme's normalization (Numerical Recipes' bessik), terms.steed
    steps (30 are enough from x = 5 on: 1e-15 at x = 5, round-off from x = 10)."""
    a1 = 0.25 - mu * mu
    b = 2 * (1 + x)
    d = 1 / b
    h = delh = d
    q1, q2, q, c, a = 0.0, 1.0, a1, a1, -a1
    s = 1 + q * delh
    for i in range(1, terms.steed + 1):
        a = a - 2 * i
        c = -a * c / (i + 1)
        qnew = (q1 - b * q2) / a
        q1, q2 = q2, qnew
        q = q + c * qnew
        b = b + 2
        d = 1 / (b + a * d)
        delh = (b * d - 1) * delh
        h = h + delh
        s = s + q * delh
    wx = _wide(x)
    log_k = 0.5 * F.log(math.pi / (2 * wx)) - wx - F.log(_wide(s))
    return log_k, (mu + x + 0.5 - a1 * h) / x


def _hankel_sum(nu, x, n: int, sign: float):
    """sum_{k=0..n} sign**k a_k(nu) / x**k, a_0 = 1, a_k = a_{k-1} (4 nu**2 - (2k - 1)**2)
    / 8k: the large-x expansions of K (sign 1, DLMF 10.40.2) and I (sign -1, 10.40.1)."""
    four = 4 * nu * nu
    acc = 1.0
    for k in range(n, 0, -1):
        acc = 1 + sign * (four - (2 * k - 1) ** 2) / (8 * k * x) * acc
    return acc


def _k_hankel(mu, x, terms):
    """(log K_mu(x), K_{mu+1} / K_mu) for |mu| <= 1/2 and large x from the asymptotic
    expansion K_nu(x) ~ sqrt(pi / 2x) e**-x sum_k a_k(nu) / x**k, terms.hankel terms."""
    s0, s1 = _hankel_sum(mu, x, terms.hankel, 1.0), _hankel_sum(mu + 1, x, terms.hankel, 1.0)
    wx = _wide(x)
    # log(pi / 2x) / 2 as a difference: 2x overflows above x ~ 9e307
    return 0.5 * math.log(math.pi / 2) - 0.5 * F.log(wx) - wx + F.log(_wide(s0)), s1 / s0


def _log_i_large_x(v, x, terms):
    """log I_v(x) for v < DEBYE_V and x >= terms.large_x: I_v(x) ~ e**x / sqrt(2 pi x)
    sum_k (-1)**k a_k(v) / x**k (the e**-x part is below round-off there)."""
    wx = _wide(x)
    s = _hankel_sum(v, x, terms.large, -1.0)
    # log(2 pi x) / 2 as a sum: 2 pi x overflows above x ~ 2.9e307
    return wx - 0.5 * math.log(2 * math.pi) - 0.5 * F.log(wx) + F.log(_wide(s))


def _k_climb(method, v, x, terms, **options):
    """log K_v for 0 <= v < DEBYE_V: K_mu and K_{mu+1} (mu = v - n, |mu| <= 1/2) by
    `method` (given `options`), then n steps of the upward recurrence, which is stable
    for K."""
    wv, wx = _wide(v), _wide(x)
    n = F.floor(wv + 0.5)
    mu = wv - n
    if method is _k_temme:    # it loses ~5 bits near |mu| = 1/2, x = 2: WIDE throughout
        log_k_mu, ratio = method(mu, wx, terms, **options)
    else:                     # K_{mu+1} / K_mu
        log_k_mu, ratio = method(_narrow(mu, v.dtype), x, terms, **options)
    # w_j = K_{mu+j} h**j with h = min(x/2, 1): w_{j+1} = h**2 w_{j-1} + (mu + j)(2h/x) w_j,
    # whose coefficients stay below 26 however small x is (2(mu + j)/x would overflow a
    # CHUNK of steps below x ~ 1e-30); in WIDE, as the I recurrence
    h = F.min(wx * 0.5, 1.0)
    inv = 2 * h / wx

    def climb(steps):
        prev, cur, total = _three_term(1.0, _wide(ratio) * h, lambda j: (mu + j) * inv,
                                       lambda j: n >= j + 1, back=h * h, steps=steps)
        return log_k_mu + total + F.log(F.where(n >= 1, cur, prev)) - n * F.log(h)
    # n <= CHUNK + 1 takes at most CHUNK steps: 9 of 10 orders below DEBYE_V, log-uniform
    return _tiers(n, ((CHUNK + 1.0, CHUNK),), climb, DEBYE_V)


def log_besselk_expr(dtype: str = "float64") -> Expr:
    terms = _terms(dtype)
    v, x = (var(n, dtype) for n in ARGS)
    large = _k_climb(_k_steed, v, x, terms)
    if terms.hankel_x < math.inf:
        large = F.where(x <= terms.hankel_x, large, _k_climb(_k_hankel, v, x, terms))
    temme = _tiers(x, terms.temme_x, lambda n: _k_climb(_k_temme, v, x, terms, n=n),
                   terms.temme)
    small = F.where(x <= TEMME_X, temme,
                    F.where(x <= QUAD_X, _k_climb(_k_quadrature, v, x, terms), large))
    out = F.where(v >= DEBYE_V, _log_debye(_wide(v), _wide(x), terms, dtype, -1), small)
    return _narrow(out, dtype)


@cache
def _kernel(which: str, target: str, dtype: str, parallel: bool = False):
    from exprforge.targets.build import compile_kernel
    expr = log_besseli_expr(dtype) if which == "i" else log_besselk_expr(dtype)
    return compile_kernel(expr, target, None, ARGS, **({"parallel": True} if parallel else {}))


def _numpy(which, v, x):
    v, x = np.asarray(v), np.asarray(x)
    # float32 in, float32 out (the float32 program); anything else in float64
    dtype = "float32" if v.dtype == np.float32 and x.dtype == np.float32 else "float64"
    v, x = np.broadcast_arrays(v.astype(dtype), x.astype(dtype))
    return _kernel(which, "llvm", dtype, parallel=True)(v, x)   # threads for large arrays


def _torch_fn():
    import torch

    class LogBessel(torch.autograd.Function):
        @staticmethod
        def forward(ctx, which, v, x):
            # float32 tensors run the float32 program, any other the float64 one
            given, dtype = x.dtype, torch.float32 if x.dtype == torch.float32 else torch.float64
            v, x = torch.broadcast_tensors(v.detach().to(dtype), x.detach().to(dtype))
            kernel = _kernel(which, "torch", str(dtype).removeprefix("torch."))
            out = kernel(v.contiguous(), x.contiguous())
            ctx.which = which
            ctx.save_for_backward(v, x, out)
            return out.to(given)

        @staticmethod
        def backward(ctx, grad):
            v, x, out = ctx.saved_tensors
            if out.dtype != torch.float64:
                # the ratio is a difference of two logs that may be ~1e3 each: formed from
                # float32 results it would keep only ~1e-4 of its relative accuracy
                v, x = v.double(), x.double()
                out = _kernel(ctx.which, "torch", "float64")(v.contiguous(), x.contiguous())
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
    kernel, on all cores for large arrays) or torch tensors (torch kernel, autograd in x). Arrays: float32 v and x run
    the float32 program and give float32, anything else runs in float64. Tensors: x's
    dtype decides (v's when only v is a tensor; the other is converted to it): float32
    runs the float32 program, any other float64, and the result has that dtype."""
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
