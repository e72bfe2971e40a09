"""What the README "A first sweep" walk-through at 80x24 tripped on (docs/walkthrough/README.md):
meter fixes cut, raw floats in event lines, the Launch grid off screen, ',4' read as 4, sessions
named by their file path, and a session energy without its estimated marker."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from app_helpers import make_app, pilot_test, screen_text, settle, widget_text
from textual.widgets import Input

from wattlab.app import fmt
from wattlab.app.screens import launch_form as form
from wattlab.app.screens.history import session_cells, session_name
from wattlab.app.screens.live_support import Target
from wattlab.app.screens.live_view import render_figures
from wattlab.app.sweepdraft import SweepDraft
from wattlab.errors import ConfigError
from wattlab.sessions import events
from wattlab.sessions.spec import SessionSettings

NVML = {
    "meter": "nvml",
    "reason": "no NVIDIA driver (libnvidia-ml.so not found)",
    "fix": "install the NVIDIA driver so that `nvidia-smi` works (in a container: run with --gpus all)",
}


class _Probe:
    missing = (NVML,)


def test_meter_fix_is_its_own_line_and_the_panel_wraps() -> None:
    text = render_figures(Target("monitor", "m"), None, _Probe(), "smollm2 on llamacpp")
    lines = text.splitlines()
    assert any(line.strip().startswith("[dim]fix:[/]") for line in lines)
    assert "fix: install the NVIDIA driver" not in lines[0]  # the reason first, the fix on its own line
    css = (Path(fmt.__file__).parent / "app.tcss").read_text()
    assert re.search(r"#live-figures \{ text-wrap: wrap; \}", css)


@pilot_test
async def test_hint_lines_are_not_cut_at_80_columns(small_db: Path) -> None:
    app = make_app(small_db)  # the static catalog's probe: rapl missing, with a fix
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, 0.5)
        text = screen_text(app)
        assert "…" not in "\n".join(
            line for line in text.splitlines() if "unavailable" in line or "fix" in line
        )
        assert "sudo chmod o+r energy_uj" in text  # the whole fix is on screen


@pytest.mark.parametrize(
    ("value", "expected"),
    [(7.494e-04, "0.749 ms"), (0.629, "629 ms"), (8.39, "8.39 s"), (2.5, "2.5 s"), (1234.0, "1,234 s")],
)
def test_seconds_are_adaptive(value: float, expected: str) -> None:
    assert events.seconds(value) == expected
    assert fmt.seconds(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(20619.3, "20,619 tok/s"), (10130.2, "10,130 tok/s"), (5.955, "5.955 tok/s"), (1234.5, "1,234 tok/s")],
)
def test_rates_have_thousands_separators(value: float, expected: str) -> None:
    assert events.rate(value) == expected
    assert events.fmt(value, "tok/s") == expected


@pytest.mark.parametrize("value", [7.494e-04, 2.062e04, 1e-7, 123456789.0, 0.00012, 9999.96, 3e-12])
def test_no_exponent_anywhere(value: float) -> None:
    texts = [
        events.number(value),
        events.seconds(value),
        events.rate(value),
        fmt.num(value),
        fmt.seconds(value),
        fmt.energy(value),
        fmt.energy_wh(value),
        fmt.grams(value),
    ]
    assert not any(re.search(r"\de[+-]\d", t) for t in texts), texts


def test_run_line_has_no_raw_floats() -> None:
    run = {
        "status": "finished",
        "throughput_tok_s": 20619.3,
        "e2e_p50_s": 8.39,
        "ttft_p50_s": 0.629,
        "ttft_basis": "service",
        "queue_p50_s": 7.494e-04,
        "energy_j": 5.345,
        "energy_method": "estimated",
        "j_per_token": 0.000123,
    }
    line = events.run_line(run)
    assert "20,619 tok/s" in line and "queue p50 0.749 ms" in line and "E2E p50 8.39 s" in line
    assert not re.search(r"\de[+-]\d", line)


@pytest.mark.parametrize("text", [",4", "4,", "1,,4", " , "])
def test_a_list_with_an_empty_item_is_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="empty item"):
        form.parse_int_list("Output tokens", text)


def test_single_value_fields_refuse_lists() -> None:
    raw = {"engine": "llamacpp", "model": "m", "input_tokens": "128", "output_tokens": "64"}
    with pytest.raises(ConfigError, match="takes one number"):
        form.build({**raw, "batch_sizes": "1", "requests": "4,8"})
    _fixed, axes, _ = form.build({**raw, "batch_sizes": "1, 4", "output_tokens": "64,128"})
    assert axes["batch_size"] == [1, 4] and axes["output_tokens"] == [64, 128]


@pilot_test
async def test_launch_refuses_bad_output_tokens_and_shows_the_grid_at_80x24(small_db: Path) -> None:
    app = make_app(small_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")
        await settle(pilot, 0.5)
        screen = app.screen
        screen.query_one("#output_tokens", Input).value = ",4"
        await pilot.press("ctrl+n")
        await settle(pilot, 0.5)
        assert "Output tokens: ',4' has an empty item" in widget_text(app, "#launch-error")
        assert screen.draft.rows == []

        screen.query_one("#output_tokens", Input).value = "64"
        screen.query_one("#batch_sizes", Input).value = "1,4"
        await pilot.press("ctrl+n")
        await settle(pilot, 0.8)
        assert len(screen.draft.rows) == 2
        text = screen_text(app)
        grid_lines = [line for line in text.splitlines() if re.match(r"\s+[12]\s+\S+\s+smollm2", line)]
        assert len(grid_lines) == 2, text  # both runs of the grid are on the 80x24 screen
        assert "2 run(s): " in widget_text(app, "#launch-summary")
        assert "bs1, bs4" in widget_text(app, "#launch-summary")
        assert "options (0 set)" in text  # the engine options are folded behind their toggle


def test_console_sessions_get_a_readable_name() -> None:
    draft = SweepDraft(session=SessionSettings())
    draft.extend(
        SweepDraft.expand({"engine": "llamacpp", "model": "smollm2-135m-instruct"}, {"batch_size": [1, 4]})
    )
    name = draft.default_name(dt.datetime(2026, 11, 29, 20, 4))
    assert name == "console 20:04 llamacpp bs1,4"
    assert session_name("/tmp/walk/home/sweeps/261129-200400-abcd.toml") == "261129-200400-abcd"
    assert session_name("batch study") == "batch study"


def test_session_energy_carries_the_estimated_marker() -> None:
    session = {"session_id": "s1", "name": "x", "finished": 2, "runs_planned": 2, "energy_j": 5.345}
    assert session_cells({**session, "estimated": True})[3] == "5.345 J*"
    assert session_cells({**session, "estimated": False})[3] == "5.345 J"


@pilot_test
async def test_history_keeps_status_whole_at_80_columns(small_db: Path) -> None:
    app = make_app(small_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        await settle(pilot, 0.8)
        text = screen_text(app)
        session_rows = [line for line in text.splitlines() if re.match(r"\s*\d{6}-\d{6}-\w{4}\s", line)]
        assert session_rows and all("finished" in row for row in session_rows), text
        assert any("*" in row for row in session_rows)  # the estimated session's energy
