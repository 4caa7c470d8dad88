"""Seeding, device choice, the cache folder, atomic writes and the notebooks' ``results/*.json``.

Every notebook starts with ``DEVICE = runtime.setup(seed=0)`` and ends with
``runtime.save_results(...)``; the seconds recorded in the results file are measured between
the two.

This module imports torch lazily: a NumPy-only notebook (Task 2, Task 3) never loads it, which
saves several seconds of start-up (CONTRIBUTING.md, "Budgets"). When torch is loaded later in a
process that :func:`setup` already seeded, an import hook seeds it and makes it deterministic
then, with the same seed, whoever imports it.
"""

from __future__ import annotations

import json
import math
import os
import platform
import random
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from numbers import Real
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "results"

_clock = {"start": None}
_state: dict = {"seed": None, "torch_configured": False}


def _torch_loaded() -> bool:
    return "torch" in sys.modules


def device() -> torch.device:
    """The device notebooks compute on: the first CUDA GPU when present, else the CPU.

    Set the environment variable ``WORKBOOK_DEVICE=cpu`` to force the CPU on a GPU machine.
    Imports torch.
    """
    import torch

    wanted = os.environ.get("WORKBOOK_DEVICE", "").strip().lower()
    if wanted not in ("", "cpu", "cuda"):
        raise ValueError(f"WORKBOOK_DEVICE must be 'cpu' or 'cuda', got {wanted!r}")
    if wanted == "cpu":
        return torch.device("cpu")
    if wanted == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("WORKBOOK_DEVICE=cuda but torch sees no CUDA device")
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _check_seed(seed) -> int:
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    return seed


#: CPU threads by default (torch, BLAS, OpenMP): the 2-core CPU the budgets are set for.
DEFAULT_THREADS = 2


def cpu_threads() -> int:
    """The number of CPU threads the notebooks compute with: :data:`DEFAULT_THREADS` (2), or
    ``WORKBOOK_THREADS``.

    A parallel reduction (a convolution's weight gradient, a BLAS product) adds its terms in an
    order that depends on the number of threads, so a model trained with two threads differs in
    the last bits from one trained with one, and after thousands of steps in the printed
    accuracies. The work is split by the thread count, not by the cores: with the count fixed a
    CPU run gives the same weights whatever the machine's number of cores (measured: 2 threads
    on 2 cores and on 1 core, ``taskset -c 0``), though not on another type of CPU
    (:func:`cpu_numerics`).
    Two is the laptop the workbook is budgeted for: on 2 cores it runs the CNN's
    forward-backward passes about 1.7x faster than one thread (``benchmarks/bench_threads.py``);
    a machine with more cores may set more and accept other last digits.
    """
    value = os.environ.get("WORKBOOK_THREADS", "").strip() or str(DEFAULT_THREADS)
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"WORKBOOK_THREADS must be a positive integer, got {value!r}")
    return int(value)


def _limit_native_threads() -> None:
    """BLAS (NumPy, SciPy) and OpenMP (scikit-learn) use :func:`cpu_threads` threads from now
    on, as with ``OMP_NUM_THREADS`` set before start-up (threadpoolctl)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=cpu_threads())


def _configure_torch(seed: int) -> None:
    """Seed torch (CPU and CUDA), fix its CPU threads (:func:`cpu_threads`) and switch on its
    deterministic algorithms."""
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.set_num_threads(cpu_threads())
    torch.manual_seed(seed)  # also seeds every CUDA device
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    _state["torch_configured"] = True


def torch_loaded_late() -> None:
    """Called by the import hook when torch is first imported: if :func:`setup` ran before
    torch was loaded, seed torch and make it deterministic now, with setup's seed."""
    if _state["seed"] is not None and not _state["torch_configured"]:
        _configure_torch(_state["seed"])


class _ConfigureTorchOnImport:
    """A one-shot import hook: when torch is first imported after :func:`setup` (a plain
    ``import torch`` in a notebook cell, or a helper module), seed it and make it deterministic
    with setup's seed as soon as its module has run, so no torch import can escape the seed."""

    def find_spec(self, name, path=None, target=None):
        if name != "torch":
            return None
        _remove_torch_hook()
        import importlib.util

        spec = importlib.util.find_spec("torch")
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        run_module = loader.exec_module

        def exec_module(module):
            run_module(module)
            torch_loaded_late()

        loader.exec_module = exec_module
        return spec


