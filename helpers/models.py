"""The torch models the notebooks share, their train/evaluate loops and a trained-model cache.

* :class:`MnistCNN`: the workbook's standard MNIST classifier (two 3x3 conv layers with max
  pooling, then a 128-unit head), about 99% test accuracy after three epochs of Adam.
* :class:`MLP`: a fully connected network for MNIST-sized inputs.
* :func:`train`, :func:`evaluate`, :func:`predict`: the one training loop and evaluation of the
  workbook; notebooks never copy them.
* :func:`train_or_load`: keeps trained weights under ``.cache/models/`` keyed by a name, a
  hash of the training config and a fingerprint of the code that trains them (the model class
  and the training function with the helpers they call), so that later notebooks reuse the model
  HW2 trained and a change to a model's code or training loop retrains it.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import hashlib
import inspect
import json
import textwrap
import types
import warnings
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from helpers import checks, data, runtime


class MnistCNN(nn.Module):
    """Conv(1->w, 3x3) - ReLU - MaxPool(2) - Conv(w->2w, 3x3) - ReLU - MaxPool(2) - FC(50w->128) -
    ReLU - FC(128->10), ``width`` w = 32 for the standard CNN (HW4's substitutes use 16). Input
    (N, 1, 28, 28) in [0, 1]; output logits (N, 10). A LeNet-style network (LeCun et al. 1998) of
    the size of Madry et al. 2018's MNIST experiments scaled down to train in a minute on a CPU.
    """

    def __init__(self, num_classes: int = 10, width: int = 32):
        super().__init__()
        width = checks.integer(width, "width", low=1)
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * 5 * 5, 128), nn.ReLU(),
                                  nn.Linear(128, num_classes))
        # The conv weights in channels-last order (NHWC): oneDNN then runs both convolutions in
        # that layout, which on a CPU makes the forward pass about 1.8x and a training step
        # about 1.4x faster than NCHW (``benchmarks/bench_threads.py``). Only the layout of
        # memory changes, not the function: ``flatten`` reads the features in NCHW order
        # whatever their layout, and ``.to(device)``, ``load_state_dict`` and ``deepcopy`` keep
        # it.
        self.to(memory_format=torch.channels_last)

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
    checks.module(model)
    epochs = checks.integer(epochs, "epochs", low=1)
    lr = checks.real(lr, "lr", low=0.0, low_open=True)
    weight_decay = checks.real(weight_decay, "weight_decay", low=0.0)
    if not isinstance(loader, DataLoader):
        raise TypeError(f"loader must be a torch DataLoader, got {type(loader).__name__}")
    if len(loader) == 0:
        raise ValueError("loader is empty (0 batches): training needs at least one batch")
    if loss_fn is not None and not callable(loss_fn):
        raise TypeError("loss_fn must be None or a callable loss_fn(logits, y) -> loss")
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
        if seen == 0:
            bar.close()
            raise ValueError("loader yielded no examples: training needs at least one batch")
        history.append({"epoch": epoch, "loss": total_loss / seen,
                        "train_accuracy": correct / seen})
        bar.set_postfix(loss=f"{total_loss / seen:.4f}")
    bar.close()
    for p in model.parameters():
        p.grad = None
    return history


def _inputs(x, name: str = "x") -> torch.Tensor:
    """A float input batch: image batches (N, C, H, W) must lie in [0, 1] (``checks.images``);
    other inputs (N, features...) must be finite floats. NumPy arrays are a TypeError."""
    if isinstance(x, torch.Tensor) and x.ndim == 4:
        return checks.images(x, name, allow_empty=True)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of inputs shaped (N, ...), e.g. images "
                        f"(N, 1, 28, 28) in [0, 1], got {type(x).__name__} (convert with "
                        f"torch.as_tensor)")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.ndim < 2:
        raise ValueError(f"{name} must have shape (N, ...) with a batch dimension, e.g. "
                         f"(N, 1, 28, 28), got shape {tuple(x.shape)}")
    if x.numel() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def _batches(data_: DataLoader | tuple[torch.Tensor, torch.Tensor], batch_size: int):
    if isinstance(data_, DataLoader):
        yield from data_
    elif isinstance(data_, tuple | list) and len(data_) == 2:
        x, y = data_
        x = _inputs(x, "data[0] (x)")
        y = checks.torch_labels(y, "data[1] (y)", n=len(x))
        for i in range(0, len(x), batch_size):
            yield x[i : i + batch_size], y[i : i + batch_size]
    else:
        raise TypeError(f"data must be a DataLoader or an (x, y) tuple of tensors, got "
                        f"{type(data_).__name__}")


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Eval mode for the block; every submodule's own train/eval flag restored afterwards
    (``model.train(flag)`` would set them all alike), also when the block raises."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Predicted labels ``argmax_k model(x)_k`` as int64 on ``x``'s device; mode restored.

    ``x`` is a float tensor shaped (N, ...): images (N, C, H, W) with values in [0, 1], or
    other finite inputs; NumPy arrays are refused with a hint to convert them.
    """
    checks.module(model)
    x = _inputs(x)
    batch_size = checks.integer(batch_size, "batch_size", low=1)
    dev = _model_device(model)
    with eval_mode(model):
        out = torch.cat([model(x[i : i + batch_size].to(dev)).argmax(1)
                         for i in range(0, len(x), batch_size)]) if len(x) else \
            torch.empty(0, dtype=torch.int64)
    return out.to(x.device)


@torch.no_grad()
def evaluate(model: nn.Module, data_: DataLoader | tuple[torch.Tensor, torch.Tensor],
             batch_size: int = 1000) -> float:
    """Accuracy ``mean(argmax_k model(x)_k == y)`` of ``model`` on a DataLoader or an ``(x, y)``
    tuple of tensors (inputs as in :func:`predict`, int labels); train/eval mode restored."""
    checks.module(model)
    batch_size = checks.integer(batch_size, "batch_size", low=1)
    dev = _model_device(model)
    correct, seen = 0, 0
    with eval_mode(model):
        for x, y in _batches(data_, batch_size):
            logits = model(x.to(dev))
            if len(y) and int(y.max()) >= logits.shape[1]:
                raise ValueError(f"y must hold labels in [0, {logits.shape[1]}) (the model's "
                                 f"classes), got a label {int(y.max())}")
            correct += (logits.argmax(1) == y.to(dev)).sum().item()
            seen += len(y)
    if seen == 0:
        raise ValueError("data is empty: accuracy is undefined")
    return correct / seen


def config_key(name: str, config: dict, code: str = "") -> str:
    """``<name>-<first 16 hex of SHA-256 of the config as canonical JSON, then code>``.

    ``code`` is the fingerprint of the code that trains the weights (:func:`code_fingerprint`)
    or an explicit version string; the empty default keeps the key of the config alone.
    """
    if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"name must be a non-empty string of letters, digits, '-' and '_', "
                         f"got {name!r}")
    if not isinstance(code, str):
        raise TypeError(f"code must be a string, got {type(code).__name__}")
    try:
        canonical = json.dumps(config, sort_keys=True, separators=(",", ":"))
    except TypeError as exc:
        raise TypeError(f"config must be JSON-serialisable: {exc}") from None
    payload = canonical if not code else f"{canonical}\n{code}"
    return f"{name}-{hashlib.sha256(payload.encode()).hexdigest()[:16]}"


