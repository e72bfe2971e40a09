"""Storage never crashes or lies: a full disk at any step of recovery, a torn `committed` marker,
a database locked by another process, the detached runner's log, and `wattlab report` picking a
session it can report on. No inference engine: spools are built through the Spool API."""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from wattlab import cli
from wattlab.errors import StoreError
from wattlab.sessions import commit
from wattlab.sessions import spool as spool_mod
from wattlab.sessions.spool import COMMITTED, Spool
from wattlab.sessions.store import Store

RUNS = 2
SAMPLES_PER_RUN = 40


def _enospc(*_: Any, **__: Any) -> Any:
    raise OSError(errno.ENOSPC, "No space left on device")


def make_spool(root: Path, session_id: str = "s-faults") -> Spool:
    """A finished session's spool whose runner is gone: RUNS runs, SAMPLES_PER_RUN samples each."""
    spool = Spool(session_id, root)
    spool.create({"session_id": session_id, "kind": "sweep", "status": "running", "runs_planned": RUNS})
    spool.timeline_item(
        {
            "wattlab_timeline": 1,
            "domains": [
                {"id": "gpu0", "kind": "gpu", "meter": "replay", "label": "GPU 0", "device": "gpu:0"}
            ],
        }
    )
    spool.event("idle", idle_w={"gpu0": 50.0}, seconds=1)
    t = 1_000_000_000
    for seq in range(1, RUNS + 1):
        run_id = f"{session_id}-{seq:03d}"
        row = {"run_id": run_id, "session_id": session_id, "seq": seq, "run_key": f"k{seq}", "engine": "x"}
        spool.event("run_start", run_id=run_id, seq=seq, total=RUNS, label="synthetic", row=row)
        spool.timeline_item({"m": "run_start", "t": t, "r": run_id})
        for _ in range(SAMPLES_PER_RUN):
            t += 100_000_000
            spool.timeline_item({"t": t, "d": "gpu0", "p": 150.0 + seq})
        spool.timeline_item({"m": "run_end", "t": t, "r": run_id})
        spool.event("run_end", result={**row, "status": "finished", "energy_j": 10.0 * seq})
    spool.event("session_end", status="finished", ended_at="2025-01-01T00:00:00+00:00")
    spool.close()
    spool.mark_runner_done()  # its process lives (this test), but it said it is done
    return spool


def spool_bytes(spool: Spool) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(spool.dir.iterdir())}


def db_counts(db: Path, session_id: str) -> tuple[int, int, int]:
    if not db.exists():
        return (0, 0, 0)
    con = duckdb.connect(str(db), read_only=True)
    try:
        return tuple(  # type: ignore[return-value]
            con.execute(f"SELECT count(*) FROM {t} WHERE session_id = ?", [session_id]).fetchone()[0]
            for t in ("runs", "samples", "marks")
        )
    finally:
        con.close()


