"""Tests of helpers.accounting: the RDP accountant of the sampled Gaussian mechanism against
published values, an independent numerical integral, Opacus and the exact PLD accountant, the
limiting cases, and every bad input."""

import math

import numpy as np
import pytest
from scipy import integrate, optimize, special, stats

from helpers import accounting as acc

TF_ORDERS = [1 + x / 10 for x in range(1, 100)] + list(range(12, 64))  # TF Privacy / Opacus


# ------------------------------------------------------------------ published (setting, epsilon)
# TF Privacy, tutorials/README.md ("Select Parameters" table, MNIST, N = 60000, batch 256,
# delta = 1e-5; steps = epochs * 60000 // 256). TF Privacy's compute_rdp + get_privacy_spent of
# that time used the CLASSIC conversion (Mironov 2017) over TF_ORDERS. Published values have
# two decimals: tolerance 0.006 (rounding). The 9.74 row: we (and opacus 1.6.0's RDP code, same
# orders) get 9.7527, 0.013 above the printed value, so that row allows 0.015; the README does
# not say which TF Privacy version printed it.
@pytest.mark.parametrize(("sigma", "epochs", "published", "tol"),
                         [(1.12, 60, 2.92, 0.006), (0.6, 30, 9.74, 0.015), (1.2, 10, 1.20, 0.006)])
def test_tf_privacy_readme_table(sigma, epochs, published, tol):
    q, steps = 256 / 60000, epochs * 60000 // 256
    rdp = acc.compute_rdp(sigma, q, steps, TF_ORDERS)
    eps, _ = acc.rdp_to_epsilon(rdp, TF_ORDERS, 1e-5, conversion="classic")
    assert eps == pytest.approx(published, abs=tol)


def test_opacus_compute_dp_sgd_privacy_docs():
    # opacus.ai/api/compute_dp_sgd_privacy.html: sample rate 1%, sigma 1.0, 300 steps,
    # alphas [2, 5, 10, 20, 100], delta 1e-5 -> "epsilon = 2.39 ... optimal alpha is 5.0".
    # Opacus 1.x uses the tight conversion (Balle et al. 2020).
    orders = [2, 5, 10, 20, 100]
    eps, order = acc.rdp_to_epsilon(acc.compute_rdp(1.0, 0.01, 300, orders), orders, 1e-5)
    assert eps == pytest.approx(2.39, abs=0.005)
    assert order == 5


# Reference values computed once with opacus 1.6.0 (opacus.accountants.analysis.rdp:
# compute_rdp + get_privacy_spent, TF_ORDERS, tight conversion) and with dp-accounting 0.6.0's
# PLDAccountant (add/remove, PoissonSampledDpEvent(GaussianDpEvent), value discretisation 1e-4,
# the exact-up-to-discretisation epsilon: a LOWER bound on any valid accountant).
REFERENCE = [  # sigma, q, steps, delta, opacus_eps, pld_eps
    (1.1, 256 / 60000, 14062, 1e-5, 2.5965558689607486, 2.381686002234784),
    (0.6, 256 / 60000, 7031, 1e-5, 8.769489106868171, 7.69002705144793),
    (1.0, 0.01, 300, 1e-5, 1.4513680855427142, 1.0680938887003975),
    (2.0, 0.05, 1000, 1e-5, 4.024351196896215, 3.699741845924451),
    (0.8, 0.1, 50, 1e-6, 10.531545235810624, 9.353252304515692),
]


@pytest.mark.parametrize(("sigma", "q", "steps", "delta", "opacus_eps", "pld_eps"), REFERENCE)
def test_between_pld_and_opacus(sigma, q, steps, delta, opacus_eps, pld_eps):
    eps = acc.epsilon(sigma, q, steps, delta)
    assert eps <= opacus_eps + 1e-9  # never above Opacus (our orders include Opacus's)
    assert eps == pytest.approx(opacus_eps, rel=1e-6)  # same mechanism, same math
    assert eps >= pld_eps  # never below the exact privacy loss distribution


def _rdp_by_quadrature(q, sigma, alpha):
    """Independent reference: A_alpha = int mu0 (mu / mu0)^alpha dz by numerical integration."""
    def integrand(z):  # mu / mu0 = (1 - q) + q exp((2z - 1) / (2 sigma^2))
        log_ratio = np.logaddexp(math.log1p(-q), math.log(q) + (2 * z - 1) / (2 * sigma**2))
        return math.exp(stats.norm.logpdf(z, 0, sigma) + alpha * log_ratio)
    value, _ = integrate.quad(integrand, -30 * sigma, 30 * sigma + alpha, limit=500,
                              points=[0.0, 1.0, alpha / 2, alpha], epsabs=0, epsrel=1e-11)
    return math.log(value) / (alpha - 1)


