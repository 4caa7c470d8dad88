"""Data poisoning: label flipping, the implicit-gradient attack on logistic regression, k-NN
sanitization and spectral signatures (and the BadNets stamping they build on)."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from helpers import backdoor, models, poisoning
from helpers.poisoning import _implicit_gradient, _newton, _val_loss


@pytest.mark.parametrize(("fraction", "num_classes"), [(0.0, 2), (0.1, 2), (0.37, 10), (1.0, 3)])
def test_random_flips_touch_exactly_the_budget_and_stay_in_range(fraction, num_classes):
    y = np.random.default_rng(0).integers(0, num_classes, 200)
    y_p, index = poisoning.flip_labels(y, fraction, num_classes=num_classes, seed=1)
    budget = round(fraction * 200)
    assert len(index) == budget == int((y_p != y).sum())      # every chosen label changes
    assert set(np.flatnonzero(y_p != y)) == set(index)        # and nothing else does
    assert y_p.min() >= 0
    assert y_p.max() < num_classes
    assert np.array_equal(index, np.sort(index))


def test_random_flips_draw_the_new_label_uniformly_among_the_other_classes():
    y = np.zeros(30000, dtype=int)
    y_p, _ = poisoning.flip_labels(y, 1.0, num_classes=4, seed=0)
    counts = np.bincount(y_p, minlength=4)
    assert counts[0] == 0
    # each of classes 1..3 has p = 1/3: sd = sqrt(30000 * 1/3 * 2/3) ~ 82; allow 4 sd
    assert np.all(np.abs(counts[1:] - 10000) < 4 * 82)


def test_priority_flips_the_highest_scored_points_to_the_given_labels():
    y = np.array([0, 1, 2, 0, 1, 2])
    priority = np.array([5.0, 1.0, 4.0, 0.0, 3.0, 2.0])
    new = (y + 1) % 3
    y_p, index = poisoning.flip_labels(y, 0.5, num_classes=3, priority=priority,
                                       new_labels=new, seed=0)
    np.testing.assert_array_equal(index, [0, 2, 4])            # scores 5, 4, 3
    np.testing.assert_array_equal(y_p, [1, 1, 0, 0, 2, 2])


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"fraction": 1.5}, ValueError, r"^fraction must be a number >= 0 and <= 1"),
    ({"fraction": -0.1}, ValueError, r"^fraction must"),
    ({"num_classes": 1}, ValueError, r"^num_classes must be an integer >= 2"),
    ({"priority": [1.0, 2.0]}, ValueError, r"^priority and y must have the same length"),
    ({"priority": [[1.0], [2.0], [3.0], [4.0]]}, ValueError, r"^priority must be 1-D"),
    ({"new_labels": [0, 1, 0, 1]}, ValueError, r"^new_labels must differ from y"),
    ({"new_labels": [1, 0, 1, 0, 1]}, ValueError, r"^new_labels must have 4 labels"),
    ({"new_labels": [1, 2, 1, 0]}, ValueError, r"^new_labels must hold integers in \[0, 2\)"),
    ({"y": [0, 1, 2, 1]}, ValueError, r"^y must hold integers in \[0, 2\)"),
])
def test_flip_labels_rejects_bad_arguments(kwargs, error, match):
    args = {"y": [0, 1, 0, 1], "fraction": 1.0, "num_classes": 2}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        poisoning.flip_labels(args.pop("y"), args.pop("fraction"), **args)


def _toy_problem(seed=0, n=60, d=4):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (n, d))
    score = x @ rng.normal(size=d) + 0.3 * rng.normal(size=n)
    return x, (score > np.median(score)).astype(int)


def test_newton_solver_matches_scikit_learn():
    x, y = _toy_problem()
    lam = 1e-2
    theta = poisoning.fit_logistic_regression(x, y, lam)
    # scikit-learn's objective C * sum(loss) + ||w||^2 / 2 is ours times n C with C = 1/(n lam)
    sk = LogisticRegression(C=1 / (len(x) * lam), tol=1e-12, max_iter=10000).fit(x, y)
    np.testing.assert_allclose(theta[:-1], sk.coef_[0], atol=1e-5)
    assert theta[-1] == pytest.approx(sk.intercept_[0], abs=1e-5)


def test_implicit_gradient_matches_finite_differences_through_retraining():
    x, y = _toy_problem()
    xv, yv = _toy_problem(seed=1)
    xp = torch.as_tensor(x[:3].copy())
    x_train = torch.as_tensor(x)
    s_all = torch.as_tensor(2.0 * np.concatenate([y, 1 - y[:3]]) - 1.0)
    s_val = torch.as_tensor(2.0 * yv - 1.0)
    lam = 1e-2

    def val_loss_after_training(points):
        theta = _newton(torch.zeros(5, dtype=torch.float64), torch.cat([x_train, points]),
                        s_all, lam, 1e-13, 100)
        return _val_loss(theta, torch.as_tensor(xv), s_val)

    theta = _newton(torch.zeros(5, dtype=torch.float64), torch.cat([x_train, xp]), s_all, lam,
                    1e-13, 100)
    grad, _ = _implicit_gradient(theta, x_train, xp, s_all, torch.as_tensor(xv), s_val, lam)
    h = 1e-5
    numeric = torch.zeros_like(xp)
    for i in range(3):
        for j in range(4):
            e = torch.zeros_like(xp)
            e[i, j] = h
            numeric[i, j] = (val_loss_after_training(xp + e)
                             - val_loss_after_training(xp - e)) / (2 * h)
    # central differences: O(h^2) truncation plus ~1e-16 / h round-off, i.e. below 1e-8
    torch.testing.assert_close(grad, numeric, atol=1e-7, rtol=1e-4)


def test_optimized_poisons_raise_the_validation_loss_and_stay_in_the_box():
    x, y = _toy_problem(n=80)
    xv, yv = _toy_problem(seed=2, n=80)
    xp, losses = poisoning.optimize_poisons(x, y, x[:4], 1 - y[:4], xv, yv, lam=1e-2, steps=5,
                                            step_size=0.2, progress=False)
    assert xp.shape == (4, 4)
    assert xp.min() >= 0
    assert xp.max() <= 1
    assert len(losses) == 6
    assert losses[-1] > losses[0]
    with pytest.raises(ValueError, match="x_poison must have 4 features"):
        poisoning.optimize_poisons(x, y, x[:4, :3], 1 - y[:4], xv, yv, lam=1e-2)
    with pytest.raises(ValueError, match="lam"):
        poisoning.optimize_poisons(x, y, x[:4], 1 - y[:4], xv, yv, lam=0.0)
    with pytest.raises(ValueError, match="x_poison must hold values <= 1"):
        poisoning.optimize_poisons(x, y, x[:4] + 1, 1 - y[:4], xv, yv, lam=1e-2)


def test_knn_sanitize_removes_a_label_that_disagrees_with_its_neighbourhood():
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(0, 0.1, (20, 2)), rng.normal(5, 0.1, (20, 2))])
    y = np.repeat([0, 1], 20)
    y[3] = 1                                    # a flipped point inside cluster 0
    keep = poisoning.knn_sanitize(x, y, k=5)
    assert not keep[3]
    assert keep.sum() == 39
    with pytest.raises(ValueError, match="k must be"):
        poisoning.knn_sanitize(x, y, k=40)
    with pytest.raises(ValueError, match="threshold"):
        poisoning.knn_sanitize(x, y, threshold=2.0)


def test_spectral_scores_match_the_top_eigenvector_and_find_a_planted_cluster():
    rng = np.random.default_rng(0)
    f = rng.normal(0, 1, (200, 6))
    f[:10] += np.array([8.0, 0, 0, 0, 0, 0])       # 5% poisons, shifted along one direction
    labels = np.zeros(200, dtype=int)
    labels[150:] = 1
    scores = poisoning.spectral_signature_scores(f, labels)
    # independent reference: the top eigenvector of the class covariance (eigh, not SVD)
    c0 = f[:150] - f[:150].mean(0)
    v = np.linalg.eigh(c0.T @ c0)[1][:, -1]
    np.testing.assert_allclose(scores[:150], (c0 @ v) ** 2, rtol=1e-8)
    keep = poisoning.spectral_filter(scores, labels, eps=0.05)
    assert not keep[:10].any()                       # every poison removed
    assert (~keep).sum() == round(1.5 * 0.05 * 150) + round(1.5 * 0.05 * 50)
    with pytest.raises(ValueError, match="eps"):
        poisoning.spectral_filter(scores, labels, eps=1.5)


def test_penultimate_features_are_the_input_of_the_last_linear_layer():
    torch.manual_seed(0)
    model = models.MnistCNN().train()
    x = torch.rand(3, 1, 28, 28)
    feats = poisoning.penultimate_features(model, x, batch_size=2)
    with torch.no_grad():
        expected = model.eval().head[:3](model.features(x))
    model.train()
    np.testing.assert_allclose(feats, expected.double().numpy(), rtol=1e-5, atol=1e-6)
    assert model.training
    assert feats.shape == (3, 128)


def test_trigger_stamping_is_idempotent_and_leaves_the_rest_unchanged():
    x = torch.rand(5, 1, 28, 28)
    mask, pattern = backdoor.TRIGGER
    once = backdoor.stamp(x, mask, pattern)
    assert torch.equal(backdoor.stamp(once, mask, pattern), once)
    outside = mask.expand_as(x) == 0
    assert torch.equal(once[outside], x[outside])
    assert torch.all(once[~outside] == 1.0)


# ------------------------------------------------------------------ label flipping, in detail
def test_random_flips_follow_the_seed_exactly():
    # second implementation of the documented draw: a permutation picks the points (its first
    # round(f n) entries), then one shift in 1..K-1 per chosen point, in index order
    y = np.random.default_rng(3).integers(0, 5, 50)
    y_p, index = poisoning.flip_labels(y, 0.3, num_classes=5, seed=11)
    rng = np.random.default_rng(11)
    chosen = np.sort(rng.permutation(50)[:15])
    expected = y.copy()
    expected[chosen] = (y[chosen] + rng.integers(1, 5, size=15)) % 5
    np.testing.assert_array_equal(index, chosen)
    np.testing.assert_array_equal(y_p, expected)
    again, _ = poisoning.flip_labels(y, 0.3, num_classes=5, seed=11)
    np.testing.assert_array_equal(again, y_p)


def test_priority_ties_are_broken_by_the_seeded_permutation():
    # 300 points, three priority levels: the flipped points are the 120 highest, the 100 of
    # level 2 and, among the 100 of level 1, those that come first in the seeded permutation
    # (a stable sort of the permuted scores; an unstable sort reorders ties)
    rng = np.random.default_rng(0)
    priority = rng.integers(0, 3, 300).astype(float)
    y = np.zeros(300, dtype=int)
    _, index = poisoning.flip_labels(y, 0.5, num_classes=2, priority=priority, seed=5)
    perm = np.random.default_rng(5).permutation(300)
    ranked = sorted(range(300), key=lambda j: (-priority[perm[j]], j))
    np.testing.assert_array_equal(index, np.sort(perm[ranked][:150]))


# ------------------------------------------------------------- the inner logistic regression
def _np_objective(theta, x, y, lam):
    z = x @ theta[:-1] + theta[-1]
    return np.mean(np.logaddexp(0.0, -(2 * y - 1) * z)) + 0.5 * lam * theta[:-1] @ theta[:-1]


def _np_newton_iteration(theta, x, y, lam):
    """One damped Newton iteration written out in NumPy: gradient and Hessian by hand (with
    the documented 1e-10 ridge on the bias), then halve t from 1 until Armijo holds."""
    a = np.hstack([x, np.ones((len(x), 1))])
    p = 1 / (1 + np.exp(-(a @ theta)))
    grad = a.T @ (p - y) / len(x)
    grad[:-1] += lam * theta[:-1]
    hess = (a * (p * (1 - p))[:, None]).T @ a / len(x)
    hess += np.diag(np.r_[np.full(len(theta) - 1, lam), 1e-10])
    step = np.linalg.solve(hess, grad)
    t, value = 1.0, _np_objective(theta, x, y, lam)
    while _np_objective(theta - t * step, x, y, lam) > value - 1e-4 * t * grad @ step:
        t *= 0.5
    return theta - t * step, t


def test_train_loss_and_hessian_match_closed_forms():
    x, y = _toy_problem()
    s = torch.as_tensor(2.0 * y - 1.0)
    theta = torch.as_tensor(np.random.default_rng(1).normal(size=5))
    lam = 0.1
    got = float(poisoning._train_loss(theta, torch.as_tensor(x), s, lam))
    assert got == pytest.approx(_np_objective(theta.numpy(), x, y, lam), rel=1e-13)
    # the Hessian against autograd's second derivative of the objective (bias unpenalised);
    # atol 1e-13 is float64 round-off, far below lam in float32 (off by ~1.5e-9)
    auto = torch.autograd.functional.hessian(
        lambda th: poisoning._train_loss(th, torch.as_tensor(x), s, lam), theta)
    hess = poisoning._hessian(theta, torch.as_tensor(x), s, lam)
    assert hess.dtype == torch.float64
    torch.testing.assert_close(hess, auto, atol=1e-13, rtol=1e-12)


@pytest.mark.parametrize(("theta0", "t"), [
    ([0.0] * 5, 1.0),                               # the full step is accepted
    ([1.1, -5.53, -7.85, 7.49, 16.35], 2.0 ** -7),  # Armijo halves t 7 times
    # the full step lowers the objective, by 3.5e-4, but less than the 6.4e-4 Armijo asks for
    ([-1.44, 1.02, 0.81, 4.09, -0.26], 0.5),
])
def test_one_newton_iteration_is_a_damped_newton_step(theta0, t):
    x, y = _toy_problem()
    want, t_ref = _np_newton_iteration(np.array(theta0), x, y, 1e-2)
    assert t_ref == t
    got = poisoning.fit_logistic_regression(x, y, 1e-2, theta0=theta0, max_iter=1)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_newton_starts_from_theta0_and_stops_once_the_step_is_below_tol(monkeypatch):
    x, y = _toy_problem()
    lam = 1e-2
    optimum = poisoning.fit_logistic_regression(x, y, lam)
    # started at the optimum, one iteration stays there; from 0 it does not get there
    warm = poisoning.fit_logistic_regression(x, y, lam, theta0=optimum, max_iter=1)
    np.testing.assert_allclose(warm, optimum, atol=1e-12)
    assert np.abs(poisoning.fit_logistic_regression(x, y, lam, max_iter=1) - optimum).max() > 0.1
    # integer starting values are converted (a list of ints, not float64)
    np.testing.assert_array_equal(
        poisoning.fit_logistic_regression(x, y, lam, theta0=[0, 0, 0, 0, 0]), optimum)
    # the stopping rule, with tol = 1e-3 so that every step is far from round-off: the NumPy
    # iteration's steps are 3.4, 0.57, 0.034 and 1.3e-4, so the 4th iteration is the last
    theta, steps = np.zeros(5), []
    while not steps or steps[-1] >= 1e-3:
        new, _ = _np_newton_iteration(theta, x, y, lam)
        steps.append(np.abs(new - theta).max())
        theta = new
    assert len(steps) == 4
    calls = []
    hessian = poisoning._hessian
    monkeypatch.setattr(poisoning, "_hessian", lambda *a: calls.append(1) or hessian(*a))
    got = poisoning.fit_logistic_regression(x, y, lam, tol=1e-3)
    assert len(calls) == 4
    np.testing.assert_allclose(got, theta, rtol=1e-9, atol=1e-12)


def test_newton_recovers_from_a_saturated_start():
    # at theta0 = (0, 0, 50) every sigmoid rounds to 1: the data part of the Hessian is exactly
    # zero, only the bias ridge keeps the Newton system solvable (the docstring's claim), and
    # Newton must still reach scikit-learn's optimum
    x = np.array([[0.0, 0.0], [0.1, 0.0], [0.9, 1.0], [1.0, 1.0]])
    y = np.array([0, 0, 1, 1])
    lam = 1e-2
    theta = poisoning.fit_logistic_regression(x, y, lam, theta0=[0.0, 0.0, 50.0])
    sk = LogisticRegression(C=1 / (4 * lam), tol=1e-12, max_iter=10000).fit(x, y)
    np.testing.assert_allclose(theta, np.r_[sk.coef_[0], sk.intercept_], atol=1e-5)


def test_newton_runs_at_most_max_iter_iterations_50_by_default():
    # separable data with lam = 1e-12: Newton is still moving after 50 iterations
    x = np.array([[0.0, 0.0], [0.1, 0.0], [0.9, 1.0], [1.0, 1.0]])
    y = np.array([0, 0, 1, 1])
    default = poisoning.fit_logistic_regression(x, y, 1e-12)
    np.testing.assert_array_equal(default, poisoning.fit_logistic_regression(x, y, 1e-12,
                                                                             max_iter=50))
    assert np.abs(default - poisoning.fit_logistic_regression(x, y, 1e-12, max_iter=51)).max() \
        > 1e-6


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"x": np.zeros(60)}, ValueError, r"^x must be 2-D"),
    ({"y": np.zeros(59, dtype=int)}, ValueError, r"^y must have 60 labels"),
    ({"y": np.full(60, 2)}, ValueError, r"^y must hold integers in \[0, 2\)"),
    ({"lam": 0.0}, ValueError, r"^lam must be a number > 0"),
    ({"lam": -1.0}, ValueError, r"^lam must be a number > 0"),
])
def test_fit_logistic_regression_rejects_bad_arguments(kwargs, error, match):
    x, y = _toy_problem()
    args = {"x": x, "y": y, "lam": 1e-2} | kwargs
    with pytest.raises(error, match=match):
        poisoning.fit_logistic_regression(args["x"], args["y"], args["lam"])


# ----------------------------------------------------------------------- optimized poisoning
def _val_log_loss(x, y, xp, yp, xv, yv, lam):
    """Validation log-loss of scikit-learn's logistic regression trained on clean + poisons."""
    from sklearn.metrics import log_loss

    xa, ya = np.vstack([x, xp]), np.r_[y, yp]
    sk = LogisticRegression(C=1 / (len(xa) * lam), tol=1e-12, max_iter=10000).fit(xa, ya)
    return log_loss(yv, sk.predict_proba(xv)[:, 1], labels=[0, 1])


