"""An idle baseline taken on a busy box is judged and flagged on every net figure, a net below zero
is shown as such, and every figure's label comes from the method of what it was computed from."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from wattlab import cli_views
from wattlab.analysis.queries import get_run
from wattlab.meters.base import Domain, Sample, now_ns
from wattlab.meters.estimate import EstimateMeter
from wattlab.meters.timeline import Timeline
from wattlab.meters.windows import BASELINE_NOT_IDLE, judge_idle
from wattlab.sessions import figures
from wattlab.sessions.events import describe_event, run_line
from wattlab.sessions.runner import Runner
from wattlab.sessions.spec import parse_sweep
from wattlab.sessions.store import Store

NS = 1_000_000_000
SWEEP = textwrap.dedent(
    """
    [session]
    idle_s = 0.6
    meters = "estimate"
    tdp_w = 8.0

    [defaults]
    engine = "fake"
    model = "fake:baseline"
    input_tokens = 32
    output_tokens = 40
    requests = 2
    batch_size = 2
    warmup_requests = 0
    options = {tok_s = 100.0, prefill_tok_s = 2000.0}

    [[runs]]
    """
)


# --- judging a baseline ----------------------------------------------------------------------------
def test_the_reported_busy_baseline_is_not_idle() -> None:
    """7.78 W of an 8.0 W maximum on the estimate meter: the box was busy, whatever the spread."""
    verdict = judge_idle("cpu-estimate", [7.78] * 20, util_pct=97.25, limit_w=8.0)
    assert not verdict.idle
    assert verdict.reasons == ("97% utilized", "7.78 W of a 8 W maximum")


def test_a_quiet_gpu_is_idle_and_a_swinging_one_is_not() -> None:
    quiet = judge_idle("gpu0", [71.0, 72.5, 70.8, 71.9], util_pct=0.0, limit_w=700.0)
    assert quiet.idle and quiet.mean_power_w == pytest.approx(71.55)
    # A job started half way through the baseline: low mean utilization, but power doubled.
    swing = judge_idle("gpu0", [70.0] * 5 + [250.0] * 5, util_pct=12.0, limit_w=700.0)
    assert not swing.idle and swing.reasons[0].startswith("power varied ±90 W")
    # A few watts of jitter on a small CPU are not a load.
    assert judge_idle("cpu-package-0", [4.0, 6.0, 4.5, 5.5], util_pct=3.0).idle


# --- end to end: the runner on the fake engine, the estimate meter made busy then quiet -----------
def meter_reads(monkeypatch: pytest.MonkeyPatch, state: dict[str, float]) -> None:
    """The estimate meter reads `state` (W, %): the test sets what the box is doing."""

    def read_power(self: EstimateMeter) -> list[Sample]:
        return [Sample(t_ns=now_ns(), domain="cpu-estimate", power_w=state["w"], util_pct=state["u"])]

    monkeypatch.setattr(EstimateMeter, "read_power", read_power)


def run_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, idle: tuple[float, float], run: tuple[float, float]
) -> tuple[dict[str, Any], Store, Runner]:
    state = {"w": idle[0], "u": idle[1]}
    meter_reads(monkeypatch, state)
    measure_idle = Runner._measure_idle

    def then_the_load_changes(self: Runner) -> None:
        measure_idle(self)
        state["w"], state["u"] = run  # the other job stops (or not) as the run starts

    monkeypatch.setattr(Runner, "_measure_idle", then_the_load_changes)
    store = Store(tmp_path / "w.duckdb")
    runner = Runner(parse_sweep(SWEEP), store=store)
    (result,) = runner.run()
    assert result["status"] == "finished", result.get("error")
    return result, store, runner


def printed(run: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """`wattlab show`'s figure lines, by label."""
    out = io.StringIO()
    monkeypatch.setattr(cli_views, "console", Console(file=out, width=200, highlight=False))
    cli_views.print_run(run)
    return {line.split("│")[1].strip(): line for line in out.getvalue().splitlines() if line.count("│") >= 3}


