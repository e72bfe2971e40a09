"""Turning a run's completions and its timeline into figures: latency, throughput, energy, carbon.

Definitions (as `vllm bench` and ML.ENERGY use them):
- Queue = scheduled (the engine first works on the request) - arrival (offline: arrival = when the
  workload was submitted, so a request behind earlier batches queues).
- TTFT, two of them: client = first token - arrival (what a client sees; `vllm bench`, guidellm);
  service = first token - scheduled (the engine's own speed). The headline `ttft_*` is the service
  TTFT offline and the client TTFT online (`ttft_basis` says which); client = queue + service.
- TPOT = (E2E - TTFT) / (output tokens - 1), per request with at least 2 output tokens.
- ITL  = gaps between successive token arrivals of a request (tokens that arrive together count once).
- E2E  = end - arrival.
- Throughput = output tokens / measured window; total tok/s adds input tokens.
- Steady state = the stretch where the most requests were decoding at once (from when the batch
  first fills to when it starts draining); its J/token is ML.ENERGY's headline figure.
- Prefill / decode windows (offline): per batch, submission -> last first token, then -> batch end.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from wattlab.engines.base import Completion
from wattlab.meters.base import Domain, weakest_method
from wattlab.meters.timeline import Timeline
from wattlab.meters.windows import BASELINE_NOT_IDLE, NS, WindowEnergy

Interval = tuple[int, int]


def percentile(values: Sequence[float], q: float) -> float | None:
    """q-th percentile (0..100) with linear interpolation; None for no values."""
    if not values:
        return None
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _stats(prefix: str, values: list[float], mean: bool = True) -> dict[str, float | None]:
    out = {f"{prefix}_p{q}_s": percentile(values, q) for q in (50, 90, 99)}
    if mean:
        out[f"{prefix}_mean_s"] = sum(values) / len(values) if values else None
    return out


def latency_figures(
    completions: list[Completion], t0_ns: int, t1_ns: int, online: bool = False
) -> dict[str, Any]:
    ok = [c for c in completions if c.error is None and c.end_ns is not None]
    ttft: list[float] = []
    service: list[float] = []
    queue: list[float] = []
    tpot: list[float] = []
    itl: list[float] = []
    e2e: list[float] = []
    for c in ok:
        arrival = c.arrival_ns or t0_ns
        if c.first_token_ns is not None:
            ttft.append((c.first_token_ns - arrival) / NS)
            if c.scheduled_ns is not None:  # None: the engine cannot tell (an OpenAI server)
                service.append((c.first_token_ns - c.scheduled_ns) / NS)
                queue.append((c.scheduled_ns - arrival) / NS)
        e2e.append((int(c.end_ns or 0) - arrival) / NS)
        if c.output_tokens > 1 and c.first_token_ns is not None:
            tpot.append((int(c.end_ns or 0) - c.first_token_ns) / NS / (c.output_tokens - 1))
        distinct = sorted(set(c.token_ns))
        itl.extend((b - a) / NS for a, b in itertools.pairwise(distinct))
    duration = (t1_ns - t0_ns) / NS
    tokens_in = sum(c.input_tokens for c in ok)
    tokens_out = sum(c.output_tokens for c in ok)
    # Offline the service TTFT is the headline, but only when every request has one: a mixed
    # headline would mean different things for different requests.
    basis = "service" if not online and service and len(service) == len(ttft) else "client"
    client_stats = _stats("ttft_client", ttft)
    service_stats = _stats("ttft_service", service)
    headline = service_stats if basis == "service" else client_stats
    return {
        "duration_s": duration,
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
        "requests_ok": len(ok),
        "throughput_tok_s": tokens_out / duration if duration > 0 else None,
        "total_tok_s": (tokens_in + tokens_out) / duration if duration > 0 else None,
        "requests_per_s": len(ok) / duration if duration > 0 else None,
        **{k.replace(f"ttft_{basis}_", "ttft_"): v for k, v in headline.items()},
        "ttft_basis": basis if ttft else None,
        **client_stats,
        **service_stats,
        **_stats("queue", queue),
        **_stats("tpot", tpot),
        **_stats("itl", itl, mean=False),
        **_stats("e2e", e2e),
    }


def steady_interval(completions: list[Completion]) -> Interval | None:
    """Steady state: from when the most requests first decode at once (the batch first fills) to
    when that number is last left (the final drain begins). Dips between static batches stay
    inside: refilling the batch is part of steady operation."""
    spans = [(c.first_token_ns, c.end_ns) for c in completions]
    return steady_window([(a, b) for a, b in spans if a is not None and b is not None])


def decode_events(spans: Iterable[Interval]) -> list[tuple[int, int]]:
    """(instant, +1 | -1) for each decode span's start and end, ends before starts at one instant."""
    events = [e for a, b in spans if b > a for e in ((a, 1), (b, -1))]
    events.sort(key=lambda e: (e[0], e[1]))
    return events


