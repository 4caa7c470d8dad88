"""Learned Fair Representations (Zemel et al. 2013), from scratch in torch.

Each person :math:`x_n \\in \\mathbb{R}^D` is mapped to a distribution over :math:`K` prototypes
:math:`v_k \\in \\mathbb{R}^D`,

.. math:: M_{n,k} = \\frac{\\exp(-d(x_n, v_k))}{\\sum_j \\exp(-d(x_n, v_j))}, \\qquad
          d(x_n, v_k) = \\sum_{i=1}^D \\alpha_i\\,(x_{n,i} - v_{k,i})^2,

and the representation :math:`M_n` has to serve three goals, each a term of the loss
:math:`L = A_z L_z + A_x L_x + A_y L_y`:

* **statistical parity of the representation**, :math:`L_z = \\sum_k |M_k^u - M_k^p|` with
  :math:`M_k^g = \\frac{1}{|g|}\\sum_{n \\in g} M_{n,k}`: both groups use the prototypes
  equally often, so nothing downstream of :math:`M` can select one group more;
* **reconstruction**, :math:`L_x = \\frac1N \\sum_n \\lVert x_n - \\hat x_n \\rVert^2` with
  :math:`\\hat x_n = \\sum_k M_{n,k} v_k`: the representation keeps the information about the
  person (and similar people get similar :math:`M_n`, which drives consistency);
* **prediction**, the cross-entropy
  :math:`L_y = \\frac1N \\sum_n -y_n \\log \\hat y_n - (1 - y_n)\\log(1 - \\hat y_n)`
  with :math:`\\hat y_n = \\sum_k M_{n,k} w_k`, :math:`w_k \\in (0, 1)`.

The paper sums :math:`L_x` and :math:`L_y` over the rows; they are averaged here so that the
weights :math:`A` do not depend on the number of rows. The parameters :math:`v`, :math:`w`
(through a sigmoid) and :math:`\\alpha` (through a softplus, so :math:`\\alpha_i > 0`) are
fitted by L-BFGS, as in the paper. One weight vector :math:`\\alpha` serves everyone, so the
learned map :math:`x \\mapsto M` does not read the protected attribute: it is used only in
:math:`L_z`, at training time.

Reference: R. Zemel, Y. Wu, K. Swersky, T. Pitassi, C. Dwork. Learning fair representations.
ICML 2013.

This module imports torch; the Task 3 notebook imports it only in its LFR section.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from helpers import checks

__all__ = ["LFR", "fit_lfr", "lfr_loss", "lfr_sweep", "memberships"]

DTYPE = torch.float64


@dataclass
class LFR:
    """A fitted representation: ``prototypes`` (K, D), ``w`` (K,) in (0, 1), ``alpha`` (D,) > 0,
    the loss weights and the final loss terms. Float64 CPU tensors, no gradients."""

    prototypes: torch.Tensor
    w: torch.Tensor
    alpha: torch.Tensor
    weights: dict
    terms: dict

    def transform(self, x) -> np.ndarray:
        """The representation :math:`M` (N, K) of the rows of ``x`` (rows sum to 1)."""
        x = _features(x, "x", self.prototypes.shape[1])
        with torch.no_grad():
            return memberships(x, self.prototypes, self.alpha).numpy()

    def predict_proba(self, x) -> np.ndarray:
        """:math:`\\hat y_n = \\sum_k M_{n,k} w_k`, the probability of the favourable label."""
        return self.transform(x) @ self.w.numpy()

    def predict(self, x, threshold: float = 0.5) -> np.ndarray:
        """Decisions :math:`[\\hat y_n \\ge` ``threshold`` :math:`]` as int64 0/1."""
        threshold = checks.fraction(threshold, "threshold")
        return (self.predict_proba(x) >= threshold).astype(np.int64)


def _features(x, name: str, d: int | None = None) -> torch.Tensor:
    arr = checks.array(x, name, ndim=2)
    if d is not None and arr.shape[1] != d:
        raise ValueError(f"{name} must have {d} columns (the prototypes' dimension), got "
                         f"{arr.shape[1]}")
    # (mutation testing, equivalent: checks.array returns float64, which torch.tensor keeps)
    return torch.tensor(arr, dtype=DTYPE)


def memberships(x: torch.Tensor, prototypes: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """:math:`M_{n,k} = \\mathrm{softmax}_k(-\\sum_i \\alpha_i (x_{n,i} - v_{k,i})^2)`, (N, K).

    The weighted squared distance is expanded as
    :math:`\\sum_i \\alpha_i x_{n,i}^2 - 2 \\sum_i \\alpha_i x_{n,i} v_{k,i} + \\sum_i \\alpha_i
    v_{k,i}^2` (one matrix product instead of an (N, K, D) tensor)."""
    _check_tensors(x=(x, 2), prototypes=(prototypes, 2), alpha=(alpha, 1))
    # (mutation testing, equivalent: x**2 enters the distances only as sum_i alpha_i x_{n,i}^2,
    # the same for every prototype k, which the softmax over k cancels: x * 2 or x**3 give
    # the same M up to round-off)
    return _memberships(x**2, x, prototypes, alpha)


def _check_tensors(**named) -> None:
    """TypeError unless each ``name=(tensor, ndim)`` is a tensor of that many dimensions;
    ValueError unless x, prototypes, alpha (and y, unprivileged, w) have matching sizes."""
    for name, (t, nd) in named.items():
        if not isinstance(t, torch.Tensor) or t.ndim != nd:
            raise TypeError(f"{name} must be a {nd}-D torch.Tensor, got "
                            f"{type(t).__name__} {tuple(getattr(t, 'shape', ()))}")
    x, v, a = (named[k][0] for k in ("x", "prototypes", "alpha"))
    if not x.shape[1] == v.shape[1] == a.shape[0]:
        raise ValueError(f"x, prototypes and alpha must share the feature dimension, got "
                         f"{x.shape[1]}, {v.shape[1]}, {a.shape[0]}")
    for name in ("y", "unprivileged"):
        if name in named and named[name][0].shape[0] != x.shape[0]:
            raise ValueError(f"{name} must have one entry per row of x ({x.shape[0]}), got "
                             f"{named[name][0].shape[0]}")
    if "w" in named and named["w"][0].shape[0] != v.shape[0]:
        raise ValueError(f"w must have one entry per prototype ({v.shape[0]}), got "
                         f"{named['w'][0].shape[0]}")


def _memberships(x_sq, x, prototypes, alpha):
    d = (x_sq @ alpha)[:, None] - 2 * x @ (prototypes * alpha).T + (prototypes**2 @ alpha)[None]
    return torch.softmax(-d, dim=1)


def lfr_loss(x: torch.Tensor, y: torch.Tensor, unprivileged: torch.Tensor,
             prototypes: torch.Tensor, w: torch.Tensor, alpha: torch.Tensor) -> dict:
    """The three terms of Zemel et al.'s objective (see the module docstring) as scalar tensors
    ``{"L_z", "L_x", "L_y"}``; ``w`` already in (0, 1), ``alpha`` > 0, ``unprivileged`` a bool
    mask of the rows of the unprivileged group (both groups non-empty)."""
    _check_tensors(x=(x, 2), y=(y, 1), unprivileged=(unprivileged, 1), prototypes=(prototypes, 2),
                   w=(w, 1), alpha=(alpha, 1))
    if unprivileged.dtype != torch.bool or unprivileged.all() or not unprivileged.any():
        raise ValueError("unprivileged must be a bool mask with both groups non-empty")
    # (mutation testing, equivalent: x_sq, the second argument, is cancelled by the softmax as
    # in memberships; L_x uses the row norms, the third)
    return _loss(x, x**2, (x**2).sum(1), y, unprivileged, prototypes, w, alpha)


def _loss(x, x_sq, x_norm2, y, unprivileged, prototypes, w, alpha) -> dict:
    """:func:`lfr_loss` with ``x**2`` and the row norms precomputed. The reconstruction error is
    expanded, :math:`\\lVert x_n - \\sum_k M_{n,k} v_k\\rVert^2 = \\lVert x_n\\rVert^2 - 2 M_n V
    x_n + M_n V V^\\top M_n^\\top`, so no (N, D) array is formed per evaluation."""
    k = prototypes.shape[0]
    xv = x @ torch.cat([prototypes * alpha, prototypes]).T  # one product for both uses, (N, 2K)
    d = (x_sq @ alpha)[:, None] - 2 * xv[:, :k] + (prototypes**2 @ alpha)[None]
    m = torch.softmax(-d, dim=1)
    y_hat = (m @ w).clamp(1e-12, 1 - 1e-12)
    u = unprivileged.to(m.dtype)
    contrast = u / u.sum() - (1 - u) / (1 - u).sum()  # M_k^u - M_k^p = contrast @ M
    l_z = (contrast @ m).abs().sum()
    gram = prototypes @ prototypes.T
    l_x = (x_norm2 - 2 * (m * xv[:, k:]).sum(1) + ((m @ gram) * m).sum(1)).mean()
    l_y = F.binary_cross_entropy(y_hat, y)
    return {"L_z": l_z, "L_x": l_x, "L_y": l_y}


@contextmanager
def _one_thread():
    """torch on one CPU thread while fitting: the fit is small, and one thread makes the
    floating-point reductions (and so the fitted model) the same on every machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fit_lfr(x, y, sensitive, privileged, *, k: int = 10, a_x: float = 0.01, a_y: float = 1.0,
            a_z: float = 1.0, steps: int = 150, seed=0, progress: bool = False) -> LFR:
    """Fit Learned Fair Representations (Zemel et al. 2013) to features ``x`` (N, D; standardised
    or one-hot, without the protected attribute), binary labels ``y`` and the protected
    attribute ``sensitive`` (``privileged`` is the privileged group's value).

    ``k`` prototypes, initialised at ``k`` distinct random rows of ``x`` (``seed``), with
    :math:`w_k = 0.5` and :math:`\\alpha_i = 1/D`; ``steps`` L-BFGS iterations (strong Wolfe line
    search) on :math:`A_z L_z + A_x L_x + A_y L_y`. ``a_z = 0`` is a prototype classifier with no
    fairness term; a larger ``a_z`` buys parity with accuracy. Returns an :class:`LFR`.
    """
    xt = _features(x, "x")
    n, dim = xt.shape
    # (mutation testing, equivalent: checks.labels below checks ndim=1 again under the same
    # name)
    yy = checks.array(y, "y", ndim=1, dtype="any")
    yy = checks.labels(yy.astype(np.int64) if yy.dtype.kind == "b" else yy, "y", n=n,
                       num_classes=2)
    s = checks.array(sensitive, "sensitive", ndim=1, dtype="any")
    checks.same_length("sensitive", s, "x", yy)
    # (mutation testing, equivalent: s != privileged is already a bool array; and `==` swaps
    # the groups, which L_z = sum_k |M_k^u - M_k^p| does not see: both masks are non-empty
    # complements and the absolute value is symmetric)
    unpriv = torch.as_tensor(np.asarray(s != privileged, dtype=bool))
    if unpriv.all() or not unpriv.any():
        raise ValueError(f"sensitive must hold both the privileged group {privileged!r} and "
                         "another group")
    k = checks.integer(k, "k", low=1, high=n)
    a_x, a_y, a_z = (checks.real(v, name, low=0.0)
                     for v, name in ((a_x, "a_x"), (a_y, "a_y"), (a_z, "a_z")))
    steps = checks.integer(steps, "steps", low=1)
    progress = checks.boolean(progress, "progress")
    rng = checks.numpy_rng(seed)
    yt = torch.tensor(yy, dtype=DTYPE)
    # (mutation testing, equivalent: replace=None is falsy like False)
    v = xt[torch.as_tensor(rng.choice(n, size=k, replace=False))].clone().requires_grad_(True)
    w_logit = torch.zeros(k, dtype=DTYPE, requires_grad=True)
    # softplus(a) = 1/D at the start
    a_raw = torch.full((dim,), float(np.log(np.expm1(1.0 / dim))), dtype=DTYPE,
                       requires_grad=True)
    params = [v, w_logit, a_raw]

    x_sq = xt**2
    x_norm2 = x_sq.sum(1)

    def terms():
        return _loss(xt, x_sq, x_norm2, yt, unpriv, v, torch.sigmoid(w_logit), F.softplus(a_raw))

    def closure():
        opt.zero_grad()
        t = terms()
        loss = a_z * t["L_z"] + a_x * t["L_x"] + a_y * t["L_y"]
        loss.backward()
        return loss

    from tqdm.auto import tqdm

    sizes = [len(c) for c in np.array_split(np.arange(steps), min(steps, 10))]
    with _one_thread():
        opt = torch.optim.LBFGS(params, lr=1.0, history_size=20, line_search_fn="strong_wolfe",
                                tolerance_grad=1e-9, tolerance_change=1e-12)
        for size in tqdm(sizes, desc=f"LFR (A_z={a_z:g})", leave=False, disable=not progress):
            opt.param_groups[0]["max_iter"] = size
            opt.step(closure)
        with torch.no_grad():
            final = {name: float(t) for name, t in terms().items()}
    return LFR(prototypes=v.detach(), w=torch.sigmoid(w_logit).detach(),
               alpha=F.softplus(a_raw).detach(), weights={"a_x": a_x, "a_y": a_y, "a_z": a_z},
               terms=final)


