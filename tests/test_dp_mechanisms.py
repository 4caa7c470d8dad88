"""Tests of helpers.dp_mechanisms: the Laplace sampler, the noise SIZE of every bounded query
against the closed-form Laplace distribution (scipy.stats), missing values, the closed-form
exceed probability, the error bound, composition, the privacy budget, and every bad input.

Statistical tests use fixed seeds, one per parameter set. A Kolmogorov-Smirnov test passes when
its p-value is above 1e-3 (a correct sampler fails it with probability 0.001 per seed) and the
same draws are shown to REJECT the plausible wrong distribution (wrong sensitivity, swapped
epsilons, wrong location) with p < 1e-6, so each test has the power to catch that bug.
"""

import math
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from helpers import dp_mechanisms as dp

KS_PASS = 1e-3  # correct distribution: p-value must exceed this
KS_REJECT = 1e-6  # the planted-bug distribution: p-value must fall below this


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def ks_p(draws, loc, scale):
    return stats.kstest(draws, stats.laplace(loc=loc, scale=scale).cdf).pvalue


def test_module_does_not_import_torch():
    code = "import sys, helpers.dp_mechanisms; print('torch' in sys.modules)"
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- Laplace sampler
def test_laplace_scale_formula():
    assert dp.laplace_scale(1.0, 0.5) == 2.0
    assert dp.laplace_scale(100_000, 1) == 100_000.0
    assert dp.laplace_scale(3.0, 4.0) == 0.75
    assert dp.laplace_scale(0, 1) == 0.0


@pytest.mark.parametrize(("sensitivity", "epsilon", "seed"),
                         [(1.0, 1.0, 2024), (50_000.0, 0.1, 2025), (3.0, 2.0, 2026)])
def test_laplace_mechanism_ks_against_scipy(sensitivity, epsilon, seed):
    draws = dp.laplace_mechanism(10.0, sensitivity, epsilon, seed, size=20_000)
    b = sensitivity / epsilon
    assert ks_p(draws, 10.0, b) > KS_PASS
    assert ks_p(draws, 10.0, 2 * b) < KS_REJECT  # the same draws are not Laplace(2b)
    assert ks_p(draws, 10.0, b / 1.5) < KS_REJECT
    assert ks_p(draws, 10.0 + b / 2, b) < KS_REJECT  # nor shifted by half a scale


def test_laplace_mechanism_moments(rng):
    draws = dp.laplace_mechanism(0.0, 2.0, 0.5, rng, size=200_000)  # b = 4
    # mean within 4 standard errors sqrt(2 b^2 / N); variance 2 b^2 = 32 within 3%
    # (se of the sample variance of Laplace: sqrt((mu4 - sigma^4)/N) = sqrt(20)*16/sqrt(N) = 0.5%)
    assert abs(draws.mean()) < 4 * math.sqrt(32 / 200_000)
    assert draws.var() == pytest.approx(32.0, rel=0.03)
    assert np.abs(draws).mean() == pytest.approx(4.0, rel=0.02)  # E|Z| = b; se 0.22%


def test_laplace_vector_query_independent_draws():
    draws = dp.laplace_mechanism(np.array([[0.0, 100.0]] * 20_000), 2.0, 0.5, seed=31)
    assert draws.shape == (20_000, 2)
    assert ks_p(draws[:, 0], 0.0, 4.0) > KS_PASS
    assert ks_p(draws[:, 1], 100.0, 4.0) > KS_PASS
    assert abs(np.corrcoef(draws[:, 0], draws[:, 1])[0, 1]) < 4 / math.sqrt(20_000)


def test_laplace_mechanism_shapes_and_reproducibility():
    a = dp.laplace_mechanism(5.0, 1.0, 1.0, 7)
    b = dp.laplace_mechanism(5.0, 1.0, 1.0, np.random.default_rng(7))
    assert isinstance(a, float)
    assert a == b
    assert dp.laplace_mechanism(5.0, 1.0, 1.0, 8) != a
    vec = dp.laplace_mechanism([1.0, 2.0, 3.0], 1.0, 1.0, 0)
    assert vec.shape == (3,)
    mat = dp.laplace_mechanism(np.zeros((4, 5)), 1.0, 1.0, 0)
    assert mat.shape == (4, 5)
    assert np.unique(mat).size == 20
    many = dp.laplace_mechanism(5.0, 1.0, 1.0, 0, size=1000)
    assert many.shape == (1000,)
    assert dp.laplace_mechanism(5.0, 0.0, 1.0, 0) == 5.0  # zero sensitivity: no noise at all
    np.testing.assert_array_equal(dp.laplace_mechanism(5.0, 0.0, 1.0, 0, size=3), [5.0] * 3)
    np.testing.assert_array_equal(dp.laplace_mechanism([1.0, 2.0], 0.0, 1.0, 0), [1.0, 2.0])


def test_seed_conventions():
    gen = np.random.default_rng(3)
    first = dp.laplace_mechanism(0.0, 1.0, 1.0, gen)
    assert dp.laplace_mechanism(0.0, 1.0, 1.0, gen) != first  # a Generator advances
    np.random.seed(11)  # noqa: NPY002 - the global seed is what seed=None uses
    x = dp.laplace_mechanism(0.0, 1.0, 1.0)  # None: NumPy's global seed (runtime.setup)
    np.random.seed(11)  # noqa: NPY002 - the global seed is what seed=None uses
    assert dp.laplace_mechanism(0.0, 1.0, 1.0, None) == x


# --------------------------------------------------------------------------- error bound
@pytest.mark.parametrize(("scale", "alpha"), [(1.0, 0.05), (200_000.0, 0.01), (2.5, 0.5)])
def test_laplace_error_bound_matches_scipy(scale, alpha):
    # P(|Z| > t) = alpha  <=>  t = isf(alpha / 2) of the Laplace distribution
    assert dp.laplace_error_bound(scale, alpha) == pytest.approx(
        stats.laplace(scale=scale).isf(alpha / 2), rel=1e-12)


def test_laplace_error_bound_coverage():
    n, alpha, b = 200_000, 0.05, 3.0
    z = dp.laplace_mechanism(0.0, 3.0, 1.0, 41, size=n)
    miss = np.mean(np.abs(z) > dp.laplace_error_bound(b, alpha))
    assert abs(miss - alpha) < 4 * math.sqrt(alpha * (1 - alpha) / n)  # 4 binomial se
    assert dp.laplace_error_bound(0.0, 0.05) == 0.0
    assert dp.laplace_error_bound(2.0) == pytest.approx(2 * math.log(20))  # default alpha 0.05


# --------------------------------------------------------------------------- bounded queries
def test_clipped_sum_and_missing_values():
    x = [1.0, 5.0, -3.0, 100.0, np.nan]
    with pytest.raises(ValueError, match="missing"):
        dp.clipped_sum(x, 0, 10)
    assert dp.clipped_sum(x, 0, 10, missing="drop") == 1 + 5 + 0 + 10
    assert dp.clipped_sum(x, 2, 10, missing="drop") == 2 + 5 + 2 + 10  # lower clip too
    present, n_missing = dp.split_missing(pd.Series([1.0, None, 2.0, np.nan]), missing="drop")
    assert n_missing == 2
    assert present.tolist() == [1.0, 2.0]
    assert dp.split_missing([3, 4])[1] == 0  # integers accepted, nothing missing
    # pandas nullable floats with pd.NA are handled too (NA is missing, never zero)
    s = pd.Series([1.0, pd.NA, 3.0], dtype="Float64")
    assert dp.clipped_sum(s, 0, 10, missing="drop") == 4.0
    assert dp.count_above(s, 2.0, missing="drop") == 1
    assert dp.count_above([1.0, 2.0, 3.0], 2.0) == 1  # strictly above


def test_sum_sensitivity_add_remove():
    assert dp.sum_sensitivity(-50, 20) == 50
    assert dp.sum_sensitivity(10, 60) == 60  # not upper - lower = 50
    assert dp.sum_sensitivity(-70, -20) == 70
    assert dp.sum_sensitivity(0, 0) == 0


# values chosen so that both clip ends bite: clipped to [-50, 20] they sum to -20, raw to -40
X_SUM = np.array([-80.0, -10.0, 5.0, 15.0, 30.0, np.nan])


