"""The one vocabulary of argument checks that every helper module uses.

Rules (CONTRIBUTING.md, "Helper conventions"):

* A value of the wrong *type* raises :class:`TypeError`; a value of the right type but outside
  what is allowed raises :class:`ValueError`. ``bool`` is never accepted as a number.
* Every message names the parameter and says what is allowed, then what was given:
  ``"eps must be a finite number >= 0, got -0.1"``.
* Each check returns the value in canonical form (a Python ``float``/``int``, a NumPy array, a
  torch tensor), so a caller writes ``eps = checks.real(eps, "eps", low=0)`` and moves on.
* Randomness: a public function that draws random numbers takes one argument named ``seed``:
  ``None`` (the library's global generator, seeded by ``runtime.setup``), an ``int``, or a
  generator of the library it computes with (``numpy.random.Generator`` for NumPy code,
  ``torch.Generator`` for torch code). :func:`numpy_rng` and :func:`torch_generator` turn it into
  a generator. The same seed gives the same result.

This module imports torch lazily, so NumPy-only modules (``dp_mechanisms``, ``fairness``,
``accounting``) can use it without loading torch.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "array",
    "boolean",
    "choice",
    "fraction",
    "images",
    "integer",
    "labels",
    "module",
    "numpy_rng",
    "real",
    "same_device",
    "same_length",
    "torch_generator",
    "torch_labels",
]


def _bounds_text(low, high, low_open: bool, high_open: bool) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}" if isinstance(low, float)
                     else f"{'>' if low_open else '>='} {low}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}" if isinstance(high, float)
                     else f"{'<' if high_open else '<='} {high}")
    return " and ".join(parts)


def boolean(value: Any, name: str) -> bool:
    """``value`` if it is ``True`` or ``False`` (NumPy booleans included), else TypeError."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r}")


def real(value: Any, name: str, *, low: float | None = None, high: float | None = None,
         low_open: bool = False, high_open: bool = False, finite: bool = True) -> float:
    """``value`` as a float, checked to be a real number within the stated bounds.

    ``low``/``high`` are inclusive unless ``low_open``/``high_open``; NaN is always refused and
    infinity unless ``finite=False``. A one-element tensor or NumPy scalar counts as a number.
    """
    if hasattr(value, "ndim") and getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if math.isnan(value) or (finite and math.isinf(value)):
        raise ValueError(f"{name} must be a finite number, got {value}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        raise ValueError(f"{name} must be a number {_bounds_text(low, high, low_open, high_open)},"
                         f" got {value:g}")
    return value


def fraction(value: Any, name: str, *, open_low: bool = False, open_high: bool = False) -> float:
    """A probability-like number in [0, 1] (ends excluded on request): ``alpha``, ``rate``..."""
    return real(value, name, low=0.0, high=1.0, low_open=open_low, high_open=open_high)


def integer(value: Any, name: str, *, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int within ``[low, high]``; floats (even 3.0) and bools are a TypeError."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be an integer {_bounds_text(low, high, False, False)}, "
                         f"got {value}")
    return value


def choice(value: Any, name: str, allowed: Iterable) -> Any:
    """``value`` if it is one of ``allowed``, else ValueError listing them."""
    allowed = tuple(allowed)
    try:
        ok = value in allowed
    except TypeError:  # unhashable or incomparable
        ok = False
    if not ok:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def array(values: Any, name: str, *, ndim: int | tuple[int, ...] | None = None,
          dtype: str = "float", allow_empty: bool = False, finite: bool = True,
          low: float | None = None, high: float | None = None) -> np.ndarray:
    """An array-like (list, tuple, NumPy array, pandas Series, tensor on the CPU) as a NumPy array.

    ``dtype`` is ``"float"`` (any real numbers, returned as float64), ``"int"`` (integers,
    returned as int64; floats are refused), ``"bool"`` or ``"any"`` (no conversion). Strings and
    scalars are a TypeError; the wrong number of dimensions, an empty array (unless
    ``allow_empty``), NaN or infinity (when ``finite``) and values outside ``[low, high]`` are a
    ValueError.
    """
    if isinstance(values, str | bytes) or np.isscalar(values) or values is None:
        raise TypeError(f"{name} must be an array-like, got {type(values).__name__}")
    if hasattr(values, "detach") and hasattr(values, "cpu"):  # a torch tensor
        values = values.detach().cpu().numpy()
    if hasattr(values, "to_numpy"):  # pandas Series / Index / DataFrame
        values = values.to_numpy()
    try:
        arr = np.asarray(values)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be an array-like of numbers: {exc}") from None
    if ndim is not None:
        allowed_ndim = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if arr.ndim not in allowed_ndim:
            want = " or ".join(f"{d}-D" for d in allowed_ndim)
            raise ValueError(f"{name} must be {want}, got shape {arr.shape}")
    if arr.size == 0 and not allow_empty:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
    if dtype == "any":
        return arr
    kind = arr.dtype.kind
    if dtype == "bool":
        if kind != "b":
            raise TypeError(f"{name} must hold booleans, got dtype {arr.dtype}")
        return arr
    if dtype == "int":
        if kind not in "iu":
            if arr.size == 0:
                return arr.astype(np.int64)
            raise TypeError(f"{name} must hold integers, got dtype {arr.dtype}")
        arr = arr.astype(np.int64, copy=False)
    elif dtype == "float":
        if kind not in "fiu":
            if arr.size == 0:
                return arr.astype(np.float64)
            raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
        arr = arr.astype(np.float64, copy=False)
        if np.isnan(arr).any() or (finite and np.isinf(arr).any()):
            banned = "NaN or inf" if finite else "NaN"
            raise ValueError(f"{name} must hold finite numbers (no {banned})")
    else:
        raise ValueError(f"dtype must be one of ('float', 'int', 'bool', 'any'), got {dtype!r}")
    if arr.size and low is not None and arr.min() < low:
        raise ValueError(f"{name} must hold values >= {low}, got minimum {arr.min():g}")
    if arr.size and high is not None and arr.max() > high:
        raise ValueError(f"{name} must hold values <= {high}, got maximum {arr.max():g}")
    return arr


