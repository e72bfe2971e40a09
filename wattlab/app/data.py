"""The console's reads of the session database, shaped for its screens and fast on big files.

Every function runs in a worker thread, opens the database briefly read-only (the runner may be
committing) and returns plain data. History and Pareto are written for a database of 100,000 runs
and 10 million samples (benchmarks/query_time.py): one connection per refresh, filters and sorting
in SQL with parameters, a bounded number of rows fetched, and the Pareto front from the one SQL
implementation in `wattlab.analysis.front` (the tests check it against `wattlab.analysis.pareto`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from wattlab.analysis.queries import RUN_SUMMARY_COLUMNS
from wattlab.errors import ConfigError, StoreError
from wattlab.sessions.store import Store

# Columns the History table can sort by (its column key -> SQL expression).
SORTABLE = {
    "run_id": "run_id",
    "engine": "engine",
    "model": "model",
    "quant": "quant",
    "batch_size": "batch_size",
    "mode": "mode",
    "tokens": "input_tokens",
    "throughput_tok_s": "throughput_tok_s",
    "j_per_token": "j_per_token",
    "e2e_p50_s": "e2e_p50_s",
    "energy_j": "energy_j",
    "quality": "quality",
    "status": "status",
    "started_at": "started_at",
}
_TEXT_COLUMNS = ("run_id", "session_id", "engine", "model", "quant", "task", "mode", "status", "error")


@dataclass(frozen=True)
class RunFilter:
    """What History shows: one session or all, filters, and the sort."""

    session_id: str | None = None
    engine: str | None = None
    model: str | None = None
    status: str | None = None
    node_id: str | None = None  # a cluster node (wattlab/cluster/): runs it measured
    text: str = ""
    order: str = "started_at"
    descending: bool = True

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        for column in ("session_id", "engine", "model", "status", "node_id"):
            value = getattr(self, column)
            if value:
                clauses.append(f"{column} = ?")
                params.append(value)
        for word in self.text.split():
            clauses.append("(" + " OR ".join(f"{c} ILIKE ?" for c in _TEXT_COLUMNS) + ")")
            params.extend([f"%{word}%"] * len(_TEXT_COLUMNS))
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def history(store: Store, flt: RunFilter, limit: int = 500) -> dict[str, Any]:
    """Sessions, the filter menus' choices, the matching runs (first `limit`) and their count."""
    where, params = flt.where()
    order = SORTABLE.get(flt.order, "started_at")
    direction = "DESC" if flt.descending else "ASC"
    started = time.perf_counter()
    with store.reader() as con:
        sessions = _dicts(
            con.execute(
                """
            SELECT s.session_id, s.name, s.status, s.created_at, s.runs_planned,
                   r.finished, r.failed, r.energy_j, r.estimated
            FROM sessions s LEFT JOIN (
                SELECT session_id, count(*) FILTER (WHERE status = 'finished') AS finished,
                       count(*) FILTER (WHERE status <> 'finished') AS failed, sum(energy_j) AS energy_j,
                       bool_or(energy_method = 'estimated' AND energy_j IS NOT NULL) AS estimated
                FROM runs GROUP BY session_id) r USING (session_id)
            ORDER BY s.created_at DESC LIMIT 200
            """
            )
        )
        menus = con.execute(
            "SELECT list(DISTINCT engine ORDER BY engine), list(DISTINCT model ORDER BY model), "
            "list(DISTINCT status ORDER BY status) FROM runs"
        ).fetchone()
        # The History node menu: only cluster runs have a node id (an empty list hides the menu).
        nodes = con.execute(
            "SELECT DISTINCT node_id, hostname FROM runs WHERE node_id IS NOT NULL ORDER BY 2, 1"
        ).fetchall()
        cols = ", ".join([*RUN_SUMMARY_COLUMNS, "node_id", "hostname"])
        # Sort on the key columns alone, then read the 27 columns of just those rows: half the time
        # of sorting whole rows at 100,000 runs (benchmarks/query_time.py).
        sort = f"ORDER BY {order} {direction} NULLS LAST, run_id"
        runs = _dicts(
            con.execute(
                f"SELECT {cols} FROM runs WHERE rowid IN "
                f"(SELECT rowid FROM runs{where} {sort} LIMIT {int(limit)}) {sort}",
                params,
            )
        )
        count = con.execute(f"SELECT count(*) FROM runs{where}", params).fetchone()
    engines, models, statuses = menus or (None, None, None)
    return {
        "sessions": sessions,
        "engines": [e for e in engines or [] if e],
        "models": [m for m in models or [] if m],
        "statuses": [s for s in statuses or [] if s],
        "nodes": [(str(n), str(h or "?")) for n, h in nodes],
        "runs": runs,
        "total": int(count[0]) if count else 0,
        "seconds": time.perf_counter() - started,
    }


