"""Plays a recorded timeline file back as if its meters were live: for tests and demos.

The file is the timeline format of `wattlab.meters.timeline` (a spool or a recorded trace). The
replay clock starts when the meter opens: a sample recorded `dt` after the file's first reading is
due `dt / speed` after opening, and is returned with that re-based timestamp. `read_power()` gives
the due power readings (and failed readings, still marked missing), `read_counters()` the due
counter readings; the marks are available as `marks` with `replay_time()` to re-base them.

Acceleration (`speed` > 1) compresses time and keeps watts: a stretch that drew P W for t s
replays as P W for t / speed s. To keep the timeline physical, counter readings are divided by
`speed` as well, so every window's energy, counter or integrated, is the recorded energy / speed
and both methods still agree. Multiply by `speed` to get the recorded joules back.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections import deque
from pathlib import Path
from typing import Any, ClassVar

from wattlab.errors import ConfigError
from wattlab.meters.base import Domain, Meter, Probe, Sample, now_ns
from wattlab.meters.timeline import Mark, iter_timeline_items


@functools.cache
def _probe_default() -> Probe:
    return Probe("replay", True, "plays a recorded timeline file back (needs a file: --replay PATH)")


class ReplayMeter(Meter):
    """The domains and readings of a recorded timeline file, replayed in real or accelerated time."""

    name: ClassVar[str] = "replay"
    HAS_COUNTERS: ClassVar[bool] = True

    def __init__(self, path: str | Path, speed: float = 1.0) -> None:
        if not speed > 0:
            raise ConfigError(f"replay speed must be positive, got {speed}", fix="e.g. --replay-speed 10")
        self.path = Path(path)
        self.speed = float(speed)
        if not self.path.is_file():
            raise ConfigError(
                f"replay file {self.path} does not exist", fix="record one, or give the right path"
            )
        domains: dict[str, Domain] = {}
        power: list[Sample] = []
        counters: list[Sample] = []
        self.marks: list[Mark] = []
        header_seen = False
        for item in iter_timeline_items(self.path):
            if "wattlab_timeline" in item:
                header_seen = True
                self._add_domains(domains, item.get("domains", []))
            elif "d" in item:  # a sample (checked before marks: a sample's "m" is memory used)
                sample = Sample.from_dict(item)
                (counters if sample.energy_j is not None else power).append(sample)
            elif "m" in item:
                self.marks.append(Mark.from_dict(item))
            elif "domains" in item:
                self._add_domains(domains, item["domains"])
        if not header_seen:
            raise ConfigError(
                f"{self.path} is not a wattlab timeline file (no header line)",
                fix="record a timeline with wattlab (a session spool or benchmarks/record_gpu_trace.py)",
            )
        readings = power + counters
        if not readings:
            raise ConfigError(f"{self.path} holds no readings to replay", fix="record a longer timeline")
        self.domains = tuple(domains.values())
        known = set(domains)
        self._t_first = min(s.t_ns for s in readings)
        self._power = deque(sorted((s for s in power if s.domain in known), key=lambda s: s.t_ns))
        self._counters = deque(sorted((s for s in counters if s.domain in known), key=lambda s: s.t_ns))
        self._lock = threading.Lock()
        self._t_open = now_ns()

    def _add_domains(self, domains: dict[str, Domain], items: list[dict[str, Any]]) -> None:
        for d in items:
            domain = Domain.from_dict(d)
            label = f"{domain.label} [replay of {self.path.name}]"
            domains.setdefault(domain.id, dataclasses.replace(domain, meter=self.name, label=label))

    @classmethod
    def probe(cls) -> Probe:
        return _probe_default()

    def replay_time(self, recorded_t_ns: int) -> int:
        """Where a recorded instant (a reading's or a mark's) falls on the replay clock (ns)."""
        return self._t_open + round((recorded_t_ns - self._t_first) / self.speed)

    @property
    def finished(self) -> bool:
        with self._lock:
            return not self._power and not self._counters

    def _due(self, queue: deque[Sample]) -> list[Sample]:
        now = now_ns()
        out = []
        with self._lock:
            while queue and self.replay_time(queue[0].t_ns) <= now:
                s = queue.popleft()
                t = self.replay_time(s.t_ns)
                energy = s.energy_j / self.speed if s.energy_j is not None else None
                out.append(dataclasses.replace(s, t_ns=t, energy_j=energy))
        return out

    def read_power(self) -> list[Sample]:
        return self._due(self._power)

    def read_counters(self) -> list[Sample]:
        return self._due(self._counters)
