"""The shared models, the training loop and the trained-model cache."""

import json
import warnings

import pytest
import torch

from helpers import data, models, runtime


def test_model_shapes():
    x = torch.rand(4, 1, 28, 28)
    assert models.MnistCNN()(x).shape == (4, 10)
    assert models.MLP(hidden=(32,))(x).shape == (4, 10)


def test_train_lowers_the_loss_and_evaluate_restores_mode():
    runtime.setup(0, verbose=False)
    loader = data.mnist_loader("train", batch_size=64, limit=1024)
    model = models.MLP(hidden=(64,))
    history = models.train(model, loader, epochs=3, lr=3e-3)
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["loss"] < history[0]["loss"]
    assert all(p.grad is None for p in model.parameters())
    model.train()
    accuracy = models.evaluate(model, data.mnist_tensors("test", limit=500))
    assert model.training and 0.7 < accuracy <= 1.0
    assert models.predict(model, torch.rand(3, 1, 28, 28)).dtype == torch.int64


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"epochs": 0}, "epochs"), ({"epochs": 1, "lr": 0}, "lr"),
    ({"epochs": 1, "optimizer": "rmsprop"}, "optimizer"),
    ({"epochs": 1, "weight_decay": -1.0}, "weight_decay"),
])
def test_train_rejects_bad_arguments(kwargs, match):
    loader = data.mnist_loader("test", batch_size=8, limit=8)
    with pytest.raises(ValueError, match=match):
        models.train(models.MLP(hidden=(8,)), loader, **kwargs)


def _counting_trainer():
    calls = []

    def train_fn(model):
        calls.append(1)
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(0.5)

    return calls, train_fn


def test_train_or_load_trains_once_then_loads():
    calls, train_fn = _counting_trainer()
    config = {"seed": 0, "epochs": 1}
    first = models.train_or_load("tiny", config, models.MLP(hidden=(4,)), train_fn)
    second = models.train_or_load("tiny", config, models.MLP(hidden=(4,)), train_fn)
    assert len(calls) == 1 and not second.training
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    files = sorted(p.suffix for p in (runtime.cache_dir() / "models").iterdir())
    assert files == [".json", ".pt"]  # no temporary files left behind


def test_train_or_load_retrains_when_the_config_changes():
    calls, train_fn = _counting_trainer()
    models.train_or_load("tiny", {"epochs": 1}, models.MLP(hidden=(4,)), train_fn)
    models.train_or_load("tiny", {"epochs": 2}, models.MLP(hidden=(4,)), train_fn)
    assert len(calls) == 2


def test_corrupted_cache_entry_is_reported_and_retrained():
    calls, train_fn = _counting_trainer()
    models.train_or_load("tiny", {"e": 1}, models.MLP(hidden=(4,)), train_fn)
    weights = next((runtime.cache_dir() / "models").glob("*.pt"))
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.warns(UserWarning, match="unusable.*retraining"):
        models.train_or_load("tiny", {"e": 1}, models.MLP(hidden=(4,)), train_fn)
    assert len(calls) == 2
    meta = json.loads(weights.with_suffix(".json").read_text())
    assert meta["config"] == {"e": 1}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        models.train_or_load("tiny", {"e": 1}, models.MLP(hidden=(4,)), train_fn)
    assert len(calls) == 2


def test_train_or_load_loads_with_weights_only(monkeypatch):
    _, train_fn = _counting_trainer()
    models.train_or_load("tiny", {}, models.MLP(hidden=(4,)), train_fn)
    seen = {}
    original = torch.load

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    models.train_or_load("tiny", {}, models.MLP(hidden=(4,)), train_fn)
    assert seen.get("weights_only") is True


@pytest.mark.parametrize(("name", "config", "error"), [
    ("", {}, ValueError), ("../x", {}, ValueError), ("ok", {"f": object()}, TypeError),
])
def test_train_or_load_rejects_bad_keys(name, config, error):
    with pytest.raises(error):
        models.train_or_load(name, config, models.MLP(hidden=(4,)), lambda m: None)