def _remove_torch_hook() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _ConfigureTorchOnImport)]


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's legacy global RNG and torch (CPU and CUDA).

    Torch is seeded now when it is already imported; otherwise the moment it is first imported
    (an import hook calls :func:`torch_loaded_late`), whoever imports it.
    """
    _check_seed(seed)
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - seeding the legacy global RNG is the point here
    _state["seed"], _state["torch_configured"] = seed, False
    _remove_torch_hook()
    if _torch_loaded():
        import torch

        torch.manual_seed(seed)
    else:
        sys.meta_path.insert(0, _ConfigureTorchOnImport())


def setup(seed: int = 0, verbose: bool = True) -> torch.device | str:
    """Seed everything, make torch deterministic where it can be, start the clock.

    Deterministic algorithms: ``torch.use_deterministic_algorithms(True, warn_only=True)`` (an
    operation with no deterministic implementation warns instead of failing), cuDNN autotuning
    off, and ``CUBLAS_WORKSPACE_CONFIG`` set as CUDA's reproducibility notes require. CPU work
    (torch and BLAS) uses a fixed number of threads, :func:`cpu_threads` (2 unless
    ``WORKBOOK_THREADS`` says otherwise), so that results do not depend on the number of cores.
    The same seed then gives the same data order, initial weights and results on every CPU
    that computes torch's float32 kernels alike (the same :func:`cpu_numerics` fingerprint)
    with the pinned libraries; another type of CPU gives other last bits.

    Torch is not imported here: in a notebook that has not imported torch (or a torch helper
    module) before calling ``setup``, nothing computes with torch, and the device is the CPU.

    Returns:
        The ``torch.device`` to compute on (see :func:`device`) when torch is loaded, else the
        string ``"cpu"`` (NumPy and scikit-learn compute on the CPU).
    """
    seed_everything(seed)
    _limit_native_threads()
    dev: torch.device | str = "cpu"
    if _torch_loaded():
        _configure_torch(seed)
        dev = device()
    _clock["start"] = time.perf_counter()
    if verbose:
        if _torch_loaded():
            import torch

            name = (torch.cuda.get_device_name(dev) if dev.type == "cuda"
                    else f"{os.cpu_count()} cores")
            print(f"device: {dev.type} ({name}), torch threads: {torch.get_num_threads()}")
            print(f"python {platform.python_version()}, torch {torch.__version__}, "
                  f"numpy {np.__version__}, seed {seed}")
        else:
            print(f"device: cpu ({os.cpu_count()} cores; NumPy only, torch not loaded)")
            print(f"python {platform.python_version()}, numpy {np.__version__}, seed {seed}")
    return dev


def _numpy_probe(steps: int) -> np.ndarray:
    """``steps`` gradient steps of a float32 tanh layer on fixed data with NumPy's BLAS (at
    :func:`cpu_threads` threads): the weights, for :func:`cpu_numerics`."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    x = rng.random((256, 784), dtype=np.float32)
    w = rng.standard_normal((784, 64), dtype=np.float32) * np.float32(0.05)
    with threadpool_limits(limits=cpu_threads()):
        for _ in range(steps):
            h = np.tanh(x @ w)
            w -= np.float32(0.01) * (x.T @ ((h - np.float32(0.5)) * (1 - h * h)))
    return w


