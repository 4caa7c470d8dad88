"""Tests of helpers.fairness: metrics on hand-computed cases, mitigation identities, bad inputs."""

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
    assert m["base_rate"] == pytest.approx(0.5) and f["base_rate"] == pytest.approx(0.75)
    assert m["selection_rate"] == pytest.approx(0.5) and f["selection_rate"] == pytest.approx(0.25)
    assert m["tpr"] == pytest.approx(0.5) and f["tpr"] == pytest.approx(1 / 3)
    assert m["fpr"] == pytest.approx(0.5) and f["fpr"] == pytest.approx(0.0)
    assert m["accuracy"] == pytest.approx(0.5) and f["accuracy"] == pytest.approx(0.5)


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
    assert y_m[[13, 15]].tolist() == [1, 1] and y_m[[4, 5]].tolist() == [0, 0]
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
def test_demographic_parity_thresholds_hit_the_rate(rate):
    rng = np.random.default_rng(5)
    s = np.array(["a"] * 37 + ["b"] * 53)
    scores = rng.random(90) * np.where(s == "a", 1.0, 0.6)
    th = F.group_thresholds(scores, s, rate=rate)
    y_hat = F.apply_thresholds(scores, s, th)
    for g, n_g in (("a", 37), ("b", 53)):
        assert abs(y_hat[s == g].sum() - rate * n_g) <= 1
    default = F.group_thresholds(scores, s)
    y_def = F.apply_thresholds(scores, s, default)
    for g, n_g in (("a", 37), ("b", 53)):
        assert abs(y_def[s == g].sum() - (scores >= 0.5).mean() * n_g) <= 1


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
    with pytest.raises(ValueError, match="never reaches"):
        F.interpolate_knob(sweep, "k", "di", 1.5)


def test_bootstrap_ci_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(0)
    s = rng.choice(["M", "F"], 400)
    yt = rng.integers(0, 2, 400)
    yp = np.where(rng.random(400) < 0.8, yt, 1 - yt)
    metrics = {
        "accuracy": lambda t, p, g: (t == p).mean(),
        "di": lambda t, p, g: F.disparate_impact(p, g, "M"),
    }
    a = F.bootstrap_ci(yt, yp, s, metrics, n_boot=200, seed=3)
    b = F.bootstrap_ci(yt, yp, s, metrics, n_boot=200, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert (a["low"] <= a["estimate"]).all() and (a["estimate"] <= a["high"]).all()
    assert a.loc["accuracy", "estimate"] == pytest.approx((yt == yp).mean())


def test_bootstrap_mean_ci_paired_difference():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 2000)
    a = np.where(rng.random(2000) < 0.85, y, 1 - y)
    b = a.copy()
    b[:30] = 1 - b[:30]  # b differs from a on 30 rows only
    d = (a == y).astype(float) - (b == y)
    mean, lo, hi = F.bootstrap_mean_ci(d, n_boot=500, seed=0)
    assert mean == pytest.approx((a == y).mean() - (b == y).mean())
    assert lo <= mean <= hi
    # paired interval is far narrower than an accuracy's own interval
    acc = F.bootstrap_mean_ci((a == y).astype(float), n_boot=500, seed=0)
    assert hi - lo < 0.5 * (acc[2] - acc[1])
    assert F.bootstrap_mean_ci(d, n_boot=500, seed=0) == (mean, lo, hi)
    with pytest.raises(ValueError, match="values"):
        F.bootstrap_mean_ci([])
    with pytest.raises(ValueError, match="n_boot"):
        F.bootstrap_mean_ci([1.0, 2.0], n_boot=0)


# ------------------------------------------------------------------------- sklearn plumbing


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


def test_sweeps_and_weights_change_the_model():
    df = _toy_adult()
    base = F.fit_adult_model(df)
    scores = base.predict_proba(df)[:, 1]
    rw = F.reweighing_sweep(df, df, [0.0, 1.0])
    ms = F.massaging_sweep(df, df, scores, [0.0, 1.0])
    for sweep in (rw, ms):
        assert sweep["rate_unprivileged"].iloc[1] > sweep["rate_unprivileged"].iloc[0]
        assert {"accuracy", "disparate_impact", "train_disparate_impact"} <= set(sweep.columns)
    assert ms["flips"].tolist()[0] == 0 and ms["flips"].tolist()[1] > 0
    # a sweep's model is the same model fit_adult_model builds
    w = F.reweighing_weights(df[F.LABEL], df["sex"], strength=1.0)
    direct = F.fit_adult_model(df, sample_weight=w).predict(df)
    assert rw["accuracy"].iloc[1] == pytest.approx((direct == df[F.LABEL]).mean())
    assert rw["disparate_impact"].iloc[1] == pytest.approx(
        F.disparate_impact(direct, df["sex"], "Male")
    )
    y_m = F.massage(df[F.LABEL], df["sex"], scores, "Male")
    direct = F.fit_adult_model(df, labels=y_m).predict(df)
    assert ms["accuracy"].iloc[1] == pytest.approx((direct == df[F.LABEL]).mean())
    th = F.threshold_sweep(scores, df, scores, df, [0.0, 1.0])
    assert th["disparate_impact"].iloc[1] == pytest.approx(1.0, abs=0.1)
    assert th["threshold_Male"].iloc[0] == pytest.approx(0.5)


