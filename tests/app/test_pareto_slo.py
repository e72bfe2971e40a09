"""The Pareto screen's SLO filter (s): runs that miss a bound are drawn grey and counted, their front
rows dimmed; a bad filter shows its error and changes nothing. On the console tests' small database."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable, Input

from tests.app.app_helpers import make_app, pilot_test, settle, widget_text
from wattlab.app.widgets.scatter import ScatterPlot
from wattlab.sessions.store import Store


def _misses(db: Path, bound: float) -> set[str]:
    """Runs the default plot places (J/token and E2E p50) whose stored p90 TTFT is missing or above."""
    rows = Store(db).query(
        "SELECT run_id FROM runs WHERE status = 'finished' AND j_per_token IS NOT NULL "
        "AND e2e_p50_s IS NOT NULL AND NOT coalesce(ttft_p90_s <= ?, false)",
        [bound],
    )[1]
    return {r[0] for r in rows}


@pilot_test
async def test_slo_filter_greys_the_runs_that_miss(small_db: Path) -> None:
    (median,) = Store(small_db).query("SELECT median(ttft_p90_s) FROM runs WHERE status = 'finished'")[1][0]
    missing = _misses(small_db, float(median))
    assert 0 < len(missing) < len(_misses(small_db, -1.0))  # some of the placed runs miss, some meet
    app = make_app(small_db)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("5")
        await settle(pilot, 0.5)
        await pilot.press("s")
        box = app.screen.query_one("#pareto-slo", Input)
        assert box.display and box.has_focus
        box.value = f"ttft_p90<={median}"
        await pilot.press("enter")
        await settle(pilot, 0.5)
        status = widget_text(app, "#pareto-status")
        assert f"SLO ttft_p90<={median}: {len(missing):,} miss (grey)" in status
        points = app.screen.query_one("#pareto-plot", ScatterPlot)._data.points
        front = app.screen.query_one("#pareto-front", DataTable)
        muted_front = {p for p in points if p.front and p.muted}
        # every missing run is one grey point (dominated ones once, front ones among the front)
        assert sum(p.muted and not p.front for p in points) + len(muted_front) == len(missing)
        dimmed = {str(k.value) for k in front.rows if str(front.get_row(k)[0]).startswith("[grey50]")}
        assert dimmed == {str(k.value) for k in front.rows} & missing

        # A bad filter is refused with its fix; the one in force stays.
        await pilot.press("s")
        box.value = "ttft_p90>=1"
        await pilot.press("enter")
        await settle(pilot, 0.3)
        assert "upper bound" in widget_text(app, "#pareto-status")
        assert app.screen.slo_text == f"ttft_p90<={median}"

        # Empty clears it: nothing grey.
        box.value = ""
        await pilot.press("enter")
        await settle(pilot, 0.5)
        assert not box.display and "miss (grey)" not in widget_text(app, "#pareto-status")
        assert not any(p.muted for p in app.screen.query_one("#pareto-plot", ScatterPlot)._data.points)
