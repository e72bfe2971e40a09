"""DuckDB store: schema, commits, locks held by another process, and recovery from a spool."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from wattlab.errors import StoreError
from wattlab.meters.base import Domain, Sample
from wattlab.meters.timeline import Timeline
from wattlab.sessions import commit
from wattlab.sessions.schema import SCHEMA_VERSION, current_version
from wattlab.sessions.spool import Spool
from wattlab.sessions.store import Store


def _result(session_id: str, run_id: str, status: str = "finished") -> dict:
    return {
        "run_id": run_id,
        "session_id": session_id,
        "status": status,
        "engine": "llamacpp",
        "model": "m",
        "batch_size": 2,
        "energy_j": 12.5,
        "energy_method": "counter",
        "started_at": "2026-11-22T10:00:00",
        "energy": [
            {
                "window_name": "measured",
                "domain_id": "gpu0",
                "energy_j": 12.5,
                "method": "counter",
                "coverage": 1.0,
                "gaps": 0,
                "flags": "",
            }
        ],
        "requests_detail": [
            {
                "request_id": 0,
                "input_tokens": 5,
                "output_tokens": 3,
                "token_ns": [1, 2, 3],
                "output_text": "hi",
            }
        ],
        "quality_detail": [{"task": "qa", "metric": "f1", "value": 0.5, "n": 4}],
    }


def test_schema_is_created_and_versioned(tmp_path: Path) -> None:
    store = Store(tmp_path / "w.duckdb")
    with store.writer() as con:
        assert current_version(con) == SCHEMA_VERSION
    _, rows = store.query("SELECT count(*) FROM runs")
    assert rows == [(0,)]


def test_write_run_is_idempotent_and_complete(tmp_path: Path) -> None:
    store = Store(tmp_path / "w.duckdb")
    with store.writer() as con:
        commit.write_session(
            con, {"session_id": "s1", "status": "running", "created_at": "2026-11-22T10:00:00"}
        )
        commit.write_run(con, _result("s1", "s1-001"))
        commit.write_run(con, _result("s1", "s1-001"))  # a retried commit replaces, never duplicates
    assert store.query("SELECT count(*) FROM runs")[1] == [(1,)]
    assert store.query("SELECT energy_j, method FROM run_energy")[1] == [(12.5, "counter")]
    assert store.query("SELECT token_ns, output_text FROM requests")[1] == [([1, 2, 3], "hi")]
    assert store.query("SELECT metric, value FROM quality")[1] == [("f1", 0.5)]
    row = store.query_dicts("SELECT result_json FROM runs")[0]
    assert json.loads(row["result_json"])["energy_j"] == 12.5


def test_timeline_items_are_stored_with_missing_readings_as_null(tmp_path: Path) -> None:
    store = Store(tmp_path / "w.duckdb")
    items = [
        {"t": 1, "d": "gpu0", "p": 80.0, "u": 5.0},
        {"t": 2, "d": "gpu0", "e": 1.5},
        {"t": 3, "d": "gpu0", "err": "NVMLError_Unknown"},
        {"t": 4, "m": "run_start", "r": "s1-001", "x": {"k": 1}},
    ]
    with store.writer() as con:
        commit.write_timeline_items(con, "s1", items)
    rows = store.query("SELECT t_ns, power_w, energy_j, util_pct, error FROM samples ORDER BY t_ns")[1]
    assert rows == [
        (1, 80.0, None, 5.0, None),
        (2, None, 1.5, None, None),
        (3, None, None, None, "NVMLError_Unknown"),
    ]
    assert store.query("SELECT run_id, name FROM marks")[1] == [("s1-001", "run_start")]


def test_reader_waits_for_a_lock_then_names_the_holder(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    Store(db).query("SELECT 1")  # create it
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import duckdb, time, sys
            con = duckdb.connect({str(db)!r})
            print("locked", flush=True)
            time.sleep(float(sys.argv[1]))
        """),
            "1.5",
        ],
        stdout=subprocess.PIPE,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == b"locked"
    start = time.monotonic()
    # A short timeout fails with a message naming the process ...
    with pytest.raises(StoreError, match="locked by process"), Store(db).reader(timeout_s=0.3):
        pass
    # ... and a longer one waits until the writer lets go.
    with Store(db).reader(timeout_s=10) as con:
        assert con.execute("SELECT 42").fetchone() == (42,)
    assert time.monotonic() - start >= 1.0
    holder.wait()


def test_recovery_ingests_a_dead_runners_spool(tmp_path: Path) -> None:
    store = Store(tmp_path / "w.duckdb")
    spool = Spool("s-dead", root=tmp_path / "spool")
    spool.create({"session_id": "s-dead", "kind": "sweep", "created_at": "2026-11-22T10:00:00"})
    tl = Timeline([Domain("gpu0", "gpu", "fake", "GPU 0", "gpu:0", has_counter=True)])
    spool.timeline_item(tl.header())
    tl.subscribe(spool.timeline_item)
    for i in range(5):
        tl.add(Sample(t_ns=i * 100_000_000, domain="gpu0", power_w=100.0 + i))
    tl.mark("run_start", run_id="s-dead-001", t_ns=50_000_000)
    spool.event(
        "run_start",
        run_id="s-dead-001",
        row={"run_id": "s-dead-001", "session_id": "s-dead", "engine": "llamacpp"},
    )
    spool.event("run_end", result=_result("s-dead", "s-dead-000"))
    spool.close()
    # The runner "died": a pid that cannot be alive.
    (spool.dir / "runner.json").write_text(json.dumps({"pid": 2**22 + 12345, "create_time": 1.0}))
    with open(spool.timeline_path, "a") as f:
        f.write('{"t": 999, "d": "gpu0", "p": 1')  # a torn last line from the crash

    done = commit.recover(store, tmp_path / "spool")
    assert [d["session_id"] for d in done] == ["s-dead"]
    assert spool.committed
    runs = dict(store.query("SELECT run_id, status FROM runs")[1])
    assert runs == {"s-dead-000": "finished", "s-dead-001": "interrupted"}
    assert store.query("SELECT count(*) FROM samples")[1] == [(5,)]
    assert store.query("SELECT status FROM sessions")[1] == [("interrupted",)]
    # Recovering again finds nothing to do; ingesting again would not duplicate.
    assert commit.recover(store, tmp_path / "spool") == []
    commit.ingest_spool(store, spool)
    assert store.query("SELECT count(*) FROM samples")[1] == [(5,)]


def test_a_corrupt_database_file_gets_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.duckdb"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError) as err:
        Store(bad).query("SELECT 1")
    assert err.value.fix
