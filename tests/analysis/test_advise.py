"""SLO-aware advice (`wattlab advise`): the best configuration per bin, its goodput and J per
SLO-meeting request, the next-best's extra cost, ML.ENERGY's unstable rule (with its cascade), the
quality bound, the CLI (text within 80 columns, --json, bad input) and the report's table.

A small DuckDB built with commit.write_run, with per-request rows whose times are chosen so every
expected figure is worked out by hand below; no engine."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from wattlab.analysis import advise as adv
from wattlab.cli import main
from wattlab.errors import ConfigError
from wattlab.sessions import commit
from wattlab.sessions.store import Store

SID = "s-adv"
NS = 1_000_000_000
OUT = 16  # output tokens per request: TPOT = decode span / 15


def _req(i: int, arrival: float, first: float, end: float, service: float | None = None) -> dict[str, Any]:
    """One request (times in s): TTFT = first - arrival, E2E = end - arrival."""
    return {
        "request_id": i,
        "input_tokens": 128,
        "output_tokens": OUT,
        "arrival_ns": int(arrival * NS),
        "first_token_ns": int(first * NS),
        "end_ns": int(end * NS),
        "ttft_s": first - arrival,
        "ttft_service_s": service,
        "tpot_s": (end - first) / (OUT - 1),
        "e2e_s": end - arrival,
    }


def _two_batches(batch: int, ttft: list[float]) -> list[dict[str, Any]]:
    """2 x `batch` requests in two static batches: decoding 1-11 s and 11-21 s (steady state 20 s,
    the batch full throughout). Request i has TTFT ttft[i]; E2E = 10 s + its TTFT."""
    out = []
    for i, t in enumerate(ttft):
        first = 1.0 if i < batch else 11.0
        out.append(_req(i, first - t, first, first + 10.0))
    return out


def _run(seq: int, engine: str, quant: str, bs: int, energy: float, reqs: list[dict[str, Any]], **kw: Any):
    row = {
        "run_id": f"{SID}-{seq:03d}",
        "session_id": SID,
        "seq": seq,
        "status": "finished",
        "engine": engine,
        "model": "m-1b",
        "quant": quant,
        "device": "cuda",
        "batch_size": bs,
        "mode": "offline",
        "workload": "synthetic",
        "input_tokens": 128,
        "output_tokens": OUT,
        "decoding": "greedy",
        "energy_j": energy,
        "energy_method": "counter",
        "duration_s": 21.0,
        "ttft_basis": "client",
        "requests_detail": reqs,
        "spec_json": {"options": {}},
    }
    row.update(kw)
    return row


# A: vllm bs4, every TTFT 0.5 s, E2E 10.5 s; 84 J over 21 s.
A = _run(
    1,
    "vllm",
    "bf16",
    4,
    84.0,
    _two_batches(4, [0.5] * 8),
    quality_detail=[{"task": "t", "metric": "exact_match", "value": 0.30, "n": 10}],
)
# B: vllm bs8, one batch decoding 1-13 s (steady 12 s); two TTFTs of 3 s -> p90 TTFT 3 s.
B = _run(
    2, "vllm", "bf16", 8, 50.0, [_req(i, 1.0 - t, 1.0, 13.0) for i, t in enumerate([0.5] * 6 + [3.0] * 2)]
)
# C: transformers fp32 bs4, one TTFT of 1.5 s: p90 TTFT = 0.5 + 0.3 * 1.0 = 0.8 s (meets 1 s), but
# that request is not an SLO request: 7 of 8 count. 140 J.
C = _run(
    3,
    "transformers",
    "fp32",
    4,
    140.0,
    _two_batches(4, [0.5] * 7 + [1.5]),
    quality_detail=[{"task": "t", "metric": "exact_match", "value": 0.50, "n": 10}],
)
# D: llamacpp bs2, 4 requests one at a time (5 s each): steady state 1-21 s with 1 decoding of the 2
# allowed: the batch never filled, unstable. 10 J for 4 requests, each TTFT 0.5 s and E2E 5.5 s.
D = _run(
    4,
    "llamacpp",
    "q4_0",
    2,
    10.0,
    [_req(i, 0.5 + 5 * i, 1.0 + 5 * i, 6.0 + 5 * i) for i in range(4)],
)
# E: llamacpp bs4, stable by itself (A's timings), but D's batch (same settings, smaller) never filled.
E = _run(5, "llamacpp", "q4_0", 4, 12.0, _two_batches(4, [0.5] * 8))
# F: vllm bs16, 4 requests, at most 2 decoding at once over a 20 s steady state: the batch never fills.
F = _run(
    6,
    "vllm",
    "bf16",
    16,
    1.0,
    [_req(0, 0.5, 1, 21), _req(1, 0.5, 1, 21), _req(2, 20.5, 21, 22), _req(3, 21.5, 22, 23)],
)
RUNS = [A, B, C, D, E, F]
BOUNDS = ["--ttft-p90", "1", "--e2e-p99", "12"]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built once; tests only read it (one that writes works on a copy)."""
    path = tmp_path_factory.mktemp("advise") / "w.duckdb"
    with Store(path).writer() as con:
        commit.write_session(
            con, {"session_id": SID, "created_at": "2025-01-01", "status": "finished", "kind": "sweep"}
        )
        for r in RUNS:
            commit.write_run(con, r)
    return path


