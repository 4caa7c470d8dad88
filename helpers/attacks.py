"""Evasion attacks on image classifiers: FGSM, PGD, DeepFool and universal perturbations.

Every attack takes a classifier ``model`` (an ``nn.Module`` mapping images to logits) and images
``x``: a floating-point tensor shaped (N, C, H, W) with values in [0, 1] (MNIST: (N, 1, 28, 28)).
It returns tensors on the device and with the dtype of ``x``.

Conventions shared by all attacks (each one is tested in ``tests/test_attacks.py``):

* Threat model: white box. The attacker knows the weights and can compute
  :math:`\\nabla_x \\mathcal{L}(f(x), y)`; it may change each pixel, subject to a norm budget
  :math:`\\|\\delta\\|_p \\le \\varepsilon` (``norm="linf"`` or ``"l2"``) and to the box
  :math:`x + \\delta \\in [0, 1]^d`.
* The model runs in eval mode during the attack (dropout off, batch norm on running statistics),
  and every submodule's train/eval flag is restored afterwards, also when an error is raised.
* Gradients are taken with respect to the input only (``torch.autograd.grad(..., x)``): the
  parameters are never changed, no ``.grad`` is written on them, and their ``requires_grad`` flags
  are left alone.
* Randomness (PGD's random start, the data order of the universal perturbations) comes from
  one argument ``seed``: an ``int``, a ``torch.Generator``, or ``None`` for torch's global
  generator (seeded by ``runtime.setup``); see :func:`helpers.checks.torch_generator`. The same
  seed gives the same result.
* Arguments are validated with :mod:`helpers.checks` (TypeError for a wrong type, ValueError
  for a wrong value, the message naming the parameter). Long loops take ``progress=True`` for a
  ``tqdm.auto`` progress bar (closed when done).
* ``eps=0`` returns a copy of the input.

References:
    Goodfellow, Shlens, Szegedy. Explaining and Harnessing Adversarial Examples. ICLR 2015.
    Madry, Makelov, Schmidt, Tsipras, Vladu. Towards Deep Learning Models Resistant to
    Adversarial Attacks. ICLR 2018.
    Carlini, Wagner. Towards Evaluating the Robustness of Neural Networks. IEEE S&P 2017.
    Moosavi-Dezfooli, Fawzi, Frossard. DeepFool: a simple and accurate method to fool deep
    neural networks. CVPR 2016.
    Moosavi-Dezfooli, Fawzi, Fawzi, Frossard. Universal adversarial perturbations. CVPR 2017.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from helpers import checks, models

__all__ = [
    "deepfool",
    "fgsm",
    "fooling_rate",
    "label_flow",
    "pgd",
    "project_perturbation",
    "sgd_universal_perturbation",
    "targeted_success_grid",
    "universal_perturbation",
]

NORMS = ("linf", "l2")
#: Images per forward pass when the universal perturbations evaluate their fitting set: on a CPU,
#: chunks of a few hundred images run about twice as fast as one pass over 1,000 (cache-sized
#: activations); the predictions do not depend on it.
_UAP_EVAL_BATCH = 250
LOSSES = ("ce", "margin")


# --------------------------------------------------------------------------------------------
# Input validation (the vocabulary is helpers.checks; these combine it for the attacks)
# --------------------------------------------------------------------------------------------


def _validated(model: object, x: object, y: object = None) -> tuple:
    """``(model, x)`` or ``(model, x, y)`` checked: a module, images in [0, 1] on the model's
    device, and (when given) one integer label per image as int64 on that device."""
    model = checks.module(model)
    x = checks.images(x)
    checks.same_device(model, x)
    if y is None:
        return model, x
    # (mutation testing, equivalent: without the name "y" the check uses its default name, "y"; and
    # device=None or no device keeps the labels on their own device, the CPU in every test (the CUDA
    # test runs only with a GPU), where x is too)
    return model, x, checks.torch_labels(y, "y", n=x.shape[0], device=x.device)


def _labels_below(y: torch.Tensor, num_classes: int, name: str = "y") -> None:
    """ValueError unless every label is a class of a model with ``num_classes`` outputs."""
    if int(y.max()) >= num_classes:
        raise ValueError(f"{name} must hold labels in [0, {num_classes}) (the model has "
                         f"{num_classes} classes), got label {int(y.max())}")


def _batch_size(batch_size: object) -> int | None:
    return None if batch_size is None else checks.integer(batch_size, "batch_size", low=1)


def _rand(shape, generator: torch.Generator | None, like: torch.Tensor, kind: str) -> torch.Tensor:
    """Uniform [0, 1) (``kind="rand"``) or standard normal noise, drawn on the generator's device
    (the CPU for ``None``) so the result does not depend on the device of ``like``."""
    # (mutation testing, equivalent on the CPU, here and below: without the generator's device
    # (gen_device None, or no device argument) the noise is drawn on the default device, the CPU,
    # and without like.device it stays there; every tensor of the tests is on the CPU (the CUDA test
    # runs only with a GPU). Likewise for every device=x.device and .to(device) below)
    # (mutation testing, equivalent on the CPU, here and below: without the generator's device
    # (gen_device None, or no device argument) the noise is drawn on the default device, the CPU,
    # and without like.device it stays there; every tensor of the tests is on the CPU (the CUDA test
    # runs only with a GPU). Likewise for every device=x.device and .to(device) below)
    # (mutation testing, equivalent on the CPU, here and below: without the generator's device
    # (gen_device None, or no device argument) the noise is drawn on the default device, the CPU,
    # and without like.device it stays there; every tensor of the tests is on the CPU (the CUDA test
    # runs only with a GPU). Likewise for every device=x.device and .to(device) below)
    gen_device = generator.device if generator is not None else torch.device("cpu")
    fn = torch.rand if kind == "rand" else torch.randn
    out = fn(shape, generator=generator, device=gen_device)
    return out.to(device=like.device, dtype=like.dtype)


@contextlib.contextmanager
def _attack_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode and grad enabled for the attack; every submodule's flag restored afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.enable_grad():
            yield
    finally:
        for module, training in modes:
            module.training = training


def _bar(total: int, desc: str, progress: bool) -> tqdm:
    """A ``tqdm.auto`` bar that disappears when closed (``leave=False``); silent unless asked."""
    # (mutation testing, equivalent: the name appears only in the error message, and every caller
    # has already checked progress with checks.boolean(progress, "progress"), so this check never
    # fails)
    # (mutation testing, equivalent: the name appears only in the error message, and every caller
    # has already checked progress with checks.boolean(progress, "progress"), so this check never
    # fails)
    return tqdm(total=total, desc=desc, disable=not checks.boolean(progress, "progress"),
                leave=False)


def _chunks(n: int, batch_size: int | None) -> Iterator[slice]:
    step = n if batch_size is None else batch_size
    for start in range(0, n, step):
        yield slice(start, min(start + step, n))


def _shuffled_batches(n: int, batch_size: int, generator: torch.Generator | None,
                      device: torch.device) -> Iterator[torch.Tensor]:
    """Indices of ``range(n)`` in a fresh random order, in chunks of ``batch_size``."""
    # (mutation testing, equivalent on the CPU: .to(None) leaves the CPU index where it is)
    order = torch.randperm(n, generator=generator).to(device)
    for s in _chunks(n, batch_size):
        yield order[s]


# --------------------------------------------------------------------------------------------
# Losses and projections
# --------------------------------------------------------------------------------------------


def _objective(logits: torch.Tensor, y: torch.Tensor, loss: str, targeted: bool) -> torch.Tensor:
    """Per-example objective that the attack *maximises*.

    untargeted ce:      CE(f(x), y)                       (push away from the true label y)
    targeted ce:       -CE(f(x), t)                       (pull toward the target t = y)
    untargeted margin:  max_{j != y} z_j - z_y            (Carlini & Wagner 2017, f_6 without kappa)
    targeted margin:    z_t - max_{j != t} z_j
    """
    if loss == "ce":
        ce = F.cross_entropy(logits, y, reduction="none")
        return -ce if targeted else ce
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    # (mutation testing, equivalent: float("-INF") is -inf too)
    others = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf"))
    z_other = others.max(dim=1).values
    return z_y - z_other if targeted else z_other - z_y


def _success(logits: torch.Tensor, y: torch.Tensor, targeted: bool) -> torch.Tensor:
    pred = logits.argmax(dim=1)
    return pred == y if targeted else pred != y


def _flat_norm(t: torch.Tensor) -> torch.Tensor:
    # (mutation testing, equivalent: norm(p=None) or no p is the Frobenius norm, which over one
    # dimension is the 2-norm)
    # (mutation testing, equivalent: norm(p=None) or no p is the Frobenius norm, which over one
    # dimension is the 2-norm)
    # (mutation testing, equivalent: norm(p=None) or no p is the Frobenius norm, which over one
    # dimension is the 2-norm)
    return t.flatten(1).norm(p=2, dim=1).view(-1, *([1] * (t.ndim - 1)))


def _steepest_ascent(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """Unit steepest-ascent direction for the norm: sign(g) for L-infinity, g / ||g||_2 for L2."""
    return grad.sign() if norm == "linf" else grad / (_flat_norm(grad) + 1e-12)


@torch.no_grad()
def _universal_fooling_rate(model: nn.Module, x: torch.Tensor, v: torch.Tensor,
                            clean: torch.Tensor) -> float:
    """Share of ``x`` whose prediction under ``clip(x + v)`` differs from ``clean``."""
    perturbed = models.predict(model, (x + v).clamp(0.0, 1.0), _UAP_EVAL_BATCH)
    return float((perturbed != clean).double().mean())


def project_perturbation(delta: torch.Tensor, eps: float, norm: str = "linf") -> torch.Tensor:
    """Euclidean projection of each perturbation in the batch onto the eps ball.

    L-infinity:
    :math:`\\Pi(\\delta)_i = \\operatorname{clip}(\\delta_i, -\\varepsilon, \\varepsilon)`.
    L2: :math:`\\Pi(\\delta) = \\delta \\cdot \\min(1, \\varepsilon / \\|\\delta\\|_2)`.

    The norm is taken per example over all of its pixels (dimension 0 is the batch). NaN or
    infinite entries are refused (a clamp would silently keep a NaN).
    """
    if not isinstance(delta, torch.Tensor) or not delta.is_floating_point():
        raise TypeError(f"delta must be a floating-point torch.Tensor, got "
                        f"{getattr(delta, 'dtype', type(delta).__name__)}")
    if delta.ndim < 2:
        raise ValueError(f"delta must have a batch dimension, got shape {tuple(delta.shape)}")
    if not bool(torch.isfinite(delta).all()):
        raise ValueError("delta must hold finite numbers, got NaN or infinite values")
    eps = checks.real(eps, "eps", low=0)
    norm = checks.choice(norm, "norm", NORMS)
    return _project(delta, eps, norm)


def _project(delta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """:func:`project_perturbation` without the argument checks, for the attacks' inner loops."""
    if norm == "linf":
        return delta.clamp(-eps, eps)
    factor = torch.clamp(eps / (_flat_norm(delta) + 1e-12), max=1.0)
    return delta * factor


