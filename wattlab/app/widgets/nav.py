"""The one-line bar at the top of every screen: the screens with their keys, clickable."""

from __future__ import annotations

from textual.widgets import Static

SCREENS: tuple[tuple[str, str, str], ...] = (
    ("live", "1", "Live"),
    ("launch", "2", "Launch"),
    ("history", "3", "History"),
    ("compare", "4", "Compare"),
    ("pareto", "5", "Pareto"),
    ("sql", "6", "SQL"),
)


def nav_markup(current: str, status: str = "") -> str:
    parts = ["[b]⚡ wattlab[/b]"]
    for mode, key, label in SCREENS:
        text = f"{key} {label}"
        if mode == current:
            parts.append(f"[reverse b] {text} [/]")
        else:
            parts.append(f"[@click=app.switch_mode('{mode}')] {text} [/]")
    line = " ".join(parts)
    return line + (f"  [dim]{status}[/]" if status else "")


class NavBar(Static):
    """Screens by number (1-6); the current one reversed. Mouse clicks switch too."""

    DEFAULT_CSS = """
    NavBar { height: 1; width: 1fr; background: $panel; }
    """

    def __init__(self, current: str) -> None:
        super().__init__(nav_markup(current), markup=True)
        self.current = current
