"""Tests of helpers.fairness: metrics on hand-computed cases, mitigation identities, intervals
against closed-form references, bad inputs."""

import numpy as np
import pandas as pd
import pytest

from helpers import fairness as F

# A hand-computed case: four men then four women.
S = np.array(["M"] * 4 + ["F"] * 4)
Y_PRED = np.array([1, 1, 0, 0, 1, 0, 0, 0])
Y_TRUE = np.array([1, 0, 1, 0, 1, 1, 1, 0])
# Men:   selection 2/4, TPR 1/2 (rows 0, 2), FPR 1/2 (rows 1, 3)
# Women: selection 1/4, TPR 1/3 (rows 4, 5, 6), FPR 0/1 (row 7)


def _toy_adult(n=400, seed=0):
    rng = np.random.default_rng(seed)
    sex = rng.choice(["Male", "Female"], n)
    df = pd.DataFrame(
        {
            "age": rng.integers(18, 80, n),
            "education_num": rng.integers(1, 17, n),
            "capital_gain": rng.integers(0, 5000, n),
            "capital_loss": rng.integers(0, 100, n),
            "hours_per_week": rng.integers(10, 60, n),
            "workclass": rng.choice(["Private", "State-gov", None], n),
            "marital_status": rng.choice(["Married", "Never-married"], n),
            "occupation": rng.choice(["Sales", "Tech", "Craft"], n),
            "relationship": rng.choice(["Husband", "Wife", "Own-child"], n),
            "race": rng.choice(["White", "Black"], n),
            "sex": sex,
            "native_country": rng.choice(["United-States", "Mexico"], n),
        }
    )
    logit = 0.15 * (df["education_num"] - 9) + 1.0 * (sex == "Male") - 1.0
    df[F.LABEL] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return df




def test_unaware_model_ignores_sex():
    df = _toy_adult()
    model = F.fit_adult_model(df, include_sex=False)
    flipped = df.assign(sex=np.where(df["sex"] == "Male", "Female", "Male"))
    np.testing.assert_array_equal(model.predict_proba(df), model.predict_proba(flipped))
    aware = F.fit_adult_model(df, include_sex=True)
    assert not np.allclose(aware.predict_proba(df), aware.predict_proba(flipped))


# ---------------------------------------------------------------------------------- metrics


def test_selection_rate_hand_case():
    assert F.selection_rate(Y_PRED) == pytest.approx(3 / 8)
    assert F.selection_rate(Y_PRED, S, "M") == pytest.approx(0.5)
    assert F.selection_rate(Y_PRED, S, "F") == pytest.approx(0.25)
    w = np.array([1, 1, 1, 1, 3, 1, 1, 1])
    assert F.selection_rate(Y_PRED, S, "F", sample_weight=w) == pytest.approx(3 / 6)
    assert F.selection_rate(np.array([True, False])) == pytest.approx(0.5)


def test_group_metrics_hand_case():
    assert F.disparate_impact(Y_PRED, S, "M") == pytest.approx(0.5)
    assert F.statistical_parity_difference(Y_PRED, S, "M") == pytest.approx(-0.25)
    assert F.zemel_discrimination(Y_PRED, S, "M") == pytest.approx(0.25)
    # Swapping the privileged group inverts DI and flips the sign of SPD, not yDisc.
    assert F.disparate_impact(Y_PRED, S, "F") == pytest.approx(2.0)
    assert F.statistical_parity_difference(Y_PRED, S, "F") == pytest.approx(0.25)
    assert F.zemel_discrimination(Y_PRED, S, "F") == pytest.approx(0.25)
    assert F.equal_opportunity_difference(Y_TRUE, Y_PRED, S, "M") == pytest.approx(1 / 3 - 1 / 2)
    assert F.average_odds_difference(Y_TRUE, Y_PRED, S, "M") == pytest.approx(
        0.5 * ((0 - 0.5) + (1 / 3 - 1 / 2))
    )


def test_pandas_inputs_work():
    df = pd.DataFrame({"y": Y_PRED, "s": S})
    assert F.disparate_impact(df["y"], df["s"], "M") == pytest.approx(0.5)


def test_identical_groups_are_fair():
    half = np.array([1, 0, 1, 1, 0, 0])
    y = np.concatenate([half, half])
    s = np.array(["a"] * 6 + ["b"] * 6)
    assert F.disparate_impact(y, s, "a") == pytest.approx(1.0)
    assert F.statistical_parity_difference(y, s, "a") == pytest.approx(0.0)
    assert F.zemel_discrimination(y, s, "a") == pytest.approx(0.0)
    t = np.concatenate([np.array([1, 1, 0, 1, 0, 0])] * 2)
    assert F.equal_opportunity_difference(t, y, s, "a") == pytest.approx(0.0)
    assert F.average_odds_difference(t, y, s, "a") == pytest.approx(0.0)


def test_more_than_two_groups_pool_the_unprivileged():
    s = np.array(["a", "a", "b", "b", "c", "c"])
    y = np.array([1, 1, 1, 0, 0, 0])
    # unprivileged = b and c pooled: 1/4; privileged a: 1
    assert F.disparate_impact(y, s, "a") == pytest.approx(0.25)


def test_consistency_hand_case_and_self_excluded():
    X = np.array([[0.0], [1.0], [3.0], [100.0], [101.0], [103.0]])
    y = np.array([1, 1, 0, 0, 0, 0])
    # k=2 neighbours: 0->{1,3}: |1-.5|; 1->{0,3}: |1-.5|; 3->{1,0}: |0-1|; the rest 0.
    assert F.consistency(X, y, k=2) == pytest.approx(1 - 2 / 6)
    assert F.consistency(X, np.ones(6, dtype=int), k=2) == pytest.approx(1.0)
    nbrs = F.nearest_neighbors(X, k=2)
    assert not (nbrs == np.arange(6)[:, None]).any()
    assert F.consistency(None, y, neighbors=nbrs) == pytest.approx(1 - 2 / 6)


def test_consistency_matches_brute_force():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 3))
    y = rng.integers(0, 2, 60)
    d = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    nn = np.argsort(d, axis=1)[:, :5]
    expected = 1 - np.abs(y - y[nn].mean(1)).mean()
    assert F.consistency(X, y, k=5) == pytest.approx(expected)


def test_group_report_hand_case():
    rep = F.group_report(Y_TRUE, Y_PRED, S)
    assert list(rep.index) == ["F", "M"]
    m, f = rep.loc["M"], rep.loc["F"]
    assert (m["size"], m["tp"], m["fp"], m["tn"], m["fn"]) == (4, 1, 1, 1, 1)
    assert (f["size"], f["tp"], f["fp"], f["tn"], f["fn"]) == (4, 1, 0, 1, 2)
    assert m["base_rate"] == pytest.approx(0.5)
    assert f["base_rate"] == pytest.approx(0.75)
    assert m["selection_rate"] == pytest.approx(0.5)
    assert f["selection_rate"] == pytest.approx(0.25)
    assert m["tpr"] == pytest.approx(0.5)
    assert f["tpr"] == pytest.approx(1 / 3)
    assert m["fpr"] == pytest.approx(0.5)
    assert f["fpr"] == pytest.approx(0.0)
    assert m["accuracy"] == pytest.approx(0.5)
    assert f["accuracy"] == pytest.approx(0.5)


def test_summarize_agrees_with_the_metrics():
    out = F.summarize(Y_TRUE, Y_PRED, S, "M")
    assert out["accuracy"] == pytest.approx(4 / 8)
    assert out["balanced_accuracy"] == pytest.approx(0.5 * (2 / 5 + 2 / 3))
    assert out["disparate_impact"] == pytest.approx(0.5)
    assert out["equal_opportunity_difference"] == pytest.approx(-1 / 6)
    assert "consistency" not in out


# ------------------------------------------------------------------------------ mitigations


def test_reweighing_hand_case():
    y = np.array([1, 0, 0, 0, 1, 1, 0, 0])
    s = np.array(["F"] * 4 + ["M"] * 4)
    w = F.reweighing_weights(y, s)
    # W(s,y) = n_s n_y / (n n_sy): F1 = 4*3/(8*1), F0 = 4*5/(8*3), M1 = 4*3/(8*2), M0 = 4*5/(8*2)
    expected = np.array([1.5] + [5 / 6] * 3 + [0.75] * 2 + [1.25] * 2)
    np.testing.assert_allclose(w, expected)


def test_reweighing_makes_weighted_rates_equal_exactly():
    rng = np.random.default_rng(0)
    s = rng.choice(["a", "b", "c"], size=500, p=[0.5, 0.3, 0.2])
    y = (rng.random(500) < np.where(s == "a", 0.6, np.where(s == "b", 0.3, 0.1))).astype(int)
    w = F.reweighing_weights(y, s)
    assert w.sum() == pytest.approx(len(y), abs=1e-9)
    for g in ("a", "b", "c"):
        assert F.selection_rate(y, s, g, sample_weight=w) == pytest.approx(y.mean(), abs=1e-12)
    assert F.statistical_parity_difference(y, s, "a", sample_weight=w) == pytest.approx(
        0, abs=1e-12
    )
    # Strength interpolates linearly: weighted SPD = (1 - strength) * SPD.
    spd = F.statistical_parity_difference(y, s, "a")
    for a in (0.0, 0.25, 0.5, 1.5):
        wa = F.reweighing_weights(y, s, strength=a)
        got = F.statistical_parity_difference(y, s, "a", sample_weight=wa)
        assert got == pytest.approx((1 - a) * spd, abs=1e-12)
    np.testing.assert_allclose(F.reweighing_weights(y, s, strength=0), 1.0)


def _two_group_case():
    s = np.array(["M"] * 10 + ["F"] * 10)
    y = np.array([1] * 6 + [0] * 4 + [1] * 2 + [0] * 8)
    scores = np.array(
        [0.9, 0.8, 0.7, 0.6, 0.55, 0.52, 0.4, 0.3, 0.2, 0.1]  # men: positives then negatives
        + [0.95, 0.9, 0.1, 0.45, 0.2, 0.48, 0.3, 0.05, 0.15, 0.25]  # women
    )
    return y, s, scores


