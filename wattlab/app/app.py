"""WattlabApp: the screens (as modes), shared state, start-up work and a clean quit.

Start-up does nothing slow on the UI thread: recovering dead runners' spools into DuckDB and
probing this box (`wattlab doctor --json`, in a subprocess) run in thread workers that report
through messages. Quitting stops the console's power monitor and nothing else: a sweep started
from here is a detached runner and keeps going.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen

from wattlab.app.catalog import BoxProbe, Catalog
from wattlab.app.monitor import MonitorProcess
from wattlab.app.screens.compare import CompareScreen
from wattlab.app.screens.history import HistoryScreen
from wattlab.app.screens.launch import LaunchScreen
from wattlab.app.screens.live import LiveScreen
from wattlab.app.screens.pareto import ParetoScreen
from wattlab.app.screens.sql import SqlScreen
from wattlab.sessions.store import Store


class ProbeReady(Message):
    """`app.probe` is set (engines installed, meters available)."""


class DataChanged(Message):
    """The database has new rows (a run committed, a spool recovered): reload what you show."""


@dataclass(frozen=True)
class LiveRequest:
    """What Live should follow next: a session (maybe just launched) or the box monitor."""

    session_id: str | None
    launch_log: Path | None = None


class WattlabApp(App[int]):
    """The console. `db`: the DuckDB file (default: the data dir's).

    Test and benchmark knobs: `catalog` (a StaticCatalog gives fixed menus), `monitor` (False: start
    no monitor process), `attach` ("auto": the newest live session, else the box monitor; a session
    id; or None: the box monitor), `recover` (False: skip spool recovery at start), `monitor_file`
    (a recorded monitor timeline to show as this box, instead of starting a monitor).
    """

    CSS_PATH = "app.tcss"
    TITLE = "wattlab"
    MODES: ClassVar[dict[str, Any]] = {
        "live": LiveScreen,
        "launch": LaunchScreen,
        "history": HistoryScreen,
        "compare": CompareScreen,
        "pareto": ParetoScreen,
        "sql": SqlScreen,
    }
    DEFAULT_MODE = "live"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("1", "switch_mode('live')", "Live", show=False),
        Binding("2", "switch_mode('launch')", "Launch", show=False),
        Binding("3", "switch_mode('history')", "History", show=False),
        Binding("4", "switch_mode('compare')", "Compare", show=False),
        Binding("5", "switch_mode('pareto')", "Pareto", show=False),
        Binding("6", "switch_mode('sql')", "SQL", show=False),
        Binding("q", "quit", "Quit"),
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True),
    ]

    def __init__(
        self,
        db: str | Path | None = None,
        *,
        catalog: Catalog | None = None,
        monitor: bool = True,
        attach: str | None = "auto",
        recover: bool = True,
        monitor_file: Path | None = None,
    ) -> None:
        super().__init__()
        from wattlab.paths import data_dir

        self.data_dir = data_dir()
        self.store = Store(db)
        self.db_arg = str(db) if db else None
        self.catalog = catalog or Catalog()
        self.probe: BoxProbe | None = None
        self.marked: list[str] = []  # runs marked in History for Compare, in marking order
        self.data_version = 0
        self.monitor: MonitorProcess | None = None
        if monitor:
            self.monitor = MonitorProcess.for_console(self.data_dir)
        self.monitor_file = monitor_file  # a fixed monitor timeline to show (tests), instead of a process
        self.live_request: LiveRequest | None = None if attach == "auto" else LiveRequest(attach)
        self.auto_attach = attach == "auto"
        self._recover_at_start = recover
        self.following: str | None = None  # the running session Live follows (set by Live)
        self.left_running: str | None = None  # a live session still running when the console quits

    # --- start-up -------------------------------------------------------------------------------
    def on_mount(self) -> None:
        self.sub_title = self.store.path.name
        if self._recover_at_start:
            self._recover()
        self._probe()

    @work(thread=True, exclusive=True, exit_on_error=False, group="recover")
    def _recover(self) -> None:
        from wattlab.errors import WattlabError
        from wattlab.sessions.commit import recover

        try:
            self.post_message(self.Recovered(recover(self.store)))
        except WattlabError as exc:
            self.post_message(self.Recovered([], f"{exc.message}" + (f"\nfix: {exc.fix}" if exc.fix else "")))
        except Exception as exc:  # a damaged spool must not take the console down
            self.post_message(self.Recovered([], f"recovering spools failed: {type(exc).__name__}: {exc}"))

    class Recovered(Message):
        def __init__(self, sessions: list[dict[str, Any]], error: str | None = None) -> None:
            super().__init__()
            self.sessions = sessions
            self.error = error

    def on_wattlab_app_recovered(self, message: Recovered) -> None:
        if message.error:
            self.notify(message.error, title="Could not recover spools", severity="error")
        if not message.sessions:
            return
        n_int = sum(len(s.get("interrupted") or []) for s in message.sessions)
        self.notify(
            f"{len(message.sessions)} session(s) whose runner had stopped were saved to the database"
            + (f"; {n_int} unfinished run(s) marked interrupted" if n_int else ""),
            title="Recovered",
        )
        self.bump_data()

    @work(thread=True, exclusive=True, exit_on_error=False, group="probe")
    def _probe(self) -> None:
        self.post_message(self.Probed(self.catalog.probe()))

    class Probed(Message):
        def __init__(self, probe: BoxProbe) -> None:
            super().__init__()
            self.probe = probe

    def on_wattlab_app_probed(self, message: Probed) -> None:
        self.probe = message.probe
        if message.probe.error:
            self.notify(message.probe.error, title="Could not check this box", severity="warning")
        self.screen.post_message(ProbeReady())

    # --- shared actions -------------------------------------------------------------------------
    def bump_data(self) -> None:
        """New rows in the database: the visible screen reloads now, the others when shown."""
        self.data_version += 1
        self.screen.post_message(DataChanged())

    def follow(self, session_id: str | None, launch_log: Path | None = None) -> None:
        """Show `session_id` (None: the box monitor) in Live."""
        self.live_request = LiveRequest(session_id, launch_log)
        self.auto_attach = False
        if self.current_mode == "live":
            self.screen.post_message(DataChanged())
        else:
            self.switch_mode("live")

    def toggle_mark(self, run_id: str) -> bool:
        """Mark or unmark a run for Compare; returns whether it is marked now."""
        if run_id in self.marked:
            self.marked.remove(run_id)
            return False
        self.marked.append(run_id)
        return True

    def start_monitor(self) -> str | None:
        """Start the box monitor if it is not running; returns the file to tail (None: no monitor)."""
        if self.monitor_file is not None:
            return str(self.monitor_file)
        if self.monitor is None:
            return None
        if not self.monitor.running and self.monitor.failure() is None:
            self.monitor.start()
        return str(self.monitor.out)

    def stop_monitor(self) -> None:
        if self.monitor is not None:
            self.monitor.stop()

    async def action_quit(self) -> None:
        self.left_running = self.following
        self.stop_monitor()
        self.exit(0)

    def on_unmount(self) -> None:
        self.stop_monitor()

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for mode, label, help_text in (
            ("live", "Live", "power, energy and progress of the running sweep"),
            ("launch", "Launch", "choose model, variant, engine and workload; start a sweep"),
            ("history", "History", "sessions and runs; filter, sort, open a run's detail"),
            ("compare", "Compare", "marked runs side by side with % deltas"),
            ("pareto", "Pareto", "two objectives, the non-dominated front"),
            ("sql", "SQL", "DuckDB query box over the session database"),
        ):
            yield SystemCommand(f"Go to {label}", help_text, lambda m=mode: self.switch_mode(m))
        yield SystemCommand(
            "Box monitor", "Live: this box's power, with no sweep attached", lambda: self.follow(None)
        )
        yield SystemCommand("Reload data", "re-read the database on every screen", self.bump_data)