def test_optimized_poisons_report_the_validation_loss_of_the_retrained_model():
    x, y = _toy_problem(n=40, d=3)
    xv, yv = _toy_problem(seed=2, n=40, d=3)
    yp = 1 - y[:3]
    xp, losses = poisoning.optimize_poisons(x, y, x[:3], yp, xv, yv, lam=1e-2, steps=2,
                                            step_size=0.2, progress=False)
    # scikit-learn's solution agrees with ours to ~1e-6 in theta (test above), so the losses too
    assert losses[0] == pytest.approx(_val_log_loss(x, y, x[:3], yp, xv, yv, 1e-2), abs=1e-6)
    assert losses[-1] == pytest.approx(_val_log_loss(x, y, xp, yp, xv, yv, 1e-2), abs=1e-6)


def test_one_poisoning_step_moves_each_point_by_step_size_along_its_hypergradient():
    # default step_size 0.5 from points at the centre of the box (no clipping): each poison
    # moves by exactly 0.5 in L2, along its own gradient of the validation loss, which is
    # measured here by central differences through retraining (an independent reference)
    x, y = _toy_problem(n=40, d=3)
    xv, yv = _toy_problem(seed=2, n=40, d=3)
    x0 = np.full((2, 3), 0.5) + np.array([[0.01, 0.0, -0.01], [0.0, 0.02, 0.0]])
    yp = np.array([0, 1])
    xp, _ = poisoning.optimize_poisons(x, y, x0, yp, xv, yv, lam=1e-2, steps=1, progress=False)
    move = xp - x0
    np.testing.assert_allclose(np.linalg.norm(move, axis=1), 0.5, rtol=1e-12)
    h, numeric = 1e-5, np.zeros_like(x0)
    for i in range(2):
        for j in range(3):
            e = np.zeros_like(x0)
            e[i, j] = h
            numeric[i, j] = (_val_log_loss(x, y, x0 + e, yp, xv, yv, 1e-2)
                             - _val_log_loss(x, y, x0 - e, yp, xv, yv, 1e-2)) / (2 * h)
    # scikit-learn's 1e-12 tolerance and h = 1e-5 leave the direction accurate to ~1e-4
    np.testing.assert_allclose(move / 0.5, numeric / np.linalg.norm(numeric, axis=1,
                                                                    keepdims=True), atol=1e-3)


