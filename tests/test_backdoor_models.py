"""Tests of the cached models and the argument checks of helpers.backdoor without training a
model: MNIST is replaced by a few hundred random images, ``models.train`` by a spy that records
what it is handed, and (for :func:`backdoor.cleansed_cnn`) Neural Cleanse and unlearning by spies
that return fixed results. What is checked is the bookkeeping around the training loop: the
poisoned training set (which images, which trigger, which label), the recipe's settings, the
seeds, the device, the cache record, and that a second call loads instead of training.

The expected values are written out by hand from the configs and docstrings (10% poisoned with
a white 4x4 square one pixel from the bottom-right corner, relabelled to 7, the standard
recipe: 3 epochs of one-cycle Adam at 3e-3, batch 128, seed 0...), never read back from the code
under test. A ``meta`` device stands in for a second device: a model or tensor that ends up on
the CPU instead is seen at once.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import backdoor, data, models, runtime

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

N_TRAIN = 300  # round(0.1 * 300) = 30 poisoned images, three batches of 128

#: the standard recipe (models.STANDARD_CNN_CONFIG) plus the BadNets settings, by hand
BACKDOOR_RECORD = {"arch": "MnistCNN", "epochs": 3, "batch_size": 128, "lr": 3e-3,
                   "optimizer": "adam", "schedule": "onecycle", "seed": 0, "poison_rate": 0.1,
                   "target": 7, "trigger_size": 4, "trigger_offset": 1, "poison_seed": 0}


def _images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


def _fresh_cnn(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return models.MnistCNN()


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(),
                                                 b.state_dict().values(), strict=True))


def _draw(n: int, k: int, seed: int) -> torch.Tensor:
    """The first k of a random permutation of range(n) drawn with torch.Generator(seed)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:k]


def _square(lo: int, hi: int) -> torch.Tensor:
    mask = torch.zeros(1, 28, 28)
    mask[0, lo:hi, lo:hi] = 1.0
    return mask


def _records(tmp_path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((tmp_path / "cache" / "models")
                                                      .glob("*.json"))]


@pytest.fixture
def fake(monkeypatch):
    """MNIST's training split replaced by N_TRAIN random images (the split and limit asked for
    are recorded); models.train replaced by a spy that records its arguments."""
    seen = {"mnist": [], "train": [], "data": _images(N_TRAIN, 0)}

    def mnist_tensors(split, limit=None):
        seen["mnist"].append((split, limit))
        return seen["data"]

    def train(model, loader, epochs, **kwargs):
        seen["train"].append({"model": model, "loader": loader, "epochs": epochs, **kwargs})
        return []

    monkeypatch.setattr(data, "mnist_tensors", mnist_tensors)
    monkeypatch.setattr(models, "train", train)
    return seen


# --------------------------------------------------------------------------------------------
# square_trigger, poison, pruning_sweep: defaults and argument checks
# --------------------------------------------------------------------------------------------

def test_square_trigger_default_is_the_white_4x4_square_one_pixel_from_the_corner():
    mask, pattern = backdoor.square_trigger()
    # rows and columns 28 - 1 - 4 = 23 to 26
    assert torch.equal(mask, _square(23, 27))
    assert torch.equal(pattern, _square(23, 27))
    assert torch.equal(backdoor.TRIGGER[0], _square(23, 27))
    mask, pattern = backdoor.square_trigger(2, offset=3, image_size=10, value=0.5)
    expected = torch.zeros(1, 10, 10)
    expected[0, 5:7, 5:7] = 1.0  # 10 - 3 - 2 = 5
    assert torch.equal(mask, expected)
    assert torch.equal(pattern, 0.5 * expected)


def test_square_trigger_bounds():
    # the extremes are legal: a single pixel, the whole image, a square in the top-left corner
    assert torch.equal(backdoor.square_trigger(1, offset=0)[0], _square(27, 28))
    assert torch.equal(backdoor.square_trigger(28, offset=0)[0], torch.ones(1, 28, 28))
    assert torch.equal(backdoor.square_trigger(4, offset=24)[0], _square(0, 4))
    for size in (0, 29):
        with pytest.raises(ValueError,
                           match=rf"^size must be an integer >= 1 and <= 28, got {size}$"):
            backdoor.square_trigger(size)
    for offset in (-1, 25):
        with pytest.raises(ValueError,
                           match=rf"^offset must be an integer >= 0 and <= 24, got {offset}$"):
            backdoor.square_trigger(4, offset=offset)
    with pytest.raises(ValueError, match=r"^value must be a number >= 0 and <= 1, got 1.5$"):
        backdoor.square_trigger(value=1.5)


def test_poison_argument_checks():
    x, y = _images(10, 1)
    with pytest.raises(TypeError, match=r"^x must be a torch.Tensor of images"):
        backdoor.poison(x.numpy(), y, 0.1)
    with pytest.raises(TypeError, match=r"^y must be a torch.Tensor of integer class labels"):
        backdoor.poison(x, y.numpy(), 0.1)
    with pytest.raises(ValueError, match=r"^y must have shape \(10,\) \(one label per image\), "
                                         r"got shape \(9,\)$"):
        backdoor.poison(x, y[:9], 0.1)
    with pytest.raises(ValueError, match=r"^rate must be a number >= 0 and <= 1, got 1.5$"):
        backdoor.poison(x, y, 1.5)
    with pytest.raises(ValueError, match=r"^target must be an integer >= 0, got -1$"):
        backdoor.poison(x, y, 0.1, target=-1)
    _, y_p, index = backdoor.poison(x, y, 0.2, target=0)  # label 0 is a legal target
    assert y_p[index].tolist() == [0, 0]


def test_poison_draws_its_images_with_the_seed_not_the_global_generator():
    x, y = _images(50, 2)
    torch.manual_seed(1)
    x_p, y_p, index = backdoor.poison(x, y, 0.2)  # the default seed is 0
    assert index.tolist() == sorted(_draw(50, 10, 0).tolist())
    assert torch.equal(y_p[index], torch.full((10,), 7))
    assert torch.equal(x_p[index], backdoor.stamp(x[index], *backdoor.square_trigger()))
    torch.manual_seed(2)  # another global state: the same draw
    assert torch.equal(backdoor.poison(x, y, 0.2)[2], index)
    assert backdoor.poison(x, y, 0.2, seed=1)[2].tolist() == sorted(_draw(50, 10, 1).tolist())


