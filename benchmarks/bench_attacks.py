"""Benchmark: PGD-40 from helpers.attacks against the bare cost of its forward/backward passes.

PGD with ``steps`` steps needs ``steps`` forward passes and ``steps`` backward passes to the
input, plus one forward to score the result. Everything else (sign, projection, clipping,
bookkeeping of restarts) is the attack's own overhead. This script times

* ``pgd``: ``attacks.pgd(model, x, y, eps=0.3, alpha=0.01, steps=40, random_start=True)``
* ``bare``: 40 x (forward + cross-entropy + ``torch.autograd.grad`` to the input) plus the one
  scoring forward pass, on the same batch: the same passes through the network that PGD-40
  makes, i.e. the least work any PGD-40 must do,

and prints images x steps per second and the ratio pgd / bare (goal: at most 1.15). For context it
also times 40 forward + full ``loss.backward()`` passes (gradients of every parameter too), what a
naive implementation that calls ``backward()`` would pay.

Every arm is warmed up once, then the arms are timed in turn (``timeit``, one call each) for
``--repeats`` rounds, so background load hits all of them alike; each arm's minimum is reported
and the ratio is taken between minima measured in the same run. The weights do not matter for
the timing, so the model is a freshly initialised
``MnistCNN`` unless ``--trained`` asks for the cached standard CNN. Runs on the CPU, and on CUDA
too when a GPU is present.

Usage: python benchmarks/bench_attacks.py [--n 1000] [--steps 40] [--repeats 3] [--trained]
"""

from __future__ import annotations

import argparse
import timeit

import torch
import torch.nn.functional as F

from helpers import attacks, data, models


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device) -> float:
    def run():
        fn()
        _sync(device)

    _sync(device)
    return timeit.Timer(run).timeit(number=1)


def bench(device: torch.device, n: int, steps: int, repeats: int, trained: bool) -> dict:
    torch.manual_seed(0)
    model = models.standard_cnn(device) if trained else models.MnistCNN().to(device).eval()
    x, y = data.mnist_tensors("test", limit=n)
    x, y = x.to(device), y.to(device)

    def run_pgd():
        attacks.pgd(model, x, y, eps=0.3, alpha=0.01, steps=steps, random_start=True, seed=0)

    def run_bare():
        for _ in range(steps):
            xa = x.clone().requires_grad_(True)
            loss = F.cross_entropy(model(xa), y, reduction="none").sum()
            torch.autograd.grad(loss, xa)
        with torch.no_grad():
            model(x)  # PGD scores its final iterate: one more forward pass

    def run_full_backward():
        for _ in range(steps):
            xa = x.clone().requires_grad_(True)
            loss = F.cross_entropy(model(xa), y, reduction="none").sum()
            loss.backward()
            model.zero_grad(set_to_none=True)

    arms = {"pgd": run_pgd, "bare": run_bare, "full_backward": run_full_backward}
    for fn in arms.values():  # warm-up of every arm (allocator, kernels, cuDNN autotuning)
        _timed(fn, device)
    times = {name: [] for name in arms}
    for r in range(repeats):  # interleaved, the order rotating so no arm always runs first
        names = list(arms)[r % len(arms):] + list(arms)[:r % len(arms)]
        for name in names:
            times[name].append(_timed(arms[name], device))
    best = {k: min(v) for k, v in times.items()}
    return {
        "device": str(device),
        "n": n,
        "steps": steps,
        "pgd_s": best["pgd"],
        "bare_s": best["bare"],
        "full_backward_s": best["full_backward"],
        "pgd_images_steps_per_s": n * steps / best["pgd"],
        "bare_images_steps_per_s": n * steps / best["bare"],
        "ratio": best["pgd"] / best["bare"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="number of test images (default 1000)")
    parser.add_argument("--steps", type=int, default=40, help="PGD steps (default 40)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions (default 3)")
    parser.add_argument("--trained", action="store_true", help="use the cached standard CNN")
    args = parser.parse_args()

    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    cuda = (f"available: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available()
            else "not available")
    print(f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}, CUDA {cuda}")
    print(f"PGD-{args.steps} (Linf, eps 0.3, alpha 0.01, random start) on {args.n} MNIST test "
          f"images, MnistCNN ({'trained' if args.trained else 'random init'}), each arm warmed up, "
          f"arms interleaved, min of {args.repeats} runs\n")
    header = (f"{'device':<8}{'PGD s':>9}{'bare s':>9}{'ratio':>8}{'PGD img*step/s':>17}"
              f"{'bare img*step/s':>17}{'full-backward s':>17}")
    print(header)
    print("-" * len(header))
    ratios = []
    for device in devices:
        r = bench(device, args.n, args.steps, args.repeats, args.trained)
        ratios.append(r["ratio"])
        print(f"{r['device']:<8}{r['pgd_s']:>9.3f}{r['bare_s']:>9.3f}{r['ratio']:>8.3f}"
              f"{r['pgd_images_steps_per_s']:>17,.0f}{r['bare_images_steps_per_s']:>17,.0f}"
              f"{r['full_backward_s']:>17.3f}")
    print(f"\nratio = PGD time / time of {args.steps} bare forward + input-gradient passes "
          f"(goal <= 1.15): {', '.join(f'{x:.3f}' for x in ratios)}"
          f" -> {'OK' if max(ratios) <= 1.15 else 'ABOVE GOAL'}")


if __name__ == "__main__":
    main()
