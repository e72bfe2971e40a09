"""Small modal dialogs: confirm, ask for a file path, pick a session to attach to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.markup import escape as esc  # session names are user text, not markup
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Static
from textual.widgets.option_list import Option


class ConfirmScreen(ModalScreen[bool]):
    """Yes/no. Returns True on yes."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,n", "dismiss(False)", "No"),
        Binding("y", "dismiss(True)", "Yes"),
    ]

    def __init__(self, question: str, yes: str = "Yes", no: str = "No") -> None:
        super().__init__()
        self.question, self.yes, self.no = question, yes, no

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.question, classes="dialog-text")
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.yes} (y)", variant="error", id="yes", compact=True)
                yield Button(f"{self.no} (n)", id="no", compact=True)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class PathScreen(ModalScreen[str | None]):
    """Ask for a file path; `check` may return an error to show inline (then the dialog stays)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, title: str, default: str, hint: str = "") -> None:
        super().__init__()
        self.title_text, self.default, self.hint = title, default, hint

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title")
            yield Input(self.default, id="path", compact=True)
            yield Static(self.hint, classes="dialog-hint")
            yield Static("", id="path-error", classes="error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("OK (enter)", variant="primary", id="ok", compact=True)
                yield Button("Cancel (esc)", id="cancel", compact=True)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._finish(event.value)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ok":
            self._finish(self.query_one("#path", Input).value)
        else:
            self.dismiss(None)

    def _finish(self, value: str) -> None:
        if not value.strip():
            self.show_error("type a file path")
            return
        self.dismiss(value.strip())

    def show_error(self, text: str) -> None:
        self.query_one("#path-error", Static).update(text)


@dataclass(frozen=True)
class SessionEntry:
    session_id: str
    label: str
    alive: bool


class AttachScreen(ModalScreen[str | None]):
    """Pick a session (live ones first) to follow in Live."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, entries: list[SessionEntry]) -> None:
        super().__init__()
        self.entries = entries

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog dialog-wide"):
            yield Label(
                "Attach to a session (its whole timeline is replayed from the spool)", classes="dialog-title"
            )
            if not self.entries:
                yield Static("No session spools in the data dir yet. Launch a sweep first (2).")
            options = [
                Option(
                    f"{'● live ' if e.alive else '  ended'}  {e.session_id}  {esc(e.label)}", id=e.session_id
                )
                for e in self.entries
            ]
            yield OptionList(*options, id="attach-list")
            yield Static("enter: attach   esc: cancel", classes="dialog-hint")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)