def test_noisy_sum_noise_is_laplace_with_add_remove_scale():
    eps = 0.7
    rel = dp.noisy_sum(X_SUM, -50, 20, eps, 101, missing="drop", size=20_000)
    b = 50 / eps  # add/remove: max(|L|, |U|) / eps
    assert rel.sensitivity == 50
    assert rel.scale == pytest.approx(b)
    assert rel.epsilon == eps
    assert rel.n_missing_dropped == 1
    assert rel.details == {"lower": -50.0, "upper": 20.0}
    assert ks_p(rel.value, -20.0, b) > KS_PASS
    assert ks_p(rel.value, -20.0, 70 / eps) < KS_REJECT  # (U - L) / eps: replace-one scale
    assert ks_p(rel.value, -20.0, 20 / eps) < KS_REJECT  # U / eps
    assert ks_p(rel.value, -40.0, b) < KS_REJECT  # no clipping
    one = dp.noisy_sum(X_SUM, -50, 20, eps, 101, missing="drop")
    assert isinstance(one.value, float)


def test_noisy_mean_public_n_noise_is_laplace_with_replace_one_scale():
    x = np.array([10.0, 50.0, 90.0, 130.0, np.nan])  # clipped to [20, 100]: mean 65
    eps = 0.6
    rel = dp.noisy_mean(x, 20, 100, eps, 202, n=4, missing="drop", size=20_000)
    b = (100 - 20) / 4 / eps
    assert rel.sensitivity == pytest.approx(20.0)
    assert rel.scale == pytest.approx(b)
    assert rel.n_missing_dropped == 1
    assert rel.details["n"] == 4
    assert ks_p(rel.value, 65.0, b) > KS_PASS
    assert ks_p(rel.value, 65.0, 100 / 4 / eps) < KS_REJECT  # U / n instead of (U - L) / n
    assert ks_p(rel.value, 70.0, b) < KS_REJECT  # unclipped mean
    with pytest.raises(ValueError, match="n must equal"):
        dp.noisy_mean(x, 20, 100, eps, 0, n=5, missing="drop")


def test_noisy_count_counts_non_missing_records():
    x = [1.0, np.nan, 3.0, 0.0, np.nan, 7.0]  # 4 people with a value, one of them 0
    eps = 0.4
    rel = dp.noisy_count(x, eps, 303, missing="drop", size=20_000)
    assert rel.sensitivity == 1.0
    assert rel.scale == pytest.approx(2.5)
    assert rel.epsilon == eps
    assert rel.n_missing_dropped == 2
    assert ks_p(rel.value, 4.0, 2.5) > KS_PASS
    assert ks_p(rel.value, 6.0, 2.5) < KS_REJECT  # missing counted
    assert ks_p(rel.value, 3.0, 2.5) < KS_REJECT  # zeros not counted
    assert ks_p(rel.value, 4.0, 5.0) < KS_REJECT  # sensitivity 2
    assert ks_p(rel.value, 4.0, 0.4) < KS_REJECT  # scale eps instead of 1 / eps
    one = dp.noisy_count([5.0] * 10, 1.0, 0)
    assert isinstance(one.value, float)
    assert one.value != 10.0
    with pytest.raises(ValueError, match="missing"):
        dp.noisy_count(x, eps, 0)


def test_noisy_mean_unknown_n_two_releases_with_their_own_epsilons():
    x = np.concatenate([np.full(30, 5.0), np.full(15, 40.0), np.full(5, 90.0)])
    s_true, n_true = 30 * 10 + 15 * 40 + 5 * 60, 50  # clipped to [10, 60]
    eps_c, eps_s = 0.3, 1.2
    rel = dp.noisy_mean_unknown_n(x, 10, 60, eps_c, eps_s, 404, size=20_000)
    s, c = rel.details["noisy_sum"], rel.details["noisy_count"]
    assert rel.epsilon == pytest.approx(1.5)
    assert rel.sensitivity == 60
    assert rel.scale == pytest.approx(60 / eps_s)
    assert ks_p(s, s_true, 60 / eps_s) > KS_PASS
    assert ks_p(c, n_true, 1 / eps_c) > KS_PASS
    assert ks_p(s, s_true, 60 / eps_c) < KS_REJECT  # swapped epsilons
    assert ks_p(c, n_true, 1 / eps_s) < KS_REJECT
    assert ks_p(s, s_true, 50 / eps_s) < KS_REJECT  # (U - L) instead of max(|L|, |U|)
    # independent noise (one generator), and the mean is post-processing of the two releases
    assert abs(np.corrcoef(s, c)[0, 1]) < 4 / math.sqrt(20_000)
    np.testing.assert_array_equal(rel.value, np.clip(s / np.maximum(c, 1.0), 10, 60))
    # both draws come from the one generator of the seed, the sum's first: NumPy's own
    # default_rng(404) drawing Laplace(60 / eps_s) then Laplace(1 / eps_c) reproduces them
    ref = np.random.default_rng(404)
    np.testing.assert_allclose(s, s_true + ref.laplace(0.0, 60 / eps_s, 20_000), rtol=1e-12)
    np.testing.assert_allclose(c, n_true + ref.laplace(0.0, 1 / eps_c, 20_000), rtol=1e-12)
    one = dp.noisy_mean_unknown_n(x, 10, 60, eps_c, eps_s, 0)
    assert isinstance(one.value, float)
    assert 10 <= one.value <= 60
    assert one.value == np.clip(one.details["noisy_sum"] / max(one.details["noisy_count"], 1),
                                10, 60)


def test_noisy_mean_unknown_n_floor_and_clip():
    # tiny n and a huge noise: the count floor of 1 and the final clip keep the mean in [L, U]
    rel = dp.noisy_mean_unknown_n([30.0, 40.0], 0, 100, 0.01, 0.01, 5, size=2_000)
    c = rel.details["noisy_count"]
    assert (c < 1).any()
    assert np.all((rel.value >= 0) & (rel.value <= 100))
    low = c < 1
    np.testing.assert_array_equal(rel.value[low], np.clip(rel.details["noisy_sum"][low], 0, 100))


def test_dp_histogram_noise_is_laplace_one_over_epsilon():
    x = np.array([5.0] * 40 + [60.0] * 25 + [150.0] * 10 + [500.0] * 3)
    cand = [50, 100, 200]
    true = np.array([40, 25, 10, 3])  # bins (-inf,50], (50,100], (100,200], (200,inf)
    eps, gen = 0.5, np.random.default_rng(505)
    resid = np.concatenate([dp.dp_clip_bound(x, cand, eps, gen)[1]["noisy_count"].to_numpy()
                            - true for _ in range(1_000)])
    assert ks_p(resid, 0.0, 1 / eps) > KS_PASS
    assert ks_p(resid, 0.0, 2 / eps) < KS_REJECT  # replace-one sensitivity 2 under add/remove
    assert ks_p(resid, 0.0, eps) < KS_REJECT


# --------------------------------------------------------------------------- exceed probability
def test_prob_exceeds_matches_scipy_sf_on_grid():
    counts = np.array([0, 5, 50, 100, 1000])
    thresholds = np.array([0, 3, 50, 60, 99.5, 1200])
    for eps in (0.01, 0.1, 0.5, 1.0, 2.0):
        for sens in (1.0, 2.0):
            c, t = np.meshgrid(counts, thresholds)
            got = dp.prob_noisy_count_exceeds(c, t, eps, sensitivity=sens)
            want = stats.laplace.sf(t - c, scale=sens / eps)
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize(("c", "t", "eps", "seed"),
                         [(100, 98, 0.5, 91), (100, 103, 1.0, 92), (10, 10, 0.1, 93),
                          (0, -2, 2.0, 94)])
def test_prob_exceeds_matches_monte_carlo(c, t, eps, seed):
    n = 400_000
    p_hat, se = dp.monte_carlo_exceeds(c, t, eps, seed, n_draws=n, chunk=150_000)
    p = stats.laplace.sf(t - c, scale=1 / eps)  # independent reference: scipy
    assert abs(p_hat - p) < 4 * math.sqrt(p * (1 - p) / n)  # 4 binomial standard errors
    assert se == pytest.approx(math.sqrt(p_hat * (1 - p_hat) / n), rel=1e-12)  # plug-in se


def test_monte_carlo_exceeds_chunks_and_sensitivity():
    a = dp.monte_carlo_exceeds(5, 7, 0.5, 8, n_draws=10_001, chunk=1_000)
    b = dp.monte_carlo_exceeds(5, 7, 0.5, 8, n_draws=10_001, chunk=20_000)
    assert a == b  # chunking does not change the draws
    n = 200_000
    p_hat, _ = dp.monte_carlo_exceeds(5, 9, 0.5, 9, n_draws=n, sensitivity=2.0)
    p = 0.5 * math.exp(-4 * 0.5 / 2.0)
    assert abs(p_hat - p) < 4 * math.sqrt(p * (1 - p) / n)
    assert dp.monte_carlo_exceeds(5, 4, 1.0, 0, n_draws=10, sensitivity=0.0) == (1.0, 0.0)
    # no noise and t == c: the count does not EXCEED the threshold (strict >, like the closed form)
    assert dp.monte_carlo_exceeds(5, 5, 1.0, 0, n_draws=10, sensitivity=0.0) == (0.0, 0.0)


