"""Seeding, device choice and the results files."""

import json
import math

import numpy as np
import pytest
import torch

from helpers import data, models, runtime


def _first_batch_and_weights(seed):
    runtime.setup(seed, verbose=False)
    x, y = next(iter(data.mnist_loader("train", batch_size=16, seed=seed, limit=512)))
    model = models.MnistCNN()
    return y, model.features[0].weight.detach().clone(), np.random.rand(3), torch.rand(3)  # noqa: NPY002


def test_same_seed_same_batch_and_initial_weights():
    a, b = _first_batch_and_weights(0), _first_batch_and_weights(0)
    for left, right in zip(a, b, strict=True):
        assert np.array_equal(np.asarray(left), np.asarray(right))


def test_different_seed_differs():
    a, b = _first_batch_and_weights(0), _first_batch_and_weights(1)
    for left, right in zip(a, b, strict=True):
        assert not np.array_equal(np.asarray(left), np.asarray(right))


def test_setup_prints_device_and_versions(capsys):
    dev = runtime.setup(0)
    out = capsys.readouterr().out
    assert isinstance(dev, torch.device) and dev.type in ("cpu", "cuda")
    assert "device:" in out and "torch" in out and "numpy" in out and "python" in out


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True, 2**32])
def test_setup_rejects_bad_seeds(seed):
    with pytest.raises(ValueError, match="seed must be an integer"):
        runtime.setup(seed, verbose=False)


def test_device_can_be_forced_to_cpu(monkeypatch):
    monkeypatch.setenv("WORKBOOK_DEVICE", "cpu")
    assert runtime.device().type == "cpu"
    monkeypatch.setenv("WORKBOOK_DEVICE", "tpu")
    with pytest.raises(ValueError, match="WORKBOOK_DEVICE"):
        runtime.device()


def test_save_results_writes_the_documented_record(tmp_path):
    runtime.setup(0, verbose=False)
    metrics = {"accuracy": np.float32(0.5), "count": 3, "loss": torch.tensor(0.25)}
    path = runtime.save_results("hw0_demo", metrics, {"epochs": 1}, results_dir=tmp_path)
    record = json.loads(path.read_text())
    assert path.name == "hw0_demo.json"
    assert set(record) == {"notebook", "metrics", "config", "environment", "seconds"}
    assert record["metrics"] == {"accuracy": 0.5, "count": 3, "loss": 0.25}
    assert set(record["environment"]) == {"python", "torch", "device"}
    assert record["seconds"] >= 0


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, np.float64("nan")])
def test_save_results_rejects_non_finite_metrics(tmp_path, bad):
    with pytest.raises(ValueError, match=r"metrics\['acc'\] must be finite"):
        runtime.save_results("hw0_demo", {"acc": bad}, {}, results_dir=tmp_path)
    assert not (tmp_path / "hw0_demo.json").exists()


@pytest.mark.parametrize(("notebook", "metrics", "error"), [
    ("hw0_demo", {"acc": "0.9"}, TypeError),
    ("hw0_demo", {"acc": None}, TypeError),
    ("hw0_demo", {}, ValueError),
    ("../evil", {"acc": 1.0}, ValueError),
    ("hw0_demo.ipynb", {"acc": 1.0}, ValueError),
])
def test_save_results_rejects_bad_arguments(tmp_path, notebook, metrics, error):
    with pytest.raises(error):
        runtime.save_results(notebook, metrics, {}, results_dir=tmp_path)


def test_relative_results_folder_is_taken_from_the_repository_root(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # notebooks run in notebooks/, not in the root
    monkeypatch.setenv("WORKBOOK_RESULTS", "build/test-results-relative")
    path = runtime.save_results("hw0_demo", {"acc": 1.0}, {})
    try:
        assert path == runtime.ROOT / "build" / "test-results-relative" / "hw0_demo.json"
    finally:
        path.unlink()
        path.parent.rmdir()  # leave no trace in the repository's build/
