"""The shared models, the training loop and the trained-model cache."""

import hashlib
import json
import linecache
import warnings

import numpy as np
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
    assert model.training
    assert 0.7 < accuracy <= 1.0
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
    assert len(calls) == 1
    assert not second.training
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


def _empty_loader():
    dataset = torch.utils.data.TensorDataset(torch.empty(0, 1, 28, 28),
                                             torch.empty(0, dtype=torch.long))
    return torch.utils.data.DataLoader(dataset, batch_size=4)


def test_train_on_an_empty_loader_says_so():
    with pytest.raises(ValueError, match="loader is empty"):
        models.train(models.MLP(hidden=(4,)), _empty_loader(), epochs=1)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"epochs": 1.5}, TypeError, "epochs must be an integer"),
    ({"epochs": True}, TypeError, "epochs must be an integer"),
    ({"epochs": 1, "lr": "0.1"}, TypeError, "lr must be a real number"),
    ({"epochs": 1, "lr": float("nan")}, ValueError, "lr must be a finite number"),
    ({"epochs": 1, "lr": -1e-3}, ValueError, "lr must be a number > 0"),
    ({"epochs": 1, "schedule": "cosine"}, ValueError, "schedule must be None or 'onecycle'"),
    ({"epochs": 1, "loss_fn": "mse"}, TypeError, "loss_fn must be None or a callable"),
    ({"epochs": 1, "perturb": 3}, TypeError, "perturb must be None or a callable"),
])
def test_train_rejects_bad_argument_types_and_values(kwargs, error, match):
    loader = data.mnist_loader("test", batch_size=8, limit=8)
    with pytest.raises(error, match=match):
        models.train(models.MLP(hidden=(8,)), loader, **kwargs)


@pytest.mark.parametrize(("model", "loader", "match"), [
    ("not a model", None, "model must be a torch.nn.Module"),
    (None, [(torch.rand(2, 1, 28, 28), torch.zeros(2, dtype=torch.long))],
     "loader must be a torch DataLoader"),
])
def test_train_rejects_a_bad_model_or_loader(model, loader, match):
    model = models.MLP(hidden=(4,)) if model is None else model
    loader = data.mnist_loader("test", batch_size=8, limit=8) if loader is None else loader
    with pytest.raises(TypeError, match=match):
        models.train(model, loader, epochs=1)


@pytest.mark.parametrize(("x", "batch_size", "error", "match"), [
    (np.zeros((2, 1, 28, 28), dtype=np.float32), 10, TypeError, "torch.as_tensor"),
    ([[0.0] * 784], 10, TypeError, "must be a torch.Tensor"),
    (torch.zeros(2, 1, 28, 28, dtype=torch.uint8), 10, TypeError, "floating-point"),
    (torch.zeros(2, 784, dtype=torch.int64), 10, TypeError, "floating-point"),
    (torch.zeros(784), 10, ValueError, "batch dimension"),
    (torch.full((2, 1, 28, 28), 255.0), 10, ValueError, r"pixel values in \[0, 1\]"),
    (torch.full((2, 1, 28, 28), -0.5), 10, ValueError, r"pixel values in \[0, 1\]"),
    (torch.full((2, 1, 28, 28), float("nan")), 10, ValueError, "NaN"),
    (torch.full((2, 784), float("inf")), 10, ValueError, "NaN or infinite"),
    (torch.rand(2, 1, 28, 28), 0, ValueError, "batch_size must be an integer >= 1"),
    (torch.rand(2, 1, 28, 28), -3, ValueError, "batch_size must be an integer >= 1"),
    (torch.rand(2, 1, 28, 28), 2.0, TypeError, "batch_size must be an integer"),
])
def test_predict_rejects_bad_inputs(x, batch_size, error, match):
    model = models.MLP(hidden=(4,))
    with pytest.raises(error, match=match):
        models.predict(model, x, batch_size=batch_size)


