"""Group fairness metrics and data-level mitigations (Task 3, UCI Adult).

Everything takes plain NumPy arrays or pandas Series: ``y_true`` / ``y_pred`` are binary 0/1
(or bool) labels, ``sensitive`` holds the protected attribute of each row (any hashable values,
e.g. ``"Male"`` / ``"Female"``), ``privileged`` is the value of the privileged group; every
other value is the unprivileged group. Notation: :math:`\\hat y` the decision, :math:`S` the
protected attribute, :math:`p` privileged, :math:`u` unprivileged.

Metrics
    :func:`selection_rate`, :func:`disparate_impact` (Feldman et al. 2015),
    :func:`statistical_parity_difference` (Calders & Verwer 2010),
    :func:`zemel_discrimination` and :func:`consistency` (Zemel et al. 2013),
    :func:`equal_opportunity_difference` and :func:`average_odds_difference` (Hardt et al. 2016),
    :func:`group_report` (per-group confusion counts and rates).

Mitigations
    :func:`reweighing_weights` and :func:`massage` (Kamiran & Calders 2012, pre-processing),
    :func:`group_thresholds` / :func:`apply_thresholds` (Hardt et al. 2016, post-processing).

Plumbing (scikit-learn)
    :func:`adult_pipeline`, :func:`fit_adult_model`, :func:`summarize`, :func:`bootstrap_ci`, :func:`bootstrap_mean_ci`,
    :func:`reweighing_sweep`, :func:`massaging_sweep`, :func:`threshold_sweep`,
    :func:`interpolate_knob`.

A quantity that is undefined (a ratio with a zero denominator, the rate of an empty group) raises
``ValueError``; nothing here returns NaN.

References
    M. Feldman, S. Friedler, J. Moeller, C. Scheidegger, S. Venkatasubramanian. Certifying and
    removing disparate impact. KDD 2015.
    T. Calders, S. Verwer. Three naive Bayes approaches for discrimination-free classification.
    Data Mining and Knowledge Discovery 21(2), 2010.
    R. Zemel, Y. Wu, K. Swersky, T. Pitassi, C. Dwork. Learning fair representations. ICML 2013.
    F. Kamiran, T. Calders. Data preprocessing techniques for classification without
    discrimination. Knowledge and Information Systems 33(1), 2012.
    M. Hardt, E. Price, N. Srebro. Equality of opportunity in supervised learning. NeurIPS 2016.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits

__all__ = [
    "CATEGORICAL",
    "LABEL",
    "NUMERIC",
    "PRIVILEGED",
    "SENSITIVE",
    "adult_pipeline",
    "apply_thresholds",
    "association_with",
    "average_odds_difference",
    "bootstrap_ci",
    "bootstrap_mean_ci",
    "consistency",
    "disparate_impact",
    "equal_opportunity_difference",
    "fit_adult_model",
    "group_report",
    "group_thresholds",
    "massage",
    "massage_count",
    "massaging_sweep",
    "interpolate_knob",
    "nearest_neighbors",
    "plot_tradeoff",
    "reweighing_sweep",
    "reweighing_weights",
    "selection_rate",
    "statistical_parity_difference",
    "summarize",
    "threshold_sweep",
    "zemel_discrimination",
]

# ---------------------------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------------------------


def _binary(name: str, values) -> np.ndarray:
    """Return ``values`` as a 1-D int64 array of 0/1, or raise naming ``name``."""
    if isinstance(values, (str, bytes)) or np.isscalar(values):
        raise TypeError(
            f"{name} must be a 1-D array-like of 0/1 labels, got {type(values).__name__}"
        )
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty; at least one example is needed")
    if arr.dtype == bool:
        return arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{name} must hold numeric 0/1 or bool labels, got dtype {arr.dtype}")
    bad = ~np.isin(arr, (0, 1))
    if bad.any():
        shown = np.unique(arr[bad])[:5].tolist()
        raise ValueError(f"{name} must be binary (only 0 and 1), found other values {shown}")
    return arr.astype(np.int64)


def _sensitive(values, n: int, other: str = "y_pred") -> np.ndarray:
    """Return the protected attribute as a 1-D array of length ``n`` without missing values."""
    if isinstance(values, (str, bytes)) or np.isscalar(values):
        raise TypeError(f"sensitive must be a 1-D array-like, got {type(values).__name__}")
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"sensitive must be 1-D, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"sensitive has length {arr.shape[0]} but {other} has length {n}")
    if pd.isna(arr).any():
        raise ValueError("sensitive has missing values; every row needs a group")
    return arr


def _same_length(name: str, arr: np.ndarray, n: int, other: str) -> None:
    if arr.shape[0] != n:
        raise ValueError(f"{name} has length {arr.shape[0]} but {other} has length {n}")


def _weights(sample_weight, n: int, other: str) -> np.ndarray:
    if sample_weight is None:
        return np.ones(n)
    w = np.asarray(sample_weight, dtype=float)
    if w.ndim != 1:
        raise ValueError(f"sample_weight must be 1-D, got shape {w.shape}")
    _same_length("sample_weight", w, n, other)
    if not np.all(np.isfinite(w)) or (w < 0).any():
        raise ValueError("sample_weight must be finite and non-negative")
    return w


def _privileged_mask(sensitive: np.ndarray, privileged) -> np.ndarray:
    """Boolean mask of the privileged rows; both groups must be non-empty."""
    mask = np.asarray(sensitive == privileged, dtype=bool)
    if mask.shape != sensitive.shape or not mask.any():
        present = pd.unique(sensitive)[:10].tolist()
        raise ValueError(
            f"privileged={privileged!r} does not occur in sensitive (values present: {present})"
        )
    if mask.all():
        raise ValueError(
            f"every row has sensitive == {privileged!r}: the unprivileged group is empty, "
            "so a between-group metric is undefined"
        )
    return mask


def _rate(y: np.ndarray, mask: np.ndarray, w: np.ndarray, what: str) -> float:
    """Weighted mean of ``y`` over ``mask``; an empty (or zero-weight) subset is an error."""
    total = w[mask].sum()
    if not mask.any() or total <= 0:
        raise ValueError(f"{what} is undefined: the subset it is computed on is empty")
    return float((w[mask] * y[mask]).sum() / total)


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


def selection_rate(y_pred, sensitive=None, group=None, *, sample_weight=None) -> float:
    """Fraction of positive decisions, :math:`P(\\hat y = 1)` or :math:`P(\\hat y = 1 \\mid S = g)`.

    With ``sensitive`` and ``group`` the rate is taken inside the group ``S = group``; with
    ``sample_weight`` it is the weighted rate :math:`\\sum_i w_i \\hat y_i / \\sum_i w_i`.
    Applied to true labels it is the base rate. An empty group raises ``ValueError``.
    """
    y = _binary("y_pred", y_pred)
    w = _weights(sample_weight, y.shape[0], "y_pred")
    if sensitive is None:
        if group is not None:
            raise ValueError("group was given without sensitive; pass both or neither")
        return _rate(y, np.ones(y.shape[0], dtype=bool), w, "selection_rate")
    s = _sensitive(sensitive, y.shape[0])
    if group is None:
        raise ValueError("sensitive was given without group; pass the group to compute the rate of")
    mask = np.asarray(s == group, dtype=bool)
    if mask.shape != s.shape or not mask.any():
        raise ValueError(f"group={group!r} does not occur in sensitive")
    return _rate(y, mask, w, f"selection rate of group {group!r}")


def _group_rates(y_pred, sensitive, privileged, sample_weight) -> tuple[float, float]:
    y = _binary("y_pred", y_pred)
    s = _sensitive(sensitive, y.shape[0])
    w = _weights(sample_weight, y.shape[0], "y_pred")
    priv = _privileged_mask(s, privileged)
    return (
        _rate(y, ~priv, w, "selection rate of the unprivileged group"),
        _rate(y, priv, w, "selection rate of the privileged group"),
    )


def disparate_impact(y_pred, sensitive, privileged, *, sample_weight=None) -> float:
    """Disparate impact: :math:`DI = P(\\hat y=1 \\mid S=u) \\,/\\, P(\\hat y=1 \\mid S=p)`.

    Feldman et al. (2015) formalise the US EEOC "four-fifths rule": a decision procedure shows
    disparate impact when :math:`DI < 0.8`. :math:`DI = 1` is statistical parity. The ratio is
    undefined (``ValueError``) when the privileged group has no positive decisions.
    """
    rate_u, rate_p = _group_rates(y_pred, sensitive, privileged, sample_weight)
    if rate_p == 0:
        raise ValueError(
            "disparate impact is undefined: the privileged group's selection rate is 0"
        )
    return rate_u / rate_p


def statistical_parity_difference(y_pred, sensitive, privileged, *, sample_weight=None) -> float:
    """Statistical parity difference :math:`P(\\hat y=1 \\mid S=u) - P(\\hat y=1 \\mid S=p)`.

    Calders & Verwer (2010) call :math:`P(\\hat y=1 \\mid p) - P(\\hat y=1 \\mid u)` the
    discrimination score; this is its negative (AIF360's sign: negative = unprivileged
    disadvantaged). 0 is statistical (demographic) parity.
    """
    rate_u, rate_p = _group_rates(y_pred, sensitive, privileged, sample_weight)
    return rate_u - rate_p


def zemel_discrimination(y_pred, sensitive, privileged, *, sample_weight=None) -> float:
    """Zemel et al. (2013)'s discrimination :math:`yDisc = |P(\\hat y=1 \\mid u) - P(\\hat y=1 \\mid p)|`.

    The absolute value of :func:`statistical_parity_difference`; in [0, 1], 0 is parity.
    """
    return abs(
        statistical_parity_difference(y_pred, sensitive, privileged, sample_weight=sample_weight)
    )


def nearest_neighbors(X, k: int = 5) -> np.ndarray:
    """Indices (n, k) of each row's ``k`` nearest other rows (Euclidean, scikit-learn).

    A row is never its own neighbour (scikit-learn's ``kneighbors()`` without a query excludes
    it). Compute this once per feature matrix and pass it to :func:`consistency` to score many
    models on the same test set cheaply.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if not hasattr(X, "shape") or len(X.shape) != 2:
        raise ValueError("X must be a 2-D array (rows = examples, columns = features)")
    n = X.shape[0]
    if k >= n:
        raise ValueError(f"k must be smaller than the number of rows ({n}), got {k}")
    nn = NearestNeighbors(n_neighbors=k).fit(X)
    return nn.kneighbors(return_distance=False)


