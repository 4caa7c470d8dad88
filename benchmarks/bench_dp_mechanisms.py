"""Time the helpers of notebooks/task2_dp_mechanisms.ipynb against bare baselines, and the
notebook's Monte Carlo workloads against its budget.

1. Overhead of the helpers over the bare computation they wrap, each pair doing the same work
   (same draws from identically seeded generators, same arithmetic on the result):
   ``dp.laplace_mechanism`` (10^6 draws: input checks + ``Generator.laplace`` + the shift) vs
   ``value + Generator.laplace`` and vs ``scipy.stats.laplace.rvs(loc=value)``;
   ``dp.monte_carlo_exceeds`` (10^6 draws, p and its standard error) vs the same written inline.
   Every arm is run once to warm up, then the arms are interleaved ``--repeats`` times (A B C A B
   C ...) so background load hits them alike; the minimum per arm is reported, and the ratios are
   computed from times measured in this run.
2. The notebook's Monte Carlo workloads at the notebook's sizes (the 2,000 clip-bound reruns, the
   simulated total and average, the split's Monte Carlo, the exceed table with 75 x 10^6 draws,
   the empirical privacy check with 4 x 10^6 draws); their sum is compared with the notebook's
   budget of 60 s on the 2-core CPU (warm: the data are loaded once before timing).

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_dp_mechanisms.py [--repeats 5]``
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from helpers import data
from helpers import dp_mechanisms as dp

EPSILONS = [0.01, 0.1, 0.5, 1.0, 2.0]
BUDGET_S = 60.0
N = 1_000_000


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(arms: dict, repeats: int) -> dict[str, float]:
    """Warm every arm up once, then run the arms in turn ``repeats`` times; minimum per arm."""
    for fn in arms.values():
        fn()
    best = {name: math.inf for name in arms}
    for _ in range(repeats):
        for name, fn in arms.items():
            best[name] = min(best[name], timed(fn))
    return best


def overhead(total: float, bound: float, repeats: int) -> None:
    print(f"1. helper overhead, {N:,} draws per call, min of {repeats} interleaved runs (warm)")
    arms = {
        "dp.laplace_mechanism": lambda: dp.laplace_mechanism(
            total, bound, 1.0, np.random.default_rng(1), size=N),
        "value + Generator.laplace": lambda: total + np.random.default_rng(1).laplace(
            0.0, bound, size=N),
        "scipy.stats.laplace.rvs": lambda: stats.laplace.rvs(
            loc=total, scale=bound, size=N, random_state=np.random.default_rng(1)),
    }
    t = interleaved(arms, repeats)
    base = t["value + Generator.laplace"]
    for name, s in t.items():
        print(f"  {name:28s} {s * 1e3:8.1f} ms   ratio to Generator.laplace {s / base:5.2f}")

    def inline():
        z = np.random.default_rng(2).laplace(0.0, 1 / 0.5, size=N)
        p = np.count_nonzero(231 + z > 236) / N
        return p, math.sqrt(p * (1 - p) / N)

    arms = {"dp.monte_carlo_exceeds": lambda: dp.monte_carlo_exceeds(
        231, 236, 0.5, np.random.default_rng(2), N), "inline": inline}
    assert arms["dp.monte_carlo_exceeds"]() == inline()  # the same work, the same answer
    t = interleaved(arms, repeats)
    helper, bare = t["dp.monte_carlo_exceeds"], t["inline"]
    print(f"  {'dp.monte_carlo_exceeds':28s} {helper * 1e3:8.1f} ms   inline {bare * 1e3:.1f} ms, "
          f"ratio {helper / bare:.2f}")


def workloads(income: np.ndarray, total: float, bound: float, repeats: int) -> None:
    candidates = [50_000, 100_000, 200_000, 400_000, 800_000]
    counts = {"all": 231, "female": 59, "male": 172}
    rng = np.random.default_rng(0)

    def reruns():
        for _ in range(2000):
            dp.dp_clip_bound(income, candidates, 0.1, rng, quantile=0.99)

    def simulations():
        dp.noise_table(total, bound, EPSILONS, rng, 10_000)
        for eps in EPSILONS:
            dp.noisy_mean_unknown_n(income, 0, bound, 0.25 * eps, 0.75 * eps, rng, size=10_000)
        for s in (0.5, 0.6, 0.7, 0.8, 0.9):
            dp.noisy_mean_unknown_n(income, 0, bound, (1 - s) * 0.6, s * 0.6, rng, size=10_000)
        [dp.advanced_composition(0.01, k, 1e-6) for k in range(1, 2_000)]

    def exceed():
        dp.exceed_table(counts, [-10, -3, 0, 3, 10], EPSILONS, rng, N)

    def empirical():
        neighbour = np.delete(income, np.argmax(income))
        b = bound
        a = dp.noisy_sum(income, 0, b, 1.0, rng, size=N).value
        c = dp.noisy_sum(neighbour, 0, b, 1.0, rng, size=N).value
        dp.empirical_log_ratio(a, c, np.linspace(total - 5 * b, total + 4 * b, 61))
        raw, raw2 = income.sum(), neighbour.sum()
        a = dp.laplace_mechanism(raw, b, 1.0, rng, size=N)
        c = dp.laplace_mechanism(raw2, b, 1.0, rng, size=N)
        dp.empirical_log_ratio(a, c, np.linspace(raw2 - 4 * b, raw + 4 * b, 61))

    parts = {"DP clip bound, 2,000 reruns": reruns,
             "simulated total, average and split": simulations,
             "exceed table, 75 x 10^6 draws": exceed,
             "empirical privacy check, 4 x 10^6": empirical}
    print(f"2. the notebook's Monte Carlo workloads (min of {repeats} runs, warm)")
    t = interleaved(parts, repeats)
    for name, s in t.items():
        print(f"  {name:38s} {s:6.2f} s")
    total_s = sum(t.values())
    print(f"  {'sum':38s} {total_s:6.2f} s   = {total_s / BUDGET_S:.1%} of the {BUDGET_S:.0f} s "
          "notebook budget")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    income, _ = dp.split_missing(data.load_acs_income()["income"], missing="drop")
    bound = 200_000.0
    total = dp.clipped_sum(income, 0, bound)
    overhead(total, bound, args.repeats)
    workloads(income, total, bound, max(1, args.repeats // 2))


if __name__ == "__main__":
    main()