def test_prob_exceeds_limits_and_symmetry():
    assert dp.prob_noisy_count_exceeds(100, 100, 1.0) == 0.5
    assert dp.prob_noisy_count_exceeds(100, 103, 1.0) == pytest.approx(0.5 * math.exp(-3))
    assert dp.prob_noisy_count_exceeds(100, 97, 0.5) == pytest.approx(1 - 0.5 * math.exp(-1.5))
    assert dp.prob_noisy_count_exceeds(100, 0, 1.0) == pytest.approx(1.0, abs=1e-40)
    assert dp.prob_noisy_count_exceeds(100, 10_000, 1.0) < 1e-300
    assert dp.prob_noisy_count_exceeds(100, 130, 1e-9) == pytest.approx(0.5, abs=1e-6)
    assert dp.prob_noisy_count_exceeds(100, 70, 1e-9) == pytest.approx(0.5, abs=1e-6)
    gaps = np.linspace(-20, 20, 81)
    p_up = dp.prob_noisy_count_exceeds(50, 50 + gaps, 0.3)
    p_down = dp.prob_noisy_count_exceeds(50, 50 - gaps, 0.3)
    np.testing.assert_allclose(p_up + p_down, 1.0, rtol=1e-14)
    assert np.all(np.diff(p_up) < 0)  # decreasing in the threshold
    eps = np.array([0.01, 0.1, 1.0])
    assert np.all(np.diff(dp.prob_noisy_count_exceeds(50, 60, eps)) < 0)
    assert np.all(np.diff(dp.prob_noisy_count_exceeds(50, 40, eps)) > 0)
    assert dp.prob_noisy_count_exceeds(5, 4, 1.0, sensitivity=0) == 1.0  # no noise
    assert dp.prob_noisy_count_exceeds(5, 5, 1.0, sensitivity=0) == 0.0
    assert isinstance(dp.prob_noisy_count_exceeds(5, 4, 1.0), float)
    assert dp.prob_noisy_count_exceeds([1, 2], 3, [1.0, 2.0]).shape == (2,)


def test_exceed_table_against_scipy_and_independent_se():
    n = 200_000
    tab = dp.exceed_table({"a": 10, "b": 200}, [-3, 0, 3, 50], [0.1, 1.0], 3, n)
    assert len(tab) == 16
    assert tab["group"].tolist() == ["a"] * 8 + ["b"] * 8
    assert tab["gap"].tolist()[:8] == [-3, -3, 0, 0, 3, 3, 50, 50]
    assert tab["epsilon"].tolist()[:4] == [0.1, 1.0, 0.1, 1.0]
    p = stats.laplace.sf(tab["gap"], scale=1 / tab["epsilon"])  # the reference, not the helper
    np.testing.assert_allclose(tab["closed_form"], p, rtol=1e-12)
    np.testing.assert_allclose(tab["se"], np.sqrt(p * (1 - p) / n), rtol=1e-12)
    assert (np.abs(tab["monte_carlo"] - p) < 4 * np.sqrt(p * (1 - p) / n)).all()  # 4 se
    np.testing.assert_allclose(tab["z"], (tab["monte_carlo"] - p) / np.sqrt(p * (1 - p) / n))
    np.testing.assert_allclose(tab["abs_diff"], np.abs(tab["monte_carlo"] - p))
    assert (tab["threshold"] == tab["true_count"] + tab["gap"]).all()


# --------------------------------------------------------------------------- composition
def test_advanced_composition_hand_computed():
    # eps = 0.1, k = 100, delta' = 1e-5: sqrt(200 ln 1e5) * 0.1 + 100 * 0.1 * (e^0.1 - 1)
    #   = 47.98525 * 0.1 + 10 * 0.1051709 = 4.798525 + 1.051709 = 5.850234
    assert dp.advanced_composition(0.1, 100, 1e-5) == pytest.approx(5.850234, rel=1e-6)
    # k = 1, eps = 1, delta' = e^-2: sqrt(2 * 2) + (e - 1) = 2 + 1.718282
    assert dp.advanced_composition(1.0, 1, math.exp(-2)) == pytest.approx(3.718282, rel=1e-6)
    ks = [1, 10, 100, 1_000, 10_000]
    adv = [dp.advanced_composition(0.01, k, 1e-6) for k in ks]
    assert np.all(np.diff(adv) > 0)
    assert adv[0] > 0.01 * 1
    assert adv[-1] < 0.01 * 10_000
    # grows like sqrt(k) while k eps (e^eps - 1) is small: 100x the queries, ~10x the loss
    assert 9 < dp.advanced_composition(1e-4, 10**6, 1e-6) / dp.advanced_composition(
        1e-4, 10**4, 1e-6) < 11


# --------------------------------------------------------------------------- budget
def test_budget_exact_spend_and_ledger():
    budget = dp.PrivacyBudget(1.0)
    assert budget.spend(0.3, "total") == pytest.approx(0.7)
    assert budget.spend(0.7, "mean") == 0.0
    assert budget.remaining == 0.0
    assert budget.spent == pytest.approx(1.0)
    led = budget.ledger
    assert list(led.columns) == ["label", "epsilon", "cumulative", "remaining"]
    assert led["label"].tolist() == ["total", "mean"]
    np.testing.assert_allclose(led["cumulative"], [0.3, 1.0])
    np.testing.assert_allclose(led["remaining"], [0.7, 0.0])
    with pytest.raises(dp.BudgetExceededError, match="not answered"):
        budget.spend(1e-6, "one more")
    assert len(budget.ledger) == 2  # refused query not recorded
    assert repr(budget) == ("PrivacyBudget(total_epsilon=1, spent=1, remaining=0, queries=2)")


def test_budget_with_zero_tolerance_may_be_spent_exactly():
    """With rel_tol = 0 a spend that reaches the total exactly (0.25 + 0.75 = 1 in binary
    floating point, no rounding) is allowed; one more of 2**-20 is not."""
    budget = dp.PrivacyBudget(1.0, rel_tol=0.0)
    assert budget.can_spend(1.0)
    assert budget.spend(0.25, "a") == 0.75
    assert budget.can_spend(0.75)
    assert budget.spend(0.75, "b") == 0.0
    assert not budget.can_spend(2.0**-20)


def test_budget_floating_point_sums():
    budget = dp.PrivacyBudget(1.0)
    for i in range(10):
        budget.spend(0.1, f"q{i}")  # 0.1 * 10 != 1.0 in naive float addition
    assert budget.remaining == 0.0
    assert not budget.can_spend(1e-6)
    b3 = dp.PrivacyBudget(0.3)
    b3.spend(0.1, "a")
    assert b3.can_spend(0.2)
    assert not b3.can_spend(0.21)
    b3.spend(0.2, "b")  # 0.1 + 0.2 = 0.30000000000000004
    assert b3.remaining == 0.0
    with pytest.raises(dp.BudgetExceededError):
        b3.spend(0.01, "c")
    b9 = dp.PrivacyBudget(0.9)
    b9.spend(0.2, "a")
    b9.spend(0.7, "b")  # 0.9 - fsum([0.2, 0.7]) = 1.1e-16 > 0: a rounding error, reported as 0
    assert b9.remaining == 0.0
    assert b9.ledger["remaining"].iloc[-1] == 0.0
    tol = dp.PrivacyBudget(1.0)  # rel_tol 1e-9: a rounding error passes, anything more does not
    assert tol.can_spend(1.0 + 5e-10)
    assert not tol.can_spend(1.0 + 5e-9)
    strict = dp.PrivacyBudget(1.0, rel_tol=0.0)
    strict.spend(0.5, "a")
    assert strict.remaining == 0.5
    assert not strict.can_spend(0.5 + 1e-12)


def test_budget_refusal_runs_nothing_and_rolls_back(rng):
    budget = dp.PrivacyBudget(0.5)
    calls = []

    def mech(value, *, epsilon):
        calls.append(epsilon)
        return dp.laplace_mechanism(value, 1.0, epsilon, rng)

    out = budget.answer("count", 0.4, mech, 10.0)
    assert isinstance(out, float)
    assert calls == [0.4]
    with pytest.raises(dp.BudgetExceededError):
        budget.answer("count again", 0.4, mech, 10.0)
    assert calls == [0.4]  # the refused mechanism never ran
    with pytest.raises(ValueError, match="value"):
        budget.answer("bad", 0.1, mech, float("nan"))
    assert budget.spent == pytest.approx(0.4)  # failed release rolled back
    assert budget.ledger["label"].tolist() == ["count"]


