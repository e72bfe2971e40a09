"""Shared test setup: an isolated data dir per test session, and hardware markers.

Tests marked `gpu` run only where NVML sees a GPU (the lent GPU box), `jetson` only on a Jetson;
CI has neither, so they are skipped there with the reason shown.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wattlab.engines import has_nvidia_gpu


def _is_jetson() -> bool:
    return Path("/etc/nv_tegra_release").exists()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # get_closest_marker, not keywords: a test parameter named "gpu" must not count as the marker.
    gpu_items = [i for i in items if i.get_closest_marker("gpu")]
    jetson_items = [i for i in items if i.get_closest_marker("jetson")]
    if gpu_items and not has_nvidia_gpu():
        skip = pytest.mark.skip(reason="needs an NVIDIA GPU (NVML); run on the lent GPU box")
        for item in gpu_items:
            item.add_marker(skip)
    if jetson_items and not _is_jetson():
        skip = pytest.mark.skip(reason="needs a Jetson board")
        for item in jetson_items:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def wattlab_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every test session gets its own data dir, so tests never touch a user's database.

    Derived model files (the transformers checkpoint made from the bundled GGUF, GGUF variants) live under
    WATTLAB_MODELS when that is set, so repeated local runs can skip the conversion.
    """
    home = tmp_path_factory.mktemp("wattlab-home")
    os.environ["WATTLAB_HOME"] = str(home)
    return home