def test_massage_hand_case():
    y, s, scores = _two_group_case()
    # M = (n_p1 n_u - n_u1 n_p) / n = (6*10 - 2*10) / 20 = 2 pairs
    assert F.massage_count(y, s, "M") == 2
    y_m = F.massage(y, s, scores, "M")
    flipped = np.flatnonzero(y_m != y)
    # demote the two lowest-scored male positives (rows 5, 4); promote the two
    # highest-scored female negatives (rows 15: 0.48, 13: 0.45)
    assert sorted(flipped.tolist()) == [4, 5, 13, 15]
    assert y_m[[13, 15]].tolist() == [1, 1]
    assert y_m[[4, 5]].tolist() == [0, 0]
    assert y_m.sum() == y.sum()
    assert F.statistical_parity_difference(y_m, s, "M") == pytest.approx(0.0)
    assert (F.massage(y, s, scores, "M", fraction=0) == y).all()
    assert (F.massage(y, s, scores, "M", fraction=0.5) != y).sum() == 2
    # Roles swap when the "privileged" group has the lower rate.
    y_swapped = F.massage(y, s, scores, "F")
    assert (y_swapped == y_m).all()


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_massage_is_minimal_and_equalises_within_one_example(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 300))
    s = rng.choice(["p", "u"], size=n, p=[0.6, 0.4])
    y = (rng.random(n) < np.where(s == "p", 0.5, 0.2)).astype(int)
    scores = rng.random(n)
    y_m = F.massage(y, s, scores, "p")
    m = F.massage_count(y, s, "p")
    assert (y_m != y).sum() == 2 * m
    assert y_m.sum() == y.sum()
    n_p, n_u = (s == "p").sum(), (s == "u").sum()
    gap = abs(F.statistical_parity_difference(y_m, s, "p"))
    assert gap <= max(1 / n_p, 1 / n_u) + 1e-12
    # No other number of pairs (keeping the positives fixed) leaves a smaller gap.
    p1, u1 = y[s == "p"].sum(), y[s == "u"].sum()
    gaps = [abs((p1 - k) / n_p - (u1 + k) / n_u) for k in range(0, min(p1, n_u - u1) + 1)]
    assert gap == pytest.approx(min(gaps))
    assert abs((p1 - (m - 1)) / n_p - (u1 + m - 1) / n_u) > gap - 1e-12


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.33, 0.5, 1.0])
def test_demographic_parity_thresholds_hit_the_rate_within_half_an_example(rate):
    rng = np.random.default_rng(5)
    s = np.array(["a"] * 37 + ["b"] * 53)
    scores = rng.random(90) * np.where(s == "a", 1.0, 0.6)  # continuous: no ties
    th = F.group_thresholds(scores, s, rate=rate)
    y_hat = F.apply_thresholds(scores, s, th)
    for g, n_g in (("a", 37), ("b", 53)):
        # k = round(rate * n_g) selected: within half an example of the target count
        assert abs(y_hat[s == g].sum() - rate * n_g) <= 0.5
    default = F.group_thresholds(scores, s)
    y_def = F.apply_thresholds(scores, s, default)
    for g, n_g in (("a", 37), ("b", 53)):
        assert abs(y_def[s == g].sum() - (scores >= 0.5).mean() * n_g) <= 0.5


def test_group_threshold_is_the_kth_highest_score():
    scores = np.array([0.9, 0.1, 0.8, 0.3, 0.6, 0.7, 0.2, 0.4])
    s = np.array(["a"] * 4 + ["b"] * 4)
    # rate 0.5: two of each group; a's scores 0.9 0.8 0.3 0.1 -> 0.8; b's 0.7 0.6 0.4 0.2 -> 0.6
    assert F.group_thresholds(scores, s, rate=0.5) == {"a": 0.8, "b": 0.6}
    # rate 0.3: round(1.2) = 1 of each
    assert F.group_thresholds(scores, s, rate=0.3) == {"a": 0.9, "b": 0.7}
    assert F.group_thresholds(scores, s, rate=0.0) == {"a": np.inf, "b": np.inf}
    assert F.apply_thresholds(scores, s, {"a": 0.8, "b": 0.6}).tolist() == [1, 0, 1, 0, 1, 1, 0, 0]


def test_equal_opportunity_thresholds_hit_the_tpr():
    rng = np.random.default_rng(6)
    s = np.array(["a"] * 80 + ["b"] * 120)
    y = (rng.random(200) < np.where(s == "a", 0.5, 0.25)).astype(int)
    scores = np.clip(0.3 * y + rng.random(200) * np.where(s == "a", 0.8, 0.6), 0, 1)
    th = F.group_thresholds(scores, s, "equal_opportunity", y, rate=0.7)
    y_hat = F.apply_thresholds(scores, s, th)
    for g in ("a", "b"):
        pos = (s == g) & (y == 1)
        assert abs(y_hat[pos].sum() - 0.7 * pos.sum()) <= 1
    default_tpr = (scores[y == 1] >= 0.5).mean()
    th = F.group_thresholds(scores, s, "equal_opportunity", y)
    y_hat = F.apply_thresholds(scores, s, th)
    for g in ("a", "b"):
        pos = (s == g) & (y == 1)
        assert abs(y_hat[pos].sum() - default_tpr * pos.sum()) <= 1


def test_interpolate_knob():
    sweep = pd.DataFrame({"k": [0.0, 1.0, 2.0], "di": [0.3, 0.6, 1.0]})
    assert F.interpolate_knob(sweep, "k", "di", 0.8) == pytest.approx(1.5)
    assert F.interpolate_knob(sweep, "k", "di", 0.2) == pytest.approx(0.0)
    # unsorted rows are sorted by the knob first
    assert F.interpolate_knob(sweep.iloc[::-1], "k", "di", 0.45) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="never reaches"):
        F.interpolate_knob(sweep, "k", "di", 1.5)


# ------------------------------------------------------------- Zemel et al.'s three measures


def test_zemel_measures_on_probabilities_hand_case():
    y = np.array([1, 0, 1, 0])
    p = np.array([0.9, 0.2, 0.6, 0.5])
    s = np.array(["M", "M", "F", "F"])
    # yAcc = 1 - mean(|0.1|, |0.2|, |0.4|, |0.5|) = 1 - 1.2 / 4
    assert F.zemel_accuracy(y, p) == pytest.approx(0.7)
    # yDisc = |mean(0.6, 0.5) - mean(0.9, 0.2)| = |0.55 - 0.55| = 0
    assert F.zemel_discrimination(p, s, "M") == pytest.approx(0.0)
    p2 = np.array([0.9, 0.3, 0.2, 0.1])
    assert F.zemel_discrimination(p2, s, "M") == pytest.approx(0.6 - 0.15)
    # on hard decisions yAcc is the accuracy and yDisc the |SPD|
    assert F.zemel_accuracy(Y_TRUE, Y_PRED) == pytest.approx(0.5)
    assert F.zemel_discrimination(Y_PRED, S, "M") == pytest.approx(0.25)


def test_consistency_on_probabilities_matches_a_loop():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(40, 3))
    p = rng.random(40)
    d = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    total = 0.0
    for i in range(40):  # a second implementation: explicit loop over rows
        order = [j for j in np.argsort(d[i]) if j != i][:4]
        total += abs(p[i] - sum(p[j] for j in order) / 4)
    assert F.consistency(X, p, k=4) == pytest.approx(1 - total / 40)


def test_summarize_reports_zemel_measures_on_both_kinds_of_prediction():
    X = np.arange(8, dtype=float)[:, None]
    nbrs = F.nearest_neighbors(X, k=2)
    p = np.array([0.9, 0.6, 0.2, 0.1, 0.7, 0.4, 0.45, 0.3])
    out = F.summarize(Y_TRUE, Y_PRED, S, "M", neighbors=nbrs, y_score=p)
    assert out["zemel_accuracy_proba"] == pytest.approx(F.zemel_accuracy(Y_TRUE, p))
    assert out["zemel_discrimination_proba"] == pytest.approx(abs(p[4:].mean() - p[:4].mean()))
    assert out["consistency_proba"] == pytest.approx(F.consistency(X, p, k=2))
    assert out["consistency"] == pytest.approx(F.consistency(X, Y_PRED, k=2))


def test_rates_by_group_matches_group_report():
    other = 1 - Y_PRED
    out = F.rates_by_group(Y_TRUE, {"a": Y_PRED, "b": other}, S)
    assert list(out.index) == ["a", "b"]
    assert out.loc["a", ("tpr", "F")] == pytest.approx(1 / 3)
    assert out.loc["a", ("fpr", "M")] == pytest.approx(0.5)
    assert out.loc["b", ("tpr", "F")] == pytest.approx(2 / 3)
    assert out.loc["b", ("selection_rate", "M")] == pytest.approx(0.5)


# ------------------------------------------------------------------ protocol and intervals


def test_validation_split_is_stratified_disjoint_and_seeded():
    df = _toy_adult(n=400)
    fit, val = F.validation_split(df, 0.25, seed=0)
    assert len(val) == 100
    assert len(fit) == 300
    assert set(fit.index).isdisjoint(val.index)
    assert len(set(fit.index) | set(val.index)) == 400
    cells = df.groupby(["sex", F.LABEL]).size()
    got = val.groupby(["sex", F.LABEL]).size()
    # every (sex, label) cell keeps its share: within one row of 25% of the cell
    assert (abs(got - 0.25 * cells) <= 1).all()
    again, _ = F.validation_split(df, 0.25, seed=0)
    assert fit.index.equals(again.index)
    assert not fit.index.equals(F.validation_split(df, 0.25, seed=1)[0].index)


def test_bootstrap_ci_matches_the_normal_approximation():
    # Reference: for an accuracy on n rows the percentile interval approaches
    # p +/- 1.96 sqrt(p (1 - p) / n). The 2.5% quantile of B = 2000 resamples has a Monte Carlo
    # standard error of sqrt(q (1 - q) / B) / phi(1.96) sigma = 0.06 sigma; we allow 0.3 sigma
    # (5 standard errors, plus the small skew of a binomial at n = 3000).
    rng = np.random.default_rng(0)
    n = 3000
    s = rng.choice(["M", "F"], n)
    yt = rng.integers(0, 2, n)
    yp = np.where(rng.random(n) < 0.8, yt, 1 - yt)
    metrics = {"accuracy": lambda t, p, g: (t == p).mean(),
               "di": lambda t, p, g: F.disparate_impact(p, g, "M")}
    a = F.bootstrap_ci(yt, yp, s, metrics, n_boot=2000, seed=3)
    p = (yt == yp).mean()
    sigma = np.sqrt(p * (1 - p) / n)
    assert a.loc["accuracy", "estimate"] == pytest.approx(p)
    assert a.loc["accuracy", "low"] == pytest.approx(p - 1.96 * sigma, abs=0.3 * sigma)
    assert a.loc["accuracy", "high"] == pytest.approx(p + 1.96 * sigma, abs=0.3 * sigma)
    # seeded: the same seed repeats, a Generator is accepted, another seed differs
    pd.testing.assert_frame_equal(a, F.bootstrap_ci(yt, yp, s, metrics, n_boot=2000, seed=3))
    b = F.bootstrap_ci(yt, yp, s, metrics, n_boot=2000, seed=np.random.default_rng(4))
    assert not np.allclose(a[["low", "high"]], b[["low", "high"]])


