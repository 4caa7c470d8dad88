"""Model extraction: a counting prediction API, equation-solving extraction of logistic
regressions, learning-based substitutes (Jacobian augmentation, noise, natural images),
transfer of adversarial examples, and the PRADA query-pattern detector.

Threat model: the attacker sees only a prediction API. :class:`QueryAPI` answers with
probabilities, rounded probabilities or labels only and counts every input row it answers, so
every curve of the notebook is plotted against the number of queries actually spent.

References:
    Tramer, Zhang, Juels, Reiter, Ristenpart. Stealing Machine Learning Models via Prediction
    APIs. USENIX Security 2016.
    Papernot, McDaniel, Goodfellow, Jha, Celik, Swami. Practical Black-Box Attacks against
    Machine Learning. AsiaCCS 2017.
    Orekondy, Schiele, Fritz. Knockoff Nets: Stealing Functionality of Black-Box Models.
    CVPR 2019.
    Juuti, Szyller, Marchal, Asokan. PRADA: Protecting against DNN Model Stealing Attacks.
    EuroS&P 2019.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn
from tqdm.auto import tqdm

from helpers import checks, models

__all__ = [
    "EVAL_BATCH",
    "OUTPUTS",
    "STRATEGIES",
    "SUBSTITUTE_WIDTH",
    "QueryAPI",
    "agreement",
    "extract_logistic_regression",
    "jacobian_augment",
    "model_api",
    "prada_detect",
    "prada_min_distances",
    "steal",
    "transfer_success_rate",
]

#: What a :class:`QueryAPI` returns: full probabilities, probabilities rounded to ``decimals``,
#: or the top-1 label only.
OUTPUTS = ("probabilities", "rounded", "labels")
#: How :func:`steal` grows its query set.
STRATEGIES = ("jacobian", "noise", "natural")
#: The attacker's default substitute is :class:`helpers.models.MnistCNN` at this width (16 and
#: 32 channels, about a third of the standard CNN's compute): the attacker does not know the
#: victim's architecture, and Papernot et al. 2017 show that the substitute's matters little.
SUBSTITUTE_WIDTH = 16
#: Batch size of the API's and the evaluation's forward passes: on a CPU a batch of a few
#: hundred images stays in cache and runs about twice as fast per image as one of 1,000.
EVAL_BATCH = 256


# --------------------------------------------------------------------------------------------
# The prediction API
# --------------------------------------------------------------------------------------------


class QueryAPI:
    """A prediction API that counts the rows it answers.

    ``predict_proba`` maps a batch of m inputs (a NumPy array or a tensor) to class
    probabilities shaped (m, K). The API returns, depending on ``output``:

    * ``"probabilities"``: :math:`p(x)` as computed;
    * ``"rounded"``: :math:`\\operatorname{round}(p(x), \\text{decimals})` (the output
      perturbation of Tramer et al. 2016, Section 7);
    * ``"labels"``: :math:`\\arg\\max_k p_k(x)` only, a 1-D int64 array/tensor.

    ``queries`` counts every row answered (also rows of a call whose answer is wrong-shaped and
    raises: the victim did the work). Answers have the type of the input (NumPy in, NumPy out;
    tensor in, tensor on the input's device out).
    """

    def __init__(self, predict_proba: Callable, output: str = "probabilities",
                 decimals: int | None = None):
        if not callable(predict_proba):
            raise TypeError("predict_proba must be callable as predict_proba(x) -> (m, K) "
                            f"probabilities, got {type(predict_proba).__name__}")
        self.output = checks.choice(output, "output", OUTPUTS)
        if output == "rounded":
            if decimals is None:
                raise ValueError("decimals must be given (an int >= 0) when output='rounded'")
            decimals = checks.integer(decimals, "decimals", low=0, high=15)
        elif decimals is not None:
            raise ValueError(f"decimals must be None unless output='rounded', got {decimals!r}")
        self.decimals = decimals
        self._predict = predict_proba
        self.queries = 0

    def __repr__(self) -> str:
        extra = f", decimals={self.decimals}" if self.decimals is not None else ""
        return f"QueryAPI(output={self.output!r}{extra}, queries={self.queries})"

    def __call__(self, x):
        if not hasattr(x, "shape") or len(x.shape) < 2:
            raise ValueError("x must be a batch of inputs shaped (m, ...) with m >= 1, got "
                             f"{getattr(x, 'shape', type(x).__name__)}")
        m = int(x.shape[0])
        if m < 1:
            raise ValueError("x must hold at least one input row, got 0")
        self.queries += m
        p = self._predict(x)
        if tuple(p.shape[:1]) != (m,) or len(p.shape) != 2 or p.shape[1] < 2:
            raise ValueError(f"predict_proba must return probabilities shaped ({m}, K) with "
                             f"K >= 2 for {m} inputs, got shape {tuple(p.shape)}")
        if self.output == "labels":
            return p.argmax(1)
        if self.output == "rounded":
            return (torch.round(p, decimals=self.decimals) if isinstance(p, torch.Tensor)
                    else np.round(p, self.decimals))
        return p


def model_api(model: nn.Module, output: str = "probabilities", decimals: int | None = None,
              batch_size: int = EVAL_BATCH) -> QueryAPI:
    """A :class:`QueryAPI` in front of a torch classifier: :math:`p(x) = \\mathrm{softmax}(f(x))`
    computed without gradients in eval mode (the model's mode is restored after each call)."""
    checks.module(model)
    batch_size = checks.integer(batch_size, "batch_size", low=1)

    @torch.no_grad()
    def predict_proba(x: torch.Tensor) -> torch.Tensor:
        x = checks.images(x, "x")
        was_training = model.training
        model.eval()
        dev = models._model_device(model)
        try:
            out = torch.cat([F.softmax(model(x[i:i + batch_size].to(dev)), 1)
                             for i in range(0, len(x), batch_size)])
        finally:
            model.train(was_training)
        return out.to(x.device)

    return QueryAPI(predict_proba, output=output, decimals=decimals)


def agreement(a, b) -> float:
    """Fidelity: the share of inputs on which two label vectors agree,
    :math:`\\frac{1}{n}\\sum_i [a_i = b_i]` (Jagielski et al. 2020 call it fidelity)."""
    a = checks.labels(a, "a")
    b = checks.labels(b, "b")
    checks.same_length("a", a, "b", b)
    return float((a == b).mean())


# --------------------------------------------------------------------------------------------
# Equation-solving extraction (Tramer et al. 2016, Section 4.1)
# --------------------------------------------------------------------------------------------


def extract_logistic_regression(query: Callable, n_features: int):
    """Recover a logistic regression from its probabilities with exactly ``n_features + 1``
    queries (Tramer et al. 2016, Section 4.1.1).

    The log-odds of a (multinomial) logistic regression are linear in the input:

    .. math::
        \\log\\frac{p_k(x)}{p_0(x)} = (w_k - w_0)^\\top x + (b_k - b_0).

    Querying :math:`x = 0` gives :math:`b_k - b_0`; querying the unit vectors :math:`e_j` gives
    :math:`(w_k - w_0)_j + (b_k - b_0)`: d + 1 equations, d + 1 unknowns per class.

    Args:
        query: a callable from an (m, n_features) float array to probabilities shaped (m, K),
            as scikit-learn's ``predict_proba`` returns (a :class:`QueryAPI` is one).
        n_features: the input dimension d.

    Returns:
        For K = 2: ``(w, b)`` with ``w`` shaped (d,), the binary model
        :math:`p_1 = \\sigma(w^\\top x + b)`. For K > 2: ``(W, b)`` shaped (K, d) and (K,), the
        softmax weights up to the per-class shift that leaves predictions unchanged (row 0 is
        set to zero: :math:`W_k = w_k - w_0`).

    Raises:
        ValueError: the answers are not (d + 1, K) probabilities, or some are 0 or 1 (rounded
            or saturated answers leave the log-odds undefined).
    """
    if not callable(query):
        raise TypeError(f"query must be callable, got {type(query).__name__}")
    d = checks.integer(n_features, "n_features", low=1)
    x = np.vstack([np.zeros((1, d)), np.eye(d)])
    p = query(x)
    # (mutation testing, equivalent: dtype="float" is checks.array's default)
    p = checks.array(p, "query answers", dtype="float")
    if p.ndim != 2 or p.shape[0] != d + 1 or p.shape[1] < 2:
        raise ValueError(f"query must return probabilities shaped ({d + 1}, K) with K >= 2 for "
                         f"{d + 1} inputs, got shape {p.shape}")
    # (mutation testing, equivalent: `>=` differs only for a row sum off by exactly 1e-6)
    if np.abs(p.sum(1) - 1).max() > 1e-6 or p.min() < 0:
        raise ValueError("query must return probabilities (rows >= 0 summing to 1)")
    if p.min() <= 0 or p.max() >= 1:
        raise ValueError("query returned probabilities of exactly 0 or 1: the log-odds are "
                         "undefined (rounded or saturated answers defeat equation solving)")
    log_odds = np.log(p) - np.log(p[:, :1])  # (d + 1, K): column 0 is zero
    bias = log_odds[0]
    weights = (log_odds[1:] - bias).T  # (K, d)
    if p.shape[1] == 2:
        return weights[1], float(bias[1])
    return weights, bias


# --------------------------------------------------------------------------------------------
# Learning-based extraction (Papernot et al. 2017; Orekondy et al. 2019)
# --------------------------------------------------------------------------------------------


def jacobian_augment(model: nn.Module, x: torch.Tensor, labels: torch.Tensor,
                     lam: float = 0.1) -> torch.Tensor:
    """Jacobian-based dataset augmentation (Papernot et al. 2017, Algorithm 1, line 9):

    .. math::
        x' = \\operatorname{clip}_{[0,1]}\\big(x + \\lambda\\,
             \\operatorname{sign}(\\nabla_x F_{O(x)}(x))\\big)

    where :math:`F` is the substitute's softmax and :math:`O(x)` the label the victim gave
    ``x``: a step toward where the substitute's output for that label changes fastest, i.e.
    toward the victim's decision boundary. Returns the new points only (the caller appends them,
    doubling the set). The model is not changed (mode restored, no ``.grad`` left).
    """
    checks.module(model)
    # (mutation testing, equivalent: "x" is checks.images's default name)
    x = checks.images(x, "x")
    # (mutation testing, equivalent on a one-device machine: without device= torch_labels
    # leaves the labels where they are; they follow x to a GPU, tested where CUDA is)
    labels = checks.torch_labels(labels, "labels", n=x.shape[0], device=x.device)
    lam = checks.real(lam, "lam", low=0)
    was_training = model.training
    model.eval()
    try:
        xg = x.detach().clone().requires_grad_(True)
        probs = F.softmax(model(xg), 1)
        picked = probs.gather(1, labels[:, None]).sum()
        (grad,) = torch.autograd.grad(picked, xg)
    finally:
        model.train(was_training)
    return (x + lam * grad.sign()).clamp(0.0, 1.0).detach()


def _as_targets(answers: torch.Tensor) -> torch.Tensor:
    return answers.float() if answers.is_floating_point() else answers.long()


def _oracle_labels(answers: torch.Tensor) -> torch.Tensor:
    return answers.argmax(1) if answers.ndim == 2 else answers


def steal(api: QueryAPI, x_seed: torch.Tensor, budgets: Sequence[int], strategy: str, *,
          victim_labels_test: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor,
          pool: torch.Tensor | None = None, lam: float = 0.1, epochs: int = 4,
          min_steps: int = 150, batch_size: int = 64, lr: float = 1e-3, seed=0,
          build: Callable[[], nn.Module] | None = None, name: str = "substitute",
          progress: bool = True):
    """Learning-based extraction: grow a query set, label it through ``api``, train a
    substitute after each round, and record its test accuracy and fidelity.

    The query set starts with the attacker's ``x_seed`` images and grows, until each budget in
    ``budgets`` is reached, by ``strategy``:

    * ``"jacobian"``: Jacobian-based augmentation (Papernot et al. 2017): each round adds
      :func:`jacobian_augment` of the whole current set (doubling it), computed with the
      latest substitute, the one trained at the previous budget (Papernot et al. retrain after
      every round: give doubling budgets for that; budgets further apart let several rounds
      share a substitute); a round stops at the budget, taking a random subset;
    * ``"noise"``: images of i.i.d. uniform pixels;
    * ``"natural"``: the next unlabeled images of ``pool`` (a natural-data attacker, Orekondy et
      al. 2019's Knockoff Nets with a random policy).

    Only the new points are sent to ``api`` (answers of earlier rounds are kept), so the
    queries spent equal the set size. With probability answers the substitute is trained on
    the soft labels (distillation); with label answers on the labels. Each round warm-starts
    from the previous round's substitute and trains it for ``max(epochs, ceil(min_steps /
    batches per epoch))`` epochs (:func:`helpers.models.train_cached`, so reruns load from the
    cache). ``build()`` makes the substitute (default: :class:`helpers.models.MnistCNN` of
    width :data:`SUBSTITUTE_WIDTH`).

    Fidelity is :math:`\\Pr_{x \\sim \\text{test}}[\\hat f(x) = f(x)]` with
    ``victim_labels_test`` = :math:`f(x)` computed by the caller outside the API (evaluation
    does not count as attacker queries).

    Returns:
        ``(substitute, history, x_queries)``: the last substitute (eval mode), one dict per
        budget ``{"queries", "fidelity", "accuracy"}``, and the ordered query set.
    """
    if not isinstance(api, QueryAPI):
        raise TypeError(f"api must be a QueryAPI, got {type(api).__name__}")
    x_seed = checks.images(x_seed, "x_seed")
    strategy = checks.choice(strategy, "strategy", STRATEGIES)
    budgets = [checks.integer(b, "budgets", low=1) for b in budgets]
    # (mutation testing, equivalent: strict=False is zip's default, None is falsy like it)
    increasing = all(b2 > b1 for b1, b2 in zip(budgets, budgets[1:], strict=False))
    if not budgets or budgets[0] < len(x_seed) or not increasing:
        raise ValueError(f"budgets must be increasing and start at >= len(x_seed) = "
                         f"{len(x_seed)}, got {budgets}")
    if strategy == "jacobian" and budgets[0] != len(x_seed):
        raise ValueError(f"budgets must start at len(x_seed) = {len(x_seed)} for "
                         f"strategy='jacobian' (round 0 trains on the seeds), got {budgets[0]}")
    if strategy == "natural":
        if pool is None:
            raise ValueError("pool must be given (unlabeled natural images) for "
                             "strategy='natural'")
        pool = checks.images(pool, "pool")
        if len(pool) < budgets[-1] - len(x_seed):
            raise ValueError(f"pool must hold at least {budgets[-1] - len(x_seed)} images for "
                             f"these budgets, got {len(pool)}")
    x_test = checks.images(x_test, "x_test")
    victim_labels_test = checks.torch_labels(victim_labels_test, "victim_labels_test",
                                             n=len(x_test))
    y_test = checks.torch_labels(y_test, "y_test", n=len(x_test))
    if build is None:
        build = functools.partial(models.MnistCNN, width=SUBSTITUTE_WIDTH)
    elif not callable(build):
        raise TypeError(f"build must be None or callable as build() -> nn.Module, got "
                        f"{type(build).__name__}")
    gen = checks.torch_generator(seed)
    # (mutation testing, equivalent here and in train_seed below: torch.randint(high, size)
    # is torch.randint(0, high, size), the same draw)
    gen = gen if gen is not None else torch.Generator().manual_seed(
        int(torch.randint(0, 2**31 - 1, (1,))))
    train_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
    if pool is not None:
        pool = pool[torch.randperm(len(pool), generator=gen)]
    start = api.queries
    xs, answers = [x_seed], [api(x_seed)]
    size, used_pool, model, history = len(x_seed), 0, None, []
    bar = tqdm(budgets, desc=f"{name}: {strategy}, {api.output}", leave=False,
               disable=not progress)
    for budget in bar:
        while size < budget:
            n_new = min(size, budget - size)
            if strategy == "jacobian":
                x_all, a_all = torch.cat(xs), torch.cat(answers)
                pick = (torch.arange(size) if n_new == size
                        else torch.randperm(size, generator=gen)[:n_new].sort().values)
                new = jacobian_augment(model, x_all[pick], _oracle_labels(a_all[pick]), lam)
            elif strategy == "noise":
                new = torch.rand((n_new, *x_seed.shape[1:]), generator=gen).to(x_seed)
            else:
                new = pool[used_pool:used_pool + n_new]
                used_pool += n_new
            xs.append(new)
            answers.append(api(new))
            size += n_new
        x_all, a_all = torch.cat(xs), _as_targets(torch.cat(answers))
        model = models.train_cached(name, build, x_all, a_all, epochs=epochs, lr=lr,
                                    batch_size=batch_size, min_steps=min_steps, init=model,
                                    seed=train_seed, device=x_seed.device)
        # (mutation testing, equivalent: the batch size changes only how many rows share a
        # forward pass, not any row's prediction)
        pred = models.predict(model, x_test, batch_size=EVAL_BATCH)
        history.append({"queries": api.queries - start,
                        "fidelity": float((pred == victim_labels_test).double().mean()),
                        "accuracy": float((pred == y_test).double().mean())})
    bar.close()
    return model, history, torch.cat(xs)


def transfer_success_rate(victim: nn.Module, x_adv: torch.Tensor, x: torch.Tensor,
                          y: torch.Tensor) -> float:
    """Untargeted success rate on ``victim``: among the images it classifies correctly,
    the share whose adversarial version it misclassifies,
    :math:`\\Pr[f(x_{adv}) \\ne y \\mid f(x) = y]` (Papernot et al. 2017's transferability)."""
    checks.module(victim, "victim")
    # (mutation testing, equivalent: "x" is checks.images's default name)
    x = checks.images(x, "x")
    x_adv = checks.images(x_adv, "x_adv")
    if x_adv.shape != x.shape:
        raise ValueError(f"x_adv must have the shape of x {tuple(x.shape)}, got "
                         f"{tuple(x_adv.shape)}")
    # (mutation testing, equivalent: "y" is checks.torch_labels's default name; for device=
    # as in jacobian_augment: equivalent on a one-device machine, tested where CUDA is)
    y = checks.torch_labels(y, "y", n=len(x), device=x.device)
    correct = models.predict(victim, x) == y
    if not bool(correct.any()):
        raise ValueError("the victim misclassifies every x: the success rate is undefined")
    fooled = models.predict(victim, x_adv) != y
    return float(fooled[correct].double().mean())


# --------------------------------------------------------------------------------------------
# PRADA (Juuti et al. 2019)
# --------------------------------------------------------------------------------------------


def prada_min_distances(x, labels) -> np.ndarray:
    """The stream of minimum distances PRADA tests (Juuti et al. 2019, Algorithm 1).

    For each query :math:`x` with predicted class :math:`c`, in arrival order: if the growing
    set :math:`G_c` is empty, :math:`x` joins it; otherwise
    :math:`d = \\min_{y \\in G_c} \\|x - y\\|_2` is appended to :math:`D`, and :math:`x` joins
    :math:`G_c` when :math:`d > T_c`, with the threshold
    :math:`T_c = \\max(T_c, \\bar D_{G_c} - \\mathrm{sd}(D_{G_c}))` over the distances that
    admitted points to :math:`G_c`. Returns :math:`D` in order (one entry per query except the
    first of each class).
    """
    # (mutation testing, equivalent: without the tensor branch checks.array converts a CPU
    # tensor to the same float64 values (the branch keeps GPU tensors on the GPU); NumPy reads
    # any negative size in reshape as "the rest", like -1)
    xf = x.reshape(len(x), -1).double() if isinstance(x, torch.Tensor) else \
        torch.as_tensor(checks.array(x, "x", ndim=(2, 3, 4)).reshape(len(x), -1))
    labels = checks.labels(labels, "labels", n=len(xf))
    groups: dict[int, torch.Tensor] = {}   # G_c as the first sizes[c] rows of a buffer
    sizes: dict[int, int] = {}
    admitted: dict[int, list[float]] = {}
    thresholds: dict[int, float] = {}
    out = []
    counts = np.bincount(labels)
    for i in range(len(xf)):
        c = int(labels[i])
        if c not in groups:
            groups[c] = xf.new_empty((int(counts[c]), xf.shape[1]))
            groups[c][0], sizes[c], admitted[c], thresholds[c] = xf[i], 1, [], 0.0
            continue
        d = float(torch.cdist(xf[i][None], groups[c][:sizes[c]]).min())
        out.append(d)
        if d > thresholds[c]:
            groups[c][sizes[c]] = xf[i]
            sizes[c] += 1
            admitted[c].append(d)
            if len(admitted[c]) > 1:
                arr = np.asarray(admitted[c])
                thresholds[c] = max(thresholds[c], float(arr.mean() - arr.std()))
    return np.asarray(out)


def prada_detect(distances, delta: float, *, min_queries: int = 100,
                 check_every: int = 10) -> tuple[int | None, np.ndarray]:
    """PRADA's test: raise an alarm when the Shapiro-Wilk statistic of the distance set
    :math:`D` falls below ``delta`` (Juuti et al. 2019: benign queries give roughly normal
    distances, synthetic ones such as Jacobian augmentation give a skewed, multi-modal set).

    The test runs on the first ``n`` distances for ``n = min_queries, min_queries +
    check_every, ...``. Returns ``(alarm_at, W)``: the number of distances seen when the alarm
    first rang (``None`` if never) and the statistic at every check.
    """
    d = checks.array(distances, "distances", ndim=1, low=0)
    delta = checks.fraction(delta, "delta")
    min_queries = checks.integer(min_queries, "min_queries", low=3)
    check_every = checks.integer(check_every, "check_every", low=1)
    if len(d) < min_queries:
        raise ValueError(f"distances must hold at least min_queries = {min_queries} values, "
                         f"got {len(d)}")
    ns = range(min_queries, len(d) + 1, check_every)
    w = np.array([stats.shapiro(d[:n]).statistic for n in ns])
    below = np.flatnonzero(w < delta)
    return (None if below.size == 0 else list(ns)[below[0]]), w