def consistency(X, y_pred, k: int = 5, *, neighbors=None) -> float:
    """Zemel et al. (2013)'s individual-fairness consistency :math:`yNN`.

    .. math:: yNN = 1 - \\frac{1}{N} \\sum_{n=1}^{N} \\Big| \\hat y_n - \\frac{1}{k}
              \\sum_{j \\in kNN(x_n)} \\hat y_j \\Big|

    where :math:`kNN(x_n)` are the ``k`` nearest other rows of ``X`` (the features, Euclidean).
    1 means similar individuals always get the same decision. ``neighbors`` (from
    :func:`nearest_neighbors`) skips the search; then ``X`` may be ``None``. (AIF360 counts the
    point itself among its ``k`` neighbours; Zemel et al. and this function do not.)
    """
    y = _binary("y_pred", y_pred)
    if neighbors is None:
        if X is None:
            raise ValueError("pass X (features) or neighbors (from nearest_neighbors)")
        if not hasattr(X, "shape") or len(X.shape) != 2:
            raise ValueError("X must be a 2-D array (rows = examples, columns = features)")
        _same_length("X", np.empty(X.shape[0]), y.shape[0], "y_pred")
        neighbors = nearest_neighbors(X, k)
    else:
        neighbors = np.asarray(neighbors)
        if neighbors.ndim != 2 or neighbors.shape[0] != y.shape[0]:
            raise ValueError(
                f"neighbors must have shape (len(y_pred), k) = ({y.shape[0]}, k), got {neighbors.shape}"
            )
        if (
            not np.issubdtype(neighbors.dtype, np.integer)
            or neighbors.min() < 0
            or neighbors.max() >= y.shape[0]
        ):
            raise ValueError("neighbors must hold integer row indices in [0, len(y_pred))")
    return float(1.0 - np.abs(y - y[neighbors].mean(axis=1)).mean())