def test_bootstrap_mean_ci_paired_difference():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 2000)
    a = np.where(rng.random(2000) < 0.85, y, 1 - y)
    b = a.copy()
    b[:30] = 1 - b[:30]  # b differs from a on 30 rows only
    d = (a == y).astype(float) - (b == y)
    mean, lo, hi = F.bootstrap_mean_ci(d, n_boot=2000, seed=0)
    assert mean == pytest.approx((a == y).mean() - (b == y).mean())
    # Normal reference mean +/- 1.96 sd / sqrt(n); 0.3 sd/sqrt(n) allowed (5 Monte Carlo SE,
    # as in the test above)
    se = d.std() / np.sqrt(d.size)
    assert lo == pytest.approx(mean - 1.96 * se, abs=0.3 * se)
    assert hi == pytest.approx(mean + 1.96 * se, abs=0.3 * se)
    # the paired interval is far narrower than an accuracy's own interval
    acc = F.bootstrap_mean_ci((a == y).astype(float), n_boot=2000, seed=0)
    assert hi - lo < 0.5 * (acc[2] - acc[1])
    assert F.bootstrap_mean_ci(d, n_boot=2000, seed=0) == (mean, lo, hi)


@pytest.mark.parametrize(("di", "drop", "verdict"), [
    ((0.82, 0.9), (1.0, 1.4), "met"),
    ((0.8, 0.9), (1.0, 1.5), "met"),
    ((0.79, 0.9), (1.0, 1.4), "inconclusive"),
    ((0.82, 0.9), (1.0, 1.6), "inconclusive"),
    ((0.6, 0.79), (1.0, 1.4), "not met"),
    ((0.82, 0.9), (1.51, 2.0), "not met"),
])
def test_goal_verdict(di, drop, verdict):
    assert F.goal_verdict(di, drop) == verdict




# ------------------------------------------------------------------------- sklearn plumbing


def test_sweeps_and_weights_change_the_model():
    df = _toy_adult()
    fit, val = F.validation_split(df, 0.3, seed=0)
    base = F.fit_adult_model(fit)
    scores = base.predict_proba(fit)[:, 1]
    rw = F.reweighing_sweep(fit, val, df, [0.0, 1.0])
    ms = F.massaging_sweep(fit, val, df, scores, [0.0, 1.0])
    for sweep in (rw, ms):
        assert sweep["rate_unprivileged"].iloc[1] > sweep["rate_unprivileged"].iloc[0]
        assert {"accuracy", "disparate_impact", "val_disparate_impact",
                "zemel_discrimination_proba"} <= set(sweep.columns)
    assert ms["flips"].tolist()[0] == 0
    assert ms["flips"].tolist()[1] > 0
    # a sweep's model is the same model fit_adult_model builds, graded on val and on test
    w = F.reweighing_weights(fit[F.LABEL], fit["sex"], strength=1.0)
    model = F.fit_adult_model(fit, sample_weight=w)
    direct, on_val = model.predict(df), model.predict(val)
    assert rw["accuracy"].iloc[1] == pytest.approx((direct == df[F.LABEL]).mean())
    assert rw["disparate_impact"].iloc[1] == pytest.approx(
        F.disparate_impact(direct, df["sex"], "Male"))
    assert rw["val_accuracy"].iloc[1] == pytest.approx((on_val == val[F.LABEL]).mean())
    assert rw["val_disparate_impact"].iloc[1] == pytest.approx(
        F.disparate_impact(on_val, val["sex"], "Male"))
    assert rw["zemel_accuracy_proba"].iloc[1] == pytest.approx(
        F.zemel_accuracy(df[F.LABEL], model.predict_proba(df)[:, 1]))
    y_m = F.massage(fit[F.LABEL], fit["sex"], scores, "Male")
    direct = F.fit_adult_model(fit, labels=y_m).predict(df)
    assert ms["accuracy"].iloc[1] == pytest.approx((direct == df[F.LABEL]).mean())


def test_threshold_sweep_interpolates_towards_the_group_thresholds():
    df = _toy_adult()
    scores = F.fit_adult_model(df).predict_proba(df)[:, 1]
    th = F.group_thresholds(scores, df["sex"])
    sweep = F.threshold_sweep(th, scores, df, scores, df, [0.0, 0.5, 1.0])
    assert sweep["threshold_Male"].tolist() == pytest.approx(
        [0.5, 0.5 + 0.5 * (th["Male"] - 0.5), th["Male"]])
    y_half = F.apply_thresholds(scores, df["sex"],
                                {g: 0.5 + 0.5 * (t - 0.5) for g, t in th.items()})
    assert sweep["val_disparate_impact"].iloc[1] == pytest.approx(
        F.disparate_impact(y_half, df["sex"], "Male"))
    # demographic-parity thresholds give equal selection rates within half an example per group
    n_f, n_m = (df["sex"] == "Female").sum(), (df["sex"] == "Male").sum()
    gap = abs(sweep["rate_unprivileged"].iloc[2] - sweep["rate_privileged"].iloc[2])
    assert gap <= 0.5 / n_f + 0.5 / n_m + 1e-12


def test_association_with_hand_cases():
    df = pd.DataFrame({
        "sex": ["M", "M", "F", "F"] * 5,
        "copy": ["h", "h", "w", "w"] * 5,  # determines sex: V = 1
        "indep": ["a", "b", "a", "b"] * 5,  # independent of sex: V = 0
        "x": [1.0, 3.0, 2.0, 4.0] * 5,
        "part": ["h", "h", "h", "w"] * 5,  # 2x2 table [[10, 5], [0, 5]]
    })
    out = F.association_with(df, "sex", ["copy", "indep", "x", "part"]).set_index("feature")
    out = out["value"]
    assert out["copy"] == pytest.approx(1.0)
    assert out["indep"] == pytest.approx(0.0)
    # 2x2 table [[a, b], [c, d]] = [[10, 5], [0, 5]]: phi = (ad - bc) / sqrt(row and column sums)
    assert out["part"] == pytest.approx(50 / np.sqrt(15 * 5 * 10 * 10))
    # binary group: correlation ratio = |point-biserial correlation|
    r = np.corrcoef(df["x"], df["sex"] == "M")[0, 1]
    assert out["x"] == pytest.approx(abs(r))


def test_plot_tradeoff_draws_curves_and_points():
    import matplotlib

    matplotlib.use("Agg")
    curve = pd.DataFrame({"disparate_impact": [0.3, 0.8], "accuracy": [0.85, 0.83]})
    ax = F.plot_tradeoff({"c": curve}, {"p": {"disparate_impact": 0.5, "accuracy": 0.84}},
                         baseline_accuracy=0.85)
    assert len(ax.lines) == 4  # curve, point, two reference lines
    assert ax.lines[3].get_ydata()[0] == pytest.approx(0.85 - 0.015)


# ------------------------------------------------------------------------------- bad inputs

_DF = _toy_adult(n=60)
_Y, _S, _SC = _two_group_case()
_MET = {"a": lambda t, p, g: 0.0}


@pytest.mark.parametrize("call", [
    lambda: F.disparate_impact([1, 0, 1], ["M", "F"], "M"),
    lambda: F.statistical_parity_difference([1, 0], ["M", "F", "F"], "M"),
    lambda: F.zemel_discrimination([0.2, 0.4], ["M", "F", "F"], "M"),
    lambda: F.zemel_accuracy([1, 0, 1], [0.2, 0.4]),
    lambda: F.equal_opportunity_difference([1, 0, 1], [1, 0], ["M", "F", "F"], "M"),
    lambda: F.average_odds_difference([1, 0], [1, 0], ["M"], "M"),
    lambda: F.group_report([1, 0, 1], [1, 0], ["M", "F", "F"]),
    lambda: F.rates_by_group([1, 0, 1], {"a": [1, 0]}, ["M", "F", "F"]),
    lambda: F.selection_rate([1, 0], sample_weight=[1.0]),
    lambda: F.reweighing_weights([1, 0, 1], ["M", "F"]),
    lambda: F.massage_count([1, 0, 1], ["M", "F"], "M"),
    lambda: F.massage([1, 0, 1, 0], ["M", "M", "F", "F"], [0.5, 0.5], "M"),
    lambda: F.consistency(np.zeros((3, 2)), [1, 0, 1, 0]),
    lambda: F.consistency(None, [1, 0, 1, 0], neighbors=np.zeros((3, 2), dtype=int)),
    lambda: F.group_thresholds([0.1, 0.9], ["M", "F", "F"]),
    lambda: F.group_thresholds([0.1, 0.9], ["M", "F"], "equal_opportunity", [1, 0, 1]),
    lambda: F.apply_thresholds([0.1, 0.9], ["M"], {"M": 0.5}),
    lambda: F.summarize([1, 0], [1, 0, 1], ["M", "F"], "M"),
    lambda: F.summarize([1, 0], [1, 0], ["M", "F"], "M", y_score=[0.5]),
    lambda: F.bootstrap_ci([1, 0], [1, 0, 1], ["M", "F"], _MET),
    lambda: F.fit_adult_model(_DF, labels=[0, 1]),
    lambda: F.fit_adult_model(_DF, sample_weight=[1.0, 2.0]),
    lambda: F.massaging_sweep(_DF, _DF, _DF, [0.5, 0.5], [0.0]),
    lambda: F.threshold_sweep({"Male": 0.5, "Female": 0.5}, [0.5], _DF, [0.5] * 60, _DF, [0.0]),
])
def test_length_mismatch_raises(call):
    with pytest.raises(ValueError, match="length"):
        call()


@pytest.mark.parametrize("bad", [[0, 2, 1], [0, -1]])
@pytest.mark.parametrize("fn", [
    lambda y, s: F.disparate_impact(y, s, "M"),
    lambda y, s: F.selection_rate(y),
    lambda y, s: F.reweighing_weights(y, s),
    lambda y, s: F.massage_count(y, s, "M"),
    lambda y, s: F.equal_opportunity_difference(y, [1] * len(y), s, "M"),
    lambda y, s: F.group_report([1] * len(y), y, s),
    lambda y, s: F.zemel_accuracy(y, [0.5] * len(y)),
])
def test_non_binary_labels_raise(fn, bad):
    s = ["M", "F", "M", "F"][: len(bad)]
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        fn(bad, s)


@pytest.mark.parametrize("bad", [[0.5, 1.0], [0.0, 1.0]])
def test_float_labels_are_a_type_error(bad):
    with pytest.raises(TypeError, match="y_pred must hold integers"):
        F.disparate_impact(bad, ["M", "F"], "M")