def _dicts(cursor: Any) -> list[dict[str, Any]]:
    cols = [d[0] for d in cursor.description]
    return [dict(zip(cols, row, strict=True)) for row in cursor.fetchall()]


# --- run detail ------------------------------------------------------------------------------------
class _OneConnection:
    """Store's query interface over one open read-only connection.

    The sessions layer's functions (get_run, compare_runs, ...) call `store.query` several times;
    each call would reopen the file (~20-30 ms on a big database). Handing them this instead
    runs all their queries on one connection.
    """

    def __init__(self, con: Any) -> None:
        self.con = con

    def query(self, sql: str, params: list[object] | None = None) -> tuple[list[str], list[tuple]]:
        cur = self.con.execute(sql, params or [])
        cols = [d[0] for d in cur.description] if cur.description else []
        return cols, cur.fetchall()

    def query_dicts(self, sql: str, params: list[object] | None = None) -> list[dict[str, object]]:
        cols, rows = self.query(sql, params)
        return [dict(zip(cols, row, strict=True)) for row in rows]


def run_detail(store: Store, run_id: str) -> dict[str, Any]:
    """Everything the detail screen shows: the run, its energy rows, quality and power timeline."""
    from wattlab.analysis.queries import get_run, run_power_timeline

    with store.reader() as con:
        one: Any = _OneConnection(con)
        run = get_run(one, run_id)
        timeline = run_power_timeline(one, run["run_id"])
        domains = one.query_dicts(
            "SELECT domain_id, label, meter, has_counter, estimated FROM domains WHERE session_id = ? "
            "ORDER BY domain_id",
            [run["session_id"]],
        )
    return {"run": run, "timeline": timeline, "domains": domains}


def compare(store: Store, run_ids: list[str]) -> dict[str, Any]:
    """compare_runs plus the method columns of each run, so every energy figure keeps its method."""
    from wattlab.analysis.queries import FIGURES, compare_runs

    method_columns = sorted({m for *_, m in FIGURES if m})
    with store.reader() as con:
        result = compare_runs(_OneConnection(con), run_ids, [c for c, *_ in FIGURES] + method_columns)  # type: ignore[arg-type]
    methods = {row["figure"]: row["values"] for row in result["rows"] if row["figure"] in method_columns}
    result["rows"] = [row for row in result["rows"] if row["figure"] not in method_columns]
    result["methods"] = methods
    return result


# --- Pareto ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ObjectiveChoice:
    column: str
    label: str
    direction: str  # "min" | "max"
    log: bool  # a log axis suits it (positive, spans orders of magnitude)


OBJECTIVES: dict[str, ObjectiveChoice] = {
    o.column: o
    for o in (
        ObjectiveChoice("j_per_token", "J per output token", "min", True),
        ObjectiveChoice("e2e_p50_s", "E2E latency p50 (s)", "min", True),
        ObjectiveChoice("ttft_p50_s", "TTFT p50, headline: service offline, client online (s)", "min", True),
        ObjectiveChoice("ttft_service_p50_s", "TTFT p50, service: from scheduled (s)", "min", True),
        ObjectiveChoice("ttft_client_p50_s", "TTFT p50, client: from arrival (s)", "min", True),
        ObjectiveChoice("queue_p50_s", "queue time p50 (s)", "min", False),
        ObjectiveChoice("tpot_p50_s", "TPOT p50 (s)", "min", True),
        ObjectiveChoice("throughput_tok_s", "throughput (tok/s)", "max", True),
        ObjectiveChoice("gco2e_per_request", "gCO2e per request", "min", True),
        ObjectiveChoice("energy_j", "energy per run (J)", "min", True),
        ObjectiveChoice("quality", "quality (task's primary metric)", "max", False),
    )
}


