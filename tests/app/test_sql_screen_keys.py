"""The SQL screen's keys (Esc leaves the box and says so, / returns, ctrl+l clears), a failed query
dimming the previous result, refused statements shown inline, and Launch's visible focus."""

from __future__ import annotations

from pathlib import Path

from app_helpers import make_app, pilot_test, settle, wait_until, widget_text
from textual.widgets import DataTable, Input, Select, TextArea


async def _to_sql(pilot: object) -> None:
    await pilot.press("6")  # type: ignore[attr-defined]
    await settle(pilot)


@pilot_test
async def test_escape_leaves_the_box_and_the_hint_says_so(small_db: Path) -> None:
    app = make_app(small_db)
    async with app.run_test(size=(100, 30)) as pilot:
        await _to_sql(pilot)
        area = app.screen.query_one("#sql-query", TextArea)
        area.text = ""
        assert app.focused is area
        assert "Esc" in widget_text(app, "#sql-hint")
        await pilot.press("3", "4")  # digits in the box are text, not screen keys
        assert area.text == "34" and app.current_mode == "sql"
        await pilot.press("escape")
        await pilot.pause(0.1)
        assert app.focused is not area
        assert "/ edits" in widget_text(app, "#sql-hint")
        await pilot.press("slash")  # back into the box
        await pilot.pause(0.1)
        assert app.focused is area
        await pilot.press("escape", "3")  # out of the box, digits switch screens again
        await settle(pilot)
        assert app.current_mode == "history"


@pilot_test
async def test_ctrl_l_clears_the_box_the_results_and_the_error(small_db: Path) -> None:
    app = make_app(small_db)
    async with app.run_test(size=(100, 30)) as pilot:
        await _to_sql(pilot)
        await pilot.press("ctrl+r")
        table = app.screen.query_one("#sql-results", DataTable)
        await wait_until(pilot, lambda: table.row_count > 0)
        app.screen.query_one("#sql-results").focus()
        await pilot.press("ctrl+l")
        await pilot.pause(0.1)
        area = app.screen.query_one("#sql-query", TextArea)
        assert area.text == "" and table.row_count == 0 and not table.columns
        assert widget_text(app, "#sql-status") == "" and widget_text(app, "#sql-error") == ""
        assert app.focused is area


@pilot_test
async def test_a_failed_query_dims_the_previous_result_under_its_error(small_db: Path) -> None:
    app = make_app(small_db)
    async with app.run_test(size=(100, 30)) as pilot:
        await _to_sql(pilot)
        area = app.screen.query_one("#sql-query", TextArea)
        table = app.screen.query_one("#sql-results", DataTable)
        area.text = "SELECT engine, count(*) AS n FROM runs GROUP BY engine ORDER BY engine"
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: table.row_count > 0)
        rows = table.row_count
        assert table.styles.opacity == 1.0
        area.text = "SELECT no_such_column FROM runs"
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: "no_such_column" in widget_text(app, "#sql-error"))
        await pilot.pause(0.1)
        assert table.row_count == rows  # kept for reference...
        assert table.has_class("stale") and table.styles.opacity < 0.6  # ...visibly dimmed
        assert "previous" in widget_text(app, "#sql-status")
        area.text = "SELECT 1 AS one"
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: table.row_count == 1)
        await pilot.pause(0.1)
        assert not table.has_class("stale") and table.styles.opacity == 1.0
        assert widget_text(app, "#sql-error") == ""


@pilot_test
async def test_a_file_touching_statement_is_refused_inline(small_db: Path, tmp_path: Path) -> None:
    target = tmp_path / "x.csv"
    app = make_app(small_db)
    async with app.run_test(size=(100, 30)) as pilot:
        await _to_sql(pilot)
        app.screen.query_one("#sql-query", TextArea).text = f"COPY runs TO '{target}'"
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: "COPY" in widget_text(app, "#sql-error"))
        assert "wattlab export" in widget_text(app, "#sql-error")
    assert not target.exists()


@pilot_test
async def test_launch_shows_which_field_has_focus(small_db: Path) -> None:
    app = make_app(small_db)
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("2")
        await settle(pilot)
        batch = app.screen.query_one("#batch_sizes", Input)
        repeats = app.screen.query_one("#repeats", Input)
        engine = app.screen.query_one("#engine", Select)
        engine_current = engine.query_one("SelectCurrent")
        batch.focus()
        await pilot.pause(0.1)
        assert batch.styles.background != repeats.styles.background
        assert batch.styles.background.a > 0.3  # a strong background, not a faint tint
        assert "bold" in str(batch.styles.text_style)
        unfocused = engine_current.styles.background
        engine.focus()
        await pilot.pause(0.1)
        assert engine_current.styles.background != unfocused
        assert batch.styles.background == repeats.styles.background  # focus left, so did the mark
