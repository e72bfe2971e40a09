"""Following a session from its spool: what the console's Live screen shows (`wattlab attach`
prints the same spool's events as lines, in cli_views.py).

`LiveTail.poll()` reads whatever complete lines were appended to the spool since the last call
(byte offsets, so polling at 4 Hz costs little) and returns an immutable `LiveSnapshot`. A fresh
tail reads the spool from the beginning, so re-attaching after a dropped SSH link shows the whole
session, and its energy is integrated from the first sample.

Running energy is attributed like the runner does (the devices the current run uses, plus the
host CPU), and each figure carries its method: a counter difference where the domain has one,
else the trapezoid of power readings, `estimated` for modelled power.

The figures a user watches must be trustworthy while they move:
- run energy starts at the runner's `run_start` event (load and warmup included, on the samples'
  clock), is interpolated at that instant, never decreases within the run, and restarts with the next;
- speed is a windowed rate of committed tokens: a token count that restarts (warmup, then the
  measured window) starts a new segment instead of reading as tokens going backwards, so it is
  never negative, and it falls toward 0 when tokens stop coming;
- the ETA comes from measured progress: tokens done / tokens planned in the measured window at
  its own pace, and the measured length of the runs done so far for the runs still to come.
Timeline items and events are consumed in time order (events carry `t` on the samples' clock), so a
fresh tail of a whole spool computes what a tail that followed it live did.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wattlab.meters.base import Domain, weakest_method
from wattlab.sessions.spool import Spool

NS = 1_000_000_000
HISTORY_S = 120.0
SPEED_WINDOW_S = 5.0  # tokens/s is the rate over about this long
STALL_S = 1.0  # no new tokens for this long: the rate is taken up to now, so it falls toward 0


@dataclass(frozen=True)
class DomainLive:
    id: str
    label: str
    kind: str
    method: str
    power_w: float | None
    util_pct: float | None
    mem_used_mib: float | None
    clock_mhz: float | None
    temp_c: float | None
    history: tuple[tuple[float, float], ...]  # (seconds since session start, W), last HISTORY_S
    missing: int  # failed readings so far


@dataclass(frozen=True)
class LiveSnapshot:
    session_id: str
    status: str  # running | finished | interrupted | failed | stale (runner gone, not ended)
    runner_alive: bool
    elapsed_s: float
    runs_total: int
    runs_done: int
    runs_failed: int
    current: dict[str, Any] | None  # the run in progress: seq, label, settings row
    eta_s: float | None
    domains: tuple[DomainLive, ...]
    run_energy_j: float | None
    run_energy_method: str | None
    session_energy_j: float | None
    session_energy_method: str | None
    session_gco2e: float | None
    carbon: dict[str, Any]
    tokens_per_s: float | None
    run_tokens: int
    last_result: dict[str, Any] | None
    results: tuple[dict[str, Any], ...]
    log: tuple[str, ...]
    idle_w: dict[str, float] = field(default_factory=dict)
    spool_error: str | None = None
    missing_meters: tuple[dict[str, Any], ...] = ()


def _value_at(points: deque[tuple[int, float]], t: int) -> float:
    """A cumulative value at t, linearly interpolated between the recent points around it (the
    oldest point kept when t is older still)."""
    prev = points[0]
    if t <= prev[0]:
        return prev[1]
    for point in points:
        if point[0] >= t:  # prev[0] < t <= point[0]
            return prev[1] + (point[1] - prev[1]) * (t - prev[0]) / (point[0] - prev[0])
        prev = point
    return prev[1]


class _Acc:
    """Per-domain running energy: counter difference when available, else trapezoid of power.

    A run starts at an instant `run_t0`; the cumulative energy at that instant is interpolated
    between the readings around it: from recent history when readings already passed it, else
    when the first reading past it arrives (until then the run's energy is 0).
    """

    __slots__ = ("counter_first", "counter_hist", "hist", "integral", "last_p", "run_c0", "run_i0", "run_t0")

    KEEP = 256  # recent cumulative points kept to place a run start that is read late

    def __init__(self) -> None:
        self.counter_first: float | None = None
        self.counter_hist: deque[tuple[int, float]] = deque(maxlen=self.KEEP)  # (t, counter J)
        self.hist: deque[tuple[int, float]] = deque(maxlen=self.KEEP)  # (t, integral of power J)
        self.integral = 0.0
        self.last_p: float | None = None
        self.run_t0: int | None = None
        self.run_i0: float | None = None  # cumulative integral at the run's start
        self.run_c0: float | None = None  # counter at the run's start

    @property
    def last_t(self) -> int | None:
        return self.hist[-1][0] if self.hist else None

    @property
    def counter_last(self) -> float | None:
        return self.counter_hist[-1][1] if self.counter_hist else None

    def add_power(self, t: int, p: float) -> None:
        last_t = self.last_t
        if last_t is not None and t <= last_t:
            return  # a late or repeated reading: the integral has moved past it
        if last_t is not None and self.last_p is not None:
            self.integral += (p + self.last_p) / 2.0 * (t - last_t) / NS
        self.hist.append((t, self.integral))
        self.last_p = p
        if self.run_t0 is not None and self.run_i0 is None and t >= self.run_t0:
            self.run_i0 = _value_at(self.hist, self.run_t0)

    def add_counter(self, t: int, e: float) -> None:
        if self.counter_hist and t <= self.counter_hist[-1][0]:
            return
        if self.counter_first is None:
            self.counter_first = e
        self.counter_hist.append((t, e))
        if self.run_t0 is not None and self.run_c0 is None and t >= self.run_t0:
            self.run_c0 = _value_at(self.counter_hist, self.run_t0)

    def start_run(self, t0: int | None) -> None:
        """A run starts at t0 (None: now, for spools from before events carried their time)."""
        if t0 is None:  # the start is the latest reading (-1: the first one to come)
            t0 = max((h[-1][0] for h in (self.hist, self.counter_hist) if h), default=-1)
        self.run_t0 = t0
        self.run_i0 = self.run_c0 = None
        if self.hist and self.hist[-1][0] >= t0:
            self.run_i0 = _value_at(self.hist, t0)
        if self.counter_hist and self.counter_hist[-1][0] >= t0:
            self.run_c0 = _value_at(self.counter_hist, t0)

    def session_j(self, counter: bool) -> float | None:
        if counter and self.counter_first is not None and self.counter_last is not None:
            return self.counter_last - self.counter_first
        return self.integral if self.hist else None

    def run_j(self, counter: bool) -> float | None:
        """Energy since the run's start, J; 0 until the first reading past the start arrives."""
        if counter and self.counter_last is not None:
            return 0.0 if self.run_c0 is None else max(0.0, self.counter_last - self.run_c0)
        if not self.hist:
            return None
        return 0.0 if self.run_i0 is None else max(0.0, self.integral - self.run_i0)


class LiveTail:
    """Follows a session spool, or (with `monitor_file`) a power monitor's timeline file alone."""

    def __init__(self, spool: Spool | None = None, *, monitor_file: Path | None = None) -> None:
        if spool is None and monitor_file is None:
            raise ValueError("LiveTail needs a spool or a monitor file")
        self.spool = spool
        self.timeline_path = spool.timeline_path if spool else monitor_file
        self.events_path = spool.events_path if spool else None
        self._offsets = {"timeline": 0, "events": 0}
        self.domains: dict[str, Domain] = {}
        self._acc: dict[str, _Acc] = {}
        self._latest: dict[str, dict[str, Any]] = {}
        self._history: dict[str, deque[tuple[int, float]]] = {}
        self._missing: dict[str, int] = {}
        self.t_first: int | None = None
        self.t_last: int | None = None
        self.session: dict[str, Any] = spool.session() if spool else {"session_id": "monitor"}
        self.monitor_missing: list[dict[str, Any]] = []
        self.status = "running"
        self.runs_total = int(self.session.get("runs_planned") or 0)
        self.results: list[dict[str, Any]] = []
        self.current: dict[str, Any] | None = None
        self.run_devices: list[str] = ["cpu"]
        self.skipped = 0
        self.t_now: int | None = None  # the latest instant seen in either file (samples' clock)
        self._attempt_runs = 0  # runs ended since the last session_start (a resumed spool has more)
        self._run_t0: int | None = None  # the current run's start
        self._last_start_t: int | None = None
        self._spans: list[float] = []  # seconds from one run's start to the next one's (this attempt)
        self._last_span: float | None = None  # the last ended run's start -> end, s
        self._run_hw = 0.0  # the run energy shown so far: it never goes down within a run
        self._committed = 0  # tokens generated in the current run, all engine windows
        self._segment: tuple[Any, Any] | None = None  # (window, window start) of the last progress
        self._segment_tokens = 0
        self._speed_pts: deque[tuple[int, int]] = deque()  # (t, committed) over ~SPEED_WINDOW_S
        self._measured: tuple[int, int, int] | None = None  # measured window: (start t, t, tokens)
        self.log: deque[str] = deque(maxlen=200)
        self.idle_w: dict[str, float] = {}
        self.carbon: dict[str, Any] = {}
        self.pue = 1.0

    @classmethod
    def for_session(cls, session_id: str, root: Path | None = None) -> LiveTail:
        return cls(Spool(session_id, root))

    def _new_lines(self, path: Path, key: str) -> list[dict[str, Any]]:
        try:
            with open(path, "rb") as f:
                f.seek(self._offsets[key])
                data = f.read()
        except OSError:
            return []
        end = data.rfind(b"\n") + 1  # leave a partly written last line for the next poll
        self._offsets[key] += end
        items = []
        for line in data[:end].splitlines():
            try:
                items.append(json.loads(line))
            except ValueError:
                continue
        return items

    # --- consuming ------------------------------------------------------------------------------
    def _on_timeline(self, item: dict[str, Any]) -> None:
        if "wattlab_timeline" in item:
            self.monitor_missing = item.get("missing", [])
        if "domains" in item and "t" not in item:
            for d in item["domains"]:
                dom = Domain.from_dict(d)
                self.domains[dom.id] = dom
                self._acc.setdefault(dom.id, _Acc())
                self._history.setdefault(dom.id, deque())
                self._missing.setdefault(dom.id, 0)
            return
        t = item.get("t")
        if t is None:
            return
        self.t_first = t if self.t_first is None else min(self.t_first, t)
        self.t_last = t if self.t_last is None else max(self.t_last, t)
        if "m" in item:
            return  # marks are the engine's windows; the run's start comes with its event
        did = item.get("d")
        if did not in self._acc:
            return
        if "err" in item:
            self._missing[did] += 1
            return
        acc = self._acc[did]
        if "p" in item:
            acc.add_power(t, float(item["p"]))
            # Telemetry comes with every few power readings only: keep the latest of each field.
            self._latest[did] = {**self._latest.get(did, {}), **item}
            hist = self._history[did]
            hist.append((t, float(item["p"])))
            while hist and t - hist[0][0] > HISTORY_S * NS:
                hist.popleft()
        if "e" in item:
            acc.add_counter(t, float(item["e"]))

    def _on_event(self, ev: dict[str, Any]) -> None:
        kind = ev.get("ev")
        if isinstance(ev.get("t"), int):
            self.t_now = ev["t"] if self.t_now is None else max(self.t_now, ev["t"])
        if kind == "session_start":
            self._attempt_runs = self.skipped = 0
            self._spans, self._last_start_t, self._last_span = [], None, None
            self.session.update(ev.get("session", {}))
            self.runs_total = int(self.session.get("runs_planned") or self.runs_total)
            self.carbon = self.session.get("carbon_json") or {}
            self.pue = float(self.carbon.get("pue") or 1.0)
        elif kind == "session_update":
            fields = ev.get("fields", {})
            self.session.update(fields)
            self.carbon = self.session.get("carbon_json") or self.carbon
            self.pue = float(self.carbon.get("pue") or self.pue)
        elif kind == "idle":
            self.idle_w = ev.get("idle_w", {})
        elif kind == "run_start":
            self._start_run(ev)
        elif kind == "run_loaded":
            self.run_devices = ev.get("devices") or ["cpu"]
        elif kind == "progress":
            self._on_progress(ev)
        elif kind == "run_end":
            self.results.append(ev["result"])
            self._attempt_runs += 1
            if isinstance(ev.get("t"), int) and self._run_t0 is not None:
                self._last_span = (ev["t"] - self._run_t0) / NS
            self.current = None
        elif kind == "run_skipped":
            self.skipped += 1
        elif kind == "session_end":
            self.status = ev.get("status", "finished")
        elif kind in ("queued", "devices_locked"):  # waiting for another session's devices, then not
            self.status = "queued" if kind == "queued" else "running"
        from wattlab.sessions.events import describe_event

        text = describe_event(ev)
        if text:
            self.log.append(text)

    def _start_run(self, ev: dict[str, Any]) -> None:
        t0 = ev.get("t") if isinstance(ev.get("t"), int) else None
        self.current = {
            "seq": ev["seq"],
            "label": ev["label"],
            "run_id": ev["run_id"],
            "row": ev.get("row", {}),
            "started_wall": ev.get("wall"),
        }
        self.run_devices = ["cpu"]
        for acc in self._acc.values():
            acc.start_run(t0)
        self._run_hw = 0.0
        self._committed = self._segment_tokens = 0
        self._segment = None
        self._speed_pts.clear()
        self._measured = None
        if t0 is not None and self._last_start_t is not None:
            self._spans.append((t0 - self._last_start_t) / NS)
        self._run_t0 = self._last_start_t = t0

    def _on_progress(self, ev: dict[str, Any]) -> None:
        """Output tokens so far in one engine window; a new window (or a count that restarts)
        is a new segment, so the run's committed tokens only ever grow."""
        t, n = int(ev["t"]), int(ev["tokens"])
        window = ev.get("window")
        key = (window, ev.get("window_t0"))
        if key != self._segment or n < self._segment_tokens:
            self._segment, self._segment_tokens = key, 0
            if window in (None, "run"):
                self._measured = None
        self._committed += n - self._segment_tokens
        self._segment_tokens = n
        if window in (None, "run"):  # the measured window (older spools do not name it)
            start = self._measured[0] if self._measured else ev.get("window_t0")
            self._measured = (int(start) if start is not None else t, t, n)
        if not self._speed_pts or t > self._speed_pts[-1][0]:
            self._speed_pts.append((t, self._committed))
        elif t == self._speed_pts[-1][0]:
            self._speed_pts[-1] = (t, self._committed)
        # Keep one point older than the window, so the rate always spans it.
        while len(self._speed_pts) > 2 and t - self._speed_pts[1][0] >= SPEED_WINDOW_S * NS:
            self._speed_pts.popleft()

    @property
    def runner_started(self) -> bool:
        """The session's runner has written its identity (False while a launch is still starting;
        always True for the box monitor)."""
        return self.spool is None or self.spool.runner_identity() is not None

    # --- the snapshot -----------------------------------------------------------------------------
    def poll(self) -> LiveSnapshot:
        if self.spool is None and self._rotated():
            self.__init__(monitor_file=self.timeline_path)  # type: ignore[misc]  # the monitor rewrote its file
        assert self.timeline_path is not None
        items = self._new_lines(self.timeline_path, "timeline")
        events = self._new_lines(self.events_path, "events") if self.events_path is not None else []
        for kind, item in _in_time_order(items, events):
            if kind == "timeline":
                self._on_timeline(item)
            else:
                self._on_event(item)
        alive = self.spool.runner_alive() if self.spool else True
        status = self.status if self.spool else "monitor"
        if status in ("running", "queued") and not alive:
            status = "stale"
        return self._snapshot(status, alive)

    def _rotated(self) -> bool:
        try:
            return (
                self.timeline_path is not None
                and self.timeline_path.stat().st_size < self._offsets["timeline"]
            )
        except OSError:
            return False

    def _attributed(self) -> list[Domain]:
        from wattlab.sessions.figures import attributed_domains

        return attributed_domains(self.domains.values(), self.run_devices)

    def _energy(self, run: bool) -> tuple[float | None, str | None]:
        doms = self._attributed() if run else [d for d in self.domains.values() if d.parent is None]
        values, methods = [], []
        for d in doms:
            acc = self._acc[d.id]
            v = acc.run_j(d.has_counter) if run else acc.session_j(d.has_counter)
            if v is None:
                return None, None
            values.append(v)
            methods.append(
                d.method
                if (d.has_counter and acc.counter_last is not None) or not d.has_counter
                else "integrated"
            )
        if not values:
            return None, None
        return sum(values), weakest_method(methods)

    def _snapshot(self, status: str, alive: bool) -> LiveSnapshot:
        t0 = self.t_first or 0
        domains = []
        for d in self.domains.values():
            s = self._latest.get(d.id, {})
            domains.append(
                DomainLive(
                    id=d.id,
                    label=d.label,
                    kind=d.kind,
                    method=d.method,
                    power_w=s.get("p"),
                    util_pct=s.get("u"),
                    mem_used_mib=s.get("mem"),
                    clock_mhz=s.get("c"),
                    temp_c=s.get("tc"),
                    history=tuple(((t - t0) / NS, p) for t, p in self._history[d.id]),
                    missing=self._missing[d.id],
                )
            )
        run_j, run_m = self._energy(run=True) if self.current else (None, None)
        if run_j is not None:
            # A domain joining the sum (the run's devices become known) or its counter starting to
            # read mid-run must not make the shown energy go back down.
            run_j = self._run_hw = max(self._run_hw, run_j)
        ses_j, ses_m = self._energy(run=False)
        gco2e = None
        if ses_j is not None and self.carbon.get("g_per_kwh") is not None:
            gco2e = ses_j / 3.6e6 * self.pue * float(self.carbon["g_per_kwh"])
        now = max(self.t_last or 0, self.t_now or 0)
        tok_s = self._speed(now) if self.current else None
        done = self._attempt_runs + self.skipped
        return LiveSnapshot(
            session_id=self.spool.session_id if self.spool else "monitor",
            status=status,
            runner_alive=alive,
            elapsed_s=((self.t_last or t0) - t0) / NS,
            runs_total=self.runs_total,
            runs_done=done,
            runs_failed=sum(1 for r in self.results if r.get("status") != "finished"),
            current=self.current,
            eta_s=self._eta(now),
            domains=tuple(domains),
            run_energy_j=run_j,
            run_energy_method=run_m,
            session_energy_j=ses_j,
            session_energy_method=ses_m,
            session_gco2e=gco2e,
            carbon={**self.carbon, "pue": self.pue},
            tokens_per_s=tok_s,
            run_tokens=self._committed if self.current else 0,
            last_result=self.results[-1] if self.results else None,
            results=tuple(self.results),
            log=tuple(self.log),
            idle_w=dict(self.idle_w),
            missing_meters=tuple(
                self.monitor_missing or (self.session.get("meters_json") or {}).get("missing", [])
            ),
        )

    def _speed(self, now: int) -> float | None:
        """Committed tokens per second over the last ~SPEED_WINDOW_S; None before two points."""
        if len(self._speed_pts) < 2:
            return None
        (t_a, n_a), (t_b, n_b) = self._speed_pts[0], self._speed_pts[-1]
        end = now if now - t_b > STALL_S * NS else t_b  # stalled: the rate falls toward 0
        return (n_b - n_a) / ((end - t_a) / NS) if end > t_a else None

    def _planned_tokens(self) -> int | None:
        row = (self.current or {}).get("row") or {}
        try:
            planned = int(row["requests"]) * int(row["output_tokens"])
        except (KeyError, TypeError, ValueError):
            return None
        return planned if planned > 0 else None

    def _eta(self, now: int) -> float | None:
        """Seconds until the session ends, from measured progress; None until there is some.

        The current run: its measured window's tokens left at the pace measured so far (falls
        linearly at a constant pace). Each run still to come: the measured start-to-start time of
        the runs done in this attempt (the current run's own projection while it is the first).
        """
        if self.status != "running":
            return None
        todo = max(0, self.runs_total - self.skipped - self._attempt_runs)
        spans = self._spans or ([self._last_span] if self._last_span else [])
        per_run = sum(spans) / len(spans) if spans else None
        if not self.current:
            if todo == 0:
                return 0.0
            return per_run * todo if per_run is not None else None
        left_in_run: float | None = None
        planned = self._planned_tokens()
        if self._measured and planned and self._measured[2] > 0 and self._measured[1] > self._measured[0]:
            w0, t, n = self._measured
            pace = n / ((t - w0) / NS)  # measured tokens per second
            left_in_run = max(0.0, (planned - n) / pace - (now - t) / NS)
            if per_run is None and self._run_t0 is not None:
                # This run's length as projected at its last progress: constant at a constant pace.
                per_run = (t - self._run_t0) / NS + (planned - n) / pace
        elif per_run is not None and self._run_t0 is not None:
            left_in_run = max(0.0, per_run - (now - self._run_t0) / NS)
        if left_in_run is None or per_run is None:
            return None
        return left_in_run + per_run * max(0, todo - 1)


def _in_time_order(
    items: list[dict[str, Any]], events: list[dict[str, Any]]
) -> list[tuple[str, dict[str, Any]]]:
    """Timeline items and events merged by their time on the samples' clock. Each file keeps its
    own order; an event without a time (older spools, settings events) follows the one before it."""
    out: list[tuple[str, dict[str, Any]]] = []
    i = 0
    key = -1
    for ev in events:
        if isinstance(ev.get("t"), int):
            key = ev["t"]
        while i < len(items) and items[i].get("t", -1) <= key:
            out.append(("timeline", items[i]))
            i += 1
        out.append(("events", ev))
    out.extend(("timeline", item) for item in items[i:])
    return out


def live_sessions(root: Path | None = None) -> list[str]:
    """Sessions whose runner is alive now, newest first."""
    from wattlab.sessions.spool import list_spools

    # committed first: a committed spool needs no process check
    return [s.session_id for s in reversed(list_spools(root)) if not s.committed and s.runner_alive()]