def lfr_sweep(x_fit, fit, x_val, val, x_test, test, a_z_values, *, neighbors=None, k: int = 10,
              steps: int = 150, seed=0) -> tuple:
    """Fit one :func:`fit_lfr` per fairness weight in ``a_z_values`` on ``x_fit`` (labels and
    groups from the DataFrame ``fit``, :data:`helpers.fairness.LABEL` and ``SENSITIVE``) and
    grade each like :func:`helpers.fairness.reweighing_sweep`: the final loss terms,
    ``val_accuracy`` and ``val_disparate_impact`` on ``x_val`` (where :math:`A_z` is chosen)
    and :func:`helpers.fairness.summarize` on ``x_test`` with the probabilities. Returns the
    table and the fitted models (a dict keyed by :math:`A_z`)."""
    from tqdm.auto import tqdm

    from helpers import fairness as F

    for name, df in (("fit", fit), ("val", val), ("test", test)):
        checks.frame(df, name, [F.LABEL, F.SENSITIVE])
    a_z_values = [float(a) for a in checks.array(a_z_values, "a_z_values", ndim=1, low=0.0)]
    rows, models = [], {}
    for a_z in tqdm(a_z_values, desc="LFR sweep", leave=False):
        model = fit_lfr(x_fit, fit[F.LABEL], fit[F.SENSITIVE], F.PRIVILEGED, k=k, a_z=a_z,
                        steps=steps, seed=seed)
        y_val = model.predict(x_val)
        row = {"a_z": a_z, **model.terms,
               "val_accuracy": float((y_val == val[F.LABEL].to_numpy()).mean()),
               "val_disparate_impact": F.disparate_impact(y_val, val[F.SENSITIVE], F.PRIVILEGED)}
        # (mutation testing, equivalent: F.PRIVILEGED is summarize's default)
        row.update(F.summarize(test[F.LABEL], model.predict(x_test), test[F.SENSITIVE],
                               F.PRIVILEGED, neighbors=neighbors,
                               y_score=model.predict_proba(x_test)))
        rows.append(row)
        models[a_z] = model
    return pd.DataFrame(rows), models
