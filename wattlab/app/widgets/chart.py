"""TimeChart: power (or any value) over time, one braille line per series, with axes.

Screens hand it immutable data (`set_data`); it redraws only then, so a 4 Hz refresh costs one
render per changed snapshot. Long series are reduced to a min/max envelope per horizontal dot,
which keeps peaks visible and the cost bounded whatever the session's length.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.style import Style
from rich.text import Text
from textual.strip import Strip
from textual.widget import Widget

from wattlab.app.widgets.plot import BrailleCanvas, Scale, nice_ticks, padded_range, place_labels, tick_label

# Series colours, in order; chosen to stay distinct on dark and light themes.
PALETTE = ("#4fc3f7", "#ffb74d", "#81c784", "#e57373", "#ba68c8", "#fff176", "#90a4ae")


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[tuple[float, float]]  # (x, y), x ascending
    color: str = PALETTE[0]


@dataclass(frozen=True)
class ChartData:
    series: tuple[Series, ...] = ()
    x_range: tuple[float, float] | None = None  # None: the data's own range
    x_labels: tuple[tuple[float, str], ...] = ()  # (x, text); empty: numeric ticks
    vlines: tuple[float, ...] = ()  # x positions of vertical markers (a run's window edges)
    y_unit: str = "W"
    empty_text: str = "no samples yet"
    y_min_span: float = 1.0  # the y axis spans at least this much (a flat idle line stays flat)


def envelope(
    points: Sequence[tuple[float, float]], lo: float, hi: float, buckets: int
) -> list[tuple[float, float]]:
    """Points reduced to each bucket's min and max (in time order), when there are many more than buckets."""
    if len(points) <= buckets * 2 or hi <= lo:
        return [p for p in points if lo <= p[0] <= hi]
    width = (hi - lo) / buckets
    mins: dict[int, tuple[float, float]] = {}
    maxs: dict[int, tuple[float, float]] = {}
    for x, y in points:
        if not lo <= x <= hi:
            continue
        b = min(buckets - 1, int((x - lo) / width))
        if b not in mins or y < mins[b][1]:
            mins[b] = (x, y)
        if b not in maxs or y > maxs[b][1]:
            maxs[b] = (x, y)
    out: list[tuple[float, float]] = []
    for b in sorted(mins):
        pair = sorted({mins[b], maxs[b]})
        out.extend(pair)
    return out


class TimeChart(Widget):
    """A line chart of one or more series sharing a y axis that starts at 0."""

    DEFAULT_CSS = """
    TimeChart { height: 8; min-height: 4; }
    """

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._data = ChartData()
        self._strips: list[Strip] = []
        self._strips_key: tuple[Any, ...] | None = None
        self._version = 0

    def set_data(self, data: ChartData) -> None:
        if data != self._data:
            self._data = data
            self._version += 1
            self.refresh()

    @property
    def data(self) -> ChartData:
        return self._data

    def render_line(self, y: int) -> Strip:
        """Line API: the chart is drawn once per change of data or size, then served line by line
        (cheaper at 4 Hz than handing Textual a new renderable for every frame)."""
        width, height = self.size.width, self.size.height
        key = (width, height, self._version, bool(getattr(self.app, "no_color", False)))
        if key != self._strips_key:
            console = self.app.console
            strips = []
            for line in self.chart_text().split("\n", allow_blank=True)[:height]:
                line.end = ""
                strips.append(Strip(list(line.render(console)), line.cell_len).adjust_cell_length(width))
            self._strips, self._strips_key = strips, key
        if 0 <= y < len(self._strips):
            return self._strips[y].apply_style(self.rich_style)
        return Strip.blank(width, self.rich_style)

    def chart_text(self) -> Text:
        width, height = self.size.width, self.size.height
        data = self._data
        if width < 12 or height < 3:
            return Text("")
        points = [p for s in data.series for p in s.points]
        if not points:
            return self._empty(width, height, data.empty_text)
        x_lo, x_hi = data.x_range or (min(p[0] for p in points), max(p[0] for p in points))
        if x_hi <= x_lo:
            x_hi = x_lo + 1.0
        y_lo, y_hi = padded_range((p[1] for p in points), log=False, zero=True)
        y_hi = max(y_hi, y_lo + data.y_min_span)
        y_ticks = nice_ticks(y_lo, y_hi, max(1, (height - 1) // 2))
        y_hi = max(y_hi, y_ticks[-1]) if y_ticks else y_hi
        labels = [f"{tick_label(t)}" for t in y_ticks]
        gutter = max(len(lab) for lab in [*labels, data.y_unit]) + 1
        plot_w, plot_h = width - gutter - 1, height - 1
        canvas = BrailleCanvas(plot_w, plot_h)
        sx, sy = Scale(x_lo, x_hi), Scale(y_lo, y_hi)
        dim = Style(dim=True)
        for x in data.vlines:
            if x_lo <= x <= x_hi:
                cx = canvas.to_dots(sx(x), 0)[0]
                for y in range(0, canvas.dots_y, 2):
                    canvas.dot(cx, y, dim)
        mono = bool(getattr(self.app, "no_color", False))
        for index, series in enumerate(data.series):
            pts = envelope(series.points, x_lo, x_hi, canvas.dots_x)
            canvas.polyline(
                [(sx(x), sy(y)) for x, y in pts], Style(color=series.color), dashed=mono and index % 2 == 1
            )
        rows = canvas.rows()
        # Y labels on the rows nearest their tick values; the unit on the top row.
        gutter_text = [""] * plot_h
        for tick, label in zip(y_ticks, labels, strict=True):
            row = round((1 - sy(tick)) * (plot_h - 1))
            if 0 <= row < plot_h:
                gutter_text[row] = label
        if not gutter_text[0]:
            gutter_text[0] = data.y_unit
        out = Text(no_wrap=True, overflow="crop")
        for row, line in enumerate(rows):
            out.append(gutter_text[row].rjust(gutter), dim)
            out.append("┤" if gutter_text[row] else "│", dim)
            out.append_text(line)
            out.append("\n")
        positions = data.x_labels or tuple(
            (t, tick_label(t)) for t in nice_ticks(x_lo, x_hi, max(2, plot_w // 12))
        )
        axis = place_labels(plot_w, [(sx(x), text) for x, text in positions if x_lo <= x <= x_hi])
        out.append(" " * (gutter + 1) + axis, dim)
        return out

    @staticmethod
    def _empty(width: int, height: int, message: str) -> Text:
        lines = [""] * height
        lines[height // 2] = message.center(width)
        return Text("\n".join(lines), style="dim", no_wrap=True, overflow="crop")
