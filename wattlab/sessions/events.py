"""Runner events as one-line texts (rich markup), for `wattlab run`, `attach` and the console's log."""

from __future__ import annotations

from typing import Any

from rich.markup import escape as esc  # user text (labels, errors, "[vllm-cpu]") is not markup


def fmt(value: Any, unit: str = "") -> str:
    """A number for humans: 4 significant digits, an em dash for a missing value."""
    if value is None:
        return "—"
    if isinstance(value, float):
        a = abs(value)
        text = f"{value:.4g}" if (a >= 1e-3 or a == 0) else f"{value:.3e}"
    else:
        text = str(value)
    return f"{text} {unit}".strip()


def run_line(r: dict[str, Any]) -> str:
    if r.get("status") != "finished":
        return f"[red]{r.get('status')}[/] {esc(r.get('error') or '')}" + (
            f"\n    fix: {esc(r['error_fix'])}" if r.get("error_fix") else ""
        )
    method = r.get("energy_method") or "?"
    return (
        f"[green]finished[/] {fmt(r.get('throughput_tok_s'), 'tok/s')}, "
        f"E2E p50 {fmt(r.get('e2e_p50_s'), 's')}, "
        f"{fmt(r.get('energy_j'), 'J')} ({method}), {fmt(r.get('j_per_token'), 'J/token')}"
        + (f", {r['quality_metric']} {fmt(r.get('quality'))}" if r.get("quality_metric") else "")
    )


def describe_event(ev: dict[str, Any]) -> str | None:
    kind = ev.get("ev")
    if kind == "session_start":
        s = ev["session"]
        meters = s.get("meters_json", {})
        used = ", ".join(meters.get("used", [])) or "none"
        text = f"session {s['session_id']}: {s.get('runs_planned')} run(s); meters: {used}"
        for m in meters.get("missing", []):
            text += f"\n  [dim]{m['meter']} unavailable: {esc(m['reason'])}[/]"
        if ev.get("skip"):
            text += f"\n  resuming: {len(ev['skip'])} finished run(s) skipped"
        return text
    if kind == "idle":
        idle = ", ".join(f"{d} {w:.1f} W" for d, w in ev.get("idle_w", {}).items())
        return f"idle baseline over {ev.get('seconds')} s: {idle or 'not measured'}"
    if kind == "run_start":
        return f"[bold]run {ev['seq']}/{ev['total']}[/] {esc(ev['label'])}"
    if kind == "run_end":
        return "  " + run_line(ev["result"])
    if kind == "run_skipped":
        return f"[dim]run {ev['seq']} already finished, skipped: {esc(ev['label'])}[/]"
    if kind == "commit_deferred":
        return f"[yellow]database commit deferred ({esc(ev['reason'])}); the spool keeps everything[/]"
    if kind == "session_error":
        return f"[red]{esc(str(ev.get('message')))}[/]" + (
            f"\n  fix: {esc(ev['fix'])}" if ev.get("fix") else ""
        )
    if kind == "session_end":
        return f"session {ev['status']}"
    return None
