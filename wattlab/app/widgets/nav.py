"""The one-line bar at the top of every screen: the screens with their keys, clickable."""

from __future__ import annotations

from textual.widgets import Static

from wattlab.app.modes import SCREENS


def nav_markup(current: str, status: str = "") -> str:
    parts = ["[b]⚡ wattlab[/b]"]
    for entry in SCREENS:
        text = f"{entry.key} {entry.label}"
        if entry.mode == current:
            parts.append(f"[reverse b] {text} [/]")
        else:
            parts.append(f"[@click=app.switch_mode('{entry.mode}')] {text} [/]")
    line = " ".join(parts)
    return line + (f"  [dim]{status}[/]" if status else "")


class NavBar(Static):
    """Screens by number; the current one reversed. Mouse clicks switch too."""

    DEFAULT_CSS = """
    NavBar { height: 1; width: 1fr; background: $panel; }
    """

    def __init__(self, current: str) -> None:
        super().__init__(nav_markup(current), markup=True)
        self.current = current