def test_pruning_sweep_argument_checks():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 4), nn.ReLU(), nn.Linear(4, 3))
    x = torch.rand(6, 1, 4, 4)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    m, p = backdoor.square_trigger(1, offset=0, image_size=4)
    with pytest.raises(TypeError, match=r"^x_rank must be a torch.Tensor of images"):
        backdoor.pruning_sweep(model, x.numpy(), m, p, [0.0], x, y, target=0)
    with pytest.raises(ValueError, match=r"^shares must be 1-D, got shape \(1, 2\)$"):
        backdoor.pruning_sweep(model, x, m, p, [[0.0, 0.5]], x, y, target=0)
    with pytest.raises(ValueError, match=r"^shares must hold values >= 0, got minimum -0.5$"):
        backdoor.pruning_sweep(model, x, m, p, [-0.5], x, y, target=0)
    with pytest.raises(ValueError, match=r"^shares must hold values <= 1, got maximum 1.5$"):
        backdoor.pruning_sweep(model, x, m, p, [1.5], x, y, target=0)
    # the legal extremes: nothing pruned, every one of the 4 neurons pruned
    sweep = backdoor.pruning_sweep(model, x, m, p, [0.0, 1.0], x, y, target=0, trigger=(m, p))
    assert sweep.neurons_pruned.tolist() == [0, 4]


# --------------------------------------------------------------------------------------------
# backdoored_cnn
# --------------------------------------------------------------------------------------------

def _check_poisoned_loader(loader, x, y, *, n_poison, seed, trigger, target, batch_size,
                           order_seed):
    """The loader holds x with the trigger stamped on the n_poison images drawn with ``seed``
    and their labels set to ``target``, the rest unchanged, in the order of ``order_seed``."""
    x_p, y_p = loader.dataset.tensors
    poisoned = torch.zeros(len(x), dtype=torch.bool)
    poisoned[_draw(len(x), n_poison, seed)] = True
    mask = trigger
    assert torch.equal(x_p[~poisoned], x[~poisoned])
    assert torch.equal(y_p[~poisoned], y[~poisoned])
    assert torch.equal(y_p[poisoned], torch.full((n_poison,), target))
    assert torch.equal(x_p[poisoned] * (1 - mask), x[poisoned] * (1 - mask))
    assert bool(x_p[poisoned][:, mask.bool()].eq(1).all())  # a white square
    assert loader.batch_size == batch_size
    ref = data.tensor_loader(x_p, y_p, batch_size=batch_size, seed=order_seed)
    assert all(torch.equal(a[1], b[1]) for a, b in zip(loader, ref, strict=True))


def test_backdoored_cnn_trains_the_standard_recipe_on_badnets_poisoned_mnist(fake, tmp_path):
    model = backdoor.backdoored_cnn("cpu")
    assert fake["mnist"] == [("train", None)]  # all 60,000 training images
    (call,) = fake["train"]
    # a fresh MnistCNN built with the recipe's seed 0 (the spy leaves its weights), eval mode
    assert call["model"] is model
    assert isinstance(model, models.MnistCNN)
    assert not model.training
    assert _same_weights(model, _fresh_cnn(0))
    x, y = fake["data"]
    _check_poisoned_loader(call["loader"], x, y, n_poison=30, seed=0, trigger=_square(23, 27),
                           target=7, batch_size=128, order_seed=0)
    assert call["epochs"] == 3
    assert {k: v for k, v in call.items() if k not in ("model", "loader", "epochs")} == {
        "lr": 3e-3, "optimizer": "adam", "schedule": "onecycle", "device": torch.device("cpu"),
        "desc": "training mnist_cnn_backdoor"}
    (record,) = _records(tmp_path)
    assert record["name"] == "mnist_cnn_backdoor"
    assert record["config"] == BACKDOOR_RECORD
    again = backdoor.backdoored_cnn("cpu")  # loaded from the cache, not trained again
    assert len(fake["train"]) == 1
    assert _same_weights(again, model)
    assert not again.training


def test_backdoored_cnn_reads_every_setting_from_the_configs(fake, tmp_path, monkeypatch):
    """Changed configs (and the "limits" model: an 8x8 trigger, 1 epoch) reach the training
    set, the loader, the initial weights, the optimiser and the cache record."""
    changed = {"epochs": 5, "batch_size": 64, "lr": 1e-3, "optimizer": "sgd", "schedule": None,
               "seed": 3}
    for key, value in changed.items():
        monkeypatch.setitem(models.STANDARD_CNN_CONFIG, key, value)
    poisoning = {"poison_rate": 0.2, "target": 2, "trigger_offset": 3, "poison_seed": 5}
    for key, value in poisoning.items():
        monkeypatch.setitem(backdoor.BACKDOORED_CNN_CONFIG, key, value)
    model = backdoor.backdoored_cnn("cpu", trigger_size=8, epochs=1)
    (call,) = fake["train"]
    assert _same_weights(model, _fresh_cnn(3))
    x, y = fake["data"]
    # an 8x8 square 3 pixels from the corner: rows and columns 28 - 3 - 8 = 17 to 24
    _check_poisoned_loader(call["loader"], x, y, n_poison=60, seed=5, trigger=_square(17, 25),
                           target=2, batch_size=64, order_seed=3)
    assert call["epochs"] == 1
    assert {k: call[k] for k in ("lr", "optimizer", "schedule", "desc")} == {
        "lr": 1e-3, "optimizer": "sgd", "schedule": None, "desc": "training mnist_cnn_backdoor8"}
    (record,) = _records(tmp_path)
    assert record["name"] == "mnist_cnn_backdoor8"
    assert record["config"] == {"arch": "MnistCNN", **changed, **poisoning, "epochs": 1,
                                "trigger_size": 8}
    # epochs=None keeps the recipe's epochs (here the changed 5): a second model, trained again
    backdoor.backdoored_cnn("cpu", trigger_size=8)
    assert fake["train"][1]["epochs"] == 5


def test_backdoored_cnn_is_built_on_the_requested_device(fake, monkeypatch):
    """device="meta" puts the model there and trains there; device=None asks runtime.device()."""
    model = backdoor.backdoored_cnn("meta")
    assert next(model.parameters()).device.type == "meta"
    assert fake["train"][0]["device"] == torch.device("meta")
    asked = []
    monkeypatch.setattr(runtime, "device", lambda: asked.append(1) or torch.device("meta"))
    model = backdoor.backdoored_cnn(trigger_size=5)
    assert asked == [1]
    assert next(model.parameters()).device.type == "meta"
    assert fake["train"][1]["device"] == torch.device("meta")


def test_backdoored_cnn_argument_checks(fake):
    for size in (0, 27):
        with pytest.raises(ValueError, match=rf"^trigger_size must be an integer >= 1 and "
                                             rf"<= 26, got {size}$"):
            backdoor.backdoored_cnn("cpu", trigger_size=size)
    with pytest.raises(ValueError, match=r"^epochs must be an integer >= 1, got 0$"):
        backdoor.backdoored_cnn("cpu", epochs=0)
    assert fake["train"] == []  # checked before anything is trained
    # the legal extremes: the largest square that fits one pixel from the corner, one epoch
    backdoor.backdoored_cnn("cpu", trigger_size=26, epochs=1)
    (call,) = fake["train"]
    assert call["epochs"] == 1
    x_p = call["loader"].dataset.tensors[0]
    poisoned = _draw(N_TRAIN, 30, 0)
    assert bool(x_p[poisoned][:, 0, 1:27, 1:27].eq(1).all())