def _advice(db: Path, slo: adv.Slo, **kw: Any) -> adv.Advice:
    with Store(db).reader() as con:
        return adv.advise(con, SID, slo, **kw)


def _by_run(b: adv.BinAdvice) -> dict[str, adv.ConfigAdvice]:
    return {a.run_ids[0][-3:]: a for a in b.all}


def test_best_goodput_and_energy_per_slo_request_by_hand(db: Path) -> None:
    (b,) = _advice(db, adv.make_slo(ttft_p90=1.0, e2e_p99=12.0)).bins
    assert b.best is not None and b.next_best is not None
    assert b.best.run_ids == [f"{SID}-001"]  # A
    assert b.best.slo_requests == 8 and b.best.goodput_rps == pytest.approx(8 / 21)
    assert b.best.j_per_slo_request == pytest.approx(84 / 8)
    assert b.best.ttft_p90_s == pytest.approx(0.5) and b.best.e2e_p99_s == pytest.approx(10.5)
    # C: p90 TTFT 0.8 s meets the bound, but its 1.5 s request does not count.
    assert b.next_best.run_ids == [f"{SID}-003"]
    assert b.next_best.ttft_p90_s == pytest.approx(0.8)
    assert b.next_best.slo_requests == 7 and b.next_best.attainment == pytest.approx(7 / 8)
    assert b.next_best.goodput_rps == pytest.approx(7 / 21)
    assert b.next_best.j_per_slo_request == pytest.approx(20.0)
    assert b.next_extra_pct == pytest.approx((20.0 - 10.5) / 10.5 * 100)
    runs = _by_run(b)
    # B: decoding 1-13 s, so E2E 12.5 s and 15 s: every request misses too
    assert runs["002"].misses == [
        "ttft_p90 3 s > 1 s",
        "e2e_p99 15 s > 12 s",
        "no request met the latency bounds",
    ]
    assert b.meeting == 2 and b.unstable_left_out == 3  # D, E (cascade), F


def test_ml_energy_unstable_rule_and_its_cascade(db: Path) -> None:
    runs = _by_run(_advice(db, adv.Slo()).bins[0])
    assert not runs["001"].unstable and runs["001"].steady_s == [pytest.approx(20.0)]
    assert runs["001"].batch_fill == [pytest.approx(1.0)]
    assert not runs["002"].unstable and runs["002"].steady_s == [pytest.approx(12.0)]
    d = runs["004"]  # 1 decoding of the 2 allowed, over a 20 s steady state
    assert d.unstable and d.steady_s == [pytest.approx(20.0)] and d.batch_fill == [pytest.approx(0.5)]
    assert "batch never filled: 1 of 2 decoding on average (50% < 90%)" in d.unstable_reasons[0]
    assert runs["005"].unstable_reasons == [
        "batch 4 > batch 2, which never filled with the same settings (cascade)"
    ]
    f = runs["006"]  # 2 decoding on average of the 4 it allowed (min(batch 16, 4 requests))
    assert (
        f.unstable and f.batch_fill == [pytest.approx(0.5)] and "batch never filled" in f.unstable_reasons[0]
    )
    # A longer minimum steady state makes B (12 s) unstable; a short run does not cascade to larger
    # batches (F, bs16, keeps only its own reason).
    strict = _by_run(_advice(db, adv.Slo(), min_steady_s=15.0).bins[0])
    assert strict["002"].unstable_reasons == [f"{SID}-002: steady state 12 s < 15 s"]
    assert not any("cascade" in r for r in strict["006"].unstable_reasons)
    assert not strict["001"].unstable  # A: 20 s


