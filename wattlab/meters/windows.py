"""Energy of a window: pure arithmetic over one domain's readings.

A window is a pair of instants (two marks). Its energy is, in order of preference:

1. counter:    the cumulative energy counter linearly interpolated at both edges, differenced.
               Counter reads sit at every mark, so the interpolation spans at most one sampler
               period. A window shorter than the hardware's update period is flagged, and if the
               counter did not move, the power integral is used instead (as Zeus warns and does).
2. integrated: the trapezoid integral of power readings, linearly interpolated at the edges.
3. estimated:  same arithmetic as 2, on a modelled power (the estimate meter).

Every result carries its method, its data coverage (the share of the window where readings were
at most `max_gap_s` apart: a gap is reported, not papered over) and flags. A window with no
readings at all has energy None, never 0 J.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

from wattlab.meters.base import Domain, Method

NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Series:
    """One domain's readings, sorted by time. Times in ns, power in W, energy in J (cumulative)."""

    power_t: Sequence[int] = ()
    power_w: Sequence[float] = ()
    counter_t: Sequence[int] = ()
    counter_j: Sequence[float] = ()
    missing_t: Sequence[int] = ()


@dataclass(frozen=True, slots=True)
class WindowEnergy:
    """Energy of one domain over one window.

    energy_j:      gross energy in J (None when nothing could be read: never a silent zero).
    net_energy_j:  energy_j minus idle_power_w x duration (None without an idle baseline).
    coverage:      0..1, share of the window with readings at most max_gap_s apart.
    """

    domain: str
    t0_ns: int
    t1_ns: int
    energy_j: float | None
    method: Method
    coverage: float
    gaps: int
    samples: int
    mean_power_w: float | None
    peak_power_w: float | None
    idle_power_w: float | None = None
    net_energy_j: float | None = None
    flags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def duration_s(self) -> float:
        return (self.t1_ns - self.t0_ns) / NS


def interpolate(ts: Sequence[int], vs: Sequence[float], t: int) -> float | None:
    """Value at t by linear interpolation between the readings bracketing it (None if not bracketed)."""
    if not ts:
        return None
    i = bisect.bisect_left(ts, t)
    if i < len(ts) and ts[i] == t:
        return vs[i]
    if i == 0 or i == len(ts):
        return None
    t_a, t_b = ts[i - 1], ts[i]
    v_a, v_b = vs[i - 1], vs[i]
    return v_a + (v_b - v_a) * (t - t_a) / (t_b - t_a)


def _nearest_value(ts: Sequence[int], vs: Sequence[float], t: int) -> float:
    i = bisect.bisect_left(ts, t)
    if i == 0:
        return vs[0]
    if i == len(ts):
        return vs[-1]
    return vs[i] if ts[i] - t < t - ts[i - 1] else vs[i - 1]


def integrate_power(ts: Sequence[int], ps: Sequence[float], t0: int, t1: int) -> float | None:
    """Trapezoid integral of power (W) over [t0, t1] in J.

    Edges are interpolated between readings; past the first/last reading the nearest value is held
    (that stretch shows up as a gap in coverage). None when there are no readings.
    """
    if not ts or t1 <= t0:
        return None if not ts else 0.0
    lo = bisect.bisect_right(ts, t0)
    hi = bisect.bisect_left(ts, t1)
    p0 = interpolate(ts, ps, t0)
    p1 = interpolate(ts, ps, t1)
    points: list[tuple[int, float]] = [(t0, p0 if p0 is not None else _nearest_value(ts, ps, t0))]
    points.extend((ts[i], ps[i]) for i in range(lo, hi))
    points.append((t1, p1 if p1 is not None else _nearest_value(ts, ps, t1)))
    energy = 0.0
    for (t_a, p_a), (t_b, p_b) in itertools.pairwise(points):
        energy += (p_a + p_b) / 2.0 * (t_b - t_a) / NS
    return energy


def coverage_of(ts: Sequence[int], t0: int, t1: int, max_gap_ns: int) -> tuple[float, int]:
    """(share of [t0, t1] where readings are at most max_gap_ns apart, number of gaps).

    A stretch between two consecutive readings longer than max_gap_ns is a gap, and so is the
    stretch from a window edge to the first/last reading when that is longer than max_gap_ns.
    """
    if t1 <= t0:
        return (1.0 if ts else 0.0), 0
    lo = bisect.bisect_left(ts, t0 - max_gap_ns)
    hi = bisect.bisect_right(ts, t1 + max_gap_ns)
    points = ts[lo:hi]
    if not points:
        return 0.0, 1
    uncovered = 0
    gaps = 0
    if points[0] - t0 > max_gap_ns:
        uncovered += min(points[0], t1) - t0
        gaps += 1
    for a, b in itertools.pairwise(points):
        if b - a > max_gap_ns:
            a_c, b_c = max(a, t0), min(b, t1)
            if b_c > a_c:
                uncovered += b_c - a_c
                gaps += 1
    if t1 - points[-1] > max_gap_ns:
        uncovered += t1 - max(points[-1], t0)
        gaps += 1
    return max(0.0, 1.0 - uncovered / (t1 - t0)), gaps


