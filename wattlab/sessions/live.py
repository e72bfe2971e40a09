"""Following a session from its spool: what the console's Live screen and `attach` show.

`LiveTail.poll()` reads whatever complete lines were appended to the spool since the last call
(byte offsets, so polling at 4 Hz costs little) and returns an immutable `LiveSnapshot`. A fresh
tail reads the spool from the beginning, so re-attaching after a dropped SSH link shows the whole
session, and its energy is integrated from the first sample.

Running energy is attributed like the runner does (the devices the current run uses, plus the
host CPU), and each figure carries its method: a counter difference where the domain has one,
else the trapezoid of power readings, `estimated` for modelled power.
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


class _Acc:
    """Per-domain running energy: counter difference when available, else trapezoid of power."""

    __slots__ = (
        "counter_first",
        "counter_last",
        "integral",
        "last_p",
        "last_t",
        "run_counter0",
        "run_integral0",
    )

    def __init__(self) -> None:
        self.counter_first: float | None = None
        self.counter_last: float | None = None
        self.integral = 0.0
        self.last_t: int | None = None
        self.last_p: float | None = None
        self.run_counter0: float | None = None
        self.run_integral0 = 0.0

    def add_power(self, t: int, p: float) -> None:
        if self.last_t is not None and self.last_p is not None and t > self.last_t:
            self.integral += (p + self.last_p) / 2.0 * (t - self.last_t) / NS
        self.last_t, self.last_p = t, p

    def add_counter(self, e: float) -> None:
        if self.counter_first is None:
            self.counter_first = e
        self.counter_last = e

    def start_run(self) -> None:
        self.run_counter0 = self.counter_last
        self.run_integral0 = self.integral

    def session_j(self, counter: bool) -> float | None:
        if counter and self.counter_first is not None and self.counter_last is not None:
            return self.counter_last - self.counter_first
        return self.integral if self.last_t is not None else None

    def run_j(self, counter: bool) -> float | None:
        if counter and self.run_counter0 is not None and self.counter_last is not None:
            return self.counter_last - self.run_counter0
        return self.integral - self.run_integral0 if self.last_t is not None else None


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
        self._progress: deque[tuple[int, int]] = deque(maxlen=20)
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
            if item["m"] == "run_start":
                for acc in self._acc.values():
                    acc.start_run()
            return
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
            acc.add_counter(float(item["e"]))

    def _on_event(self, ev: dict[str, Any]) -> None:
        kind = ev.get("ev")
        if kind == "session_start":
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
            self.current = {
                "seq": ev["seq"],
                "label": ev["label"],
                "run_id": ev["run_id"],
                "row": ev.get("row", {}),
                "started_wall": ev.get("wall"),
            }
            self.run_devices = ["cpu"]
            self._progress.clear()
        elif kind == "run_loaded":
            self.run_devices = ev.get("devices") or ["cpu"]
        elif kind == "progress":
            self._progress.append((int(ev["t"]), int(ev["tokens"])))
        elif kind == "run_end":
            self.results.append(ev["result"])
            self.current = None
        elif kind == "run_skipped":
            self.skipped += 1
        elif kind == "session_end":
            self.status = ev.get("status", "finished")
        from wattlab.sessions.events import describe_event

        text = describe_event(ev)
        if text:
            self.log.append(text)

    # --- the snapshot -----------------------------------------------------------------------------
    def poll(self) -> LiveSnapshot:
        if self.spool is None and self._rotated():
            self.__init__(monitor_file=self.timeline_path)  # type: ignore[misc]  # the monitor rewrote its file
        assert self.timeline_path is not None
        for item in self._new_lines(self.timeline_path, "timeline"):
            self._on_timeline(item)
        if self.events_path is not None:
            for ev in self._new_lines(self.events_path, "events"):
                self._on_event(ev)
        alive = self.spool.runner_alive() if self.spool else True
        status = self.status if self.spool else "monitor"
        if status == "running" and not alive:
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
        ses_j, ses_m = self._energy(run=False)
        gco2e = None
        if ses_j is not None and self.carbon.get("g_per_kwh") is not None:
            gco2e = ses_j / 3.6e6 * self.pue * float(self.carbon["g_per_kwh"])
        tok_s = None
        if len(self._progress) >= 2:
            (ta, na), (tb, nb) = self._progress[0], self._progress[-1]
            tok_s = (nb - na) / ((tb - ta) / NS) if tb > ta else None
        done = len(self.results) + self.skipped
        finished = [r for r in self.results if r.get("duration_s")]
        eta = None
        if finished and self.runs_total:
            per_run = sum(
                float(r.get("duration_s") or 0) + float(r.get("load_s") or 0) for r in finished
            ) / len(finished)
            eta = per_run * max(0, self.runs_total - done)
        return LiveSnapshot(
            session_id=self.spool.session_id if self.spool else "monitor",
            status=status,
            runner_alive=alive,
            elapsed_s=((self.t_last or t0) - t0) / NS,
            runs_total=self.runs_total,
            runs_done=done,
            runs_failed=sum(1 for r in self.results if r.get("status") != "finished"),
            current=self.current,
            eta_s=eta,
            domains=tuple(domains),
            run_energy_j=run_j,
            run_energy_method=run_m,
            session_energy_j=ses_j,
            session_energy_method=ses_m,
            session_gco2e=gco2e,
            carbon={**self.carbon, "pue": self.pue},
            tokens_per_s=tok_s,
            run_tokens=self._progress[-1][1] if self._progress else 0,
            last_result=self.results[-1] if self.results else None,
            results=tuple(self.results),
            log=tuple(self.log),
            idle_w=dict(self.idle_w),
            missing_meters=tuple(
                self.monitor_missing or (self.session.get("meters_json") or {}).get("missing", [])
            ),
        )


def live_sessions(root: Path | None = None) -> list[str]:
    """Sessions whose runner is alive now, newest first."""
    from wattlab.sessions.spool import list_spools

    return [s.session_id for s in reversed(list_spools(root)) if s.runner_alive() and not s.committed]