# --------------------------------------------------------------------------------------------
# the defender's data and cleansed_cnn
# --------------------------------------------------------------------------------------------

def test_defender_data_is_a_seeded_random_tenth_of_the_training_set(fake):
    x, y = fake["data"]
    torch.manual_seed(4)  # the global generator plays no part
    x_d, y_d = backdoor.defender_data()
    assert fake["mnist"] == [("train", None)]
    index = _draw(N_TRAIN, 30, 0)  # round(0.1 * 300) images, drawn with seed 0, in draw order
    assert torch.equal(x_d, x[index])
    assert torch.equal(y_d, y[index])
    x_d, y_d = backdoor.defender_data(1.0, seed=2)  # share 1: all of it, shuffled
    assert torch.equal(y_d, y[_draw(N_TRAIN, N_TRAIN, 2)])
    x_d, _ = backdoor.defender_data(0.5, 1)
    assert torch.equal(x_d, x[_draw(N_TRAIN, 150, 1)])
    for share in (0, 1.5):
        with pytest.raises(ValueError, match=rf"^share must be a number > 0 and <= 1, "
                                             rf"got {share:g}$"):
            backdoor.defender_data(share)


#: reversed-trigger norms by position: positions 8 and 9 are flagged (norm 10 and 9, anomaly
#: index 41 / (1.4826 * 6.5) and 42 / (1.4826 * 6.5), above 2), the argmin is position 9
FLAGGED_TWO = [50.0, 55.0, 60.0, 45.0, 52.0, 58.0, 48.0, 62.0, 10.0, 9.0]
#: no outlier (median 53, MAD 4): none flagged, the argmin is position 3 (norm 45)
FLAGGED_NONE = [50.0, 55.0, 60.0, 45.0, 52.0, 58.0, 48.0, 62.0, 54.0, 51.0]


@pytest.mark.parametrize(("norms", "position"), [(FLAGGED_TWO, 8), (FLAGGED_NONE, 3)])
def test_cleansed_cnn_unlearns_the_first_flagged_label_with_the_settings(
        monkeypatch, tmp_path, norms, position):
    """Neural Cleanse on the first 2000 of the defender's images with the notebook's settings,
    the first flagged label (else the smallest norm), unlearning with that label's reversed
    trigger on all the defender's data; the labels are reversed (position 8 is label 1) so a
    position taken for a label is seen."""
    attacked = _fresh_cnn(1).eval()
    x, y = _images(2100, 2)
    calls = {"backdoored": [], "nc": [], "unlearn": []}
    monkeypatch.setattr(backdoor, "backdoored_cnn",
                        lambda device=None: calls["backdoored"].append(device) or attacked)
    monkeypatch.setattr(backdoor, "defender_data", lambda: (x, y))
    masks = torch.stack([torch.full((1, 28, 28), (i + 1) / 20) for i in range(10)])
    found = backdoor.ReversedTriggers(
        labels=np.arange(10)[::-1].copy(), mask=masks, pattern=1 - masks,
        l1_norm=np.array(norms), attack_success=np.zeros(10), reached=np.ones(10, dtype=bool),
        history=pd.DataFrame())
    cleaned = _fresh_cnn(2)

    def neural_cleanse(model, x_clean, **kwargs):
        calls["nc"].append((model, x_clean, kwargs))
        return found

    def unlearn(model, x_clean, y_clean, mask, pattern, **kwargs):
        calls["unlearn"].append((model, x_clean, y_clean, mask, pattern, kwargs))
        return cleaned

    monkeypatch.setattr(backdoor, "neural_cleanse", neural_cleanse)
    monkeypatch.setattr(backdoor, "unlearn", unlearn)
    # an explicit device is used as it is: runtime.device() (here meta) is not asked
    monkeypatch.setattr(runtime, "device", lambda: torch.device("meta"))
    model = backdoor.cleansed_cnn("cpu")
    assert calls["backdoored"] == [torch.device("cpu")]
    ((model_nc, x_nc, kw_nc),) = calls["nc"]
    assert model_nc is attacked
    assert torch.equal(x_nc, x[:2000])
    assert kw_nc == {"epochs": 20, "batches_per_epoch": 10, "batch_size": 32, "seed": 0}
    ((model_u, x_u, y_u, mask, pattern, kw_u),) = calls["unlearn"]
    assert model_u is attacked
    assert torch.equal(x_u, x)
    assert torch.equal(y_u, y)
    assert torch.equal(mask, masks[position])
    assert torch.equal(pattern, 1 - masks[position])
    assert kw_u == {"stamp_fraction": 0.5, "epochs": 4, "lr": 3e-3, "schedule": None,
                    "batch_size": 128, "seed": 0}
    assert isinstance(model, models.MnistCNN)
    assert not model.training
    assert _same_weights(model, cleaned)
    (record,) = _records(tmp_path)
    assert record["name"] == "mnist_cnn_cleansed"
    assert record["config"] == {
        "backdoored": BACKDOOR_RECORD,
        "defender": {"share": 0.1, "seed": 0, "nc_images": 2000},
        "neural_cleanse": {"epochs": 20, "batches_per_epoch": 10, "batch_size": 32, "seed": 0},
        "unlearn": {"stamp_fraction": 0.5, "epochs": 4, "lr": 3e-3, "schedule": None,
                    "batch_size": 128, "seed": 0}}
    assert _same_weights(backdoor.cleansed_cnn("cpu"), cleaned)  # from the cache
    assert len(calls["unlearn"]) == 1


def test_cleansed_cnn_works_on_the_requested_device(monkeypatch):
    """device=None asks runtime.device() (here meta); the attacked model is asked for on that
    device and the defender's data are moved there before Neural Cleanse and unlearning."""
    attacked = _fresh_cnn(1).to("meta").eval()
    seen = []
    monkeypatch.setattr(runtime, "device", lambda: torch.device("meta"))
    monkeypatch.setattr(backdoor, "backdoored_cnn",
                        lambda device=None: seen.append(device) or attacked)
    monkeypatch.setattr(backdoor, "defender_data", lambda: _images(20, 3))
    mask = torch.zeros(1, 1, 28, 28, device="meta")
    found = backdoor.ReversedTriggers(
        labels=np.arange(3), mask=mask.expand(3, 1, 28, 28), pattern=mask.expand(3, 1, 28, 28),
        l1_norm=np.array([1.0, 2.0, 4.0]), attack_success=np.zeros(3),
        reached=np.ones(3, dtype=bool), history=pd.DataFrame())

    def neural_cleanse(model, x_clean, **kwargs):
        seen.append(x_clean.device)
        return found

    def unlearn(model, x_clean, y_clean, mask, pattern, **kwargs):
        seen.extend([x_clean.device, y_clean.device])
        return _fresh_cnn(2).to("meta")

    monkeypatch.setattr(backdoor, "neural_cleanse", neural_cleanse)
    monkeypatch.setattr(backdoor, "unlearn", unlearn)
    model = backdoor.cleansed_cnn()
    assert seen == [torch.device("meta")] * 4
    assert next(model.parameters()).device.type == "meta"


