"""`wattlab report`: a Markdown + HTML guidelines report for one session, derived from its data.

Contents: the setting (meters, carbon, idle baseline), every run, the greenest configuration per
workload bin with its saving against that bin's baseline, the Pareto front(s), energy by phase and
domain, each configuration's measured effect against its bin's baseline, recommendations computed
from those figures, a scaling fit when the session spans three or more model sizes, and how each
figure was obtained.

Runs are compared only within a workload bin (same model, task or token lengths, mode and, online,
rate): see `wattlab.analysis.bins` for the bin and for how each bin's baseline is chosen
(--baseline, else transformers fp32 batch 1, else the bin's highest-J/token configuration).

Numbers in the report never use exponent notation (`fmt_num`): four significant digits, with
thousands separators from 1,000 up.

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

from wattlab.analysis import bins as binning
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
    "workload",
    "prompts_file",
    "options",
    # model and GPU levers (schema v5): a lever within a bin, so a transformed run is its own config
    "transform",
    "speculative",
    "power_limit_w",
    "sm_clock_mhz",
    "mem_clock_mhz",
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
        extra = f" {binning.workload_label(s)}"
        mode = s["mode"]
        if mode == "online" and s.get("rate") is not None:
            mode = f"online@{s['rate']:g}/s" if isinstance(s["rate"], float) else f"online@{s['rate']}/s"
        levers = _opts_suffix(s) + _lever_suffix(s)
        return f"{s['engine']} {s['model']}{q} bs{s['batch_size']} {mode}{extra}{levers}"

    @property
    def levers(self) -> str:
        """What was chosen within the bin: engine, variant, batch, device, decoding, options."""
        s = self.settings
        parts = [str(s.get("engine")), str(s.get("quant") or "default"), f"bs{s.get('batch_size')}"]
        if s.get("device") and s.get("device") != "cuda":
            parts.append(str(s["device"]))
        if s.get("decoding") and s.get("decoding") != "greedy":
            parts.append(str(s["decoding"]))
        return " ".join(parts) + _opts_suffix(s) + _lever_suffix(s)

    @property
    def run_ids(self) -> str:
        return ", ".join(str(r["run_id"]) for r in self.runs)

    @property
    def method(self) -> str:
        return "/".join(sorted({str(r["energy_method"]) for r in self.runs if r.get("energy_method")})) or "?"


def _opts_suffix(s: dict[str, Any]) -> str:
    opts = s.get("options") or {}
    return f" [{_opts(opts)}]" if opts else ""


def _lever_suffix(s: dict[str, Any]) -> str:
    """The model and GPU levers a configuration set, in their TOML spelling ("" when none)."""
    names = ("transform", "speculative", "power_limit_w", "sm_clock_mhz", "mem_clock_mhz")
    return "".join(f" {k}={s[k]}" for k in names if s.get(k) is not None)


def _opts(opts: Any) -> str:
    if not opts:
        return "no options"
    if isinstance(opts, dict):
        return ", ".join(f"{k}={v}" for k, v in sorted(opts.items()))
    return str(opts)


def _change(config: Config, base: Config, figure: str) -> str:
    """The config's mean of a figure against the baseline's, as a signed percentage."""
    p = queries.percent_change(config.mean(figure), base.mean(figure))
    return "n/a" if p is None else f"{p:+,.1f}%"


def load_configs(store: Store, session_id: str) -> tuple[list[Config], list[dict[str, Any]]]:
    runs = store.query_dicts("SELECT * FROM runs WHERE session_id = ? ORDER BY seq", [session_id])
    finished = [r for r in runs if r["status"] == "finished"]
    configs: dict[str, Config] = {}
    for r in finished:
        settings = _settings(r)
        key = json.dumps(settings, sort_keys=True, default=str)
        configs.setdefault(key, Config(settings, [])).runs.append(r)
    return list(configs.values()), runs


def _settings(r: dict[str, Any]) -> dict[str, Any]:
    """A run's configuration: its columns plus, from its spec, the engine options and prompts file."""
    spec = r.get("spec_json") or {}
    if isinstance(spec, (str, bytes)):
        try:
            spec = json.loads(spec)
        except ValueError:
            spec = {}
    spec = spec if isinstance(spec, dict) else {}
    s = {k: r.get(k) for k in SETTINGS if k not in ("options", "prompts_file")}
    s["options"] = spec.get("options") or {}
    s["prompts_file"] = spec.get("prompts_file")
    return s