@pytest.mark.parametrize("alpha", [2, 3.5, 7, 12.25])
@pytest.mark.parametrize(("q", "sigma"), [(0.05, 1.0), (0.3, 2.0), (0.01, 0.7)])
def test_rdp_matches_numerical_integral(q, sigma, alpha):
    got = acc.compute_rdp(sigma, q, 1, [alpha])[0]
    assert got == pytest.approx(_rdp_by_quadrature(q, sigma, alpha), rel=1e-6)


# ------------------------------------------------------------------------- limiting cases
@pytest.mark.parametrize("sigma", [0.5, 1.0, 3.0])
def test_full_batch_is_plain_gaussian(sigma):
    orders = [1.5, 2, 4.5, 32]
    np.testing.assert_allclose(acc.compute_rdp(sigma, 1.0, 7, orders),
                               7 * np.array(orders) / (2 * sigma**2), rtol=1e-12)


def test_q_close_to_one_is_continuous_with_plain_gaussian():
    # the binomial sum at q -> 1 must reach alpha / (2 sigma^2); catches a swapped q / 1 - q
    got = acc.compute_rdp(1.5, 1 - 1e-9, 1, [2, 5])
    np.testing.assert_allclose(got, [2 / 4.5, 5 / 4.5], rtol=1e-6)


def test_epsilon_grows_with_steps_and_shrinks_with_sigma():
    q = 0.01
    eps_steps = [acc.epsilon(1.0, q, t, 1e-5) for t in (10, 100, 1000, 5000)]
    assert np.all(np.diff(eps_steps) > 0)
    eps_sigma = [acc.epsilon(s, q, 1000, 1e-5) for s in (0.6, 0.9, 1.5, 4.0)]
    assert np.all(np.diff(eps_sigma) < 0)
    eps_q = [acc.epsilon(1.0, r, 1000, 1e-5) for r in (0.001, 0.01, 0.1)]
    assert np.all(np.diff(eps_q) > 0)


def test_tight_conversion_below_classic():
    rdp = acc.compute_rdp(1.0, 0.02, 500)
    tight, _ = acc.rdp_to_epsilon(rdp, acc.DEFAULT_ORDERS, 1e-5, "tight")
    classic, _ = acc.rdp_to_epsilon(rdp, acc.DEFAULT_ORDERS, 1e-5, "classic")
    assert tight < classic


def test_classic_conversion_hand_computed():
    # one order: eps = rdp + log(1/delta) / (alpha - 1) = 0.5 + log(1e5) / 9
    eps, order = acc.rdp_to_epsilon([0.5], [10], 1e-5, "classic")
    assert eps == pytest.approx(0.5 + math.log(1e5) / 9, rel=1e-12)
    assert order == 10
    eps, _ = acc.rdp_to_epsilon([0.5], [10], 1e-5, "tight")
    assert eps == pytest.approx(0.5 + math.log(0.9) - (math.log(1e-5) + math.log(10)) / 9)


@pytest.mark.parametrize(("target", "q", "steps"), [(1.0, 0.01, 1000), (3.0, 256 / 60000, 5000),
                                                     (8.0, 0.1, 100)])
def test_noise_multiplier_for_inverts_epsilon(target, q, steps):
    sigma = acc.noise_multiplier_for(target, q, steps, 1e-5, tol=1e-5)
    assert acc.epsilon(sigma, q, steps, 1e-5) <= target
    assert acc.epsilon(sigma - 1e-3, q, steps, 1e-5) > target  # smallest such sigma


def test_gaussian_delta_closed_form():
    # Balle & Wang 2018 at eps = 0: delta = Phi(1/(2s)) - Phi(-1/(2s)) = 2 Phi(1/(2s)) - 1
    s = 0.8
    assert acc.gaussian_delta(s, 0.0) == pytest.approx(2 * stats.norm.cdf(1 / (2 * s)) - 1)
    eps = acc.gaussian_epsilon(s, 1e-5)
    assert acc.gaussian_delta(s, eps) == pytest.approx(1e-5, rel=1e-6)
    # the one-step RDP bound is valid: never below the exact Gaussian epsilon
    assert acc.epsilon(s, 1.0, 1, 1e-5) >= eps


