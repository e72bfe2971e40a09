"""The Live screen's text panels, as pure functions of a LiveSnapshot (markup strings).

Kept apart from the screen so each panel is easy to read and test, and so the screen can compare
the strings and skip redrawing what did not change. Text from data or users is escaped.
"""

from __future__ import annotations

import time
from typing import Any

from wattlab.app import fmt
from wattlab.app.widgets.chart import PALETTE

START_GRACE_S = 45.0  # a launched runner has this long to create its spool before we say it failed

_STATUS_ICON = {
    "running": "[green]●[/] running",
    "queued": "[yellow]◔[/] queued",
    "finished": "[green]✔[/] finished",
    "interrupted": "[yellow]■[/] interrupted",
    "failed": "[red]✖[/] failed",
    "stale": "[yellow]?[/] runner gone",
}


def render_status(
    target: Any, snap: Any, started: bool, error: str | None, monitor_failure: str | None
) -> str:
    """One line: what is followed and its state."""
    if error:
        what = "the spool" if target.kind == "session" else "the monitor file"
        return f"[red]cannot read {what}: {fmt.esc(error)}[/]"
    if target.kind == "none":
        return "[b]This box[/] · [dim]no power monitor (disabled)[/]"
    if target.kind == "monitor":
        if monitor_failure:
            return f"[b]This box[/] · [red]the power monitor stopped: {fmt.esc(monitor_failure)}[/]"
        return "[b]This box[/] · no sweep attached · [dim]l: launch a sweep · a: attach to a session[/]"
    if not started:
        waited = time.monotonic() - target.since
        if waited < START_GRACE_S:
            return f"[yellow]◌[/] starting the runner for session [b]{target.key}[/]… ({waited:.0f}s)"
        return f"[red]the runner for {target.key} did not start[/]: {fmt.esc(_log_tail(target.launch_log))}"
    if snap is None:
        return f"reading session [b]{target.key}[/]…"
    text = f"{_STATUS_ICON.get(snap.status, snap.status)} · session [b]{snap.session_id}[/]"
    text += f" · {fmt.duration(snap.elapsed_s)}"
    if snap.status == "stale":
        text += (
            " · [yellow]its runner stopped without ending the session; its spool is saved at next start[/]"
        )
    elif snap.status == "queued":
        text += " · [yellow]another session is measuring on its devices: it starts when that one ends[/]"
    elif snap.status != "running":
        text += " · [dim]m: this box's power[/]"
    return text


