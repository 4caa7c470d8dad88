"""Tests of helpers.lfr (Learned Fair Representations, Zemel et al. 2013): the objective against a
second implementation written with explicit loops, gradients against finite differences, what
fitting does on toy data where the answer is known, and bad inputs."""

import numpy as np
import pytest
import torch

from helpers import lfr


def _reference_terms(x, y, s_unpriv, v, w, alpha):
    """Zemel et al.'s three terms with explicit loops (NumPy, no shared code with lfr)."""
    n, k = x.shape[0], v.shape[0]
    m = np.zeros((n, k))
    for i in range(n):
        d = np.array([sum(alpha[j] * (x[i, j] - v[c, j]) ** 2 for j in range(x.shape[1]))
                      for c in range(k)])
        e = np.exp(-(d - d.min()))
        m[i] = e / e.sum()
    l_z = sum(abs(m[s_unpriv, c].mean() - m[~s_unpriv, c].mean()) for c in range(k))
    l_x = np.mean([((x[i] - m[i] @ v) ** 2).sum() for i in range(n)])
    y_hat = m @ w
    l_y = -np.mean(y * np.log(y_hat) + (1 - y) * np.log(1 - y_hat))
    return m, {"L_z": l_z, "L_x": l_x, "L_y": l_y}


def _toy(n=9, d=3, k=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = rng.integers(0, 2, n).astype(float)
    s = np.arange(n) % 3 == 0
    v = rng.normal(size=(k, d))
    w = rng.uniform(0.1, 0.9, k)
    alpha = rng.uniform(0.2, 2.0, d)
    return x, y, s, v, w, alpha


def _t(a):
    return torch.as_tensor(a, dtype=torch.float64)


# Which group is "privileged" does not matter to L_z = sum_k |M_k^u - M_k^p| (the absolute value
# is symmetric and the two masks are complements), so swapping the mask in fit_lfr is an
# equivalent mutant; the tests below pin the terms, not the group labels.


def test_loss_terms_match_a_loop_implementation():
    x, y, s, v, w, alpha = _toy()
    m_ref, ref = _reference_terms(x, y, s, v, w, alpha)
    got = lfr.lfr_loss(_t(x), _t(y), torch.as_tensor(s), _t(v), _t(w), _t(alpha))
    for name in ("L_z", "L_x", "L_y"):
        assert float(got[name]) == pytest.approx(ref[name], rel=1e-10), name
    m = lfr.memberships(_t(x), _t(v), _t(alpha)).numpy()
    np.testing.assert_allclose(m, m_ref, rtol=1e-10)
    np.testing.assert_allclose(m.sum(1), 1.0, rtol=1e-12)


def test_alpha_weights_each_feature():
    # only feature 0 counts when alpha = (big, 0): the nearest prototype along feature 0 wins
    x = _t([[0.0, 5.0]])
    v = _t([[0.1, -5.0], [3.0, 5.0]])
    m = lfr.memberships(x, v, _t([50.0, 0.0]))
    assert float(m[0, 0]) > 0.99
    m = lfr.memberships(x, v, _t([0.0, 50.0]))
    assert float(m[0, 1]) > 0.99


def test_gradients_match_finite_differences():
    x, y, s, v, w, alpha = _toy(n=7, d=2, k=3, seed=1)
    xt, yt, st = _t(x), _t(y), torch.as_tensor(s)

    def objective(v_, w_, a_):
        t = lfr.lfr_loss(xt, yt, st, v_, w_, a_)
        return 3.0 * t["L_z"] + 0.1 * t["L_x"] + t["L_y"]

    params = tuple(_t(p).requires_grad_(True) for p in (v, w, alpha))
    assert torch.autograd.gradcheck(objective, params, eps=1e-6, atol=1e-6)


def _toy_fair_problem(n=600, seed=0):
    """Label driven by feature 0, which is shifted by group: a plain classifier selects the
    privileged group more often."""
    rng = np.random.default_rng(seed)
    priv = rng.random(n) < 0.5
    f0 = rng.normal(size=n) + np.where(priv, 1.0, -1.0)
    x = np.column_stack([f0, rng.normal(size=n)])
    y = (f0 + 0.5 * rng.normal(size=n) > 0).astype(int)
    return x, y, np.where(priv, "p", "u")


def _selection_gap(model, x, s):
    yhat = model.predict(x)
    return abs(yhat[s == "u"].mean() - yhat[s == "p"].mean())


def test_fit_learns_the_labels_without_the_fairness_term():
    x, y, s = _toy_fair_problem()
    model = lfr.fit_lfr(x, y, s, "p", k=4, a_z=0.0, steps=60, seed=0)
    acc = (model.predict(x) == y).mean()
    assert acc > 0.85  # the Bayes rule thresholds feature 0; its accuracy here is about 0.9
    assert model.terms["L_y"] < 0.4
    np.testing.assert_allclose(model.transform(x).sum(1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(model.predict_proba(x), model.transform(x) @ model.w.numpy())
    p = model.predict_proba(x)
    t = float(np.sort(p)[180])   # a threshold equal to a probability: that row is a 1
    np.testing.assert_array_equal(model.predict(x, threshold=t), (p >= t).astype(int))
    assert model.predict(x, threshold=t).sum() > model.predict(x).sum()


def test_fairness_weight_buys_parity():
    x, y, s = _toy_fair_problem()
    plain = lfr.fit_lfr(x, y, s, "p", k=4, a_z=0.0, steps=60, seed=0)
    fair = lfr.fit_lfr(x, y, s, "p", k=4, a_z=5.0, steps=60, seed=0)
    assert fair.terms["L_z"] < 0.2 * plain.terms["L_z"]
    assert _selection_gap(fair, x, s) < 0.5 * _selection_gap(plain, x, s)
    assert fair.weights == {"a_x": 0.01, "a_y": 1.0, "a_z": 5.0}


def test_fit_is_seeded():
    x, y, s = _toy_fair_problem(n=200)
    threads = torch.get_num_threads()
    a = lfr.fit_lfr(x, y, s, "p", k=3, steps=10, seed=3)
    b = lfr.fit_lfr(x, y, s, "p", k=3, steps=10, seed=3)
    c = lfr.fit_lfr(x, y, s, "p", k=3, steps=10, seed=4)
    assert torch.equal(a.prototypes, b.prototypes)
    assert not torch.equal(a.prototypes, c.prototypes)
    assert torch.get_num_threads() == threads  # the one-thread context restored the setting


_X, _Y, _S = _toy_fair_problem(n=20)


@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    ({"x": "abc"}, TypeError, r"^x must be an array-like, got str"),
    ({"x": np.zeros(20)}, ValueError, r"^x must be 2-D"),
    ({"x": np.full((20, 2), np.nan)}, ValueError, r"^x must hold finite numbers"),
    ({"y": np.full(20, 0.5)}, TypeError, r"^y must hold integers"),
    ({"y": np.full(20, 2)}, ValueError, r"^y must hold integers in \[0, 2\)"),
    ({"y": np.ones(19, dtype=int)}, ValueError, r"^y must have 20 labels"),
    ({"sensitive": _S[:5]}, ValueError, r"^sensitive and x must have the same length"),
    ({"sensitive": _S[:, None]}, ValueError, r"^sensitive must be 1-D"),
    ({"y": np.ones((20, 1), dtype=int)}, ValueError, r"^y must be 1-D"),
    ({"sensitive": np.full(20, "p")}, ValueError,
     r"^sensitive must hold both the privileged group 'p' and another group"),
    ({"sensitive": np.full(20, "u")}, ValueError,
     r"^sensitive must hold both the privileged group 'p'"),
    ({"privileged": "nobody"}, ValueError,
     r"^sensitive must hold both the privileged group 'nobody'"),
    ({"k": 0}, ValueError, r"^k must be an integer >= 1 and <= 20, got 0"),
    ({"k": 21}, ValueError, r"^k must be an integer >= 1 and <= 20, got 21"),
    ({"k": 2.0}, TypeError, r"^k must be an integer"),
    ({"a_z": -1.0}, ValueError, r"^a_z must be a number >= 0"),
    ({"a_x": -1.0}, ValueError, r"^a_x must be a number >= 0"),
    ({"a_y": -1.0}, ValueError, r"^a_y must be a number >= 0"),
    ({"a_x": "big"}, TypeError, r"^a_x must be a real number"),
    ({"a_y": np.nan}, ValueError, r"^a_y must be a finite number"),
    ({"steps": 0}, ValueError, r"^steps must be an integer >= 1"),
    ({"seed": "x"}, TypeError, r"^seed must be None, an int"),
    ({"progress": 1}, TypeError, r"^progress must be True or False"),
])
def test_fit_lfr_bad_inputs(kwargs, exc, match):
    args = {"x": _X, "y": _Y, "sensitive": _S, "privileged": "p", "steps": 1, **kwargs}
    with pytest.raises(exc, match=match):
        lfr.fit_lfr(args.pop("x"), args.pop("y"), args.pop("sensitive"), args.pop("privileged"),
                    **args)


def test_fitted_model_bad_inputs():
    model = lfr.fit_lfr(_X, _Y, _S, "p", k=2, steps=1)
    with pytest.raises(ValueError,
                       match=r"^x must have 2 columns \(the prototypes' dimension\), got 5"):
        model.transform(np.zeros((3, 5)))
    with pytest.raises(ValueError, match=r"^threshold must be a number >= 0 and <= 1"):
        model.predict(_X, threshold=1.5)
    with pytest.raises(TypeError, match=r"^x must hold real numbers"):
        model.predict_proba([["a", "b"]])


@pytest.mark.parametrize(("args", "exc", "match"), [
    ((np.zeros((2, 2)), _t(np.zeros((1, 2))), _t(np.ones(2))), TypeError,
     r"^x must be a 2-D torch.Tensor, got ndarray \(2, 2\)"),
    ((_t(np.zeros((2, 2))), _t(np.zeros((1, 3))), _t(np.ones(2))), ValueError,
     r"^x, prototypes and alpha must share the feature dimension, got 2, 3, 2"),
    ((_t(np.zeros((2, 2))), _t(np.zeros((1, 2))), _t(np.ones(3))), ValueError,
     r"^x, prototypes and alpha must share the feature dimension, got 2, 2, 3"),
    ((_t(np.zeros((2, 2))), _t(np.zeros(2)), _t(np.ones(2))), TypeError,
     r"^prototypes must be a 2-D torch.Tensor, got Tensor \(2,\)"),
    ((_t(np.zeros((2, 2))), _t(np.zeros((1, 2))), _t(np.ones((2, 1)))), TypeError,
     r"^alpha must be a 1-D torch.Tensor, got Tensor \(2, 1\)"),
])
def test_memberships_bad_inputs(args, exc, match):
    with pytest.raises(exc, match=match):
        lfr.memberships(*args)


_XT, _YT, _UT = _t(np.zeros((4, 2))), _t(np.zeros(4)), torch.tensor([True, False, True, False])
_VT, _WT, _AT = _t(np.zeros((3, 2))), _t(np.full(3, 0.5)), _t(np.ones(2))


@pytest.mark.parametrize(("args", "exc", "match"), [
    ((np.zeros((4, 2)), _YT, _UT, _VT, _WT, _AT), TypeError, r"^x must be a 2-D"),
    ((_XT, _t(np.zeros((4, 1))), _UT, _VT, _WT, _AT), TypeError, r"^y must be a 1-D torch.Tensor"),
    ((_XT, _t(np.zeros(3)), _UT, _VT, _WT, _AT), ValueError,
     r"^y must have one entry per row of x \(4\), got 3"),
    ((_XT, _YT, _UT[:3], _VT, _WT, _AT), ValueError,
     r"^unprivileged must have one entry per row of x \(4\), got 3"),
    ((_XT, _YT, _UT[:, None], _VT, _WT, _AT), TypeError, r"^unprivileged must be a 1-D"),
    ((_XT, _YT, _UT, _VT, _WT[:, None], _AT), TypeError, r"^w must be a 1-D"),
    ((_XT, _YT, torch.zeros(4, dtype=torch.bool), _VT, _WT, _AT), ValueError,
     r"^unprivileged must be a bool mask with both groups non-empty"),
    ((_XT, _YT, torch.ones(4, dtype=torch.bool), _VT, _WT, _AT), ValueError,
     r"^unprivileged must be a bool mask"),
    ((_XT, _YT, _UT.double(), _VT, _WT, _AT), ValueError, r"^unprivileged must be a bool mask"),
    ((_XT, _YT, _UT, _VT, _WT[:2], _AT), ValueError,
     r"^w must have one entry per prototype \(3\), got 2"),
    ((_XT, _YT, _UT, _t(np.zeros((3, 5))), _WT, _AT), ValueError,
     r"^x, prototypes and alpha must share the feature dimension, got 2, 5, 2"),
])
def test_lfr_loss_bad_inputs(args, exc, match):
    with pytest.raises(exc, match=match):
        lfr.lfr_loss(*args)


@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    ({"fit": "df"}, TypeError, r"^fit must be a pandas DataFrame"),
    ({"val": "df"}, TypeError, r"^val must be a pandas DataFrame"),
    ({"test": "df"}, TypeError, r"^test must be a pandas DataFrame"),
    ({"a_z_values": [[0.0]]}, ValueError, r"^a_z_values must be 1-D"),
    ({"a_z_values": []}, ValueError, r"^a_z_values must not be empty"),
    ({"a_z_values": [-1.0]}, ValueError, r"^a_z_values must hold values >= 0"),
])
def test_lfr_sweep_bad_inputs(kwargs, exc, match):
    import pandas as pd

    df = pd.DataFrame({"income_gt_50k": _Y, "sex": np.where(_S == "p", "Male", "Female")})
    args = {"x_fit": _X, "fit": df, "x_val": _X, "val": df, "x_test": _X, "test": df,
            "a_z_values": [0.0], **kwargs}
    with pytest.raises(exc, match=match):
        lfr.lfr_sweep(**args, steps=1)