@pytest.mark.parametrize("bad", [[0.2, 1.2], [-0.1, 0.5], [0.2, np.nan]])
@pytest.mark.parametrize("fn", [
    lambda p: F.zemel_accuracy([1, 0], p),
    lambda p: F.zemel_discrimination(p, ["M", "F"], "M"),
    lambda p: F.consistency(np.array([[0.0], [1.0]]), p, k=1),
    lambda p: F.summarize([1, 0], [1, 0], ["M", "F"], "M", y_score=p),
])
def test_probabilities_outside_the_unit_interval_raise(fn, bad):
    with pytest.raises(ValueError, match="y_score"):
        fn(bad)


@pytest.mark.parametrize(("call", "exc", "match"), [
    (lambda: F.disparate_impact(["yes", "no"], ["M", "F"], "M"), TypeError, "y_pred"),
    (lambda: F.selection_rate(1), TypeError, "y_pred"),
    (lambda: F.selection_rate(None), TypeError, "y_pred"),
    (lambda: F.disparate_impact([1, 0], "MF", "M"), TypeError, "sensitive"),
    (lambda: F.zemel_discrimination("ab", ["M", "F"], "M"), TypeError, "y_score"),
    (lambda: F.reweighing_weights([1, 0, 1, 0], ["M", "M", "F", "F"], strength="full"),
     TypeError, "strength"),
    (lambda: F.reweighing_weights([1, 0, 1, 0], ["M", "M", "F", "F"], strength=True),
     TypeError, "strength"),
    (lambda: F.massage(_Y, _S, _SC, "M", fraction=None), TypeError, "fraction"),
    (lambda: F.massage(_Y, _S, "high", "M"), TypeError, "scores"),
    (lambda: F.apply_thresholds([0.2, 0.7], ["M", "F"], [0.5, 0.5]), TypeError, "thresholds"),
    (lambda: F.apply_thresholds([0.2, 0.7], ["M", "F"], {"M": "x", "F": 0.5}), TypeError,
     "thresholds"),
    (lambda: F.group_thresholds(_SC, _S, rate="half"), TypeError, "rate"),
    (lambda: F.fit_adult_model(np.zeros((3, 3))), TypeError, "train"),
    (lambda: F.adult_pipeline(include_sex="no"), TypeError, "include_sex"),
    (lambda: F.adult_pipeline(C="1"), TypeError, "C"),
    (lambda: F.nearest_neighbors(np.zeros((4, 2)), k=2.0), TypeError, "k"),
    (lambda: F.nearest_neighbors("xy"), TypeError, "X"),
    (lambda: F.bootstrap_ci(Y_TRUE, Y_PRED, S, [lambda t, p, g: 0.0]), TypeError, "metrics"),
    (lambda: F.bootstrap_ci(Y_TRUE, Y_PRED, S, _MET, n_boot=10.0), TypeError, "n_boot"),
    (lambda: F.bootstrap_ci(Y_TRUE, Y_PRED, S, _MET, seed="0"), TypeError, "seed"),
    (lambda: F.bootstrap_mean_ci([1.0, 2.0], seed=1.5), TypeError, "seed"),
    (lambda: F.bootstrap_mean_ci("12"), TypeError, "values"),
    (lambda: F.validation_split(_DF.to_numpy()), TypeError, "df"),
    (lambda: F.validation_split(_DF, seed="a"), TypeError, "seed"),
    (lambda: F.rates_by_group(Y_TRUE, [Y_PRED], S), TypeError, "predictions"),
    (lambda: F.threshold_sweep([0.5], [0.5], _DF, [0.5], _DF, [0.0]), TypeError, "thresholds"),
    (lambda: F.reweighing_sweep(_DF, "val", _DF, [0.0]), TypeError, "val"),
    (lambda: F.interpolate_knob([0, 1], "k", "di", 0.8), TypeError, "sweep"),
    (lambda: F.interpolate_knob(pd.DataFrame({"k": [0], "di": [1.0]}), "k", "di", "0.8"),
     TypeError, "target"),
    (lambda: F.association_with({"sex": [1]}, "sex", ["x"]), TypeError, "df"),
    (lambda: F.goal_verdict("ab", (1.0, 1.4)), TypeError, "di_interval"),
    (lambda: F.goal_verdict((0.8, 0.9), (1.0, 1.4), min_di="0.8"), TypeError, "min_di"),
    (lambda: F.plot_tradeoff([], {}, baseline_accuracy=0.85), TypeError, "curves"),
    (lambda: F.plot_tradeoff({}, {}, baseline_accuracy="0.85"), TypeError, "baseline_accuracy"),
])
def test_wrong_types_raise(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


_EMPTY = pd.DataFrame({"k": [], "di": []})


@pytest.mark.parametrize(("call", "match"), [
    (lambda: F.selection_rate([]), "empty"),
    (lambda: F.selection_rate([[1, 0], [0, 1]]), "1-D"),
    (lambda: F.zemel_accuracy([], []), "empty"),
    (lambda: F.disparate_impact([1, 0, 1], ["M", None, "F"], "M"), "missing"),
    (lambda: F.interpolate_knob(_EMPTY, "k", "di", 0.8), "at least one row"),
    (lambda: F.interpolate_knob(pd.DataFrame({"k": [0.0]}), "k", "di", 0.8), "missing"),
    (lambda: F.reweighing_sweep(_DF, _DF, _DF, []), "strengths must not be empty"),
    (lambda: F.massaging_sweep(_DF, _DF, _DF, np.full(60, 0.5), []), "fractions must not be"),
    (lambda: F.threshold_sweep({"Male": 0.5}, [0.5] * 60, _DF, [0.5] * 60, _DF, []),
     "strengths must not be empty"),
    (lambda: F.reweighing_sweep(_DF, _DF, _DF, [-1.0]), "strengths must hold values >= 0"),
    (lambda: F.reweighing_sweep(_DF.drop(columns="age"), _DF, _DF, [0.0]), "train must have"),
    (lambda: F.massaging_sweep(_DF, _DF, _DF, np.full(60, np.nan), [0.0]), "scores"),
    (lambda: F.rates_by_group(Y_TRUE, {"a": Y_PRED}, S, columns=["tp"]), "columns"),
    (lambda: F.rates_by_group(Y_TRUE, {"a": Y_PRED}, S, columns=[]), "columns"),
    (lambda: F.bootstrap_mean_ci([]), "values"),
    (lambda: F.bootstrap_mean_ci([1.0]), "at least 2"),
    (lambda: F.bootstrap_mean_ci([1.0, np.nan]), "values"),
    (lambda: F.bootstrap_mean_ci([1.0, 2.0], n_boot=0), "n_boot"),
    (lambda: F.bootstrap_mean_ci([1.0, 2.0], level=1.0), "level"),
    (lambda: F.bootstrap_ci(Y_TRUE, Y_PRED, S, _MET, n_boot=1), "n_boot"),
    (lambda: F.bootstrap_ci(Y_TRUE, Y_PRED, S, _MET, level=0.0), "level"),
    (lambda: F.bootstrap_ci(Y_TRUE, Y_PRED, S, _MET, seed=-1), "seed"),
    (lambda: F.validation_split(_DF, 0.0), "size"),
    (lambda: F.validation_split(_DF, 1.0), "size"),
    (lambda: F.validation_split(_DF, stratify=["nope"]), "missing"),
    (lambda: F.goal_verdict((0.9, 0.8), (1.0, 1.4)), "low <= high"),
    (lambda: F.goal_verdict((0.8, 0.9, 1.0), (1.0, 1.4)), "di_interval"),
    (lambda: F.goal_verdict((0.8, 0.9), (1.0, np.nan)), "drop_interval"),
    (lambda: F.association_with(_DF, "sex", []), "at least one"),
    (lambda: F.association_with(_DF, "sex", ["sex"]), "itself"),
    (lambda: F.association_with(_DF, "sex", ["nope"]), "missing"),
    (lambda: F.association_with(_DF.assign(age=1.0), "sex", ["age"]), "constant"),
    (lambda: F.association_with(_DF.assign(race="x"), "sex", ["race"]), "two or more"),
    (lambda: F.plot_tradeoff({"c": pd.DataFrame({"disparate_impact": [0.3]})}, {},
                             baseline_accuracy=0.85), "missing"),
    (lambda: F.plot_tradeoff({}, {}, baseline_accuracy=1.5), "baseline_accuracy"),
    (lambda: F.plot_tradeoff({}, {}, baseline_accuracy=0.8, max_drop=-0.1), "max_drop"),
])
def test_empty_shape_and_value_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize(("call", "match"), [
    (lambda: F.disparate_impact(Y_PRED, S, "X"), "privileged must be a value that occurs"),
    (lambda: F.massage(Y_TRUE, S, np.linspace(0, 1, 8), "X"), "privileged"),
    (lambda: F.massage_count(Y_TRUE, S, "X"), "privileged"),
    (lambda: F.equal_opportunity_difference(Y_TRUE, Y_PRED, S, "male"), "privileged"),
    (lambda: F.zemel_discrimination(Y_PRED, S, "X"), "privileged"),
    (lambda: F.summarize(Y_TRUE, Y_PRED, S, "X"), "privileged"),
    (lambda: F.statistical_parity_difference([1, 0], ["M", "M"], "M"), "unprivileged group"),
    (lambda: F.selection_rate(Y_PRED, S, "X"), "group must occur"),
    (lambda: F.selection_rate(Y_PRED, S), "group must be given"),
    (lambda: F.selection_rate(Y_PRED, group="M"), "group must be None"),
])
def test_unknown_privileged_and_empty_groups_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("call", [
    lambda: F.disparate_impact([0, 0, 1, 1], ["M", "M", "F", "F"], "M"),
    # no positives among the women -> TPR undefined
    lambda: F.equal_opportunity_difference([1, 0, 0, 0], [1, 0, 1, 0], ["M", "M", "F", "F"], "M"),
    # no negatives among the men -> FPR undefined
    lambda: F.average_odds_difference([1, 1, 1, 0], [1, 0, 1, 0], ["M", "M", "F", "F"], "M"),
    lambda: F.group_report([1, 1, 1, 0], [1, 0, 1, 0], ["M", "M", "F", "F"]),
    lambda: F.reweighing_weights([1, 1, 1, 0], ["M", "M", "F", "F"]),
    lambda: F.selection_rate([1, 0], sample_weight=[0.0, 0.0]),
])
def test_undefined_quantities_raise_instead_of_nan(call):
    with pytest.raises(ValueError, match="undefined"):
        call()


@pytest.mark.parametrize(("call", "match"), [
    (lambda: F.massage(_Y, _S, _SC, "M", fraction=-0.1), "fraction"),
    (lambda: F.massage(_Y, _S, _SC, "M", fraction=10), "candidates"),
    (lambda: F.massage(_Y, _S, np.full(20, np.nan), "M"), "scores"),
    (lambda: F.reweighing_weights(_Y, _S, strength=-1), "strength"),
    (lambda: F.reweighing_weights(_Y, _S, strength=np.inf), "strength"),
    (lambda: F.reweighing_weights(_Y, _S, strength=50), "weight > 0"),
    (lambda: F.selection_rate([1, 0], sample_weight=[1.0, -1.0]), "sample_weight"),
    (lambda: F.group_thresholds(_SC, _S, target="equalized_odds"), "target"),
    (lambda: F.group_thresholds(_SC, _S, target="equal_opportunity"), "y_true"),
    (lambda: F.group_thresholds(_SC, _S, rate=1.5), "rate"),
    (lambda: F.group_thresholds(np.full(20, np.nan), _S), "scores"),
    (lambda: F.group_thresholds(_SC, _S, "equal_opportunity", np.zeros(20, dtype=int)),
     "positive"),
    (lambda: F.apply_thresholds(_SC, _S, {"M": 0.5}), "every group"),
    (lambda: F.apply_thresholds([0.2, np.nan], ["M", "F"], {"M": 0.5, "F": 0.5}), "scores"),
    (lambda: F.apply_thresholds([0.2, 0.3], ["M", "F"], {"M": np.nan, "F": 0.5}), "thresholds"),
    (lambda: F.nearest_neighbors(np.zeros((4, 2)), k=4), "k must"),
    (lambda: F.nearest_neighbors(np.zeros(4), k=1), "X must be 2-D"),
    (lambda: F.consistency(np.zeros((4, 2)), [1, 0, 1, 0], k=0), "k must"),
    (lambda: F.consistency(None, [1, 0, 1, 0]), "X must be given"),
    (lambda: F.consistency(None, [1, 0, 1, 0], neighbors=np.full((4, 2), 7)), "neighbors"),
    (lambda: F.consistency(None, [1, 0, 1, 0], neighbors=np.full((4, 2), -1)), "neighbors"),
    (lambda: F.adult_pipeline(C=0), "C must"),
    (lambda: F.adult_pipeline(C=np.inf), "C must"),
    (lambda: F.fit_adult_model(pd.DataFrame({"age": [1, 2]})), "train must have"),
])
def test_bad_mitigation_arguments_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# -------------------------------------------- mutation testing (make mutation MODULES=fairness)
# Each test below fails on single-token bugs that mutmut planted and the tests above missed:
# a boundary (< for <=), a wrong parameter name in a message, a formula with / for *. Messages
# are matched from the start (^) so that a message naming the wrong parameter fails.


@pytest.mark.parametrize(("call", "error", "match"), [
    (lambda: F.selection_rate([0, 2]), ValueError, r"^y_pred must hold integers in \[0, 2\)"),
    (lambda: F.selection_rate(Y_PRED, sample_weight=[1.0, 2.0]), ValueError,
     r"^sample_weight and y_pred must have the same length"),
    (lambda: F.selection_rate(Y_PRED, group="M"), ValueError,
     r"^group must be None when sensitive is None; pass both or neither$"),
    (lambda: F.selection_rate([1, 0], sample_weight=[0.0, 0.0]), ValueError,
     r"^selection_rate is undefined: the subset it is computed on is empty$"),
    (lambda: F.selection_rate(Y_PRED, S[:3], "M"), ValueError,
     r"^sensitive and y_pred must have the same length"),
    (lambda: F.selection_rate(Y_PRED, S), ValueError,
     r"^group must be given with sensitive: the group to compute the rate of$"),
    (lambda: F.selection_rate(Y_PRED, S, "F", sample_weight=[1.0] * 4 + [0.0] * 4), ValueError,
     r"^selection rate of group 'F' is undefined"),
    (lambda: F.rates_by_group(Y_TRUE, [], S), TypeError,
     r"^predictions must be a non-empty mapping name -> decisions, got list$"),
    (lambda: F.rates_by_group(Y_TRUE, {"a": Y_PRED}, S, columns=("tp",)), ValueError,
     r"^columns must be one of"),
    (lambda: F.goal_verdict((0.9, 0.8), (1.0, 1.4)), ValueError,
     r"^di_interval must be \(low, high\) with low <= high"),
    (lambda: F.goal_verdict((0.8, 0.9), (1.4, 1.0)), ValueError,
     r"^drop_interval must be \(low, high\) with low <= high"),
    (lambda: F.goal_verdict([[0.8, 0.9]], (1.0, 1.4)), ValueError, r"^di_interval must be 1-D"),
    (lambda: F.goal_verdict((0.8, 0.9), (1.0, 1.4), min_di="a"), TypeError,
     r"^min_di must be a real number"),
    (lambda: F.goal_verdict((0.8, 0.9), (1.0, 1.4), max_drop="a"), TypeError,
     r"^max_drop must be a real number"),
    (lambda: F.interpolate_knob("sweep", "k", "di", 0.8), TypeError,
     r"^sweep must be a pandas DataFrame"),
    (lambda: F.interpolate_knob(pd.DataFrame({"k": [], "di": []}), "k", "di", 0.8), ValueError,
     r"^sweep must have at least one row, got an empty DataFrame$"),
    (lambda: F.interpolate_knob(pd.DataFrame({"k": [0.0], "di": [0.9]}), "k", "di", "a"),
     TypeError, r"^target must be a real number"),
    (lambda: F.interpolate_knob(pd.DataFrame({"k": [0.0, np.nan], "di": [0.1, 0.9]}), "k", "di",
                                0.8), ValueError, r"^sweep\['k'\] must hold finite numbers"),
    (lambda: F.interpolate_knob(pd.DataFrame({"k": [0.0, 1.0], "di": [0.1, np.nan]}), "k", "di",
                                0.8), ValueError, r"^sweep\['di'\] must hold finite numbers"),
])
def test_errors_name_the_parameter(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_group_report_sorts_mixed_groups_as_text_and_names_the_missing_class():
    s = np.array([1, 1, 1, "b", "b", "b"], dtype=object)
    y_true = np.array([1, 0, 0, 1, 0, 1])  # group 1 has exactly one positive
    y_pred = np.array([1, 0, 1, 0, 0, 1])
    report = F.group_report(y_true, y_pred, s)
    assert report.index.tolist() == [1, "b"]
    assert report.loc[1, "tpr"] == 1.0
    assert report.loc[1, "fpr"] == 0.5
    with pytest.raises(ValueError, match=r"^y_true must hold both classes in every group: group "
                                         r"'F' has no negative examples, so its TPR/FPR is "
                                         r"undefined$"):
        F.group_report([1, 0, 1, 1], [1, 0, 1, 1], ["M", "M", "F", "F"])
    with pytest.raises(ValueError, match=r"^y_true must hold both classes in every group: group "
                                         r"'F' has no positive examples, so its TPR/FPR is "
                                         r"undefined$"):
        F.group_report([1, 0, 0, 0], [1, 0, 0, 0], ["M", "M", "F", "F"])


def test_rates_by_group_accepts_every_documented_column():
    cols = ("size", "base_rate", "selection_rate", "tpr", "fpr", "accuracy")
    table = F.rates_by_group(Y_TRUE, {"a": Y_PRED}, S, columns=cols)
    report = F.group_report(Y_TRUE, Y_PRED, S)
    for c in cols:
        for g in ("F", "M"):
            assert table.loc["a", (c, g)] == pytest.approx(report.loc[g, c])


def test_goal_verdict_boundaries():
    # an interval touching the bound from the right side is not "entirely on the wrong side"
    assert F.goal_verdict((0.7, 0.8), (1.0, 1.4)) == "inconclusive"
    assert F.goal_verdict((0.82, 0.9), (1.5, 2.0)) == "inconclusive"
    assert F.goal_verdict((0.85, 0.85), (1.0, 1.0)) == "met"  # a zero-width interval is valid


def test_interpolate_knob_scales_with_the_knob_spacing_and_reaches_the_last_row():
    sweep = pd.DataFrame({"k": [0.0, 2.0, 4.0], "di": [0.3, 0.6, 1.0]})
    # between (2, 0.6) and (4, 1.0): 2 + (0.8 - 0.6) * (4 - 2) / (1.0 - 0.6) = 3
    assert F.interpolate_knob(sweep, "k", "di", 0.8) == pytest.approx(3.0)
    assert F.interpolate_knob(sweep, "k", "di", 1.0) == pytest.approx(4.0)


def test_group_report_index_and_nearest_neighbors_defaults():
    assert F.group_report(Y_TRUE, Y_PRED, S).index.name == "group"
    x = np.arange(14.0).reshape(7, 2)
    assert F.nearest_neighbors(x).shape == (7, 5)  # k = 5 by default
    line = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]])  # no ties: 0 <-> 1, 3 -> 1
    np.testing.assert_array_equal(F.nearest_neighbors(line, k=1).ravel(), [1, 0, 1])
    with pytest.raises(ValueError, match=r"^k must be smaller than the number of rows of X "
                                         r"\(3\), got 3$"):
        F.nearest_neighbors(np.zeros((3, 2)), k=3)
    with pytest.raises(ValueError, match=r"^X must be 2-D"):
        F.nearest_neighbors(np.zeros(3))


