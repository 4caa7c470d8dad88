"""Time the extraction helpers of HW4.

1. Queries per second through ``extraction.model_api`` (argument checks, counting, softmax)
   against calling the victim directly (``softmax(model(x))`` under ``no_grad``): the ratio is
   the API's overhead.
   Both arms run in batches of ``extraction.EVAL_BATCH`` rows, as the API does.
2. Substitute training time per 1,000 queries (3 epochs of Adam, batch 64) for the attacker's
   substitute (``MnistCNN`` at width ``extraction.SUBSTITUTE_WIDTH``) against the standard
   ``MnistCNN`` (width 32): the ratio is what the narrower substitute saves.

Each arm is warmed up, then the arms are interleaved ``--repeats`` times; the medians and
their ratio come from the same run.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_extraction.py
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import torch

from helpers import data, extraction, models


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    victim = models.MnistCNN().eval()
    x, y = data.mnist_tensors("train", limit=max(args.queries, 1000))
    xq = x[: args.queries]
    api = extraction.model_api(victim)

    @torch.no_grad()
    def direct():
        b = extraction.EVAL_BATCH
        return torch.cat([torch.softmax(victim(xq[i:i + b]), 1) for i in range(0, len(xq), b)])

    def through_api():
        return api(xq)

    def train(build):
        def run():
            torch.manual_seed(0)
            loader = data.tensor_loader(x[:1000], y[:1000], batch_size=64, seed=0)
            models.train(build(), loader, 3, lr=1e-3, desc="bench")
        return run

    arms = {"direct model call": direct, "QueryAPI": through_api,
            "substitute training": train(functools.partial(
                models.MnistCNN, width=extraction.SUBSTITUTE_WIDTH)),
            "MnistCNN training": train(models.MnistCNN)}
    for fn in arms.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(args.repeats):
        for name, fn in arms.items():
            times[name].append(_time(fn))
    med = {name: statistics.median(t) for name, t in times.items()}
    print(f"torch threads: {torch.get_num_threads()}, {args.queries} queries per call, "
          f"median of {args.repeats}")
    print(f"direct model call: {args.queries / med['direct model call']:,.0f} queries/s")
    print(f"QueryAPI:          {args.queries / med['QueryAPI']:,.0f} queries/s "
          f"(overhead ratio {med['QueryAPI'] / med['direct model call']:.2f})")
    print(f"substitute training per 1,000 queries (3 epochs): width "
          f"{extraction.SUBSTITUTE_WIDTH} {med['substitute training']:.2f} s, standard MnistCNN "
          f"{med['MnistCNN training']:.2f} s "
          f"(ratio {med['MnistCNN training'] / med['substitute training']:.2f})")


if __name__ == "__main__":
    main()
