"""Fixtures for the console tests (the helpers live in app_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from app_helpers import load_benchmark


@pytest.fixture(scope="session")
def small_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """120 runs in 4 sessions, with samples, energy rows, quality for some, a few failures."""
    path = tmp_path_factory.mktemp("db") / "small.duckdb"
    load_benchmark("make_big_db").make_db(path, runs=120, samples=12_000, runs_per_session=30, seed=7)
    return path


@pytest.fixture(autouse=True)
def own_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each console test gets its own data dir, so the spools it writes (some with a dead runner)
    are never recovered into another test's database."""
    home = tmp_path / "wattlab-home"
    monkeypatch.setenv("WATTLAB_HOME", str(home))
    return home