def test_association_with_hand_cases():
    df = pd.DataFrame(
        {
            "sex": ["M", "M", "F", "F"] * 5,
            "copy": ["h", "h", "w", "w"] * 5,  # determines sex: V = 1
            "indep": ["a", "b", "a", "b"] * 5,  # independent of sex: V = 0
            "x": [1.0, 3.0, 2.0, 4.0] * 5,
        }
    )
    out = F.association_with(df, "sex", ["copy", "indep", "x"]).set_index("feature")["value"]
    assert out["copy"] == pytest.approx(1.0)
    assert out["indep"] == pytest.approx(0.0)
    # binary group: correlation ratio = |point-biserial correlation|
    r = np.corrcoef(df["x"], df["sex"] == "M")[0, 1]
    assert out["x"] == pytest.approx(abs(r))
    with pytest.raises(ValueError, match="constant"):
        F.association_with(df.assign(x=1.0), "sex", ["x"])
    with pytest.raises(ValueError, match="lacks columns"):
        F.association_with(df, "sex", ["nope"])


def test_plot_tradeoff_draws_curves_and_points():
    import matplotlib

    matplotlib.use("Agg")
    curve = pd.DataFrame({"disparate_impact": [0.3, 0.8], "accuracy": [0.85, 0.83]})
    ax = F.plot_tradeoff(
        {"c": curve}, {"p": {"disparate_impact": 0.5, "accuracy": 0.84}}, baseline_accuracy=0.85
    )
    assert len(ax.lines) == 4  # curve, point, two reference lines
    with pytest.raises(ValueError, match="lacks columns"):
        F.plot_tradeoff({"c": curve.drop(columns="accuracy")}, {}, baseline_accuracy=0.85)


# ------------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    "call",
    [
        lambda: F.disparate_impact([1, 0, 1], ["M", "F"], "M"),
        lambda: F.statistical_parity_difference([1, 0], ["M", "F", "F"], "M"),
        lambda: F.equal_opportunity_difference([1, 0, 1], [1, 0], ["M", "F", "F"], "M"),
        lambda: F.average_odds_difference([1, 0], [1, 0], ["M"], "M"),
        lambda: F.group_report([1, 0, 1], [1, 0], ["M", "F", "F"]),
        lambda: F.selection_rate([1, 0], sample_weight=[1.0]),
        lambda: F.reweighing_weights([1, 0, 1], ["M", "F"]),
        lambda: F.massage([1, 0, 1, 0], ["M", "M", "F", "F"], [0.5, 0.5], "M"),
        lambda: F.consistency(np.zeros((3, 2)), [1, 0, 1, 0]),
        lambda: F.group_thresholds([0.1, 0.9], ["M", "F", "F"]),
    ],
)
def test_length_mismatch_raises(call):
    with pytest.raises(ValueError, match="length"):
        call()


@pytest.mark.parametrize("bad", [[0, 2, 1], [0, -1], [0.5, 1.0], [0, 1, np.nan]])
def test_non_binary_labels_raise(bad):
    s = ["M", "F", "M", "F"][: len(bad)]
    with pytest.raises(ValueError, match="binary"):
        F.disparate_impact(bad, s, "M")
    with pytest.raises(ValueError, match="binary"):
        F.reweighing_weights(bad, s)
    with pytest.raises(ValueError, match="binary"):
        F.equal_opportunity_difference(bad, [1] * len(bad), s, "M")


def test_wrong_types_raise():
    with pytest.raises(TypeError, match="y_pred"):
        F.disparate_impact(["yes", "no"], ["M", "F"], "M")
    with pytest.raises(TypeError, match="y_pred"):
        F.selection_rate(1)
    with pytest.raises(TypeError, match="sensitive"):
        F.disparate_impact([1, 0], "MF", "M")
    with pytest.raises(TypeError, match="strength"):
        F.reweighing_weights([1, 0, 1, 0], ["M", "M", "F", "F"], strength="full")
    with pytest.raises(TypeError, match="thresholds"):
        F.apply_thresholds([0.2, 0.7], ["M", "F"], [0.5, 0.5])
    with pytest.raises(TypeError, match="train"):
        F.fit_adult_model(np.zeros((3, 3)))


