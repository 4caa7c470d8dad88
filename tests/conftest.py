"""Shared test fixtures: the model cache and the results files go to a temporary folder, never
to .cache/ or results/ (a test run must leave the checkout unchanged)."""

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBOOK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("WORKBOOK_RESULTS", str(tmp_path / "results"))
