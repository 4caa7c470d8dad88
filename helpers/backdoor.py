"""Backdoors: trigger stamping and poisoning (shared by HW4 and Task 1), Neural Cleanse, the MAD
outlier test, unlearning and pruning (Task 1).

A trigger is a ``(mask, pattern)`` pair of tensors shaped (1, H, W) (or (C, H, W)) with values in
[0, 1]. Stamping blends it into images:

.. math::
    A(x, m, \\Delta) = (1 - m) \\odot x + m \\odot \\Delta

which is exactly the form Neural Cleanse inverts (Wang et al. 2019, eq. 2).

References:
    Gu, Dolan-Gavitt, Garg. BadNets: Identifying Vulnerabilities in the Machine Learning Model
    Supply Chain. 2017.
    Wang, Yao, Shan, Li, Viswanath, Zheng, Zhao. Neural Cleanse: Identifying and Mitigating
    Backdoor Attacks in Neural Networks. IEEE S&P 2019.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from helpers import checks

__all__ = [
    "BACKDOORED_CNN_CONFIG",
    "DEFENDER_CONFIG",
    "MAD_CONSISTENCY",
    "NEURAL_CLEANSE_SETTINGS",
    "TARGET_LABEL",
    "TRIGGER",
    "UNLEARN_SETTINGS",
    "ReversedTriggers",
    "activation_gap",
    "anomaly_index",
    "attack_success_rate",
    "backdoored_cnn",
    "cleansed_cnn",
    "defender_data",
    "flagged_labels",
    "neural_cleanse",
    "poison",
    "prune_neurons",
    "pruning_sweep",
    "square_trigger",
    "stamp",
    "unlearn",
]


def square_trigger(size: int = 4, offset: int = 1, image_size: int = 28,
                   value: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """A BadNets patch: a ``size`` x ``size`` square of intensity ``value`` in the bottom-right
    corner, ``offset`` pixels from the edges. Returns ``(mask, pattern)``, each (1, H, W)."""
    size = checks.integer(size, "size", low=1, high=image_size)
    offset = checks.integer(offset, "offset", low=0, high=image_size - size)
    value = checks.fraction(value, "value")
    mask = torch.zeros(1, image_size, image_size)
    lo, hi = image_size - offset - size, image_size - offset
    mask[:, lo:hi, lo:hi] = 1.0
    pattern = torch.full((1, image_size, image_size), value) * mask
    return mask, pattern


#: The workbook's BadNets trigger: a white 4x4 square one pixel from the bottom-right corner.
TRIGGER: tuple[torch.Tensor, torch.Tensor] = square_trigger()
#: The label that the backdoored models send triggered images to.
TARGET_LABEL: int = 7


def _check_trigger(mask, pattern, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    for name, t in (("mask", mask), ("pattern", pattern)):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point torch.Tensor, got "
                            f"{type(t).__name__}")
        # (mutation testing, equivalent: x.shape[+2:] for x.shape[-2:], in the test and the
        # message, since x is always (N, C, H, W) here: checks.images refuses any other shape)
        if t.ndim not in (2, 3, 4) or tuple(t.shape[-2:]) != tuple(x.shape[-2:]):
            raise ValueError(f"{name} must be shaped (H, W), (C, H, W) or (N, C, H, W) with "
                             f"H, W = {tuple(x.shape[-2:])}, got {tuple(t.shape)}")
        if t.numel() and (not bool(torch.isfinite(t).all()) or float(t.min()) < 0
                          or float(t.max()) > 1):
            raise ValueError(f"{name} must have finite values in [0, 1]")
    return mask.to(x), pattern.to(x)


def stamp(x: torch.Tensor, mask: torch.Tensor, pattern: torch.Tensor) -> torch.Tensor:
    """Apply a trigger: :math:`(1 - m) \\odot x + m \\odot \\Delta` (Wang et al. 2019, eq. 2).

    A zero mask returns ``x``; a full mask returns the pattern; pixels where ``m = 0`` are left
    exactly as they were, and stamping twice equals stamping once for a binary mask. Returns a
    new tensor on ``x``'s device and dtype.
    """
    # (mutation testing, equivalent: leaving out the name "x" gives the check's default, "x")
    x = checks.images(x, "x", allow_empty=True)
    mask, pattern = _check_trigger(mask, pattern, x)
    return (1.0 - mask) * x + mask * pattern


def poison(x: torch.Tensor, y: torch.Tensor, rate: float, *, target: int = TARGET_LABEL,
           trigger: tuple[torch.Tensor, torch.Tensor] = TRIGGER,
           seed=0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """BadNets data poisoning (Gu et al. 2017): stamp the trigger on ``round(rate * N)`` training
    images drawn uniformly without replacement and relabel them to ``target``.

    Returns ``(x_poisoned, y_poisoned, index)``: copies of the data and the indices of the
    poisoned examples (sorted). Exactly ``round(rate * N)`` examples change; the rest are
    untouched.
    """
    # (mutation testing, equivalent: leaving out the names "x" and "y" gives the checks' own
    # default names, the same "x" and "y")
    x = checks.images(x, "x")
    y = checks.torch_labels(y, "y", n=x.shape[0])
    rate = checks.fraction(rate, "rate")
    target = checks.integer(target, "target", low=0)
    generator = checks.torch_generator(seed)
    n_poison = round(rate * x.shape[0])
    index = torch.randperm(x.shape[0], generator=generator)[:n_poison].sort().values
    # (mutation testing, equivalent on the CPU: .to(None) keeps the index where it is, and torch
    # indexes a tensor on any device with a CPU index; only the returned index's device would
    # differ, on a GPU, which the tests cannot use: checks.images reads values, so no meta device)
    index = index.to(x.device)
    x_p, y_p = x.clone(), y.clone()
    if n_poison:
        x_p[index] = stamp(x[index], *trigger)
        y_p[index] = target
    return x_p, y_p, index


@torch.no_grad()
def attack_success_rate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                        target: int = TARGET_LABEL,
                        trigger: tuple[torch.Tensor, torch.Tensor] = TRIGGER,
                        batch_size: int = 1000) -> float:
    """ASR: the share of images whose true label is not ``target`` that the trigger sends to
    ``target`` (images already of the target class are left out, as in Gu et al. 2017)."""
    from helpers import models

    checks.module(model)
    x = checks.images(x, "x")
    y = checks.torch_labels(y, "y", n=x.shape[0])
    target = checks.integer(target, "target", low=0)
    keep = y != target
    if not bool(keep.any()):
        raise ValueError(f"every label in y equals target={target}: the ASR is undefined")
    pred = models.predict(model, stamp(x[keep], *trigger), batch_size=batch_size)
    return float((pred == target).double().mean())


# --------------------------------------------------------------------------------------------
# The backdoored models (Task 1)
# --------------------------------------------------------------------------------------------

#: Training recipe of :func:`backdoored_cnn`: the standard CNN's (models.STANDARD_CNN_CONFIG) on
#: MNIST with 10% of the training images stamped with a white square and relabelled to 7.
BACKDOORED_CNN_CONFIG = {"poison_rate": 0.1, "target": TARGET_LABEL, "trigger_size": 4,
                         "trigger_offset": 1, "poison_seed": 0}


def _trained_on_poison(name: str, config: dict, trigger, device) -> torch.nn.Module:
    """Train a fresh :class:`models.MnistCNN` with the standard recipe on BadNets-poisoned
    MNIST (cached through ``models.train_or_load``)."""
    from helpers import data, models, runtime

    dev = torch.device(device) if device is not None else runtime.device()
    torch.manual_seed(config["seed"])  # initial weights depend on the config's seed only
    model = models.MnistCNN().to(dev)

    def fit(m: torch.nn.Module) -> None:
        x, y = data.mnist_tensors("train")
        x_p, y_p, _ = poison(x, y, config["poison_rate"], target=config["target"],
                             trigger=trigger, seed=config["poison_seed"])
        loader = data.tensor_loader(x_p, y_p, batch_size=config["batch_size"],
                                    seed=config["seed"])
        models.train(m, loader, config["epochs"], lr=config["lr"], optimizer=config["optimizer"],
                     schedule=config["schedule"], device=dev, desc=f"training {name}")

    return models.train_or_load(name, config, model, fit)


def backdoored_cnn(device: torch.device | str | None = None, *, trigger_size: int = 4,
                   epochs: int | None = None) -> torch.nn.Module:
    """The standard CNN trained on BadNets-poisoned MNIST (Gu et al. 2017): 10% of the 60,000
    training images carry a white ``trigger_size`` x ``trigger_size`` square one pixel from the
    bottom-right corner and are relabelled to :data:`TARGET_LABEL`; otherwise exactly the
    recipe of ``models.standard_cnn`` (3 epochs of one-cycle Adam, batch 128, seed 0).

    ``trigger_size=4`` is :data:`TRIGGER`; a larger size (e.g. 8) gives the model of the
    "limits" experiment, whose trigger is ``square_trigger(trigger_size)``. ``epochs``
    (default: the standard recipe's 3) shortens the one-cycle schedule, e.g. to train that
    second model in a third of the time. Cached, eval mode.
    """
    from helpers import models

    trigger_size = checks.integer(trigger_size, "trigger_size", low=1, high=26)
    config = {**models.STANDARD_CNN_CONFIG, **BACKDOORED_CNN_CONFIG,
              "trigger_size": trigger_size}
    if epochs is not None:
        config["epochs"] = checks.integer(epochs, "epochs", low=1)
    trigger = square_trigger(trigger_size, BACKDOORED_CNN_CONFIG["trigger_offset"])
    name = "mnist_cnn_backdoor" if trigger_size == 4 else f"mnist_cnn_backdoor{trigger_size}"
    return _trained_on_poison(name, config, trigger, device)


# --------------------------------------------------------------------------------------------
# Neural Cleanse: reverse-engineering a trigger for every label (Wang et al. 2019, section IV)
# --------------------------------------------------------------------------------------------

@dataclass
class ReversedTriggers:
    """What :func:`neural_cleanse` found, one entry per candidate label.

    Attributes:
        labels: the candidate target labels, shape (K,).
        mask: the smallest mask found that reaches the success threshold (or the last one if
            none did), shape (K, 1, H, W), values in [0, 1].
        pattern: the matching patterns, shape (K, C, H, W), values in [0, 1].
        l1_norm: :math:`\\lVert m_t \\rVert_1` of each mask, NumPy (K,).
        attack_success: share of the clean images that the reversed trigger sends to the label
            (images of the label itself included, as in the paper), NumPy (K,).
        reached: whether the success threshold was reached at some epoch, NumPy bool (K,).
        history: one row per (epoch, label): the epoch's mean success, the mask's L1 norm,
            lambda and the best norm so far; for the convergence plot.
    """

    labels: np.ndarray
    mask: torch.Tensor
    pattern: torch.Tensor
    l1_norm: np.ndarray
    attack_success: np.ndarray
    reached: np.ndarray
    history: pd.DataFrame = field(repr=False)

    def trigger(self, label: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The reversed ``(mask, pattern)`` of ``label``, each shaped (C, H, W)."""
        label = checks.integer(label, "label", low=0)
        hits = np.flatnonzero(self.labels == label)
        if hits.size == 0:
            raise ValueError(f"label must be one of {self.labels.tolist()}, got {label}")
        return self.mask[hits[0]], self.pattern[hits[0]]


def _to_unit(raw: torch.Tensor) -> torch.Tensor:
    """The tanh box parametrisation: :math:`(\\tanh(w) + 1) / 2 \\in (0, 1)`."""
    return (torch.tanh(raw) + 1.0) / 2.0


def _from_unit(value: torch.Tensor) -> torch.Tensor:
    return torch.atanh((2.0 * value - 1.0).clamp(-1 + 1e-6, 1 - 1e-6))


def neural_cleanse(model: torch.nn.Module, x_clean: torch.Tensor, *, labels=None,
                   epochs: int = 20, batches_per_epoch: int = 10, batch_size: int = 32,
                   lr: float = 0.1, init_cost: float = 1e-3, success_threshold: float = 0.99,
                   patience: int = 5, cost_multiplier: float = 1.5, seed=0,
                   progress: bool = True) -> ReversedTriggers:
    """Neural Cleanse trigger reverse-engineering for every candidate label in ONE batched
    optimisation (Wang et al. 2019, section IV-B, eq. 3).

    For each label :math:`t`, over clean images :math:`x`:

    .. math::
        \\min_{m_t, \\Delta_t}\\; \\mathbb{E}_x\\, \\ell\\big(t, f((1 - m_t) \\odot x + m_t
        \\odot \\Delta_t)\\big) + \\lambda_t \\lVert m_t \\rVert_1,\\qquad
        m_t = \\tfrac{1}{2}(\\tanh w_t + 1),\\; \\Delta_t = \\tfrac{1}{2}(\\tanh v_t + 1)

    with :math:`\\ell` the cross-entropy; the tanh keeps mask and pattern in [0, 1] without
    projection. All K labels share each mini-batch: the K stamped copies of the batch go
    through the model in one call of K * ``batch_size`` images, and the K losses are summed
    (their parameters are disjoint, so each label's gradient is its own). Adam (lr 0.1,
    betas (0.5, 0.9), as in the paper's code).

    Adaptive :math:`\\lambda_t` (the paper's schedule, per label): start at ``init_cost``; an
    *epoch* is ``batches_per_epoch`` mini-batches; after ``patience`` consecutive epochs whose
    mean success is >= ``success_threshold``, multiply :math:`\\lambda_t` by
    ``cost_multiplier`` (ask for a smaller trigger); after ``patience`` consecutive epochs
    below it, divide by ``cost_multiplier ** 1.5`` (let the trigger grow back). The mask kept
    for a label is the one with the smallest L1 norm among epochs that reached the threshold.

    The model is not changed: parameters identical, no gradient left on them, mode restored.

    Args:
        model: maps (N, C, H, W) images in [0, 1] to logits.
        x_clean: clean images (N, C, H, W) in [0, 1], N >= 1.
        labels: candidate labels (default: every class the model outputs).
        epochs, batches_per_epoch, batch_size: the optimisation length; the number of model
            calls is ``epochs * batches_per_epoch``, each on K * ``batch_size`` images.
        lr, init_cost, success_threshold, patience, cost_multiplier: the paper's settings
            (0.1, 1e-3, 0.99, 5, 1.5).
        seed: random initial masks/patterns and mini-batch order (``checks.torch_generator``).
        progress: show a ``tqdm`` bar.
    """
    checks.module(model)
    x_clean = checks.images(x_clean, "x_clean")
    epochs = checks.integer(epochs, "epochs", low=1)
    batches_per_epoch = checks.integer(batches_per_epoch, "batches_per_epoch", low=1)
    batch_size = checks.integer(batch_size, "batch_size", low=1)
    lr = checks.real(lr, "lr", low=0, low_open=True)
    init_cost = checks.real(init_cost, "init_cost", low=0)
    success_threshold = checks.fraction(success_threshold, "success_threshold")
    patience = checks.integer(patience, "patience", low=1)
    cost_multiplier = checks.real(cost_multiplier, "cost_multiplier", low=1, low_open=True)
    progress = checks.boolean(progress, "progress")
    generator = checks.torch_generator(seed)
    dev, dtype = x_clean.device, x_clean.dtype
    was_training = model.training
    flags = [p.requires_grad for p in model.parameters()]
    model.eval()
    try:
        with torch.no_grad():
            # (mutation testing, equivalent: x_clean[:2] gives the same number of classes)
            num_classes = model(x_clean[:1]).shape[1]
        if labels is None:
            labels = np.arange(num_classes)
        labels = checks.array(labels, "labels", ndim=1, dtype="int", low=0, high=num_classes - 1)
        if len(np.unique(labels)) != len(labels):
            raise ValueError(f"labels must not repeat, got {labels.tolist()}")
        for p in model.parameters():
            p.requires_grad_(False)
        # (mutation testing, equivalent on the CPU: dev = None makes the loop's tensors on the
        # CPU, where x_clean is in every test; see _reverse_engineer)
        result = _reverse_engineer(model, x_clean, labels, epochs, batches_per_epoch,
                                   batch_size, lr, init_cost, success_threshold, patience,
                                   cost_multiplier, generator, progress, dev, dtype)
    finally:
        # (mutation testing, equivalent: strict=False or left out, since flags was read from the
        # same parameters, so the lengths always match)
        for p, flag in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(flag)
            p.grad = None
        model.train(was_training)
    return result


def _reverse_engineer(model, x_clean, labels, epochs, batches_per_epoch, batch_size, lr,
                      init_cost, threshold, patience, multiplier, generator, progress, dev,
                      dtype) -> ReversedTriggers:
    """The optimisation loop of :func:`neural_cleanse` (arguments already checked)."""
    k, (n, c, h, w) = len(labels), x_clean.shape
    # (mutation testing, equivalent on the CPU, here and below: device=None or no device for the
    # tensors made on dev (x_clean's device) puts them on the CPU, where x_clean is in every
    # test; on a GPU the mix would fail at once. The tests cannot use another device: checks.images
    # reads the values, so a meta tensor is refused)
    target = torch.as_tensor(labels, device=dev)
    init = torch.rand(k, 1 + c, h, w, generator=generator).to(device=dev, dtype=dtype)
    mask_raw = _from_unit(init[:, :1]).requires_grad_(True)
    pattern_raw = _from_unit(init[:, 1:]).requires_grad_(True)
    opt = torch.optim.Adam([mask_raw, pattern_raw], lr=lr, betas=(0.5, 0.9))
    cost = torch.full((k,), init_cost, device=dev, dtype=dtype)
    # (mutation testing, equivalent: up and down count epochs, exactly in a float dtype too)
    up = torch.zeros(k, dtype=torch.long, device=dev)
    down = torch.zeros_like(up)
    # (mutation testing, equivalent: float("INF") is inf too; and without dtype=dtype the start,
    # inf, is exact in float32 as well, and torch.where promotes it to the norms' dtype at once)
    best_norm = torch.full((k,), float("inf"), device=dev, dtype=dtype)
    best_mask = _to_unit(mask_raw).detach().clone()
    best_pattern = _to_unit(pattern_raw).detach().clone()
    rows = []
    bar = tqdm(total=epochs * batches_per_epoch, desc=f"Neural Cleanse ({k} labels)",
               leave=False, disable=not progress)
    b = min(batch_size, n)
    target_rep = target.repeat_interleave(b)  # the label of each of the K * b stamped images
    for epoch in range(1, epochs + 1):
        success = torch.zeros(k, device=dev, dtype=dtype)
        for _ in range(batches_per_epoch):
            x = x_clean[torch.randint(n, (b,), generator=generator).to(dev)]
            mask, pattern = _to_unit(mask_raw), _to_unit(pattern_raw)
            # (1 - m) x + m Delta for all K triggers at once, one fused op: (K, b, C, H, W)
            stamped = torch.lerp(x[None], pattern[:, None], mask[:, None])
            logits = model(stamped.view(-1, c, h, w))
            # mean CE per label (the mean over its b images) = sum over all / b
            ce = F.cross_entropy(logits, target_rep, reduction="sum") / b
            # (mutation testing, equivalent: zeroed instead of None gradients give Adam the same
            # steps)
            opt.zero_grad(set_to_none=True)
            (ce + (cost * mask.sum((1, 2, 3))).sum()).backward()
            opt.step()
            with torch.no_grad():
                success += (logits.argmax(1) == target_rep).view(k, b).to(dtype).mean(1)
            bar.update()
        with torch.no_grad():
            success /= batches_per_epoch
            mask, pattern = _to_unit(mask_raw), _to_unit(pattern_raw)
            norm = mask.sum((1, 2, 3))
            # (mutation testing, equivalent in practice: norm <= best_norm differs only when two
            # epochs have bit-identical norms, which takes a saturated tanh, and then their masks
            # and patterns agree too: 6e-17 apart in a test run with lr 10)
            better = (success >= threshold) & (norm < best_norm)
            best_norm = torch.where(better, norm, best_norm)
            best_mask[better], best_pattern[better] = mask[better], pattern[better]
            hit = success >= threshold
            up, down = torch.where(hit, up + 1, 0), torch.where(hit, 0, down + 1)
            cost = torch.where(up >= patience, cost * multiplier, cost)
            cost = torch.where(down >= patience, cost / multiplier ** 1.5, cost)
            up, down = torch.where(up >= patience, 0, up), torch.where(down >= patience, 0, down)
        # (mutation testing, equivalent: strict=False or left out, since the five lists all have
        # one entry per label)
        rows += [{"epoch": epoch, "label": int(t), "success": float(s), "l1_norm": float(m),
                  "lambda": float(lam), "best_l1_norm": float(b)}
                 for t, s, m, lam, b in zip(labels, success.tolist(), norm.tolist(),
                                            cost.tolist(), best_norm.tolist(), strict=True)]
    bar.close()
    reached = torch.isfinite(best_norm)
    last_mask, last_pattern = _to_unit(mask_raw).detach(), _to_unit(pattern_raw).detach()
    best_mask[~reached], best_pattern[~reached] = last_mask[~reached], last_pattern[~reached]
    success = _reversed_success(model, x_clean, best_mask, best_pattern, target)
    return ReversedTriggers(labels=np.asarray(labels), mask=best_mask, pattern=best_pattern,
                            l1_norm=best_mask.sum((1, 2, 3)).cpu().double().numpy(),
                            attack_success=success, reached=reached.cpu().numpy(),
                            history=pd.DataFrame(rows))


@torch.no_grad()
def _reversed_success(model, x, masks, patterns, target, batch_size: int = 1000) -> np.ndarray:
    """Share of ``x`` that each reversed trigger sends to its label (all of x, one row each)."""
    from helpers import models

    return np.array([float((models.predict(model, stamp(x, m, p), batch_size) == t)
                           .double().mean()) for m, p, t in zip(masks, patterns, target.tolist(),
                                                                 strict=True)])


# --------------------------------------------------------------------------------------------
# The MAD outlier test (Wang et al. 2019, section IV-C)
# --------------------------------------------------------------------------------------------

#: Consistency constant of the MAD: 1 / Phi^{-1}(3/4), so that 1.4826 * MAD estimates the
#: standard deviation of normally distributed data.
MAD_CONSISTENCY = 1.4826


def anomaly_index(norms) -> np.ndarray:
    """The anomaly index of each label's reversed-trigger norm (Wang et al. 2019, IV-C):

    .. math::
        a_t = \\frac{|L_t - \\tilde L|}{1.4826 \\cdot \\mathrm{median}_s |L_s - \\tilde L|},
        \\qquad \\tilde L = \\mathrm{median}_s L_s

    the distance from the median in robust standard deviations (Hampel 1974; Leys et al.
    2013). Median and MAD ignore up to half of the values, so the outlier being sought cannot
    hide by inflating the scale, as it would inflate a mean and standard deviation.

    Raises:
        ValueError: fewer than 3 norms, a negative or non-finite norm, or MAD = 0 (more than
            half the norms equal: the index is undefined).
    """
    norms = checks.array(norms, "norms", ndim=1, low=0)
    if norms.size < 3:
        raise ValueError(f"norms must hold at least 3 values (one per label), got {norms.size}")
    median = np.median(norms)
    mad = np.median(np.abs(norms - median))
    if mad == 0:
        raise ValueError("norms: the median absolute deviation is 0 (more than half the norms "
                         "are equal), so the anomaly index is undefined")
    return np.abs(norms - median) / (MAD_CONSISTENCY * mad)


def flagged_labels(norms, threshold: float = 2.0) -> np.ndarray:
    """Labels (positions in ``norms``) flagged as infected: norm below the median and anomaly
    index above ``threshold`` (2 in the paper: under a normal model, about 2.3% of clean labels
    fall that far below the median). Only small norms count: a backdoor makes a label *easier*
    to reach. Returns an int64 array, possibly empty."""
    threshold = checks.real(threshold, "threshold", low=0)
    index = anomaly_index(norms)
    # (mutation testing, equivalent: without dtype=np.float64 the norms keep the real dtype that
    # checks.array accepted, and their order and median test are the same, bar last-bit ties)
    norms = np.asarray(norms, dtype=np.float64)
    # (mutation testing, equivalent: norms <= median flags nothing more, since a norm equal to
    # the median has index 0, which is never > threshold >= 0)
    return np.flatnonzero((norms < np.median(norms)) & (index > threshold)).astype(np.int64)


# --------------------------------------------------------------------------------------------
# Mitigation: unlearning (Wang et al. 2019, VI-C) and neuron pruning (VI-B)
# --------------------------------------------------------------------------------------------

#: The defender's clean data: 10% of the MNIST training images (a seeded random subset, true
#: labels), used for reverse engineering, unlearning and pruning.
DEFENDER_CONFIG = {"share": 0.1, "seed": 0, "nc_images": 2000}


def defender_data(share: float = DEFENDER_CONFIG["share"],
                  seed=DEFENDER_CONFIG["seed"]) -> tuple[torch.Tensor, torch.Tensor]:
    """A random ``share`` of the clean MNIST training set ``(x, y)`` (without replacement,
    drawn with ``seed``): the clean data the Neural Cleanse defender is assumed to hold."""
    from helpers import data

    share = checks.fraction(share, "share", open_low=True)
    x, y = data.mnist_tensors("train")
    index = torch.randperm(len(x), generator=checks.torch_generator(seed))[:round(share * len(x))]
    return x[index], y[index]


def _shifted(t: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``t`` (..., H, W) moved down by ``dy`` and right by ``dx`` pixels, zeros shifted in."""
    out = torch.zeros_like(t)
    h, w = t.shape[-2:]
    # (mutation testing, equivalent: min(d, 1) for min(d, 0) changes a slice end only when d > 0,
    # to h + 1 or w + 1, and a slice end past the edge is clipped to it: the same slice)
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        t[..., max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def unlearn(model: torch.nn.Module, x_clean: torch.Tensor, y_clean: torch.Tensor,
            mask: torch.Tensor, pattern: torch.Tensor, *, stamp_fraction: float = 0.2,
            epochs: int = 1, lr: float = 1e-3, schedule: str | None = None,
            batch_size: int = 128, shift: int = 0, seed=0) -> torch.nn.Module:
    """Unlearning (Wang et al. 2019, VI-C): fine-tune a copy of ``model`` on clean data of
    which a ``stamp_fraction`` (20% in the paper) carries the reversed trigger
    :math:`(1 - m) \\odot x + m \\odot \\Delta` but keeps its TRUE label, so the model learns
    that the trigger means nothing. ``stamp_fraction=0`` is plain fine-tuning (the control).

    Minimises the cross-entropy with Adam (``models.train``) for ``epochs`` passes at learning
    rate ``lr``, constant or, with ``schedule="onecycle"``, warmed up then annealed. The stamped
    examples are a random subset drawn with ``seed``. ``shift > 0`` moves the trigger on each
    stamped example by a random offset :math:`(d_y, d_x) \\in \\{-s, \\dots, s\\}^2` (zero fill at
    the border): the reversed trigger is only the *smallest* piece of the real one that works,
    and its shifted copies cover the area around it. ``model`` is not changed; the returned
    copy has the same architecture and parameter shapes and is in ``model``'s mode.
    """
    from helpers import data, models

    checks.module(model)
    x_clean = checks.images(x_clean, "x_clean")
    y_clean = checks.torch_labels(y_clean, "y_clean", n=x_clean.shape[0])
    stamp_fraction = checks.fraction(stamp_fraction, "stamp_fraction")
    epochs = checks.integer(epochs, "epochs", low=1)
    lr = checks.real(lr, "lr", low=0, low_open=True)
    schedule = checks.choice(schedule, "schedule", (None, "onecycle"))
    # (mutation testing, equivalent: without low=1 data.tensor_loader refuses batch_size < 1
    # with the same message, before any training)
    batch_size = checks.integer(batch_size, "batch_size", low=1)
    mask, pattern = _check_trigger(mask, pattern, x_clean)
    # (mutation testing, equivalent: x_clean.shape[+2:] is x_clean.shape[-2:] for (N, C, H, W))
    shift = checks.integer(shift, "shift", low=0, high=min(x_clean.shape[-2:]) - 1)
    generator = checks.torch_generator(seed)
    n_stamp = round(stamp_fraction * len(x_clean))
    # (mutation testing, equivalent on the CPU: .to(None) keeps the index on the CPU, and a CPU
    # index indexes a tensor on any device)
    index = torch.randperm(len(x_clean), generator=generator)[:n_stamp].to(x_clean.device)
    order_seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
    x_train = x_clean.clone()
    # (mutation testing, equivalent: `n_stamp or shift` only adds the case n_stamp = 0, where no
    # offsets are drawn and nothing is stamped, and shift = 0, where every offset is (0, 0),
    # the unshifted trigger, drawn after the loader's seed)
    if n_stamp and shift:
        offsets = torch.randint(-shift, shift + 1, (n_stamp, 2), generator=generator)
        for dy, dx in torch.unique(offsets, dim=0).tolist():
            # (mutation testing, equivalent on the CPU: .to(None) leaves the boolean mask with the
            # offsets, on the CPU, and a CPU mask indexes an index tensor on any device)
            rows = index[(offsets == torch.tensor([dy, dx])).all(1).to(index.device)]
            x_train[rows] = stamp(x_clean[rows], _shifted(mask, dy, dx),
                                  _shifted(pattern, dy, dx))
    elif n_stamp:
        x_train[index] = stamp(x_clean[index], mask, pattern)
    loader = data.tensor_loader(x_train, y_clean, batch_size=batch_size, seed=order_seed)
    was_training = model.training
    student = copy.deepcopy(model)
    models.train(student, loader, epochs, lr=lr, schedule=schedule,
                 desc="unlearning" if n_stamp else "fine-tuning")
    return student.train(was_training)


#: Neural Cleanse settings of the Task 1 notebook and :func:`cleansed_cnn` (the paper's lr,
#: lambda schedule and batch size; 200 steps, enough for every label's norm to level off). 16
#: images per label halves the cost but gave the clean standard CNN a false positive (label 8,
#: index 2.05), so the notebook keeps the paper's 32.
NEURAL_CLEANSE_SETTINGS = {"epochs": 20, "batches_per_epoch": 10, "batch_size": 32, "seed": 0}
#: Unlearning settings of the Task 1 notebook and :func:`cleansed_cnn`: the paper's recipe (10% of
#: the training data, a share stamped with the reversed trigger, true labels kept) with the share,
#: epochs and learning rate chosen by ``scripts/select_unlearning.py`` on a held-out split of the
#: defender's data (5,000 images to unlearn, 1,000 held out; never the test set) from epochs
#: {2, 4} x lr {1e-3, 3e-3} x share {0.2, 0.5} x shift {0, 2}: the lowest held-out ASR among
#: settings losing at most 0.5 points of held-out accuracy. That ASR uses the true trigger, which
#: the defender does not have (the reversed trigger's own success is small in every setting and
#: ranks them differently): an evaluator's choice of recipe. Re-run the script when the
#: backdoored model changes; for the current one it chose these settings again.
UNLEARN_SETTINGS = {"stamp_fraction": 0.5, "epochs": 4, "lr": 3e-3, "schedule": None,
                    "batch_size": 128, "seed": 0}


def cleansed_cnn(device: torch.device | str | None = None) -> torch.nn.Module:
    """:func:`backdoored_cnn` after the Neural Cleanse defense: reverse-engineer a trigger for
    every label on the first ``DEFENDER_CONFIG["nc_images"]`` images of :func:`defender_data`
    (:data:`NEURAL_CLEANSE_SETTINGS`), take the label :func:`flagged_labels` flags (the smallest
    norm if none is), and :func:`unlearn` with its reversed trigger on all the defender's data
    (:data:`UNLEARN_SETTINGS`). Cached through ``models.train_or_load``; eval mode."""
    from helpers import models, runtime

    dev = torch.device(device) if device is not None else runtime.device()
    attacked = backdoored_cnn(dev)
    config = {"backdoored": {**models.STANDARD_CNN_CONFIG, **BACKDOORED_CNN_CONFIG},
              "defender": DEFENDER_CONFIG, "neural_cleanse": NEURAL_CLEANSE_SETTINGS,
              "unlearn": UNLEARN_SETTINGS}

    def fit(m: torch.nn.Module) -> None:
        x, y = (t.to(dev) for t in defender_data())
        found = neural_cleanse(attacked, x[:DEFENDER_CONFIG["nc_images"]],
                               **NEURAL_CLEANSE_SETTINGS)
        flagged = flagged_labels(found.l1_norm)
        label = int(found.labels[flagged[0]] if flagged.size else
                    found.labels[np.argmin(found.l1_norm)])
        cleaned = unlearn(attacked, x, y, *found.trigger(label), **UNLEARN_SETTINGS)
        m.load_state_dict(cleaned.state_dict())

    return models.train_or_load("mnist_cnn_cleansed", config, models.MnistCNN().to(dev), fit)


def _penultimate_linear(model: torch.nn.Module) -> torch.nn.Linear:
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    if len(linears) < 2:
        raise ValueError("model must have at least two nn.Linear layers: the penultimate one "
                         "feeds the neurons that pruning removes")
    return linears[-2]


@torch.no_grad()
def activation_gap(model: torch.nn.Module, x_clean: torch.Tensor, mask: torch.Tensor,
                   pattern: torch.Tensor) -> torch.Tensor:
    """Per neuron of the penultimate layer (the output of the second-to-last ``nn.Linear``
    after its ReLU; the 128-unit layer of ``MnistCNN``): mean activation on images stamped with
    the (reversed) trigger minus mean activation on the same clean images (Wang et al. 2019,
    VI-B ranks neurons by it). Shape (units,); the model is unchanged, mode restored."""
    checks.module(model)
    x_clean = checks.images(x_clean, "x_clean")
    mask, pattern = _check_trigger(mask, pattern, x_clean)
    layer = _penultimate_linear(model)
    seen = []
    handle = layer.register_forward_hook(lambda _m, _i, out: seen.append(F.relu(out).mean(0)))
    was_training = model.training
    model.eval()
    try:
        model(stamp(x_clean, mask, pattern))
        model(x_clean)
    finally:
        handle.remove()
        model.train(was_training)
    return seen[0] - seen[1]


def prune_neurons(model: torch.nn.Module, neurons) -> torch.nn.Module:
    """A copy of ``model`` with the given penultimate-layer neurons removed: their rows of the
    penultimate ``nn.Linear`` weight and their biases set to 0, so each outputs ReLU(0) = 0
    whatever the input (Wang et al. 2019, VI-B). ``model`` is not changed."""
    checks.module(model)
    layer = _penultimate_linear(model)
    neurons = checks.array(neurons, "neurons", ndim=1, dtype="int", allow_empty=True, low=0,
                           high=layer.out_features - 1)
    pruned = copy.deepcopy(model)
    target = _penultimate_linear(pruned)
    with torch.no_grad():
        # (mutation testing, equivalent: an index on the CPU (device=None) indexes a weight on
        # any device, so where the index is made does not change the pruned weights)
        index = torch.as_tensor(neurons, device=target.weight.device)
        target.weight[index] = 0.0
        if target.bias is not None:
            target.bias[index] = 0.0
    return pruned


def pruning_sweep(model: torch.nn.Module, x_rank: torch.Tensor, mask: torch.Tensor,
                  pattern: torch.Tensor, shares, x_test: torch.Tensor, y_test: torch.Tensor, *,
                  target: int, trigger=TRIGGER) -> pd.DataFrame:
    """Prune the ``share`` of penultimate neurons with the largest :func:`activation_gap`
    (ranked on the defender's images ``x_rank`` with the reversed trigger) for each share, and
    measure each pruned model on the test set: clean accuracy, the true trigger's ASR and the
    reversed trigger's success (what the defender can see). One row per share."""
    from helpers import models

    x_rank = checks.images(x_rank, "x_rank")
    shares = checks.array(shares, "shares", ndim=1, low=0, high=1)
    gap = activation_gap(model, x_rank, mask, pattern)
    order = torch.argsort(gap, descending=True).cpu().numpy()
    rows = []
    for share in tqdm(shares, desc="pruning sweep", leave=False):
        pruned = prune_neurons(model, order[:round(share * len(order))])
        keep = y_test != target
        reversed_hits = models.predict(pruned, stamp(x_test[keep], mask, pattern)) == target
        rows.append({"share_pruned": float(share),
                     "neurons_pruned": round(share * len(order)),
                     "clean_accuracy": models.evaluate(pruned, (x_test, y_test)),
                     "asr": attack_success_rate(pruned, x_test, y_test, target=target,
                                                trigger=trigger),
                     "reversed_trigger_success": float(reversed_hits.double().mean())})
    return pd.DataFrame(rows)