# --------------------------------------------------------------------------- empirical check
def test_empirical_log_ratio_bounded_for_correct_and_broken_for_wrong_sensitivity():
    eps, n = 1.0, 400_000
    a = dp.laplace_mechanism(10.0, 1.0, eps, 51, size=n)
    b = dp.laplace_mechanism(9.0, 1.0, eps, 52, size=n)
    tab = dp.empirical_log_ratio(a, b, np.linspace(0, 20, 41), min_count=2000)
    assert len(tab) > 5
    assert np.all(np.abs(tab["log_ratio"]) <= eps + 4 * tab["se"])  # 4 standard errors
    # in the right tail the log ratio is exactly eps * (10 - 9) = 1 (bins above both centres)
    right = tab[tab["left"] >= 10.0]
    assert np.all(np.abs(right["log_ratio"] - 1.0) < 4 * right["se"])
    c = dp.laplace_mechanism(5.0, 1.0, eps, 53, size=n)  # real change 5, claimed 1
    tab2 = dp.empirical_log_ratio(a, c, np.linspace(0, 20, 41), min_count=2000)
    assert tab2["log_ratio"].abs().max() > eps + 10 * tab2["se"].max()


def test_empirical_log_ratio_hand_case():
    tab = dp.empirical_log_ratio([0.5, 0.5, 1.5, 1.5], [0.5, 1.5, 1.5, 1.5], [0, 1, 2],
                                 min_count=1)
    np.testing.assert_allclose(tab["log_ratio"], [math.log(2), math.log(2 / 3)])
    np.testing.assert_allclose(tab["se"], [math.sqrt(1 / 2 - 1 / 4 + 1 - 1 / 4),
                                           math.sqrt(1 / 2 - 1 / 4 + 1 / 3 - 1 / 4)])
    assert tab["count_a"].tolist() == [2, 2]
    assert tab["count_b"].tolist() == [1, 3]
    assert len(dp.empirical_log_ratio([0.5], [0.5, 1.5], [0, 1, 2], min_count=1)) == 1


def test_empirical_log_ratio_default_min_count_is_1000():
    """A bin with exactly 1,000 draws in both samples is kept by default, one with 999 is not."""
    a = np.r_[np.full(1000, 0.5), np.full(999, 1.5)]
    tab = dp.empirical_log_ratio(a, a, [0, 1, 2])
    assert tab["count_a"].tolist() == [1000]
    assert tab["left"].tolist() == [0.0]


def test_clipping_tradeoff():
    x = np.array([1.0, 2.0, 10.0, np.nan])
    tab = dp.clipping_tradeoff(x, [1.0, 5.0, 20.0], 0.5, missing="drop")
    assert tab["bias"].tolist() == [10.0, 5.0, 0.0]
    assert tab["n_clipped"].tolist() == [2, 1, 0]
    np.testing.assert_allclose(tab["noise_sd"], np.sqrt(2) * tab["B"] / 0.5)
    np.testing.assert_allclose(tab["rmse"], np.hypot(tab["bias"], tab["noise_sd"]))


# --------------------------------------------------------------------------- notebook helpers
def test_dp_clip_bound_picks_quantile_with_little_noise():
    x = np.concatenate([np.full(9_890, 10.0), np.full(110, 150.0)])  # 1.1% above 50 and 100
    bound, table = dp.dp_clip_bound(x, [50, 100, 200, 400], 50.0, 0)
    assert bound == 200  # smallest candidate with <= 1% above it (noise scale 0.02)
    np.testing.assert_allclose(table["noisy_count"], [9_890, 0, 110, 0, 0], atol=0.5)
    bound95, _ = dp.dp_clip_bound(x, [50, 100, 200, 400], 50.0, 0, 0.95)
    assert bound95 == 50
    assert table["bin"].tolist() == ["<= 50", "(50, 100]", "(100, 200]", "(200, 400]", "> 400"]
    big, _ = dp.dp_clip_bound(np.full(1000, 1e6), [1, 2], 50.0, 0)
    assert big == 2  # nothing qualifies (everyone above the grid): the largest candidate
    edge, tab_edge = dp.dp_clip_bound(np.array([50.0] * 10), [50, 100], 50.0, 0)
    assert edge == 50
    assert tab_edge["noisy_count"].iloc[0] == pytest.approx(10, abs=0.5)


def test_optimal_split_minimises_objective():
    for a1, a2 in [(1.0, 1.0), (8.0, 1.0), (0.01, 3.0)]:
        share = dp.optimal_split(a1, a2)
        s = np.linspace(0.001, 0.999, 99_901)
        g = a1 / s**2 + a2 / (1 - s) ** 2
        assert share == pytest.approx(s[np.argmin(g)], abs=2e-5)
    assert dp.optimal_split(8.0, 1.0) == pytest.approx(2 / 3)
    assert dp.optimal_split(1.0, 27.0) == pytest.approx(1 / 4)


def test_noise_table_matches_theory(rng):
    tab, draws = dp.noise_table(1000.0, 10.0, [0.5, 2.0], rng, n_draws=50_000)
    assert list(draws) == [0.5, 2.0]
    assert draws[0.5].shape == (50_000,)
    np.testing.assert_allclose(tab["scale"], [20.0, 5.0])
    np.testing.assert_allclose(tab["sd_theory"], np.sqrt(2) * np.array([20.0, 5.0]))
    np.testing.assert_allclose(tab["rel_error_theory"], [0.02, 0.005])
    # sd of 50,000 Laplace draws: relative se sqrt(5/4 / N) = 0.5%; 3% is 6 se
    np.testing.assert_allclose(tab["sd"], np.sqrt(2) * np.array([20.0, 5.0]), rtol=0.03)
    np.testing.assert_allclose(tab["mean_abs_rel_error"], [0.02, 0.005], rtol=0.03)
    assert ks_p(draws[0.5], 1000.0, 20.0) > KS_PASS
    assert ks_p(draws[2.0], 1000.0, 5.0) > KS_PASS
    np.testing.assert_allclose(tab["mean"], [draws[0.5].mean(), draws[2.0].mean()])
    np.testing.assert_allclose(tab["sd"], [draws[0.5].std(ddof=1), draws[2.0].std(ddof=1)],
                               rtol=1e-12)  # the sample sd with Bessel's correction
    assert (tab["true"] == 1000.0).all()


# --------------------------------------------------------------------------- bad inputs
BAD_EPSILONS = [(0, ValueError), (-1, ValueError), (float("nan"), ValueError),
                (float("inf"), ValueError), ("1", TypeError), (True, TypeError), (None, TypeError)]


@pytest.mark.parametrize(("eps", "exc"), BAD_EPSILONS)
@pytest.mark.parametrize(("call", "name"), [
    (lambda e: dp.laplace_scale(1.0, e), "epsilon"),
    (lambda e: dp.laplace_mechanism(1.0, 1.0, e, 0), "epsilon"),
    (lambda e: dp.noisy_sum([1.0], 0, 1, e, 0), "epsilon"),
    (lambda e: dp.noisy_mean([1.0], 0, 1, e, 0, n=1), "epsilon"),
    (lambda e: dp.noisy_count([1.0], e, 0), "epsilon"),
    (lambda e: dp.noisy_mean_unknown_n([1.0], 0, 1, e, 1.0, 0), "epsilon_count"),
    (lambda e: dp.noisy_mean_unknown_n([1.0], 0, 1, 1.0, e, 0), "epsilon_sum"),
    (lambda e: dp.prob_noisy_count_exceeds(1, 1, e), "epsilon"),
    (lambda e: dp.monte_carlo_exceeds(1, 1, e, 0, n_draws=10), "epsilon"),
    (lambda e: dp.dp_clip_bound([1.0], [1, 2], e, 0), "epsilon"),
    (lambda e: dp.clipping_tradeoff([1.0], [1.0], e), "epsilon"),
    (lambda e: dp.advanced_composition(e, 10, 1e-6), "epsilon"),
    (lambda e: dp.PrivacyBudget(e), "total_epsilon"),
    (lambda e: dp.PrivacyBudget(1.0).spend(e, "q"), "epsilon"),
    (lambda e: dp.PrivacyBudget(1.0).can_spend(e), "epsilon"),
])
def test_bad_epsilon(call, name, eps, exc):
    with pytest.raises(exc, match=rf"^{name} must (be|hold)"):
        call(eps)


