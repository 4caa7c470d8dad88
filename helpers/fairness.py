"""Group fairness metrics and data-level mitigations (Task 3, UCI Adult).

Everything takes array-likes (lists, NumPy arrays, pandas Series): ``y_true`` / ``y_pred`` are
binary 0/1 (or bool) labels, ``y_score`` are predicted probabilities :math:`P(y=1 \\mid x)` in
[0, 1], ``sensitive`` holds the protected attribute of each row (any hashable values, e.g.
``"Male"`` / ``"Female"``), ``privileged`` is the value of the privileged group; every other value
is the unprivileged group. Notation: :math:`\\hat y` the decision, :math:`S` the protected
attribute, :math:`p` privileged, :math:`u` unprivileged.

Metrics
    :func:`selection_rate`, :func:`disparate_impact` (Feldman et al. 2015),
    :func:`statistical_parity_difference` (Calders & Verwer 2010),
    :func:`zemel_accuracy`, :func:`zemel_discrimination` and :func:`consistency` (Zemel et al.
    2013; each on hard decisions or on probabilities),
    :func:`equal_opportunity_difference` and :func:`average_odds_difference` (Hardt et al. 2016),
    :func:`group_report` and :func:`rates_by_group` (per-group confusion counts and rates).

Mitigations
    :func:`reweighing_weights` and :func:`massage` (Kamiran & Calders 2012, pre-processing),
    :func:`group_thresholds` / :func:`apply_thresholds` (Hardt et al. 2016, post-processing);
    learned fair representations (Zemel et al. 2013) are in :mod:`helpers.lfr` (torch).

Protocol and plumbing (scikit-learn, scipy)
    :func:`validation_split`, :func:`adult_pipeline`, :func:`fit_adult_model`, :func:`summarize`,
    :func:`bootstrap_ci`, :func:`bootstrap_mean_ci`, :func:`goal_verdict`,
    :func:`reweighing_sweep`, :func:`massaging_sweep`, :func:`threshold_sweep`,
    :func:`interpolate_knob`, :func:`association_with`, :func:`plot_tradeoff`.

Arguments are checked with :mod:`helpers.checks` (TypeError for a wrong type, ValueError for a
wrong value). A quantity that is undefined (a ratio with a zero denominator, the rate of an empty
group) raises ``ValueError``; nothing here returns NaN.

References
    M. Feldman, S. Friedler, J. Moeller, C. Scheidegger, S. Venkatasubramanian. Certifying and
    removing disparate impact. KDD 2015.
    T. Calders, S. Verwer. Three naive Bayes approaches for discrimination-free classification.
    Data Mining and Knowledge Discovery 21(2), 2010.
    R. Zemel, Y. Wu, K. Swersky, T. Pitassi, C. Dwork. Learning fair representations. ICML 2013.
    F. Kamiran, T. Calders. Data preprocessing techniques for classification without
    discrimination. Knowledge and Information Systems 33(1), 2012.
    M. Hardt, E. Price, N. Srebro. Equality of opportunity in supervised learning. NeurIPS 2016.
    B. Efron, R. Tibshirani. An Introduction to the Bootstrap. Chapman & Hall 1993.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats
from scipy.stats.contingency import association
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix
from sklearn.model_selection import train_test_split
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits

from helpers import checks

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
    "goal_verdict",
    "group_report",
    "group_thresholds",
    "interpolate_knob",
    "massage",
    "massage_count",
    "massaging_sweep",
    "nearest_neighbors",
    "plot_tradeoff",
    "rates_by_group",
    "reweighing_sweep",
    "reweighing_weights",
    "selection_rate",
    "statistical_parity_difference",
    "summarize",
    "threshold_sweep",
    "validation_split",
    "zemel_accuracy",
    "zemel_discrimination",
]

LABEL = "income_gt_50k"
SENSITIVE = "sex"
PRIVILEGED = "Male"
#: Numeric features (``fnlwgt`` is a census sampling weight, not an attribute of the person).
NUMERIC = ["age", "education_num", "capital_gain", "capital_loss", "hours_per_week"]
#: Categorical features (``education`` duplicates ``education_num``).
CATEGORICAL = ["workclass", "marital_status", "occupation", "relationship", "race", "sex",
               "native_country"]
FEATURES = [*NUMERIC, *CATEGORICAL]

# ---------------------------------------------------------------------------------------------
# Input conversion (through helpers.checks)
# ---------------------------------------------------------------------------------------------


def _binary(values, name: str) -> np.ndarray:
    """``values`` as a 1-D int64 array of 0/1 labels (bool accepted)."""
    # (mutation testing, equivalent: ndim=1 is checked again by checks.labels below with the same
    # message)
    arr = checks.array(values, name, ndim=1, dtype="any")
    if arr.dtype.kind == "b":
        arr = arr.astype(np.int64)
    return checks.labels(arr, name, num_classes=2)


def _scores(values, name: str) -> np.ndarray:
    """``values`` as a 1-D float array of probabilities in [0, 1] (0/1 decisions and bool too)."""
    # (mutation testing, equivalent: the two ndim=1 checks here repeat each other with the same
    # message, and astype(None) is float64)
    arr = checks.array(values, name, ndim=1, dtype="any")
    if arr.dtype.kind == "b":
        arr = arr.astype(np.float64)
    return checks.array(arr, name, ndim=1, low=0.0, high=1.0)


def _sensitive(values, n: int, other: str) -> np.ndarray:
    """The protected attribute as a 1-D array of length ``n`` without missing values."""
    # (mutation testing, equivalent: allow_empty matters only for n == 0, and every caller has
    # refused an empty y or scores)
    arr = checks.array(values, "sensitive", ndim=1, dtype="any", allow_empty=n == 0)
    checks.same_length("sensitive", arr, other, range(n))
    if pd.isna(arr).any():
        raise ValueError("sensitive must have a group for every row, got missing values")
    return arr


def _weights(sample_weight, n: int, other: str) -> np.ndarray:
    if sample_weight is None:
        return np.ones(n)
    w = checks.array(sample_weight, "sample_weight", ndim=1, low=0.0)
    checks.same_length("sample_weight", w, other, range(n))
    return w


def _privileged_mask(sensitive: np.ndarray, privileged) -> np.ndarray:
    """Boolean mask of the privileged rows; both groups must be non-empty."""
    # (mutation testing, equivalent: == on an array is already boolean, dtype=bool only says so; the
    # same in the functions below)
    mask = np.asarray(sensitive == privileged, dtype=bool)
    if mask.shape != sensitive.shape or not mask.any():
        present = pd.unique(sensitive)[:10].tolist()
        raise ValueError(f"privileged must be a value that occurs in sensitive {present}, got "
                         f"{privileged!r}")
    if mask.all():
        raise ValueError(f"sensitive must hold an unprivileged group too: every row has "
                         f"sensitive == {privileged!r}, so a between-group metric is undefined")
    return mask


def _rate(y: np.ndarray, mask: np.ndarray, w: np.ndarray, what: str) -> float:
    """Weighted mean of ``y`` over ``mask``; an empty (or zero-weight) subset is an error."""
    total = w[mask].sum()
    if not mask.any() or total <= 0:
        raise ValueError(f"{what} is undefined: the subset it is computed on is empty")
    return float((w[mask] * y[mask]).sum() / total)


def _pair(y_true, y_pred, sensitive=None, *, scores: bool = False):
    """Checked ``y_true`` (0/1), ``y_pred`` (0/1, or probabilities if ``scores``), ``sensitive``."""
    yt = _binary(y_true, "y_true")
    yp = _scores(y_pred, "y_score") if scores else _binary(y_pred, "y_pred")
    checks.same_length("y_true", yt, "y_score" if scores else "y_pred", yp)
    if sensitive is None:
        return yt, yp
    return yt, yp, _sensitive(sensitive, yt.shape[0], "y_true")


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


def selection_rate(y_pred, sensitive=None, group=None, *, sample_weight=None) -> float:
    """Fraction of positive decisions, :math:`P(\\hat y = 1)` or :math:`P(\\hat y = 1 \\mid S = g)`.

    With ``sensitive`` and ``group`` the rate is taken inside the group ``S = group``; with
    ``sample_weight`` it is the weighted rate :math:`\\sum_i w_i \\hat y_i / \\sum_i w_i`.
    Applied to true labels it is the base rate. An empty group raises ``ValueError``.
    """
    y = _binary(y_pred, "y_pred")
    w = _weights(sample_weight, y.shape[0], "y_pred")
    if sensitive is None:
        if group is not None:
            raise ValueError("group must be None when sensitive is None; pass both or neither")
        return _rate(y, np.ones(y.shape[0], dtype=bool), w, "selection_rate")
    s = _sensitive(sensitive, y.shape[0], "y_pred")
    if group is None:
        raise ValueError("group must be given with sensitive: the group to compute the rate of")
    mask = np.asarray(s == group, dtype=bool)
    if mask.shape != s.shape or not mask.any():
        raise ValueError(f"group must occur in sensitive, got {group!r}")
    return _rate(y, mask, w, f"selection rate of group {group!r}")


def _group_means(y, sensitive, privileged, sample_weight) -> tuple[float, float]:
    """Weighted mean of ``y`` (decisions or scores) in the unprivileged and privileged groups."""
    s = _sensitive(sensitive, y.shape[0], "y_pred")
    w = _weights(sample_weight, y.shape[0], "y_pred")
    priv = _privileged_mask(s, privileged)
    return (_rate(y, ~priv, w, "selection rate of the unprivileged group"),
            _rate(y, priv, w, "selection rate of the privileged group"))


def disparate_impact(y_pred, sensitive, privileged, *, sample_weight=None) -> float:
    """Disparate impact: :math:`DI = P(\\hat y=1 \\mid S=u) \\,/\\, P(\\hat y=1 \\mid S=p)`.

    Feldman et al. (2015) formalise the US EEOC "four-fifths rule": a decision procedure shows
    disparate impact when :math:`DI < 0.8`. :math:`DI = 1` is statistical parity. The ratio is
    undefined (``ValueError``) when the privileged group has no positive decisions.
    """
    rate_u, rate_p = _group_means(_binary(y_pred, "y_pred"), sensitive, privileged, sample_weight)
    if rate_p == 0:
        raise ValueError("disparate impact is undefined: the privileged group's selection rate "
                         "is 0")
    return rate_u / rate_p


def statistical_parity_difference(y_pred, sensitive, privileged, *, sample_weight=None) -> float:
    """Statistical parity difference :math:`P(\\hat y=1 \\mid S=u) - P(\\hat y=1 \\mid S=p)`.

    Calders & Verwer (2010) call :math:`P(\\hat y=1 \\mid p) - P(\\hat y=1 \\mid u)` the
    discrimination score; this is its negative (AIF360's sign: negative = unprivileged
    disadvantaged). 0 is statistical (demographic) parity.
    """
    rate_u, rate_p = _group_means(_binary(y_pred, "y_pred"), sensitive, privileged, sample_weight)
    return rate_u - rate_p


def zemel_accuracy(y_true, y_score) -> float:
    """Zemel et al. (2013)'s accuracy :math:`yAcc = 1 - \\frac1N \\sum_n |y_n - \\hat y_n|`.

    On hard decisions :math:`\\hat y_n \\in \\{0, 1\\}` it is the plain accuracy; on predicted
    probabilities :math:`\\hat y_n = P(y=1 \\mid x_n)` it is one minus the mean absolute error,
    which also rewards confident correct predictions.
    """
    yt, ys = _pair(y_true, y_score, scores=True)
    return float(1.0 - np.abs(yt - ys).mean())


def zemel_discrimination(y_score, sensitive, privileged, *, sample_weight=None) -> float:
    """Zemel et al. (2013)'s discrimination
    :math:`yDisc = \\big|\\frac{1}{N_u}\\sum_{n: s_n=u} \\hat y_n - \\frac{1}{N_p}\\sum_{n: s_n=p}
    \\hat y_n\\big|`.

    On hard decisions it is :math:`|P(\\hat y=1 \\mid u) - P(\\hat y=1 \\mid p)|`, the absolute
    :func:`statistical_parity_difference`; on probabilities it compares the groups' mean
    predicted probability (the paper's definition for its probabilistic models). In [0, 1], 0 is
    parity.
    """
    rate_u, rate_p = _group_means(_scores(y_score, "y_score"), sensitive, privileged,
                                  sample_weight)
    return abs(rate_u - rate_p)


def nearest_neighbors(X, k: int = 5) -> np.ndarray:
    """Indices (n, k) of each row's ``k`` nearest other rows (Euclidean, scikit-learn).

    A row is never its own neighbour (scikit-learn's ``kneighbors()`` without a query excludes
    it). Compute this once per feature matrix and pass it to :func:`consistency` to score many
    models on the same test set cheaply.
    """
    x = checks.array(X, "X", ndim=2)
    k = checks.integer(k, "k", low=1)
    if k >= x.shape[0]:
        raise ValueError(f"k must be smaller than the number of rows of X ({x.shape[0]}), got {k}")
    # (mutation testing, equivalent: return_distance=None is falsy like False)
    return NearestNeighbors(n_neighbors=k).fit(x).kneighbors(return_distance=False)


def consistency(X, y_score, k: int = 5, *, neighbors=None) -> float:
    """Zemel et al. (2013)'s individual-fairness consistency :math:`yNN`.

    .. math:: yNN = 1 - \\frac{1}{N} \\sum_{n=1}^{N} \\Big| \\hat y_n - \\frac{1}{k}
              \\sum_{j \\in kNN(x_n)} \\hat y_j \\Big|

    where :math:`kNN(x_n)` are the ``k`` nearest other rows of ``X`` (the features, Euclidean)
    and :math:`\\hat y` are hard decisions or predicted probabilities. 1 means similar
    individuals get the same prediction. ``neighbors`` (from :func:`nearest_neighbors`) skips
    the search; then ``X`` may be ``None``. (AIF360 counts the point itself among its ``k``
    neighbours; Zemel et al. and this function do not.)
    """
    y = _scores(y_score, "y_score")
    if neighbors is None:
        if X is None:
            raise ValueError("X must be given when neighbors is None (or pass neighbors from "
                             "nearest_neighbors)")
        x = checks.array(X, "X", ndim=2)
        checks.same_length("X", x, "y_score", y)
        neighbors = nearest_neighbors(x, k)
    else:
        neighbors = checks.array(neighbors, "neighbors", ndim=2, dtype="int", low=0,
                                 high=y.shape[0] - 1)
        checks.same_length("neighbors", neighbors, "y_score", y)
    return float(1.0 - np.abs(y - y[neighbors].mean(axis=1)).mean())


def _conditional_rates(y_true, y_pred, sensitive, privileged, condition: int):
    """P(yhat=1 | y=condition, S=u), P(yhat=1 | y=condition, S=p)."""
    yt, yp, s = _pair(y_true, y_pred, sensitive)
    priv = _privileged_mask(s, privileged)
    w = np.ones(yt.shape[0])
    name = "true positive rate" if condition == 1 else "false positive rate"
    return tuple(_rate(yp, m & (yt == condition), w,
                       f"{name} of the {g} group (no y_true == {condition} there)")
                 for m, g in ((~priv, "unprivileged"), (priv, "privileged")))


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
    :math:`FP/(FP+TN)`, ``accuracy``, and ``tp``, ``fp``, ``tn``, ``fn`` (scikit-learn's
    ``confusion_matrix``). A group without positive or without negative examples has an
    undefined TPR or FPR and raises ``ValueError``.
    """
    yt, yp, s = _pair(y_true, y_pred, sensitive)
    rows = {}
    for g in sorted(pd.unique(s).tolist(), key=str):
        m = np.asarray(s == g, dtype=bool)
        tn, fp, fn, tp = (int(v) for v in confusion_matrix(yt[m], yp[m], labels=[0, 1]).ravel())
        if tp + fn == 0 or fp + tn == 0:
            raise ValueError(f"y_true must hold both classes in every group: group {g!r} has no "
                             f"{'positive' if tp + fn == 0 else 'negative'} examples, so its "
                             "TPR/FPR is undefined")
        rows[g] = {"size": int(m.sum()), "base_rate": (tp + fn) / m.sum(),
                   "selection_rate": (tp + fp) / m.sum(), "tpr": tp / (tp + fn),
                   "fpr": fp / (fp + tn), "accuracy": (tp + tn) / m.sum(),
                   "tp": tp, "fp": fp, "tn": tn, "fn": fn}
    # (mutation testing, equivalent: pandas reads orient case-insensitively)
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "group"
    return out


def rates_by_group(y_true, predictions: Mapping, sensitive,
                   columns: Sequence[str] = ("selection_rate", "tpr", "fpr")) -> pd.DataFrame:
    """One row per model in ``predictions`` (name -> decisions), one column per (rate, group):
    the :func:`group_report` ``columns`` of every group side by side."""
    if not isinstance(predictions, Mapping) or not predictions:
        raise TypeError("predictions must be a non-empty mapping name -> decisions, got "
                        f"{type(predictions).__name__}")
    allowed = ("size", "base_rate", "selection_rate", "tpr", "fpr", "accuracy")
    cols = [checks.choice(c, "columns", allowed) for c in columns]
    if not cols:
        raise ValueError(f"columns must name at least one of {allowed}")
    rows = {name: group_report(y_true, p, sensitive)[cols].unstack()
            for name, p in predictions.items()}
    return pd.DataFrame(rows).T


# ---------------------------------------------------------------------------------------------
# Mitigations
# ---------------------------------------------------------------------------------------------


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
    yy = _binary(y, "y")
    s = _sensitive(sensitive, yy.shape[0], "y")
    alpha = checks.real(strength, "strength", low=0.0)
    n = yy.shape[0]
    codes, groups = pd.factorize(s)
    # (mutation testing, equivalent: astype(None) is float64; factorize's codes cover every group,
    # and a missing label raises at the empty-cell check before n_y is used)
    n_s = np.bincount(codes, minlength=len(groups)).astype(float)
    n_y = np.bincount(yy, minlength=2).astype(float)
    n_sy = np.zeros((len(groups), 2))
    np.add.at(n_sy, (codes, yy), 1.0)
    empty = np.argwhere(n_sy == 0)
    if len(empty):
        g, lab = empty[0]
        raise ValueError(f"y must hold both labels in every group: group {groups[g]!r} has no "
                         f"examples with y == {lab}, so P(s)P(y)/P(s,y) is undefined")
    w_cell = 1.0 + alpha * (np.outer(n_s, n_y) / (n * n_sy) - 1.0)
    if (w_cell <= 0).any():
        raise ValueError(f"strength must keep every weight > 0; {alpha:g} makes some <= 0")
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
    yy = _binary(y, "y")
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
    two positive rates are as close as integers allow. ``fraction`` >= 0 flips
    ``round(fraction * M)`` pairs (0 leaves the labels unchanged, above 1 over-corrects).
    Returns the new labels (a copy); ``(new != y).sum()`` is the number of flips. Ties in
    ``scores`` are broken by row order (stable sort), so the result is deterministic.
    """
    yy = _binary(y, "y")
    n = yy.shape[0]
    s = _sensitive(sensitive, n, "y")
    sc = checks.array(scores, "scores", ndim=1)
    checks.same_length("scores", sc, "y", yy)
    frac = checks.real(fraction, "fraction", low=0.0)
    priv = _privileged_mask(s, privileged)
    m = int(np.floor(frac * massage_count(yy, s, privileged) + 0.5))
    rate_p, rate_u = yy[priv].mean(), yy[~priv].mean()
    # (mutation testing, equivalent: with equal rates M = 0 and nothing is flipped, whichever group
    # is promoted)
    up, down = (~priv, priv) if rate_p >= rate_u else (priv, ~priv)
    promote = np.flatnonzero(up & (yy == 0))
    demote = np.flatnonzero(down & (yy == 1))
    if m > len(promote) or m > len(demote):
        raise ValueError(f"fraction must leave enough candidates: {m} pairs cannot be flipped "
                         f"({len(promote)} to promote, {len(demote)} to demote)")
    # (mutation testing, equivalent: numpy reads the sort kind case-insensitively)
    promote = promote[np.argsort(-sc[promote], kind="stable")[:m]]
    demote = demote[np.argsort(sc[demote], kind="stable")[:m]]
    out = yy.copy()
    out[promote] = 1
    out[demote] = 0
    return out


def group_thresholds(scores, sensitive, target: str = "demographic_parity", y_true=None, *,
                     rate: float | None = None) -> dict:
    """Per-group decision thresholds that equalise a rate (post-processing, Hardt et al. 2016).

    ``target="demographic_parity"``: every group gets the same selection rate
    :math:`P(\\hat y=1 \\mid g) = r`; default :math:`r` = overall rate of ``scores >= 0.5``.
    ``target="equal_opportunity"`` (needs ``y_true``): every group gets the same true positive
    rate :math:`P(\\hat y=1 \\mid y=1, g) = r`; default :math:`r` = overall TPR of
    ``scores >= 0.5``. For group :math:`g` with :math:`n_g` (relevant) examples the threshold
    is its :math:`k`-th highest score, :math:`k = \\mathrm{round}(r\\, n_g)`, so without ties
    ``scores >= t_g`` selects :math:`k` of them, within half an example of :math:`r\\,n_g`
    (ties in scores can add more; Hardt et al. randomise at the threshold to hit the rate
    exactly). :math:`k = 0` gives ``inf``. Decide with :func:`apply_thresholds`. Using the group
    at decision time is disparate treatment in many legal settings.
    """
    sc = checks.array(scores, "scores", ndim=1)
    s = _sensitive(sensitive, sc.shape[0], "scores")
    checks.choice(target, "target", ("demographic_parity", "equal_opportunity"))
    if target == "equal_opportunity" and y_true is None:
        raise ValueError("y_true must be given when target='equal_opportunity'")
    relevant = np.ones(sc.shape[0], dtype=bool)
    if y_true is not None:
        yt = _binary(y_true, "y_true")
        checks.same_length("y_true", yt, "scores", sc)
        if target == "equal_opportunity":
            relevant = yt == 1
    if rate is None:
        if not relevant.any():
            raise ValueError("y_true must hold positive examples: the TPR is undefined")
        rate = float((sc[relevant] >= 0.5).mean())
    rate = checks.fraction(rate, "rate")
    out = {}
    for g in sorted(pd.unique(s).tolist(), key=str):
        gs = np.sort(sc[np.asarray(s == g, dtype=bool) & relevant])[::-1]
        if gs.size == 0:
            raise ValueError(f"y_true must hold positive examples in every group: group {g!r} "
                             f"has none to set its threshold on (target={target})")
        k = int(np.floor(rate * gs.size + 0.5))
        # (mutation testing, equivalent: float("INF") is also infinity)
        out[g] = float(gs[k - 1]) if k > 0 else float("inf")
    return out


def apply_thresholds(scores, sensitive, thresholds: Mapping) -> np.ndarray:
    """Decisions :math:`\\hat y_i = [\\,score_i \\ge t_{s_i}\\,]` for per-group thresholds ``t``.

    Every group present in ``sensitive`` needs a threshold in ``thresholds`` (a real number or
    ``inf``); NaN scores are refused rather than silently rejected.
    """
    sc = checks.array(scores, "scores", ndim=1)
    s = _sensitive(sensitive, sc.shape[0], "scores")
    if not isinstance(thresholds, Mapping):
        raise TypeError("thresholds must be a mapping group -> threshold, got "
                        f"{type(thresholds).__name__}")
    t = np.empty(sc.shape[0])
    for g in pd.unique(s).tolist():
        if g not in thresholds:
            raise ValueError(f"thresholds must have an entry for every group; {g!r} is missing")
        # (mutation testing, equivalent: finite=None is falsy like False)
        t[np.asarray(s == g, dtype=bool)] = checks.real(thresholds[g], f"thresholds[{g!r}]",
                                                        finite=False)
    return (sc >= t).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Protocol and scikit-learn plumbing for UCI Adult
# ---------------------------------------------------------------------------------------------


def validation_split(df: pd.DataFrame, size: float = 0.25, *, seed=0,
                     stratify: Sequence[str] = (SENSITIVE, LABEL)):
    """Split ``df`` into ``(fit, val)`` with a share ``size`` of the rows in ``val``, stratified
    by the joint values of the ``stratify`` columns (scikit-learn's ``train_test_split``), so
    both parts keep every (sex, label) cell's share. Models are fitted on ``fit``; every knob,
    threshold and model choice is made on ``val``; the test split only grades."""
    checks.frame(df, "df", list(stratify))
    size = checks.real(size, "size", low=0.0, high=1.0, low_open=True, high_open=True)
    rng = checks.numpy_rng(seed)
    strata = df[list(stratify)].astype(str).agg("|".join, axis=1) if stratify else None
    fit, val = train_test_split(df, test_size=size, stratify=strata,
                                random_state=int(rng.integers(2**31 - 1)))
    return fit, val


def adult_pipeline(*, include_sex: bool = True, C: float = 1.0) -> Pipeline:
    """Unfitted scikit-learn Pipeline: scale the numeric columns, one-hot the categorical ones
    (missing -> its own category), then an L2-regularised logistic regression fitted by
    Newton's method with a Cholesky solve (scikit-learn's ``newton-cholesky``: a handful of
    iterations, well suited to many rows and ~90 one-hot columns).

    ``include_sex=False`` drops the protected attribute ("fairness through unawareness").
    """
    include_sex = checks.boolean(include_sex, "include_sex")
    C = checks.real(C, "C", low=0.0, low_open=True)
    cats = [c for c in CATEGORICAL if include_sex or c != SENSITIVE]
    categorical = Pipeline([
        ("impute", SimpleImputer(strategy="constant", fill_value="missing")),
        ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
    ])
    # (mutation testing, equivalent: remainder="drop" and max_iter=100 are scikit-learn's
    # defaults, so dropping either changes nothing)
    pre = ColumnTransformer([("num", StandardScaler(), NUMERIC), ("cat", categorical, cats)],
                            remainder="drop")
    return Pipeline([("features", pre),
                     ("clf", LogisticRegression(C=C, solver="newton-cholesky", max_iter=100))])


def fit_adult_model(train: pd.DataFrame, *, include_sex: bool = True, labels=None,
                    sample_weight=None, C: float = 1.0) -> Pipeline:
    """Fit :func:`adult_pipeline` on ``train``; ``labels`` replaces ``train[LABEL]`` (e.g.
    massaged labels) and ``sample_weight`` (e.g. reweighing weights) goes to the classifier."""
    checks.frame(train, "train", [*FEATURES, LABEL])
    y = _binary(train[LABEL] if labels is None else labels,
                "labels" if labels is not None else "train[LABEL]")
    checks.same_length("labels", y, "train", train)
    model = adult_pipeline(include_sex=include_sex, C=C)
    fit_params = {}
    if sample_weight is not None:
        fit_params["clf__sample_weight"] = _weights(sample_weight, len(train), "train")
    with _one_blas_thread():
        return model.fit(train, y, **fit_params)


def _one_blas_thread():
    """Context: BLAS on one thread while fitting (restored on exit). The problem is small
    (32,561 x ~90); on an oversubscribed CPU two OpenBLAS threads busy-wait and make fits many
    times slower (``benchmarks/bench_fairness.py``). One thread is the robust choice."""
    return threadpool_limits(limits=1, user_api="blas")


def summarize(y_true, y_pred, sensitive, privileged=PRIVILEGED, *, neighbors=None,
              y_score=None) -> dict:
    """All headline numbers of one set of decisions: accuracy, balanced accuracy, selection rates
    per group, DI, SPD, Zemel's discrimination, consistency (needs ``neighbors``), EOD, AOD.

    Zemel et al.'s three measures are given on the hard decisions (``accuracy``,
    ``zemel_discrimination``, ``consistency``) and, with ``y_score`` (the predicted
    probabilities), on the probabilities (``zemel_accuracy_proba``,
    ``zemel_discrimination_proba``, ``consistency_proba``)."""
    yt, yp, s = _pair(y_true, y_pred, sensitive)
    if y_score is not None:
        ys = _scores(y_score, "y_score")
        checks.same_length("y_score", ys, "y_true", yt)
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
    if y_score is not None:
        out["zemel_accuracy_proba"] = zemel_accuracy(yt, ys)
        out["zemel_discrimination_proba"] = zemel_discrimination(ys, s, privileged)
        if neighbors is not None:
            out["consistency_proba"] = consistency(None, ys, neighbors=neighbors)
    return out


def _bootstrap_args(n_boot, level, seed):
    """The two bootstraps' shared checks: ``(n_boot, level, numpy Generator)``."""
    return (checks.integer(n_boot, "n_boot", low=2),
            checks.fraction(level, "level", open_low=True, open_high=True),
            checks.numpy_rng(seed))


