"""Record a timeline file from a live (fake-GPU) session, then replay it accelerated through the Sampler."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from meter_fakes import FakeGpu, FakeNvml, TimelineWriter

from wattlab.errors import ConfigError
from wattlab.meters.nvml import NvmlMeter
from wattlab.meters.replay import ReplayMeter
from wattlab.meters.sampler import Sampler
from wattlab.meters.timeline import Timeline, load_timeline

PHASES = [("idle_start", 60.0, 0.4), ("load_start", 300.0, 0.5), ("load_end", 60.0, 0.3)]  # mark, W, s
WINDOWS = [
    ("idle", "idle_start", "load_start"),
    ("load", "load_start", "load_end"),
    ("idle2", "load_end", "end"),
]


def record(path: Path, make_writer: Callable[[Timeline, Path], TimelineWriter]) -> dict[str, float]:
    """A fake GPU idles, loads and idles again under the real sampler; returns counter energy per window."""
    gpu = FakeGpu(power_mw=60_000.0)
    meter = NvmlMeter(nvml=FakeNvml([gpu]))
    timeline = Timeline(meter.domains)
    sampler = Sampler([meter], timeline)  # sets the timeline's periods, which the header records
    writer = make_writer(timeline, path)
    with sampler:
        time.sleep(0.15)
        for mark, watts, seconds in PHASES:
            gpu.set_power(watts)
            timeline.mark(mark)
            sampler.read_counters_now()
            time.sleep(seconds)
        timeline.mark("end")
        sampler.read_counters_now()
        time.sleep(0.15)
    writer.close()
    return window_energies(timeline, lambda t: t)


def window_energies(timeline: Timeline, to_clock: Callable[[int], int]) -> dict[str, float]:
    marks = {m.name: m.t_ns for m in timeline.marks}
    out = {}
    for name, a, b in WINDOWS:
        w = timeline.window("gpu0", to_clock(marks[a]), to_clock(marks[b]))
        assert w.method == "counter" and w.energy_j is not None, (name, w)
        out[name] = w.energy_j
    return out


def test_recorded_file_round_trips(tmp_path: Path, timeline_writer) -> None:
    path = tmp_path / "trace.jsonl"
    live = record(path, timeline_writer)
    lines = path.read_text().splitlines()
    assert "wattlab_timeline" in json.loads(lines[0])
    # The fake counter grows at exactly the set power: the windows hold power x duration.
    loaded = load_timeline(path)
    assert [m.name for m in loaded.marks] == ["idle_start", "load_start", "load_end", "end"]
    assert window_energies(loaded, lambda t: t) == pytest.approx(live, rel=1e-9)
    marks = {m.name: m.t_ns for m in loaded.marks}
    load_s = (marks["load_end"] - marks["load_start"]) / 1e9
    assert live["load"] == pytest.approx(300.0 * load_s, rel=0.05)
    # Memory used travels as a sample field, never mistaken for a mark.
    assert loaded.latest("gpu0").mem_used_mib == pytest.approx(3 * 1024)


def test_accelerated_replay_through_the_sampler(tmp_path: Path, timeline_writer) -> None:
    path = tmp_path / "trace.jsonl"
    recorded = record(path, timeline_writer)
    speed = 4.0
    meter = ReplayMeter(path, speed=speed)
    assert [d.id for d in meter.domains] == ["gpu0"]
    assert meter.domains[0].meter == "replay" and "replay of trace.jsonl" in meter.domains[0].label
    assert meter.domains[0].has_counter
    timeline = Timeline()
    with Sampler([meter], timeline):
        deadline = time.monotonic() + 5.0
        while not meter.finished and time.monotonic() < deadline:
            time.sleep(0.05)
    assert meter.finished
    marks = {m.name: m for m in meter.marks}
    for m in marks.values():
        timeline.mark(m.name, t_ns=meter.replay_time(m.t_ns))
    replayed = window_energies(timeline, lambda t: t)
    # Compressed time, same watts: every window holds the recorded energy / speed (see replay.py).
    for name, energy in recorded.items():
        assert replayed[name] == pytest.approx(energy / speed, rel=1e-6), name
    load_start, load_end = (meter.replay_time(marks[n].t_ns) for n in ("load_start", "load_end"))
    integrated = timeline.window("gpu0", load_start, load_end)
    assert integrated.mean_power_w == pytest.approx(300.0, rel=0.05)  # watts are kept


def test_replay_returns_only_what_is_due(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    header = {
        "wattlab_timeline": 1,
        "domains": [
            {
                "id": "gpu0",
                "kind": "gpu",
                "meter": "nvml",
                "label": "g",
                "device": "gpu:0",
                "has_counter": True,
            }
        ],
    }
    items = [
        header,
        {"t": 1_000_000_000, "d": "gpu0", "p": 100.0},
        {"t": 1_000_000_000, "d": "gpu0", "e": 0.0},
        {"t": 1_100_000_000, "d": "gpu0", "err": "NVML power read failed"},
        {"t": 60_000_000_000, "d": "gpu0", "p": 120.0},  # a minute later: not due in this test
        {"t": 60_000_000_000, "m": "end"},
    ]
    path.write_text("\n".join(json.dumps(i) for i in items) + "\n")
    meter = ReplayMeter(path, speed=1.0)
    time.sleep(0.15)
    power = meter.read_power()
    assert [(s.power_w, s.missing) for s in power] == [(100.0, False), (None, True)]
    assert meter.read_counters()[0].energy_j == 0.0
    assert power[1].t_ns - power[0].t_ns == 100_000_000  # spacing kept at speed 1
    assert not meter.finished and [m.name for m in meter.marks] == ["end"]


def test_bad_replay_input(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        ReplayMeter(tmp_path / "nope.jsonl")
    not_a_timeline = tmp_path / "x.jsonl"
    not_a_timeline.write_text('{"hello": 1}\n')
    with pytest.raises(ConfigError, match="not a wattlab timeline"):
        ReplayMeter(not_a_timeline)
    with pytest.raises(ConfigError, match="positive"):
        ReplayMeter(not_a_timeline, speed=0)
