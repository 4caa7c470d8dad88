"""The torch models the notebooks share, their train/evaluate loops and a trained-model cache.

* :class:`MnistCNN`: the workbook's standard MNIST classifier (two 3x3 conv layers with max
  pooling, then a 128-unit head), about 99% test accuracy after three epochs of Adam.
* :class:`MLP`: a fully connected network for MNIST-sized inputs.
* :func:`train`, :func:`evaluate`, :func:`predict`: the one training loop and evaluation of the
  workbook; notebooks never copy them.
* :func:`train_or_load`: keeps trained weights under ``.cache/models/`` keyed by a name and a
  hash of the training config, so that later notebooks reuse the model HW2 trained.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from helpers import data, runtime


class MnistCNN(nn.Module):
    """Conv(1->32, 3x3) - ReLU - MaxPool(2) - Conv(32->64, 3x3) - ReLU - MaxPool(2) - FC(1600->128)
    - ReLU - FC(128->10). Input (N, 1, 28, 28) in [0, 1]; output logits (N, 10).

    A LeNet-style network (LeCun et al. 1998) of the size used in Madry et al. 2018's MNIST
    experiments scaled down to train in a minute on a laptop CPU.
    """

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(64 * 5 * 5, 128), nn.ReLU(),
                                  nn.Linear(128, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class MLP(nn.Module):
    """Fully connected ReLU network: Flatten - [Linear - ReLU] * len(hidden) - Linear."""

    def __init__(self, in_features: int = 784, hidden: Sequence[int] = (256, 128),
                 num_classes: int = 10):
        super().__init__()
        if in_features < 1 or num_classes < 2 or any(h < 1 for h in hidden):
            raise ValueError("in_features and hidden sizes must be >= 1 and num_classes >= 2")
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _model_device(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def train(
    model: nn.Module,
    loader: DataLoader,
    epochs: int,
    *,
    lr: float = 1e-3,
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    schedule: str | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    device: torch.device | str | None = None,
    desc: str | None = None,
    perturb: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> list[dict]:
    """Minimise ``loss_fn(model(x), y)`` (cross-entropy by default) over ``epochs`` passes.

    ``optimizer`` is ``"adam"`` (Kingma & Ba 2015) or ``"sgd"`` (momentum 0.9). ``schedule``
    is ``None`` (constant ``lr``) or ``"onecycle"``: the learning rate warms up to ``lr`` over the
    first 30% of the steps and anneals to ~0 (Smith & Topin 2019), which converges in fewer
    epochs.
    ``perturb``, when given, is called as ``perturb(model, x, y)`` on every batch and the model
    is trained on the images it returns instead of ``x`` (adversarial training: Goodfellow et
    al. 2015, Madry et al. 2018); the loss and accuracy reported are those on the returned
    images. Attacks from ``helpers.attacks`` leave the model's mode and parameters as they were.
    Shows a ``tqdm`` bar; returns one dict per epoch with the mean loss and training accuracy.
    The model is left in train mode.
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
    if not isinstance(loader, DataLoader):
        raise TypeError(f"loader must be a torch DataLoader, got {type(loader).__name__}")
    dev = torch.device(device) if device is not None else _model_device(model)
    model.to(dev)
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "adam":
        opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    else:
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    if schedule not in (None, "onecycle"):
        raise ValueError(f"schedule must be None or 'onecycle', got {schedule!r}")
    scheduler = None
    if schedule == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr,
                                                        total_steps=epochs * len(loader))
    if perturb is not None and not callable(perturb):
        raise TypeError("perturb must be None or a callable perturb(model, x, y) -> x_adv")
    loss_fn = loss_fn or F.cross_entropy
    history = []
    bar = tqdm(total=epochs * len(loader), desc=desc or f"training {type(model).__name__}",
               leave=False)
    for epoch in range(1, epochs + 1):
        model.train()
        total_loss, correct, seen = 0.0, 0, 0
        for x, y in loader:
            x, y = x.to(dev), y.to(dev)
            if perturb is not None:
                x = perturb(model, x, y).detach()
            logits = model(x)
            loss = loss_fn(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if scheduler is not None:
                scheduler.step()
            total_loss += loss.item() * len(x)
            if y.dtype == torch.int64:
                correct += (logits.argmax(1) == y).sum().item()
            seen += len(x)
            bar.update()
        history.append({"epoch": epoch, "loss": total_loss / seen,
                        "train_accuracy": correct / seen})
        bar.set_postfix(loss=f"{total_loss / seen:.4f}")
    bar.close()
    for p in model.parameters():
        p.grad = None
    return history


def _batches(data_: DataLoader | tuple[torch.Tensor, torch.Tensor], batch_size: int):
    if isinstance(data_, DataLoader):
        yield from data_
    elif isinstance(data_, tuple | list) and len(data_) == 2:
        x, y = data_
        if len(x) != len(y):
            raise ValueError(f"data: {len(x)} inputs but {len(y)} labels")
        for i in range(0, len(x), batch_size):
            yield x[i : i + batch_size], y[i : i + batch_size]
    else:
        raise TypeError("data must be a DataLoader or an (x, y) tuple of tensors")


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Predicted labels ``argmax_k model(x)_k`` as int64 on ``x``'s device; mode restored."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    was_training = model.training
    model.eval()
    dev = _model_device(model)
    out = torch.cat([model(x[i : i + batch_size].to(dev)).argmax(1)
                     for i in range(0, len(x), batch_size)]) if len(x) else \
        torch.empty(0, dtype=torch.int64)
    model.train(was_training)
    return out.to(x.device)


@torch.no_grad()
def evaluate(model: nn.Module, data_: DataLoader | tuple[torch.Tensor, torch.Tensor],
             batch_size: int = 1000) -> float:
    """Accuracy of ``model`` on a DataLoader or an ``(x, y)`` tuple; train/eval mode restored."""
    was_training = model.training
    model.eval()
    dev = _model_device(model)
    correct, seen = 0, 0
    for x, y in _batches(data_, batch_size):
        correct += (model(x.to(dev)).argmax(1) == y.to(dev)).sum().item()
        seen += len(y)
    model.train(was_training)
    if seen == 0:
        raise ValueError("data is empty: accuracy is undefined")
    return correct / seen


def config_key(name: str, config: dict) -> str:
    """``<name>-<first 16 hex of SHA-256 of the config as canonical JSON>``."""
    if not isinstance(name, str) or not name or not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"name must be a non-empty string of letters, digits, '-' and '_', "
                         f"got {name!r}")
    try:
        canonical = json.dumps(config, sort_keys=True, separators=(",", ":"))
    except TypeError as exc:
        raise TypeError(f"config must be JSON-serialisable: {exc}") from None
    return f"{name}-{hashlib.sha256(canonical.encode()).hexdigest()[:16]}"


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def train_or_load(name: str, config: dict, model: nn.Module,
                  train_fn: Callable[[nn.Module], object]) -> nn.Module:
    """Load ``model``'s trained weights from the cache, or train it and cache them.

    The cache entry is ``.cache/models/<name>-<hash of config>.pt`` (a ``state_dict``) beside a
    ``.json`` that records the config and the file's SHA-256. On a hit the weights are read with
    ``torch.load(..., weights_only=True)`` (no arbitrary unpickling) after checking that digest;
    a corrupted or unreadable entry is reported with a warning and retrained. On a miss
    ``train_fn(model)`` trains the freshly built ``model`` in place and the state is written
    atomically (temporary file, then rename), so an interrupted run never leaves half a file.

    Args:
        name: short model name, e.g. ``"mnist_cnn"``.
        config: everything that determines the trained weights (architecture, seed, epochs...).
        model: a freshly built, untrained module on the device to use.
        train_fn: called as ``train_fn(model)`` on a miss.

    Returns:
        ``model`` with trained weights, in eval mode.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(train_fn):
        raise TypeError("train_fn must be callable as train_fn(model)")
    folder = runtime.cache_dir() / "models"
    folder.mkdir(parents=True, exist_ok=True)
    key = config_key(name, config)
    weights, meta = folder / f"{key}.pt", folder / f"{key}.json"
    if weights.exists():
        problem = None
        try:
            recorded = json.loads(meta.read_text())["sha256"]
            actual = hashlib.sha256(weights.read_bytes()).hexdigest()
            if actual != recorded:
                problem = f"SHA-256 {actual} differs from the recorded {recorded}"
            else:
                state = torch.load(weights, map_location=_model_device(model), weights_only=True)
                model.load_state_dict(state)
                print(f"loaded {name} from the cache (.cache/models/{weights.name})")
                return model.eval()
        except (OSError, KeyError, ValueError, RuntimeError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
        warnings.warn(f"cached model .cache/models/{weights.name} is unusable ({problem}); "
                      "retraining it", stacklevel=2)
    train_fn(model)
    _atomic_write(weights, lambda p: torch.save(model.state_dict(), p))
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    record = {"name": name, "config": config, "sha256": digest, "torch": torch.__version__}
    _atomic_write(meta, lambda p: p.write_text(json.dumps(record, indent=2) + "\n"))
    print(f"trained {name} and cached it (.cache/models/{weights.name})")
    return model.eval()


def _train_mnist_model(build: Callable[[], nn.Module], name: str, config: dict,
                       device: torch.device | str | None) -> nn.Module:
    dev = torch.device(device) if device is not None else runtime.device()
    torch.manual_seed(config["seed"])  # initial weights depend on the config's seed only
    model = build().to(dev)

    def fit(m: nn.Module) -> None:
        loader = data.mnist_loader("train", batch_size=config["batch_size"], seed=config["seed"])
        train(m, loader, config["epochs"], lr=config["lr"], optimizer=config["optimizer"],
              schedule=config["schedule"], device=dev, desc=f"training {name}")

    return train_or_load(name, config, model, fit)


STANDARD_CNN_CONFIG = {"arch": "MnistCNN", "epochs": 3, "batch_size": 128, "lr": 3e-3,
                       "optimizer": "adam", "schedule": "onecycle", "seed": 0}
SECOND_MODEL_CONFIG = {"arch": "MLP-784-256-128-10", "epochs": 4, "batch_size": 128,
                       "lr": 2e-3, "optimizer": "adam", "schedule": "onecycle", "seed": 1}


def standard_cnn(device: torch.device | str | None = None) -> MnistCNN:
    """The workbook's standard MNIST CNN, trained once (config :data:`STANDARD_CNN_CONFIG`) and
    then loaded from the cache by every notebook that attacks or defends it. Eval mode."""
    return _train_mnist_model(MnistCNN, "mnist_cnn", STANDARD_CNN_CONFIG, device)


def second_model(device: torch.device | str | None = None) -> MLP:
    """An independently trained MNIST MLP (another architecture and seed), for transfer attacks."""
    return _train_mnist_model(MLP, "mnist_mlp", SECOND_MODEL_CONFIG, device)