def test_optimize_poisons_defaults_to_100_steps():
    x, y = _toy_problem(n=12, d=2)
    _, losses = poisoning.optimize_poisons(x, y, x[:1], 1 - y[:1], x, y, lam=0.1,
                                           progress=False)
    assert len(losses) == 101


def test_optimize_poisons_progress_bar_is_named_and_cleared(capsys):
    x, y = _toy_problem(n=12, d=2)
    poisoning.optimize_poisons(x, y, x[:1], 1 - y[:1], x, y, lam=0.1, steps=1)
    err = capsys.readouterr().err
    assert "optimizing poisons: " in err
    assert err.endswith("\r")  # leave=False: the finished bar is erased, no line left behind
    poisoning.optimize_poisons(x, y, x[:1], 1 - y[:1], x, y, lam=0.1, steps=1, progress=False)
    assert capsys.readouterr().err == ""


_OX, _OY = _toy_problem(n=20, d=3)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"x_train": _OX[:, 0]}, r"^x_train must be 2-D"),
    ({"x_train": _OX - 0.5}, r"^x_train must hold values >= 0"),
    ({"x_train": _OX + 0.6}, r"^x_train must hold values <= 1"),
    ({"y_train": _OY[:19]}, r"^y_train must have 20 labels"),
    ({"y_train": _OY + 1}, r"^y_train must hold integers in \[0, 2\)"),
    ({"x_poison": _OX[0]}, r"^x_poison must be 2-D"),
    ({"x_poison": _OX[:2] - 0.5}, r"^x_poison must hold values >= 0"),
    ({"y_poison": [0, 1, 0]}, r"^y_poison must have 2 labels"),
    ({"y_poison": [0, 2]}, r"^y_poison must hold integers in \[0, 2\)"),
    ({"x_val": _OX[:, 0]}, r"^x_val must be 2-D"),
    ({"x_val": _OX[:, :2]}, r"^x_val must have 3 features like x_train, got 2"),
    ({"y_val": _OY[:19]}, r"^y_val must have 20 labels"),
    ({"y_val": _OY + 1}, r"^y_val must hold integers in \[0, 2\)"),
    ({"lam": 0.0}, r"^lam must be a number > 0"),
    ({"steps": 0}, r"^steps must be an integer >= 1"),
    ({"step_size": 0.0}, r"^step_size must be a number > 0"),
    ({"step_size": -1.0}, r"^step_size must be a number > 0"),
])
def test_optimize_poisons_rejects_bad_arguments(kwargs, match):
    args = {"x_train": _OX, "y_train": _OY, "x_poison": _OX[:2], "y_poison": 1 - _OY[:2],
            "x_val": _OX, "y_val": _OY, "lam": 1e-2, "steps": 1, "step_size": 0.1} | kwargs
    with pytest.raises(ValueError, match=match):
        poisoning.optimize_poisons(args.pop("x_train"), args.pop("y_train"),
                                   args.pop("x_poison"), args.pop("y_poison"),
                                   args.pop("x_val"), args.pop("y_val"), progress=False, **args)