def bootstrap_ci(y_true, y_pred, sensitive, metrics: Mapping[str, Callable], *,
                 n_boot: int = 1000, level: float = 0.95, seed=0) -> pd.DataFrame:
    """Percentile bootstrap intervals (Efron & Tibshirani 1993) of test-set metrics.

    Resamples the test rows with replacement ``n_boot`` times (``scipy.stats.bootstrap``, one
    set of resamples shared by all metrics) and reports, for each
    ``metrics[name](y_true, y_pred, sensitive)``, the full-sample estimate and the
    :math:`(1-level)/2` and :math:`(1+level)/2` quantiles of the resampled values. The model is
    held fixed: the interval covers test-set sampling noise, not retraining noise. ``y_pred``
    may be decisions or probabilities in [0, 1].
    """
    yt, yp, s = _pair(y_true, y_pred, sensitive, scores=True)
    if not isinstance(metrics, Mapping) or not metrics:
        raise TypeError("metrics must be a non-empty mapping name -> fn(y_true, y_pred, "
                        f"sensitive), got {type(metrics).__name__}")
    n_boot, level, rng = _bootstrap_args(n_boot, level, seed)
    if np.isin(yp, (0.0, 1.0)).all():
        yp = yp.astype(np.int64)
    names = list(metrics)

    def statistic(i):
        return np.array([metrics[k](yt[i], yp[i], s[i]) for k in names], dtype=float)

    # (mutation testing, equivalent: scipy infers vectorized=False from a statistic without an axis
    # argument and lowercases the method)
    res = stats.bootstrap((np.arange(yt.shape[0]),), statistic, vectorized=False,
                          n_resamples=n_boot, confidence_level=level, method="percentile",
                          rng=rng)
    return pd.DataFrame({"estimate": statistic(np.arange(yt.shape[0])),
                         "low": res.confidence_interval.low,
                         "high": res.confidence_interval.high}, index=names)


