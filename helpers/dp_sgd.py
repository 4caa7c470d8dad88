"""DP-SGD from scratch (Abadi et al. 2016): per-example gradients, clipping, Gaussian noise,
Poisson sampling, the private training loop, and the membership-inference scores that test it.

One step of DP-SGD on a dataset of N examples with sample rate q, clipping norm C and noise
multiplier :math:`\\sigma`:

1. *Poisson sampling*: each example joins the batch independently with probability q (the
   batch size varies, Binomial(N, q); the accountant's amplification assumes exactly this).
2. *Per-example gradients* :math:`g_i = \\nabla_\\theta \\ell(\\theta; x_i, y_i)`.
3. *Clipping* over all parameters jointly: :math:`\\bar g_i = g_i \\min(1, C/\\|g_i\\|_2)`, so
   adding or removing one example changes the sum by at most C (its L2 sensitivity).
4. *Noise*: :math:`\\tilde g = \\frac{1}{qN}\\big(\\sum_i \\bar g_i + N(0, \\sigma^2 C^2 I)\\big)`
   (divided by the expected batch size, as Opacus does for Poisson sampling).
5. An optimiser step on :math:`\\tilde g`. Privacy: :func:`helpers.accounting.epsilon`.

For a linear model :math:`z = W x + b` with loss :math:`\\ell(z)`, the per-example gradient is
the outer product :math:`\\nabla_z \\ell \\, [x^\\top, 1]`, whose norm is
:math:`\\|\\nabla_z \\ell\\|\\,\\sqrt{\\|x\\|^2 + 1}` and whose clipped sum is one matrix product:
no per-example gradient is ever stored (the "ghost clipping" idea of Goodfellow 2015 and Li et
al. 2022). :func:`train_private` uses it automatically for ``nn.Linear`` models.

Batch normalisation mixes the examples of a batch (one example's gradient depends on the
others), so per-example clipping no longer bounds the sensitivity: models with BatchNorm are
refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from helpers import accounting, checks

__all__ = [
    "TanhCNN",
    "add_noise",
    "audit_guesses",
    "clip_gradients",
    "clipped_sum",
    "linear_clipped_sum",
    "loss_scores",
    "per_sample_gradients",
    "poisson_sample",
    "roc_summary",
    "train_at_epsilon",
    "train_private",
    "zero_linear",
]


class TanhCNN(nn.Module):
    """The DP-SGD MNIST CNN of Papernot et al. 2021 / Tramer & Boneh 2021 with tempered sigmoid
    (tanh) activations: Conv(1->16, 8x8, stride 2, pad 3) - tanh - MaxPool(2, 1) - Conv(16->32,
    4x4, stride 2) - tanh - MaxPool(2, 1) - FC(512->32) - tanh - FC(32->10); 26,010 weights."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 16, 8, stride=2, padding=3), nn.Tanh(), nn.MaxPool2d(2, 1),
            nn.Conv2d(16, 32, 4, stride=2), nn.Tanh(), nn.MaxPool2d(2, 1),
            nn.Flatten(), nn.Linear(32 * 4 * 4, 32), nn.Tanh(), nn.Linear(32, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _refuse_batch_norm(model: nn.Module) -> None:
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            raise ValueError(f"model contains batch normalisation ({name or 'the model'}: "
                             f"{type(module).__name__}), which mixes the examples of a batch, so "
                             "per-example clipping does not bound the sensitivity; use GroupNorm "
                             "or LayerNorm instead")


def _hookable(model: nn.Module) -> bool:
    """True when every trainable parameter sits in an nn.Linear or nn.Conv2d (groups 1)."""
    for module in model.modules():
        # (mutation testing, equivalent: recurse=None is falsy like False)
        own = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if own and not (isinstance(module, nn.Linear)
                        or (isinstance(module, nn.Conv2d) and module.groups == 1
                            and module.padding_mode == "zeros")):
            return False
    return True


def _per_sample_by_hooks(model, x, y, loss_fn):
    """Per-example gradients from each layer's input and output gradient (Goodfellow 2015;
    Opacus's grad samplers): Linear: :math:`g_i = \\delta_i a_i^\\top`; Conv2d: the same on the
    unfolded (im2col) input, :math:`g_i = \\Delta_i U_i^\\top`. One forward and one backward
    pass of the whole batch with the loss summed over examples."""
    acts, outs, handles = {}, {}, []
    names = {m: n for n, m in model.named_modules()}

    def save(module, inputs, output):
        if module in acts:
            raise ValueError(f"layer {names[module]!r} is called twice in one forward pass; "
                             "per-example gradients by hooks need each layer once: use "
                             "method='vmap'")
        acts[module], outs[module] = inputs[0].detach(), output

    layers = [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    for m in layers:
        handles.append(m.register_forward_hook(save))
    try:
        loss = loss_fn(model(x), y, reduction="sum")
        # gradients with respect to the layer outputs only: the batch-summed weight gradients
        # of an ordinary backward pass are never needed
        # (mutation testing, equivalent: autograd.grad returns one gradient per layer, so zip's
        # strict= cannot matter)
        grads = dict(zip(layers, torch.autograd.grad(loss, [outs[m] for m in layers]),
                         strict=True))
    finally:
        for h in handles:
            h.remove()
    out = {}
    for m in layers:
        a, g, prefix = acts[m], grads[m], names[m] + "." if names[m] else ""
        if isinstance(m, nn.Linear):
            a, g = a.reshape(len(x), -1, a.shape[-1]), g.reshape(len(x), -1, g.shape[-1])
            # (mutation testing, equivalent here and below: einsum subscripts may be upper case)
            w, b = torch.einsum("nto,nti->noi", g, a), g.sum(1)
        else:
            u = F.unfold(a, m.kernel_size, dilation=m.dilation, padding=m.padding,
                         stride=m.stride)  # (N, Cin*k*k, L)
            g = g.flatten(2)  # (N, Cout, L)
            w, b = torch.einsum("nol,nkl->nok", g, u).reshape(len(x), *m.weight.shape), g.sum(2)
        if m.weight.requires_grad:
            out[prefix + "weight"] = w
        if m.bias is not None and m.bias.requires_grad:
            out[prefix + "bias"] = b
    return out


def per_sample_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                         loss_fn: Callable | None = None,
                         method: str = "auto") -> dict[str, torch.Tensor]:
    """One gradient per example: ``{name: tensor (N, *param.shape)}`` with
    :math:`g_i = \\nabla_\\theta \\ell(f_\\theta(x_i), y_i)` for every trainable parameter.

    ``method="vmap"``: ``torch.func.vmap(grad(...))`` over the batch (each example as a batch
    of one), for any architecture without batch-mixing layers. ``method="hooks"``: one
    batched forward/backward pass, then each layer's per-example gradient from its input and
    output gradient (outer products; im2col for convolutions), for models whose trainable
    layers are all ``nn.Linear``/``nn.Conv2d``: several times faster on a CPU. ``"auto"``
    picks hooks when possible. ``loss_fn(logits, y, reduction=...)`` defaults to
    cross-entropy. Parameters and mode are left as they were; no ``.grad`` is set.

    Raises:
        ValueError: the model has batch normalisation (it mixes examples), or ``method`` is
            "hooks" for a model with other trainable layers.
    """
    checks.module(model)
    _refuse_batch_norm(model)
    checks.choice(method, "method", ("auto", "vmap", "hooks"))
    if not isinstance(x, torch.Tensor) or x.ndim < 2 or len(x) == 0:
        raise TypeError("x must be a non-empty torch.Tensor with a batch dimension")
    # (mutation testing, equivalent: "y" is checks.torch_labels's default name; without
    # device= the labels stay where they are, the same on a one-device machine (CPU only here))
    y = checks.torch_labels(y, "y", n=len(x), device=x.device)
    loss_fn = loss_fn or F.cross_entropy
    hookable = _hookable(model)
    if method == "hooks" and not hookable:
        raise ValueError("method='hooks' needs a model whose trainable layers are all nn.Linear "
                         "or nn.Conv2d; use method='vmap'")
    if method != "vmap" and hookable:
        return _per_sample_by_hooks(model, x, y, loss_fn)
    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def loss_one(p, xi, yi):
        out = torch.func.functional_call(model, (p, buffers), (xi[None],))
        return loss_fn(out, yi[None])

    grads = torch.func.vmap(torch.func.grad(loss_one), in_dims=(None, 0, 0),
                            randomness="different")(params, x, y)
    return {k: g.detach() for k, g in grads.items()}


def clip_gradients(grads: dict[str, torch.Tensor],
                   max_norm: float) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Clip each example's gradient over ALL parameters jointly to L2 norm at most ``max_norm``:
    :math:`\\bar g_i = g_i \\min(1, C / \\|g_i\\|_2)` (Abadi et al. 2016). Returns the clipped
    per-example gradients and the norms before clipping, shape (N,)."""
    if not isinstance(grads, dict) or not grads:
        raise TypeError("grads must be a non-empty dict name -> tensor (N, ...)")
    max_norm = checks.real(max_norm, "max_norm", low=0.0, low_open=True)
    n = next(iter(grads.values())).shape[0]
    if any(g.shape[0] != n for g in grads.values()):
        raise ValueError("grads must all have the same first (example) dimension")
    norms = torch.sqrt(sum(g.reshape(n, -1).pow(2).sum(1) for g in grads.values()))
    factor = (max_norm / (norms + 1e-12)).clamp(max=1.0)
    clipped = {k: g * factor.view(-1, *([1] * (g.ndim - 1))) for k, g in grads.items()}
    return clipped, norms


def add_noise(summed: dict[str, torch.Tensor], noise_multiplier: float, max_norm: float,
              seed=None) -> dict[str, torch.Tensor]:
    """The Gaussian mechanism on the clipped sum: each coordinate plus
    :math:`N(0, \\sigma^2 C^2)` (Abadi et al. 2016); ``seed`` None | int | torch.Generator."""
    sigma = checks.real(noise_multiplier, "noise_multiplier", low=0.0)
    max_norm = checks.real(max_norm, "max_norm", low=0.0, low_open=True)
    gen = checks.torch_generator(seed)
    out = {}
    for k, s in summed.items():
        # (mutation testing, equivalent: torch.randn(..., generator=None) is the else branch; on a
        # one-device machine (CPU only here) .to(s.device) and .to(None) are the same)
        noise = torch.randn(s.shape, generator=gen, dtype=s.dtype) if gen is not None else \
            torch.randn(s.shape, dtype=s.dtype)
        out[k] = s + sigma * max_norm * noise.to(s.device)
    return out


def poisson_sample(n: int, sample_rate: float, seed=None) -> torch.Tensor:
    """Indices of a Poisson sample of ``range(n)``: each index kept independently with
    probability ``sample_rate`` (the batch size is Binomial(n, q)); int64 tensor, sorted."""
    n = checks.integer(n, "n", low=1)
    q = checks.fraction(sample_rate, "sample_rate", open_low=True)
    gen = checks.torch_generator(seed)
    u = torch.rand(n, generator=gen)
    # (mutation testing, equivalent: `<=` differs only when a uniform equals q exactly)
    return torch.nonzero(u < q).flatten()


def linear_clipped_sum(layer: nn.Linear, x: torch.Tensor, y: torch.Tensor, max_norm: float,
                       ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Sum of the per-example clipped cross-entropy gradients of a linear layer without
    materialising them: with :math:`\\delta_i = \\mathrm{softmax}(W x_i + b) - e_{y_i}`,
    :math:`g_i = [\\delta_i x_i^\\top, \\delta_i]`,
    :math:`\\|g_i\\| = \\|\\delta_i\\|\\sqrt{\\|x_i\\|^2+1}` and
    :math:`\\sum_i c_i g_i = [(c \\odot \\delta)^\\top X, \\sum_i c_i\\delta_i]`
    (Goodfellow 2015; Li et al. 2022). Returns ``({"weight", "bias"}, norms)``."""
    if not isinstance(layer, nn.Linear):
        raise TypeError(f"layer must be an nn.Linear, got {type(layer).__name__}")
    max_norm = checks.real(max_norm, "max_norm", low=0.0, low_open=True)
    with torch.no_grad():
        logits = F.linear(x, layer.weight, layer.bias)
        delta = torch.softmax(logits, dim=1)
        delta[torch.arange(len(y)), y] -= 1.0
        sq = x.pow(2).sum(1) + (1.0 if layer.bias is not None else 0.0)
        norms = delta.norm(dim=1) * sq.sqrt()
        scaled = delta * (max_norm / (norms + 1e-12)).clamp(max=1.0)[:, None]
        out = {"weight": scaled.T @ x}
        if layer.bias is not None:
            out["bias"] = scaled.sum(0)
    return out, norms


def clipped_sum(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                max_norm: float) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Sum of the clipped per-example gradients, :math:`\\sum_i g_i \\min(1, C/\\|g_i\\|_2)`
    (Abadi et al. 2016), and the norms :math:`\\|g_i\\|_2`: :func:`linear_clipped_sum` for an
    ``nn.Linear`` on 2-D inputs, else :func:`per_sample_gradients` and one weighted sum per
    parameter (no clipped copies of the per-example gradients are made)."""
    checks.module(model)
    max_norm = checks.real(max_norm, "max_norm", low=0.0, low_open=True)
    # (mutation testing, equivalent: for an nn.Linear on 2-D inputs both branches compute the
    # same clipped sum (tested against each other); on other inputs cross-entropy refuses the
    # linear layer's output either way)
    if isinstance(model, nn.Linear) and x.ndim == 2:
        return linear_clipped_sum(model, x, y, max_norm)
    grads = per_sample_gradients(model, x, y)
    n = len(x)
    norms = torch.sqrt(sum(g.reshape(n, -1).pow(2).sum(1) for g in grads.values()))
    factor = (max_norm / (norms + 1e-12)).clamp(max=1.0)
    # (mutation testing, equivalent: einsum subscripts may be upper case)
    return {k: torch.einsum("n,n...->...", factor, g) for k, g in grads.items()}, norms


@torch.no_grad()
def _accuracy(model, x, y, batch_size=4096):
    was = model.training
    model.eval()
    correct = sum((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum().item()
                  for i in range(0, len(x), batch_size))
    model.train(was)
    return correct / len(x)


def train_private(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                  noise_multiplier: float, max_norm: float, sample_rate: float, epochs: int,
                  lr: float, momentum: float = 0.9, delta: float = 1e-5, seed=None,
                  eval_data: tuple[torch.Tensor, torch.Tensor] | None = None,
                  ema: float = 0.0, desc: str | None = None) -> list[dict]:
    """Train ``model`` in place with DP-SGD (Abadi et al. 2016): ``epochs * round(1/q)`` steps
    of Poisson sampling (rate ``sample_rate``), per-example clipping to ``max_norm``, Gaussian
    noise of std ``noise_multiplier * max_norm`` on the sum, division by the expected batch
    size ``qN``, and SGD with ``momentum`` (post-processing: no privacy cost). ``nn.Linear``
    models on 2-D inputs use :func:`linear_clipped_sum`; other models
    :func:`per_sample_gradients`. ``noise_multiplier=0`` trains with clipping but no noise
    (epsilon reported as infinity). ``ema`` in [0, 1): when positive, the model returned (and
    evaluated) is the exponential moving average of the iterates,
    :math:`\\bar\\theta \\leftarrow \\mathrm{ema}\\,\\bar\\theta + (1-\\mathrm{ema})\\,\\theta`
    (Polyak averaging; post-processing of the private iterates, so free in privacy).

    Returns one dict per epoch: ``epoch``, ``steps``, ``epsilon`` (the RDP accountant at
    ``delta``, tight conversion), ``mean_batch`` and, with ``eval_data``, ``accuracy``.
    Neighbouring relation: add/remove one example of ``(x, y)``. The model ends in eval mode.
    """
    checks.module(model)
    _refuse_batch_norm(model)
    # (mutation testing, equivalent: "y" is checks.torch_labels's default name; without
    # device= the labels stay where they are, the same on a one-device machine (CPU only here))
    y = checks.torch_labels(y, "y", n=len(x), device=x.device)
    sigma = checks.real(noise_multiplier, "noise_multiplier", low=0.0)
    max_norm = checks.real(max_norm, "max_norm", low=0.0, low_open=True)
    q = checks.fraction(sample_rate, "sample_rate", open_low=True)
    epochs = checks.integer(epochs, "epochs", low=1)
    lr = checks.real(lr, "lr", low=0.0, low_open=True)
    momentum = checks.real(momentum, "momentum", low=0.0, high=1.0, high_open=True)
    delta = checks.fraction(delta, "delta", open_low=True, open_high=True)
    ema = checks.real(ema, "ema", low=0.0, high=1.0, high_open=True)
    gen = checks.torch_generator(seed)
    if gen is None:
        # (mutation testing, equivalent: torch.randint's low defaults to 0)
        gen = torch.Generator().manual_seed(int(torch.randint(0, 2**31 - 1, (1,))))
    n = len(x)
    steps_per_epoch = max(1, round(1 / q))
    params = dict(model.named_parameters())
    opt = torch.optim.SGD(params.values(), lr=lr, momentum=momentum)
    # (mutation testing, equivalent: with ema = 0 an average would be updated to the iterate
    # itself at every step, 0 * avg + 1 * p, so evaluating or returning it changes nothing)
    averaged = {k: p.detach().clone() for k, p in params.items()} if ema > 0 else None
    history, total_steps = [], 0
    model.train()
    bar = tqdm(total=epochs * steps_per_epoch, desc=desc or "DP-SGD", leave=False)
    for epoch in range(1, epochs + 1):
        sizes = []
        for _ in range(steps_per_epoch):
            # (mutation testing, equivalent on a one-device machine: .to(None) keeps the CPU
            # indices)
            idx = poisson_sample(n, q, gen).to(x.device)
            sizes.append(len(idx))
            if len(idx):
                summed, _ = clipped_sum(model, x[idx], y[idx], max_norm)
            else:
                summed = {k: torch.zeros_like(p) for k, p in params.items()}
            noisy = add_noise(summed, sigma, max_norm, gen)
            for k, p in params.items():
                p.grad = noisy[k] / (q * n)
            opt.step()
            if averaged is not None:
                with torch.no_grad():
                    for k, p in params.items():
                        averaged[k].mul_(ema).add_(p.detach(), alpha=1 - ema)
            total_steps += 1
            bar.update()
        eps = (accounting.epsilon(sigma, q, total_steps, delta) if sigma > 0 else math.inf)
        record = {"epoch": epoch, "steps": total_steps, "epsilon": eps,
                  "mean_batch": float(np.mean(sizes))}
        if eval_data is not None:
            record["accuracy"] = _accuracy_with(model, params, averaged, eval_data)
        history.append(record)
    bar.close()
    with torch.no_grad():
        for k, p in params.items():
            p.grad = None
            if averaged is not None:
                p.copy_(averaged[k])
    model.eval()
    return history


def _accuracy_with(model, params, averaged, eval_data):
    """Accuracy of the model, with the averaged weights swapped in when there are any."""
    if averaged is None:
        return _accuracy(model, *eval_data)
    current = {k: p.detach().clone() for k, p in params.items()}
    with torch.no_grad():
        for k, p in params.items():
            p.copy_(averaged[k])
    acc = _accuracy(model, *eval_data)
    with torch.no_grad():
        for k, p in params.items():
            p.copy_(current[k])
    return acc


def zero_linear(in_features: int, num_classes: int = 10) -> nn.Linear:
    """A linear (softmax-regression) head with zero weights and bias: the usual start of a
    private linear model (Tramer & Boneh 2021), so no random initialisation adds variance."""
    layer = nn.Linear(checks.integer(in_features, "in_features", low=1),
                      checks.integer(num_classes, "num_classes", low=2))
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.zero_()
    return layer


def train_at_epsilon(model: nn.Module, x: torch.Tensor, y: torch.Tensor, target_epsilon: float,
                     *, batch_size: int, epochs: int, max_norm: float, lr: float,
                     delta: float = 1e-5, seed=None, eval_data=None, ema: float = 0.0,
                     desc: str | None = None) -> tuple[float, list[dict]]:
    """DP-SGD at a privacy target: sample rate ``q = batch_size / len(x)``, ``epochs *
    round(1/q)`` steps, and the smallest noise multiplier for which the accountant gives at
    most ``target_epsilon`` at ``delta`` (:func:`helpers.accounting.noise_multiplier_for`),
    then :func:`train_private`. Returns ``(noise_multiplier, history)``."""
    batch_size = checks.integer(batch_size, "batch_size", low=1, high=len(x))
    epochs = checks.integer(epochs, "epochs", low=1)
    q = batch_size / len(x)
    sigma = accounting.noise_multiplier_for(target_epsilon, q, epochs * max(1, round(1 / q)),
                                            delta, tol=1e-3)
    history = train_private(model, x, y, noise_multiplier=sigma, max_norm=max_norm,
                            sample_rate=q, epochs=epochs, lr=lr, delta=delta, seed=seed,
                            eval_data=eval_data, ema=ema, desc=desc)
    return sigma, history


def audit_guesses(scores, included, k_pos: int, k_neg: int) -> tuple[int, int]:
    """The one-run audit's guesses (Steinke, Nasr, Jagielski 2023): "member" for the ``k_pos``
    highest-scoring canaries, "non-member" for the ``k_neg`` lowest, abstain on the rest.
    Returns ``(r, v)``: guesses made and guesses correct, for
    :func:`helpers.accounting.audit_epsilon_lower_bound`."""
    scores = checks.array(scores, "scores", ndim=1)
    included = checks.array(included, "included", ndim=1, dtype="bool")
    m = checks.same_length("scores", scores, "included", included)
    k_pos = checks.integer(k_pos, "k_pos", low=0)
    k_neg = checks.integer(k_neg, "k_neg", low=0, high=m - k_pos)
    # (mutation testing, equivalent: numpy reads the sort kind case-insensitively; without
    # kind= the ties are broken differently, which test_audit_guesses_on_an_asymmetric_case_and_ties
    # catches)
    order = np.argsort(-scores, kind="stable")
    correct = int(included[order[:k_pos]].sum()) + int((~included[order[m - k_neg:]]).sum())
    return k_pos + k_neg, correct


@torch.no_grad()
def loss_scores(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                batch_size: int = 4096) -> np.ndarray:
    """Membership scores of the loss-threshold attack (Yeom et al. 2018): the negative
    cross-entropy :math:`-\\ell(f(x_i), y_i)` per example (higher = more likely a member)."""
    checks.module(model)
    # (mutation testing, equivalent: "y" is checks.torch_labels's default name; without
    # device= the labels stay where they are, the same on a one-device machine (CPU only here))
    y = checks.torch_labels(y, "y", n=len(x), device=x.device)
    was = model.training
    model.eval()
    out = torch.cat([-F.cross_entropy(model(x[i:i + batch_size]), y[i:i + batch_size],
                                      reduction="none") for i in range(0, len(x), batch_size)])
    model.train(was)
    return out.cpu().numpy().astype(np.float64)


def roc_summary(scores_in, scores_out, fpr_at: float = 0.01) -> dict:
    """ROC of a membership attack that calls "member" when the score exceeds a threshold:
    AUC (probability a random member outscores a random non-member, ties half: the
    Mann-Whitney statistic), TPR at FPR ``fpr_at`` (largest TPR whose FPR <= ``fpr_at``) and
    the curve (``fpr``, ``tpr`` arrays) for plotting (Carlini et al. 2022 ask for log axes)."""
    # (mutation testing, equivalent here and on the next line: checks.array reads finite= as a
    # truth value, and None is falsy like False)
    s_in = checks.array(scores_in, "scores_in", ndim=1, finite=False)
    s_out = checks.array(scores_out, "scores_out", ndim=1, finite=False)
    fpr_at = checks.fraction(fpr_at, "fpr_at")
    scores = np.concatenate([s_in, s_out])
    labels = np.concatenate([np.ones(len(s_in)), np.zeros(len(s_out))])
    # (mutation testing, equivalent: the curve takes one point per distinct score, after the
    # last of a run of ties, so the order within ties, stable or not, cannot matter)
    order = np.argsort(-scores, kind="stable")
    scores, labels = scores[order], labels[order]
    distinct = np.r_[np.nonzero(np.diff(scores))[0], len(scores) - 1]
    tpr = np.r_[0.0, np.cumsum(labels)[distinct] / len(s_in)]
    fpr = np.r_[0.0, np.cumsum(1 - labels)[distinct] / len(s_out)]
    auc = float(np.trapezoid(tpr, fpr))
    # (mutation testing, equivalent: `<` differs only for an FPR of exactly fpr_at + 1e-12)
    tpr_low = float(tpr[fpr <= fpr_at + 1e-12].max())
    return {"auc": auc, "tpr_at_fpr": tpr_low, "fpr": fpr, "tpr": tpr}