@pytest.mark.parametrize(("seed", "exc"), [(1.5, TypeError), (-1, ValueError),
                                           ("0", TypeError), (True, TypeError),
                                           (np.random.RandomState(0), TypeError)])
@pytest.mark.parametrize("call", [
    lambda s: dp.laplace_mechanism(1.0, 1.0, 1.0, s),
    lambda s: dp.noisy_sum([1.0], 0, 1, 1.0, s),
    lambda s: dp.noisy_count([1.0], 1.0, s),
    lambda s: dp.noisy_mean([1.0], 0, 1, 1.0, s, n=1),
    lambda s: dp.noisy_mean_unknown_n([1.0], 0, 1, 1.0, 1.0, s),
    lambda s: dp.monte_carlo_exceeds(1, 1, 1.0, s, n_draws=10),
    lambda s: dp.dp_clip_bound([1.0], [1, 2], 1.0, s),
    lambda s: dp.noise_table(1.0, 1.0, [1.0], s, n_draws=10),
    lambda s: dp.exceed_table({"a": 1}, [0], [1.0], s, n_draws=10),
])
def test_bad_seed(call, seed, exc):
    with pytest.raises(exc, match="seed"):
        call(seed)


@pytest.mark.parametrize(("sens", "exc"), [(-1.0, ValueError), (float("nan"), ValueError),
                                           (float("inf"), ValueError), ("1", TypeError)])
@pytest.mark.parametrize("call", [
    lambda s: dp.laplace_scale(s, 1.0),
    lambda s: dp.laplace_mechanism(1.0, s, 1.0, 0),
    lambda s: dp.prob_noisy_count_exceeds(1, 1, 1.0, sensitivity=s),
    lambda s: dp.monte_carlo_exceeds(1, 1, 1.0, 0, n_draws=10, sensitivity=s),
    lambda s: dp.noise_table(1.0, s, [1.0], 0, n_draws=10),
])
def test_bad_sensitivity(call, sens, exc):
    with pytest.raises(exc, match="sensitivity"):
        call(sens)


@pytest.mark.parametrize(("values", "exc", "match"), [
    ("abc", TypeError, "values must be an array-like"),
    (None, TypeError, "values must be an array-like"),
    (3.0, TypeError, "values must be an array-like"),
    (["a", "b"], TypeError, "values must hold real numbers"),
    ([True, False], TypeError, "values must hold real numbers"),
    (pd.Series(["a", "b"]), TypeError, "values must hold real numbers"),
    (np.ones((2, 2)), ValueError, "values must be 1-D"),
    ([], ValueError, "values must not be empty"),
    ([1.0, np.inf], ValueError, "values must hold finite numbers"),
    ([1.0, -np.inf], ValueError, "values must hold finite numbers"),
    ([np.nan, np.nan], ValueError, "non-missing"),
])
@pytest.mark.parametrize("call", [
    lambda v: dp.split_missing(v, missing="drop"),
    lambda v: dp.clipped_sum(v, 0, 1, missing="drop"),
    lambda v: dp.noisy_sum(v, 0, 1, 1.0, 0, missing="drop"),
    lambda v: dp.noisy_count(v, 1.0, 0, missing="drop"),
    lambda v: dp.noisy_mean_unknown_n(v, 0, 1, 1.0, 1.0, 0, missing="drop"),
    lambda v: dp.count_above(v, 0.5, missing="drop"),
    lambda v: dp.dp_clip_bound(v, [1, 2], 1.0, 0, missing="drop"),
    lambda v: dp.clipping_tradeoff(v, [1.0], 1.0, missing="drop"),
])
def test_bad_values(call, values, exc, match):
    with pytest.raises(exc, match=match):
        call(values)


@pytest.mark.parametrize("call", [
    lambda m: dp.split_missing([1.0], missing=m),
    lambda m: dp.clipped_sum([1.0], 0, 1, missing=m),
    lambda m: dp.noisy_sum([1.0], 0, 1, 1.0, 0, missing=m),
    lambda m: dp.noisy_mean([1.0], 0, 1, 1.0, 0, n=1, missing=m),
    lambda m: dp.count_above([1.0], 0.5, missing=m),
])
@pytest.mark.parametrize("policy", ["zero", None, "Drop"])
def test_bad_missing_policy(call, policy):
    with pytest.raises(ValueError, match="missing must be one of"):
        call(policy)


@pytest.mark.parametrize(("lower", "upper", "exc", "match"), [
    (5, 1, ValueError, "upper must be a number >= 5"),
    (0, float("nan"), ValueError, "upper"),
    (float("-inf"), 1, ValueError, "lower"),
    ("0", 1, TypeError, "lower"),
    (0, None, TypeError, "upper"),
])
@pytest.mark.parametrize("call", [
    lambda lo, hi: dp.clipped_sum([1.0], lo, hi),
    lambda lo, hi: dp.sum_sensitivity(lo, hi),
    lambda lo, hi: dp.noisy_sum([1.0], lo, hi, 1.0, 0),
    lambda lo, hi: dp.noisy_mean([1.0], lo, hi, 1.0, 0, n=1),
    lambda lo, hi: dp.noisy_mean_unknown_n([1.0], lo, hi, 1.0, 1.0, 0),
])
def test_bad_bounds(call, lower, upper, exc, match):
    with pytest.raises(exc, match=match):
        call(lower, upper)


