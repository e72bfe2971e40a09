"""Read-side queries shared by the CLI and the console: sessions, runs, compare, export, SQL.

Every function opens the database read-only for one query (see store.py), so a running sweep can
keep committing while the console or a script reads.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from wattlab.errors import ConfigError, StoreError
from wattlab.sessions.result import RunResult
from wattlab.sessions.store import Store

RUN_SUMMARY_COLUMNS = [
    "run_id",
    "session_id",
    "status",
    "engine",
    "model",
    "quant",
    "mode",
    "batch_size",
    "input_tokens",
    "output_tokens",
    "requests",
    "task",
    "throughput_tok_s",
    "ttft_p50_s",
    "tpot_p50_s",
    "e2e_p50_s",
    "energy_j",
    "energy_net_j",
    "energy_method",
    "j_per_token",
    "gco2e",
    "quality",
    "quality_metric",
    "duration_s",
    "started_at",
    "error",
    "overlap",  # why the run's energy includes other work, NULL when it ran alone
    "transform",  # model levers (NULL: none); ls and History show them only when a run has one
    "speculative",
]

# What a figure means and how `show`/the console label it: (column, label, unit, method column).
FIGURES: list[tuple[str, str, str, str | None]] = [
    ("duration_s", "measured window", "s", None),
    ("load_s", "load time", "s", None),
    ("load_energy_j", "load energy", "J", "load_energy_method"),
    ("tokens_in", "input tokens", "", None),
    ("tokens_out", "output tokens", "", None),
    ("throughput_tok_s", "output throughput", "tok/s", None),
    ("total_tok_s", "total throughput", "tok/s", None),
    ("requests_per_s", "request rate", "req/s", None),
    # The headline TTFT's "method" is its basis: service (from scheduling) offline, client online.
    ("ttft_p50_s", "TTFT p50, headline", "s", "ttft_basis"),
    ("ttft_p90_s", "TTFT p90, headline", "s", "ttft_basis"),
    ("ttft_p99_s", "TTFT p99, headline", "s", "ttft_basis"),
    ("ttft_service_p50_s", "TTFT p50, service: from scheduled", "s", None),
    ("ttft_service_p90_s", "TTFT p90, service: from scheduled", "s", None),
    ("ttft_client_p50_s", "TTFT p50, client: from arrival", "s", None),
    ("ttft_client_p90_s", "TTFT p90, client: from arrival", "s", None),
    ("queue_p50_s", "queue time p50", "s", None),
    ("queue_p90_s", "queue time p90", "s", None),
    ("queue_p99_s", "queue time p99", "s", None),
    ("tpot_p50_s", "TPOT p50", "s", None),
    ("tpot_p90_s", "TPOT p90", "s", None),
    ("itl_p50_s", "ITL p50", "s", None),
    ("e2e_p50_s", "E2E p50", "s", None),
    ("e2e_p90_s", "E2E p90", "s", None),
    ("e2e_p99_s", "E2E p99", "s", None),
    ("energy_j", "energy (gross)", "J", "energy_method"),
    ("energy_net_j", "energy (net of idle)", "J", "energy_method"),
    ("energy_coverage", "data coverage", "", None),
    ("energy_domains", "domains summed", "", None),
    ("j_per_token", "energy per output token", "J", "energy_method"),
    ("j_per_token_net", "net energy per output token", "J", "energy_method"),
    ("steady_j_per_token", "steady-state J/token", "J", "energy_method"),
    ("j_per_request", "energy per request", "J", "energy_method"),
    ("tokens_per_j", "tokens per joule", "tok/J", "energy_method"),
    ("wh_per_1k_requests", "Wh per 1,000 requests", "Wh", "energy_method"),
    ("mean_power_w", "mean power", "W", "energy_method"),
    ("peak_power_w", "peak power", "W", None),
    ("util_mean_pct", "mean utilization", "%", None),
    ("peak_mem_mib", "peak memory", "MiB", None),
    ("gco2e", "carbon", "gCO2e", "energy_method"),
    ("gco2e_per_request", "carbon per request", "gCO2e", "energy_method"),
    ("gco2e_per_1k_requests", "carbon per 1,000 requests", "gCO2e", "energy_method"),
    ("carbon_g_per_kwh", "grid intensity", "g/kWh", "carbon_source"),
    ("pue", "PUE", "", None),
    ("quality", "quality", "", "quality_metric"),
    ("green_index", "Green AI index", "", None),
]


def list_sessions(store: Store, limit: int = 50) -> list[dict[str, Any]]:
    return store.query_dicts(
        """
        SELECT s.session_id, s.name, s.kind, s.status, s.created_at, s.runs_planned,
               count(r.run_id) FILTER (WHERE r.status = 'finished') AS runs_finished,
               count(r.run_id) FILTER (WHERE r.status = 'failed') AS runs_failed,
               count(r.run_id) FILTER (WHERE r.status = 'interrupted') AS runs_interrupted,
               count(r.run_id) FILTER (WHERE r.overlap IS NOT NULL) AS runs_overlapped,
               sum(r.energy_j) AS energy_j
        FROM sessions s LEFT JOIN runs r USING (session_id)
        GROUP BY ALL ORDER BY s.created_at DESC LIMIT ?
        """,
        [limit],
    )


def list_runs(
    store: Store,
    session_id: str | None = None,
    where: str | None = None,
    order: str = "started_at DESC",
    limit: int = 1000,
) -> list[dict[str, Any]]:
    cols = ", ".join(RUN_SUMMARY_COLUMNS)
    clauses, params = [], []
    if session_id:
        clauses.append("session_id = ?")
        params.append(session_id)
    if where:
        clauses.append(f"({where})")
    sql = f"SELECT {cols} FROM runs" + (" WHERE " + " AND ".join(clauses) if clauses else "")
    sql += f" ORDER BY {order} LIMIT {int(limit)}"
    return store.query_dicts(sql, params)


def resolve_id(store: Store, table: str, column: str, text: str) -> str:
    """A full id from itself or a unique abbreviation: its start, or its end (what `ls` shows, see
    `short_ids`). An abbreviation matching several ids is refused, listing them."""
    noun = table[:-1]
    text = text.strip()
    if not text:
        raise ConfigError(f"no {noun} id given", fix=f"`wattlab ls` lists the {table} and their ids")
    rows = store.query(
        f"SELECT {column} FROM {table} WHERE {column} = ? OR starts_with({column}, ?) "
        f"OR ends_with({column}, ?) ORDER BY {column} LIMIT {_CANDIDATES + 1}",
        [text, text, text],
    )[1]
    ids = [r[0] for r in rows]
    if text in ids:
        return text
    if not ids:
        raise ConfigError(
            f"no {noun} with an id starting {text!r} (or ending with it)",
            fix=f"`wattlab ls` lists the {table}"
            + (", `wattlab ls SESSION` its runs" if noun == "run" else ""),
        )
    if len(ids) > 1:
        listed = ", ".join(ids[:_CANDIDATES]) + (", …" if len(ids) > _CANDIDATES else "")
        raise ConfigError(
            f"{text!r} matches several {table}: {listed}",
            fix="type more of the id (its start or its end), or copy one of those",
            title="Ambiguous id",
        )
    return ids[0]


_CANDIDATES = 8  # ambiguous ids listed in the message
# Ids wattlab makes: session `YYMMDD-HHMMSS-xxxx` (xxxx random hex), run `SESSION-NNN[.attempt]`.
_OWN_ID = re.compile(r"^\d{6}-\d{6}-[0-9a-f]{4}(?P<run>-\d{3}(?:\.\d+)?)?$")


def short_ids(ids: Iterable[str], universe: Iterable[str] = ()) -> dict[str, str]:
    """Each id's shortest abbreviation that `resolve_id` maps back to it alone among `ids` and
    `universe` (git-style, but taken from the end: runs of one session share their start).

    Abbreviations grow by whole `-` segments. Wattlab's own ids keep at least their random part
    (`a3f9`, `a3f9-002` for a run), so an abbreviation stays valid as the database grows."""
    ids = list(ids)
    forward = sorted(set(universe) | set(ids))
    backward = sorted(o[::-1] for o in forward)  # ids ending with x <=> reversed ids starting with x reversed

    def matches_another(sorted_ids: list[str], candidate: str, owner: str) -> bool:
        i = bisect.bisect_left(sorted_ids, candidate)  # every match sits in one block from here
        return any(o != owner and o.startswith(candidate) for o in sorted_ids[i : i + 2])

    out: dict[str, str] = {}
    for rid in ids:
        parts = rid.split("-")
        own = _OWN_ID.match(rid)
        floor = 2 if own and own.group("run") else 1
        out[rid] = rid
        for k in range(floor, len(parts)):
            candidate = "-".join(parts[-k:])
            if not matches_another(backward, candidate[::-1], rid[::-1]) and not matches_another(
                forward, candidate, rid
            ):
                out[rid] = candidate
                break
    return out


def all_ids(store: Store, table: str, column: str) -> list[str]:
    """Every id of a table: the universe `short_ids` keeps abbreviations unique in."""
    return [r[0] for r in store.query(f"SELECT {column} FROM {table}")[1]]


def latest_session(store: Store) -> str | None:
    rows = store.query("SELECT session_id FROM sessions ORDER BY created_at DESC LIMIT 1")[1]
    return rows[0][0] if rows else None


def get_run(store: Store, run_id: str) -> RunResult:
    """One whole run (`wattlab show`, the run detail screen): its row, energy rows and quality rows.
    Its request rows are left out (large; the requests table has them)."""
    run_id = resolve_id(store, "runs", "run_id", run_id)
    row = store.query_dicts("SELECT * FROM runs WHERE run_id = ?", [run_id])[0]
    energy = store.query_dicts(
        "SELECT * EXCLUDE (run_id, session_id) FROM run_energy WHERE run_id = ? "
        "ORDER BY window_name, domain_id",
        [run_id],
    )
    quality = store.query_dicts(
        "SELECT * EXCLUDE (run_id, session_id) FROM quality WHERE run_id = ? ORDER BY metric", [run_id]
    )
    return RunResult.from_row(row, energy=energy, quality_detail=quality)


def run_power_timeline(store: Store, run_id: str, margin_s: float = 1.0) -> list[dict[str, Any]]:
    """The run's power samples (all domains), from a little before to a little after its window."""
    run = store.query_dicts("SELECT session_id, t0_ns, t1_ns FROM runs WHERE run_id = ?", [run_id])
    if not run or run[0]["t0_ns"] is None:
        return []
    r = run[0]
    pad = int(margin_s * 1e9)
    t0, t1 = int(r["t0_ns"]), int(r["t1_ns"] or r["t0_ns"])  # type: ignore[call-overload]
    return store.query_dicts(
        "SELECT t_ns, domain_id, power_w FROM samples WHERE session_id = ? AND t_ns BETWEEN ? AND ? "
        "AND power_w IS NOT NULL ORDER BY t_ns",
        [r["session_id"], t0 - pad, t1 + pad],
    )


