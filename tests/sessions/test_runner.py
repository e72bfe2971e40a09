"""The runner end to end with a real engine (llama.cpp on the bundled model), real processes:
a single run's JSON, kill -9 mid-sweep then resume, and failures that don't stop a sweep."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from wattlab.sessions.store import Store

pytestmark = pytest.mark.slow
llama_cpp = pytest.importorskip("llama_cpp", reason="the llamacpp extra is not installed")


def wattlab(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        [sys.executable, "-m", "wattlab.cli", *args], capture_output=True, text=True, timeout=timeout
    )
    if check and out.returncode != 0:
        raise AssertionError(f"wattlab {' '.join(args)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
    return out


def spool_events(session_id: str) -> list[dict[str, Any]]:
    path = Path(os.environ["WATTLAB_HOME"]) / "spool" / session_id / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def test_run_json_has_every_promised_figure(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    out = wattlab(
        "run",
        "--engine",
        "llamacpp",
        "--batch-size",
        "2",
        "--input-tokens",
        "48",
        "--output-tokens",
        "8",
        "--idle-s",
        "0.5",
        "--json",
        "--db",
        str(db),
    )
    result = json.loads(out.stdout)
    for key in (
        "run_id",
        "status",
        "engine",
        "model",
        "quant",
        "batch_size",
        "input_tokens",
        "output_tokens",
        "duration_s",
        "throughput_tok_s",
        "ttft_p50_s",
        "tpot_p50_s",
        "e2e_p50_s",
        "energy_j",
        "energy_net_j",
        "j_per_token",
        "energy_method",
        "gco2e",
    ):
        assert key in result, key
    assert result["status"] == "finished"
    assert result["tokens_out"] == 16 and result["tokens_in"] == 96  # exact lengths, 2 requests
    for key in (
        "duration_s",
        "throughput_tok_s",
        "ttft_p50_s",
        "tpot_p50_s",
        "e2e_p50_s",
        "energy_j",
        "j_per_token",
        "gco2e",
    ):
        assert result[key] is not None and result[key] > 0, key
    assert result["energy_method"] in ("counter", "integrated", "estimated")
    store = Store(db)
    assert store.query("SELECT count(*) FROM requests WHERE run_id = ?", [result["run_id"]])[1] == [(2,)]
    assert store.query("SELECT count(*) FROM samples")[1][0][0] > 0
    windows = {r[0] for r in store.query("SELECT DISTINCT window_name FROM run_energy")[1]}
    assert {"load", "warmup", "measured", "prefill", "decode"} <= windows
    # the marks are ordered as the run happened
    names = [r[0] for r in store.query("SELECT name FROM marks ORDER BY t_ns")[1]]
    order = [
        n
        for n in names
        if n
        in (
            "idle_start",
            "idle_end",
            "load_start",
            "load_end",
            "warmup_start",
            "warmup_end",
            "run_start",
            "run_end",
        )
    ]
    assert order == [
        "idle_start",
        "idle_end",
        "load_start",
        "load_end",
        "warmup_start",
        "warmup_end",
        "run_start",
        "run_end",
    ]


SLOW_SWEEP = """
[session]
idle_s = 0.5

[defaults]
engine = "llamacpp"
input_tokens = 40
requests = 2

