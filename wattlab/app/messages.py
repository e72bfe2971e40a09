"""Console-wide messages: posted by the app to whichever screen is showing.

Screens handle them by name (`on_probe_ready`, `on_data_changed`); attributes flow down (the app's
state), these messages flow up and across.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual.message import Message


class ProbeReady(Message):
    """`app.probe` is set (engines installed, meters available)."""


class DataChanged(Message):
    """The database has new rows (a run committed, a spool recovered): reload what you show."""


@dataclass(frozen=True)
class LiveRequest:
    """What Live should follow next: a session (maybe just launched) or the box monitor."""

    session_id: str | None
    launch_log: Path | None = None