def percent_change(new: float | None, base: float | None) -> float | None:
    """(new - base) / |base| in percent; None when either is missing or base is 0."""
    if new is None or base is None or base == 0:
        return None
    return (new - base) / abs(base) * 100.0


def compare_runs(store: Store, run_ids: list[str], columns: list[str] | None = None) -> dict[str, Any]:
    """Runs side by side, each figure with its % change against the first run."""
    if len(run_ids) < 2:
        raise ConfigError("compare needs at least two runs", fix="wattlab compare RUN RUN [RUN...]")
    runs = [get_run(store, r) for r in run_ids]
    cols = columns or [c for c, *_ in FIGURES]
    table = []
    base = runs[0]
    for col in cols:
        values = [r.get(col) for r in runs]
        b = base.get(col)
        deltas = [
            percent_change(v, b) if isinstance(v, int | float) and isinstance(b, int | float) else None
            for v in values
        ]
        table.append({"figure": col, "values": values, "delta_pct": deltas})
    # ttft_basis: which TTFT each run's headline ttft_* is (service offline, client online).
    keys = ("run_id", "ttft_basis", *_SETTINGS)
    return {"runs": [{k: r.get(k) for k in keys} for r in runs], "rows": table}


# The settings that tell compared runs apart, and how a header writes each.
_SETTINGS = {
    "engine": "{}",
    "model": "{}",
    "quant": "{}",
    "batch_size": "bs{}",
    "mode": "{}",
    "task": "{}",
    "input_tokens": "in{}",
    "output_tokens": "out{}",
}


