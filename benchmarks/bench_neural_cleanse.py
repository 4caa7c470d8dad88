"""Benchmark: Neural Cleanse for all ten labels in ONE batched optimisation against ten
sequential single-label runs with the same steps.

* ``batched``: ``backdoor.neural_cleanse(model, x, labels=0..9, ...)``: every step stamps the ten
  current triggers on one mini-batch of ``--batch-size`` clean images and sends the
  10 x batch-size images through the model in one call.
* ``sequential``: ``backdoor.neural_cleanse(model, x, labels=[t], ...)`` for t = 0..9: the same
  number of steps per label, each a model call on batch-size images.

Both do the same arithmetic per label (same steps, batch size and adaptive-lambda schedule);
the batched run amortises the per-call overhead and runs larger, more efficient kernels. Each
arm is warmed up once, then the arms are interleaved ``--repeats`` times; the minimum time of
each arm and their ratio (goal: at least 3x on the CPU) are printed, with the full-length
notebook setting extrapolated. The weights do not matter for the timing: the model is the
cached standard CNN when present, else a freshly initialised ``MnistCNN``.

Usage: python benchmarks/bench_neural_cleanse.py [--epochs 5] [--batches-per-epoch 10]
       [--batch-size 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import torch

from helpers import backdoor, data, models, runtime


def _timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batches-per-epoch", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = runtime.device()
    torch.manual_seed(0)
    model = models.MnistCNN().to(device).eval()
    x, _ = data.mnist_tensors("train", limit=2000)
    x = x.to(device)
    settings = {"epochs": args.epochs, "batches_per_epoch": args.batches_per_epoch,
                "batch_size": args.batch_size, "progress": False, "seed": 0}

    def batched():
        backdoor.neural_cleanse(model, x, **settings)

    def sequential():
        for t in range(10):
            backdoor.neural_cleanse(model, x, labels=[t], **settings)

    warm = {**settings, "epochs": 1}
    backdoor.neural_cleanse(model, x, **warm)
    for t in range(10):
        backdoor.neural_cleanse(model, x, labels=[t], **warm)
    times = {"batched": [], "sequential": []}
    for _ in range(args.repeats):
        times["batched"].append(_timed(batched, device))
        times["sequential"].append(_timed(sequential, device))
    best = {k: min(v) for k, v in times.items()}
    steps = args.epochs * args.batches_per_epoch
    print(f"device {device.type}, torch threads {torch.get_num_threads()}, {steps} steps of "
          f"batch {args.batch_size} per label, 10 labels, min of {args.repeats} interleaved runs")
    for k, v in best.items():
        print(f"{k:>10}: {v:7.2f} s  ({1000 * v / steps:6.1f} ms per step for all labels)")
    print(f"ratio sequential / batched: {best['sequential'] / best['batched']:.2f}x")
    nc = backdoor.NEURAL_CLEANSE_SETTINGS
    full = nc["epochs"] * nc["batches_per_epoch"]
    print(f"extrapolated to the notebook's {full} steps: batched "
          f"{best['batched'] * full / steps:.1f} s, sequential "
          f"{best['sequential'] * full / steps:.1f} s")


if __name__ == "__main__":
    main()
