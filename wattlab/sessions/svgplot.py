"""Small dependency-free SVG charts for reports: a scatter (log axes, groups, a highlighted front)
and stacked horizontal bars. Plain SVG 1.1, readable in any browser and embeddable in Markdown."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
W, H = 640, 420
LEFT, RIGHT, TOP, BOTTOM = 70, 150, 30, 55


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
    return [start + i * step for i in range(int((hi - start) / step) + 2) if start + i * step <= hi * 1.0001]


def _fmt(v: float) -> str:
    return f"{v:.3g}"


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
        return f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="60"><text x="10" y="30">{escape(title)}: no data</text></svg>'
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]

    def span(vs: list[float], log: bool) -> tuple[float, float]:
        lo, hi = min(vs), max(vs)
        if log:
            return lo / 1.5, hi * 1.5
        pad = (hi - lo) * 0.08 or abs(hi) * 0.1 or 1.0
        return lo - pad, hi + pad

    (x0, x1), (y0, y1) = span(xs, log_x), span(ys, log_y)

    def sx(v: float) -> float:
        f = (math.log10(v) - math.log10(x0)) / (math.log10(x1) - math.log10(x0)) if log_x else (v - x0) / (x1 - x0)
        return LEFT + f * (W - LEFT - RIGHT)

    def sy(v: float) -> float:
        f = (math.log10(v) - math.log10(y0)) / (math.log10(y1) - math.log10(y0)) if log_y else (v - y0) / (y1 - y0)
        return H - BOTTOM - f * (H - TOP - BOTTOM)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
           f'<text x="{W / 2}" y="18" text-anchor="middle" font-size="13">{escape(title)}</text>',
           f'<rect x="{LEFT}" y="{TOP}" width="{W - LEFT - RIGHT}" height="{H - TOP - BOTTOM}" fill="none" stroke="#999"/>']
    for t in _ticks(x0, x1, log_x):
        if x0 <= t <= x1:
            out.append(f'<line x1="{sx(t):.1f}" y1="{H - BOTTOM}" x2="{sx(t):.1f}" y2="{H - BOTTOM + 4}" stroke="#555"/>'
                       f'<text x="{sx(t):.1f}" y="{H - BOTTOM + 16}" text-anchor="middle">{_fmt(t)}</text>')
    for t in _ticks(y0, y1, log_y):
        if y0 <= t <= y1:
            out.append(f'<line x1="{LEFT - 4}" y1="{sy(t):.1f}" x2="{LEFT}" y2="{sy(t):.1f}" stroke="#555"/>'
                       f'<text x="{LEFT - 6}" y="{sy(t) + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
    out.append(f'<text x="{(LEFT + W - RIGHT) / 2}" y="{H - 12}" text-anchor="middle">{escape(x_label)}{" (log)" if log_x else ""}</text>')
    out.append(f'<text transform="translate(16 {(TOP + H - BOTTOM) / 2}) rotate(-90)" text-anchor="middle">'
               f'{escape(y_label)}{" (log)" if log_y else ""}</text>')
    groups = sorted({p[2] for p in pts})
    color = {g: PALETTE[i % len(PALETTE)] for i, g in enumerate(groups)}
    front = sorted((p for p in pts if p[3]), key=lambda p: p[0])
    if len(front) > 1:
        path = " ".join(f"{sx(p[0]):.1f},{sy(p[1]):.1f}" for p in front)
        out.append(f'<polyline points="{path}" fill="none" stroke="#000" stroke-dasharray="4 3"/>')
    for x, y, g, on_front, label in pts:
        r = 5 if on_front else 3.5
        stroke = ' stroke="#000" stroke-width="1.5"' if on_front else ""
        out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="{r}" fill="{color[g]}"{stroke}><title>{escape(label)}</title></circle>')
    for i, g in enumerate(groups):
        y = TOP + 10 + i * 16
        out.append(f'<circle cx="{W - RIGHT + 16}" cy="{y}" r="4" fill="{color[g]}"/><text x="{W - RIGHT + 26}" y="{y + 4}">{escape(g)}</text>')
    out.append(f'<text x="{W - RIGHT + 10}" y="{TOP + 14 + len(groups) * 16}">— front (outlined)</text>')
    out.append("</svg>")
    return "\n".join(out)


def stacked_bars(rows: Sequence[tuple[str, dict[str, float]]], *, title: str, unit: str) -> str:
    """One horizontal bar per row label, stacked by part (e.g. window/domain), values >= 0."""
    parts = sorted({k for _, d in rows for k in d})
    color = {p: PALETTE[i % len(PALETTE)] for i, p in enumerate(parts)}
    bar_h, gap = 16, 8
    height = TOP + len(rows) * (bar_h + gap) + 40 + 16 * len(parts)
    total_max = max((sum(d.values()) for _, d in rows), default=0.0) or 1.0
    left = 190
    width = W - left - 40
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" font-family="sans-serif" font-size="11">',
           f'<text x="{W / 2}" y="18" text-anchor="middle" font-size="13">{escape(title)}</text>']
    for i, (label, d) in enumerate(rows):
        y = TOP + i * (bar_h + gap)
        out.append(f'<text x="{left - 6}" y="{y + 12}" text-anchor="end">{escape(label[:32])}</text>')
        x = float(left)
        for p in parts:
            v = d.get(p, 0.0)
            if v <= 0:
                continue
            w = v / total_max * width
            out.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{color[p]}"><title>{escape(p)}: {v:.4g} {unit}</title></rect>')
            x += w
        out.append(f'<text x="{x + 4:.1f}" y="{y + 12}">{sum(d.values()):.4g} {escape(unit)}</text>')
    y = TOP + len(rows) * (bar_h + gap) + 16
    for j, p in enumerate(parts):
        out.append(f'<rect x="{left}" y="{y + j * 16 - 9}" width="10" height="10" fill="{color[p]}"/><text x="{left + 16}" y="{y + j * 16}">{escape(p)}</text>')
    out.append("</svg>")
    return "\n".join(out)
