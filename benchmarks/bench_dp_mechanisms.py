"""Time the Monte Carlo parts of notebooks/task2_dp_mechanisms.ipynb.

Two kinds of numbers:

1. Overhead of the helpers against the bare baseline they wrap: 10^6 Laplace draws through
   ``dp.laplace_mechanism`` (input checks + ``Generator.laplace``) vs ``Generator.laplace`` alone
   and vs ``scipy.stats.laplace.rvs``; one ``dp.monte_carlo_exceeds`` (10^6 draws) vs the same
   computation written inline.
2. The notebook's Monte Carlo workloads at the notebook's sizes: the 2,000 reruns of the DP clip
   bound, the epsilon tables (3 x 5 x 10,000 draws), the closed-form vs Monte Carlo table
   (75 x 10^6 draws) and the empirical privacy check (4 x 10^6 draws + histograms). Their sum
   is compared with the notebook's budget of 60 s on the 2-core CPU.

Each timing is the minimum of ``--repeats`` runs (background load only makes runs slower).
Run: ``.venv/bin/python benchmarks/bench_dp_mechanisms.py``
"""

from __future__ import annotations

import argparse
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


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    income, _ = dp.split_missing(data.load_acs_income()["income"], missing="drop")
    n, bound = income.size, 200_000.0
    total = dp.clipped_sum(income, 0, bound)
    rng = np.random.default_rng(0)

    print("1. helper overhead (10^6 draws)")
    t_helper = best(
        lambda: dp.laplace_mechanism(total, bound, 1.0, rng, size=1_000_000), args.repeats
    )
    t_raw = best(lambda: total + rng.laplace(0.0, bound, size=1_000_000), args.repeats)
    t_scipy = best(
        lambda: stats.laplace.rvs(loc=total, scale=bound, size=1_000_000, random_state=rng),
        args.repeats,
    )
    t_mc = best(lambda: dp.monte_carlo_exceeds(231, 236, 0.5, rng, 1_000_000), args.repeats)
    t_mc_inline = best(
        lambda: np.count_nonzero(231 + rng.laplace(0.0, 2.0, size=1_000_000) > 236) / 1e6,
        args.repeats,
    )
    print(f"  laplace_mechanism      {t_helper * 1e3:7.1f} ms")
    print(
        f"  Generator.laplace      {t_raw * 1e3:7.1f} ms   ratio helper/raw   = {t_helper / t_raw:.2f}"
    )
    print(
        f"  scipy.stats.laplace    {t_scipy * 1e3:7.1f} ms   ratio helper/scipy = {t_helper / t_scipy:.2f}"
    )
    print(
        f"  monte_carlo_exceeds    {t_mc * 1e3:7.1f} ms   inline {t_mc_inline * 1e3:.1f} ms, "
        f"ratio = {t_mc / t_mc_inline:.2f}"
    )

    print("2. the notebook's Monte Carlo workloads")
    candidates = [50_000, 100_000, 200_000, 400_000, 800_000]
    counts = {"all": 231, "female": 59, "male": 172}

    def reruns():
        for _ in range(2000):
            dp.dp_clip_bound(income, candidates, 0.1, rng, quantile=0.99)

    def tables():
        dp.noise_table(total, bound, EPSILONS, rng, 10_000)
        dp.noise_table(total / n, bound / n, EPSILONS, rng, 10_000)
        for eps in EPSILONS:
            dp.noisy_mean_unknown_n(income, 0, bound, 0.2 * eps, 0.8 * eps, rng, size=10_000)

    def exceed():
        dp.exceed_table(counts, [-10, -3, 0, 3, 10], EPSILONS, rng, 1_000_000)

    def empirical():
        neighbour = np.delete(income, np.argmax(income))
        b = bound
        bins = np.linspace(total - b - 4 * b, total + 4 * b, 61)
        a = dp.noisy_sum(income, 0, b, 1.0, rng, size=1_000_000).value
        c = dp.noisy_sum(neighbour, 0, b, 1.0, rng, size=1_000_000).value
        dp.empirical_log_ratio(a, c, bins, min_count=1000)
        raw, raw2 = income.sum(), neighbour.sum()
        a = dp.laplace_mechanism(raw, b, 1.0, rng, size=1_000_000)
        c = dp.laplace_mechanism(raw2, b, 1.0, rng, size=1_000_000)
        dp.empirical_log_ratio(a, c, np.linspace(raw2 - 4 * b, raw + 4 * b, 61), min_count=1000)

    parts = {
        "DP clip bound, 2,000 reruns": reruns,
        "epsilon tables, 3 x 5 x 10^4 draws": tables,
        "exceed table, 75 x 10^6 draws": exceed,
        "empirical privacy check, 4 x 10^6": empirical,
    }
    total_s = 0.0
    for name, fn in parts.items():
        t = best(fn, args.repeats)
        total_s += t
        print(f"  {name:38s} {t:6.2f} s")
    print(
        f"  {'sum':38s} {total_s:6.2f} s   = {total_s / BUDGET_S:.1%} of the {BUDGET_S:.0f} s "
        "notebook budget"
    )


if __name__ == "__main__":
    main()