def bootstrap_mean_ci(values, *, n_boot: int = 1000, level: float = 0.95,
                      seed=0) -> tuple[float, float, float]:
    """Mean of per-row ``values`` with a percentile bootstrap interval: ``(mean, low, high)``.

    For a paired comparison of two classifiers on the same test rows pass
    :math:`d_i = [\\hat y^A_i = y_i] - [\\hat y^B_i = y_i]`: the mean is the accuracy difference
    and resampling rows keeps the pairing, so the interval is much narrower than the two
    accuracies' separate intervals suggest. ``scipy.stats.bootstrap``, percentile method.
    """
    v = checks.array(values, "values", ndim=1)
    if v.size < 2:
        raise ValueError(f"values must hold at least 2 numbers to resample, got {v.size}")
    n_boot, level, rng = _bootstrap_args(n_boot, level, seed)
    # (mutation testing, equivalent: scipy lowercases the method)
    res = stats.bootstrap((v,), np.mean, n_resamples=n_boot, confidence_level=level,
                          method="percentile", rng=rng)
    return float(v.mean()), float(res.confidence_interval.low), float(res.confidence_interval.high)


def goal_verdict(di_interval, drop_interval, *, min_di: float = 0.8,
                 max_drop: float = 1.5) -> str:
    """The goal "DI >= ``min_di`` with an accuracy drop <= ``max_drop`` points", judged on
    confidence intervals: ``"met"`` when the whole DI interval is >= ``min_di`` and the whole
    drop interval is <= ``max_drop``; ``"not met"`` when either interval lies entirely on the
    wrong side; otherwise ``"inconclusive"`` (the test set cannot tell)."""
    di_lo, di_hi = _interval(di_interval, "di_interval")
    dr_lo, dr_hi = _interval(drop_interval, "drop_interval")
    min_di, max_drop = checks.real(min_di, "min_di"), checks.real(max_drop, "max_drop")
    if di_hi < min_di or dr_lo > max_drop:
        return "not met"
    if di_lo >= min_di and dr_hi <= max_drop:
        return "met"
    return "inconclusive"


