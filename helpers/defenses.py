"""Defenses against adversarial examples (HW3) and the defended MNIST models.

* Adversarial training: :func:`adversarial_perturbation` is the ``perturb`` hook of
  :func:`helpers.models.train` for FGSM (Goodfellow et al. 2015), FGSM with a random start
  (Wong, Rice, Kolter 2020, "Fast is better than free") and PGD (Madry et al. 2018), with an
  optional linear ramp of eps; :func:`train_with_probe` records a robustness probe per epoch.
* Defensive distillation (Papernot et al. 2016): :func:`soft_labels`,
  :func:`temperature_cross_entropy`, :func:`distilled_cnn`.
* Input transformations: feature squeezing (Xu, Evans, Qi 2018) as a preprocessing defense
  (:class:`BitDepth`, :class:`MedianSmoothing`) and as a detector (:func:`squeezing_score`).
* Randomized smoothing (Cohen, Rosenfeld, Kolter 2019): :func:`smoothed_counts`,
  :func:`smoothed_predict`, :func:`certify`, :func:`certified_accuracy`.
* Evaluation: :func:`evaluation_suite` (FGSM, PGD with cross-entropy and margin losses,
  optional transfer, per-example worst case) and :func:`accuracy_vs_eps`.

Every trained model is a module function returning the cached eval-mode model
(``fgsm_rs_cnn()``, ``pgd_trained_cnn()``...), trained once through
:func:`helpers.models.train_or_load`; its training record (per-epoch probe, seconds) is kept
beside the weights and read with :func:`training_record`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn
from tqdm.auto import tqdm

from helpers import attacks, checks, data, models, runtime

__all__ = [
    "BitDepth",
    "MedianSmoothing",
    "SqueezeEnsemble",
    "accuracy_vs_eps",
    "adversarial_perturbation",
    "certified_accuracy",
    "certify",
    "distill_config",
    "distilled_cnn",
    "evaluation_suite",
    "fgsm_cnn",
    "fgsm_rs_cnn",
    "input_gradient_zero_share",
    "noise_config",
    "noise_trained_cnn",
    "pgd_trained_cnn",
    "smoothed_counts",
    "smoothed_predict",
    "soft_labels",
    "squeezing_score",
    "teacher_cnn",
    "temperature_cross_entropy",
    "train_with_probe",
    "training_record",
]

EPS = 0.3
KINDS = ("fgsm", "fgsm_rs", "pgd")
#: Cache version of the defended models: bump it when their training code changes (an explicit
#: version rather than the automatic code fingerprint, so that refactoring the attacks or the
#: training loop without changing what they compute does not retrain every defended model).
CODE_VERSION = "hw3-v2"  # v2: the per-epoch probe keeps each example's first fooling iterate


# --------------------------------------------------------------------------------------------
# Adversarial training
# --------------------------------------------------------------------------------------------


# (mutation testing, equivalent: a default ramp_batches of 1 scales eps by min(1, calls / 1),
# which is 1 from the first call on, the same as no ramp)
def adversarial_perturbation(kind: str, eps: float, *, alpha: float | None = None,
                             steps: int = 1, ramp_batches: int = 0,
                             seed: int | torch.Generator | None = None) -> Callable:
    """The ``perturb(model, x, y)`` hook of :func:`helpers.models.train` for adversarial
    training: the model is trained on :math:`\\min_\\theta E\\,\\max_{\\|\\delta\\|_\\infty \\le
    \\varepsilon} \\mathrm{CE}(f_\\theta(x + \\delta), y)` with the inner max approximated by

    * ``"fgsm"``: :math:`x + \\varepsilon\\,\\mathrm{sign}(\\nabla_x \\mathrm{CE})` (Goodfellow
      et al. 2015), no random start;
    * ``"fgsm_rs"``: :math:`\\delta_0 \\sim U[-\\varepsilon, \\varepsilon]^d`, then one step
      :math:`\\Pi(\\delta_0 + \\alpha\\,\\mathrm{sign}(\\nabla))` with :math:`\\alpha = 1.25
      \\varepsilon` by default (Wong, Rice, Kolter 2020);
    * ``"pgd"``: ``steps`` projected steps of size ``alpha`` (default :math:`2.5\\varepsilon /`
      ``steps``) from a random start (Madry et al. 2018).

    All three call :func:`helpers.attacks.pgd`. ``ramp_batches > 0`` grows eps (and alpha with
    it) linearly from 0 to ``eps`` over the first ``ramp_batches`` calls, the warm-up that
    small MNIST networks need to leave the constant-prediction plateau at eps 0.3.
    """
    kind = checks.choice(kind, "kind", KINDS)
    eps = checks.real(eps, "eps", low=0.0, low_open=True)
    steps = checks.integer(steps, "steps", low=1)
    ramp_batches = checks.integer(ramp_batches, "ramp_batches", low=0)
    if kind != "pgd" and steps != 1:
        raise ValueError(f"steps must be 1 for kind {kind!r}, got {steps}")
    default = {"fgsm": eps, "fgsm_rs": 1.25 * eps, "pgd": 2.5 * eps / steps}[kind]
    alpha = default if alpha is None else checks.real(alpha, "alpha", low=0.0, low_open=True)
    generator = checks.torch_generator(seed)
    calls = {"n": 0}

    def perturb(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        scale = 1.0 if ramp_batches == 0 else min(1.0, calls["n"] / ramp_batches)
        return attacks.pgd(model, x, y, eps * scale, alpha * scale, steps,
                           random_start=kind != "fgsm", seed=generator)

    return perturb


def train_with_probe(model: nn.Module, loader, epochs: int, *, probe: Callable | None = None,
                     perturb: Callable | None = None, desc: str | None = None,
                     **train_kwargs) -> dict:
    """:func:`helpers.models.train` (one run, so a one-cycle schedule spans all epochs) that also
    evaluates ``probe(model)`` after every epoch, e.g. PGD-20 accuracy on 500 test images.

    The probe runs inside the ``perturb`` hook at the first batch of each new epoch (the model
    has then finished the previous one) and once after training. Returns ``{"history": [...],
    "probe": [one value per epoch], "seconds": training time without the probes}``.
    """
    epochs = checks.integer(epochs, "epochs", low=1)
    if probe is not None and not callable(probe):
        raise TypeError("probe must be None or a callable probe(model) -> number")
    batches, values, probe_seconds = len(loader), [], [0.0]
    calls = {"n": 0}

    def run_probe(m: nn.Module) -> None:
        start = time.perf_counter()
        values.append(float(probe(m)))
        probe_seconds[0] += time.perf_counter() - start

    def hook(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if probe is not None and calls["n"] > 0 and calls["n"] % batches == 0:
            run_probe(m)
        calls["n"] += 1
        return x if perturb is None else perturb(m, x, y)

    start = time.perf_counter()
    history = models.train(model, loader, epochs, perturb=hook, desc=desc, **train_kwargs)
    if probe is not None:
        run_probe(model)
    seconds = time.perf_counter() - start - probe_seconds[0]
    return {"history": history, "probe": values, "seconds": seconds}


def _record_path(name: str, config: dict):
    return runtime.cache_dir() / "models" / f"{models.config_key(name, config)}.record.json"


def training_record(name: str, config: dict) -> dict:
    """The record (per-epoch probe, training seconds) written when the model ``name`` with
    ``config`` was trained; KeyError naming the cache file when it is missing."""
    path = _record_path(name, config)
    if not path.exists():
        raise KeyError(f"no training record {path.name}: delete the cached model "
                       f"{models.config_key(name, config)}.pt to retrain it")
    return json.loads(path.read_text())


def _cached_cnn(name: str, config: dict, fit: Callable[[nn.Module], dict],
                device=None) -> nn.Module:
    """Build the config's architecture with the config's seed, train it with ``fit`` (which
    returns the record to keep) on a cache miss, or load it."""
    dev = torch.device(device) if device is not None else runtime.device()
    torch.manual_seed(config["seed"])
    model = models.MnistCNN().to(dev)

    def train_fn(m: nn.Module) -> None:
        record = fit(m)
        path = _record_path(name, config)
        # (mutation testing, equivalent: parents=False or left out, since the parent of models/ is
        # runtime.cache_dir(), which creates itself, and train_or_load made models/ before calling
        # train_fn)
        path.parent.mkdir(parents=True, exist_ok=True)
        # (mutation testing, equivalent: another indent or none only changes the layout of the file,
        # which training_record reads back with json.loads)
        runtime.atomic_write(path, json.dumps(record, indent=1) + "\n")

    return models.train_or_load(name, config, model, train_fn, version=CODE_VERSION)


def _pgd20_probe(n: int = 500, eps: float = EPS) -> Callable[[nn.Module], float]:
    """PGD-20 (alpha eps/8, cross-entropy, one random start, each example's first fooling
    iterate kept: ``early_stop``, as strong as the last iterate and cheaper) accuracy on the
    first n test images: the per-epoch curve of adversarial training."""
    x, y = data.mnist_tensors("test", limit=n)

    def probe(model: nn.Module) -> float:
        dev = next(model.parameters()).device
        xd, yd = x.to(dev), y.to(dev)
        x_adv = attacks.pgd(model, xd, yd, eps, eps / 8, 20, seed=0, batch_size=500,
                            early_stop=True)
        return models.evaluate(model, (x_adv, yd))

    return probe


def _adversarial_cnn(name: str, config: dict, device=None) -> nn.Module:
    def fit(m: nn.Module) -> dict:
        x, y = data.mnist_tensors("train", limit=config["train_images"])
        loader = data.tensor_loader(x, y, batch_size=config["batch_size"], seed=config["seed"])
        perturb = adversarial_perturbation(
            config["kind"], config["eps"], alpha=config["alpha"], steps=config["steps"],
            ramp_batches=int(config["ramp_epochs"] * len(loader)), seed=config["seed"])
        return train_with_probe(m, loader, config["epochs"], probe=_pgd20_probe(),
                                perturb=perturb, lr=config["lr"], optimizer="adam",
                                schedule="onecycle", desc=f"training {name}")

    return _cached_cnn(name, config, fit, device)


FGSM_RS_CONFIG = {"arch": "MnistCNN", "kind": "fgsm_rs", "eps": EPS, "alpha": 1.25 * EPS,
                  "steps": 1, "epochs": 2, "ramp_epochs": 0.5, "train_images": 20000,
                  "batch_size": 128, "lr": 3e-3, "seed": 0}
FGSM_CONFIG = {**FGSM_RS_CONFIG, "kind": "fgsm", "alpha": EPS, "train_images": 10000}
#: PGD-AT costs 3 forward/backward passes per image, FGSM-RS 2: the image counts give both about
#: the same training cost, so that their curves compare methods at equal compute.
PGD_AT_CONFIG = {**FGSM_RS_CONFIG, "kind": "pgd", "alpha": 0.15, "steps": 2,
                 "train_images": 13000}


def fgsm_rs_cnn(device=None) -> nn.Module:
    """MnistCNN trained with FGSM + random start at L-inf eps 0.3 (:data:`FGSM_RS_CONFIG`)."""
    return _adversarial_cnn("fgsm_rs_cnn", FGSM_RS_CONFIG, device)


def fgsm_cnn(device=None) -> nn.Module:
    """MnistCNN trained with plain FGSM (no random start), the catastrophic-overfitting contrast
    (:data:`FGSM_CONFIG`)."""
    return _adversarial_cnn("fgsm_cnn", FGSM_CONFIG, device)


def pgd_trained_cnn(device=None) -> nn.Module:
    """MnistCNN trained with PGD at L-inf eps 0.3 (:data:`PGD_AT_CONFIG`: few PGD steps in
    training to fit the CPU budget; evaluation uses many more)."""
    return _adversarial_cnn("pgd_trained_cnn", PGD_AT_CONFIG, device)


# --------------------------------------------------------------------------------------------
# Defensive distillation
# --------------------------------------------------------------------------------------------


def soft_labels(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Soft labels :math:`\\operatorname{softmax}(z / T)_k = e^{z_k/T} / \\sum_j e^{z_j/T}`
    (Hinton et al. 2015; Papernot et al. 2016): each row sums to one."""
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        raise TypeError("logits must be a floating-point torch.Tensor")
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (N, K), got {tuple(logits.shape)}")
    temperature = checks.real(temperature, "temperature", low=0.0, low_open=True)
    return F.softmax(logits / temperature, dim=1)


