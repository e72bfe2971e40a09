"""The console's power monitor: a child process sampling this box's meters into a timeline file.

The console itself never opens a meter (that would load pynvml or jtop into it). It starts
`python -m wattlab.meters.monitor`, which writes the same timeline format as a session spool, and
tails that file with `LiveTail(monitor_file=...)`. The monitor runs only while Live shows the box
with no sweep attached: while a sweep runs, the runner samples the meters itself, and a second
sampler would add its own CPU load to what the sweep measures. It exits on its own when the
console dies (it watches its parent), and the console stops it on quit.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path


class MonitorProcess:
    """Start/stop one monitor child writing `out` (one file per console process)."""

    def __init__(self, out: Path, power_hz: float = 4.0) -> None:
        self.out = out
        self.power_hz = power_hz
        self._proc: subprocess.Popen[bytes] | None = None
        self.log = out.with_suffix(".log")

    @classmethod
    def for_console(cls, data_dir: Path) -> MonitorProcess:
        """This console's monitor; files left by consoles that died (SSH dropped) are removed."""
        folder = data_dir / "monitor"
        for old in folder.glob("console-*.*") if folder.exists() else ():
            pid = old.stem.removeprefix("console-")
            if pid.isdigit() and not _pid_alive(int(pid)):
                with contextlib.suppress(OSError):
                    old.unlink()
        return cls(folder / f"console-{os.getpid()}.jsonl")

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        if self.running:
            return
        self.out.parent.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "wattlab.meters.monitor",
            "--out",
            str(self.out),
            "--power-hz",
            str(self.power_hz),
        ]
        with open(self.log, "ab") as log:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    def stop(self, timeout_s: float = 2.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout_s)
        for path in (self.out, self.log):
            with contextlib.suppress(OSError):
                path.unlink()

    def failure(self) -> str | None:
        """Why the monitor is not running, when it exited (its error line, or its log's last line)."""
        if self._proc is None or self._proc.poll() is None:
            return None
        import json

        try:
            first = self.out.read_text(encoding="utf-8").splitlines()[0]
            error = json.loads(first).get("monitor_error")
            if error:
                return str(error)
        except (OSError, ValueError, IndexError, AttributeError):
            pass
        try:
            lines = [
                ln for ln in self.log.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()
            ]
        except OSError:
            lines = []
        return lines[-1] if lines else f"the power monitor exited with code {self._proc.returncode}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: leave its files alone
    return True
