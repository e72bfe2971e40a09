"""The console's queries (wattlab/app/data.py) against a generated database and the shared definitions."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from wattlab.analysis.pareto import pareto_front
from wattlab.app import data
from wattlab.errors import ConfigError, StoreError
from wattlab.sessions.store import Store


def test_history_filters_sorts_and_counts(small_db: Path) -> None:
    store = Store(small_db)
    everything = data.history(store, data.RunFilter())
    assert everything["total"] == 120 and len(everything["sessions"]) == 4
    assert set(everything["engines"]) <= {"llamacpp", "transformers", "vllm", "openai"}
    started = [r["started_at"] for r in everything["runs"]]
    assert started == sorted(started, reverse=True)

    vllm = data.history(store, data.RunFilter(engine="vllm", order="j_per_token", descending=False))
    assert vllm["runs"] and all(r["engine"] == "vllm" for r in vllm["runs"])
    values = [r["j_per_token"] for r in vllm["runs"] if r["j_per_token"] is not None]
    assert values == sorted(values)

    failed = data.history(store, data.RunFilter(status="failed"))
    assert failed["total"] == sum(1 for r in everything["runs"] if r["status"] == "failed")

    words = data.history(store, data.RunFilter(text="transformers fp32"))
    assert words["runs"] and all(
        r["engine"] == "transformers" and r["quant"] == "fp32" for r in words["runs"]
    )
    # A quote in the text is a parameter, never SQL.
    assert data.history(store, data.RunFilter(text="x' OR 1=1 --"))["total"] == 0


@pytest.mark.parametrize(
    ("x", "y"),
    [
        ("j_per_token", "e2e_p50_s"),
        ("throughput_tok_s", "j_per_token"),
        ("j_per_token", "quality"),
        ("energy_j", "ttft_p50_s"),
    ],
)
def test_pareto_front_matches_the_shared_definition(small_db: Path, x: str, y: str) -> None:
    store = Store(small_db)
    result = data.pareto(store, x, y)
    rows = store.query_dicts(f"SELECT run_id, {x}, {y}, quality_metric FROM runs WHERE status = 'finished'")
    rows = [r for r in rows if r[x] is not None and r[y] is not None]
    directions = {k: o.direction for k, o in data.OBJECTIVES.items()}
    expected = pareto_front(rows, [f"{x}:{directions[x]}", f"{y}:{directions[y]}"])
    assert sorted(r["run_id"] for r in result["front"]) == sorted(rows[i]["run_id"] for i in expected.indices)
    assert result["considered"] == len(rows)


def test_pareto_agrees_with_the_sessions_layer(small_db: Path) -> None:
    from wattlab.analysis.front import pareto_runs

    store = Store(small_db)
    ours = data.pareto(store, "j_per_token", "e2e_p50_s")
    theirs = pareto_runs(store, ["j_per_token", "e2e_p50_s"])
    assert sorted(r["run_id"] for r in ours["front"]) == sorted(r["run_id"] for r in theirs["front"])
    assert ours["considered"] == theirs["considered"]


def test_pareto_sql_rule_on_random_points_with_ties(tmp_path: Path) -> None:
    """Ties and duplicates, brute-forced: the SQL front equals pareto_front."""
    from wattlab.sessions import commit

    rng = random.Random(3)
    store = Store(tmp_path / "ties.duckdb")
    rows = [
        {
            "run_id": f"r{i:03d}",
            "session_id": "s",
            "status": "finished",
            "engine": "vllm",
            "j_per_token": float(rng.randint(1, 8)),
            "throughput_tok_s": float(rng.randint(1, 8)),
        }
        for i in range(150)
    ]
    with store.writer() as con:
        for r in rows:
            commit.write_run(con, r)
    result = data.pareto(store, "j_per_token", "throughput_tok_s")
    expected = pareto_front(rows, ["j_per_token:min", "throughput_tok_s:max"])
    assert sorted(r["run_id"] for r in result["front"]) == sorted(rows[i]["run_id"] for i in expected.indices)


def test_pareto_rejects_bad_objectives(small_db: Path) -> None:
    with pytest.raises(ConfigError, match="two different"):
        data.pareto(Store(small_db), "j_per_token", "j_per_token")
    with pytest.raises(ConfigError, match="unknown objective"):
        data.pareto(Store(small_db), "j_per_token", "drop table runs")


def test_pareto_thins_plotted_points_not_the_front(small_db: Path) -> None:
    full = data.pareto(Store(small_db), "j_per_token", "e2e_p50_s")
    thin = data.pareto(Store(small_db), "j_per_token", "e2e_p50_s", max_points=10)
    assert thin["thinned"] and len(thin["points"]) <= len(full["points"])
    assert thin["front"] == full["front"]


def test_estimate_uses_past_runs_else_says_it_guesses(small_db: Path, tmp_path: Path) -> None:
    store = Store(small_db)
    run = store.query_dicts(
        "SELECT engine, model, quant, batch_size FROM runs WHERE status = 'finished' ORDER BY run_id LIMIT 1"
    )[0]
    planned = [{**run, "requests": run["batch_size"], "output_tokens": 64}]
    known = data.estimate(store, planned)
    assert known["measured"] == 1 and "past runs" in known["basis"] and known["seconds"] > 0
    unknown = data.estimate(Store(tmp_path / "empty.duckdb"), [{**planned[0], "engine": "llamacpp"}])
    assert unknown["guessed"] == 1 and unknown["basis"].startswith("rough guess")


def test_sql_is_bounded_and_errors_are_store_errors(small_db: Path) -> None:
    store = Store(small_db)
    result = data.sql(store, "SELECT * FROM samples;", max_rows=50)
    assert len(result["rows"]) == 50 and result["truncated"]
    assert data.sql(store, "SHOW TABLES")["rows"]
    with pytest.raises(StoreError) as info:
        data.sql(store, "SELECT nope FROM runs")
    assert "nope" in info.value.message
    with pytest.raises(StoreError):
        data.sql(store, "DELETE FROM runs")  # the connection is read-only
    with pytest.raises(StoreError, match="empty"):
        data.sql(store, "  ")


def test_compare_keeps_each_figures_method(small_db: Path) -> None:
    store = Store(small_db)
    ids = [
        r[0]
        for r in store.query("SELECT run_id FROM runs WHERE status = 'finished' ORDER BY run_id LIMIT 2")[1]
    ]
    result = data.compare(store, ids)
    assert [r["run_id"] for r in result["runs"]] == ids
    assert "energy_method" in result["methods"] and len(result["methods"]["energy_method"]) == 2
    energy = next(r for r in result["rows"] if r["figure"] == "energy_j")
    assert energy["delta_pct"][0] == 0.0
