"""SVG snapshots of every screen at 80x24 (SSH) and 160x48, from deterministic data.

Update them after an intended change with: pytest tests/app/test_snapshots.py --snapshot-update
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from app_helpers import (
    make_app,
    screen_text,
    settle,
    wait_until,
    widget_text,
    write_monitor_file,
    write_spool,
)
from textual.widgets import DataTable, Input, TextArea

SIZES = [(80, 24), (160, 48)]
LIVE_SESSION = "250303-093000-snap"


@pytest.fixture
def live_spool() -> str:
    from wattlab.paths import spool_root

    write_spool(spool_root(), LIVE_SESSION, runs=3, finished=True)
    return LIVE_SESSION


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Query timings (shown by SQL) read 0 ms, so the screen is the same on every run."""
    import wattlab.app.data as data

    monkeypatch.setattr(data.time, "perf_counter", lambda: 0.0)


async def _quiet(pilot: Any) -> None:
    """Let every worker, message and table refresh land, so the picture is the settled screen.

    Several rounds: on a loaded machine a reload's rows can land a frame after the worker ends, and
    a snapshot taken then shows a half-laid-out table.
    """
    for _ in range(3):
        await settle(pilot, 0.3)
    pilot.app.clear_notifications()
    await pilot.pause(0.2)

    # A DataTable sizes its columns on idle after rows arrive; under load a snapshot taken before
    # that shows header-width columns ("000" for a run id). Wait until every table has done so.
    def tables_sized() -> bool:
        return not any(t._require_update_dimensions or t._new_rows for t in pilot.app.screen.query(DataTable))

    await wait_until(pilot, tables_sized, what="tables sized")
    # ...and let the refresh that sizing asked for reach the screen before the picture is taken
    for _ in range(3):
        await pilot.pause()
    await pilot.pause(0.3)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_live_session(snap_compare: Any, small_db: Path, live_spool: str, size: tuple[int, int]) -> None:
    async def ready(pilot: Any) -> None:
        await wait_until(pilot, lambda: "finished" in widget_text(pilot.app, "#live-status"))
        await _quiet(pilot)

    assert snap_compare(make_app(small_db, attach=live_spool), terminal_size=size, run_before=ready)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_live_box_monitor(snap_compare: Any, small_db: Path, tmp_path: Path, size: tuple[int, int]) -> None:
    monitor = write_monitor_file(tmp_path / "monitor.jsonl")

    async def ready(pilot: Any) -> None:
        await wait_until(pilot, lambda: "estimated" in widget_text(pilot.app, "#live-legend"))
        await _quiet(pilot)

    assert snap_compare(
        make_app(small_db, attach=None, monitor_file=monitor), terminal_size=size, run_before=ready
    )


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_launch(snap_compare: Any, small_db: Path, size: tuple[int, int]) -> None:
    async def ready(pilot: Any) -> None:
        await pilot.press("2")
        await settle(pilot, 0.5)
        pilot.app.screen.query_one("#batch_sizes", Input).value = "1,8"
        pilot.app.screen.query_one("#input_tokens", Input).value = "128,512"
        await pilot.press("escape", "ctrl+n")
        await settle(pilot, 0.5)
        await wait_until(pilot, lambda: "≈" in widget_text(pilot.app, "#launch-summary"))
        await _quiet(pilot)

    assert snap_compare(make_app(small_db), terminal_size=size, run_before=ready)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_history(snap_compare: Any, small_db: Path, size: tuple[int, int]) -> None:
    async def ready(pilot: Any) -> None:
        await pilot.press("3")
        await settle(pilot, 0.5)
        # The sessions table is laid out once its rows are in (a session's name shows whole).
        await wait_until(pilot, lambda: "sweep 4 on" in screen_text(pilot.app), what="the sessions table")
        await pilot.press("space", "down", "down", "space")
        await _quiet(pilot)

    assert snap_compare(make_app(small_db), terminal_size=size, run_before=ready)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_run_detail(snap_compare: Any, small_db: Path, size: tuple[int, int]) -> None:
    async def ready(pilot: Any) -> None:
        await pilot.press("3")
        await settle(pilot, 0.5)
        await pilot.press("enter")
        await settle(pilot, 0.5)
        await _quiet(pilot)

    assert snap_compare(make_app(small_db), terminal_size=size, run_before=ready)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_compare(snap_compare: Any, small_db: Path, size: tuple[int, int]) -> None:
    async def ready(pilot: Any) -> None:
        await pilot.press("3")
        await settle(pilot, 0.5)
        await pilot.press("space", "down", "space", "c")
        await settle(pilot, 0.5)
        await _quiet(pilot)

    assert snap_compare(make_app(small_db), terminal_size=size, run_before=ready)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_pareto(snap_compare: Any, small_db: Path, size: tuple[int, int]) -> None:
    async def ready(pilot: Any) -> None:
        await pilot.press("5")
        await settle(pilot, 0.5)
        await wait_until(pilot, lambda: "on the front" in widget_text(pilot.app, "#pareto-status"))
        await _quiet(pilot)

    assert snap_compare(make_app(small_db), terminal_size=size, run_before=ready)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_sql(snap_compare: Any, small_db: Path, frozen_clock: None, size: tuple[int, int]) -> None:
    async def ready(pilot: Any) -> None:
        await pilot.press("6")
        await settle(pilot)
        await pilot.press("ctrl+r")
        await settle(pilot, 0.5)
        await wait_until(pilot, lambda: "row(s)" in widget_text(pilot.app, "#sql-status"))
        pilot.app.screen.query_one("#sql-results").focus()  # no text cursor in the picture
        await _quiet(pilot)

    assert snap_compare(make_app(small_db), terminal_size=size, run_before=ready)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_sql_error(snap_compare: Any, small_db: Path, size: tuple[int, int]) -> None:
    async def ready(pilot: Any) -> None:
        await pilot.press("6")
        await settle(pilot)
        pilot.app.screen.query_one("#sql-query", TextArea).text = "SELECT j_per_tokn FROM runs"
        await pilot.press("ctrl+r")
        await settle(pilot, 0.5)
        await wait_until(pilot, lambda: "j_per_tokn" in widget_text(pilot.app, "#sql-error"))
        pilot.app.screen.query_one("#sql-results").focus()
        await _quiet(pilot)

    assert snap_compare(make_app(small_db), terminal_size=size, run_before=ready)
