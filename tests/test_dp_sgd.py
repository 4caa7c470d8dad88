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
    with pytest.raises(ValueError, match=r"^model contains batch normalisation \(1: BatchNorm2d\), "
                                         r"which mixes the examples of a batch"):
        dp_sgd.per_sample_gradients(model, torch.rand(2, 1, 28, 28), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"^model contains batch normalisation"):
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
    ({"noise_multiplier": -1.0}, ValueError, r"^noise_multiplier must be a number >= 0, got -1"),
    ({"max_norm": 0.0}, ValueError, r"^max_norm must be a number > 0, got 0"),
    ({"sample_rate": 0.0}, ValueError, r"^sample_rate must be a number > 0 and <= 1, got 0"),
    ({"sample_rate": 1.2}, ValueError, r"^sample_rate must be a number > 0 and <= 1, got 1.2"),
    ({"epochs": 0}, ValueError, r"^epochs must be an integer >= 1, got 0"),
    ({"delta": 1.0}, ValueError, r"^delta must be a number > 0 and < 1, got 1"),
    ({"delta": 0.0}, ValueError, r"^delta must be a number > 0 and < 1, got 0"),
    ({"lr": -0.1}, ValueError, r"^lr must be a number > 0, got -0.1"),
    ({"lr": 0.0}, ValueError, r"^lr must be a number > 0, got 0"),
    ({"momentum": 1.0}, ValueError, r"^momentum must be a number >= 0 and < 1, got 1"),
    ({"momentum": -0.1}, ValueError, r"^momentum must be a number >= 0 and < 1, got -0.1"),
    ({"ema": -0.1}, ValueError, r"^ema must be a number >= 0 and < 1, got -0.1"),
    ({"seed": 1.5}, TypeError, r"^seed must be None, an int or a torch.Generator, got float"),
    ({"y": torch.zeros(3, dtype=torch.long)}, ValueError, r"^y must have shape \(4,\)"),
    ({"model": "m"}, TypeError, r"^model must be a torch.nn.Module, got str"),
])
def test_train_private_bad_inputs(kwargs, exc, match):
    args = {"model": nn.Linear(2, 2), "y": torch.zeros(4, dtype=torch.long),
            "noise_multiplier": 1.0, "max_norm": 1.0, "sample_rate": 0.5, "epochs": 1,
            "lr": 0.1} | kwargs
    model = args.pop("model")
    if isinstance(model, nn.Module):
        model.eval()
    with pytest.raises(exc, match=match):
        dp_sgd.train_private(model, torch.randn(4, 2), args.pop("y"), **args)
    if isinstance(model, nn.Module):
        assert not model.training      # rejected before anything is done to the model


def test_other_bad_inputs():
    with pytest.raises(ValueError, match=r"^method='hooks' needs a model whose trainable layers "
                                         r"are all nn.Linear or nn.Conv2d; use method='vmap'"):
        dp_sgd.per_sample_gradients(_group_norm_cnn(), torch.rand(2, 1, 28, 28),
                                    torch.tensor([0, 1]), method="hooks")
    with pytest.raises(ValueError, match=r"^method must be one of"):
        dp_sgd.per_sample_gradients(nn.Linear(2, 2), torch.rand(2, 2), torch.tensor([0, 1]),
                                    method="loop")
    with pytest.raises(ValueError, match=r"^max_norm must be a number > 0, got -1"):
        dp_sgd.clip_gradients({"a": torch.ones(2, 2)}, -1.0)
    with pytest.raises(ValueError, match=r"^sample_rate must be a number > 0 and <= 1, got 0"):
        dp_sgd.poisson_sample(10, 0.0)
    with pytest.raises(ValueError, match=r"^n must be an integer >= 1, got 0"):
        dp_sgd.poisson_sample(0, 0.5)
    with pytest.raises(TypeError, match=r"^layer must be an nn.Linear, got Conv2d"):
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
    with pytest.raises(ValueError, match=r"^k_neg must be an integer >= 0 and <= 2, got 3"):
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
    with pytest.raises(ValueError, match=r"^fpr_at must be a number >= 0 and <= 1, got 1.5"):
        dp_sgd.roc_summary([1.0, 2.0], [0.0], fpr_at=1.5)
    with pytest.raises(ValueError, match=r"^scores_in must not be empty"):
        dp_sgd.roc_summary([], [0.0])
    with pytest.raises(ValueError, match=r"^y must have shape \(3,\)"):
        dp_sgd.loss_scores(nn.Linear(2, 2), torch.ones(3, 2), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"^in_features must be an integer >= 1, got 0"):
        dp_sgd.zero_linear(0)
    with pytest.raises(ValueError, match=r"^batch_size must be an integer >= 1 and <= 4, got 5"):
        dp_sgd.train_at_epsilon(nn.Linear(2, 2), torch.ones(4, 2), torch.zeros(4, dtype=torch.long),
                                1.0, batch_size=5, epochs=1, max_norm=1.0, lr=0.1)
    with pytest.raises(ValueError, match=r"^ema must be a number >= 0 and < 1, got 1"):
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


