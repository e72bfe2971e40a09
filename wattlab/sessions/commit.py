"""Writing sessions into DuckDB: live commits per run, and recovery from a spool.

Live: after each run the runner commits that run's rows plus every timeline item (samples, marks)
gathered since the last commit, in one short transaction. If the database is locked or the disk
is full, the items stay queued and go with the next commit; the spool has them regardless.

Recovery: a spool without its `committed` marker whose runner is dead (kill -9, power cut, a full
disk at the end) is ingested whole: the session's rows are deleted and rebuilt from the spool, so
ingesting twice is harmless. Runs that started but never ended become `interrupted`, with their
samples kept. The marker is written (atomically) only after the transaction committed; a full disk
or an I/O error at any step is one StoreError, the spool is left whole, and the next command retries.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import duckdb

from wattlab.errors import StoreError
from wattlab.meters.base import _SHORT_NAMES
from wattlab.sessions.result import RunResult
from wattlab.sessions.spool import Spool, disk_error, list_spools
from wattlab.sessions.store import Store

_SESSION_TABLES = ("runs", "run_energy", "requests", "quality", "samples", "marks", "domains", "sessions")
_SAMPLE_COLUMNS = ["t_ns", "domain_id", *(_SHORT_NAMES.values())]
_JSON_COLUMNS = {"spec_json", "meters_json", "carbon_json", "idle_json", "result_json"}

_columns_cache: dict[str, list[str]] = {}


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    if table not in _columns_cache:
        _columns_cache[table] = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]
    return _columns_cache[table]


def _insert_dicts(con: duckdb.DuckDBPyConnection, table: str, rows: list[dict[str, Any]]) -> None:
    """Insert rows given as dicts. A key that is not a column of `table` is an error naming both:
    schema drift must not lose data silently (a key meant to stay out is removed by the caller)."""
    if not rows:
        return
    known = _columns(con, table)
    for r in rows:
        unknown = sorted(set(r) - set(known))
        if unknown:
            raise StoreError(
                f"cannot insert into {table}: no column {', '.join(map(repr, unknown))}",
                fix="a wattlab bug (the schema and the code differ): please report it; "
                "the spool keeps everything measured",
                title="Schema mismatch",
            )
    cols = [c for c in known if any(c in r for r in rows)]
    data = {}
    import numpy as np

    for c in cols:
        values = [r.get(c) for r in rows]
        if c in _JSON_COLUMNS or c == "data":
            values = [
                None if v is None else (v if isinstance(v, str) else json.dumps(v, default=str))
                for v in values
            ]
        column = np.empty(len(values), dtype=object)  # 1-D even when values are equal-length lists
        for i, v in enumerate(values):
            column[i] = v
        data[c] = column
    names = ", ".join(cols)
    rows_frame = data  # noqa: F841 - read by DuckDB's replacement scan below (a dict of numpy arrays)
    con.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM rows_frame")


def write_session(con: duckdb.DuckDBPyConnection, session: dict[str, Any]) -> None:
    con.execute("DELETE FROM sessions WHERE session_id = ?", [session["session_id"]])
    _insert_dicts(con, "sessions", [session])


def write_domains(
    con: duckdb.DuckDBPyConnection, session_id: str, domains: list[dict[str, Any]], idle_w: dict[str, float]
) -> None:
    con.execute("DELETE FROM domains WHERE session_id = ?", [session_id])
    rows = []
    for d in domains:
        fields = {k: v for k, v in d.items() if k != "id"}  # a Domain's `id` is the table's domain_id
        rows.append(
            {**fields, "domain_id": d["id"], "session_id": session_id, "idle_power_w": idle_w.get(d["id"])}
        )
    _insert_dicts(con, "domains", rows)


def write_run(con: duckdb.DuckDBPyConnection, result: RunResult | Mapping[str, Any]) -> None:
    """A run's row and its energy, request and quality rows (replacing any earlier version).

    A plain mapping (scripts, tests) is made a RunResult first: an unknown key is an error."""
    if not isinstance(result, RunResult):
        result = RunResult.from_dict(result)
    for table in ("runs", "run_energy", "requests", "quality"):
        con.execute(f"DELETE FROM {table} WHERE run_id = ?", [result.run_id])
    _insert_dicts(con, "runs", [result.to_row()])
    for table, rows in result.detail_rows().items():
        _insert_dicts(con, table, rows)


def write_timeline_items(
    con: duckdb.DuckDBPyConnection, session_id: str, items: Iterable[dict[str, Any]]
) -> None:
    """Samples and marks (timeline-file items) into their tables, via numpy columns (fast)."""
    import numpy as np

    samples = [i for i in items if "d" in i and "t" in i]
    marks = [i for i in items if "m" in i]
    if samples:
        data: dict[str, Any] = {
            "session_id": np.array([session_id] * len(samples), dtype=object),
            "t_ns": np.array([s["t"] for s in samples], dtype=np.int64),
            "domain_id": np.array([s["d"] for s in samples], dtype=object),
        }
        for key, name in _SHORT_NAMES.items():
            if name == "error":
                data[name] = np.array([s.get(key) for s in samples], dtype=object)
            else:
                data[name] = np.array([s.get(key, np.nan) for s in samples], dtype=np.float64)
        cols = ", ".join(data)
        # NaN stands for "no reading" in the numpy columns; store it as NULL.
        select = ", ".join(
            f"CASE WHEN isnan({c}) THEN NULL ELSE {c} END"
            if c in _SHORT_NAMES.values() and c != "error"
            else c
            for c in data
        )
        samples_frame = data  # noqa: F841 - read by DuckDB's replacement scan
        con.execute(f"INSERT INTO samples ({cols}) SELECT {select} FROM samples_frame")
    if marks:
        rows = [
            {
                "session_id": session_id,
                "run_id": m.get("r"),
                "t_ns": m["t"],
                "name": m["m"],
                "data": m.get("x"),
            }
            for m in marks
        ]
        _insert_dicts(con, "marks", rows)


# --------------------------------------------------------------------------------------------------
# Recovery
# --------------------------------------------------------------------------------------------------
def ingest_spool(store: Store, spool: Spool, *, final_status: str | None = None) -> dict[str, Any]:
    """Rebuild a session's rows from its spool. Returns a summary (runs ingested, interrupted)."""
    session = spool.session()
    session_id = spool.session_id
    started: dict[str, dict[str, Any]] = {}
    ended: dict[str, RunResult] = {}
    idle_w: dict[str, float] = {}
    not_idle: dict[str, str] = {}
    session_status = None
    ended_at = None
    for ev in spool.events():
        kind = ev.get("ev")
        if kind == "run_start":
            started[ev["run_id"]] = ev
        elif kind == "run_end":
            result = RunResult.from_spool(ev["result"])
            ended[result.run_id] = result
        elif kind == "idle":
            idle_w = ev.get("idle_w", {})
            not_idle = ev.get("not_idle") or {}  # domains whose baseline was judged busy
        elif kind == "session_end":
            session_status = ev.get("status")
            ended_at = ev.get("ended_at")
        elif kind == "session_update":
            session.update(ev.get("fields", {}))
    interrupted = [rid for rid in started if rid not in ended]
    domains: dict[str, dict[str, Any]] = {}
    from wattlab.meters.timeline import iter_timeline_items

    if spool.timeline_path.exists():
        for item in iter_timeline_items(spool.timeline_path):
            if "domains" in item and "t" not in item:
                for d in item["domains"]:
                    domains[d["id"]] = d
    session = {
        **session,
        "session_id": session_id,
        "status": session_status or final_status or "interrupted",
        "ended_at": ended_at or session.get("ended_at"),
        "idle_json": {"idle_w": idle_w, "not_idle": not_idle},
        "spool_dir": str(spool.dir),
    }
    try:
        _write_session_rows(store, spool, session, domains, idle_w, ended, started, interrupted)
    except OSError as exc:
        raise disk_error(exc, store.path, "commit to") from exc
    except duckdb.Error as exc:
        raise commit_error(exc, store, spool) from exc
    spool.mark_committed()  # only now: the rows are in the database
    return {"session_id": session_id, "runs": len(ended), "interrupted": interrupted}


