"""Data poisoning: label flipping, optimized (implicit-gradient) poisoning of a logistic
regression, and the defenses that answer them: k-NN label sanitization and spectral signatures.

BadNets trigger stamping and poisoning live in :mod:`helpers.backdoor` (shared with Task 1).

References:
    Biggio, Nelson, Laskov. Poisoning Attacks against Support Vector Machines. ICML 2012.
    Xiao, Xiao, Eckert. Adversarial Label Flips Attack on Support Vector Machines. ECAI 2012.
    Munoz-Gonzalez, Biggio, Demontis, Paudice, Wongrassamee, Lupu, Roli. Towards Poisoning of
    Deep Learning Algorithms with Back-gradient Optimization. AISec 2017.
    Koh, Steinhardt, Liang. Stronger Data Poisoning Attacks Break Data Sanitization Defenses.
    Machine Learning 2022.
    Paudice, Munoz-Gonzalez, Lupu. Label Sanitization against Label Flipping Poisoning Attacks.
    ECML 2018 workshops.
    Tran, Li, Madry. Spectral Signatures in Backdoor Attacks. NeurIPS 2018.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from helpers import checks

__all__ = [
    "fit_logistic_regression",
    "flip_labels",
    "knn_sanitize",
    "optimize_poisons",
    "penultimate_features",
    "spectral_filter",
    "spectral_signature_scores",
]


# --------------------------------------------------------------------------------------------
# Label flipping
# --------------------------------------------------------------------------------------------


def flip_labels(y, fraction: float, *, num_classes: int, priority=None, new_labels=None,
                seed=None) -> tuple[np.ndarray, np.ndarray]:
    """Flip the labels of ``round(fraction * n)`` training points.

    Random flipping (Biggio et al. 2011's baseline) picks the points uniformly and gives each a
    label drawn uniformly from the *other* classes. An adversarial flip (Xiao et al. 2012)
    chooses which points and which labels: pass ``priority`` (one score per point: the
    highest-scored points are flipped first, ties broken at random) and/or ``new_labels`` (the
    label each point gets if flipped, which must differ from its own).

    Returns ``(y_poisoned, index)``: a copy of the labels and the sorted indices flipped.
    Exactly ``round(fraction * n)`` labels change and every label stays in
    ``[0, num_classes)``.
    """
    num_classes = checks.integer(num_classes, "num_classes", low=2)
    y = checks.labels(y, "y", num_classes=num_classes)
    fraction = checks.fraction(fraction, "fraction")
    rng = checks.numpy_rng(seed)
    n = len(y)
    budget = round(fraction * n)
    tie_break = rng.permutation(n)
    if priority is None:
        order = tie_break
    else:
        priority = checks.array(priority, "priority", ndim=1)
        checks.same_length("priority", priority, "y", y)
        # (mutation testing, equivalent: numpy reads the sort kind case-insensitively)
        order = tie_break[np.argsort(-priority[tie_break], kind="stable")]
    index = np.sort(order[:budget])
    y_p = y.copy()
    if new_labels is None:
        shift = rng.integers(1, num_classes, size=budget)
        y_p[index] = (y[index] + shift) % num_classes
    else:
        new_labels = checks.labels(new_labels, "new_labels", n=n, num_classes=num_classes)
        if np.any(new_labels[index] == y[index]):
            raise ValueError("new_labels must differ from y at every point chosen to flip")
        y_p[index] = new_labels[index]
    return y_p, index


# --------------------------------------------------------------------------------------------
# Optimized poisoning of an L2-regularised logistic regression
# --------------------------------------------------------------------------------------------


def _design(x: torch.Tensor) -> torch.Tensor:
    # (mutation testing, equivalent: without dtype the ones are float32, and torch.cat promotes
    # them to x's float64 (every caller passes float64); 1.0 is exact in both)
    return torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)


def _train_loss(theta, x, s, lam):
    """(1/n) sum log(1 + exp(-s_i theta^T [x_i; 1])) + lam/2 ||w||^2 (bias unpenalised)."""
    z = _design(x) @ theta
    return torch.nn.functional.softplus(-s * z).mean() + 0.5 * lam * (theta[:-1] ** 2).sum()


def fit_logistic_regression(x, y, lam: float, *, theta0=None, tol: float = 1e-10,
                            max_iter: int = 50) -> np.ndarray:
    """Newton's method for the L2-regularised logistic regression

    .. math::
        \\theta^* = \\arg\\min_\\theta \\frac1n \\sum_i \\log(1 + e^{-s_i(w^\\top x_i + b)}) +
        \\frac\\lambda2 \\|w\\|^2, \\qquad s_i = 2y_i - 1,

    the inner problem of the poisoning attack (the same objective as scikit-learn's
    ``LogisticRegression(C=1 / (n * lam))``). Returns :math:`\\theta = [w; b]`, float64.
    """
    x = torch.as_tensor(checks.array(x, "x", ndim=2))
    y = checks.labels(y, "y", n=len(x), num_classes=2)
    lam = checks.real(lam, "lam", low=0, low_open=True)
    s = torch.as_tensor(2.0 * y - 1.0)
    theta = torch.zeros(x.shape[1] + 1, dtype=torch.float64) if theta0 is None else \
        torch.as_tensor(np.array(theta0, dtype=np.float64))
    return _newton(theta, x, s, lam, tol, max_iter).numpy()


def _hessian(theta, x, s, lam):
    a = _design(x)
    p = torch.sigmoid(a @ theta)
    h = (a * (p * (1 - p))[:, None]).T @ a / len(x)
    reg = torch.full((len(theta),), lam, dtype=x.dtype)
    reg[-1] = 0.0
    return h + torch.diag(reg)


def _newton(theta, x, s, lam, tol, max_iter):
    """Damped Newton: full steps with Armijo backtracking (the objective is strictly convex in
    w; a tiny ridge on the bias keeps the Hessian invertible when the data are separable)."""
    value = float(_train_loss(theta, x, s, lam))
    for _ in range(max_iter):
        a = _design(x)
        z = a @ theta
        grad = -(a * (s * torch.sigmoid(-s * z))[:, None]).mean(0)
        grad[:-1] += lam * theta[:-1]
        # (mutation testing, equivalent: _hessian does not read s, the logistic Hessian does not
        # depend on the labels)
        hess = _hessian(theta, x, s, lam)
        hess[-1, -1] += 1e-10
        step = torch.linalg.solve(hess, grad)
        t = 1.0
        while True:
            candidate = theta - t * step
            new_value = float(_train_loss(candidate, x, s, lam))
            # (mutation testing, equivalent: `<` for the first `<=` differs only when the new
            # objective equals the Armijo bound to the last bit, i.e. once the step no longer
            # changes the objective in float64: either version then moves theta by at most that
            # step, far below tol; t is a power of two, never exactly 1e-8, so `t <= 1e-8` is the
            # same test)
            if new_value <= value - 1e-4 * t * float(grad @ step) or t < 1e-8:
                break
            t *= 0.5
        theta, value = candidate, new_value
        # (mutation testing, equivalent: `<=` differs only for a step of exactly tol)
        if float((t * step).abs().max()) < tol:
            break
    return theta


def _val_loss(theta, x_val, s_val) -> float:
    return float(torch.nn.functional.softplus(-s_val * (_design(x_val) @ theta)).mean())


def _implicit_gradient(theta, x_train, xp, s_all, x_val, s_val, lam):
    """d L_val(theta*(X_p)) / d X_p at the optimum ``theta`` (implicit function theorem)."""
    th = theta.clone().requires_grad_(True)
    val_loss = torch.nn.functional.softplus(-s_val * (_design(x_val) @ th)).mean()
    (g_val,) = torch.autograd.grad(val_loss, th)
    x_all = torch.cat([x_train, xp])
    # (mutation testing, equivalent: _hessian does not read s_all)
    v = torch.linalg.solve(_hessian(theta, x_all, s_all, lam), g_val)
    xp_var = xp.clone().requires_grad_(True)
    th2 = theta.clone().requires_grad_(True)
    train = _train_loss(th2, torch.cat([x_train, xp_var]), s_all, lam)
    (g_theta,) = torch.autograd.grad(train, th2, create_graph=True)
    (grad_x,) = torch.autograd.grad(-(g_theta @ v), xp_var)
    return grad_x, float(val_loss.detach())


def optimize_poisons(x_train, y_train, x_poison, y_poison, x_val, y_val, *, lam: float,
                     steps: int = 100, step_size: float = 0.5, progress: bool = True):
    """Optimized availability poisoning by gradient ascent on the validation loss through the
    trained logistic regression (Biggio et al. 2012; the implicit-gradient form of Koh & Liang
    2017 and Koh et al. 2022).

    With :math:`\\theta^*(X_p)` the minimiser of the training objective on clean plus poison
    points (:func:`fit_logistic_regression`), the attacker maximises the validation loss
    :math:`L_{val}(\\theta^*(X_p))`. The implicit function theorem on the optimality condition
    :math:`\\nabla_\\theta L_{train}(\\theta^*, X_p) = 0` gives

    .. math::
        \\nabla_{X_p} L_{val} = -\\big(\\partial_{X_p} \\nabla_\\theta L_{train}\\big)^\\top
        H^{-1} \\nabla_\\theta L_{val}, \\qquad H = \\nabla^2_\\theta L_{train},

    computed exactly with one linear solve and one autograd pass. Each step moves every poison
    by ``step_size`` times its gradient normalised to unit L2 norm (per point), projects onto
    the pixel box [0, 1], and re-solves the inner problem from the previous optimum. Labels of
    the poisons stay as given (start from flipped copies of training points).

    Returns ``(x_poison, val_losses)``: the optimised poisons (NumPy, in [0, 1]) and the
    validation loss before each step and after the last.
    """
    x_train = torch.as_tensor(checks.array(x_train, "x_train", ndim=2, low=0, high=1))
    y_train = checks.labels(y_train, "y_train", n=len(x_train), num_classes=2)
    xp = torch.as_tensor(checks.array(x_poison, "x_poison", ndim=2, low=0, high=1)).clone()
    y_poison = checks.labels(y_poison, "y_poison", n=len(xp), num_classes=2)
    x_val = torch.as_tensor(checks.array(x_val, "x_val", ndim=2))
    y_val = checks.labels(y_val, "y_val", n=len(x_val), num_classes=2)
    for name, arr in (("x_poison", xp), ("x_val", x_val)):
        if arr.shape[1] != x_train.shape[1]:
            raise ValueError(f"{name} must have {x_train.shape[1]} features like x_train, got "
                             f"{arr.shape[1]}")
    lam = checks.real(lam, "lam", low=0, low_open=True)
    steps = checks.integer(steps, "steps", low=1)
    step_size = checks.real(step_size, "step_size", low=0, low_open=True)
    s_all = torch.as_tensor(2.0 * np.concatenate([y_train, y_poison]) - 1.0)
    s_val = torch.as_tensor(2.0 * y_val - 1.0)
    theta = torch.zeros(x_train.shape[1] + 1, dtype=torch.float64)
    losses = []
    # (mutation testing, equivalent: range(steps + 2) is the same loop, which breaks at
    # step == steps)
    for step in tqdm(range(steps + 1), desc="optimizing poisons", leave=False,
                     disable=not progress):
        theta = _newton(theta, torch.cat([x_train, xp]), s_all, lam, 1e-10, 50)
        if step == steps:
            losses.append(_val_loss(theta, x_val, s_val))
            break
        grad_x, val_loss = _implicit_gradient(theta, x_train, xp, s_all, x_val, s_val, lam)
        losses.append(val_loss)
        norm = grad_x.norm(dim=1, keepdim=True).clamp_min(1e-12)
        xp = (xp + step_size * grad_x / norm).clamp(0.0, 1.0).detach()
    return xp.numpy(), np.asarray(losses)


# --------------------------------------------------------------------------------------------
# Defenses
# --------------------------------------------------------------------------------------------


def knn_sanitize(x, y, k: int = 10, threshold: float = 0.5) -> np.ndarray:
    """k-NN label sanitization (Paudice et al. 2018): keep a training point unless the share of
    its ``k`` nearest neighbours (Euclidean, itself excluded) that carry a different label
    exceeds ``threshold``. Returns the boolean keep mask."""
    from sklearn.neighbors import NearestNeighbors

    x = checks.array(x, "x", ndim=2)
    y = checks.labels(y, "y", n=len(x))
    k = checks.integer(k, "k", low=1, high=len(x) - 1)
    threshold = checks.fraction(threshold, "threshold")
    # kneighbors() without X leaves each point out of its own neighbours by index; asking for
    # k + 1 neighbours of x and dropping the first would drop an exact duplicate instead when
    # scikit-learn lists the duplicate first, and count the point as agreeing with itself
    _, neighbours = NearestNeighbors(n_neighbors=k).fit(x).kneighbors()
    disagree = (y[neighbours] != y[:, None]).mean(1)
    return disagree <= threshold


@torch.no_grad()
def penultimate_features(model: nn.Module, x: torch.Tensor, batch_size: int = 1000):
    """The input of ``model``'s last ``nn.Linear`` layer (its learned representation) for every
    image, as a float64 NumPy array (N, width). Mode restored; model unchanged."""
    checks.module(model)
    x = checks.images(x, "x")
    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not last:
        raise ValueError("model must contain an nn.Linear layer (its input is the feature)")
    captured = []
    handle = last[-1].register_forward_hook(lambda m, inp, out: captured.append(inp[0]))
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    try:
        for i in range(0, len(x), batch_size):
            model(x[i:i + batch_size].to(dev))
    finally:
        handle.remove()
        model.train(was_training)
    return torch.cat(captured).double().cpu().numpy()


def spectral_signature_scores(features, labels) -> np.ndarray:
    """Spectral signatures (Tran, Li, Madry 2018, Algorithm 1): within each class, centre the
    representations :math:`R = [r_i - \\bar r]`, take the top right singular vector :math:`v`
    of :math:`R`, and score each point by :math:`(\\langle r_i - \\bar r, v \\rangle)^2`.
    Poisoned points of a class separate along :math:`v` and get the largest scores."""
    f = checks.array(features, "features", ndim=2)
    labels = checks.labels(labels, "labels", n=len(f))
    scores = np.zeros(len(f))
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        centred = f[members] - f[members].mean(0)
        # (mutation testing, equivalent: full_matrices only adds rows to vt below the first;
        # None is falsy like False)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        scores[members] = (centred @ vt[0]) ** 2
    return scores


def spectral_filter(scores, labels, eps: float, multiplier: float = 1.5) -> np.ndarray:
    """Remove, in each class, the ``round(multiplier * eps * n_c)`` points of largest spectral
    score (Tran et al. 2018 remove 1.5 times the assumed poison fraction ``eps``). Returns the
    boolean keep mask."""
    scores = checks.array(scores, "scores", ndim=1)
    labels = checks.labels(labels, "labels", n=len(scores))
    eps = checks.fraction(eps, "eps")
    multiplier = checks.real(multiplier, "multiplier", low=0)
    keep = np.ones(len(scores), dtype=bool)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        n_remove = min(len(members), round(multiplier * eps * len(members)))
        if n_remove:
            # (mutation testing, equivalent: None stored in a bool array is False)
            keep[members[np.argsort(-scores[members])[:n_remove]]] = False
    return keep
