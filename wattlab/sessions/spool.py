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
reported instead of crashing the run. Small whole files (runner.json, the markers) are written to a
temporary file, fsynced and renamed into place, so a full disk or a crash never leaves a half-written
one; a `committed` marker that is empty or unreadable (an older version's crash) does not count.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wattlab.errors import StoreError
from wattlab.paths import spool_root

COMMITTED = "committed"
RUNNER_DONE = "runner-done"
MAX_PENDING_LINES = 2_000_000  # ~200 MB of lines held while the disk is full, then oldest samples go


def disk_error(exc: OSError, path: Path, doing: str = "write") -> StoreError:
    """An OSError on a spool or marker file as one message naming the file, the disk and the fix."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreError(
            f"cannot {doing} {path}: the disk holding {path.parent} is full ({exc.strerror or exc})",
            fix="free space on that disk, then run any wattlab command (e.g. `wattlab ls`) to retry: "
            "the spool keeps everything measured",
            title="Disk full",
        )
    return StoreError(
        f"cannot {doing} {path}: {exc.strerror or exc}",
        fix="check that the disk is mounted, writable and has space, then run any wattlab command "
        "(e.g. `wattlab ls`) to retry: the spool keeps everything measured",
        title="Spool not writable",
    )


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` all at once: a temp file, fsync, rename. Raises StoreError."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise disk_error(exc, path) from exc
    # Make the rename itself durable; the marker is already in place, so a failure here is harmless.
    with contextlib.suppress(OSError):
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class SpoolFile:
    """An append-only JSON-lines file that survives a full disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._pending: deque[str] = deque()
        try:
            self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise disk_error(exc, path, "open") from exc
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
        try:
            tmp.mkdir(parents=True, exist_ok=True)
            write_atomic(tmp / "runner.json", json.dumps(process_identity()))
            write_atomic(tmp / "session.json", json.dumps(session, default=str, indent=1))
            if self.dir.exists():  # resuming: keep the old files, take ownership
                write_atomic(self.dir / "runner.json", (tmp / "runner.json").read_text())
                (self.dir / COMMITTED).unlink(missing_ok=True)
                (self.dir / RUNNER_DONE).unlink(missing_ok=True)
                for f in tmp.iterdir():
                    f.unlink()
                tmp.rmdir()
            else:
                tmp.rename(self.dir)
        except OSError as exc:  # mkdir, rename: the same one message as a failed file write
            raise disk_error(exc, Path(exc.filename or self.dir), "create") from exc
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

    @property
    def unwritten(self) -> int:
        """Lines still held in memory because the disk refused them (lost if the process ends)."""
        return sum(f.pending + f.dropped for f in (self._timeline, self._events) if f is not None)

    def flush(self) -> None:
        for f in (self._timeline, self._events):
            if f is not None:
                f.flush()

    def close(self) -> None:
        for f in (self._timeline, self._events):
            if f is not None:
                f.close()

    def mark_committed(self) -> None:
        """Say every item is in DuckDB. Call only after the database commit succeeded; raises
        StoreError (and leaves no marker) when it cannot be written, so recovery simply runs again."""
        write_atomic(self.dir / COMMITTED, json.dumps({"session_id": self.session_id, "at": time.time()}))

    def worker_log(self, n: int) -> Path:
        return self.dir / f"worker-{n}.log"

    # --- reading (recovery, attach, the console) --------------------------------------------------
    @property
    def committed(self) -> bool:
        """A whole marker only: an empty or torn one (older versions wrote it in place and a full
        disk could stop them half-way) means the commit is not known to have finished."""
        try:
            text = (self.dir / COMMITTED).read_text(encoding="utf-8").strip()
        except (OSError, ValueError):
            return False
        try:
            data = json.loads(text)
        except ValueError:
            return False
        if isinstance(data, dict):
            return data.get("session_id") == self.session_id
        # Older versions wrote the commit time alone.
        return isinstance(data, int | float) and not isinstance(data, bool) and data > 0

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
        write_atomic(self.dir / RUNNER_DONE, str(time.time()))

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
