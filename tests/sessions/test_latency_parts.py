"""Latency in its parts: queue time (arrival -> scheduled), service TTFT (scheduled -> first token)
and client TTFT (arrival -> first token), on hand-made completions, the fake engine, the runner and an
older database's migration. Real engines' scheduled times: tests/engines/test_latency_scheduled.py."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from wattlab.engines.base import Completion, Decoding, EngineConfig, Request
from wattlab.engines.fake import FakeEngine, tokenize
from wattlab.sessions import figures
from wattlab.sessions.events import run_line
from wattlab.sessions.runner import Runner
from wattlab.sessions.schema import MIGRATIONS, SCHEMA_VERSION, migrate
from wattlab.sessions.spec import parse_sweep
from wattlab.sessions.store import Store

S = 1_000_000_000


def _c(i: int, arrival: float, scheduled: float | None, first: float, end: float) -> Completion:
    return Completion(
        id=i,
        input_tokens=4,
        output_ids=[1, 2],
        arrival_ns=int(arrival * S),
        start_ns=int((scheduled if scheduled is not None else arrival) * S),
        scheduled_ns=int(scheduled * S) if scheduled is not None else None,
        first_token_ns=int(first * S),
        end_ns=int(end * S),
        token_ns=[int(first * S), int(end * S)],
    )


# --- figures on synthetic completions ---------------------------------------------------------------
def test_offline_headline_is_the_service_ttft_and_client_is_queue_plus_service() -> None:
    # Batch-1 offline: three requests submitted at 0, served one after the other, 0.1 s to first token.
    cs = [_c(0, 1.0, 1.0, 1.1, 2.0), _c(1, 1.0, 2.0, 2.1, 3.0), _c(2, 1.0, 3.0, 3.1, 4.0)]
    f = figures.latency_figures(cs, 1 * S, 4 * S)
    assert f["ttft_basis"] == "service"
    assert f["ttft_service_p50_s"] == pytest.approx(0.1) and f["ttft_service_p99_s"] == pytest.approx(0.1)
    assert f["ttft_p50_s"] == f["ttft_service_p50_s"] and f["ttft_mean_s"] == f["ttft_service_mean_s"]
    assert f["queue_p50_s"] == pytest.approx(1.0) and f["queue_mean_s"] == pytest.approx(1.0)
    assert f["queue_p90_s"] == pytest.approx(1.8)  # queues 0, 1, 2 s: linear interpolation
    assert f["ttft_client_p50_s"] == pytest.approx(1.1)  # = queue + service, per request
    assert f["e2e_p50_s"] == pytest.approx(2.0)  # E2E stays from arrival


def test_online_headline_is_the_client_ttft() -> None:
    cs = [_c(0, 1.0, 1.2, 1.5, 2.0), _c(1, 2.0, 2.0, 2.3, 3.0)]
    f = figures.latency_figures(cs, 1 * S, 3 * S, online=True)
    assert f["ttft_basis"] == "client"
    assert f["ttft_p50_s"] == f["ttft_client_p50_s"] == pytest.approx(0.4)
    assert f["ttft_service_p50_s"] == pytest.approx(0.3) and f["queue_p50_s"] == pytest.approx(0.1)


def test_an_engine_that_cannot_tell_leaves_service_and_queue_empty() -> None:
    # The OpenAI client: no scheduled time, so even offline the headline is the client TTFT.
    cs = [_c(0, 1.0, None, 1.5, 2.0), _c(1, 1.0, None, 1.7, 2.0)]
    f = figures.latency_figures(cs, 1 * S, 2 * S)
    assert f["ttft_basis"] == "client" and f["ttft_p50_s"] == pytest.approx(0.6)
    assert f["ttft_service_p50_s"] is None and f["queue_p50_s"] is None
    # A mix (one request without) is not headlined as service either: the headline means one thing.
    mixed = figures.latency_figures([_c(0, 1.0, 1.0, 1.5, 2.0), cs[1]], 1 * S, 2 * S)
    assert mixed["ttft_basis"] == "client" and mixed["ttft_service_p50_s"] == pytest.approx(0.5)


def test_no_first_token_means_no_basis() -> None:
    failed = Completion(id=0, input_tokens=3, error="empty prompt", end_ns=S)
    f = figures.latency_figures([failed], 0, S)
    assert f["ttft_basis"] is None and f["ttft_p50_s"] is None and f["queue_p50_s"] is None


# --- the fake engine --------------------------------------------------------------------------------
def _fake(**options: float) -> FakeEngine:
    config = EngineConfig("fake", "fake:latency", "", "random", "fp32", "cpu", max_batch=4, options=options)
    engine = FakeEngine(config)
    engine.load()
    return engine


def test_fake_offline_batch_1_queue_grows_while_service_ttft_stays() -> None:
    engine = _fake(tok_s=1000.0, prefill_tok_s=4000.0, load_s=0.0)
    prompt = tuple(tokenize(" the energy of a token is measured in joules" * 4))
    requests = [Request(i, prompt, 8, min_new_tokens=8) for i in range(8)]
    done = engine.generate(requests, Decoding(), batch_size=1)
    queues = [(c.scheduled_ns or 0) - c.arrival_ns for c in done]
    services = [(c.first_token_ns or 0) - (c.scheduled_ns or 0) for c in done]
    assert all(c.scheduled_ns is not None for c in done)
    assert queues[0] < 0.02 * S and queues == sorted(queues) and queues[-1] > queues[1] > queues[0]
    prefill = len(prompt) / 4000.0 * S
    assert all(abs(s - prefill) < 0.02 * S for s in services), services  # ~ one prefill each
    f = figures.latency_figures(done, done[0].arrival_ns, max(c.end_ns or 0 for c in done))
    assert f["ttft_basis"] == "service"
    assert f["ttft_client_p50_s"] > 3 * f["ttft_service_p50_s"]  # the client TTFT is mostly queueing


def test_fake_online_at_a_low_rate_queues_nothing() -> None:
    engine = _fake(tok_s=1000.0, prefill_tok_s=20000.0, load_s=0.0)
    prompt = tuple(tokenize(" the energy"))
    requests = [Request(i, prompt, 4, arrival_s=0.08 * i) for i in range(4)]
    done = engine.generate_online(requests, Decoding(), max_concurrency=2)
    f = figures.latency_figures(done, done[0].arrival_ns, max(c.end_ns or 0 for c in done), online=True)
    assert f["ttft_basis"] == "client"
    assert f["queue_p99_s"] is not None and 0 <= f["queue_p99_s"] < 0.03
    assert f["ttft_client_p50_s"] == pytest.approx(f["ttft_service_p50_s"], abs=0.03)


# --- the runner and the database --------------------------------------------------------------------
def test_runner_stores_the_parts_per_run_and_per_request(tmp_path: Path) -> None:
    toml = """