def steady_window(spans: Iterable[Interval]) -> Interval | None:
    """The steady state (see steady_interval) of decode spans (first token, end); None without one."""
    events = decode_events(spans)
    if not events:
        return None
    active = peak = 0
    for _, delta in events:
        active += delta
        peak = max(peak, active)
    first_full: int | None = None
    last_drain: int | None = None
    active = 0
    for t, delta in events:
        active += delta
        if active == peak and first_full is None:
            first_full = t
        if delta < 0 and active == peak - 1:
            last_drain = t
    if first_full is None or last_drain is None or last_drain <= first_full:
        return None
    return first_full, last_drain


def _union(intervals: list[Interval]) -> list[Interval]:
    out: list[Interval] = []
    for a, b in sorted(iv for iv in intervals if iv[1] > iv[0]):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _subtract(intervals: list[Interval], holes: list[Interval]) -> list[Interval]:
    out = []
    for a, b in intervals:
        cur = a
        for h0, h1 in holes:
            if h1 <= cur or h0 >= b:
                continue
            if h0 > cur:
                out.append((cur, h0))
            cur = max(cur, h1)
        if cur < b:
            out.append((cur, b))
    return out


def prefill_decode_intervals(completions: list[Completion]) -> tuple[list[Interval], list[Interval]]:
    """Prefill: any request waiting for its first token; decode: requests generating and none in
    prefill. With static batches this is optimum-benchmark's split (submission -> first tokens,
    then -> end); with continuous batching the time when new prompts are being prefilled counts as
    prefill. The two never overlap, so their energies add up to at most the measured window's."""
    prefill = _union(
        [(c.start_ns or c.arrival_ns, c.first_token_ns) for c in completions if c.first_token_ns is not None]
    )
    decode_any = _union(
        [
            (c.first_token_ns, c.end_ns)
            for c in completions
            if c.first_token_ns is not None and c.end_ns is not None
        ]
    )
    return prefill, _subtract(decode_any, prefill)


def tokens_in_interval(completions: Iterable[Completion], iv: Interval) -> int:
    return sum(1 for c in completions for t in c.token_ns if iv[0] <= t <= iv[1])


def attributed_domains(domains: Iterable[Domain], devices: Iterable[str]) -> list[Domain]:
    """The top-level domains of the devices a run used (never other GPUs, never Jetson sub-rails).

    The host CPU and DRAM serve every run, so `cpu` domains are always included.
    """
    used = set(devices) | {"cpu"}
    if any(d.startswith("gpu") for d in used) or "soc" in used:
        used.add("soc")  # a Jetson's board total includes its integrated GPU
    return [d for d in domains if d.parent is None and d.device in used]


