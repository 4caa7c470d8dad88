"""Benchmark: the expensive steps of the Task 3 notebook against simpler alternatives.

* ``sweep point``: one knob value of ``fairness.reweighing_sweep`` (the features are fitted once,
  only the logistic regression is refitted) against refitting the whole pipeline with
  ``fairness.fit_adult_model`` and predicting train and test through it (what a naive sweep pays).
* ``BLAS threads``: the same sweep point with BLAS limited to one thread (what the helpers do
  while fitting) against the default thread count.
* ``solver``: the pipeline's ``newton-cholesky`` logistic regression against scikit-learn's
  default ``lbfgs`` on the same one-hot matrix (same model up to the solvers' tolerance), both
  on one BLAS thread.
* ``consistency``: ``nearest_neighbors`` + ``consistency`` on the 16,281 test rows (scikit-learn
  k-NN) against a NumPy brute force over the full distance matrix, computed in row blocks.
* ``bootstrap``: ``bootstrap_ci`` of accuracy and DI, 1,000 resamples, with the group passed as a
  boolean array (as the notebook does) against the raw string column.

Timings are the minimum over ``--repeats`` repetitions (robust to other processes on a shared
machine) and, in brackets, the median (what a busy machine actually sees: the BLAS-thread row
differs most there). Prints seconds and ratios.

Usage: python benchmarks/bench_fairness.py [--repeats 3]
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

MEDIANS: dict[float, float] = {}


def _best(fn, repeats: int) -> float:
    """Minimum over ``repeats`` runs; the median is kept in ``MEDIANS`` (keyed by the minimum)."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    MEDIANS[min(times)] = float(np.median(times))
    return min(times)


def _brute_consistency(x: np.ndarray, y: np.ndarray, k: int = 5, block: int = 1024) -> float:
    sq = (x**2).sum(1)
    out = np.empty(len(x))
    for start in range(0, len(x), block):
        d = sq[start : start + block, None] - 2 * x[start : start + block] @ x.T + sq[None, :]
        d[np.arange(d.shape[0]), np.arange(start, start + d.shape[0])] = np.inf
        nn = np.argpartition(d, k, axis=1)[:, :k]
        out[start : start + block] = np.abs(y[start : start + block] - y[nn].mean(1))
    return float(1 - out.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    train, test = data.load_adult("train"), data.load_adult("test")
    y = train[F.LABEL].to_numpy()
    w = F.reweighing_weights(y, train["sex"], strength=1.5)
    rows = []

    # 1. one sweep point: shared features vs the whole pipeline
    template = F.adult_pipeline()
    features = template.named_steps["features"].fit(train)
    x_train, x_test = features.transform(train), features.transform(test)

    def shared():
        with threadpool_limits(limits=1, user_api="blas"):
            clf = clone(template.named_steps["clf"]).fit(x_train, y, sample_weight=w)
            clf.predict(x_train), clf.predict(x_test)

    def full():
        model = F.fit_adult_model(train, sample_weight=w)
        with threadpool_limits(limits=1, user_api="blas"):
            model.predict(train), model.predict(test)

    t_shared, t_full = _best(shared, args.repeats), _best(full, args.repeats)
    rows.append(("sweep point", "shared features", t_shared, "full pipeline", t_full))

    def shared_default_threads():
        clf = clone(template.named_steps["clf"]).fit(x_train, y, sample_weight=w)
        clf.predict(x_train), clf.predict(x_test)

    with threadpool_limits(limits=1, user_api="blas"):
        t_one = _best(shared, args.repeats)
    t_default = _best(shared_default_threads, args.repeats)
    rows.append(("sweep point, BLAS threads", "1 thread", t_one, "default threads", t_default))

    # 2. solver
    with threadpool_limits(limits=1, user_api="blas"):
        t_newton = _best(
            lambda: clone(template.named_steps["clf"]).fit(x_train, y, sample_weight=w),
            args.repeats,
        )
        t_lbfgs = _best(
            lambda: LogisticRegression(max_iter=2000).fit(x_train, y, sample_weight=w),
            args.repeats,
        )
    rows.append(("solver", "newton-cholesky", t_newton, "lbfgs", t_lbfgs))

    # 3. consistency on the test rows
    y_pred = clone(template.named_steps["clf"]).fit(x_train, y).predict(x_test)
    x_knn = F.fit_adult_model(train, include_sex=False).named_steps["features"].transform(test)
    ours = F.consistency(x_knn, y_pred, k=5)
    brute = _brute_consistency(x_knn, y_pred)
    print(f"consistency: sklearn k-NN {ours:.6f}, NumPy brute force {brute:.6f} (ties may differ)")
    t_knn = _best(lambda: F.consistency(x_knn, y_pred, k=5), args.repeats)
    t_brute = _best(lambda: _brute_consistency(x_knn, y_pred), args.repeats)
    rows.append(("consistency (16,281 rows)", "sklearn k-NN", t_knn, "NumPy brute force", t_brute))

    # 4. bootstrap
    y_test, s_test = test[F.LABEL].to_numpy(), test["sex"].to_numpy()
    boot_bool = {
        "accuracy": lambda t, p, g: (t == p).mean(),
        "di": lambda t, p, g: F.disparate_impact(p, g, True),
    }
    boot_str = {
        "accuracy": lambda t, p, g: (t == p).mean(),
        "di": lambda t, p, g: F.disparate_impact(p, g, "Male"),
    }
    t_bool = _best(
        lambda: F.bootstrap_ci(y_test, y_pred, s_test == "Male", boot_bool), args.repeats
    )
    t_str = _best(lambda: F.bootstrap_ci(y_test, y_pred, s_test, boot_str), args.repeats)
    rows.append(("bootstrap (1,000 x 2 metrics)", "bool groups", t_bool, "string groups", t_str))

    print("seconds: minimum (median) over the repeats; ratios of the minima, then of the medians")
    print(f"{'step':30s} {'ours':>16s} {'s':>15s}   {'alternative':>17s} {'s':>15s}  alt/ours")
    for step, a, ta, b, tb in rows:
        ma, mb = MEDIANS[ta], MEDIANS[tb]
        print(
            f"{step:30s} {a:>16s} {ta:6.3f} ({ma:6.3f})   {b:>17s} {tb:6.3f} ({mb:6.3f})"
            f"  {tb / ta:5.2f}x ({mb / ma:5.2f}x)"
        )


if __name__ == "__main__":
    main()
