"""SLO-aware advice (`wattlab advise`, the report's "SLO advice" table, the Pareto screen's SLO filter).

Per workload bin (`wattlab.analysis.bins`), the configuration with the lowest energy per SLO-meeting
request among those that meet every given bound, its goodput, and what the next-best costs.

Bounds (all optional; none given = every finished request counts):
- `ttft_p90`, `tpot_p90`, `e2e_p99` (seconds): the configuration's percentile, over the per-request
  rows of its runs (repeats pooled), must be at or below the bound. TTFT per request is the run's
  headline basis (`ttft_basis`: service TTFT offline, client TTFT online), so a single run's
  percentile equals its stored `ttft_p90_s`. Percentiles interpolate linearly, as the runs' own.
- `METRIC=V` (quality): the mean of that metric over the configuration's runs (`quality` table) must
  be at least V; for perplexity (lower is better) at most V.

Figures, per configuration (repeats summed):
- an **SLO-meeting request** finished without error and is within every latency bound given, on its
  own figures (a request with one output token has no TPOT and passes that bound);
- **goodput** = SLO-meeting requests / measured duration (s): requests per second that met the SLO,
  counted from the request rows, never inferred from percentiles;
- **J per SLO request** = gross measured-window energy / SLO-meeting requests (its method is the
  runs' `energy_method`): the energy of the misses is charged to the requests that counted.
The best configuration is the lowest J per SLO request among those meeting every bound (ties: higher
goodput); the next-best is the runner-up, with its extra cost in percent.

Unstable runs (ML.ENERGY leaderboard's rule, `is_unstable_run` in ml-energy/leaderboard's
scripts/build_data.py): a run is unstable when its steady state (from when the most requests first
decode at once to when that number is last left, `sessions/figures.py`) lasts under 10 s, or when
the batch never filled: the time-weighted mean number of requests decoding in the steady state is
under 90% of the batch the run allowed (its batch size, or its request count when smaller). The
batch rule applies to offline runs and to online runs without an arrival rate; at a set rate the
arrivals, not the batch, decide concurrency. As in ML.ENERGY, a batch that never filled cascades:
within a bin, a configuration that differs from it only by a larger batch is unstable too (a larger
batch hits the same memory or scheduler limit). Unlike ML.ENERGY, a steady state that was merely
too short does not cascade: it says the run was short, not that its batch was too big. A
configuration with any unstable run is flagged and left out of the advice unless asked for.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from wattlab.analysis import bins as binning
from wattlab.errors import ConfigError

NS = 1_000_000_000
MIN_STEADY_S = 10.0  # ML.ENERGY's min_steady_duration
MIN_BATCH_FILL = 0.9  # ML.ENERGY's batch_utilization_threshold
# Latency bounds: name -> (per-request column family, percentile, runs column for a single run).
LATENCY_BOUNDS: dict[str, tuple[str, int, str]] = {
    "ttft_p90": ("ttft", 90, "ttft_p90_s"),
    "tpot_p90": ("tpot", 90, "tpot_p90_s"),
    "e2e_p99": ("e2e", 99, "e2e_p99_s"),
}
LOWER_IS_BETTER = frozenset({"perplexity"})
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Slo:
    """The bounds a configuration must meet; None = not bounded."""

    ttft_p90_s: float | None = None
    tpot_p90_s: float | None = None
    e2e_p99_s: float | None = None
    quality: tuple[tuple[str, float], ...] = ()  # (metric, bound): >= bound, <= for perplexity

    def latency(self) -> dict[str, float]:
        """The latency bounds given, by name (ttft_p90, ...)."""
        vals = {"ttft_p90": self.ttft_p90_s, "tpot_p90": self.tpot_p90_s, "e2e_p99": self.e2e_p99_s}
        return {k: v for k, v in vals.items() if v is not None}

    def terms(self) -> list[str]:
        """Each bound as text: 'ttft_p90<=0.5', 'exact_match>=0.3'."""
        out = [f"{k}<={v:g}" for k, v in self.latency().items()]
        out += [f"{m}{'<=' if m in LOWER_IS_BETTER else '>='}{v:g}" for m, v in self.quality]
        return out

    def describe(self) -> str:
        return ", ".join(self.terms()) or "no bounds (every finished request counts)"

    @property
    def empty(self) -> bool:
        return not self.latency() and not self.quality


def _positive(name: str, value: Any, flag: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if not math.isfinite(v) or v <= 0:
        raise ConfigError(
            f"{flag} must be a positive number of seconds, not {value!r}",
            fix=f"give {flag} a bound above 0, e.g. {flag} 0.5",
        )
    return v


def make_slo(
    ttft_p90: Any = None,
    tpot_p90: Any = None,
    e2e_p99: Any = None,
    min_quality: Sequence[str] = (),
) -> Slo:
    """An Slo from CLI values: latency bounds > 0 (seconds), quality as METRIC=V."""
    quality: list[tuple[str, float]] = []
    for item in min_quality:
        metric, sep, value = item.partition("=")
        metric = metric.strip()
        try:
            bound = float(value) if sep else math.nan
        except ValueError:
            bound = math.nan
        if not metric or not _IDENT.match(metric) or not math.isfinite(bound):
            raise ConfigError(
                f"--min-quality {item!r} is not METRIC=VALUE",
                fix="e.g. --min-quality exact_match=0.3 (`wattlab tasks` lists the metrics)",
            )
        quality.append((metric, bound))
    return Slo(
        ttft_p90_s=None if ttft_p90 is None else _positive("ttft_p90", ttft_p90, "--ttft-p90"),
        tpot_p90_s=None if tpot_p90 is None else _positive("tpot_p90", tpot_p90, "--tpot-p90"),
        e2e_p99_s=None if e2e_p99 is None else _positive("e2e_p99", e2e_p99, "--e2e-p99"),
        quality=tuple(quality),
    )


_TERM = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|=)\s*([^\s]+)\s*$")


def parse_slo(text: str) -> Slo:
    """An Slo from the console's filter text: terms like `ttft_p90<=0.5 tpot_p90<=0.05 e2e_p99<=2
    exact_match>=0.3`, separated by spaces or commas. Latency bounds take `<=`; a quality metric
    `>=` (perplexity `<=`)."""
    latency: dict[str, Any] = {}
    quality: list[str] = []
    example = "e.g. ttft_p90<=0.5 tpot_p90<=0.05 e2e_p99<=2 exact_match>=0.3"
    for term in re.split(r"[\s,]+", text.strip()):
        if not term:
            continue
        m = _TERM.match(term)
        if not m:
            raise ConfigError(f"SLO term {term!r} is not NAME<=VALUE or METRIC>=VALUE", fix=example)
        name, op, value = m.groups()
        if name in LATENCY_BOUNDS:
            if op != "<=":
                raise ConfigError(f"{name} is an upper bound: write {name}<={value}", fix=example)
            latency[name] = value
        else:
            want = "<=" if name in LOWER_IS_BETTER else ">="
            if op != want:
                raise ConfigError(
                    f"quality {name} is bounded with {want}: write {name}{want}{value}", fix=example
                )
            quality.append(f"{name}={value}")
    return make_slo(latency.get("ttft_p90"), latency.get("tpot_p90"), latency.get("e2e_p99"), quality)


# --- stability (ML.ENERGY's rule) -------------------------------------------------------------------
@dataclass(frozen=True)
class Stability:
    steady_s: float | None  # steady-state duration
    batch_fill: float | None  # mean requests decoding in it / the batch the run allowed
    reasons: tuple[str, ...] = ()
    unfilled: bool = False  # the batch rule failed (the reason that cascades to larger batches)

    @property
    def unstable(self) -> bool:
        return bool(self.reasons)


def steady_state(spans: Sequence[tuple[int, int]]) -> tuple[int, int, float] | None:
    """(start_ns, end_ns, time-weighted mean of requests decoding) of the steady state of decode spans
    (first token, end), as `sessions/figures.steady_interval` defines it; None when there is none."""
    from wattlab.sessions.figures import decode_events, steady_window

    window = steady_window(spans)
    if window is None:
        return None
    first_full, last_drain = window
    events = decode_events(spans)
    # Mean concurrency over [first_full, last_drain]: integrate the step function.
    area = 0
    active, prev = 0, events[0][0]
    for t, d in events:
        area += active * max(0, min(t, last_drain) - max(prev, first_full))
        active += d
        prev = t
    return first_full, last_drain, area / (last_drain - first_full)


def run_stability(
    run: dict[str, Any],
    spans: Sequence[tuple[int, int]],
    min_steady_s: float = MIN_STEADY_S,
    min_batch_fill: float = MIN_BATCH_FILL,
) -> Stability:
    """ML.ENERGY's rule for one run (see the module docstring) from its requests' decode spans."""
    st = steady_state(spans)
    if st is None:
        return Stability(None, None, ("no steady state (no two requests decoded at once, or none finished)",))
    start, end, mean_active = st
    steady_s = (end - start) / NS
    reasons = []
    if steady_s < min_steady_s:
        reasons.append(f"steady state {steady_s:.3g} s < {min_steady_s:g} s")
    fill = None
    batch = run.get("batch_size")
    rated = run.get("mode") == "online" and run.get("rate") is not None
    if batch and not rated:
        allowed = min(int(batch), len(spans)) or 1
        fill = mean_active / allowed
        if fill < min_batch_fill:
            reasons.append(
                f"batch never filled: {mean_active:.3g} of {allowed} decoding on average "
                f"({fill:.0%} < {min_batch_fill:.0%})"
            )
    unfilled = fill is not None and fill < min_batch_fill
    return Stability(steady_s, fill, tuple(reasons), unfilled)


# --- the advice -------------------------------------------------------------------------------------
@dataclass
class ConfigAdvice:
    """One configuration of a bin under the SLO."""

    levers: str
    run_ids: list[str]
    requests: int  # measured requests (failed ones included)
    slo_requests: int  # those meeting every latency bound
    duration_s: float | None
    energy_j: float | None
    energy_method: str
    goodput_rps: float | None
    j_per_slo_request: float | None
    attainment: float | None  # slo_requests / requests
    ttft_p90_s: float | None
    tpot_p90_s: float | None
    e2e_p99_s: float | None
    quality: dict[str, float] = field(default_factory=dict)
    meets: bool = False
    misses: list[str] = field(default_factory=list)
    unstable: bool = False
    unstable_reasons: list[str] = field(default_factory=list)
    batch_unfilled: bool = False  # a run's batch never filled: larger batches cascade to unstable
    steady_s: list[float | None] = field(default_factory=list)
    batch_fill: list[float | None] = field(default_factory=list)


@dataclass
class BinAdvice:
    label: str
    configs: int
    best: ConfigAdvice | None
    next_best: ConfigAdvice | None
    next_extra_pct: float | None  # next-best's J per SLO request over the best's, in percent
    meeting: int  # configurations meeting every bound (stable ones unless unstable were included)
    unstable_left_out: int
    why_none: str  # when best is None: why
    all: list[ConfigAdvice] = field(default_factory=list)


@dataclass
class Advice:
    session_id: str
    slo: Slo
    include_unstable: bool
    min_steady_s: float
    min_batch_fill: float
    bins: list[BinAdvice]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["slo"] = {
            **{f"{k}_s": v for k, v in self.slo.latency().items()},
            "quality": dict(self.slo.quality),
            "terms": self.slo.terms(),
        }
        d["definitions"] = {
            "slo_request": "finished without error and within every latency bound, on its own figures",
            "goodput_rps": "SLO-meeting requests / measured duration (s), from the request rows",
            "j_per_slo_request": "gross measured-window energy / SLO-meeting requests "
            "(method: energy_method)",
            "best": "lowest j_per_slo_request among configurations meeting every bound (ties: goodput)",
            "unstable": f"ML.ENERGY's rule: steady state < {self.min_steady_s:g} s, or mean batch in it "
            f"< {self.min_batch_fill:.0%} of the batch allowed (offline / unrated); "
            "a batch that never filled cascades to larger batches",
        }
        return d


def percentile(values: Sequence[float], q: float) -> float | None:
    """q-th percentile (0..100), linear interpolation: the method of the runs' stored percentiles."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _request_figures(req: dict[str, Any], basis: str | None) -> dict[str, float | None]:
    ttft = req["ttft_service_s"] if basis == "service" else req["ttft_s"]
    return {"ttft": ttft, "tpot": req["tpot_s"], "e2e": req["e2e_s"]}


def _meets_request(req: dict[str, Any], figs: dict[str, float | None], latency: dict[str, float]) -> bool:
    if req["error"] is not None or req["end_ns"] is None:
        return False
    for name, bound in latency.items():
        family = LATENCY_BOUNDS[name][0]
        v = figs[family]
        if v is None:
            if family == "tpot" and (req["output_tokens"] or 0) <= 1:
                continue  # one token: no time per output token to bound
            return False
        if v > bound:
            return False
    return True


def _cascade_key(settings: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in settings.items() if k != "batch_size"}, sort_keys=True, default=str)


def _dicts(cur: Any) -> list[dict[str, Any]]:
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def session_metrics(con: Any, session_id: str) -> list[str]:
    return [
        r[0]
        for r in con.execute(
            "SELECT DISTINCT metric FROM quality WHERE session_id = ? AND metric IS NOT NULL ORDER BY 1",
            [session_id],
        ).fetchall()
    ]


def advise(
    con: Any,
    session_id: str,
    slo: Slo,
    include_unstable: bool = False,
    min_steady_s: float = MIN_STEADY_S,
    min_batch_fill: float = MIN_BATCH_FILL,
) -> Advice:
    """The advice for one session, read through `con` (a read-only DuckDB connection)."""
    from wattlab.analysis.report import Config, _settings

    if not con.execute("SELECT count(*) FROM sessions WHERE session_id = ?", [session_id]).fetchone()[0]:
        raise ConfigError(f"no session {session_id!r}", fix="`wattlab ls` lists the sessions")
    metrics = session_metrics(con, session_id)
    unknown = [m for m, _ in slo.quality if m not in metrics]
    if unknown:
        raise ConfigError(
            f"session {session_id} has no quality metric {', '.join(map(repr, unknown))}",
            fix=f"use one it measured: {', '.join(metrics)}"
            if metrics
            else "drop --min-quality: this session ran no quality task",
        )
    runs = _dicts(
        con.execute(
            "SELECT * FROM runs WHERE session_id = ? AND status = 'finished' ORDER BY seq, run_id",
            [session_id],
        )
    )
    reqs: dict[str, list[dict[str, Any]]] = {}
    for r in _dicts(
        con.execute(
            "SELECT run_id, first_token_ns, end_ns, ttft_s, ttft_service_s, tpot_s, e2e_s, output_tokens, "
            "error "
            "FROM requests WHERE session_id = ? ORDER BY run_id, request_id",
            [session_id],
        )
    ):
        reqs.setdefault(r["run_id"], []).append(r)
    qual: dict[tuple[str, str], float] = {
        (r, m): float(v)
        for r, m, v in con.execute(
            "SELECT run_id, metric, avg(value) FROM quality WHERE session_id = ? AND value IS NOT NULL "
            "GROUP BY ALL",
            [session_id],
        ).fetchall()
    }

    configs: dict[str, Config] = {}
    for r in runs:
        s = _settings(r)
        configs.setdefault(json.dumps(s, sort_keys=True, default=str), Config(s, [])).runs.append(r)
    stab = {
        r["run_id"]: run_stability(
            r,
            [
                (q["first_token_ns"], q["end_ns"])
                for q in reqs.get(r["run_id"], [])
                if q["first_token_ns"] is not None and q["end_ns"] is not None and q["error"] is None
            ],
            min_steady_s,
            min_batch_fill,
        )
        for r in runs
    }
    out: list[BinAdvice] = []
    for b in binning.group(list(configs.values())):
        advices = [_config_advice(c, slo, reqs, qual, stab) for c in b.configs]
        _cascade(b.configs, advices)
        out.append(_bin_advice(b.label, advices, include_unstable))
    return Advice(session_id, slo, include_unstable, min_steady_s, min_batch_fill, out)


def _config_advice(
    c: Any,
    slo: Slo,
    reqs: dict[str, list[dict[str, Any]]],
    qual: dict[tuple[str, str], float],
    stab: dict[str, Stability],
) -> ConfigAdvice:
    latency = slo.latency()
    values: dict[str, list[float]] = {"ttft": [], "tpot": [], "e2e": []}
    n_req = n_good = 0
    for run in c.runs:
        for q in reqs.get(run["run_id"], []):
            n_req += 1
            figs = _request_figures(q, run.get("ttft_basis"))
            if q["error"] is None and q["end_ns"] is not None:
                for fam, v in figs.items():
                    if v is not None:
                        values[fam].append(float(v))
            n_good += _meets_request(q, figs, latency)
    durations = [r.get("duration_s") for r in c.runs]
    energies = [r.get("energy_j") for r in c.runs]
    duration = sum(durations) if all(d is not None for d in durations) else None
    energy = sum(energies) if all(e is not None for e in energies) else None
    pct = {name: percentile(values[fam], p) for name, (fam, p, _) in LATENCY_BOUNDS.items()}
    misses = []
    for name, bound in latency.items():
        v = pct[name]
        if v is None:
            misses.append(f"no {name} measured")
        elif v > bound:
            misses.append(f"{name} {v:.4g} s > {bound:g} s")
    quality: dict[str, float] = {}
    for metric, bound in slo.quality:
        vals = [qual[(r["run_id"], metric)] for r in c.runs if (r["run_id"], metric) in qual]
        if not vals:
            misses.append(f"no {metric} measured")
            continue
        mean = sum(vals) / len(vals)
        quality[metric] = mean
        low = metric in LOWER_IS_BETTER
        if (mean > bound) if low else (mean < bound):
            misses.append(f"{metric} {mean:.4g} {'>' if low else '<'} {bound:g}")
    if n_good == 0:
        misses.append("no request met the latency bounds" if latency else "no request finished")
    reasons = [f"{r['run_id']}: {why}" for r in c.runs for why in stab[r["run_id"]].reasons]
    return ConfigAdvice(
        levers=c.levers,
        run_ids=[str(r["run_id"]) for r in c.runs],
        requests=n_req,
        slo_requests=n_good,
        duration_s=duration,
        energy_j=energy,
        energy_method=c.method,
        goodput_rps=n_good / duration if duration else None,
        j_per_slo_request=energy / n_good if energy is not None and n_good else None,
        attainment=n_good / n_req if n_req else None,
        ttft_p90_s=pct["ttft_p90"],
        tpot_p90_s=pct["tpot_p90"],
        e2e_p99_s=pct["e2e_p99"],
        quality=quality,
        meets=not misses,
        misses=misses,
        unstable=bool(reasons),
        unstable_reasons=reasons,
        batch_unfilled=any(stab[r["run_id"]].unfilled for r in c.runs),
        steady_s=[stab[r["run_id"]].steady_s for r in c.runs],
        batch_fill=[stab[r["run_id"]].batch_fill for r in c.runs],
    )


def _cascade(configs: list[Any], advices: list[ConfigAdvice]) -> None:
    """ML.ENERGY's cascade: a configuration whose only difference from one whose batch never filled
    is a larger batch is unstable too (the larger batch would hit the same limit)."""
    smallest: dict[str, int] = {}
    for c, a in zip(configs, advices, strict=True):
        bs = c.settings.get("batch_size")
        if a.batch_unfilled and bs is not None:
            k = _cascade_key(c.settings)
            smallest[k] = min(smallest.get(k, bs), bs)
    for c, a in zip(configs, advices, strict=True):
        bs = c.settings.get("batch_size")
        floor = smallest.get(_cascade_key(c.settings))
        if floor is not None and bs is not None and bs > floor:
            a.unstable = True
            a.unstable_reasons.append(
                f"batch {bs} > batch {floor}, which never filled with the same settings (cascade)"
            )


def _bin_advice(label: str, advices: list[ConfigAdvice], include_unstable: bool) -> BinAdvice:
    considered = [a for a in advices if include_unstable or not a.unstable]
    ok = [a for a in considered if a.meets and a.j_per_slo_request is not None]
    ok.sort(key=lambda a: (a.j_per_slo_request, -(a.goodput_rps or 0.0)))
    best = ok[0] if ok else None
    nxt = ok[1] if len(ok) > 1 else None
    extra = None
    if best and nxt and best.j_per_slo_request:
        extra = (nxt.j_per_slo_request - best.j_per_slo_request) / best.j_per_slo_request * 100  # type: ignore[operator]
    left_out = len(advices) - len(considered)
    why = ""
    if best is None:
        if not considered:
            why = f"all {len(advices)} configuration(s) unstable (--include-unstable to use them)"
        elif not any(a.meets for a in considered):
            why = "no configuration meets every bound"
        else:
            why = "no configuration meeting the bounds has an energy figure"
    return BinAdvice(label, len(advices), best, nxt, extra, len(ok), left_out, why, advices)


# --- the console's filter: each run on its own stored figures ---------------------------------------
def run_condition(slo: Slo) -> tuple[str, list[Any]]:
    """SQL over `runs` that is true when a run meets every bound on its own stored figures (its
    percentile columns; quality: its `quality` row of the metric). A missing figure misses."""
    parts: list[str] = []
    params: list[Any] = []
    for name, bound in slo.latency().items():
        parts.append(f"coalesce({LATENCY_BOUNDS[name][2]} <= ?, false)")
        params.append(bound)
    for metric, bound in slo.quality:
        op = "<=" if metric in LOWER_IS_BETTER else ">="
        parts.append(
            "EXISTS (SELECT 1 FROM quality q WHERE q.run_id = runs.run_id AND q.metric = ? "
            f"GROUP BY q.metric HAVING avg(q.value) {op} ?)"
        )
        params += [metric, bound]
    return (" AND ".join(parts) or "true"), params


def runs_missing(
    con: Any, slo: Slo, x: str, y: str, session_id: str | None = None
) -> tuple[list[tuple[str, float, float]], set[str]]:
    """The finished runs with both figures x and y that miss the SLO: their (engine, x, y), to grey
    those points, and their run ids."""
    for col in (x, y):
        if not _IDENT.match(col):
            raise ConfigError(f"not a column: {col!r}", fix="choose an objective from the menu")
    cond, params = run_condition(slo)
    where = f"status = 'finished' AND {x} IS NOT NULL AND {y} IS NOT NULL AND NOT ({cond})"
    if session_id:
        where += " AND session_id = ?"
        params = [*params, session_id]
    rows = con.execute(f"SELECT run_id, engine, {x}, {y} FROM runs WHERE {where}", params).fetchall()
    return [(str(e), float(a), float(b)) for _, e, a, b in rows], {str(r[0]) for r in rows}


# --- the report's table -----------------------------------------------------------------------------
def slo_blocks(con: Any, session_id: str, slo: Slo | None) -> list[tuple[str, Any]]:
    """The report's "SLO advice" section: the bounds used, how the figures are obtained, one row per
    bin. With no bounds given every finished request counts (the table then ranks by J per request)."""
    from wattlab.analysis.report import fmt_num

    slo = slo or Slo()
    advice = advise(con, session_id, slo)
    cols = [
        "workload bin",
        "best (engine variant batch options)",
        "run",
        "goodput (req/s)",
        "J per SLO request (method)",
        "SLO met",
        "next-best",
        "next-best costs",
        "unstable left out",
    ]
    rows = []
    for b in advice.bins:
        a, n = b.best, b.next_best
        if a is None:
            rows.append([b.label, b.why_none, "—", "—", "—", "—", "—", "—", str(b.unstable_left_out)])
            continue
        rows.append(
            [
                b.label,
                a.levers,
                ", ".join(a.run_ids),
                fmt_num(a.goodput_rps),
                f"{fmt_num(a.j_per_slo_request)} ({a.energy_method})",
                "—" if a.attainment is None else f"{a.attainment:.0%}",
                f"{n.levers} ({fmt_num(n.j_per_slo_request)} J)"
                if n
                else "— (no other" + (" stable" if b.unstable_left_out else "") + " one meets the bounds)",
                f"+{b.next_extra_pct:,.1f}%" if b.next_extra_pct is not None else "—",
                str(b.unstable_left_out),
            ]
        )
    bounds = (
        f"Bounds: {slo.describe()}."
        if not slo.empty
        else "No bounds were given (`wattlab report --ttft-p90 S --tpot-p90 S --e2e-p99 S --min-quality "
        "METRIC=V` sets them), so every finished request counts and this ranks by J per request."
    )
    how = (
        "Per workload bin, the configuration with the lowest energy per SLO-meeting request among those "
        "meeting every bound (p90 TTFT / p90 TPOT / p99 E2E over the configuration's request rows; quality "
        "as the mean of the metric). An SLO-meeting request finished within every latency bound on its "
        "own figures; goodput = those requests / measured seconds; J per SLO request = gross "
        "measured-window energy / those requests. Unstable configurations (ML.ENERGY's rule: steady "
        f"state under {advice.min_steady_s:g} s, or under {advice.min_batch_fill:.0%} of the batch "
        "decoding on average, which also rules out larger batches of that configuration) are left out; "
        "`wattlab advise --include-unstable` shows them."
    )
    return [("h2", "SLO advice"), ("p", bounds), ("p", how), ("table", (cols, rows))]