def _interval(values, name: str) -> tuple[float, float]:
    arr = checks.array(values, name, ndim=1)
    if arr.shape != (2,) or arr[0] > arr[1]:
        raise ValueError(f"{name} must be (low, high) with low <= high, got {arr.tolist()}")
    return float(arr[0]), float(arr[1])


def _values(values, name: str) -> list[float]:
    """A sweep's knob values: a non-empty 1-D array-like of finite numbers >= 0."""
    return [float(v) for v in checks.array(values, name, ndim=1, low=0.0)]


def _validation_columns(y_val, s_val, y_fit) -> dict:
    return {"val_accuracy": float((y_fit == y_val).mean()),
            "val_disparate_impact": disparate_impact(y_fit, s_val, PRIVILEGED)}


def _sweep(values, make_fit, train, val, test, neighbors, include_sex, knob, desc):
    """Fit the pipeline's features once, then one classifier per knob value.

    The preprocessing step is fitted without weights or labels, so it is the same for every
    knob value; only the logistic regression is refitted (``make_fit(v)`` returns its labels,
    sample weights and extra columns). Each model is identical to :func:`fit_adult_model`'s.
    """
    from sklearn.base import clone
    from tqdm.auto import tqdm

    template = adult_pipeline(include_sex=include_sex)
    features = template.named_steps["features"].fit(train)
    x_train, x_val, x_test = (features.transform(d) for d in (train, val, test))
    rows = []
    for v in tqdm(values, desc=desc, leave=False):
        labels, weights, extra = make_fit(v)
        with _one_blas_thread():
            clf = clone(template.named_steps["clf"]).fit(x_train, labels, sample_weight=weights)
            y_val, y_pred = clf.predict(x_val), clf.predict(x_test)
            score = clf.predict_proba(x_test)
        row = {knob: v, **extra,
               **_validation_columns(val[LABEL].to_numpy(), val[SENSITIVE].to_numpy(), y_val)}
        # (mutation testing, equivalent: PRIVILEGED is summarize's default)
        row.update(summarize(test[LABEL], y_pred, test[SENSITIVE], PRIVILEGED, neighbors=neighbors,
                             y_score=score[:, 1]))
        rows.append(row)
    return pd.DataFrame(rows)