def pareto(
    store: Store, x: str, y: str, session_id: str | None = None, max_points: int = 3000
) -> dict[str, Any]:
    """Finished runs on two objectives: the front (all of it), the points to plot, and counts.

    Runs missing either figure are excluded and counted. When `quality` is an objective, perplexity
    runs are excluded too: their "quality" is lower-is-better and not comparable with the others.
    Beyond `max_points` runs, the plotted points are thinned to one per engine per plot cell
    (the front is never thinned).
    """
    if x not in OBJECTIVES or y not in OBJECTIVES:
        raise ConfigError(
            f"unknown objective {x if x not in OBJECTIVES else y!r}",
            fix=f"use one of {', '.join(OBJECTIVES)}",
        )
    if x == y:
        raise ConfigError("choose two different objectives", fix="change X or Y")
    from wattlab.analysis.front import front_sql, usable_condition
    from wattlab.analysis.pareto import Objective

    ox, oy = OBJECTIVES[x], OBJECTIVES[y]
    objectives = [Objective(o.column, o.column, o.direction, o.label) for o in (ox, oy)]  # type: ignore[arg-type]
    base = "status = 'finished'" + (" AND session_id = ?" if session_id else "")
    params: list[Any] = [session_id] if session_id else []
    usable = usable_condition(objectives)
    started = time.perf_counter()
    with store.reader() as con:
        stats = con.execute(
            f"SELECT count(*) FILTER (WHERE {usable}), count(*) FILTER (WHERE NOT ({usable})), "
            f"min({x}) FILTER (WHERE {usable}), max({x}) FILTER (WHERE {usable}), "
            f"min({y}) FILTER (WHERE {usable}), max({y}) FILTER (WHERE {usable}) FROM runs WHERE {base}",
            params,
        ).fetchone()
        considered, excluded, x_min, x_max, y_min, y_max = stats or (0, 0, None, None, None, None)
        log_x = ox.log and bool(x_min and x_min > 0 and x_max / x_min > 20)
        log_y = oy.log and bool(y_min and y_min > 0 and y_max / y_min > 20)
        pts = (
            f"SELECT run_id, engine, model, quant, batch_size, mode, task, {x} AS x, {y} AS y "
            f"FROM runs WHERE {base} AND {usable}"
        )
        # The front: the one SQL implementation `wattlab pareto` and the report use too.
        ctes, front_params = front_sql(objectives, session_id)
        front = _dicts(
            con.execute(
                f"{ctes} SELECT run_id, engine, model, quant, batch_size, mode, task, {x} AS x, {y} AS y "
                "FROM runs WHERE rowid IN (SELECT rid FROM front) ORDER BY x, y, run_id",
                front_params,
            )
        )
        if considered <= max_points:
            points = con.execute(f"SELECT engine, x, y FROM ({pts}) ORDER BY run_id", params).fetchall()
        else:
            gx = "log10(x)" if log_x else "x"
            gy = "log10(y)" if log_y else "y"
            lo_x, hi_x = _axis(x_min, x_max, log_x)
            lo_y, hi_y = _axis(y_min, y_max, log_y)
            points = con.execute(
                f"SELECT engine, any_value(x), any_value(y) FROM ({pts}) "
                f"GROUP BY engine, floor(({gx} - {lo_x}) / {(hi_x - lo_x) / 240 or 1}), "
                f"floor(({gy} - {lo_y}) / {(hi_y - lo_y) / 120 or 1}) ORDER BY 1, 2, 3",
                params,
            ).fetchall()
    return {
        "x": ox,
        "y": oy,
        "front": front,
        "points": points,
        "considered": int(considered or 0),
        "excluded": int(excluded or 0),
        "log_x": log_x,
        "log_y": log_y,
        "thinned": considered > max_points,
        "seconds": time.perf_counter() - started,
    }


def _axis(lo: float | None, hi: float | None, log: bool) -> tuple[float, float]:
    import math

    if lo is None or hi is None:
        return 0.0, 1.0
    return (math.log10(lo), math.log10(hi)) if log else (float(lo), float(hi))


def sessions_with_runs(store: Store, limit: int = 100) -> list[tuple[str, str]]:
    """(session_id, label) of recent sessions that have finished runs, for the Pareto session menu."""
    rows = store.query(
        "SELECT s.session_id, coalesce(s.name, s.session_id), count(r.run_id) "
        "FROM sessions s JOIN runs r USING (session_id) WHERE r.status = 'finished' "
        "GROUP BY ALL ORDER BY max(s.created_at) DESC LIMIT ?",
        [limit],
    )[1]
    return [(sid, f"{name} ({n} runs)") for sid, name, n in rows]