def test_unstable_runs_are_used_only_when_asked(db: Path) -> None:
    slo = adv.make_slo(ttft_p90=1.0, e2e_p99=12.0)
    (b,) = _advice(db, slo, include_unstable=True).bins
    # E (cascaded): 12 J / 8; D: 10 J / 4; F is cheaper still but its 20.5 s E2E misses 12 s.
    assert b.best is not None and b.best.run_ids == [f"{SID}-005"] and b.best.unstable
    assert b.best.j_per_slo_request == pytest.approx(1.5)
    assert b.next_best is not None and b.next_best.run_ids == [f"{SID}-004"]
    assert b.next_extra_pct == pytest.approx((2.5 - 1.5) / 1.5 * 100)
    assert "e2e_p99 20.5 s > 12 s" in _by_run(b)["006"].misses
    assert b.unstable_left_out == 0


def test_quality_bound_from_the_quality_table(db: Path) -> None:
    (b,) = _advice(db, adv.make_slo(ttft_p90=1.0, min_quality=["exact_match=0.4"])).bins
    assert b.best is not None and b.best.run_ids == [f"{SID}-003"] and b.best.quality == {"exact_match": 0.5}
    assert b.next_best is None and b.next_extra_pct is None
    assert _by_run(b)["001"].misses == ["exact_match 0.3 < 0.4"]
    assert _by_run(b)["002"].misses[-1] == "no exact_match measured"


def test_service_ttft_is_used_where_it_is_the_runs_headline(tmp_path: Path) -> None:
    reqs = [_req(i, 0.0, 1.0 if i < 4 else 11.0, 11.0 if i < 4 else 21.0, service=0.2) for i in range(8)]
    path = tmp_path / "s.duckdb"
    with Store(path).writer() as con:
        commit.write_session(con, {"session_id": SID, "created_at": "2025-01-01", "status": "finished"})
        commit.write_run(con, _run(1, "vllm", "bf16", 4, 80.0, reqs, ttft_basis="service"))
    (b,) = _advice(path, adv.make_slo(ttft_p90=0.5)).bins  # client TTFT is 1 or 11 s, service 0.2 s
    assert b.best is not None and b.best.ttft_p90_s == pytest.approx(0.2) and b.best.slo_requests == 8


def test_steady_state_and_its_mean_batch() -> None:
    s = 1_000
    assert adv.steady_state([(0, 10 * s), (5 * s, 15 * s)]) == (5 * s, 10 * s, 2.0)
    # 2 decoding, then a gap with 1, then 2 again: the dip is inside the steady state.
    start, end, mean = adv.steady_state([(0, 10 * s), (0, 4 * s), (6 * s, 10 * s)]) or (0, 0, 0.0)
    assert (start, end) == (0, 10 * s) and mean == pytest.approx((2 * 4 + 1 * 2 + 2 * 4) / 10)
    assert adv.steady_state([(0, 10)]) == (0, 10, 1.0)  # one request: its whole decode
    assert adv.steady_state([(5, 5)]) is None  # nothing decoded over time


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ttft_p90<=0", "positive"),
        ("ttft_p90>=0.5", "upper bound"),
        ("exact_match<=0.5", "bounded with >="),
        ("ttft_p90 0.5", "is not NAME<=VALUE"),
    ],
)
def test_filter_text_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        adv.parse_slo(text)


