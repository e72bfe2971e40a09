"""Pareto: finished runs on any two objectives, coloured by engine, the non-dominated front
highlighted (capital letters joined by a line) and listed.

Axes are logarithmic where the objective suits it and the data spans more than 20x (toggle with
g). Runs lacking either figure are left out and counted, never plotted at 0.

s opens an SLO filter (`ttft_p90<=0.5 tpot_p90<=0.05 e2e_p99<=2 exact_match>=0.3`, the grammar of
`wattlab.analysis.advise.parse_slo`): runs that miss a bound, on their own stored figures, are drawn
grey and their front rows dimmed; an empty filter clears it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, ClassVar

from rich.cells import cell_len
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import DataTable, Footer, Input, Label, Select, Static

from wattlab.analysis.queries import short_ids
from wattlab.app import fmt
from wattlab.app.data import OBJECTIVES
from wattlab.app.screens.base import LabScreen
from wattlab.app.widgets.nav import NavBar
from wattlab.app.widgets.scatter import ScatterData, ScatterPlot, ScatterPoint, group_colors, group_markers
from wattlab.engines import display_order
from wattlab.errors import WattlabError

ALL = "__all__"


class ParetoScreen(LabScreen):
    AUTO_FOCUS = "#pareto-front"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("x", "cycle('x')", "Next X"),
        Binding("y", "cycle('y')", "Next Y"),
        Binding("g", "toggle_log", "Log axes"),
        Binding("s", "slo", "SLO filter"),
        Binding("r", "reload", "Reload"),
    ]

    class Loaded(Message):
        def __init__(
            self, key: tuple[Any, ...], result: dict[str, Any] | None, error: WattlabError | None
        ) -> None:
            super().__init__()
            self.key, self.result, self.error = key, result, error

    class SessionsLoaded(Message):
        def __init__(self, sessions: list[tuple[str, str]]) -> None:
            super().__init__()
            self.sessions = sessions

    def __init__(self) -> None:
        super().__init__()
        self.x, self.y = "j_per_token", "e2e_p50_s"
        self.session_id: str | None = None
        self.log_auto = True
        self._seen_version = -1
        self._result: dict[str, Any] | None = None
        self.slo_text = ""  # the SLO filter as typed ("" = none); parsed by advise.parse_slo

    def compose(self) -> ComposeResult:
        options = [(o.label, key) for key, o in OBJECTIVES.items()]
        yield NavBar("pareto")
        with Vertical(id="pareto-body"):
            with Horizontal(id="pareto-controls"):
                yield Label("X", classes="form-label-short")
                yield Select(options, value=self.x, allow_blank=False, id="pareto-x", compact=True)
                yield Label("Y", classes="form-label-short")
                yield Select(options, value=self.y, allow_blank=False, id="pareto-y", compact=True)
                yield Select(
                    [("all sessions", ALL)], value=ALL, allow_blank=False, id="pareto-session", compact=True
                )
            slo = Input(
                placeholder="SLO filter, e.g. ttft_p90<=0.5 tpot_p90<=0.05 e2e_p99<=2 "
                "(Enter applies, empty clears)",
                id="pareto-slo",
            )
            slo.display = False  # shown by s
            yield slo
            yield Static("", id="pareto-status")
            with Horizontal(id="pareto-main"):
                with Vertical(id="pareto-left"):
                    yield ScatterPlot(id="pareto-plot")
                    yield Static("", id="pareto-legend")
                yield DataTable(id="pareto-front", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self._refresh_if_stale()

    def on_resize(self) -> None:
        self.set_class(self.size.width >= 120, "wide")

    def on_screen_resume(self) -> None:
        self._refresh_if_stale()

    def _refresh_if_stale(self) -> None:
        """Load once per data version, whichever of mount and resume comes first."""
        if self._seen_version != self.lab.data_version:
            self._load_sessions()
            self.reload()

    def on_data_changed(self, _: Any) -> None:
        self.reload()

    # --- loading ----------------------------------------------------------------------------------
    def _key(self) -> tuple[Any, ...]:
        return (self.x, self.y, self.session_id, self.slo_text)

    def reload(self) -> None:
        self._seen_version = self.lab.data_version
        if self.x == self.y:
            self.query_one("#pareto-status", Static).update("[red]choose two different objectives[/] (x / y)")
            return
        self.query_one("#pareto-status", Static).update("[dim]loading…[/]")
        self._load(self._key())

    @work(thread=True, exclusive=True, exit_on_error=False, group="pareto-load")
    def _load(self, key: tuple[Any, ...]) -> None:
        from wattlab.app.data import pareto

        x, y, session_id, slo_text = key
        try:
            result = pareto(self.lab.store, x, y, session_id)
            if slo_text:
                from wattlab.analysis.advise import parse_slo, runs_missing

                with self.lab.store.reader() as con:
                    result["slo_missing"] = runs_missing(con, parse_slo(slo_text), x, y, session_id)
            self.post_message(self.Loaded(key, result, None))
        except WattlabError as exc:
            self.post_message(self.Loaded(key, None, exc))

    @work(thread=True, exclusive=True, exit_on_error=False, group="pareto-sessions")
    def _load_sessions(self) -> None:
        from wattlab.app.data import sessions_with_runs

        try:
            self.post_message(self.SessionsLoaded(sessions_with_runs(self.lab.store)))
        except WattlabError:
            self.post_message(self.SessionsLoaded([]))

    def on_pareto_screen_sessions_loaded(self, message: SessionsLoaded) -> None:
        select = self.query_one("#pareto-session", Select)
        with select.prevent(Select.Changed):
            select.set_options([("all sessions", ALL)] + [(label, sid) for sid, label in message.sessions])
            ids = [sid for sid, _ in message.sessions]
            select.value = self.session_id if self.session_id in ids else ALL

    def on_pareto_screen_loaded(self, message: Loaded) -> None:
        if message.key != self._key():
            return
        status = self.query_one("#pareto-status", Static)
        if message.error is not None or message.result is None:
            err = message.error
            status.update(fmt.error_text(err, "no data"))
            return
        self._result = message.result
        self._show()

    def _show(self) -> None:
        result = self._result
        if result is None:
            return
        ox, oy = result["x"], result["y"]
        engines = sorted(
            {p[0] for p in result["points"]} | {r["engine"] for r in result["front"]},
            key=display_order,  # each engine's spec says where it goes
        )
        log_x, log_y = (result["log_x"], result["log_y"]) if self.log_auto else (False, False)
        # SLO misses: points carry no run id, so each missing run greys one point of its own values.
        miss_points, miss_ids = result.get("slo_missing") or ([], set())
        left = Counter(miss_points)
        points = []
        for engine, x, y in result["points"]:
            muted = left[(engine, float(x), float(y))] > 0
            left[(engine, float(x), float(y))] -= muted
            points.append(ScatterPoint(float(x), float(y), engine, muted=muted))
        points += [
            ScatterPoint(float(r["x"]), float(r["y"]), r["engine"], front=True, muted=r["run_id"] in miss_ids)
            for r in result["front"]
        ]
        self.query_one("#pareto-plot", ScatterPlot).set_data(
            ScatterData(
                points=tuple(points),
                x_label=ox.label,
                y_label=oy.label,
                log_x=log_x,
                log_y=log_y,
                groups=tuple(engines),
            )
        )
        letters, colors = group_markers(engines), group_colors(engines)
        legend = "  ".join(f"[{colors[e]}]{letters[e]}/{letters[e].upper()}[/] {e}" for e in engines)
        self.query_one("#pareto-legend", Static).update(
            f"{legend}  [dim]capital + line: the front ({ox.direction} X, {oy.direction} Y)[/]"
        )
        excluded = result["excluded"]
        why = "missing either figure" + (
            ", or perplexity (not comparable)" if "quality" in (ox.column, oy.column) else ""
        )
        self.query_one("#pareto-status", Static).update(
            f"[b]{len(result['front'])}[/] on the front of {result['considered']:,} finished run(s)"
            + (f" · {excluded:,} left out ({why})" if excluded else "")
            + (" · plot thinned to one point per cell" if result["thinned"] else "")
            + (
                f" · SLO {fmt.esc(self.slo_text)}: [grey50]{len(miss_ids):,} miss (grey)[/]"
                if "slo_missing" in result
                else ""
            )
        )
        table = self.query_one("#pareto-front", DataTable)
        table.clear(columns=True)
        # The two objectives come right after the run, so a narrow list never scrolls them away.
        labels = ("run", ox.label, oy.label, "engine", "model", "variant", "bs")
        short = short_ids([r["run_id"] for r in result["front"]])
        rows = [
            (
                short[r["run_id"]],
                fmt.num(r["x"], 4),
                fmt.num(r["y"], 4),
                fmt.esc(r["engine"]),
                fmt.esc(fmt.short_model(r.get("model"), 18)),
                fmt.esc(r.get("quant") or fmt.DASH),
                fmt.num(r.get("batch_size")),
            )
            for r in result["front"]
        ]
        # Widths fixed from the content up front: auto-width columns are sized on a later idle, and a
        # frame drawn before that (seen on a loaded box) cut run ids to the header's width.
        for i, label in enumerate(labels):
            width = max([cell_len(str(label)), *(cell_len(Text.from_markup(row[i]).plain) for row in rows)])
            table.add_column(label, width=width)
        for r, row in zip(result["front"], rows, strict=True):
            missed = r["run_id"] in miss_ids
            table.add_row(*(f"[grey50]{cell}[/]" if missed else cell for cell in row), key=r["run_id"])

    # --- controls ---------------------------------------------------------------------------------
    @on(Select.Changed)
    def _changed(self, event: Select.Changed) -> None:
        before = self._key()
        if event.select.id == "pareto-x":
            self.x = str(event.value)
        elif event.select.id == "pareto-y":
            self.y = str(event.value)
        elif event.select.id == "pareto-session":
            self.session_id = None if event.value in (ALL, Select.NULL) else str(event.value)
        if self._key() != before:  # menus refilled with the same choice change nothing
            self.reload()

    def action_cycle(self, axis: str) -> None:
        keys = list(OBJECTIVES)
        current = self.x if axis == "x" else self.y
        other = self.y if axis == "x" else self.x
        nxt = keys[(keys.index(current) + 1) % len(keys)]
        if nxt == other:
            nxt = keys[(keys.index(nxt) + 1) % len(keys)]
        self.query_one(f"#pareto-{axis}", Select).value = nxt

    def action_toggle_log(self) -> None:
        self.log_auto = not self.log_auto
        self.notify("log axes where they fit" if self.log_auto else "linear axes")
        self._show()

    def action_reload(self) -> None:
        self.reload()

    def action_slo(self) -> None:
        box = self.query_one("#pareto-slo", Input)
        box.display = True
        box.value = self.slo_text
        box.focus()

    @on(Input.Submitted, "#pareto-slo")
    def _apply_slo(self, event: Input.Submitted) -> None:
        from wattlab.analysis.advise import parse_slo

        text = " ".join(event.value.split())
        try:
            parse_slo(text)  # refused here, with its fix, before anything loads
        except WattlabError as exc:
            self.query_one("#pareto-status", Static).update(fmt.error_text(exc, "bad SLO filter"))
            return
        self.slo_text = text
        event.input.display = bool(text)
        self.query_one("#pareto-front", DataTable).focus()
        self.reload()

    @on(DataTable.RowSelected, "#pareto-front")
    def _open_run(self, event: DataTable.RowSelected) -> None:
        from wattlab.app.screens.run_detail import RunDetailScreen

        if event.row_key.value:
            self.lab.push_screen(RunDetailScreen(str(event.row_key.value), origin="pareto"))
