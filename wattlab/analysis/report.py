"""`wattlab report`: a Markdown + HTML guidelines report for one session, derived from its data.

Contents: the setting (meters, carbon, idle baseline), every run, the Pareto front(s), energy by
phase and domain, each configuration's measured effect against the session's baseline (the first
finished run, or --baseline), recommendations computed from those figures, a scaling fit when
the session spans three or more model sizes, and how each figure was obtained.

Recommendations are never canned: each sentence is built from the numbers above it, and says
nothing when the data cannot support it (no quality measured, a single run, estimated energy).

Quality "unchanged" means the change is within a noise band: twice the largest standard deviation
of the quality across repeats of one configuration when the session has repeats, else 0.01 on the
metric's 0..1 scale (perplexity: 1% relative). The band used is printed in the report.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from wattlab.analysis import queries, svgplot
from wattlab.analysis.front import pareto_runs
from wattlab.errors import ConfigError
from wattlab.sessions.store import Store

SETTINGS = [
    "engine",
    "model",
    "quant",
    "device",
    "batch_size",
    "mode",
    "rate",
    "decoding",
    "num_beams",
    "temperature",
    "input_tokens",
    "output_tokens",
    "task",
]
FIGS = [
    "j_per_token",
    "e2e_p50_s",
    "ttft_p50_s",
    "throughput_tok_s",
    "gco2e_per_request",
    "quality",
    "energy_j",
]


@dataclass
class Config:
    """Runs of one configuration (repeats averaged)."""

    settings: dict[str, Any]
    runs: list[dict[str, Any]]

    def mean(self, col: str) -> float | None:
        vals = [float(r[col]) for r in self.runs if r.get(col) is not None]
        return statistics.fmean(vals) if vals else None

    def std(self, col: str) -> float | None:
        vals = [float(r[col]) for r in self.runs if r.get(col) is not None]
        return statistics.stdev(vals) if len(vals) > 1 else None

    @property
    def label(self) -> str:
        s = self.settings
        q = f"/{s['quant']}" if s.get("quant") else ""
        extra = (
            f" {s['task']}" if s.get("task") else f" {s.get('input_tokens')}in/{s.get('output_tokens')}out"
        )
        return f"{s['engine']} {s['model']}{q} bs{s['batch_size']} {s['mode']}{extra}"


def _change(config: Config, base: Config, figure: str) -> str:
    """The config's mean of a figure against the baseline's, as a signed percentage."""
    p = queries.percent_change(config.mean(figure), base.mean(figure))
    return "n/a" if p is None else f"{p:+.1f}%"


def load_configs(store: Store, session_id: str) -> tuple[list[Config], list[dict[str, Any]]]:
    runs = store.query_dicts("SELECT * FROM runs WHERE session_id = ? ORDER BY seq", [session_id])
    finished = [r for r in runs if r["status"] == "finished"]
    configs: dict[str, Config] = {}
    for r in finished:
        key = json.dumps({k: r.get(k) for k in SETTINGS}, sort_keys=True, default=str)
        configs.setdefault(key, Config({k: r.get(k) for k in SETTINGS}, [])).runs.append(r)
    return list(configs.values()), runs


def quality_band(configs: list[Config]) -> tuple[float, str]:
    stds = [s for c in configs if (s := c.std("quality")) is not None]
    if stds:
        return 2 * max(stds), "2 x the largest std of quality across repeats"
    return 0.01, "0.01 on the metric's scale (no repeats to estimate noise)"


def effect_lines(configs: list[Config], base: Config, band: float) -> list[str]:
    """One sentence per configuration: what changed against the baseline and what it did."""
    lines = []
    perplexity = base.settings.get("task") == "perplexity"
    for c in configs:
        if c is base:
            continue
        changed = [k for k in SETTINGS if c.settings.get(k) != base.settings.get(k)]
        what = ", ".join(f"{k} {base.settings.get(k)} -> {c.settings.get(k)}" for k in changed)
        parts = [
            f"{_change(c, base, 'j_per_token')} J/token",
            f"{_change(c, base, 'e2e_p50_s')} p50 latency",
            f"{_change(c, base, 'throughput_tok_s')} throughput",
        ]
        q, qb = c.mean("quality"), base.mean("quality")
        if q is not None and qb is not None:
            limit = band if not perplexity else abs(qb) * 0.01
            if abs(q - qb) <= limit:
                parts.append(f"quality unchanged ({q:.3g} vs {qb:.3g})")
            else:
                better = (q < qb) if perplexity else (q > qb)
                parts.append(f"quality {'better' if better else 'worse'} ({q:.3g} vs {qb:.3g})")
        lines.append(f"{what or 'same settings'}: " + ", ".join(parts))
    return lines


def recommendations(
    configs: list[Config], base: Config, band: float, runs: list[dict[str, Any]]
) -> list[str]:
    recs: list[str] = []
    with_energy = [c for c in configs if c.mean("j_per_token") is not None]
    if not with_energy:
        return ["No run has an energy figure, so no energy recommendation can be made."]
    methods = {r.get("energy_method") for c in with_energy for r in c.runs}
    best = min(with_energy, key=lambda c: c.mean("j_per_token") or math.inf)
    recs.append(
        f"Lowest energy per output token: {best.label} at {best.mean('j_per_token'):.4g} J/token "
        f"({_change(best, base, 'j_per_token')} "
        f"vs the baseline {base.label}), "
        f"p50 latency {_fmt(best.mean('e2e_p50_s'))} s."
    )
    qb = base.mean("quality")
    if qb is not None:
        perplexity = base.settings.get("task") == "perplexity"
        ok = [
            c
            for c in with_energy
            if (q := c.mean("quality")) is not None and ((q <= qb * 1.01) if perplexity else (q >= qb - band))
        ]
        if ok:
            pick = min(ok, key=lambda c: c.mean("j_per_token") or math.inf)
            recs.append(
                f"Lowest J/token without losing quality (within the noise band): {pick.label}, "
                f"{_change(pick, base, 'j_per_token')} J/token, "
                f"quality {pick.mean('quality'):.3g}."
            )
        best_q = best.mean("quality")
        if best_q is not None and not perplexity and best_q < qb - band:
            recs.append(
                f"The most frugal configuration loses quality ({best.mean('quality'):.3g} vs {qb:.3g}): "
                "weigh the saving against it (see the Green AI index)."
            )
    with_lat = [c for c in with_energy if c.mean("e2e_p50_s") is not None]
    if with_lat:
        fast = min(with_lat, key=lambda c: c.mean("e2e_p50_s") or math.inf)
        recs.append(
            f"Lowest p50 latency: {fast.label} at {fast.mean('e2e_p50_s'):.4g} s "
            f"({_change(fast, base, 'j_per_token')} J/token vs baseline)."
        )
    if "estimated" in methods:
        recs.append(
            "Some energy figures are ESTIMATED (CPU utilization x TDP, no power meter): compare them with "
            "each other only, and measure on a box with NVML, RAPL or Jetson rails before deciding."
        )
    failed = [r for r in runs if r["status"] != "finished"]
    if failed:
        recs.append(
            f"{len(failed)} run(s) did not finish ({', '.join(sorted({r['status'] for r in failed}))}): "
            "their configurations are missing from this comparison."
        )
    return recs


def _fmt(v: Any) -> str:
    return "—" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))


def write_report(store: Store, session: str | None, out_dir: Path, baseline: str | None = None) -> list[Path]:
    session_id = (
        queries.resolve_id(store, "sessions", "session_id", session)
        if session
        else queries.latest_session(store)
    )
    if not session_id:
        raise ConfigError(
            "there is no session to report on", fix="run `wattlab run` or `wattlab sweep` first"
        )
    configs, runs = load_configs(store, session_id)
    if not configs:
        raise ConfigError(
            f"session {session_id} has no finished run", fix="report on a session with finished runs"
        )
    base = configs[0]
    if baseline:
        rid = queries.resolve_id(store, "runs", "run_id", baseline)
        base = next((c for c in configs if any(r["run_id"] == rid for r in c.runs)), base)
    band, band_why = quality_band(configs)
    sess = store.query_dicts("SELECT * FROM sessions WHERE session_id = ?", [session_id])[0]
    out_dir.mkdir(parents=True, exist_ok=True)
    blocks: list[tuple[str, Any]] = [("h1", f"wattlab report — session {session_id}")]
    meters = queries.to_jsonable(sess.get("meters_json")) or {}
    carbon = queries.to_jsonable(sess.get("carbon_json")) or {}
    idle = (queries.to_jsonable(sess.get("idle_json")) or {}).get("idle_w", {})
    blocks.append(
        (
            "p",
            f"Host {sess.get('host')} ({sess.get('platform')}), wattlab {sess.get('wattlab_version')}, "
            f"created {sess.get('created_at')}; status {sess.get('status')}.",
        )
    )
    blocks.append(
        (
            "p",
            f"Meters used: {', '.join(meters.get('used', [])) or 'none'}"
            + "".join(f"; {m['meter']} unavailable ({m['reason']})" for m in meters.get("missing", []))
            + f". Idle baseline: {', '.join(f'{d} {w:.1f} W' for d, w in idle.items()) or 'not measured'}.",
        )
    )
    blocks.append(
        (
            "p",
            f"Carbon: {carbon.get('g_per_kwh')} gCO2e/kWh ({carbon.get('source')}), PUE {carbon.get('pue')}.",
        )
    )

    blocks.append(("h2", "Runs"))
    cols = [
        "run_id",
        "status",
        "engine",
        "model",
        "quant",
        "batch_size",
        "mode",
        "throughput_tok_s",
        "e2e_p50_s",
        "j_per_token",
        "energy_method",
        "gco2e_per_request",
        "quality",
        "quality_metric",
    ]
    blocks.append(("table", (cols, [[_fmt(r.get(c)) for c in cols] for r in runs])))

    images = []
    pairs = [("j_per_token", "e2e_p50_s")]
    if any(c.mean("quality") is not None for c in configs):
        pairs.append(("j_per_token", "quality"))
    for x, y in pairs:
        data = pareto_runs(store, [x, y], session_id=session_id)
        pts = [(p[x], p[y], p["engine"], p["on_front"], p["run_id"]) for p in data["points"]]
        svg = svgplot.scatter(
            pts,
            x_label=x,
            y_label=y,
            title=f"Pareto front: {x} vs {y}",
            log_x=_log_fits([p[0] for p in pts]),
            log_y=_log_fits([p[1] for p in pts]),
        )
        name = f"pareto_{x}_{y}.svg"
        (out_dir / name).write_text(svg)
        images.append(out_dir / name)
        blocks.append(("h2", f"Pareto front: {x} vs {y}"))
        blocks.append(("img", (name, svg)))
        blocks.append(
            (
                "ul",
                [
                    f"{r['run_id']}: {r['engine']} {r['model']} {r.get('quant') or ''} bs{r['batch_size']} — "
                    f"{x} {_fmt(r[x])}, {y} {_fmt(r[y])}"
                    for r in data["front"]
                ]
                + (
                    [f"{data['excluded']} run(s) lack {x} or {y} and are not placed."]
                    if data["excluded"]
                    else []
                ),
            )
        )

    energy = store.query_dicts(
        "SELECT e.run_id, e.window_name, e.domain_id, e.energy_j "
        "FROM run_energy e JOIN runs r USING (run_id) "
        "WHERE r.session_id = ? AND e.window_name IN ('load', 'warmup', 'prefill', 'decode') "
        "ORDER BY e.run_id",
        [session_id],
    )
    bars: dict[str, dict[str, float]] = {}
    for e in energy:
        if e["energy_j"] is not None:
            bars.setdefault(str(e["run_id"]), {})[f"{e['window_name']}/{e['domain_id']}"] = float(
                e["energy_j"]
            )  # type: ignore[arg-type]
    if bars:
        svg = svgplot.stacked_bars(list(bars.items()), title="Energy by phase and domain (J)", unit="J")
        (out_dir / "energy_phases.svg").write_text(svg)
        images.append(out_dir / "energy_phases.svg")
        blocks += [("h2", "Energy by phase and domain"), ("img", ("energy_phases.svg", svg))]

    blocks.append(("h2", f"Effects against the baseline ({base.label})"))
    blocks.append(("p", f"Quality noise band: ±{band:.3g} ({band_why})."))
    blocks.append(
        ("ul", effect_lines(configs, base, band) or ["Only one configuration: nothing to compare."])
    )
    blocks.append(("h2", "Recommendations"))
    blocks.append(("ul", recommendations(configs, base, band, runs)))
    blocks += scaling_blocks(configs)
    blocks.append(("h2", "How the figures were obtained"))
    blocks.append(
        (
            "p",
            "Energy is the measured window's, summed over the domains the run used. Method 'counter' is "
            "a hardware energy counter's difference, 'integrated' the trapezoid of power readings, "
            "'estimated' CPU utilization x TDP (a model). J/token = energy / output tokens; gCO2e = "
            "kWh x PUE x grid intensity. Latency definitions follow vllm bench (TTFT, TPOT, E2E).",
        )
    )
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    md_path.write_text(render_markdown(blocks))
    html_path.write_text(render_html(blocks))
    return [md_path, html_path, *images]


def _log_fits(values: list[float]) -> bool:
    pos = [v for v in values if v is not None and v > 0]
    return len(pos) == len(values) and len(pos) > 1 and max(pos) / min(pos) > 20


def scaling_blocks(configs: list[Config]) -> list[tuple[str, Any]]:
    from wattlab.analysis.scaling import fit_power_law

    sized = [(float(p), c) for c in configs if (p := c.runs[0].get("params"))]
    if len({p for p, _ in sized}) < 3:
        return []
    out: list[tuple[str, Any]] = [("h2", "Model size vs efficiency")]
    items = []
    for col in ("j_per_token", "quality"):
        pts = [(p, v) for p, c in sized if (v := c.mean(col)) is not None and v > 0]
        if len({p for p, _ in pts}) >= 3:
            fit = fit_power_law([p for p, _ in pts], [v for _, v in pts])
            items.append(f"{col} = {fit.a:.4g} x params^{fit.b:.3f} (R² {fit.r2:.3f}, n = {fit.n})")
    out.append(("ul", items or ["Fewer than three sizes with this figure: no fit."]))
    return out


def render_markdown(blocks: list[tuple[str, Any]]) -> str:
    out = []
    for kind, content in blocks:
        if kind == "h1":
            out.append(f"# {content}\n")
        elif kind == "h2":
            out.append(f"## {content}\n")
        elif kind == "p":
            out.append(f"{content}\n")
        elif kind == "ul":
            out.append("\n".join(f"- {line}" for line in content) + "\n")
        elif kind == "img":
            out.append(f"![{content[0]}]({content[0]})\n")
        elif kind == "table":
            cols, rows = content
            out.append("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
            out.extend("| " + " | ".join(row) + " |" for row in rows)
            out.append("")
    return "\n".join(out) + "\n"


def render_html(blocks: list[tuple[str, Any]]) -> str:
    body = []
    for kind, content in blocks:
        if kind in ("h1", "h2", "p"):
            body.append(f"<{kind}>{escape(str(content))}</{kind}>")
        elif kind == "ul":
            body.append("<ul>" + "".join(f"<li>{escape(line)}</li>" for line in content) + "</ul>")
        elif kind == "img":
            body.append(f"<figure>{content[1]}</figure>")
        elif kind == "table":
            cols, rows = content
            head = "".join(f"<th>{escape(c)}</th>" for c in cols)
            trs = "".join("<tr>" + "".join(f"<td>{escape(v)}</td>" for v in row) + "</tr>" for row in rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{trs}</tbody></table>")
    style = (
        "body{font-family:sans-serif;max-width:1000px;margin:2em auto}"
        "table{border-collapse:collapse;font-size:12px}"
        "td,th{border:1px solid #ccc;padding:2px 6px}"
    )
    head = f"<head><meta charset='utf-8'><title>wattlab report</title><style>{style}</style></head>"
    return f"<!doctype html><html>{head}<body>{''.join(body)}</body></html>\n"
