"""The one table of the console's screens: key, mode name, label, help and class.

The app's modes and number keys, the command palette and the nav bar are all derived from it, so a
new screen is one line here (plus its module). Classes are named as "module:Class" and imported when
the mode is first shown, so importing this table (the nav bar does) imports no screen.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ScreenEntry:
    key: str  # the number key that switches to it
    mode: str  # Textual mode name
    label: str  # nav bar and palette
    help: str  # palette help line
    screen: str  # "module:Class"

    def factory(self) -> Callable[[], Any]:
        """A zero-argument callable that builds the screen (what Textual's MODES accepts)."""

        def build() -> Any:
            module, _, cls = self.screen.partition(":")
            return getattr(importlib.import_module(module), cls)()

        return build


SCREENS: tuple[ScreenEntry, ...] = (
    ScreenEntry("1", "live", "Live", "power, energy and progress of the running sweep",
                "wattlab.app.screens.live:LiveScreen"),
    ScreenEntry("2", "launch", "Launch", "choose model, variant, engine and workload; start a sweep",
                "wattlab.app.screens.launch:LaunchScreen"),
    ScreenEntry("3", "history", "History", "sessions and runs; filter, sort, open a run's detail",
                "wattlab.app.screens.history:HistoryScreen"),
    ScreenEntry("4", "compare", "Compare", "marked runs side by side with % deltas",
                "wattlab.app.screens.compare:CompareScreen"),
    ScreenEntry("5", "pareto", "Pareto", "two objectives, the non-dominated front",
                "wattlab.app.screens.pareto:ParetoScreen"),
    ScreenEntry("6", "sql", "SQL", "DuckDB query box over the session database",
                "wattlab.app.screens.sql:SqlScreen"),
)  # fmt: skip
