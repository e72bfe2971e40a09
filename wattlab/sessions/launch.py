"""Starting a sweep as a detached runner process (survives the console closing and SIGHUP).

The runner's log (`<data dir>/logs/<session>.log`, the file the console and `wattlab sweep --detach`
point to) gets the runner's own progress as plain timestamped lines (each run's start and end with
its status, errors with their fixes, deferred commits), plus anything the process writes to stdout
or stderr; every line is flushed as it is written, so the log can be followed live.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from wattlab.paths import data_dir


def log_path(session_id: str) -> Path:
    return data_dir() / "logs" / f"{session_id}.log"


def _stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def log_printer(stream: TextIO | None = None) -> Callable[[dict[str, Any]], None]:
    """A runner echo that writes each event worth reading as one plain, timestamped, flushed line."""
    from rich.errors import MarkupError
    from rich.text import Text

    from wattlab.sessions.events import describe_event

    def echo(ev: dict[str, Any]) -> None:
        text = describe_event(ev)
        if not text:
            return
        try:
            plain = Text.from_markup(text).plain  # the log is read with less/tail: no markup, no colour
        except MarkupError:
            plain = text
        out = stream or sys.stdout
        out.write(f"{_stamp()} {plain}\n")
        out.flush()

    return echo


def start_detached(
    sweep_file: str | Path, *, session_id: str, db: str | Path | None = None, no_wait: bool = False
) -> Path:
    """Start `wattlab _runner` in its own process session; returns its log file.

    It queues behind a session measuring on the same devices; no_wait: it refuses instead."""
    log = log_path(session_id)
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "wattlab.cli",
        "_runner",
        str(Path(sweep_file).resolve()),
        "--session",
        session_id,
    ]
    if db:
        cmd += ["--db", str(Path(db).expanduser().resolve())]
    if no_wait:
        cmd.append("--no-wait")
    # Unbuffered: a traceback or a library's warning reaches the log even if the process is killed.
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "ab") as out:
        out.write(f"{_stamp()} starting the runner of session {session_id}: {' '.join(cmd)}\n".encode())
        out.flush()
        subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True, env=env
        )
    return log