def test_optimize_poisons_accepts_the_edges_of_its_ranges():
    # one step, pixel values exactly 0 and 1
    x = _OX.copy()
    x[0, 0], x[1, 1] = 0.0, 1.0
    xp, losses = poisoning.optimize_poisons(x, _OY, x[:2], 1 - _OY[:2], x, _OY, lam=1e-2,
                                            steps=1, progress=False)
    assert len(losses) == 2
    with pytest.raises(ValueError, match=r"^x_train must hold values <= 1"):
        poisoning.optimize_poisons(x + 0.99, _OY, x[:2], 1 - _OY[:2], x, _OY, lam=1e-2,
                                   steps=1, progress=False)


# ------------------------------------------------------------------------------- defenses
def test_knn_sanitize_matches_a_brute_force_reference():
    # distinct distances (random points), k neighbours excluding the point itself, keep iff the
    # disagreeing share is <= threshold; with k = 4 and threshold 0.5 some points sit exactly at
    # the threshold (2 of 4 disagree) and must be kept
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 2))
    y = (x[:, 0] + 0.8 * rng.normal(size=60) > 0).astype(int)
    for k, threshold in ((4, 0.5), (1, 0.5), (7, 0.3)):
        dist = np.linalg.norm(x[:, None] - x[None], axis=2)
        np.fill_diagonal(dist, np.inf)
        near = np.argsort(dist, axis=1)[:, :k]
        share = (y[near] != y[:, None]).mean(1)
        if k == 4:
            assert (share == threshold).sum() > 0
        np.testing.assert_array_equal(poisoning.knn_sanitize(x, y, k=k, threshold=threshold),
                                      share <= threshold)
    assert poisoning.knn_sanitize(x, y, k=59).shape == (60,)     # k = n - 1 is allowed
    # the defaults, k = 10 and threshold 0.5
    near = np.argsort(dist, axis=1)[:, :10]
    np.testing.assert_array_equal(poisoning.knn_sanitize(x, y),
                                  (y[near] != y[:, None]).mean(1) <= 0.5)