@pytest.mark.parametrize(("data_", "batch_size", "error", "match"), [
    ((np.zeros((2, 1, 28, 28), np.float32), np.zeros(2, np.int64)), 10, TypeError,
     "torch.as_tensor"),
    ((torch.rand(2, 1, 28, 28), torch.zeros(3, dtype=torch.long)), 10, ValueError,
     r"shape \(2,\)"),
    ((torch.rand(2, 1, 28, 28), torch.zeros(2)), 10, TypeError, "integer tensor"),
    ((torch.rand(2, 1, 28, 28), np.zeros(2, np.int64)), 10, TypeError, "torch.Tensor"),
    ((torch.rand(2, 1, 28, 28), torch.tensor([0, 10])), 10, ValueError, "labels in"),
    ((torch.rand(2, 1, 28, 28) * 3, torch.zeros(2, dtype=torch.long)), 10, ValueError,
     r"\[0, 1\]"),
    ("test", 10, TypeError, "DataLoader or an"),
    ((torch.rand(2, 1, 28, 28),), 10, TypeError, "DataLoader or an"),
    ((torch.rand(2, 1, 28, 28), torch.zeros(2, dtype=torch.long)), 0, ValueError,
     "batch_size"),
    ((torch.empty(0, 1, 28, 28), torch.empty(0, dtype=torch.long)), 10, ValueError,
     "data is empty"),
])
def test_evaluate_rejects_bad_inputs(data_, batch_size, error, match):
    model = models.MLP(hidden=(4,))
    model.train()
    with pytest.raises(error, match=match):
        models.evaluate(model, data_, batch_size=batch_size)
    assert model.training  # mode restored even when the input is refused


def test_predict_and_evaluate_agree_and_batching_does_not_matter():
    torch.manual_seed(0)
    model = models.MLP(hidden=(16,))
    x = torch.rand(37, 1, 28, 28)
    logits = model.eval()(x)
    expected = logits.argmax(1)
    for batch_size in (1, 5, 37, 1000):
        assert torch.equal(models.predict(model, x, batch_size=batch_size), expected)
    y = expected.clone()
    y[:10] = (y[:10] + 1) % 10  # exactly 10 of 37 wrong
    assert models.evaluate(model, (x, y), batch_size=4) == pytest.approx(27 / 37)
    assert models.predict(model, torch.empty(0, 1, 28, 28)).shape == (0,)


# ---- the stale-cache fix: the key covers the code that trains the weights ------------------

_NET_SOURCE = '''
import torch
from torch import nn

class Net(nn.Module):
    """A tiny network."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return {body}
'''


def _net_class(body: str, doc: str = ""):
    source = _NET_SOURCE.format(body=body)
    if doc:
        source = source.replace('"""A tiny network."""', f'"""{doc}"""')
    # inspect.getsource reads an exec'd class's source through linecache, as in a notebook
    filename = f"<net-{hashlib.sha256(source.encode()).hexdigest()[:12]}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict = {}
    exec(compile(source, filename, "exec"), namespace)
    cls = namespace["Net"]
    cls.__module__ = "tests_net"
    return cls


def test_stale_cache_a_changed_model_class_is_retrained():
    calls, train_fn = _counting_trainer()
    models.train_or_load("tiny", {"e": 1}, _net_class("self.fc(x)")(), train_fn)
    models.train_or_load("tiny", {"e": 1}, _net_class("self.fc(x)")(), train_fn)
    assert len(calls) == 1  # same code, same config: loaded
    models.train_or_load("tiny", {"e": 1}, _net_class("self.fc(x).relu()")(), train_fn)
    assert len(calls) == 2  # the forward pass changed, the config did not: retrained


def test_stale_cache_a_docstring_change_is_not_a_code_change():
    calls, train_fn = _counting_trainer()
    models.train_or_load("tiny", {"e": 1}, _net_class("self.fc(x)")(), train_fn)
    models.train_or_load("tiny", {"e": 1}, _net_class("self.fc(x)", doc="Reworded.")(),
                         train_fn)
    assert len(calls) == 1