def _conditional_rates(
    y_true, y_pred, sensitive, privileged, condition: int
) -> tuple[float, float]:
    """P(yhat=1 | y=condition, S=u), P(yhat=1 | y=condition, S=p)."""
    yt = _binary("y_true", y_true)
    yp = _binary("y_pred", y_pred)
    _same_length("y_pred", yp, yt.shape[0], "y_true")
    s = _sensitive(sensitive, yt.shape[0], "y_true")
    priv = _privileged_mask(s, privileged)
    w = np.ones(yt.shape[0])
    name = "true positive rate" if condition == 1 else "false positive rate"
    rate_u = _rate(
        yp,
        ~priv & (yt == condition),
        w,
        f"{name} of the unprivileged group (no y_true == {condition} there)",
    )
    rate_p = _rate(
        yp,
        priv & (yt == condition),
        w,
        f"{name} of the privileged group (no y_true == {condition} there)",
    )
    return rate_u, rate_p


def equal_opportunity_difference(y_true, y_pred, sensitive, privileged) -> float:
    """Equal opportunity difference :math:`TPR_u - TPR_p` (Hardt et al. 2016).

    :math:`TPR_g = P(\\hat y=1 \\mid y=1, S=g)`. 0 means qualified people are accepted at the
    same rate in both groups. A group without true positives raises ``ValueError``.
    """
    tpr_u, tpr_p = _conditional_rates(y_true, y_pred, sensitive, privileged, 1)
    return tpr_u - tpr_p


def average_odds_difference(y_true, y_pred, sensitive, privileged) -> float:
    """Average odds difference :math:`\\tfrac12[(FPR_u - FPR_p) + (TPR_u - TPR_p)]`.

    Equalised odds (Hardt et al. 2016) asks for both differences to be 0; this averages them
    (so errors of opposite sign can cancel: look at both in :func:`group_report`).
    """
    tpr_u, tpr_p = _conditional_rates(y_true, y_pred, sensitive, privileged, 1)
    fpr_u, fpr_p = _conditional_rates(y_true, y_pred, sensitive, privileged, 0)
    return 0.5 * ((fpr_u - fpr_p) + (tpr_u - tpr_p))


def group_report(y_true, y_pred, sensitive) -> pd.DataFrame:
    """Per-group table: size, base rate, selection rate, TPR, FPR, accuracy and confusion counts.

    One row per value of ``sensitive`` (sorted): ``size``, ``base_rate`` :math:`P(y=1 \\mid g)`,
    ``selection_rate`` :math:`P(\\hat y=1 \\mid g)`, ``tpr`` :math:`TP/(TP+FN)`, ``fpr``
    :math:`FP/(FP+TN)`, ``accuracy``, and ``tp``, ``fp``, ``tn``, ``fn``. A group without
    positive or without negative examples has an undefined TPR or FPR and raises ``ValueError``.
    """
    yt = _binary("y_true", y_true)
    yp = _binary("y_pred", y_pred)
    _same_length("y_pred", yp, yt.shape[0], "y_true")
    s = _sensitive(sensitive, yt.shape[0], "y_true")
    rows = {}
    for g in sorted(pd.unique(s).tolist(), key=str):
        m = np.asarray(s == g, dtype=bool)
        t, p = yt[m], yp[m]
        tp = int(((t == 1) & (p == 1)).sum())
        fp = int(((t == 0) & (p == 1)).sum())
        tn = int(((t == 0) & (p == 0)).sum())
        fn = int(((t == 1) & (p == 0)).sum())
        if tp + fn == 0 or fp + tn == 0:
            raise ValueError(
                f"group {g!r} has no {'positive' if tp + fn == 0 else 'negative'} examples in "
                "y_true, so its TPR/FPR is undefined"
            )
        rows[g] = {
            "size": int(m.sum()),
            "base_rate": float(t.mean()),
            "selection_rate": float(p.mean()),
            "tpr": tp / (tp + fn),
            "fpr": fp / (fp + tn),
            "accuracy": float((t == p).mean()),
            "tp": tp,
            "fp": fp,
            "tn": tn,
            "fn": fn,
        }
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "group"
    return out


