"""One session's timeline: every meter's samples and every process's marks, on one clock.

The timeline lives in the runner process. Samplers append samples from their threads; the runner
appends marks it receives from the engine worker (timestamps taken there with
`time.monotonic_ns()`, which is system-wide). Listeners (the spool writer) see every item.

The same items, one JSON object a line, are the *timeline file* format: the spool of a live
session, a recorded trace for tests, and what the replay meter plays back.

    {"wattlab_timeline": 1, "domains": [...], "power_period_s": 0.1, "counter_period_s": 0.5}
    {"t": 123, "d": "gpu0", "p": 81.2, "u": 0.0}          a sample (see Sample.as_dict)
    {"t": 456, "d": "gpu0", "e": 1234.5}                  a counter reading
    {"t": 789, "m": "run_start", "r": "run-id", "x": {}}  a mark
    {"domains": [...]}                                    domains added later
"""

from __future__ import annotations

import bisect
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wattlab.meters.base import Domain, Sample, now_ns
from wattlab.meters.windows import Series, WindowEnergy, window_energy

FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Mark:
    """An instant the engine worker or runner names: load_start, first_token, run_end, ..."""

    t_ns: int
    name: str
    run_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"t": self.t_ns, "m": self.name}
        if self.run_id is not None:
            out["r"] = self.run_id
        if self.data:
            out["x"] = self.data
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Mark:
        return cls(t_ns=int(d["t"]), name=str(d["m"]), run_id=d.get("r"), data=d.get("x") or {})


class _DomainSeries:
    """Append-only readings of one domain (kept sorted by the single sampler thread that feeds it)."""

    __slots__ = ("counter_j", "counter_t", "latest", "missing_t", "power_t", "power_w", "util", "util_t")

    def __init__(self) -> None:
        self.power_t: list[int] = []
        self.power_w: list[float] = []
        self.counter_t: list[int] = []
        self.counter_j: list[float] = []
        self.missing_t: list[int] = []
        self.util_t: list[int] = []
        self.util: list[float] = []
        self.latest: Sample | None = None

    def add(self, s: Sample) -> None:
        if s.error is not None:
            self.missing_t.append(s.t_ns)
            return
        if s.power_w is not None:
            _insort(self.power_t, self.power_w, s.t_ns, s.power_w)
            self.latest = s
        if s.energy_j is not None:
            _insort(self.counter_t, self.counter_j, s.t_ns, s.energy_j)
        if s.util_pct is not None:
            _insort(self.util_t, self.util, s.t_ns, s.util_pct)

    def prune_before(self, t_ns: int) -> None:

        for ts, vs in (
            (self.power_t, self.power_w),
            (self.counter_t, self.counter_j),
            (self.util_t, self.util),
        ):
            # Keep one reading before t_ns so windows starting at t_ns still interpolate.
            i = max(0, bisect.bisect_left(ts, t_ns) - 1)
            del ts[:i]
            del vs[:i]
        i = bisect.bisect_left(self.missing_t, t_ns)
        del self.missing_t[:i]


def _insort(ts: list[int], vs: list[float], t: int, v: float) -> None:
    if not ts or t >= ts[-1]:
        ts.append(t)
        vs.append(v)
        return

    i = bisect.bisect_right(ts, t)
    ts.insert(i, t)
    vs.insert(i, v)


Listener = Callable[[dict[str, Any]], None]