# --------------------------------------------------------------------------------------------
# FGSM
# --------------------------------------------------------------------------------------------


def fgsm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    targeted: bool = False,
    *,
    loss: str = "ce",
    batch_size: int | None = None,
) -> torch.Tensor:
    """Fast Gradient Sign Method (Goodfellow et al. 2015).

    One step along the sign of the input gradient, the L-infinity steepest-ascent direction of
    the loss's linear approximation
    :math:`J(x + \\delta) \\approx J(x) + \\delta^\\top \\nabla_x J`:

    .. math::
        x_{adv} = \\operatorname{clip}_{[0,1]}\\big(x + \\varepsilon\\,
                  \\operatorname{sign}(\\nabla_x J(\\theta, x, y))\\big)

    Targeted (``targeted=True``, ``y`` = target labels): step *down* the loss of the target,
    :math:`x - \\varepsilon\\,\\operatorname{sign}(\\nabla_x J(\\theta, x, t))`.

    Args:
        model: classifier returning logits.
        x: images (N, C, H, W) in [0, 1].
        y: true labels (untargeted) or target labels (targeted), int tensor (N,).
        eps: L-infinity budget >= 0.
        targeted: attack toward ``y`` instead of away from it.
        loss: ``"ce"`` (cross-entropy) or ``"margin"`` (Carlini-Wagner logit margin).
        batch_size: process the images in chunks of this size (``None``: all at once).

    Returns:
        Adversarial images, same shape, device and dtype as ``x``, with
        :math:`\\|x_{adv} - x\\|_\\infty \\le \\varepsilon` and pixels in [0, 1].
    """
    model, x, y = _validated(model, x, y)
    eps = checks.real(eps, "eps", low=0)
    targeted = checks.boolean(targeted, "targeted")
    loss = checks.choice(loss, "loss", LOSSES)
    batch_size = _batch_size(batch_size)
    # (mutation testing, equivalent: alpha = 1.0 instead of eps for an eps in (0, 1] (the conditions
    # 'and False' or 'eps > 1'): the one sign step x + alpha sign(g) then lands on or beyond the
    # face x + eps of the cube, and the clamp to [max(x - eps, 0), min(x + eps, 1)] puts it exactly
    # on the bound that the step of eps reaches, (x + eps).clamp(max=1); a zero gradient moves no
    # pixel either way. At eps = 0 pgd returns x before using alpha, so 2.0 instead of 1.0 there
    # changes nothing)
    # (mutation testing, equivalent: alpha = 1.0 instead of eps for an eps in (0, 1] (the conditions
    # 'and False' or 'eps > 1'): the one sign step x + alpha sign(g) then lands on or beyond the
    # face x + eps of the cube, and the clamp to [max(x - eps, 0), min(x + eps, 1)] puts it exactly
    # on the bound that the step of eps reaches, (x + eps).clamp(max=1); a zero gradient moves no
    # pixel either way. At eps = 0 pgd returns x before using alpha, so 2.0 instead of 1.0 there
    # changes nothing)
    # (mutation testing, equivalent: alpha = 1.0 instead of eps for an eps in (0, 1] (the conditions
    # 'and False' or 'eps > 1'): the one sign step x + alpha sign(g) then lands on or beyond the
    # face x + eps of the cube, and the clamp to [max(x - eps, 0), min(x + eps, 1)] puts it exactly
    # on the bound that the step of eps reaches, (x + eps).clamp(max=1); a zero gradient moves no
    # pixel either way. At eps = 0 pgd returns x before using alpha, so 2.0 instead of 1.0 there
    # changes nothing)
    return pgd(model, x, y, eps, alpha=eps if eps > 0 else 1.0, steps=1, norm="linf",
               random_start=False, targeted=targeted, loss=loss, batch_size=batch_size)


# --------------------------------------------------------------------------------------------
# PGD
# --------------------------------------------------------------------------------------------


def _random_start(shape, eps: float, norm: str, generator, like: torch.Tensor) -> torch.Tensor:
    """A point drawn uniformly from the eps ball: L-infinity, each coordinate uniform on
    [-eps, eps]; L2, a uniform direction (a normalised Gaussian) times the radius eps U^(1/d), so
    that P(||delta|| <= r) = (r / eps)^d, the volume fraction of the smaller ball."""
    if norm == "linf":
        return (2.0 * _rand(shape, generator, like, "rand") - 1.0) * eps
    # (mutation testing, equivalent: only kind == "rand" selects torch.rand, any other string or
    # None draws from torch.randn, as "randn" does)
    # (mutation testing, equivalent: only kind == "rand" selects torch.rand, any other string or
    # None draws from torch.randn, as "randn" does)
    # (mutation testing, equivalent: only kind == "rand" selects torch.rand, any other string or
    # None draws from torch.randn, as "randn" does)
    direction = _rand(shape, generator, like, "randn")
    direction = direction / (_flat_norm(direction) + 1e-12)
    d = math.prod(shape[1:])
    radius = _rand((shape[0],), generator, like, "rand").pow(1.0 / d)  # P(R <= r) = r^d
    return direction * radius.view(-1, *([1] * (len(shape) - 1))) * eps


