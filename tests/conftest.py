"""Shared test fixtures: the model cache and the results files go to a temporary folder, never
to .cache/ or results/ (a test run must leave the checkout unchanged)."""

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBOOK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("WORKBOOK_RESULTS", str(tmp_path / "results"))


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of toy-model tests: the tensors are tiny, and OpenMP
    threads spinning on a busy shared CPU cost more than they save. Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
