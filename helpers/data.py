"""Loading the datasets shipped in ``data/``, with integrity checks.

Every file is verified against its SHA-256 in :data:`CHECKSUMS` the first time a process reads
it; a missing, truncated or altered file raises :class:`DataIntegrityError` naming the file and
the command that rebuilds it (``make data``). Nothing here downloads or unpickles: MNIST is
parsed from its IDX files, Adult and ACS from text. Torch is imported lazily (only the MNIST
tensor functions need it), so the NumPy-only notebooks never load it.

Datasets:

* MNIST (LeCun, Cortes, Burges; CC BY-SA 3.0): 60,000 training and 10,000 test digits.
* UCI Adult / Census Income 1994 (Becker, Kohavi 1996; CC BY 4.0): 32,561 + 16,281 people.
* OpenIntro ``acs12``: 2,000 people from the 2012 American Community Survey (CC BY-SA 3.0).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import struct
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from helpers import checks

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch.utils.data import DataLoader

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
REBUILD = "make data (or: .venv/bin/python data/prepare.py)"

#: SHA-256 of every shipped file, relative to ``data/``. ``data/prepare.py`` checks its output
#: against this table, so a rebuild is byte-for-byte or it fails.
CHECKSUMS = {
    "MNIST/raw/train-images-idx3-ubyte.gz":
        "71524e2cd1ad2968737f7f2f2ff69cbfc32df8ccddff51593f7cb2d4e0eb5b64",
    "MNIST/raw/train-labels-idx1-ubyte.gz":
        "fe03b8bd7915f70bf5aa08be480aa413fbd85afcaa58b35d230d335f284fd88e",
    "MNIST/raw/t10k-images-idx3-ubyte.gz":
        "5634745efa576a17e7d4cf5cd9d09123c75e6538e5114267c2d156edaf519341",
    "MNIST/raw/t10k-labels-idx1-ubyte.gz":
        "ae18e77e031ccde52407f794d123116439864147d33ac992975f85dd4dc42af6",
    "adult/adult.data.gz":
        "fb9b6b419c38dd70d75d31f014b7f0905bf76e9625473c593455e31679a93184",
    "adult/adult.test.gz":
        "5dd8e51005f6a86e42f058d66a957721196362cf8e8dde3efc8508532af4a083",
    "adult/adult.names.gz":
        "aa540504efdb2bca9d601674bfd7708604c564b09c7d1ad053c43716403dc536",
    "acs/acs12.csv":
        "0916b73a1e02fd403658276eb5dc6b357db43fbcc402f377b3327afbac41fbc5",
}

SPLITS = ("train", "test")

ADULT_COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education_num", "marital_status",
    "occupation", "relationship", "race", "sex", "capital_gain", "capital_loss",
    "hours_per_week", "native_country", "income",
]
ADULT_LABEL = "income_gt_50k"

_verified: set[Path] = set()


class DataIntegrityError(RuntimeError):
    """A shipped data file is missing or differs from its recorded SHA-256."""


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return split


def read_verified(relative: str, data_dir: Path | None = None) -> bytes:
    """Return the bytes of ``data/<relative>`` after checking its SHA-256 (once per process).

    Raises:
        DataIntegrityError: the file is missing or its digest differs from :data:`CHECKSUMS`.
    """
    if relative not in CHECKSUMS:
        raise ValueError(f"relative must be one of {sorted(CHECKSUMS)}, got {relative!r}")
    path = (data_dir or DATA_DIR) / relative
    if not path.is_file():
        raise DataIntegrityError(f"data file {path} is missing. Rebuild it with: {REBUILD}")
    payload = path.read_bytes()
    if path not in _verified:
        digest = hashlib.sha256(payload).hexdigest()
        if digest != CHECKSUMS[relative]:
            raise DataIntegrityError(
                f"data file {path} is corrupted or altered: SHA-256 {digest}, expected "
                f"{CHECKSUMS[relative]} ({len(payload):,} bytes on disk). "
                f"Rebuild it with: {REBUILD}"
            )
        _verified.add(path)
    return payload


def _read_idx(relative: str, data_dir: Path | None) -> np.ndarray:
    """Parse a gzip-compressed IDX file (LeCun's format: magic 0x0800|ndim, big-endian dims)."""
    raw = gzip.decompress(read_verified(relative, data_dir))
    magic, = struct.unpack(">I", raw[:4])
    ndim = magic & 0xFF
    if magic >> 8 != 0x08 or ndim not in (1, 3):
        raise DataIntegrityError(f"data/{relative} is not a uint8 IDX file. Rebuild: {REBUILD}")
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DataIntegrityError(f"data/{relative} has the wrong size. Rebuild: {REBUILD}")
    return body.reshape(shape)


@cache
def _mnist_arrays(split: str, data_dir: Path | None) -> tuple[np.ndarray, np.ndarray]:
    prefix = "train" if split == "train" else "t10k"
    images = _read_idx(f"MNIST/raw/{prefix}-images-idx3-ubyte.gz", data_dir)
    labels = _read_idx(f"MNIST/raw/{prefix}-labels-idx1-ubyte.gz", data_dir)
    if len(images) != len(labels):
        raise DataIntegrityError(f"MNIST {split}: {len(images)} images but {len(labels)} labels")
    return images, labels


def _torch():
    import torch  # seeded by runtime's import hook if runtime.setup ran before

    return torch


def load_mnist(split: str, data_dir: Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST as uint8 images ``(N, 28, 28)`` and int64 labels ``(N,)``; ``split`` in SPLITS.

    Train has 60,000 images, test 10,000 (LeCun et al. 1998). Each call returns new tensors.
    The IDX files are parsed here rather than by ``torchvision.datasets.MNIST``, which wants
    them decompressed and would try to download them otherwise (CONTRIBUTING.md, "Data").
    """
    torch = _torch()
    images, labels = _mnist_arrays(_check_split(split), data_dir)
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


def mnist_tensors(split: str, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST as float32 images in [0, 1] shaped ``(N, 1, 28, 28)`` (pixel / 255) and labels.

    ``limit`` keeps the first ``limit`` examples (the original order), for quick experiments.
    """
    if limit is not None:
        limit = checks.integer(limit, "limit", low=1)
    images, labels = load_mnist(split)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return images.unsqueeze(1).float().div_(255.0), labels


def mnist_loader(
    split: str,
    batch_size: int = 128,
    shuffle: bool | None = None,
    seed: int | torch.Generator | None = 0,
    limit: int | None = None,
) -> DataLoader:
    """A DataLoader over :func:`mnist_tensors`; shuffles the train split by default.

    ``shuffle`` is ``None`` (shuffle the train split only), ``True`` or ``False``. The order is
    drawn from its own ``torch.Generator`` made from ``seed`` (an int, or a generator; ``None``
    uses torch's global generator), so the batches are the same on every run whatever else used
    the global RNG.
    """
    batch_size = checks.integer(batch_size, "batch_size", low=1)
    if shuffle is not None:
        shuffle = checks.boolean(shuffle, "shuffle")
    generator = checks.torch_generator(seed)  # checked before the data is read
    x, y = mnist_tensors(split, limit)
    shuffle = (split == "train") if shuffle is None else shuffle
    return tensor_loader(x, y, batch_size=batch_size, shuffle=shuffle, seed=generator)


def tensor_loader(x: torch.Tensor, y: torch.Tensor, batch_size: int = 128, shuffle: bool = True,
                  seed: int | torch.Generator | None = 0) -> DataLoader:
    """A DataLoader over in-memory tensors ``(x, y)`` (poisoned, relabelled or stolen data).

    The order is drawn from its own ``torch.Generator`` made from ``seed`` (an int, or a
    generator; ``None`` uses torch's global generator), so the batches are the same on every
    run whatever else used the global RNG.
    """
    torch = _torch()
    from torch.utils.data import DataLoader, TensorDataset

    batch_size = checks.integer(batch_size, "batch_size", low=1)
    shuffle = checks.boolean(shuffle, "shuffle")
    generator = checks.torch_generator(seed)
    for name, value in (("x", x), ("y", y)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor (convert with torch.as_tensor), got "
                            f"{type(value).__name__}")
    checks.same_length("x", x, "y", y)
    if len(x) == 0:
        raise ValueError("x is empty: a loader needs at least one example")
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle,
                      generator=generator)


def load_adult(split: str, data_dir: Path | None = None) -> pd.DataFrame:
    """UCI Adult as a cleaned DataFrame: 32,561 (train) or 16,281 (test) rows.

    Columns are the UCI names in snake_case; strings are stripped; ``?`` is missing (NaN); the
    label ``income_gt_50k`` is 1 for ">50K" (``adult.test`` writes ">50K." with a trailing dot
    and starts with a "|1x3 Cross validator" line, both handled).
    """
    name = "adult.data" if _check_split(split) == "train" else "adult.test"
    text = gzip.decompress(read_verified(f"adult/{name}.gz", data_dir)).decode("ascii")
    frame = pd.read_csv(
        io.StringIO(text), header=None, names=ADULT_COLUMNS, sep=",", skipinitialspace=True,
        na_values="?", comment="|", skip_blank_lines=True,
    )
    for column in frame.select_dtypes(include=["object", "string"]).columns:
        frame[column] = frame[column].str.strip()
    income = frame.pop("income").str.rstrip(".")
    unknown = set(income.unique()) - {">50K", "<=50K"}
    if unknown:
        raise DataIntegrityError(f"data/adult/{name}.gz: unexpected income values {unknown}")
    frame[ADULT_LABEL] = (income == ">50K").astype(np.int64)
    return frame


def load_acs_income(data_dir: Path | None = None) -> pd.DataFrame:
    """OpenIntro ``acs12``: 2,000 people from the 2012 American Community Survey.

    Columns: income (annual, USD; NaN where not reported), employment, hrs_work, race, age,
    gender, citizen, time_to_work, lang, married, edu, disability, birth_qrtr. Missing values
    stay missing.
    """
    text = read_verified("acs/acs12.csv", data_dir).decode("utf-8")
    return pd.read_csv(io.StringIO(text))
