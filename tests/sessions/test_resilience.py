"""Nothing measured is lost: a full disk, a locked database, Ctrl-C, a dropped SSH link (SIGHUP)."""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from wattlab.sessions.spool import SpoolFile
from wattlab.sessions.store import Store


class _FullDisk:
    """A file whose writes fail with ENOSPC while `full` is set (as a real full disk does)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.full = True

    def write(self, text: str) -> int:
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.real.write(text)

    def flush(self) -> None:
        self.real.flush()

    def close(self) -> None:
        self.real.close()


def test_the_spool_keeps_lines_while_the_disk_is_full(tmp_path: Path) -> None:
    spool = SpoolFile(tmp_path / "timeline.jsonl")
    disk = _FullDisk(spool._file)
    spool._file = disk
    for i in range(5):
        spool.write({"t": i, "d": "gpu0", "p": 100.0})
    assert spool.error is not None and "No space left" in spool.error
    assert spool.pending == 5
    disk.full = False  # space freed: the next write drains everything, in order
    spool.write({"t": 5, "d": "gpu0", "p": 100.0})
    spool.close()
    lines = [json.loads(x) for x in (tmp_path / "timeline.jsonl").read_text().splitlines()]
    assert [x["t"] for x in lines] == [0, 1, 2, 3, 4, 5]
    assert spool.error is None and spool.pending == 0


# Only the tests that run a real engine need llama.cpp (the spool test above does not); the same
# scenarios on the fake engine run everywhere, fast (test_runner_fake.py).
needs_llamacpp = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None, reason="the llamacpp extra is not installed"
)

SWEEP = """
[session]
idle_s = 0.3

[defaults]
engine = "llamacpp"
input_tokens = 40
requests = 2
warmup_requests = 0

[grid]
output_tokens = [{outputs}]
"""


def _spool_dir() -> Path:
    return Path(os.environ["WATTLAB_HOME"]) / "spool"


def _wait_for_measured_window(proc: subprocess.Popen[str], known: set[str], timeout: float = 300) -> str:
    """The new session's id, once its first run's measured window is open."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        for d in _spool_dir().iterdir() if _spool_dir().exists() else []:
            tl = d / "timeline.jsonl"
            if d.name not in known and tl.exists() and '"m":"run_start"' in tl.read_text():
                return d.name
        time.sleep(0.2)
    raise AssertionError("the measured window never opened")


def _start(tmp_path: Path, outputs: str) -> tuple[subprocess.Popen[str], Path, str]:
    sweep = tmp_path / "s.toml"
    sweep.write_text(SWEEP.format(outputs=outputs))
    db = tmp_path / "w.duckdb"
    known = {d.name for d in _spool_dir().iterdir()} if _spool_dir().exists() else set()
    proc = subprocess.Popen(
        [sys.executable, "-m", "wattlab.cli", "sweep", str(sweep), "--db", str(db), "--new"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell's background job starts with SIGINT ignored, and so would the runner: give it
        # the default, as a terminal's foreground command has, so the test's Ctrl-C reaches it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    return proc, db, _wait_for_measured_window(proc, known)


@pytest.mark.slow
@needs_llamacpp
def test_ctrl_c_commits_what_was_measured(tmp_path: Path) -> None:
    proc, db, session_id = _start(tmp_path, "150, 20")
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    assert proc.returncode == 1
    store = Store(db)
    runs = store.query_dicts("SELECT run_id, status, error FROM runs")
    assert [r["status"] for r in runs] == ["interrupted"] and "Ctrl-C" in runs[0]["error"]
    assert store.query("SELECT status FROM sessions")[1] == [("interrupted",)]
    assert store.query("SELECT count(*) FROM samples")[1][0][0] > 0
    assert (_spool_dir() / session_id / "committed").exists()  # a clean stop: nothing left to recover


@pytest.mark.slow
@needs_llamacpp
def test_a_dropped_ssh_link_does_not_stop_the_sweep(tmp_path: Path) -> None:
    proc, db, _ = _start(tmp_path, "60, 20")
    proc.send_signal(signal.SIGHUP)
    proc.communicate(timeout=300)
    assert proc.returncode == 0
    assert [s for (s,) in Store(db).query("SELECT status FROM runs")[1]] == ["finished", "finished"]


@pytest.mark.slow
@needs_llamacpp
def test_a_locked_database_defers_commits_and_loses_nothing(tmp_path: Path) -> None:
    from wattlab.sessions.runner import Runner
    from wattlab.sessions.spec import parse_sweep

    db = tmp_path / "w.duckdb"
    Store(db).query("SELECT 1")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import duckdb, sys, time
            con = duckdb.connect({str(db)!r})
            print("locked", flush=True)
            sys.stdin.readline()
        """),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    events: list[dict[str, Any]] = []
    sweep = parse_sweep(SWEEP.format(outputs="8, 9"))
    results = Runner(sweep, store=Store(db), echo=events.append, commit_timeout_s=0.5).run()
    assert [r["status"] for r in results] == ["finished", "finished"]
    assert any(e["ev"] == "commit_deferred" for e in events)
    holder.communicate("\n", timeout=30)  # the other process lets go of the database
    # The next command ingests the session the runner could not commit.
    out = subprocess.run(
        [sys.executable, "-m", "wattlab.cli", "ls", "--json", "--db", str(db)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout)[0]["runs_finished"] == 2
    store = Store(db)
    assert store.query("SELECT count(*) FROM samples")[1][0][0] > 0
    assert sorted(s for (s,) in store.query("SELECT status FROM runs")[1]) == ["finished", "finished"]
