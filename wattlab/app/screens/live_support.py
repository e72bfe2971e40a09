"""Live's helpers that need no widget: what to follow, log diffing, time labels, runner processes."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

from rich.errors import MarkupError
from rich.text import Text

from wattlab.app.widgets.dialogs import SessionEntry

TIME_STEPS = (1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1800, 3600)


@dataclass(frozen=True)
class Target:
    """What Live follows."""

    kind: str  # "session" | "monitor" | "none" (no monitor: tests, or it failed)
    key: str = ""  # session id, or the monitor's timeline file
    launch_log: Path | None = None  # the runner's log, for a session launched from here
    since: float = 0.0  # time.monotonic() when chosen


def new_log_lines(old: tuple[str, ...], new: tuple[str, ...]) -> tuple[str, ...]:
    """Lines of `new` not yet shown, where `new` is `old` shifted left and extended (a bounded deque)."""
    if not old:
        return new
    for shift in range(len(old) + 1):
        kept = old[shift:]
        if new[: len(kept)] == kept:
            return new[len(kept) :]
    return new


def ago_labels(lo: float, last: float) -> tuple[tuple[float, str], ...]:
    """Tick labels counting back from now in round time steps: -90s, -1m, -30s, now."""
    span = last - lo
    step = next((s for s in TIME_STEPS if s >= span / 4), TIME_STEPS[-1])
    labels = []
    ago = float(step)
    while last - ago >= lo - 1e-9:
        text = f"-{ago / 60:g}m" if ago >= 60 and ago % 60 == 0 else f"-{ago:g}s"
        labels.append((last - ago, text))
        ago += step
    return (*reversed(labels), (last, "now"))


def log_text(line: str) -> Text:
    """A runner event line (rich markup); shown as plain text if its markup is broken."""
    try:
        return Text.from_markup(line)
    except MarkupError:
        return Text(line)


def live_session_ids() -> list[str]:
    """Sessions whose runner is alive, newest first (asked of the live tail's module)."""
    from wattlab.sessions.live import live_sessions

    return live_sessions()


def session_entries(limit: int = 50) -> list[SessionEntry]:
    """The newest session spools for the attach picker, live ones first."""
    from wattlab.sessions.spool import list_spools

    entries = []
    for spool in reversed(list_spools()[-limit:]):
        session = spool.session()
        label = str(session.get("name") or "")
        runs = session.get("runs_planned")
        alive = not spool.committed and spool.runner_alive()
        entries.append(SessionEntry(spool.session_id, f"{label} ({runs} runs)" if runs else label, alive))
    entries.sort(key=lambda e: not e.alive)
    return entries


def stop_runner(session_id: str) -> str | None:
    """Ask a session's runner to stop (SIGTERM: it marks the current run interrupted and commits).

    Returns a problem to show, or None when the signal was sent.
    """
    from wattlab.sessions.spool import Spool, is_alive

    ident = Spool(session_id).runner_identity()
    if not ident or not is_alive(ident):
        return "the runner has already stopped"
    try:
        os.kill(int(ident["pid"]), signal.SIGTERM)
    except OSError as exc:
        return f"cannot stop the runner (pid {ident['pid']}): {exc.strerror}"
    return None
