"""Window energy arithmetic on synthetic signals with exact expected joules."""

from __future__ import annotations

import pytest

from wattlab.meters.base import Domain
from wattlab.meters.timeline import Timeline
from wattlab.meters.windows import NS, Series, coverage_of, integrate_power, window_energy

S = NS  # one second in ns

GPU = Domain("gpu0", "gpu", "nvml", "test GPU", "gpu:0", has_counter=True, counter_period_s=0.1)
POWER_ONLY = Domain("soc-total", "soc", "jetson", "test board", "soc")
ESTIMATED = Domain("cpu-estimate", "cpu", "estimate", "test CPU", "cpu", estimated=True)


def sampled(power, t_end_s: float, period_s: float = 0.1, t0_s: float = 0.0):
    """Readings of power(t) every period_s over [t0_s, t_end_s]: (times in ns, watts)."""
    n = round((t_end_s - t0_s) / period_s)
    ts = [round((t0_s + i * period_s) * S) for i in range(n + 1)]
    return ts, [power(t / S) for t in ts]


def test_constant_100_w_for_2_s_is_200_j() -> None:
    ts, ps = sampled(lambda t: 100.0, 2.0)
    w = window_energy(POWER_ONLY, Series(power_t=ts, power_w=ps), 0, 2 * S)
    assert w.energy_j == pytest.approx(200.0, rel=1e-12)
    assert (w.method, w.coverage, w.gaps, w.samples) == ("integrated", 1.0, 0, 21)
    assert w.mean_power_w == pytest.approx(100.0) and w.peak_power_w == 100.0
    assert w.flags == ()


