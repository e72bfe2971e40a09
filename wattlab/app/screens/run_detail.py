"""A run's detail: its settings, power over time, every figure with how it was obtained, and its
energy per window and domain (the run_energy rows)."""

from __future__ import annotations

from typing import Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Footer, Static

from wattlab.app import fmt
from wattlab.app.screens.base import LabScreen
from wattlab.app.widgets.chart import PALETTE, ChartData, Series, TimeChart
from wattlab.app.widgets.nav import NavBar
from wattlab.errors import WattlabError
from wattlab.sessions.figures import NET_COLUMNS, figure_method, net_notes, net_row_notes

NS = 1_000_000_000

# How figures without a method column are obtained (the definitions in wattlab.sessions.figures).
HOW = {
    "duration_s": "run_start → run_end marks, system-wide monotonic clock",
    "load_s": "load_start → load_end marks",
    "tokens_in": "the model's tokenizer, summed over requests",
    "tokens_out": "the model's tokenizer, summed over requests",
    "throughput_tok_s": "output tokens / measured window",
    "total_tok_s": "(input + output tokens) / measured window",
    "requests_per_s": "finished requests / measured window",
    "ttft": "headline TTFT: service (from scheduled) offline, client (from arrival) online",
    "ttft_service": "first token − scheduled (the engine first works on it), per request; percentile",
    "ttft_client": "first token − arrival (queueing included), per request; percentile",
    "queue": "scheduled − arrival, per request; percentile",
    "tpot": "(E2E − TTFT) / (output tokens − 1), per request; percentile",
    "itl": "gaps between successive token arrivals; percentile",
    "e2e": "request end − arrival, per request; percentile",
    "energy_coverage": "share of the window covered by meter readings",
    "peak_power_w": "highest summed power reading of the run's domains in the window",
    "util_mean_pct": "mean utilization reading of the run's devices in the window",
    "peak_mem_mib": "peak memory reported by the engine",
    "pue": "configured for the session",
    "green_index": "composite of quality, J/token and latency (wattlab report defines it)",
}


def how_obtained(column: str, method_column: str | None, run: dict[str, Any]) -> str:
    # A net figure from a baseline taken on a busy box says so next to its method.
    notes = net_notes(column, run.get(column), run)
    flags = "".join(f" [yellow]{n}[/]" for n in notes if n != "below idle")
    if column == "peak_mem_mib" and run.get("peak_mem_kind"):  # older runs: the engine's own figure
        from wattlab.sessions.peakmem import describe

        return f"[dim]{fmt.esc(describe(run.get('peak_mem_kind')))}[/]"
    if method_column:
        method = run.get(method_column)
        if method_column.endswith("energy_method"):
            return f"{fmt.method_tag(method)} [dim]{fmt.METHOD_HELP.get(str(method), '')}[/]{flags}"
        if method_column == "carbon_source":
            return f"[dim]{fmt.esc(str(method or 'source unknown'))}[/]"
        if method_column == "quality_metric":
            return f"[dim]task metric: {fmt.esc(str(method or 'unknown'))}[/]"
    if method_column == "ttft_basis":
        return f"[dim]{fmt.esc(figure_method(column, method_column, run))}[/]"
    key = column if column in HOW else column.split("_")[0]
    if column.startswith("ttft_"):  # ttft_service_p50_s -> ttft_service
        key = column.rsplit("_", 2)[0]
    # Figures computed from energy or power readings carry the method of those (peak power on the
    # estimate meter is estimated, not measured).
    derived = figure_method(column, method_column, run)
    tag = f"{fmt.method_tag(derived)} " if derived in fmt.METHOD_STYLE else ""
    return f"{tag}[dim]{HOW.get(key, '')}[/]"


def engine_options_of(run: dict[str, Any]) -> str:
    """The engine options the run was started with (its stored spec), "k=v k=v"; internal ones left out."""
    spec = run.get("spec_json")
    options = spec.get("options") if isinstance(spec, dict) else None
    if not isinstance(options, dict):
        return ""
    hidden = {"tokenizer", "derive_from"}
    return " ".join(f"{k}={_option_text(v)}" for k, v in options.items() if k not in hidden)