def _log_tail(path: Any) -> str:
    """The last line of a runner's log: why it did not start."""
    if path is None:
        return "no runner log"
    try:
        lines = [ln for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    except OSError:
        return f"no runner log at {path}"
    return lines[-1] if lines else f"its log {path} is empty"


def render_legend(domains: list[Any], mono: bool) -> str:
    """Each plotted domain: its line style, current power and how it is read."""
    if not domains:
        return "[b]Power[/] [dim](W)[/]"
    parts = []
    for i, d in enumerate(domains):
        swatch = "┅┅" if (mono and i % 2 == 1) else "━━"  # monochrome: odd series are dashed
        power = "—" if d.power_w is None else f"{d.power_w:.1f} W"
        parts.append(
            f"[{PALETTE[i % len(PALETTE)]}]{swatch}[/] {d.id} [b]{power}[/] {fmt.method_tag(d.method)}"
        )
    return "[b]Power[/]  " + "   ".join(parts)


def render_devices(domains: tuple[Any, ...]) -> str:
    """A row per domain: power, utilization, memory, clock, temperature, method, missed readings."""
    if not domains:
        return "[dim]no meter readings yet[/]"
    lines = [f"[dim]{'domain':<16}{'power':>9}{'util':>7}{'memory':>11}{'clock':>10}{'temp':>8}  read as[/]"]
    for d in domains:
        power = "—" if d.power_w is None else f"{d.power_w:.1f} W"
        util = "—" if d.util_pct is None else f"{d.util_pct:.0f} %"
        mem = "—" if d.mem_used_mib is None else f"{d.mem_used_mib:,.0f} MiB"
        clock = "—" if d.clock_mhz is None else f"{d.clock_mhz:.0f} MHz"
        temp = "—" if d.temp_c is None else f"{d.temp_c:.0f} °C"
        missing = f" [yellow]{d.missing} missed[/]" if d.missing else ""
        values = f"{fmt.esc(d.id[:15]):<16}{power:>9}{util:>7}{mem:>11}{clock:>10}{temp:>8}"
        lines.append(f"{values}  {fmt.method_tag(d.method)}{missing}")
    return "\n".join(lines)


def _carbon_basis(carbon: dict[str, Any]) -> str:
    g = carbon.get("g_per_kwh")
    if g is None:
        return ""
    where = fmt.esc(str(carbon.get("country") or carbon.get("source") or ""))
    return f" [dim]@{g:g} g/kWh {where} × PUE {carbon.get('pue', 1.0):g}[/]"


def _settings(row: dict[str, Any]) -> str:
    """A run's settings on one line."""
    rate = f" @{row['rate']:g}/s" if row.get("rate") else ""
    what = (
        f"task {row['task']}"
        if row.get("task")
        else f"{row.get('input_tokens')}→{row.get('output_tokens')} tok"
    )
    model = f"{row.get('engine')} {row.get('model')} {row.get('quant') or '(default variant)'}"
    rest = f"{row.get('device')} · bs{row.get('batch_size')} · {what} · {row.get('requests')} req"
    return fmt.esc(f"{model} · {rest} · {row.get('mode')}{rate} · {row.get('decoding')}")


def _session_lines(snap: Any) -> list[str]:
    if snap.current:
        run = f"run {fmt.energy(snap.run_energy_j)} {fmt.method_tag(snap.run_energy_method)}"
    else:
        run = "run —"
    session = (
        f"session {fmt.energy(snap.session_energy_j)} = {fmt.energy_wh(snap.session_energy_j)} → "
        f"{fmt.grams(snap.session_gco2e)} {fmt.method_tag(snap.session_energy_method)}"
    )
    lines = [f"[b]Energy[/] {run} · {session}{_carbon_basis(snap.carbon)}"]
    last = snap.last_result or {}
    speed = f"{fmt.num(snap.tokens_per_s, 3)} tok/s now" if snap.current else "idle"
    if last.get("status") == "finished":
        speed += (
            f" · last run: TTFT p50 {fmt.seconds(last.get('ttft_p50_s'))}"
            f"{' ' + str(last['ttft_basis']) if last.get('ttft_basis') else ''}, "  # service | client
            f"TPOT p50 {fmt.seconds(last.get('tpot_p50_s'))}, "
            f"{fmt.num(last.get('j_per_token'), 3)} J/tok {fmt.method_tag(last.get('energy_method'))}"
        )
    lines.append(f"[b]Speed[/]  {speed}")
    if snap.current:
        row = snap.current.get("row") or {}
        lines.append(f"[b]Run[/] {snap.current.get('seq')}/{snap.runs_total}  {_settings(row)}")
    elif last:
        lines.append(f"[b]Last[/] {_settings(last)}")
    return lines


def render_figures(target: Any, snap: Any, probe: Any, launch_default: str, compact: bool = False) -> str:
    """Energy (run, session; J, Wh, gCO2e, each with its method), speed, the run's settings, and
    which meters are missing or estimated. `launch_default`: what Launch has preselected.

    The panel wraps (essentials first on each line); each missing meter's fix is a line of its own.
    `compact` (a session on a small terminal, where the event log needs the rows): the missing
    meters in one line, pointing at `wattlab doctor` for why and the fix."""
    lines: list[str] = []
    if snap is not None and target.kind == "session":
        lines.extend(_session_lines(snap))
    elif snap is not None:
        total = sum(d.power_w or 0.0 for d in snap.domains if d.kind != "rail")
        methods = ", ".join(fmt.method_tag(m) for m in sorted({d.method for d in snap.domains}))
        lines.append(
            f"[b]Box[/] {total:.1f} W in all ({methods}) · [dim]Launch (2): {fmt.esc(launch_default)}[/]"
        )
    # A session reports the meters its runner could not open; the box view falls back to the probe.
    missing = list(snap.missing_meters) if snap is not None else []
    if not missing and probe is not None and target.kind != "session":
        missing = list(probe.missing)
    if snap is not None and any(d.method == "estimated" for d in snap.domains):
        lines.append("[bold yellow]⚠ power is ESTIMATED (CPU utilization × TDP), not measured[/]")
    if compact and missing:
        names = ", ".join(fmt.esc(str(m.get("meter"))) for m in missing)
        lines.append(f"[yellow]{names} unavailable[/] [dim](why, and the fix: wattlab doctor)[/]")
        return "\n".join(lines)
    for m in missing[:3]:
        meter, reason = fmt.esc(str(m.get("meter"))), fmt.esc(str(m.get("reason")))
        lines.append(f"[yellow]{meter} unavailable:[/] [dim]{reason}[/]")
        if m.get("fix"):
            lines.append(f"  [dim]fix:[/] {fmt.esc(str(m['fix']))}")
    return "\n".join(lines)


def render_results(results: tuple[dict[str, Any], ...], limit: int) -> str:
    """The latest `limit` runs: seq, what ran, status, tok/s, J/token (* estimated), E2E p50."""
    lines = [f"[dim]{'#':>4} {'run':<26} {'status':<9}{'tok/s':>8}{'J/tok':>8}{'E2E p50':>9}[/]"]
    for r in results[-limit:]:
        what = fmt.short_model(
            f"{r.get('engine')} {r.get('quant') or ''} bs{r.get('batch_size')} {r.get('model') or ''}", 26
        )
        status = str(r.get("status") or "")
        j_per_token = fmt.num(r.get("j_per_token"), 3) + (
            "*" if r.get("energy_method") == "estimated" else ""
        )
        line = (
            f"{r.get('seq', ''):>4} {what:<26} {status:<9}{fmt.num(r.get('throughput_tok_s'), 3):>8}"
            f"{j_per_token:>8}{fmt.seconds(r.get('e2e_p50_s')):>9}"
        )
        lines.append(fmt.esc(line) if status == "finished" else f"[red]{fmt.esc(line)}[/]")
    return "\n".join(lines)
