"""The one guarded path for a user's SQL (`wattlab sql`, the console's SQL screen): read statements
only, no file access, so the query box can never write, read or delete a file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from wattlab.analysis.readonly_sql import run_read_query
from wattlab.app import data
from wattlab.errors import StoreError
from wattlab.sessions import commit
from wattlab.sessions.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "lab.duckdb")
    with s.writer() as con:
        commit.write_session(
            con,
            {"session_id": "s1", "name": "t", "kind": "sweep", "status": "finished", "runs_planned": 2},
        )
        for seq, engine in ((1, "llamacpp"), (2, "vllm")):
            commit.write_run(
                con,
                {
                    "run_id": f"s1-{seq:03d}",
                    "session_id": "s1",
                    "seq": seq,
                    "status": "finished",
                    "engine": engine,
                    "model": "m",
                    "batch_size": seq,
                    "j_per_token": 0.1 * seq,
                },
            )
    return s


@pytest.fixture
def other_db(tmp_path: Path) -> Path:
    """Another wattlab database next to the one queried: the file COPY ... TO 'other.duckdb' hit."""
    path = tmp_path / "other.duckdb"
    with Store(path).writer():
        pass
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _refusals(other: Path, target: Path) -> list[str]:
    return [
        f"COPY (SELECT 1 AS x) TO '{other}' (FORMAT csv)",
        f"COPY runs TO '{target}'",
        f"EXPORT DATABASE '{target.parent / 'dump'}'",
        f"ATTACH '{other}' AS other",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/hostname')",
        "SELECT * FROM glob('/etc/*')",
        f"SELECT * FROM '{other}'",
        "DELETE FROM runs",
        "CREATE TEMP TABLE t AS SELECT 1",
        "SET enable_external_access = true",
        "PRAGMA show_tables",
        "CALL pragma_version()",
        "SELECT 1; SELECT 2",
    ]


def test_every_file_touching_statement_is_refused_and_no_file_changes(
    store: Store, other_db: Path, tmp_path: Path
) -> None:
    target = tmp_path / "x.csv"
    before = _digest(other_db)
    for sql in _refusals(other_db, target):
        with pytest.raises(StoreError) as err:
            run_read_query(store, sql)
        assert err.value.fix, sql  # one message with its fix, for the CLI and the screen alike
        assert "\n" not in err.value.message, sql
    assert _digest(other_db) == before  # byte for byte
    assert not target.exists()
    assert not (tmp_path / "dump").exists()


def test_refusals_name_the_statement_and_point_at_export(store: Store, tmp_path: Path) -> None:
    with pytest.raises(StoreError) as err:
        run_read_query(store, f"COPY runs TO '{tmp_path / 'x.csv'}'")
    assert "COPY" in err.value.message and err.value.title == "Query refused"
    assert "wattlab export" in (err.value.fix or "")
    with pytest.raises(StoreError) as err:
        run_read_query(store, "SELECT count(*) FROM read_csv('/etc/passwd')")
    assert "cannot touch files" in err.value.message
    with pytest.raises(StoreError) as err:
        run_read_query(store, "SELECT 1; SELECT 2")
    assert "one query" in err.value.message


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT engine FROM runs ORDER BY engine", [("llamacpp",), ("vllm",)]),
        ("WITH r AS (SELECT * FROM runs) SELECT count(*) FROM r;", [(2,)]),
        ("FROM runs SELECT max(batch_size)", [(2,)]),
        ("VALUES (1), (2)", [(1,), (2,)]),
        ("SELECT engine FROM runs WHERE batch_size = 2 -- a trailing comment", [("vllm",)]),
    ],
)
def test_ordinary_reads_work(store: Store, sql: str, expected: list[tuple]) -> None:
    assert run_read_query(store, sql).rows == expected


def test_show_describe_and_row_bound(store: Store) -> None:
    tables = {r[0] for r in run_read_query(store, "SHOW TABLES").rows}
    assert {"runs", "sessions", "samples"} <= tables
    assert "run_id" in {r[0] for r in run_read_query(store, "DESCRIBE runs").rows}
    bounded = run_read_query(store, "SELECT * FROM range(10)", max_rows=3)
    assert bounded.rows == [(0,), (1,), (2,)] and bounded.truncated
    assert not run_read_query(store, "SELECT * FROM range(3)", max_rows=3).truncated


def test_errors_are_one_line_with_a_fix(store: Store) -> None:
    with pytest.raises(StoreError) as err:
        run_read_query(store, "SELEC 1")
    assert err.value.message.startswith("Parser Error") and err.value.fix
    with pytest.raises(StoreError, match="empty"):
        run_read_query(store, "  -- only a comment\n")


def test_the_console_and_the_cli_share_the_guard(store: Store, other_db: Path) -> None:
    """The SQL screen's data function goes through the same guard (and stays bounded)."""
    before = _digest(other_db)
    with pytest.raises(StoreError, match="COPY"):
        data.sql(store, f"COPY (SELECT 1 AS x) TO '{other_db}' (FORMAT csv)")
    assert _digest(other_db) == before
    assert data.sql(store, "SELECT * FROM runs", max_rows=1)["truncated"]


def test_a_reader_already_open_in_this_process_does_not_block_the_guard(store: Store) -> None:
    """DuckDB refuses a second connection to one file with another config; the guard must not."""
    with store.reader() as con:
        assert con.execute("SELECT count(*) FROM runs").fetchone() == (2,)
        assert run_read_query(store, "SELECT count(*) FROM runs").rows == [(2,)]
    # ...and the guard's settings did not leak into ordinary connections (export still works).
    with store.reader() as con:
        assert con.execute("SELECT current_setting('enable_external_access')").fetchone() == (True,)


def test_missing_database_is_created_empty(tmp_path: Path) -> None:
    store = Store(tmp_path / "new.duckdb")
    assert run_read_query(store, "SELECT count(*) FROM runs").rows == [(0,)]
    assert store.path.exists()