def _option_text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def figure_rows(run: dict[str, Any]) -> tuple[list[tuple[str, str, str]], list[str]]:
    """(label, value, how) for each figure the run has, and the labels of those it lacks."""
    from wattlab.analysis.queries import FIGURES

    rows, missing = [], []
    for column, label, unit, method_column in FIGURES:
        value = run.get(column)
        if value is None:
            missing.append(label)
            continue
        text = fmt.seconds(value) if unit == "s" and column != "duration_s" else fmt.unit(value, unit)
        if isinstance(value, int | float) and value < 0 and column in NET_COLUMNS:
            text += " [yellow]below idle[/]"  # shown as measured, never clamped to zero
        rows.append((label, text, how_obtained(column, method_column, run)))
    return rows, missing


class RunDetailScreen(LabScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,backspace", "app.pop_screen", "Back"),
        Binding("space", "mark", "Mark for compare"),
    ]

    class Loaded(Message):
        def __init__(self, detail: dict[str, Any] | None, error: WattlabError | None) -> None:
            super().__init__()
            self.detail, self.error = detail, error

    def __init__(self, run_id: str, origin: str = "history") -> None:
        super().__init__()
        self.run_id = run_id
        self.origin = origin  # the screen it was opened from, highlighted in the bar

    def compose(self) -> ComposeResult:
        yield NavBar(self.origin)
        with VerticalScroll(id="detail-body"):
            yield Static(f"run [b]{self.run_id}[/] · loading…", id="detail-head")
            yield Static("", id="detail-legend")
            yield TimeChart(id="detail-chart")
            yield Static("[b]Figures[/] and how each was obtained", classes="section-title")
            yield DataTable(id="detail-figures", cursor_type="row", zebra_stripes=True)
            yield Static("", id="detail-missing")
            yield Static("[b]Energy[/] by window and domain", classes="section-title")
            yield DataTable(id="detail-energy", cursor_type="row", zebra_stripes=True)
            yield Static("", id="detail-extra")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#detail-figures", DataTable).add_columns("figure", "value", "how it was obtained")
        self.query_one("#detail-energy", DataTable).add_columns(
            "window", "domain", "energy", "net", "method", "coverage", "mean W", "peak W", "idle W", "flags"
        )
        self._load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="detail-load")
    def _load(self) -> None:
        from wattlab.app.data import run_detail

        try:
            self.post_message(self.Loaded(run_detail(self.lab.store, self.run_id), None))
        except WattlabError as exc:
            self.post_message(self.Loaded(None, exc))

    def on_run_detail_screen_loaded(self, message: Loaded) -> None:
        head = self.query_one("#detail-head", Static)
        if message.error is not None or message.detail is None:
            error = message.error
            head.update(fmt.error_text(error, "no such run"))
            return
        run = message.detail["run"]
        self._head(run)
        self._chart(run, message.detail["timeline"], message.detail["domains"])
        rows, missing = figure_rows(run)
        figures = self.query_one("#detail-figures", DataTable)
        for label, value, how in rows:
            figures.add_row(label, value, how)
        self.query_one("#detail-missing", Static).update(
            f"[dim]not available for this run: {', '.join(missing)}[/]" if missing else ""
        )
        energy = self.query_one("#detail-energy", DataTable)
        for e in run.get("energy") or []:
            below = " [yellow]below idle[/]" if "below idle" in net_row_notes(e) else ""
            energy.add_row(
                e.get("window_name") or "",
                e.get("domain_id") or "",
                fmt.energy(e.get("energy_j")),
                fmt.energy(e.get("net_energy_j")) + below,
                fmt.method_tag(e.get("method")),
                fmt.num(e.get("coverage"), 3),
                fmt.num(e.get("mean_power_w"), 4),
                fmt.num(e.get("peak_power_w"), 4),
                fmt.num(e.get("idle_power_w"), 4),
                e.get("flags") or "",
            )
        extra = []
        if run.get("quality_metrics"):
            extra.append(
                "[b]Quality[/] "
                + " · ".join(f"{k} {fmt.num(v, 4)}" for k, v in run["quality_metrics"].items())
            )
        if run.get("error"):
            extra.append(
                f"[red b]{run.get('status')}:[/] {fmt.esc(run['error'])}"
                + (f"\n  fix: {fmt.esc(run['error_fix'])}" if run.get("error_fix") else "")
            )
        if run.get("overlap"):
            extra.append(
                f"[yellow b]overlap:[/] {fmt.esc(run['overlap'])} [dim](its energy includes that work)[/]"
            )
        if run.get("flags"):
            extra.append(f"[yellow]flags:[/] {fmt.esc(run['flags'])}")
        from wattlab.sessions.caps import throttle_lines

        if throttle := throttle_lines(run):  # GPU caps and throttling, each saying how it was obtained
            extra.append("[b]GPU caps and throttling[/]\n" + "\n".join(fmt.esc(line) for line in throttle))
        from wattlab.sessions.speculation import speculation_lines

        if speculation := speculation_lines(run):  # drafted / accepted tokens, tokens per step
            extra.append("[b]Speculative decoding[/]\n" + "\n".join(fmt.esc(line) for line in speculation))
        self.query_one("#detail-extra", Static).update("\n".join(extra))

    def _head(self, run: dict[str, Any]) -> None:
        status = run.get("status") or ""
        status_text = status if status == "finished" else f"[red]{status}[/]"
        what = (
            f"task {run['task']}"
            if run.get("task")
            else f"{run.get('input_tokens')}→{run.get('output_tokens')} tokens"
        )
        rate = f" @{run['rate']:g} req/s" if run.get("rate") else ""
        settings = (
            f"{run.get('engine')} {run.get('engine_version') or ''} · {run.get('model')} · "
            f"{run.get('quant') or 'default variant'} · "
            f"device {run.get('device')} ({run.get('devices') or '?'}) · "
            f"bs {run.get('batch_size')} · {what} · {run.get('requests')} req · {run.get('mode')}{rate} · "
            f"{run.get('decoding')} · repeat {run.get('repeat')}"
        )
        options = engine_options_of(run)
        if options:
            settings += f"\noptions: {options}"
        self.query_one("#detail-head", Static).update(
            f"run [b]{run['run_id']}[/] · {status_text} · session {run.get('session_id')} · "
            f"{fmt.timestamp(run.get('started_at'))}\n{fmt.esc(settings)}"
        )

    def _chart(
        self, run: dict[str, Any], timeline: list[dict[str, Any]], domains: list[dict[str, Any]]
    ) -> None:
        t0, t1 = run.get("t0_ns"), run.get("t1_ns")
        chart = self.query_one("#detail-chart", TimeChart)
        if not timeline or t0 is None or t1 is None:
            chart.set_data(ChartData(empty_text="no power samples stored for this run"))
            return
        by_domain: dict[str, list[tuple[float, float]]] = {}
        for s in timeline:
            by_domain.setdefault(s["domain_id"], []).append(((s["t_ns"] - t0) / NS, float(s["power_w"])))
        labels = {d["domain_id"]: d for d in domains}
        series = tuple(
            Series(did, tuple(pts), PALETTE[i % len(PALETTE)])
            for i, (did, pts) in enumerate(sorted(by_domain.items()))
        )
        chart.set_data(ChartData(series=series, vlines=(0.0, (t1 - t0) / NS)))
        legend = []
        for i, did in enumerate(sorted(by_domain)):
            d = labels.get(did, {})
            method = (
                "estimated" if d.get("estimated") else ("counter" if d.get("has_counter") else "integrated")
            )
            legend.append(f"[{PALETTE[i % len(PALETTE)]}]━━[/] {did} {fmt.method_tag(method)}")
        self.query_one("#detail-legend", Static).update(
            "[b]Power[/] W over time (s from the window's start; dotted: the measured window)  "
            + "  ".join(legend)
        )

    def action_mark(self) -> None:
        marked = self.lab.toggle_mark(self.run_id)
        self.notify(
            f"{self.run_id} {'marked' if marked else 'unmarked'} for Compare ({len(self.lab.marked)} marked)"
        )
