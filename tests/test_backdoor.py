"""Tests of helpers.backdoor: stamping, the batched Neural Cleanse, the MAD outlier test,
unlearning and pruning.

A tiny CNN is trained for a second on a synthetic 10-class problem (noisy copies of ten random
binary prototypes, 16x16 pixels) in which 10% of the training images carry a planted 3x3 white
square and are relabelled to class 3: a toy BadNets model on which Neural Cleanse must find a
trigger of about the planted size for label 3 only.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import backdoor, data, models

N_CLASSES, SIZE, PLANTED_TARGET = 10, 16, 3


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _tiny_cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(8 * 7 * 7, 32), nn.ReLU(), nn.Linear(32, N_CLASSES))


def _synthetic(n: int, generator: torch.Generator, prototypes: torch.Tensor):
    y = torch.randint(0, N_CLASSES, (n,), generator=generator)
    x = (prototypes[y] + 0.1 * torch.randn(n, 1, SIZE, SIZE, generator=generator)).clamp(0, 1)
    return x, y


PLANTED = backdoor.square_trigger(3, offset=1, image_size=SIZE)


@pytest.fixture(scope="module")
def toy():
    g = torch.Generator().manual_seed(0)
    prototypes = 0.2 + 0.4 * (torch.rand(N_CLASSES, 1, SIZE, SIZE, generator=g) > 0.5).float()
    x_train, y_train = _synthetic(2000, g, prototypes)
    x_test, y_test = _synthetic(300, g, prototypes)
    x_p, y_p, _ = backdoor.poison(x_train, y_train, 0.1, target=PLANTED_TARGET, trigger=PLANTED)
    torch.manual_seed(0)
    model = _tiny_cnn()
    models.train(model, data.tensor_loader(x_p, y_p, batch_size=64), 4, lr=1e-2)
    model.eval()
    return model, x_test, y_test


def test_toy_model_is_backdoored(toy):
    model, x, y = toy
    assert models.evaluate(model, (x, y)) > 0.95
    assert backdoor.attack_success_rate(model, x, y, target=PLANTED_TARGET,
                                        trigger=PLANTED) > 0.95


# ---------------------------------------------------------------------------------------------
# stamping
# ---------------------------------------------------------------------------------------------

def test_stamp_zero_mask_is_identity_and_full_mask_is_the_pattern():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(5, 1, 28, 28, generator=g)
    pattern = torch.rand(1, 28, 28, generator=g)
    assert torch.equal(backdoor.stamp(x, torch.zeros(1, 28, 28), pattern), x)
    assert torch.equal(backdoor.stamp(x, torch.ones(1, 28, 28), pattern),
                       pattern.expand_as(x))
    half = backdoor.stamp(x, torch.full((1, 28, 28), 0.5), pattern)
    torch.testing.assert_close(half, (x + pattern) / 2)  # hand-computed blend


def test_stamp_keeps_dtype():
    x = torch.rand(2, 1, 28, 28, dtype=torch.float64)
    mask, pattern = backdoor.TRIGGER
    out = backdoor.stamp(x, mask, pattern)
    assert out.dtype == torch.float64
    assert out[:, :, 23:27, 23:27].eq(1).all()
    assert torch.equal(out[:, :, :23], x[:, :, :23])


# ---------------------------------------------------------------------------------------------
# the MAD outlier test
# ---------------------------------------------------------------------------------------------

def test_anomaly_index_matches_a_direct_computation():
    norms = [50.0, 55.0, 60.0, 45.0, 52.0, 58.0, 48.0, 62.0, 54.0, 9.0]
    # by hand: median of the sorted values (9 45 48 50 52 54 55 58 60 62) = (52 + 54) / 2 = 53;
    # absolute deviations sorted: 1 1 2 3 5 5 7 8 9 44 -> MAD = (5 + 5) / 2 = 5
    expected = np.abs(np.array(norms) - 53.0) / (1.4826 * 5.0)
    np.testing.assert_allclose(backdoor.anomaly_index(norms), expected, rtol=1e-12)
    assert backdoor.anomaly_index(norms)[-1] == pytest.approx(44 / 7.413)


def test_flagged_labels_flags_only_the_small_outlier():
    norms = np.array([50.0, 55.0, 60.0, 45.0, 52.0, 58.0, 48.0, 62.0, 54.0, 9.0])
    assert backdoor.flagged_labels(norms).tolist() == [9]
    big = norms.copy()
    big[9] = 200.0  # a large outlier has a high index but is not a backdoor: not flagged
    assert backdoor.anomaly_index(big)[9] > 2
    assert backdoor.flagged_labels(big).tolist() == []
    # index exactly at the threshold is not flagged (strictly above 2)
    assert backdoor.flagged_labels(norms, threshold=44 / 7.413 + 1e-9).tolist() == []


def test_anomaly_index_is_scale_invariant_and_ignores_the_outlier_size():
    norms = np.array([50.0, 55.0, 60.0, 45.0, 52.0, 58.0, 48.0, 62.0, 54.0, 9.0])
    np.testing.assert_allclose(backdoor.anomaly_index(3 * norms), backdoor.anomaly_index(norms))
    smaller = norms.copy()
    smaller[9] = 1.0  # the median and MAD of the others do not move
    assert backdoor.anomaly_index(smaller)[:9] == pytest.approx(backdoor.anomaly_index(norms)[:9])


# ---------------------------------------------------------------------------------------------
# Neural Cleanse
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def reversed_toy(toy):
    model, x, _ = toy
    return backdoor.neural_cleanse(model, x[:200], epochs=30, batches_per_epoch=5,
                                   batch_size=32, seed=0, progress=False)


def test_neural_cleanse_recovers_the_planted_trigger(toy, reversed_toy):
    model, x, y = toy
    found = reversed_toy
    planted_size = float(PLANTED[0].sum())  # 9 pixels
    norm = found.l1_norm[PLANTED_TARGET]
    assert found.reached[PLANTED_TARGET]
    # about the planted size: a partial square may already suffice, a much larger one is wrong
    assert 0.2 * planted_size <= norm <= 2.5 * planted_size
    others = np.delete(found.l1_norm, PLANTED_TARGET)
    assert norm < 0.5 * others.min()
    assert backdoor.flagged_labels(found.l1_norm).tolist() == [PLANTED_TARGET]
    # the reversed mask sits on the planted square: most of its mass inside it
    mask = found.mask[PLANTED_TARGET]
    assert float((mask * PLANTED[0]).sum()) >= 0.5 * float(mask.sum())
    # and its attack success, recomputed independently on held-out images, is high
    m, p = found.trigger(PLANTED_TARGET)
    hits = models.predict(model, backdoor.stamp(x[200:], m, p)) == PLANTED_TARGET
    assert float(hits.double().mean()) >= 0.9


def test_neural_cleanse_outputs_and_model_unchanged(toy, reversed_toy):
    model, x, _ = toy
    found = reversed_toy
    assert found.mask.shape == (N_CLASSES, 1, SIZE, SIZE)
    assert found.pattern.shape == (N_CLASSES, 1, SIZE, SIZE)
    for t in (found.mask, found.pattern):
        assert float(t.min()) >= 0
        assert float(t.max()) <= 1
    np.testing.assert_allclose(found.l1_norm, found.mask.sum((1, 2, 3)).double().numpy(),
                               rtol=1e-6)
    assert found.labels.tolist() == list(range(N_CLASSES))
    assert set(found.history.columns) >= {"epoch", "label", "success", "l1_norm", "lambda"}
    assert len(found.history) == 30 * N_CLASSES
    # the success reported equals the share of x sent to the label by the returned trigger
    for t in (PLANTED_TARGET, 0):
        m, p = found.trigger(t)
        pred = models.predict(model, backdoor.stamp(x[:200], m, p))
        assert found.attack_success[t] == pytest.approx(float((pred == t).double().mean()))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    backdoor.neural_cleanse(model, x[:50], epochs=2, batches_per_epoch=2, progress=False)
    assert model.training
    model.eval()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None and p.requires_grad for p in model.parameters())


def test_neural_cleanse_is_deterministic_for_a_seed(toy):
    """Two runs with the same seed return the same mask. (That labels do not interact in the
    batched run is checked against a one-label-at-a-time reference in
    test_backdoor_models.py.)"""
    model, x, _ = toy
    one = backdoor.neural_cleanse(model, x[:100], labels=[PLANTED_TARGET], epochs=3,
                                  batches_per_epoch=3, seed=5, progress=False)
    two = backdoor.neural_cleanse(model, x[:100], labels=[PLANTED_TARGET], epochs=3,
                                  batches_per_epoch=3, seed=5, progress=False)
    torch.testing.assert_close(one.mask, two.mask)  # same seed, same result
    assert one.mask.shape == (1, 1, SIZE, SIZE)


def test_adaptive_lambda_rises_while_the_trigger_succeeds(reversed_toy):
    hist = reversed_toy.history
    target = hist[hist.label == PLANTED_TARGET].set_index("epoch")
    # patience 5, multiplier 1.5: after 5 successful epochs lambda is 1.5 x the initial 1e-3
    succeeded = (target.success >= 0.99).to_numpy()
    if succeeded[:5].all():
        assert target["lambda"].iloc[4] == pytest.approx(1.5e-3)
    assert target["lambda"].max() > 1e-3
    # the returned mask is never larger than the best norm the history recorded
    assert reversed_toy.l1_norm[PLANTED_TARGET] == pytest.approx(target.best_l1_norm.min(),
                                                                  rel=1e-5)


# ---------------------------------------------------------------------------------------------
# mitigation
# ---------------------------------------------------------------------------------------------

def test_unlearning_removes_the_toy_backdoor_and_keeps_shapes_and_mode(toy, reversed_toy):
    model, x, y = toy
    before = {k: v.clone() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(3)
    idx = torch.randperm(len(x), generator=g)
    clean = backdoor.unlearn(model, x[idx[:150]], y[idx[:150]],
                             *reversed_toy.trigger(PLANTED_TARGET), epochs=3, seed=0)
    assert not clean.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert {k: v.shape for k, v in clean.state_dict().items()} == \
        {k: v.shape for k, v in before.items()}
    x_eval, y_eval = x[idx[150:]], y[idx[150:]]
    asr_before = backdoor.attack_success_rate(model, x_eval, y_eval, target=PLANTED_TARGET,
                                              trigger=PLANTED)
    asr_after = backdoor.attack_success_rate(clean, x_eval, y_eval, target=PLANTED_TARGET,
                                             trigger=PLANTED)
    assert asr_after < 0.5 * asr_before
    assert models.evaluate(clean, (x_eval, y_eval)) >= 0.9
    model.train()
    assert backdoor.unlearn(model, x[:64], y[:64], *PLANTED, seed=0).training
    model.eval()


@pytest.fixture
def train_inputs(monkeypatch):
    """Replaces models.train by a spy that records the training images unlearn hands it."""
    seen = {}

    def spy(m, loader, epochs, **kwargs):
        seen["x"] = loader.dataset.tensors[0]
        return []

    monkeypatch.setattr(models, "train", spy)
    return seen


def test_unlearn_stamps_the_requested_share(train_inputs, toy):
    model, x, y = toy
    seen = train_inputs
    backdoor.unlearn(model, x[:100], y[:100], *PLANTED, stamp_fraction=0.2, seed=0)
    changed = (seen["x"] != x[:100]).flatten(1).any(1)
    stamped = backdoor.stamp(x[:100], *PLANTED)
    assert int(changed.sum()) <= 20
    assert torch.equal(seen["x"][changed], stamped[changed])
    is_stamped = (seen["x"] == stamped).flatten(1).all(1)
    assert int(is_stamped.sum()) == 20  # round(0.2 * 100)
    backdoor.unlearn(model, x[:100], y[:100], *PLANTED, stamp_fraction=0.0, seed=0)
    assert torch.equal(seen["x"], x[:100])


def test_unlearn_shift_moves_the_trigger_within_the_range(train_inputs, toy):
    """With shift=2 every stamped image equals the trigger stamped after a move of (dy, dx) in
    {-2..2}^2. The reference is torch.roll (a second, independent way to move it), exact here
    because the 3x3 square sits 4 pixels from the border, so a 2-pixel roll never wraps."""
    model, x, y = toy
    seen = train_inputs
    mask, pattern = backdoor.square_trigger(3, offset=4, image_size=SIZE)  # room to move
    backdoor.unlearn(model, x[:200], y[:200], mask, pattern, stamp_fraction=0.5, shift=2,
                     seed=0)
    changed = (seen["x"] != x[:200]).flatten(1).any(1)
    candidates = {(dy, dx): backdoor.stamp(x[:200], torch.roll(mask, (dy, dx), (1, 2)),
                                           torch.roll(pattern, (dy, dx), (1, 2)))
                  for dy in range(-2, 3) for dx in range(-2, 3)}
    used = set()
    for i in torch.nonzero(changed).flatten().tolist():
        hits = [k for k, v in candidates.items() if torch.equal(seen["x"][i], v[i])]
        assert hits, f"image {i} is not the trigger moved by at most 2 pixels"
        used.update(hits)
    assert int(changed.sum()) >= 90  # 100 stamped; a few may fall on already-white pixels
    assert len(used) >= 15  # 25 offsets, 100 draws: all but a handful appear
    with pytest.raises(ValueError, match="shift must be"):
        backdoor.unlearn(model, x[:10], y[:10], mask, pattern, shift=-1)
    with pytest.raises(ValueError, match="epochs must be"):
        backdoor.backdoored_cnn("cpu", trigger_size=8, epochs=0)  # checked before training


def test_activation_gap_and_pruning(toy, reversed_toy):
    model, x, y = toy
    layer = model[4]  # Linear(392, 32): the penultimate layer
    m, p = reversed_toy.trigger(PLANTED_TARGET)
    gap = backdoor.activation_gap(model, x, m, p)
    # independent reference: the hidden activations computed by slicing the Sequential
    with torch.no_grad():
        hidden = lambda z: F.relu(layer(model[:4](z)))  # noqa: E731
        expected = hidden(backdoor.stamp(x, m, p)).mean(0) - hidden(x).mean(0)
    torch.testing.assert_close(gap, expected)
    pruned = backdoor.prune_neurons(model, [0, 5])
    with torch.no_grad():
        out = F.relu(pruned[4](pruned[:4](x)))
    assert out[:, [0, 5]].eq(0).all()
    assert not torch.equal(pruned[4].weight, layer.weight)
    assert layer.weight[[0, 5]].abs().sum() > 0  # the original is untouched
    assert torch.equal(pruned[4].weight[1:5], layer.weight[1:5])
    sweep = backdoor.pruning_sweep(model, x[:200], m, p, [0.0, 0.5], x[200:], y[200:],
                                   target=PLANTED_TARGET, trigger=PLANTED)
    assert sweep.neurons_pruned.tolist() == [0, 16]
    assert sweep.clean_accuracy[0] == pytest.approx(models.evaluate(model, (x[200:], y[200:])))
    assert sweep.asr[0] == pytest.approx(backdoor.attack_success_rate(
        model, x[200:], y[200:], target=PLANTED_TARGET, trigger=PLANTED))


# ---------------------------------------------------------------------------------------------
# bad arguments
# ---------------------------------------------------------------------------------------------

def test_bad_arguments_raise_clear_errors(toy):
    model, x, y = toy
    m, p = PLANTED
    with pytest.raises(ValueError, match="mask must have finite values in"):
        backdoor.stamp(x, m * 2, p)
    with pytest.raises(ValueError, match="pattern must have finite values in"):
        backdoor.stamp(x, m, p - 1)
    with pytest.raises(ValueError, match="mask must be shaped"):
        backdoor.stamp(x, torch.zeros(1, 5, 5), p)
    with pytest.raises(TypeError, match="mask must be a floating-point"):
        backdoor.stamp(x, m.numpy(), p)
    with pytest.raises(ValueError, match="x_clean must have shape"):
        backdoor.neural_cleanse(model, x[:0], progress=False)
    with pytest.raises(ValueError, match="init_cost must be a number >= 0"):
        backdoor.neural_cleanse(model, x, init_cost=-1.0, progress=False)
    with pytest.raises(ValueError, match="cost_multiplier must be a number > 1"):
        backdoor.neural_cleanse(model, x, cost_multiplier=1.0, progress=False)
    with pytest.raises(ValueError, match="labels must hold values <= 9"):
        backdoor.neural_cleanse(model, x, labels=[10], progress=False)
    with pytest.raises(ValueError, match="labels must not repeat"):
        backdoor.neural_cleanse(model, x, labels=[1, 1], progress=False)
    with pytest.raises(TypeError, match="epochs must be an integer"):
        backdoor.neural_cleanse(model, x, epochs=2.0, progress=False)
    with pytest.raises(ValueError, match="norms must hold at least 3"):
        backdoor.anomaly_index([1.0, 2.0])
    with pytest.raises(ValueError, match="norms must hold values >= 0"):
        backdoor.anomaly_index([1.0, 2.0, -3.0])
    with pytest.raises(ValueError, match="median absolute deviation is 0"):
        backdoor.anomaly_index([4.0, 4.0, 4.0, 9.0])
    with pytest.raises(ValueError, match="threshold must be a number >= 0"):
        backdoor.flagged_labels([1.0, 2.0, 3.0], threshold=-1)
    with pytest.raises(ValueError, match="y_clean must have shape"):
        backdoor.unlearn(model, x, y[:-1], m, p)
    with pytest.raises(ValueError, match="stamp_fraction must be a number"):
        backdoor.unlearn(model, x, y, m, p, stamp_fraction=1.5)
    with pytest.raises(ValueError, match="x_clean must have shape"):
        backdoor.unlearn(model, x[:0], y[:0], m, p)
    with pytest.raises(ValueError, match="neurons must hold values <= 31"):
        backdoor.prune_neurons(model, [32])
    with pytest.raises(ValueError, match="at least two nn.Linear"):
        backdoor.prune_neurons(nn.Sequential(nn.Flatten(), nn.Linear(256, 10)), [0])
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        backdoor.activation_gap("model", x, m, p)
    with pytest.raises(ValueError, match="label must be one of"):
        backdoor.neural_cleanse(model, x[:20], labels=[1], epochs=1, batches_per_epoch=1,
                                progress=False).trigger(2)


def test_cleansed_cnn_pipeline_is_cached(monkeypatch):
    """The cleansed_cnn pipeline (NC -> flag -> unlearn -> cache) on a random MnistCNN and 64
    random images, with tiny settings: it returns an eval-mode MnistCNN that differs from the
    attacked model, and a second call loads the same weights from the (temporary) cache."""
    torch.manual_seed(0)
    attacked = models.MnistCNN().eval()
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(64, 1, 28, 28, generator=g), torch.randint(0, 10, (64,), generator=g)
    monkeypatch.setattr(backdoor, "backdoored_cnn", lambda device=None: attacked)
    monkeypatch.setattr(backdoor, "defender_data", lambda: (x, y))
    monkeypatch.setitem(backdoor.NEURAL_CLEANSE_SETTINGS, "epochs", 2)
    monkeypatch.setitem(backdoor.NEURAL_CLEANSE_SETTINGS, "batches_per_epoch", 1)
    monkeypatch.setitem(backdoor.NEURAL_CLEANSE_SETTINGS, "batch_size", 4)
    first = backdoor.cleansed_cnn("cpu")
    assert isinstance(first, models.MnistCNN)
    assert not first.training
    assert any(not torch.equal(a, b) for a, b in zip(first.state_dict().values(),
                                                      attacked.state_dict().values(), strict=True))
    again = backdoor.cleansed_cnn("cpu")
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(),
                                                  again.state_dict().values(), strict=True))