def test_lfr_sweep_grades_each_fit_like_a_direct_fit():
    import pandas as pd

    x, y, s = _toy_fair_problem(n=300)
    df = pd.DataFrame({"income_gt_50k": y, "sex": np.where(s == "p", "Male", "Female")})
    table, models = lfr.lfr_sweep(x, df, x, df, x, df, [0.0, 2.0], k=3, steps=20, seed=0)
    direct = lfr.fit_lfr(x, y, df["sex"], "Male", k=3, a_z=2.0, steps=20, seed=0)
    assert torch.equal(models[2.0].prototypes, direct.prototypes)
    pred = direct.predict(x)
    assert table["val_accuracy"].iloc[1] == pytest.approx((pred == y).mean())
    assert table["accuracy"].iloc[1] == pytest.approx((pred == y).mean())
    assert table["L_z"].iloc[1] == pytest.approx(direct.terms["L_z"])
    assert table["zemel_accuracy_proba"].iloc[1] == pytest.approx(
        1 - np.abs(y - direct.predict_proba(x)).mean())


# ------------------------------------------------------------ initialisation and final terms
def test_fit_with_zero_weights_returns_the_documented_initialisation():
    # with A_x = A_y = A_z = 0 the objective is constant, L-BFGS stops at once (zero gradient)
    # and the fit returns its starting point: k distinct rows of x chosen by the seeded
    # generator, w_k = 0.5 and alpha_i = 1/D
    x, y, s = _toy_fair_problem(n=30)
    model = lfr.fit_lfr(x, y, s, "p", k=5, a_x=0.0, a_y=0.0, a_z=0.0, steps=3, seed=4)
    rows = np.random.default_rng(4).choice(30, size=5, replace=False)
    np.testing.assert_array_equal(model.prototypes.numpy(), x[rows])
    np.testing.assert_allclose(model.w.numpy(), 0.5, rtol=1e-15)
    np.testing.assert_allclose(model.alpha.numpy(), 0.5, rtol=1e-12)   # D = 2
    assert model.prototypes.dtype == model.w.dtype == model.alpha.dtype == torch.float64
    assert not model.prototypes.requires_grad
    assert model.weights == {"a_x": 0.0, "a_y": 0.0, "a_z": 0.0}