def test_composition_order_naive_advanced_rdp():
    q, steps = 256 / 60000, 2000
    naive = acc.naive_composition_epsilon(1.1, q, steps, 1e-5)
    advanced = acc.advanced_composition_epsilon(1.1, q, steps, 1e-5)
    rdp = acc.epsilon(1.1, q, steps, 1e-5)
    assert rdp < advanced < naive


def test_naive_composition_is_steps_times_one_step():
    q, steps, delta = 0.05, 40, 1e-5
    one, _ = acc.subsampled_gaussian_step(2.0, q, delta / (steps * q))
    assert acc.naive_composition_epsilon(2.0, q, steps, delta) == pytest.approx(steps * one)
    # amplification: log(1 + q (e^eps0 - 1))
    eps0 = acc.gaussian_epsilon(2.0, delta / (steps * q))
    assert one == pytest.approx(math.log(1 + q * (math.exp(eps0) - 1)))


# ------------------------------------------------------------------------------ bad inputs
@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    ({"noise_multiplier": 0.0}, ValueError, "noise_multiplier"),
    ({"noise_multiplier": -1.0}, ValueError, "noise_multiplier"),
    ({"noise_multiplier": "1"}, TypeError, "noise_multiplier"),
    ({"sample_rate": 0.0}, ValueError, "sample_rate"),
    ({"sample_rate": 1.5}, ValueError, "sample_rate"),
    ({"steps": 0}, ValueError, "steps"),
    ({"steps": 2.0}, TypeError, "steps"),
    ({"delta": 0.0}, ValueError, "delta"),
    ({"delta": 1.0}, ValueError, "delta"),
    ({"conversion": "exact"}, ValueError, "conversion"),
    ({"orders": [1.0, 2.0]}, ValueError, "orders"),
])
def test_epsilon_bad_inputs(kwargs, exc, match):
    args = {"noise_multiplier": 1.0, "sample_rate": 0.01, "steps": 10, "delta": 1e-5} | kwargs
    with pytest.raises(exc, match=match):
        acc.epsilon(**args)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"target_epsilon": 0.0}, "target_epsilon"), ({"sample_rate": -0.1}, "sample_rate"),
    ({"steps": 0}, "steps"), ({"delta": 2.0}, "delta"), ({"tol": 0.0}, "tol"),
])
def test_noise_multiplier_for_bad_inputs(kwargs, match):
    args = {"target_epsilon": 1.0, "sample_rate": 0.01, "steps": 10, "delta": 1e-5} | kwargs
    with pytest.raises(ValueError, match=match):
        acc.noise_multiplier_for(**args)


def test_rdp_to_epsilon_bad_inputs():
    with pytest.raises(ValueError, match="same length"):
        acc.rdp_to_epsilon([0.1, 0.2], [2.0], 1e-5)
    with pytest.raises(ValueError, match="rdp"):
        acc.rdp_to_epsilon([-0.1], [2.0], 1e-5)


def test_other_functions_bad_inputs():
    with pytest.raises(ValueError, match="noise_multiplier"):
        acc.gaussian_delta(0.0, 1.0)
    with pytest.raises(ValueError, match="eps"):
        acc.gaussian_delta(1.0, -1.0)
    with pytest.raises(ValueError, match="delta"):
        acc.gaussian_epsilon(1.0, 0.0)
    with pytest.raises(ValueError, match="steps"):
        acc.naive_composition_epsilon(1.0, 0.1, 0, 1e-5)
    with pytest.raises(ValueError, match="sample_rate"):
        acc.advanced_composition_epsilon(1.0, 0.0, 10, 1e-5)
    with pytest.raises(ValueError, match="confidence"):
        acc.audit_epsilon_lower_bound(100, 10, 10, 1e-5, confidence=1.0)
    with pytest.raises(TypeError, match="steps"):
        acc.compute_rdp(1.0, 0.1, 1.5)


# --------------------------------------------- mutation-testing survivors (issue 17): references
def _gauss_delta_ref(sigma, eps):
    """Balle & Wang 2018, Thm. 8, written with scipy.stats.norm.cdf (no logs)."""
    return (stats.norm.cdf(1 / (2 * sigma) - eps * sigma)
            - math.exp(eps) * stats.norm.cdf(-1 / (2 * sigma) - eps * sigma))


def _gauss_eps_ref(sigma, delta):
    """The root of the reference delta(eps) = delta (0 when delta(0) <= delta)."""
    if _gauss_delta_ref(sigma, 0.0) <= delta:
        return 0.0
    return optimize.brentq(lambda e: _gauss_delta_ref(sigma, e) - delta, 0.0, 200.0, xtol=1e-14)