def varying_labels(runs: list[dict[str, Any]]) -> list[str]:
    """For each run, the settings whose values differ across `runs` (`vllm bs8`), so headers of
    runs side by side never read the same; empty when they differ in nothing (repeats)."""
    varying = [k for k in _SETTINGS if len({str(r.get(k)) for r in runs}) > 1]
    return [
        " ".join(_SETTINGS[k].format(r.get(k)) if r.get(k) is not None else "—" for k in varying)
        for r in runs
    ]


EXPORT_FORMATS = ("csv", "parquet", "json")
_DUCKDB_MAGIC = b"DUCK"  # bytes 8..12 of every DuckDB database file


def _is_duckdb_file(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(12)[8:12] == _DUCKDB_MAGIC
    except OSError:
        return False


def export_path(out: Path, store: Store) -> Path:
    """The absolute file `export` may write, or a ConfigError naming what is wrong with `out`.

    A folder, a missing parent folder, and anything that is (or is named like) a DuckDB database are
    refused: an export must never replace measurements.
    """
    path = out.expanduser().resolve()
    if path.is_dir():
        raise ConfigError(
            f"--out {out} is a folder, not a file",
            fix=f"give a file path, e.g. --out {path / 'wattlab-runs.csv'}",
        )
    if not path.parent.is_dir():
        raise ConfigError(
            f"the folder {path.parent} does not exist",
            fix=f"create it first (mkdir -p {path.parent}) or choose another --out",
        )
    if path.suffix.lower() in (".duckdb", ".db", ".wal") or _is_duckdb_file(path):
        raise ConfigError(
            f"refusing to write the export over {path}: that is a DuckDB database file",
            fix="choose a .csv, .parquet or .json file name with --out",
        )
    if path == store.path.expanduser().resolve():
        raise ConfigError(f"{path} is the wattlab database itself", fix="choose another --out")
    return path


def export(store: Store, fmt: str, out: Path, table: str = "runs", session_id: str | None = None) -> Path:
    """Write a table (default runs) as csv, parquet or json via DuckDB's COPY; returns the absolute
    path written. Bad input (format, table, path, unknown session) is refused before anything is written."""
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}", fix="use csv, parquet or json")
    if table not in ("runs", "sessions", "run_energy", "requests", "quality", "samples", "marks", "domains"):
        raise ConfigError(
            f"unknown table {table!r}",
            fix="runs, sessions, run_energy, requests, quality, samples, marks, domains",
        )
    out = export_path(out, store)
    if session_id and not store.query("SELECT 1 FROM sessions WHERE session_id = ?", [session_id])[1]:
        raise ConfigError(f"no session {session_id!r} in {store.path}", fix="`wattlab ls` lists the sessions")
    where = " WHERE session_id = ?" if session_id else ""
    options = {
        "csv": "(FORMAT csv, HEADER)",
        "parquet": "(FORMAT parquet)",
        "json": "(FORMAT json, ARRAY true)",
    }[fmt]
    # COPY cannot take parameters in its inner query: filter via a temporary view with a literal.
    literal = "'" + session_id.replace("'", "''") + "'" if session_id else ""
    import duckdb

    with store.reader() as con:
        try:
            con.execute(
                f"COPY (SELECT * FROM {table}{where.replace('?', literal)}) "
                f"TO '{str(out).replace(chr(39), chr(39) * 2)}' {options}"
            )
        except duckdb.Error as exc:
            raise StoreError(
                f"cannot write {out}: {str(exc).splitlines()[0]}",
                fix="check the folder's permissions and free space, or choose another --out",
            ) from exc
    return out


def to_jsonable(value: Any) -> Any:
    """Values from DuckDB (datetimes, decimals, JSON strings) as plain JSON."""
    import datetime as dt
    import decimal

    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value
