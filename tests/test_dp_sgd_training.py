"""The private training loop of helpers.dp_sgd measured against closed forms: the size of the
noise on the parameters (sigma C / (qN) per step), the clipped-mean step without noise and the
momentum recursion against a loop over examples, the Poisson batch sizes the loop draws, the
steps per epoch, the accountant's epsilon, and the accuracy on the evaluation set."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

from helpers import accounting, dp_sgd

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _as_sequential(layer):
    """The same linear model behind nn.Sequential: train_private then takes the per-example
    gradient path instead of the nn.Linear ghost clipping."""
    return nn.Sequential(layer)


def _params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _loop_clipped_sum(model, x, y, c):
    """Independent reference: one backward pass per example, clipped by hand, summed."""
    total = torch.zeros_like(_params(model))
    for i in range(len(x)):
        model.zero_grad()
        F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).backward()
        g = torch.cat([p.grad.flatten() for p in model.parameters()])
        total += g * min(1.0, c / float(g.norm()))
    model.zero_grad(set_to_none=True)
    return total


@pytest.mark.parametrize("wrap", [lambda m: m, _as_sequential], ids=["ghost", "per-example"])
def test_noise_on_the_parameters_has_std_sigma_c_over_qn_per_step(wrap):
    # 10,010 parameters, N = 8, q = 0.25: 4 steps of plain SGD (lr 1, no momentum). Each step
    # adds N(0, (sigma C)^2) to the clipped sum and divides by qN = 2, so after 4 steps every
    # coordinate has moved by N(0, 4 (sigma C / 2)^2) = N(0, 25^2) for sigma = 50, C = 0.5.
    # The clipped sums add at most 4 * 8 C / 2 = 8 in L2 norm over all coordinates, a change
    # of the mean square below 1e-2 against 625. The sample std of 10,010 normals has standard
    # error 25 / sqrt(2 * 10,010) = 0.177; allow 5 of them. Dividing by the realised batch
    # sizes or leaving out C, qN or a step would move the std by far more.
    torch.manual_seed(0)
    model = wrap(dp_sgd.zero_linear(1000, 10))
    x, y = torch.randn(8, 1000) * 0.01, torch.arange(8) % 10
    dp_sgd.train_private(model, x, y, noise_multiplier=50.0, max_norm=0.5, sample_rate=0.25,
                         epochs=1, lr=1.0, momentum=0.0, seed=1)
    moved = _params(model).double()
    se = 25.0 / math.sqrt(2 * moved.numel())
    assert abs(moved.std().item() - 25.0) < 5 * se
    assert abs(moved.mean().item()) < 5 * 25.0 / math.sqrt(moved.numel())
    assert stats.kstest(moved.numpy() / 25.0, "norm").pvalue > 1e-3


@pytest.mark.parametrize("wrap", [lambda m: m, _as_sequential], ids=["ghost", "per-example"])
def test_a_noiseless_step_is_minus_lr_times_the_clipped_sum_over_qn(wrap):
    # sigma = 0, q = 1 (every example in the one batch): theta_1 = theta_0 - lr * sum_i
    # clip(g_i, C) / N, against a loop over examples; C = 1.5 clips some of the gradients only
    torch.manual_seed(1)
    layer = nn.Linear(5, 3).double()
    model = wrap(layer)
    x = torch.randn(12, 5, dtype=torch.float64) * torch.linspace(0.05, 2, 12)[:, None]
    y = torch.randint(0, 3, (12,))
    norms = dp_sgd.clipped_sum(layer, x, y, 1.0)[1]
    assert (norms > 1.5).any()
    assert (norms < 1.5).any()
    before = _params(model)
    want = before - 0.7 * _loop_clipped_sum(model, x, y, 1.5) / 12
    dp_sgd.train_private(model, x, y, noise_multiplier=0.0, max_norm=1.5, sample_rate=1.0,
                         epochs=1, lr=0.7, momentum=0.0, seed=0)
    torch.testing.assert_close(_params(model), want, rtol=1e-10, atol=1e-12)


def test_momentum_is_sgds_heavy_ball_with_default_0_9():
    # two noiseless full-batch steps with the default momentum 0.9:
    # v1 = g(theta0), theta1 = theta0 - lr v1; v2 = 0.9 v1 + g(theta1), theta2 = theta1 - lr v2
    torch.manual_seed(2)
    model = nn.Linear(4, 3).double()
    ref = nn.Linear(4, 3).double()
    ref.load_state_dict(model.state_dict())
    x, y = torch.randn(10, 4, dtype=torch.float64), torch.randint(0, 3, (10,))
    lr, c = 0.5, 0.4
    v1 = _loop_clipped_sum(ref, x, y, c) / 10
    theta1 = _params(ref) - lr * v1
    torch.nn.utils.vector_to_parameters(theta1, ref.parameters())
    v2 = 0.9 * v1 + _loop_clipped_sum(ref, x, y, c) / 10
    want = theta1 - lr * v2
    hist = dp_sgd.train_private(model, x, y, noise_multiplier=0.0, max_norm=c, sample_rate=1.0,
                                epochs=2, lr=lr, seed=0)
    torch.testing.assert_close(_params(model), want, rtol=1e-10, atol=1e-12)
    assert [h["steps"] for h in hist] == [1, 2]
    assert all(h["epsilon"] == math.inf for h in hist)    # sigma = 0: no privacy
    assert all(h["mean_batch"] == 10.0 for h in hist)


def test_the_loop_draws_poisson_batches_at_rate_q():
    # N = 2,000, q = 0.05: 20 steps per epoch, batch sizes Binomial(2000, 0.05) (mean 100,
    # variance 95); the mean of 20 of them has standard error sqrt(95 / 20) = 2.18: allow 5
    torch.manual_seed(3)
    x, y = torch.randn(2000, 2), torch.randint(0, 2, (2000,))
    hist = dp_sgd.train_private(nn.Linear(2, 2), x, y, noise_multiplier=1.0, max_norm=1.0,
                                sample_rate=0.05, epochs=3, lr=0.1, seed=4)
    assert [h["steps"] for h in hist] == [20, 40, 60]
    means = np.array([h["mean_batch"] for h in hist])
    assert np.all(np.abs(means - 100) < 5 * math.sqrt(95 / 20))
    assert len(set(means)) == 3                 # fresh batches every epoch
    # pooled over the 60 steps: standard error sqrt(95 / 60) = 1.26
    assert abs(means.mean() - 100) < 5 * math.sqrt(95 / 60)


@pytest.mark.parametrize(("q", "steps"), [(0.6, 2), (0.9, 1), (0.3, 3)])
def test_steps_per_epoch_are_round_one_over_q_at_least_one(q, steps):
    x, y = torch.randn(10, 2), torch.randint(0, 2, (10,))
    hist = dp_sgd.train_private(nn.Linear(2, 2), x, y, noise_multiplier=0.0, max_norm=1.0,
                                sample_rate=q, epochs=2, lr=0.1, seed=0)
    assert [h["steps"] for h in hist] == [steps, 2 * steps]


def test_epsilon_is_the_accountants_at_the_delta_given():
    x, y = torch.randn(10, 2), torch.randint(0, 2, (10,))
    hist = dp_sgd.train_private(nn.Linear(2, 2), x, y, noise_multiplier=1.3, max_norm=1.0,
                                sample_rate=0.5, epochs=2, lr=0.1, delta=1e-3, seed=0)
    # tight conversion at delta = 1e-3, after 2 and 4 steps
    assert hist[0]["epsilon"] == accounting.epsilon(1.3, 0.5, 2, 1e-3)
    assert hist[1]["epsilon"] == accounting.epsilon(1.3, 0.5, 4, 1e-3)


def test_accuracy_is_measured_on_the_evaluation_set_after_each_epoch():
    # 5,000 evaluation rows (more than one evaluation batch of 4,096); the reference is the
    # model's own argmax on every row, computed here after each epoch from a copy of the
    # weights taken by a second run with the same seed
    torch.manual_seed(5)
    x, y = torch.randn(200, 3), torch.randint(0, 2, (200,))
    x_eval = torch.randn(5000, 3)
    y_eval = (x_eval[:, 0] > 0).long()
    model = nn.Linear(3, 2)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    hist = dp_sgd.train_private(model, x, y, noise_multiplier=0.5, max_norm=1.0, sample_rate=1.0,
                                epochs=2, lr=0.5, seed=6, eval_data=(x_eval, y_eval))
    for epochs, h in zip((1, 2), hist, strict=True):
        again = nn.Linear(3, 2)
        again.load_state_dict(start)
        dp_sgd.train_private(again, x, y, noise_multiplier=0.5, max_norm=1.0, sample_rate=1.0,
                             epochs=epochs, lr=0.5, seed=6)
        with torch.no_grad():
            want = (again(x_eval).argmax(1) == y_eval).double().mean().item()
        assert h["accuracy"] == pytest.approx(want, abs=1e-12)
    assert "accuracy" not in dp_sgd.train_private(nn.Linear(3, 2), x, y, noise_multiplier=0.5,
                                                  max_norm=1.0, sample_rate=1.0, epochs=1,
                                                  lr=0.5, seed=6)[0]


def test_ema_accuracy_is_that_of_the_averaged_weights_and_training_continues_from_the_iterate():
    # epoch 1 is evaluated with the average swapped in; epoch 2 must continue from the iterate
    # (not from the average), so the 2-epoch run ends at the same average as a reference that
    # recomputes it from the plain iterates theta1, theta2 of runs without ema
    torch.manual_seed(7)
    x, y = torch.randn(60, 3), torch.randint(0, 2, (60,))

    def run(epochs, ema, eval_data=None):
        head = dp_sgd.zero_linear(3, 2)
        hist = dp_sgd.train_private(head, x, y, noise_multiplier=1.0, max_norm=1.0,
                                    sample_rate=1.0, epochs=epochs, lr=0.3, momentum=0.0, seed=8,
                                    ema=ema, eval_data=eval_data)
        return head, hist

    theta1, theta2 = run(1, 0.0)[0], run(2, 0.0)[0]
    averaged, hist = run(2, 0.6, eval_data=(x, y))
    # bar theta: 0 -> 0.4 theta1 -> 0.6 * 0.4 theta1 + 0.4 theta2
    want = 0.24 * theta1.weight.detach() + 0.4 * theta2.weight.detach()
    torch.testing.assert_close(averaged.weight.detach(), want)
    with torch.no_grad():
        acc1 = ((0.4 * theta1.weight) @ x.T + (0.4 * theta1.bias)[:, None]).argmax(0)
    assert hist[0]["accuracy"] == pytest.approx((acc1 == y).double().mean().item())


def test_ema_epoch_accuracy_uses_the_average_not_the_iterate():
    # From a start theta0 that calls everything class 1, the epoch-1 average
    # 0.6 theta0 + 0.4 theta1 and the iterate theta1 predict differently on these points, so
    # the recorded accuracy tells which one was evaluated (both computed here by hand)
    torch.manual_seed(7)
    x, y = torch.randn(60, 3), torch.randint(0, 2, (60,))

    def head():
        layer = dp_sgd.zero_linear(3, 2)
        with torch.no_grad():
            layer.bias.copy_(torch.tensor([-1.0, 1.0]))
        return layer

    def accuracy(w, b):
        return ((x @ w.T + b).argmax(1) == y).double().mean().item()

    theta0, theta1 = head(), head()
    dp_sgd.train_private(theta1, x, y, noise_multiplier=1.0, max_norm=1.0, sample_rate=1.0,
                         epochs=1, lr=10.0, momentum=0.0, seed=8)
    averaged = head()
    hist = dp_sgd.train_private(averaged, x, y, noise_multiplier=1.0, max_norm=1.0,
                                sample_rate=1.0, epochs=1, lr=10.0, momentum=0.0, seed=8,
                                ema=0.6, eval_data=(x, y))
    with torch.no_grad():
        w = 0.6 * theta0.weight + 0.4 * theta1.weight
        b = 0.6 * theta0.bias + 0.4 * theta1.bias
        want, iterate = accuracy(w, b), accuracy(theta1.weight, theta1.bias)
    assert want != iterate  # the case discriminates
    assert hist[0]["accuracy"] == pytest.approx(want, abs=1e-12)


def test_train_private_shows_a_named_progress_bar_and_cleans_up(capsys):
    x, y = torch.randn(8, 2), torch.randint(0, 2, (8,))
    model = nn.Linear(2, 2)
    hist = dp_sgd.train_private(model, x, y, noise_multiplier=0.0, max_norm=1.0, sample_rate=0.5,
                                epochs=1, lr=0.1, seed=0)
    err = capsys.readouterr().err
    assert "DP-SGD: " in err
    assert "| 0/2 [" in err                       # epochs * steps per epoch in all
    assert err.endswith("\r")                     # leave=False: the finished bar is erased
    dp_sgd.train_private(model, x, y, noise_multiplier=0.0, max_norm=1.0, sample_rate=0.5,
                         epochs=1, lr=0.1, seed=0, desc="private head")
    assert "private head: " in capsys.readouterr().err
    assert set(hist[0]) == {"epoch", "steps", "epsilon", "mean_batch"}
    assert hist[0]["epoch"] == 1
    assert not model.training
    assert all(p.grad is None for p in model.parameters())


def test_seed_none_draws_the_generator_from_torchs_global_rng():
    x, y = torch.randn(20, 3), torch.randint(0, 2, (20,))

    def run(seed_after_init):
        model = dp_sgd.zero_linear(3, 2)    # (nn.Linear's initialisation draws from torch too)
        dp_sgd.train_private(model, x, y, noise_multiplier=1.0, max_norm=1.0, sample_rate=0.5,
                             epochs=1, lr=0.1, seed=seed_after_init())
        return model.weight.detach().clone()

    torch.manual_seed(9)
    a = run(lambda: None)
    torch.manual_seed(9)  # seed=None: one draw of torch's global RNG seeds the generator
    b = run(lambda: torch.Generator().manual_seed(int(torch.randint(0, 2**31 - 1, (1,)))))
    assert torch.equal(a, b)
    assert not torch.equal(a, run(lambda: None))


def test_train_at_epsilon_passes_its_settings_to_the_accountant_and_the_loop(monkeypatch):
    calls = {}
    find, train = accounting.noise_multiplier_for, dp_sgd.train_private

    def recording_find(*args, **kwargs):
        calls["find"] = (args, kwargs)
        return find(*args, **kwargs)

    def recording_train(*args, **kwargs):
        calls["train"] = kwargs
        return train(*args, **kwargs)

    monkeypatch.setattr(accounting, "noise_multiplier_for", recording_find)
    monkeypatch.setattr(dp_sgd, "train_private", recording_train)
    x, y = torch.randn(40, 3), torch.randint(0, 2, (40,))
    eval_data = (x[:5], y[:5])
    sigma, hist = dp_sgd.train_at_epsilon(dp_sgd.zero_linear(3, 2), x, y, 4.0, batch_size=16,
                                          epochs=2, max_norm=0.7, lr=0.2, delta=1e-3, seed=3,
                                          eval_data=eval_data, ema=0.5, desc="head")
    # q = 16 / 40 = 0.4: round(1 / q) = 2 steps per epoch (round half to even), 4 in all
    assert calls["find"] == ((4.0, 0.4, 4, 1e-3), {"tol": 1e-3})
    assert calls["train"] == {"noise_multiplier": sigma, "max_norm": 0.7, "sample_rate": 0.4,
                              "epochs": 2, "lr": 0.2, "delta": 1e-3, "seed": 3,
                              "eval_data": eval_data, "ema": 0.5, "desc": "head"}
    assert hist[-1]["steps"] == 4
    assert hist[-1]["epsilon"] <= 4.0
    with pytest.raises(ValueError, match=r"^epochs must be an integer >= 1, got 0"):
        dp_sgd.train_at_epsilon(dp_sgd.zero_linear(3, 2), x, y, 4.0, batch_size=16, epochs=0,
                                max_norm=0.7, lr=0.2)


def test_train_at_epsilon_with_one_epoch_of_full_batches():
    # batch_size = len(x): q = 1, one step per epoch (the plain Gaussian mechanism)
    x, y = torch.randn(10, 3), torch.randint(0, 2, (10,))
    sigma, hist = dp_sgd.train_at_epsilon(dp_sgd.zero_linear(3, 2), x, y, 5.0, batch_size=10,
                                          epochs=1, max_norm=1.0, lr=0.1, seed=0)
    assert hist[-1]["steps"] == 1
    assert accounting.epsilon(sigma, 1.0, 1, 1e-5) <= 5.0 < accounting.epsilon(sigma - 2e-3,
                                                                               1.0, 1, 1e-5)


def test_a_seeded_run_does_not_depend_on_torchs_global_rng():
    x, y = torch.randn(30, 3), torch.randint(0, 2, (30,))
    weights = []
    for _ in range(2):                  # the global RNG moves on between the two runs
        torch.rand(5)
        model = dp_sgd.zero_linear(3, 2)
        dp_sgd.train_private(model, x, y, noise_multiplier=1.0, max_norm=1.0, sample_rate=0.3,
                             epochs=1, lr=0.1, seed=11)
        weights.append(model.weight.detach().clone())
    assert torch.equal(*weights)
