"""History: sessions and their runs, filtered and sorted in SQL; mark runs for Compare; open a run.

Filtering (engine, model, status, free text) and sorting (click a column header, or `s` on the
highlighted column) re-run one bounded query in a worker (see data.history), so the screen stays
quick on a database of 100,000 runs.
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import DataTable, Footer, Input, Select, Static

from wattlab.analysis.queries import short_ids
from wattlab.app import fmt
from wattlab.app.data import SORTABLE, RunFilter
from wattlab.app.screens.base import LabScreen
from wattlab.app.widgets.nav import NavBar
from wattlab.errors import WattlabError

ALL = "__all__"
# (column key, header) of the runs table; keys in SORTABLE can be sorted on.
RUN_COLUMNS = (
    ("mark", "✓"),
    ("run_id", "run"),
    ("engine", "engine"),
    ("model", "model"),
    ("quant", "variant"),
    ("transform", "transform"),  # model levers: shown only when a listed run has one (LEVER_COLUMNS)
    ("spec", "spec"),
    ("batch_size", "bs"),
    ("mode", "mode"),
    ("tokens", "in→out"),
    ("throughput_tok_s", "tok/s"),
    ("j_per_token", "J/tok"),
    ("e2e_p50_s", "E2E p50"),
    ("energy_j", "energy"),
    ("quality", "quality"),
    ("status", "status"),
    ("node", "node"),  # cluster runs only (LEVER_COLUMNS hides it when no listed run has one)
    ("started_at", "started"),
)
# Runs-table columns left out first when the screen is narrow: energy figures last, run never.
RUN_DROP_ORDER = (
    "started_at",
    "node",
    "mode",
    "spec",
    "tokens",
    "quality",
    "e2e_p50_s",
    "throughput_tok_s",
    "transform",
    "model",
    "quant",
    "batch_size",
    "status",
    "engine",
    "energy_j",
    "j_per_token",
)


# (column key, header) of the sessions table, and the columns left out first when it is narrow:
# the status is kept whole (a cut "finish" reads as nothing), the energy too.
SESSION_COLUMNS = (
    ("session_id", "session"),
    ("name", "name"),
    ("runs", "runs"),
    ("energy_j", "energy"),
    ("failed", "failed"),
    ("status", "status"),
    ("created_at", "created"),
)
SESSION_DROP_ORDER = ("created_at", "failed", "runs", "name")
# Runs-table column -> the runs column it shows; a column none of the listed runs fills is left out.
LEVER_COLUMNS = {"transform": "transform", "spec": "speculative", "node": "node_id"}


def session_name(name: str | None) -> str:
    """A session's name as History shows it: a sweep file's path (a session started before the
    console named its sessions) shows as the file's stem."""
    if not name:
        return ""
    if "/" in name or name.endswith(".toml"):
        from pathlib import PurePath

        return PurePath(name).stem
    return name


def session_cells(s: dict[str, Any]) -> list[str]:
    """The cells of SESSION_COLUMNS; an energy with any estimated run in it carries `*`."""
    failed = int(s.get("failed") or 0)
    return [
        s["session_id"],
        fmt.esc(fmt.short_model(session_name(s.get("name")), 28)),
        f"{fmt.num(s.get('finished') or 0)}/{fmt.num(s.get('runs_planned'))}",
        fmt.energy(s.get("energy_j")) + ("*" if s.get("estimated") else ""),
        f"[red]{failed}[/]" if failed else "0",
        fmt.esc(s.get("status") or ""),
        fmt.timestamp(s.get("created_at")),
    ]


def run_cells(r: dict[str, Any], marked: bool, short_id: str | None = None) -> list[str]:
    """The cells of RUN_COLUMNS; `short_id`: the run's abbreviated id (wattlab show takes it)."""
    estimated = r.get("energy_method") == "estimated"
    overlapped = "[yellow]![/]" if r.get("overlap") else ""  # other work shared its devices (see detail)
    status = r.get("status") or ""
    quality = (
        f"{fmt.num(r.get('quality'), 3)} {r.get('quality_metric') or ''}".strip()
        if r.get("quality") is not None
        else fmt.DASH
    )
    return [
        "✓" if marked else "",
        short_id or str(r["run_id"]),
        fmt.esc(r.get("engine") or ""),
        fmt.esc(fmt.short_model(r.get("model"), 20)),
        fmt.esc(r.get("quant") or fmt.DASH),
        fmt.esc(r.get("transform") or fmt.DASH),
        fmt.esc(r.get("speculative") or fmt.DASH),
        fmt.num(r.get("batch_size")),
        r.get("mode") or "",
        fmt.esc(r.get("task") or f"{r.get('input_tokens')}→{r.get('output_tokens')}"),
        fmt.num(r.get("throughput_tok_s"), 3),
        fmt.num(r.get("j_per_token"), 3) + ("*" if estimated else ""),
        fmt.seconds(r.get("e2e_p50_s")),
        fmt.energy(r.get("energy_j")) + ("*" if estimated else "") + overlapped,
        quality,
        status if status == "finished" else f"[red]{status}[/]",
        fmt.esc(node_label(r.get("node_id"), r.get("hostname"))) if r.get("node_id") else fmt.DASH,
        fmt.timestamp(r.get("started_at")),
    ]