@pytest.mark.parametrize(("call", "exc", "match"), [
    # laplace_mechanism
    (lambda: dp.laplace_mechanism(float("nan"), 1.0, 1.0, 0), ValueError, "value"),
    (lambda: dp.laplace_mechanism(np.inf, 1.0, 1.0, 0), ValueError, "value"),
    (lambda: dp.laplace_mechanism([1.0, np.nan], 1.0, 1.0, 0), ValueError, "value"),
    (lambda: dp.laplace_mechanism("abc", 1.0, 1.0, 0), TypeError, "value"),
    (lambda: dp.laplace_mechanism(None, 1.0, 1.0, 0), TypeError, "value"),
    (lambda: dp.laplace_mechanism([], 1.0, 1.0, 0), ValueError, "value must not be empty"),
    (lambda: dp.laplace_mechanism(1.0, 1.0, 1.0, 0, size=0), ValueError, "size"),
    (lambda: dp.laplace_mechanism(1.0, 1.0, 1.0, 0, size=-3), ValueError, "size"),
    (lambda: dp.laplace_mechanism(1.0, 1.0, 1.0, 0, size=2.0), TypeError, "size"),
    (lambda: dp.laplace_mechanism(np.ones(3), 1.0, 1.0, 0, size=10), ValueError, "size"),
    (lambda: dp.noisy_sum([1.0], 0, 1, 1.0, 0, size=0), ValueError, "size"),
    (lambda: dp.noisy_count([1.0], 1.0, 0, size=1.5), TypeError, "size"),
    # error bound
    (lambda: dp.laplace_error_bound(-1.0, 0.05), ValueError, "scale"),
    (lambda: dp.laplace_error_bound(np.nan, 0.05), ValueError, "scale"),
    (lambda: dp.laplace_error_bound("1", 0.05), TypeError, "scale"),
    (lambda: dp.laplace_error_bound(1.0, 0.0), ValueError, "alpha"),
    (lambda: dp.laplace_error_bound(1.0, 1.0), ValueError, "alpha"),
    (lambda: dp.laplace_error_bound(1.0, -0.1), ValueError, "alpha"),
    (lambda: dp.laplace_error_bound(1.0, float("nan")), ValueError, "alpha"),
    (lambda: dp.laplace_error_bound(1.0, "0.05"), TypeError, "alpha"),
    # advanced composition
    (lambda: dp.advanced_composition(0.1, 0, 1e-6), ValueError, "k must be an integer >= 1"),
    (lambda: dp.advanced_composition(0.1, 2.0, 1e-6), TypeError, "k must be an integer"),
    (lambda: dp.advanced_composition(0.1, 10, 0.0), ValueError, "delta_prime"),
    (lambda: dp.advanced_composition(0.1, 10, 1.0), ValueError, "delta_prime"),
    (lambda: dp.advanced_composition(0.1, 10, "1e-6"), TypeError, "delta_prime"),
    # noisy_mean's public n
    (lambda: dp.noisy_mean([1.0], 0, 1, 1.0, 0, n=0), ValueError, "n must be an integer >= 1"),
    (lambda: dp.noisy_mean([1.0], 0, 1, 1.0, 0, n=1.0), TypeError, "n must be an integer"),
    (lambda: dp.noisy_mean([1.0], 0, 1, 1.0, 0, n=True), TypeError, "n must be an integer"),
    (lambda: dp.noisy_mean([1.0, 2.0], 0, 1, 1.0, 0, n=1), ValueError, "n must equal"),
    # exceed probability and its Monte Carlo
    (lambda: dp.prob_noisy_count_exceeds(np.nan, 1, 1.0), ValueError, "true_count"),
    (lambda: dp.prob_noisy_count_exceeds([1, np.inf], 1, 1.0), ValueError, "true_count"),
    (lambda: dp.prob_noisy_count_exceeds(1, np.inf, 1.0), ValueError, "threshold"),
    (lambda: dp.prob_noisy_count_exceeds(1, "a", 1.0), TypeError, "threshold"),
    (lambda: dp.prob_noisy_count_exceeds(1, 1, [1.0, 0.0]), ValueError, "epsilon"),
    (lambda: dp.prob_noisy_count_exceeds(1, 1, [1.0, -2.0]), ValueError, "epsilon"),
    (lambda: dp.prob_noisy_count_exceeds([1, 2], [1, 2, 3], 1.0), ValueError, "broadcast"),
    (lambda: dp.monte_carlo_exceeds(np.nan, 1, 1.0, 0), ValueError, "true_count"),
    (lambda: dp.monte_carlo_exceeds(1, None, 1.0, 0), TypeError, "threshold"),
    (lambda: dp.monte_carlo_exceeds(1, 1, 1.0, 0, n_draws=0), ValueError, "n_draws"),
    (lambda: dp.monte_carlo_exceeds(1, 1, 1.0, 0, n_draws=1.5), TypeError, "n_draws"),
    (lambda: dp.monte_carlo_exceeds(1, 1, 1.0, 0, chunk=0), ValueError, "chunk"),
    (lambda: dp.count_above([1.0], float("nan")), ValueError, "threshold"),
    (lambda: dp.count_above([1.0], "1"), TypeError, "threshold"),
    # exceed_table
    (lambda: dp.exceed_table({}, [0], [1.0], 0), ValueError, "counts must be a non-empty"),
    (lambda: dp.exceed_table([10], [0], [1.0], 0), TypeError, "counts must be a dict"),
    (lambda: dp.exceed_table({"a": -1}, [0], [1.0], 0), ValueError, r"counts\['a'\]"),
    (lambda: dp.exceed_table({"a": "x"}, [0], [1.0], 0), TypeError, r"counts\['a'\]"),
    (lambda: dp.exceed_table({"a": 1}, [], [1.0], 0), ValueError, "gaps must not be empty"),
    (lambda: dp.exceed_table({"a": 1}, [0], [], 0), ValueError, "epsilons must not be empty"),
    (lambda: dp.exceed_table({"a": 1}, [[0]], [1.0], 0), ValueError, "gaps must be 1-D"),
    (lambda: dp.exceed_table({"a": 1}, [0], [0.0], 0), ValueError, "epsilons must hold"),
    (lambda: dp.exceed_table({"a": 1}, [np.nan], [1.0], 0), ValueError, "gaps"),
    (lambda: dp.exceed_table({"a": 1}, [0], [1.0], 0, n_draws=0), ValueError, "n_draws"),
    # noise_table
    (lambda: dp.noise_table(0.0, 1.0, [1.0], 0), ValueError, "true_value"),
    (lambda: dp.noise_table(np.nan, 1.0, [1.0], 0), ValueError, "true_value"),
    (lambda: dp.noise_table(1.0, 1.0, [1.0], 0, n_draws=1), ValueError, "n_draws"),
    (lambda: dp.noise_table(1.0, 1.0, [1.0], 0, n_draws=2.0), TypeError, "n_draws"),
    (lambda: dp.noise_table(1.0, 1.0, [], 0), ValueError, "epsilons must not be empty"),
    (lambda: dp.noise_table(1.0, 1.0, [0.0], 0), ValueError, "epsilon"),
    (lambda: dp.noise_table(1.0, 1.0, "abc", 0), TypeError, "epsilons"),
    # a negative sensitivity is reported before the later bad n_draws (argument order)
    (lambda: dp.noise_table(1.0, -1.0, [1.0], 0, n_draws=1), ValueError, "^sensitivity"),
    # clipping_tradeoff
    (lambda: dp.clipping_tradeoff([1.0], [0.0], 1.0), ValueError, "bounds must hold numbers > 0"),
    (lambda: dp.clipping_tradeoff([1.0], [], 1.0), ValueError, "bounds must not be empty"),
    (lambda: dp.clipping_tradeoff([1.0], [np.nan], 1.0), ValueError, "bounds"),
    (lambda: dp.clipping_tradeoff([-1.0], [1.0], 1.0), ValueError, "values must be >= 0"),
    # empirical_log_ratio
    (lambda: dp.empirical_log_ratio([1.0], [1.0], [1.0, 0.0]), ValueError, "bins"),
    (lambda: dp.empirical_log_ratio([1.0], [1.0], [1.0]), ValueError, "bins"),
    (lambda: dp.empirical_log_ratio([1.0], [1.0], [0.0, 0.0]), ValueError, "bins"),
    (lambda: dp.empirical_log_ratio([], [1.0], [0.0, 1.0]), ValueError, "samples_a"),
    (lambda: dp.empirical_log_ratio([1.0], [np.nan], [0.0, 1.0]), ValueError, "samples_b"),
    (lambda: dp.empirical_log_ratio([1.0], np.ones((2, 2)), [0.0, 1.0]), ValueError,
     "samples_b"),
    (lambda: dp.empirical_log_ratio([1.0], [1.0], [0.0, 1.0], min_count=0), ValueError,
     "min_count"),
    (lambda: dp.empirical_log_ratio([1.0], [1.0], [0.0, 1.0], min_count=1.0), TypeError,
     "min_count"),
    # dp_clip_bound
    (lambda: dp.dp_clip_bound([1.0], [2, 1], 1.0, 0), ValueError, "candidates"),
    (lambda: dp.dp_clip_bound([1.0], [1, 1], 1.0, 0), ValueError, "candidates"),
    (lambda: dp.dp_clip_bound([1.0], [], 1.0, 0), ValueError, "candidates must not be empty"),
    (lambda: dp.dp_clip_bound([1.0], [1, np.nan], 1.0, 0), ValueError, "candidates"),
    (lambda: dp.dp_clip_bound([1.0], [1, 2], 1.0, 0, quantile=1.0), ValueError, "quantile"),
    (lambda: dp.dp_clip_bound([1.0], [1, 2], 1.0, 0, quantile=0.0), ValueError, "quantile"),
    (lambda: dp.dp_clip_bound([1.0], [1, 2], 1.0, 0, quantile="q"), TypeError, "quantile"),
    # optimal_split
    (lambda: dp.optimal_split(0.0, 1.0), ValueError, "a1"),
    (lambda: dp.optimal_split(1.0, -1.0), ValueError, "a2"),
    (lambda: dp.optimal_split(np.nan, 1.0), ValueError, "a1"),
    (lambda: dp.optimal_split(1.0, "2"), TypeError, "a2"),
    # PrivacyBudget
    (lambda: dp.PrivacyBudget(1.0, rel_tol=0.5), ValueError, "rel_tol"),
    (lambda: dp.PrivacyBudget(1.0, rel_tol=-1e-9), ValueError, "rel_tol"),
    (lambda: dp.PrivacyBudget(1.0, rel_tol="0"), TypeError, "rel_tol"),
    (lambda: dp.PrivacyBudget(1.0).spend(0.1, 3), TypeError, "label"),
    (lambda: dp.PrivacyBudget(1.0).spend(0.1, "  "), ValueError, "label"),
    (lambda: dp.PrivacyBudget(1.0).answer("q", 0.1, "not callable"), TypeError, "mechanism"),
    (lambda: dp.PrivacyBudget(0.1).spend(0.2, "q"), dp.BudgetExceededError, "not answered"),
])
def test_bad_inputs(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# --------------------------------------- mutation testing (make mutation MODULES=dp_mechanisms)
# Each test below fails on single-token bugs that mutmut planted and the tests above missed: a
# dropped seed (the generator replaced by fresh entropy), a wrong location or scale of the noise,
# an off-by-one bound, a parameter misnamed in its error message (matched from the start, ^).


def _dp_bad_calls():
    return [
        (lambda: dp.laplace_mechanism(0.0, 1.0, 1.0, size=0), ValueError,
         r"^size must be an integer >= 1"),
        (lambda: dp.noisy_sum([1.0], "a", 2.0, 1.0), TypeError, r"^lower must be a real number"),
        (lambda: dp.laplace_scale(-1.0, 1.0), ValueError, r"^sensitivity must be a number >= 0"),
        (lambda: dp.laplace_error_bound(-1.0), ValueError, r"^scale must be a number >= 0"),
        (lambda: dp.laplace_error_bound(1.0, 0.0), ValueError, r"^alpha must be a number"),
        (lambda: dp.laplace_mechanism(None, 1.0, 1.0), TypeError,
         r"^value must be a real number"),
        (lambda: dp.laplace_mechanism([1.0, 2.0], 1.0, 1.0, size=3), ValueError,
         r"^size is only allowed with a scalar value; pass an array of answers$"),
        (lambda: dp.split_missing([1.0, np.nan]), ValueError,
         r"^values contains 1 missing \(NaN\) entries; pass missing='drop' to exclude them "
         r"explicitly \(they are never treated as zeros\)$"),
        (lambda: dp.split_missing([np.nan, np.nan], missing="drop"), ValueError,
         r"^values must contain at least one non-missing entry$"),
        (lambda: dp.clipped_sum([1.0, np.nan], 0.0, 2.0), ValueError, r"^values contains 1"),
        (lambda: dp.count_above([1.0], "a"), TypeError, r"^threshold must be a real number"),
        (lambda: dp.noisy_mean_unknown_n([1.0], 0.0, 2.0, 0.0, 1.0), ValueError,
         r"^epsilon_count must be a number > 0"),
        (lambda: dp.noisy_mean_unknown_n([1.0], 0.0, 2.0, 1.0, 0.0), ValueError,
         r"^epsilon_sum must be a number > 0"),
        (lambda: dp.prob_noisy_count_exceeds(1, 2, 1.0, sensitivity=-1.0), ValueError,
         r"^sensitivity must be a number >= 0"),
        (lambda: dp.prob_noisy_count_exceeds("a", 2, 1.0), TypeError, r"^true_count must be"),
        (lambda: dp.prob_noisy_count_exceeds(1, "a", 1.0), TypeError, r"^threshold must be"),
        (lambda: dp.prob_noisy_count_exceeds(1, 2, "a"), TypeError, r"^epsilon must be"),
        (lambda: dp.monte_carlo_exceeds("a", 2, 1.0), TypeError, r"^true_count must be"),
        (lambda: dp.monte_carlo_exceeds(1, "a", 1.0), TypeError, r"^threshold must be"),
        (lambda: dp.monte_carlo_exceeds(1, 2, 1.0, n_draws=0), ValueError,
         r"^n_draws must be an integer >= 1"),
        (lambda: dp.monte_carlo_exceeds(1, 2, 1.0, chunk=0), ValueError,
         r"^chunk must be an integer >= 1"),
        (lambda: dp.clipping_tradeoff([1.0, -1.0], [1.0], 1.0), ValueError,
         r"^values must be >= 0 for clipping to \[0, B\]$"),
        (lambda: dp.clipping_tradeoff([1.0], [[1.0, 2.0]], 1.0), ValueError,
         r"^bounds must be 1-D"),
        (lambda: dp.empirical_log_ratio([[1.0]], [1.0], [0.0, 2.0]), ValueError,
         r"^samples_a must be 1-D"),
        (lambda: dp.empirical_log_ratio([np.nan], [1.0], [0.0, 2.0]), ValueError,
         r"^samples_a must hold finite"),
        (lambda: dp.empirical_log_ratio([1.0], [np.nan], [0.0, 2.0]), ValueError,
         r"^samples_b must hold finite"),
        (lambda: dp.empirical_log_ratio([1.0], [1.0], [[0.0, 2.0]]), ValueError,
         r"^bins must be 1-D"),
        (lambda: dp.empirical_log_ratio([1.0], [1.0], [0.0]), ValueError,
         r"^bins must be at least two strictly increasing edges$"),
        (lambda: dp.empirical_log_ratio([1.0], [1.0], [0.0, 2.0], min_count=0), ValueError,
         r"^min_count must be an integer >= 1"),
        (lambda: dp.dp_clip_bound([1.0], [1.0, 2.0], 1.0, quantile=1.0), ValueError,
         r"^quantile must be a number"),
        (lambda: dp.dp_clip_bound([1.0], [[1.0, 2.0]], 1.0), ValueError,
         r"^candidates must be 1-D"),
        (lambda: dp.dp_clip_bound([1.0], [2.0, 1.0], 1.0), ValueError,
         r"^candidates must be strictly increasing$"),
        (lambda: dp.optimal_split(0.0, 1.0), ValueError, r"^a1 must be a number > 0"),
        (lambda: dp.optimal_split(1.0, 0.0), ValueError, r"^a2 must be a number > 0"),
        (lambda: dp.noise_table("a", 1.0, [1.0]), TypeError, r"^true_value must be a real"),
        (lambda: dp.noise_table(0.0, 1.0, [1.0]), ValueError,
         r"^true_value must be non-zero \(relative errors are reported\)$"),
        (lambda: dp.noise_table(1.0, -1.0, [1.0]), ValueError,
         r"^sensitivity must be a number >= 0"),
        (lambda: dp.noise_table(1.0, 1.0, [1.0], n_draws=1), ValueError,
         r"^n_draws must be an integer >= 2"),
        (lambda: dp.noise_table(1.0, 1.0, [[1.0]]), ValueError, r"^epsilons must be 1-D"),
        (lambda: dp.exceed_table([1], [1.0], [1.0]), TypeError,
         r"^counts must be a dict of group -> true count, got list$"),
        (lambda: dp.exceed_table({}, [1.0], [1.0]), ValueError,
         r"^counts must be a non-empty dict of group -> true count$"),
        (lambda: dp.exceed_table({"a": 1}, [1.0], [[1.0]]), ValueError,
         r"^epsilons must be 1-D"),
        (lambda: dp.exceed_table({"a": 1}, [1.0], [1.0], n_draws=0), ValueError,
         r"^n_draws must be an integer >= 1"),
        (lambda: dp.advanced_composition(1.0, 2, 0.0), ValueError,
         r"^delta_prime must be a number"),
        (lambda: dp.PrivacyBudget(0.0), ValueError, r"^total_epsilon must be a number > 0"),
        (lambda: dp.PrivacyBudget(1.0, rel_tol=1e-3), ValueError, r"^rel_tol must be a number"),
        (lambda: dp.PrivacyBudget(1.0).spend(0.1, 3), TypeError,
         r"^label must be a str, got int$"),
        (lambda: dp.PrivacyBudget(1.0).spend(0.1, " "), ValueError,
         r"^label must be a non-empty string$"),
        (lambda: dp.PrivacyBudget(1.0).answer("q", 0.1, 3), TypeError,
         r"^mechanism must be callable, got int$"),
    ]


@pytest.mark.parametrize("case", range(len(_dp_bad_calls())))
def test_dp_errors_name_the_parameter(case):
    call, error, match = _dp_bad_calls()[case]
    with pytest.raises(error, match=match):
        call()


def test_seeded_releases_are_reproducible():
    # every release must draw from the generator made from `seed` (a dropped seed draws fresh
    # entropy and two runs differ)
    v = [1.0, 2.0, 5.0, np.nan]
    calls = [
        lambda: dp.laplace_mechanism([1.0, 2.0], 1.0, 1.0, seed=3),
        lambda: dp.noisy_sum(v, 0.0, 4.0, 1.0, seed=3, missing="drop").value,
        lambda: dp.noisy_count(v, 1.0, seed=3, missing="drop").value,
        lambda: dp.noisy_mean(v, 0.0, 4.0, 1.0, seed=3, n=3, missing="drop").value,
        lambda: dp.noisy_mean_unknown_n(v, 0.0, 4.0, 1.0, 1.0, seed=3, missing="drop").value,
        lambda: dp.dp_clip_bound([1.0, 2.0, 3.0], [1.0, 2.0, 4.0], 1.0, seed=3)[0],
        lambda: dp.noise_table(1.0, 1.0, [1.0], seed=3, n_draws=5)[1][1.0],
        lambda: dp.exceed_table({"a": 3}, [1.0], [1.0], seed=3, n_draws=50)["monte_carlo"],
    ]
    for call in calls:
        np.testing.assert_array_equal(call(), call())


def test_scalar_laplace_draws_are_centred_with_scale_b():
    # b = 2 / 1 = 2; 4000 one-shot releases of 0: E[Z] = 0 (SD 2 sqrt 2 = 2.83, SE 0.045) and
    # E|Z| = b = 2 (SD of |Z| is b, SE 0.032); both tolerances are 5 standard errors
    rng = np.random.default_rng(0)
    z = np.array([dp.laplace_mechanism(0.0, 2.0, 1.0, seed=rng) for _ in range(4000)])
    assert abs(z.mean()) < 5 * 2 * np.sqrt(2) / np.sqrt(4000)
    assert abs(np.abs(z).mean() - 2.0) < 5 * 2.0 / np.sqrt(4000)
    assert dp.laplace_mechanism(0.0, 1.0, 1.0, seed=0, size=1).shape == (1,)


def test_release_metadata_and_types():
    v = [1.0, 3.0, np.nan]
    rel = dp.noisy_mean(v, 0.0, 4.0, 2.0, seed=0, n=2, missing="drop")
    assert rel.epsilon == 2.0
    assert rel.details == {"lower": 0.0, "upper": 4.0, "n": 2}
    rel = dp.noisy_mean_unknown_n(v, 0.0, 4.0, 0.5, 1.5, seed=0, missing="drop")
    assert type(rel.value) is float
    assert rel.n_missing_dropped == 1
    assert {"lower": 0.0, "upper": 4.0, "epsilon_count": 0.5, "epsilon_sum": 1.5}.items() \
        <= rel.details.items()
    present, n_missing = dp.split_missing(pd.Series([1.0, None, 3.0], dtype="Float64"),
                                          missing="drop")
    np.testing.assert_array_equal(present, [1.0, 3.0])
    assert n_missing == 1
    assert dp.clipped_sum([1.0, 5.0], 0.0, 2.0) == 3.0  # the default missing policy is "raise"


def test_boundaries_of_the_helpers():
    assert dp.monte_carlo_exceeds(0.0, 0.0, 1.0, seed=0, n_draws=1, chunk=1)[0] in (0.0, 1.0)
    table = dp.clipping_tradeoff([0.0, 0.5, 2.0], [1.0], 1.0)  # zeros and fractions are valid
    assert len(table) == 1
    assert dp.noise_table(1.0, 0.5, [1.0], seed=0, n_draws=2)[1][1.0].shape == (2,)
    assert len(dp.noise_table(1.0, 1.0, [1.0], seed=0)[1][1.0]) == 10_000  # default n_draws
    assert len(dp.exceed_table({"a": 0}, [1.0], [1.0], seed=0, n_draws=1)) == 1
    budget = dp.PrivacyBudget(1.0)
    assert budget.can_spend(1.0)  # spending exactly the total is allowed
    seen = {}

    def mech(x, *, epsilon, scale):
        seen.update(x=x, epsilon=epsilon, scale=scale)
        return x

    assert budget.answer("q", 0.5, mech, 7, scale=3) == 7
    assert seen == {"x": 7, "epsilon": 0.5, "scale": 3}


def test_clip_bound_falls_back_to_the_largest_candidate_and_tables_columns():
    # every value lies above every candidate: no candidate covers the quantile, so the largest
    bound, _ = dp.dp_clip_bound([100.0] * 50, [1.0, 2.0, 3.0], 1e6, seed=0)
    assert bound == 3.0
    assert "epsilon" in dp.noise_table(1.0, 1.0, [1.0], seed=0, n_draws=5)[0].columns
    rng = np.random.default_rng(0)
    a, b = rng.laplace(0, 1, 5000), rng.laplace(1, 1, 5000)
    ratio = dp.empirical_log_ratio(a, b, [-1.0, 0.0, 1.0, 2.0], min_count=100)
    assert "right" in ratio.columns
    assert ratio["count_a"].dtype.kind == "i"
    assert ratio["count_b"].dtype.kind == "i"
    # a probability that underflows to 0 has a 0 standard error: z is undefined, not a division
    far = dp.exceed_table({"a": 5}, [1000.0], [10.0], seed=0, n_draws=10)
    assert np.isnan(far["z"].iloc[0])


# ------------------------------------- mutation-testing survivors (issue 17): seeded references
def test_laplace_mechanism_adds_the_seeds_own_laplace_draws():
    """value + Laplace(0, b) drawn by NumPy's default_rng(seed), for a scalar, for size draws and
    for an array value (b = 2 / 0.5 = 4): the sign and the generator are pinned, not only the
    distribution, which cannot tell +Z from -Z."""
    b = 4.0
    assert dp.laplace_mechanism(3.0, 2.0, 0.5, 7) == 3.0 + np.random.default_rng(7).laplace(0.0, b)
    np.testing.assert_array_equal(dp.laplace_mechanism(3.0, 2.0, 0.5, 7, size=5),
                                  3.0 + np.random.default_rng(7).laplace(0.0, b, size=5))
    value = np.array([[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_array_equal(dp.laplace_mechanism(value, 2.0, 0.5, 7),
                                  value + np.random.default_rng(7).laplace(0.0, b, size=(2, 2)))


def test_sensitivity_zero_adds_nothing_and_leaves_the_generator_untouched():
    """b = 0: the exact value, and no draw taken from a generator the caller shares."""
    cases = [(lambda r: dp.laplace_mechanism(3.0, 0.0, 1.0, r), 3.0),
             (lambda r: dp.laplace_mechanism(3.0, 0.0, 1.0, r, size=4), [3.0] * 4),
             (lambda r: dp.laplace_mechanism(np.array([3.0, 5.0]), 0.0, 1.0, r), [3.0, 5.0]),
             # c = 3 > t = 2.5 with no noise: every draw exceeds, p_hat = 1 exactly
             (lambda r: dp.monte_carlo_exceeds(3, 2.5, 1.0, r, n_draws=4, sensitivity=0.0)[0],
              1.0)]
    for call, expected in cases:
        rng = np.random.default_rng(0)
        before = rng.bit_generator.state
        np.testing.assert_array_equal(call(rng), expected)
        assert rng.bit_generator.state == before


def test_monte_carlo_exceeds_counts_c_plus_the_seeds_draws_above_t():
    """p_hat = #{c + Z_i > t} / N with Z from default_rng(seed), N = 1,000,000 by default;
    t = c - 0.5 is asymmetric, so c - Z would count a different number of draws."""
    z = np.random.default_rng(3).laplace(0.0, 1 / 0.8, size=1_000_000)
    p_hat, se = dp.monte_carlo_exceeds(10, 9.5, 0.8, 3)
    assert p_hat == np.count_nonzero(10 + z > 9.5) / 1_000_000
    assert se == pytest.approx(math.sqrt(p_hat * (1 - p_hat) / 1_000_000), rel=1e-12)
    assert p_hat != np.count_nonzero(10 - z > 9.5) / 1_000_000


def test_exceed_table_draws_n_draws_per_row():
    """Each row's Monte Carlo estimate comes from n_draws draws (a multiple of 1/10 here, the
    first ten draws of the seed's generator) and its se from n_draws; the default is 10**6."""
    z = np.random.default_rng(0).laplace(0.0, 1.0, size=10)
    row = dp.exceed_table({"a": 5}, [1], [1.0], 0, n_draws=10).iloc[0]
    assert row["monte_carlo"] == np.count_nonzero(5 + z > 6) / 10
    p = 0.5 * math.exp(-1.0)  # Pr[Laplace(1) > 1]
    assert row["se"] == pytest.approx(math.sqrt(p * (1 - p) / 10), rel=1e-12)
    row = dp.exceed_table({"a": 5}, [1], [1.0], 0).iloc[0]
    assert row["se"] == pytest.approx(math.sqrt(p * (1 - p) / 1_000_000), rel=1e-12)


def test_split_missing_converts_an_object_series_with_none():
    """An object Series of floats with None (how pandas often reads a column with gaps) is
    converted to float with NaN for None, then dropped and counted."""
    present, n_missing = dp.split_missing(pd.Series([1.0, None, 2.5], dtype=object), "drop")
    np.testing.assert_array_equal(present, [1.0, 2.5])
    assert present.dtype == np.float64
    assert n_missing == 1


def test_split_missing_reports_a_non_numeric_dtype_even_when_empty():
    """The dtype is checked before the size: an empty boolean or object array is refused for
    its dtype (TypeError), as a non-empty one is."""
    for values in (np.array([], dtype=bool), np.array([], dtype=object)):
        with pytest.raises(TypeError, match=r"^values must hold real numbers \(NaN for missing\), "
                                            r"got dtype (bool|object)$"):
            dp.split_missing(values)
