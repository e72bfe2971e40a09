"""Opening the session database safely from several processes.

DuckDB lets one process write a file at a time (readers in other processes are locked out while
it is open read-write). So every process opens the file briefly: the runner for one short
transaction per finished run, the console and CLI read-only for one query. Both retry while the
lock is held, and give up with a message naming the process that holds it.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from wattlab.errors import StoreError
from wattlab.paths import default_db_path
from wattlab.sessions.schema import SCHEMA_VERSION, current_version, migrate

if TYPE_CHECKING:  # imported on the first connection: the console draws its first frame without it
    import duckdb

_LOCK_PID = re.compile(r"PID (\d+)")
T = TypeVar("T")


def _is_lock_error(exc: Exception) -> bool:
    text = str(exc)
    return "lock" in text.lower() and ("Could not set lock" in text or "Conflicting lock" in text)


def retry_while_locked(attempt: Callable[[], T], path: Path, timeout_s: float, *, fix: str) -> T:
    """attempt(), retried with backoff while DuckDB says another process holds `path`'s lock.

    Past `timeout_s` a StoreError names the holder (its PID where DuckDB gives one) with `fix`;
    any other DuckDB error is translated at once.
    """
    import duckdb

    deadline = time.monotonic() + timeout_s
    delay = 0.02
    while True:
        try:
            return attempt()
        except duckdb.Error as exc:
            if not _is_lock_error(exc):
                raise _translate(exc, path) from exc
            if time.monotonic() >= deadline:
                pid = _LOCK_PID.search(str(exc))
                holder = f"process {pid.group(1)}" if pid else "another process"
                raise StoreError(
                    f"the database {path} is locked by {holder}", fix=fix, title="Database locked"
                ) from exc
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)


class Store:
    """The wattlab database at `path` (default: the data dir's wattlab.duckdb)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path).expanduser() if path else default_db_path()
        self._migrated = False

    def _connect(self, read_only: bool, timeout_s: float) -> duckdb.DuckDBPyConnection:
        import duckdb

        return retry_while_locked(
            lambda: duckdb.connect(str(self.path), read_only=read_only),
            self.path,
            timeout_s,
            fix="wait for it to finish, close it, or use --db to write another file",
        )

    @contextlib.contextmanager
    def writer(self, timeout_s: float = 60.0) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-write connection, schema migrated, closed on exit."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create {self.path.parent}: {exc}", fix="check the path and permissions"
            ) from exc
        con = self._connect(read_only=False, timeout_s=timeout_s)
        try:
            if not self._migrated:
                migrate(con)
                self._migrated = True
            yield con
        finally:
            con.close()

    @contextlib.contextmanager
    def reader(self, timeout_s: float = 10.0) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection. A missing database is created empty first."""
        if not self.path.exists():
            with self.writer(timeout_s=timeout_s):
                pass
        con = self._connect(read_only=True, timeout_s=timeout_s)
        if not self._migrated:
            # A database an older wattlab wrote gets its migrations before the first read, so the
            # queries can rely on today's columns.
            version = current_version(con)
            if version < SCHEMA_VERSION:
                con.close()
                with self.writer(timeout_s=timeout_s):
                    pass
                con = self._connect(read_only=True, timeout_s=timeout_s)
                version = SCHEMA_VERSION
            self._migrated = version == SCHEMA_VERSION  # a newer database: the writer refuses it
        try:
            yield con
        finally:
            con.close()

    def query(self, sql: str, params: Sequence[object] | None = None) -> tuple[list[str], list[tuple]]:
        """Run one read-only query; returns (column names, rows)."""
        with self.reader() as con:
            cur = con.execute(sql, list(params or []))
            cols = [d[0] for d in cur.description] if cur.description else []
            return cols, cur.fetchall()

    def query_dicts(self, sql: str, params: Sequence[object] | None = None) -> list[dict[str, Any]]:
        cols, rows = self.query(sql, params)
        return [dict(zip(cols, row, strict=True)) for row in rows]


def _translate(exc: duckdb.Error, path: Path) -> StoreError:
    text = str(exc)
    if "No space left" in text or "Disk quota" in text:
        return StoreError(
            f"the disk holding {path} is full",
            fix="free space on that disk, then run any wattlab command (e.g. `wattlab ls`) to retry: "
            "the spool keeps everything measured",
            title="Disk full",
        )
    if "not a valid DuckDB database" in text or "Invalid Input" in text or "corrupt" in text.lower():
        return StoreError(
            f"{path} is not a wattlab DuckDB database ({text.splitlines()[0]})",
            fix="point --db at a wattlab database, or move this file away",
        )
    return StoreError(f"cannot open {path}: {text.splitlines()[0]}", fix="check the path and permissions")
