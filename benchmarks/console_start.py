"""Time from starting `wattlab` to its first frame on a terminal (target: under 1.5 s here).

    python benchmarks/console_start.py [--runs 5] [--db FILE] [--size 80x24]

Each run starts `python -m wattlab.cli --db FILE` (what the `wattlab` command runs) in a fresh
pseudo-terminal with an empty data dir, and stops the clock when the terminal receives the first
frame (the navigation bar's text). Then it presses q and waits for the console to exit. The
console starts its power monitor child as usual; its start-up is part of what is measured only
in so far as the console waits for it (it does not). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import select
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

FIRST_FRAME_MARK = b"2 Launch"  # the navigation bar, drawn in the first frame


def start_in_pty(
    cmd: list[str], env: dict[str, str], cols: int, rows: int
) -> tuple[subprocess.Popen[bytes], int]:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    return proc, master


def read_until(master: int, needle: bytes, timeout: float) -> tuple[bool, bytes]:
    """Read the terminal's output until `needle` shows (True) or the timeout passes."""
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.01)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            seen += chunk
            if needle in seen:
                return True, seen
    return False, seen


def drain(master: int, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        ready, _, _ = select.select([master], [], [], 0.05)
        if ready:
            try:
                os.read(master, 65536)
            except OSError:
                return


def one_start(db: Path, cols: int, rows: int) -> float:
    with tempfile.TemporaryDirectory(prefix="wattlab-start-") as home:
        env = {
            **os.environ,
            "WATTLAB_HOME": home,
            "TERM": "xterm-256color",
            "COLUMNS": str(cols),
            "LINES": str(rows),
        }
        started = time.perf_counter()
        proc, master = start_in_pty([sys.executable, "-m", "wattlab.cli", "--db", str(db)], env, cols, rows)
        ok, seen = read_until(master, FIRST_FRAME_MARK, timeout=30)
        elapsed = time.perf_counter() - started
        drain(master, 0.5)
        os.write(master, b"q")
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        drain(master, 0.1)
        os.close(master)
        if not ok:
            raise SystemExit(f"no first frame within 30 s; the terminal got: {seen[-500:]!r}")
        return elapsed


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--db", help="database to open (default: a fresh empty one)")
    p.add_argument("--size", default="80x24", help="terminal size, COLSxROWS")
    a = p.parse_args()
    cols, rows = (int(x) for x in a.size.split("x"))
    with tempfile.TemporaryDirectory(prefix="wattlab-start-db-") as tmp:
        db = Path(a.db) if a.db else Path(tmp) / "empty.duckdb"
        one_start(db, cols, rows)  # warm the OS file cache, as a second `wattlab` in a day would see
        times = [one_start(db, cols, rows) for _ in range(a.runs)]
    print(
        json.dumps(
            {
                "benchmark": "console_start_to_first_frame",
                "terminal": f"{cols}x{rows}",
                "runs": a.runs,
                "median_s": round(statistics.median(times), 3),
                "min_s": round(min(times), 3),
                "max_s": round(max(times), 3),
                "target_s": 1.5,
                "cpus": os.cpu_count(),
                "loadavg_1m": round(os.getloadavg()[0], 2),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
