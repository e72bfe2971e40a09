"""Launch's engine-options area: only the selected engine's options (from its spec), each value
checked before a run is added, number lists becoming grid axes."""

from __future__ import annotations

from pathlib import Path

from app_helpers import make_app, pilot_test, settle, widget_text
from textual.widgets import Input, Select


def _option_names(screen: object) -> set[str]:
    area = screen.query_one("#launch-options")  # type: ignore[attr-defined]
    return {w.id.removeprefix("opt-") for w in area.query("Input, Select") if w.id}


@pilot_test
async def test_launch_shows_only_the_engines_options_and_checks_them(small_db: Path) -> None:
    app = make_app(small_db)
    async with app.run_test(size=(120, 50)) as pilot:
        await pilot.press("2")
        await settle(pilot)
        screen = app.screen
        screen.query_one("#engine", Select).value = "vllm"
        await settle(pilot)
        names = _option_names(screen)
        assert {"max_num_seqs", "enforce_eager", "kv_cache_dtype", "tensor_parallel_size"} <= names
        assert "attn_implementation" not in names and "n_gpu_layers" not in names
        assert "vllm options" in widget_text(app, "#launch-options-title")

        screen.query_one("#engine", Select).value = "transformers"
        await settle(pilot)
        names = _option_names(screen)
        assert {"attn_implementation", "torch_compile", "cache_implementation"} <= names
        assert "max_num_seqs" not in names

        # A value outside the option's choices is refused under the form, naming it.
        screen.query_one("#opt-n_threads", Input).value = "0"
        await pilot.press("ctrl+n")
        await settle(pilot)
        assert "n_threads = 0 is below its minimum 1" in widget_text(app, "#launch-error")
        assert screen.draft.rows == []

        # Flash attention on the CPU is refused when the run is added.
        screen.query_one("#opt-n_threads", Input).value = ""
        screen.query_one("#device", Select).value = "cpu"
        screen.query_one("#opt-attn_implementation", Select).value = "flash_attention_2"
        await pilot.press("ctrl+n")
        await settle(pilot)
        assert "works only on a GPU" in widget_text(app, "#launch-error")

        # A chosen value and a number list: one run per list entry, the options stored with each.
        screen.query_one("#opt-attn_implementation", Select).value = "eager"
        screen.query_one("#opt-n_threads", Input).value = "1,2"
        await pilot.press("ctrl+n")
        await settle(pilot)
        options = [row.get("options") for row in screen.draft.rows]
        assert options == [
            {"attn_implementation": "eager", "n_threads": 1},
            {"attn_implementation": "eager", "n_threads": 2},
        ]
        assert "attn_implementation" in screen.draft.to_toml()