[grid]
output_tokens = [120, 130, 140]
"""


def test_kill_9_mid_sweep_then_resume(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(SLOW_SWEEP)
    started = wattlab("sweep", str(sweep), "--detach", "--db", str(db))
    session_id = started.stdout.split()[1].rstrip(":")

    # Wait until run 2's measured window is open (its run_start mark is in the spool's timeline).
    timeline = Path(os.environ["WATTLAB_HOME"]) / "spool" / session_id / "timeline.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        text = timeline.read_text() if timeline.exists() else ""
        if f'"m":"run_start","r":"{session_id}-002"' in text:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("run 2's measured window never opened")
    time.sleep(1.0)  # let it generate for a while
    runner = json.loads((Path(os.environ["WATTLAB_HOME"]) / "spool" / session_id / "runner.json").read_text())
    os.kill(runner["pid"], signal.SIGKILL)
    time.sleep(1.0)

    # Any read command ingests the dead runner's spool first.
    wattlab("ls", "--json", "--db", str(db))
    store = Store(db)
    runs = dict(store.query("SELECT run_id, status FROM runs WHERE session_id = ?", [session_id])[1])
    assert runs[f"{session_id}-001"] == "finished"
    assert runs[f"{session_id}-002"] == "interrupted"
    assert store.query("SELECT status FROM sessions WHERE session_id = ?", [session_id])[1] == [
        ("interrupted",)
    ]
    # The interrupted run's samples are kept: readings after its measured window opened.
    t_start = store.query(
        "SELECT t_ns FROM marks WHERE run_id = ? AND name = 'run_start'", [f"{session_id}-002"]
    )[1]
    assert t_start, "run 2's measured window start mark was lost"
    n_after = store.query(
        "SELECT count(*) FROM samples WHERE session_id = ? AND t_ns > ?", [session_id, t_start[0][0]]
    )[1]
    assert n_after[0][0] > 0
    finished_row = store.query_dicts(
        "SELECT energy_j, tokens_out FROM runs WHERE run_id = ?", [f"{session_id}-001"]
    )[0]

    # Rerunning the same sweep resumes that session: run 1 skipped, run 2 retried, run 3 done.
    resumed = wattlab("sweep", str(sweep), "--db", str(db))
    assert f"resuming unfinished session {session_id}" in resumed.stdout
    runs = dict(store.query("SELECT run_id, status FROM runs WHERE session_id = ?", [session_id])[1])
    assert runs == {
        f"{session_id}-001": "finished",
        f"{session_id}-002": "interrupted",
        f"{session_id}-002.2": "finished",
        f"{session_id}-003": "finished",
    }
    assert (
        store.query_dicts("SELECT energy_j, tokens_out FROM runs WHERE run_id = ?", [f"{session_id}-001"])[0]
        == finished_row
    )
    assert store.query("SELECT status FROM sessions WHERE session_id = ?", [session_id])[1] == [("finished",)]
    # No sample was stored twice across the crash, the recovery and the resume.
    dup = store.query(
        "SELECT count(*) FROM (SELECT t_ns, domain_id FROM samples GROUP BY ALL HAVING count(*) > 1)"
    )[1]
    assert dup == [(0,)]


def test_failures_are_contained_and_explained(tmp_path: Path) -> None:
    corrupt = tmp_path / "broken.gguf"
    from wattlab.engines.models import bundled_gguf

    source = bundled_gguf()
    assert source is not None
    corrupt.write_bytes(source.read_bytes()[: 1 << 20])  # a truncated download
    sweep = tmp_path / "bad.toml"
    sweep.write_text(f"""
[session]
idle_s = 0

[defaults]
engine = "llamacpp"
input_tokens = 40
output_tokens = 4

[[runs]]
model = "no-such-model"

[[runs]]
model = "{corrupt}"

[[runs]]
engine = "warpdrive"

[[runs]]
model = "smollm2-135m-instruct"
""")
    db = tmp_path / "w.duckdb"
    out = wattlab("sweep", str(sweep), "--db", str(db), check=False)
    # The preflight finds all three before anything runs: one refusal, each with its fix, no session.
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    assert "3 problems" in out.stderr and out.stderr.count("fix:") >= 3
    for needle in ("no-such-model", "broken.gguf is truncated", "unknown engine 'warpdrive'"):
        assert needle in out.stderr
    assert not db.exists()


def test_an_engine_crash_fails_one_run_and_the_sweep_goes_on(tmp_path: Path) -> None:
    import psutil

    sweep = tmp_path / "crash.toml"
    sweep.write_text(SLOW_SWEEP.replace("[120, 130, 140]", "[150, 20]"))
    db = tmp_path / "w.duckdb"
    proc = subprocess.Popen(
        [sys.executable, "-m", "wattlab.cli", "sweep", str(sweep), "--db", str(db), "--new"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Kill the engine worker (as the kernel's OOM killer would) while run 1 generates.
    deadline = time.monotonic() + 300
    killed = False
    while time.monotonic() < deadline and not killed:
        for child in psutil.Process(proc.pid).children(recursive=True):
            try:
                if "wattlab.sessions.worker" in " ".join(child.cmdline()):
                    spools = sorted((Path(os.environ["WATTLAB_HOME"]) / "spool").iterdir())
                    evs = spool_events(spools[-1].name)
                    if any(e.get("ev") == "progress" for e in evs):
                        child.kill()
                        killed = True
            except psutil.Error:
                continue
        time.sleep(0.2)
    assert killed
    proc.communicate(timeout=600)
    assert proc.returncode == 1
    rows = Store(db).query_dicts("SELECT status, error, error_fix FROM runs ORDER BY seq")
    assert [r["status"] for r in rows] == ["failed", "finished"]
    assert "killed by SIGKILL" in rows[0]["error"] and "out-of-memory" in rows[0]["error"]
    assert rows[0]["error_fix"]
