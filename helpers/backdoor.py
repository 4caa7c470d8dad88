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

import torch

from helpers import checks

__all__ = [
    "TARGET_LABEL",
    "TRIGGER",
    "attack_success_rate",
    "poison",
    "square_trigger",
    "stamp",
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
    x = checks.images(x, "x")
    y = checks.torch_labels(y, "y", n=x.shape[0])
    rate = checks.fraction(rate, "rate")
    target = checks.integer(target, "target", low=0)
    generator = checks.torch_generator(seed)
    n_poison = round(rate * x.shape[0])
    index = torch.randperm(x.shape[0], generator=generator)[:n_poison].sort().values
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
