"""Live: power over time, utilization, energy, speed, progress and the event log of a session.

Sampling happens in other processes (the runner, or the console's monitor child); this screen only
tails their files. A 4 Hz interval starts one poll at a time in a thread worker: `LiveTail.poll()`
reads the bytes appended since the last poll and returns an immutable snapshot, posted back as a
message; the UI thread renders it, touching only widgets whose text changed. A fresh tail reads
the spool from byte 0, so attaching to a running or finished session replays its whole timeline.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Footer, ProgressBar, RichLog, Static

from wattlab.app import fmt
from wattlab.app.screens.base import LabScreen
from wattlab.app.screens.live_support import (
    Target,
    ago_labels,
    live_session_ids,
    log_text,
    new_log_lines,
    session_entries,
    stop_runner,
)
from wattlab.app.screens.live_view import (
    render_devices,
    render_figures,
    render_legend,
    render_results,
    render_status,
)
from wattlab.app.widgets.chart import PALETTE, ChartData, Series, TimeChart
from wattlab.app.widgets.dialogs import AttachScreen, ConfirmScreen, SessionEntry
from wattlab.app.widgets.nav import NavBar

REFRESH_S = 0.25  # render rate: 4 Hz, whatever the sampling rate of the runner or monitor
LIVE_CHECK_S = 2.0  # how often to look for a newly started sweep to attach to
WINDOW_S = 120.0  # the chart's rolling window
DATA_SETTLE_S = 1.5  # the runner commits a run just after writing its run_end event
RESULTS_SHOWN = 20  # the latest runs listed beside the chart (History has them all)
WRAPPED = frozenset({"live-figures"})  # panels that wrap (a meter's fix is read whole at 80 columns)


class LiveScreen(LabScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("m", "show_monitor", "Box power"),
        Binding("a", "attach", "Attach"),
        Binding("x", "stop_sweep", "Stop sweep"),
        Binding("l", "app.switch_mode('launch')", "Launch"),
    ]

    class Polled(Message):
        def __init__(
            self, version: int, snapshot: Any, error: str | None, live_ids: list[str] | None, started: bool
        ) -> None:
            super().__init__()
            self.version, self.snapshot, self.error = version, snapshot, error
            self.live_ids, self.started = live_ids, started

    class Sessions(Message):
        def __init__(self, entries: list[SessionEntry]) -> None:
            super().__init__()
            self.entries = entries

    def __init__(self) -> None:
        super().__init__()
        self._target: Target | None = None
        self._version = 0
        self._polling = False
        self._last_live_check = 0.0
        self._declined: set[str] = set()  # sessions the user left: never auto-attach to them again
        self._tail: Any = None  # the LiveTail; touched only inside the poll worker (one at a time)
        self._tail_key: tuple[str, str] | None = None
        self._snapshot: Any = None
        self._started = True
        self._error: str | None = None
        self._shown: dict[str, str] = {}
        self._rows: dict[str, int] = {}  # wrapped rows of each WRAPPED panel, as last laid out
        self._log: tuple[str, ...] = ()
        self._results_shown = 0
        self._progress_shown: tuple[int, int] | None = None

    def compose(self) -> ComposeResult:
        yield NavBar("live")
        with Vertical(id="live-body"):
            yield Static(id="live-status")
            with Horizontal(id="live-progress-row"):
                yield ProgressBar(total=1, show_eta=False, id="live-progress")
                yield Static(id="live-eta")
            with Horizontal(id="live-main"):
                with Vertical(id="live-left"):
                    yield Static(id="live-legend")
                    yield TimeChart(id="live-chart")
                with Vertical(id="live-right"):
                    yield Static("Runs of this session [dim](latest last)[/]", classes="section-title")
                    yield Static("", id="live-results")
            yield Static(id="live-devices")
            yield Static(id="live-figures")
            yield RichLog(id="live-log", markup=True, wrap=True, max_lines=1000)
        yield Footer()

    def on_mount(self) -> None:
        self.set_interval(REFRESH_S, self._tick)
        self._tick()

    def on_resize(self) -> None:
        wide = self.size.width >= 120 and self.size.height >= 34
        self.set_class(wide, "wide")
        self.set_class(not wide, "narrow")
        self._shown.pop("live-figures", None)  # re-wrap (and re-lay out) at the new width
        self._rows.clear()

    def on_screen_resume(self) -> None:
        self._shown.clear()
        self._render_snapshot()

    # --- choosing what to follow -------------------------------------------------------------------
    def _set_target(self, target: Target) -> None:
        if self._target is not None and (target.kind, target.key) == (self._target.kind, self._target.key):
            return
        if self._target is not None and self._target.kind == "session" and target.kind != "session":
            self._declined.add(self._target.key)
        self._target = target
        self._version += 1
        self._snapshot, self._error, self._started = None, None, True
        self._log, self._results_shown, self._progress_shown = (), 0, None
        self._shown.clear()
        self.query_one("#live-log", RichLog).clear()
        if target.kind == "session":
            self.lab.stop_monitor()  # the runner samples; a monitor would add load

    def _monitor_target(self) -> Target:
        path = self.lab.start_monitor()
        return (
            Target("monitor", path, since=time.monotonic())
            if path
            else Target("none", since=time.monotonic())
        )

    def _apply_request(self) -> None:
        request = self.lab.live_request
        if request is None:
            return
        self.lab.live_request = None
        if request.session_id:
            self._declined.discard(request.session_id)
            self._set_target(Target("session", request.session_id, request.launch_log, time.monotonic()))
        else:
            self._set_target(self._monitor_target())

    def _tick(self) -> None:
        self._apply_request()
        if self._polling:
            return  # the previous poll is still reading (a long spool on attach): skip this tick
        now = time.monotonic()
        following_run = (
            self._target is not None
            and self._target.kind == "session"
            and (self._snapshot is None or self._snapshot.status in ("running", "queued"))
        )
        check = self.lab.auto_attach and not following_run and now - self._last_live_check >= LIVE_CHECK_S
        if check or self._target is None:
            self._last_live_check = now
        self._polling = True
        self._poll(self._target, self._version, check or self._target is None)

    @work(thread=True, exclusive=True, exit_on_error=False, group="live-poll")
    def _poll(self, target: Target | None, version: int, check_live: bool) -> None:
        from wattlab.cluster.live import tail_for
        from wattlab.sessions.live import LiveTail

        snapshot, error, live_ids, started = None, None, None, True
        try:
            if check_live:
                live_ids = live_session_ids()
            if target is not None and target.kind in ("session", "monitor"):
                if self._tail_key != (target.kind, target.key):
                    self._tail = (
                        tail_for(target.key)  # a cluster sweep: one lane per node (cluster/live.py)
                        if target.kind == "session"
                        else LiveTail(monitor_file=Path(target.key))
                    )
                    self._tail_key = (target.kind, target.key)
                started = self._tail.runner_started
                snapshot = self._tail.poll()
        except Exception as exc:  # a torn file or a vanished spool: say so, keep polling
            error = f"{type(exc).__name__}: {exc}"
        self.post_message(self.Polled(version, snapshot, error, live_ids, started))

    def on_live_screen_polled(self, message: Polled) -> None:
        self._polling = False
        if message.live_ids is not None:
            candidates = [s for s in message.live_ids if s not in self._declined]
            current = self._target.key if self._target and self._target.kind == "session" else None
            if candidates and candidates[0] != current and self.lab.auto_attach:
                self._set_target(Target("session", candidates[0], since=time.monotonic()))
                return
            if self._target is None:
                self._set_target(self._monitor_target())
                return
        if message.version != self._version:
            return  # a poll of what we followed before
        previous = self._snapshot
        self._snapshot, self._error, self._started = message.snapshot, message.error, message.started
        snap = message.snapshot
        running = (
            self._target is not None
            and self._target.kind == "session"
            and snap is not None
            and snap.status in ("running", "queued")  # a queued sweep can be stopped too
        )
        if running != (self.lab.following is not None):
            self.refresh_bindings()  # "Stop sweep" appears or goes
        self.lab.following = snap.session_id if running else None
        progressed = (
            snap is not None
            and previous is not None
            and (len(snap.results) > len(previous.results) or snap.status != previous.status)
        )
        if progressed and self._target is not None and self._target.kind == "session":
            # A run was committed (or the session ended): History, Compare and Pareto reload.
            self.set_timer(DATA_SETTLE_S, self.lab.bump_data)
        if self.is_current:
            with self.lab.batch_update():  # one frame per snapshot, however many panels changed
                self._render_snapshot()

    # --- rendering --------------------------------------------------------------------------------
    def _update(self, widget_id: str, text: str) -> None:
        """Set a panel's text if it changed; ask for a layout pass only when its line count changed
        (the panels do not wrap), so a 4 Hz refresh repaints without re-laying out the screen."""
        previous = self._shown.get(widget_id)
        if previous == text:
            return
        self._shown[widget_id] = text
        widget = self.query_one(f"#{widget_id}", Static)
        if widget_id in WRAPPED:  # its height is its wrapped rows, which a longer figure can change
            rows = self._wrapped_rows(text, widget.content_region.width or self.size.width)
            relayout = self._rows.get(widget_id) != rows
            self._rows[widget_id] = rows
        else:
            relayout = previous is None or previous.count("\n") != text.count("\n")
        widget.update(text, layout=relayout)

    def _wrapped_rows(self, text: str, width: int) -> int:
        from rich.text import Text

        try:
            content = Text.from_markup(text)
        except Exception:  # broken markup shows as it is
            content = Text(text)
        return len(content.wrap(self.app.console, max(1, width)))

    def _render_snapshot(self) -> None:
        target, snap = self._target, self._snapshot
        if target is None:
            self._update("live-status", "[dim]looking for a running sweep…[/]")
            return
        monitor = self.lab.monitor
        failure = monitor.failure() if (monitor is not None and target.kind == "monitor") else None
        self._update("live-status", render_status(target, snap, self._started, self._error, failure))
        is_session = target.kind == "session" and snap is not None
        self.query_one("#live-progress-row").display = is_session
        self.set_class(is_session, "session")  # the runs table shows beside the chart (wide) for a session
        if is_session and (max(1, snap.runs_total), snap.runs_done) != self._progress_shown:
            self._progress_shown = (max(1, snap.runs_total), snap.runs_done)
            self.query_one("#live-progress", ProgressBar).update(
                total=self._progress_shown[0], progress=snap.runs_done
            )
        if is_session:
            eta = "" if snap.status != "running" else f" · ETA {fmt.duration(snap.eta_s)}"
            failed = f" · [red]{snap.runs_failed} failed[/]" if snap.runs_failed else ""
            self._update("live-eta", f" {snap.runs_done}/{snap.runs_total} runs{failed}{eta}")
        # Jetson rails sit inside the board total: listed in the table, not plotted.
        domains = [d for d in (snap.domains if snap else ()) if d.kind != "rail"]
        mono = bool(self.lab.no_color)
        self._update("live-legend", render_legend(domains, mono))
        self._update("live-devices", render_devices(snap.domains if snap else ()))
        probe = self.lab.probe
        compact = target.kind == "session" and not self.has_class("wide")
        self._update("live-figures", render_figures(target, snap, probe, self._launch_default(), compact))
        self._render_chart(domains)
        if snap is not None:
            self._render_log(snap.log)
            self._render_results(snap.results)

    def _launch_default(self) -> str:
        catalog = self.lab.catalog
        if catalog is None:
            return ""
        return f"{catalog.default_model()} on {catalog.default_engine()} preselected"

    def _render_chart(self, domains: list[Any]) -> None:
        first = min((d.history[0][0] for d in domains if d.history), default=0.0)
        last = max((d.history[-1][0] for d in domains if d.history), default=0.0)
        # A rolling window of up to WINDOW_S; a young session fills the width instead of a corner.
        lo = max(first, last - WINDOW_S)
        if last - lo < 10.0:
            lo = last - 10.0
        series = tuple(Series(d.id, d.history, PALETTE[i % len(PALETTE)]) for i, d in enumerate(domains))
        empty = (
            "waiting for the first samples…"
            if self._target and self._target.kind != "none"
            else "no power monitor"
        )
        self.query_one("#live-chart", TimeChart).set_data(
            ChartData(series=series, x_range=(lo, last), x_labels=ago_labels(lo, last), empty_text=empty)
        )

    def _render_log(self, log: tuple[str, ...]) -> None:
        if log == self._log:
            return
        fresh = new_log_lines(self._log, log)
        self._log = log
        widget = self.query_one("#live-log", RichLog)
        for line in fresh:
            widget.write(log_text(line))

    def _render_results(self, results: tuple[dict[str, Any], ...]) -> None:
        """The latest runs as a text panel (cheaper than a table on a 1-second-per-run sweep)."""
        if len(results) == self._results_shown:
            return
        self._results_shown = len(results)
        self._update("live-results", render_results(results, RESULTS_SHOWN))

    # --- actions ----------------------------------------------------------------------------------
    def _running_session(self) -> str | None:
        snap = self._snapshot
        if (
            self._target
            and self._target.kind == "session"
            and snap
            and snap.runner_alive
            and snap.status in ("running", "queued")
        ):
            return self._target.key
        return None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Show "Stop sweep" only while a running sweep is attached."""
        if action == "stop_sweep":
            return self._running_session() is not None
        return True

    def action_show_monitor(self) -> None:
        self.lab.auto_attach = False
        self._set_target(self._monitor_target())
        self._render_snapshot()

    def action_attach(self) -> None:
        self._list_sessions()

    @work(thread=True, exclusive=True, exit_on_error=False, group="live-sessions")
    def _list_sessions(self) -> None:
        self.post_message(self.Sessions(session_entries()))

    def on_live_screen_sessions(self, message: Sessions) -> None:
        def chosen(session_id: str | None) -> None:
            if session_id:
                self.lab.follow(session_id)

        self.lab.push_screen(AttachScreen(message.entries), chosen)

    def action_stop_sweep(self) -> None:
        session_id = self._running_session()
        if session_id is None:
            self.notify("no running sweep is attached", severity="warning")
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                problem = stop_runner(session_id)
                self.notify(
                    problem or f"asked the runner of {session_id} to stop; it commits what it measured",
                    severity="warning" if problem else "information",
                    markup=False,  # the runner's message is plain text
                )

        question = f"Stop sweep {session_id}?\nThe current run is marked interrupted; finished runs are kept."
        self.lab.push_screen(ConfirmScreen(question), confirmed)