def _small_split():
    """8 rows with the two columns threshold_sweep needs, and scores that rank them."""
    df = pd.DataFrame({"sex": ["Male"] * 4 + ["Female"] * 4,
                       F.LABEL: [1, 0, 1, 0, 1, 1, 0, 0]})
    scores = np.array([0.9, 0.6, 0.4, 0.2, 0.7, 0.45, 0.3, 0.1])
    return df, scores


def _more_bad_calls():
    df, sc = _small_split()
    th = {"Male": 0.5, "Female": 0.4}
    x4 = np.arange(8.0).reshape(4, 2)
    return [
        (lambda: F.apply_thresholds(sc, df["sex"][:3], th), ValueError,
         r"^sensitive and scores must have the same length"),
        (lambda: F.apply_thresholds(sc, df["sex"], [0.5]), TypeError,
         r"^thresholds must be a mapping group -> threshold, got list$"),
        (lambda: F.apply_thresholds(np.zeros((8, 1)), df["sex"], th), ValueError,
         r"^scores must be 1-D"),
        (lambda: F.group_thresholds(np.zeros((8, 1)), df["sex"]), ValueError,
         r"^scores must be 1-D"),
        (lambda: F.group_thresholds(sc, df["sex"][:3]), ValueError,
         r"^sensitive and scores must have the same length"),
        (lambda: F.group_thresholds(sc, df["sex"], "parity"), ValueError,
         r"^target must be one of"),
        (lambda: F.group_thresholds(sc, df["sex"], "equal_opportunity"), ValueError,
         r"^y_true must be given when target='equal_opportunity'$"),
        (lambda: F.group_thresholds(sc, df["sex"], y_true=[2] * 8), ValueError,
         r"^y_true must hold integers in \[0, 2\)"),
        (lambda: F.group_thresholds(sc, df["sex"], y_true=[1] * 3), ValueError,
         r"^y_true and scores must have the same length"),
        (lambda: F.threshold_sweep({}, sc, df, sc, df, [0.0]), TypeError,
         r"^thresholds must be a non-empty mapping group -> threshold, got dict$"),
        (lambda: F.threshold_sweep({"Male": "a"}, sc, df, sc, df, [0.0]), TypeError,
         r"^thresholds\['Male'\] must be a real number"),
        (lambda: F.threshold_sweep(th, sc, "val", sc, df, [0.0]), TypeError,
         r"^val must be a pandas DataFrame"),
        (lambda: F.threshold_sweep(th, sc, df[["sex"]], sc, df, [0.0]), ValueError,
         r"^val must have the columns"),
        (lambda: F.threshold_sweep(th, sc, df, sc, "test", [0.0]), TypeError,
         r"^test must be a pandas DataFrame"),
        (lambda: F.threshold_sweep(th, sc, df, sc, df[["sex"]], [0.0]), ValueError,
         r"^test must have the columns"),
        (lambda: F.threshold_sweep(th, sc + 1, df, sc, df, [0.0]), ValueError,
         r"^scores_val must hold values <= 1"),
        (lambda: F.threshold_sweep(th, sc, df, sc + 1, df, [0.0]), ValueError,
         r"^scores_test must hold values <= 1"),
        (lambda: F.threshold_sweep(th, sc[:3], df, sc, df, [0.0]), ValueError,
         r"^scores_val and val must have the same length"),
        (lambda: F.threshold_sweep(th, sc, df, sc[:3], df, [0.0]), ValueError,
         r"^scores_test and test must have the same length"),
        (lambda: F.consistency(None, sc), ValueError,
         r"^X must be given when neighbors is None \(or pass neighbors from "
         r"nearest_neighbors\)$"),
        (lambda: F.consistency(np.zeros(8), sc), ValueError, r"^X must be 2-D"),
        (lambda: F.consistency(x4, sc), ValueError,
         r"^X and y_score must have the same length"),
        (lambda: F.consistency(x4, [0.5, 2.0, 0.0, 0.0]), ValueError,
         r"^y_score must hold values <= 1"),
        (lambda: F.consistency(None, sc[:4], neighbors=[1, 0, 1, 2]), ValueError,
         r"^neighbors must be 2-D"),
        (lambda: F.consistency(None, sc[:4], neighbors=[[1], [0], [-1], [2]]), ValueError,
         r"^neighbors must hold values >= 0"),
        (lambda: F.consistency(None, sc[:4], neighbors=[[1], [0], [4], [2]]), ValueError,
         r"^neighbors must hold values <= 3"),
        (lambda: F.consistency(None, sc[:4], neighbors=[[1], [0], [1]]), ValueError,
         r"^neighbors and y_score must have the same length"),
        (lambda: F.association_with("df", "sex", ["x"]), TypeError,
         r"^df must be a pandas DataFrame"),
        (lambda: F.association_with(df, "sex", []), ValueError,
         r"^features must name at least one column$"),
        (lambda: F.association_with(df.assign(c=1.0), "sex", ["c"]), ValueError,
         r"^features must not be constant: 'c' has an undefined correlation ratio$"),
    ]


