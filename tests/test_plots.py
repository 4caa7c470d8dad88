"""helpers.plots: the image grid built on torchvision."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from helpers import plots


def test_make_grid_size_and_placement():
    images = torch.zeros(5, 1, 4, 3)
    images[3] = 1.0  # the fourth image: row 1, column 0 with nrow=3
    grid = plots.make_grid(images, nrow=3, padding=1, pad_value=0.5)
    # H' = rows (H + p) + p = 2 * 5 + 1; W' = cols (W + p) + p = 3 * 4 + 1
    assert grid.shape == (1, 11, 13)
    assert torch.all(grid[0, 6:10, 1:4] == 1.0)  # image 3 at row 1, column 0
    assert torch.all(grid[0, 1:5, 1:4] == 0.0)  # image 0
    assert grid[0, 0, 0] == 0.5  # padding


def test_image_grid_draws_titles_and_labels():
    fig, ax = plt.subplots()
    out = plots.image_grid(torch.rand(3, 1, 28, 28), labels=[7, 2, 1], title="digits", ax=ax)
    assert out is ax
    assert ax.get_title() == "digits\n0: 7  1: 2  2: 1"
    assert np.asarray(ax.get_images()[0].get_array()).shape == (32, 92)
    plt.close(fig)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"images": np.zeros((2, 1, 4, 4))}, TypeError, "torch.as_tensor"),
    ({"images": torch.zeros(2, 4, 4)}, ValueError, r"shape \(N, C, H, W\)"),
    ({"images": torch.full((2, 1, 4, 4), 2.0)}, ValueError, r"\[0, 1\]"),
    ({"nrow": 0}, ValueError, "nrow must be an integer >= 1"),
    ({"nrow": 2.5}, TypeError, "nrow must be an integer"),
    ({"padding": -1}, ValueError, "padding must be an integer >= 0"),
    ({"labels": [1]}, ValueError, "images and labels must have the same length"),
    ({"title": 3}, TypeError, "title must be a string or None"),
])
def test_image_grid_rejects_bad_arguments(kwargs, error, match):
    arguments = {"images": torch.zeros(2, 1, 4, 4), **kwargs}
    with pytest.raises(error, match=match):
        plots.image_grid(**arguments)
    plt.close("all")