def _frames(train, val, test, needed=(*FEATURES, LABEL)):
    for name, df in (("train", train), ("val", val), ("test", test)):
        checks.frame(df, name, list(needed))


def reweighing_sweep(train: pd.DataFrame, val: pd.DataFrame, test: pd.DataFrame, strengths, *,
                     neighbors=None, include_sex: bool = True) -> pd.DataFrame:
    """Fit on ``train`` with :func:`reweighing_weights` at each ``strength`` (0 = the baseline,
    1 = full Kamiran & Calders): one row per strength with ``val_accuracy`` and
    ``val_disparate_impact`` (on the validation split ``val``, where the knob is chosen) and
    :func:`summarize` on ``test`` (the grade, with probabilities)."""
    _frames(train, val, test)
    strengths = _values(strengths, "strengths")
    y = _binary(train[LABEL], "train[LABEL]")

    def make_fit(a):
        return y, reweighing_weights(y, train[SENSITIVE], strength=a), {}

    return _sweep(strengths, make_fit, train, val, test, neighbors, include_sex, "strength",
                  "reweighing sweep")


def massaging_sweep(train: pd.DataFrame, val: pd.DataFrame, test: pd.DataFrame, scores,
                    fractions, *, neighbors=None, include_sex: bool = True) -> pd.DataFrame:
    """Fit on :func:`massage`-d ``train`` labels for each ``fraction`` of the :math:`M` pairs;
    ``scores`` ranks the training rows (the ranker's :math:`P(y=1 \\mid x)`). Columns as in
    :func:`reweighing_sweep`, plus ``flips`` (labels changed)."""
    _frames(train, val, test)
    fractions = _values(fractions, "fractions")
    y = _binary(train[LABEL], "train[LABEL]")
    # (mutation testing, equivalent: massage checks scores' ndim again under the same name)
    sc = checks.array(scores, "scores", ndim=1)
    checks.same_length("scores", sc, "train", train)

    def make_fit(f):
        y_m = massage(y, train[SENSITIVE], sc, PRIVILEGED, fraction=f)
        return y_m, None, {"flips": int((y_m != y).sum())}

    return _sweep(fractions, make_fit, train, val, test, neighbors, include_sex, "fraction",
                  "massaging sweep")


