"""The privacy accountant of DP-SGD: Renyi DP of the sampled Gaussian mechanism (NumPy/SciPy).

One step of DP-SGD releases the sum of the clipped per-example gradients (L2 norm at most C) of
a Poisson sample (each example kept independently with probability ``q``) plus Gaussian noise
:math:`N(0, \\sigma^2 C^2 I)`: the *sampled Gaussian mechanism* (SGM). Neighbouring relation:
**add or remove one example** (the one the Poisson-sampling analysis uses).

Ledger (Mironov 2017, "Renyi differential privacy"; Mironov, Talwar, Zhang 2019, "Renyi
differential privacy of the sampled Gaussian mechanism"):

1. RDP of one step at order :math:`\\alpha > 1`:
   :math:`\\varepsilon_{\\mathrm{RDP}}(\\alpha) = \\frac{1}{\\alpha-1}\\log A_\\alpha` with
   :math:`A_\\alpha = \\mathbb{E}_{z\\sim\\mu_0}[(\\mu(z)/\\mu_0(z))^\\alpha]`,
   :math:`\\mu_0 = N(0,\\sigma^2)`, :math:`\\mu = (1-q)\\mu_0 + q N(1,\\sigma^2)`. For integer
   :math:`\\alpha` the binomial expansion gives
   :math:`A_\\alpha = \\sum_{k=0}^{\\alpha} \\binom{\\alpha}{k} (1-q)^{\\alpha-k} q^k
   e^{(k^2-k)/(2\\sigma^2)}`, summed in log space. For fractional :math:`\\alpha` the integral
   is split at :math:`z_0 = \\sigma^2\\log(1/q - 1) + 1/2` into two convergent series of
   generalised binomial terms times Gaussian tails (MTZ 2019, Sec. 3.3).
2. Composition over ``steps``: RDP adds up, :math:`T \\cdot \\varepsilon_{\\mathrm{RDP}}(\\alpha)`.
3. Conversion to :math:`(\\varepsilon, \\delta)`, minimised over the orders:
   *classic* (Mironov 2017, Prop. 3):
   :math:`\\varepsilon = \\varepsilon_{\\mathrm{RDP}} + \\log(1/\\delta)/(\\alpha-1)`;
   *tight* (Balle, Barthe, Gaboardi, Hsu, Sato 2020, Thm. 21; Canonne, Kamath, Steinke 2020):
   :math:`\\varepsilon = \\varepsilon_{\\mathrm{RDP}} + \\log((\\alpha-1)/\\alpha)
   - (\\log\\delta + \\log\\alpha)/(\\alpha-1)`, smaller than the classic one by
   :math:`\\log(\\alpha)/(\\alpha-1) - \\log(1-1/\\alpha) > 0` at every order.

For comparison, :func:`naive_composition_epsilon` and :func:`advanced_composition_epsilon`
(Dwork, Rothblum, Vadhan 2010) account the same run through per-step :math:`(\\varepsilon_0,
\\delta_0)` guarantees: the exact Gaussian curve (Balle & Wang 2018) amplified by subsampling.

This module imports no torch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import optimize, special, stats

from helpers import checks

__all__ = [
    "DEFAULT_ORDERS",
    "advanced_composition_epsilon",
    "audit_epsilon_lower_bound",
    "audit_p_value",
    "compute_rdp",
    "epsilon",
    "gaussian_delta",
    "gaussian_epsilon",
    "naive_composition_epsilon",
    "noise_multiplier_for",
    "rdp_to_epsilon",
    "subsampled_gaussian_step",
]

#: Renyi orders searched by default: Opacus's default orders (1.1 ... 10.9 and 12 ... 63) plus
#: a few more, so the epsilon reported is never above Opacus's for the same conversion.
DEFAULT_ORDERS = tuple(sorted({1 + x / 10 for x in range(1, 100)} | set(range(12, 64))
                              | {1.01, 1.02, 1.05, 80, 100, 128, 256, 512, 1024}))

CONVERSIONS = ("tight", "classic")


def _log_add(a: float, b: float) -> float:
    """log(e^a + e^b) without overflow."""
    lo, hi = min(a, b), max(a, b)
    if lo == -math.inf:
        return hi
    return hi + math.log1p(math.exp(lo - hi))


def _log_sub(a: float, b: float) -> float:
    """log(e^a - e^b) for a >= b (``-inf`` when equal)."""
    if b > a:
        raise ValueError("log_sub: the result would be the log of a negative number")
    # Mutation testing: `b == +math.inf` is an equivalent mutant (b = -inf then falls through
    # to a + log(-expm1(-inf)) = a + log(1) = a, or to a == b when a = -inf too).
    if b == -math.inf:
        return a
    if a == b:
        return -math.inf
    return a + math.log(-math.expm1(b - a))


def _log_erfc(x: float) -> float:
    """log(erfc(x)) accurate in both tails: erfc(x) = 2 Phi(-x sqrt 2)."""
    return math.log(2.0) + float(special.log_ndtr(-x * math.sqrt(2.0)))


def _log_a_int(q: float, sigma: float, alpha: int) -> float:
    """log A_alpha for integer alpha by the binomial expansion (MTZ 2019, Sec. 3.2)."""
    # Mutation testing, equivalent mutants: an integer k (dtype removed) gives the same terms,
    # and k up to alpha + 1 adds a term with gammaln(0) = inf, i.e. a zero binomial (-inf).
    k = np.arange(alpha + 1, dtype=np.float64)
    log_binom = (special.gammaln(alpha + 1) - special.gammaln(k + 1)
                 - special.gammaln(alpha - k + 1))
    terms = log_binom + k * math.log(q) + (alpha - k) * math.log1p(-q) \
        + (k * k - k) / (2 * sigma**2)
    return float(special.logsumexp(terms))


def _log_a_frac(q: float, sigma: float, alpha: float) -> float:
    """log A_alpha for fractional alpha: two series split at z0 (MTZ 2019, Sec. 3.3)."""
    z0 = sigma**2 * math.log(1 / q - 1) + 0.5
    pos = [-math.inf, -math.inf]  # running log-sums of positive and negative terms
    neg = [-math.inf, -math.inf]
    i = 0
    while True:
        coef = special.binom(alpha, i)
        log_coef = math.log(abs(coef))
        j = alpha - i
        log_t = (log_coef + i * math.log(q) + j * math.log1p(-q),
                 log_coef + j * math.log(q) + i * math.log1p(-q))
        log_e = (math.log(0.5) + _log_erfc((i - z0) / (math.sqrt(2) * sigma)),
                 math.log(0.5) + _log_erfc((z0 - j) / (math.sqrt(2) * sigma)))
        log_s = (log_t[0] + (i * i - i) / (2 * sigma**2) + log_e[0],
                 log_t[1] + (j * j - j) / (2 * sigma**2) + log_e[1])
        bucket = pos if coef > 0 else neg
        bucket[0] = _log_add(bucket[0], log_s[0])
        bucket[1] = _log_add(bucket[1], log_s[1])
        i += 1
        # Mutation testing: the thresholds are equivalent under small changes (< -31, <= -30, an
        # iteration cap of 100_000 vs 100_001 or >=): a term below e^-30 changes log A by < 1e-13.
        if max(log_s) < -30 or i > 100_000:
            break
    return _log_add(_log_sub(pos[0], neg[0]), _log_sub(pos[1], neg[1]))


def _check_orders(orders: Any) -> np.ndarray:
    arr = checks.array(orders, "orders", ndim=1)
    if (arr <= 1).any():
        raise ValueError(f"orders must hold Renyi orders > 1, got minimum {arr.min():g}")
    return arr


def _check_common(noise_multiplier: Any, sample_rate: Any, steps: Any) -> tuple[float, float, int]:
    sigma = checks.real(noise_multiplier, "noise_multiplier", low=0.0, low_open=True)
    q = checks.fraction(sample_rate, "sample_rate", open_low=True)
    steps = checks.integer(steps, "steps", low=1)
    return sigma, q, steps


def compute_rdp(noise_multiplier: float, sample_rate: float, steps: int,
                orders: Any = DEFAULT_ORDERS) -> np.ndarray:
    """RDP :math:`T\\,\\varepsilon_{\\mathrm{RDP}}(\\alpha)` of ``steps`` compositions of the
    sampled Gaussian mechanism (Mironov, Talwar, Zhang 2019), one value per order.

    ``q = 1`` is the plain Gaussian mechanism, :math:`\\alpha / (2\\sigma^2)` per step
    (Mironov 2017, Prop. 7). Orders may be fractional (> 1).
    """
    sigma, q, steps = _check_common(noise_multiplier, sample_rate, steps)
    orders = _check_orders(orders)
    out = np.empty(len(orders))
    for n, alpha in enumerate(orders):
        if q == 1.0:
            out[n] = alpha / (2 * sigma**2)
        elif float(alpha).is_integer():
            out[n] = _log_a_int(q, sigma, int(alpha)) / (alpha - 1)
        else:
            out[n] = _log_a_frac(q, sigma, float(alpha)) / (alpha - 1)
    return steps * out


def rdp_to_epsilon(rdp: Any, orders: Any, delta: float,
                   conversion: str = "tight") -> tuple[float, float]:
    """The smallest epsilon over the orders for which an RDP curve implies
    (epsilon, delta)-DP, and the order that attains it.

    ``conversion="classic"`` (Mironov 2017, Prop. 3):
    :math:`\\varepsilon = \\varepsilon_{\\mathrm{RDP}}(\\alpha) + \\log(1/\\delta)/(\\alpha-1)`.
    ``conversion="tight"`` (Balle et al. 2020, Thm. 21; Canonne, Kamath, Steinke 2020, Prop.
    12): :math:`\\varepsilon_{\\mathrm{RDP}}(\\alpha) + \\log(1 - 1/\\alpha)
    - (\\log \\delta + \\log \\alpha)/(\\alpha - 1)`, clipped at 0 (as Opacus reports).
    """
    orders = _check_orders(orders)
    rdp = checks.array(rdp, "rdp", ndim=1, finite=False, low=0.0)
    checks.same_length("rdp", rdp, "orders", orders)
    delta = checks.fraction(delta, "delta", open_low=True, open_high=True)
    checks.choice(conversion, "conversion", CONVERSIONS)
    if conversion == "classic":
        eps = rdp + math.log(1 / delta) / (orders - 1)
    else:
        eps = rdp + np.log1p(-1 / orders) - (math.log(delta) + np.log(orders)) / (orders - 1)
    eps = np.where(np.isnan(eps), np.inf, eps)
    best = int(np.argmin(eps))
    return max(0.0, float(eps[best])), float(orders[best])


def epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float, *,
            conversion: str = "tight", orders: Any = DEFAULT_ORDERS) -> float:
    """Epsilon of DP-SGD: ``steps`` steps of the sampled Gaussian mechanism with noise
    multiplier :math:`\\sigma` and Poisson rate ``q``, at ``delta`` (add/remove one example).

    RDP of the SGM (Mironov, Talwar, Zhang 2019), composed over the steps, converted with
    :func:`rdp_to_epsilon` (``"tight"``: Balle et al. 2020; ``"classic"``: Mironov 2017).
    """
    rdp = compute_rdp(noise_multiplier, sample_rate, steps, orders)
    return rdp_to_epsilon(rdp, orders, delta, conversion)[0]


def noise_multiplier_for(target_epsilon: float, sample_rate: float, steps: int, delta: float,
                         *, conversion: str = "tight", orders: Any = DEFAULT_ORDERS,
                         tol: float = 1e-4) -> float:
    """The smallest noise multiplier (to ``tol``) for which :func:`epsilon` is at most
    ``target_epsilon``: bisection on :math:`\\sigma`, epsilon being decreasing in it."""
    target = checks.real(target_epsilon, "target_epsilon", low=0.0, low_open=True)
    checks.fraction(sample_rate, "sample_rate", open_low=True)
    checks.integer(steps, "steps", low=1)
    checks.fraction(delta, "delta", open_low=True, open_high=True)
    tol = checks.real(tol, "tol", low=0.0, low_open=True)

    def eps_of(sigma: float) -> float:
        return epsilon(sigma, sample_rate, steps, delta, conversion=conversion, orders=orders)

    # Mutation testing: the starting bracket (hi = 2), the doubling (3 * hi) and the
    # comparisons at the target (`>=` for `>`, in both loops; `hi - lo >= tol`) are
    # equivalent: they move the bisection's path, and the answer stays within tol.
    lo, hi = 1e-2, 1.0
    while eps_of(hi) > target:
        lo, hi = hi, 2 * hi
        # hi is a power of two, never exactly 1e5 nor between 1e5 and 100001: `>=`, 100001
        # are equivalent mutants.
        if hi > 1e5:
            raise ValueError(f"target_epsilon={target:g} needs a noise multiplier above 1e5")
    while hi - lo > tol:
        mid = (lo + hi) / 2
        if eps_of(mid) > target:
            lo = mid
        else:
            hi = mid
    return hi


def gaussian_delta(noise_multiplier: float, eps: float) -> float:
    """Exact delta(eps) of one Gaussian mechanism with sensitivity 1 and std :math:`\\sigma`
    (Balle & Wang 2018, Thm. 8):
    :math:`\\Phi(\\tfrac{1}{2\\sigma} - \\varepsilon\\sigma)
    - e^{\\varepsilon}\\Phi(-\\tfrac{1}{2\\sigma} - \\varepsilon\\sigma)`."""
    sigma = checks.real(noise_multiplier, "noise_multiplier", low=0.0, low_open=True)
    eps = checks.real(eps, "eps", low=0.0)
    a = special.log_ndtr(1 / (2 * sigma) - eps * sigma)
    b = eps + special.log_ndtr(-1 / (2 * sigma) - eps * sigma)
    # Mutation testing: `a >= b` and `(a > b) or True` are equivalent: mathematically a > b
    # always (delta > 0), so a <= b only happens when both underflow to -inf, where
    # exp(a) - exp(b) is 0.0 as well; the guard only keeps a rounded tiny delta from going
    # negative.
    return float(math.exp(a) - math.exp(b)) if a > b else 0.0


def gaussian_epsilon(noise_multiplier: float, delta: float) -> float:
    """The smallest eps with :func:`gaussian_delta` (eps) <= delta (root of a decreasing
    function, found with Brent's method)."""
    sigma = checks.real(noise_multiplier, "noise_multiplier", low=0.0, low_open=True)
    delta = checks.fraction(delta, "delta", open_low=True, open_high=True)
    # Mutation testing: `<` instead of `<=` is equivalent (at delta == delta(0) the root
    # search below starts at f(0) = 0 and brentq returns 0.0 as well).
    if gaussian_delta(sigma, 0.0) <= delta:
        return 0.0
    # Mutation testing: the bracket (hi = 2, hi *= 3, `>=`) and brentq's xtol (its default
    # 2e-12) are equivalent: any bracket of the root gives the same root to within ~1e-12.
    hi = 1.0
    while gaussian_delta(sigma, hi) > delta:
        hi *= 2
    return float(optimize.brentq(lambda e: gaussian_delta(sigma, e) - delta, 0.0, hi,
                                 xtol=1e-12))


def subsampled_gaussian_step(noise_multiplier: float, sample_rate: float,
                             delta0: float) -> tuple[float, float]:
    """(eps, delta) of ONE step: the Gaussian's exact eps0 at delta0, amplified by Poisson
    subsampling (Li, Qardaji, Su 2012; Balle, Barthe, Gaboardi 2018):
    :math:`(\\log(1 + q(e^{\\varepsilon_0} - 1)),\\ q\\delta_0)`."""
    eps0 = gaussian_epsilon(noise_multiplier, delta0)
    q = checks.fraction(sample_rate, "sample_rate", open_low=True)
    return math.log1p(q * math.expm1(eps0)), q * delta0


def naive_composition_epsilon(noise_multiplier: float, sample_rate: float, steps: int,
                              delta: float) -> float:
    """Basic composition (Dwork et al. 2006): ``steps`` (eps_s, delta_s) steps are
    (steps * eps_s, steps * delta_s)-DP; delta_s is chosen as delta / steps."""
    _, q, steps = _check_common(noise_multiplier, sample_rate, steps)
    delta = checks.fraction(delta, "delta", open_low=True, open_high=True)
    eps_s, _ = subsampled_gaussian_step(noise_multiplier, q, delta / (steps * q))
    return steps * eps_s


def advanced_composition_epsilon(noise_multiplier: float, sample_rate: float, steps: int,
                                 delta: float) -> float:
    """Advanced composition (Dwork, Rothblum, Vadhan 2010, Thm. III.3): k steps that are each
    (e, d)-DP are (e sqrt(2k log(1/d')) + k e (e^e - 1), k d + d')-DP. Half of delta goes to
    d', half to the steps (d = delta / (2k))."""
    _, q, steps = _check_common(noise_multiplier, sample_rate, steps)
    delta = checks.fraction(delta, "delta", open_low=True, open_high=True)
    e, _ = subsampled_gaussian_step(noise_multiplier, q, delta / (2 * steps * q))
    return e * math.sqrt(2 * steps * math.log(2 / delta)) + steps * e * math.expm1(e)


def audit_p_value(m: int, r: int, v: int, eps: float, delta: float) -> float:
    """p-value of ``v`` or more correct membership guesses out of ``r`` (abstaining on the other
    ``m - r`` canaries, each included independently with probability 1/2) if the training run
    were (eps, delta)-DP (Steinke, Nasr, Jagielski 2023, "Privacy auditing with one (1) training
    run", Thm. 3.1 / Appendix D):
    :math:`P[\\mathrm{Bin}(r, p) \\ge v] + 2m\\delta \\max_{1\\le i\\le v}
    P[v - i \\le \\mathrm{Bin}(r, p) < v] / i` with :math:`p = e^\\varepsilon/(1+e^\\varepsilon)`,
    the accuracy of eps-DP randomised response."""
    m = checks.integer(m, "m", low=1)
    r = checks.integer(r, "r", low=0, high=m)
    v = checks.integer(v, "v", low=0, high=r)
    eps = checks.real(eps, "eps", low=0.0)
    delta = checks.fraction(delta, "delta", open_high=True)
    p = special.expit(eps)
    tail = float(stats.binom.sf(v - 1, r, p))
    # Mutation testing, equivalent mutants: `delta == 1` for `delta == 0` (delta < 1 always; at
    # delta = 0 the general branch adds 0 * max), `min(2.0, tail)` (a tail is <= 1), and
    # i up to v + 1 (the extra term cdf(v-1) / (v+1) is below the i = v term cdf(v-1) / v).
    if delta == 0 or v == 0:
        return min(1.0, tail)
    i = np.arange(1, v + 1)
    below = stats.binom.cdf(v - 1, r, p) - stats.binom.cdf(v - i - 1, r, p)  # P[v-i <= B < v]
    return min(1.0, tail + 2 * m * delta * float(np.max(below / i)))


def audit_epsilon_lower_bound(m: int, r: int, v: int, delta: float,
                              confidence: float = 0.95) -> float:
    """The largest eps that the audit rejects at ``confidence``: with probability
    ``confidence`` the run is NOT (eps, delta)-DP for any smaller eps (Steinke, Nasr,
    Jagielski 2023). Bisection on :func:`audit_p_value`, which increases in eps; 0 when even
    eps = 0 is not rejected."""
    confidence = checks.fraction(confidence, "confidence", open_low=True, open_high=True)
    alpha = 1 - confidence
    # Mutation testing: `>` for `>=` here, `<=` for `<` in the loops below, the start hi = 2,
    # the growth 3 * hi and 51 halvings are equivalent: the root is found to ~1e-14 anyway.
    if audit_p_value(m, r, v, 0.0, delta) >= alpha:
        return 0.0
    lo, hi = 0.0, 1.0
    while audit_p_value(m, r, v, hi, delta) < alpha:
        lo, hi = hi, 2 * hi
        # Unreachable guard (equivalent mutants `>= 100`, `> 101`): expit(64) rounds to 1.0, so
        # the p-value at eps = 64 is 1 >= alpha and the doubling stops at hi = 64 at the latest.
        if hi > 100:
            return lo
    for _ in range(50):
        mid = (lo + hi) / 2
        if audit_p_value(m, r, v, mid, delta) < alpha:
            lo = mid
        else:
            hi = mid
    return lo
