"""Figure helpers shared by several notebooks.

* :func:`image_grid`: a batch of images ``(N, C, H, W)`` in [0, 1] as one grid on a matplotlib
  axis, laid out by ``torchvision.utils.make_grid`` (the library tool for it: no hand-written
  tiling loops in the notebooks).

torch, torchvision and matplotlib are imported when a function is called, not on import.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from helpers import checks

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from matplotlib.axes import Axes

__all__ = ["image_grid", "make_grid"]


def make_grid(images: torch.Tensor, nrow: int = 8, padding: int = 2,
              pad_value: float = 1.0) -> torch.Tensor:
    """The images tiled ``nrow`` per row with ``padding`` pixels of ``pad_value`` between them,
    as one ``(C, H', W')`` tensor on the CPU (``torchvision.utils.make_grid``).

    Grid size: ``H' = r (H + p) + p`` and ``W' = c (W + p) + p`` with ``c = min(nrow, N)``
    columns and ``r = ceil(N / c)`` rows; single-channel images stay single-channel.
    """
    from torchvision.utils import make_grid as tv_make_grid

    images = checks.images(images, "images")
    nrow = checks.integer(nrow, "nrow", low=1)
    padding = checks.integer(padding, "padding", low=0)
    pad_value = checks.fraction(pad_value, "pad_value")
    grid = tv_make_grid(images.detach().cpu(), nrow=nrow, padding=padding, pad_value=pad_value)
    return grid[:1] if images.shape[1] == 1 else grid


def image_grid(images: torch.Tensor, *, nrow: int = 8, labels: Sequence[Any] | None = None,
               title: str | None = None, ax: Axes | None = None, padding: int = 2,
               cmap: str = "gray") -> Axes:
    """Draw a batch of images as one grid (see :func:`make_grid`) and return the axis.

    ``labels`` (one per image, optional) are written under the title in reading order as
    ``index: label``; ``title`` titles the axis. Axis ticks are hidden. A new figure is made
    when ``ax`` is None.
    """
    import matplotlib.pyplot as plt

    grid = make_grid(images, nrow=nrow, padding=padding)
    if labels is not None:
        labels = list(labels)
        checks.same_length("images", images, "labels", labels)
    if title is not None and not isinstance(title, str):
        raise TypeError(f"title must be a string or None, got {type(title).__name__}")
    if ax is None:
        _, ax = plt.subplots(figsize=(min(12, 1.2 * min(nrow, len(images))), 3))
    picture = grid[0] if grid.shape[0] == 1 else grid.permute(1, 2, 0)
    ax.imshow(picture.numpy(), cmap=cmap, vmin=0.0, vmax=1.0)
    ax.set_xticks([])
    ax.set_yticks([])
    text = title or ""
    if labels is not None:
        text += ("\n" if text else "") + "  ".join(f"{i}: {lab}" for i, lab in enumerate(labels))
    if text:
        ax.set_title(text, fontsize=9)
    return ax