def test_filter_text() -> None:
    slo = adv.parse_slo("ttft_p90<=0.5, tpot_p90<=0.05 e2e_p99<=2 exact_match>=0.3 perplexity<=20")
    assert slo.terms() == [
        "ttft_p90<=0.5",
        "tpot_p90<=0.05",
        "e2e_p99<=2",
        "exact_match>=0.3",
        "perplexity<=20",
    ]


def test_run_condition_greys_runs_on_their_stored_figures(db: Path, tmp_path: Path) -> None:
    db = Path(shutil.copy(db, tmp_path / "copy.duckdb"))
    with Store(db).writer() as con:  # the stored percentile columns, as the runner writes them
        con.execute("UPDATE runs SET ttft_p90_s = 0.5, j_per_token = energy_j / 100, e2e_p50_s = 10")
        con.execute(f"UPDATE runs SET ttft_p90_s = 3 WHERE run_id = '{SID}-002'")
    with Store(db).reader() as con:
        points, ids = adv.runs_missing(con, adv.parse_slo("ttft_p90<=1"), "j_per_token", "e2e_p50_s")
        assert ids == {f"{SID}-002"} and points == [("vllm", 0.5, 10.0)]
        _, ids = adv.runs_missing(con, adv.parse_slo("exact_match>=0.4"), "j_per_token", "e2e_p50_s", SID)
        assert ids == {f"{SID}-{i:03d}" for i in (1, 2, 4, 5, 6)}  # only C has exact_match >= 0.4


# --- CLI -----------------------------------------------------------------------------------------------
def test_cli_json(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["advise", SID, "--db", str(db), *BOUNDS, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["slo"]["terms"] == ["ttft_p90<=1", "e2e_p99<=12"]
    (b,) = data["bins"]
    assert b["label"] == "m-1b · 128in/16out · offline"
    assert b["best"]["run_ids"] == [f"{SID}-001"] and b["best"]["j_per_slo_request"] == pytest.approx(10.5)
    assert b["best"]["goodput_rps"] == pytest.approx(8 / 21)
    assert b["next_extra_pct"] == pytest.approx(90.476, abs=1e-3)
    assert "ML.ENERGY" in data["definitions"]["unstable"]


def test_cli_text_fits_80_columns_and_keeps_run_ids_whole(db: Path) -> None:
    from wattlab.cli_advise import render

    advice = _advice(db, adv.make_slo(ttft_p90=1.0, e2e_p99=12.0))
    buf = io.StringIO()
    console = Console(file=buf, width=80, highlight=False)
    for r in render(advice):
        console.print(r)
    text = buf.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert f"{SID}-001" in text and f"{SID}-003" in text
    assert "10.5 counter" in text and "+90.5%" in text and "88%" in text  # C met 7 of 8
    assert "3 unstable left out" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nope"], "no session with an id starting 'nope'"),
        ([SID, "--ttft-p90", "0"], "--ttft-p90 must be a positive number"),
        ([SID, "--e2e-p99", "-1"], "--e2e-p99 must be a positive number"),
        ([SID, "--min-quality", "bleu=0.2"], "has no quality metric 'bleu'"),
        ([SID, "--min-quality", "exact_match"], "is not METRIC=VALUE"),
    ],
)
def test_cli_bad_input(db: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["advise", "--db", str(db), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "fix:" in err and "Traceback" not in err


def test_report_has_the_slo_advice_table(db: Path, tmp_path: Path) -> None:
    from wattlab.analysis.report import write_report

    write_report(Store(db), SID, tmp_path / "r", slo=adv.make_slo(ttft_p90=1.0, e2e_p99=12.0))
    md = (tmp_path / "r" / "report.md").read_text()
    section = md.split("## SLO advice")[1].split("\n## ")[0]
    assert "ttft_p90<=1, e2e_p99<=12" in section
    row = next(line for line in section.splitlines() if line.startswith("| m-1b"))
    assert f"{SID}-001" in row and "10.5 (counter)" in row and "+90.5%" in row