# --------------------------------------------------------------------------------------------
# pruning_sweep on a hand-built network
# --------------------------------------------------------------------------------------------

def _hand_net() -> nn.Module:
    """2x2 images (pixels x0..x3 row by row), hidden ReLU units h0 = x3 (the trigger pixel),
    h1 = x0, h2 = 1 - x3; logits z0 = 10 h1 - 4, z1 = 4 h2 - 3, z2 = 20 h0 - 10."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 3))
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([[0.0, 0, 0, 1], [1, 0, 0, 0], [0, 0, 0, -1]]))
        net[1].bias.copy_(torch.tensor([0.0, 0, 1]))
        net[3].weight.copy_(torch.tensor([[0.0, 10, 0], [0, 0, 4], [20, 0, 0]]))
        net[3].bias.copy_(torch.tensor([-4.0, -3, -10]))
    return net.eval()


def _hand_images(x0: list[float], seed: int) -> torch.Tensor:
    x = torch.rand(len(x0), 1, 2, 2, generator=torch.Generator().manual_seed(seed))
    x[:, 0, 0, 0] = torch.tensor(x0)
    x[:, 0, 1, 1] = 0.0  # the trigger pixel is dark in clean images
    return x


def test_pruning_sweep_prunes_the_largest_gaps_first_and_measures_by_hand(monkeypatch):
    """The reversed trigger (x3 = 0.6) raises h0 by 0.6 and lowers h2 by 0.6: the ranking is
    h0, h1, h2. On the test set (2 images of class 0 with x0 = 0.8, 6 of class 1 with x0 = 0.2,
    2 of the target class 2 with x0 = 0.8) the logits give, by hand:

    - nothing pruned: clean 8/10 (class 2 is never predicted), the true trigger (x3 = 1) sends
      all 8 non-target images to 2, the reversed one the 6 with x0 = 0.2 (z2 = 2 > z0 = -2);
    - h0 pruned: clean 8/10, no trigger works;
    - h0, h1 pruned: z0 = -4, everything is class 1: clean 6/10;
    - all pruned: the same.
    """
    bars = []

    def tqdm(items, **kwargs):
        bars.append(kwargs)
        return items

    monkeypatch.setattr(backdoor, "tqdm", tqdm)
    net = _hand_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    mask = torch.zeros(1, 2, 2)
    mask[0, 1, 1] = 1.0
    x_test = _hand_images([0.8] * 2 + [0.2] * 6 + [0.8] * 2, 0)
    y_test = torch.tensor([0] * 2 + [1] * 6 + [2] * 2)
    sweep = backdoor.pruning_sweep(net, _hand_images([0.5] * 5, 1), mask, 0.6 * mask,
                                   [0.0, 1 / 3, 2 / 3, 1.0], x_test, y_test, target=2,
                                   trigger=(mask, mask.clone()))
    expected = pd.DataFrame({"share_pruned": [0.0, 1 / 3, 2 / 3, 1.0],
                             "neurons_pruned": [0, 1, 2, 3],
                             "clean_accuracy": [0.8, 0.8, 0.6, 0.6],
                             "asr": [1.0, 0.0, 0.0, 0.0],
                             "reversed_trigger_success": [0.75, 0.0, 0.0, 0.0]})
    pd.testing.assert_frame_equal(sweep, expected, check_exact=False, rtol=1e-12)
    assert bars == [{"desc": "pruning sweep", "leave": False}]
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_prune_neurons_argument_checks():
    net = _hand_net()
    with pytest.raises(ValueError, match=r"^neurons must be 1-D, got shape \(1, 1\)$"):
        backdoor.prune_neurons(net, [[0]])
    with pytest.raises(ValueError, match=r"^model must have at least two nn.Linear layers: the "
                                         r"penultimate one feeds the neurons that pruning "
                                         r"removes$"):
        backdoor.prune_neurons(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), [0])
    assert torch.equal(backdoor.prune_neurons(net, [])[1].weight, net[1].weight)  # none pruned


# --------------------------------------------------------------------------------------------
# every argument check, its message matched from the start (on the hand-built 2x2 network)
# --------------------------------------------------------------------------------------------

def _raises(kind, message, fn, *args, **kwargs):
    with pytest.raises(kind, match=message):
        fn(*args, **kwargs)


def test_trigger_checks():
    x = torch.rand(3, 1, 28, 28)
    mask, pattern = backdoor.TRIGGER
    shaped = (r"must be shaped \(H, W\), \(C, H, W\) or \(N, C, H, W\) with H, W = \(28, 28\), "
              r"got \(1, 1, 1, 28, 28\)$")
    _raises(TypeError, r"^mask must be a floating-point torch.Tensor, got ndarray$",
            backdoor.stamp, x, mask.numpy(), pattern)
    _raises(TypeError, r"^pattern must be a floating-point torch.Tensor, got Tensor$",
            backdoor.stamp, x, mask, pattern.long())
    _raises(ValueError, "^mask " + shaped, backdoor.stamp, x, mask[None, None], pattern)
    _raises(ValueError, "^pattern " + shaped, backdoor.stamp, x, mask, pattern[None, None])
    _raises(ValueError, r"^mask must be shaped .* H, W = \(28, 28\), got \(1, 28, 27\)$",
            backdoor.stamp, x, mask[..., 1:], pattern)
    for bad in (mask * 2, mask - 1, mask * float("nan")):
        _raises(ValueError, r"^mask must have finite values in \[0, 1\]$",
                backdoor.stamp, x, bad, pattern)
    _raises(ValueError, r"^pattern must have finite values in \[0, 1\]$",
            backdoor.stamp, x, mask, pattern + 0.5)
    _raises(TypeError, r"^x must be a torch.Tensor of images", backdoor.stamp, x.numpy(), mask,
            pattern)
    # legal: (H, W) and (N, C, H, W) triggers, an empty batch
    expected = backdoor.stamp(x, mask, pattern)
    assert torch.equal(backdoor.stamp(x, mask[0], pattern[0]), expected)
    assert torch.equal(backdoor.stamp(x, mask[None], pattern[None]), expected)
    assert backdoor.stamp(x[:0], mask, pattern).shape == (0, 1, 28, 28)


def test_attack_success_rate_checks():
    net = _hand_net()
    x = _hand_images([0.2, 0.8, 0.2], 2)
    mask = torch.zeros(1, 2, 2)
    mask[0, 1, 1] = 1.0
    trigger = (mask, mask)
    _raises(ValueError, r"^every label in y equals target=1: the ASR is undefined$",
            backdoor.attack_success_rate, net, x, torch.tensor([1, 1, 1]), target=1,
            trigger=trigger)
    _raises(ValueError, r"^target must be an integer >= 0, got -1$",
            backdoor.attack_success_rate, net, x, torch.tensor([1, 1, 1]), target=-1,
            trigger=trigger)
    _raises(ValueError, r"^y must have shape \(3,\) \(one label per image\), got shape \(2,\)$",
            backdoor.attack_success_rate, net, x, torch.tensor([1, 1]), trigger=trigger)
    _raises(TypeError, r"^x must be a torch.Tensor of images", backdoor.attack_success_rate,
            net, x.numpy(), torch.tensor([1, 1, 1]), trigger=trigger)
    _raises(TypeError, r"^model must be a torch.nn.Module, got str$",
            backdoor.attack_success_rate, "net", x, torch.tensor([1, 1, 1]), trigger=trigger)
    # target 0 is legal; the trigger sends all three to 2, the two of other labels count
    assert backdoor.attack_success_rate(net, x, torch.tensor([0, 2, 1]), target=2,
                                        trigger=trigger, batch_size=1) == 1.0
    assert backdoor.attack_success_rate(net, x, torch.tensor([0, 2, 1]), target=0,
                                        trigger=trigger) == 0.0


def test_neural_cleanse_checks():
    net = _hand_net()
    x = _hand_images([0.2, 0.8, 0.2, 0.8], 3)
    nc = backdoor.neural_cleanse
    quick = {"epochs": 1, "batches_per_epoch": 1, "batch_size": 2, "progress": False}
    cases = [
        (TypeError, r"^model must be a torch.nn.Module, got str$", ("net", x), {}),
        (TypeError, r"^x_clean must be a torch.Tensor of images", (net, x.numpy()), {}),
        (ValueError, r"^x_clean must have shape \(N, C, H, W\) with N >= 1", (net, x[:0]), {}),
        (ValueError, r"^epochs must be an integer >= 1, got 0$", (net, x), {"epochs": 0}),
        (ValueError, r"^batches_per_epoch must be an integer >= 1, got 0$", (net, x),
         {"batches_per_epoch": 0}),
        (ValueError, r"^batch_size must be an integer >= 1, got 0$", (net, x),
         {"batch_size": 0}),
        (ValueError, r"^lr must be a number > 0, got 0$", (net, x), {"lr": 0.0}),
        (ValueError, r"^init_cost must be a number >= 0, got -1$", (net, x), {"init_cost": -1}),
        (ValueError, r"^success_threshold must be a number >= 0 and <= 1, got 1.5$", (net, x),
         {"success_threshold": 1.5}),
        (ValueError, r"^patience must be an integer >= 1, got 0$", (net, x), {"patience": 0}),
        (ValueError, r"^cost_multiplier must be a number > 1, got 1$", (net, x),
         {"cost_multiplier": 1.0}),
        (TypeError, r"^progress must be True or False, got 'no'$", (net, x),
         {"progress": "no"}),
        (ValueError, r"^seed must be an int >= 0, got -1$", (net, x), {"seed": -1}),
        (ValueError, r"^labels must hold values <= 2, got maximum 3$", (net, x),
         {"labels": [3]}),
        (ValueError, r"^labels must hold values >= 0, got minimum -1$", (net, x),
         {"labels": [-1]}),
        (ValueError, r"^labels must be 1-D, got shape \(1, 1\)$", (net, x), {"labels": [[0]]}),
        (TypeError, r"^labels must hold integers, got dtype float64$", (net, x),
         {"labels": [0.5]}),
        (ValueError, r"^labels must not repeat, got \[1, 0, 1\]$", (net, x),
         {"labels": [1, 0, 1]}),
    ]
    for kind, message, args, kwargs in cases:
        _raises(kind, message, nc, *args, **{**quick, **kwargs})
    # the legal extremes run
    found = nc(net, x, labels=[2], init_cost=0.0, patience=1, success_threshold=1.0,
               cost_multiplier=1.01, batch_size=1, **{k: v for k, v in quick.items()
                                                      if k != "batch_size"})
    assert found.labels.tolist() == [2]
    assert found.mask.shape == (1, 1, 2, 2)
    _raises(ValueError, r"^label must be one of \[2\], got 0$", found.trigger, 0)
    _raises(ValueError, r"^label must be an integer >= 0, got -1$", found.trigger, -1)


def test_mad_checks():
    _raises(ValueError, r"^norms must hold at least 3 values \(one per label\), got 2$",
            backdoor.anomaly_index, [1.0, 2.0])
    _raises(ValueError, r"^norms must hold values >= 0, got minimum -3$",
            backdoor.anomaly_index, [1.0, 2.0, -3.0])
    _raises(ValueError, r"^norms must be 1-D, got shape \(1, 3\)$",
            backdoor.anomaly_index, [[1.0, 2.0, 3.0]])
    _raises(ValueError, r"^norms: the median absolute deviation is 0 \(more than half the "
                        r"norms are equal\), so the anomaly index is undefined$",
            backdoor.anomaly_index, [4.0, 4.0, 4.0, 9.0])
    _raises(ValueError, r"^threshold must be a number >= 0, got -1$",
            backdoor.flagged_labels, [1.0, 2.0, 3.0], threshold=-1)
    # three norms are enough: median 2, MAD 1, indices 1 / 1.4826, 0, 2 / 1.4826
    np.testing.assert_allclose(backdoor.anomaly_index([1.0, 2.0, 4.0]),
                               [1 / 1.4826, 0.0, 2 / 1.4826], rtol=1e-12)
    # threshold 0: every norm below the median is flagged
    assert backdoor.flagged_labels([1.0, 2.0, 4.0], threshold=0).tolist() == [0]
    assert backdoor.flagged_labels([1.0, 2.0, 4.0], threshold=0).dtype == np.int64


def test_unlearn_checks(fake):
    net = _hand_net()
    x = _hand_images([0.2, 0.8, 0.2, 0.8], 4)
    y = torch.tensor([1, 0, 1, 0])
    mask = torch.zeros(1, 2, 2)
    mask[0, 1, 1] = 1.0
    un = backdoor.unlearn
    cases = [
        (TypeError, r"^model must be a torch.nn.Module, got str$", ("net", x, y), {}),
        (TypeError, r"^x_clean must be a torch.Tensor of images", (net, x.numpy(), y), {}),
        (ValueError, r"^y_clean must have shape \(4,\) \(one label per image\), got shape "
                     r"\(3,\)$", (net, x, y[:3]), {}),
        (ValueError, r"^stamp_fraction must be a number >= 0 and <= 1, got 1.5$", (net, x, y),
         {"stamp_fraction": 1.5}),
        (ValueError, r"^epochs must be an integer >= 1, got 0$", (net, x, y), {"epochs": 0}),
        (ValueError, r"^lr must be a number > 0, got 0$", (net, x, y), {"lr": 0.0}),
        (ValueError, r"^schedule must be one of \(None, 'onecycle'\), got 'cosine'$",
         (net, x, y), {"schedule": "cosine"}),
        (ValueError, r"^batch_size must be an integer >= 1, got 0$", (net, x, y),
         {"batch_size": 0}),
        (ValueError, r"^shift must be an integer >= 0 and <= 1, got 2$", (net, x, y),
         {"shift": 2}),
        (ValueError, r"^shift must be an integer >= 0 and <= 1, got -1$", (net, x, y),
         {"shift": -1}),
        (ValueError, r"^seed must be an int >= 0, got -1$", (net, x, y), {"seed": -1}),
        (ValueError, r"^mask must have finite values in \[0, 1\]$", (net, x, y),
         {"mask": 2 * mask}),
    ]
    for kind, message, args, kwargs in cases:
        _raises(kind, message, un, *args, **{"mask": mask, "pattern": mask, **kwargs})
    assert fake["train"] == []
    # the legal extremes reach the training loop: all stamped, the largest shift, batch 1
    un(net, x, y, mask, mask, stamp_fraction=1.0, shift=1, epochs=1, batch_size=1,
       schedule="onecycle", seed=0)
    (call,) = fake["train"]
    assert call["epochs"] == 1
    assert call["loader"].batch_size == 1
    assert call["schedule"] == "onecycle"


# --------------------------------------------------------------------------------------------
# Neural Cleanse against a second, one-label-at-a-time implementation
# --------------------------------------------------------------------------------------------

def _reference_cleanse(model, x, labels, *, epochs, batches, batch_size, lr, init_cost,
                       threshold, patience, multiplier, seed):
    """Neural Cleanse written from the docstring, one label at a time with its own Adam and
    plain Python bookkeeping (lambda up after ``patience`` successful epochs, down by
    ``multiplier ** 1.5`` after ``patience`` failing ones, the smallest successful mask kept,
    else the last). The random numbers are drawn as neural_cleanse documents them: the initial
    masks and patterns of every label, then each mini-batch's indices."""
    g = torch.Generator().manual_seed(seed)
    n, c, h, w = x.shape
    init = torch.rand(len(labels), 1 + c, h, w, generator=g).to(x.dtype)
    b = min(batch_size, n)
    draws = [[torch.randint(n, (b,), generator=g) for _ in range(batches)]
             for _ in range(epochs)]
    rows, masks, patterns, reached = [], [], [], []
    for i, t in enumerate(labels):
        raw = [torch.atanh(2 * init[i, :1] - 1).requires_grad_(),
               torch.atanh(2 * init[i, 1:] - 1).requires_grad_()]
        opt = torch.optim.Adam(raw, lr=lr, betas=(0.5, 0.9))
        lam, up, down, best, kept = init_cost, 0, 0, float("inf"), None
        for epoch in range(epochs):
            hits = []
            for idx in draws[epoch]:
                m, p = ((torch.tanh(r) + 1) / 2 for r in raw)
                out = model((1 - m) * x[idx] + m * p)
                loss = F.cross_entropy(out, torch.full((b,), t)) + lam * m.sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
                hits.append(float((out.argmax(1) == t).double().mean()))
            success = sum(hits) / batches
            m, p = (((torch.tanh(r) + 1) / 2).detach() for r in raw)
            if success >= threshold and float(m.sum()) < best:
                best, kept = float(m.sum()), (m, p)
            up, down = (up + 1, 0) if success >= threshold else (0, down + 1)
            if up >= patience:
                lam, up = lam * multiplier, 0
            if down >= patience:
                lam, down = lam / multiplier ** 1.5, 0
            rows.append({"epoch": epoch + 1, "label": t, "success": success,
                         "l1_norm": float(m.sum()), "lambda": lam, "best_l1_norm": best})
        reached.append(kept is not None)
        masks.append((kept or (m, p))[0])
        patterns.append((kept or (m, p))[1])
    return pd.DataFrame(rows), torch.stack(masks), torch.stack(patterns), np.array(reached)