class _Twice(nn.Module):
    """One nn.Linear called twice in a forward pass (the layer hooks cannot split it)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(torch.tanh(self.fc(x)))


def test_hooks_refuse_a_layer_used_twice():
    with pytest.raises(ValueError, match=r"^layer 'fc' is called twice in one forward pass"):
        dp_sgd.per_sample_gradients(_Twice(), torch.randn(3, 4), torch.tensor([0, 1, 2]))
    got = dp_sgd.per_sample_gradients(_Twice(), torch.randn(3, 4), torch.tensor([0, 1, 2]),
                                      method="vmap")
    assert got["fc.weight"].shape == (3, 4, 4)


# ------------------------------------------------------------------- more per-example cases
class _SequenceModel(nn.Module):
    """A linear layer applied to every position of a sequence (3-D activations), a bias-free
    linear layer, and a frozen one: the hooks path must handle all three."""

    def __init__(self):
        super().__init__()
        self.per_position = nn.Linear(4, 3)
        self.no_bias = nn.Linear(3 * 5, 6, bias=False)
        self.frozen = nn.Linear(6, 10)
        self.frozen.weight.requires_grad_(False)

    def forward(self, x):
        h = torch.tanh(self.per_position(x.reshape(len(x), 5, 4)))
        return self.frozen(torch.tanh(self.no_bias(h.flatten(1))))


@pytest.mark.parametrize("method", ["hooks", "vmap"])
def test_per_sample_gradients_of_sequences_bias_free_and_frozen_layers(method):
    torch.manual_seed(5)
    model = _SequenceModel().double()
    x = torch.rand(4, 20, dtype=torch.float64)
    y = torch.tensor([0, 3, 9, 3])
    got = dp_sgd.per_sample_gradients(model, x, y, method=method)
    trainable = {k: p for k, p in model.named_parameters() if p.requires_grad}
    want = {k: [] for k in trainable}                # frozen.weight: no gradient returned
    for i in range(len(x)):                          # one backward pass per example
        grads = torch.autograd.grad(F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]),
                                    list(trainable.values()))
        for k, g in zip(trainable, grads, strict=True):
            want[k].append(g)
    want = {k: torch.stack(v) for k, v in want.items()}
    assert set(got) == set(want) == {"per_position.weight", "per_position.bias",
                                     "no_bias.weight", "frozen.bias"}
    for k in want:
        torch.testing.assert_close(got[k], want[k], atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("conv", [nn.Conv2d(2, 2, 3, groups=2),
                                  nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect")],
                         ids=["grouped", "reflect"])
def test_layers_the_hooks_cannot_handle_go_to_vmap(conv):
    torch.manual_seed(6)
    channels = conv.in_channels
    model = nn.Sequential(conv, nn.Flatten(), nn.LazyLinear(3)).double()
    x = torch.rand(3, channels, 6, 6, dtype=torch.float64)
    model(x)                                         # materialise the lazy layer
    y = torch.tensor([0, 2, 1])
    got = dp_sgd.per_sample_gradients(model, x, y)   # "auto"
    want = _loop_gradients(model, x, y)
    for k in want:
        torch.testing.assert_close(got[k], want[k], atol=1e-10, rtol=1e-10)
    with pytest.raises(ValueError, match=r"^method='hooks' needs a model"):
        dp_sgd.per_sample_gradients(model, x, y, method="hooks")


def test_a_top_level_linear_layer_names_its_parameters_plainly():
    layer = nn.Linear(3, 2)
    got = dp_sgd.per_sample_gradients(layer, torch.rand(4, 3), torch.tensor([0, 1, 1, 0]),
                                      method="hooks")
    assert set(got) == {"weight", "bias"}


def test_layer_used_twice_message_names_the_layer_and_the_way_out():
    with pytest.raises(ValueError, match=r"^layer 'fc' is called twice in one forward pass; "
                                         r"per-example gradients by hooks need each layer once: "
                                         r"use method='vmap'$"):
        dp_sgd.per_sample_gradients(_Twice(), torch.randn(3, 4), torch.tensor([0, 1, 2]))


def test_clipping_leaves_tiny_and_zero_gradients_alone():
    # norms 0, 1e-13 and 2 with C = 1: the first two are unchanged (factor 1), the third halved
    g = {"a": torch.tensor([[0.0, 0.0], [1e-13, 0.0], [0.0, 2.0]], dtype=torch.float64)}
    clipped, norms = dp_sgd.clip_gradients(g, 1.0)
    torch.testing.assert_close(norms, torch.tensor([0.0, 1e-13, 2.0], dtype=torch.float64))
    assert torch.equal(clipped["a"][:2], g["a"][:2])
    torch.testing.assert_close(clipped["a"][2], torch.tensor([0.0, 1.0], dtype=torch.float64))
    for bad in ({}, [torch.ones(2, 1)]):
        with pytest.raises(TypeError, match=r"^grads must be a non-empty dict name -> tensor "
                                            r"\(N, \.\.\.\)$"):
            dp_sgd.clip_gradients(bad, 1.0)
    with pytest.raises(ValueError, match=r"^grads must all have the same first \(example\) "
                                         r"dimension$"):
        dp_sgd.clip_gradients({"a": torch.ones(2, 2), "b": torch.ones(3)}, 1.0)


def test_audit_guesses_on_an_asymmetric_case_and_ties():
    # members guessed for the 2 highest scores (7: member, 6: not), non-members for the 3
    # lowest (2: member, 1: not, 0: not): 1 + 2 correct out of 5 guesses
    scores = np.array([7.0, 6.0, 5.0, 4.0, 2.0, 1.0, 0.0])
    included = np.array([True, False, True, True, True, False, False])
    assert dp_sgd.audit_guesses(scores, included, 2, 3) == (5, 3)
    assert dp_sgd.audit_guesses(scores, included, 0, 0) == (0, 0)
    # 100 tied scores: the stable order keeps the input order, so the first 10 are "members"
    tied = np.zeros(100)
    inc = np.arange(100) < 10
    assert dp_sgd.audit_guesses(tied, inc, 10, 10) == (20, 20)
    # many ties among three score values: ties are broken by input order, as Python's stable
    # sorted() breaks them (numpy's default quicksort breaks them differently here)
    rng = np.random.default_rng(0)
    scores, included = rng.integers(0, 3, 500).astype(float), rng.random(500) < 0.5
    order = np.array(sorted(range(500), key=lambda i: -scores[i]))
    want = int(included[order[:100]].sum()) + int((~included[order[400:]]).sum())
    assert dp_sgd.audit_guesses(scores, included, 100, 100) == (200, want)


@pytest.mark.parametrize(("args", "exc", "match"), [
    (([1.0, 2.0], [True], 1, 0), ValueError,
     r"^scores and included must have the same length, got 2 and 1"),
    (([[1.0]], [True], 1, 0), ValueError, r"^scores must be 1-D"),
    (([1.0], [[True]], 1, 0), ValueError, r"^included must be 1-D"),
    (([1.0], [1], 1, 0), TypeError, r"^included must hold booleans"),
    (([1.0, 2.0], [True, False], -1, 0), ValueError, r"^k_pos must be an integer >= 0, got -1"),
    (([1.0, 2.0], [True, False], 1, 2), ValueError,
     r"^k_neg must be an integer >= 0 and <= 1, got 2"),
])
def test_audit_guesses_rejects_bad_arguments(args, exc, match):
    with pytest.raises(exc, match=match):
        dp_sgd.audit_guesses(*args)


def test_roc_curve_matches_sklearn_and_counts_the_fpr_bound_inclusively():
    from sklearn.metrics import roc_curve

    rng = np.random.default_rng(1)
    s_in, s_out = rng.normal(1, 1, 40), rng.normal(0, 1, 5)
    roc = dp_sgd.roc_summary(s_in, s_out)
    fpr, tpr, _ = roc_curve(np.r_[np.ones(40), np.zeros(5)], np.r_[s_in, s_out],
                            drop_intermediate=False)
    np.testing.assert_allclose(roc["fpr"], fpr)
    np.testing.assert_allclose(roc["tpr"], tpr)
    # by hand: in 5, 4, out 3, in 2.5, out 2, ...: TPR 0.4 at FPR 0 and 0.6 at FPR 1/5, and
    # 1 / 5 == 0.2 is within the bound fpr_at = 0.2
    hand = dp_sgd.roc_summary([5.0, 4.0, 2.5, 1.0, 0.5], [3.0, 2.0, -1.0, -2.0, -3.0],
                              fpr_at=0.2)
    assert hand["tpr_at_fpr"] == 0.6
    assert dp_sgd.roc_summary([5.0, 4.0, 2.5, 1.0, 0.5], [3.0, 2.0, -1.0, -2.0, -3.0],
                              fpr_at=0.1)["tpr_at_fpr"] == 0.4
    # infinite scores are allowed: a certain member and a certain non-member
    inf = dp_sgd.roc_summary([np.inf, 1.0], [0.0, -np.inf])
    assert inf["auc"] == 1.0
    with pytest.raises(ValueError, match=r"^scores_in must be 1-D"):
        dp_sgd.roc_summary([[1.0]], [0.0])
    with pytest.raises(ValueError, match=r"^scores_out must be 1-D"):
        dp_sgd.roc_summary([1.0], [[0.0]])
    with pytest.raises(ValueError, match=r"^scores_out must not be empty"):
        dp_sgd.roc_summary([1.0], [])


def test_tanh_cnn_is_the_documented_architecture():
    # a second implementation with functional ops and the same weights: Conv(1->16, 8x8,
    # stride 2, pad 3) - tanh - MaxPool(2, 1) - Conv(16->32, 4x4, stride 2) - tanh -
    # MaxPool(2, 1) - FC(512->32) - tanh - FC(32->10)
    torch.manual_seed(7)
    model = dp_sgd.TanhCNN()
    assert sum(p.numel() for p in model.parameters()) == 26_010
    c1, c2, f1, f2 = (m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear))
    x = torch.rand(3, 1, 28, 28)
    h = F.max_pool2d(torch.tanh(F.conv2d(x, c1.weight, c1.bias, stride=2, padding=3)), 2, 1)
    h = F.max_pool2d(torch.tanh(F.conv2d(h, c2.weight, c2.bias, stride=2)), 2, 1)
    want = F.linear(torch.tanh(F.linear(h.flatten(1), f1.weight, f1.bias)), f2.weight, f2.bias)
    torch.testing.assert_close(model(x), want)
    assert dp_sgd.TanhCNN(num_classes=3)(x).shape == (3, 3)


def test_vmap_draws_its_own_dropout_mask_per_example():
    # randomness="different": a model with dropout in training mode is allowed under vmap
    torch.manual_seed(8)
    model = nn.Sequential(nn.Linear(6, 6), nn.Dropout(0.5), nn.Linear(6, 3)).train()
    x, y = torch.randn(4, 6), torch.tensor([0, 1, 2, 0])
    got = dp_sgd.per_sample_gradients(model, x, y, method="vmap")
    assert got["0.weight"].shape == (4, 6, 6)


@pytest.mark.parametrize(("x", "y"), [
    (np.ones((2, 2)), torch.zeros(2, dtype=torch.long)),
    (torch.ones(2), torch.zeros(2, dtype=torch.long)),
    (torch.ones(0, 2), torch.zeros(0, dtype=torch.long)),
])
def test_per_sample_gradients_need_a_batch_of_tensors(x, y):
    with pytest.raises(TypeError, match=r"^x must be a non-empty torch.Tensor with a batch "
                                        r"dimension$"):
        dp_sgd.per_sample_gradients(nn.Linear(2, 2), x, y)


def test_per_sample_gradients_and_zero_linear_check_their_arguments():
    with pytest.raises(ValueError, match=r"^y must have shape \(2,\)"):
        dp_sgd.per_sample_gradients(nn.Linear(2, 2), torch.ones(2, 2),
                                    torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"^num_classes must be an integer >= 2, got 1"):
        dp_sgd.zero_linear(3, 1)
    head = dp_sgd.zero_linear(3)
    assert (head.in_features, head.out_features) == (3, 10)
    assert dp_sgd.zero_linear(3, 2).out_features == 2


@pytest.mark.parametrize("bias", [True, False])
def test_ghost_clipping_with_and_without_bias_and_for_near_zero_gradients(bias):
    # examples 0 and 1 (the same point) are classified with a margin of 30 logits: gradient
    # norms of 2e-13 to 7e-13, below the 1e-12 guard of the division, must be left alone (a
    # guard subtracted instead of added would flip them and scale them by ~1e12)
    torch.manual_seed(9)
    layer = nn.Linear(4, 3, bias=bias).double()
    x, y = torch.randn(6, 4, dtype=torch.float64), torch.tensor([0, 0, 1, 2, 1, 0])
    x[1] = x[0]
    with torch.no_grad():
        layer.weight[0] = 30 * x[0] / x[0].norm() ** 2
    got, norms = dp_sgd.linear_clipped_sum(layer, x, y, 0.5)
    clipped, want_norms = dp_sgd.clip_gradients(dp_sgd.per_sample_gradients(layer, x, y), 0.5)
    assert 1e-14 < norms[:2].min() <= norms[:2].max() < 1e-12
    torch.testing.assert_close(norms, want_norms, rtol=1e-10, atol=1e-30)
    assert set(got) == ({"weight", "bias"} if bias else {"weight"})
    for k in got:
        torch.testing.assert_close(got[k], clipped[k].sum(0))
    # the same through clipped_sum's per-example path (the layer inside a Sequential)
    seq, seq_norms = dp_sgd.clipped_sum(nn.Sequential(layer), x, y, 0.5)
    torch.testing.assert_close(seq_norms, want_norms, rtol=1e-10, atol=1e-30)
    torch.testing.assert_close(seq["0.weight"], clipped["weight"].sum(0))


@pytest.mark.parametrize("model", [nn.Linear(2, 2), nn.Sequential(nn.Linear(2, 2))],
                         ids=["ghost", "per-example"])
@pytest.mark.parametrize("c", [0.0, -1.0])
def test_clipped_sums_need_a_positive_norm_bound(model, c):
    x, y = torch.ones(1, 2), torch.zeros(1, dtype=torch.long)
    with pytest.raises(ValueError, match=rf"^max_norm must be a number > 0, got {c:g}"):
        dp_sgd.clipped_sum(model, x, y, c)
    if isinstance(model, nn.Linear):
        with pytest.raises(ValueError, match=rf"^max_norm must be a number > 0, got {c:g}"):
            dp_sgd.linear_clipped_sum(model, x, y, c)


def test_batch_norm_message_names_the_layer_and_the_alternatives():
    with pytest.raises(ValueError, match=r"^model contains batch normalisation \(the model: "
                                         r"BatchNorm1d\), which mixes the examples of a batch, "
                                         r"so per-example clipping does not bound the "
                                         r"sensitivity; use GroupNorm or LayerNorm instead$"):
        dp_sgd.per_sample_gradients(nn.BatchNorm1d(2), torch.rand(2, 2), torch.tensor([0, 1]))


def test_noise_follows_the_seed_and_the_gradients_dtype():
    # seeded: exactly sigma C times the generator's standard normals, added (not subtracted)
    summed = {"w": torch.full((3, 4), 2.0, dtype=torch.float64)}
    got = dp_sgd.add_noise(summed, 1.5, 0.4, seed=torch.Generator().manual_seed(3))["w"]
    want = 2.0 + 0.6 * torch.randn((3, 4), generator=torch.Generator().manual_seed(3),
                                   dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=1e-15, atol=1e-15)
    torch.testing.assert_close(dp_sgd.add_noise(summed, 1.5, 0.4, seed=3)["w"], want,
                               rtol=1e-15, atol=1e-15)
    for seed in (None, 0):
        half = dp_sgd.add_noise({"w": torch.zeros(5, dtype=torch.float16)}, 1.0, 1.0, seed)
        assert half["w"].dtype == torch.float16
        fine = dp_sgd.add_noise({"w": torch.zeros(1000, dtype=torch.float64)}, 1.0, 1.0, seed)
        # float64 noise: not all values are float32 numbers
        assert (fine["w"] != fine["w"].float().double()).any()
    for kwargs, match in (({"noise_multiplier": -1.0}, r"^noise_multiplier must be a number "
                                                       r">= 0, got -1"),
                          ({"max_norm": 0.0}, r"^max_norm must be a number > 0, got 0"),
                          ({"max_norm": -2.0}, r"^max_norm must be a number > 0, got -2")):
        args = {"noise_multiplier": 1.0, "max_norm": 1.0} | kwargs
        with pytest.raises(ValueError, match=match):
            dp_sgd.add_noise(summed, **args)


def test_poisson_sample_follows_the_seed():
    # index i is kept iff the generator's i-th uniform is below q
    u = torch.rand(50, generator=torch.Generator().manual_seed(4))
    want = torch.nonzero(u < 0.3).flatten()
    assert torch.equal(dp_sgd.poisson_sample(50, 0.3, seed=4), want)
    assert torch.equal(dp_sgd.poisson_sample(50, 0.3, torch.Generator().manual_seed(4)), want)
    assert want.dtype == torch.int64
    assert torch.equal(dp_sgd.poisson_sample(7, 1.0, seed=0), torch.arange(7))
