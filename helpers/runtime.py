"""Seeding, device choice, the cache folder and the notebooks' ``results/*.json``.

Every notebook starts with ``DEVICE = runtime.setup(seed=0)`` and ends with
``runtime.save_results(...)``; the seconds recorded in the results file are measured between
the two.
"""

from __future__ import annotations

import json
import math
import os
import platform
import random
import time
from numbers import Real
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "results"

_clock = {"start": None}


def device() -> torch.device:
    """The device notebooks compute on: the first CUDA GPU when present, else the CPU.

    Set the environment variable ``WORKBOOK_DEVICE=cpu`` to force the CPU on a GPU machine.
    """
    wanted = os.environ.get("WORKBOOK_DEVICE", "").strip().lower()
    if wanted not in ("", "cpu", "cuda"):
        raise ValueError(f"WORKBOOK_DEVICE must be 'cpu' or 'cuda', got {wanted!r}")
    if wanted == "cpu":
        return torch.device("cpu")
    if wanted == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("WORKBOOK_DEVICE=cuda but torch sees no CUDA device")
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's legacy global RNG and torch (CPU and CUDA)."""
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - seeding the legacy global RNG is the point here
    torch.manual_seed(seed)  # also seeds every CUDA device


def setup(seed: int = 0, verbose: bool = True) -> torch.device:
    """Seed everything, make torch deterministic where it can be, start the clock.

    Deterministic algorithms: ``torch.use_deterministic_algorithms(True, warn_only=True)`` (an
    operation with no deterministic implementation warns instead of failing), cuDNN autotuning
    off, and ``CUBLAS_WORKSPACE_CONFIG`` set as CUDA's reproducibility notes require. The same
    seed then gives the same data order, initial weights and results on the same machine.

    Returns:
        The device to compute on (see :func:`device`).
    """
    seed_everything(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    dev = device()
    _clock["start"] = time.perf_counter()
    if verbose:
        name = (torch.cuda.get_device_name(dev) if dev.type == "cuda"
                else f"{os.cpu_count()} cores")
        print(f"device: {dev.type} ({name}), torch threads: {torch.get_num_threads()}")
        print(f"python {platform.python_version()}, torch {torch.__version__}, "
              f"numpy {np.__version__}, seed {seed}")
    return dev


def _folder_from_env(variable: str, default: Path) -> Path:
    """The folder named by an environment variable; a relative one is taken from the repository
    root, not the working directory (notebooks run in ``notebooks/``, scripts in the root)."""
    value = os.environ.get(variable, "").strip()
    return default if not value else ROOT / Path(value).expanduser()


def cache_dir() -> Path:
    """The git-ignored folder for trained models and other caches (``.cache/``).

    ``WORKBOOK_CACHE`` overrides the location (the tests use a temporary folder).
    """
    path = _folder_from_env("WORKBOOK_CACHE", ROOT / ".cache")
    path.mkdir(parents=True, exist_ok=True)
    return path


def environment() -> dict[str, str]:
    """The versions and device that produced a result."""
    return {"python": platform.python_version(), "torch": torch.__version__,
            "device": device().type}


def _finite_number(name: str, value) -> float | int:
    if isinstance(value, bool) or not isinstance(value, Real | np.number):
        raise TypeError(f"metrics[{name!r}] must be a number, got {type(value).__name__}")
    number = value.item() if isinstance(value, np.number) else value
    if not math.isfinite(number):
        raise ValueError(f"metrics[{name!r}] must be finite, got {number}")
    return number


def save_results(notebook: str, metrics: dict, config: dict,
                 results_dir: Path | None = None) -> Path:
    """Write ``results/<notebook>.json`` with the notebook's headline metrics.

    Format (DESIGN.md): ``{"notebook", "metrics": {name: number}, "config", "environment":
    {"python", "torch", "device"}, "seconds"}`` where seconds counts from :func:`setup`.
    Tensors of one element and NumPy scalars are accepted as numbers. ``WORKBOOK_RESULTS``
    overrides the folder (``make test`` uses it so that testing never rewrites ``results/``).

    Raises:
        ValueError: ``notebook`` is not a plain file stem, or a metric is NaN or infinite.
        TypeError: a metric is not a number, or ``config`` is not JSON-serialisable.
    """
    if not isinstance(notebook, str) or not notebook or Path(notebook).name != notebook \
            or notebook.endswith(".ipynb"):
        raise ValueError(f"notebook must be a notebook's stem such as 'hw1_nn_from_scratch', "
                         f"got {notebook!r}")
    if not isinstance(metrics, dict) or not metrics:
        raise ValueError("metrics must be a non-empty dict of name -> number")
    clean = {}
    for name, value in metrics.items():
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise TypeError(f"metrics[{name!r}] must be a number, got a tensor of "
                                f"{value.numel()} elements")
            value = value.item()
        clean[str(name)] = _finite_number(name, value)
    seconds = None if _clock["start"] is None else round(time.perf_counter() - _clock["start"], 1)
    record = {"notebook": notebook, "metrics": clean, "config": config,
              "environment": environment(), "seconds": seconds}
    try:
        text = json.dumps(record, indent=2, sort_keys=False)
    except TypeError as exc:
        raise TypeError(f"config must be JSON-serialisable: {exc}") from None
    out_dir = results_dir or _folder_from_env("WORKBOOK_RESULTS", RESULTS_DIR)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{notebook}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(text + "\n")
    tmp.replace(path)
    print(f"saved results/{path.name}")
    return path