@pytest.mark.parametrize("case", range(len(_more_bad_calls())))
def test_more_errors_name_the_parameter(case):
    call, error, match = _more_bad_calls()[case]
    with pytest.raises(error, match=match):
        call()


def test_association_with_unequal_groups_measures_and_order():
    # groups of 3 and 1: the correlation ratio weights each group mean by its size
    df = pd.DataFrame({"g": ["a", "a", "a", "b"], "x": [0.0, 1.0, 2.0, 5.0],
                       "c": ["u", "u", None, "v"]})
    out = F.association_with(df, "g", ["x", "c"])
    assert list(out.columns) == ["feature", "measure", "value"]
    assert out.index.tolist() == [0, 1]
    # mean 2, group means 1 and 5: between = 3 * 1 + 1 * 9 = 12, total = 4 + 1 + 0 + 9 = 14
    x_row = out.set_index("feature").loc["x"]
    assert x_row["value"] == pytest.approx(np.sqrt(12 / 14))
    assert x_row["measure"] == "correlation ratio"
    assert out.set_index("feature").loc["c", "measure"] == "Cramér's V"
    assert out["value"].is_monotonic_decreasing
    assert out["value"].iloc[0] > out["value"].iloc[1]


def test_consistency_default_k_and_threshold_sweep_columns():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 2))
    y = (rng.random(12) > 0.5).astype(int)
    assert F.consistency(x, y) == F.consistency(None, y, neighbors=F.nearest_neighbors(x, 5))
    df, sc = _small_split()
    th = {"Male": 0.5, "Female": 0.4}
    nbrs = F.nearest_neighbors(sc.reshape(-1, 1), k=2)
    sweep = F.threshold_sweep(th, sc, df, sc, df, [1.0], neighbors=nbrs)
    y_hat = F.apply_thresholds(sc, df["sex"], th)
    assert sweep["strength"].tolist() == [1.0]
    assert sweep["val_accuracy"].iloc[0] == pytest.approx(np.mean(y_hat == df[F.LABEL]))
    assert sweep["consistency"].iloc[0] == pytest.approx(F.consistency(None, y_hat,
                                                                       neighbors=nbrs))


def test_group_threshold_edge_cases_and_bootstrap_defaults():
    # a score of exactly 0.5 is a positive decision (scores >= 0.5) in the default rate
    th = F.group_thresholds([0.5, 0.5, 0.2, 0.1], ["a", "b", "a", "b"])
    assert th == {"a": 0.5, "b": 0.5}
    # a group with a single positive example is enough for equal opportunity
    th = F.group_thresholds([0.9, 0.2, 0.7, 0.6], ["a", "a", "b", "b"], "equal_opportunity",
                            y_true=[1, 0, 1, 1], rate=1.0)
    assert th == {"a": 0.9, "b": 0.6}
    with pytest.raises(ValueError, match=r"^y_true must hold positive examples in every group: "
                                         r"group 'a' has none to set its threshold on "
                                         r"\(target=equal_opportunity\)$"):
        F.group_thresholds([0.9, 0.2, 0.7], ["a", "a", "b"], "equal_opportunity",
                           y_true=[0, 0, 1])
    with pytest.raises(ValueError, match=r"^y_true must hold positive examples: the TPR is "
                                         r"undefined$"):
        F.group_thresholds([0.9, 0.2], ["a", "b"], "equal_opportunity", y_true=[0, 0])
    with pytest.raises(ValueError, match=r"^rate must be a number"):
        F.group_thresholds([0.9, 0.2], ["a", "b"], rate=2.0)
    v = np.random.default_rng(0).normal(size=30)
    assert F.bootstrap_mean_ci(v) == F.bootstrap_mean_ci(v, n_boot=1000, level=0.95, seed=0)
    with pytest.raises(ValueError, match=r"^values must be 1-D"):
        F.bootstrap_mean_ci(np.zeros((3, 2)))


# ------------------------------------------------- mutation testing (issue 17): closing gaps


