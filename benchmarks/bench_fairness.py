"""Benchmark: the expensive steps of the Task 3 notebook against simpler alternatives.

Each row times two arms that do **the same work** and produce the same numbers (checked):

* ``sweep``: a whole four-point reweighing sweep. Ours, ``fairness.reweighing_sweep``, fits the
  features once and refits only the logistic regression; the alternative refits the whole
  pipeline with ``fairness.fit_adult_model`` at every point. Both predict the validation and test
  rows and ``summarize`` the test rows at every point.
* ``BLAS threads``: one sweep point (classifier fit + predictions) with BLAS on one thread (what
  the helpers do while fitting) against the default thread count.
* ``solver``: the pipeline's ``newton-cholesky`` logistic regression against scikit-learn's
  default ``lbfgs`` on the same one-hot matrix (same model up to the solvers' tolerance).
* ``consistency``: ``nearest_neighbors`` + ``consistency`` on the 16,281 test rows (scikit-learn
  k-NN) against a NumPy brute force over the full distance matrix, computed in row blocks.
* ``bootstrap``: ``bootstrap_ci`` of accuracy and DI, 1,000 resamples (``scipy.stats.bootstrap``)
  against a hand-written resampling loop with the same metric functions.

Every arm is run once to warm up, then the two arms alternate ``--repeats`` times (A, B, A, B,
...), so a change in the machine's load hits both. Printed: the minimum and the median of each
arm in seconds, and the ratio alternative / ours of the minima and of the medians, all measured
in this run.

Usage: python benchmarks/bench_fairness.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from helpers import data
from helpers import fairness as F


def compare(fn_a, fn_b, repeats: int) -> tuple[list[float], list[float]]:
    """Warm up each arm once, then alternate them ``repeats`` times; the two lists of seconds."""
    fn_a(), fn_b()
    times_a, times_b = [], []
    for _ in range(repeats):
        for fn, times in ((fn_a, times_a), (fn_b, times_b)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return times_a, times_b


def _brute_consistency(x: np.ndarray, y: np.ndarray, k: int = 5, block: int = 1024) -> float:
    sq = (x**2).sum(1)
    out = np.empty(len(x))
    for start in range(0, len(x), block):
        d = sq[start : start + block, None] - 2 * x[start : start + block] @ x.T + sq[None, :]
        d[np.arange(d.shape[0]), np.arange(start, start + d.shape[0])] = np.inf
        nn = np.argpartition(d, k, axis=1)[:, :k]
        out[start : start + block] = np.abs(y[start : start + block] - y[nn].mean(1))
    return float(1 - out.mean())


def _loop_bootstrap(y_true, y_pred, groups, metrics, n_boot=1000, seed=0):
    rng = np.random.default_rng(seed)
    n = len(y_true)
    draws = np.empty((n_boot, len(metrics)))
    for b in range(n_boot):
        idx = rng.integers(0, n, n)
        draws[b] = [fn(y_true[idx], y_pred[idx], groups[idx]) for fn in metrics.values()]
    return np.quantile(draws, [0.025, 0.975], axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    train, test = data.load_adult("train"), data.load_adult("test")
    fit, val = F.validation_split(train, 0.25, seed=0)
    y = fit[F.LABEL].to_numpy()
    strengths = [0.0, 0.5, 1.0, 1.5]
    rows = []

    # 1. a whole sweep: shared features vs the whole pipeline per point, the same outputs
    def ours():
        return F.reweighing_sweep(fit, val, test, strengths)

    def naive():
        out = []
        for a in strengths:
            w = F.reweighing_weights(y, fit["sex"], strength=a)
            model = F.fit_adult_model(fit, sample_weight=w)
            with threadpool_limits(limits=1, user_api="blas"):
                y_val, y_test = model.predict(val), model.predict(test)
                score = model.predict_proba(test)[:, 1]
            summary = F.summarize(test[F.LABEL], y_test, test["sex"], y_score=score)
            out.append(((y_val == val[F.LABEL]).mean(),
                        F.disparate_impact(y_val, val["sex"], "Male"), summary["accuracy"]))
        return out

    check = naive()
    np.testing.assert_allclose(ours()[["val_accuracy", "val_disparate_impact", "accuracy"]],
                               check, rtol=1e-12)
    rows.append(("sweep (4 points)", "shared features", "full pipeline",
                 *compare(ours, naive, args.repeats)))

    # 2. BLAS threads for one sweep point
    template = F.adult_pipeline()
    features = template.named_steps["features"].fit(fit)
    x_fit, x_test = features.transform(fit), features.transform(test)
    w = F.reweighing_weights(y, fit["sex"], strength=1.5)

    def point():
        clf = clone(template.named_steps["clf"]).fit(x_fit, y, sample_weight=w)
        return clf.predict(x_fit), clf.predict(x_test)

    def point_one_thread():
        with threadpool_limits(limits=1, user_api="blas"):
            return point()

    rows.append(("sweep point, BLAS threads", "1 thread", "default threads",
                 *compare(point_one_thread, point, args.repeats)))

    # 3. solver, both on one BLAS thread
    def newton():
        with threadpool_limits(limits=1, user_api="blas"):
            return clone(template.named_steps["clf"]).fit(x_fit, y, sample_weight=w)

    def lbfgs():
        with threadpool_limits(limits=1, user_api="blas"):
            return LogisticRegression(max_iter=2000).fit(x_fit, y, sample_weight=w)

    rows.append(("solver", "newton-cholesky", "lbfgs", *compare(newton, lbfgs, args.repeats)))

    # 4. consistency on the test rows
    y_pred = newton().predict(x_test)
    x_knn = F.fit_adult_model(fit, include_sex=False).named_steps["features"].transform(test)
    ours_c, brute = F.consistency(x_knn, y_pred, k=5), _brute_consistency(x_knn, y_pred)
    print(f"consistency: sklearn k-NN {ours_c:.6f}, NumPy brute force {brute:.6f} "
          "(ties may differ)")
    rows.append(("consistency (16,281 rows)", "sklearn k-NN", "NumPy brute force",
                 *compare(lambda: F.consistency(x_knn, y_pred, k=5),
                          lambda: _brute_consistency(x_knn, y_pred), args.repeats)))

    # 5. bootstrap: scipy against a hand-written loop, the same metrics and resample count
    y_test, is_male = test[F.LABEL].to_numpy(), test["sex"].to_numpy() == "Male"
    metrics = {"accuracy": lambda t, p, g: (t == p).mean(),
               "di": lambda t, p, g: F.disparate_impact(p, g, True)}
    rows.append(("bootstrap (1,000 x 2 metrics)", "scipy.stats", "Python loop",
                 *compare(lambda: F.bootstrap_ci(y_test, y_pred, is_male, metrics),
                          lambda: _loop_bootstrap(y_test, y_pred, is_male, metrics),
                          args.repeats)))

    print(f"seconds over {args.repeats} interleaved repeats after one warm-up each: "
          "minimum (median); ratio alternative / ours of the minima (of the medians)")
    print(f"{'step':30s} {'ours':>16s} {'s':>15s}   {'alternative':>17s} {'s':>15s}  alt/ours")
    for step, a, b, ta, tb in rows:
        mina, meda, minb, medb = min(ta), float(np.median(ta)), min(tb), float(np.median(tb))
        print(f"{step:30s} {a:>16s} {mina:6.3f} ({meda:6.3f})   {b:>17s} {minb:6.3f} ({medb:6.3f})"
              f"  {minb / mina:5.2f}x ({medb / meda:5.2f}x)")


if __name__ == "__main__":
    main()