def test_a_busy_baseline_flags_every_net_figure_and_a_net_below_zero_shows_as_such(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result, store, runner = run_once(tmp_path, monkeypatch, idle=(7.78, 97.25), run=(5.0, 62.5))
    assert "97% utilized" in runner.idle_not_idle["cpu-estimate"]
    # Stored with the run, on its energy rows, and with the session's baseline.
    assert BASELINE_NOT_IDLE in result["flags"].split(",")
    assert result["energy_net_j"] < 0  # 5 W against a 7.78 W "idle": kept as computed, not clamped
    rows = [r for r in result["energy"] if r["net_energy_j"] is not None]
    assert rows and all(BASELINE_NOT_IDLE in r["flags"].split(",") for r in rows)
    idle_json = store.query_dicts("SELECT idle_json FROM sessions WHERE session_id = ?", [runner.session_id])
    assert "97% utilized" in str(idle_json[0]["idle_json"])

    run = get_run(store, result["run_id"])
    lines = printed(run, monkeypatch)
    net = lines["energy (net of idle)"]
    assert "-" in net and "below idle" in net and BASELINE_NOT_IDLE in net
    assert "below idle" in lines["net energy per output token"]
    assert BASELINE_NOT_IDLE not in lines["energy (gross)"]  # the gross figure does not use the baseline
    assert "net" in cli_views.Text.from_markup(run_line(result)).plain
    assert "below idle, baseline-not-idle" in run_line(result)
    idle_event = {"ev": "idle", "idle_w": runner.idle_w, "seconds": 0.6, "not_idle": runner.idle_not_idle}
    assert "cpu-estimate was not idle (97% utilized" in (describe_event(idle_event) or "")

    from wattlab.app.screens.run_detail import figure_rows

    detail = {label: (value, how) for label, value, how in figure_rows(run)[0]}
    assert "below idle" in detail["energy (net of idle)"][0]
    assert BASELINE_NOT_IDLE in detail["energy (net of idle)"][1]


def test_a_quiet_baseline_is_not_flagged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result, store, runner = run_once(tmp_path, monkeypatch, idle=(0.4, 5.0), run=(6.0, 75.0))
    assert runner.idle_not_idle == {}
    assert BASELINE_NOT_IDLE not in (result["flags"] or "")
    assert result["energy_net_j"] > 0
    lines = printed(get_run(store, result["run_id"]), monkeypatch)
    net = lines["energy (net of idle)"]
    assert "below idle" not in net and BASELINE_NOT_IDLE not in net


# --- labels from stored methods ---------------------------------------------------------------------
def test_show_labels_figures_of_the_estimate_meter_estimated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`wattlab show` on a stored estimate-meter run: peak power and the Green AI index are
    estimated like the energy they come from; times, tokens and utilization are measured."""
    result, store, _ = run_once(tmp_path, monkeypatch, idle=(0.4, 5.0), run=(8.0, 100.0))
    run = get_run(store, result["run_id"])
    assert run["energy_method"] == "estimated" and run["green_index"] is not None
    lines = printed(run, monkeypatch)
    for label in ("peak power", "Green AI index", "energy (gross)", "mean power", "energy per output token"):
        assert lines[label].rstrip(" │").endswith("estimated"), lines[label]
    for label in ("measured window", "output tokens", "mean utilization", "E2E p50"):
        assert lines[label].rstrip(" │").endswith("measured"), lines[label]
    assert lines["PUE"].rstrip(" │").endswith("configured")

    from wattlab.app.screens.run_detail import figure_rows

    detail = {label: how for label, _, how in figure_rows(run)[0]}
    assert "estimated" in detail["peak power"] and "estimated" in detail["Green AI index"]


def test_labels_follow_the_stored_method_not_a_default() -> None:
    counter_run = {
        "energy_method": "counter",
        "j_per_token": 0.5,
        "energy": [{"window_name": "measured", "domain_id": "gpu0", "method": "counter"}],
    }
    assert figures.figure_method("peak_power_w", None, counter_run) == "measured"
    assert figures.figure_method("green_index", None, counter_run) == "counter"
    assert figures.figure_method("pue", None, counter_run) == "configured"
    speed_only = {"energy_method": "estimated", "j_per_token": None}
    assert figures.figure_method("green_index", None, speed_only) == "measured"  # no energy axis


# --- which domains feed the figures -------------------------------------------------------------------
GPU = Domain("gpu0", "gpu", "nvml", "GPU", "gpu:0", has_counter=True)
EST = Domain("cpu-estimate", "cpu", "estimate", "CPU estimated", "cpu", estimated=True)


def test_the_run_flag_comes_only_from_domains_summed_into_its_net_figures() -> None:
    cpu = {"domain_id": "cpu-estimate"}
    rows = [
        {"window_name": "measured", "domain_id": "gpu0", "net_energy_j": 10.0, "flags": ""},
        {**cpu, "window_name": "measured", "net_energy_j": 1.0, "flags": "low-coverage"},
        {**cpu, "window_name": "load", "net_energy_j": None, "flags": ""},
    ]
    figures.flag_busy_baseline(rows, {"cpu-estimate": "97% utilized"})
    assert rows[1]["flags"] == f"{BASELINE_NOT_IDLE},low-coverage" and rows[0]["flags"] == ""
    assert rows[2]["flags"] == ""  # no net figure there: nothing derived from the baseline
    # The GPU's counter energy alone is summed: the CPU's busy baseline feeds no run figure.
    assert figures.measured_flags(rows, "gpu0") == ["low-coverage"]
    assert figures.measured_flags(rows, "cpu-estimate") == [BASELINE_NOT_IDLE, "low-coverage"]


def test_peak_power_is_over_the_domains_the_energy_is_summed_from() -> None:
    timeline = Timeline()
    timeline.add_domains([GPU, EST])
    for i in range(11):
        t = i * NS // 10
        timeline.add(Sample(t_ns=t, domain="gpu0", power_w=100.0 + i))
        timeline.add(Sample(t_ns=t, domain="cpu-estimate", power_w=30.0))
    assert figures.peak_total_power(timeline, [GPU, EST], 0, NS) == pytest.approx(110.0)
    assert figures.peak_total_power(timeline, [EST], 0, NS) == pytest.approx(30.0)