def threshold_sweep(thresholds: Mapping, scores_val, val: pd.DataFrame, scores_test,
                    test: pd.DataFrame, strengths, *, neighbors=None) -> pd.DataFrame:
    """Post-processing trade-off: thresholds :math:`t_g(\\lambda) = 0.5 + \\lambda\\,(t_g - 0.5)`
    between the plain 0.5 cut (:math:`\\lambda = 0`) and the given group ``thresholds``
    (:math:`\\lambda = 1`, e.g. from :func:`group_thresholds`). One row per ``strength`` with the
    thresholds, ``val_accuracy`` and ``val_disparate_impact`` on ``scores_val`` and
    :func:`summarize` on ``scores_test``."""
    if not isinstance(thresholds, Mapping) or not thresholds:
        raise TypeError("thresholds must be a non-empty mapping group -> threshold, got "
                        f"{type(thresholds).__name__}")
    full = {g: checks.real(t, f"thresholds[{g!r}]") for g, t in thresholds.items()}
    checks.frame(val, "val", [SENSITIVE, LABEL])
    checks.frame(test, "test", [SENSITIVE, LABEL])
    sv, st = _scores(scores_val, "scores_val"), _scores(scores_test, "scores_test")
    checks.same_length("scores_val", sv, "val", val)
    checks.same_length("scores_test", st, "test", test)
    rows = []
    for lam in _values(strengths, "strengths"):
        th = {g: 0.5 + lam * (t - 0.5) for g, t in full.items()}
        row = {"strength": lam, **{f"threshold_{g}": t for g, t in th.items()}}
        y_val = apply_thresholds(sv, val[SENSITIVE], th)
        row.update(_validation_columns(val[LABEL].to_numpy(), val[SENSITIVE].to_numpy(), y_val))
        y_pred = apply_thresholds(st, test[SENSITIVE], th)
        # (mutation testing, equivalent: PRIVILEGED is summarize's default)
        row.update(summarize(test[LABEL], y_pred, test[SENSITIVE], PRIVILEGED, neighbors=neighbors))
        rows.append(row)
    return pd.DataFrame(rows)