def temperature_cross_entropy(temperature: float) -> Callable:
    """The training loss of distillation at temperature T: :math:`\\mathrm{CE}(\\operatorname
    {softmax}(z / T), t)` for hard labels or soft labels :math:`t` (Papernot et al. 2016)."""
    temperature = checks.real(temperature, "temperature", low=0.0, low_open=True)

    def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits / temperature, target)

    return loss_fn


DISTILL_CONFIG = {"arch": "MnistCNN", "epochs": 1, "train_images": 10000, "batch_size": 128,
                  "lr": 3e-3, "seed": 0}


def distill_config(temperature: float, role: str) -> dict:
    """The training config of the distillation ``role`` ("teacher" or "student") at T."""
    checks.choice(role, "role", ("teacher", "student"))
    temperature = checks.real(temperature, "temperature", low=0.0, low_open=True)
    return {**DISTILL_CONFIG, "temperature": temperature, "role": role}


def _fit_at_temperature(targets: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                        config: dict) -> Callable[[nn.Module], dict]:
    def fit(m: nn.Module) -> dict:
        x, y = data.mnist_tensors("train", limit=config["train_images"])
        loader = data.tensor_loader(x, targets(x, y), batch_size=config["batch_size"],
                                    seed=config["seed"])
        return train_with_probe(m, loader, config["epochs"], lr=config["lr"],
                                optimizer="adam", schedule="onecycle",
                                loss_fn=temperature_cross_entropy(config["temperature"]),
                                desc=f"{config['role']} T={config['temperature']:g}")
    return fit