def test_linear_ramp_with_edges_between_readings() -> None:
    ts, ps = sampled(lambda t: 10.0 + 50.0 * t, 2.0)
    whole = window_energy(POWER_ONLY, Series(power_t=ts, power_w=ps), 0, 2 * S)
    assert whole.energy_j == pytest.approx(10 * 2 + 25 * 2**2, rel=1e-12)  # = 120 J
    # Edges at 0.25 s and 1.75 s fall between readings: interpolated, still exact for a ramp.
    inner = window_energy(POWER_ONLY, Series(power_t=ts, power_w=ps), S // 4, 7 * S // 4)
    assert inner.energy_j == pytest.approx(10 * 1.5 + 25 * (1.75**2 - 0.25**2), rel=1e-12)  # = 90 J


def test_counter_is_interpolated_at_the_edges() -> None:
    # A 100 W load read as a counter every 0.5 s: e(t) = 100 t.
    counter_t, counter_j = sampled(lambda t: 100.0 * t, 2.0, period_s=0.5)
    ts, ps = sampled(lambda t: 100.0, 2.0)
    series = Series(power_t=ts, power_w=ps, counter_t=counter_t, counter_j=counter_j)
    w = window_energy(GPU, series, round(0.2 * S), round(1.3 * S))
    assert w.method == "counter"
    assert w.energy_j == pytest.approx(110.0, rel=1e-12)


def test_counter_beats_power_when_they_disagree() -> None:
    # Power sampling missed a burst the counter saw: the counter's figure is the one reported.
    counter_t, counter_j = [0, S], [0.0, 150.0]
    ts, ps = sampled(lambda t: 100.0, 1.0)
    w = window_energy(GPU, Series(ts, ps, counter_t, counter_j), 0, S)
    assert (w.method, w.energy_j) == ("counter", pytest.approx(150.0))


def test_window_shorter_than_update_period_is_flagged() -> None:
    counter_t, counter_j = [0, S // 2], [0.0, 50.0]
    ts, ps = sampled(lambda t: 100.0, 0.5)
    w = window_energy(GPU, Series(ts, ps, counter_t, counter_j), round(0.20 * S), round(0.25 * S))
    assert "shorter-than-update-period" in w.flags
    assert w.energy_j == pytest.approx(5.0)


def test_counter_that_did_not_tick_falls_back_to_power() -> None:
    # A 50 ms window with the counter frozen (it updates every 100 ms) and no power reading inside
    # the window: the power around it still gives an energy, never 0 J.
    counter_t, counter_j = [0, S], [10.0, 10.0]
    ts, ps = [0, S], [100.0, 100.0]
    w = window_energy(GPU, Series(ts, ps, counter_t, counter_j), round(0.40 * S), round(0.45 * S))
    assert w.method == "integrated"
    assert w.energy_j == pytest.approx(5.0)
    assert "counter-did-not-advance" in w.flags and "shorter-than-update-period" in w.flags


def test_gap_in_readings_lowers_coverage_and_is_counted() -> None:
    ts1, ps1 = sampled(lambda t: 100.0, 1.0)
    ts2, ps2 = sampled(lambda t: 100.0, 3.0, t0_s=2.0)
    failed = [round((1.0 + 0.1 * i) * S) for i in range(1, 10)]  # 9 failed reads inside the gap
    series = Series(power_t=ts1 + ts2, power_w=ps1 + ps2, missing_t=failed)
    w = window_energy(POWER_ONLY, series, 0, 3 * S, max_gap_s=0.5)
    assert w.coverage == pytest.approx(2 / 3, abs=1e-4)
    assert w.gaps == 1
    assert "low-coverage" in w.flags and "9-failed-readings" in w.flags
    assert w.energy_j == pytest.approx(300.0)  # the gap is bridged linearly, and flagged


def test_window_with_no_readings_has_no_energy_never_zero() -> None:
    w = window_energy(POWER_ONLY, Series(), 0, 2 * S)
    assert w.energy_j is None and w.mean_power_w is None and w.coverage == 0.0
    # Readings exist, but far from the window: still nothing, not 0 J.
    ts, ps = sampled(lambda t: 100.0, 1.0)
    far = window_energy(POWER_ONLY, Series(power_t=ts, power_w=ps), 10 * S, 12 * S)
    assert far.energy_j is None and far.coverage == 0.0


def test_idle_baseline_gives_net_energy() -> None:
    ts, ps = sampled(lambda t: 100.0, 2.0)
    w = window_energy(POWER_ONLY, Series(power_t=ts, power_w=ps), 0, 2 * S, idle_power_w=40.0)
    assert w.energy_j == pytest.approx(200.0)
    assert w.net_energy_j == pytest.approx(200.0 - 40.0 * 2)
    assert w.idle_power_w == 40.0


def test_estimated_domain_keeps_its_method() -> None:
    ts, ps = sampled(lambda t: 20.0, 1.0)
    w = window_energy(ESTIMATED, Series(power_t=ts, power_w=ps), 0, S)
    assert (w.method, w.energy_j) == ("estimated", pytest.approx(20.0))


def test_helpers_directly() -> None:
    assert integrate_power([], [], 0, S) is None
    assert integrate_power([0, S], [0.0, 100.0], 0, S) == pytest.approx(50.0)
    assert coverage_of([0, S, 2 * S], 0, 2 * S, S // 2) == (0.0, 2)
    assert coverage_of([0, S // 4, S // 2], 0, S // 2, S // 2) == (1.0, 0)


def test_timeline_window_matches_the_arithmetic() -> None:
    timeline = Timeline([GPU], power_period_s=0.1)
    from wattlab.meters.base import Sample

    ts, ps = sampled(lambda t: 10.0 + 50.0 * t, 2.0)
    timeline.add_many(Sample(t_ns=t, domain="gpu0", power_w=p) for t, p in zip(ts, ps, strict=True))
    timeline.add_many(Sample(t_ns=t, domain="gpu0", energy_j=10 * t / S + 25 * (t / S) ** 2) for t in ts[::5])
    w = timeline.window("gpu0", S // 2, 3 * S // 2)
    assert w.method == "counter"
    # Counter reads every 0.5 s fall exactly on the edges here: e(1.5) - e(0.5) = 10 + 25 * 2 = 60 J.
    assert w.energy_j == pytest.approx(60.0, rel=1e-12)