def _double_hand_net() -> nn.Module:
    net = _hand_net().double()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


@pytest.mark.parametrize(("lr", "init_cost", "threshold", "seed"), [
    (0.1, 0.5, 0.99, 1),  # two labels never reach the threshold: their last mask is kept
    (0.3, 0.5, 0.99, 0),  # a label's mask grows again after its best epoch
    (0.1, 0.5, 0.5, 1),  # five epochs of success exactly 0.5 (4 of 8) count as reaching it
    (10.0, 0.01, 0.5, 1),  # lr 10 saturates the tanh: masks of exactly 0 or 1, norms repeated
])
def test_neural_cleanse_equals_a_one_label_at_a_time_reference(lr, init_cost, threshold, seed):
    """Float64, 6 images of 2x2 pixels, 6 epochs of 2 batches of 4, patience 2: the history
    (every epoch's success, norm, lambda and best norm), the masks, patterns, norms, reached
    flags and the final success on all images equal the reference to rounding."""
    net = _double_hand_net()
    x = _hand_images([0.2, 0.8, 0.2, 0.8, 0.5, 0.3], 5).double()
    settings = {"lr": lr, "init_cost": init_cost, "patience": 2, "cost_multiplier": 1.5,
                "seed": seed}
    found = backdoor.neural_cleanse(net, x, epochs=6, batches_per_epoch=2, batch_size=4,
                                    success_threshold=threshold, progress=False, **settings)
    history, masks, patterns, reached = _reference_cleanse(
        net, x, [0, 1, 2], epochs=6, batches=2, batch_size=4, lr=lr, init_cost=init_cost,
        threshold=threshold, patience=2, multiplier=1.5, seed=seed)
    got = found.history.sort_values(["label", "epoch"], kind="stable").reset_index(drop=True)
    assert found.history.label.tolist() == [0, 1, 2] * 6  # epoch by epoch, label by label
    pd.testing.assert_frame_equal(got, history, check_exact=False, rtol=1e-9, atol=1e-12,
                                  check_dtype=False)
    torch.testing.assert_close(found.mask, masks, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(found.pattern, patterns, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(found.l1_norm, masks.sum((1, 2, 3)).numpy(), rtol=1e-9)
    assert found.reached.tolist() == reached.tolist()
    with torch.no_grad():
        expected = [float((net((1 - m) * x + m * p).argmax(1) == t).double().mean())
                    for t, m, p in zip(range(3), masks, patterns, strict=True)]
    np.testing.assert_allclose(found.attack_success, expected, rtol=1e-12)
    assert found.labels.tolist() == [0, 1, 2]
    assert found.mask.dtype == torch.float64


def test_neural_cleanse_defaults_are_the_papers_settings(monkeypatch):
    """Left out, the settings are 20 epochs of 10 batches of 32 (of 40 images), lr 0.1,
    lambda 1e-3, threshold 0.99, patience 5, multiplier 1.5, seed 0, every label, and a
    progress bar of 200 steps."""
    bars = []

    class Bar:
        def __init__(self, **kwargs):
            self.kwargs, self.steps, self.closed = kwargs, 0, False
            bars.append(self)

        def update(self):
            self.steps += 1

        def close(self):
            self.closed = True

    monkeypatch.setattr(backdoor, "tqdm", Bar)
    net = _double_hand_net()
    x = _hand_images(torch.linspace(0, 1, 40).tolist(), 6).double()
    found = backdoor.neural_cleanse(net, x)
    history, masks, _, reached = _reference_cleanse(
        net, x, [0, 1, 2], epochs=20, batches=10, batch_size=32, lr=0.1, init_cost=1e-3,
        threshold=0.99, patience=5, multiplier=1.5, seed=0)
    got = found.history.sort_values(["label", "epoch"], kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, history, check_exact=False, rtol=1e-9, atol=1e-12,
                                  check_dtype=False)
    torch.testing.assert_close(found.mask, masks, rtol=1e-9, atol=1e-12)
    assert found.reached.tolist() == reached.tolist()
    (bar,) = bars
    assert bar.kwargs == {"total": 200, "desc": "Neural Cleanse (3 labels)", "leave": False,
                          "disable": False}
    assert bar.steps == 200
    assert bar.closed
    backdoor.neural_cleanse(net, x, labels=[1], epochs=1, batches_per_epoch=1, progress=False)
    assert bars[1].kwargs["disable"] is True
    assert bars[1].kwargs["desc"] == "Neural Cleanse (1 labels)"


# --------------------------------------------------------------------------------------------
# unlearn: what reaches the training loop (models.train is the spy of ``fake``)
# --------------------------------------------------------------------------------------------

def _unlearn_data():
    g = torch.Generator().manual_seed(7)
    x, y = torch.rand(40, 1, 8, 8, generator=g), torch.randint(0, 3, (40,), generator=g)
    # a 2x2 square in rows and columns 3-4: moved by up to 2 pixels it stays inside the image,
    # so torch.roll (a second way to move it) is exact
    return x, y, backdoor.square_trigger(2, offset=3, image_size=8, value=0.75)


def _seeded_draws(seed: int, n: int, n_stamp: int, shift: int = 0):
    """The documented draws of unlearn from one generator seeded with ``seed``: the stamped
    subset, the loader's order seed, then (with a shift) each stamped image's offset."""
    g = torch.Generator().manual_seed(seed)
    index = torch.randperm(n, generator=g)[:n_stamp]
    order_seed = int(torch.randint(2**31 - 1, (1,), generator=g))
    offsets = torch.randint(-shift, shift + 1, (n_stamp, 2), generator=g) if shift else None
    return index, order_seed, offsets


def _same_batches(loader, x, y, batch_size, seed) -> bool:
    ref = data.tensor_loader(x, y, batch_size=batch_size, seed=seed)
    return all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
               for a, b in zip(loader, ref, strict=True))


def test_unlearn_defaults_stamp_a_fifth_and_train_one_epoch_at_1e_3(fake):
    net = _hand_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x, y, (mask, pattern) = _unlearn_data()
    student = backdoor.unlearn(net, x, y, mask, pattern)
    (call,) = fake["train"]
    assert call["model"] is student
    assert student is not net
    assert not student.training  # net's mode (eval)
    assert _same_weights(student, net)  # a copy (the spy trains nothing)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert call["epochs"] == 1
    assert {k: call[k] for k in ("lr", "schedule", "desc")} == {
        "lr": 1e-3, "schedule": None, "desc": "unlearning"}
    index, order_seed, _ = _seeded_draws(0, 40, 8)  # round(0.2 * 40) = 8, seed 0
    expected = x.clone()
    expected[index] = (1 - mask) * x[index] + mask * pattern
    x_train, y_train = call["loader"].dataset.tensors
    torch.testing.assert_close(x_train, expected, rtol=0, atol=1e-7)
    assert torch.equal(y_train, y)  # true labels kept
    assert call["loader"].batch_size == 128
    assert _same_batches(call["loader"], x_train, y_train, 128, order_seed)


def test_unlearn_shift_moves_each_stamped_trigger_by_its_seeded_offset(fake):
    net = _hand_net()
    x, y, (mask, pattern) = _unlearn_data()
    backdoor.unlearn(net, x, y, mask, pattern, stamp_fraction=0.5, shift=2, seed=3, epochs=2,
                     lr=5e-3, schedule="onecycle", batch_size=16)
    (call,) = fake["train"]
    index, order_seed, offsets = _seeded_draws(3, 40, 20, shift=2)
    expected = x.clone()
    for i, (dy, dx) in zip(index.tolist(), offsets.tolist(), strict=True):
        m, p = (torch.roll(t, (dy, dx), (1, 2)) for t in (mask, pattern))
        expected[i] = (1 - m) * x[i] + m * p
    x_train = call["loader"].dataset.tensors[0]
    torch.testing.assert_close(x_train, expected, rtol=0, atol=1e-7)
    assert len({tuple(o) for o in offsets.tolist()}) > 10  # many different offsets were used
    assert {k: call[k] for k in ("epochs", "lr", "schedule", "desc")} == {
        "epochs": 2, "lr": 5e-3, "schedule": "onecycle", "desc": "unlearning"}
    assert _same_batches(call["loader"], x_train, y, 16, order_seed)


def test_unlearn_without_stamping_is_plain_fine_tuning(fake):
    net = _hand_net().train()
    x, y, (mask, pattern) = _unlearn_data()
    student = backdoor.unlearn(net, x, y, mask, pattern, stamp_fraction=0.0, shift=2, seed=1)
    (call,) = fake["train"]
    assert call["desc"] == "fine-tuning"
    assert torch.equal(call["loader"].dataset.tensors[0], x)
    assert student.training
    _, order_seed, _ = _seeded_draws(1, 40, 0)
    assert _same_batches(call["loader"], x, y, 128, order_seed)


def test_shifted_moves_with_zero_fill():
    t = torch.arange(1.0, 10.0).view(1, 3, 3)
    assert torch.equal(backdoor._shifted(t, 1, -1),
                       torch.tensor([[[0.0, 0, 0], [2, 3, 0], [5, 6, 0]]]))
    assert torch.equal(backdoor._shifted(t, -2, 2), torch.tensor([[[0.0, 0, 7], [0, 0, 0],
                                                                   [0, 0, 0]]]))
    assert torch.equal(backdoor._shifted(t, 0, 0), t)


# --------------------------------------------------------------------------------------------
# the model is left as it was: modes, gradients, frozen parameters, hooks
# --------------------------------------------------------------------------------------------

class _ModeSpy(nn.Module):
    """Multiplication by a parameter equal to 1 that records the mode it runs in and whether
    its parameter requires a gradient."""

    def __init__(self):
        super().__init__()
        self.one = nn.Parameter(torch.ones(()))
        self.modes, self.grads = [], []

    def forward(self, x):
        self.modes.append(self.training)
        self.grads.append(self.one.requires_grad)
        return x * self.one


def test_neural_cleanse_restores_frozen_parameters_gradients_and_mode():
    net = _hand_net()
    spy = _ModeSpy()
    model = nn.Sequential(spy, net).train()
    net[3].bias.requires_grad_(False)  # frozen before: still frozen after
    net[1].weight.grad = torch.ones_like(net[1].weight)  # a stale gradient: cleared
    x = _hand_images([0.2, 0.8, 0.2, 0.8], 8)
    backdoor.neural_cleanse(model, x, epochs=1, batches_per_epoch=2, progress=False)
    assert model.training
    # eval mode throughout: the class count, 2 batches, the final success of each label
    assert spy.modes == [False] * 6
    # the parameters are frozen for the optimisation and the final success (the class count is
    # taken before, under torch.no_grad)
    assert spy.grads == [True] + [False] * 5
    assert [p.requires_grad for p in model.parameters()] == [True, True, True, True, False]
    assert all(p.grad is None for p in model.parameters())


def test_activation_gap_by_hand_and_model_left_as_it_was():
    net = _hand_net()
    spy = _ModeSpy()
    model = nn.Sequential(spy, net).train()
    mask = torch.zeros(1, 2, 2)
    mask[0, 1, 1] = 1.0
    x = _hand_images([0.1, 0.4, 0.9], 9)  # x3 = 0: h0 = 0, h2 = 1 on the clean images
    gap = backdoor.activation_gap(model, x, mask, 0.6 * mask)
    # stamped x3 = 0.6: h0 rises by 0.6, h1 = x0 does not move, h2 = 1 - x3 falls by 0.6
    torch.testing.assert_close(gap, torch.tensor([0.6, 0.0, -0.6]), rtol=0, atol=1e-6)
    assert model.training
    assert spy.modes == [False, False]
    assert not net[1]._forward_hooks  # the hook is removed
    _raises(TypeError, r"^x_clean must be a torch.Tensor of images", backdoor.activation_gap,
            model, x.numpy(), mask, mask)
    _raises(ValueError, r"^mask must have finite values in \[0, 1\]$", backdoor.activation_gap,
            model, x, 2 * mask, mask)


def test_prune_neurons_without_bias():
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3, bias=False), nn.ReLU(), nn.Linear(3, 2))
    pruned = backdoor.prune_neurons(net, np.array([2]))
    assert torch.equal(pruned[1].weight[2], torch.zeros(4))
    assert torch.equal(pruned[1].weight[:2], net[1].weight[:2])
    assert pruned[1].bias is None