def test_fit_reports_the_terms_of_its_returned_parameters():
    x, y, s = _toy_fair_problem(n=40)
    model = lfr.fit_lfr(x, y, s, "p", k=3, a_x=0.5, a_y=1.0, a_z=2.0, steps=5, seed=0)
    _, ref = _reference_terms(x, y.astype(float), s != "p", model.prototypes.numpy(),
                              model.w.numpy(), model.alpha.numpy())
    for name in ("L_z", "L_x", "L_y"):
        assert model.terms[name] == pytest.approx(ref[name], rel=1e-9), name
    # and each term pulls: the fit lowers the weighted objective below the initial one
    start = lfr.fit_lfr(x, y, s, "p", k=3, a_x=0.0, a_y=0.0, a_z=0.0, steps=1, seed=0)
    _, ref0 = _reference_terms(x, y.astype(float), s != "p", start.prototypes.numpy(),
                               start.w.numpy(), start.alpha.numpy())

    def weighted(t):
        return 0.5 * t["L_x"] + 1.0 * t["L_y"] + 2.0 * t["L_z"]

    assert weighted(ref) < weighted(ref0) - 0.05


@pytest.mark.parametrize(("a_x", "a_y", "a_z", "term"), [
    (1.0, 0.0, 0.0, "L_x"), (0.0, 1.0, 0.0, "L_y"), (0.0, 0.0, 1.0, "L_z")])