# --- Launch: how long will it take ------------------------------------------------------------------
# Output tokens per second for one stream when the database has nothing to go on: each engine's
# spec (guess_tok_s) says. Deliberately round, and always shown as a rough guess.
GUESS_LOAD_S = 5.0


def guess_tok_s(engine: str) -> float:
    """The engine's spec's guess at one stream's output tokens/s (20 for an unknown engine)."""
    from wattlab.engines import registry

    spec = registry().get(engine)
    return spec.guess_tok_s if spec else 20.0


def estimate(
    store: Store, runs: list[dict[str, Any]], idle_s: float = 3.0, cooldown_s: float = 0.0
) -> dict[str, Any]:
    """Estimated wall time of a sweep: from similar past runs where there are any, else a guess.

    A run's time is its output tokens over a throughput taken from finished runs with the same
    engine, model and variant (same batch size when there are such runs); one model load per
    change of engine/model/variant; plus the idle baseline and cooldowns.
    """
    keys = sorted({(r["engine"], r["model"], r.get("quant") or "") for r in runs})
    history: dict[tuple[Any, ...], tuple[float, float]] = {}
    loads: dict[tuple[str, str, str], float] = {}
    if keys:
        try:
            rows = store.query(
                "SELECT engine, model, coalesce(quant, ''), batch_size, "
                "sum(tokens_out) / sum(duration_s), avg(load_s) FROM runs "
                "WHERE status = 'finished' AND duration_s > 0 AND tokens_out > 0 "
                "AND (engine, model, coalesce(quant, '')) IN (SELECT * FROM (VALUES "
                + ", ".join("(?, ?, ?)" for _ in keys)
                + ")) GROUP BY ALL",
                [v for k in keys for v in k],
            )[1]
        except StoreError:
            rows = []
        for engine, model, quant, batch, tok_s, load_s in rows:
            history[(engine, model, quant, batch)] = (tok_s, load_s or 0.0)
            if load_s:
                loads[(engine, model, quant)] = load_s
    total = float(idle_s) + cooldown_s * max(0, len(runs) - 1)
    measured = guessed = 0
    previous_load: tuple[str, str, str] | None = None
    for r in runs:
        key = (r["engine"], r["model"], r.get("quant") or "")
        exact = history.get((*key, r["batch_size"]))
        related = [v for k, v in history.items() if k[:3] == key]
        if exact:
            tok_s = exact[0]
        elif related:
            tok_s = sum(v[0] for v in related) / len(related)
        else:
            tok_s = guess_tok_s(r["engine"]) * max(1.0, r["batch_size"] ** 0.5)
        measured += bool(exact or related)
        guessed += not (exact or related)
        requests = r.get("requests") or r["batch_size"]
        tokens = requests * (r.get("output_tokens") or 64) * (1 + 1 / requests)  # + warmup
        total += tokens / tok_s
        if key != previous_load:
            total += loads.get(key, GUESS_LOAD_S)
            previous_load = key
    if not runs:
        basis = "no runs yet"
    elif guessed == 0:
        basis = f"from similar past runs in the database: all {measured} run(s) matched"
    elif measured == 0:
        basis = (
            "rough guess: no similar runs in the database yet (assumes "
            + ", ".join(f"{guess_tok_s(e):g} tok/s on {e}" for e in sorted({k[0] for k in keys}))
            + f" per stream, {GUESS_LOAD_S:g} s per model load)"
        )
    else:
        basis = f"{measured} run(s) from similar past runs, {guessed} a rough guess (no similar runs yet)"
    return {"seconds": total, "basis": basis, "guessed": guessed, "measured": measured}


# --- SQL -------------------------------------------------------------------------------------------
def sql(store: Store, text: str, max_rows: int = 1000) -> dict[str, Any]:
    """A user's query through the one guarded path (read statements only, no file access), at most
    `max_rows` rows fetched (a SELECT over samples can be 10M). Errors are StoreError."""
    from wattlab.analysis.readonly_sql import run_read_query

    started = time.perf_counter()
    result = run_read_query(store, text, max_rows=max_rows)
    return {
        "columns": result.columns,
        "rows": result.rows,
        "truncated": result.truncated,
        "seconds": time.perf_counter() - started,
    }