# ---------------------------------------------------------------------------------------------
# Mitigations
# ---------------------------------------------------------------------------------------------


def _check_fraction(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number in [0, 1], got {type(value).__name__}")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return float(value)


def _check_nonneg(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a non-negative number, got {type(value).__name__}")
    if not (np.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be finite and >= 0, got {value}")
    return float(value)


def reweighing_weights(y, sensitive, *, strength: float = 1.0) -> np.ndarray:
    """Kamiran & Calders (2012) reweighing: one weight per example, by its (group, label) cell.

    .. math:: W(s, y) = \\frac{P(S=s)\\,P(Y=y)}{P(S=s, Y=y)} = \\frac{n_s\\, n_y}{n\\, n_{s,y}}

    Under these weights the label is independent of the group: the weighted positive rate of
    every group equals the overall rate :math:`n_1/n` exactly, and the weights sum to ``n``.
    ``strength`` :math:`\\alpha \\ge 0` interpolates, :math:`w = 1 + \\alpha (W - 1)`:
    0 is uniform weights, 1 the full method; the weighted rate of group :math:`s` is then
    :math:`(1-\\alpha) P(y=1 \\mid s) + \\alpha P(y=1)`, so the weighted statistical parity
    difference shrinks linearly, reaching 0 at :math:`\\alpha = 1`. :math:`\\alpha > 1`
    over-corrects (the weighted data favour the disadvantaged group), which can be needed
    because a classifier thresholded at 0.5 amplifies the remaining disparity; a strength that
    would make a weight <= 0 raises ``ValueError``. Works for any number of groups. An empty
    (group, label) cell makes :math:`W` undefined and raises ``ValueError``.
    """
    yy = _binary("y", y)
    s = _sensitive(sensitive, yy.shape[0], "y")
    alpha = _check_nonneg("strength", strength)
    n = yy.shape[0]
    codes, groups = pd.factorize(s)
    n_s = np.bincount(codes, minlength=len(groups)).astype(float)
    n_y = np.bincount(yy, minlength=2).astype(float)
    n_sy = np.zeros((len(groups), 2))
    np.add.at(n_sy, (codes, yy), 1.0)
    empty = np.argwhere(n_sy == 0)
    if len(empty):
        g, lab = empty[0]
        raise ValueError(
            f"group {groups[g]!r} has no examples with y == {lab}: the reweighing weight "
            "P(s)P(y)/P(s,y) is undefined"
        )
    w_cell = 1.0 + alpha * (np.outer(n_s, n_y) / (n * n_sy) - 1.0)
    if (w_cell <= 0).any():
        raise ValueError(f"strength={alpha} makes some weights <= 0; use a smaller strength")
    return w_cell[codes, yy]


def massage_count(y, sensitive, privileged) -> int:
    """Number :math:`M` of label pairs massaging flips (Kamiran & Calders 2012).

    Promoting :math:`M` unprivileged negatives and demoting :math:`M` privileged positives keeps
    the number of positives fixed and makes the positive rates equal when

    .. math:: \\frac{n_{p,1} - M}{n_p} = \\frac{n_{u,1} + M}{n_u}
              \\iff M = \\frac{n_{p,1}\\, n_u - n_{u,1}\\, n_p}{n_p + n_u},

    rounded to the nearest integer (the integer with the smallest remaining rate gap). If the
    unprivileged group already has the higher rate the roles swap and :math:`M` is the count for
    that direction (always >= 0).
    """
    yy = _binary("y", y)
    s = _sensitive(sensitive, yy.shape[0], "y")
    priv = _privileged_mask(s, privileged)
    n_p, n_u = priv.sum(), (~priv).sum()
    n_p1, n_u1 = yy[priv].sum(), yy[~priv].sum()
    m_real = abs(float(n_p1) * n_u - float(n_u1) * n_p) / (n_p + n_u)
    return int(np.floor(m_real + 0.5))


def massage(y, sensitive, scores, privileged, *, fraction: float = 1.0) -> np.ndarray:
    """Kamiran & Calders (2012) massaging: flip the fewest labels that equalise positive rates.

    A ranker's ``scores`` (e.g. a classifier's :math:`P(y=1 \\mid x)`) choose the labels closest
    to the boundary: the :math:`M` (:func:`massage_count`) highest-scored negatives of the
    disadvantaged group become positive ("promotion") and the :math:`M` lowest-scored positives
    of the advantaged group become negative ("demotion"). The total number of positives does not
    change, and under that constraint :math:`2M` is the minimum number of flips after which the
    two positive rates are as close as integers allow (within one example). ``fraction`` >= 0
    flips ``round(fraction * M)`` pairs (0 leaves the labels unchanged, above 1 over-corrects). Returns the new
    labels (a copy); ``(new != y).sum()`` is the number of flips. Ties in ``scores`` are broken
    by row order (stable sort), so the result is deterministic.
    """
    yy = _binary("y", y)
    n = yy.shape[0]
    s = _sensitive(sensitive, n, "y")
    sc = np.asarray(scores, dtype=float)
    if sc.ndim != 1:
        raise ValueError(f"scores must be 1-D, got shape {sc.shape}")
    _same_length("scores", sc, n, "y")
    if not np.all(np.isfinite(sc)):
        raise ValueError("scores must be finite")
    frac = _check_nonneg("fraction", fraction)
    priv = _privileged_mask(s, privileged)
    m = int(np.floor(frac * massage_count(yy, s, privileged) + 0.5))
    rate_p, rate_u = yy[priv].mean(), yy[~priv].mean()
    up, down = (~priv, priv) if rate_p >= rate_u else (priv, ~priv)
    promote = np.flatnonzero(up & (yy == 0))
    demote = np.flatnonzero(down & (yy == 1))
    if m > len(promote) or m > len(demote):
        raise ValueError(f"cannot flip {m} pairs: not enough candidates to promote or demote")
    promote = promote[np.argsort(-sc[promote], kind="stable")[:m]]
    demote = demote[np.argsort(sc[demote], kind="stable")[:m]]
    out = yy.copy()
    out[promote] = 1
    out[demote] = 0
    return out


def group_thresholds(
    scores,
    sensitive,
    target: str = "demographic_parity",
    y_true=None,
    *,
    rate: float | None = None,
) -> dict:
    """Per-group decision thresholds that equalise a rate (post-processing, Hardt et al. 2016).

    ``target="demographic_parity"``: every group gets the same selection rate
    :math:`P(\\hat y=1 \\mid g) = r`; default :math:`r` = overall rate of ``scores >= 0.5``.
    ``target="equal_opportunity"`` (needs ``y_true``): every group gets the same true positive
    rate :math:`P(\\hat y=1 \\mid y=1, g) = r`; default :math:`r` = overall TPR of
    ``scores >= 0.5``. For group :math:`g` with :math:`n_g` (relevant) examples the threshold
    is its :math:`k`-th highest score, :math:`k = \\mathrm{round}(r\\, n_g)`, so
    ``scores >= t_g`` hits the target within one example (ties in scores can add more; Hardt
    et al. randomise at the threshold to hit it exactly). :math:`k = 0` gives ``inf``.
    Decide with :func:`apply_thresholds`. Using the group at decision time is disparate
    treatment in many legal settings.
    """
    sc = np.asarray(scores, dtype=float)
    if sc.ndim != 1 or sc.size == 0:
        raise ValueError(f"scores must be a non-empty 1-D array, got shape {sc.shape}")
    if not np.all(np.isfinite(sc)):
        raise ValueError("scores must be finite")
    s = _sensitive(sensitive, sc.shape[0], "scores")
    if target not in ("demographic_parity", "equal_opportunity"):
        raise ValueError(
            f"target must be 'demographic_parity' or 'equal_opportunity', got {target!r}"
        )
    if target == "equal_opportunity":
        if y_true is None:
            raise ValueError("target='equal_opportunity' needs y_true")
        yt = _binary("y_true", y_true)
        _same_length("y_true", yt, sc.shape[0], "scores")
        relevant = yt == 1
    else:
        if y_true is not None:
            _same_length("y_true", _binary("y_true", y_true), sc.shape[0], "scores")
        relevant = np.ones(sc.shape[0], dtype=bool)
    if rate is None:
        if not relevant.any():
            raise ValueError("y_true has no positive examples: the TPR is undefined")
        rate = float((sc[relevant] >= 0.5).mean())
    rate = _check_fraction("rate", rate)
    out = {}
    for g in sorted(pd.unique(s).tolist(), key=str):
        gs = np.sort(sc[np.asarray(s == g, dtype=bool) & relevant])[::-1]
        if gs.size == 0:
            raise ValueError(
                f"group {g!r} has no examples to set its threshold on (target={target})"
            )
        k = int(np.floor(rate * gs.size + 0.5))
        out[g] = float(gs[k - 1]) if k > 0 else float("inf")
    return out


def apply_thresholds(scores, sensitive, thresholds: Mapping) -> np.ndarray:
    """Decisions :math:`\\hat y_i = [\\,score_i \\ge t_{s_i}\\,]` for per-group thresholds ``t``.

    Every group present in ``sensitive`` needs a threshold in ``thresholds``.
    """
    sc = np.asarray(scores, dtype=float)
    if sc.ndim != 1:
        raise ValueError(f"scores must be 1-D, got shape {sc.shape}")
    s = _sensitive(sensitive, sc.shape[0], "scores")
    if not isinstance(thresholds, Mapping):
        raise TypeError(
            f"thresholds must be a mapping group -> threshold, got {type(thresholds).__name__}"
        )
    t = np.empty(sc.shape[0])
    for g in pd.unique(s).tolist():
        if g not in thresholds:
            raise ValueError(f"thresholds has no entry for group {g!r}")
        t[np.asarray(s == g, dtype=bool)] = float(thresholds[g])
    return (sc >= t).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# scikit-learn plumbing for UCI Adult
# ---------------------------------------------------------------------------------------------

LABEL = "income_gt_50k"
SENSITIVE = "sex"
PRIVILEGED = "Male"
#: Numeric features (``fnlwgt`` is a census sampling weight, not an attribute of the person).
NUMERIC = ["age", "education_num", "capital_gain", "capital_loss", "hours_per_week"]
#: Categorical features (``education`` duplicates ``education_num``).
CATEGORICAL = [
    "workclass",
    "marital_status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "native_country",
]


def adult_pipeline(*, include_sex: bool = True, C: float = 1.0) -> Pipeline:
    """Unfitted scikit-learn Pipeline: scale the numeric columns, one-hot the categorical ones
    (missing -> its own category), then an L2-regularised logistic regression fitted by
    Newton's method with a Cholesky solve (scikit-learn's ``newton-cholesky``: a handful of
    iterations, well suited to many rows and ~90 one-hot columns).

    ``include_sex=False`` drops the protected attribute ("fairness through unawareness").
    """
    if not isinstance(include_sex, bool):
        raise TypeError(f"include_sex must be a bool, got {type(include_sex).__name__}")
    if not C > 0:
        raise ValueError(f"C must be > 0, got {C}")
    cats = [c for c in CATEGORICAL if include_sex or c != SENSITIVE]
    categorical = Pipeline(
        [
            ("impute", SimpleImputer(strategy="constant", fill_value="missing")),
            ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
    )
    pre = ColumnTransformer(
        [("num", StandardScaler(), NUMERIC), ("cat", categorical, cats)], remainder="drop"
    )
    return Pipeline(
        [
            ("features", pre),
            ("clf", LogisticRegression(C=C, solver="newton-cholesky", max_iter=100)),
        ]
    )


def _check_frame(name: str, df, needed: Sequence[str]) -> None:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ValueError(f"{name} lacks columns {missing}")


def fit_adult_model(
    train: pd.DataFrame,
    *,
    include_sex: bool = True,
    labels=None,
    sample_weight=None,
    C: float = 1.0,
) -> Pipeline:
    """Fit :func:`adult_pipeline` on ``train``; ``labels`` replaces ``train[LABEL]`` (e.g.
    massaged labels) and ``sample_weight`` (e.g. reweighing weights) goes to the classifier."""
    _check_frame("train", train, [*NUMERIC, *CATEGORICAL, LABEL])
    y = _binary(
        "labels" if labels is not None else "train[LABEL]",
        train[LABEL] if labels is None else labels,
    )
    _same_length("labels", y, len(train), "train")
    model = adult_pipeline(include_sex=include_sex, C=C)
    fit_params = {}
    if sample_weight is not None:
        fit_params["clf__sample_weight"] = _weights(sample_weight, len(train), "train")
    with _one_blas_thread():
        return model.fit(train, y, **fit_params)


def _one_blas_thread():
    """Context: BLAS on one thread while fitting (restored on exit). The problem is small
    (32,561 x ~90); on an idle 2-core CPU two OpenBLAS threads are ~1.5x faster per fit (about
    0.05 s), but on an oversubscribed CPU their busy-waiting made fits 10-30x slower
    (``benchmarks/bench_fairness.py``, median column). One thread is the robust choice."""
    return threadpool_limits(limits=1, user_api="blas")


def summarize(y_true, y_pred, sensitive, privileged=PRIVILEGED, *, neighbors=None) -> dict:
    """All headline numbers of one set of decisions: accuracy, balanced accuracy, selection rates
    per group, DI, SPD, Zemel discrimination, consistency (needs ``neighbors``), EOD, AOD."""
    yt = _binary("y_true", y_true)
    yp = _binary("y_pred", y_pred)
    _same_length("y_pred", yp, yt.shape[0], "y_true")
    s = _sensitive(sensitive, yt.shape[0], "y_true")
    priv = _privileged_mask(s, privileged)
    out = {
        "accuracy": float(accuracy_score(yt, yp)),
        "balanced_accuracy": float(balanced_accuracy_score(yt, yp)),
        "rate_unprivileged": float(yp[~priv].mean()),
        "rate_privileged": float(yp[priv].mean()),
        "disparate_impact": disparate_impact(yp, s, privileged),
        "statistical_parity_difference": statistical_parity_difference(yp, s, privileged),
        "zemel_discrimination": zemel_discrimination(yp, s, privileged),
        "equal_opportunity_difference": equal_opportunity_difference(yt, yp, s, privileged),
        "average_odds_difference": average_odds_difference(yt, yp, s, privileged),
    }
    if neighbors is not None:
        out["consistency"] = consistency(None, yp, neighbors=neighbors)
    return out


def bootstrap_ci(
    y_true,
    y_pred,
    sensitive,
    metrics: Mapping[str, Callable],
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Percentile bootstrap intervals (Efron & Tibshirani 1993) of test-set metrics.

    Resamples the test rows with replacement ``n_boot`` times (``numpy.random.default_rng(seed)``)
    and reports, for each ``metrics[name](y_true, y_pred, sensitive)``, the full-sample
    estimate and the :math:`(1-level)/2` and :math:`(1+level)/2` quantiles. The model is held
    fixed: the interval covers test-set sampling noise, not retraining noise.
    """
    yt = _binary("y_true", y_true)
    yp = _binary("y_pred", y_pred)
    _same_length("y_pred", yp, yt.shape[0], "y_true")
    s = _sensitive(sensitive, yt.shape[0], "y_true")
    if not isinstance(metrics, Mapping) or not metrics:
        raise TypeError("metrics must be a non-empty mapping name -> fn(y_true, y_pred, sensitive)")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 2:
        raise ValueError(f"n_boot must be an integer >= 2, got {n_boot!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    n = yt.shape[0]
    draws = {name: np.empty(n_boot) for name in metrics}
    for b in range(n_boot):
        idx = rng.integers(0, n, n)
        for name, fn in metrics.items():
            draws[name][b] = fn(yt[idx], yp[idx], s[idx])
    lo, hi = (1 - level) / 2, (1 + level) / 2
    rows = {
        name: {
            "estimate": float(fn(yt, yp, s)),
            "low": float(np.quantile(draws[name], lo)),
            "high": float(np.quantile(draws[name], hi)),
        }
        for name, fn in metrics.items()
    }
    return pd.DataFrame.from_dict(rows, orient="index")


def bootstrap_mean_ci(
    values, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of per-row ``values`` with a percentile bootstrap interval: ``(mean, low, high)``.

    For a paired comparison of two classifiers on the same test rows pass
    :math:`d_i = [\\hat y^A_i = y_i] - [\\hat y^B_i = y_i]`: the mean is the accuracy difference
    and resampling rows keeps the pairing, so the interval is much narrower than the two
    accuracies' separate intervals suggest.
    """
    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"values must be a non-empty 1-D array, got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError("values must be finite")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 2:
        raise ValueError(f"n_boot must be an integer >= 2, got {n_boot!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    means = np.array([v[rng.integers(0, v.size, v.size)].mean() for _ in range(n_boot)])
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(v.mean()), float(lo), float(hi)


def _sweep(values, make_fit, train, test, neighbors, include_sex, knob, desc) -> pd.DataFrame:
    """Fit the pipeline's features once, then one classifier per knob value.

    The preprocessing step is fitted without weights or labels, so it is the same for every
    knob value; only the logistic regression is refitted (``make_fit(v)`` returns its labels,
    sample weights and extra columns). Each model is identical to :func:`fit_adult_model`'s.
    """
    from sklearn.base import clone
    from tqdm.auto import tqdm

    template = adult_pipeline(include_sex=include_sex)
    features = template.named_steps["features"].fit(train)
    x_train, x_test = features.transform(train), features.transform(test)
    y_train, s_train = train[LABEL].to_numpy(), train[SENSITIVE].to_numpy()
    rows = []
    for v in tqdm(list(values), desc=desc):
        labels, weights, extra = make_fit(float(v))
        with _one_blas_thread():
            clf = clone(template.named_steps["clf"]).fit(x_train, labels, sample_weight=weights)
            y_fit, y_pred = clf.predict(x_train), clf.predict(x_test)
        row = {
            knob: float(v),
            **extra,
            "train_accuracy": float((y_fit == y_train).mean()),
            "train_disparate_impact": disparate_impact(y_fit, s_train, PRIVILEGED),
        }
        row.update(summarize(test[LABEL], y_pred, test[SENSITIVE], PRIVILEGED, neighbors=neighbors))
        rows.append(row)
    return pd.DataFrame(rows)


def reweighing_sweep(
    train: pd.DataFrame, test: pd.DataFrame, strengths, *, neighbors=None, include_sex: bool = True
) -> pd.DataFrame:
    """Retrain with :func:`reweighing_weights` at each ``strength`` and :func:`summarize` on
    ``test``: one row per strength (0 = the baseline, 1 = full Kamiran & Calders). The columns
    ``train_accuracy`` and ``train_disparate_impact`` score each model on the original training
    rows, so a knob can be chosen without looking at the test split."""
    _check_frame("train", train, [*NUMERIC, *CATEGORICAL, LABEL])
    _check_frame("test", test, [*NUMERIC, *CATEGORICAL, LABEL])
    y = _binary("train[LABEL]", train[LABEL])

    def make_fit(a):
        return y, reweighing_weights(y, train[SENSITIVE], strength=a), {}

    return _sweep(
        strengths, make_fit, train, test, neighbors, include_sex, "strength", "reweighing sweep"
    )


def massaging_sweep(
    train: pd.DataFrame,
    test: pd.DataFrame,
    scores,
    fractions,
    *,
    neighbors=None,
    include_sex: bool = True,
) -> pd.DataFrame:
    """Retrain on :func:`massage`-d labels for each ``fraction`` of the :math:`M` pairs and
    :func:`summarize` on ``test``; ``scores`` ranks the training rows (the ranker's
    :math:`P(y=1 \\mid x)`). Adds ``flips`` (labels changed) and the ``train_*`` columns of
    :func:`reweighing_sweep`."""
    _check_frame("train", train, [*NUMERIC, *CATEGORICAL, LABEL])
    _check_frame("test", test, [*NUMERIC, *CATEGORICAL, LABEL])
    y = _binary("train[LABEL]", train[LABEL])

    def make_fit(f):
        y_m = massage(y, train[SENSITIVE], scores, PRIVILEGED, fraction=f)
        return y_m, None, {"flips": int((y_m != y).sum())}

    return _sweep(
        fractions, make_fit, train, test, neighbors, include_sex, "fraction", "massaging sweep"
    )


def threshold_sweep(
    scores_train,
    train: pd.DataFrame,
    scores_test,
    test: pd.DataFrame,
    strengths,
    *,
    target: str = "demographic_parity",
    neighbors=None,
) -> pd.DataFrame:
    """Post-processing trade-off: thresholds :math:`t_g(\\lambda) = 0.5 + \\lambda\\,(t_g - 0.5)`
    between the plain 0.5 cut (:math:`\\lambda = 0`) and the :func:`group_thresholds` fitted on
    the training scores (:math:`\\lambda = 1`), applied to the test scores. One row per
    ``strength`` with the thresholds, the ``train_*`` columns and :func:`summarize` on ``test``."""
    _check_frame("train", train, [SENSITIVE, LABEL])
    _check_frame("test", test, [SENSITIVE, LABEL])
    full = group_thresholds(scores_train, train[SENSITIVE], target, train[LABEL])
    rows = []
    for lam in strengths:
        lam = _check_nonneg("strengths", lam)
        th = {g: 0.5 + lam * (t - 0.5) for g, t in full.items()}
        y_fit = apply_thresholds(scores_train, train[SENSITIVE], th)
        row = {"strength": lam, **{f"threshold_{g}": t for g, t in th.items()}}
        row["train_accuracy"] = float((y_fit == train[LABEL].to_numpy()).mean())
        row["train_disparate_impact"] = disparate_impact(y_fit, train[SENSITIVE], PRIVILEGED)
        y_pred = apply_thresholds(scores_test, test[SENSITIVE], th)
        row.update(summarize(test[LABEL], y_pred, test[SENSITIVE], PRIVILEGED, neighbors=neighbors))
        rows.append(row)
    return pd.DataFrame(rows)


def interpolate_knob(sweep: pd.DataFrame, knob: str, column: str, target: float) -> float:
    """Smallest knob value at which ``column`` reaches ``target``, by linear interpolation
    between the first two consecutive rows of ``sweep`` (sorted by ``knob``) that bracket it.

    Used to set a mitigation's strength from the *training* disparate impact
    (``column="train_disparate_impact"``, ``target=0.8``) so the test split is only used to grade.
    Raises ``ValueError`` when no row reaches the target.
    """
    _check_frame("sweep", sweep, [knob, column])
    df = sweep.sort_values(knob)
    x, y = df[knob].to_numpy(float), df[column].to_numpy(float)
    if y[0] >= target:
        return float(x[0])
    for i in range(1, len(x)):
        if y[i] >= target:
            if y[i] == y[i - 1]:
                return float(x[i])
            return float(x[i - 1] + (target - y[i - 1]) * (x[i] - x[i - 1]) / (y[i] - y[i - 1]))
    raise ValueError(f"{column} never reaches {target} in the sweep (max {y.max():.3f})")


def association_with(df: pd.DataFrame, column: str, features: Sequence[str]) -> pd.DataFrame:
    """Strength of association between ``df[column]`` (categorical, e.g. sex) and each feature.

    Categorical feature: Cramér's V, :math:`V = \\sqrt{\\chi^2 / (n\\,(\\min(r, c) - 1))}` from the
    contingency table (Cramér 1946). Numeric feature: the correlation ratio
    :math:`\\eta = \\sqrt{\\sum_g n_g (\\bar x_g - \\bar x)^2 / \\sum_i (x_i - \\bar x)^2}` (for a
    binary ``column`` this is the absolute point-biserial correlation). Both lie in [0, 1]; a
    feature with a high value is a proxy that can carry the protected attribute into a model
    that never sees it. Missing values count as their own category. Sorted, strongest first.
    """
    _check_frame("df", df, [column, *features])
    g = df[column].astype(str).to_numpy()
    rows = []
    for f in features:
        if f == column:
            raise ValueError(f"features must not contain the column itself ({column!r})")
        x = df[f]
        if pd.api.types.is_numeric_dtype(x):
            xv = x.to_numpy(float)
            total = ((xv - xv.mean()) ** 2).sum()
            if total == 0:
                raise ValueError(f"feature {f!r} is constant: its correlation ratio is undefined")
            between = sum(
                (g == k).sum() * (xv[g == k].mean() - xv.mean()) ** 2 for k in np.unique(g)
            )
            rows.append(
                {"feature": f, "measure": "correlation ratio", "value": np.sqrt(between / total)}
            )
        else:
            table = pd.crosstab(x.fillna("missing").astype(str), g).to_numpy(float)
            n = table.sum()
            expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / n
            chi2 = ((table - expected) ** 2 / expected).sum()
            k = min(table.shape) - 1
            if k == 0:
                raise ValueError(f"feature {f!r} has a single category: Cramér's V is undefined")
            rows.append({"feature": f, "measure": "Cramér's V", "value": np.sqrt(chi2 / (n * k))})
    return pd.DataFrame(rows).sort_values("value", ascending=False).reset_index(drop=True)


def plot_tradeoff(
    curves: Mapping[str, pd.DataFrame],
    points: Mapping[str, Mapping],
    *,
    baseline_accuracy: float,
    max_drop: float = 0.015,
    ax=None,
):
    """Accuracy against disparate impact: one line per sweep in ``curves`` (DataFrames with
    ``disparate_impact`` and ``accuracy`` columns) and one marker per model in ``points``
    (name -> dict with the same keys). Draws the four-fifths line (DI = 0.8) and the accuracy
    floor ``baseline_accuracy - max_drop``; the goal region is the upper right. Returns the axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 5))
    markers = iter("osD^vP*Xh<>p")
    for name, df in curves.items():
        _check_frame(f"curves[{name!r}]", df, ["disparate_impact", "accuracy"])
        ax.plot(df["disparate_impact"], df["accuracy"], ".-", alpha=0.6, label=f"{name} (sweep)")
    for name, p in points.items():
        ax.plot(p["disparate_impact"], p["accuracy"], next(markers, "o"), ms=9, mec="k", label=name)
    ax.axvline(0.8, color="grey", ls="--", lw=1, label="four-fifths rule (DI = 0.8)")
    ax.axhline(
        baseline_accuracy - max_drop,
        color="grey",
        ls=":",
        lw=1,
        label=f"baseline accuracy - {100 * max_drop:.1f} points",
    )
    ax.set_xlabel("disparate impact on the test split (women / men selection rate)")
    ax.set_ylabel("test accuracy")
    ax.set_title("Accuracy vs disparate impact on UCI Adult (test split)")
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(alpha=0.3)
    return ax
