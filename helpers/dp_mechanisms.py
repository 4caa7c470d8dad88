"""Differential privacy mechanisms for numeric queries: Laplace, bounded sums and means,
counting queries and histograms, the (1 - alpha) error bound, sequential and advanced composition.

Definitions (Dwork, McSherry, Nissim, Smith 2006; Dwork & Roth 2014, ch. 2-3)
-----------------------------------------------------------------------------
A randomised mechanism :math:`M` is :math:`\\varepsilon`-differentially private when, for every
pair of neighbouring datasets :math:`D \\sim D'` and every set of outputs :math:`S`,

.. math:: \\Pr[M(D) \\in S] \\le e^{\\varepsilon} \\Pr[M(D') \\in S].

The global (L1) sensitivity of a query :math:`f` is
:math:`\\Delta f = \\max_{D \\sim D'} \\lVert f(D) - f(D')\\rVert_1`. The Laplace mechanism releases
:math:`f(D) + Z` with :math:`Z \\sim \\mathrm{Laplace}(0, b)`, :math:`b = \\Delta f / \\varepsilon`;
the ratio of output densities is :math:`\\exp(-|y - f(D)|/b) / \\exp(-|y - f(D')|/b)
\\le \\exp(|f(D) - f(D')|/b) \\le e^{\\varepsilon}`.

Neighbouring relations
----------------------
Every sensitivity depends on what "neighbouring" means; a notebook states one relation and uses
it for every release.

* *add/remove one person* (unbounded DP): :math:`D'` is :math:`D` with one record added or
  removed, so the number of people :math:`n` is itself private. A sum clipped to
  ``[lower, upper]`` has sensitivity ``max(|lower|, |upper|)`` (:func:`sum_sensitivity`), a count
  has sensitivity 1, and a histogram over disjoint bins has L1 sensitivity 1. ``noisy_sum``,
  ``noisy_count``, ``noisy_mean_unknown_n`` and ``dp_clip_bound`` use this relation.
* *replace one person* (bounded DP, ``n`` fixed and public): a clipped sum has sensitivity
  ``upper - lower``, the mean ``(upper - lower) / n``, a count 1 and a histogram 2 (one bin loses
  the person, another gains them). Only ``noisy_mean`` (public ``n``) uses this relation; under
  add/remove dividing by the true ``n`` is not private, because it publishes ``n``.

Missing values
--------------
Missing values (NaN) are never turned into zeros. Every function that takes data has a
``missing`` argument: ``"raise"`` (the default) refuses NaN with a ``ValueError``; ``"drop"``
excludes them and the number dropped is reported (``DPRelease.n_missing_dropped``,
:func:`split_missing`). That number is seen by the data curator; releasing it would itself be a
query on the data and needs its own privacy budget.

Floating point and randomness (Mironov 2012)
--------------------------------------------
Every sampler takes one randomness argument ``seed`` (``None``, an ``int`` or a
``numpy.random.Generator``; see :func:`helpers.checks.numpy_rng`), so notebooks and tests are
reproducible. This is a teaching implementation, **not** a production mechanism: numpy's
generator is not cryptographically secure (an adversary who learns its state can subtract the
noise), and the textbook floating-point Laplace sampler leaks: Mironov (2012), "On significance of
the least significant bits for differential privacy" (ACM CCS), showed that the set of doubles
the noisy output can take depends on ``f(D)``, so some outputs are possible under ``D`` and
impossible under ``D'`` and the privacy guarantee fails completely. Fixes: Mironov's *snapping
mechanism* (clamp, then round the output to a power-of-two grid larger than the scale) or an
integer-valued *discrete Laplace / geometric* mechanism sampled exactly (Ghosh, Roughgarden,
Sundararajan 2009; Canonne, Kamath, Steinke 2020), driven by a cryptographically secure RNG.

This module needs NumPy, pandas and :mod:`helpers.checks` only; it never imports torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from helpers import checks

__all__ = [
    "BudgetExceededError",
    "DPRelease",
    "PrivacyBudget",
    "advanced_composition",
    "clipped_sum",
    "clipping_tradeoff",
    "count_above",
    "dp_clip_bound",
    "empirical_log_ratio",
    "exceed_table",
    "laplace_error_bound",
    "laplace_mechanism",
    "laplace_scale",
    "monte_carlo_exceeds",
    "noise_table",
    "noisy_count",
    "noisy_mean",
    "noisy_mean_unknown_n",
    "noisy_sum",
    "optimal_split",
    "prob_noisy_count_exceeds",
    "split_missing",
    "sum_sensitivity",
]

MissingPolicy = Literal["raise", "drop"]


def _epsilon(value: Any, name: str = "epsilon") -> float:
    """A privacy loss: a finite real number > 0 (checks.real with an open lower bound)."""
    return checks.real(value, name, low=0.0, low_open=True)


def _size(size: Any) -> int | None:
    """Number of Monte Carlo draws: None (one release) or an integer >= 1."""
    return None if size is None else checks.integer(size, "size", low=1)


def _bounds(lower: Any, upper: Any) -> tuple[float, float]:
    """Clip range: two finite numbers with ``lower <= upper``."""
    lo = checks.real(lower, "lower")
    return lo, checks.real(upper, "upper", low=lo)


def _reals(value: Any, name: str) -> np.ndarray:
    """A finite real number or array-like of them, as a float ndarray (0-d for a scalar)."""
    if np.ndim(value) == 0 and not isinstance(value, str | bytes):
        return np.asarray(checks.real(value, name))
    # (mutation testing, equivalent: dtype="float" is checks.array's default)
    return checks.array(value, name, dtype="float")


def split_missing(values: Any, missing: MissingPolicy = "raise") -> tuple[np.ndarray, int]:
    """Separate missing values (NaN, pandas NA) from the data, explicitly.

    Returns ``(present_values, n_missing)``. With ``missing="raise"`` any missing value raises a
    ``ValueError`` naming ``values``; with ``missing="drop"`` they are excluded and counted. Missing
    values are never replaced by zeros: a zero income is a real answer, a missing one is not.
    ``values`` is a 1-D array-like of real numbers (list, ndarray, pandas Series, nullable
    ``Float64`` with ``pd.NA`` included); infinity is refused; empty data (or nothing left after
    dropping) raises ``ValueError``.
    """
    checks.choice(missing, "missing", ("raise", "drop"))
    if isinstance(values, pd.Series | pd.Index):
        try:
            # (mutation testing, equivalent: without na_value, or with None, pandas turns NA into
            # NaN itself when dtype=float; checked for Float64, Int64, boolean and object Series)
            values = values.to_numpy(dtype=float, na_value=np.nan)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"values must hold real numbers: {exc}") from None
    arr = checks.array(values, "values", ndim=1, dtype="any", allow_empty=True)
    # (mutation testing, equivalent: "XXfiuXX" adds only X, which is no NumPy dtype kind)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"values must hold real numbers (NaN for missing), got dtype {arr.dtype}")
    # (mutation testing, equivalent: astype(None) converts to float64 too)
    arr = arr.astype(np.float64)
    nan = np.isnan(arr)
    n_missing = int(nan.sum())
    if n_missing and missing == "raise":
        raise ValueError(
            f"values contains {n_missing} missing (NaN) entries; pass missing='drop' to exclude "
            "them explicitly (they are never treated as zeros)"
        )
    if arr.size and n_missing == arr.size:
        raise ValueError("values must contain at least one non-missing entry")
    # (mutation testing, equivalent: without ndim=1 the same array passes, since a boolean mask
    # of a 1-D array is 1-D)
    return checks.array(arr[~nan], "values", ndim=1), n_missing


# --------------------------------------------------------------------------- Laplace
def laplace_scale(sensitivity: float, epsilon: float) -> float:
    """Scale of the Laplace mechanism, :math:`b = \\Delta f / \\varepsilon`.

    The noise :math:`Z \\sim \\mathrm{Laplace}(0, b)` has density
    :math:`\\frac{1}{2b} e^{-|z|/b}`, variance :math:`2 b^2` and mean absolute value :math:`b`
    (Dwork, McSherry, Nissim, Smith 2006; Dwork & Roth 2014, Def. 3.3).
    ``sensitivity`` must be finite and >= 0, ``epsilon`` finite and > 0.
    """
    return checks.real(sensitivity, "sensitivity", low=0.0) / _epsilon(epsilon)


def laplace_error_bound(scale: float, alpha: float = 0.05) -> float:
    """Half-width :math:`t = b \\ln(1/\\alpha)` of the (1 - alpha) error bound of one Laplace
    release: :math:`\\Pr[|Z| > t] = e^{-t/b} = \\alpha` for :math:`Z \\sim \\mathrm{Laplace}(0, b)`
    (Dwork & Roth 2014, Thm 3.8). ``scale`` >= 0, ``alpha`` in (0, 1).

    The bound is computed from public quantities (b and alpha), so printing it beside a release
    costs no privacy. It covers the noise only, not the bias of clipping.
    """
    b = checks.real(scale, "scale", low=0.0)
    a = checks.fraction(alpha, "alpha", open_low=True, open_high=True)
    return b * math.log(1.0 / a)


def laplace_mechanism(
    value: Any,
    sensitivity: float,
    epsilon: float,
    seed: Any = None,
    size: int | None = None,
) -> float | np.ndarray:
    """The Laplace mechanism: release :math:`f(D) + Z`, :math:`Z \\sim \\mathrm{Laplace}(0,
    \\Delta f/\\varepsilon)`, which is :math:`\\varepsilon`-DP when ``sensitivity`` is the true
    global L1 sensitivity of the query (Dwork et al. 2006, Prop. 1; Dwork & Roth 2014, Thm 3.6).

    ``value`` is a scalar or an array-like of true answers (one independent noise draw per entry;
    for a vector query the sensitivity must be the L1 sensitivity of the whole vector). ``size``
    (scalar ``value`` only) draws that many independent noisy answers at once, for Monte Carlo.
    ``seed``: None, an int or a ``numpy.random.Generator`` (:func:`helpers.checks.numpy_rng`).
    Returns a float for a scalar without ``size``, else an ndarray.

    Not for production: see the module docstring (Mironov 2012) for why a real deployment needs
    a cryptographically secure, floating-point-safe sampler (snapping or discrete Laplace).
    """
    b = laplace_scale(sensitivity, epsilon)
    size = _size(size)
    if np.ndim(value) == 0 and not isinstance(value, str | bytes):
        v = checks.real(value, "value")
        rng = checks.numpy_rng(seed)
        if size is None:
            return v + float(rng.laplace(0.0, b)) if b > 0 else v
        return v + (rng.laplace(0.0, b, size=size) if b > 0 else np.zeros(size))
    # (mutation testing, equivalent: dtype="float" is checks.array's default)
    arr = checks.array(value, "value", dtype="float")
    if size is not None:
        raise ValueError("size is only allowed with a scalar value; pass an array of answers")
    rng = checks.numpy_rng(seed)
    return arr + (rng.laplace(0.0, b, size=arr.shape) if b > 0 else np.zeros(arr.shape))


# --------------------------------------------------------------------------- bounded queries
@dataclass(frozen=True)
class DPRelease:
    """A differentially private answer and how it was produced.

    ``value``: the noisy answer (float, or ndarray when several draws were requested);
    ``epsilon``: privacy loss of this release; ``sensitivity`` and ``scale`` of the Laplace noise
    (for the unknown-n mean: of the noisy sum); ``n_missing_dropped``: missing values excluded
    (curator-side information, not part of the DP release); ``details``: extra parameters.
    """

    value: float | np.ndarray
    epsilon: float
    sensitivity: float
    scale: float
    n_missing_dropped: int
    details: dict = field(default_factory=dict)


def clipped_sum(values: Any, lower: float, upper: float, missing: MissingPolicy = "raise") -> float:
    """Exact (non-private) sum of ``values`` clipped to ``[lower, upper]``:
    :math:`\\sum_i \\min(\\max(x_i, L), U)`.

    Clipping bounds each person's contribution, so the sum has add/remove sensitivity
    :math:`\\max(|L|, |U|)` whatever the data (Dwork & Roth 2014, sec. 3.3). Summed with
    ``math.fsum`` (exact rounding). Missing values: see :func:`split_missing`.
    """
    lo, hi = _bounds(lower, upper)
    present, _ = split_missing(values, missing)
    return math.fsum(np.clip(present, lo, hi).tolist())


def sum_sensitivity(lower: float, upper: float) -> float:
    """Add/remove sensitivity of a sum clipped to ``[lower, upper]``: :math:`\\max(|L|, |U|)`
    (adding a person adds one clipped value; under replace-one it would be :math:`U - L`)."""
    lo, hi = _bounds(lower, upper)
    return max(abs(lo), abs(hi))


def noisy_sum(
    values: Any,
    lower: float,
    upper: float,
    epsilon: float,
    seed: Any = None,
    *,
    missing: MissingPolicy = "raise",
    size: int | None = None,
) -> DPRelease:
    """:math:`\\varepsilon`-DP sum: :math:`\\sum_i \\mathrm{clip}(x_i, L, U) + \\mathrm{Laplace}
    (\\max(|L|,|U|)/\\varepsilon)` under add/remove-one-person neighbours (Dwork & Roth 2014,
    sec. 3.3).

    ``size`` returns that many independent noisy answers (Monte Carlo of the mechanism; each
    draw alone is one epsilon-DP release, releasing all of them would cost ``size * epsilon``).
    """
    eps = _epsilon(epsilon)
    lo, hi = _bounds(lower, upper)
    rng = checks.numpy_rng(seed)
    present, n_missing = split_missing(values, missing)
    true = math.fsum(np.clip(present, lo, hi).tolist())
    sens = max(abs(lo), abs(hi))
    out = laplace_mechanism(true, sens, eps, rng, size=size)
    return DPRelease(out, eps, sens, sens / eps, n_missing, {"lower": lo, "upper": hi})


def noisy_count(
    values: Any,
    epsilon: float,
    seed: Any = None,
    *,
    missing: MissingPolicy = "raise",
    size: int | None = None,
) -> DPRelease:
    """:math:`\\varepsilon`-DP count of the (non-missing) records: :math:`n + \\mathrm{Laplace}
    (1/\\varepsilon)`; a count has sensitivity 1 under add/remove (Dwork & Roth 2014, ex. 3.1).

    With ``missing="drop"`` it counts the people with a value (a person with a missing value
    counts 0, one with a value counts 1: still sensitivity 1). For a predicate count ("income
    above t") use :func:`count_above` for the true value and :func:`laplace_mechanism` with
    sensitivity 1.
    """
    eps = _epsilon(epsilon)
    rng = checks.numpy_rng(seed)
    present, n_missing = split_missing(values, missing)
    out = laplace_mechanism(float(present.size), 1.0, eps, rng, size=size)
    return DPRelease(out, eps, 1.0, 1.0 / eps, n_missing)


def count_above(values: Any, threshold: float, missing: MissingPolicy = "raise") -> int:
    """Exact (non-private) count :math:`|\\{i : x_i > t\\}|` of non-missing values above
    ``threshold``; sensitivity 1. A missing value is neither above nor below: it is excluded
    (``missing="drop"``) or refused (``"raise"``), never counted as 0."""
    t = checks.real(threshold, "threshold")
    present, _ = split_missing(values, missing)
    return int((present > t).sum())


def noisy_mean(
    values: Any,
    lower: float,
    upper: float,
    epsilon: float,
    seed: Any = None,
    *,
    n: int,
    missing: MissingPolicy = "raise",
    size: int | None = None,
) -> DPRelease:
    """:math:`\\varepsilon`-DP mean under **replace-one** neighbours with a public ``n``:
    :math:`\\frac{1}{n}\\sum_i \\mathrm{clip}(x_i, L, U) + \\mathrm{Laplace}\\big(\\frac{U-L}{n
    \\varepsilon}\\big)`.

    With n public the neighbours are "replace one person" (bounded DP), so one person moves the
    clipped sum by at most :math:`U - L` and the mean by :math:`(U - L)/n` (Dwork & Roth 2014,
    sec. 2.3 and 3.3). Under add/remove neighbours this release is **not** private (it reveals
    n); use :func:`noisy_mean_unknown_n` there. ``n`` must equal the number of non-missing values
    averaged (a mismatch would make the sensitivity wrong, so it raises).
    """
    eps = _epsilon(epsilon)
    lo, hi = _bounds(lower, upper)
    rng = checks.numpy_rng(seed)
    n = checks.integer(n, "n", low=1)
    present, n_missing = split_missing(values, missing)
    if present.size != n:
        raise ValueError(
            f"n must equal the number of non-missing values averaged ({present.size}), got {n}"
        )
    true = math.fsum(np.clip(present, lo, hi).tolist()) / n
    sens = (hi - lo) / n
    out = laplace_mechanism(true, sens, eps, rng, size=size)
    return DPRelease(out, eps, sens, sens / eps, n_missing, {"lower": lo, "upper": hi, "n": n})


def noisy_mean_unknown_n(
    values: Any,
    lower: float,
    upper: float,
    epsilon_count: float,
    epsilon_sum: float,
    seed: Any = None,
    *,
    missing: MissingPolicy = "raise",
    size: int | None = None,
) -> DPRelease:
    """:math:`(\\varepsilon_c + \\varepsilon_s)`-DP mean under add/remove neighbours (n private):
    :math:`\\hat\\mu = \\mathrm{clip}\\big(\\tilde S / \\max(\\tilde n, 1), L, U\\big)` with
    :math:`\\tilde S = \\sum_i \\mathrm{clip}(x_i,L,U) + \\mathrm{Laplace}(\\max(|L|,|U|)/
    \\varepsilon_s)` and :math:`\\tilde n = n + \\mathrm{Laplace}(1/\\varepsilon_c)`.

    Two Laplace releases; by sequential composition the total loss is
    :math:`\\varepsilon_c + \\varepsilon_s` (Dwork et al. 2006; Dwork & Roth 2014, Thm 3.14).
    The division, the floor of 1 on the count and the final clip are post-processing (free).
    The estimator is biased for small n; ``details`` holds the noisy count and sum (each a
    release), the noise draws coming from one generator so they are independent.
    """
    eps_c = _epsilon(epsilon_count, "epsilon_count")
    eps_s = _epsilon(epsilon_sum, "epsilon_sum")
    lo, hi = _bounds(lower, upper)
    rng = checks.numpy_rng(seed)
    present, n_missing = split_missing(values, missing)
    true_sum = math.fsum(np.clip(present, lo, hi).tolist())
    sens = max(abs(lo), abs(hi))
    s_noisy = laplace_mechanism(true_sum, sens, eps_s, rng, size=size)
    n_noisy = laplace_mechanism(float(present.size), 1.0, eps_c, rng, size=size)
    mean = np.clip(np.asarray(s_noisy) / np.maximum(np.asarray(n_noisy), 1.0), lo, hi)
    value = float(mean) if size is None else mean
    details = {"lower": lo, "upper": hi, "epsilon_count": eps_c, "epsilon_sum": eps_s,
               "noisy_sum": s_noisy, "noisy_count": n_noisy}
    return DPRelease(value, eps_c + eps_s, sens, sens / eps_s, n_missing, details)


# --------------------------------------------------------------------------- counting queries
def prob_noisy_count_exceeds(
    true_count: Any, threshold: Any, epsilon: Any, sensitivity: float = 1.0
) -> float | np.ndarray:
    """Closed form of :math:`\\Pr[c + Z > t]`, :math:`Z \\sim \\mathrm{Laplace}(0, b)`,
    :math:`b = \\Delta/\\varepsilon`.

    With :math:`d = t - c`, from the two branches of the Laplace CDF
    :math:`F(z) = \\tfrac12 e^{z/b}` for :math:`z < 0` and :math:`1 - \\tfrac12 e^{-z/b}` for
    :math:`z \\ge 0`:

    .. math:: \\Pr[c + Z > t] = 1 - F(d) =
              \\begin{cases} \\tfrac12 e^{-d/b} & d \\ge 0 \\ (t \\ge c)\\\\
                             1 - \\tfrac12 e^{d/b} & d < 0 \\ (t < c) \\end{cases}

    Limits: 1/2 at :math:`t = c`; :math:`\\to 1/2` as :math:`\\varepsilon \\to 0`; :math:`\\to 1`
    (resp. 0) when the threshold is far below (above) the count. Symmetry:
    :math:`P(c, t) + P(t, c) = 1`. With ``sensitivity=0`` (no noise) it is 1 if c > t else 0.
    ``true_count``, ``threshold``, ``epsilon`` are numbers or array-likes that broadcast (numpy);
    scalars give a float.
    """
    sens = checks.real(sensitivity, "sensitivity", low=0.0)
    c = _reals(true_count, "true_count")
    t = _reals(threshold, "threshold")
    eps = _reals(epsilon, "epsilon")
    if (eps <= 0).any():
        raise ValueError(f"epsilon must hold numbers > 0, got minimum {eps.min():g}")
    try:
        c, t, eps = np.broadcast_arrays(c, t, eps)
    except ValueError as exc:
        raise ValueError(f"true_count, threshold and epsilon must broadcast: {exc}") from None
    d = t - c
    if sens == 0:
        # (mutation testing, equivalent: astype(None) converts to float64 too)
        p = (d < 0).astype(float)
    else:
        half_tail = 0.5 * np.exp(-np.abs(d) * eps / sens)  # exp of a number <= 0: no overflow
        # (mutation testing, equivalent: d > 0 for d >= 0, since at d = 0 both branches give 1/2)
        p = np.where(d >= 0, half_tail, 1.0 - half_tail)  # at d = 0 both branches give 1/2
    return float(p) if p.ndim == 0 else p


def monte_carlo_exceeds(
    true_count: float,
    threshold: float,
    epsilon: float,
    seed: Any = None,
    n_draws: int = 1_000_000,
    sensitivity: float = 1.0,
    # (mutation testing, equivalent: another default chunk gives the same hits, since NumPy's
    # Generator draws the same stream in chunks of any size: laplace(size=4) then laplace(size=6)
    # equals laplace(size=10), checked)
    chunk: int = 1_000_000,
) -> tuple[float, float]:
    """Monte Carlo estimate of :math:`\\Pr[c + Z > t]` from ``n_draws`` Laplace draws.

    Returns ``(p_hat, standard_error)`` with the plug-in
    :math:`\\mathrm{se} = \\sqrt{\\hat p(1-\\hat p)/N}`. Draws are made in chunks of at most
    ``chunk`` to bound memory.
    """
    c = checks.real(true_count, "true_count")
    t = checks.real(threshold, "threshold")
    b = laplace_scale(sensitivity, epsilon)
    rng = checks.numpy_rng(seed)
    n_draws = checks.integer(n_draws, "n_draws", low=1)
    chunk = checks.integer(chunk, "chunk", low=1)
    hits = 0
    left = n_draws
    while left:
        m = min(left, chunk)
        z = rng.laplace(0.0, b, size=m) if b > 0 else np.zeros(m)
        hits += int(np.count_nonzero(c + z > t))
        left -= m
    p = hits / n_draws
    return p, math.sqrt(p * (1.0 - p) / n_draws)


# --------------------------------------------------------------------------- analysis helpers
def clipping_tradeoff(
    values: Any,
    bounds: Any,
    epsilon: float,
    missing: MissingPolicy = "raise",
) -> pd.DataFrame:
    """Bias-from-clipping vs Laplace noise of the clipped **sum** for each clip bound B in
    ``bounds`` (range ``[0, B]``, values must be >= 0), at a fixed ``epsilon``.

    Columns: ``B``; ``bias`` :math:`= \\sum_i x_i - \\sum_i \\min(x_i, B)` (>= 0, the income
    clipping removes); ``noise_sd`` :math:`= \\sqrt2\\,B/\\varepsilon`; ``rmse``
    :math:`= \\sqrt{\\mathrm{bias}^2 + 2B^2/\\varepsilon^2}`; ``n_clipped`` (people above B).
    This looks at the raw data: a curator's diagnostic for teaching, not a private way to pick B.
    """
    eps = _epsilon(epsilon)
    present, _ = split_missing(values, missing)
    if (present < 0).any():
        raise ValueError("values must be >= 0 for clipping to [0, B]")
    b_arr = checks.array(bounds, "bounds", ndim=1)
    if (b_arr <= 0).any():
        raise ValueError(f"bounds must hold numbers > 0, got minimum {b_arr.min():g}")
    raw = math.fsum(present.tolist())
    rows = []
    for bound in b_arr.tolist():
        bias = raw - math.fsum(np.minimum(present, bound).tolist())
        sd = math.sqrt(2.0) * bound / eps
        rows.append({"B": bound, "bias": bias, "noise_sd": sd, "rmse": math.hypot(bias, sd),
                     "n_clipped": int((present > bound).sum())})
    return pd.DataFrame(rows)


def empirical_log_ratio(
    samples_a: Any, samples_b: Any, bins: Any, min_count: int = 1000
) -> pd.DataFrame:
    """Histogram two samples of mechanism outputs on common ``bins`` and estimate the log ratio
    of output probabilities per bin, :math:`\\log(\\hat p_A / \\hat p_B)`, for the bins where both
    counts are at least ``min_count``.

    For an :math:`\\varepsilon`-DP mechanism and neighbouring inputs A, B every bin satisfies
    :math:`|\\log(p_A/p_B)| \\le \\varepsilon` (Dwork & Roth 2014, Def. 2.4); the estimate has
    (delta-method) standard error :math:`\\sqrt{1/k_A - 1/N_A + 1/k_B - 1/N_B}` (k: bin count,
    N: sample size). Columns: ``left``, ``right``, ``count_a``, ``count_b``, ``log_ratio``,
    ``se``.
    """
    a = checks.array(samples_a, "samples_a", ndim=1)
    b = checks.array(samples_b, "samples_b", ndim=1)
    edges = checks.array(bins, "bins", ndim=1)
    if edges.size < 2 or not (np.diff(edges) > 0).all():
        raise ValueError("bins must be at least two strictly increasing edges")
    min_count = checks.integer(min_count, "min_count", low=1)
    ka, _ = np.histogram(a, edges)
    kb, _ = np.histogram(b, edges)
    keep = (ka >= min_count) & (kb >= min_count)
    # (mutation testing, equivalent: astype(None) converts to float64 too, NumPy's default dtype)
    ka, kb = ka[keep].astype(float), kb[keep].astype(float)
    return pd.DataFrame({
        "left": edges[:-1][keep],
        "right": edges[1:][keep],
        "count_a": ka.astype(int),
        "count_b": kb.astype(int),
        "log_ratio": np.log(ka / a.size) - np.log(kb / b.size),
        "se": np.sqrt(1 / ka - 1 / a.size + 1 / kb - 1 / b.size),
    })


def dp_clip_bound(
    values: Any,
    candidates: Any,
    epsilon: float,
    seed: Any = None,
    quantile: float = 0.99,
    missing: MissingPolicy = "raise",
) -> tuple[float, pd.DataFrame]:
    r"""Choose a clip bound B privately: the smallest public candidate above the noisy
    ``quantile`` of the data, from an :math:`\varepsilon`-DP histogram.

    The candidates ``c_1 < ... < c_k`` must be fixed *before* looking at the data (domain
    knowledge only). The histogram counts people in the disjoint bins ``(-inf, c_1], (c_1, c_2],
    ..., (c_k, inf)``; adding or removing one person changes one bin by 1, so under add/remove
    neighbours the whole vector has L1 sensitivity 1 and one Laplace(1/epsilon) draw per bin is
    epsilon-DP (Dwork & Roth 2014, sec. 3.3 "histogram queries"; under replace-one the L1
    sensitivity would be 2). Everything after is post-processing:
    :math:`\tilde N_{>c_j} = \sum_{i > j} \tilde h_i`, and B is the smallest :math:`c_j` with
    :math:`\tilde N_{>c_j} \le (1 - q) \sum_i \tilde h_i` (the largest candidate if none
    qualifies). Returns ``(B, table)`` with the released noisy bin counts.
    """
    eps = _epsilon(epsilon)
    rng = checks.numpy_rng(seed)
    q = checks.fraction(quantile, "quantile", open_low=True, open_high=True)
    cand = checks.array(candidates, "candidates", ndim=1)
    if not (np.diff(cand) > 0).all():
        raise ValueError("candidates must be strictly increasing")
    present, _ = split_missing(values, missing)
    edges = np.concatenate([[-np.inf], cand, [np.inf]])
    # bins (e_i, e_{i+1}]: count_i = #(x <= e_{i+1}) - #(x <= e_i)
    at_or_below = np.searchsorted(np.sort(present), edges, side="right")
    # (mutation testing, equivalent: astype(None) converts to float64 too)
    counts = np.diff(at_or_below).astype(float)
    noisy = laplace_mechanism(counts, 1.0, eps, rng)
    noisy_total = math.fsum(noisy.tolist())
    above = np.array([math.fsum(noisy[j + 1 :].tolist()) for j in range(cand.size)])
    # (mutation testing, equivalent in distribution: < for <= differs only on a tie of a
    # continuous Laplace draw, an event of probability 0)
    ok = np.flatnonzero(above <= (1.0 - q) * noisy_total)  # a tie has probability 0 (b > 0)
    bound = float(cand[ok[0]]) if ok.size else float(cand[-1])
    names = [f"<= {cand[0]:,.0f}"]
    # (mutation testing, equivalent: strict=False or left out, since cand[:-1] and cand[1:]
    # have the same length by construction)
    names += [f"({lo:,.0f}, {hi:,.0f}]" for lo, hi in zip(cand[:-1], cand[1:], strict=True)]
    names += [f"> {cand[-1]:,.0f}"]
    return bound, pd.DataFrame({"bin": names, "noisy_count": noisy})


def optimal_split(a1: float, a2: float) -> float:
    r"""Share of a total budget :math:`\varepsilon` to give query 1 so that
    :math:`a_1/\varepsilon_1^2 + a_2/\varepsilon_2^2` is minimal subject to
    :math:`\varepsilon_1 + \varepsilon_2 = \varepsilon`.

    For Laplace noise the expected squared relative error of query j is
    :math:`E[(Z_j/f_j)^2] = 2 (\Delta_j / f_j)^2/\varepsilon_j^2`, so
    :math:`a_j = 2(\Delta_j/f_j)^2` (weight it by how accurate query j must be). Setting the
    derivative of :math:`a_1/\varepsilon_1^2 + a_2/(\varepsilon-\varepsilon_1)^2` to zero gives
    :math:`a_1/\varepsilon_1^3 = a_2/\varepsilon_2^3`, i.e.
    :math:`\varepsilon_1/\varepsilon = a_1^{1/3} / (a_1^{1/3} + a_2^{1/3})` (independent of
    :math:`\varepsilon`; the objective is convex on (0, epsilon) so this is the minimum).
    """
    c1 = np.cbrt(checks.real(a1, "a1", low=0.0, low_open=True))
    c2 = np.cbrt(checks.real(a2, "a2", low=0.0, low_open=True))
    return float(c1 / (c1 + c2))


def noise_table(
    true_value: float,
    sensitivity: float,
    epsilons: Any,
    seed: Any = None,
    n_draws: int = 10_000,
) -> tuple[pd.DataFrame, dict[float, np.ndarray]]:
    r"""Laplace mechanism on one true answer for several epsilons, ``n_draws`` draws each (a
    simulation of what the mechanism *would* release: the curator's view, not releases).

    Table columns: ``epsilon``, ``scale`` (b), ``true``, ``mean`` and ``sd`` of the draws,
    ``sd_theory`` (:math:`\sqrt2 b`), ``mean_abs_rel_error``
    (:math:`\overline{|\tilde f - f|}/|f|`) and its expectation ``rel_error_theory``
    (:math:`b/|f|`). Also returns the draws per epsilon (for plots).
    """
    t = checks.real(true_value, "true_value")
    if t == 0:
        raise ValueError("true_value must be non-zero (relative errors are reported)")
    checks.real(sensitivity, "sensitivity", low=0.0)
    n_draws = checks.integer(n_draws, "n_draws", low=2)
    eps_arr = checks.array(epsilons, "epsilons", ndim=1)
    rng = checks.numpy_rng(seed)
    rows, draws = [], {}
    for eps in eps_arr.tolist():
        b = laplace_scale(sensitivity, eps)
        d = laplace_mechanism(t, sensitivity, eps, rng, size=n_draws)
        draws[eps] = d
        rows.append({"epsilon": eps, "scale": b, "true": t, "mean": float(d.mean()),
                     "sd": float(d.std(ddof=1)), "sd_theory": math.sqrt(2.0) * b,
                     "mean_abs_rel_error": float(np.abs(d - t).mean() / abs(t)),
                     "rel_error_theory": b / abs(t)})
    return pd.DataFrame(rows), draws


def exceed_table(
    counts: dict,
    gaps: Any,
    epsilons: Any,
    seed: Any = None,
    n_draws: int = 1_000_000,
) -> pd.DataFrame:
    r"""Closed form vs Monte Carlo of :math:`\Pr[c + Z > t]` for every group, threshold
    :math:`t = c + \mathrm{gap}` and epsilon (sensitivity 1).

    ``counts`` maps a group name to its true count (>= 0); ``gaps`` and ``epsilons`` are
    non-empty 1-D grids. Columns: ``group``, ``true_count``, ``gap``, ``threshold``,
    ``epsilon``, ``closed_form``, ``monte_carlo``, ``se``, ``z``, ``abs_diff``.
    ``se`` is the standard error of the Monte Carlo fraction if the closed form p is right,
    :math:`\sqrt{p(1-p)/N}` (unlike the plug-in :math:`\sqrt{\hat p(1-\hat p)/N}` it is not 0
    when no draw lands above a far threshold); ``z = (MC - closed) / se`` (NaN only if p is
    exactly 0 or 1).
    """
    if not isinstance(counts, dict):
        raise TypeError(f"counts must be a dict of group -> true count, got "
                        f"{type(counts).__name__}")
    if not counts:
        raise ValueError("counts must be a non-empty dict of group -> true count")
    true = {g: checks.real(c, f"counts[{g!r}]", low=0.0) for g, c in counts.items()}
    gap_arr = checks.array(gaps, "gaps", ndim=1)
    eps_arr = checks.array(epsilons, "epsilons", ndim=1)
    if (eps_arr <= 0).any():
        raise ValueError(f"epsilons must hold numbers > 0, got minimum {eps_arr.min():g}")
    # (mutation testing, equivalent: without low=1, monte_carlo_exceeds refuses n_draws < 1 with
    # the same message before anything is drawn, and n_draws is the last argument checked)
    n_draws = checks.integer(n_draws, "n_draws", low=1)
    rng = checks.numpy_rng(seed)
    rows = []
    for group, c in true.items():
        for gap in gap_arr.tolist():
            for eps in eps_arr.tolist():
                p = prob_noisy_count_exceeds(c, c + gap, eps)
                p_hat, _ = monte_carlo_exceeds(c, c + gap, eps, rng, n_draws=n_draws)
                se = math.sqrt(p * (1.0 - p) / n_draws)
                rows.append({"group": group, "true_count": c, "gap": gap, "threshold": c + gap,
                             "epsilon": eps, "closed_form": p, "monte_carlo": p_hat, "se": se,
                             # (mutation testing, equivalent: float("NAN") is nan too)
                             "z": (p_hat - p) / se if se > 0 else float("nan"),
                             "abs_diff": abs(p_hat - p)})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- composition
def advanced_composition(epsilon: float, k: int, delta_prime: float) -> float:
    r"""Total privacy loss of ``k`` adaptively chosen :math:`\varepsilon`-DP mechanisms by the
    advanced composition theorem (Dwork, Rothblum, Vadhan 2010, Thm III.3; Dwork & Roth 2014,
    Thm 3.20): for every :math:`\delta' > 0` the composition is
    :math:`(\varepsilon', \delta')`-DP with

    .. math:: \varepsilon' = \sqrt{2k\ln(1/\delta')}\,\varepsilon + k\,\varepsilon
              (e^{\varepsilon} - 1).

    Basic composition gives :math:`(k\varepsilon, 0)`; the advanced bound grows like
    :math:`\sqrt k` and wins for many small-epsilon queries, at the price of a
    :math:`\delta' > 0` chance that the guarantee fails. ``epsilon`` > 0, ``k`` >= 1,
    ``delta_prime`` in (0, 1).
    """
    eps = _epsilon(epsilon)
    k = checks.integer(k, "k", low=1)
    dp_ = checks.fraction(delta_prime, "delta_prime", open_low=True, open_high=True)
    return math.sqrt(2.0 * k * math.log(1.0 / dp_)) * eps + k * eps * math.expm1(eps)


class BudgetExceededError(RuntimeError):
    """Raised when a query would spend more privacy budget than remains; nothing is answered."""


class PrivacyBudget:
    """A privacy-loss ledger under basic sequential composition: k mechanisms that are
    :math:`\\varepsilon_1, \\dots, \\varepsilon_k`-DP are together
    :math:`\\sum_j \\varepsilon_j`-DP (Dwork et al. 2006; Dwork & Roth 2014, Thm 3.16).

    ``spend(epsilon, label)`` records a query, or raises :class:`BudgetExceededError` (and records
    nothing) if it would take the total above ``total_epsilon``. Sums use ``math.fsum`` and a
    relative tolerance ``rel_tol`` (default 1e-9, below 1e-3) so that, e.g., ten spends of 0.1
    exactly use a budget of 1.0 instead of being refused by a rounding error. ``answer(...)``
    spends first and then runs the mechanism, so a refused query never touches the data.
    """

    def __init__(self, total_epsilon: float, rel_tol: float = 1e-9):
        self.total_epsilon = _epsilon(total_epsilon, "total_epsilon")
        self.rel_tol = checks.real(rel_tol, "rel_tol", low=0.0, high=1e-3, high_open=True)
        self._entries: list[tuple[str, float]] = []

    @property
    def spent(self) -> float:
        """Total epsilon spent so far (exactly rounded sum)."""
        return math.fsum(e for _, e in self._entries)

    @property
    def remaining(self) -> float:
        """Budget left, ``max(total - spent, 0)``; a value within tolerance of 0 is 0."""
        left = self.total_epsilon - self.spent
        return 0.0 if left <= self.rel_tol * self.total_epsilon else left

    def can_spend(self, epsilon: float) -> bool:
        """Whether ``epsilon`` more fits in the budget (within the relative tolerance)."""
        eps = _epsilon(epsilon)
        new_total = math.fsum([*(e for _, e in self._entries), eps])
        return new_total <= self.total_epsilon * (1.0 + self.rel_tol)

    def spend(self, epsilon: float, label: str) -> float:
        """Record a query costing ``epsilon``; returns the remaining budget.

        Raises :class:`BudgetExceededError` (recording nothing) if the query would overspend,
        ``ValueError`` for a bad epsilon, ``TypeError``/``ValueError`` for a bad label.
        """
        eps = _epsilon(epsilon)
        if not isinstance(label, str):
            raise TypeError(f"label must be a str, got {type(label).__name__}")
        if not label.strip():
            raise ValueError("label must be a non-empty string")
        if not self.can_spend(eps):
            raise BudgetExceededError(
                f"query {label!r} needs epsilon={eps:g} but only {self.remaining:g} of "
                f"{self.total_epsilon:g} remains; the query was not answered"
            )
        self._entries.append((label, eps))
        return self.remaining

    def answer(self, label: str, epsilon: float, mechanism, *args, **kwargs):
        """Spend ``epsilon`` under ``label``, then return ``mechanism(*args, epsilon=epsilon,
        **kwargs)``. Refused queries raise before the mechanism runs; if the mechanism itself
        raises (bad input, nothing released) the spend is rolled back."""
        if not callable(mechanism):
            raise TypeError(f"mechanism must be callable, got {type(mechanism).__name__}")
        self.spend(epsilon, label)
        try:
            return mechanism(*args, epsilon=epsilon, **kwargs)
        except Exception:
            self._entries.pop()
            raise

    @property
    def ledger(self) -> pd.DataFrame:
        """One row per recorded query: ``label``, ``epsilon``, ``cumulative``, ``remaining``."""
        rows, acc = [], []
        for label, eps in self._entries:
            acc.append(eps)
            cum = math.fsum(acc)
            left = self.total_epsilon - cum
            rows.append({"label": label, "epsilon": eps, "cumulative": cum,
                         "remaining": 0.0 if left <= self.rel_tol * self.total_epsilon else left})
        return pd.DataFrame(rows, columns=["label", "epsilon", "cumulative", "remaining"])

    def __repr__(self) -> str:
        return (
            f"PrivacyBudget(total_epsilon={self.total_epsilon:g}, spent={self.spent:g}, "
            f"remaining={self.remaining:g}, queries={len(self._entries)})"
        )
