"""Time one MNIST training epoch of the NumPy MLP (helpers.numpy_nn) against PyTorch on the CPU.

Same architecture (784-256-128-10, ReLU), same batch size, same optimiser (Adam, lr 1e-3), same
data in memory and the same batching (a shuffled index, one fancy-indexed batch per step) so
that only the framework differs. Both arms do the same work: ``numpy_nn.fit`` validates its
inputs (finite features, labels in range) and counts the correct predictions of every batch for
its running accuracy, so the PyTorch arm does both too. Each arm is warmed up on a slice of the
data, then each configuration is timed ``--repeats`` times with the arms interleaved (the order
alternating), so that background load hits both alike; each arm's minimum is reported and the
ratio is taken between minima of the same run.

Two thread settings are measured: the libraries' defaults (OpenBLAS and torch each use all
cores) and one thread each (``threadpoolctl`` for NumPy's BLAS, ``torch.set_num_threads(1)``).
With 128-row batches the matrices are small, and on a shared 2-core machine extra BLAS threads
often cost more than they save.

Run: ``.venv/bin/python benchmarks/bench_numpy_nn.py`` (goal: NumPy/PyTorch ratio <= 1.5).
"""

from __future__ import annotations

import argparse
import os
import sys
import timeit
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_info, threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from helpers import data
from helpers import numpy_nn as nn

SIZES = [784, 256, 128, 10]


def mnist_train() -> tuple[np.ndarray, np.ndarray]:
    images, labels = data.load_mnist("train")
    x = images.numpy().reshape(len(images), -1).astype(np.float32) / 255.0
    return np.ascontiguousarray(x), labels.numpy()


def numpy_epoch(x, y, batch_size: int, seed: int) -> float:
    net = nn.mlp(SIZES, activation="relu", seed=seed)
    return timeit.Timer(lambda: nn.fit(net, x, y, epochs=1, batch_size=batch_size,
                                       optimizer=nn.Adam(1e-3), seed=seed, progress=False)
                        ).timeit(number=1)


def torch_epoch(x, y, batch_size: int, seed: int) -> float:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 256), torch.nn.ReLU(),
        torch.nn.Linear(256, 128), torch.nn.ReLU(),
        torch.nn.Linear(128, 10),
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def epoch():
        # the same input checks as numpy_nn.fit: finite features, integer labels in range
        if not np.isfinite(x).all() or y.min() < 0 or y.max() >= SIZES[-1]:
            raise ValueError("bad data")
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        order = torch.randperm(len(xt))
        correct = 0
        for s in range(0, len(xt), batch_size):
            idx = order[s:s + batch_size]
            opt.zero_grad(set_to_none=True)
            logits = model(xt[idx])
            loss = torch.nn.functional.cross_entropy(logits, yt[idx])
            loss.backward()
            opt.step()
            correct += int((logits.argmax(1) == yt[idx]).sum())  # fit's running accuracy
        return correct

    return timeit.Timer(epoch).timeit(number=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--limit", type=int, default=None, help="use the first N train images")
    args = parser.parse_args()
    if args.batch_size < 1 or args.repeats < 1:
        parser.error("--batch-size and --repeats must be >= 1")

    x, y = mnist_train()
    if args.limit:
        x, y = x[:args.limit], y[:args.limit]
    blas = ", ".join(f"{i['internal_api']} ({i['num_threads']} threads)"
                     for i in threadpool_info() if i["user_api"] == "blas")
    print(f"MNIST epoch: {len(x)} images, MLP {'-'.join(map(str, SIZES))}, ReLU, Adam lr 1e-3, "
          f"batch size {args.batch_size}, best of {args.repeats}")
    print(f"cores visible: {os.cpu_count()}, numpy {np.__version__} BLAS: {blas}; "
          f"torch {torch.__version__} threads: {torch.get_num_threads()}")
    # warm-up: BLAS/torch thread pools and allocator
    numpy_epoch(x[:2048], y[:2048], args.batch_size, 0)
    torch_epoch(x[:2048], y[:2048], args.batch_size, 0)

    default_threads = torch.get_num_threads()
    rows = []
    for label, threads in (("default threads", None), ("1 thread each", 1)):
        t_np, t_torch = [], []
        torch.set_num_threads(threads or default_threads)
        with threadpool_limits(limits=threads, user_api="blas"):  # None: the library default
            numpy_epoch(x[:2048], y[:2048], args.batch_size, 0)  # warm-up in this setting
            torch_epoch(x[:2048], y[:2048], args.batch_size, 0)
            for r in range(args.repeats):  # interleaved; who goes first alternates
                arms = [(t_np, numpy_epoch), (t_torch, torch_epoch)]
                for times, fn in (arms if r % 2 == 0 else arms[::-1]):
                    times.append(fn(x, y, args.batch_size, r))
        torch.set_num_threads(default_threads)
        rows.append((label, min(t_np), min(t_torch)))

    print(f"{'setting':<16} {'numpy s/epoch':>14} {'torch s/epoch':>14} {'numpy/torch':>12}")
    for label, a, b in rows:
        print(f"{label:<16} {a:>14.2f} {b:>14.2f} {a / b:>12.2f}")
    best_np = min(r[1] for r in rows)
    best_torch = min(r[2] for r in rows)
    ratio = best_np / best_torch
    verdict = "meets" if ratio <= 1.5 else "misses"
    print(f"best setting of each: numpy {best_np:.2f} s, torch {best_torch:.2f} s, "
          f"ratio {ratio:.2f} ({verdict} the goal <= 1.5)")


if __name__ == "__main__":
    main()
