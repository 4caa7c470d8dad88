"""Time one DP-SGD step against one non-private step of the same model and batch.

Arms (same model, same batch of MNIST images, SGD with momentum):

* ``non-private``: forward, ``loss.backward()``, optimiser step;
* ``dp_sgd``: ``helpers.dp_sgd.clipped_sum`` (per-example gradients from layer hooks, joint
  clipping, weighted sum), Gaussian noise, optimiser step;
* ``opacus`` (only when opacus is importable in this environment; it is not a requirement of
  the workbook): Opacus's ``GradSampleModule`` hooks, its ``DPOptimizer`` clipping and noise.

Models: the DP tanh CNN of the notebook (``dp_sgd.TanhCNN``, 26k weights) and the workbook's
standard ``models.MnistCNN`` (225k weights), and the ScatterNet linear head with ghost clipping
(``dp_sgd.linear_clipped_sum``) against its non-private step. Every arm is warmed up, then the
arms are interleaved ``--repeats`` times (A B C A B C ...) so background load hits them alike;
the median per arm is reported, and ratios are taken from times measured in this run. Opacus
reports about 1.6x for its MNIST example on a CPU.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_dp_sgd.py [--batch 256] [--repeats 7]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from helpers import data, dp_sgd, models


def nonprivate_step(model, opt, x, y):
    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return step


def dp_step(model, opt, x, y, sigma=1.0, c=1.0):
    gen = torch.Generator().manual_seed(0)

    def step():
        summed, _ = dp_sgd.clipped_sum(model, x, y, c)
        noisy = dp_sgd.add_noise(summed, sigma, c, gen)
        for k, p in model.named_parameters():
            p.grad = noisy[k] / len(x)
        opt.step()
    return step


def linear_steps(dim=3969, batch=4096):
    x, y = torch.randn(batch, dim), torch.randint(0, 10, (batch,))
    head = dp_sgd.zero_linear(dim)
    opt = torch.optim.SGD(head.parameters(), lr=0.1, momentum=0.9)

    def ghost():
        summed, _ = dp_sgd.linear_clipped_sum(head, x, y, 0.1)
        noisy = dp_sgd.add_noise(summed, 1.0, 0.1)
        head.weight.grad, head.bias.grad = noisy["weight"] / batch, noisy["bias"] / batch
        opt.step()
    return {"non-private": nonprivate_step(head, opt, x, y), "dp_sgd (ghost)": ghost}


def opacus_step(build, x, y, sigma=1.0, c=1.0):
    try:
        from opacus import GradSampleModule
        from opacus.optimizers import DPOptimizer
    except ImportError:
        return None
    model = GradSampleModule(build())
    opt = DPOptimizer(torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
                      noise_multiplier=sigma, max_grad_norm=c, expected_batch_size=len(x))
    return nonprivate_step(model, opt, x, y)


def interleaved(arms: dict, repeats: int) -> dict[str, float]:
    for fn in arms.values():  # warm up
        fn()
    times = {name: [] for name in arms}
    for _ in range(repeats):
        for name, fn in arms.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    x, y = data.mnist_tensors("train", limit=args.batch)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), batch {args.batch}")
    for name, build in [("TanhCNN", dp_sgd.TanhCNN), ("MnistCNN", models.MnistCNN)]:
        arms = {}
        for arm in ("non-private", "dp_sgd"):
            torch.manual_seed(0)
            model = build()
            opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
            arms[arm] = (nonprivate_step if arm == "non-private" else dp_step)(model, opt, x, y)
        op = opacus_step(build, x, y)
        if op is not None:
            arms["opacus"] = op
        t = interleaved(arms, args.repeats)
        line = ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in t.items())
        ratios = ", ".join(f"{k}/non-private {v / t['non-private']:.2f}x"
                           for k, v in t.items() if k != "non-private")
        print(f"{name}: {line}; {ratios}")
    t = interleaved(linear_steps(), args.repeats)
    print(f"ScatterNet linear head (3969 -> 10, batch 4096): "
          f"{', '.join(f'{k} {v * 1e3:.1f} ms' for k, v in t.items())}; "
          f"ratio {t['dp_sgd (ghost)'] / t['non-private']:.2f}x")


if __name__ == "__main__":
    main()
