"""Time the console's screen-refresh queries on a big database (target: under 200 ms each).

    python benchmarks/query_time.py [--db FILE] [--runs 100000] [--samples 10000000] [--repeat 5]

Without --db (or when the file is missing) the database is generated first with
benchmarks/make_big_db.py (100,000 runs and 10 million samples by default; about two minutes here).
Each query is what a screen runs on a refresh, through the same functions (wattlab/app/data.py
and wattlab.analysis.queries), each opening the file read-only as the console does: the first
(cold) time and the median of `--repeat` more are reported. The sessions layer's own
`pareto_runs` is timed too, for comparison with the console's SQL front. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


def timed(fn: Callable[[], Any], repeat: int) -> dict[str, float]:
    started = time.perf_counter()
    fn()
    cold = time.perf_counter() - started
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return {
        "cold_ms": round(cold * 1000, 1),
        "median_ms": round(statistics.median(times) * 1000, 1),
        "max_ms": round(max(times) * 1000, 1),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", help="an existing database (default: generate one)")
    p.add_argument("--runs", type=int, default=100_000)
    p.add_argument("--samples", type=int, default=10_000_000)
    p.add_argument("--repeat", type=int, default=5)
    a = p.parse_args()

    from wattlab.app import data
    from wattlab.analysis.front import pareto_runs
    from wattlab.sessions.store import Store

    db = Path(a.db) if a.db else Path(f"/tmp/wattlab-bench-{a.runs}-{a.samples}.duckdb")
    generated = None
    if not db.exists():
        from make_big_db import make_db

        generated = make_db(db, runs=a.runs, samples=a.samples)
    store = Store(db)
    counts = store.query(
        "SELECT (SELECT count(*) FROM runs), (SELECT count(*) FROM samples), (SELECT count(*) FROM sessions)"
    )[1][0]
    run_ids = [
        r[0]
        for r in store.query(
            "SELECT run_id FROM runs WHERE status = 'finished' ORDER BY started_at DESC LIMIT 2"
        )[1]
    ]
    session_id = store.query("SELECT session_id FROM sessions ORDER BY created_at DESC LIMIT 1")[1][0][0]
    queries: dict[str, Callable[[], Any]] = {
        "history: all runs, newest first (first 500) + sessions + menus + count": lambda: data.history(
            store, data.RunFilter()
        ),
        "history: text filter 'vllm 8b', sorted by J/token": lambda: data.history(
            store, data.RunFilter(text="vllm 8b", order="j_per_token", descending=False)
        ),
        "history: one session, engine filter": lambda: data.history(
            store, data.RunFilter(session_id=session_id, engine="llamacpp")
        ),
        "pareto: J/token vs E2E p50, all runs (front + plotted points)": lambda: data.pareto(
            store, "j_per_token", "e2e_p50_s"
        ),
        "pareto: throughput vs quality, all runs": lambda: data.pareto(store, "throughput_tok_s", "quality"),
        "pareto: J/token vs E2E p50, one session": lambda: data.pareto(
            store, "j_per_token", "e2e_p50_s", session_id
        ),
        "run detail: the run + energy rows + power timeline": lambda: data.run_detail(store, run_ids[0]),
        "compare: two runs": lambda: data.compare(store, run_ids),
        "for comparison, sessions.analysis.pareto_runs (J/token vs E2E p50, all runs)": lambda: pareto_runs(
            store, ["j_per_token", "e2e_p50_s"]
        ),
    }
    results = {name: timed(fn, a.repeat) for name, fn in queries.items()}
    print(
        json.dumps(
            {
                "benchmark": "console_query_time",
                "database": str(db),
                "database_mb": round(db.stat().st_size / 1e6, 1),
                "runs": counts[0],
                "samples": counts[1],
                "sessions": counts[2],
                "generated": generated,
                "queries": results,
                "target_ms": 200,
                "cpus": os.cpu_count(),
                "loadavg_1m": round(os.getloadavg()[0], 2),
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
