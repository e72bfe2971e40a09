"""ScatterPlot: runs on two objectives, one letter per engine, the Pareto front drawn through.

Each engine gets a letter (l = llamacpp, t = transformers, ...) and a colour; runs on the front
are capitals in bold, joined by a line. Letters keep the plot readable in a monochrome terminal
(NO_COLOR) and over any SSH client. Many runs in one cell show the front run first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rich.style import Style
from rich.text import Text
from textual.widget import Widget

from wattlab.app.widgets.chart import PALETTE
from wattlab.app.widgets.plot import BrailleCanvas, Scale, padded_range, place_labels, tick_label


@dataclass(frozen=True)
class ScatterPoint:
    x: float
    y: float
    group: str  # the engine
    front: bool = False
    muted: bool = False  # misses the Pareto screen's SLO filter: drawn grey, under the others


@dataclass(frozen=True)
class ScatterData:
    points: tuple[ScatterPoint, ...] = ()
    x_label: str = ""
    y_label: str = ""
    log_x: bool = False
    log_y: bool = False
    groups: tuple[str, ...] = ()  # legend order; fixes each group's letter and colour
    empty_text: str = "no runs with both figures"


def group_markers(groups: Sequence[str]) -> dict[str, str]:
    """A distinct lower-case letter per group: its initial, else its next unused letter."""
    used: set[str] = set()
    out: dict[str, str] = {}
    for group in groups:
        for ch in [c for c in group.lower() if c.isalpha()] + list("abcdefghijkmnpqrsuwxyz"):
            if ch not in used:
                used.add(ch)
                out[group] = ch
                break
        else:
            out[group] = "?"
    return out


def group_colors(groups: Sequence[str]) -> dict[str, str]:
    return {g: PALETTE[i % len(PALETTE)] for i, g in enumerate(groups)}


class ScatterPlot(Widget):
    DEFAULT_CSS = """
    ScatterPlot { height: 1fr; min-height: 6; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._data = ScatterData()

    def set_data(self, data: ScatterData) -> None:
        if data != self._data:
            self._data = data
            self.refresh()

    def render(self) -> Text:
        width, height = self.size.width, self.size.height
        d = self._data
        if width < 16 or height < 4:
            return Text("")
        pts = [p for p in d.points if _plottable(p.x, d.log_x) and _plottable(p.y, d.log_y)]
        if not pts:
            lines = [""] * height
            lines[height // 2] = d.empty_text.center(width)
            return Text("\n".join(lines), style="dim")
        x_lo, x_hi = padded_range((p.x for p in pts), d.log_x)
        y_lo, y_hi = padded_range((p.y for p in pts), d.log_y)
        sx, sy = Scale(x_lo, x_hi, d.log_x), Scale(y_lo, y_hi, d.log_y)
        y_ticks = sy.ticks(max(2, (height - 2) // 2))
        y_text = [tick_label(t) for t in y_ticks]
        gutter = max([len(t) for t in y_text] + [1]) + 1
        plot_w, plot_h = width - gutter - 1, height - 2  # one line for x ticks, one for the x label
        canvas = BrailleCanvas(plot_w, plot_h)
        groups = d.groups or tuple(sorted({p.group for p in pts}))
        letters, colors = group_markers(groups), group_colors(groups)
        front = sorted((p for p in pts if p.front), key=lambda p: (p.x, p.y))
        # The front as a staircase line under the markers: what no other run beats.
        if len(front) > 1:
            canvas.polyline([(sx(p.x), sy(p.y)) for p in front], Style(dim=True))
        # Dominated runs first, so a front run wins its cell; muted ones lose theirs (first dominated
        # run placed keeps a cell, last front run placed takes it).
        for p in sorted(pts, key=lambda p: (p.front, p.muted != p.front)):
            cx, cy = canvas.to_cell(sx(p.x), sy(p.y))
            if not p.front and canvas.char_at(cx, cy) is not None:
                continue
            letter = letters.get(p.group, "?")
            style = Style(color=colors.get(p.group), bold=p.front)
            if p.muted:
                style = Style(color="grey50", dim=True)
            canvas.put(cx, cy, letter.upper() if p.front else letter, style)
        dim = Style(dim=True)
        rows = canvas.rows()
        gutter_rows = [""] * plot_h
        for tick, text in zip(y_ticks, y_text, strict=True):
            row = round((1 - sy(tick)) * (plot_h - 1))
            if 0 <= row < plot_h and not gutter_rows[row]:
                gutter_rows[row] = text
        out = Text(no_wrap=True, overflow="crop")
        for row, line in enumerate(rows):
            out.append(gutter_rows[row].rjust(gutter), dim)
            out.append("┤" if gutter_rows[row] else "│", dim)
            out.append_text(line)
            out.append("\n")
        x_ticks = sx.ticks(max(2, plot_w // 12))
        out.append(
            " " * (gutter + 1) + place_labels(plot_w, [(sx(t), tick_label(t)) for t in x_ticks]) + "\n", dim
        )
        x_title = f"{d.x_label}{' (log)' if d.log_x else ''} →"
        y_title = f"↑ {d.y_label}{' (log)' if d.log_y else ''}"
        footer = f"{y_title}   {x_title}"
        out.append(footer.rjust(width)[:width], Style(italic=True, dim=True))
        return out


def _plottable(value: float | None, log: bool) -> bool:
    return value is not None and math.isfinite(value) and (value > 0 or not log)
