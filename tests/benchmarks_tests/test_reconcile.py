"""benchmarks/reconcile.py: its arithmetic on a synthetic DuckDB and a synthetic outside NVML log,
and benchmarks/nvml_logger.py writing that log (fake NVML)."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest

from wattlab.sessions.schema import migrate

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import reconcile  # noqa: E402

NS = 1_000_000_000
T0 = 5_000 * NS  # the log starts here (monotonic ns)
POWER_W = 300.0
# (run id, window start after T0 in s, window length in s): two long windows and a short one.
RUNS = [("s1-001", 2.0, 2.0), ("s1-002", 6.0, 5.0), ("s1-003", 12.0, 0.5)]


def make_db(path: Path, gpus: tuple[int, ...] = (0,)) -> None:
    """Runs whose measured window drew POWER_W per GPU, as the runner stores them."""
    con = duckdb.connect(str(path))
    migrate(con)
    for seq, (run_id, start, length) in enumerate(RUNS, 1):
        t0, t1 = T0 + int(start * NS), T0 + int((start + length) * NS)
        con.execute(
            "INSERT INTO runs (run_id, session_id, seq, status, engine, model, quant, batch_size, mode, "
            "t0_ns, t1_ns, energy_j) VALUES (?, 's1', ?, 'finished', 'vllm', 'random:llama-3.2-1b', 'bf16', "
            "8, 'offline', ?, ?, ?)",
            [run_id, seq, t0, t1, POWER_W * length * len(gpus)],
        )
        for g in gpus:
            con.execute(
                "INSERT INTO run_energy (run_id, session_id, window_name, domain_id, energy_j, method, "
                "duration_s) VALUES (?, 's1', 'measured', ?, ?, 'counter', ?)",
                [run_id, f"gpu{g}", POWER_W * length, length],
            )
        # The CPU's energy must not be counted as a GPU's.
        con.execute(
            "INSERT INTO run_energy (run_id, session_id, window_name, domain_id, energy_j, method) "
            "VALUES (?, 's1', 'measured', 'cpu-package-0', 999.0, 'estimated')",
            [run_id],
        )
        con.execute("INSERT INTO marks VALUES ('s1', ?, ?, 'run_start', NULL)", [run_id, t0])
    con.close()


def make_log(
    path: Path,
    *,
    scale: float = 1.0,
    step_s: float | None = None,
    gpus: tuple[int, ...] = (0,),
    seconds: float = 20.0,
    hz: float = 10.0,
    phase_s: float = 0.037,
    reset_at_s: float | None = None,
) -> None:
    """An nvml_logger file: counters (mJ) of GPUs drawing POWER_W x scale. step_s: the counter only
    advances every step_s (NVML's ~100 ms), read at hz from `phase_s` past the step grid."""
    lines: list[dict[str, Any]] = [{"nvml_logger": 1, "clock": "monotonic_ns", "hz": hz, "gpus": []}]
    n = int(seconds * hz)
    for i in range(n + 1):
        t_s = i / hz + phase_s
        counted = (t_s // step_s) * step_s if step_s else t_s
        for g in gpus:
            mj = 7_000_000 + POWER_W * scale * counted * 1000.0
            if reset_at_s is not None and t_s >= reset_at_s:
                mj -= 7_000_000 + POWER_W * scale * reset_at_s * 1000.0  # the driver reloaded: from 0
            lines.append({"t": T0 + round(t_s * NS), "g": g, "e": round(mj), "p": 300_000, "dt": 4_000_000})
    path.write_text("\n".join(json.dumps(x) for x in lines) + '\n{"t": 1, "g": 0, "e"', encoding="utf-8")


def rows_by_run(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["run_id"]: r for r in report["rows"]}


def test_a_log_of_the_same_power_agrees_to_zero(tmp_path: Path) -> None:
    make_db(tmp_path / "s.duckdb")
    make_log(tmp_path / "log.jsonl")
    report = reconcile.reconcile(tmp_path / "s.duckdb", tmp_path / "log.jsonl")
    rows = rows_by_run(report)
    assert set(rows) == {"s1-001", "s1-002", "s1-003"}
    for run_id, _, length in RUNS:
        row = rows[run_id]
        assert row["window_s"] == pytest.approx(length)
        assert row["wattlab_j"] == pytest.approx(POWER_W * length)  # the CPU row is not counted
        assert row["log_j"] == pytest.approx(POWER_W * length, rel=1e-6)
        assert row["diff_pct"] == pytest.approx(0.0, abs=0.01)
        assert row["gpus"] == [0]
    assert report["summary"]["ok"]
    assert report["summary"]["windows_at_least_1s"]["within_tolerance"] == 2


def test_a_log_5_percent_higher_shows_about_5_percent(tmp_path: Path) -> None:
    make_db(tmp_path / "s.duckdb")
    make_log(tmp_path / "log.jsonl", scale=1.05)
    report = reconcile.reconcile(tmp_path / "s.duckdb", tmp_path / "log.jsonl")
    for row in report["rows"]:
        # wattlab / log - 1 = 1 / 1.05 - 1 = -4.76%: the difference is against the outside log.
        assert row["diff_pct"] == pytest.approx(100 * (1 / 1.05 - 1), abs=0.01)
    assert not report["summary"]["ok"]
    assert report["summary"]["windows_at_least_1s"]["within_tolerance"] == 0


def test_windows_under_1s_are_flagged_and_kept_out_of_the_target(tmp_path: Path) -> None:
    make_db(tmp_path / "s.duckdb")
    make_log(tmp_path / "log.jsonl", scale=1.05)
    rows = rows_by_run(reconcile.reconcile(tmp_path / "s.duckdb", tmp_path / "log.jsonl"))
    assert "short" in rows["s1-003"]["flags"]
    assert rows["s1-003"]["step_pct"] == pytest.approx(20.0)  # one 100 ms step of a 0.5 s window
    assert "short" not in rows["s1-001"]["flags"] and "short" not in rows["s1-002"]["flags"]
    summary = reconcile.summarize([reconcile.Row(**r) for r in rows.values()], 5.0)
    assert summary["windows_under_1s"]["windows"] == 1
    assert summary["windows_at_least_1s"]["windows"] == 2 and summary["ok"]


def test_a_stepped_counter_read_at_its_own_rate_still_agrees(tmp_path: Path) -> None:
    # NVML's counter moves in ~100 ms steps; read every 100 ms, linear interpolation lags it by a
    # constant phase, so steady power differences exactly.
    make_db(tmp_path / "s.duckdb")
    make_log(tmp_path / "log.jsonl", step_s=0.1, phase_s=0.063)
    report = reconcile.reconcile(tmp_path / "s.duckdb", tmp_path / "log.jsonl")
    assert all(abs(r["diff_pct"]) < 0.05 for r in report["rows"])


def test_two_gpus_add_up_and_a_counter_reset_is_unwrapped(tmp_path: Path) -> None:
    make_db(tmp_path / "s.duckdb", gpus=(0, 1))
    make_log(tmp_path / "log.jsonl", gpus=(0, 1), reset_at_s=7.05)
    report = reconcile.reconcile(tmp_path / "s.duckdb", tmp_path / "log.jsonl")
    rows = rows_by_run(report)
    assert rows["s1-002"]["gpus"] == [0, 1]
    assert rows["s1-002"]["log_j"] == pytest.approx(2 * POWER_W * 5.0, rel=0.01)
    assert report["log_resets"] == {0: 1, 1: 1}


def test_windows_outside_the_log_are_not_compared(tmp_path: Path) -> None:
    make_db(tmp_path / "s.duckdb")
    make_log(tmp_path / "log.jsonl", seconds=9.0)  # ends before run 2 does
    rows = rows_by_run(reconcile.reconcile(tmp_path / "s.duckdb", tmp_path / "log.jsonl"))
    assert rows["s1-001"]["diff_pct"] == pytest.approx(0.0, abs=0.01)
    assert rows["s1-002"]["diff_pct"] is None and "not-in-log" in rows["s1-002"]["flags"]
    make_log(tmp_path / "gappy.jsonl", hz=1.0)
    rows = rows_by_run(reconcile.reconcile(tmp_path / "s.duckdb", tmp_path / "gappy.jsonl"))
    assert "log-gap" not in rows["s1-001"]["flags"]  # 1 s apart is 1 period at 1 Hz


def test_the_command_prints_a_table_writes_json_and_sets_its_status(tmp_path: Path) -> None:
    make_db(tmp_path / "s.duckdb")
    make_log(tmp_path / "log.jsonl", scale=1.05)
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "reconcile.py"), "--db", str(tmp_path / "s.duckdb"),
         "--log", str(tmp_path / "log.jsonl"), "--session", "s1", "--json", str(tmp_path / "r.json")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 1, out.stderr  # -4.76% is outside the 1% target
    assert "windows >= 1 s: 0/2 within 1.0%" in out.stdout
    assert json.loads((tmp_path / "r.json").read_text())["summary"]["windows_under_1s"]["windows"] == 1
    missing = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "reconcile.py"), "--db", "nope.duckdb", "--log", "x"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert missing.returncode != 0 and "does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_the_logger_writes_flushed_lines_and_stops_on_sigterm(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "benchmarks" / "nvml_logger.py"), "--out", str(log), "--hz", "20",
         "--gpus", "0,1", "--fake"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not log.exists() or log.read_text().count('"g":1') < 3):
        time.sleep(0.05)  # flushed line by line: readings appear while it runs
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    items = [json.loads(x) for x in log.read_text().splitlines()]
    assert items[0]["nvml_logger"] == 1 and [g["index"] for g in items[0]["gpus"]] == [0, 1]
    assert items[-1]["reason"] == "SIGTERM"
    readings = [x for x in items if "e" in x]
    assert {x["g"] for x in readings} == {0, 1}
    assert all(a["t"] <= b["t"] for a, b in itertools.pairwise(readings))
    parsed = reconcile.read_log(log)
    t0, t1 = parsed.gpus[0].t[0], parsed.gpus[0].t[-1]
    joules, _ = parsed.energy_j(0, t0, t1)
    # The fake draws 150 or 250 W: the logged energy lies between.
    assert joules is not None and 150 * (t1 - t0) / NS * 0.99 <= joules <= 250 * (t1 - t0) / NS * 1.01