def test_each_weight_drives_its_own_term(a_x, a_y, a_z, term):
    # one weight at a time: the fit lowers that term well below its value at the start
    x, y, s = _toy_fair_problem(n=60)
    start = lfr.fit_lfr(x, y, s, "p", k=3, a_x=0.0, a_y=0.0, a_z=0.0, steps=1, seed=1)
    fit = lfr.fit_lfr(x, y, s, "p", k=3, a_x=a_x, a_y=a_y, a_z=a_z, steps=20, seed=1)
    assert fit.terms[term] < 0.7 * start.terms[term]


def test_fit_runs_the_requested_number_of_lbfgs_iterations(monkeypatch):
    # steps iterations in all, in at most 10 chunks: counted as L-BFGS's own iteration counter
    x, y, s = _toy_fair_problem(n=40)
    seen = []
    step = torch.optim.LBFGS.step

    def counting_step(self, closure):
        out = step(self, closure)
        seen.append(self.state[self.param_groups[0]["params"][0]]["n_iter"])
        return out

    monkeypatch.setattr(torch.optim.LBFGS, "step", counting_step)
    lfr.fit_lfr(x, y, s, "p", k=3, steps=23, seed=0)
    assert len(seen) == 10
    assert seen[-1] == 23


def test_fit_runs_on_one_thread(monkeypatch):
    x, y, s = _toy_fair_problem(n=20)
    threads = []
    loss = lfr._loss
    monkeypatch.setattr(lfr, "_loss", lambda *a: threads.append(torch.get_num_threads())
                        or loss(*a))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        lfr.fit_lfr(x, y, s, "p", k=2, steps=2)
        assert set(threads) == {1}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_fit_accepts_boolean_labels_and_the_edges_of_its_ranges():
    x, y, s = _toy_fair_problem(n=20)
    a = lfr.fit_lfr(x, y.astype(bool), s, "p", k=20, a_x=0.0, steps=1)
    b = lfr.fit_lfr(x, y, s, "p", k=20, a_x=0.0, steps=1)
    assert torch.equal(a.prototypes, b.prototypes)
    assert torch.equal(a.w, b.w)


