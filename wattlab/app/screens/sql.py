"""SQL: a DuckDB query box over the session database (read-only), results in a table, errors inline.

Queries run in a worker through `wattlab.analysis.readonly_sql` (read statements only, no file access),
so a running sweep keeps committing; at most 1,000 rows are fetched (a SELECT over `samples` can be
millions). While the box has focus it takes every printable key (digits too), so the hint and the
footer say how to leave it: Esc. A failed query leaves the previous result on screen, dimmed.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, DataTable, Footer, Static, TextArea

from wattlab.analysis.readonly_sql import TABLES
from wattlab.app import fmt
from wattlab.app.modes import SCREENS
from wattlab.app.screens.base import LabScreen
from wattlab.app.widgets.nav import NavBar
from wattlab.errors import WattlabError

EXAMPLE = (
    "SELECT engine, model, quant, batch_size, count(*) AS runs,\n"
    "       round(avg(j_per_token), 4) AS j_per_token, round(avg(throughput_tok_s), 1) AS tok_s\n"
    "FROM runs WHERE status = 'finished' GROUP BY ALL ORDER BY j_per_token LIMIT 50"
)
_KEYS = f"{SCREENS[0].key}-{SCREENS[-1].key}"
# Keys bold, the rest dim: the hint names the way out of the box, which takes every printable key.
HINT_EDITING = (
    f"[b]Esc[/] [dim]leaves the box (then {_KEYS} switch screens) ·[/] "
    "[b]^l[/] [dim]clears · one read query[/]"
)
HINT_BROWSING = f"[b]/[/] [dim]edits the query ·[/] [b]^l[/] [dim]clears · read-only · tables: {TABLES}[/]"


def cell(value: Any) -> str:
    if value is None:
        return "[dim]NULL[/]"
    if isinstance(value, float):
        return fmt.num(value, 6)
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    text = str(value)
    return fmt.esc(text if len(text) <= 80 else text[:79] + "…")  # data, never markup


class SqlScreen(LabScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+r,f5", "run", "Run query", priority=True),
        Binding("ctrl+l", "clear", "Clear", priority=True),
        Binding("escape", "to_results", "Leave box"),
        Binding("slash", "edit", "Edit query"),
    ]

    class Done(Message):
        def __init__(self, result: dict[str, Any] | None, error: WattlabError | None) -> None:
            super().__init__()
            self.result, self.error = result, error

    def compose(self) -> ComposeResult:
        yield NavBar("sql")
        with Vertical(id="sql-body"):
            yield TextArea(EXAMPLE, id="sql-query", show_line_numbers=False, soft_wrap=True)
            with Horizontal(id="sql-bar"):
                yield Button("Run ^r", id="sql-run", variant="primary", compact=True)
                yield Static(HINT_EDITING, id="sql-hint")
            yield Static("", id="sql-error", classes="error")
            yield Static("", id="sql-status")
            yield DataTable(id="sql-results", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#sql-query", TextArea).focus()

    def _editing(self) -> bool:
        return self.focused is self.query_one("#sql-query", TextArea)

    def _focus_moved(self) -> None:
        self.query_one("#sql-hint", Static).update(HINT_EDITING if self._editing() else HINT_BROWSING)
        self.refresh_bindings()  # the footer shows "Leave box" or "Edit query", whichever applies

    def on_descendant_focus(self, _event: object) -> None:
        self._focus_moved()

    def on_descendant_blur(self, _event: object) -> None:
        self.call_after_refresh(self._focus_moved)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "to_results":
            return self._editing()
        if action == "edit":
            return not self._editing()
        return True

    def action_run(self) -> None:
        text = self.query_one("#sql-query", TextArea).text
        self.query_one("#sql-status", Static).update("[dim]running…[/]")
        self._run(text)

    def action_clear(self) -> None:
        """Empty the box, the results and any error, and put the cursor back in the box."""
        self.workers.cancel_group(self, "sql-run")
        area = self.query_one("#sql-query", TextArea)
        area.text = ""
        table = self.query_one("#sql-results", DataTable)
        table.clear(columns=True)
        table.remove_class("stale")
        self.query_one("#sql-error", Static).update("")
        self.query_one("#sql-status", Static).update("")
        area.focus()

    def action_edit(self) -> None:
        self.query_one("#sql-query", TextArea).focus()

    @work(thread=True, exclusive=True, exit_on_error=False, group="sql-run")
    def _run(self, text: str) -> None:
        from wattlab.app.data import sql

        try:
            self.post_message(self.Done(sql(self.lab.store, text), None))
        except WattlabError as exc:
            self.post_message(self.Done(None, exc))

    def on_sql_screen_done(self, message: Done) -> None:
        status = self.query_one("#sql-status", Static)
        table = self.query_one("#sql-results", DataTable)
        if message.error is not None or message.result is None:
            err = message.error
            self.query_one("#sql-error", Static).update(
                "✖ " + fmt.error_text(err, "no result", fix_sep="\n  fix: ")
            )
            # The previous result stays for reference, dimmed, so it is not mistaken for this query's.
            stale = table.row_count > 0 or bool(table.columns)
            table.set_class(stale, "stale")
            status.update("[dim]below: the previous query's result[/]" if stale else "")
            return
        result = message.result
        self.query_one("#sql-error", Static).update("")
        table.remove_class("stale")
        table.clear(columns=True)
        for name in result["columns"]:
            table.add_column(name)
        for row in result["rows"]:
            table.add_row(*(cell(v) for v in row))
        n = len(result["rows"])
        more = f" (first {n:,} shown)" if result["truncated"] else ""
        status.update(
            f"{n:,} row(s){more} · {len(result['columns'])} column(s) · {result['seconds'] * 1000:.0f} ms"
        )

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "sql-run":
            self.action_run()

    def action_to_results(self) -> None:
        self.query_one("#sql-results", DataTable).focus()
