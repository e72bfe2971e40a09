"""What a run or sweep says while it runs (phase, tokens, ETA on stderr) and when it ends (how many
runs failed, exit 1 if any), and a warmup bounded to one batch of the run's own shape."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from wattlab import cli_views
from wattlab.cli import main
from wattlab.engines.base import Request
from wattlab.meters.timeline import Timeline
from wattlab.sessions.execute import RunContext, base_row, execute_run
from wattlab.sessions.spec import WARMUP_OUTPUT_TOKENS, RunSpec


def _session(runs: int, idle_s: float = 2.0) -> dict[str, Any]:
    return {"session_id": "s", "runs_planned": runs, "spec_json": {"session": {"idle_s": idle_s}}}


def _run_events(seq: int, total: int, spec: RunSpec, status: str) -> list[dict[str, Any]]:
    row = base_row("s", f"s-{seq:03d}", seq, spec, 0)
    t0 = 10_000_000_000
    start = {"ev": "run_start", "run_id": row["run_id"], "seq": seq, "total": total, "label": spec.label()}
    error = "boom" if status != "finished" else None
    return [
        {**start, "row": row},
        {"ev": "run_loaded", "run_id": row["run_id"], "reused": False},
        {"ev": "progress", "tokens": 8, "t": t0 + 500_000_000, "window": "warmup", "window_t0": t0},
        {"ev": "progress", "tokens": 4, "t": t0 + 400_000_000, "window": "run", "window_t0": t0},
        {"ev": "progress", "tokens": 20, "t": t0 + 2_000_000_000, "window": "run", "window_t0": t0},
        {"ev": "run_end", "result": {**row, "status": status, "error": error}},
    ]


def _feed(events: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, **kw: Any) -> tuple[Any, str]:
    out = io.StringIO()
    monkeypatch.setattr(cli_views, "err_console", Console(file=out, width=200, force_terminal=False))
    progress = cli_views.SweepProgress(2, **kw)
    progress.LINE_PERIOD_S = 0.0  # a log gets a token line at every progress event
    with progress:
        for ev in events:
            progress.on_event(ev)
    return progress, out.getvalue()


def test_progress_names_each_phase_with_tokens_and_eta(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = RunSpec(batch_size=1, input_tokens=64, output_tokens=64)
    events = [{"ev": "session_start", "session": _session(2)}]
    events += _run_events(1, 2, spec, "failed") + _run_events(2, 2, spec, "finished")
    events.append({"ev": "session_end", "status": "finished"})
    progress, text = _feed(events, monkeypatch)
    assert "baseline: measuring idle power for 2 s" in text
    assert f"warmup: {WARMUP_OUTPUT_TOKENS} output tokens" in text  # one batch, output capped
    assert "measure: 64 output tokens" in text
    # 20 of 64 tokens in 2 s: 10 tok/s, 44 left -> 4 s.
    assert "20/64 tokens, 10 tok/s, ETA 4s" in text
    assert progress.failed == 1
    assert "session finished with 1 of 2 runs failed" in text


def test_quiet_shows_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = RunSpec()
    events = [{"ev": "session_start", "session": _session(1)}, *_run_events(1, 1, spec, "finished")]
    events.append({"ev": "session_end", "status": "finished"})
    progress, text = _feed(events, monkeypatch, single=True, quiet=True)
    assert text == "" and progress.ended == "finished" and progress.failed == 0


def test_a_retried_run_counts_once(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = RunSpec()
    events = [{"ev": "session_start", "session": _session(1)}, *_run_events(1, 1, spec, "interrupted")]
    events += _run_events(1, 1, spec, "finished")  # resumed: the same run again, finished
    events.append({"ev": "session_end", "status": "finished"})
    progress, text = _feed(events, monkeypatch)
    assert progress.failed == 0 and "session finished: 1 of 1 run finished" in text


def _spool_session(sid: str, statuses: list[str]) -> None:
    from wattlab.sessions.spool import Spool

    spool = Spool(sid)
    spool.create({"session_id": sid, "runs_planned": len(statuses)})
    spool.event("session_start", session={"session_id": sid, "runs_planned": len(statuses)})
    for seq, status in enumerate(statuses, 1):
        spool.event("run_start", run_id=f"{sid}-{seq:03d}", seq=seq, total=len(statuses), label="llamacpp m")
        spool.event("run_end", result={"run_id": f"{sid}-{seq:03d}", "seq": seq, "status": status})
    spool.event("session_end", status="finished")
    spool.close()


def test_attach_exits_1_when_a_run_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WATTLAB_HOME", str(tmp_path))
    _spool_session("s-ok", ["finished", "finished"])
    _spool_session("s-bad", ["finished", "failed", "failed"])
    assert main(["attach", "s-ok"]) == 0
    assert main(["attach", "s-bad"]) == 1
    assert "session finished with 2 of 3 runs failed" in capsys.readouterr().err


class _Stop(Exception):
    pass


class _Worker:
    """Stands in for the engine worker: builds the requests, then records the warmup and stops."""

    def __init__(self, requests: list[Request]) -> None:
        self.info = {"devices": ["cpu"], "version": "fake", "caps": {"online": True, "sampling": True}}
        self.requests = requests
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def call(self, op: str, timeout_s: float | None = None, **payload: Any) -> dict[str, Any]:
        self.calls.append((op, payload))
        if op == "prepare":
            return {"requests": [r.as_dict() for r in self.requests], "meta": {"kind": "synthetic"}}
        raise _Stop


@pytest.mark.parametrize(("output", "warm_out"), [(200, WARMUP_OUTPUT_TOKENS), (8, 8)])
def test_warmup_is_one_batch_of_the_runs_prompts_with_a_bounded_output(output: int, warm_out: int) -> None:
    spec = RunSpec(batch_size=4, requests=12, input_tokens=64, output_tokens=output)
    requests = [Request(i, tuple(range(64)), output, output) for i in range(12)]
    worker = _Worker(requests)
    ctx = RunContext(
        run_id="s-001",
        spec=spec,
        timeline=Timeline(),
        idle_w={},
        carbon=None,
        pue=1.0,
        row=base_row("s", "s-001", 1, spec, 0),
        worker=worker,  # type: ignore[arg-type]
    )
    with pytest.raises(_Stop):
        execute_run(ctx)
    op, payload = worker.calls[1]
    assert op == "generate" and payload["window"] == "warmup"
    warm = payload["requests"]
    assert len(warm) == spec.batch_size  # one batch, not the whole run
    assert [r["prompt_ids"] for r in warm] == [list(r.prompt_ids) for r in requests[:4]]  # its own prompts
    assert {r["max_new_tokens"] for r in warm} == {r["min_new_tokens"] for r in warm} == {warm_out}


@pytest.mark.slow
def test_run_progress_goes_to_stderr_and_json_stays_pure(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    base = [sys.executable, "-m", "wattlab.cli", "run", "--input-tokens", "40", "--output-tokens", "8"]
    base += ["--idle-s", "0.5", "--json", "--db", str(tmp_path / "w.duckdb")]
    out = subprocess.run(base, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["status"] == "finished"
    for needle in ("baseline: measuring idle power", "warmup: 8 output tokens", "measure: 8 output tokens"):
        assert needle in out.stderr
    quiet = subprocess.run([*base, "--quiet"], capture_output=True, text=True, timeout=600)
    assert quiet.returncode == 0 and json.loads(quiet.stdout)["status"] == "finished"
    assert "measure" not in quiet.stderr and "baseline" not in quiet.stderr


def test_a_stopped_session_says_what_finished_what_was_interrupted_and_what_never_started() -> None:
    from wattlab.cli_views import session_summary

    # Seen: "session interrupted with 1 of 2 runs failed" after Ctrl-C in run 1 (nothing failed).
    assert session_summary("interrupted", 2, 1, ["interrupted"]) == (
        "interrupted: 0 of 2 runs finished, 1 interrupted, 1 not started"
    )
    assert session_summary("finished", 3, 1, ["finished", "failed", "finished"]) == (
        "finished with 1 of 3 runs failed"
    )
