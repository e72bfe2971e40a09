"""Compare: the runs marked in History side by side, each figure with its % change against the first.

A change is green when it is an improvement (less energy, latency or carbon; more throughput,
tokens per joule or quality), red when it is worse; energy figures carry their method.
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import DataTable, Footer, Static

from wattlab.analysis.queries import short_ids, varying_labels
from wattlab.app import fmt
from wattlab.app.screens.base import LabScreen
from wattlab.app.widgets.nav import NavBar
from wattlab.errors import WattlabError

HIGHER_IS_BETTER = {
    "throughput_tok_s",
    "total_tok_s",
    "requests_per_s",
    "tokens_per_j",
    "quality",
    "green_index",
    "energy_coverage",
}
NEUTRAL = {
    "duration_s",
    "tokens_in",
    "tokens_out",
    "carbon_g_per_kwh",
    "pue",
    "peak_mem_mib",
    "util_mean_pct",
}
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def delta_markup(figure: str, delta: float | None) -> str:
    if delta is None or abs(delta) < 0.05:
        return ""
    text = fmt.percent_delta(delta)
    if figure in NEUTRAL:
        return f"[dim]{text}[/]"
    better = (delta > 0) == (figure in HIGHER_IS_BETTER)
    return f"[green]{text}[/]" if better else f"[red]{text}[/]"


def compare_cells(result: dict[str, Any]) -> list[list[str]]:
    """Rows of the table: figure label, then each run's value (with method and % delta)."""
    from wattlab.analysis.queries import FIGURES

    labels = {c: (label, unit, method) for c, label, unit, method in FIGURES}
    methods = result.get("methods", {})
    rows = []
    for row in result["rows"]:
        figure = row["figure"]
        if all(v is None for v in row["values"]):
            continue
        label, unit, method_col = labels.get(figure, (figure, "", None))
        cells = [label + (f" ({unit})" if unit else "")]
        for i, (value, delta) in enumerate(zip(row["values"], row["delta_pct"], strict=True)):
            text = fmt.num(value, 4)
            method = (methods.get(method_col) or [None] * len(row["values"]))[i] if method_col else None
            if method in ("counter", "integrated", "estimated"):
                text += f" {fmt.method_tag(method)}"
            elif method in ("service", "client"):  # the headline TTFT's basis (ttft_basis)
                text += f" [dim]{method}[/]"
            if i > 0:
                text += f" {delta_markup(figure, delta)}"
            cells.append(text.strip())
        rows.append(cells)
    return rows


class CompareScreen(LabScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("b", "baseline", "Next baseline"),
        Binding("x", "drop", "Drop last"),
        Binding("c", "clear", "Clear marks"),
        Binding("r", "reload", "Reload"),
    ]

    class Loaded(Message):
        def __init__(
            self, run_ids: list[str], result: dict[str, Any] | None, error: WattlabError | None
        ) -> None:
            super().__init__()
            self.run_ids, self.result, self.error = run_ids, result, error

    def __init__(self) -> None:
        super().__init__()
        self._shown: tuple[tuple[str, ...], int] | None = None
        self._run_ids: list[str] = []

    def compose(self) -> ComposeResult:
        yield NavBar("compare")
        yield Static("", id="compare-head")
        yield DataTable(id="compare-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.reload()

    def on_screen_resume(self) -> None:
        self.reload()

    def on_data_changed(self, _: Any) -> None:
        self.reload(force=True)

    def reload(self, force: bool = False) -> None:
        marked = list(self.lab.marked)
        state = (tuple(marked), self.lab.data_version)
        if state == self._shown and not force:
            return
        self._shown = state
        head = self.query_one("#compare-head", Static)
        table = self.query_one("#compare-table", DataTable)
        if len(marked) < 2:
            table.clear(columns=True)
            head.update(
                f"{len(marked)} run(s) marked. Mark at least two in History (3) with space, "
                "then come back here (4).\n"
                "[dim]The first marked run is the baseline; b makes the next one the baseline.[/]"
            )
            return
        head.update("[dim]loading…[/]")
        self._load(marked)

    @work(thread=True, exclusive=True, exit_on_error=False, group="compare-load")
    def _load(self, run_ids: list[str]) -> None:
        from wattlab.app.data import compare

        try:
            self.post_message(self.Loaded(run_ids, compare(self.lab.store, run_ids), None))
        except WattlabError as exc:
            self.post_message(self.Loaded(run_ids, None, exc))

    def on_compare_screen_loaded(self, message: Loaded) -> None:
        head = self.query_one("#compare-head", Static)
        table = self.query_one("#compare-table", DataTable)
        if message.error is not None or message.result is None:
            err = message.error
            head.update(fmt.error_text(err, "nothing to compare"))
            return
        runs = message.result["runs"]
        self._run_ids = [r["run_id"] for r in runs]
        legend = [
            f"[b]{LETTERS[i % 26]}[/] {r['run_id']} · "
            + fmt.esc(f"{r.get('engine')} {r.get('model')} {r.get('quant') or ''} ")
            + fmt.esc(f"bs{r.get('batch_size')} {r.get('mode')}")
            + (" [dim](baseline)[/]" if i == 0 else "")
            for i, r in enumerate(runs)
        ]
        head.update("\n".join(legend) + "\n[dim]% change against A; green better, red worse[/]")
        table.clear(columns=True)
        table.add_column("figure", key="figure")
        # Headers tell runs apart: the letter, the shortest unique id, the settings that differ
        # (shortened: the legend above has them whole, and a header must not widen its column).
        short = short_ids(self._run_ids)
        for i, (r, label) in enumerate(zip(runs, varying_labels(runs), strict=True)):
            header = f"{LETTERS[i % 26]} {short[r['run_id']]} {fmt.short_model(label, 16) if label else ''}"
            table.add_column(fmt.esc(header.strip()), key=r["run_id"])
        for cells in compare_cells(message.result):
            table.add_row(*cells)

    def action_baseline(self) -> None:
        marked = self.lab.marked
        if len(marked) >= 2:
            marked.append(marked.pop(0))
            self.reload()

    def action_drop(self) -> None:
        marked = self.lab.marked
        if marked:
            marked.pop()
            self.reload()

    def action_clear(self) -> None:
        self.lab.marked.clear()
        self.reload()

    def action_reload(self) -> None:
        self.reload(force=True)