def windows_energy(
    timeline: Timeline,
    domains: list[Domain],
    name: str,
    intervals: list[Interval],
    idle_w: dict[str, float],
) -> list[dict[str, Any]]:
    """Energy rows (one per domain) for a window made of one or more intervals."""
    rows = []
    for d in domains:
        parts: list[WindowEnergy] = [
            timeline.window(d.id, a, b, idle_power_w=idle_w.get(d.id)) for a, b in intervals if b > a
        ]
        if not parts:
            continue
        energies = [p.energy_j for p in parts]
        total = None if any(e is None for e in energies) else sum(e for e in energies if e is not None)
        nets = [p.net_energy_j for p in parts]
        net = None if any(n is None for n in nets) else sum(n for n in nets if n is not None)
        duration = sum(p.duration_s for p in parts)
        rows.append(
            {
                "window_name": name,
                "domain_id": d.id,
                "energy_j": total,
                "net_energy_j": net,
                "method": weakest_method([p.method for p in parts]),
                "coverage": min(p.coverage for p in parts),
                "gaps": sum(p.gaps for p in parts),
                "duration_s": duration,
                "mean_power_w": total / duration if total is not None and duration > 0 else None,
                "peak_power_w": max(
                    (p.peak_power_w for p in parts if p.peak_power_w is not None), default=None
                ),
                "idle_power_w": idle_w.get(d.id),
                "flags": ",".join(sorted({f for p in parts for f in p.flags})),
            }
        )
    return rows


def total_of(rows: list[dict[str, Any]], window: str) -> dict[str, Any]:
    """Sum of a window's domain rows: gross, net, weakest method, lowest coverage, which domains.

    Estimated domains (the CPU modelled as utilization x TDP) are left out of the total when a
    measured domain exists: a GPU's counter-measured energy is not relabelled "estimated" because
    the host CPU had no meter. Their energy stays in the per-domain rows, marked estimated.
    """
    mine = [r for r in rows if r["window_name"] == window]
    measured = [r for r in mine if r["method"] != "estimated"]
    if measured:
        mine = measured
    if not mine or any(r["energy_j"] is None for r in mine):
        return {
            "energy_j": None,
            "energy_net_j": None,
            "method": None,
            "coverage": 0.0 if mine else None,
            "domains": ",".join(r["domain_id"] for r in mine),
        }
    nets = [r["net_energy_j"] for r in mine]
    return {
        "energy_j": sum(r["energy_j"] for r in mine),
        "energy_net_j": None if any(n is None for n in nets) else sum(nets),
        "method": weakest_method([r["method"] for r in mine]),
        "coverage": min(r["coverage"] for r in mine),
        "domains": ",".join(r["domain_id"] for r in mine),
    }


def peak_total_power(timeline: Timeline, domains: list[Domain], t0: int, t1: int) -> float | None:
    """Highest summed power of the domains at any reading time in [t0, t1] (interpolated per domain).

    Like `total_of`, estimated domains are left out when a measured one exists, so the peak is
    over the same domains as the energy and its method follows theirs (see `figure_method`).
    """
    from wattlab.meters.windows import interpolate

    measured = [d for d in domains if not d.estimated]
    domains = measured or domains
    series = {d.id: timeline.series(d.id) for d in domains}
    times = sorted({t for s in series.values() for t in s.power_t if t0 <= t <= t1})
    best = None
    for t in times:
        total = 0.0
        for s in series.values():
            p = interpolate(s.power_t, s.power_w, t)
            if p is None:
                break
            total += p
        else:
            best = total if best is None else max(best, total)
    return best


def mean_util(timeline: Timeline, domains: list[Domain], t0: int, t1: int) -> float | None:
    """Mean utilization of the accelerator domains if any, else of the CPU domains (%)."""
    gpu = [d for d in domains if d.kind in ("gpu", "soc")]
    chosen = gpu or [d for d in domains if d.kind == "cpu"]
    vals = [v for d in chosen if (v := timeline.mean_util(d.id, t0, t1)) is not None]
    return sum(vals) / len(vals) if vals else None