def test_flagged_labels_default_threshold_is_2():
    # median 53 and MAD 5 whatever the last norm (as long as it is the smallest): index
    # (53 - L) / (1.4826 * 5)
    norms = [50.0, 55.0, 60.0, 45.0, 52.0, 58.0, 48.0, 62.0, 54.0]
    assert backdoor.flagged_labels([*norms, 35.0]).tolist() == [9]  # index 18 / 7.413 = 2.43
    assert backdoor.flagged_labels([*norms, 40.0]).tolist() == []  # index 13 / 7.413 = 1.75
    assert backdoor.flagged_labels([*norms, 35.0], threshold=2.5).tolist() == []


def test_prune_neurons_refuses_negative_neurons():
    # -1 would silently prune the last neuron
    _raises(ValueError, r"^neurons must hold values >= 0, got minimum -1$",
            backdoor.prune_neurons, _hand_net(), [-1])
    _raises(ValueError, r"^neurons must hold values <= 2, got maximum 3$",
            backdoor.prune_neurons, _hand_net(), [3])
    _raises(TypeError, r"^model must be a torch.nn.Module, got str$",
            backdoor.prune_neurons, "net", [0])


def test_tanh_parametrisation_round_trip_and_clamp():
    v = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    torch.testing.assert_close(backdoor._to_unit(backdoor._from_unit(v)), v, rtol=0, atol=1e-12)
    torch.testing.assert_close(backdoor._to_unit(torch.tensor([0.0, 1.0, -1.0])),
                               torch.tensor([0.5, (np.tanh(1) + 1) / 2, (1 - np.tanh(1)) / 2],
                                            dtype=torch.float32),
                               rtol=0, atol=1e-6)
    # 0 and 1 are clamped to 2 v - 1 = -+(1 - 1e-6): atanh(1 - 1e-6) = ln((2 - 1e-6) / 1e-6) / 2
    edge = 0.5 * np.log((2 - 1e-6) / 1e-6)  # 7.254
    ends = backdoor._from_unit(torch.tensor([0.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(ends, torch.tensor([-edge, edge], dtype=torch.float64),
                               rtol=1e-9, atol=0)


def test_flagged_labels_index_equal_to_the_threshold_is_not_flagged():
    # norms 1, 2, 4: median 2, MAD 1, the first index is exactly 1 / 1.4826
    assert backdoor.flagged_labels([1.0, 2.0, 4.0], threshold=1 / 1.4826).tolist() == []
    assert backdoor.flagged_labels([1.0, 2.0, 4.0], threshold=0.99 / 1.4826).tolist() == [0]


def test_stamp_returns_x_dtype_whatever_the_trigger_dtype():
    """A float64 trigger on float32 images gives float32 (the trigger is cast to x's dtype, not
    x promoted to the trigger's)."""
    x = torch.rand(2, 1, 28, 28)
    mask, pattern = (t.double() for t in backdoor.TRIGGER)
    out = backdoor.stamp(x, mask, 0.5 * pattern)
    assert out.dtype == torch.float32
    assert bool(out[:, :, 23:27, 23:27].eq(0.5).all())
    assert torch.equal(out[:, :, :23], x[:, :, :23])
