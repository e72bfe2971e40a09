"""The spool: write-ahead files of a live session, so nothing measured is ever lost.

    <data dir>/spool/<session_id>/
        runner.json      who is writing (pid, process start time, host): tells live from dead
        session.json     the session's settings
        timeline.jsonl   every sample and mark (the timeline file format, see meters/timeline.py)
        events.jsonl     runner events: session_start, run_start, run_end (full results), ...
        worker-N.log     an engine worker's stderr (the reason when it crashes)
        committed        present once every item is in DuckDB

Lines are written and flushed one by one, so a kill -9 loses at most a partly written last line
(readers skip it). When the disk is full, lines wait in memory and are retried, and the state is
reported instead of crashing the run.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wattlab.paths import spool_root

COMMITTED = "committed"
RUNNER_DONE = "runner-done"
MAX_PENDING_LINES = 2_000_000  # ~200 MB of lines held while the disk is full, then oldest samples go


class SpoolFile:
    """An append-only JSON-lines file that survives a full disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._pending: deque[str] = deque()
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.error: str | None = None
        self.dropped = 0

    def write(self, item: dict[str, Any]) -> None:
        line = json.dumps(item, separators=(",", ":"), default=str) + "\n"
        with self._lock:
            self._pending.append(line)
            self._drain()

    def _drain(self) -> None:
        try:
            while self._pending:
                self._file.write(self._pending[0])
                self._pending.popleft()
            self._file.flush()
            self.error = None
        except OSError as exc:
            # Disk full or I/O error: keep the lines, report, retry on the next write.
            self.error = f"{self.path.name}: {exc.strerror or exc}"
            while len(self._pending) > MAX_PENDING_LINES:
                self._pending.popleft()
                self.dropped += 1

    def flush(self) -> None:
        with self._lock:
            self._drain()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def close(self) -> None:
        with self._lock:
            self._drain()
            try:
                self._file.close()
            except OSError as exc:
                self.error = str(exc)


def process_identity(pid: int | None = None) -> dict[str, Any]:
    """pid plus process start time: a pid alone may be reused after a reboot or crash."""
    import psutil

    pid = pid or os.getpid()
    try:
        created = psutil.Process(pid).create_time()
    except psutil.Error:
        created = None
    return {"pid": pid, "create_time": created, "host": socket.gethostname()}


def is_alive(identity: dict[str, Any]) -> bool:
    import psutil

    if identity.get("host") not in (None, socket.gethostname()):
        return True  # another machine's spool on a shared disk: never treat it as dead
    try:
        proc = psutil.Process(int(identity["pid"]))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        created = identity.get("create_time")
        return created is None or abs(proc.create_time() - float(created)) < 1.0
    except (psutil.Error, KeyError, ValueError, TypeError):
        return False


class Spool:
    """The spool directory of one session."""

    def __init__(self, session_id: str, root: Path | None = None) -> None:
        self.session_id = session_id
        self.dir = (root or spool_root()) / session_id
        self.timeline_path = self.dir / "timeline.jsonl"
        self.events_path = self.dir / "events.jsonl"
        self._timeline: SpoolFile | None = None
        self._events: SpoolFile | None = None

    # --- writing (the runner) ---------------------------------------------------------------------
    def create(self, session: dict[str, Any]) -> None:
        """Create the directory with the runner's identity first, so recovery never sees it ownerless."""
        tmp = self.dir.with_name(self.dir.name + ".creating")
        tmp.mkdir(parents=True, exist_ok=True)
        (tmp / "runner.json").write_text(json.dumps(process_identity()))
        (tmp / "session.json").write_text(json.dumps(session, default=str, indent=1))
        if self.dir.exists():  # resuming: keep the old files, take ownership
            (self.dir / "runner.json").write_text((tmp / "runner.json").read_text())
            (self.dir / COMMITTED).unlink(missing_ok=True)
            (self.dir / RUNNER_DONE).unlink(missing_ok=True)
            for f in tmp.iterdir():
                f.unlink()
            tmp.rmdir()
        else:
            tmp.rename(self.dir)
        self.open()

    def open(self) -> None:
        self._timeline = SpoolFile(self.timeline_path)
        self._events = SpoolFile(self.events_path)

    def timeline_item(self, item: dict[str, Any]) -> None:
        assert self._timeline is not None
        self._timeline.write(item)

    def event(self, kind: str, **data: Any) -> dict[str, Any]:
        assert self._events is not None
        item = {"ev": kind, "wall": time.time(), **data}
        self._events.write(item)
        return item

    @property
    def error(self) -> str | None:
        """A write problem (disk full) if one is current."""
        for f in (self._timeline, self._events):
            if f is not None and f.error:
                return f.error
        return None

    def flush(self) -> None:
        for f in (self._timeline, self._events):
            if f is not None:
                f.flush()

    def close(self) -> None:
        for f in (self._timeline, self._events):
            if f is not None:
                f.close()

    def mark_committed(self) -> None:
        (self.dir / COMMITTED).write_text(str(time.time()))

    def worker_log(self, n: int) -> Path:
        return self.dir / f"worker-{n}.log"

    # --- reading (recovery, attach, the console) --------------------------------------------------
    @property
    def committed(self) -> bool:
        return (self.dir / COMMITTED).exists()

    def runner_identity(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.dir / "runner.json").read_text())
        except (OSError, ValueError):
            return None

    def runner_alive(self) -> bool:
        """The writer is still at work (its process lives and it has not said it is done)."""
        if (self.dir / RUNNER_DONE).exists():
            return False
        ident = self.runner_identity()
        return bool(ident) and is_alive(ident)  # type: ignore[arg-type]

    def mark_runner_done(self) -> None:
        """Said by a runner that stopped but could not commit everything (a locked database): its
        process may live on (a notebook, the console), so the next command must not wait for it."""
        (self.dir / RUNNER_DONE).write_text(str(time.time()))

    def session(self) -> dict[str, Any]:
        try:
            return json.loads((self.dir / "session.json").read_text())
        except (OSError, ValueError):
            return {"session_id": self.session_id}

    def events(self) -> Iterator[dict[str, Any]]:
        yield from read_jsonl(self.events_path)


def read_jsonl(path: Path, start: int = 0) -> Iterator[dict[str, Any]]:
    """Items of a JSON-lines file from byte offset `start`; a torn last line is skipped."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError:
        return
    with f:
        f.seek(start)
        for raw in f:
            if not raw.endswith(b"\n"):
                break  # being written right now, or torn by a crash
            try:
                yield json.loads(raw)
            except ValueError:
                continue


def list_spools(root: Path | None = None) -> list[Spool]:
    base = root or spool_root()
    if not base.exists():
        return []
    return [
        Spool(p.name, base) for p in sorted(base.iterdir()) if p.is_dir() and not p.name.endswith(".creating")
    ]
