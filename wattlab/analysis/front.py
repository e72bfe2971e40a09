"""Analyses over stored runs: the Pareto front of a database or session (CLI, console, report)."""

from __future__ import annotations

from typing import Any

from wattlab.analysis.pareto import pareto_front, parse_objectives
from wattlab.sessions.store import Store

ROW_COLUMNS = [
    "run_id",
    "session_id",
    "engine",
    "model",
    "quant",
    "batch_size",
    "mode",
    "task",
    "quality_metric",
    "input_tokens",
    "output_tokens",
    "energy_method",
]


def pareto_runs(store: Store, objectives: list[str] | str, session_id: str | None = None) -> dict[str, Any]:
    """Finished runs on the non-dominated front of the chosen objectives (2 or 3).

    Runs lacking a chosen figure (a speed run has no quality) are left out and counted in
    `excluded`, never placed as if their value were 0.
    """
    objs = parse_objectives(objectives)
    columns = list(dict.fromkeys(ROW_COLUMNS + [o.column for o in objs]))
    sql = f"SELECT {', '.join(columns)} FROM runs WHERE status = 'finished'"
    params: list[object] = []
    if session_id:
        sql += " AND session_id = ?"
        params.append(session_id)
    rows = store.query_dicts(sql + " ORDER BY run_id", params)
    front = pareto_front(rows, objs)
    on_front = set(front.indices)
    points = [{**r, "on_front": i in on_front} for i, r in enumerate(rows) if i not in front.excluded]
    return {
        "objectives": [
            {"name": o.name, "column": o.column, "direction": o.direction, "label": o.label} for o in objs
        ],
        "front": [rows[i] for i in front.indices],
        "points": points,
        "considered": len(points),
        "excluded": len(front.excluded),
    }
