"""Fixtures for the meter tests (the fakes themselves live in meter_fakes.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from meter_fakes import FakeClock, FakeGpu, FakeNvml, TimelineWriter

from wattlab.meters.timeline import Timeline


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """A fake clock patched into every meter module's `now_ns`."""
    c = FakeClock()
    for module in ("gpu", "rapl", "jetson", "estimate", "replay"):
        monkeypatch.setattr(f"wattlab.meters.{module}.now_ns", c.now_ns)
    return c


@pytest.fixture
def two_gpus() -> FakeNvml:
    return FakeNvml(
        [
            FakeGpu(name="NVIDIA H200", uuid="GPU-aaaaaaaa-0000-0000-0000-000000000000"),
            FakeGpu(name="NVIDIA H200", uuid="GPU-bbbbbbbb-0000-0000-0000-000000000001", power_mw=250_000.0),
        ]
    )


@pytest.fixture(autouse=True)
def _no_cuda_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """GPU selection tests must not depend on the CUDA_VISIBLE_DEVICES of whoever runs them."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)


@pytest.fixture
def timeline_writer() -> Iterator[Callable[[Timeline, Path], TimelineWriter]]:
    writers: list[TimelineWriter] = []

    def make(timeline: Timeline, path: Path) -> TimelineWriter:
        writer = TimelineWriter(timeline, path)
        writers.append(writer)
        return writer

    yield make
    for w in writers:
        if not w._file.closed:
            w.close()