def _audit_p_ref(m, r, v, eps, delta):
    """Steinke, Nasr, Jagielski 2023 Thm. 3.1 with exact binomial pmf sums (math.comb)."""
    p = math.exp(eps) / (1 + math.exp(eps))
    pmf = [math.comb(r, k) * p**k * (1 - p) ** (r - k) for k in range(r + 1)]
    tail = sum(pmf[v:])
    extra = max((sum(pmf[v - i:v]) / i for i in range(1, v + 1)), default=0.0)
    return min(1.0, tail + 2 * m * delta * extra)


@pytest.mark.parametrize(("sigma", "eps"), [(0.8, 0.0), (0.8, 0.7), (2.5, 0.3), (0.5, 3.0)])
def test_gaussian_delta_matches_balle_wang(sigma, eps):
    # sigma != 1 and eps > 0: a wrong eps * sigma (eps / sigma) in either Phi term shows
    assert acc.gaussian_delta(sigma, eps) == pytest.approx(_gauss_delta_ref(sigma, eps),
                                                           rel=1e-9, abs=1e-300)


def test_gaussian_delta_underflow_is_zero():
    # at eps = 1e200 both log-terms are -inf: delta is 0 (not 1, not NaN)
    assert acc.gaussian_delta(1.0, 1e200) == 0.0


@pytest.mark.parametrize(("sigma", "delta"), [(0.8, 1e-5), (5.0, 1e-5), (2.0, 0.15), (1.0, 0.3)])
def test_gaussian_epsilon_matches_reference_root(sigma, delta):
    # (5, 1e-5) has its root below 1; (2, 0.15) lies between delta(1) and delta(0); (1, 0.3)
    # has delta(0) = 2 Phi(1/2) - 1 = 0.38 > 0.3 with a small root
    want = _gauss_eps_ref(sigma, delta)
    assert want > 0
    assert acc.gaussian_epsilon(sigma, delta) == pytest.approx(want, rel=1e-8)


def test_gaussian_epsilon_is_zero_when_delta_covers_eps_zero():
    # delta(0) = 2 Phi(1/(2 sigma)) - 1 = 0.383 at sigma = 1: any delta above it needs no eps
    assert 2 * stats.norm.cdf(0.5) - 1 < 0.5
    assert acc.gaussian_epsilon(1.0, 0.5) == 0.0


@pytest.mark.parametrize(("sigma", "q", "delta0"), [(2.0, 0.05, 1e-4), (0.9, 0.3, 1e-6)])
def test_subsampled_gaussian_step_by_hand(sigma, q, delta0):
    eps, delta = acc.subsampled_gaussian_step(sigma, q, delta0)
    eps0 = _gauss_eps_ref(sigma, delta0)
    assert eps == pytest.approx(math.log(1 + q * (math.exp(eps0) - 1)), rel=1e-8)
    assert delta == pytest.approx(q * delta0, rel=1e-12)


@pytest.mark.parametrize(("sigma", "q", "steps", "delta"), [(1.1, 256 / 60000, 2000, 1e-5),
                                                             (3.0, 0.1, 50, 1e-3)])
def test_advanced_composition_by_hand(sigma, q, steps, delta):
    # DRV 2010 Thm. III.3 with d = delta / (2k) per step and d' = delta / 2
    eps0 = _gauss_eps_ref(sigma, delta / (2 * steps * q))
    e = math.log(1 + q * (math.exp(eps0) - 1))
    want = e * math.sqrt(2 * steps * math.log(1 / (delta / 2))) + steps * e * (math.exp(e) - 1)
    assert acc.advanced_composition_epsilon(sigma, q, steps, delta) == pytest.approx(want,
                                                                                     rel=1e-8)


def test_naive_composition_by_hand():
    sigma, q, steps, delta = 1.3, 0.02, 300, 1e-5
    e = math.log(1 + q * (math.exp(_gauss_eps_ref(sigma, delta / (steps * q)))) - q)
    assert acc.naive_composition_epsilon(sigma, q, steps, delta) == pytest.approx(steps * e,
                                                                                  rel=1e-8)