def interpolate_knob(sweep: pd.DataFrame, knob: str, column: str, target: float) -> float:
    """Smallest knob value at which ``column`` reaches ``target``, by linear interpolation
    between the first two consecutive rows of ``sweep`` (sorted by ``knob``) that bracket it.

    Used to set a mitigation's strength from the *validation* disparate impact
    (``column="val_disparate_impact"``, ``target=0.8``) so the test split is only used to grade.
    Raises ``ValueError`` on an empty sweep and when no row reaches the target.
    """
    checks.frame(sweep, "sweep", [knob, column])
    if len(sweep) == 0:
        raise ValueError("sweep must have at least one row, got an empty DataFrame")
    target = checks.real(target, "target")
    df = sweep.sort_values(knob)
    # (mutation testing, equivalent: a DataFrame column is always 1-D; the loop cannot return at i =
    # 0, where y[0] < target)
    x = checks.array(df[knob], f"sweep[{knob!r}]", ndim=1)
    y = checks.array(df[column], f"sweep[{column!r}]", ndim=1)
    if y[0] >= target:
        return float(x[0])
    for i in range(1, len(x)):
        if y[i] >= target:
            # (mutation testing: unreachable, y[i - 1] < target <= y[i] here; kept as a guard)
            if y[i] == y[i - 1]:  # pragma: no mutate
                return float(x[i])  # pragma: no mutate
            return float(x[i - 1] + (target - y[i - 1]) * (x[i] - x[i - 1]) / (y[i] - y[i - 1]))
    raise ValueError(f"target must be reached in the sweep: {column} never reaches {target:g} "
                     f"(max {y.max():.3f})")