class _FailingFile(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


def _inject(monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    """Make one step of recovery fail as a full disk does."""
    real_open = builtins.open

    def is_marker(path: Any) -> bool:
        return COMMITTED in Path(path).name

    if step == "marker-open":

        def fail_open(p: Any, *a: Any, **k: Any) -> Any:
            return _enospc() if is_marker(p) else real_open(p, *a, **k)

        monkeypatch.setattr(spool_mod, "open", fail_open, raising=False)
    elif step == "marker-write":

        def open_then_fail(p: Any, *a: Any, **k: Any) -> Any:
            if is_marker(p):
                real_open(p, *a, **k).close()  # the temp file exists, as on a real disk
                return _FailingFile()
            return real_open(p, *a, **k)

        monkeypatch.setattr(spool_mod, "open", open_then_fail, raising=False)
    elif step == "marker-fsync":
        monkeypatch.setattr(spool_mod.os, "fsync", _enospc)
    elif step == "marker-replace":
        real_replace = os.replace
        monkeypatch.setattr(
            spool_mod.os,
            "replace",
            lambda a, b: _enospc() if is_marker(b) else real_replace(a, b),
        )
    elif step == "db-rows":

        def full(*_: Any, **__: Any) -> None:
            raise duckdb.IOException('IO Error: Could not write file "w.duckdb.wal": No space left on device')

        monkeypatch.setattr(commit, "write_run", full)
    elif step == "db-samples":
        monkeypatch.setattr(commit, "_ingest_timeline_file", _enospc)
    else:  # pragma: no cover
        raise AssertionError(step)


STEPS = ["db-rows", "db-samples", "marker-open", "marker-write", "marker-fsync", "marker-replace"]


@pytest.mark.parametrize("step", STEPS)
def test_a_full_disk_at_any_recovery_step_is_one_message_and_the_retry_commits_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    root = tmp_path / "spool"
    spool = make_spool(root)
    before = spool_bytes(spool)
    store = Store(tmp_path / "w.duckdb")
    with monkeypatch.context() as m:
        _inject(m, step)
        with pytest.raises(StoreError) as info:
            commit.recover(store, root)
    err = info.value
    assert "full" in err.message and err.fix and "free space" in err.fix and "wattlab" in err.fix
    named = str(store.path) if step.startswith("db") else str(spool.dir / COMMITTED)
    assert named in err.message
    # No marker, no temp file, the spool as it was: nothing claims a commit that did not happen.
    assert not (spool.dir / COMMITTED).exists() and not spool.committed
    assert spool_bytes(spool) == before
    if step.startswith("db"):
        assert db_counts(store.path, spool.session_id) == (0, 0, 0)  # the transaction rolled back
    # Space freed: the next command commits everything, exactly once, and marks it.
    assert [d["session_id"] for d in commit.recover(store, root)] == [spool.session_id]
    assert db_counts(store.path, spool.session_id) == (RUNS, RUNS * SAMPLES_PER_RUN, RUNS * 2)
    assert spool.committed
    assert commit.recover(store, root) == []


def test_a_read_command_on_a_full_disk_warns_once_and_the_next_command_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WATTLAB_HOME", str(tmp_path / "home"))
    spool = make_spool(tmp_path / "home" / "spool", "s-cli")
    db = tmp_path / "w.duckdb"
    with monkeypatch.context() as m:
        _inject(m, "marker-replace")
        # A read command still shows what is stored; it warns once why the newest may be missing.
        assert cli.main(["ls", "--json", "--db", str(db)]) == 0
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    assert out.err.startswith("warning: cannot write ") and "is full" in out.err
    json.loads(out.out)
    assert "fix: free space on that disk, then run any wattlab command" in out.err
    assert cli.main(["ls", "--json", "--db", str(db)]) == 0
    sessions = json.loads(capsys.readouterr().out)
    assert [(s["session_id"], s["runs_finished"]) for s in sessions] == [("s-cli", RUNS)]
    assert spool.committed


@pytest.mark.parametrize(
    ("text", "counts"),
    [
        ("", False),  # an old version stopped by a full disk between creating and writing it
        ("17305", True),  # an old version's whole marker: the commit time
        ("1730\x00\x00", False),
        ("{garbage", False),
        ('{"session_id": "another", "at": 1}', False),
        ('{"session_id": "s-marker", "at": 1}', True),
    ],
)
def test_only_a_whole_marker_counts_as_committed(tmp_path: Path, text: str, counts: bool) -> None:
    spool = make_spool(tmp_path / "spool", "s-marker")
    (spool.dir / COMMITTED).write_text(text)
    assert spool.committed is counts
    recovered = commit.recover(Store(tmp_path / "w.duckdb"), tmp_path / "spool")
    assert [d["session_id"] for d in recovered] == ([] if counts else ["s-marker"])
    assert spool.committed


def test_creating_a_spool_on_a_full_disk_is_one_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_mod.os, "fsync", _enospc)
    spool = Spool("s-create", tmp_path / "spool")
    with pytest.raises(StoreError) as info:
        spool.create({"session_id": "s-create"})
    assert "runner.json" in info.value.message and "is full" in info.value.message
    assert not spool.dir.exists()  # the half-made directory never looks like a session
    assert [p.name for p in (tmp_path / "spool" / "s-create.creating").iterdir()] == []


def test_a_spool_file_that_cannot_be_opened_is_one_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def read_only(*_: Any, **__: Any) -> Any:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(spool_mod, "open", read_only, raising=False)
    spool = Spool("s-ro", tmp_path / "spool")
    with pytest.raises(StoreError) as info:
        spool.open()
    assert "timeline.jsonl" in info.value.message and "Read-only file system" in info.value.message
    assert "wattlab" in (info.value.fix or "")


# --- a deferred commit is said, with --json too ----------------------------------------------------
@pytest.fixture
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("WATTLAB_HOME", str(home))
    return home


@pytest.fixture
def no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner without an engine: each run 'finishes' at once with a figure; commits wait 0.3 s."""
    from wattlab.sessions.execute import base_row, utc_now
    from wattlab.sessions.result import RunResult
    from wattlab.sessions.runner import Runner

    def one_run(self: Runner, seq: int, spec: Any, repeat: int, max_batch: int) -> RunResult:
        run_id = f"{self.session_id}-{seq:03d}"
        row = base_row(self.session_id, run_id, seq, spec, repeat)
        total = len(self.sweep.runs)
        self.event("run_start", run_id=run_id, seq=seq, total=total, label=spec.label(), row=row.as_dict())
        result = row.replace(status="finished", ended_at=utc_now().isoformat(), energy_j=1.5)
        self._record(result)
        return result

    real_init = Runner.__init__

    def init(self: Runner, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **{**kwargs, "commit_timeout_s": 0.3})

    monkeypatch.setattr(Runner, "_one_run", one_run)
    monkeypatch.setattr(Runner, "__init__", init)


@pytest.fixture
def locked_db(tmp_path: Path) -> Iterator[tuple[Path, int, Callable[[], None]]]:
    """A database held open read-write by another process (as a notebook or a second runner does)."""
    db = tmp_path / "w.duckdb"
    Store(db).query("SELECT 1")  # create it, schema included
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import duckdb, sys
            con = duckdb.connect({str(db)!r})
            print("locked", flush=True)
            sys.stdin.readline()
            """),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )

    def release() -> None:
        if holder.poll() is None:
            holder.communicate("\n", timeout=30)

    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield db, holder.pid, release
    finally:
        release()