def node_label(node_id: str | None, hostname: str | None) -> str:
    """A cluster node as `wattlab cluster status` names it: hostname:first 8 of the Ray node id."""
    return f"{hostname or '?'}:{(node_id or '')[:8]}"


class HistoryScreen(LabScreen):
    AUTO_FOCUS = "#runs"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "mark", "Mark"),
        Binding("c", "compare", "Compare"),
        Binding("s", "sort", "Sort"),
        Binding("slash", "find", "Filter"),
        Binding("r", "reload", "Reload"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    class Loaded(Message):
        def __init__(self, result: dict[str, Any] | None, error: WattlabError | None, flt: RunFilter) -> None:
            super().__init__()
            self.result, self.error, self.flt = result, error, flt

    def __init__(self) -> None:
        super().__init__()
        self.flt = RunFilter()
        self._seen_version = -1
        self._menus: tuple[tuple[str, ...], ...] = ()
        self._runs: list[dict[str, Any]] = []
        self._cells: list[list[str]] = []  # every RUN_COLUMNS cell of each run, shown or not
        self._shown: list[int] = list(range(len(RUN_COLUMNS)))  # indexes of the columns shown
        self._sessions: list[dict[str, Any]] = []
        self._session_shown: list[int] = list(range(len(SESSION_COLUMNS)))

    def compose(self) -> ComposeResult:
        yield NavBar("history")
        with Vertical(id="history-body"):
            with Horizontal(id="history-filters"):
                yield Input(
                    placeholder="/ filter: words in run, model, engine, task, error…",
                    id="filter-text",
                    compact=True,
                )
                yield Select([], prompt="engine", id="filter-engine", compact=True)
                yield Select([], prompt="model", id="filter-model", compact=True)
                yield Select([], prompt="status", id="filter-status", compact=True)
                node: Select[str] = Select([], prompt="node", id="filter-node", compact=True)
                node.display = False  # shown once the database holds cluster runs
                yield node
            yield DataTable(id="sessions", cursor_type="row", zebra_stripes=True)
            yield Static("", id="history-status")
            yield DataTable(id="runs", cursor_type="cell", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        sessions = self.query_one("#sessions", DataTable)
        for key, label in SESSION_COLUMNS:
            sessions.add_column(label, key=key)
        runs = self.query_one("#runs", DataTable)
        for key, label in RUN_COLUMNS:
            runs.add_column(label, key=key)
        if self._seen_version != self.lab.data_version:
            self.reload()

    def on_screen_resume(self) -> None:
        # Load once per data version, whichever of mount and resume comes first.
        if self._seen_version != self.lab.data_version:
            self.reload()
        elif self._runs:
            self._refresh_marks()

    def on_data_changed(self, _: Any) -> None:
        self.reload()

    # --- loading ----------------------------------------------------------------------------------
    def reload(self) -> None:
        self._seen_version = self.lab.data_version
        self.query_one("#history-status", Static).update("[dim]loading…[/]")
        self._load(self.flt)

    @work(thread=True, exclusive=True, exit_on_error=False, group="history-load")
    def _load(self, flt: RunFilter) -> None:
        from wattlab.app.data import history

        try:
            self.post_message(self.Loaded(history(self.lab.store, flt), None, flt))
        except WattlabError as exc:
            self.post_message(self.Loaded(None, exc, flt))

    def on_history_screen_loaded(self, message: Loaded) -> None:
        status = self.query_one("#history-status", Static)
        if message.flt != self.flt:
            return  # a newer filter is being loaded
        if message.error is not None:
            status.update(fmt.error_text(message.error))
            return
        result = message.result or {}
        self._fill_menus(result)
        self._fill_sessions(result["sessions"])
        self._runs = result["runs"]
        marked = set(self.lab.marked)
        short = short_ids([r["run_id"] for r in self._runs])
        self._cells = [run_cells(r, r["run_id"] in marked, short[r["run_id"]]) for r in self._runs]
        self._fill_runs(refit=True)
        shown, total = len(self._runs), result["total"]
        arrow = "↓" if self.flt.descending else "↑"
        sort_label = dict(RUN_COLUMNS).get(self.flt.order, self.flt.order)
        status.update(
            f"{shown:,} of {total:,} run(s)"
            + (" (first shown: narrow the filter)" if shown < total else "")
            + f" · sorted by {sort_label} {arrow} · {len(marked)} marked · "
            "[dim]space mark · c compare · enter detail · enter on a session: its runs · "
            "* estimated energy"
            + (" · ! overlapped other work" if any(r.get("overlap") for r in self._runs) else "")
            + "[/]"
        )

    def _fill_runs(self, refit: bool = False) -> None:
        """Fill the runs table with the columns that fit its width (ids never cut, energy kept)."""
        table = self.query_one("#runs", DataTable)
        width = table.size.width or self.app.size.width
        # lever columns only where a listed run has a lever: a column of dashes says nothing
        unused = {k for k, src in LEVER_COLUMNS.items() if not any(r.get(src) for r in self._runs)}
        kept = [i for i, (key, _) in enumerate(RUN_COLUMNS) if key not in unused]
        kept_cells = [[row[i] for i in kept] for row in self._cells]
        # a column that reads the same on every listed run (one engine, one model...) tells the
        # least: it goes first, so a lever study at 80 columns shows its transform, not its engine
        same = {
            key
            for j, (key, _) in enumerate(RUN_COLUMNS[i] for i in kept)
            if len(kept_cells) > 1 and len({row[j] for row in kept_cells}) == 1
        }
        drop_order = tuple(k for k in RUN_DROP_ORDER if k in same) + tuple(
            k for k in RUN_DROP_ORDER if k not in same
        )
        fitted = fmt.fit_table([RUN_COLUMNS[i] for i in kept], kept_cells, drop_order, width)
        shown = [kept[j] for j in fitted]
        if shown == self._shown and not refit:
            return
        cursor = table.cursor_coordinate
        self._shown = shown
        # column 0 (the mark) is set per row below: size it for the mark, not the cells' stale one
        widths_of = [["✓", *(cells[i] for i in shown[1:])] for cells in self._cells]
        fmt.set_columns(table, [RUN_COLUMNS[i] for i in shown], widths_of)
        marked = set(self.lab.marked)  # marks change after the cells were made; column 0 is never dropped
        for r, cells in zip(self._runs, self._cells, strict=True):
            mark = "✓" if r["run_id"] in marked else ""
            table.add_row(mark, *(cells[i] for i in shown[1:]), key=r["run_id"])
        if table.row_count and not refit:  # a resize keeps the row the user was on
            table.move_cursor(row=min(cursor.row, table.row_count - 1), animate=False)

    def on_resize(self) -> None:
        if self._cells:
            self.call_after_refresh(self._fill_runs)  # after layout: the table's new width
        if self._sessions:
            self.call_after_refresh(self._fill_sessions, self._sessions)

    def _fill_menus(self, result: dict[str, Any]) -> None:
        nodes = tuple(result.get("nodes") or ())
        menus = (tuple(result["engines"]), tuple(result["models"]), tuple(result["statuses"]), nodes)
        if menus == self._menus:
            return
        self._menus = menus
        node_menu = self.query_one("#filter-node", Select)
        node_menu.display = bool(nodes)
        with node_menu.prevent(Select.Changed):
            node_menu.set_options([("all", ALL)] + [(node_label(n, h), n) for n, h in nodes])
            node_menu.value = self.flt.node_id if self.flt.node_id in {n for n, _ in nodes} else ALL
        for widget_id, values, current in zip(
            ("#filter-engine", "#filter-model", "#filter-status"),
            menus[:3],
            (self.flt.engine, self.flt.model, self.flt.status),
            strict=True,
        ):
            select = self.query_one(widget_id, Select)
            with select.prevent(Select.Changed):
                select.set_options([("all", ALL)] + [(v, v) for v in values])
                select.value = current if current in values else ALL

    def _fill_sessions(self, sessions: list[dict[str, Any]]) -> None:
        """The sessions table with the columns that fit its width (status kept whole, energy kept)."""
        self._sessions = sessions
        table = self.query_one("#sessions", DataTable)
        cells = [session_cells(s) for s in sessions]
        width = table.size.width or self.app.size.width
        shown = fmt.fit_table(list(SESSION_COLUMNS), cells, SESSION_DROP_ORDER, width)
        self._session_shown = shown
        total_runs = sum(int(s.get("finished") or 0) + int(s.get("failed") or 0) for s in sessions)
        first = ["all sessions", "", fmt.num(total_runs), "", "", "", ""]
        fmt.set_columns(
            table, [SESSION_COLUMNS[i] for i in shown], [[row[i] for i in shown] for row in [first, *cells]]
        )
        table.add_row(*(first[i] for i in shown), key=ALL)
        for s, row in zip(sessions, cells, strict=True):  # energy early: it stays on screen at 80 columns
            table.add_row(*(row[i] for i in shown), key=s["session_id"])
        keys = [ALL] + [s["session_id"] for s in sessions]
        current = self.flt.session_id or ALL
        if current in keys:
            table.move_cursor(row=keys.index(current), animate=False)

    def _set_filter(self, **changes: Any) -> None:
        from dataclasses import replace

        new = replace(self.flt, **changes)
        if new != self.flt:
            self.flt = new
            self.reload()

    # --- events -----------------------------------------------------------------------------------
    @on(Input.Changed, "#filter-text")
    def _text_changed(self, event: Input.Changed) -> None:
        self._set_filter(text=event.value.strip())

    @on(Select.Changed)
    def _menu_changed(self, event: Select.Changed) -> None:
        column = {
            "filter-engine": "engine",
            "filter-model": "model",
            "filter-status": "status",
            "filter-node": "node_id",
        }.get(event.select.id or "")
        if column:
            value = None if event.value in (ALL, Select.NULL) else str(event.value)
            self._set_filter(**{column: value})

    @on(DataTable.RowSelected, "#sessions")
    def _session_chosen(self, event: DataTable.RowSelected) -> None:
        key = event.row_key.value if event.row_key else None
        self._set_filter(session_id=None if key in (None, ALL) else key)

    @on(DataTable.HeaderSelected, "#runs")
    def _header_clicked(self, event: DataTable.HeaderSelected) -> None:
        self._sort_on(str(event.column_key.value))

    @on(DataTable.CellSelected, "#runs")
    def _cell_selected(self, event: DataTable.CellSelected) -> None:
        self.action_open()

    # --- actions ----------------------------------------------------------------------------------
    def _current_run(self) -> str | None:
        table = self.query_one("#runs", DataTable)
        if not table.row_count:
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def action_mark(self) -> None:
        run_id = self._current_run()
        if run_id is None:
            return
        marked = self.lab.toggle_mark(run_id)
        self.query_one("#runs", DataTable).update_cell(run_id, "mark", "✓" if marked else "")
        self._refresh_status_marks()

    def _refresh_marks(self) -> None:
        table = self.query_one("#runs", DataTable)
        marked = set(self.lab.marked)
        for r in self._runs:
            table.update_cell(r["run_id"], "mark", "✓" if r["run_id"] in marked else "")
        self._refresh_status_marks()

    def _refresh_status_marks(self) -> None:
        status = self.query_one("#history-status", Static)
        text = str(status.content)
        n = len(self.lab.marked)
        import re

        status.update(re.sub(r"\d+ marked", f"{n} marked", text))

    def action_compare(self) -> None:
        if len(self.lab.marked) < 2:
            self.notify("mark at least two runs with space first", severity="warning")
            return
        self.lab.switch_mode("compare")

    def action_open(self) -> None:
        run_id = self._current_run()
        if run_id is not None:
            from wattlab.app.screens.run_detail import RunDetailScreen

            self.lab.push_screen(RunDetailScreen(run_id))

    def action_sort(self) -> None:
        table = self.query_one("#runs", DataTable)
        self._sort_on(
            str(table.coordinate_to_cell_key(table.cursor_coordinate).column_key.value)
            if table.row_count
            else "started_at"
        )

    def _sort_on(self, column: str) -> None:
        if column not in SORTABLE:
            self.notify(f"cannot sort on {dict(RUN_COLUMNS).get(column, column)}", severity="warning")
            return
        descending = (
            not self.flt.descending
            if column == self.flt.order
            else column in ("started_at", "quality", "throughput_tok_s")
        )
        self._set_filter(order=column, descending=descending)

    def action_find(self) -> None:
        self.query_one("#filter-text", Input).focus()

    def action_clear_filter(self) -> None:
        text = self.query_one("#filter-text", Input)
        if text.value:
            text.value = ""
        self.query_one("#runs", DataTable).focus()

    def action_reload(self) -> None:
        self.reload()