def association_with(df: pd.DataFrame, column: str, features: Sequence[str]) -> pd.DataFrame:
    """Strength of association between ``df[column]`` (categorical, e.g. sex) and each feature.

    Categorical feature: Cramér's V, :math:`V = \\sqrt{\\chi^2 / (n\\,(\\min(r, c) - 1))}` from the
    contingency table (Cramér 1946; ``scipy.stats.contingency.association``). Numeric feature:
    the correlation ratio
    :math:`\\eta = \\sqrt{\\sum_g n_g (\\bar x_g - \\bar x)^2 / \\sum_i (x_i - \\bar x)^2}` (for a
    binary ``column`` this is the absolute point-biserial correlation). Both lie in [0, 1]; a
    feature with a high value is a proxy that can carry the protected attribute into a model
    that never sees it. Missing values count as their own category. Sorted, strongest first.
    """
    features = list(features)
    checks.frame(df, "df", [column, *features])
    if not features:
        raise ValueError("features must name at least one column")
    if column in features:
        raise ValueError(f"features must not contain the column itself ({column!r})")
    g = df[column].astype(str).to_numpy()
    rows = []
    for f in features:
        x = df[f]
        if pd.api.types.is_numeric_dtype(x):
            # (mutation testing, equivalent: a numeric column gives the same sums as int or float;
            # the missing category's name does not change Cramér's V)
            xv = x.to_numpy(float)
            total = ((xv - xv.mean()) ** 2).sum()
            if total == 0:
                raise ValueError(f"features must not be constant: {f!r} has an undefined "
                                 "correlation ratio")
            between = sum((g == k).sum() * (xv[g == k].mean() - xv.mean()) ** 2
                          for k in np.unique(g))
            rows.append({"feature": f, "measure": "correlation ratio",
                         "value": float(np.sqrt(between / total))})
        else:
            table = pd.crosstab(x.fillna("missing").astype(str), g).to_numpy()
            if min(table.shape) < 2:
                raise ValueError(f"features must have two or more categories: {f!r} (against "
                                 f"{column!r}) leaves Cramér's V undefined")
            rows.append({"feature": f, "measure": "Cramér's V",
                         "value": float(association(table, method="cramer"))})
    return pd.DataFrame(rows).sort_values("value", ascending=False).reset_index(drop=True)


def plot_tradeoff(curves: Mapping[str, pd.DataFrame], points: Mapping[str, Mapping], *,
                  baseline_accuracy: float, max_drop: float = 0.015, ax=None):
    """Accuracy against disparate impact: one line per sweep in ``curves`` (DataFrames with
    ``disparate_impact`` and ``accuracy`` columns) and one marker per model in ``points``
    (name -> dict with the same keys). Draws the four-fifths line (DI = 0.8) and the accuracy
    floor ``baseline_accuracy - max_drop``; the goal region is the upper right. Returns the axes."""
    import matplotlib.pyplot as plt

    for name, arg in (("curves", curves), ("points", points)):
        if not isinstance(arg, Mapping):
            raise TypeError(f"{name} must be a mapping name -> data, got {type(arg).__name__}")
    baseline_accuracy = checks.fraction(baseline_accuracy, "baseline_accuracy")
    max_drop = checks.fraction(max_drop, "max_drop")
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 5))
    markers = iter("osD^vP*Xh<>p")
    for name, df in curves.items():
        checks.frame(df, f"curves[{name!r}]", ["disparate_impact", "accuracy"])
        ax.plot(df["disparate_impact"], df["accuracy"], ".-", alpha=0.6, label=f"{name} (sweep)")
    for name, p in points.items():
        ax.plot(p["disparate_impact"], p["accuracy"], next(markers, "o"), ms=9, mec="k", label=name)
    ax.axvline(0.8, color="grey", ls="--", lw=1, label="four-fifths rule (DI = 0.8)")
    ax.axhline(baseline_accuracy - max_drop, color="grey", ls=":", lw=1,
               label=f"baseline accuracy - {100 * max_drop:.1f} points")
    ax.set_xlabel("disparate impact on the test split (women / men selection rate)")
    ax.set_ylabel("test accuracy")
    ax.set_title("Accuracy vs disparate impact on UCI Adult (test split)")
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(alpha=0.3)
    return ax