def _bad_input_cases():
    """Each error must name the right parameter from the start of its message."""
    y2, s2 = np.array([1, 0]), np.array(["M", "F"])
    w0u = [1.0] * 4 + [0.0] * 4  # S is 4 "M" then 4 "F": the unprivileged group weighs 0
    w0p = [0.0] * 4 + [1.0] * 4
    eleven = [f"g{i:02d}" for i in range(11)]
    ab, ys = ["a", "a", "b", "b"], [1, 0, 1, 0]
    sc4 = [0.1, 0.2, 0.3, 0.4]
    df, sc = _DF, np.linspace(0.0, 1.0, len(_DF))
    return [
        (lambda: F.selection_rate(Y_PRED, S.reshape(-1, 1), "M"), r"^sensitive must be 1-D"),
        (lambda: F.selection_rate([1], [], "M"), r"^sensitive must not be empty"),
        (lambda: F.selection_rate([1, 0], ["M", None], "M"),
         r"^sensitive must have a group for every row, got missing values$"),
        (lambda: F.selection_rate(Y_PRED, sample_weight=np.ones((8, 1))),
         r"^sample_weight must be 1-D"),
        (lambda: F.selection_rate(Y_PRED, sample_weight=-np.ones(8)),
         r"^sample_weight must hold values >= 0"),
        (lambda: F.disparate_impact(Y_PRED, S, "X"),
         r"^privileged must be a value that occurs in sensitive \['M', 'F'\], got 'X'$"),
        # only the first 10 groups are listed
        (lambda: F.disparate_impact(np.ones(11, int), eleven, "zz"),
         r"^privileged must be a value that occurs in sensitive \['g00', 'g01', 'g02', 'g03', "
         r"'g04', 'g05', 'g06', 'g07', 'g08', 'g09'\], got 'zz'$"),
        (lambda: F.equal_opportunity_difference([2, 0], y2, s2, "M"),
         r"^y_true must hold integers in \[0, 2\)"),
        (lambda: F.equal_opportunity_difference(y2, [2, 0], s2, "M"),
         r"^y_pred must hold integers in \[0, 2\)"),
        (lambda: F.equal_opportunity_difference([1, 0, 1], y2, s2, "M"),
         r"^y_true and y_pred must have the same length"),
        (lambda: F.equal_opportunity_difference(y2, y2, ["M", "F", "F"], "M"),
         r"^sensitive and y_true must have the same length"),
        (lambda: F.zemel_accuracy([1, 0, 1], [0.5, 0.5]),
         r"^y_true and y_score must have the same length"),
        (lambda: F.zemel_accuracy([1, 0], [0.5, 2.0]), r"^y_score must hold values <= 1"),
        (lambda: F.zemel_accuracy([1, 0], [[0.5], [0.5]]), r"^y_score must be 1-D"),
        (lambda: F.consistency(np.array(1.0), [0.5]), r"^X must be 2-D"),
        (lambda: F.zemel_discrimination([0.5, 2.0], s2, "M"), r"^y_score must hold values <= 1"),
        (lambda: F.statistical_parity_difference([2, 0], s2, "M"),
         r"^y_pred must hold integers in \[0, 2\)"),
        (lambda: F.disparate_impact(y2, ["M"], "M"),
         r"^sensitive and y_pred must have the same length"),
        (lambda: F.disparate_impact(y2, s2, "M", sample_weight=[1.0]),
         r"^sample_weight and y_pred must have the same length"),
        (lambda: F.disparate_impact(Y_PRED, S, "M", sample_weight=w0u),
         r"^selection rate of the unprivileged group is undefined: the subset it is computed "
         r"on is empty$"),
        (lambda: F.disparate_impact(Y_PRED, S, "M", sample_weight=w0p),
         r"^selection rate of the privileged group is undefined"),
        (lambda: F.disparate_impact([1, 0, 0, 0], ab, "b"),
         r"^disparate impact is undefined: the privileged group's selection rate is 0$"),
        # a group without positives (TPR) or without negatives (FPR), on each side
        (lambda: F.equal_opportunity_difference([1, 0, 0, 0], ys, ab, "a"),
         r"^true positive rate of the unprivileged group \(no y_true == 1 there\) is "
         r"undefined: the subset it is computed on is empty$"),
        (lambda: F.equal_opportunity_difference([0, 0, 1, 0], ys, ab, "a"),
         r"^true positive rate of the privileged group \(no y_true == 1 there\) is undefined"),
        (lambda: F.average_odds_difference([1, 0, 1, 1], ys, ab, "a"),
         r"^false positive rate of the unprivileged group \(no y_true == 0 there\) is "
         r"undefined"),
        (lambda: F.average_odds_difference([1, 1, 1, 0], ys, ab, "a"),
         r"^false positive rate of the privileged group \(no y_true == 0 there\) is undefined"),
        # tp == fn == 1 in group a: the message must say "negative", not "positive"
        (lambda: F.group_report([1, 1, 1, 0], ys, ab),
         r"^y_true must hold both classes in every group: group 'a' has no negative examples"),
        (lambda: F.reweighing_weights([2, 0], s2), r"^y must hold integers in \[0, 2\)"),
        (lambda: F.reweighing_weights(y2, ["M"]), r"^sensitive and y must have the same length"),
        (lambda: F.reweighing_weights(ys, ab, strength=-0.5),
         r"^strength must be a number >= 0"),
        (lambda: F.massage_count([2, 0], s2, "M"), r"^y must hold integers in \[0, 2\)"),
        (lambda: F.massage_count(y2, ["M"], "M"), r"^sensitive and y must have the same length"),
        (lambda: F.massage([2, 0, 1, 0], ab, sc4, "a"), r"^y must hold integers in \[0, 2\)"),
        (lambda: F.massage(ys, ["a"], sc4, "a"), r"^sensitive and y must have the same length"),
        (lambda: F.massage(ys, ab, np.ones((4, 1)), "a"), r"^scores must be 1-D"),
        (lambda: F.massage(ys, ab, [0.1, 0.2], "a"), r"^scores and y must have the same length"),
        (lambda: F.massage(ys, ab, sc4, "a", fraction=-1), r"^fraction must be a number >= 0"),
        (lambda: F.summarize(y2, y2, s2, "F", y_score=[0.5, 2.0]),
         r"^y_score must hold values <= 1"),
        (lambda: F.summarize(y2, y2, s2, "F", y_score=[0.5]),
         r"^y_score and y_true must have the same length"),
        (lambda: F.bootstrap_ci(y2, y2, s2, _MET, n_boot=1), r"^n_boot must be an integer >= 2"),
        (lambda: F.bootstrap_ci(y2, y2, s2, _MET, level=1.0), r"^level must be a number"),
        (lambda: F.bootstrap_ci(y2, y2, s2, []),
         r"^metrics must be a non-empty mapping name -> fn\(y_true, y_pred, sensitive\), got "
         r"list$"),
        (lambda: F.validation_split(df[["age"]]), r"^df must have the columns"),
        (lambda: F.adult_pipeline(include_sex=1), r"^include_sex must be True or False"),
        (lambda: F.fit_adult_model(df, labels=[2] * len(df)),
         r"^labels must hold integers in \[0, 2\)"),
        (lambda: F.fit_adult_model(df.assign(**{F.LABEL: 2})),
         r"^train\[LABEL\] must hold integers in \[0, 2\)"),
        (lambda: F.fit_adult_model(df, labels=[0, 1]), r"^labels and train must have the same "
                                                       r"length"),
        (lambda: F.fit_adult_model(df, sample_weight=[1.0, 2.0]),
         r"^sample_weight and train must have the same length"),
        (lambda: F.reweighing_sweep(df, "val", df, [0.0]), r"^val must be a pandas DataFrame"),
        (lambda: F.reweighing_sweep(df, df, "test", [0.0]), r"^test must be a pandas DataFrame"),
        (lambda: F.reweighing_sweep(df.assign(**{F.LABEL: 2}), df, df, [0.0]),
         r"^train\[LABEL\] must hold integers in \[0, 2\)"),
        (lambda: F.reweighing_sweep(df, df, df, [[0.0, 1.0]]), r"^strengths must be 1-D"),
        (lambda: F.massaging_sweep(df.assign(**{F.LABEL: 2}), df, df, sc, [0.0]),
         r"^train\[LABEL\] must hold integers in \[0, 2\)"),
        (lambda: F.massaging_sweep(df, df, df, sc.reshape(-1, 1), [0.0]),
         r"^scores must be 1-D"),
        (lambda: F.massaging_sweep(df, df, df, sc[:3], [0.0]),
         r"^scores and train must have the same length"),
        (lambda: F.plot_tradeoff([], {}, baseline_accuracy=0.8),
         r"^curves must be a mapping name -> data, got list$"),
        (lambda: F.plot_tradeoff({}, [], baseline_accuracy=0.8),
         r"^points must be a mapping name -> data, got list$"),
        (lambda: F.plot_tradeoff({}, {}, baseline_accuracy=2.0),
         r"^baseline_accuracy must be a number"),
        (lambda: F.plot_tradeoff({}, {}, baseline_accuracy=0.8, max_drop=2.0),
         r"^max_drop must be a number"),
        (lambda: F.plot_tradeoff({"c": pd.DataFrame({"accuracy": [0.8]})}, {},
                                 baseline_accuracy=0.8),
         r"^curves\['c'\] must have the columns"),
    ]


@pytest.mark.parametrize("case", range(len(_bad_input_cases())))
def test_errors_name_the_parameter_from_the_start(case):
    call, match = _bad_input_cases()[case]
    with pytest.raises((TypeError, ValueError), match=match):
        call()


@pytest.mark.parametrize("size", [0.0, 1.0, -0.1, 1.5])
def test_validation_split_size_must_lie_strictly_between_0_and_1(size):
    with pytest.raises(ValueError, match=r"^size must be a number > 0 and < 1, got "):
        F.validation_split(_DF, size)


def test_metrics_use_the_sample_weights():
    # weights 3 on row 4 (a selected woman): women 3/6, men 2/4 -> DI 1, SPD 0, yDisc 0
    w = np.array([1, 1, 1, 1, 3, 1, 1, 1])
    assert F.disparate_impact(Y_PRED, S, "M", sample_weight=w) == pytest.approx(1.0)
    assert F.statistical_parity_difference(Y_PRED, S, "M", sample_weight=w) == pytest.approx(0.0)
    assert F.zemel_discrimination(Y_PRED, S, "M", sample_weight=w) == pytest.approx(0.0)
    # probabilities: women (0.2, 0.4) weighted 1 and 3 -> 0.35; men 0.5 -> yDisc 0.15
    p = [0.5, 0.5, 0.2, 0.4]
    assert F.zemel_discrimination(p, ["M", "M", "F", "F"], "M",
                                  sample_weight=[1, 1, 1, 3]) == pytest.approx(0.15)


def test_boolean_scores_equal_their_0_1_floats():
    b = np.array([True, True, False, False, True, False, False, False])
    assert F.zemel_discrimination(b, S, "M") == pytest.approx(0.25)
    assert F.zemel_accuracy(Y_TRUE, b) == pytest.approx(0.5)
    assert F.consistency(None, b, neighbors=[[1], [0], [3], [2], [5], [4], [7], [6]]) == 0.75


def test_reweighing_refuses_a_strength_that_makes_a_weight_exactly_zero():
    # group a: 2 rows, 1 positive; group b: 6 rows, 1 positive; n = 8, n_1 = 2
    # W(a, 1) = 2 * 2 / (8 * 1) = 1/2, so strength 2 gives 1 + 2 (1/2 - 1) = 0 exactly
    y = [1, 0, 1, 0, 0, 0, 0, 0]
    s = ["a", "a", "b", "b", "b", "b", "b", "b"]
    with pytest.raises(ValueError, match=r"^strength must keep every weight > 0; 2 makes some "
                                         r"<= 0$"):
        F.reweighing_weights(y, s, strength=2.0)
    # strength 1.5: W(a,1) -> 0.25, W(a,0) = 12/8 -> 1.75, W(b,1) = 12/8 -> 1.75,
    # W(b,0) = 36/40 -> 0.85
    np.testing.assert_allclose(F.reweighing_weights(y, s, strength=1.5),
                               [0.25, 1.75, 1.75] + [0.85] * 5)


def test_massage_at_the_limit_of_the_candidates():
    s = np.array(["p"] * 6 + ["u"] * 4)
    # p: 5 of 6 positive, u: 2 of 4 -> M = (5 * 4 - 2 * 6) / 10 = 0.8 -> 1
    y = np.array([1, 1, 1, 1, 1, 0, 1, 1, 0, 0])
    sc = np.array([0.9, 0.3, 0.8, 0.2, 0.7, 0.1, 0.9, 0.8, 0.4, 0.6])
    assert F.massage_count(y, s, "p") == 1
    # 2 pairs use both unprivileged negatives (rows 8, 9): exactly enough
    y2 = F.massage(y, s, sc, "p", fraction=2.0)
    assert np.flatnonzero(y2 != y).tolist() == [1, 3, 8, 9]
    # 3 pairs: 3 demotions are available, 2 promotions are not enough
    with pytest.raises(ValueError, match=r"^fraction must leave enough candidates: 3 pairs "
                                         r"cannot be flipped \(2 to promote, 5 to demote\)$"):
        F.massage(y, s, sc, "p", fraction=3.0)
    # the other way round: p has 2 positives of 3, u 1 of 6 -> M = (2 * 6 - 1 * 3) / 9 = 1
    s = np.array(["p"] * 3 + ["u"] * 6)
    y = np.array([1, 1, 0, 1, 0, 0, 0, 0, 0])
    sc = np.array([0.9, 0.2, 0.5, 0.9, 0.1, 0.6, 0.3, 0.7, 0.2])
    y2 = F.massage(y, s, sc, "p", fraction=2.0)  # both privileged positives demoted
    assert np.flatnonzero(y2 != y).tolist() == [0, 1, 5, 7]
    with pytest.raises(ValueError, match=r"\(5 to promote, 2 to demote\)$"):
        F.massage(y, s, sc, "p", fraction=3.0)


