"""Benchmark: what the CPU settings of ``runtime.setup`` and ``models.MnistCNN`` buy on the
workbook's three kinds of CNN work, per image.

* ``forward``: ``model(x)`` without gradients (evaluation, certification, query APIs), batches of
  250 and 1000;
* ``attack``: forward and the gradient with respect to the input only (PGD, Neural Cleanse),
  batches of 250 and 320 (10 labels x 32 images);
* ``train``: forward, backward and an Adam step (training), batches of 128.

Each is timed for every combination of ``--threads`` (default 1 and 2: the old and the new
``WORKBOOK_THREADS`` default) and memory layout of the conv weights (``nchw``: PyTorch's default;
``channels_last``: what ``MnistCNN`` now uses). Every arm is warmed up, the arms are interleaved
``--repeats`` times, and the minimum per arm is printed with its speed-up over ``1 thread,
nchw`` measured in the same run. The weights do not matter for the timing: a freshly
initialised ``MnistCNN``, converted back to NCHW for the ``nchw`` arms.

Usage: python benchmarks/bench_threads.py [--threads 1 2] [--repeats 3] [--steps 12]
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch
import torch.nn.functional as F

from helpers import models

WORK = [("forward", 250), ("forward", 1000), ("attack", 250), ("attack", 320), ("train", 128)]


def _step_fn(kind: str, batch: int, layout: str):
    torch.manual_seed(0)
    model = models.MnistCNN()
    if layout == "nchw":
        model = model.to(memory_format=torch.contiguous_format)
    x, y = torch.rand(batch, 1, 28, 28), torch.randint(0, 10, (batch,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for p in model.parameters():
        p.requires_grad_(kind == "train")

    def step() -> None:
        if kind == "forward":
            with torch.no_grad():
                model(x)
        elif kind == "attack":
            xa = x.clone().requires_grad_(True)
            torch.autograd.grad(F.cross_entropy(model(xa), y), xa)
        else:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=12, help="steps per timed run")
    args = parser.parse_args()
    arms = list(itertools.product(args.threads, ("nchw", "channels_last")))
    print(f"CPU, {torch.get_num_threads()} threads available to torch; us per image, min of "
          f"{args.repeats} interleaved runs of {args.steps} steps; (x: speed-up over "
          f"{arms[0][0]} thread(s), nchw)")
    for kind, batch in WORK:
        steps = {}
        for threads, layout in arms:
            torch.set_num_threads(threads)
            steps[threads, layout] = _step_fn(kind, batch, layout)
            for _ in range(3):  # warm-up
                steps[threads, layout]()
        best = dict.fromkeys(arms, float("inf"))
        for _ in range(args.repeats):
            for arm in arms:
                torch.set_num_threads(arm[0])
                start = time.perf_counter()
                for _ in range(args.steps):
                    steps[arm]()
                per_image = (time.perf_counter() - start) / args.steps / batch * 1e6
                best[arm] = min(best[arm], per_image)
        base = best[arms[0]]
        cells = "  ".join(f"{t}t {layout:<13} {v:6.1f} (x{base / v:.2f})"
                          for (t, layout), v in best.items())
        print(f"{kind:<7} batch {batch:<5} {cells}", flush=True)


if __name__ == "__main__":
    main()