@pytest.mark.parametrize(("m", "r", "v", "eps", "delta"), [
    (1000, 100, 90, 1.0, 1e-5), (1000, 100, 90, 2.0, 0.0), (50, 20, 15, 0.5, 1e-3),
    (200, 40, 0, 1.0, 1e-5), (10, 10, 10, 0.0, 0.0), (500, 60, 45, 0.3, 1e-4),
    (30, 12, 7, 0.2, 0.05),  # large m * delta: the min(1, .) clip
    # v just above the mode (73): the max over i is at i = 1 (pmf rising towards v - 1)
    (1000, 100, 74, 1.0, 1e-3),
    (100, 4, 2, 0.0, 1e-3), (50, 3, 1, 0.5, 1e-2),  # v <= 2: i runs over 1..v
])
def test_audit_p_value_matches_exact_binomial_sums(m, r, v, eps, delta):
    assert acc.audit_p_value(m, r, v, eps, delta) == pytest.approx(
        _audit_p_ref(m, r, v, eps, delta), rel=1e-9, abs=1e-300)


def test_audit_p_value_max_at_i_one():
    # the case above where the maximum of P[v - i <= B < v] / i is the single term i = 1
    p = math.exp(1.0) / (1 + math.exp(1.0))
    terms = [stats.binom.pmf(np.arange(74 - i, 74), 100, p).sum() / i for i in range(1, 75)]
    assert int(np.argmax(terms)) == 0
    assert acc.audit_p_value(1000, 100, 74, 1.0, 1e-3) == pytest.approx(
        stats.binom.sf(73, 100, p) + 2 * 1000 * 1e-3 * terms[0], rel=1e-9)
    assert acc.audit_p_value(1000, 100, 74, 1.0, 1e-3) < 1


def test_audit_p_value_clips_at_one_and_grows_with_eps():
    assert acc.audit_p_value(30, 12, 7, 0.2, 0.05) == 1.0
    ps = [acc.audit_p_value(1000, 100, 80, e, 1e-5) for e in (0.0, 0.5, 1.0, 2.0)]
    assert np.all(np.diff(ps) > 0)


@pytest.mark.parametrize(("m", "r", "v", "delta", "confidence"), [
    (1000, 100, 90, 1e-5, 0.95), (1000, 100, 70, 1e-5, 0.95), (1000, 200, 130, 1e-6, 0.99),
    (1000, 100, 100, 0.0, 0.95),
])
def test_audit_epsilon_lower_bound_is_root_of_p_value(m, r, v, delta, confidence):
    alpha = 1 - confidence
    want = optimize.brentq(lambda e: _audit_p_ref(m, r, v, e, delta) - alpha, 0.0, 30.0,
                           xtol=1e-13)
    got = acc.audit_epsilon_lower_bound(m, r, v, delta, confidence)
    assert got == pytest.approx(want, rel=1e-8)
    assert acc.audit_p_value(m, r, v, got, delta) < alpha  # the bound is a rejected eps (lo)


def test_audit_epsilon_lower_bound_default_confidence_and_zero():
    # default confidence 0.95; (100, 70) is 0.5 above 0.95 with r = 100: root near eps 0.5
    want = optimize.brentq(lambda e: _audit_p_ref(1000, 100, 70, e, 1e-5) - 0.05, 0.0, 30.0,
                           xtol=1e-13)
    assert 0.1 < want < 1.0
    assert acc.audit_epsilon_lower_bound(1000, 100, 70, 1e-5) == pytest.approx(want, rel=1e-8)
    # 50 correct of 100 is chance: eps = 0 is not rejected
    assert acc.audit_epsilon_lower_bound(1000, 100, 50, 1e-5) == 0.0


# -------------------------------------- bad inputs named from the start of the message (``^``)
@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    ({"target_epsilon": 0.0}, ValueError, "^target_epsilon must be a number > 0"),
    # tol = 0 as well: the first invalid argument must be reported, before tol
    ({"sample_rate": 0.0, "tol": 0.0}, ValueError, "^sample_rate must be a number > 0 and <= 1"),
    ({"steps": 0, "tol": 0.0}, ValueError, "^steps must be an integer >= 1"),
    ({"delta": 0.0, "tol": 0.0}, ValueError, "^delta must be a number > 0 and < 1"),
    ({"delta": 1.0, "tol": 0.0}, ValueError, "^delta must be a number > 0 and < 1"),
    ({"tol": -1.0}, ValueError, "^tol must be a number > 0"),
])
def test_noise_multiplier_for_reports_first_bad_argument(kwargs, exc, match):
    args = {"target_epsilon": 1.0, "sample_rate": 0.01, "steps": 10, "delta": 1e-5} | kwargs
    with pytest.raises(exc, match=match):
        acc.noise_multiplier_for(**args)


def test_noise_multiplier_for_default_tolerance():
    q, steps, target = 0.01, 1000, 2.0
    sigma = acc.noise_multiplier_for(target, q, steps, 1e-5)
    assert acc.epsilon(sigma, q, steps, 1e-5) <= target
    assert acc.epsilon(sigma - 2e-4, q, steps, 1e-5) > target  # default tol 1e-4