def test_knn_sanitize_excludes_the_point_itself_among_duplicates():
    # (knn_sanitize used to drop idx[:, 1] as "itself"; with exact duplicates scikit-learn may
    # list a duplicate first, and the point then counted itself as an agreeing neighbour)
    # point 0 (label 0) has two exact duplicates labelled 1: both of its k = 2 neighbours
    # disagree (share 1 > 0.5), so it must be removed
    x = np.array([[0.0], [0.0], [0.0], [5.0], [5.1], [5.2]])
    y = np.array([0, 1, 1, 1, 1, 1])
    assert not poisoning.knn_sanitize(x, y, k=2)[0]


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"x": np.zeros(10)}, ValueError, r"^x must be 2-D"),
    ({"y": np.zeros(9, dtype=int)}, ValueError, r"^y must have 10 labels"),
    ({"k": 0}, ValueError, r"^k must be an integer >= 1 and <= 9, got 0"),
    ({"k": 10}, ValueError, r"^k must be an integer >= 1 and <= 9, got 10"),
    ({"threshold": 1.5}, ValueError, r"^threshold must be a number >= 0 and <= 1"),
])
def test_knn_sanitize_rejects_bad_arguments(kwargs, error, match):
    args = {"x": np.arange(20.0).reshape(10, 2), "y": np.zeros(10, dtype=int), "k": 3} | kwargs
    with pytest.raises(error, match=match):
        poisoning.knn_sanitize(args.pop("x"), args.pop("y"), **args)