class Timeline:
    """Thread-safe store of samples and marks for one session."""

    def __init__(
        self,
        domains: Iterable[Domain] = (),
        *,
        power_period_s: float = 0.1,
        counter_period_s: float = 0.5,
    ) -> None:
        self.power_period_s = power_period_s
        self.counter_period_s = counter_period_s
        self.domains: dict[str, Domain] = {}
        self.marks: list[Mark] = []
        self._series: dict[str, _DomainSeries] = {}
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        self.add_domains(domains)

    # --- feeding -------------------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def header(self) -> dict[str, Any]:
        return {
            "wattlab_timeline": FORMAT_VERSION,
            "domains": [d.as_dict() for d in self.domains.values()],
            "power_period_s": self.power_period_s,
            "counter_period_s": self.counter_period_s,
        }

    def add_domains(self, domains: Iterable[Domain]) -> None:
        new = [d for d in domains if d.id not in self.domains]
        if not new:
            return
        with self._lock:
            for d in new:
                self.domains[d.id] = d
                self._series[d.id] = _DomainSeries()
        self._emit({"domains": [d.as_dict() for d in new]})

    def add(self, sample: Sample) -> None:
        with self._lock:
            series = self._series.get(sample.domain)
            if series is None:
                return
            series.add(sample)
        self._emit(sample.as_dict())

    def add_many(self, samples: Iterable[Sample]) -> None:
        for s in samples:
            self.add(s)

    def mark(self, name: str, run_id: str | None = None, t_ns: int | None = None, **data: Any) -> Mark:
        m = Mark(t_ns=t_ns if t_ns is not None else now_ns(), name=name, run_id=run_id, data=data)
        with self._lock:
            self.marks.append(m)
        self._emit(m.as_dict())
        return m

    def _emit(self, item: dict[str, Any]) -> None:
        for listener in self._listeners:
            listener(item)

    def prune_before(self, t_ns: int) -> None:
        """Forget readings older than t_ns (they are in the spool); keeps a long session's memory flat."""
        with self._lock:
            for s in self._series.values():
                s.prune_before(t_ns)
            self.marks = [m for m in self.marks if m.t_ns >= t_ns]

    # --- reading -------------------------------------------------------------------------------
    def series(self, domain_id: str) -> Series:
        with self._lock:
            s = self._series[domain_id]
            return Series(
                power_t=list(s.power_t),
                power_w=list(s.power_w),
                counter_t=list(s.counter_t),
                counter_j=list(s.counter_j),
                missing_t=list(s.missing_t),
            )

    def latest(self, domain_id: str) -> Sample | None:
        with self._lock:
            s = self._series.get(domain_id)
            return s.latest if s else None

    def mean_util(self, domain_id: str, t0_ns: int, t1_ns: int) -> float | None:

        with self._lock:
            s = self._series[domain_id]
            lo = bisect.bisect_left(s.util_t, t0_ns)
            hi = bisect.bisect_right(s.util_t, t1_ns)
            vals = s.util[lo:hi]
        return sum(vals) / len(vals) if vals else None

    def window(
        self, domain_id: str, t0_ns: int, t1_ns: int, *, idle_power_w: float | None = None
    ) -> WindowEnergy:
        return window_energy(
            self.domains[domain_id],
            self.series(domain_id),
            t0_ns,
            t1_ns,
            idle_power_w=idle_power_w,
            max_gap_s=max(0.5, 3 * self.power_period_s),
        )

    def find_marks(self, name: str, run_id: str | None = None) -> list[Mark]:
        with self._lock:
            return [m for m in self.marks if m.name == name and (run_id is None or m.run_id == run_id)]

    def span(self) -> tuple[int, int] | None:
        """(first, last) timestamp of any reading or mark."""
        with self._lock:
            ts = [t for s in self._series.values() for t in (s.power_t[:1] + s.power_t[-1:])]
            ts += [m.t_ns for m in self.marks[:1] + self.marks[-1:]]
        return (min(ts), max(ts)) if ts else None


# --- the timeline file ---------------------------------------------------------------------------
def iter_timeline_items(path: Path) -> Iterator[dict[str, Any]]:
    """Items of a timeline file; a truncated last line (a crash mid-write) is skipped."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


def load_timeline(path: str | Path) -> Timeline:
    """Read a timeline file (a spool or a recorded trace) back into a Timeline."""
    path = Path(path)
    timeline: Timeline | None = None
    for item in iter_timeline_items(path):
        if "wattlab_timeline" in item and timeline is not None:
            # A resumed session appends a second header: keep one timeline, add its domains.
            timeline.add_domains(Domain.from_dict(d) for d in item.get("domains", []))
            continue
        if "wattlab_timeline" in item:
            timeline = Timeline(
                [Domain.from_dict(d) for d in item.get("domains", [])],
                power_period_s=float(item.get("power_period_s", 0.1)),
                counter_period_s=float(item.get("counter_period_s", 0.5)),
            )
            continue
        if timeline is None:
            raise ValueError(f"{path} is not a wattlab timeline file (no header line)")
        apply_item(timeline, item)
    if timeline is None:
        raise ValueError(f"{path} is empty: not a wattlab timeline file")
    return timeline


def apply_item(timeline: Timeline, item: dict[str, Any]) -> None:
    if "m" in item:
        mark = Mark.from_dict(item)
        with timeline._lock:
            timeline.marks.append(mark)
    elif "d" in item:
        timeline.add(Sample.from_dict(item))
    elif "domains" in item:
        timeline.add_domains(Domain.from_dict(d) for d in item["domains"])
