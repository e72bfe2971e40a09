"""Time the console's screen queries and `wattlab pareto` on a big database (target: under 100 ms each).

    python benchmarks/query_time.py [--db FILE] [--runs 100000] [--samples 10000000] [--repeat 7]
                                    [--only SUBSTRING] [--cli-repeat 5]

Without --db (or when the file is missing) the database is generated first with
benchmarks/make_big_db.py (100,000 runs and 10 million samples by default; about two minutes here).
Each query is what a screen runs on a refresh, through the same functions (wattlab/app/data.py,
wattlab.analysis.front, wattlab.analysis.queries), each opening the file read-only as the console
does: the first (cold) time and the median of `--repeat` more are reported. `wattlab pareto` is
timed twice: its query function in-process (what the target is about) and the whole command in a
fresh process (Python start and imports included). The Live screen reads the spool, not the
database, so it has no query here. Prints one JSON object.
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
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--only", default="", help="time only the queries whose name contains this")
    p.add_argument("--cli-repeat", type=int, default=5, help="runs of the `wattlab pareto` command")
    a = p.parse_args()

    from wattlab.analysis.front import pareto_runs
    from wattlab.app import data
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
    import inspect

    cli_kw = {"points": False} if "points" in inspect.signature(pareto_runs).parameters else {}
    estimate_plan = store.query_dicts(
        "SELECT engine, model, quant, batch_size FROM runs WHERE status = 'finished' LIMIT 3"
    )
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
        "pareto: session menu": lambda: data.sessions_with_runs(store),
        "run detail: the run + energy rows + power timeline": lambda: data.run_detail(store, run_ids[0]),
        "compare: two runs": lambda: data.compare(store, run_ids),
        "launch: time estimate from past runs (3 planned runs)": lambda: data.estimate(
            store, [{**r, "requests": r["batch_size"], "output_tokens": 64} for r in estimate_plan]
        ),
        "wattlab pareto (query): J/token vs E2E p50, all runs": lambda: pareto_runs(
            store, ["j_per_token", "e2e_p50_s"], **cli_kw
        ),
        "wattlab pareto (query): energy, latency, quality (3 objectives), all runs": lambda: pareto_runs(
            store, ["j_per_token", "e2e_p50_s", "quality"], **cli_kw
        ),
        "report: pareto_runs with every point, one session": lambda: pareto_runs(
            store, ["j_per_token", "e2e_p50_s"], session_id=session_id
        ),
        "pareto_runs with every point (wattlab pareto --json), all runs": lambda: pareto_runs(
            store, ["j_per_token", "e2e_p50_s"]
        ),
    }
    results = {name: timed(fn, a.repeat) for name, fn in queries.items() if a.only in name}
    if a.cli_repeat and a.only in "wattlab pareto (command, fresh process)":
        import subprocess

        cmd = [sys.executable, "-m", "wattlab.cli", "pareto", "--objectives", "j_per_token,e2e_p50_s"]
        cmd += ["--db", str(db)]
        env = {**os.environ, "COLUMNS": "120"}
        results["wattlab pareto (command, fresh process): J/token vs E2E p50"] = timed(
            lambda: subprocess.run(cmd, env=env, check=True, capture_output=True), a.cli_repeat
        )
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
                "target_ms": 100,
                "cpus": os.cpu_count(),
                "loadavg_1m": round(os.getloadavg()[0], 2),
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
