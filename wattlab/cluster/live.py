"""The Live screen's view of a cluster sweep: every node's lanes in one chart.

A cluster sweep `S` is one node session per node (`S.n1`, `S.n2`, ...), each mirrored on the head
as an ordinary spool (cluster/head.py). `ClusterTail` keeps one `sessions.live.LiveTail` per mirror
and merges their snapshots: each power domain becomes a lane named `<host:node>/<domain>`, so the
chart shows one lane per node (per GPU where a node has several), runs and energy are summed, the
logs interleaved. Each node's history is in seconds since that node's session started; the lanes are
shifted by the difference of the sessions' start times (wall clock), so they share one time axis.

No Ray here: the console imports this module, and it reads files on the head only.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

from wattlab.paths import data_dir
from wattlab.sessions.live import LiveSnapshot, LiveTail


def cluster_session_of(session_id: str) -> str | None:
    """The cluster sweep a session id belongs to (itself or `S` for a node session `S.nK`)."""
    folder = data_dir() / "cluster" / "sessions"
    for candidate in (session_id, session_id.rpartition(".n")[0]):
        if candidate and (folder / f"{candidate}.json").exists():
            return candidate
    return None


def tail_for(session_id: str) -> Any:
    """A ClusterTail for a cluster sweep or one of its node sessions, else the one-box LiveTail."""
    cluster = cluster_session_of(session_id)
    return ClusterTail(cluster) if cluster else LiveTail.for_session(session_id)


class ClusterTail:
    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.state_path = data_dir() / "cluster" / "sessions" / f"{session_id}.json"
        self.tails: dict[str, tuple[str, LiveTail]] = {}  # node session -> (node label, tail)
        self.runner_started = True
        self.started: dict[str, float] = {}  # node session -> its start (epoch s)

    def _state(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.state_path.read_text()))
        except (OSError, ValueError):
            return {}

    def poll(self) -> LiveSnapshot:
        state = self._state()
        for agent in state.get("agents", []):
            if agent["session_id"] not in self.tails:
                self.tails[agent["session_id"]] = (agent["label"], LiveTail.for_session(agent["session_id"]))
        snaps = [(label, tail.poll()) for label, tail in self.tails.values()]
        for sid, (_, tail) in self.tails.items():
            if sid not in self.started and tail.spool is not None:
                t0 = _started(tail.spool.session())
                if t0 is not None:
                    self.started[sid] = t0
        starts = [self.started.get(sid) for sid in self.tails]
        known = [t for t in starts if t is not None]
        shifts = [(t - min(known)) if (t is not None and known) else 0.0 for t in starts]
        return merge(self.session_id, snaps, state, shifts)


def _started(session: dict[str, Any]) -> float | None:
    """A node session's start (its row's created_at, the node's wall clock), in epoch seconds."""
    try:
        return dt.datetime.fromisoformat(str(session.get("created_at"))).timestamp()
    except ValueError:
        return None


def merge(
    session_id: str,
    snaps: list[tuple[str, LiveSnapshot]],
    state: dict[str, Any],
    shifts: list[float] | None = None,
) -> LiveSnapshot:
    """One snapshot of the whole sweep from each node session's snapshot; `shifts`: seconds each
    node's session started after the first one's (its history moves right by that much)."""
    if not snaps:
        return _empty(session_id, state)
    domains = []
    for (label, snap), shift in zip(snaps, shifts or [0.0] * len(snaps), strict=True):
        for d in snap.domains:
            history = tuple((x + shift, w) for x, w in d.history) if shift else d.history
            domains.append(
                dataclasses.replace(d, id=f"{label}/{d.id}", label=f"{label} {d.label}", history=history)
            )
    results = tuple(r for _, s in snaps for r in s.results)
    running = [s for _, s in snaps if s.current]

    def total(name: str) -> float | None:
        values = [getattr(s, name) for _, s in snaps if getattr(s, name) is not None]
        return sum(values) if values else None

    head_status = state.get("status") or "running"
    statuses = {s.status for _, s in snaps}
    status = "running" if head_status == "running" and statuses & {"running", "queued"} else head_status
    first = snaps[0][1]
    return dataclasses.replace(
        first,
        session_id=session_id,
        status=status,
        runner_alive=any(s.runner_alive for _, s in snaps),
        elapsed_s=max(s.elapsed_s for _, s in snaps),
        runs_total=max(first.runs_total, len(results)),
        runs_done=sum(s.runs_done for _, s in snaps),
        runs_failed=sum(s.runs_failed for _, s in snaps),
        current=running[0].current if running else None,
        eta_s=None,
        domains=tuple(domains),
        run_energy_j=total("run_energy_j"),
        session_energy_j=total("session_energy_j"),
        session_gco2e=total("session_gco2e"),
        tokens_per_s=total("tokens_per_s"),
        run_tokens=sum(s.run_tokens for _, s in snaps),
        results=results,
        log=tuple(f"[{label}] {line}" for label, s in snaps for line in s.log[-50:]),
        idle_w={f"{label}/{k}": v for label, s in snaps for k, v in s.idle_w.items()},
    )


def _empty(session_id: str, state: dict[str, Any]) -> LiveSnapshot:
    return LiveSnapshot(
        session_id=session_id,
        status=state.get("status") or "running",
        runner_alive=True,
        elapsed_s=0.0,
        runs_total=0,
        runs_done=0,
        runs_failed=0,
        current=None,
        eta_s=None,
        domains=(),
        run_energy_j=None,
        run_energy_method=None,
        session_energy_j=None,
        session_energy_method=None,
        session_gco2e=None,
        carbon={},
        tokens_per_s=None,
        run_tokens=0,
        last_result=None,
        results=(),
        log=(),
    )
