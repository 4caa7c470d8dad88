"""Benchmark: the cost of adversarial training and of certification (helpers.defenses).

Arms, all on the same freshly initialised ``MnistCNN`` and the same ``--n`` training images
(batch 128, Adam, ``models.train`` for one epoch):

* ``standard``: plain training;
* ``fgsm_rs``: training with ``defenses.adversarial_perturbation("fgsm_rs", 0.3)`` (one
  forward/backward for the attack, one for the update: expected about 2x standard, somewhat more
  because the attack's backward pass also propagates to the input, which the update's does not);
* ``pgd2``: PGD-AT with two steps, as ``defenses.PGD_AT_CONFIG`` (expected about 3x, and more
  for the same reason);

and certification throughput: ``defenses.smoothed_counts`` on ``--cert-images`` test images with
``--samples`` noise draws each, reported as images x samples per second.

Each arm is warmed up once, then the arms are interleaved for ``--repeats`` rounds and the
minimum time of each is kept (robust to other processes on a shared machine). Ratios are to the
standard epoch measured in the same run.

Usage: python benchmarks/bench_defenses.py [--n 5000] [--repeats 3] [--cert-images 20]
       [--samples 500]
"""

from __future__ import annotations

import argparse
import time

import torch

from helpers import data, defenses, models, runtime


def _epoch(kind: str, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> float:
    torch.manual_seed(0)
    model = models.MnistCNN().to(device)
    loader = data.tensor_loader(x, y, batch_size=128, seed=0)
    perturb = None
    if kind == "fgsm_rs":
        perturb = defenses.adversarial_perturbation("fgsm_rs", 0.3, seed=0)
    elif kind == "pgd2":
        perturb = defenses.adversarial_perturbation("pgd", 0.3, alpha=0.15, steps=2, seed=0)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    models.train(model, loader, 1, lr=3e-3, perturb=perturb, device=device, desc=kind)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def _certify(model, x: torch.Tensor, samples: int) -> float:
    start = time.perf_counter()
    defenses.smoothed_counts(model, x, 0.25, samples, batch_size=samples, seed=0)
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cert-images", type=int, default=20)
    parser.add_argument("--samples", type=int, default=500)
    args = parser.parse_args()
    device = runtime.setup(seed=0)
    x, y = (t.to(device) for t in data.mnist_tensors("train", limit=args.n))
    arms = ("standard", "fgsm_rs", "pgd2")
    for kind in arms:  # warm-up
        _epoch(kind, x[:256], y[:256], device)
    best = dict.fromkeys(arms, float("inf"))
    for _ in range(args.repeats):
        for kind in arms:
            best[kind] = min(best[kind], _epoch(kind, x, y, device))
    print(f"one epoch on {args.n} images (min of {args.repeats}):")
    for kind in arms:
        ratio = best[kind] / best["standard"]
        print(f"  {kind:8s} {best[kind]:7.2f} s   ratio to standard {ratio:.2f}")

    torch.manual_seed(0)
    model = models.MnistCNN().to(device).eval()
    xc = data.mnist_tensors("test", limit=args.cert_images)[0].to(device)
    _certify(model, xc[:2], args.samples)  # warm-up
    seconds = min(_certify(model, xc, args.samples) for _ in range(args.repeats))
    rate = args.cert_images * args.samples / seconds
    print(f"certification: {args.cert_images} images x {args.samples} samples in {seconds:.2f} s "
          f"= {rate:,.0f} image-samples/s")


if __name__ == "__main__":
    main()
