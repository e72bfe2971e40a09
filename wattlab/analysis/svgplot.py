"""Small dependency-free SVG charts for reports: a scatter (log axes, groups, a highlighted front)
and stacked horizontal bars. Plain SVG 1.1, readable in any browser and embeddable in Markdown."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
W, H = 640, 420
LEFT, RIGHT, TOP, BOTTOM = 70, 150, 30, 55


# --- SVG elements --------------------------------------------------------------------------------
def _svg(width: float, height: float) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="11">'
    )


def _text(x: float, y: float, content: str, anchor: str = "start", extra: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{extra}>{escape(content)}</text>'


def _circle(x: float, y: float, r: float, fill: str, extra: str = "", tooltip: str = "") -> str:
    title = f"<title>{escape(tooltip)}</title>" if tooltip else ""
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r}" fill="{fill}"{extra}>{title}</circle>'


def _rect(x: float, y: float, w: float, h: float, fill: str, extra: str = "", tooltip: str = "") -> str:
    title = f"<title>{escape(tooltip)}</title>" if tooltip else ""
    return (
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" fill="{fill}"{extra}>{title}</rect>'
    )


def _line(x1: float, y1: float, x2: float, y2: float) -> str:
    return f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="#555"/>'


# --- axes ----------------------------------------------------------------------------------------
def _ticks(lo: float, hi: float, log: bool) -> list[float]:
    if log:
        a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
        return [10.0**k for k in range(a, b + 1)]
    if hi == lo:
        return [lo]
    step = 10 ** math.floor(math.log10((hi - lo) / 4))
    for mult in (1, 2, 5, 10):
        if (hi - lo) / (step * mult) <= 6:
            step *= mult
            break
    start = math.floor(lo / step) * step
    n = int((hi - start) / step) + 2
    return [start + i * step for i in range(n) if start + i * step <= hi * 1.0001]


def _span(values: list[float], log: bool) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if log:
        return lo / 1.5, hi * 1.5
    pad = (hi - lo) * 0.08 or abs(hi) * 0.1 or 1.0
    return lo - pad, hi + pad


def _scale(lo: float, hi: float, log: bool) -> tuple[float, float, bool]:
    return (math.log10(lo), math.log10(hi), True) if log else (lo, hi, False)


def _frac(v: float, scale: tuple[float, float, bool]) -> float:
    lo, hi, log = scale
    return ((math.log10(v) if log else v) - lo) / (hi - lo)


def scatter(
    points: Sequence[tuple[float, float, str, bool, str]],
    *,
    x_label: str,
    y_label: str,
    title: str,
    log_x: bool = False,
    log_y: bool = False,
) -> str:
    """points: (x, y, group, on_front, label). Log axes need positive values (others are dropped)."""
    pts = [p for p in points if (not log_x or p[0] > 0) and (not log_y or p[1] > 0)]
    if not pts:
        return _svg(W, 60) + _text(10, 30, f"{title}: no data") + "</svg>"
    (x0, x1), (y0, y1) = _span([p[0] for p in pts], log_x), _span([p[1] for p in pts], log_y)
    xs, ys = _scale(x0, x1, log_x), _scale(y0, y1, log_y)
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM

    def sx(v: float) -> float:
        return LEFT + _frac(v, xs) * plot_w

    def sy(v: float) -> float:
        return H - BOTTOM - _frac(v, ys) * plot_h

    out = [
        _svg(W, H),
        _text(W / 2, 18, title, "middle", ' font-size="13"'),
        _rect(LEFT, TOP, plot_w, plot_h, "none", ' stroke="#999"'),
    ]
    for t in _ticks(x0, x1, log_x):
        if x0 <= t <= x1:
            out += [
                _line(sx(t), H - BOTTOM, sx(t), H - BOTTOM + 4),
                _text(sx(t), H - BOTTOM + 16, f"{t:.3g}", "middle"),
            ]
    for t in _ticks(y0, y1, log_y):
        if y0 <= t <= y1:
            out += [_line(LEFT - 4, sy(t), LEFT, sy(t)), _text(LEFT - 6, sy(t) + 4, f"{t:.3g}", "end")]
    out.append(_text((LEFT + W - RIGHT) / 2, H - 12, x_label + (" (log)" if log_x else ""), "middle"))
    y_mid = (TOP + H - BOTTOM) / 2
    out.append(
        f'<text transform="translate(16 {y_mid}) rotate(-90)" text-anchor="middle">'
        f"{escape(y_label + (' (log)' if log_y else ''))}</text>"
    )
    groups = sorted({p[2] for p in pts})
    color = {g: PALETTE[i % len(PALETTE)] for i, g in enumerate(groups)}
    front = sorted((p for p in pts if p[3]), key=lambda p: p[0])
    if len(front) > 1:
        path = " ".join(f"{sx(p[0]):.1f},{sy(p[1]):.1f}" for p in front)
        out.append(f'<polyline points="{path}" fill="none" stroke="#000" stroke-dasharray="4 3"/>')
    for x, y, g, on_front, label in pts:
        outline = ' stroke="#000" stroke-width="1.5"' if on_front else ""
        out.append(_circle(sx(x), sy(y), 5 if on_front else 3.5, color[g], outline, label))
    for i, g in enumerate(groups):
        y = TOP + 10 + i * 16
        out += [_circle(W - RIGHT + 16, y, 4, color[g]), _text(W - RIGHT + 26, y + 4, g)]
    out.append(_text(W - RIGHT + 10, TOP + 14 + len(groups) * 16, "-- front (outlined)"))
    out.append("</svg>")
    return "\n".join(out)


def stacked_bars(rows: Sequence[tuple[str, dict[str, float]]], *, title: str, unit: str) -> str:
    """One horizontal bar per row label, stacked by part (e.g. window/domain), values >= 0."""
    parts = sorted({k for _, d in rows for k in d})
    color = {p: PALETTE[i % len(PALETTE)] for i, p in enumerate(parts)}
    bar_h, gap, left = 16, 8, 190
    height = TOP + len(rows) * (bar_h + gap) + 40 + 16 * len(parts)
    total_max = max((sum(d.values()) for _, d in rows), default=0.0) or 1.0
    width = W - left - 40
    out = [_svg(W, height), _text(W / 2, 18, title, "middle", ' font-size="13"')]
    for i, (label, d) in enumerate(rows):
        y = TOP + i * (bar_h + gap)
        out.append(_text(left - 6, y + 12, label[:32], "end"))
        x = float(left)
        for p in parts:
            v = d.get(p, 0.0)
            if v <= 0:
                continue
            w = v / total_max * width
            out.append(_rect(x, y, w, bar_h, color[p], tooltip=f"{p}: {v:.4g} {unit}"))
            x += w
        out.append(_text(x + 4, y + 12, f"{sum(d.values()):.4g} {unit}"))
    y = TOP + len(rows) * (bar_h + gap) + 16
    for j, p in enumerate(parts):
        out += [_rect(left, y + j * 16 - 9, 10, 10, color[p]), _text(left + 16, y + j * 16, p)]
    out.append("</svg>")
    return "\n".join(out)