def test_lfr_progress_bar(capsys):
    x, y, s = _toy_fair_problem(n=20)
    lfr.fit_lfr(x, y, s, "p", k=2, a_z=0.5, steps=2, progress=True)
    err = capsys.readouterr().err
    assert "LFR (A_z=0.5): " in err
    assert err.endswith("\r")                 # leave=False: nothing left behind
    lfr.fit_lfr(x, y, s, "p", k=2, steps=2)   # progress=False by default
    assert capsys.readouterr().err == ""


def test_saturated_prediction_costs_minus_log_1e_12():
    # y_hat is clipped to [1e-12, 1 - 1e-12]: a certain wrong prediction costs -log(1e-12)
    x = _t(np.zeros((2, 1)))
    got = lfr.lfr_loss(x, _t([0.0, 0.0]), torch.tensor([True, False]), _t([[0.0]]), _t([1.0]),
                       _t([1.0]))
    # (1 - 1e-12 rounds in float64, so the cost is -log(1 - fl(1 - 1e-12)), 27.63104...)
    assert float(got["L_y"]) == pytest.approx(-np.log(1 - (1 - 1e-12)), rel=1e-9)
    got = lfr.lfr_loss(x, _t([1.0, 1.0]), torch.tensor([True, False]), _t([[0.0]]), _t([0.0]),
                       _t([1.0]))
    assert float(got["L_y"]) == pytest.approx(-np.log(1e-12), rel=1e-9)


