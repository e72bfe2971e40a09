"""Drawing primitives for the console's charts: scales, tick marks and a braille canvas.

Pure Python and independent of Textual, so they are unit-tested directly and cost little: the
live power chart redraws up to 4 times a second over SSH, and a braille cell packs 2x4 dots, so a
60-column chart has 120 horizontal points of resolution.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rich.style import Style
from rich.text import Text

BRAILLE_BASE = 0x2800
# Bit of each dot in a braille cell, indexed [x][y] (x 0..1 left to right, y 0..3 top to bottom).
_DOT_BITS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))


@dataclass(frozen=True)
class Scale:
    """Maps data values to [0, 1], linearly or logarithmically (log needs lo > 0)."""

    lo: float
    hi: float
    log: bool = False

    def __call__(self, value: float) -> float:
        if self.log:
            lo, hi, v = math.log10(self.lo), math.log10(self.hi), math.log10(max(value, self.lo))
        else:
            lo, hi, v = self.lo, self.hi, value
        return 0.5 if hi == lo else (v - lo) / (hi - lo)

    def ticks(self, count: int = 5) -> list[float]:
        return log_ticks(self.lo, self.hi) if self.log else nice_ticks(self.lo, self.hi, count)


def nice_step(span: float, count: int) -> float:
    """A round step (1, 2 or 5 times a power of ten) giving about `count` intervals over `span`."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / max(1, count)
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * power:
            return factor * power
    return 10 * power


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values inside [lo, hi]."""
    step = nice_step(hi - lo, count)
    first = math.ceil(lo / step - 1e-9) * step
    ticks: list[float] = []
    value = first
    while value <= hi + step * 1e-9 and len(ticks) < 50:
        ticks.append(round(value, 12))
        value += step
    return ticks


def log_ticks(lo: float, hi: float) -> list[float]:
    """Decades inside [lo, hi]; with fewer than three decades, also 2x and 5x."""
    if lo <= 0 or hi <= lo:
        return [lo]
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    factors = (1, 2, 5) if math.log10(hi / lo) < 3 else (1,)
    ticks = [round(f * 10.0**e, 12) for e in range(a, b + 1) for f in factors]
    return [t for t in ticks if lo * (1 - 1e-9) <= t <= hi * (1 + 1e-9)]


def padded_range(values: Iterable[float], log: bool, zero: bool = False) -> tuple[float, float]:
    """A data range with a little air; includes 0 when `zero` (power charts start at 0 W)."""
    vals = [v for v in values if math.isfinite(v) and (v > 0 or not log)]
    if not vals:
        return (1.0, 10.0) if log else (0.0, 1.0)
    lo, hi = min(vals), max(vals)
    if log:
        if hi / lo < 1.5:
            return lo / 1.5, hi * 1.5
        return lo / 1.15, hi * 1.15
    if zero:
        lo = min(0.0, lo)
    if hi == lo:
        return (lo - 1, hi + 1) if lo else (0.0, 1.0)
    pad = (hi - lo) * 0.06
    return (lo if zero and lo == 0 else lo - pad), hi + pad


def tick_label(value: float) -> str:
    """Short tick text: 0.001, 0.25, 12, 1.2k, 3M."""
    a = abs(value)
    if a == 0:
        return "0"
    if a >= 1e6:
        return f"{value / 1e6:.3g}M"
    if a >= 1e4:
        return f"{value / 1e3:.3g}k"
    if a >= 1:
        return f"{value:.4g}"
    return f"{value:.2g}"


class BrailleCanvas:
    """A grid of braille cells; each cell keeps its dots and the style of the last thing drawn in it.

    Text overlays (markers, labels) replace a cell's braille with a character.
    """

    def __init__(self, width: int, height: int) -> None:
        self.width = max(1, width)
        self.height = max(1, height)
        self._bits = [[0] * self.width for _ in range(self.height)]
        self._style: list[list[Style | None]] = [[None] * self.width for _ in range(self.height)]
        self._chars: list[list[str | None]] = [[None] * self.width for _ in range(self.height)]

    @property
    def dots_x(self) -> int:
        return self.width * 2

    @property
    def dots_y(self) -> int:
        return self.height * 4

    def dot(self, x: int, y: int, style: Style | None = None) -> None:
        """Set the dot at (x, y), y = 0 at the top."""
        if not (0 <= x < self.dots_x and 0 <= y < self.dots_y):
            return
        cx, cy = x // 2, y // 4
        self._bits[cy][cx] |= _DOT_BITS[x % 2][y % 4]
        if style is not None:
            self._style[cy][cx] = style

    def line(
        self, x0: int, y0: int, x1: int, y1: int, style: Style | None = None, dashed: bool = False
    ) -> None:
        """Bresenham's line; `dashed` skips every other pair of dots (for monochrome terminals)."""
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        err = dx + dy
        step = 0
        while True:
            if not dashed or (step // 2) % 2 == 0:
                self.dot(x0, y0, style)
            if x0 == x1 and y0 == y1:
                return
            step += 1
            e2 = 2 * err
            if e2 >= dy:
                err += dy
                x0 += sx
            if e2 <= dx:
                err += dx
                y0 += sy

    def polyline(
        self, points: Sequence[tuple[float, float]], style: Style | None = None, dashed: bool = False
    ) -> None:
        """Connect points given in [0, 1] x [0, 1] (y = 0 at the bottom)."""
        previous: tuple[int, int] | None = None
        for fx, fy in points:
            p = self.to_dots(fx, fy)
            if previous is None:
                self.dot(*p, style)
            else:
                self.line(*previous, *p, style=style, dashed=dashed)
            previous = p

    def to_dots(self, fx: float, fy: float) -> tuple[int, int]:
        x = round(min(1.0, max(0.0, fx)) * (self.dots_x - 1))
        y = round((1.0 - min(1.0, max(0.0, fy))) * (self.dots_y - 1))
        return x, y

    def to_cell(self, fx: float, fy: float) -> tuple[int, int]:
        x, y = self.to_dots(fx, fy)
        return x // 2, y // 4

    def put(self, cx: int, cy: int, char: str, style: Style | None = None) -> None:
        """Write a character over a cell (a scatter marker)."""
        if 0 <= cx < self.width and 0 <= cy < self.height:
            self._chars[cy][cx] = char
            self._style[cy][cx] = style

    def char_at(self, cx: int, cy: int) -> str | None:
        return self._chars[cy][cx]

    def rows(self) -> list[Text]:
        """One Text per row; runs of equally styled cells share a span."""
        out = []
        for cy in range(self.height):
            text = Text(no_wrap=True, overflow="crop")
            run_chars: list[str] = []
            run_style: Style | None = None
            for cx in range(self.width):
                char = self._chars[cy][cx]
                bits = self._bits[cy][cx]
                if char is None:
                    char = chr(BRAILLE_BASE + bits) if bits else " "
                style = self._style[cy][cx] if (bits or self._chars[cy][cx]) else None
                if style != run_style and run_chars:
                    text.append("".join(run_chars), run_style)
                    run_chars = []
                run_style = style
                run_chars.append(char)
            if run_chars:
                text.append("".join(run_chars), run_style)
            out.append(text)
        return out


def place_labels(width: int, positions: Sequence[tuple[float, str]]) -> str:
    """A line of `width` with each label centred at its fraction of the width, skipping overlaps."""
    line = [" "] * width
    last_end = -1
    for frac, label in positions:
        start = round(frac * (width - 1)) - len(label) // 2
        start = max(0, min(width - len(label), start))
        if start <= last_end:
            continue
        line[start : start + len(label)] = list(label)
        last_end = start + len(label)
    return "".join(line)