def test_spectral_scores_and_filter_work_class_by_class_with_three_classes():
    rng = np.random.default_rng(2)
    f = rng.normal(0, 1, (90, 4)) * np.array([3.0, 1.0, 0.5, 0.2])
    labels = np.repeat([0, 1, 2], [20, 30, 40])
    scores = poisoning.spectral_signature_scores(f, labels)
    for rows in (slice(0, 20), slice(20, 50), slice(50, 90)):
        centred = f[rows] - f[rows].mean(0)
        v = np.linalg.eigh(centred.T @ centred)[1][:, -1]   # eigh, not SVD
        np.testing.assert_allclose(scores[rows], (centred @ v) ** 2, rtol=1e-8)
    keep = poisoning.spectral_filter(scores, labels, eps=0.1, multiplier=0.5)
    # round(0.05 n_c) = 1, 2 (1.5 rounds to even), 2 removed per class: the largest scores
    for c, n_remove in ((0, 1), (1, 2), (2, 2)):
        members = np.flatnonzero(labels == c)
        removed = members[~keep[members]]
        np.testing.assert_array_equal(np.sort(removed),
                                      np.sort(members[np.argsort(-scores[members])[:n_remove]]))


@pytest.mark.parametrize(("call", "match"), [
    (lambda: poisoning.spectral_signature_scores(np.zeros(5), [0] * 5), r"^features must be 2-D"),
    (lambda: poisoning.spectral_signature_scores(np.zeros((5, 2)), [0] * 4),
     r"^labels must have 5 labels"),
    (lambda: poisoning.spectral_filter(np.zeros((5, 1)), [0] * 5, 0.1), r"^scores must be 1-D"),
    (lambda: poisoning.spectral_filter(np.zeros(5), [0] * 4, 0.1), r"^labels must have 5 labels"),
    (lambda: poisoning.spectral_filter(np.zeros(5), [0] * 5, 1.5),
     r"^eps must be a number >= 0 and <= 1"),
    (lambda: poisoning.spectral_filter(np.zeros(5), [0] * 5, 0.1, multiplier=-1.0),
     r"^multiplier must be a number >= 0"),
])
def test_spectral_functions_reject_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_spectral_filter_accepts_multipliers_below_one():
    keep = poisoning.spectral_filter(np.arange(10.0), [0] * 10, eps=0.4, multiplier=0.5)
    np.testing.assert_array_equal(keep, np.arange(10) < 8)   # round(0.2 * 10) = 2 removed


def test_optimize_poisons_solves_the_inner_problem_with_50_newton_iterations():
    # separable data and lam = 1e-12: Newton is still moving after 50 iterations, so the first
    # reported loss is that of the 50th iterate (the NumPy iteration above, repeated). The two
    # implementations agree to ~4e-7 relative here (round-off over 50 ill-conditioned
    # iterations); a 51st iteration would move the loss by 2e-4 relative
    x = np.array([[0.0, 0.0], [0.1, 0.0], [0.9, 1.0], [1.0, 1.0]])
    y = np.array([0, 0, 1, 1])
    xp, yp = np.array([[0.05, 0.05]]), np.array([0])
    xa, ya = np.vstack([x, xp]), np.r_[y, yp]
    theta = np.zeros(3)
    for _ in range(50):
        theta, _ = _np_newton_iteration(theta, xa, ya, 1e-12)
    _, losses = poisoning.optimize_poisons(x, y, xp, yp, xa, ya, lam=1e-12, steps=1,
                                           progress=False)
    assert losses[0] == pytest.approx(_np_objective(theta, xa, ya, 0.0), rel=1e-5, abs=0)