def test_empty_and_shape_errors():
    with pytest.raises(ValueError, match="empty"):
        F.selection_rate([])
    with pytest.raises(ValueError, match="1-D"):
        F.selection_rate([[1, 0], [0, 1]])
    with pytest.raises(ValueError, match="missing"):
        F.disparate_impact([1, 0, 1], ["M", None, "F"], "M")


def test_unknown_privileged_and_empty_groups_raise():
    with pytest.raises(ValueError, match="privileged='X' does not occur"):
        F.disparate_impact(Y_PRED, S, "X")
    with pytest.raises(ValueError, match="privileged"):
        F.massage(Y_TRUE, S, np.linspace(0, 1, 8), "X")
    with pytest.raises(ValueError, match="privileged"):
        F.equal_opportunity_difference(Y_TRUE, Y_PRED, S, "male")
    with pytest.raises(ValueError, match="unprivileged group is empty"):
        F.statistical_parity_difference([1, 0], ["M", "M"], "M")
    with pytest.raises(ValueError, match="does not occur"):
        F.selection_rate(Y_PRED, S, "X")
    with pytest.raises(ValueError, match="group"):
        F.selection_rate(Y_PRED, S)
    with pytest.raises(ValueError, match="sensitive"):
        F.selection_rate(Y_PRED, group="M")


def test_undefined_ratios_raise_instead_of_nan():
    with pytest.raises(ValueError, match="undefined"):
        F.disparate_impact([0, 0, 1, 1], ["M", "M", "F", "F"], "M")
    # no positives among the women -> TPR undefined
    with pytest.raises(ValueError, match="undefined"):
        F.equal_opportunity_difference([1, 0, 0, 0], [1, 0, 1, 0], ["M", "M", "F", "F"], "M")
    # no negatives among the men -> FPR undefined
    with pytest.raises(ValueError, match="undefined"):
        F.average_odds_difference([1, 1, 1, 0], [1, 0, 1, 0], ["M", "M", "F", "F"], "M")
    with pytest.raises(ValueError, match="undefined"):
        F.group_report([1, 1, 1, 0], [1, 0, 1, 0], ["M", "M", "F", "F"])
    with pytest.raises(ValueError, match="undefined"):
        F.reweighing_weights([1, 1, 1, 0], ["M", "M", "F", "F"])
    with pytest.raises(ValueError, match="undefined"):
        F.selection_rate([1, 0], sample_weight=[0.0, 0.0])


def test_bad_mitigation_arguments_raise():
    y, s, scores = _two_group_case()
    with pytest.raises(ValueError, match="fraction"):
        F.massage(y, s, scores, "M", fraction=-0.1)
    with pytest.raises(ValueError, match="candidates"):
        F.massage(y, s, scores, "M", fraction=10)
    with pytest.raises(ValueError, match="scores"):
        F.massage(y, s, np.full(20, np.nan), "M")
    with pytest.raises(ValueError, match="strength"):
        F.reweighing_weights(y, s, strength=-1)
    with pytest.raises(ValueError, match="weights <= 0"):
        F.reweighing_weights(y, s, strength=50)
    with pytest.raises(ValueError, match="target"):
        F.group_thresholds(scores, s, target="equalized_odds")
    with pytest.raises(ValueError, match="y_true"):
        F.group_thresholds(scores, s, target="equal_opportunity")
    with pytest.raises(ValueError, match="rate"):
        F.group_thresholds(scores, s, rate=1.5)
    with pytest.raises(ValueError, match="no entry"):
        F.apply_thresholds(scores, s, {"M": 0.5})
    with pytest.raises(ValueError, match="k must"):
        F.nearest_neighbors(np.zeros((4, 2)), k=4)
    with pytest.raises(ValueError, match="k must"):
        F.consistency(np.zeros((4, 2)), [1, 0, 1, 0], k=0)
    with pytest.raises(ValueError, match="neighbors"):
        F.consistency(None, [1, 0, 1, 0], neighbors=np.zeros((3, 2), dtype=int))
    with pytest.raises(ValueError, match="neighbors"):
        F.consistency(None, [1, 0, 1, 0], neighbors=np.full((4, 2), 7))
    with pytest.raises(ValueError, match="n_boot"):
        F.bootstrap_ci(Y_TRUE, Y_PRED, S, {"a": lambda t, p, g: 0.0}, n_boot=1)
    with pytest.raises(ValueError, match="C must"):
        F.adult_pipeline(C=0)
    with pytest.raises(ValueError, match="lacks columns"):
        F.fit_adult_model(pd.DataFrame({"age": [1, 2]}))
