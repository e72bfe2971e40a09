"""The runner end to end on the fake engine: the real Runner, the real worker subprocess, the spool,
DuckDB and recovery, in seconds and on any box. The same scenarios on llama.cpp are in test_runner.py
and test_resilience.py (marked slow)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from wattlab.engines._common import OOM_FIX
from wattlab.engines.fake import CRASH_EXIT_CODE
from wattlab.sessions import commit
from wattlab.sessions.runner import Runner, new_session_id
from wattlab.sessions.spec import load_sweep, parse_sweep, toml_value
from wattlab.sessions.spool import Spool
from wattlab.sessions.store import Store

TOK_S = 200.0
PREFILL_TOK_S = 2000.0

DEFAULTS: dict[str, Any] = {
    "engine": "fake",
    "model": "fake:runner",
    "input_tokens": 32,
    "output_tokens": 30,
    "requests": 2,
    "batch_size": 2,
    "warmup_requests": 0,
    "options": {"tok_s": TOK_S, "prefill_tok_s": PREFILL_TOK_S},
}


def sweep_toml(body: str = "", **defaults: Any) -> str:
    """A sweep on the fake engine; the estimate meter exists on every box, so figures are alike."""
    lines = [f"{k} = {toml_value(v)}" for k, v in {**DEFAULTS, **defaults}.items()]
    head = '[session]\nidle_s = 0.2\nmeters = "estimate"\n\n[defaults]\n' + "\n".join(lines) + "\n"
    return head + textwrap.dedent(body)


def run_sweep(
    tmp_path: Path, body: str, defaults: dict[str, Any] | None = None, **kw: Any
) -> tuple[list[dict[str, Any]], Store, Runner]:
    store = Store(tmp_path / "w.duckdb")
    runner = Runner(parse_sweep(sweep_toml(body, **(defaults or {}))), store=store, **kw)
    return runner.run(), store, runner


def runs_of(store: Store, session_id: str) -> list[dict[str, Any]]:
    return store.query_dicts("SELECT * FROM runs WHERE session_id = ? ORDER BY seq, run_id", [session_id])


def worker_children() -> list[psutil.Process]:
    out = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "wattlab.sessions.worker" in " ".join(child.cmdline()):
                out.append(child)
        except psutil.Error:
            continue
    return out


@pytest.fixture(autouse=True)
def no_worker_left_behind() -> Iterator[None]:
    """Every test must end with its engine workers gone (a hung or crashed one included)."""
    yield
    left = worker_children()
    for p in left:
        p.kill()
    assert not left, f"engine workers left running: {[p.pid for p in left]}"


# --- in process ------------------------------------------------------------------------------------
def test_a_sweep_of_three_runs_lands_complete_with_figures(tmp_path: Path) -> None:
    results, store, runner = run_sweep(
        tmp_path,
        """
        [grid]
        batch_size = [1, 2]

        [[runs]]
        mode = "online"
        rate = 20.0
        requests = 3
        """,
    )
    sid = runner.session_id
    assert [r["status"] for r in results] == ["finished"] * 3
    assert [r["worker_reused"] for r in results] == [False, True, True]  # one load serves all three
    rows = runs_of(store, sid)
    assert [(r["status"], r["batch_size"], r["mode"]) for r in rows] == [
        ("finished", 1, "offline"),
        ("finished", 2, "offline"),
        ("finished", 2, "online"),
    ]
    for r in rows:
        assert r["engine"] == "fake" and r["quant"] == "fake" and r["energy_method"] == "estimated"
        assert r["tokens_out"] == r["requests"] * 30 and r["tokens_in"] == r["requests"] * 32
        for key in ("duration_s", "throughput_tok_s", "energy_j", "j_per_token", "gco2e", "e2e_p50_s"):
            assert r[key] is not None and r[key] > 0, key
    # The fake's timings come through the whole pipeline unchanged: batch 1 serves the two requests
    # one after the other, batch 2 prefills them together and decodes them in the same steps.
    for r in rows[:2]:
        assert r["tpot_p50_s"] == pytest.approx(1 / TOK_S, rel=0.02)
    one_request = 32 / PREFILL_TOK_S + 29 / TOK_S
    assert rows[0]["duration_s"] == pytest.approx(2 * one_request, rel=0.1)
    assert rows[1]["duration_s"] == pytest.approx(64 / PREFILL_TOK_S + 29 / TOK_S, rel=0.1)
    assert rows[1]["ttft_p50_s"] == pytest.approx(64 / PREFILL_TOK_S, rel=0.1)
    assert store.query("SELECT count(*) FROM requests WHERE run_id LIKE ?", [sid + "%"])[1] == [(7,)]
    assert store.query("SELECT count(*) FROM samples WHERE session_id = ?", [sid])[1][0][0] > 0
    assert store.query("SELECT status FROM sessions WHERE session_id = ?", [sid])[1] == [("finished",)]
    windows = {w for (w,) in store.query("SELECT DISTINCT window_name FROM run_energy")[1]}
    assert {"load", "measured", "prefill", "decode"} <= windows
    names = [n for (n,) in store.query("SELECT name FROM marks WHERE session_id = ? ORDER BY t_ns", [sid])[1]]
    order = ["idle_start", "idle_end", "load_start", "load_end", "run_start", "run_end"]
    assert [n for n in names if n in order][:6] == order
    assert Spool(sid).committed


def test_a_crash_fails_one_run_and_the_sweep_goes_on_with_a_fresh_worker(tmp_path: Path) -> None:
    # Both runs share one engine load; the worker dies 20 tokens in, so only the 60-token run crashes.
    results, store, runner = run_sweep(
        tmp_path,
        "[grid]\noutput_tokens = [60, 8]\n",
        {"requests": 1, "batch_size": 1, "options": {"tok_s": 400, "fail": "crash", "fail_after_tokens": 20}},
    )
    rows = runs_of(store, runner.session_id)
    assert [r["status"] for r in rows] == ["failed", "finished"]
    assert f"exited with code {CRASH_EXIT_CODE}" in rows[0]["error"]
    assert results[0]["error_title"] == "Engine crashed" and rows[0]["error_fix"]
    assert results[1]["worker_reused"] is False  # the crash was not reused
    assert (runner.spool.dir / "worker-2.log").exists()
    assert runner.status == "finished"


def test_a_hang_hits_the_timeout_and_the_next_run_still_runs(tmp_path: Path) -> None:
    t0 = time.monotonic()
    results, store, runner = run_sweep(
        tmp_path,
        """
        [[runs]]
        timeout_s = 1.0
        options = { fail = "hang" }

        [[runs]]
        output_tokens = 5
        """,
    )
    rows = runs_of(store, runner.session_id)
    assert [r["status"] for r in rows] == ["failed", "finished"]
    assert "did not answer within 1 s" in rows[0]["error"] and results[0]["error_title"] == "Engine timed out"
    assert rows[0]["error_fix"]
    assert time.monotonic() - t0 < 15


def test_oom_and_a_load_error_fail_their_runs_with_message_and_fix(tmp_path: Path) -> None:
    results, store, runner = run_sweep(
        tmp_path,
        """
        [[runs]]
        options = { fail = "oom", fail_after_tokens = 10 }

        [[runs]]
        options = { fail = "error", fail_at = "load" }

        [[runs]]
        options = { fail = "explode" }

        [[runs]]
        output_tokens = 5
        """,
    )
    rows = runs_of(store, runner.session_id)
    assert [r["status"] for r in rows] == ["failed", "failed", "failed", "finished"]
    oom, load_error, bad_option, _ = rows
    assert "out of memory" in oom["error"] and oom["error_fix"] == OOM_FIX
    assert results[0]["error_title"] == "Out of memory"
    assert "while loading" in load_error["error"] and load_error["error_fix"]
    assert (
        "no failure 'explode'" in bad_option["error"] and "crash, hang, oom, error" in bad_option["error_fix"]
    )


def test_a_locked_database_defers_commits_and_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    Store(db).query("SELECT 1")
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, sys\ncon = duckdb.connect({str(db)!r})\n"
         "print('locked', flush=True)\nsys.stdin.readline()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        events: list[dict[str, Any]] = []
        results, _, runner = run_sweep(
            tmp_path, "[grid]\noutput_tokens = [5, 6]\n", echo=events.append, commit_timeout_s=0.3
        )
        assert [r["status"] for r in results] == ["finished", "finished"]
        assert any(e["ev"] == "commit_deferred" for e in events)
    finally:
        holder.communicate("\n", timeout=30)
    store = Store(db)
    commit.recover(store)  # what the next wattlab command does first
    assert [r["status"] for r in runs_of(store, runner.session_id)] == ["finished", "finished"]
    assert store.query("SELECT count(*) FROM samples WHERE session_id = ?", [runner.session_id])[1][0][0] > 0


# --- a runner process ------------------------------------------------------------------------------
def start_runner(tmp_path: Path, body: str) -> tuple[subprocess.Popen[str], Path, str]:
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(body)
    db = tmp_path / "w.duckdb"
    sid = new_session_id()
    proc = subprocess.Popen(
        [sys.executable, "-m", "wattlab.cli", "_runner", str(sweep), "--session", sid, "--db", str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # A shell's background job starts with SIGINT ignored, and so would the runner: give it
        # the default, as a terminal's foreground command has, so the test's Ctrl-C reaches it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    return proc, db, sid


def wait_for_measured_window(
    proc: subprocess.Popen[str], sid: str, seq: int = 1, timeout: float = 60
) -> None:
    """Until the run's measured window is open (its run_start mark is in the spool's timeline)."""
    run_id = f"{sid}-{seq:03d}"
    path = Spool(sid).timeline_path
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[0]
        if path.exists():
            for line in path.read_text().splitlines():
                if '"run_start"' in line and run_id in line:
                    item = json.loads(line)
                    if item.get("m") == "run_start" and item.get("r") == run_id:
                        return
        time.sleep(0.05)
    raise AssertionError(f"{run_id}'s measured window never opened")


# Run 1's measured window lasts 1.5 s: time to stop the runner in the middle of it.
LONG_RUNS = sweep_toml("[grid]\noutput_tokens = [150, 5]\n", requests=1, batch_size=1, options={"tok_s": 100})


def test_kill_9_of_the_runner_then_recovery_keeps_the_samples(tmp_path: Path) -> None:
    proc, db, sid = start_runner(tmp_path, LONG_RUNS)
    try:
        wait_for_measured_window(proc, sid)
        time.sleep(0.5)  # let it generate for a while
        workers = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
        proc.communicate()
    for w in workers:  # an orphaned worker would die on its next write; don't wait for it
        w.kill()
    store = Store(db)
    recovered = commit.recover(store)
    assert [r["interrupted"] for r in recovered if r["session_id"] == sid] == [[f"{sid}-001"]]
    rows = runs_of(store, sid)
    assert [(r["run_id"], r["status"]) for r in rows] == [(f"{sid}-001", "interrupted")]
    assert "runner stopped" in rows[0]["error"] and rows[0]["error_fix"]
    assert store.query("SELECT status FROM sessions WHERE session_id = ?", [sid])[1] == [("interrupted",)]
    t_start = store.query("SELECT t_ns FROM marks WHERE run_id = ? AND name = 'run_start'", [f"{sid}-001"])[1]
    assert t_start, "the interrupted run's measured window start mark was lost"
    after = store.query(
        "SELECT count(*) FROM samples WHERE session_id = ? AND t_ns > ?", [sid, t_start[0][0]]
    )[1][0][0]
    assert after > 0  # the samples measured during the interrupted run are kept
    assert commit.recover(store) == []  # ingested once; a second pass finds nothing

    # Rerunning the sweep resumes the session: run 1 retried under a new id, run 2 done.
    sweep = load_sweep(tmp_path / "sweep.toml")
    Runner(sweep, store=store, session_id=sid).run()
    statuses = {r["run_id"]: r["status"] for r in runs_of(store, sid)}
    assert statuses == {f"{sid}-001": "interrupted", f"{sid}-001.2": "finished", f"{sid}-002": "finished"}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "ctrl-c"])
def test_a_stop_signal_commits_what_was_measured(tmp_path: Path, sig: signal.Signals) -> None:
    proc, db, sid = start_runner(tmp_path, LONG_RUNS)
    try:
        wait_for_measured_window(proc, sid)
        time.sleep(0.3)
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 1, out
    assert "Traceback" not in out
    store = Store(db)
    rows = runs_of(store, sid)
    assert [r["status"] for r in rows] == ["interrupted"] and "Ctrl-C or SIGTERM" in rows[0]["error"]
    assert store.query("SELECT status FROM sessions WHERE session_id = ?", [sid])[1] == [("interrupted",)]
    assert store.query("SELECT count(*) FROM samples WHERE session_id = ?", [sid])[1][0][0] > 0
    assert Spool(sid).committed  # a clean stop: nothing left to recover


def test_a_dropped_ssh_link_does_not_stop_the_sweep(tmp_path: Path) -> None:
    proc, db, sid = start_runner(tmp_path, LONG_RUNS.replace("[150, 5]", "[60, 5]"))
    try:
        wait_for_measured_window(proc, sid)
        proc.send_signal(signal.SIGHUP)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert [r["status"] for r in runs_of(Store(db), sid)] == ["finished", "finished"]


def test_a_terminal_that_went_away_does_not_cost_a_run(tmp_path: Path) -> None:
    """Seen: Ctrl-C to a `wattlab sweep | tail` pipeline killed `tail`; the progress printer's
    BrokenPipeError replaced the interrupt, the session was recorded `failed` and the interrupted run
    never reached the database. The echo is the terminal's business, never the measurement's."""
    calls = []

    def gone(ev: dict[str, Any]) -> None:
        calls.append(ev["ev"])
        if len(calls) > 3:
            raise BrokenPipeError(32, "Broken pipe")

    _, store, runner = run_sweep(tmp_path, "[grid]\nbatch_size = [1, 2]\n", echo=gone)
    assert runner.status == "finished"
    assert [r["status"] for r in runs_of(store, runner.session_id)] == ["finished", "finished"]
    assert len(calls) == 4  # switched off after the first failure