def labels(values: Any, name: str, *, n: int | None = None,
           num_classes: int | None = None) -> np.ndarray:
    """Integer class labels as a 1-D int64 array, of length ``n`` and in ``[0, num_classes)``."""
    arr = array(values, name, ndim=1, dtype="int", allow_empty=n == 0)
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} must have {n} labels (one per example), got {arr.shape[0]}")
    if arr.size and (arr.min() < 0 or (num_classes is not None and arr.max() >= num_classes)):
        top = "num_classes" if num_classes is None else num_classes
        raise ValueError(f"{name} must hold integers in [0, {top}), got values in "
                         f"[{arr.min()}, {arr.max()}]")
    return arr


def same_length(name_a: str, a: Any, name_b: str, b: Any) -> int:
    """The common length of ``a`` and ``b``, or ValueError naming both."""
    if len(a) != len(b):
        raise ValueError(f"{name_a} and {name_b} must have the same length, got {len(a)} and "
                         f"{len(b)}")
    return len(a)


def numpy_rng(seed: Any, name: str = "seed") -> np.random.Generator:
    """``None`` -> a fresh generator from NumPy's global seed sequence (seeded by
    ``runtime.setup`` through ``np.random.seed``); ``int`` -> ``default_rng(int)``; a
    ``numpy.random.Generator`` is returned as it is (its state advances)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        return np.random.default_rng(np.random.randint(0, 2**32 - 1))  # noqa: NPY002
    if isinstance(seed, bool | np.bool_) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{name} must be None, an int or a numpy.random.Generator, got "
                        f"{type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"{name} must be an int >= 0, got {seed}")
    return np.random.default_rng(int(seed))


def torch_generator(seed: Any, name: str = "seed") -> torch.Generator | None:
    """``None`` -> ``None`` (torch's global generator, seeded by ``runtime.setup``); ``int`` ->
    a new CPU ``torch.Generator`` with that seed; a ``torch.Generator`` as it is."""
    import torch

    if seed is None or isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, bool | np.bool_) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{name} must be None, an int or a torch.Generator, got "
                        f"{type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"{name} must be an int >= 0, got {seed}")
    return torch.Generator().manual_seed(int(seed))


def module(model: Any, name: str = "model") -> Any:
    """``model`` if it is a ``torch.nn.Module``, else TypeError."""
    from torch import nn

    if not isinstance(model, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {type(model).__name__}")
    return model


def images(x: Any, name: str = "x", *, channels: int | None = None,
           allow_empty: bool = False) -> torch.Tensor:
    """A float image batch (N, C, H, W) with finite values in [0, 1], returned unchanged.

    A NumPy array is a TypeError that says to convert it with ``torch.as_tensor``: the library's
    image functions keep the caller's device and dtype, so they take tensors only.
    """
    import torch

    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of images shaped (N, C, H, W) in [0, 1],"
                        f" got {type(x).__name__} (convert with torch.as_tensor)")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor with values in [0, 1], got "
                        f"dtype {x.dtype}")
    if x.ndim != 4 or (x.shape[0] < 1 and not allow_empty):
        raise ValueError(f"{name} must have shape (N, C, H, W) with N >= 1 (MNIST: "
                         f"(N, 1, 28, 28)), got shape {tuple(x.shape)}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name} must have {channels} channel(s), got shape {tuple(x.shape)}")
    if x.numel():
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} contains NaN or infinite values; pixels must lie in [0, 1]")
        lo, hi = float(x.min()), float(x.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"{name} must have pixel values in [0, 1], got values in "
                             f"[{lo:.4g}, {hi:.4g}]")
    return x


def torch_labels(y: Any, name: str = "y", *, n: int | None = None,
                 num_classes: int | None = None, device=None) -> torch.Tensor:
    """Integer class labels as a 1-D int64 tensor (on ``device`` if given)."""
    import torch

    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of integer class labels, got "
                        f"{type(y).__name__}")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor of class labels, got dtype {y.dtype}")
    if y.ndim != 1 or (n is not None and y.shape[0] != n):
        want = f"({n},) (one label per image)" if n is not None else "(N,)"
        raise ValueError(f"{name} must have shape {want}, got shape {tuple(y.shape)}")
    if y.numel():
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or (num_classes is not None and hi >= num_classes):
            top = "num_classes" if num_classes is None else num_classes
            raise ValueError(f"{name} must hold labels in [0, {top}), got values in [{lo}, {hi}]")
    return y.to(device=device if device is not None else y.device, dtype=torch.long)


def same_device(model: Any, x: Any, name: str = "x") -> None:
    """ValueError unless tensor ``x`` is on the device of ``model``'s parameters (a model
    without parameters runs anywhere)."""
    param = next(iter(model.parameters()), None)
    if param is not None and param.device != x.device:
        raise ValueError(f"{name} is on {x.device} but the model's parameters are on "
                         f"{param.device}; move both to the same device")


def frame(df: Any, name: str, columns: Iterable[str] = ()) -> Any:
    """``df`` if it is a pandas DataFrame holding every column in ``columns``: TypeError for
    another type, ValueError naming the missing columns."""
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{name} must have the columns {list(columns)}; missing {missing}")
    return df