def commit_error(exc: duckdb.Error, store: Store, spool: Spool) -> StoreError:
    """A failed commit (full disk, I/O error) as one message; the spool still has everything."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    retry = "then run any wattlab command (e.g. `wattlab ls`) to retry: the spool keeps everything measured"
    if "No space left" in text or "Disk quota" in text:
        return StoreError(
            f"cannot commit session {spool.session_id} to {store.path}: "
            f"the disk holding {store.path.parent} is full",
            fix=f"free space on that disk, {retry}",
            title="Disk full",
        )
    return StoreError(
        f"cannot commit session {spool.session_id} to {store.path}: {text}",
        fix=f"check the disk and the file's permissions, {retry}",
    )


def _write_session_rows(
    store: Store,
    spool: Spool,
    session: dict[str, Any],
    domains: dict[str, dict[str, Any]],
    idle_w: dict[str, float],
    ended: dict[str, RunResult],
    started: dict[str, dict[str, Any]],
    interrupted: list[str],
) -> None:
    """The whole session in one transaction, rolled back on any error."""
    session_id = spool.session_id
    with store.writer() as con:
        con.execute("BEGIN TRANSACTION")
        try:
            for table in _SESSION_TABLES:
                con.execute(f"DELETE FROM {table} WHERE session_id = ?", [session_id])
            write_session(con, session)
            write_domains(con, session_id, list(domains.values()), idle_w)
            for result in ended.values():
                write_run(con, result)
            for rid in interrupted:
                ev = started[rid]
                row = ev.get("row")
                begun = RunResult.from_spool(row) if row else RunResult(run_id=rid, session_id=session_id)
                write_run(
                    con,
                    begun.replace(
                        run_id=rid,
                        session_id=session_id,
                        status="interrupted",
                        error="the runner stopped before this run finished (killed, crashed or power lost)",
                        error_fix="rerun the sweep: finished runs are kept and skipped",
                    ),
                )
            if spool.timeline_path.exists():
                _ingest_timeline_file(con, session_id, str(spool.timeline_path))
            con.execute("COMMIT")
        except Exception:
            # A failed COMMIT may already have ended the transaction; the original error matters.
            with contextlib.suppress(duckdb.Error):
                con.execute("ROLLBACK")
            raise


def _ingest_timeline_file(con: duckdb.DuckDBPyConnection, session_id: str, path: str) -> None:
    cols = {
        "t": "BIGINT",
        "d": "VARCHAR",
        **{k: ("VARCHAR" if k == "err" else "DOUBLE") for k in _SHORT_NAMES},
    }
    spec = ", ".join(f"{k}: '{v}'" for k, v in cols.items())
    names = ", ".join(_SHORT_NAMES.values())
    keys = ", ".join(f'"{k}"' for k in _SHORT_NAMES)
    con.execute(
        f"INSERT INTO samples (session_id, t_ns, domain_id, {names}) "
        f"SELECT ?, t, d, {keys} FROM read_json(?, format='newline_delimited', ignore_errors=true, "
        f"columns={{{spec}}}) WHERE d IS NOT NULL AND t IS NOT NULL",
        [session_id, path],
    )
    con.execute(
        "INSERT INTO marks (session_id, run_id, t_ns, name, data) "
        "SELECT ?, r, t, m, x FROM read_json(?, format='newline_delimited', ignore_errors=true, "
        "columns={t: 'BIGINT', m: 'VARCHAR', r: 'VARCHAR', x: 'JSON'}) WHERE m IS NOT NULL",
        [session_id, path],
    )


def recover(store: Store, root: Any = None) -> list[dict[str, Any]]:
    """Ingest every spool whose runner died before committing it. Safe to call often."""
    from wattlab.sessions.caps import restore_leftovers

    restore_leftovers(root)  # GPU caps a killed runner left changed go back first (never raises)
    done = []
    for spool in list_spools(root):
        if spool.committed or spool.runner_alive():
            continue
        done.append(ingest_spool(store, spool))
    return done
