"""Tests of helpers.dp_mechanisms: the Laplace sampler, bounded queries, missing values, the
closed-form exceed probability, the privacy budget, and every bad input."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from helpers import dp_mechanisms as dp


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


# --------------------------------------------------------------------------- Laplace sampler
def test_laplace_scale_formula():
    assert dp.laplace_scale(1.0, 0.5) == 2.0
    assert dp.laplace_scale(100_000, 1) == 100_000.0
    assert dp.laplace_scale(0, 1) == 0.0


@pytest.mark.parametrize("sensitivity,epsilon", [(1.0, 1.0), (50_000.0, 0.1), (3.0, 2.0)])
def test_laplace_mechanism_ks_against_scipy(sensitivity, epsilon):
    rng = np.random.default_rng(2024)
    draws = dp.laplace_mechanism(10.0, sensitivity, epsilon, rng, size=20_000)
    b = sensitivity / epsilon
    stat, pvalue = stats.kstest(draws, stats.laplace(loc=10.0, scale=b).cdf)
    assert pvalue > 0.01, (stat, pvalue)
    # The test can fail: the same draws are clearly not Laplace with twice the scale.
    _, p_wrong = stats.kstest(draws, stats.laplace(loc=10.0, scale=2 * b).cdf)
    assert p_wrong < 1e-6


def test_laplace_mechanism_moments(rng):
    draws = dp.laplace_mechanism(0.0, 2.0, 0.5, rng, size=200_000)  # b = 4
    assert abs(draws.mean()) < 4 * math.sqrt(2 * 16 / 200_000)
    assert draws.var() == pytest.approx(2 * 16, rel=0.03)
    assert np.abs(draws).mean() == pytest.approx(4.0, rel=0.02)


def test_laplace_mechanism_shapes_and_reproducibility():
    a = dp.laplace_mechanism(5.0, 1.0, 1.0, np.random.default_rng(7))
    b = dp.laplace_mechanism(5.0, 1.0, 1.0, np.random.default_rng(7))
    assert isinstance(a, float) and a == b
    vec = dp.laplace_mechanism(np.array([1.0, 2.0, 3.0]), 1.0, 1.0, np.random.default_rng(0))
    assert vec.shape == (3,)
    mat = dp.laplace_mechanism(np.zeros((4, 5)), 1.0, 1.0, np.random.default_rng(0))
    assert mat.shape == (4, 5) and np.unique(mat).size == 20  # independent draws
    many = dp.laplace_mechanism(5.0, 1.0, 1.0, np.random.default_rng(0), size=1000)
    assert many.shape == (1000,)
    # zero sensitivity: no noise at all
    assert dp.laplace_mechanism(5.0, 0.0, 1.0, np.random.default_rng(0)) == 5.0


# --------------------------------------------------------------------------- bounded queries
def test_clipped_sum_and_missing_values():
    x = [1.0, 5.0, -3.0, 100.0, np.nan]
    with pytest.raises(ValueError, match="missing"):
        dp.clipped_sum(x, 0, 10)
    assert dp.clipped_sum(x, 0, 10, missing="drop") == 1 + 5 + 0 + 10
    present, n_missing = dp.split_missing(pd.Series([1.0, None, 2.0, np.nan]), missing="drop")
    assert n_missing == 2 and present.tolist() == [1.0, 2.0]
    # pandas nullable floats with pd.NA are handled too (NA is missing, never zero)
    s = pd.Series([1.0, pd.NA, 3.0], dtype="Float64")
    assert dp.clipped_sum(s, 0, 10, missing="drop") == 4.0
    assert dp.count_above(s, 2.0, missing="drop") == 1


def test_noisy_sum_reports_missing_and_sensitivity(rng):
    x = np.array([10.0, 20.0, np.nan, 400.0])
    rel = dp.noisy_sum(x, 0, 100, 0.5, rng, missing="drop")
    assert rel.n_missing_dropped == 1
    assert rel.sensitivity == 100 and rel.scale == 200 and rel.epsilon == 0.5
    draws = dp.noisy_sum(x, 0, 100, 0.5, rng, missing="drop", size=100_000).value
    assert draws.mean() == pytest.approx(130.0, abs=4 * math.sqrt(2) * 200 / math.sqrt(1e5))
    # negative lower bound: add/remove sensitivity is max(|L|, |U|)
    assert dp.noisy_sum([1.0], -50, 20, 1.0, rng).sensitivity == 50
    assert dp.sum_sensitivity(-50, 20) == 50


def test_noisy_mean_public_n(rng):
    x = np.array([0.0, 50.0, 200.0, np.nan])
    rel = dp.noisy_mean(x, 0, 100, 1.0, rng, n=3, missing="drop")
    assert rel.sensitivity == pytest.approx(100 / 3) and rel.n_missing_dropped == 1
    draws = dp.noisy_mean(x, 0, 100, 1.0, rng, n=3, missing="drop", size=100_000).value
    assert draws.mean() == pytest.approx(50.0, abs=1.0)
    assert draws.std() == pytest.approx(math.sqrt(2) * 100 / 3, rel=0.03)
    with pytest.raises(ValueError, match="n must equal"):
        dp.noisy_mean(x, 0, 100, 1.0, rng, n=4, missing="drop")


def test_noisy_mean_unknown_n(rng):
    x = np.full(2000, 30.0)
    rel = dp.noisy_mean_unknown_n(x, 0, 100, 0.5, 0.5, rng, size=20_000)
    assert rel.epsilon == 1.0
    assert rel.value.shape == (20_000,)
    assert np.all((rel.value >= 0) & (rel.value <= 100))
    assert np.median(rel.value) == pytest.approx(30.0, abs=0.5)
    one = dp.noisy_mean_unknown_n(x, 0, 100, 0.5, 0.5, rng)
    assert isinstance(one.value, float)


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


@pytest.mark.parametrize("c,t,eps", [(100, 98, 0.5), (100, 103, 1.0), (10, 10, 0.1), (0, -2, 2.0)])
def test_prob_exceeds_matches_monte_carlo(c, t, eps):
    p = dp.prob_noisy_count_exceeds(c, t, eps)
    p_hat, se = dp.monte_carlo_exceeds(
        c, t, eps, np.random.default_rng(99), n_draws=400_000, chunk=150_000
    )
    assert abs(p_hat - p) < 4 * se


def test_prob_exceeds_limits_and_symmetry():
    assert dp.prob_noisy_count_exceeds(100, 100, 1.0) == 0.5
    assert dp.prob_noisy_count_exceeds(100, 0, 1.0) == pytest.approx(1.0, abs=1e-40)
    assert dp.prob_noisy_count_exceeds(100, 10_000, 1.0) == 0.0 or (
        dp.prob_noisy_count_exceeds(100, 10_000, 1.0) < 1e-300
    )
    assert dp.prob_noisy_count_exceeds(100, 130, 1e-9) == pytest.approx(0.5, abs=1e-6)
    assert dp.prob_noisy_count_exceeds(100, 70, 1e-9) == pytest.approx(0.5, abs=1e-6)
    gaps = np.linspace(-20, 20, 81)
    p_up = dp.prob_noisy_count_exceeds(50, 50 + gaps, 0.3)
    p_down = dp.prob_noisy_count_exceeds(50, 50 - gaps, 0.3)
    np.testing.assert_allclose(p_up + p_down, 1.0, rtol=1e-14)
    assert np.all(np.diff(p_up) < 0)  # decreasing in the threshold
    # monotone in epsilon: far above -> less likely to exceed with less noise
    eps = np.array([0.01, 0.1, 1.0])
    assert np.all(np.diff(dp.prob_noisy_count_exceeds(50, 60, eps)) < 0)
    assert np.all(np.diff(dp.prob_noisy_count_exceeds(50, 40, eps)) > 0)
    # no noise: deterministic
    assert dp.prob_noisy_count_exceeds(5, 4, 1.0, sensitivity=0) == 1.0
    assert dp.prob_noisy_count_exceeds(5, 5, 1.0, sensitivity=0) == 0.0
    assert isinstance(dp.prob_noisy_count_exceeds(5, 4, 1.0), float)


# --------------------------------------------------------------------------- budget
def test_budget_exact_spend_and_ledger():
    budget = dp.PrivacyBudget(1.0)
    assert budget.spend(0.3, "total") == pytest.approx(0.7)
    assert budget.spend(0.7, "mean") == 0.0
    assert budget.remaining == 0.0 and budget.spent == pytest.approx(1.0)
    led = budget.ledger
    assert list(led.columns) == ["label", "epsilon", "cumulative", "remaining"]
    assert led["label"].tolist() == ["total", "mean"]
    assert led["cumulative"].iloc[-1] == pytest.approx(1.0)
    with pytest.raises(dp.BudgetExceededError, match="not answered"):
        budget.spend(1e-6, "one more")
    assert len(budget.ledger) == 2  # refused query not recorded


def test_budget_floating_point_sums():
    budget = dp.PrivacyBudget(1.0)
    for i in range(10):
        budget.spend(0.1, f"q{i}")  # 0.1 * 10 != 1.0 in naive float addition
    assert budget.remaining == 0.0
    assert not budget.can_spend(1e-6)
    b3 = dp.PrivacyBudget(0.3)
    b3.spend(0.1, "a")
    b3.spend(0.2, "b")  # 0.1 + 0.2 = 0.30000000000000004
    assert b3.remaining == 0.0
    with pytest.raises(dp.BudgetExceededError):
        b3.spend(0.01, "c")


def test_budget_refusal_runs_nothing_and_rolls_back(rng):
    budget = dp.PrivacyBudget(0.5)
    calls = []

    def mech(value, *, epsilon):
        calls.append(epsilon)
        return dp.laplace_mechanism(value, 1.0, epsilon, rng)

    out = budget.answer("count", 0.4, mech, 10.0)
    assert isinstance(out, float) and calls == [0.4]
    with pytest.raises(dp.BudgetExceededError):
        budget.answer("count again", 0.4, mech, 10.0)
    assert calls == [0.4]  # the refused mechanism never ran
    with pytest.raises(ValueError, match="value"):
        budget.answer("bad", 0.1, mech, float("nan"))
    assert budget.spent == pytest.approx(0.4)  # failed release rolled back


# --------------------------------------------------------------------------- empirical check
def test_empirical_log_ratio_bounded_for_correct_and_broken_for_wrong_sensitivity():
    rng = np.random.default_rng(5)
    eps, n = 1.0, 400_000
    a = dp.laplace_mechanism(10.0, 1.0, eps, rng, size=n)
    b = dp.laplace_mechanism(9.0, 1.0, eps, rng, size=n)
    tab = dp.empirical_log_ratio(a, b, np.linspace(0, 20, 41), min_count=2000)
    assert len(tab) > 5
    assert np.all(np.abs(tab["log_ratio"]) <= eps + 4 * tab["se"])
    c = dp.laplace_mechanism(5.0, 1.0, eps, rng, size=n)  # real change 5, claimed 1
    tab2 = dp.empirical_log_ratio(a, c, np.linspace(0, 20, 41), min_count=2000)
    assert tab2["log_ratio"].abs().max() > eps + 10 * tab2["se"].max()


def test_clipping_tradeoff():
    x = np.array([1.0, 2.0, 10.0, np.nan])
    tab = dp.clipping_tradeoff(x, [1.0, 5.0, 20.0], 1.0, missing="drop")
    assert tab["bias"].tolist() == [10.0, 5.0, 0.0]
    assert tab["n_clipped"].tolist() == [2, 1, 0]
    np.testing.assert_allclose(tab["noise_sd"], np.sqrt(2) * tab["B"])


# --------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("eps", [0, -1, float("nan"), float("inf")])
def test_bad_epsilon(eps, rng):
    with pytest.raises(ValueError, match="epsilon"):
        dp.laplace_scale(1.0, eps)
    with pytest.raises(ValueError, match="epsilon"):
        dp.laplace_mechanism(1.0, 1.0, eps, rng)
    with pytest.raises(ValueError, match="epsilon"):
        dp.noisy_sum([1.0], 0, 1, eps, rng)
    with pytest.raises(ValueError, match="epsilon"):
        dp.noisy_mean([1.0], 0, 1, eps, rng, n=1)
    with pytest.raises(ValueError, match="epsilon_count"):
        dp.noisy_mean_unknown_n([1.0], 0, 1, eps, 1.0, rng)
    with pytest.raises(ValueError, match="epsilon_sum"):
        dp.noisy_mean_unknown_n([1.0], 0, 1, 1.0, eps, rng)
    with pytest.raises(ValueError, match="epsilon"):
        dp.prob_noisy_count_exceeds(1, 1, eps)
    with pytest.raises(ValueError, match="epsilon"):
        dp.noisy_count([1.0], eps, rng)
    with pytest.raises(ValueError, match="total_epsilon"):
        dp.PrivacyBudget(eps)
    with pytest.raises(ValueError, match="epsilon"):
        dp.PrivacyBudget(1.0).spend(eps, "q")


@pytest.mark.parametrize("sens", [-1.0, float("nan"), float("inf")])
def test_bad_sensitivity(sens, rng):
    with pytest.raises(ValueError, match="sensitivity"):
        dp.laplace_scale(sens, 1.0)
    with pytest.raises(ValueError, match="sensitivity"):
        dp.laplace_mechanism(1.0, sens, 1.0, rng)
    with pytest.raises(ValueError, match="sensitivity"):
        dp.prob_noisy_count_exceeds(1, 1, 1.0, sensitivity=sens)


def test_bad_types(rng):
    with pytest.raises(TypeError, match="epsilon"):
        dp.laplace_scale(1.0, "1")
    with pytest.raises(TypeError, match="sensitivity"):
        dp.laplace_scale(None, 1.0)
    with pytest.raises(TypeError, match="epsilon"):
        dp.laplace_scale(1.0, True)
    with pytest.raises(TypeError, match="rng"):
        dp.laplace_mechanism(1.0, 1.0, 1.0, 42)
    with pytest.raises(TypeError, match="rng"):
        dp.noisy_sum([1.0], 0, 1, 1.0, np.random.RandomState(0))
    with pytest.raises(TypeError, match="values"):
        dp.clipped_sum("abc", 0, 1)
    with pytest.raises(TypeError, match="values"):
        dp.clipped_sum(["a", "b"], 0, 1)
    with pytest.raises(TypeError, match="label"):
        dp.PrivacyBudget(1.0).spend(0.1, 3)
    with pytest.raises(TypeError, match="mechanism"):
        dp.PrivacyBudget(1.0).answer("q", 0.1, "not callable")


def test_bad_values_and_bounds(rng):
    with pytest.raises(ValueError, match="lower must be <= upper"):
        dp.clipped_sum([1.0], 5, 1)
    with pytest.raises(ValueError, match="lower must be <= upper"):
        dp.noisy_sum([1.0], 5, 1, 1.0, rng)
    with pytest.raises(ValueError, match="upper"):
        dp.noisy_mean([1.0], 0, float("nan"), 1.0, rng, n=1)
    with pytest.raises(ValueError, match="lower"):
        dp.clipped_sum([1.0], float("-inf"), 1)
    with pytest.raises(ValueError, match="empty"):
        dp.clipped_sum([], 0, 1)
    with pytest.raises(ValueError, match="non-missing"):
        dp.noisy_sum([np.nan, np.nan], 0, 1, 1.0, rng, missing="drop")
    with pytest.raises(ValueError, match="missing"):
        dp.noisy_sum([1.0, np.nan], 0, 1, 1.0, rng)
    with pytest.raises(ValueError, match="missing must be"):
        dp.noisy_sum([1.0], 0, 1, 1.0, rng, missing="zero")
    with pytest.raises(ValueError, match="infinite"):
        dp.clipped_sum([1.0, np.inf], 0, 1)
    with pytest.raises(ValueError, match="one-dimensional"):
        dp.clipped_sum(np.ones((2, 2)), 0, 1)
    with pytest.raises(ValueError, match="value"):
        dp.laplace_mechanism(float("nan"), 1.0, 1.0, rng)
    with pytest.raises(ValueError, match="value"):
        dp.laplace_mechanism(np.array([1.0, np.nan]), 1.0, 1.0, rng)
    with pytest.raises(ValueError, match="size"):
        dp.laplace_mechanism(1.0, 1.0, 1.0, rng, size=0)
    with pytest.raises(ValueError, match="size"):
        dp.laplace_mechanism(np.ones(3), 1.0, 1.0, rng, size=10)
    with pytest.raises(ValueError, match="n must be"):
        dp.noisy_mean([1.0], 0, 1, 1.0, rng, n=0)
    with pytest.raises(ValueError, match="true_count"):
        dp.prob_noisy_count_exceeds(np.nan, 1, 1.0)
    with pytest.raises(ValueError, match="threshold"):
        dp.prob_noisy_count_exceeds(1, np.inf, 1.0)
    with pytest.raises(ValueError, match="threshold"):
        dp.count_above([1.0], float("nan"))
    with pytest.raises(ValueError, match="n_draws"):
        dp.monte_carlo_exceeds(1, 1, 1.0, rng, n_draws=0)
    with pytest.raises(ValueError, match="label"):
        dp.PrivacyBudget(1.0).spend(0.1, "  ")
    with pytest.raises(ValueError, match="rel_tol"):
        dp.PrivacyBudget(1.0, rel_tol=0.5)
    with pytest.raises(ValueError, match="bounds"):
        dp.clipping_tradeoff([1.0], [0.0], 1.0)
    with pytest.raises(ValueError, match="values must be >= 0"):
        dp.clipping_tradeoff([-1.0], [1.0], 1.0)
    with pytest.raises(ValueError, match="bins"):
        dp.empirical_log_ratio([1.0], [1.0], [1.0, 0.0])
    with pytest.raises(ValueError, match="samples_a"):
        dp.empirical_log_ratio([], [1.0], [0.0, 1.0])
    with pytest.raises(ValueError, match="min_count"):
        dp.empirical_log_ratio([1.0], [1.0], [0.0, 1.0], min_count=0)


# --------------------------------------------------------------------------- notebook helpers
def test_dp_clip_bound_picks_quantile_with_little_noise():
    x = np.concatenate([np.full(9_890, 10.0), np.full(110, 150.0)])  # 1.1% above 50 and 100
    bound, table = dp.dp_clip_bound(x, [50, 100, 200, 400], 50.0, np.random.default_rng(0))
    assert bound == 200  # smallest candidate with <= 1% above it (noise scale 0.02)
    assert table["noisy_count"].sum() == pytest.approx(10_000, abs=1)
    bound95, _ = dp.dp_clip_bound(x, [50, 100, 200, 400], 50.0, np.random.default_rng(0), 0.95)
    assert bound95 == 50
    assert len(table) == 5 and table["bin"].iloc[-1] == "> 400"
    # nothing qualifies (everyone above the grid): the largest candidate
    big, _ = dp.dp_clip_bound(np.full(1000, 1e6), [1, 2], 50.0, np.random.default_rng(0))
    assert big == 2


def test_dp_clip_bound_bad_inputs(rng):
    with pytest.raises(ValueError, match="candidates"):
        dp.dp_clip_bound([1.0], [2, 1], 1.0, rng)
    with pytest.raises(ValueError, match="quantile"):
        dp.dp_clip_bound([1.0], [1, 2], 1.0, rng, quantile=1.0)
    with pytest.raises(ValueError, match="epsilon"):
        dp.dp_clip_bound([1.0], [1, 2], 0.0, rng)


def test_optimal_split_minimises_objective():
    for a1, a2 in [(1.0, 1.0), (8.0, 1.0), (0.01, 3.0)]:
        share = dp.optimal_split(a1, a2)
        s = np.linspace(0.001, 0.999, 99_901)
        g = a1 / s**2 + a2 / (1 - s) ** 2
        assert share == pytest.approx(s[np.argmin(g)], abs=2e-5)
    assert dp.optimal_split(8.0, 1.0) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="a1"):
        dp.optimal_split(0.0, 1.0)
    with pytest.raises(ValueError, match="a2"):
        dp.optimal_split(1.0, -1.0)


def test_noise_table_matches_theory(rng):
    tab, draws = dp.noise_table(1000.0, 10.0, [0.5, 2.0], rng, n_draws=50_000)
    assert list(draws) == [0.5, 2.0] and draws[0.5].shape == (50_000,)
    np.testing.assert_allclose(tab["scale"], [20.0, 5.0])
    np.testing.assert_allclose(tab["sd"], tab["sd_theory"], rtol=0.03)
    np.testing.assert_allclose(tab["mean_abs_rel_error"], tab["rel_error_theory"], rtol=0.03)
    with pytest.raises(ValueError, match="true_value"):
        dp.noise_table(0.0, 1.0, [1.0], rng)
    with pytest.raises(ValueError, match="n_draws"):
        dp.noise_table(1.0, 1.0, [1.0], rng, n_draws=1)


def test_exceed_table_agrees_within_4_se():
    tab = dp.exceed_table(
        {"a": 10, "b": 200}, [-3, 0, 3, 50], [0.1, 1.0], np.random.default_rng(3), 200_000
    )
    assert len(tab) == 16
    assert (tab["z"].abs() < 4).all()  # se from the closed form: never 0 here
    assert (tab["threshold"] == tab["true_count"] + tab["gap"]).all()
    with pytest.raises(ValueError, match="counts"):
        dp.exceed_table({}, [0], [1.0], np.random.default_rng(0))