def _fill(value):
    def train_fn(model):
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(value)
    return train_fn


def _helper_a(model):
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.25)


def _helper_b(model):
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.75)


def _uses_helper(model):
    _helper(model)  # resolved from the module's globals at call time


_helper = _helper_a


def test_stale_cache_a_changed_training_function_is_retrained():
    first = models.train_or_load("tiny", {"e": 1}, models.MLP(hidden=(4,)), _fill(0.5))
    second = models.train_or_load("tiny", {"e": 1}, models.MLP(hidden=(4,)),
                                  lambda m: _fill(0.5)(m))
    assert torch.equal(first.net[1].weight, second.net[1].weight)  # retrained: same values
    files = list((runtime.cache_dir() / "models").glob("*.pt"))
    assert len(files) == 2  # two different training functions: two cache entries


def test_stale_cache_a_changed_helper_called_by_the_training_function_is_retrained(
        monkeypatch):
    model = models.train_or_load("tiny", {"e": 1}, models.MLP(hidden=(4,)), _uses_helper)
    assert float(model.net[1].weight[0, 0].detach()) == 0.25
    monkeypatch.setitem(globals(), "_helper", _helper_b)
    model = models.train_or_load("tiny", {"e": 1}, models.MLP(hidden=(4,)), _uses_helper)
    assert float(model.net[1].weight[0, 0].detach()) == 0.75  # not the stale 0.25


def test_stale_cache_the_standard_models_key_follows_the_training_loop(monkeypatch):
    seen = []
    monkeypatch.setattr(models, "train_or_load",
                        lambda name, config, model, fn: seen.append(
                            models.code_fingerprint(model, fn)))
    models.standard_cnn(device="cpu")

    def another_loop(*args, **kwargs):
        return []

    monkeypatch.setattr(models, "train", another_loop)
    models.standard_cnn(device="cpu")
    assert len(seen) == 2
    assert seen[0] != seen[1]


def test_explicit_version_replaces_the_code_fingerprint():
    calls, train_fn = _counting_trainer()
    for body in ("self.fc(x)", "self.fc(x) * 2"):  # a code change under the same version
        models.train_or_load("tiny", {"e": 1}, _net_class(body)(), train_fn, version="1")
    assert len(calls) == 1
    models.train_or_load("tiny", {"e": 1}, _net_class("self.fc(x)")(), train_fn, version="2")
    assert len(calls) == 2
    meta = json.loads(next((runtime.cache_dir() / "models").glob("*.json")).read_text())
    assert meta["code"] == "version:2"


@pytest.mark.parametrize(("version", "match"), [(1, "version must be None or a non-empty"),
                                                ("", "version must be None or a non-empty")])
def test_train_or_load_rejects_a_bad_version(version, match):
    with pytest.raises(TypeError, match=match):
        models.train_or_load("tiny", {}, models.MLP(hidden=(4,)), lambda m: None,
                             version=version)


def test_cache_messages_name_the_real_folder(capsys):
    models.train_or_load("tiny", {}, models.MLP(hidden=(4,)), lambda m: None)
    out = capsys.readouterr().out
    assert str(runtime.cache_dir() / "models") in out  # WORKBOOK_CACHE, not ".cache/models"
    assert ".cache/models" not in out


@pytest.mark.parametrize("call", ["predict", "evaluate"])
def test_predict_and_evaluate_restore_each_submodule_mode(call):
    model = models.MnistCNN()
    model.train()
    model.features.eval()  # mixed modes: a frozen feature extractor under a training head
    x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    if call == "predict":
        models.predict(model, x)
    else:
        models.evaluate(model, (x, y))
    assert model.training
    assert model.head.training
    assert not model.features.training
    assert not any(m.training for m in model.features.modules())


def _cnn_parameter_count(w):
    # hand count: conv 1->w and w->2w (3x3 kernels + biases), FC 2w*5*5 -> 128 -> 10
    return (9 * w + w) + (9 * w * 2 * w + 2 * w) + (50 * w * 128 + 128) + (128 * 10 + 10)


