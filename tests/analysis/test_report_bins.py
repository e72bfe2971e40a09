"""`wattlab report` compares runs only within a workload bin (model, task or token lengths, mode,
online rate), names the greenest configuration per bin with its saving against the bin's baseline
(transformers fp32 batch 1 when present), and prints no exponent notation. Small DuckDBs built with
commit.write_run; no engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from wattlab.analysis import bins as binning
from wattlab.analysis.report import fmt_num, load_configs, write_report
from wattlab.sessions import commit
from wattlab.sessions.store import Store

SID = "s-bins"


def _run(seq: int, **kw: Any) -> dict[str, Any]:
    options = kw.pop("options", {})
    row = {
        "run_id": f"{SID}-{seq:03d}",
        "session_id": SID,
        "seq": seq,
        "status": "finished",
        "engine": "vllm",
        "model": "m-1b",
        "quant": "bf16",
        "device": "cuda",
        "batch_size": 1,
        "mode": "offline",
        "workload": "synthetic",
        "input_tokens": 128,
        "output_tokens": 128,
        "decoding": "greedy",
        "energy_method": "counter",
        "e2e_p50_s": 1.0,
        "throughput_tok_s": 100.0,
        "spec_json": {"options": options},
    }
    row.update(kw)
    return row


RUNS = [
    # bin A: m-1b 128in/128out offline
    _run(1, engine="transformers", quant="bf16", j_per_token=3.0),
    _run(2, engine="transformers", quant="fp32", j_per_token=2.0),  # seed baseline, not the worst
    _run(3, batch_size=64, j_per_token=0.02, throughput_tok_s=20619.7),
    _run(4, batch_size=64, j_per_token=0.01, options={"enable_prefix_caching": True}),
    # bin B: another model and lengths, offline
    _run(5, model="m-8b", input_tokens=512, output_tokens=256, batch_size=8, j_per_token=0.4),
    _run(6, model="m-8b", input_tokens=512, output_tokens=256, batch_size=64, j_per_token=0.1),
    # bins C and D: online at two rates
    _run(7, mode="online", rate=4.0, batch_size=64, j_per_token=0.5),
    _run(8, mode="online", rate=16.0, batch_size=64, j_per_token=0.14),
    _run(9, status="failed"),
]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "w.duckdb")
    with s.writer() as con:
        commit.write_session(
            con, {"session_id": SID, "created_at": "2025-01-01", "status": "finished", "kind": "sweep"}
        )
        for r in RUNS:
            commit.write_run(con, r)
    return s


def _bins(store: Store) -> list[binning.Bin]:
    configs, _ = load_configs(store, SID)
    return binning.assign(configs)


def _ids(b: binning.Bin) -> set[int]:
    return {int(r["seq"]) for c in b.configs for r in c.runs}


def test_runs_are_grouped_by_model_lengths_mode_and_rate(store: Store) -> None:
    bins = _bins(store)
    assert [_ids(b) for b in bins] == [{1, 2, 3, 4}, {5, 6}, {7}, {8}]
    assert bins[0].label == "m-1b · 128in/128out · offline"
    assert bins[2].label == "m-1b · 128in/128out · online at 4 req/s"
    # engine options are a lever: runs 3 and 4 are two configurations, not averaged into one
    assert len(bins[0].configs) == 4


def test_greenest_per_bin_and_the_fp32_batch1_baseline_is_preferred(store: Store) -> None:
    a, b, *_ = _bins(store)
    assert a.greenest().runs[0]["seq"] == 4
    assert a.baseline.runs[0]["seq"] == 2 and a.why == binning.SEED  # fp32 bs1, though run 1 is worse
    assert b.greenest().runs[0]["seq"] == 6
    assert b.baseline.runs[0]["seq"] == 5 and b.why == binning.WORST  # no fp32 bs1: highest J/token


def test_report_sections(store: Store, tmp_path: Path) -> None:
    write_report(store, SID, tmp_path / "r")
    md = (tmp_path / "r" / "report.md").read_text()
    green = md.split("## Greenest configuration per workload bin")[1].split("\n## ")[0]
    row_a = next(line for line in green.splitlines() if line.startswith("| m-1b · 128in/128out · offline"))
    assert "vllm bf16 bs64 [enable_prefix_caching=True]" in row_a and f"{SID}-004" in row_a
    assert "0.01 (counter)" in row_a and "99.5% less J/token" in row_a  # 0.01 vs fp32's 2.0
    assert "transformers fp32 bs1" in row_a and "seed baseline" in row_a
    row_b = next(line for line in green.splitlines() if line.startswith("| m-8b"))
    assert "75.0% less J/token" in row_b and "highest J/token in bin" in row_b
    # the other sections still there
    for section in ("## Runs", "## Pareto front: j_per_token vs e2e_p50_s", "## Recommendations"):
        assert section in md
    assert "## How the figures were obtained" in md


def test_cross_model_change_is_not_an_effect(store: Store, tmp_path: Path) -> None:
    write_report(store, SID, tmp_path / "r")
    md = (tmp_path / "r" / "report.md").read_text()
    effects = md.split("## Effects against the baseline")[1].split("## Recommendations")[0]
    assert "model m-1b -> m-8b" not in effects and "input_tokens 128 -> 512" not in effects
    assert "mode offline -> online" not in effects and "rate None ->" not in effects
    assert "not comparable" in effects
    assert "### m-8b · 512in/256out · offline" in effects
    assert "batch_size 8 -> 64: -75.0% J/token" in effects
    assert "options no options -> enable_prefix_caching=True" in effects


def test_explicit_baseline_is_kept(store: Store, tmp_path: Path) -> None:
    write_report(store, SID, tmp_path / "r", baseline=f"{SID}-001")
    md = (tmp_path / "r" / "report.md").read_text()
    assert "given with --baseline" in md
    assert "-99.7% J/token" in md  # run 4 against run 1 (3.0 J/token)


def test_no_exponent_notation(store: Store, tmp_path: Path) -> None:
    write_report(store, SID, tmp_path / "r")
    md = (tmp_path / "r" / "report.md").read_text()
    assert "e+0" not in md and "e-0" not in md
    assert "20,620" in md
    assert fmt_num(20619.7) == "20,620"
    assert fmt_num(0.000279) == "0.000279"
    assert fmt_num(2.0625e-7) == "0.0000002063"
    assert fmt_num(49.24) == "49.24" and fmt_num(0.0) == "0" and fmt_num(None) == "—"
    assert fmt_num(1234567) == "1,234,567"
