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
    t = float(np.quantile(p, 0.3))
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
    ({"x": "abc"}, TypeError, "x"),
    ({"x": np.zeros(20)}, ValueError, "x must be 2-D"),
    ({"x": np.full((20, 2), np.nan)}, ValueError, "x"),
    ({"y": np.full(20, 0.5)}, TypeError, "y"),
    ({"y": np.full(20, 2)}, ValueError, "y"),
    ({"y": np.ones(19, dtype=int)}, ValueError, "y must have 20"),
    ({"sensitive": _S[:5]}, ValueError, "length"),
    ({"sensitive": np.full(20, "p")}, ValueError, "both"),
    ({"privileged": "nobody"}, ValueError, "both"),
    ({"k": 0}, ValueError, "k"),
    ({"k": 21}, ValueError, "k"),
    ({"k": 2.0}, TypeError, "k"),
    ({"a_z": -1.0}, ValueError, "a_z"),
    ({"a_x": "big"}, TypeError, "a_x"),
    ({"a_y": np.nan}, ValueError, "a_y"),
    ({"steps": 0}, ValueError, "steps"),
    ({"seed": "x"}, TypeError, "seed"),
    ({"progress": 1}, TypeError, "progress"),
])
def test_fit_lfr_bad_inputs(kwargs, exc, match):
    args = {"x": _X, "y": _Y, "sensitive": _S, "privileged": "p", "steps": 1, **kwargs}
    with pytest.raises(exc, match=match):
        lfr.fit_lfr(args.pop("x"), args.pop("y"), args.pop("sensitive"), args.pop("privileged"),
                    **args)


def test_fitted_model_bad_inputs():
    model = lfr.fit_lfr(_X, _Y, _S, "p", k=2, steps=1)
    with pytest.raises(ValueError, match="2 columns"):
        model.transform(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="threshold"):
        model.predict(_X, threshold=1.5)
    with pytest.raises(TypeError, match="x"):
        model.predict_proba([["a", "b"]])


@pytest.mark.parametrize(("args", "exc", "match"), [
    ((np.zeros((2, 2)), _t(np.zeros((1, 2))), _t(np.ones(2))), TypeError, "x"),
    ((_t(np.zeros((2, 2))), _t(np.zeros((1, 3))), _t(np.ones(2))), ValueError, "dimension"),
    ((_t(np.zeros((2, 2))), _t(np.zeros((1, 2))), _t(np.ones((2, 1)))), TypeError, "alpha"),
])
def test_memberships_bad_inputs(args, exc, match):
    with pytest.raises(exc, match=match):
        lfr.memberships(*args)


_XT, _YT, _UT = _t(np.zeros((4, 2))), _t(np.zeros(4)), torch.tensor([True, False, True, False])
_VT, _WT, _AT = _t(np.zeros((3, 2))), _t(np.full(3, 0.5)), _t(np.ones(2))


@pytest.mark.parametrize(("args", "exc", "match"), [
    ((np.zeros((4, 2)), _YT, _UT, _VT, _WT, _AT), TypeError, "x must be"),
    ((_XT, _t(np.zeros((4, 1))), _UT, _VT, _WT, _AT), TypeError, "y must be"),
    ((_XT, _t(np.zeros(3)), _UT, _VT, _WT, _AT), ValueError, "y must have one entry"),
    ((_XT, _YT, _UT[:3], _VT, _WT, _AT), ValueError, "unprivileged must have"),
    ((_XT, _YT, torch.ones(4, dtype=torch.bool), _VT, _WT, _AT), ValueError, "both groups"),
    ((_XT, _YT, _UT.double(), _VT, _WT, _AT), ValueError, "bool mask"),
    ((_XT, _YT, _UT, _VT, _WT[:2], _AT), ValueError, "w must have one entry"),
    ((_XT, _YT, _UT, _t(np.zeros((3, 5))), _WT, _AT), ValueError, "feature dimension"),
])
def test_lfr_loss_bad_inputs(args, exc, match):
    with pytest.raises(exc, match=match):
        lfr.lfr_loss(*args)


@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    ({"fit": "df"}, TypeError, "fit"),
    ({"a_z_values": []}, ValueError, "a_z_values must not be empty"),
    ({"a_z_values": [-1.0]}, ValueError, "a_z_values"),
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
