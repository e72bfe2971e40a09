"""Starting a sweep as a detached runner process (survives the console closing and SIGHUP)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from wattlab.paths import data_dir


def start_detached(sweep_file: str | Path, *, session_id: str, db: str | Path | None = None) -> Path:
    """Start `wattlab _runner` in its own process session; returns its log file."""
    log = data_dir() / "logs" / f"{session_id}.log"
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
    with open(log, "ab") as out:
        subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
    return log