def window_energy(
    domain: Domain,
    series: Series,
    t0_ns: int,
    t1_ns: int,
    *,
    idle_power_w: float | None = None,
    max_gap_s: float = 0.5,
) -> WindowEnergy:
    """Energy of `domain` over [t0_ns, t1_ns] from its readings. See the module docstring."""
    max_gap_ns = int(max_gap_s * NS)
    duration_s = (t1_ns - t0_ns) / NS
    flags: list[str] = []
    period = domain.counter_period_s
    if period and duration_s < period:
        flags.append("shorter-than-update-period")

    p_lo = bisect.bisect_left(series.power_t, t0_ns)
    p_hi = bisect.bisect_right(series.power_t, t1_ns)
    in_window = list(series.power_w[p_lo:p_hi])
    peak = max(in_window) if in_window else None
    n_missing = bisect.bisect_right(series.missing_t, t1_ns) - bisect.bisect_left(series.missing_t, t0_ns)
    if n_missing:
        flags.append(f"{n_missing}-failed-readings")

    energy: float | None = None
    method: Method = "estimated" if domain.estimated else "integrated"
    coverage, gaps = coverage_of(series.power_t, t0_ns, t1_ns, max_gap_ns)

    if domain.has_counter and series.counter_t:
        e0 = interpolate(series.counter_t, series.counter_j, t0_ns)
        e1 = interpolate(series.counter_t, series.counter_j, t1_ns)
        if e0 is not None and e1 is not None:
            energy = e1 - e0
            method = "counter"
            # Between counter reads nothing is lost: coverage is about the edges only.
            coverage, gaps = 1.0, 0
            if energy <= 0.0 and series.power_t and duration_s > 0:
                # The counter did not tick within the window: fall back to the power integral
                # (interpolated at the edges, so it works even with no reading inside the window).
                energy = integrate_power(series.power_t, series.power_w, t0_ns, t1_ns)
                method = "integrated"
                coverage, gaps = coverage_of(series.power_t, t0_ns, t1_ns, max_gap_ns)
                flags.append("counter-did-not-advance")
        else:
            flags.append("counter-not-bracketing-window")

    if energy is None and series.power_t:
        energy = integrate_power(series.power_t, series.power_w, t0_ns, t1_ns)
        if coverage == 0.0:
            energy = None
    if domain.estimated:
        method = "estimated"
    if coverage < 0.95 and energy is not None:
        flags.append("low-coverage")

    mean = energy / duration_s if (energy is not None and duration_s > 0) else None
    net = None
    if energy is not None and idle_power_w is not None:
        net = energy - idle_power_w * duration_s
    return WindowEnergy(
        domain=domain.id,
        t0_ns=t0_ns,
        t1_ns=t1_ns,
        energy_j=energy,
        method=method,
        coverage=round(coverage, 4),
        gaps=gaps,
        samples=len(in_window),
        mean_power_w=mean,
        peak_power_w=peak,
        idle_power_w=idle_power_w,
        net_energy_j=net,
        flags=tuple(flags),
    )


# --- judging an idle baseline --------------------------------------------------------------------
BASELINE_NOT_IDLE = "baseline-not-idle"
"""Flag on every net figure whose idle baseline was taken while the device was busy."""

IDLE_MAX_UTIL_PCT = 20.0  # mean utilization above this during the baseline: something else was running
IDLE_MAX_LIMIT_SHARE = 0.5  # mean power above this share of the device's limit / TDP is not idle
IDLE_MAX_SPREAD = 0.3  # power's standard deviation over its mean: a load came and went
IDLE_MIN_SPREAD_W = 2.0  # ...but a few watts of jitter on a small CPU are not a load


@dataclass(frozen=True, slots=True)
class IdleJudgement:
    """Whether one domain's idle baseline looks idle, with the figures it was judged on.

    reasons: empty when idle; else one short text per failed check (shown next to the flag).
    """

    domain: str
    mean_power_w: float | None
    util_pct: float | None
    spread_w: float | None  # standard deviation of the power readings, W
    limit_w: float | None  # the device's power limit or TDP, when the meter knows it
    reasons: tuple[str, ...] = ()

    @property
    def idle(self) -> bool:
        return not self.reasons

    def as_dict(self) -> dict[str, object]:
        return {
            "domain": self.domain,
            "mean_power_w": self.mean_power_w,
            "util_pct": self.util_pct,
            "spread_w": self.spread_w,
            "limit_w": self.limit_w,
            "reasons": list(self.reasons),
        }


def judge_idle(
    domain: str,
    power_w: Sequence[float],
    util_pct: float | None = None,
    limit_w: float | None = None,
) -> IdleJudgement:
    """Judge the readings taken during an idle baseline (see the IDLE_* thresholds).

    util_pct is the mean utilization over the baseline. Busy if that is high, the mean power is a
    large share of the device's limit/TDP, or power swung widely (a job starting or stopping
    during the baseline). With no readings there is nothing to judge, and no baseline either.
    """
    if not power_w:
        return IdleJudgement(domain, None, None, None, limit_w)
    mean = sum(power_w) / len(power_w)
    spread = (sum((p - mean) ** 2 for p in power_w) / len(power_w)) ** 0.5
    reasons = []
    if util_pct is not None and util_pct > IDLE_MAX_UTIL_PCT:
        reasons.append(f"{util_pct:.0f}% utilized")
    if limit_w and mean > IDLE_MAX_LIMIT_SHARE * limit_w:
        reasons.append(f"{mean:.3g} W of a {limit_w:.3g} W maximum")
    if len(power_w) >= 3 and spread > IDLE_MIN_SPREAD_W and spread > IDLE_MAX_SPREAD * mean:
        reasons.append(f"power varied ±{spread:.3g} W around {mean:.3g} W")
    return IdleJudgement(domain, mean, util_pct, spread, limit_w, tuple(reasons))