@pytest.mark.parametrize(("call", "match"), [
    (lambda: acc.gaussian_delta(0.0, 1.0), "^noise_multiplier must be a number > 0"),
    (lambda: acc.gaussian_delta(1.0, -1.0), "^eps must be a number >= 0"),
    # sigma and delta both wrong: sigma is reported (checked before delta)
    (lambda: acc.gaussian_epsilon(0.0, 0.0), "^noise_multiplier must be a number > 0, got 0"),
    (lambda: acc.gaussian_epsilon(1.0, 1.0), "^delta must be a number > 0 and < 1"),
    (lambda: acc.subsampled_gaussian_step(1.0, 0.0, 1e-5),
     "^sample_rate must be a number > 0 and <= 1"),
    # steps * q = 2: delta / (steps q) = 0.5 would be a valid per-step delta
    (lambda: acc.naive_composition_epsilon(1.0, 0.5, 4, 1.0), "^delta must be a number > 0"),
    (lambda: acc.advanced_composition_epsilon(1.0, 0.5, 2, 1.0), "^delta must be a number > 0"),
    (lambda: acc.naive_composition_epsilon(1.0, 0.5, 4, 0.0), "^delta must be a number > 0"),
    (lambda: acc.advanced_composition_epsilon(1.0, 0.5, 2, 0.0), "^delta must be a number > 0"),
    (lambda: acc.audit_epsilon_lower_bound(100, 10, 10, 1e-5, confidence=0.0),
     "^confidence must be a number > 0 and < 1"),
    (lambda: acc.audit_epsilon_lower_bound(100, 10, 10, 1e-5, confidence=1.0),
     "^confidence must be a number > 0 and < 1"),
    (lambda: acc.audit_p_value(0, 0, 0, 1.0, 0.0), "^m must be an integer >= 1"),
    (lambda: acc.audit_p_value(10, 11, 0, 1.0, 0.0), "^r must be an integer >= 0 and <= 10"),
    (lambda: acc.audit_p_value(10, 5, 6, 1.0, 0.0), "^v must be an integer >= 0 and <= 5"),
    (lambda: acc.audit_p_value(10, 5, -1, 1.0, 0.0), "^v must be an integer >= 0"),
    (lambda: acc.audit_p_value(10, -1, 0, 1.0, 0.0), "^r must be an integer >= 0"),
    (lambda: acc.audit_p_value(10, 5, 3, -0.5, 0.0), "^eps must be a number >= 0"),
    (lambda: acc.audit_p_value(10, 5, 3, 1.0, 1.0), "^delta must be a number >= 0 and < 1"),
    (lambda: acc.audit_p_value(10, 5, 3, 1.0, -0.1), "^delta must be a number >= 0 and < 1"),
])
def test_bad_inputs_named_first(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("args", [(10.0, 5, 3, 1.0, 0.0), (10, 5.0, 3, 1.0, 0.0),
                                  (10, 5, 3.0, 1.0, 0.0), (10, 5, 3, "1", 0.0),
                                  (10, 5, 3, 1.0, "0")])
def test_audit_p_value_bad_types(args):
    with pytest.raises(TypeError, match=r"^(m|r|v|eps|delta) must be"):
        acc.audit_p_value(*args)


# ------------------------------------------- the log-space helpers against numpy / scipy directly
@pytest.mark.parametrize(("a", "b"), [(0.3, -1.2), (-1.2, 0.3), (5.0, 5.0), (-700.0, -710.0)])
def test_log_add_and_log_sub(a, b):
    assert acc._log_add(a, b) == pytest.approx(np.logaddexp(a, b), rel=1e-13)
    hi, lo = max(a, b), min(a, b)
    if hi > lo:  # log(e^hi - e^lo) = hi + log(1 - e^(lo - hi))
        want = hi + math.log(1 - math.exp(lo - hi))
        assert acc._log_sub(hi, lo) == pytest.approx(want, rel=1e-12)


def test_log_add_and_log_sub_infinities():
    assert acc._log_add(-math.inf, 1.5) == 1.5
    assert acc._log_add(1.5, -math.inf) == 1.5
    assert acc._log_add(-math.inf, -math.inf) == -math.inf
    assert acc._log_sub(1.5, -math.inf) == 1.5
    assert acc._log_sub(1.5, 1.5) == -math.inf  # e^a - e^a = 0
    assert acc._log_sub(-math.inf, -math.inf) == -math.inf
    with pytest.raises(ValueError, match="^log_sub: the result would be the log of a negative"):
        acc._log_sub(1.0, 1.5)


@pytest.mark.parametrize("x", [-1.5, 0.0, 0.3, 2.0, 6.0])
def test_log_erfc_matches_scipy(x):
    assert acc._log_erfc(x) == pytest.approx(math.log(special.erfc(x)), rel=1e-12, abs=1e-15)


# ----------------------------------------------------------- RDP of the SGM: independent sums
def _rdp_int_ref(q, sigma, alpha):
    """MTZ 2019 Sec. 3.2 summed in plain floats with exact binomials (no log space)."""
    a = sum(math.comb(alpha, k) * (1 - q) ** (alpha - k) * q**k
            * math.exp((k * k - k) / (2 * sigma**2)) for k in range(alpha + 1))
    return math.log(a) / (alpha - 1)


@pytest.mark.parametrize(("q", "sigma"), [(0.01, 1.0), (0.2, 2.5), (0.5, 0.8), (0.07, 4.0)])
def test_rdp_integer_orders_match_plain_binomial_sum(q, sigma):
    orders = [2, 3, 8, 20]
    want = [_rdp_int_ref(q, sigma, a) for a in orders]
    np.testing.assert_allclose(acc.compute_rdp(sigma, q, 1, orders), want, rtol=1e-10)
    # alpha = 2 in closed form: A_2 = 1 + q^2 (e^{1/sigma^2} - 1)
    assert want[0] == pytest.approx(math.log1p(q**2 * math.expm1(1 / sigma**2)), rel=1e-12)


@pytest.mark.parametrize(("q", "sigma"), [(0.02, 1.3), (0.2, 0.9)])
def test_rdp_composes_additively_and_orders_keep_their_place(q, sigma):
    orders = [1.5, 2, 3.25, 9, 40.5, 64]
    one = acc.compute_rdp(sigma, q, 1, orders)
    np.testing.assert_allclose(acc.compute_rdp(sigma, q, 37, orders), 37 * one, rtol=1e-12)
    # each value is that order's, whatever the order of the list
    np.testing.assert_allclose(acc.compute_rdp(sigma, q, 1, orders[::-1]), one[::-1],
                               rtol=1e-12)
    assert np.all(np.diff(one) > 0)  # RDP grows with the order


@pytest.mark.parametrize("alpha", [1.25, 2.5, 5.75, 30.5])
def test_fractional_orders_lie_between_integer_neighbours(alpha):
    # RDP is non-decreasing in alpha: the fractional value lies between its integer neighbours,
    # both computed by the plain binomial sum
    q, sigma = 0.05, 1.2
    got = acc.compute_rdp(sigma, q, 1, [alpha])[0]
    lo_ref = _rdp_int_ref(q, sigma, max(2, math.floor(alpha))) if alpha > 2 else 0.0
    assert lo_ref <= got <= _rdp_int_ref(q, sigma, math.ceil(alpha))


def test_full_batch_at_q_one_exactly_any_order():
    orders = [1.01, 2, 2.5, 1024]
    np.testing.assert_allclose(acc.compute_rdp(0.7, 1, 3, orders),
                               3 * np.array(orders) / (2 * 0.49), rtol=1e-12)


# ------------------------------------------------------------------- RDP -> (epsilon, delta)
def test_rdp_to_epsilon_picks_the_best_order_by_hand():
    rdp, orders, delta = [0.05, 0.4, 3.0], [2.0, 8.0, 32.0], 1e-5
    classic = [r + math.log(1 / delta) / (a - 1) for r, a in zip(rdp, orders, strict=True)]
    tight = [r + math.log((a - 1) / a) - (math.log(delta) + math.log(a)) / (a - 1)
             for r, a in zip(rdp, orders, strict=True)]
    for conversion, want in (("classic", classic), ("tight", tight)):
        eps, order = acc.rdp_to_epsilon(rdp, orders, delta, conversion)
        assert eps == pytest.approx(min(want), rel=1e-12)
        assert order == orders[int(np.argmin(want))] == 8.0
    assert acc.rdp_to_epsilon(rdp, orders, delta)[0] == pytest.approx(min(tight), rel=1e-12)


def test_rdp_to_epsilon_small_and_clipped_values():
    # eps below 1 stays below 1; a negative tight value is clipped at 0
    eps, _ = acc.rdp_to_epsilon([0.01], [50.0], 0.1, "classic")
    assert eps == pytest.approx(0.01 + math.log(10) / 49, rel=1e-12)
    assert eps < 1
    eps, order = acc.rdp_to_epsilon([0.0, 0.0], [2.0, 3.0], 0.5, "tight")
    assert math.log(0.5) - (math.log(0.5) + math.log(2)) < 0  # the raw value at order 2
    assert (eps, order) == (0.0, 2.0)


def test_rdp_to_epsilon_skips_infinite_orders():
    # large orders overflow to inf RDP: allowed, and never chosen
    eps, order = acc.rdp_to_epsilon([math.inf, 0.5, math.inf], [2.0, 10.0, 64.0], 1e-5,
                                    "classic")
    assert order == 10.0
    assert eps == pytest.approx(0.5 + math.log(1e5) / 9, rel=1e-12)


def test_epsilon_uses_its_conversion_and_orders():
    orders = [2, 5, 10, 20, 100]
    rdp = acc.compute_rdp(1.0, 0.01, 300, orders)
    for conversion in acc.CONVERSIONS:
        want, _ = acc.rdp_to_epsilon(rdp, orders, 1e-5, conversion)
        got = acc.epsilon(1.0, 0.01, 300, 1e-5, conversion=conversion, orders=orders)
        assert got == pytest.approx(want, rel=1e-12)
    assert acc.epsilon(1.0, 0.01, 300, 1e-5, orders=orders) == pytest.approx(2.39, abs=0.005)


def test_noise_multiplier_for_passes_conversion_and_orders():
    orders = [2, 5, 10, 20, 100]
    for conversion in acc.CONVERSIONS:
        sigma = acc.noise_multiplier_for(2.0, 0.01, 300, 1e-5, conversion=conversion,
                                         orders=orders, tol=1e-5)
        kw = {"conversion": conversion, "orders": orders}
        assert acc.epsilon(sigma, 0.01, 300, 1e-5, **kw) <= 2.0
        assert acc.epsilon(sigma - 1e-4, 0.01, 300, 1e-5, **kw) > 2.0


def test_noise_multiplier_for_small_sigma_and_impossible_target():
    sigma = acc.noise_multiplier_for(30.0, 1.0, 1, 1e-5, tol=1e-6)  # below 1: a weak guarantee
    assert 0.01 < sigma < 1
    assert acc.epsilon(sigma, 1.0, 1, 1e-5) <= 30.0 < acc.epsilon(sigma - 1e-5, 1.0, 1, 1e-5)
    with pytest.raises(ValueError, match=r"^target_epsilon=0\.001 needs a noise multiplier above"):
        acc.noise_multiplier_for(1e-3, 1.0, 1, 1e-5)


# ------------------------------------------------ argument names from the start of the message
@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    ({"noise_multiplier": 0.0}, ValueError, "^noise_multiplier must be a number > 0, got 0"),
    ({"noise_multiplier": "1"}, TypeError, "^noise_multiplier must be a real number"),
    ({"sample_rate": 0.0}, ValueError, "^sample_rate must be a number > 0 and <= 1, got 0"),
    ({"sample_rate": "0.1"}, TypeError, "^sample_rate must be a real number"),
    ({"steps": 0}, ValueError, "^steps must be an integer >= 1, got 0"),
    ({"steps": 2.0}, TypeError, "^steps must be an integer"),
    ({"orders": [1.0, 2.0]}, ValueError, "^orders must hold Renyi orders > 1, got minimum 1"),
    ({"orders": [[2.0, 3.0]]}, ValueError, "^orders must be 1-D"),
])
def test_compute_rdp_bad_inputs_named_first(kwargs, exc, match):
    args = {"noise_multiplier": 1.0, "sample_rate": 0.01, "steps": 10, "orders": [2.0]} | kwargs
    with pytest.raises(exc, match=match):
        acc.compute_rdp(**args)


@pytest.mark.parametrize(("args", "match"), [
    (([0.1, 0.2], [2.0], 1e-5), "^rdp and orders must have the same length, got 2 and 1"),
    (([-0.1], [2.0], 1e-5), "^rdp must hold values >= 0"),
    (([[0.1]], [2.0], 1e-5), "^rdp must be 1-D"),
    (([0.1], [1.0], 1e-5), "^orders must hold Renyi orders > 1"),
    (([0.1], [2.0], 0.0), "^delta must be a number > 0 and < 1"),
    (([0.1], [2.0], 1.0), "^delta must be a number > 0 and < 1"),
    (([0.1], [2.0], 1e-5, "exact"), "^conversion must be one of"),
])
def test_rdp_to_epsilon_bad_inputs_named_first(args, match):
    with pytest.raises(ValueError, match=match):
        acc.rdp_to_epsilon(*args)