# --- flags and labels ------------------------------------------------------------------------------
def flag_busy_baseline(rows: list[dict[str, Any]], not_idle: Mapping[str, str]) -> None:
    """Add `baseline-not-idle` to the flags of every energy row whose net figure was computed from a
    baseline judged busy (meters/windows.judge_idle). The net figure itself is kept as computed."""
    for r in rows:
        if r["domain_id"] in not_idle and r.get("net_energy_j") is not None:
            flags = {f for f in (r.get("flags") or "").split(",") if f} | {BASELINE_NOT_IDLE}
            r["flags"] = ",".join(sorted(flags))


def measured_flags(rows: list[dict[str, Any]], summed_domains: str | None) -> list[str]:
    """The run's flags from its measured-window rows. `baseline-not-idle` counts only from the
    domains summed into the run's net figures (`energy_domains`), since only those feed them."""
    summed = set((summed_domains or "").split(","))
    flags: set[str] = set()
    for r in rows:
        if r["window_name"] != "measured":
            continue
        for f in (r.get("flags") or "").split(","):
            if f and (f != BASELINE_NOT_IDLE or r["domain_id"] in summed):
                flags.add(f)
    return sorted(flags)


NET_COLUMNS = frozenset({"energy_net_j", "j_per_token_net"})
# What the headline ttft_* columns are, by ttft_basis (latency_figures chooses it).
TTFT_BASES = {
    "service": "service: first token − scheduled (the engine's speed, queueing excluded)",
    "client": "client: first token − arrival (what a client sees, queueing included)",
}
_MEASURED_COLUMNS_FROM_ENERGY = frozenset({"energy_coverage", "energy_domains", "green_index"})


def _flags(run: Mapping[str, Any]) -> set[str]:
    return {f for f in str(run.get("flags") or "").split(",") if f}


def figure_method(column: str, method_column: str | None, run: Mapping[str, Any]) -> str:
    """How a stored figure was obtained, from the methods of what it was computed from.

    Energy figures carry their own method column (counter / integrated / estimated). Peak power is
    read from the same domains as the energy (estimated when those are the estimate meter's); the
    Green AI index is only as good as its J/token; time and token counts are measured; PUE is
    configured. Returns a plain word, or "unknown" when the run does not say.
    """
    if method_column == "ttft_basis":  # the headline TTFT: which of the two it is
        return TTFT_BASES.get(str(run.get("ttft_basis")), "basis unknown")
    if method_column:  # an energy method, or the grid intensity's source, or the task's metric
        return str(run.get(method_column) or "unknown")
    if column == "pue":
        return "configured"
    if column == "peak_mem_mib" and run.get("peak_mem_kind"):
        return f"measured ({run.get('peak_mem_kind')})"  # gpu | gpu-device | host | engine
    if column in _MEASURED_COLUMNS_FROM_ENERGY:
        if column == "green_index" and run.get("j_per_token") is None:
            return "measured"  # no energy axis: quality and latency only
        return str(run.get("energy_method") or "unknown")
    if column == "peak_power_w":
        methods = [r.get("method") for r in run.get("energy") or [] if r.get("window_name") == "measured"]
        if methods:
            return "estimated" if all(m == "estimated" for m in methods) else "measured"
        return "estimated" if run.get("energy_method") == "estimated" else "measured"
    return "measured"


def net_notes(column: str, value: Any, run: Mapping[str, Any]) -> list[str]:
    """What a net figure's reader must know: below idle (a negative net is shown as it is, never
    clamped) and a baseline taken while the device was busy."""
    if column not in NET_COLUMNS or value is None:
        return []
    notes = []
    if isinstance(value, int | float) and value < 0:
        notes.append("below idle")
    if BASELINE_NOT_IDLE in _flags(run):
        notes.append(BASELINE_NOT_IDLE)
    return notes


def net_row_notes(row: Mapping[str, Any]) -> list[str]:
    """The same for one energy row (a window and domain) and its own flags."""
    value = row.get("net_energy_j")
    if value is None:
        return []
    notes = ["below idle"] if value < 0 else []
    if BASELINE_NOT_IDLE in _flags(row):
        notes.append(BASELINE_NOT_IDLE)
    return notes