def _pgd_run(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    x_start: torch.Tensor,
    eps: float,
    alpha: float,
    steps: int,
    norm: str,
    targeted: bool,
    loss: str,
    lower: torch.Tensor,
    upper: torch.Tensor,
    early_stop: bool,
    bar: tqdm,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``steps`` projected ascent steps from ``x_start``.

    Returns (x_adv, objective, success, success_step): the objective and success of the returned
    points, and the number of steps after which each example was first fooled (``steps + 1``:
    never). With ``early_stop`` an example stops moving once it is fooled.
    """
    n = x.shape[0]
    x_adv = x_start.detach().clone()
    # (mutation testing, equivalent on the CPU, here and below: device=None or no device (see
    # _rand); and dtype=None or no dtype for success_step, filled with the int steps + 1, is int64
    # as well, torch.full's dtype for an integer fill)
    # (mutation testing, equivalent on the CPU, here and below: device=None or no device (see
    # _rand); and dtype=None or no dtype for success_step, filled with the int steps + 1, is int64
    # as well, torch.full's dtype for an integer fill)
    # (mutation testing, equivalent on the CPU, here and below: device=None or no device (see
    # _rand); and dtype=None or no dtype for success_step, filled with the int steps + 1, is int64
    # as well, torch.full's dtype for an integer fill)
    objective = torch.empty(n, device=x.device, dtype=x.dtype)
    success = torch.zeros(n, dtype=torch.bool, device=x.device)
    success_step = torch.full((n,), steps + 1, dtype=torch.long, device=x.device)
    # Without early stopping every example stays active: a slice indexes as a view, so the loop
    # runs no gather/scatter kernels and no host-device synchronisation (which dominate on a GPU).
    # (mutation testing, equivalent: 'or True' indexes with arange(n) also without early_stop, which
    # selects the same rows as slice(None), only through a copy instead of a view; the examples are
    # then never dropped, as without early_stop)
    # (mutation testing, equivalent: 'or True' indexes with arange(n) also without early_stop, which
    # selects the same rows as slice(None), only through a copy instead of a view; the examples are
    # then never dropped, as without early_stop)
    # (mutation testing, equivalent: 'or True' indexes with arange(n) also without early_stop, which
    # selects the same rows as slice(None), only through a copy instead of a view; the examples are
    # then never dropped, as without early_stop)
    active = torch.arange(n, device=x.device) if early_stop else slice(None)
    # (mutation testing, equivalent: range(steps + 2) never runs its last step, the loop breaks at
    # step == steps; and grad enabled at step == steps (step <= steps) only records a graph that is
    # not used: that last pass evaluates, and breaks before any gradient is taken)
    # (mutation testing, equivalent: range(steps + 2) never runs its last step, the loop breaks at
    # step == steps; and grad enabled at step == steps (step <= steps) only records a graph that is
    # not used: that last pass evaluates, and breaks before any gradient is taken)
    # (mutation testing, equivalent: range(steps + 2) never runs its last step, the loop breaks at
    # step == steps; and grad enabled at step == steps (step <= steps) only records a graph that is
    # not used: that last pass evaluates, and breaks before any gradient is taken)
    for step in range(steps + 1):
        xa = x_adv[active].requires_grad_(step < steps)
        with torch.set_grad_enabled(step < steps):
            logits = model(xa)
            if step == 0:
                _labels_below(y, logits.shape[1])
            obj = _objective(logits, y[active], loss, targeted)
        with torch.no_grad():
            succ = _success(logits, y[active], targeted)
            if early_stop or step == steps:  # examples dropped early keep the iterate that fooled
                objective[active] = obj.detach()
                success[active] = succ
            # (mutation testing, equivalent: success_step is steps + 1 (never) or the step at which
            # the example was first fooled, which is steps only after the last pass, when the loop
            # ends, so >= steps selects the same examples)
            # (mutation testing, equivalent: success_step is steps + 1 (never) or the step at which
            # the example was first fooled, which is steps only after the last pass, when the loop
            # ends, so >= steps selects the same examples)
            # (mutation testing, equivalent: success_step is steps + 1 (never) or the step at which
            # the example was first fooled, which is steps only after the last pass, when the loop
            # ends, so >= steps selects the same examples)
            first = succ & (success_step[active] > steps)
            success_step[active] = torch.where(first, step, success_step[active])
        if step == steps:
            break
        bar.update(1)
        (grad,) = torch.autograd.grad(obj.sum(), xa)
        with torch.no_grad():
            if early_stop:
                keep = ~succ
                active, xa, grad = active[keep], xa[keep], grad[keep]
                if active.numel() == 0:
                    break
            if norm == "linf":
                # the exact projection onto the intersection of the cube and the box
                xa = torch.clamp(xa.add(grad.sign(), alpha=alpha), lower[active], upper[active])
            else:
                # (mutation testing, equivalent, here and in the next line: _steepest_ascent and
                # _project take every norm but "linf" as L2, so None or another string than "l2" is
                # L2 too)
                # (mutation testing, equivalent, here and in the next line: _steepest_ascent and
                # _project take every norm but "linf" as L2, so None or another string than "l2" is
                # L2 too)
                # (mutation testing, equivalent, here and in the next line: _steepest_ascent and
                # _project take every norm but "linf" as L2, so None or another string than "l2" is
                # L2 too)
                xa = xa + alpha * _steepest_ascent(grad, "l2")
                delta = _project(xa - x[active], eps, "l2")
                xa = (x[active] + delta).clamp(0.0, 1.0)  # clipping only shrinks |delta|
            x_adv[active] = xa
    return x_adv, objective, success, success_step


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    alpha: float,
    steps: int,
    norm: str = "linf",
    random_start: bool = True,
    restarts: int = 1,
    targeted: bool = False,
    loss: str = "ce",
    *,
    seed: torch.Generator | int | None = None,
    batch_size: int | None = None,
    early_stop: bool = False,
    return_success_step: bool = False,
    progress: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Projected Gradient Descent attack (Madry et al. 2018).

    Projected steepest ascent on the loss inside :math:`S = \\{\\delta : \\|\\delta\\|_p \\le
    \\varepsilon\\}` intersected with the pixel box :math:`[0, 1]^d`:

    .. math::
        x^{t+1} = \\Pi_{x + S}\\big(x^t + \\alpha\\, s(\\nabla_x J(\\theta, x^t, y))\\big),

    with the steepest-ascent direction :math:`s(g) = \\operatorname{sign}(g)` for L-infinity and
    :math:`s(g) = g / \\|g\\|_2` for L2. Projections: L-infinity clips each pixel to
    :math:`[\\max(x_i - \\varepsilon, 0), \\min(x_i + \\varepsilon, 1)]` (the exact projection onto
    the intersection); L2 rescales :math:`\\delta \\leftarrow \\delta \\min(1, \\varepsilon /
    \\|\\delta\\|_2)` and then clips to [0, 1] (which can only shrink the norm).

    ``random_start`` starts from a point drawn uniformly from the eps ball. With ``restarts > 1``
    the attack is repeated from fresh random starts on the examples not yet fooled, and each
    example keeps the restart that succeeds, or, when none does, the one with the highest loss.

    ``loss="margin"`` maximises the logit margin :math:`\\max_{j \\ne y} z_j - z_y` of Carlini &
    Wagner (2017) instead of the cross-entropy: its gradient does not vanish when the softmax
    saturates (e.g. on distilled networks). Targeted attacks (``y`` = target labels) maximise
    :math:`-\\mathrm{CE}(f(x), t)` or :math:`z_t - \\max_{j \\ne t} z_j`.

    Args:
        model: classifier returning logits.
        x: images (N, C, H, W) in [0, 1].
        y: true labels (untargeted) or target labels (targeted), int tensor (N,).
        eps: budget >= 0 in the chosen norm.
        alpha: step size > 0.
        steps: number of steps >= 1.
        norm: ``"linf"`` or ``"l2"``.
        random_start: start from a uniform random point of the eps ball (else from x).
        restarts: number of random restarts >= 1 (> 1 requires ``random_start=True``).
        targeted: attack toward ``y`` instead of away from it.
        loss: ``"ce"`` or ``"margin"``.
        seed: ``int``, ``torch.Generator`` or ``None`` (torch's global generator) for the
            random starts.
        batch_size: process the images in chunks of this size (``None``: all at once); the result
            does not depend on it.
        early_stop: freeze each example at its first iterate that fools the model (and stop
            computing its gradients). The attack then returns the first successful iterate
            instead of the last one: it succeeds on every example the standard attack succeeds
            on at its last step, and is cheaper. Default off (Madry et al.'s last iterate).
        return_success_step: also return, per example, the number of gradient steps after which
            it was first fooled (0: already at the start point; ``steps + 1``: never), for the
            chosen restart. Accuracy after k steps (any iterate) is ``(success_step > k).mean()``.
        progress: show a ``tqdm.auto`` bar over the gradient steps.

    Returns:
        Adversarial images, same shape, device and dtype as ``x``; with ``return_success_step``,
        the tuple ``(x_adv, success_step)`` with ``success_step`` int64 (N,).
    """
    model, x, y = _validated(model, x, y)
    eps = checks.real(eps, "eps", low=0)
    alpha = checks.real(alpha, "alpha", low=0, low_open=True)
    steps = checks.integer(steps, "steps", low=1)
    norm = checks.choice(norm, "norm", NORMS)
    random_start = checks.boolean(random_start, "random_start")
    restarts = checks.integer(restarts, "restarts", low=1)
    targeted = checks.boolean(targeted, "targeted")
    loss = checks.choice(loss, "loss", LOSSES)
    batch_size = _batch_size(batch_size)
    early_stop = checks.boolean(early_stop, "early_stop")
    return_success_step = checks.boolean(return_success_step, "return_success_step")
    progress = checks.boolean(progress, "progress")
    generator = checks.torch_generator(seed)
    if restarts > 1 and not random_start:
        raise ValueError("restarts > 1 needs random_start=True (restarts from x would all be "
                         "identical)")

    x = x.detach()
    with _attack_mode(model):
        if eps == 0.0:
            with torch.no_grad():
                logits = torch.cat([model(x[s]) for s in _chunks(x.shape[0], batch_size)])
            _labels_below(y, logits.shape[1])
            if not return_success_step:
                return x.clone()
            fooled = _success(logits, y, targeted)
            # (mutation testing, equivalent: torch.where of two Python ints is int64 already, so
            # .to(None) returns the same tensor)
            # (mutation testing, equivalent: torch.where of two Python ints is int64 already, so
            # .to(None) returns the same tensor)
            # (mutation testing, equivalent: torch.where of two Python ints is int64 already, so
            # .to(None) returns the same tensor)
            return x.clone(), torch.where(fooled, 0, steps + 1).to(torch.long)
        lower = (x - eps).clamp(min=0.0)
        upper = (x + eps).clamp(max=1.0)
        best = x.clone()
        # (mutation testing, equivalent on the CPU, here and below: device=None or no device (see
        # _rand); float("-INF") is -inf too; and best_step, filled with the int steps + 1, is int64
        # also with dtype=None or no dtype)
        # (mutation testing, equivalent on the CPU, here and below: device=None or no device (see
        # _rand); float("-INF") is -inf too; and best_step, filled with the int steps + 1, is int64
        # also with dtype=None or no dtype)
        # (mutation testing, equivalent on the CPU, here and below: device=None or no device (see
        # _rand); float("-INF") is -inf too; and best_step, filled with the int steps + 1, is int64
        # also with dtype=None or no dtype)
        best_obj = torch.full((x.shape[0],), float("-inf"), device=x.device, dtype=x.dtype)
        best_success = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        best_step = torch.full((x.shape[0],), steps + 1, dtype=torch.long, device=x.device)
        n_chunks = len(range(0, x.shape[0], batch_size or x.shape[0]))
        bar = _bar(restarts * n_chunks * steps, "PGD steps", progress)
        for _ in range(restarts):
            if random_start:
                noise = _random_start(x.shape, eps, norm, generator, x)
                start = (x + noise).clamp(0.0, 1.0)
            else:
                start = x
            todo = (~best_success).nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            for s in _chunks(todo.numel(), batch_size):
                idx = todo[s]
                x_adv, obj, succ, step = _pgd_run(model, x[idx], y[idx], start[idx], eps, alpha,
                                                  steps, norm, targeted, loss, lower[idx],
                                                  upper[idx], early_stop, bar)
                better = ((succ & ~best_success[idx])
                          | ((succ == best_success[idx]) & (obj > best_obj[idx])))
                best[idx[better]] = x_adv[better]
                best_obj[idx[better]] = obj[better]
                best_success[idx[better]] = succ[better]
                best_step[idx[better]] = step[better]
        bar.close()
    return (best, best_step) if return_success_step else best


# --------------------------------------------------------------------------------------------
# DeepFool
# --------------------------------------------------------------------------------------------


def _deepfool_run(
    model: nn.Module, x: torch.Tensor, num_classes: int, overshoot: float, max_iter: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched DeepFool on ``x`` (model already in attack mode); returns (x_adv, iterations)."""
    n = x.shape[0]
    with torch.no_grad():
        logits0 = model(x)
    if num_classes > logits0.shape[1]:
        raise ValueError(f"num_classes must be <= the model's {logits0.shape[1]} classes, got "
                         f"{num_classes}")
    # (mutation testing, equivalent: argsort's default dimension is the last one, dimension 1 of the
    # (N, K) logits)
    # (mutation testing, equivalent: argsort's default dimension is the last one, dimension 1 of the
    # (N, K) logits)
    candidates = logits0.argsort(dim=1, descending=True)[:, :num_classes]  # column 0 = k0
    k0 = candidates[:, 0]
    r_tot = torch.zeros_like(x)
    x_adv = x.clone()
    # (mutation testing, equivalent on the CPU, here and below: device=None or no device, see _rand;
    # without dtype the counts are float32, exact for these small integers, which deepfool stores
    # into its int64 tensor and universal_perturbation reads as int(iters.sum()); and a float active
    # mask selects the same rows with nonzero() and is cleared by = False to 0.0)
    # (mutation testing, equivalent on the CPU, here and below: device=None or no device, see _rand;
    # without dtype the counts are float32, exact for these small integers, which deepfool stores
    # into its int64 tensor and universal_perturbation reads as int(iters.sum()); and a float active
    # mask selects the same rows with nonzero() and is cleared by = False to 0.0)
    iterations = torch.zeros(n, dtype=torch.long, device=x.device)
    active = torch.ones(n, dtype=torch.bool, device=x.device)
    # (mutation testing, equivalent, here and in the next lines: range(max_iter + 2) never runs its
    # last iteration, the loop breaks at it == max_iter; and the loop never starts without an active
    # example, so return instead of break there is unreachable: x holds at least one image, and the
    # loop is left as soon as no example is still predicted k0)
    # (mutation testing, equivalent, here and in the next lines: range(max_iter + 2) never runs its
    # last iteration, the loop breaks at it == max_iter; and the loop never starts without an active
    # example, so return instead of break there is unreachable: x holds at least one image, and the
    # loop is left as soon as no example is still predicted k0)
    for it in range(max_iter + 1):
        idx = active.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        xa = x_adv[idx].detach().requires_grad_(True)
        logits = model(xa)
        still = logits.argmax(dim=1) == k0[idx]
        # (mutation testing, equivalent: = True keeps the examples whose label has changed active;
        # only the examples still predicted k0 move, so their label stays changed and they are only
        # evaluated again, at no other cost than the computation)
        # (mutation testing, equivalent: = True keeps the examples whose label has changed active;
        # only the examples still predicted k0 move, so their label stays changed and they are only
        # evaluated again, at no other cost than the computation)
        active[idx[~still]] = False
        if it == max_iter or not bool(still.any()):
            break
        f = logits.gather(1, candidates[idx])  # (m, K) logits of the candidate classes
        grads = [
            # (mutation testing, equivalent: retaining the graph after the last gradient as well
            # only keeps its memory longer)
            # (mutation testing, equivalent: retaining the graph after the last gradient as well
            # only keeps its memory longer)
            torch.autograd.grad(f[:, k].sum(), xa, retain_graph=k < num_classes - 1)[0]
            for k in range(num_classes)
        ]
        with torch.no_grad():
            g = torch.stack(grads, dim=1)  # (m, K, C, H, W)
            w = g[:, 1:] - g[:, :1]  # w_k = grad f_k - grad f_k0
            fd = f[:, 1:].detach() - f[:, :1].detach()  # f_k - f_k0 (< 0 while k0 is predicted)
            w_norm = w.flatten(2).norm(dim=2) + 1e-8
            dist = fd.abs() / w_norm  # distance to each linearised boundary
            best = dist.argmin(dim=1)
            rows = torch.arange(idx.numel(), device=x.device)
            w_l = w[rows, best]
            length = (dist[rows, best] + 1e-4) / w_norm[rows, best]
            step = length.view(-1, *([1] * (x.ndim - 1))) * w_l
            step = step[still]
            moving = idx[still]
            r_tot[moving] += step
            x_adv[moving] = (x[moving] + (1.0 + overshoot) * r_tot[moving]).clamp(0.0, 1.0)
            iterations[moving] += 1
    return x_adv, iterations


def deepfool(
    model: nn.Module,
    x: torch.Tensor,
    num_classes: int = 10,
    overshoot: float = 0.02,
    max_iter: int = 50,
    *,
    batch_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepFool (Moosavi-Dezfooli et al. 2016): a small L2 perturbation that changes the label.

    Linearise the classifier around the current point :math:`x_i`; the distance to the boundary
    between the predicted class :math:`k_0` and class :math:`k` is
    :math:`|f'_k| / \\|w'_k\\|_2` with :math:`f'_k = f_k(x_i) - f_{k_0}(x_i)` and
    :math:`w'_k = \\nabla f_k(x_i) - \\nabla f_{k_0}(x_i)`. Step onto the closest one,

    .. math::
        \\hat l = \\arg\\min_{k \\ne k_0} \\frac{|f'_k|}{\\|w'_k\\|_2}, \\qquad
        r_i = \\frac{|f'_{\\hat l}|}{\\|w'_{\\hat l}\\|_2^2}\\, w'_{\\hat l},

    accumulate :math:`r = \\sum_i r_i` and repeat from :math:`x_{i+1} = \\operatorname{clip}_{[0,1]}
    (x + (1 + \\text{overshoot})\\, r)` until the label changes or ``max_iter`` steps are done.
    As in the authors' code, only the ``num_classes`` classes with the highest clean logits are
    candidates and :math:`10^{-4}` is added to each step length. Batched: each example stops on
    its own.

    Args:
        model: classifier returning logits.
        x: images (N, C, H, W) in [0, 1].
        num_classes: number of candidate classes (>= 2, at most the model's number of classes).
        overshoot: factor >= 0 by which the accumulated step is enlarged to cross the boundary.
        max_iter: maximal number of linearisation steps >= 1.
        batch_size: process the images in chunks of this size (``None``: all at once).

    Returns:
        ``(delta, iterations)``: perturbations with ``x + delta`` in [0, 1] (the label of
        ``x + delta`` differs from that of ``x`` unless ``max_iter`` was reached), same shape,
        device and dtype as ``x``; and the number of steps each example used (int64, (N,)).
    """
    model, x = _validated(model, x)
    num_classes = checks.integer(num_classes, "num_classes", low=2)
    overshoot = checks.real(overshoot, "overshoot", low=0)
    max_iter = checks.integer(max_iter, "max_iter", low=1)
    batch_size = _batch_size(batch_size)
    x = x.detach()
    x_adv = torch.empty_like(x)
    # (mutation testing, equivalent on the CPU: device=None or no device, see _rand)
    iterations = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    with _attack_mode(model):
        for s in _chunks(x.shape[0], batch_size):
            x_adv[s], iterations[s] = _deepfool_run(model, x[s], num_classes, overshoot, max_iter)
    return x_adv - x, iterations


# --------------------------------------------------------------------------------------------
# Universal adversarial perturbations
# --------------------------------------------------------------------------------------------


def _universal_delta(delta: object, x: torch.Tensor) -> torch.Tensor:
    """``delta`` checked to be one perturbation (1, C, H, W) or one per image of ``x``."""
    if not isinstance(delta, torch.Tensor) or not delta.is_floating_point():
        raise TypeError(f"delta must be a floating-point torch.Tensor, got "
                        f"{getattr(delta, 'dtype', type(delta).__name__)}")
    if delta.ndim != 4 or delta.shape[1:] != x.shape[1:] or delta.shape[0] not in (1, x.shape[0]):
        raise ValueError(
            f"delta must have shape (1, {', '.join(map(str, x.shape[1:]))}) or match x "
            f"{tuple(x.shape)}, got {tuple(delta.shape)}"
        )
    if not bool(torch.isfinite(delta).all()):
        raise ValueError("delta must hold finite numbers, got NaN or infinite values")
    # (mutation testing, equivalent on the CPU: device=None or no device, see _rand)
    return delta.to(device=x.device, dtype=x.dtype)


def _predictions(model: nn.Module, x: torch.Tensor, batch_size: int | None) -> torch.Tensor:
    # (mutation testing, equivalent: max(x.shape[0], 2) differs only for one image, where a chunk of
    # up to 2 images is that one image; x holds at least one image (checks.images))
    # (mutation testing, equivalent: max(x.shape[0], 2) differs only for one image, where a chunk of
    # up to 2 images is that one image; x holds at least one image (checks.images))
    # (mutation testing, equivalent: max(x.shape[0], 2) differs only for one image, where a chunk of
    # up to 2 images is that one image; x holds at least one image (checks.images))
    return models.predict(model, x, batch_size or max(x.shape[0], 1))


def fooling_rate(
    model: nn.Module, x: torch.Tensor, delta: torch.Tensor, *, batch_size: int | None = 1000
) -> float:
    """Share of images whose predicted label changes when ``delta`` is added.

    .. math::
        \\text{FR} = \\frac{1}{N} \\sum_{i=1}^N \\mathbb{1}\\big[\\hat k(
        \\operatorname{clip}_{[0,1]}(x_i + \\delta)) \\ne \\hat k(x_i)\\big]

    (Moosavi-Dezfooli et al. 2017). Compares with the model's own clean prediction, not the true
    label. ``delta`` is one perturbation (1, C, H, W) applied to every image, or one per image.
    """
    model, x = _validated(model, x)
    delta = _universal_delta(delta, x)
    batch_size = _batch_size(batch_size)
    with _attack_mode(model):  # restores every submodule's mode (models.predict: the top one)
        clean = _predictions(model, x, batch_size)
        perturbed = _predictions(model, (x + delta).clamp(0.0, 1.0), batch_size)
    return float((clean != perturbed).double().mean())


def _universal_setup(model, x, eps, norm, batch_size, seed, return_history, progress):
    """The argument checks and starting point shared by the two universal perturbations:
    returns ``(model, x, eps, norm, batch_size, generator, v = 0, history = [])``."""
    model, x = _validated(model, x)
    eps = checks.real(eps, "eps", low=0)
    norm = checks.choice(norm, "norm", NORMS)
    batch_size = checks.integer(batch_size, "batch_size", low=1)
    checks.boolean(return_history, "return_history")
    checks.boolean(progress, "progress")
    generator = checks.torch_generator(seed)
    # (mutation testing, equivalent on the CPU: device=None or no device, see _rand)
    v = torch.zeros((1, *x.shape[1:]), device=x.device, dtype=x.dtype)
    return model, x.detach(), eps, norm, batch_size, generator, v, []


def _history_entry(model, x, v, clean, step: int, gradients: int) -> dict:
    return {"step": step, "fooling_rate": _universal_fooling_rate(model, x, v, clean),
            "image_gradients": gradients}


def universal_perturbation(
    model: nn.Module,
    x: torch.Tensor,
    eps: float,
    norm: str = "linf",
    max_passes: int = 5,
    target_fooling_rate: float = 0.8,
    *,
    overshoot: float = 0.02,
    deepfool_max_iter: int = 10,
    num_classes: int = 10,
    batch_size: int = 64,
    seed: torch.Generator | int | None = None,
    return_history: bool = False,
    progress: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, list[dict]]:
    """Universal adversarial perturbation (Moosavi-Dezfooli et al. 2017, Algorithm 1).

    One image-agnostic perturbation :math:`v` with :math:`\\|v\\|_p \\le \\varepsilon` that changes
    the label of most images drawn from the data distribution. Algorithm 1 of the paper, exactly:

    .. code-block:: text

        v <- 0
        while fooling_rate(X, v) < target_fooling_rate and passes < max_passes:
            for x_i in X (shuffled):
                if k(x_i + v) == k(x_i):                      # not fooled yet
                    dv <- DeepFool(x_i + v)                   # minimal step that fools x_i + v
                    v  <- P_{p, eps}(v + dv)                  # project onto the eps ball

    The images are visited one at a time; each is tested at the *current* :math:`v`, which
    already contains the steps of every image before it. ``batch_size`` only sets how many of the
    upcoming images are tested in one forward pass (they are tested again after each update of
    :math:`v`), so the result does not depend on it.

    Args:
        model: classifier returning logits.
        x: the images to fit on (N, C, H, W) in [0, 1] (e.g. training images).
        eps: budget >= 0 of ``v`` in the chosen norm.
        norm: ``"linf"`` or ``"l2"``.
        max_passes: the pass budget over ``x`` (>= 1).
        target_fooling_rate: stop after the first pass whose fooling rate on ``x`` reaches this
            value, in (0, 1] (the paper's :math:`1 - \\delta`).
        overshoot, deepfool_max_iter, num_classes: passed to DeepFool.
        batch_size: how many upcoming images are tested per forward pass (>= 1).
        seed: ``int``, ``torch.Generator`` or ``None`` for the order of the images.
        return_history: also return one record per pass: ``{"step": pass, "fooling_rate": on x,
            "image_gradients": cumulative number of input gradients of one image computed}``
            (DeepFool computes ``num_classes`` of them per iteration), for comparing compute.
        progress: show a ``tqdm.auto`` bar over the images visited.

    Returns:
        ``delta`` of shape (1, C, H, W) on the device and with the dtype of ``x`` (and the
        history when ``return_history``). Apply it as ``(x + delta).clamp(0, 1)``.
    """
    model, x, eps, norm, batch_size, generator, v, history = _universal_setup(
        model, x, eps, norm, batch_size, seed, return_history, progress)
    max_passes = checks.integer(max_passes, "max_passes", low=1)
    target_fooling_rate = checks.fraction(target_fooling_rate, "target_fooling_rate",
                                          open_low=True)
    overshoot = checks.real(overshoot, "overshoot", low=0)
    deepfool_max_iter = checks.integer(deepfool_max_iter, "deepfool_max_iter", low=1)
    num_classes = checks.integer(num_classes, "num_classes", low=2)
    if eps == 0.0:
        return (v, history) if return_history else v
    gradients = 0
    with _attack_mode(model):
        clean = models.predict(model, x, _UAP_EVAL_BATCH)
        bar = _bar(max_passes * x.shape[0], "DeepFool-UAP images", progress)
        for p in range(1, max_passes + 1):
            # (mutation testing, equivalent on the CPU: the device None for the order, see
            # _shuffled_batches)
            # (mutation testing, equivalent on the CPU: the device None for the order, see
            # _shuffled_batches)
            # (mutation testing, equivalent on the CPU: the device None for the order, see
            # _shuffled_batches)
            for block in _shuffled_batches(x.shape[0], batch_size, generator, x.device):
                while block.numel():
                    with torch.no_grad():
                        fooled = model((x[block] + v).clamp(0.0, 1.0)).argmax(1) != clean[block]
                    first = int(fooled.logical_not().long().argmax()) if not fooled.all() else None
                    done = block.numel() if first is None else first + 1
                    bar.update(done)
                    if first is None:
                        break
                    i, block = block[first:first + 1], block[first + 1:]
                    xv = (x[i] + v).clamp(0.0, 1.0)
                    x_df, iters = _deepfool_run(model, xv, num_classes, overshoot,
                                                deepfool_max_iter)
                    gradients += int(iters.sum()) * num_classes
                    v = _project(v + (x_df - xv), eps, norm)
            history.append(_history_entry(model, x, v, clean, p, gradients))
            if history[-1]["fooling_rate"] >= target_fooling_rate:
                break
        bar.close()
    return (v, history) if return_history else v


def sgd_universal_perturbation(
    model: nn.Module,
    x: torch.Tensor,
    eps: float,
    norm: str = "linf",
    epochs: int = 20,
    *,
    step_size: float = 0.01,
    batch_size: int = 100,
    loss_clip: float = 5.0,
    target: int | None = None,
    seed: torch.Generator | int | None = None,
    return_history: bool = False,
    progress: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, list[dict]]:
    """Universal perturbation by stochastic gradient ascent (Shafahi et al. 2020, Algorithm 1).

    Instead of accumulating per-image DeepFool steps (:func:`universal_perturbation`), optimise
    the universal perturbation :math:`v` directly on the average *clipped* cross-entropy of the
    perturbed images against the model's own clean predictions :math:`k(x)`:

    .. math::
        \\max_{\\|v\\|_p \\le \\varepsilon} \\; \\frac{1}{|B|} \\sum_{x \\in B}
        \\min\\big(\\mathrm{CE}(f(\\mathrm{clip}_{[0,1]}(x + v)), k(x)),\\ \\beta\\big)

    over shuffled mini-batches :math:`B`, with a projected steepest-ascent step per mini-batch:
    :math:`v \\leftarrow \\Pi_{\\varepsilon}(v + \\tau\\, s(g))`, :math:`s` the sign (L-infinity)
    or the L2-normalised gradient (L2), as in :func:`pgd`. The clip at :math:`\\beta` stops images
    that are already fooled from dominating the gradient. Two differences from DeepFool-based UAPs
    matter on MNIST: the loss is taken *through* the clip to the pixel box [0, 1] (most MNIST
    pixels are 0, so a negative perturbation there does nothing), and the objective is a smooth
    surrogate of what is measured (the share of images whose label changes) rather than a sum of
    minimal per-image steps.

    *Targeted* (``target=t``): pull every image toward one class instead, maximising
    :math:`\\frac{1}{|B|}\\sum_{x \\in B} -\\mathrm{CE}(f(\\mathrm{clip}_{[0,1]}(x + v)), t)`
    (no clip: the images far from :math:`t` are the ones that need the gradient). Every image
    that reaches :math:`t` is fooled unless it was predicted :math:`t` already, so a well-chosen
    target class can fool more images than the untargeted objective, whose images drift to
    several labels (the universal "dominant labels" of Moosavi-Dezfooli et al. 2017).

    Args:
        model: classifier returning logits.
        x: the images to fit on (N, C, H, W) in [0, 1] (e.g. training images).
        eps: budget >= 0 of ``v`` in the chosen norm.
        norm: ``"linf"`` or ``"l2"``.
        epochs: passes over ``x`` (>= 1).
        step_size: ascent step :math:`\\tau` > 0 per mini-batch, in the units of ``norm`` (the
            default suits L-infinity budgets of about 0.1 to 0.3; for L2 take about eps / 10).
        batch_size: mini-batch size (>= 1).
        loss_clip: :math:`\\beta` > 0, the per-image cap on the cross-entropy (untargeted).
        target: ``None`` (untargeted) or the class every image is pulled toward.
        seed: ``int``, ``torch.Generator`` or ``None`` for the order of the images.
        return_history: also return one record per epoch, as :func:`universal_perturbation`
            does (``image_gradients`` grows by ``len(x)`` per epoch).
        progress: show a ``tqdm.auto`` bar over the mini-batches.

    Returns:
        ``delta`` of shape (1, C, H, W) on the device and with the dtype of ``x`` (and the
        history when ``return_history``). Apply it as ``(x + delta).clamp(0, 1)``.
    """
    model, x, eps, norm, batch_size, generator, v, history = _universal_setup(
        model, x, eps, norm, batch_size, seed, return_history, progress)
    epochs = checks.integer(epochs, "epochs", low=1)
    step_size = checks.real(step_size, "step_size", low=0, low_open=True)
    loss_clip = checks.real(loss_clip, "loss_clip", low=0, low_open=True)
    if target is not None:
        target = checks.integer(target, "target", low=0)
    if eps == 0.0:
        return (v, history) if return_history else v
    with _attack_mode(model):
        clean = models.predict(model, x, _UAP_EVAL_BATCH)
        pull = None if target is None else torch.full_like(clean, target)
        bar = _bar(epochs * len(range(0, x.shape[0], batch_size)), "SGD-UAP batches", progress)
        for epoch in range(1, epochs + 1):
            # (mutation testing, equivalent on the CPU: the device None for the order, see
            # _shuffled_batches)
            # (mutation testing, equivalent on the CPU: the device None for the order, see
            # _shuffled_batches)
            # (mutation testing, equivalent on the CPU: the device None for the order, see
            # _shuffled_batches)
            for idx in _shuffled_batches(x.shape[0], batch_size, generator, x.device):
                v.requires_grad_(True)
                logits = model((x[idx] + v).clamp(0.0, 1.0))
                if pull is None:
                    loss = F.cross_entropy(logits, clean[idx], reduction="none")
                    loss = loss.clamp(max=loss_clip)
                else:
                    # (mutation testing, equivalent: every entry of pull is target, so pull[:2] has
                    # the same maximum)
                    # (mutation testing, equivalent: every entry of pull is target, so pull[:2] has
                    # the same maximum)
                    # (mutation testing, equivalent: every entry of pull is target, so pull[:2] has
                    # the same maximum)
                    _labels_below(pull[:1], logits.shape[1], "target")
                    # (mutation testing, equivalent: the targeted loss is used only through
                    # loss.mean(), and the default reduction of cross_entropy is that mean (no clip
                    # here needs the per-image losses): the gradient is each image's gradient
                    # divided by the batch size either way)
                    # (mutation testing, equivalent: the targeted loss is used only through
                    # loss.mean(), and the default reduction of cross_entropy is that mean (no clip
                    # here needs the per-image losses): the gradient is each image's gradient
                    # divided by the batch size either way)
                    # (mutation testing, equivalent: the targeted loss is used only through
                    # loss.mean(), and the default reduction of cross_entropy is that mean (no clip
                    # here needs the per-image losses): the gradient is each image's gradient
                    # divided by the batch size either way)
                    loss = -F.cross_entropy(logits, pull[idx], reduction="none")
                (grad,) = torch.autograd.grad(loss.mean(), v)
                with torch.no_grad():
                    v = _project(v.detach() + step_size * _steepest_ascent(grad, norm), eps, norm)
                bar.update(1)
            if return_history:
                history.append(_history_entry(model, x, v, clean, epoch, epoch * x.shape[0]))
        bar.close()
    return (v, history) if return_history else v


# --------------------------------------------------------------------------------------------
# Experiment helpers used by the notebooks
# --------------------------------------------------------------------------------------------


def targeted_success_grid(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    alpha: float,
    steps: int,
    *,
    num_classes: int = 10,
    per_class: int = 10,
    norm: str = "linf",
    seed: torch.Generator | int | None = None,
    batch_size: int | None = 1000,
    early_stop: bool = False,
    progress: bool = False,
) -> torch.Tensor:
    """Success rate of targeted PGD for every (source, target) pair of classes.

    For each source class :math:`s`, the first ``per_class`` images of ``x`` with true label
    :math:`s` are attacked toward every other class :math:`t`;
    ``grid[s, t]`` is the share classified as :math:`t` afterwards (``pgd(..., targeted=True)``;
    ``early_stop``, ``seed`` and ``progress`` are passed on). The diagonal is NaN.

    Returns:
        float64 tensor (num_classes, num_classes) on the CPU.
    """
    model, x, y = _validated(model, x, y)
    num_classes = checks.integer(num_classes, "num_classes", low=2)
    per_class = checks.integer(per_class, "per_class", low=1)
    _labels_below(y, num_classes)
    picks = []
    for s in range(num_classes):
        found = (y == s).nonzero().squeeze(1)[:per_class]
        if found.numel() < per_class:
            raise ValueError(f"per_class must be at most the number of images of each class; "
                             f"x has {found.numel()} of class {s}, per_class={per_class}")
        picks.append(found)
    src_idx = torch.cat(picks)  # (num_classes * per_class,)
    src = y[src_idx]
    # (mutation testing, equivalent on the CPU: device=None or no device, see _rand)
    offsets = torch.arange(1, num_classes, device=x.device)
    # (mutation testing, equivalent: src - offsets also gives every other class once per image, and
    # the hits are stored by target index; only the order of the pairs in the batch, and so which
    # random start of the seed each pair gets, differs: the same seed still gives the same grid, and
    # no pair's start is specified)
    # (mutation testing, equivalent: src - offsets also gives every other class once per image, and
    # the hits are stored by target index; only the order of the pairs in the batch, and so which
    # random start of the seed each pair gets, differs: the same seed still gives the same grid, and
    # no pair's start is specified)
    # (mutation testing, equivalent: src - offsets also gives every other class once per image, and
    # the hits are stored by target index; only the order of the pairs in the batch, and so which
    # random start of the seed each pair gets, differs: the same seed still gives the same grid, and
    # no pair's start is specified)
    targets = (src[:, None] + offsets[None, :]) % num_classes  # every other class, (M, K-1)
    xs = x[src_idx].repeat_interleave(num_classes - 1, dim=0)
    ts = targets.reshape(-1)
    x_adv = pgd(model, xs, ts, eps, alpha, steps, norm=norm, targeted=True,
                seed=seed, batch_size=batch_size, early_stop=early_stop, progress=progress)
    with _attack_mode(model):
        hit = (models.predict(model, x_adv) == ts).double().cpu()
    grid = torch.zeros(num_classes, num_classes, dtype=torch.float64)
    counts = torch.zeros(num_classes, num_classes, dtype=torch.float64)
    s_rep = src.repeat_interleave(num_classes - 1).cpu()
    grid.index_put_((s_rep, ts.cpu()), hit, accumulate=True)
    counts.index_put_((s_rep, ts.cpu()), torch.ones_like(hit), accumulate=True)
    grid = grid / counts
    # (mutation testing, equivalent: float("NAN") is nan too)
    grid.fill_diagonal_(float("nan"))
    return grid


def label_flow(model: nn.Module, x: torch.Tensor, delta: torch.Tensor,
               num_classes: int = 10) -> torch.Tensor:
    """Counts of (clean prediction, prediction on ``clip(x + delta)``) pairs.

    ``flow[a, b]`` is the number of images predicted ``a`` without and ``b`` with the
    perturbation: the off-diagonal mass is what the fooling rate counts, and its column sums show
    which labels a universal perturbation pushes images to. int64 (num_classes, num_classes), CPU.
    """
    model, x = _validated(model, x)
    delta = _universal_delta(delta, x)
    num_classes = checks.integer(num_classes, "num_classes", low=2)
    with _attack_mode(model):
        clean = models.predict(model, x).cpu()
        perturbed = models.predict(model, (x + delta).clamp(0.0, 1.0)).cpu()
    if int(max(clean.max(), perturbed.max())) >= num_classes:
        raise ValueError(f"num_classes={num_classes} is smaller than the model's number of classes")
    flow = torch.zeros(num_classes, num_classes, dtype=torch.long)
    flow.index_put_((clean, perturbed), torch.ones_like(clean), accumulate=True)
    return flow


# --------------------------------------------------------------------------------------------
# Adaptive attacks for evaluating defenses (HW3): Carlini-Wagner L2, BPDA, EOT, worst case
# --------------------------------------------------------------------------------------------


def _adaptive_inputs(model: object, x: object, y: object) -> tuple:
    """(model, x, y) checked with the helpers.checks vocabulary; y as int64 on x's device."""
    model = checks.module(model)
    x = checks.images(x)
    checks.same_device(model, x)
    # (mutation testing, equivalent: without the name "y" the check uses its default name, "y"; and
    # on the CPU device=None keeps the labels on the CPU, see _rand)
    # (mutation testing, equivalent: without the name "y" the check uses its default name, "y"; and
    # on the CPU device=None keeps the labels on the CPU, see _rand)
    # (mutation testing, equivalent: without the name "y" the check uses its default name, "y"; and
    # on the CPU device=None keeps the labels on the CPU, see _rand)
    return model, x, checks.torch_labels(y, "y", n=x.shape[0], device=x.device)


@torch.no_grad()
def _argmax(model: nn.Module, x: torch.Tensor, batch_size: int | None) -> torch.Tensor:
    return torch.cat([model(x[s]).argmax(dim=1) for s in _chunks(x.shape[0], batch_size)])


def _cw_run(model: nn.Module, x: torch.Tensor, y: torch.Tensor, kappa: float, c0: float,
            binary_steps: int, steps: int, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Carlini-Wagner L2 on one chunk (model already in attack mode)."""
    n = x.shape[0]
    # 0.999 rather than 1 - 1e-6: tanh saturates, and a pixel at exactly 0 or 1 (most MNIST
    # pixels) would need ~10^6 times larger steps to move; the start then differs from x by at
    # most 5e-4 per pixel, and distances are always measured from x itself.
    w0 = torch.atanh((2.0 * x - 1.0) * 0.999)
    # (mutation testing, equivalent on the CPU, here and below: device=None or no device, see _rand;
    # without dtype=x.dtype lo, hi and best_l2 start as float32 zeros or inf, exact in any dtype,
    # and torch.where/maximum/minimum promote them to x's dtype at the first update (best_l2 at the
    # first step, lo and hi after the first round, before c reads them); float("INF") is inf too)
    # (mutation testing, equivalent on the CPU, here and below: device=None or no device, see _rand;
    # without dtype=x.dtype lo, hi and best_l2 start as float32 zeros or inf, exact in any dtype,
    # and torch.where/maximum/minimum promote them to x's dtype at the first update (best_l2 at the
    # first step, lo and hi after the first round, before c reads them); float("INF") is inf too)
    # (mutation testing, equivalent on the CPU, here and below: device=None or no device, see _rand;
    # without dtype=x.dtype lo, hi and best_l2 start as float32 zeros or inf, exact in any dtype,
    # and torch.where/maximum/minimum promote them to x's dtype at the first update (best_l2 at the
    # first step, lo and hi after the first round, before c reads them); float("INF") is inf too)
    lo = torch.zeros(n, device=x.device, dtype=x.dtype)
    hi = torch.full((n,), float("inf"), device=x.device, dtype=x.dtype)
    c = torch.full((n,), c0, device=x.device, dtype=x.dtype)
    best = x.clone()
    best_l2 = torch.full((n,), float("inf"), device=x.device, dtype=x.dtype)
    for _ in range(binary_steps):
        w = w0.clone().requires_grad_(True)
        opt = torch.optim.Adam([w], lr=lr)
        found = torch.zeros(n, dtype=torch.bool, device=x.device)
        for _ in range(steps):
            xa = (torch.tanh(w) + 1.0) / 2.0
            logits = model(xa)
            # (mutation testing, equivalent: _objective takes every loss but "ce" as the margin, so
            # None or another string is the margin too; and targeted=None is falsy, as False)
            # (mutation testing, equivalent: _objective takes every loss but "ce" as the margin, so
            # None or another string is the margin too; and targeted=None is falsy, as False)
            # (mutation testing, equivalent: _objective takes every loss but "ce" as the margin, so
            # None or another string is the margin too; and targeted=None is falsy, as False)
            margin = -_objective(logits, y, "margin", False)  # z_y - max_{j != y} z_j
            l2 = (xa - x).flatten(1).norm(dim=1)
            with torch.no_grad():
                ok = (margin <= -kappa) & (logits.argmax(1) != y)
                # (mutation testing, equivalent: l2 <= best_l2 replaces the kept success only by
                # another success at exactly the same distance, and the result promises the smallest
                # distance found, which is then the same; the returned distances are identical)
                # (mutation testing, equivalent: l2 <= best_l2 replaces the kept success only by
                # another success at exactly the same distance, and the result promises the smallest
                # distance found, which is then the same; the returned distances are identical)
                # (mutation testing, equivalent: l2 <= best_l2 replaces the kept success only by
                # another success at exactly the same distance, and the result promises the smallest
                # distance found, which is then the same; the returned distances are identical)
                better = ok & (l2 < best_l2)
                best_l2 = torch.where(better, l2, best_l2)
                best[better] = xa[better].detach()
                found |= ok
            loss = l2.pow(2) + c * torch.clamp(margin + kappa, min=0.0)
            (w.grad,) = torch.autograd.grad(loss.sum(), w)
            opt.step()
        with torch.no_grad():
            hi = torch.where(found, torch.minimum(hi, c), hi)
            lo = torch.where(found, lo, torch.maximum(lo, c))
            c = torch.where(torch.isinf(hi), c * 10.0, (lo + hi) / 2.0)
    return best, best_l2


def carlini_wagner_l2(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    kappa: float = 0.0,
    c: float = 1.0,
    binary_steps: int = 6,
    steps: int = 100,
    lr: float = 0.1,
    batch_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Carlini-Wagner L2 attack (Carlini, Wagner 2017, "Towards Evaluating the Robustness of
    Neural Networks", IEEE S&P), untargeted.

    Change of variables :math:`x' = \\tfrac12(\\tanh w + 1)` keeps pixels in [0, 1] without
    clipping; Adam minimises over :math:`w`

    .. math::
        \\|x' - x\\|_2^2 + c \\cdot \\max\\big(z_y(x') - \\max_{j \\ne y} z_j(x'),\\ -\\kappa\\big)

    (the logit-margin objective :math:`f_6`, confidence :math:`\\kappa`), and a per-example
    binary search over :math:`c` (start ``c``; x10 while no success, then bisect) keeps the
    smallest successful perturbation. Working on logits, not softmax probabilities, is what
    defeats defensive distillation.

    Args:
        model: classifier returning logits.
        x: images (N, C, H, W) in [0, 1].
        y: true labels, int tensor (N,).
        kappa: confidence >= 0: success needs :math:`\\max_{j \\ne y} z_j - z_y \\ge \\kappa`.
        c: initial trade-off constant > 0.
        binary_steps: rounds of the binary search over c (>= 1).
        steps: Adam iterations per round (>= 1).
        lr: Adam learning rate > 0 (on w).
        batch_size: chunk size (``None``: all at once).

    Returns:
        ``(x_adv, l2)``: adversarial images (the input itself where no success was found) and
        their L2 distances to ``x`` (``inf`` where the attack failed), both on ``x``'s device.
    """
    model, x, y = _adaptive_inputs(model, x, y)
    kappa = checks.real(kappa, "kappa", low=0.0)
    c = checks.real(c, "c", low=0.0, low_open=True)
    binary_steps = checks.integer(binary_steps, "binary_steps", low=1)
    steps = checks.integer(steps, "steps", low=1)
    lr = checks.real(lr, "lr", low=0.0, low_open=True)
    batch_size = None if batch_size is None else checks.integer(batch_size, "batch_size", low=1)
    x = x.detach()
    outs, dists = [], []
    with _attack_mode(model):
        for s in _chunks(x.shape[0], batch_size):
            with torch.no_grad():
                classes = model(x[s][:1]).shape[1]
            if int(y[s].max()) >= classes:
                raise ValueError(f"y must hold labels in [0, {classes}), got {int(y[s].max())}")
            xa, l2 = _cw_run(model, x[s], y[s], kappa, c, binary_steps, steps, lr)
            outs.append(xa)
            dists.append(l2)
    return torch.cat(outs), torch.cat(dists)


class BPDA(nn.Module):
    """Backward Pass Differentiable Approximation (Athalye, Carlini, Wagner 2018, "Obfuscated
    Gradients Give a False Sense of Security", ICML), with the identity as the approximation.

    Forward: :math:`f(g(x))` for a preprocessing :math:`g` that may be non-differentiable
    (rounding, median filters) or have useless gradients. Backward: :math:`\\nabla_x f(g(x))`
    is replaced by :math:`\\nabla_v f(v)|_{v = g(x)}`, i.e. :math:`g` is treated as the
    identity, implemented as :math:`v = x + \\operatorname{stopgrad}(g(x) - x)`. Attack the
    wrapped module with :func:`pgd`; with :math:`g` = identity it equals plain PGD.
    """

    def __init__(self, model: nn.Module, preprocess):
        super().__init__()
        self.model = checks.module(model)
        if not callable(preprocess):
            raise TypeError("preprocess must be callable as preprocess(x) -> x")
        self.preprocess = preprocess

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            g = self.preprocess(x)
        return self.model(x + (g - x).detach())


class EOT(nn.Module):
    """Expectation over Transformation (Athalye, Engstrom, Ilyas, Kwok 2018, "Synthesizing
    Robust Adversarial Examples", ICML; Athalye et al. 2018 for randomized defenses).

    Forward: the log of the Monte Carlo average of the softmax over ``samples`` random
    transformations :math:`t_i \\sim T` (for randomized smoothing: Gaussian noise, as in
    Salman et al. 2019's SmoothAdv attack),

    .. math::
        \\tilde z(x) = \\log \\frac{1}{m} \\sum_{i=1}^m \\operatorname{softmax}(f(t_i(x))),

    so that :func:`pgd` on this module ascends the gradient of the *expected* prediction of the
    randomized classifier. ``transform(x, generator)`` draws one transformation of the batch;
    ``seed`` (None, int or torch.Generator) drives all draws.
    """

    def __init__(self, model: nn.Module, transform, samples: int = 8, seed=None):
        super().__init__()
        self.model = checks.module(model)
        if not callable(transform):
            raise TypeError("transform must be callable as transform(x, generator) -> x")
        self.transform = transform
        self.samples = checks.integer(samples, "samples", low=1)
        self.generator = checks.torch_generator(seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([F.softmax(self.model(self.transform(x, self.generator)), dim=1)
                             for _ in range(self.samples)]).mean(0)
        return probs.clamp_min(1e-30).log()


def gaussian_noise(sigma: float):
    """The transformation :math:`t(x) = x + \\sigma \\varepsilon`, :math:`\\varepsilon \\sim
    N(0, I)` (no clipping, as in Cohen et al. 2019), as ``transform(x, generator)`` for
    :class:`EOT`."""
    sigma = checks.real(sigma, "sigma", low=0.0, low_open=True)

    def transform(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        # (mutation testing, equivalent: only kind == "rand" selects torch.rand, any other string or
        # None draws from torch.randn, as "randn" does)
        # (mutation testing, equivalent: only kind == "rand" selects torch.rand, any other string or
        # None draws from torch.randn, as "randn" does)
        # (mutation testing, equivalent: only kind == "rand" selects torch.rand, any other string or
        # None draws from torch.randn, as "randn" does)
        return x + sigma * _rand(x.shape, generator, x, "randn")

    return transform


def worst_case(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attacks: dict,
    *,
    eps: float | None = None,
    norm: str = "linf",
    batch_size: int = 1000,
) -> dict[str, torch.Tensor]:
    """Per-example worst case over a suite of attacks (Carlini et al. 2019, "On Evaluating
    Adversarial Robustness", sec. 4.8).

    Each attack is a callable ``attack(model, x, y) -> x_adv`` (it may ignore ``model``, e.g. a
    transfer attack from another model). Example :math:`i` counts as robust only if the model
    classifies it correctly clean *and* under every attack:

    .. math:: \\mathrm{robust}_i = [f(x_i) = y_i] \\wedge \\bigwedge_a [f(a(x_i)) = y_i].

    With ``eps`` given, every attack's output is checked to lie in the threat model
    (:math:`\\|x_{adv} - x\\|_p \\le \\varepsilon` up to 1e-5, pixels in [0, 1]); an attack that
    leaves it raises ValueError instead of reporting an unfair number.

    Returns:
        ``{"clean": ..., <attack name>: ..., "worst_case": ...}``: boolean tensors (N,) on the CPU,
        True where the example is classified correctly.
    """
    model, x, y = _adaptive_inputs(model, x, y)
    if not isinstance(attacks, dict) or not attacks:
        raise TypeError("attacks must be a non-empty dict {name: attack(model, x, y) -> x_adv}")
    for name, attack in attacks.items():
        if not isinstance(name, str) or not callable(attack):
            raise TypeError(f"attacks must map names (str) to callables, got {name!r}")
        if name in ("clean", "worst_case"):
            raise ValueError(f"attack name {name!r} is reserved")
    if eps is not None:
        eps = checks.real(eps, "eps", low=0.0)
    norm = checks.choice(norm, "norm", NORMS)
    batch_size = checks.integer(batch_size, "batch_size", low=1)
    with _attack_mode(model):
        correct = {"clean": (_argmax(model, x, batch_size) == y).cpu()}
    for name, attack in attacks.items():
        x_adv = attack(model, x, y)
        if not isinstance(x_adv, torch.Tensor) or x_adv.shape != x.shape:
            raise ValueError(f"attack {name!r} must return a tensor shaped like x")
        if eps is not None:
            d = (x_adv - x).flatten(1)
            # (mutation testing, equivalent: amax(None) reduces over every entry, and only
            # size.max() is read, the same largest entry)
            # (mutation testing, equivalent: amax(None) reduces over every entry, and only
            # size.max() is read, the same largest entry)
            # (mutation testing, equivalent: amax(None) reduces over every entry, and only
            # size.max() is read, the same largest entry)
            size = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
            if float(size.max()) > eps + 1e-5 or float(x_adv.min()) < 0 or float(x_adv.max()) > 1:
                raise ValueError(f"attack {name!r} left the threat model ({norm} eps {eps:g})")
        with _attack_mode(model):
            correct[name] = (_argmax(model, x_adv.detach(), batch_size) == y).cpu()
    worst = torch.stack(list(correct.values())).all(0)
    correct["worst_case"] = worst
    return correct


__all__ += ["BPDA", "EOT", "carlini_wagner_l2", "gaussian_noise", "worst_case"]
