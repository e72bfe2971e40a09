"""The screens' common base: typed access to the console's shared state."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.screen import Screen

if TYPE_CHECKING:
    from wattlab.app.app import WattlabApp


class LabScreen(Screen[None]):
    """A console screen. `self.lab` is the app with its store, catalog, probe and marked runs."""

    @property
    def lab(self) -> WattlabApp:
        return cast("WattlabApp", self.app)