@pytest.mark.parametrize("width", [32, 16, 3])
def test_mnist_cnn_width_sets_the_channels(width):
    model = models.MnistCNN(width=width)
    assert sum(p.numel() for p in model.parameters()) == _cnn_parameter_count(width)
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_mnist_cnn_default_width_is_the_standard_cnn():
    torch.manual_seed(0)
    default = models.MnistCNN().state_dict()
    torch.manual_seed(0)
    explicit = models.MnistCNN(width=32).state_dict()
    assert default.keys() == explicit.keys()
    assert all(torch.equal(default[k], explicit[k]) for k in default)
    assert sum(v.numel() for v in default.values()) == _cnn_parameter_count(32)


@pytest.mark.parametrize(("width", "error"), [(0, ValueError), (2.5, TypeError)])
def test_mnist_cnn_rejects_a_bad_width(width, error):
    with pytest.raises(error, match="width"):
        models.MnistCNN(width=width)


def _tiny_cnn():
    return models.MnistCNN(width=2)


def _same(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_train_cached_trains_once_and_loads_the_same_weights(capsys):
    x, y = torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,))
    a = models.train_cached("t", _tiny_cnn, x, y, epochs=1)
    b = models.train_cached("t", _tiny_cnn, x, y, epochs=1)
    out = capsys.readouterr().out
    assert out.count("trained t") == 1
    assert out.count("loaded t") == 1
    assert _same(a, b)
    assert not a.training
    c = models.train_cached("t", _tiny_cnn, x, (y + 1) % 10, epochs=1)  # other labels
    assert not _same(a, c)
    d = models.train_cached("t", lambda: models.MnistCNN(width=3), x, y, epochs=1)
    assert sum(p.numel() for p in d.parameters()) == _cnn_parameter_count(3)
    assert len(list((runtime.cache_dir() / "models").glob("t-*.pt"))) == 3


def test_train_cached_gives_tiny_sets_min_steps_and_warm_starts_from_init():
    x, y = torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,))
    # 32 examples in batches of 16: 2 steps per epoch, so 5 steps need ceil(5 / 2) = 3 epochs
    models.train_cached("t", _tiny_cnn, x, y, epochs=1, batch_size=16, min_steps=5)
    meta = json.loads(next((runtime.cache_dir() / "models").glob("t-*.json")).read_text())
    assert meta["config"]["epochs"] == 3
    torch.manual_seed(5)
    init = _tiny_cnn()
    warm = models.train_cached("w", _tiny_cnn, x, y, epochs=1, lr=1e-9, init=init)
    # a step of lr 1e-9 moves Adam's weights by ~1e-9: the result is init, not a fresh build
    assert all(torch.allclose(p, q, atol=1e-6)
               for p, q in zip(warm.parameters(), init.parameters(), strict=True))
    cold = models.train_cached("w", _tiny_cnn, x, y, epochs=1, lr=1e-9)
    assert not all(torch.allclose(p, q, atol=1e-3)
                   for p, q in zip(cold.parameters(), init.parameters(), strict=True))


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"epochs": 0}, ValueError, "epochs"),
    ({"min_steps": -1}, ValueError, "min_steps"),
    ({"lr": 0.0}, ValueError, "lr"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"seed": -1}, ValueError, "seed"),
    ({"build": "MnistCNN"}, TypeError, "build must be callable"),
    ({"y": torch.zeros(3, dtype=torch.long)}, ValueError, "same length"),
    ({"x": np.zeros((4, 1, 28, 28), dtype=np.float32)}, TypeError, "x must be a torch.Tensor"),
])
def test_train_cached_rejects_bad_arguments(kwargs, error, match):
    args = {"build": _tiny_cnn, "x": torch.rand(4, 1, 28, 28),
            "y": torch.zeros(4, dtype=torch.long), "epochs": 1, **kwargs}
    with pytest.raises(error, match=match):
        models.train_cached("t", args.pop("build"), args.pop("x"), args.pop("y"), **args)
