"""The scriptable CLI: every read command on a database written through the real commit path, and
bad input answered with one message and its fix (exit 2), never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from wattlab.sessions import commit
from wattlab.sessions.store import Store


def wattlab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wattlab.cli", *args], capture_output=True, text=True, timeout=120
    )


def _run(seq: int, engine: str, bs: int, j_per_token: float, e2e: float, quality: float | None) -> dict:
    rid = f"s1-{seq:03d}"
    return {
        "run_id": rid,
        "session_id": "s1",
        "seq": seq,
        "status": "finished",
        "engine": engine,
        "model": "m",
        "quant": "Q4_1",
        "batch_size": bs,
        "mode": "offline",
        "input_tokens": 64,
        "output_tokens": 32,
        "requests": bs,
        "tokens_out": 32 * bs,
        "duration_s": 2.0,
        "throughput_tok_s": 16.0 * bs,
        "e2e_p50_s": e2e,
        "j_per_token": j_per_token,
        "energy_j": j_per_token * 32 * bs,
        "energy_method": "counter",
        "quality": quality,
        "quality_metric": "f1" if quality is not None else None,
        "task": "qa" if quality is not None else None,
        "started_at": "2026-11-22T10:00:00",
        "energy": [
            {
                "window_name": "measured",
                "domain_id": "gpu0",
                "energy_j": j_per_token * 32 * bs,
                "method": "counter",
                "coverage": 1.0,
                "gaps": 0,
                "flags": "",
            }
        ],
    }


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "w.duckdb"
    with Store(path).writer() as con:
        commit.write_session(
            con,
            {
                "session_id": "s1",
                "name": "study",
                "kind": "sweep",
                "status": "finished",
                "created_at": "2026-11-22T10:00:00",
                "runs_planned": 4,
            },
        )
        # A Pareto set over (J/token, E2E): runs 1, 2 and 4 trade off; run 3 is dominated by run 2.
        for r in (
            _run(1, "llamacpp", 1, 0.50, 1.0, 0.6),
            _run(2, "vllm", 8, 0.10, 2.0, 0.6),
            _run(3, "vllm", 4, 0.20, 3.0, None),
            _run(4, "transformers", 64, 0.05, 5.0, 0.5),
        ):
            commit.write_run(con, r)
    return path


def test_ls_and_show(db: Path) -> None:
    sessions = json.loads(wattlab("ls", "--json", "--db", str(db)).stdout)
    assert sessions[0]["session_id"] == "s1" and sessions[0]["runs_finished"] == 4
    runs = json.loads(wattlab("ls", "s1", "--json", "--db", str(db)).stdout)
    assert [r["run_id"] for r in runs] == ["s1-001", "s1-002", "s1-003", "s1-004"]
    shown = json.loads(wattlab("show", "s1-002", "--json", "--db", str(db)).stdout)
    assert shown["engine"] == "vllm" and shown["energy"][0]["method"] == "counter"
    text = wattlab("show", "s1-002", "--db", str(db)).stdout
    assert "energy per output token" in text and "counter" in text


def test_compare_gives_deltas_against_the_first(db: Path) -> None:
    data = json.loads(wattlab("compare", "s1-001", "s1-002", "--json", "--db", str(db)).stdout)
    row = next(r for r in data["rows"] if r["figure"] == "j_per_token")
    assert row["values"] == [0.5, 0.1]
    assert row["delta_pct"][1] == pytest.approx(-80.0)


def test_pareto(db: Path) -> None:
    data = json.loads(
        wattlab("pareto", "--objectives", "j_per_token,e2e_p50_s", "--json", "--db", str(db)).stdout
    )
    assert [r["run_id"] for r in data["front"]] == ["s1-001", "s1-002", "s1-004"]
    with_quality = json.loads(
        wattlab("pareto", "--objectives", "energy,quality", "--json", "--db", str(db)).stdout
    )
    assert with_quality["excluded"] == 1  # run 3 has no quality: left out, not treated as 0


def test_sql_and_its_errors(db: Path) -> None:
    rows = json.loads(
        wattlab(
            "sql", "SELECT engine, count(*) AS n FROM runs GROUP BY 1 ORDER BY 1", "--json", "--db", str(db)
        ).stdout
    )
    assert rows == [
        {"engine": "llamacpp", "n": 1},
        {"engine": "transformers", "n": 1},
        {"engine": "vllm", "n": 2},
    ]
    bad = wattlab("sql", "SELECT nope FROM runs", "--db", str(db))
    assert bad.returncode == 2
    assert "nope" in bad.stderr and "fix:" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json"])
def test_export(db: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"runs.{fmt}"
    assert wattlab("export", "--format", fmt, "--out", str(out), "--db", str(db)).returncode == 0
    import duckdb

    reader = {"csv": "read_csv_auto", "parquet": "read_parquet", "json": "read_json_auto"}[fmt]
    n = duckdb.connect().execute(f"SELECT count(*) FROM {reader}('{out}')").fetchone()
    assert n == (4,)


def test_doctor_and_tasks() -> None:
    report = json.loads(wattlab("doctor", "--json").stdout)
    meters = {m["name"]: m for m in report["meters"]}
    assert {"nvml", "rapl", "jetson", "estimate"} <= set(meters)
    for m in meters.values():
        assert m["available"] or m["detail"], m  # unavailable always says why
    assert {e["name"] for e in report["engines"]} >= {"transformers", "vllm", "llamacpp", "openai"}
    tasks = json.loads(wattlab("tasks", "--json").stdout)
    assert {t["kind"] for t in tasks} == {
        "classification",
        "qa",
        "summarization",
        "translation",
        "perplexity",
    }


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["show", "zzz-missing"], "no run with an id starting 'zzz-missing'"),
        (["sweep", "/no/such/sweep.toml"], "cannot read sweep file"),
        (["run", "--batch-size", "0"], "batch_size must be at least 1"),
        (["run", "--option", "novalue"], "is not KEY=VALUE"),
        (["export", "--table", "secrets"], "unknown table 'secrets'"),
    ],
)
def test_bad_input_is_one_message_with_a_fix(db: Path, args: list[str], needle: str) -> None:
    out = wattlab(*args, "--db", str(db))
    assert out.returncode == 2, out.stderr
    assert needle in out.stderr
    assert "fix:" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_bad_sweep_file_names_key_and_line(tmp_path: Path) -> None:
    sweep = tmp_path / "s.toml"
    sweep.write_text("[grid]\nengine = ['llamacpp']\nbatch = [1, 2]\n")
    out = wattlab("sweep", str(sweep), "--db", str(tmp_path / "w.duckdb"))
    assert out.returncode == 2
    assert "unknown key 'batch'" in out.stderr and "(line 3)" in out.stderr


def test_a_sweep_an_engine_cannot_run_is_refused_before_it_starts(tmp_path: Path) -> None:
    out = wattlab("run", "--engine", "openai", "--task", "perplexity", "--db", str(tmp_path / "w.duckdb"))
    assert out.returncode == 2
    assert "openai has no log-probabilities (perplexity)" in out.stderr and "fix:" in out.stderr
    assert not (tmp_path / "w.duckdb").exists()  # refused before any session started


def test_attach_replays_a_sessions_events(tmp_path: Path) -> None:
    import os

    from wattlab.sessions.spool import Spool

    spool = Spool("s-attach", root=Path(os.environ["WATTLAB_HOME"]) / "spool")
    spool.create({"session_id": "s-attach", "runs_planned": 2})
    spool.event(
        "session_start",
        session={"session_id": "s-attach", "runs_planned": 2, "meters_json": {"used": ["estimate"]}},
    )
    spool.event("run_start", run_id="s-attach-001", seq=1, total=2, label="llamacpp m bs1")
    spool.event("run_end", result=_run(1, "llamacpp", 1, 0.5, 1.0, None))
    spool.event("run_start", run_id="s-attach-002", seq=2, total=2, label="llamacpp m [bs2]")
    spool.event(
        "run_end", result={**_run(2, "llamacpp", 2, 0.3, 1.2, None), "status": "failed", "error": "boom [x]"}
    )
    spool.event("session_end", status="finished")
    spool.close()
    out = wattlab("attach", "s-attach")
    assert out.returncode == 1, out.stderr  # a run failed: exit 1, as the README says
    assert "run 2/2" in out.stderr and "llamacpp m [bs2]" in out.stderr  # user text is not taken as markup
    assert "failed boom [x]" in out.stderr and "session finished with 1 of 2 runs failed" in out.stderr