def _normalised_source(obj) -> str:
    """The source of a function or class without docstrings, comments or layout (``ast``), so
    that only a change of behaviour changes it; the bytecode when there is no source."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(obj)))
    except (OSError, TypeError, SyntaxError, IndentationError):
        if inspect.isclass(obj):  # e.g. a class defined in a notebook (Python < 3.13)
            members = sorted((k, v) for k, v in vars(obj).items()
                             if isinstance(v, types.FunctionType))
            return "|".join(f"{k}:{_normalised_source(v)}" for k, v in members)
        code = getattr(obj, "__code__", None)
        return _code_repr(code) if code is not None else getattr(obj, "__qualname__", "?")
    scopes = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Module
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(node, scopes) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                and isinstance(first.value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False)


def _code_repr(code: types.CodeType) -> str:
    """Bytecode, names and constants of a code object, nested ones included, without the
    memory addresses that ``repr`` of a code object shows (stable across processes)."""
    consts = [_code_repr(c) if isinstance(c, types.CodeType) else repr(c) for c in code.co_consts]
    return f"{code.co_code.hex()}|{code.co_names}|{consts}"


#: Modules whose code does not determine trained weights: argument checks only raise or pass
#: values through. Leaving them out keeps an edit of a message from retraining every model.
_NOT_FINGERPRINTED = ("helpers.checks",)


def _is_project_code(obj) -> bool:
    module = getattr(obj, "__module__", None) or ""
    return not module.startswith(("torch", "numpy", "builtins", "tqdm", "collections",
                                  *_NOT_FINGERPRINTED))


def _code_closure(fn, seen: set, out: list[str], depth: int = 0) -> None:
    """Add the normalised source of ``fn`` and of the project functions it names (globals,
    closure cells, ``module.attribute``) to ``out``, recursively."""
    fn = inspect.unwrap(fn.func if isinstance(fn, functools.partial) else fn)
    if id(fn) in seen or depth > 8 or not _is_project_code(fn):
        return
    if inspect.isclass(fn):
        for klass in fn.__mro__:
            if _is_project_code(klass) and klass is not object and id(klass) not in seen:
                seen.add(id(klass))
                out.append(f"{klass.__module__}.{klass.__qualname__}:{_normalised_source(klass)}")
        return
    seen.add(id(fn))
    if not isinstance(fn, types.FunctionType):
        call = vars(type(fn)).get("__call__")  # a callable object: its class's __call__
        if not isinstance(call, types.FunctionType):
            return
        fn = call
    out.append(f"{fn.__module__}.{fn.__qualname__}:{_normalised_source(fn)}")
    code = fn.__code__
    names = set(code.co_names)
    for const in code.co_consts:  # nested functions and lambdas
        if isinstance(const, types.CodeType):
            names |= set(const.co_names) | set(const.co_freevars)
    scope = dict(fn.__globals__)
    for var, cell in zip(code.co_freevars, fn.__closure__ or (), strict=False):
        try:
            scope[var] = cell.cell_contents
        except ValueError:  # an empty cell
            continue
    for name in sorted(names):
        value = scope.get(name)
        if isinstance(value, types.ModuleType):
            if not value.__name__.startswith("helpers"):
                continue
            for attr in sorted(names):
                member = getattr(value, attr, None)
                if isinstance(member, types.FunctionType) and member.__module__ == value.__name__:
                    _code_closure(member, seen, out, depth + 1)
        elif isinstance(value, types.FunctionType | functools.partial) or inspect.isclass(value):
            _code_closure(value, seen, out, depth + 1)


def code_fingerprint(model: nn.Module, train_fn: Callable) -> str:
    """SHA-256 (16 hex) of the code that determines trained weights: the source of ``model``'s
    class (and its project base classes) and of ``train_fn`` with the project functions it
    calls, transitively (``models.train``, the loaders, an attack used as ``perturb``...).

    Docstrings, comments and layout do not count (the sources are compared as ``ast`` dumps);
    torch's and NumPy's own code is covered by the pinned versions, not by this fingerprint.
    """
    parts: list[str] = []
    seen: set = set()
    _code_closure(type(model), seen, parts)
    _code_closure(train_fn, seen, parts)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def train_or_load(name: str, config: dict, model: nn.Module,
                  train_fn: Callable[[nn.Module], object], *,
                  version: str | None = None) -> nn.Module:
    """Load ``model``'s trained weights from the cache, or train it and cache them.

    The cache entry is ``.cache/models/<key>.pt`` (a ``state_dict``) beside a ``.json`` that
    records the config, the code fingerprint and the file's SHA-256, where ``key`` is
    ``<name>-<hash of config and code>`` (:func:`config_key`). The code part is ``version`` when
    given (an explicit version string that the caller bumps), else :func:`code_fingerprint`
    of the model's class and ``train_fn``: a change to the model's code or to the training loop
    that keeps the config retrains instead of loading stale weights. On a hit the weights are
    read with ``torch.load(..., weights_only=True)`` (no arbitrary unpickling) after checking
    that digest; a corrupted or unreadable entry is reported with a warning and retrained. On a
    miss ``train_fn(model)`` trains the freshly built ``model`` in place and the state is
    written atomically (:func:`helpers.runtime.atomic_write`), so an interrupted run never
    leaves half a file. ``WORKBOOK_CACHE`` moves the cache folder.

    Args:
        name: short model name, e.g. ``"mnist_cnn"``.
        config: everything that determines the trained weights (architecture, seed, epochs...).
        model: a freshly built, untrained module on the device to use.
        train_fn: called as ``train_fn(model)`` on a miss.
        version: optional explicit code version used in place of the automatic fingerprint.

    Returns:
        ``model`` with trained weights, in eval mode.
    """
    checks.module(model)
    if not callable(train_fn):
        raise TypeError("train_fn must be callable as train_fn(model)")
    if version is not None and (not isinstance(version, str) or not version):
        raise TypeError(f"version must be None or a non-empty string, got {version!r}")
    code = f"version:{version}" if version is not None else code_fingerprint(model, train_fn)
    key = config_key(name, config, code)
    folder = runtime.cache_dir() / "models"
    folder.mkdir(parents=True, exist_ok=True)
    weights, meta = folder / f"{key}.pt", folder / f"{key}.json"
    shown = runtime.display_path(weights)
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
                print(f"loaded {name} from the cache ({shown})")
                return model.eval()
        except (OSError, KeyError, ValueError, RuntimeError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
        warnings.warn(f"cached model {shown} is unusable ({problem}); retraining it",
                      stacklevel=2)
    train_fn(model)
    runtime.atomic_write(weights, lambda p: torch.save(model.state_dict(), p))
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    record = {"name": name, "config": config, "code": code, "sha256": digest,
              "torch": torch.__version__}
    runtime.atomic_write(meta, json.dumps(record, indent=2) + "\n")
    print(f"trained {name} and cached it ({shown})")
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


def tensor_digest(*tensors) -> str:
    """SHA-256 (first 16 hex) of tensors' shapes, dtypes and bytes: a cache key for data held
    in memory (two calls agree exactly when the tensors are equal element for element)."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous() if isinstance(t, torch.Tensor) else torch.as_tensor(t)
        h.update(str((tuple(t.shape), str(t.dtype))).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def train_cached(name: str, build: Callable[[], nn.Module], x: torch.Tensor, y: torch.Tensor,
                 *, epochs: int, lr: float = 1e-3, batch_size: int = 64, min_steps: int = 0,
                 init: nn.Module | None = None, seed: int = 0,
                 device: torch.device | str | None = None) -> nn.Module:
    """Train ``build()`` on the in-memory ``(x, y)`` with :func:`train` (Adam, constant ``lr``,
    shuffled batches), cached by :func:`train_or_load` under a config that holds the
    architecture (the module's ``repr``) and the SHA-256 of the data and of ``init``'s weights
    (:func:`tensor_digest`), so that a second call with the same data loads instead of training.

    ``y`` holds labels (int64) or soft labels (float rows of probabilities: cross-entropy with
    soft targets, i.e. distillation, Hinton et al. 2015). ``init`` warm-starts from another
    model's weights. Training runs for
    :math:`\\max(\\text{epochs}, \\lceil \\text{min\\_steps} / \\lceil n / B\\rceil \\rceil)`
    epochs, so that a tiny set still gets ``min_steps`` gradient steps. The model is built
    after ``torch.manual_seed(seed)`` and trained on ``device`` (default: ``x``'s device).
    Returns the trained model in eval mode.
    """
    if not callable(build):
        raise TypeError(f"build must be callable as build() -> nn.Module, got "
                        f"{type(build).__name__}")
    x = _inputs(x)
    epochs = checks.integer(epochs, "epochs", low=1)
    lr = checks.real(lr, "lr", low=0.0, low_open=True)
    batch_size = checks.integer(batch_size, "batch_size", low=1)
    min_steps = checks.integer(min_steps, "min_steps", low=0)
    seed = checks.integer(seed, "seed", low=0)
    checks.same_length("x", x, "y", y)
    if len(x) == 0:
        raise ValueError("x is empty: training needs at least one example")
    dev = torch.device(device) if device is not None else x.device
    batches = -(-len(x) // batch_size)  # ceil(n / B) batches per epoch
    epochs = max(epochs, -(-min_steps // batches))
    init_state = None if init is None else {k: v.detach().clone()
                                            for k, v in init.state_dict().items()}
    torch.manual_seed(seed)
    model = build().to(dev)
    config = {"arch": repr(model), "data": tensor_digest(x, y),
              "init": None if init_state is None else tensor_digest(*init_state.values()),
              "epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed}

    def fit(m: nn.Module) -> None:
        if init_state is not None:
            m.load_state_dict(init_state)
        loader = data.tensor_loader(x, y, batch_size=batch_size, shuffle=True, seed=seed)
        train(m, loader, epochs, lr=lr, device=dev, desc=f"training {name}")

    return train_or_load(name, config, model, fit)
