"""Launch: pick model, variant, engine, device, workload and decoding; build a sweep; start it.

The menus come from the catalog (variants only those the engine and model allow; engines with
their version, or the extra that installs them). "Add" expands the form's lists into runs and
checks each (a bad combination shows its message under the form); the grid shows every run,
their count and an estimated duration. "Start" writes the sweep TOML into the data dir, starts a
detached runner (it survives the console closing and SSH dropping) and switches to Live on it.
Reading variants, estimating, saving, loading and starting run as thread workers (launch_jobs).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Button, DataTable, Footer, Input, Label, Select, Static

from wattlab.app import fmt
from wattlab.app.screens import launch_form as form
from wattlab.app.screens import launch_jobs as jobs
from wattlab.app.screens.base import LabScreen
from wattlab.app.sweepdraft import SweepDraft
from wattlab.app.widgets.dialogs import PathScreen
from wattlab.app.widgets.nav import NavBar
from wattlab.errors import ConfigError, WattlabError

DEFAULT_FILE = "wattlab-sweep.toml"


class LaunchScreen(LabScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+n", "add", "Add"),
        Binding("ctrl+r", "start", "Start"),
        Binding("ctrl+s", "save", "Save"),
        Binding("ctrl+o", "load", "Load"),
        Binding("delete", "remove", "Remove row"),
        Binding("ctrl+t", "toggle_options", "Options"),
        Binding("escape", "blur", "Leave field", show=False),
    ]

    class Done(Message):
        """A job's outcome: `kind` says which; `error` is a WattlabError to show."""

        def __init__(self, kind: str, value: Any = None, error: WattlabError | None = None) -> None:
            super().__init__()
            self.kind, self.value, self.error = kind, value, error

    def __init__(self) -> None:
        super().__init__()
        self.draft = SweepDraft()
        self._error_source: str | None = None
        self._variants: dict[tuple[str, str], list[str] | WattlabError] = {}
        self.options_open = False  # the engine-options area is folded until asked for (ctrl+t)
        self._option_count = 0

    def compose(self) -> ComposeResult:
        yield NavBar("launch")
        with VerticalScroll(id="launch-body"):
            with Grid(id="launch-form"):
                for field in form.FIELDS:
                    yield Label(field.label, classes="form-label", id=f"label-{field.id}")
                    yield form.control(field, self.lab.catalog)
            # The engine's options, folded by default so the grid of runs stays on an 80x24 screen.
            yield Button("", id="options-toggle", compact=True)
            yield Static("", id="launch-options-title")
            yield Grid(id="launch-options")  # the selected engine's options, from its spec
            yield Static("", id="launch-hint")
            yield Static("", id="launch-error", classes="error")
            yield Static("", id="launch-summary")  # above the buttons: what Start would run
            with Horizontal(id="launch-buttons"):
                yield Button("Add ^n", id="add", variant="primary", compact=True)
                yield Button("Remove del", id="remove", compact=True)
                yield Button("Clear", id="clear", compact=True)
                yield Button("Save ^s", id="save", compact=True)
                yield Button("Load ^o", id="load", compact=True)
                yield Button("Start ^r", id="start", variant="success", compact=True)
            yield DataTable(id="launch-grid", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        columns = (
            "#", "engine", "model", "variant", "device", "workload", "bs", "mode", "decoding", "×", "options"
        )  # fmt: skip
        self.query_one("#launch-grid", DataTable).add_columns(*columns)
        self.call_later(self._show_options)
        self._lever_menus()
        self._engines_known()
        self._load_variants()
        self._refresh_grid()

    def on_resize(self) -> None:
        # three field columns only where a model name (about 24 cells) fits each
        self.set_class(self.size.width >= 140, "wide")

    def _job(self, kind: str, fn: Callable[[], Any]) -> None:
        """Run `fn` in a thread worker; its result or WattlabError comes back as a Done message."""

        def run() -> None:
            try:
                self.post_message(self.Done(kind, fn()))
            except WattlabError as exc:
                self.post_message(self.Done(kind, error=exc))

        self.run_worker(run, thread=True, exclusive=True, exit_on_error=False, group=f"launch-{kind}")

    # --- engines, models and variants -------------------------------------------------------------
    def _engines_known(self) -> None:
        """Relabel the engine menu once the box probe says which are installed."""
        probe = self.lab.probe
        if probe is None or not probe.engines:
            return
        select = self.query_one("#engine", Select)
        value = select.value
        select.set_options([(e.label(), e.name) for e in probe.engines])
        if value in [e.name for e in probe.engines]:
            select.value = value
        self._show_hint()

    def on_probe_ready(self, _: Any) -> None:
        self._engines_known()
        self._lever_menus()

    def on_screen_resume(self) -> None:
        self._engines_known()

    @on(Select.Changed, "#engine, #model")
    @on(Input.Submitted, "#custom_model")
    @on(Input.Blurred, "#custom_model")
    def _load_variants(self) -> None:
        engine, model = self._engine(), self._model()
        cached = self._variants.get((model, engine))
        if cached is not None:
            self._show_variants(model, engine, cached)
        else:
            catalog = self.lab.catalog
            self._job("variants", lambda: jobs.read_variants(catalog, model, engine))

    @on(Select.Changed, "#engine")
    async def _show_options(self) -> None:
        """List only the selected engine's options (its spec's), each with its allowed values."""
        engine = self._engine()
        area = self.query_one("#launch-options", Grid)
        if getattr(area, "engine", None) == engine:
            return
        area.engine = engine  # type: ignore[attr-defined]  # which engine the controls belong to
        await area.remove_children()  # before mounting: both engines may name an option alike
        options = form.launch_options(engine)
        widgets: list[Any] = []
        for option in options:
            label = Label(option.name, classes="form-label option-label", id=f"label-opt-{option.name}")
            label.tooltip = f"{option.help} ({form.option_hint(option)})"
            control = form.option_control(option)
            control.tooltip = label.tooltip
            widgets += [label, control]
        await area.mount_all(widgets)
        self._option_count = len(options)
        title = self.query_one("#launch-options-title", Static)
        head = f"[b]{fmt.esc(engine)} options[/] [dim](empty: the engine's default)[/]"
        title.update(head if options else "")
        self._fold_options()

    def _fold_options(self) -> None:
        """Show the options area or fold it into its toggle line, which counts the options set."""
        engine = self._engine()
        area = self.query_one("#launch-options", Grid)
        title = self.query_one("#launch-options-title", Static)
        toggle = self.query_one("#options-toggle", Button)
        count = self._option_count
        shown = self.options_open and count > 0
        area.display = title.display = shown
        toggle.display = count > 0
        n_set = sum(1 for v in self._option_raw().values() if v)
        arrow = "▾" if shown else "▸"
        toggle.label = f"{arrow} {engine} options ({n_set} set) · ctrl+t"

    def action_toggle_options(self) -> None:
        self.options_open = not self.options_open
        self._fold_options()
        if self.options_open:
            self.call_after_refresh(self.query_one("#launch-options", Grid).scroll_visible)

    @on(Input.Changed)
    @on(Select.Changed)
    def _option_changed(self, event: Input.Changed | Select.Changed) -> None:
        widget = event.input if isinstance(event, Input.Changed) else event.select
        if (widget.id or "").startswith(form.OPTION_ID):
            self._fold_options()

    def _option_raw(self) -> dict[str, str]:
        raw: dict[str, str] = {}
        for widget in self.query_one("#launch-options", Grid).query("Input, Select"):
            if isinstance(widget, Input | Select) and widget.id and widget.id.startswith(form.OPTION_ID):
                value = widget.value
                raw[widget.id.removeprefix(form.OPTION_ID)] = "" if value is Select.NULL else str(value)
        return raw

    # --- model and GPU levers ---------------------------------------------------------------------
    def _gpu(self) -> bool:
        """Whether the run lands on a GPU: Device cuda, or auto on a box whose probe found a GPU meter."""
        device = str(self.query_one("#device", Select).value)
        probe = self.lab.probe
        gpu_meter = probe is not None and bool({"nvml", "amdsmi", "jetson"} & set(probe.meters))
        return device == "cuda" or (device == "auto" and gpu_meter)

    @on(Select.Changed, "#engine, #model, #device")
    @on(Input.Blurred, "#custom_model")
    def _lever_menus(self) -> None:
        """Transform and Speculative offer what the engine runs (on this device, for this model's
        family); the GPU caps are enabled only for a GPU run."""
        engine, device, gpu = self._engine(), str(self.query_one("#device", Select).value), self._gpu()
        menus = (
            ("#transform", form.transform_choices(engine, gpu, self._model())),
            ("#speculative", form.speculative_choices(engine, self._model(), device)),
        )
        for wid, choices in menus:
            select = self.query_one(wid, Select)
            value = select.value
            select.set_options(choices)
            select.value = value if value in [v for _, v in choices] else ""
        placeholders = {f.id: f.placeholder for f in form.FIELDS}
        for key in form.CAP_FIELDS:
            widget = self.query_one(f"#{key}", Input)
            widget.disabled = not gpu
            widget.tooltip = None if gpu else form.CAP_HINT
            widget.placeholder = placeholders[key] if gpu else form.CAP_OFF
        self._show_hint()

    @on(Select.Changed, "#workload")
    def _workload_changed(self, event: Select.Changed) -> None:
        task = str(event.value).startswith(form.TASK_PREFIX)
        self.query_one("#label-requests", Label).update("Task items" if task else "Requests")
        self.query_one("#requests", Input).placeholder = "all items" if task else "one batch"
        self.query_one("#input_tokens", Input).disabled = task
        self.query_one("#output_tokens", Input).placeholder = "task default" if task else "e.g. 64,256"
        if task:
            self.query_one("#output_tokens", Input).value = ""

    def _engine(self) -> str:
        return str(self.query_one("#engine", Select).value)

    def _model(self) -> str:
        return self.query_one("#custom_model", Input).value.strip() or str(
            self.query_one("#model", Select).value
        )

    def _show_variants(self, model: str, engine: str, found: list[str] | WattlabError) -> None:
        self._variants[(model, engine)] = found
        if (model, engine) != (self._model(), self._engine()):
            return  # the user moved on while the variants were read
        select = self.query_one("#quant", Select)
        if isinstance(found, WattlabError):
            select.set_options([("not available", "")])
            self._error(found, source="variants")
        else:
            own = " (file's own)" if _file_type_first(engine) else ""
            select.set_options([(v + (own if i == 0 else ""), v) for i, v in enumerate(found)])
            select.value = found[0]
            self._error(None, source="variants")
        self._show_hint()

    def _engine_choice(self, engine: str) -> Any:
        probe = self.lab.probe
        return next((e for e in (probe.engines if probe else ()) if e.name == engine), None)

    def _show_hint(self) -> None:
        engine = self._engine()
        choice = self._engine_choice(engine)
        model = next((m for m in self.lab.catalog.models() if m.name == self._model()), None)
        parts = []
        if model is not None:
            parts.append(f"[dim]{fmt.esc(model.description)}[/]")
        if choice is not None and choice.installed is False:
            fix = f" — {fmt.esc(choice.fix)}" if choice.fix else ""
            parts.append(f"[yellow]{engine} is not installed[/]{fix}")
        if not self._gpu() and any(self.query_one(f"#{k}", Input).value.strip() for k in form.CAP_FIELDS):
            parts.append(f"[yellow]{form.CAP_HINT}[/] (the caps typed are not used)")
        if self.lab.probe is not None and self.lab.probe.estimated_only:
            parts.append("[bold yellow]this box has no power meter: energy will be ESTIMATED[/]")
        self.query_one("#launch-hint", Static).update("\n".join(parts))

    # --- the sweep grid ---------------------------------------------------------------------------
    def _raw(self) -> dict[str, str]:
        raw: dict[str, str] = {}
        for field in form.FIELDS:
            widget = self.query_one(f"#{field.id}")
            value = widget.value if isinstance(widget, Input | Select) else ""
            if widget.disabled and field.id in form.CAP_FIELDS:
                value = ""  # a GPU cap greyed out for a CPU run is not part of it
            raw[field.id] = "" if value is Select.NULL else str(value)
        return raw

    def _error(self, error: WattlabError | None, source: str = "form") -> None:
        """Show (or clear) the message under the form. Reading variants clears only its own message."""
        if error is None and source == "variants" and self._error_source != "variants":
            return
        self._error_source = source if error is not None else None
        text = ""
        if error is not None:
            text = f"✖ {fmt.esc(error.message)}" + (f"\n  fix: {fmt.esc(error.fix)}" if error.fix else "")
        widget = self.query_one("#launch-error", Static)
        widget.update(text)
        widget.display = bool(text)

    def action_add(self) -> None:
        try:
            fixed, axes, _settings = form.build(self._raw())
            options, option_axes = form.parse_options(fixed["engine"], self._option_raw())
        except ConfigError as exc:
            self._error(exc)
            return
        choice = self._engine_choice(fixed["engine"])
        if choice is not None and choice.installed is False:
            problem = f"the {choice.name} engine is not installed here ({choice.reason})"
            self._error(ConfigError(problem, fix=choice.fix))
            return
        if options:
            fixed["options"] = options
        axes.update(option_axes)
        catalog = self.lab.catalog
        self._job("add", lambda: jobs.expand_checked(catalog, fixed, axes))

    def action_remove(self) -> None:
        grid = self.query_one("#launch-grid", DataTable)
        if grid.row_count:
            self.draft.remove(grid.cursor_row)
            self._refresh_grid()

    def _refresh_grid(self) -> None:
        grid = self.query_one("#launch-grid", DataTable)
        grid.clear()
        for i, spec in enumerate(self.draft.specs(), 1):
            what = (
                f"task {spec.task}" if spec.task else f"{spec.input_tokens}→{spec.output_tokens_or_default}"
            )
            mode = spec.mode + (f" {spec.rate:g}/s" if spec.rate else "")
            cells = (spec.engine, fmt.short_model(spec.model, 24), spec.quant or "default", spec.device, what)
            opts = " ".join([*_lever_words(spec), *(f"{k}={v}" for k, v in spec.options.items())])
            grid.add_row(
                str(i),
                *map(fmt.esc, cells),
                str(spec.batch_size),
                mode,
                spec.decoding,
                str(spec.repeats),
                fmt.esc(opts),
            )
        summary = self.query_one("#launch-summary", Static)
        if not self.draft.rows:
            summary.update("[dim]no runs yet: set the menus and press Add (ctrl+n)[/]")
            return
        summary.update(f"{self._grid_line()} · estimating duration…")
        store, planned, settings = self.lab.store, self.draft.planned(), self.draft.session
        self._job("estimate", lambda: jobs.estimate(store, planned, settings))

    # --- files and starting ----------------------------------------------------------------------
    def _settings_or_error(self) -> bool:
        try:
            self.draft.session = form.session_settings(self._raw())
        except ConfigError as exc:
            self._error(exc)
            return False
        return True

    def action_save(self) -> None:
        if not self._settings_or_error():
            return
        text = self.draft.to_toml() if self.draft.rows else ""

        def chosen(path: str | None) -> None:
            if path:
                self._job("save", lambda: jobs.write_sweep(path, text))

        dialog = PathScreen(
            "Save the sweep as TOML", str(Path.cwd() / DEFAULT_FILE), "the file `wattlab sweep FILE` runs"
        )
        self.lab.push_screen(dialog, chosen)

    def action_load(self) -> None:
        def chosen(path: str | None) -> None:
            if path:
                self._job("load", lambda: jobs.load_sweep(path))

        dialog = PathScreen(
            "Load a sweep TOML", str(Path.cwd() / DEFAULT_FILE), "any file `wattlab sweep` accepts"
        )
        self.lab.push_screen(dialog, chosen)

    def action_start(self) -> None:
        if not self._settings_or_error():
            return
        if not self.draft.rows:
            self._error(
                ConfigError("the sweep has no runs", fix="set the menus and press Add (ctrl+n) first")
            )
            return
        if not self.draft.session.name:  # History shows a name, not the saved file's path
            from dataclasses import replace

            self.draft.session = replace(self.draft.session, name=self.draft.default_name())
        self.query_one("#start", Button).disabled = True
        text, data_dir, db = self.draft.to_toml(), self.lab.data_dir, self.lab.db_arg
        self._job("start", lambda: jobs.start_sweep(text, data_dir, db))

    # --- outcomes ---------------------------------------------------------------------------------
    def on_launch_screen_done(self, message: Done) -> None:
        if message.kind == "start":
            self.query_one("#start", Button).disabled = False
        if message.error is not None:
            if message.kind == "estimate":
                summary = f"{self._grid_line()} · no estimate: {fmt.esc(message.error.message)}"
                self.query_one("#launch-summary", Static).update(summary)
            else:
                self._error(message.error)
            return
        handlers: dict[str, Callable[[Any], None]] = {
            "variants": lambda value: self._show_variants(*value),
            "add": self._added,
            "estimate": self._estimated,
            "save": self._saved,
            "load": self._loaded,
            "start": self._started,
        }
        handlers[message.kind](message.value)

    def _grid_line(self) -> str:
        """What Start would run, in one line: "2 runs: llamacpp bs1, bs4 · 128→64 tok"."""
        return f"[b]{self.draft.run_count} run(s)[/]: {fmt.esc(self.draft.describe())}"

    def _added(self, rows: list[dict[str, Any]]) -> None:
        added, present = self.draft.extend(rows)
        self._error(None)
        self.notify(f"{added} run(s) added" + (f", {present} already in the sweep" if present else ""))
        self._refresh_grid()
        self.call_after_refresh(self._show_grid)

    def _show_grid(self) -> None:
        """Scroll the form so the grid of runs (what Start runs) is on screen, its last row too."""
        body = self.query_one("#launch-body", VerticalScroll)
        grid = self.query_one("#launch-grid", DataTable)
        body.scroll_to_widget(grid, animate=False, top=False)

    def _estimated(self, est: dict[str, Any]) -> None:
        duration = fmt.duration(est["seconds"])
        basis = fmt.esc(est["basis"])
        summary = f"{self._grid_line()} · ≈ {duration} [dim]({basis})[/]"
        self.query_one("#launch-summary", Static).update(summary)

    def _saved(self, path: str) -> None:
        self._error(None)
        self.notify(f"saved {fmt.esc(path)}\nrun it with: wattlab sweep {fmt.esc(path)}", title="Sweep saved")

    def _loaded(self, value: tuple[str, SweepDraft]) -> None:
        path, draft = value
        self.draft = draft
        for key, text in form.raw_from_session(draft.session).items():
            self.query_one(f"#{key}", Input).value = text
        self._error(None)
        self.notify(f"loaded {len(draft.rows)} configuration(s) from {fmt.esc(path)}")
        self._refresh_grid()

    def _started(self, value: tuple[str, Path]) -> None:
        session_id, log = value
        self.notify(f"session {session_id} started in the background", title="Sweep started")
        self.lab.follow(session_id, log)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "options-toggle":
            self.action_toggle_options()
            return
        if event.button.id == "clear":
            self.draft.clear()
            self._refresh_grid()
            return
        action = getattr(self, f"action_{event.button.id}", None)
        if action is not None:
            action()

    def action_blur(self) -> None:
        self.set_focus(None)


def _file_type_first(engine: str) -> bool:
    """Whether the engine's first variant is the model file's own type (GGUF engines, by their spec)."""
    from wattlab.engines import registry

    spec = registry().get(engine)
    return spec is not None and spec.model_kind == "gguf"


def _lever_words(spec: Any) -> list[str]:
    """A run's model and GPU levers for the grid's options column: "transform=prune:layers:2"."""
    words = []
    for key in ("transform", "speculative", *form.CAP_FIELDS):
        value = getattr(spec, key, None)
        if value is not None:
            words.append(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}")
    return words