def quality_band(configs: list[Config]) -> tuple[float, str]:
    stds = [s for c in configs if (s := c.std("quality")) is not None]
    if stds:
        return 2 * max(stds), "2 x the largest std of quality across repeats"
    return 0.01, "0.01 on the metric's scale (no repeats to estimate noise)"


def _setting(k: str, v: Any) -> str:
    return _opts(v) if k == "options" else str(v)


def effect_lines(configs: list[Config], base: Config, band: float) -> list[str]:
    """One sentence per configuration of one workload bin: what changed against the bin's baseline
    and what it did. Configurations of another bin are skipped: a different model or workload is
    not an effect (see `wattlab.analysis.bins`)."""
    lines = []
    perplexity = base.settings.get("task") == "perplexity"
    base_bin = binning.bin_key(base.settings)
    for c in configs:
        if c is base or binning.bin_key(c.settings) != base_bin:
            continue
        changed = [k for k in SETTINGS if c.settings.get(k) != base.settings.get(k)]
        what = ", ".join(
            f"{k} {_setting(k, base.settings.get(k))} -> {_setting(k, c.settings.get(k))}" for k in changed
        )
        parts = [
            f"{_change(c, base, 'j_per_token')} J/token",
            f"{_change(c, base, 'e2e_p50_s')} p50 latency",
            f"{_change(c, base, 'throughput_tok_s')} throughput",
        ]
        q, qb = c.mean("quality"), base.mean("quality")
        if q is not None and qb is not None:
            limit = band if not perplexity else abs(qb) * 0.01
            if abs(q - qb) <= limit:
                parts.append(f"quality unchanged ({fmt_num(q, 3)} vs {fmt_num(qb, 3)})")
            else:
                better = (q < qb) if perplexity else (q > qb)
                parts.append(
                    f"quality {'better' if better else 'worse'} ({fmt_num(q, 3)} vs {fmt_num(qb, 3)})"
                )
        lines.append(f"{what or 'same settings'}: " + ", ".join(parts))
    return lines


def baseline_line(b: binning.Bin) -> str:
    """The bin's baseline with its own figures, and why it is the baseline."""
    base: Config = b.baseline
    return (
        f"Baseline {base.label} (run {base.run_ids}; {b.why}): "
        f"{fmt_num(base.mean('j_per_token'))} J/token ({base.method}), "
        f"p50 latency {fmt_num(base.mean('e2e_p50_s'))} s, "
        f"throughput {fmt_num(base.mean('throughput_tok_s'))} tok/s."
    )


def greenest_table(bins: list[binning.Bin]) -> tuple[list[str], list[list[str]]]:
    cols = [
        "workload bin",
        "configs",
        "greenest (engine variant batch options)",
        "run",
        "J/token (method)",
        "e2e p50 (s)",
        "throughput (tok/s)",
        "baseline",
        "saving vs baseline",
    ]
    rows = []
    for b in bins:
        best: Config | None = b.greenest()
        base: Config = b.baseline
        if best is None:
            rows.append([b.label, str(len(b.configs)), "no run with J/token", "—", "—", "—", "—", "—", "—"])
            continue
        p = queries.percent_change(best.mean("j_per_token"), base.mean("j_per_token"))
        if best is base:
            saving = "— (the baseline is the greenest)" if len(b.configs) > 1 else "— (only configuration)"
        else:
            saving = "n/a" if p is None else f"{-p:,.1f}% less J/token"
        rows.append(
            [
                b.label,
                str(len(b.configs)),
                best.levers,
                best.run_ids,
                f"{fmt_num(best.mean('j_per_token'))} ({best.method})",
                fmt_num(best.mean("e2e_p50_s")),
                fmt_num(best.mean("throughput_tok_s")),
                f"{base.levers} ({fmt_num(base.mean('j_per_token'))} J/token; {binning.short_why(b.why)})",
                saving,
            ]
        )
    return cols, rows