# ------------------------------------------------------------------------- the sweep, graded
def test_lfr_sweep_grades_on_the_validation_and_test_sets_separately():
    import pandas as pd
    from sklearn.neighbors import NearestNeighbors

    from helpers import fairness

    def frame(seed, n):
        x, y, s = _toy_fair_problem(n=n, seed=seed)
        return x, pd.DataFrame({"income_gt_50k": y, "sex": np.where(s == "p", "Male", "Female")})

    (xf, fit), (xv, val), (xt, test) = frame(0, 200), frame(1, 120), frame(2, 80)
    neighbors = NearestNeighbors(n_neighbors=4).fit(xt).kneighbors(xt)[1][:, 1:]
    table, fitted = lfr.lfr_sweep(xf, fit, xv, val, xt, test, [0.3], neighbors=neighbors, k=3,
                                  steps=15, seed=2)
    direct = lfr.fit_lfr(xf, fit["income_gt_50k"], fit["sex"], "Male", k=3, a_z=0.3, steps=15,
                         seed=2)
    assert torch.equal(fitted[0.3].prototypes, direct.prototypes)
    row = table.iloc[0]
    assert row["a_z"] == 0.3
    assert row["L_z"] == direct.terms["L_z"]
    yv = direct.predict(xv)
    assert row["val_accuracy"] == pytest.approx((yv == val["income_gt_50k"].to_numpy()).mean())
    male = val["sex"].to_numpy() == "Male"
    assert row["val_disparate_impact"] == pytest.approx(yv[~male].mean() / yv[male].mean())
    yt = direct.predict(xt)
    assert row["accuracy"] == pytest.approx((yt == test["income_gt_50k"].to_numpy()).mean())
    want = fairness.summarize(test["income_gt_50k"], yt, test["sex"], "Male",
                              neighbors=neighbors, y_score=direct.predict_proba(xt))
    assert row["consistency"] == pytest.approx(want["consistency"])
    assert row["consistency_proba"] == pytest.approx(want["consistency_proba"])
    assert row["zemel_accuracy_proba"] == pytest.approx(
        1 - np.abs(test["income_gt_50k"].to_numpy() - direct.predict_proba(xt)).mean())


def test_fit_defaults_are_the_documented_ones():
    # k = 10, a_x = 0.01, a_y = 1, a_z = 1, 150 L-BFGS iterations, seed 0; on this problem
    # L-BFGS is still moving at 150 iterations, so a different count gives other prototypes
    rng = np.random.default_rng(101)
    x, y = rng.normal(size=(60, 4)), rng.integers(0, 2, 60)
    s = np.where(rng.random(60) < 0.5, "p", "u")
    default = lfr.fit_lfr(x, y, s, "p")
    explicit = lfr.fit_lfr(x, y, s, "p", k=10, a_x=0.01, a_y=1.0, a_z=1.0, steps=150, seed=0)
    assert default.prototypes.shape == (10, 4)
    assert torch.equal(default.prototypes, explicit.prototypes)
    assert default.weights == {"a_x": 0.01, "a_y": 1.0, "a_z": 1.0}


def test_lfr_sweep_passes_its_settings_and_shows_a_progress_bar(monkeypatch, capsys):
    import pandas as pd

    calls = []
    fit = lfr.fit_lfr

    def recording_fit(*args, **kwargs):
        calls.append(kwargs)
        return fit(*args, **(kwargs | {"steps": 1}))

    monkeypatch.setattr(lfr, "fit_lfr", recording_fit)
    x, y, s = _toy_fair_problem(n=40)
    df = pd.DataFrame({"income_gt_50k": y, "sex": np.where(s == "p", "Male", "Female")})
    lfr.lfr_sweep(x, df, x, df, x, df, [0.0, 2.0])
    assert calls == [{"k": 10, "a_z": a, "steps": 150, "seed": 0} for a in (0.0, 2.0)]
    err = capsys.readouterr().err
    assert "LFR sweep: " in err
    assert err.endswith("\r")             # leave=False: the finished bar is erased
    with pytest.raises(ValueError, match=r"^val must have the columns \['income_gt_50k', "
                                         r"'sex'\]; missing \['sex'\]"):
        lfr.lfr_sweep(x, df, x, df[["income_gt_50k"]], x, df, [0.0])


def test_type_errors_name_what_was_passed():
    with pytest.raises(TypeError, match=r"^x must be a 2-D torch.Tensor, got list \(\)$"):
        lfr.memberships([[0.0]], _t(np.zeros((1, 1))), _t(np.ones(1)))


def test_fit_uses_the_documented_lbfgs_configuration(monkeypatch):
    # the committed notebook outputs were fitted with this optimiser: full L-BFGS steps (lr 1)
    # with a strong Wolfe line search, 20 correction pairs, and tolerances tight enough that
    # the iteration count, not the tolerances, ends the fit
    made = []
    lbfgs = torch.optim.LBFGS

    def recording(params, **kwargs):
        made.append(kwargs)
        return lbfgs(params, **kwargs)

    monkeypatch.setattr(torch.optim, "LBFGS", recording)
    x, y, s = _toy_fair_problem(n=20)
    lfr.fit_lfr(x, y, s, "p", k=2, steps=2)
    assert made == [{"lr": 1.0, "history_size": 20, "line_search_fn": "strong_wolfe",
                     "tolerance_grad": 1e-9, "tolerance_change": 1e-12}]