def test_massage_breaks_ties_by_row_order():
    # 40 rows with three distinct scores: numpy's default (unstable) sort orders ties
    # differently (on both sides with this seed, on the CPUs tried). Reference: Python's
    # sorted() on (score, row) keys.
    rng = np.random.default_rng(0)
    s = np.array(["p", "u"] * 20)
    y = np.where(s == "p", rng.random(40) < 0.8, rng.random(40) < 0.2).astype(int)
    sc = rng.choice([0.2, 0.5, 0.8], 40)
    m = F.massage_count(y, s, "p")
    assert m >= 3
    up = sorted((i for i in range(40) if s[i] == "u" and y[i] == 0), key=lambda i: (-sc[i], i))
    down = sorted((i for i in range(40) if s[i] == "p" and y[i] == 1), key=lambda i: (sc[i], i))
    assert np.flatnonzero(F.massage(y, s, sc, "p") != y).tolist() == sorted(up[:m] + down[:m])


def test_interpolate_knob_returns_the_first_row_when_it_meets_the_target_exactly():
    sweep = pd.DataFrame({"k": [0.0, 1.0, 2.0], "di": [0.8, 0.5, 0.9]})
    assert F.interpolate_knob(sweep, "k", "di", 0.8) == 0.0


def test_summarize_keys_and_values():
    out = F.summarize(Y_TRUE, Y_PRED, S, "M")
    assert set(out) == {"accuracy", "balanced_accuracy", "rate_unprivileged", "rate_privileged",
                        "disparate_impact", "statistical_parity_difference",
                        "zemel_discrimination", "equal_opportunity_difference",
                        "average_odds_difference"}
    assert out["statistical_parity_difference"] == pytest.approx(-0.25)
    assert out["zemel_discrimination"] == pytest.approx(0.25)
    assert out["average_odds_difference"] == pytest.approx(0.5 * ((0 - 0.5) + (1 / 3 - 1 / 2)))


def test_bootstraps_are_scipy_percentile_intervals_with_the_given_settings():
    from scipy import stats

    rng = np.random.default_rng(0)
    y = (rng.random(40) < 0.5).astype(int)
    p = rng.random(40)  # probabilities are accepted
    s = np.array(["M", "F"] * 20)
    calls = []

    def metric(t, q, g):
        calls.append(1)
        return float(np.mean(q))

    out = F.bootstrap_ci(y, p, s, {"m": metric}, n_boot=37, level=0.6, seed=5)
    assert len(calls) == 37 + 1  # one per resample, one for the estimate
    ref = stats.bootstrap((p,), np.mean, n_resamples=37, confidence_level=0.6,
                          method="percentile", rng=np.random.default_rng(5))
    assert out.loc["m", "estimate"] == pytest.approx(p.mean())
    assert out.loc["m", "low"] == pytest.approx(ref.confidence_interval.low)
    assert out.loc["m", "high"] == pytest.approx(ref.confidence_interval.high)
    mean, low, high = F.bootstrap_mean_ci(p, n_boot=37, level=0.6, seed=5)
    assert (low, high) == pytest.approx((ref.confidence_interval.low,
                                         ref.confidence_interval.high))
    # defaults: 1000 resamples, 95%, seed 0
    small = {"m": lambda t, q, g: float(np.mean(q))}
    ref = stats.bootstrap((p,), np.mean, n_resamples=1000, confidence_level=0.95,
                          method="percentile", rng=np.random.default_rng(0))
    got = F.bootstrap_ci(y, p, s, small)
    assert got.loc["m", "low"] == pytest.approx(ref.confidence_interval.low)
    assert got.loc["m", "high"] == pytest.approx(ref.confidence_interval.high)
    # an integer-valued metric still gives a float table
    assert F.bootstrap_ci(y, p, s, {"n": lambda t, q, g: 1}, n_boot=2)["estimate"].dtype == float


def test_validation_split_is_scikit_learns_split_with_joined_strata():
    from sklearn.model_selection import train_test_split

    rng = np.random.default_rng(1)
    # "a" is a prefix of "ab": the joined strata's sort order depends on the separator
    df = pd.DataFrame({"g": rng.choice(["a", "ab"], 60), "y": rng.integers(0, 2, 60),
                       "x": np.arange(60)})
    state = int(np.random.default_rng(7).integers(2**31 - 1))
    strata = df["g"] + "|" + df["y"].astype(str)
    _, ref = train_test_split(df, test_size=0.4, stratify=strata, random_state=state)
    fit, val = F.validation_split(df, 0.4, seed=7, stratify=("g", "y"))
    assert len(val) == 24
    default = F.validation_split(df, 0.4, stratify=("g", "y"))[1]  # seed 0 by default
    assert default.index.tolist() == F.validation_split(df, 0.4, seed=0,
                                                        stratify=("g", "y"))[1].index.tolist()
    assert default.index.tolist() != F.validation_split(df, 0.4, seed=1,
                                                        stratify=("g", "y"))[1].index.tolist()
    assert val.index.tolist() == ref.index.tolist()
    _, ref = train_test_split(df, test_size=0.4, random_state=state)
    assert F.validation_split(df, 0.4, seed=7, stratify=())[1].index.tolist() == \
        ref.index.tolist()


def test_adult_pipeline_parameters():
    pipe = F.adult_pipeline(C=0.5)
    clf = pipe.named_steps["clf"]
    assert (clf.C, clf.solver, clf.max_iter) == (0.5, "newton-cholesky", 100)
    pre = pipe.named_steps["features"]
    assert [(name, cols) for name, _, cols in pre.transformers] == [
        ("num", F.NUMERIC), ("cat", F.CATEGORICAL)]
    cat = pre.transformers[1][1]
    assert list(cat.named_steps) == ["impute", "onehot"]
    df = _DF.copy()
    x = pipe.fit(df, df[F.LABEL]).named_steps["features"].transform(df)
    assert isinstance(x, np.ndarray)  # dense
    # the one-hot step itself is dense too (on the full Adult data the stacked matrix is
    # sparse enough for ColumnTransformer to return a sparse matrix otherwise)
    cat_step = pipe.named_steps["features"].named_transformers_["cat"]
    assert isinstance(cat_step.transform(df[F.CATEGORICAL]), np.ndarray)
    enc = pre.named_transformers_["cat"].named_steps["onehot"]
    assert "missing" in enc.categories_[0]  # workclass has None values
    # an unseen category is encoded as all zeros, not an error
    unseen = df.assign(occupation="Astronaut")
    assert pipe.predict_proba(unseen).shape == (len(df), 2)
    assert F.fit_adult_model(df, C=0.01).named_steps["clf"].C == 0.01


def test_fits_run_blas_on_one_thread_only():
    from threadpoolctl import threadpool_info, threadpool_limits

    with threadpool_limits(limits=2):
        with F._one_blas_thread():
            info = threadpool_info()
            assert {i["num_threads"] for i in info if i["user_api"] == "blas"} == {1}
            other = {i["num_threads"] for i in info if i["user_api"] != "blas"}
            assert other <= {2}


def test_sweeps_report_their_knob_progress_and_consistency(monkeypatch):
    import tqdm.auto

    bars = []

    def fake_tqdm(values, desc=None, leave=True):
        bars.append((desc, leave))
        return values

    monkeypatch.setattr(tqdm.auto, "tqdm", fake_tqdm)
    df = _toy_adult(n=120)
    nbrs = F.nearest_neighbors(df[F.NUMERIC].to_numpy(float), 3)
    rw = F.reweighing_sweep(df, df, df, [0.0, 0.5], neighbors=nbrs)
    ms = F.massaging_sweep(df, df, df, np.linspace(0, 1, 120), [0.0], neighbors=nbrs)
    assert bars == [("reweighing sweep", False), ("massaging sweep", False)]
    assert rw["strength"].tolist() == [0.0, 0.5]
    assert ms["fraction"].tolist() == [0.0]
    for sweep in (rw, ms):
        assert {"consistency", "consistency_proba", "zemel_accuracy_proba"} <= set(sweep.columns)
    base = F.fit_adult_model(df)
    assert rw["consistency"].iloc[0] == pytest.approx(
        F.consistency(None, base.predict(df), neighbors=nbrs))


def test_plot_tradeoff_title_labels_legend_and_style():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = pd.DataFrame({"disparate_impact": [0.3, 0.8], "accuracy": [0.85, 0.83]})
    points = {f"p{i}": {"disparate_impact": 0.1 * i, "accuracy": 0.8} for i in range(13)}
    ax = F.plot_tradeoff({"c": curve}, points, baseline_accuracy=0.85, max_drop=0.1)
    assert ax.get_title() == "Accuracy vs disparate impact on UCI Adult (test split)"
    assert ax.get_xlabel() == "disparate impact on the test split (women / men selection rate)"
    assert ax.get_ylabel() == "test accuracy"
    assert tuple(ax.figure.get_size_inches()) == (8, 5)
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == [
        "c (sweep)", *points, "four-fifths rule (DI = 0.8)", "baseline accuracy - 10.0 points"]
    assert legend._loc == 3  # "lower left"
    assert {t.get_fontsize() for t in legend.get_texts()} == {8}
    line = ax.lines[0]
    assert line.get_xdata().tolist() == [0.3, 0.8]
    assert line.get_ydata().tolist() == [0.85, 0.83]
    assert (line.get_marker(), line.get_linestyle(), line.get_alpha()) == (".", "-", 0.6)
    marks = ax.lines[1:14]
    # 12 distinct markers, then "o" again
    assert [m.get_marker() for m in marks] == [*"osD^vP*Xh<>p", "o"]
    for i, m in enumerate(marks):
        assert (m.get_xdata()[0], m.get_ydata()[0]) == (0.1 * i, 0.8)
        assert m.get_linestyle() == "None"
        assert (m.get_markersize(), m.get_markeredgecolor()) == (9, "k")
    v, h = ax.lines[14], ax.lines[15]
    assert v.get_xdata()[0] == 0.8
    assert h.get_ydata()[0] == pytest.approx(0.75)
    assert (v.get_color(), v.get_linestyle(), v.get_linewidth()) == ("grey", "--", 1)
    assert (h.get_color(), h.get_linestyle(), h.get_linewidth()) == ("grey", ":", 1)
    grid = ax.xaxis.get_gridlines()[0]
    assert grid.get_visible()
    assert grid.get_alpha() == 0.3
    plt.close(ax.figure)
