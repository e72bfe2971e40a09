"""WattlabApp: the screens (as modes), shared state, start-up work and a clean quit.

Start-up does nothing slow on the UI thread: recovering dead runners' spools into DuckDB and
probing this box (`wattlab doctor --json`, in a subprocess) run in thread workers that report
through messages. Quitting stops the console's power monitor and nothing else: a sweep started
from here is a detached runner and keeps going.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen

from wattlab.app.catalog import BoxProbe, Catalog
from wattlab.app.messages import DataChanged, LiveRequest, ProbeReady
from wattlab.app.modes import SCREENS
from wattlab.app.monitor import MonitorProcess
from wattlab.sessions.store import Store


class WattlabApp(App[int]):
    """The console. `db`: the DuckDB file (default: the data dir's).

    Test and benchmark knobs: `catalog` (a StaticCatalog gives fixed menus), `monitor` (False: start
    no monitor process), `attach` ("auto": the newest live session, else the box monitor; a session
    id; or None: the box monitor), `recover` (False: skip spool recovery at start), `monitor_file`
    (a recorded monitor timeline to show as this box, instead of starting a monitor).
    """

    CSS_PATH = "app.tcss"
    TITLE = "wattlab"
    # Modes, number keys and palette entries all come from the one screen table (app/modes.py).
    MODES: ClassVar[dict[str, Any]] = {entry.mode: entry.factory() for entry in SCREENS}
    DEFAULT_MODE = SCREENS[0].mode
    BINDINGS: ClassVar[list[BindingType]] = [
        *(Binding(e.key, f"switch_mode('{e.mode}')", e.label, show=False) for e in SCREENS),
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
            # Plain text: a fix such as `pip install 'wattlab[vllm]'` must keep its brackets.
            self.notify(message.error, title="Could not recover spools", severity="error", markup=False)
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
            self.notify(
                message.probe.error, title="Could not check this box", severity="warning", markup=False
            )
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
        for entry in SCREENS:
            yield SystemCommand(f"Go to {entry.label}", entry.help, lambda m=entry.mode: self.switch_mode(m))
        yield SystemCommand(
            "Box monitor", "Live: this box's power, with no sweep attached", lambda: self.follow(None)
        )
        yield SystemCommand("Reload data", "re-read the database on every screen", self.bump_data)
