"""How the console writes numbers: short, with units, and with the method of every energy figure.

Every screen formats through these helpers so a figure reads the same everywhere, a missing value
is always an em dash (never a silent zero), and an estimated energy is never shown as measured.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from rich.markup import escape as esc  # text from data or users, shown inside markup

from wattlab.sessions import events as _events  # the one number formatter, shared with the CLI

DASH = "—"

# How an energy figure was obtained, as a short tag and the style it is shown in.
METHOD_STYLE = {"counter": "green", "integrated": "cyan", "estimated": "bold yellow"}
METHOD_HELP = {
    "counter": "difference of a hardware energy counter",
    "integrated": "trapezoid integral of measured power",
    "estimated": "a model (CPU utilization x TDP), not a measurement",
}


def num(value: Any, digits: int = 4) -> str:
    """A number with `digits` significant digits; thousands separators for big ones."""
    if value is None:
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(x) or math.isinf(x):
        return DASH
    if abs(x) >= 10**digits:
        return f"{x:,.0f}"
    return _events.number(x, digits)  # never an exponent: 0.00012, not 1.20e-04


def unit(value: Any, suffix: str, digits: int = 4) -> str:
    text = num(value, digits)
    return text if text == DASH or not suffix else f"{text} {suffix}"


def seconds(value: float | None) -> str:
    """A latency: ms below one second, s above (0.749 ms, 629 ms, 8.39 s); never an exponent."""
    if value is None:
        return DASH
    return _events.seconds(value)


def duration(value: float | None) -> str:
    """An elapsed time or ETA: 45s, 3m 05s, 2h 10m."""
    if value is None or math.isnan(value):
        return DASH
    total = round(value)
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def energy(joules: float | None) -> str:
    """J below 10 kJ, kJ below 10 MJ, then MJ; Wh is shown beside where it helps (see `energy_wh`)."""
    if joules is None:
        return DASH
    a = abs(joules)
    if a < 10_000:
        return f"{_events.number(joules, 4)} J"
    if a < 10_000_000:
        return f"{_events.number(joules / 1000, 4)} kJ"
    return f"{_events.number(joules / 1e6, 4)} MJ"


def energy_wh(joules: float | None) -> str:
    if joules is None:
        return DASH
    wh = joules / 3600.0
    if abs(wh) < 0.9995:  # 999.6 mWh rounds to 1 Wh, not "1,000 mWh"
        return f"{_events.number(wh * 1000, 3)} mWh"
    return f"{_events.number(wh, 4)} Wh"


def grams(value: float | None) -> str:
    if value is None:
        return DASH
    if abs(value) < 0.9995:
        return f"{_events.number(value * 1000, 3)} mgCO2e"
    return f"{_events.number(value, 4)} gCO2e"


def method_tag(method: str | None) -> str:
    """The method as Rich markup: `estimated` stands out, a missing method says so."""
    if not method:
        return "[dim]method unknown[/]"
    style = METHOD_STYLE.get(method, "dim")
    return f"[{style}]{method}[/]"


def timestamp(value: Any) -> str:
    """A stored timestamp (UTC) as `YYYY-MM-DD HH:MM`."""
    if value is None:
        return DASH
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    text = str(value)
    return text[:16].replace("T", " ")


def short_model(name: str | None, width: int = 22) -> str:
    if not name:
        return DASH
    return name if len(name) <= width else name[: width - 1] + "…"


def percent_delta(value: float | None) -> str:
    if value is None:
        return ""
    sign = "+" if value > 0 else ""
    return f"{sign}{value:.1f}%"


def error_text(error: Any, default: str = "failed", fix_sep: str = " — fix: ") -> str:
    """A WattlabError as markup: the message in red, then its fix (both escaped)."""
    if error is None:
        return f"[red]{default}[/]"
    fix = getattr(error, "fix", None)
    return f"[red]{esc(error.message)}[/]" + (f"{fix_sep}{esc(fix)}" if fix else "")


def cell_width(text: str) -> int:
    """The cells a table cell takes on screen: its markup (`[red]`, `\\[`) takes none."""
    from rich.cells import cell_len
    from rich.text import Text

    return Text.from_markup(text).cell_len if "[" in text else cell_len(text)


def set_columns(table: Any, columns: list[tuple[str, str]], rows: list[list[str]]) -> None:
    """Replace `table`'s columns by the (key, header) `columns`, each as wide as its widest cell.

    Fixed from the content up front: a DataTable sizes auto-width columns on a later idle, and a
    frame drawn before that (a loaded box, or a layout refresh elsewhere on the screen) showed cells
    cut to the header's width: run and session ids included."""
    table.clear(columns=True)
    for i, (key, header) in enumerate(columns):
        width = max([cell_width(header)] + [cell_width(row[i]) for row in rows])
        table.add_column(header, key=key, width=width)


def fit_table(
    columns: list[tuple[str, str]],
    rows: list[list[str]],
    drop_order: tuple[str, ...],
    available: int,
) -> list[int]:
    """Indexes of the (key, header) `columns` a DataTable shows in `available` cells: columns in
    `drop_order` are left out, first named first, until the rest fit (see wattlab.columns)."""
    from wattlab.columns import fit_columns

    widths = {
        key: max([cell_width(header)] + [cell_width(row[i]) for row in rows])
        for i, (key, header) in enumerate(columns)
    }
    # A DataTable pads each cell by one on both sides and may need a vertical scrollbar (2 cells).
    keep = set(fit_columns(widths, drop_order, available, per_column=2, frame=2))
    return [i for i, (key, _) in enumerate(columns) if key in keep]