[session]
idle_s = 0.1
meters = "estimate"

[defaults]
engine = "fake"
model = "fake:latency"
input_tokens = 32
output_tokens = 4
requests = 4
batch_size = 1
warmup_requests = 0
options = {tok_s = 1000, prefill_tok_s = 4000}

[[runs]]
"""
    store = Store(tmp_path / "w.duckdb")
    Runner(parse_sweep(toml), store=store).run()
    run = store.query_dicts("SELECT * FROM runs")[0]
    assert run["status"] == "finished" and run["ttft_basis"] == "service"
    assert run["ttft_p50_s"] == run["ttft_service_p50_s"]
    assert run["queue_p90_s"] > run["queue_p50_s"] >= 0
    assert run["ttft_client_p50_s"] > run["ttft_service_p50_s"]
    rows = store.query_dicts(
        "SELECT arrival_ns, scheduled_ns, first_token_ns, queue_s, ttft_s, ttft_service_s FROM requests "
        "ORDER BY request_id"
    )
    assert len(rows) == 4
    for r in rows:
        assert r["arrival_ns"] <= r["scheduled_ns"] <= r["first_token_ns"]
        assert r["queue_s"] == pytest.approx((r["scheduled_ns"] - r["arrival_ns"]) / S)
        assert r["ttft_s"] == pytest.approx(r["queue_s"] + r["ttft_service_s"])
    assert "TTFT p50" in run_line(run) and "service" in run_line(run) and "queue p50" in run_line(run)


def test_migrating_an_older_database_adds_the_columns_and_labels_old_ttft_client(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    for statements in MIGRATIONS[:3]:  # a version-3 database, as the previous wattlab left it
        for statement in statements:
            con.execute(statement)
    con.execute("INSERT INTO schema_version VALUES (3)")
    con.execute("INSERT INTO runs (run_id, ttft_p50_s, ttft_p90_s) VALUES ('old-001', 1.5, 2.5)")
    con.execute("INSERT INTO runs (run_id) VALUES ('old-002')")  # failed: no TTFT, no basis
    assert migrate(con) == 3
    row = con.execute(
        "SELECT ttft_basis, ttft_client_p50_s, ttft_client_p90_s, ttft_service_p50_s, queue_p50_s "
        "FROM runs ORDER BY run_id"
    ).fetchall()
    assert row == [("client", 1.5, 2.5, None, None), (None, None, None, None, None)]
    columns = {r[0] for r in con.execute("DESCRIBE requests").fetchall()}
    assert {"scheduled_ns", "queue_s", "ttft_service_s"} <= columns
    assert con.execute("SELECT max(version) FROM schema_version").fetchone() == (SCHEMA_VERSION,)
    con.close()