def cpu_numerics(steps: int = 5) -> dict[str, str | int]:
    """A fingerprint of how this CPU computes the workbook's float32 torch training, to tell
    whether it reproduces the committed outputs bit for bit.

    Fixed seeds, deterministic algorithms and :func:`cpu_threads` make a CPU run repeatable on
    one machine, but not across CPUs: torch picks its vectorised kernels (``AVX2``,
    ``AVX512``...) and oneDNN and MKL their convolution and matrix-product code by the
    processor's instruction set and caches, and each adds in its own order. The last bits
    differ, and after thousands of SGD steps so do the printed accuracies (two CPU types printed
    0.990 and 0.992 for HW2's clean accuracy with the same seed). So the committed outputs are a
    reference only where this fingerprint matches the one ``scripts/run_notebooks.py``
    recorded in the notebook's metadata (CONTRIBUTING.md, "How nbval is wired").

    The probe trains a small channels-last CNN of :class:`helpers.models.MnistCNN`'s layers
    (convolutions, max-pooling, linear layers, cross-entropy, SGD with momentum) for ``steps``
    steps on fixed random data, on the CPU with :func:`cpu_threads` threads, and a float32
    NumPy layer (HW1's BLAS products, whose kernels NumPy's OpenBLAS also picks by processor),
    and hashes the final weights with the torch and NumPy versions and the thread count
    (SHA-256, first 16 hex digits). The global RNG, the thread count and the
    deterministic-algorithms flag are restored.

    Returns:
        ``{"fingerprint": hex, "capability": torch's CPU capability, "threads": n,
        "torch": version}``.
    """
    import hashlib

    import torch
    from torch import nn

    steps = int(steps)
    if steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps}")
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        torch.set_num_threads(cpu_threads())
        torch.use_deterministic_algorithms(True, warn_only=True)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            net = nn.Sequential(nn.Conv2d(1, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
                                nn.Conv2d(16, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                nn.Linear(800, 64), nn.ReLU(), nn.Linear(64, 10))
            net.to(memory_format=torch.channels_last)
            x = torch.rand(64, 1, 28, 28).contiguous(memory_format=torch.channels_last)
            y = torch.randint(0, 10, (64,))
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        for _ in range(steps):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
        digest = hashlib.sha256(f"{torch.__version__} {np.__version__} {cpu_threads()}".encode())
        for p in net.parameters():
            digest.update(p.detach().contiguous().numpy().tobytes())
        digest.update(_numpy_probe(steps).tobytes())
        return {"fingerprint": digest.hexdigest()[:16],
                "capability": torch.backends.cpu.get_cpu_capability(),
                "threads": cpu_threads(), "torch": torch.__version__}
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _folder_from_env(variable: str, default: Path) -> Path:
    """The folder named by an environment variable; a relative one is taken from the repository
    root, not the working directory (notebooks run in ``notebooks/``, scripts in the root)."""
    value = os.environ.get(variable, "").strip()
    return default if not value else ROOT / Path(value).expanduser()


def results_folder() -> Path:
    """The folder of the results files: ``results/``, or ``WORKBOOK_RESULTS`` when set."""
    return _folder_from_env("WORKBOOK_RESULTS", RESULTS_DIR)


def cache_dir() -> Path:
    """The git-ignored folder for trained models and other caches (``.cache/``).

    ``WORKBOOK_CACHE`` overrides the location (the tests use a temporary folder).
    """
    path = _folder_from_env("WORKBOOK_CACHE", ROOT / ".cache")
    path.mkdir(parents=True, exist_ok=True)
    return path


def display_path(path: Path | str) -> str:
    """``path`` as messages show it: relative to the repository when inside it, else absolute."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def atomic_write(path: Path | str, write: Callable[[Path], object] | str | bytes) -> Path:
    """Write ``path`` atomically: into a temporary file in the same folder, then rename it.

    ``write`` is the text or bytes to write, or a callable ``write(tmp_path)`` that writes the
    temporary file (``torch.save``, ``nbformat.write``...). ``os.replace`` is atomic on POSIX and
    Windows, so a reader sees the old file or the new one, never half of one; an interrupted or
    failed write leaves no temporary file behind.

    Returns:
        ``path`` as a ``Path``.
    """
    path = Path(path)
    if not (callable(write) or isinstance(write, str | bytes)):
        raise TypeError(f"write must be str, bytes or a callable write(tmp_path), got "
                        f"{type(write).__name__}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if isinstance(write, str):
            tmp.write_text(write, encoding="utf-8")
        elif isinstance(write, bytes):
            tmp.write_bytes(write)
        else:
            write(tmp)
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
        os.chmod(tmp, mode)  # mkstemp creates 0600; keep the usual permissions
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _torch_version() -> str:
    if _torch_loaded():
        return sys.modules["torch"].__version__
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:  # pragma: no cover
        return "not installed"


def environment() -> dict[str, str]:
    """The versions and device that produced a result (``"cpu"`` when torch is not loaded)."""
    return {"python": platform.python_version(), "torch": _torch_version(),
            "device": device().type if _torch_loaded() else "cpu"}


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

    Format (CONTRIBUTING.md, "Results"): ``{"notebook", "metrics": {name: number}, "config",
    "environment": {"python", "torch", "device"}, "seconds"}`` where seconds counts from
    :func:`setup`. Tensors of one element and NumPy scalars are accepted as numbers.
    ``WORKBOOK_RESULTS`` overrides the folder (``make test`` and ``make run`` point it under
    ``build/`` so that only ``make notebooks`` rewrites ``results/``). The file is written
    atomically and the message names the real path.

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
        if hasattr(value, "numel") and hasattr(value, "item"):  # a torch tensor
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
    out_dir = results_dir or results_folder()
    path = atomic_write(Path(out_dir) / f"{notebook}.json", text + "\n")
    print(f"saved {display_path(path)}")
    return path
