"""Seeding, device choice and the results files."""

import json
import math
import os
import platform
import re
import subprocess
import sys

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
    assert isinstance(dev, torch.device)
    assert dev.type in ("cpu", "cuda")
    assert "device:" in out
    assert "torch" in out
    assert "numpy" in out
    assert "python" in out


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


def test_atomic_write_text_bytes_and_callable(tmp_path):
    path = tmp_path / "sub" / "f.txt"
    assert runtime.atomic_write(path, "one") == path
    assert path.read_text() == "one"
    runtime.atomic_write(path, b"two")
    assert path.read_bytes() == b"two"
    runtime.atomic_write(path, lambda p: p.write_text("three"))
    assert path.read_text() == "three"
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)  # not mkstemp's 0600
    assert sorted(p.name for p in path.parent.iterdir()) == ["f.txt"]


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old")

    def broken(p):
        p.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        runtime.atomic_write(path, broken)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]  # no temporary file left


@pytest.mark.parametrize("write", [None, 3, ["text"]])
def test_atomic_write_rejects_what_it_cannot_write(tmp_path, write):
    with pytest.raises(TypeError, match="write must be str, bytes or a callable"):
        runtime.atomic_write(tmp_path / "f", write)


def test_display_path_is_relative_inside_the_repository_only(tmp_path):
    assert runtime.display_path(runtime.ROOT / "results" / "x.json") == "results/x.json"
    assert runtime.display_path(tmp_path / "x.json") == str(tmp_path / "x.json")


def test_save_results_names_the_real_folder(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("WORKBOOK_RESULTS", str(tmp_path / "elsewhere"))
    path = runtime.save_results("hw0_demo", {"acc": 1.0}, {})
    assert path == tmp_path / "elsewhere" / "hw0_demo.json"
    assert capsys.readouterr().out.strip() == f"saved {path}"


def _run(code: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=runtime.ROOT, env=env,
                          capture_output=True, text=True, check=True)
    return done.stdout


def test_numpy_only_notebooks_do_not_load_torch(tmp_path):
    out = _run("import sys\n"
               "from helpers import checks, data, dp_mechanisms, fairness, runtime\n"
               "print(runtime.setup(seed=0, verbose=False))\n"
               "data.load_acs_income(); data.load_adult('test')\n"
               f"runtime.save_results('x', {{'a': 1}}, {{}}, results_dir={str(tmp_path)!r})\n"
               "print('torch' in sys.modules)\n")
    assert out.splitlines() == ["cpu", f"saved {tmp_path / 'x.json'}", "False"]


def test_torch_imported_after_setup_is_seeded_then():
    out = _run("from helpers import runtime\n"
               "runtime.setup(seed=7, verbose=False)\n"
               "from helpers import models\n"
               "import torch\n"
               "a = torch.rand(3)\n"
               "torch.manual_seed(7)\n"
               "print(torch.equal(a, torch.rand(3)), torch.are_deterministic_algorithms_enabled())")
    assert out.split() == ["True", "True"]


def test_a_plain_torch_import_after_setup_is_seeded_too():
    # no helper module imports torch first: the import hook set by setup must seed it
    out = _run("import sys\n"
               "from helpers import runtime\n"
               "runtime.setup(seed=7, verbose=False)\n"
               "print('torch' in sys.modules)\n"
               "import torch\n"
               "a = torch.rand(3)\n"
               "torch.manual_seed(7)\n"
               "print(torch.equal(a, torch.rand(3)), torch.are_deterministic_algorithms_enabled())")
    assert out.split() == ["False", "True", "True"]


def test_setup_fixes_the_cpu_threads_whatever_the_cores(monkeypatch):
    # results must not depend on the core count: two threads by default, WORKBOOK_THREADS wins
    from threadpoolctl import threadpool_info

    monkeypatch.delenv("WORKBOOK_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        runtime.setup(seed=0, verbose=False)
        assert torch.get_num_threads() == 2
        assert all(pool["num_threads"] == 2 for pool in threadpool_info()
                   if pool["user_api"] == "blas")
        monkeypatch.setenv("WORKBOOK_THREADS", "1")
        runtime.setup(seed=0, verbose=False)
        assert torch.get_num_threads() == 1
        assert all(pool["num_threads"] == 1 for pool in threadpool_info()
                   if pool["user_api"] == "blas")
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_bad_workbook_threads_is_refused(monkeypatch, value):
    monkeypatch.setenv("WORKBOOK_THREADS", value)
    with pytest.raises(ValueError, match="WORKBOOK_THREADS must be a positive integer"):
        runtime.cpu_threads()


def test_cpu_numerics_is_repeatable_and_restores_what_it_changes(monkeypatch):
    monkeypatch.delenv("WORKBOOK_THREADS", raising=False)
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(False)
    try:
        rng = torch.get_rng_state()
        first, second = runtime.cpu_numerics(), runtime.cpu_numerics()
        assert first == second
        assert torch.equal(torch.get_rng_state(), rng)  # the probe draws from its own seed
        assert torch.get_num_threads() == 1
        assert not torch.are_deterministic_algorithms_enabled()
        assert first["threads"] == 2
        assert first["torch"] == torch.__version__
        assert first["capability"] == torch.backends.cpu.get_cpu_capability()
        assert re.fullmatch(r"[0-9a-f]{16}", first["fingerprint"])
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def test_cpu_numerics_depends_on_the_thread_count(monkeypatch):
    monkeypatch.setenv("WORKBOOK_THREADS", "1")
    one = runtime.cpu_numerics(steps=2)
    monkeypatch.setenv("WORKBOOK_THREADS", "2")
    assert runtime.cpu_numerics(steps=2)["fingerprint"] != one["fingerprint"]
    assert runtime.cpu_numerics(steps=3)["fingerprint"] != runtime.cpu_numerics(steps=2)[
        "fingerprint"]  # the weights are hashed, not only the versions


def _fingerprint_with(**env: str) -> str:
    code = "from helpers import runtime; print(runtime.cpu_numerics()['fingerprint'])"
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, check=True,
                          capture_output=True, text=True, timeout=300)
    return done.stdout.strip()


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"),
                    reason="the kernel choices below are x86's")
@pytest.mark.parametrize("env", [{"ATEN_CPU_CAPABILITY": "default"},  # torch's own kernels
                                 {"ONEDNN_MAX_CPU_ISA": "SSE41"},     # oneDNN's convolutions
                                 {"OPENBLAS_CORETYPE": "Prescott"}],  # NumPy's BLAS (HW1)
                         ids=["aten", "onednn", "openblas"])
def test_cpu_numerics_tells_other_kernels_apart(env):
    """What another type of CPU does: the same code through other vector kernels. Each of
    torch's, oneDNN's and NumPy's BLAS choice must change the fingerprint (an SSE machine's
    rounding is not the committed AVX one's)."""
    if "ATEN_CPU_CAPABILITY" in env and torch.backends.cpu.get_cpu_capability() == "DEFAULT":
        pytest.skip("torch already runs its default kernels here")
    assert _fingerprint_with(**env) != _fingerprint_with()


@pytest.mark.parametrize("steps", [0, -1])
def test_cpu_numerics_rejects_bad_steps(steps):
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        runtime.cpu_numerics(steps=steps)
