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
    ({"fraction": 1.5}, ValueError, "fraction"),
    ({"fraction": -0.1}, ValueError, "fraction"),
    ({"num_classes": 1}, ValueError, "num_classes"),
    ({"priority": [1.0, 2.0]}, ValueError, "same length"),
    ({"new_labels": [0, 1, 0, 1]}, ValueError, "must differ"),
    ({"y": [0, 1, 2, 1]}, ValueError, "y must hold integers in"),
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