def recommendations(
    configs: list[Config], bins: list[binning.Bin], band: float, runs: list[dict[str, Any]]
) -> list[str]:
    recs: list[str] = []
    with_energy = [c for c in configs if c.mean("j_per_token") is not None]
    if not with_energy:
        return ["No run has an energy figure, so no energy recommendation can be made."]
    bin_of = {id(c): b for b in bins for c in b.configs}
    methods = {r.get("energy_method") for c in with_energy for r in c.runs}
    best = min(with_energy, key=lambda c: c.mean("j_per_token") or math.inf)
    base = bin_of[id(best)].baseline
    vs = (
        "it is its bin's baseline"
        if best is base
        else f"{_change(best, base, 'j_per_token')} vs its bin's baseline {base.label}"
    )
    recs.append(
        f"Lowest energy per output token: {best.label} at {fmt_num(best.mean('j_per_token'))} J/token "
        f"({vs}), p50 latency {fmt_num(best.mean('e2e_p50_s'))} s."
        + (
            " The session spans several workload bins (other models or token lengths), so this is no "
            "like-for-like ranking: pick per bin from 'Greenest configuration per workload bin'."
            if len(bins) > 1
            else ""
        )
    )
    for b in bins:
        recs += _quality_recs(b, band, multi=len(bins) > 1)
    with_lat = [c for c in with_energy if c.mean("e2e_p50_s") is not None]
    if with_lat:
        fast = min(with_lat, key=lambda c: c.mean("e2e_p50_s") or math.inf)
        fbase = bin_of[id(fast)].baseline
        vs = (
            f"{fmt_num(fast.mean('j_per_token'))} J/token; it is its bin's baseline"
            if fast is fbase
            else f"{_change(fast, fbase, 'j_per_token')} J/token vs its bin's baseline"
        )
        recs.append(f"Lowest p50 latency: {fast.label} at {fmt_num(fast.mean('e2e_p50_s'))} s ({vs}).")
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


def _quality_recs(b: binning.Bin, band: float, multi: bool) -> list[str]:
    """Quality-aware picks within one bin, against its baseline's quality."""
    recs: list[str] = []
    base: Config = b.baseline
    with_energy = [c for c in b.configs if c.mean("j_per_token") is not None]
    best = b.greenest()
    where = f" in {b.label}" if multi else ""
    qb = base.mean("quality")
    if qb is not None and with_energy and best is not None:
        perplexity = base.settings.get("task") == "perplexity"
        ok = [
            c
            for c in with_energy
            if (q := c.mean("quality")) is not None and ((q <= qb * 1.01) if perplexity else (q >= qb - band))
        ]
        if ok:
            pick = min(ok, key=lambda c: c.mean("j_per_token") or math.inf)
            recs.append(
                f"Lowest J/token without losing quality (within the noise band){where}: {pick.label}, "
                f"{_change(pick, base, 'j_per_token')} J/token vs the bin's baseline, "
                f"quality {fmt_num(pick.mean('quality'), 3)}."
            )
        best_q = best.mean("quality")
        if best_q is not None and not perplexity and best_q < qb - band:
            recs.append(
                f"The most frugal configuration{where} loses quality ({fmt_num(best_q, 3)} vs "
                f"{fmt_num(qb, 3)}): weigh the saving against it (see the Green AI index)."
            )
    return recs


def fmt_num(v: Any, sig: int = 4) -> str:
    """A number for a table or a sentence, never in exponent notation: `sig` significant digits,
    thousands separators from 1,000 up (whole numbers there), trailing zeros dropped."""
    if v is None:
        return "—"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if not math.isfinite(v):
        return str(v)
    if v == 0:
        return "0"
    if abs(v) >= 10 ** (sig - 1):
        return f"{v:,.0f}"
    decimals = min(12, sig - 1 - math.floor(math.log10(abs(v))))
    text = f"{v:,.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _fmt(v: Any) -> str:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return fmt_num(v) if isinstance(v, float) else str(v)
    return "—" if v is None else str(v)