RUN_ARGS = ["--meters", "estimate", "--tdp-w", "65", "--idle-s", "0"]


def test_run_json_says_the_commit_was_deferred_and_how_it_will_be_committed(
    isolated_home: Path,
    no_engine: None,
    locked_db: tuple[Path, int, Callable[[], None]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    db, holder_pid, release = locked_db
    assert cli.main(["run", "--json", "--db", str(db), *RUN_ARGS]) == 0
    out = capsys.readouterr()
    result = json.loads(out.out)
    assert result["status"] == "finished" and result["commit"] == "deferred"
    # Progress goes to stderr too; the deferral is one whole line of its own, with the fix.
    lines = [ln for ln in out.err.splitlines() if ln.startswith("commit deferred:")]
    assert len(lines) == 1, out.err
    assert f"is locked by process {holder_pid}" in lines[0]
    assert "kept in the spool" in lines[0] and "committed by the next wattlab command" in lines[0]
    assert "once the lock is free" in lines[0]
    release()  # the other process lets go: the next command commits the run
    assert cli.main(["ls", "--json", "--db", str(db)]) == 0
    sessions = json.loads(capsys.readouterr().out)
    assert [(s["session_id"], s["runs_finished"]) for s in sessions] == [(result["session_id"], 1)]


def test_run_json_says_committed_when_the_database_was_free(
    isolated_home: Path, no_engine: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "free.duckdb"
    assert cli.main(["run", "--json", "--db", str(db), *RUN_ARGS]) == 0
    out = capsys.readouterr()
    result = json.loads(out.out)
    assert result["commit"] == "committed" and "commit deferred" not in out.err
    rows = Store(db).query("SELECT status FROM runs WHERE run_id = ?", [result["run_id"]])[1]
    assert rows == [("finished",)]


def test_a_sweep_ends_with_the_deferral_line_and_the_next_command_commits_it(
    isolated_home: Path,
    no_engine: None,
    locked_db: tuple[Path, int, Callable[[], None]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sweep = tmp_path / "s.toml"
    sweep.write_text('[session]\nidle_s = 0\nmeters = "estimate"\ntdp_w = 65\n[grid]\nbatch_size = [1, 2]\n')
    db, _, release = locked_db
    assert cli.main(["sweep", str(sweep), "--db", str(db), "--new"]) == 0
    release()
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("commit deferred: the database") and "next wattlab command" in err[-1]
    assert cli.main(["ls", "--json", "--db", str(db)]) == 0
    assert json.loads(capsys.readouterr().out)[0]["runs_finished"] == 2


# --- the detached runner's log ----------------------------------------------------------------------
def test_the_log_printer_writes_plain_timestamped_lines() -> None:
    from wattlab.sessions.launch import log_printer

    buf = io.StringIO()
    echo = log_printer(buf)
    echo({"ev": "run_start", "seq": 1, "total": 2, "label": "llamacpp [q4] bs1"})
    echo({"ev": "progress", "tokens": 3})  # not worth a line
    echo(
        {
            "ev": "run_end",
            "result": {"status": "failed", "error": "model not found", "error_fix": "check the path"},
        }
    )
    echo({"ev": "commit_deferred", "reason": "the database x is locked by process 7"})
    echo({"ev": "session_end", "status": "finished"})
    lines = buf.getvalue().splitlines()
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d "

    assert re.fullmatch(stamp + r"run 1/2 llamacpp \[q4\] bs1", lines[0])
    assert re.fullmatch(stamp + r"  failed model not found", lines[1])
    assert lines[2] == "    fix: check the path"
    assert "commit deferred (the database x is locked by process 7)" in lines[3]
    assert re.fullmatch(stamp + "session finished", lines[4])
    assert "[/" not in buf.getvalue() and "[bold]" not in buf.getvalue()


def test_a_detached_sweep_writes_its_progress_to_the_log(isolated_home: Path, tmp_path: Path) -> None:
    from wattlab.sessions.launch import start_detached

    sweep = tmp_path / "s.toml"
    sweep.write_text(
        '[session]\nidle_s = 0\nmeters = "estimate"\ntdp_w = 65\n'
        # A run that fails at load (no server listening), so the log has an error with its fix.
        '[defaults]\nengine = "openai"\nmodel = "m"\noptions = {base_url = "http://127.0.0.1:9/v1"}\n'
        "[grid]\nbatch_size = [1]\n"
    )
    log = start_detached(sweep, session_id="s-detached", db=tmp_path / "w.duckdb")
    assert log == isolated_home / "logs" / "s-detached.log"
    deadline = time.monotonic() + 120
    # The runner's last words: its summary line, or an error it stopped on.
    while not re.search(r"^(session s-detached |error: )", log.read_text(), re.M):
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.3)
    text = log.read_text()
    assert "starting the runner of session s-detached" in text
    assert "run 1/1 openai" in text and "  failed cannot reach" in text and "fix: start the server" in text
    assert re.search(r"^\S+ \S+ session finished$", text, re.M)
    assert "session s-detached finished: 0 finished, 1 not" in text


# --- report ---------------------------------------------------------------------------------------
def test_report_without_a_session_takes_the_newest_with_finished_runs(
    isolated_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "w.duckdb"
    store = Store(db)
    with store.writer() as con:
        for sid, created, status in [("s-old", "2025-01-01", "finished"), ("s-new", "2025-02-01", "running")]:
            row = {"session_id": sid, "created_at": created, "status": status, "kind": "sweep"}
            commit.write_session(con, row)
        for n, (sid, status) in enumerate([("s-old", "finished"), ("s-new", "running")]):
            commit.write_run(
                con,
                {
                    "run_id": f"{sid}-001",
                    "session_id": sid,
                    "seq": 1,
                    "status": status,
                    "engine": "llamacpp",
                    "model": "m",
                    "batch_size": 1,
                    "mode": "offline",
                    "j_per_token": 0.5 + n,
                    "e2e_p50_s": 1.0,
                    "throughput_tok_s": 20.0,
                },
            )
    out_dir = tmp_path / "report"
    assert cli.main(["report", "--db", str(db), "--out", str(out_dir)]) == 0
    out = capsys.readouterr()
    assert "report for session s-old (newest with finished runs)" in out.err
    assert "session s-old" in (out_dir / "report.md").read_text()


def test_report_with_no_finished_run_anywhere_is_one_message(
    isolated_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "w.duckdb"
    with Store(db).writer() as con:
        commit.write_session(con, {"session_id": "s-run", "created_at": "2025-02-01", "status": "running"})
    assert cli.main(["report", "--db", str(db), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "no session has a finished run" in err and "fix:" in err and "Traceback" not in err
