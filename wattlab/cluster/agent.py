"""The node side of a cluster sweep: one agent per node, running the ordinary Runner.

The agent is a Ray actor pinned to its node. It holds a `NodeRunner`: the same Runner as a
one-box sweep (meters, sampler threads, timeline, spool, engine worker subprocess), as a session
of its own (`<sweep session>.n<k>`), so its samples and marks share one clock (this node's
`time.monotonic_ns`). Its idle baseline is taken once when the agent starts and its cooldown runs
between the runs it is handed: both per node.

The runner writes its spool on the node (`WATTLAB_HOME` of the node) and never touches a database;
the head pulls the spool's lines in chunks (`pull`, by byte offset) and commits them to its one
DuckDB. A head that dies and restarts asks again from the offsets it holds, so nothing the node
wrote is lost; the agent is a detached actor, so it outlives the head.
"""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import threading
import traceback
from collections.abc import Iterator
from typing import Any

from wattlab import __version__
from wattlab.sessions.result import RunResult
from wattlab.sessions.runner import Runner
from wattlab.sessions.spec import RunSpec, Sweep, parse_sweep

PULL_MAX_BYTES = 4 * 1024 * 1024  # one pull's chunk per file; the head asks again for the rest


def node_facts(engines: list[str] | None = None) -> dict[str, Any]:
    """What this node is: hostname, wattlab version, GPUs by UUID with the driver, engines installed."""
    import platform

    from wattlab.devices import discover_gpus
    from wattlab.engines import status_of

    gpus = [{"index": g.index, "name": g.name, "uuid": g.uuid, "vendor": g.vendor} for g in discover_gpus()]
    facts: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "wattlab": __version__,
        "python": platform.python_version(),
        "gpus": gpus,
        "driver": _nvidia_driver() if gpus else None,
        "wattlab_home": os.environ.get("WATTLAB_HOME"),
    }
    if engines is not None:
        facts["engines"] = {}
        for name in engines:
            try:
                st = status_of(name)
                facts["engines"][name] = {
                    "installed": st.installed,
                    "version": st.version,
                    "reason": st.reason,
                    "fix": st.fix,
                }
            except Exception as exc:  # an engine name this node's wattlab does not know
                facts["engines"][name] = {"installed": False, "reason": str(exc), "fix": None}
    return facts


def _nvidia_driver() -> str | None:
    try:
        from wattlab.devices.nvidia import import_pynvml

        nvml = import_pynvml()
        nvml.nvmlInit()
        try:
            value = nvml.nvmlSystemGetDriverVersion()
        finally:
            nvml.nvmlShutdown()
        return value.decode() if isinstance(value, bytes) else str(value)
    except Exception:
        return None


def node_problems(sweep_text: str, source: str, seqs: list[int]) -> list[dict[str, Any]]:
    """The preflight of the given runs (1-based) as this node sees them: engines installed, models
    found, options and devices. Problems as dicts (text, fix, runs)."""
    from wattlab.sessions.plan import check_sweep

    full = parse_sweep(sweep_text, source)
    sub = Sweep(full.session, [full.runs[s - 1] for s in seqs], full.source, full.text)
    return [
        {"text": p.text, "fix": p.fix, "runs": [seqs[i - 1] for i in runs]} for p, runs in check_sweep(sub)
    ]


class NodeRunner(Runner):
    """A Runner whose runs come from the head one at a time and whose rows go to the head's DuckDB
    through the spool (never to a database on the node)."""

    def __init__(self, sweep: Sweep, *, session_id: str, node_id: str, cluster: dict[str, Any]) -> None:
        from wattlab.paths import data_dir
        from wattlab.sessions.store import Store

        # The node's own store only ever sees recovery of the node's older spools; never written here.
        super().__init__(sweep, store=Store(data_dir() / "node.duckdb"), session_id=session_id, wait=True)
        self.node_id = node_id
        self.cluster = cluster
        self.run_fields = {"node_id": node_id, "hostname": socket.gethostname()}
        self.inbox: queue.Queue[int | None] = queue.Queue()

    def _runs_to_do(self) -> Iterator[tuple[int, RunSpec, int]]:
        while True:
            seq = self.inbox.get()
            if seq is None:
                return
            spec, repeat = self.sweep.runs[seq - 1]
            yield seq, spec, repeat

    def session_row(self, status: str) -> dict[str, Any]:
        row = super().session_row(status)
        row["name"] = f"{row.get('name') or 'sweep'} @ {socket.gethostname()}:{self.node_id[:8]}"
        row["spec_json"]["cluster"] = self.cluster
        return row

    def _commit(self, run: RunResult | None = None, session_row: dict[str, Any] | None = None) -> bool:
        # The head commits: it pulls the spool, which holds every item, so nothing is kept here.
        with self._pending_lock:
            self._pending_items = []
        self._pending_runs = []
        return True


class NodeAgent:
    """The Ray actor (wrapped with ray.remote in cluster/head.py). Methods run on threads of the
    actor's process, so `pull` answers while a run measures."""

    def __init__(
        self, session_id: str, sweep_text: str, source: str, node_id: str, cluster: dict[str, Any]
    ) -> None:
        self.sweep = parse_sweep(sweep_text, source)
        self.runner = NodeRunner(self.sweep, session_id=session_id, node_id=node_id, cluster=cluster)
        self.thread: threading.Thread | None = None
        self.error: str | None = None

    def start(self) -> dict[str, Any]:
        """Start the node's session (meters, idle baseline); returns the node's facts."""
        if self.thread is None:
            self.thread = threading.Thread(target=self._main, name="wattlab-node-runner", daemon=True)
            self.thread.start()
        return {**node_facts(), "pid": os.getpid(), "spool": str(self.runner.spool.dir)}

    def _main(self) -> None:
        try:
            self.runner.run()
        except BaseException as exc:  # reported through state(): the head names the node and the fix
            self.error = f"{type(exc).__name__}: {exc}"
            message, fix = getattr(exc, "message", None), getattr(exc, "fix", None)
            if message:
                self.error = message + (f" (fix: {fix})" if fix else "")
            traceback.print_exc()

    def submit(self, seq: int) -> None:
        self.runner.inbox.put(seq)

    def finish(self) -> None:
        """No more runs: the session ends (cooldown, shutdown, session_end) once the queue drains."""
        self.runner.inbox.put(None)

    def state(self) -> dict[str, Any]:
        alive = self.thread is not None and self.thread.is_alive()
        return {"running": alive, "status": self.runner.status, "error": self.error}

    def pull(self, events_offset: int, timeline_offset: int) -> dict[str, Any]:
        """Whole lines of the node's spool files from the given byte offsets (at most PULL_MAX_BYTES
        each), and whether the runner is still at work."""
        # Read `running` first: once the runner has stopped, every line it wrote is in the files.
        running = self.thread is not None and self.thread.is_alive()
        if running:
            with contextlib.suppress(ValueError):  # closed by the runner's shutdown just now
                self.runner.spool.flush()
        return {
            "events": _chunk(self.runner.spool.events_path, events_offset),
            "timeline": _chunk(self.runner.spool.timeline_path, timeline_offset),
            "running": running,
            "error": self.error,
        }


def _chunk(path: Any, offset: int) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(PULL_MAX_BYTES)
    except OSError:
        return b""
    end = data.rfind(b"\n")
    return data[: end + 1] if end >= 0 else b""