def write_report(
    store: Store,
    session: str | None,
    out_dir: Path,
    baseline: str | None = None,
    families: list[str] | None = None,
    slo: Any = None,
) -> list[Path]:
    """`families`: the user's own ladders, each "TEACHER,STUDENT,..." (wattlab report --family)."""
    session_id = (
        queries.resolve_id(store, "sessions", "session_id", session)
        if session
        else queries.latest_session(store)
    )
    if not session_id:
        raise ConfigError(
            "there is no session to report on", fix="run `wattlab run` or `wattlab sweep` first"
        )
    from wattlab.engines.families import local_family

    local = [local_family(text, i) for i, text in enumerate(families or [], 1)]  # refused before reading
    configs, runs = load_configs(store, session_id)
    if not configs:
        raise ConfigError(
            f"session {session_id} has no finished run", fix="report on a session with finished runs"
        )
    forced: Config | None = None
    baseline_note = ""
    if baseline:
        rid = queries.resolve_id(store, "runs", "run_id", baseline)
        forced = next((c for c in configs if any(r["run_id"] == rid for r in c.runs)), None)
        if forced is None:
            baseline_note = (
                f"--baseline {rid} is not a finished run of this session: "
                "every bin uses its default baseline."
            )
    bins = binning.assign(configs, forced)
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
        "workload",
        "options",
        "throughput_tok_s",
        "e2e_p50_s",
        "j_per_token",
        "energy_method",
        "gco2e_per_request",
        "quality",
        "quality_metric",
    ]
    blocks.append(("table", (cols, [_run_row(r, cols) for r in runs])))

    blocks.append(("h2", "Greenest configuration per workload bin"))
    blocks.append(
        (
            "p",
            "A workload bin is the work a run did: the model, the task (or the synthetic input/output "
            "token lengths), the mode and, for online runs, the arrival rate. Engine, variant (quant), "
            "batch size, device, decoding, engine options, model transform, speculative decoding and "
            "GPU caps are the choices compared within a bin; "
            "J/token is never compared across bins. Each bin's baseline is the run given with "
            "--baseline, else transformers fp32 batch 1 (the seed study's baseline) when the bin has it, "
            "else the bin's highest-J/token configuration. Repeats of one configuration are averaged.",
        )
    )
    if baseline_note:
        blocks.append(("p", baseline_note))
    blocks.append(("table", greenest_table(bins)))
    from wattlab.analysis.advise import slo_blocks

    with store.reader() as con:
        blocks += slo_blocks(con, session_id, slo)  # `wattlab report --ttft-p90 ...`; none: no bounds

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

    blocks.append(("h2", "Effects against the baseline, within each workload bin"))
    blocks.append(
        (
            "p",
            f"Quality noise band: ±{fmt_num(band, 3)} ({band_why}). Runs of different bins (another "
            "model, task, token lengths, mode or rate) are different workloads, not comparable: no "
            "effect is computed across bins.",
        )
    )
    for b in bins:
        blocks.append(("h3", b.label))
        lines = [baseline_line(b), *effect_lines(b.configs, b.baseline, band)]
        if len(b.configs) == 1:
            lines.append("Only one configuration in this bin: nothing to compare.")
        blocks.append(("ul", lines))
    blocks.append(("h2", "Recommendations"))
    blocks.append(("ul", recommendations(configs, bins, band, runs)))
    blocks += scaling_blocks(configs)
    from wattlab.analysis.families import family_blocks, transform_blocks

    blocks += family_blocks(configs, local)
    blocks += transform_blocks(configs)
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


def _run_row(r: dict[str, Any], cols: list[str]) -> list[str]:
    """One run's row of the Runs table; its workload as in its bin, its engine options."""
    s = _settings(r)
    out = []
    for c in cols:
        if c == "workload":
            out.append(binning.workload_label(s) + (f" @{fmt_num(s['rate'])}/s" if s.get("rate") else ""))
        elif c == "options":
            out.append(_opts(s["options"]) if s["options"] else "—")
        else:
            out.append(_fmt(r.get(c)))
    return out


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
            items.append(f"{col} = {fmt_num(fit.a)} x params^{fit.b:.3f} (R² {fit.r2:.3f}, n = {fit.n})")
    out.append(("ul", items or ["Fewer than three sizes with this figure: no fit."]))
    return out


def render_markdown(blocks: list[tuple[str, Any]]) -> str:
    out = []
    for kind, content in blocks:
        if kind == "h1":
            out.append(f"# {content}\n")
        elif kind == "h2":
            out.append(f"## {content}\n")
        elif kind == "h3":
            out.append(f"### {content}\n")
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
        if kind in ("h1", "h2", "h3", "p"):
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
