"""Tests of helpers.dp_sgd (per-example gradients, clipping, noise, Poisson sampling, the
private loop, membership scores), helpers.scattering and the one-run audit bound."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from sklearn.metrics import roc_auc_score
from torch import nn

from helpers import accounting as acc
from helpers import dp_sgd
from helpers import scattering as sc


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _loop_gradients(model, x, y):
    """Independent reference: one backward pass per example."""
    out = {k: [] for k, p in model.named_parameters()}
    for i in range(len(x)):
        model.zero_grad()
        F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).backward()
        for k, p in model.named_parameters():
            out[k].append(p.grad.detach().clone())
    model.zero_grad(set_to_none=True)
    return {k: torch.stack(v) for k, v in out.items()}


def _group_norm_cnn():
    return nn.Sequential(nn.Conv2d(1, 4, 5, stride=2), nn.GroupNorm(2, 4), nn.Tanh(),
                         nn.Flatten(), nn.Linear(4 * 12 * 12, 10))


@pytest.mark.parametrize(("build", "method"), [
    (dp_sgd.TanhCNN, "hooks"), (dp_sgd.TanhCNN, "vmap"), (_group_norm_cnn, "vmap"),
    (_group_norm_cnn, "auto"), (lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), "auto"),
    (lambda: nn.Sequential(nn.Conv2d(1, 3, 3, stride=2, padding=1, dilation=2), nn.ReLU(),
                           nn.Flatten(), nn.Linear(3 * 13 * 13, 10)), "hooks"),
])
def test_per_sample_gradients_match_loop(build, method):
    torch.manual_seed(0)
    model = build().double()
    x = torch.rand(5, 1, 28, 28, dtype=torch.float64)
    y = torch.tensor([0, 3, 9, 3, 1])
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    got = dp_sgd.per_sample_gradients(model, x, y, method=method)
    want = _loop_gradients(model, x, y)
    assert set(got) == set(want)
    for k in want:
        assert got[k].shape == (5, *dict(model.named_parameters())[k].shape)
        torch.testing.assert_close(got[k], want[k], atol=1e-6, rtol=1e-6)
    for k, p in model.named_parameters():  # model unchanged, no .grad left
        assert torch.equal(p, before[k])
        assert p.grad is None


def test_batch_norm_refused():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(),
                          nn.Linear(2 * 26 * 26, 10))
    with pytest.raises(ValueError, match="batch normalisation"):
        dp_sgd.per_sample_gradients(model, torch.rand(2, 1, 28, 28), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="batch normalisation"):
        dp_sgd.train_private(model, torch.rand(4, 1, 28, 28), torch.zeros(4, dtype=torch.long),
                             noise_multiplier=1.0, max_norm=1.0, sample_rate=0.5, epochs=1,
                             lr=0.1)


def test_clipping_joint_norm():
    g = {"a": torch.tensor([[3.0, 0.0], [0.3, 0.0]]), "b": torch.tensor([[4.0], [0.4]])}
    clipped, norms = dp_sgd.clip_gradients(g, 1.0)
    torch.testing.assert_close(norms, torch.tensor([5.0, 0.5]))  # joint over a and b
    # the first example is scaled by 1/5, the second (norm 0.5 < C) is untouched
    torch.testing.assert_close(clipped["a"], torch.tensor([[0.6, 0.0], [0.3, 0.0]]))
    torch.testing.assert_close(clipped["b"], torch.tensor([[0.8], [0.4]]))


def test_clipped_norms_at_most_c():
    torch.manual_seed(1)
    model = dp_sgd.TanhCNN()
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    clipped, norms = dp_sgd.clip_gradients(dp_sgd.per_sample_gradients(model, x, y), 0.01)
    after = torch.sqrt(sum(g.flatten(1).pow(2).sum(1) for g in clipped.values()))
    assert (norms > 0.01).all()  # all were clipped here...
    torch.testing.assert_close(after, torch.full((8,), 0.01))  # ...to exactly C


def test_linear_ghost_clipping_equals_per_example():
    torch.manual_seed(2)
    layer = nn.Linear(20, 5).double()
    x, y = torch.randn(30, 20, dtype=torch.float64), torch.randint(0, 5, (30,))
    got, norms = dp_sgd.linear_clipped_sum(layer, x, y, 0.5)
    clipped, want_norms = dp_sgd.clip_gradients(dp_sgd.per_sample_gradients(layer, x, y), 0.5)
    torch.testing.assert_close(norms, want_norms)
    for k in ("weight", "bias"):
        torch.testing.assert_close(got[k], clipped[k].sum(0))


def test_noise_standard_deviation_is_sigma_c():
    zeros = {"w": torch.zeros(200_000, dtype=torch.float64)}
    noisy = dp_sgd.add_noise(zeros, noise_multiplier=1.5, max_norm=2.0, seed=0)["w"]
    # std of the sample std of n normals is about sigma / sqrt(2n): allow 5 standard errors
    se = 3.0 / math.sqrt(2 * 200_000)
    assert abs(noisy.std().item() - 3.0) < 5 * se
    assert abs(noisy.mean().item()) < 5 * 3.0 / math.sqrt(200_000)
    _, p = stats.kstest(noisy.numpy(), stats.norm(0, 3.0).cdf)
    assert p > 1e-3


def test_poisson_batch_sizes_are_binomial():
    gen = torch.Generator().manual_seed(0)
    n, q, draws = 500, 0.04, 4000
    sizes = np.array([len(dp_sgd.poisson_sample(n, q, gen)) for _ in range(draws)])
    # mean and variance of Binomial(500, 0.04): 20 and 19.2; 5 standard errors each
    assert abs(sizes.mean() - n * q) < 5 * math.sqrt(n * q * (1 - q) / draws)
    var_se = n * q * (1 - q) * math.sqrt(2 / (draws - 1))
    assert abs(sizes.var(ddof=1) - n * q * (1 - q)) < 5 * var_se
    # goodness of fit to the binomial pmf over the central sizes (chi-square)
    edges = np.arange(10, 32)
    observed = np.array([(sizes == k).sum() for k in edges])
    expected = stats.binom.pmf(edges, n, q) * draws
    assert stats.chisquare(observed, expected * observed.sum() / expected.sum()).pvalue > 1e-3


def test_train_private_reports_accountant_epsilon_and_learns():
    torch.manual_seed(3)
    x = torch.randn(400, 6)
    y = (x[:, 0] > 0).long()
    model = nn.Linear(6, 2)
    hist = dp_sgd.train_private(model, x, y, noise_multiplier=1.0, max_norm=1.0,
                                sample_rate=0.25, epochs=5, lr=0.5, seed=0, eval_data=(x, y))
    assert [h["steps"] for h in hist] == [4, 8, 12, 16, 20]
    for h in hist:
        assert h["epsilon"] == pytest.approx(acc.epsilon(1.0, 0.25, h["steps"], 1e-5))
    assert hist[-1]["accuracy"] > 0.9
    assert not model.training
    assert model.weight.grad is None


def test_train_private_same_seed_same_model():
    x, y = torch.randn(100, 4), torch.randint(0, 3, (100,))
    models = []
    for _ in range(2):
        torch.manual_seed(0)
        m = nn.Linear(4, 3)
        dp_sgd.train_private(m, x, y, noise_multiplier=1.0, max_norm=1.0, sample_rate=0.2,
                             epochs=2, lr=0.1, seed=7)
        models.append(m.weight.detach().clone())
    assert torch.equal(*models)


def test_roc_summary_matches_sklearn():
    rng = np.random.default_rng(0)
    s_in, s_out = rng.normal(0.5, 1, 300), rng.normal(0, 1, 500)
    s_in[:20] = s_out[:20]  # ties
    roc = dp_sgd.roc_summary(s_in, s_out, fpr_at=0.05)
    labels = np.r_[np.ones(300), np.zeros(500)]
    assert roc["auc"] == pytest.approx(roc_auc_score(labels, np.r_[s_in, s_out]), abs=1e-12)
    thr = np.sort(s_out)[::-1][int(0.05 * 500)]  # 25 non-members strictly above thr
    assert roc["tpr_at_fpr"] == pytest.approx((s_in > thr).mean(), abs=1 / 300 + 1e-12)


def test_loss_scores_are_negative_cross_entropy():
    model = nn.Linear(3, 2)
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 1, 0, 1])
    want = -F.cross_entropy(model(x), y, reduction="none").detach().numpy()
    np.testing.assert_allclose(dp_sgd.loss_scores(model, x, y), want, rtol=1e-6)


# ---------------------------------------------------------------------------- scattering
def test_scattering_shape_and_constant_image():
    x = torch.full((2, 1, 28, 28), 0.5)
    s = sc.scattering_features(x)
    assert s.shape == (2, 81, 7, 7)
    # a constant image: the low-pass keeps it (phi sums to 1), every wavelet (zero mean) kills it
    torch.testing.assert_close(s[:, 0], torch.full((2, 7, 7), 0.5), atol=1e-5, rtol=0)
    assert s[:, 1:].abs().max() < 1e-4


def test_scattering_translation_covariance():
    # circular shift by 2^J = 4 pixels shifts the 7x7 output by one cell exactly
    x = torch.rand(1, 1, 28, 28)
    s = sc.scattering_features(x)
    s_shift = sc.scattering_features(torch.roll(x, shifts=4, dims=-1))
    torch.testing.assert_close(torch.roll(s, shifts=1, dims=-1), s_shift, atol=1e-4, rtol=1e-4)


def test_morlet_zero_mean_and_lowpass_dc():
    psi = sc.morlet_filter(28, 1.6, 3 * math.pi / 8, 0.3)
    assert abs(psi[0, 0]) < 1e-6
    assert psi.abs().max() == pytest.approx(1.0)
    phi = sc.morlet_filter(28, 3.2, 0.0, 0.0)
    assert phi[0, 0].real == pytest.approx(1.0)


def test_group_normalize_per_example():
    f = torch.randn(3, 6, 2, 2) * 5 + 2
    g = sc.group_normalize(f, groups=3)
    block = f[1, 2:4]
    want = (block - block.mean()) / torch.sqrt(block.var(unbiased=False) + 1e-5)
    torch.testing.assert_close(g[1, 2:4], want, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------- audit
def test_audit_p_value_pure_dp_is_binomial_tail():
    p = acc.audit_p_value(1000, 100, 70, 1.0, 0.0)
    assert p == pytest.approx(stats.binom.sf(69, 100, math.exp(1) / (1 + math.exp(1))))


def test_audit_lower_bound_behaviour():
    assert acc.audit_epsilon_lower_bound(1000, 200, 100, 1e-5) == 0.0  # chance level
    lb = acc.audit_epsilon_lower_bound(1000, 200, 190, 1e-5)
    # at the bound the p-value is the significance level 0.05
    assert acc.audit_p_value(1000, 200, 190, lb, 1e-5) == pytest.approx(0.05, rel=1e-3)
    assert acc.audit_epsilon_lower_bound(1000, 200, 200, 1e-5) > lb


# -------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    ({"noise_multiplier": -1.0}, ValueError, "noise_multiplier"),
    ({"max_norm": 0.0}, ValueError, "max_norm"),
    ({"sample_rate": 0.0}, ValueError, "sample_rate"),
    ({"sample_rate": 1.2}, ValueError, "sample_rate"),
    ({"epochs": 0}, ValueError, "epochs"),
    ({"delta": 1.0}, ValueError, "delta"),
    ({"lr": -0.1}, ValueError, "lr"),
    ({"seed": 1.5}, TypeError, "seed"),
])
def test_train_private_bad_inputs(kwargs, exc, match):
    args = {"noise_multiplier": 1.0, "max_norm": 1.0, "sample_rate": 0.5, "epochs": 1,
            "lr": 0.1} | kwargs
    with pytest.raises(exc, match=match):
        dp_sgd.train_private(nn.Linear(2, 2), torch.randn(4, 2), torch.zeros(4, dtype=torch.long),
                             **args)


def test_other_bad_inputs():
    with pytest.raises(ValueError, match="hooks"):
        dp_sgd.per_sample_gradients(_group_norm_cnn(), torch.rand(2, 1, 28, 28),
                                    torch.tensor([0, 1]), method="hooks")
    with pytest.raises(ValueError, match="method"):
        dp_sgd.per_sample_gradients(nn.Linear(2, 2), torch.rand(2, 2), torch.tensor([0, 1]),
                                    method="loop")
    with pytest.raises(ValueError, match="max_norm"):
        dp_sgd.clip_gradients({"a": torch.ones(2, 2)}, -1.0)
    with pytest.raises(ValueError, match="sample_rate"):
        dp_sgd.poisson_sample(10, 0.0)
    with pytest.raises(ValueError, match="n must"):
        dp_sgd.poisson_sample(0, 0.5)
    with pytest.raises(TypeError, match="nn.Linear"):
        dp_sgd.linear_clipped_sum(nn.Conv2d(1, 1, 1), torch.ones(1, 2), torch.zeros(1), 1.0)
    with pytest.raises(ValueError, match="divisible"):
        sc.scattering_features(torch.rand(1, 1, 30, 30))
    with pytest.raises(TypeError, match="torch.Tensor"):
        sc.scattering_features(np.zeros((1, 1, 28, 28)))
    with pytest.raises(ValueError, match="groups"):
        sc.group_normalize(torch.ones(1, 81, 7, 7), groups=10)
    with pytest.raises(ValueError, match="v must"):
        acc.audit_p_value(10, 5, 6, 1.0, 1e-5)


def test_audit_guesses_counts():
    scores = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.0])
    included = np.array([True, False, True, False, False, True])
    # top 2 -> members (1 right), bottom 2 -> non-members (scores 1, 0: 1 right)
    assert dp_sgd.audit_guesses(scores, included, 2, 2) == (4, 2)
    assert dp_sgd.audit_guesses(scores, included, 1, 0) == (1, 1)
    with pytest.raises(ValueError, match="k_neg"):
        dp_sgd.audit_guesses(scores, included, 4, 3)


def test_train_at_epsilon_meets_target():
    x, y = torch.randn(200, 3), torch.randint(0, 2, (200,))
    head = dp_sgd.zero_linear(3, 2)
    assert head.weight.abs().sum() == 0
    sigma, hist = dp_sgd.train_at_epsilon(head, x, y, 2.0, batch_size=50, epochs=3,
                                          max_norm=1.0, lr=0.1, seed=0)
    assert hist[-1]["steps"] == 12
    assert hist[-1]["epsilon"] <= 2.0
    assert acc.epsilon(sigma * 0.99, 0.25, 12, 1e-5) > 2.0  # not much more noise than needed


def test_ema_is_average_of_iterates():
    # q = 1: one step per epoch. theta1 after one epoch, theta2 after two (same seed, same
    # draws); the average with ema = 0.5 from theta0 = 0 is 0.5 (0.5 * 0 + 0.5 theta1)
    # + 0.5 theta2 = 0.25 theta1 + 0.5 theta2.
    x, y = torch.randn(50, 3), torch.randint(0, 2, (50,))

    def run(epochs, ema):
        head = dp_sgd.zero_linear(3, 2)
        dp_sgd.train_private(head, x, y, noise_multiplier=1.0, max_norm=1.0, sample_rate=1.0,
                             epochs=epochs, lr=0.1, momentum=0.0, seed=3, ema=ema)
        return head.weight.detach().clone()

    theta1, theta2 = run(1, 0.0), run(2, 0.0)
    torch.testing.assert_close(run(2, 0.5), 0.25 * theta1 + 0.5 * theta2)


def test_more_bad_inputs():
    with pytest.raises(ValueError, match="fpr_at"):
        dp_sgd.roc_summary([1.0, 2.0], [0.0], fpr_at=1.5)
    with pytest.raises(ValueError, match="scores_in"):
        dp_sgd.roc_summary([], [0.0])
    with pytest.raises(ValueError, match="y must"):
        dp_sgd.loss_scores(nn.Linear(2, 2), torch.ones(3, 2), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="in_features"):
        dp_sgd.zero_linear(0)
    with pytest.raises(ValueError, match="batch_size"):
        dp_sgd.train_at_epsilon(nn.Linear(2, 2), torch.ones(4, 2), torch.zeros(4, dtype=torch.long),
                                1.0, batch_size=5, epochs=1, max_norm=1.0, lr=0.1)
    with pytest.raises(ValueError, match="ema"):
        dp_sgd.train_private(nn.Linear(2, 2), torch.ones(4, 2), torch.zeros(4, dtype=torch.long),
                             noise_multiplier=1.0, max_norm=1.0, sample_rate=0.5, epochs=1,
                             lr=0.1, ema=1.0)


def test_clipped_sum_equals_clip_then_sum():
    torch.manual_seed(4)
    model = dp_sgd.TanhCNN().double()
    x, y = torch.rand(6, 1, 28, 28, dtype=torch.float64), torch.randint(0, 10, (6,))
    got, norms = dp_sgd.clipped_sum(model, x, y, 0.05)
    clipped, want_norms = dp_sgd.clip_gradients(dp_sgd.per_sample_gradients(model, x, y,
                                                                            method="vmap"), 0.05)
    torch.testing.assert_close(norms, want_norms)
    for k, g in clipped.items():
        torch.testing.assert_close(got[k], g.sum(0))


def test_hooks_refuse_a_layer_used_twice():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(torch.tanh(self.fc(x)))

    with pytest.raises(ValueError, match="twice"):
        dp_sgd.per_sample_gradients(Twice(), torch.randn(3, 4), torch.tensor([0, 1, 2]))
    got = dp_sgd.per_sample_gradients(Twice(), torch.randn(3, 4), torch.tensor([0, 1, 2]),
                                      method="vmap")
    assert got["fc.weight"].shape == (3, 4, 4)
