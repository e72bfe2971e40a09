"""RunResult: its column fields are the runs table's columns, unknown names are refused (building it,
inserting rows), it survives the spool, and a fake-engine run's committed row is its RunResult."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import typing
from pathlib import Path
from typing import Any

import duckdb
import pytest

from wattlab.analysis.queries import get_run
from wattlab.errors import StoreError
from wattlab.sessions import commit, result
from wattlab.sessions.result import COLUMNS, DETAIL_FIELDS, EXTRA_FIELDS, FIELDS, RunResult
from wattlab.sessions.runner import Runner
from wattlab.sessions.schema import migrate
from wattlab.sessions.spec import parse_sweep
from wattlab.sessions.spool import Spool
from wattlab.sessions.store import Store

# The Python types a DuckDB column type reads back as (TIMESTAMP: an ISO string while live).
_TYPES: dict[str, set[Any]] = {
    "VARCHAR": {str},
    "INTEGER": {int},
    "BIGINT": {int},
    "DOUBLE": {float},
    "BOOLEAN": {bool},
    "TIMESTAMP": {str, dt.datetime},
    "JSON": {Any},
}


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    c = duckdb.connect()
    migrate(c)
    return c


def _schema(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    return {r[0]: r[1] for r in con.execute(f"DESCRIBE {table}").fetchall()}


def _sample() -> RunResult:
    return RunResult(
        run_id="s1-001",
        session_id="s1",
        seq=1,
        status="finished",
        started_at="2026-01-02T03:04:05.123456",
        engine="fake",
        model="m",
        batch_size=4,
        worker_reused=False,
        energy_j=12.5,
        tokens_out=100,
        spec_json={"engine": "fake", "options": {"tok_s": 200.0}},
        energy=[{"window_name": "measured", "domain_id": "gpu0", "energy_j": 12.5, "method": "counter"}],
        requests_detail=[{"request_id": 0, "output_tokens": 100, "token_ns": [1, 2, 3]}],
        quality_detail=[{"task": "t", "metric": "accuracy", "value": 0.5, "n": 2}],
        quality_metrics={"accuracy": 0.5},
        green_index_inputs={"formula": "x", "dropped": [], "weights": {"q": 1.0}, "reference": "unit"},
    )


# --- the fields are the schema ----------------------------------------------------------------------
def test_column_fields_are_exactly_the_runs_columns_with_their_types(con: duckdb.DuckDBPyConnection) -> None:
    schema = _schema(con, "runs")
    assert list(COLUMNS) == list(schema), "RunResult's column fields and the runs table differ"
    hints = typing.get_type_hints(RunResult)
    for name, sql_type in schema.items():
        allowed = {a for a in typing.get_args(hints[name]) if a is not type(None)} or {hints[name]}
        if name in ("run_id", "session_id"):
            allowed = {hints[name]}
        assert allowed == _TYPES[sql_type], (name, sql_type, hints[name])


def test_detail_and_extra_fields_are_not_runs_columns_and_fit_their_tables(
    con: duckdb.DuckDBPyConnection,
) -> None:
    assert set(FIELDS) == set(COLUMNS) | set(DETAIL_FIELDS) | set(EXTRA_FIELDS)
    assert not (set(DETAIL_FIELDS) | set(EXTRA_FIELDS)) & set(_schema(con, "runs"))
    for table, rows in _sample().detail_rows().items():
        assert table in DETAIL_FIELDS.values()
        for row in rows:
            assert set(row) <= set(_schema(con, table)), table


# --- unknown names are refused -----------------------------------------------------------------------
def test_an_unknown_name_is_refused_when_building_or_copying() -> None:
    with pytest.raises(StoreError, match="'energy_kwh'"):
        RunResult.from_dict({"run_id": "r", "session_id": "s", "energy_kwh": 1.0})
    with pytest.raises(StoreError, match="'tokns_out'"):
        _sample().replace(tokns_out=3)
    with pytest.raises(TypeError):
        RunResult(run_id="r", session_id="s", energy_kwh=1.0)  # type: ignore[call-arg]
    with pytest.raises(dataclasses.FrozenInstanceError):
        _sample().energy_j = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    "table", ["sessions", "domains", "runs", "run_energy", "requests", "quality", "samples", "marks"]
)
def test_insert_refuses_a_key_that_is_not_a_column_naming_table_and_key(
    con: duckdb.DuckDBPyConnection, table: str
) -> None:
    with pytest.raises(StoreError) as err:
        commit._insert_dicts(con, table, [{"session_id": "s1", "not_a_column": 1}])
    assert table in err.value.message and "'not_a_column'" in err.value.message
    assert con.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)


def test_write_run_refuses_an_unknown_key_of_a_plain_mapping(con: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(StoreError, match="'energy_kwh'"):
        commit.write_run(con, {"run_id": "r", "session_id": "s", "energy_kwh": 1.0})
    energy = [{"window_name": "measured", "domain_id": "gpu0", "joules": 1.0}]
    with pytest.raises(StoreError, match=r"run_energy.*'joules'"):
        commit.write_run(con, RunResult(run_id="r", session_id="s", energy=energy))


# --- the spool -------------------------------------------------------------------------------------
def test_spool_round_trip(tmp_path: Path) -> None:
    run = _sample()
    spool = Spool("s1", tmp_path)
    spool.dir.mkdir(parents=True)
    spool.open()
    spool.event("run_end", result=run.as_dict())
    spool.close()
    (ev,) = list(spool.events())
    assert RunResult.from_spool(ev["result"]) == run


def test_from_spool_drops_only_retired_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """Documented tolerance: a spool an older wattlab wrote may carry a field since removed (listed
    in RETIRED_KEYS); any other unknown name is refused, naming it."""
    old = {**_sample().as_dict(), "tokens_per_s": 3.0}
    with pytest.raises(StoreError, match="'tokens_per_s'"):
        RunResult.from_spool(old)
    monkeypatch.setattr(result, "RETIRED_KEYS", frozenset({"tokens_per_s"}))
    assert RunResult.from_spool(old) == _sample()
    with pytest.raises(StoreError, match="'tokens_per_s'"):
        RunResult.from_dict(old)  # only the spool reader is tolerant


def test_database_round_trip_keeps_details_and_extras(con: duckdb.DuckDBPyConnection) -> None:
    run = _sample()
    commit.write_run(con, run)
    row = con.execute("SELECT * FROM runs").fetchdf().to_dict("records")[0]
    assert set(row) == set(COLUMNS)
    back = _get(con, run.run_id)
    assert back.quality_metrics == {"accuracy": 0.5} and back.green_index_inputs == run.green_index_inputs
    assert back.energy[0]["energy_j"] == 12.5 and back.quality_detail[0]["metric"] == "accuracy"
    assert back.spec_json == run.spec_json


def _get(con: duckdb.DuckDBPyConnection, run_id: str) -> RunResult:
    class One:
        def query(self, sql: str, params: list[Any] | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
            cur = con.execute(sql, params or [])
            return [d[0] for d in cur.description], cur.fetchall()

        def query_dicts(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
            cols, rows = self.query(sql, params)
            return [dict(zip(cols, r, strict=True)) for r in rows]

    return get_run(One(), run_id)  # type: ignore[arg-type]


# --- a real (fake-engine) run ------------------------------------------------------------------------
def _normal(name: str, value: Any) -> Any:
    """A column value as DuckDB gives it back."""
    if name in ("started_at", "ended_at") and isinstance(value, str):
        return dt.datetime.fromisoformat(value)
    if name in ("spec_json", "result_json"):
        return json.loads(value) if isinstance(value, str) else json.loads(json.dumps(value, default=str))
    return value


def test_a_fake_engine_runs_committed_row_equals_its_run_result(tmp_path: Path) -> None:
    sweep = parse_sweep(
        '[session]\nidle_s = 0.2\nmeters = "estimate"\n\n[[runs]]\nengine = "fake"\nmodel = "fake:result"\n'
        "input_tokens = 32\noutput_tokens = 30\nrequests = 2\nbatch_size = 2\nwarmup_requests = 0\n"
        "options = { tok_s = 200.0, prefill_tok_s = 2000.0 }\n"
    )
    store = Store(tmp_path / "w.duckdb")
    runner = Runner(sweep, store=store)
    (run,) = runner.run()
    assert isinstance(run, RunResult) and run.status == "finished" and run.energy and run.requests_detail

    def check() -> None:
        (stored,) = store.query_dicts("SELECT * FROM runs WHERE run_id = ?", [run.run_id])
        expected = run.to_row()
        assert set(stored) == set(expected)
        for name in COLUMNS:
            assert _normal(name, stored[name]) == _normal(name, expected[name]), name
        back = get_run(store, run.run_id)
        assert back.energy == _sorted_energy(run.energy)
        n = store.query("SELECT count(*) FROM requests WHERE run_id = ?", [run.run_id])[1][0][0]
        assert n == len(run.requests_detail)

    check()
    # Recovery rebuilds the same rows from the spool's as_dict() (from_spool).
    commit.ingest_spool(store, Spool(runner.session_id))
    check()


def _sorted_energy(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: (r["window_name"], r["domain_id"]))
