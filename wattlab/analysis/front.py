"""The Pareto front of stored runs, in SQL: the one implementation `wattlab pareto`, the report and
the console's Pareto screen all use.

The rule is `wattlab.analysis.pareto`'s (the pure-Python reference, kept for parse_objectives and
in-memory lists; tests/analysis/test_pareto_sql.py checks both agree on random data): every
objective turned into a quantity to minimise ("max" ones negated); run p dominates run q when p is
no worse on every objective and strictly better on one; the front is every finished run nothing
dominates, duplicates included. A run lacking a figure (NULL, NaN, infinite, not a number) is
excluded and counted, never placed as if it were 0. When `quality` is an objective, perplexity runs
are excluded too: their "quality" is lower-is-better and not comparable with the others.

How the query finds the front of 100,000 runs in tens of milliseconds (benchmarks/query_time.py):
- two objectives: sort by (k0, k1); a run is on the front when its k1 is below the k1 of every run
  before its group of equal keys (one window over GROUPS, no join);
- three or more: (1) seeds: a few real runs, each the best on a weighted sum of the scaled keys;
  whatever a seed dominates is dropped (a filter against one row of constants); (2) pivots: the 2-D
  front of each pair of objectives among what is left; (3) survivors: what no pivot dominates;
  (4) front: the survivors no survivor dominates. Exact whatever the seeds and pivots are (a
  dominated run is always dominated by a front run, and front runs are never dropped); they only
  make the survivors few. Worst case (every run on the front) step 4 is quadratic in its size.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from typing import Any

from wattlab.analysis.pareto import Objective, parse_objectives
from wattlab.errors import ConfigError
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
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def key_expr(objective: Objective) -> str:
    """The objective as a DOUBLE to minimise (NULL when the value is missing or not a number)."""
    value = f"TRY_CAST({objective.column} AS DOUBLE)"
    return value if objective.direction == "min" else f"-{value}"


def usable_condition(objectives: Sequence[Objective]) -> str:
    """SQL that is true for a run every objective can place."""
    parts = [f"coalesce(isfinite(TRY_CAST({o.column} AS DOUBLE)), false)" for o in objectives]
    if any(o.column == "quality" for o in objectives):
        parts.append("coalesce(quality_metric, '') <> 'perplexity'")
    return " AND ".join(parts)


def check_columns(con: Any, objectives: Sequence[Objective]) -> None:
    """Objective columns are spliced into SQL: each must be a column of `runs`."""
    known = {r[0] for r in con.execute("SELECT column_name FROM (DESCRIBE runs)").fetchall()}
    bad = [o.column for o in objectives if not _IDENT.match(o.column) or o.column not in known]
    if bad:
        raise ConfigError(
            f"runs have no column {', '.join(map(repr, bad))}",
            fix="use a standard objective, or column:min / column:max with a numeric column of runs",
        )


def _weights(n: int) -> list[tuple[float, ...]]:
    """Weight vectors of the seed runs: the balanced one, then each objective favoured and slighted."""
    out = [(1.0,) * n]
    for i in range(n):
        for w in (4.0, 16.0, 0.25):
            out.append(tuple(w if j == i else 1.0 for j in range(n)))
    return out


def _dominates(a: Sequence[str], b: Sequence[str]) -> str:
    """SQL: the key tuple `a` dominates `b` (both minimised)."""
    pairs = list(zip(a, b, strict=True))
    return (
        "("
        + " AND ".join(f"{x} <= {y}" for x, y in pairs)
        + " AND ("
        + " OR ".join(f"{x} < {y}" for x, y in pairs)
        + "))"
    )


def _pair_front(source: str, ki: str, kj: str) -> str:
    """SQL: the rows of `source` on the 2-D front of keys (ki, kj), duplicates included.

    In (ki, kj) order, the rows that could dominate a row are exactly those before its peer group
    (same ki and kj); it is on the front when its kj is below all of theirs. One sort, one window.
    """
    return f"""SELECT * EXCLUDE (before_) FROM (
            SELECT *, min({kj}) OVER (ORDER BY {ki}, {kj} GROUPS BETWEEN UNBOUNDED PRECEDING
                                      AND 1 PRECEDING) AS before_
            FROM {source})
        WHERE before_ IS NULL OR {kj} < before_"""


def front_sql(objectives: Sequence[Objective], session_id: str | None = None) -> tuple[str, list[Any]]:
    """A WITH clause defining `usable` (rid = the runs rowid, and the keys k0..kn of the finished
    runs every objective places) and `front` (the same columns, non-dominated rows only), and its
    parameters. Append a SELECT, e.g. `SELECT ... FROM runs WHERE rowid IN (SELECT rid FROM front)`."""
    n = len(objectives)
    keys = [f"k{i}" for i in range(n)]
    where = "status = 'finished'" + (" AND session_id = ?" if session_id else "")
    params: list[Any] = [session_id] if session_id else []
    key_cols = ", ".join(f"{key_expr(o)} AS k{i}" for i, o in enumerate(objectives))
    usable = f"SELECT rowid AS rid, {key_cols} FROM runs WHERE {where} AND {usable_condition(objectives)}"
    if n == 2:
        return f"WITH usable AS ({usable}), front AS ({_pair_front('usable', 'k0', 'k1')}) ", params

    # Seeds: a few real runs, each the best on a weighted sum of its keys (scaled by the spread from
    # the minimum to the median, so one outlier does not flatten the rest); what a seed dominates
    # cannot be on the front. A filter against one row of constants, so cheap.
    weights = _weights(n)
    spread = [
        f"CASE WHEN q{i} > lo{i} THEN q{i} - lo{i} WHEN hi{i} > lo{i} THEN hi{i} - lo{i} ELSE 1 END"
        for i in range(n)
    ]
    scaled = [f"({k} - lo{i}) / ({spread[i]})" for i, k in enumerate(keys)]
    sums = [" + ".join(f"{w:g} * {e}" for w, e in zip(ws, scaled, strict=True)) for ws in weights]
    seed_lists = ", ".join(f"arg_min([{', '.join(keys)}], {total}) AS s{j}" for j, total in enumerate(sums))
    seed_cols = ", ".join(f"s{j}[{i + 1}] AS s{j}_{i}" for j in range(len(weights)) for i in range(n))
    bounds = ", ".join(
        f"min({k}) AS lo{i}, max({k}) AS hi{i}, approx_quantile({k}, 0.5) AS q{i}" for i, k in enumerate(keys)
    )
    seed_filter = " AND ".join(
        f"NOT coalesce({_dominates([f's{j}_{i}' for i in range(n)], [f'u.{k}' for k in keys])}, false)"
        for j in range(len(weights))
    )
    pivots = " UNION ALL ".join(
        f"SELECT {', '.join(keys)} FROM ({_pair_front('candidates', keys[i], keys[j])})"
        for i, j in itertools.combinations(range(n), 2)
    )
    p_dom = _dominates([f"p.{k}" for k in keys], [f"s.{k}" for k in keys])
    o_dom = _dominates([f"o.{k}" for k in keys], [f"s.{k}" for k in keys])
    sql = f"""WITH usable AS MATERIALIZED ({usable}),
    seeds AS MATERIALIZED (
        SELECT {seed_cols} FROM (SELECT {seed_lists} FROM usable, (SELECT {bounds} FROM usable))),
    candidates AS MATERIALIZED (SELECT u.* FROM usable u, seeds WHERE {seed_filter}),
    pivots AS MATERIALIZED ({pivots}),
    survivors AS MATERIALIZED (SELECT s.* FROM candidates s ANTI JOIN pivots p ON {p_dom}),
    front AS (SELECT s.* FROM survivors s ANTI JOIN survivors o ON {o_dom})
    """
    return sql, params


def usable_sql(objectives: Sequence[Objective], session_id: str | None = None) -> tuple[str, list[Any]]:
    """A WHERE condition (and its parameters) for the finished runs every objective places."""
    sql = f"status = 'finished' AND {usable_condition(objectives)}"
    if session_id:
        sql += " AND session_id = ?"
    return sql, [session_id] if session_id else []


def counts_sql(objectives: Sequence[Objective], session_id: str | None = None) -> tuple[str, list[Any]]:
    """count(usable), count(excluded) of the finished runs (of one session)."""
    usable = usable_condition(objectives)
    sql = (
        f"SELECT count(*) FILTER (WHERE {usable}), count(*) FILTER (WHERE NOT ({usable})) "
        "FROM runs WHERE status = 'finished'" + (" AND session_id = ?" if session_id else "")
    )
    return sql, [session_id] if session_id else []


def pareto_runs(
    store: Store,
    objectives: list[str] | str | Sequence[Objective],
    session_id: str | None = None,
    points: bool = True,
) -> dict[str, Any]:
    """Finished runs on the non-dominated front of the chosen objectives (2 or more), by run id.

    `points` (every usable run with `on_front`) is what a plot needs; leave it out (points=False)
    when only the front is shown: on 100,000 runs building those rows is the expensive part.
    Runs lacking a chosen figure are left out and counted in `excluded`.
    """
    objs = parse_objectives(objectives)
    columns = list(dict.fromkeys(ROW_COLUMNS + [o.column for o in objs]))
    cols = ", ".join(columns)
    ctes, params = front_sql(objs, session_id)
    with store.reader() as con:
        check_columns(con, objs)
        if points:
            sql, uparams = usable_sql(objs, session_id)
            rows = _dicts(
                con.execute(
                    f"{ctes} SELECT {cols}, rowid IN (SELECT rid FROM front) AS on_front FROM runs "
                    f"WHERE {sql} ORDER BY run_id",
                    params + uparams,
                )
            )
            front = [{k: v for k, v in r.items() if k != "on_front"} for r in rows if r["on_front"]]
        else:
            rows = []
            front = _dicts(
                con.execute(
                    f"{ctes} SELECT {cols} FROM runs WHERE rowid IN (SELECT rid FROM front) ORDER BY run_id",
                    params,
                )
            )
        sql, cparams = counts_sql(objs, session_id)
        considered, excluded = con.execute(sql, cparams).fetchone() or (0, 0)
    return {
        "objectives": [
            {"name": o.name, "column": o.column, "direction": o.direction, "label": o.label} for o in objs
        ],
        "front": front,
        "points": rows,
        "considered": int(considered or 0),
        "excluded": int(excluded or 0),
    }


def _dicts(cursor: Any) -> list[dict[str, Any]]:
    cols = [d[0] for d in cursor.description]
    return [dict(zip(cols, row, strict=True)) for row in cursor.fetchall()]