def teacher_cnn(temperature: float = 100.0, device=None) -> nn.Module:
    """The distillation teacher: MnistCNN trained on hard labels with softmax at temperature
    T (:data:`DISTILL_CONFIG`)."""
    config = distill_config(temperature, "teacher")
    return _cached_cnn("distill_teacher", config, _fit_at_temperature(lambda x, y: y, config),
                       device)


def distilled_cnn(temperature: float = 100.0, device=None) -> nn.Module:
    """Defensive distillation (Papernot, McDaniel, Wu, Jha, Swami 2016): a student trained at
    temperature T on the teacher's soft labels :math:`\\operatorname{softmax}(z^{teacher}/T)`,
    deployed at T = 1 (its raw logits). Its logits come out about T times larger than a normal
    network's, so the softmax saturates and cross-entropy gradients vanish in float32."""
    config = distill_config(temperature, "student")
    teacher = teacher_cnn(temperature, device)

    def targets(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        dev = next(teacher.parameters()).device
        with torch.no_grad():
            logits = torch.cat([teacher(x[i:i + 1000].to(dev)).cpu()
                                for i in range(0, len(x), 1000)])
        return soft_labels(logits, config["temperature"])

    return _cached_cnn("distilled_cnn", config, _fit_at_temperature(targets, config), device)


def input_gradient_zero_share(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Share of images whose input gradient :math:`\\nabla_x \\mathrm{CE}(f(x), y)` is exactly
    zero in the tensor's dtype (every pixel): where the softmax saturates to one-hot, gradient
    attacks on the cross-entropy (FGSM, PGD-CE) cannot move (Carlini, Wagner 2016)."""
    model = checks.module(model)
    x = checks.images(x)
    # (mutation testing, equivalent: leaving out the name "y" gives the check's default, "y")
    y = checks.torch_labels(y, "y", n=x.shape[0], device=x.device)
    was = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.enable_grad():
            xg = x.detach().clone().requires_grad_(True)
            loss = F.cross_entropy(model(xg), y, reduction="sum")
            (grad,) = torch.autograd.grad(loss, xg)
    finally:
        for m, training in was:
            m.training = training
    return float((grad.flatten(1) == 0).all(1).double().mean())


# --------------------------------------------------------------------------------------------
# Feature squeezing
# --------------------------------------------------------------------------------------------


class BitDepth(nn.Module):
    """Bit-depth reduction (Xu, Evans, Qi 2018): :math:`\\mathrm{round}(x (2^b - 1)) /
    (2^b - 1)`; ``bits=1`` binarises MNIST at 0.5. Its gradient is zero almost everywhere."""

    def __init__(self, bits: int = 1):
        super().__init__()
        self.levels = 2 ** checks.integer(bits, "bits", low=1, high=16) - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x * self.levels) / self.levels


class MedianSmoothing(nn.Module):
    """Median filter over ``size`` x ``size`` windows (Xu et al. 2018 use 2x2 on MNIST),
    padding by reflection at the bottom/right so that the output keeps the input's shape."""

    def __init__(self, size: int = 2):
        super().__init__()
        self.size = checks.integer(size, "size", low=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.size
        lo, hi = (k - 1) // 2, k // 2
        # (mutation testing, equivalent: padding when k == 1 too (k >= 1, or always) pads by
        # (0, 0, 0, 0), a copy of x with the same values in every dtype, and the median's gradient
        # flows through that pad unchanged)
        padded = F.pad(x, (lo, hi, lo, hi), mode="reflect") if k > 1 else x
        windows = padded.unfold(2, k, 1).unfold(3, k, 1)
        return windows.reshape(*windows.shape[:4], k * k).median(dim=-1).values


def squeezing_score(model: nn.Module, x: torch.Tensor, squeezers, batch_size: int = 1000,
                    ) -> torch.Tensor:
    """Feature-squeezing detector score (Xu, Evans, Qi 2018):

    .. math:: s(x) = \\max_i \\| \\operatorname{softmax}(f(x)) - \\operatorname{softmax}(f(
              \\mathrm{sq}_i(x))) \\|_1,

    flagged as adversarial when above a threshold set on clean images. Returns float (N,) CPU.
    """
    model = checks.module(model)
    x = checks.images(x)
    squeezers = list(squeezers)
    if not squeezers or not all(callable(s) for s in squeezers):
        raise TypeError("squeezers must be a non-empty list of callables sq(x) -> x")
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb = x[i:i + batch_size]
            p = F.softmax(model(xb), 1)
            out.append(torch.stack([(p - F.softmax(model(s(xb)), 1)).abs().sum(1)
                                    for s in squeezers]).amax(0).cpu())
    return torch.cat(out)


class SqueezeEnsemble(nn.Module):
    """The adaptive attack's target against the squeezing detector (He, Wei, Chen, Carlini,
    Song 2017, "Adversarial Example Defenses: Ensembles of Weak Defenses are not Strong"):

    .. math:: \\tilde z(x) = \\frac{1}{1 + m}\\Big(\\log\\operatorname{softmax} f(x) +
              \\sum_{i=1}^m \\log\\operatorname{softmax} f(\\mathrm{sq}_i(x))\\Big),

    each squeezer crossed by BPDA. An example that fools this average is pushed to the same
    wrong class on the raw and on every squeezed input, so the detector's L1 score stays small.
    """

    def __init__(self, model: nn.Module, squeezers):
        super().__init__()
        self.model = checks.module(model)
        squeezers = list(squeezers)
        if not squeezers or not all(callable(s) for s in squeezers):
            raise TypeError("squeezers must be a non-empty list of callables sq(x) -> x")
        self.views = nn.ModuleList([attacks.BPDA(model, s) for s in squeezers])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [F.log_softmax(self.model(x), 1)] + [F.log_softmax(v(x), 1) for v in self.views]
        return torch.stack(outs).mean(0)


# --------------------------------------------------------------------------------------------
# Randomized smoothing
# --------------------------------------------------------------------------------------------


def smoothed_counts(model: nn.Module, x: torch.Tensor, sigma: float, n: int, *,
                    num_classes: int = 10, batch_size: int = 1000,
                    seed: int | torch.Generator | None = None) -> torch.Tensor:
    """Monte Carlo class counts of the base classifier under Gaussian noise (Cohen et al. 2019):
    :math:`c_k(x) = \\#\\{i \\le n : f(x + \\sigma \\varepsilon_i) = k\\}`,
    :math:`\\varepsilon_i \\sim N(0, I)`. Returns int64 (N, num_classes) on the CPU."""
    model = checks.module(model)
    x = checks.images(x)
    sigma = checks.real(sigma, "sigma", low=0.0, low_open=True)
    n = checks.integer(n, "n", low=1)
    num_classes = checks.integer(num_classes, "num_classes", low=2)
    batch_size = checks.integer(batch_size, "batch_size", low=1)
    generator = checks.torch_generator(seed)
    dev = x.device
    counts = torch.zeros(len(x), num_classes, dtype=torch.long)
    was = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            for j in range(len(x)):
                left = n
                while left > 0:
                    m = min(left, batch_size)
                    noise = torch.randn((m, *x.shape[1:]), generator=generator)
                    pred = model(x[j:j + 1] + sigma * noise.to(dev, x.dtype)).argmax(1).cpu()
                    counts[j] += torch.bincount(pred, minlength=num_classes)[:num_classes]
                    left -= m
    finally:
        for mod, training in was:
            mod.training = training
    return counts


def _binomial_test(k: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Two-sided exact binomial p-value of k successes in n trials against p = 1/2."""
    # (mutation testing, equivalent: p = 0.5 left out is binomtest's default p; b > 1 for b > 0
    # differs only for b == 1, where a is 0 or 1 and the two-sided p-value is exactly 1.0 too)
    return np.array([stats.binomtest(int(a), int(b), 0.5).pvalue if b > 0 else 1.0
                     for a, b in zip(k, n, strict=True)])


def smoothed_predict(model: nn.Module, x: torch.Tensor, sigma: float, n: int, alpha: float, *,
                     batch_size: int = 1000, seed=None) -> torch.Tensor:
    """PREDICT of Cohen, Rosenfeld, Kolter 2019: draw n noisy copies, take the two most frequent
    classes A, B; return A if the two-sided binomial test of :math:`n_A` vs :math:`n_A + n_B`
    at p = 1/2 has p-value <= alpha, else abstain (-1). Returns int64 (N,) on the CPU; wrong
    with probability at most alpha."""
    n = checks.integer(n, "n", low=1)
    alpha = checks.fraction(alpha, "alpha", open_low=True, open_high=True)
    counts = smoothed_counts(model, x, sigma, n, batch_size=batch_size, seed=seed)
    # (mutation testing, equivalent: dim left out is dim=-1, the same axis of the 2-D counts;
    # topk(3) has the same first two values, and its top index differs from topk(2)'s only in
    # a tie n_A == n_B, where the p-value is exactly 1 > alpha, so the prediction is -1 anyway)
    top2 = counts.topk(2, dim=1)
    na, nb = top2.values[:, 0].numpy(), top2.values[:, 1].numpy()
    p = _binomial_test(na, na + nb)
    pred = top2.indices[:, 0].clone()
    pred[torch.from_numpy(p > alpha)] = -1
    return pred


def certify(model: nn.Module, x: torch.Tensor, sigma: float, n0: int, n: int, alpha: float, *,
            batch_size: int = 1000, seed=None) -> tuple[torch.Tensor, torch.Tensor]:
    """CERTIFY of Cohen, Rosenfeld, Kolter 2019 (Theorem 1 and Algorithm "CERTIFY").

    Selection: :math:`\\hat c_A` = the most frequent class in ``n0`` noisy samples. Estimation:
    :math:`n_A` = its count in ``n`` fresh samples; :math:`\\underline{p_A}` = the one-sided
    Clopper-Pearson lower confidence bound at level :math:`1 - \\alpha`
    (:math:`\\mathrm{Beta}(\\alpha; n_A, n - n_A + 1)`). If :math:`\\underline{p_A} > 1/2`
    return :math:`\\hat c_A` with L2 radius :math:`R = \\sigma\\,\\Phi^{-1}(\\underline{p_A})`,
    else abstain (label -1, radius 0). With probability at least :math:`1 - \\alpha` the smoothed
    classifier predicts :math:`\\hat c_A` everywhere within R.

    Returns:
        ``(labels, radii)``: int64 and float64 tensors (N,) on the CPU.
    """
    n0 = checks.integer(n0, "n0", low=1)
    n = checks.integer(n, "n", low=1)
    if n0 > n:
        raise ValueError(f"n0 must be <= n (a few selection samples, many estimation samples), "
                         f"got n0={n0} > n={n}")
    alpha = checks.fraction(alpha, "alpha", open_low=True, open_high=True)
    generator = checks.torch_generator(seed)
    if generator is None:
        # (mutation testing, equivalent: randint(2**31, ...) is randint(0, 2**31, ...); another
        # range (1, 2**31), (0, 2 * 31), (0, 3**31), (0, 2**32) draws another seed from torch's
        # global generator, still reproducible under torch.manual_seed: which seed is not part of
        # the behaviour, and 2 * 31 = 62 possible seeds would only weaken the randomness)
        generator = torch.Generator().manual_seed(int(torch.randint(0, 2**31, (1,))))
    c_hat = smoothed_counts(model, x, sigma, n0, batch_size=batch_size,
                            seed=generator).argmax(1)
    counts = smoothed_counts(model, x, sigma, n, batch_size=batch_size, seed=generator)
    n_a = counts.gather(1, c_hat[:, None]).squeeze(1).numpy()
    p_lower = np.where(n_a > 0, stats.beta.ppf(alpha, np.maximum(n_a, 1), n - n_a + 1), 0.0)
    # (mutation testing, equivalent: p_lower >= 0.5 differs only at exactly 1/2, where the radius
    # is sigma * Phi^-1(1/2) = sigma * 0.0 = 0.0 as well (the label has its own > 0.5); without the
    # clip Phi^-1 of a p_lower < 1/2 is a negative number or -inf (no warning) that np.where drops)
    radius = np.where(p_lower > 0.5, sigma * stats.norm.ppf(np.clip(p_lower, 0.5, None)), 0.0)
    labels = torch.where(torch.from_numpy(p_lower > 0.5), c_hat, torch.full_like(c_hat, -1))
    # (mutation testing, equivalent: astype(None) is astype(float64))
    return labels, torch.from_numpy(radius.astype(np.float64))


def certified_accuracy(labels: torch.Tensor, radii: torch.Tensor, y: torch.Tensor,
                       radius: float) -> float:
    """Share of examples certified correct at L2 radius r: label = y and certified radius
    >= r (Cohen et al. 2019, "approximate certified test accuracy")."""
    # (mutation testing, equivalent: leaving out the name "y" gives the check's default, "y")
    y = checks.torch_labels(y, "y", n=len(labels), device=torch.device("cpu"))
    radius = checks.real(radius, "radius", low=0.0)
    ok = (labels.cpu() == y) & (radii.cpu() >= radius)
    return float(ok.double().mean())


NOISE_CONFIG = {"arch": "MnistCNN", "epochs": 1, "train_images": 20000, "batch_size": 128,
                "lr": 3e-3, "seed": 0}


def noise_config(sigma: float) -> dict:
    """The training config of :func:`noise_trained_cnn` for noise level sigma."""
    return {**NOISE_CONFIG, "sigma": checks.real(sigma, "sigma", low=0.0, low_open=True)}


def noise_trained_cnn(sigma: float, device=None) -> nn.Module:
    """Base classifier for randomized smoothing: MnistCNN trained on :math:`x + \\sigma
    \\varepsilon`, :math:`\\varepsilon \\sim N(0, I)` (Cohen et al. 2019 train with the same
    noise they certify with; :data:`NOISE_CONFIG`)."""
    # (mutation testing, equivalent: without low=0.0 a sigma <= 0 is refused on the next line
    # by noise_config, with the same check and message)
    sigma = checks.real(sigma, "sigma", low=0.0, low_open=True)
    config = noise_config(sigma)

    def fit(m: nn.Module) -> dict:
        x, y = data.mnist_tensors("train", limit=config["train_images"])
        loader = data.tensor_loader(x, y, batch_size=config["batch_size"], seed=config["seed"])
        generator = torch.Generator().manual_seed(config["seed"])

        def noisy(_m: nn.Module, xb: torch.Tensor, _y: torch.Tensor) -> torch.Tensor:
            return xb + sigma * torch.randn(xb.shape, generator=generator).to(xb.device)

        return train_with_probe(m, loader, config["epochs"], perturb=noisy, lr=config["lr"],
                                optimizer="adam", schedule="onecycle",
                                desc=f"noise training sigma={sigma:g}")

    return _cached_cnn("noise_trained_cnn", config, fit, device)


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


def evaluation_suite(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float = EPS, *,
                     steps: int = 50, restarts: int = 1, transfer_from: torch.Tensor | None = None,
                     seed: int = 0, batch_size: int = 250) -> dict[str, torch.Tensor]:
    """The protocol of HW3 for an L-inf threat model (Carlini et al. 2019): FGSM; PGD-``steps``
    with ``restarts`` random restarts on the cross-entropy and on the logit margin
    (Carlini-Wagner); optionally the transfer examples ``transfer_from`` (made on another
    model); and the per-example worst case over all of them (:func:`helpers.attacks.worst_case`,
    which also checks that every output lies inside the ball). PGD step size
    :math:`\\alpha = \\max(2.5\\,\\varepsilon / \\text{steps}, \\varepsilon / 10)`
    (Madry et al. 2018); PGD keeps each example's first fooling iterate (``early_stop``), which
    fools every example the last iterate fools and skips the gradients of fooled examples.

    ``batch_size`` only sets the chunking (the random starts are drawn for all images first):
    on the CPU a forward-backward pass costs less per image in chunks of 250 than in larger ones
    (cache effects; ``benchmarks/bench_threads.py``), hence the default.

    Returns the dict of boolean tensors "clean", "fgsm", "pgd_ce", "pgd_margin",
    ["transfer"], "worst_case" (True: classified correctly).
    """
    eps = checks.real(eps, "eps", low=0.0, low_open=True)
    steps = checks.integer(steps, "steps", low=1)
    restarts = checks.integer(restarts, "restarts", low=1)
    alpha = max(2.5 * eps / steps, eps / 10)

    def pgd(loss: str, offset: int) -> Callable:
        return lambda m, xa, ya: attacks.pgd(m, xa, ya, eps, alpha, steps, restarts=restarts,
                                             loss=loss, seed=seed + offset,
                                             batch_size=batch_size, early_stop=True)

    suite = {"fgsm": lambda m, xa, ya: attacks.fgsm(m, xa, ya, eps, batch_size=batch_size),
             "pgd_ce": pgd("ce", 0), "pgd_margin": pgd("margin", 1)}
    if transfer_from is not None:
        if transfer_from.shape != x.shape:
            raise ValueError("transfer_from must have the shape of x")
        suite["transfer"] = lambda m, xa, ya: transfer_from.to(xa.device, xa.dtype)
    return attacks.worst_case(model, x, y, suite, eps=eps)


def accuracy_vs_eps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps_values, *,
                    steps: int = 20, loss: str = "margin", seed: int = 0,
                    progress: bool = True) -> list[float]:
    """PGD-``steps`` accuracy (alpha = 2.5 eps / steps, one random start, ``loss``, keeping each
    example's first fooling iterate) at each eps:
    the curve that must fall to about chance by eps 0.5 for a defense without gradient
    masking (Carlini et al. 2019)."""
    eps_values = checks.array(eps_values, "eps_values", ndim=1, low=0.0)
    out = []
    for eps in tqdm(eps_values, desc="eps sweep", leave=False, disable=not progress):
        if eps == 0:
            out.append(models.evaluate(model, (x, y)))
            continue
        x_adv = attacks.pgd(model, x, y, float(eps), 2.5 * float(eps) / steps, steps,
                            loss=loss, seed=seed, batch_size=250, early_stop=True)
        out.append(models.evaluate(model, (x_adv, y)))
    return out

