"""The CLI's read commands and its terminal output (rich): ls, show, compare, pareto, sql, export,
attach, doctor, tasks, report, plus the progress display of a foreground sweep."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from wattlab.analysis.queries import FIGURES, to_jsonable
from wattlab.columns import fit_columns
from wattlab.sessions.events import describe_event, fmt
from wattlab.sessions.events import rate as events_rate
from wattlab.sessions.result import RunResult

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def _store(args: argparse.Namespace) -> Any:
    from wattlab.errors import StoreError
    from wattlab.sessions.commit import recover
    from wattlab.sessions.store import Store

    store = Store(getattr(args, "db", None))
    try:
        recover(store)  # sessions whose runner died are ingested before anything is shown
    except StoreError as exc:
        # A full disk or a locked database must not hide what is already stored: say why the
        # newest sessions may be missing, then show the rest (the next command retries recovery).
        err_console.print(Text(f"warning: {exc.message}" + (f"\n  fix: {exc.fix}" if exc.fix else "")))
    return store


# --- live output ---------------------------------------------------------------------------------
def session_summary(status: str, total: int, failed: int, statuses: list[str] | None = None) -> str:
    """A session's end in words: "finished with 2 of 7 runs failed", "finished: 7 of 7 runs", or for a
    stopped session "interrupted: 1 of 3 runs finished, 1 interrupted, 1 not started"."""
    if status != "finished" and statuses is not None:
        counts = {s: statuses.count(s) for s in dict.fromkeys(statuses)}
        parts = [f"{counts.pop('finished', 0)} of {total} run{'s' if total != 1 else ''} finished"]
        parts += [f"{n} {s}" for s, n in counts.items()]
        if total > len(statuses):
            parts.append(f"{total - len(statuses)} not started")
        return f"{status}: " + ", ".join(parts)
    if failed:
        return f"{status} with {failed} of {total} run{'s' if total != 1 else ''} failed"
    return f"{status}: {total} of {total} run{'s' if total != 1 else ''}" + (
        " finished" if status == "finished" else ""
    )


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


# The engine's windows (worker marks) under the names the user sees.
PHASES = {"load": "load", "warmup": "warmup", "run": "measure", "logprobs": "measure"}


def _spec_of(row: dict[str, Any] | None) -> Any:
    from wattlab.errors import WattlabError
    from wattlab.sessions.spec import make_spec

    try:
        return make_spec(dict((row or {}).get("spec_json") or {}))
    except (WattlabError, TypeError):
        return None


def expected_tokens(spec: Any, window: str) -> tuple[int | None, bool]:
    """(output tokens a window will generate, exact?) for a run's spec; None when the prompts decide
    (tasks and prompt files stop at EOS)."""
    if spec is None or window not in ("warmup", "run"):
        return None, False
    if window == "warmup":
        n, cap = spec.warmup_shape()
        n, per = min(n, spec.n_requests), cap
    else:
        n, per = spec.n_requests, spec.output_tokens_or_default
    synthetic = spec.workload == "synthetic" and not (spec.task or spec.task_file)
    if not synthetic:
        return None, False
    return n * per, bool(spec.exact_output)


class SweepProgress:
    """Progress of a sweep or a run, fed with runner events (live, or replayed from a spool).

    Shows the sweep's bar with its ETA and the current run's phase (baseline, load, warmup, measure)
    with tokens, tokens/s and the phase's ETA. On a terminal it redraws in place; in a log or a pipe
    it prints each phase as it starts and a token line every LINE_PERIOD_S. All of it on stderr.
    single: one `wattlab run` (no run count). quiet: shows nothing.
    """

    LINE_PERIOD_S = 10.0

    def __init__(self, total: int, *, single: bool = False, quiet: bool = False) -> None:
        self.single, self.quiet = single, quiet
        columns: list[Any] = [TextColumn("{task.description}")]
        if not single:
            columns += [BarColumn(), MofNCompleteColumn()]
        columns += [TimeElapsedColumn()]
        if not single:
            columns += [TimeRemainingColumn()]
        columns += [TextColumn("{task.fields[tokens]}")]
        self.progress = Progress(*columns, console=err_console, disable=quiet)
        self.task = self.progress.add_task("starting" if single else "sweep", total=total, tokens="")
        self.total = total
        self.ended: str | None = None
        self.status_by_seq: dict[int, str] = {}  # each run's latest status (a resumed run retries)
        self._run = ""
        self._spec: Any = None
        self._window: str | None = None
        self._last_line = 0.0

    def __enter__(self) -> SweepProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    @property
    def failed(self) -> int:
        return sum(1 for status in self.status_by_seq.values() if status != "finished")

    def _print(self, text: str | None) -> None:
        if text and not self.quiet:
            self.progress.console.print(text)

    def _phase(self, name: str, detail: str = "") -> None:
        where = f"{self._run} " if self._run and not self.single else ""
        self.progress.update(self.task, description=f"{where}{name}", tokens=detail)

    def on_event(self, ev: dict[str, Any]) -> None:
        kind = ev.get("ev")
        text = describe_event(ev)
        if kind == "session_start":
            session = ev["session"]
            self.total = int(session.get("runs_planned") or self.total)
            self.progress.update(self.task, total=self.total)
            idle = ((session.get("spec_json") or {}).get("session") or {}).get("idle_s")
            if idle:
                self._phase("baseline", f"idle power for {idle:g} s")
                text = f"{text}\n  baseline: measuring idle power for {idle:g} s"
        elif kind == "run_start":
            self._run = f"run {ev['seq']}/{ev['total']}"
            self._spec, self._window = _spec_of(ev.get("row")), None
            self._phase("load", "loading the engine")
        elif kind == "run_loaded":
            reused = "engine reused" if ev.get("reused") else "engine loaded"
            self._phase("prepare", f"{reused}; building the requests")
        elif kind == "progress":
            text = self._on_tokens(ev)
        elif kind in ("run_end", "run_skipped"):
            result = ev.get("result") or {}
            seq = result.get("seq", ev.get("seq"))
            if seq is not None:
                status = "finished" if kind == "run_skipped" else str(result.get("status"))
                self.status_by_seq[int(seq)] = status
            self.progress.advance(self.task)
            self._phase("done" if self.single else "between runs")
        elif kind == "session_end":
            self.ended = ev["status"]
            statuses = list(self.status_by_seq.values())
            text = "session " + session_summary(ev["status"], self.total, self.failed, statuses)
            self._run = ""
            self._phase(ev["status"])
        self._print(text)

    def _on_tokens(self, ev: dict[str, Any]) -> str | None:
        """Update the phase's tokens and ETA; returns a line to print, if one is due."""
        window = str(ev.get("window") or "run")
        tokens = int(ev.get("tokens") or 0)
        phase = PHASES.get(window, window)
        expected, exact = expected_tokens(self._spec, window)
        line = None
        if window != self._window:
            self._window = window
            self._last_line = time.monotonic()
            if expected:
                line = f"  {phase}: {'' if exact else 'up to '}{expected} output tokens"
            else:
                line = f"  {phase}"
        elapsed = (int(ev["t"]) - int(ev["window_t0"])) / 1e9 if ev.get("t") and ev.get("window_t0") else 0.0
        rate = tokens / elapsed if elapsed > 0 else None
        parts = [f"{tokens}/{expected} tokens" if expected else f"{tokens} tokens"]
        if rate:
            parts.append(events_rate(rate))
            if expected and tokens < expected:
                parts.append(f"ETA {_duration((expected - tokens) / rate)}" + ("" if exact else " at most"))
        detail = ", ".join(parts)
        self._phase(phase, detail)
        if line is None and not self.progress.console.is_terminal:
            # No bar redraws in a log or a pipe: say how far it got every LINE_PERIOD_S.
            now = time.monotonic()
            if now - self._last_line >= self.LINE_PERIOD_S:
                self._last_line = now
                line = f"  {phase}: {detail}"
        return line


# --- commands ------------------------------------------------------------------------------------
def cmd_attach(args: argparse.Namespace) -> int:
    from wattlab.sessions.spool import Spool, list_spools

    spools = list_spools()
    if args.session:
        matches = [s for s in spools if s.session_id.startswith(args.session)]
    else:
        matches = [s for s in spools if s.runner_alive()] or spools[-1:]
    if not matches:
        from wattlab.errors import ConfigError

        raise ConfigError("no session to attach to", fix="start one with `wattlab sweep FILE --detach`")
    spool: Spool = sorted(matches, key=lambda s: s.session_id)[-1]
    total = int(spool.session().get("runs_planned") or 1)
    with SweepProgress(total) as progress:
        offset = 0
        while True:
            with open(spool.events_path, "rb") as f:
                f.seek(offset)
                data = f.read()
            complete = data[: data.rfind(b"\n") + 1]
            offset += len(complete)
            for ev in read_jsonl_bytes(complete):
                progress.on_event(ev)
            if progress.ended or (not spool.runner_alive() and not complete):
                break
            time.sleep(0.5)
    # As the README says: 1 when the session did not finish or any of its runs failed.
    return 0 if progress.ended == "finished" and not progress.failed else 1


def read_jsonl_bytes(data: bytes) -> list[dict[str, Any]]:
    out = []
    for line in data.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


# Short headers for the wide column names, so more columns fit a terminal.
HEADERS = {
    "run_id": "run",
    "session_id": "session",
    "batch_size": "bs",
    "throughput_tok_s": "tok/s",
    "e2e_p50_s": "E2E p50 s",
    "energy_j": "energy J",
    "energy_method": "method",
    "j_per_token": "J/token",
    "runs_planned": "planned",
    "runs_finished": "finished",
    "runs_failed": "failed",
    "created_at": "created",
}


def _table(
    rows: list[dict[str, Any]],
    columns: list[str],
    title: str | None = None,
    ids: tuple[str, ...] = (),
    drop_order: tuple[str, ...] = (),
) -> Table:
    """Cells as plain text (data never read as markup). Id columns are never cut; when the terminal
    is too narrow, columns in `drop_order` are left out, first named first (energy last)."""
    cells = [{c: fmt(r.get(c)) for c in columns} for r in rows]
    widths = {c: max([cell_len(HEADERS.get(c, c))] + [cell_len(row[c]) for row in cells]) for c in columns}
    shown = fit_columns(widths, drop_order, console.width)
    t = Table(title=title, show_lines=False)
    for c in shown:
        t.add_column(HEADERS.get(c, c), no_wrap=c in ids, min_width=widths[c] if c in ids else None)
    for row in cells:
        t.add_row(*(Text(row[c]) for c in shown))
    if len(shown) < len(columns):
        hidden = ", ".join(c for c in columns if c not in shown)
        t.caption = f"not shown at {console.width} columns: {hidden} (--json has all)"
    return t


def cmd_ls(args: argparse.Namespace) -> int:
    from wattlab.analysis import queries

    store = _store(args)
    if args.session:
        sid = queries.resolve_id(store, "sessions", "session_id", args.session)
        rows = queries.list_runs(store, sid, order="run_id")
        cols = [
            "run_id",
            "status",
            "engine",
            "model",
            "quant",
            "mode",
            "batch_size",
            "throughput_tok_s",
            "e2e_p50_s",
            "energy_j",
            "energy_method",
            "j_per_token",
            "quality",
        ]
        if args.json:
            print(json.dumps(to_jsonable(rows), default=str))
            return 0
        # The session's runs share its id: show each run's shortest unique end, which `show` takes.
        short = queries.short_ids([r["run_id"] for r in rows], queries.all_ids(store, "runs", "run_id"))
        title = f"session {sid}: its runs (`wattlab show ID` takes these ids)"
        drop: tuple[str, ...] = RUN_DROP_ORDER
        rows = [{**r, "run_id": short[r["run_id"]]} for r in rows]
        # "!": the run's energy includes other work on its devices (sessions/locks.py); say whose.
        notes = [f"! {r['run_id']} overlapped: {r['overlap']}" for r in rows if r.get("overlap")]
        rows = [{**r, "energy_j": f"{fmt(r.get('energy_j'))} !"} if r.get("overlap") else r for r in rows]
        # model levers, as columns only where a run of the session has one (never a column of dashes)
        rows = [{**r, "spec": r.get("speculative")} for r in rows]
        for column in ("spec", "transform"):
            if any(r.get(column) for r in rows):
                cols.insert(cols.index("quant") + 1, column)
                drop = (*drop[:1], column, *drop[1:])  # left out early on a narrow terminal, after mode
    else:
        rows = queries.list_sessions(store)
        cols = [
            "session_id",
            "name",
            "kind",
            "status",
            "created_at",
            "runs_planned",
            "runs_finished",
            "runs_failed",
            "energy_j",
        ]
        if args.json:
            print(json.dumps(to_jsonable(rows), default=str))
            return 0
        title = "sessions (`wattlab ls SESSION` lists its runs)"
        drop = SESSION_DROP_ORDER
        rows = [{**r, "created_at": str(r.get("created_at") or "")[:16]} for r in rows]
        notes = [
            f"! {r['session_id']}: {r['runs_overlapped']} run(s) overlapped other work "
            f"(`wattlab ls {r['session_id']}` says which)"
            for r in rows
            if r.get("runs_overlapped")
        ]
        rows = [
            {**r, "energy_j": f"{fmt(r.get('energy_j'))} !"} if r.get("runs_overlapped") else r for r in rows
        ]
    console.print(_table(rows, cols, title=title, ids=("run_id", "session_id"), drop_order=drop))
    for note in notes:
        console.print(Text(note, style="yellow"))
    return 0


# Table columns left out first when the terminal is narrow; energy figures go last, ids never.
RUN_DROP_ORDER = (
    "mode",
    "quality",
    "e2e_p50_s",
    "throughput_tok_s",
    "model",
    "quant",
    "batch_size",
    "status",
    "engine",
    "energy_method",
    "energy_j",
    "j_per_token",
)
SESSION_DROP_ORDER = (
    "kind",
    "runs_planned",
    "created_at",
    "runs_failed",
    "name",
    "status",
    "runs_finished",
    "energy_j",
)


def print_run(run: RunResult) -> None:
    what = f"{run.engine} {run.model} {run.quant or ''}"
    head = f"run {run.run_id}: {run.status}  {what}"
    console.print(f"[bold]{escape(head)}[/]")  # data and fix text are escaped: `[extra]` must survive
    if run.error:
        console.print(
            f"[red]{escape(str(run.error))}[/]"
            + (f"\n  fix: {escape(str(run.error_fix))}" if run.error_fix else "")
        )
    spec = run.spec_json if isinstance(run.spec_json, dict) else {}
    options = {k: v for k, v in (spec.get("options") or {}).items() if k not in ("tokenizer", "derive_from")}
    if options:  # the engine options it ran with (the levers a GPU study sweeps)
        console.print(escape("options: " + " ".join(f"{k}={json.dumps(v)}" for k, v in options.items())))
    if run.overlap:  # other work shared the run's devices while it measured
        console.print(Text(f"overlap: {run.overlap} (its energy includes that work)", style="yellow"))
    from wattlab.sessions.figures import figure_method, net_notes, net_row_notes

    t = Table("figure", "value", "how obtained")
    for col, label, unit, method_col in FIGURES:
        if run.get(col) is None:
            continue
        # The label comes from the stored method of what the figure was computed from.
        notes = net_notes(col, run.get(col), run)
        value = fmt(run.get(col), unit) + ("  below idle" if "below idle" in notes else "")
        how = ", ".join([figure_method(col, method_col, run), *(n for n in notes if n != "below idle")])
        t.add_row(label, Text(value), Text(how))
    console.print(t)
    from wattlab.sessions.caps import throttle_lines

    for line in throttle_lines(run):  # GPU caps and throttling, each line saying how it was obtained
        console.print(Text(line))
    from wattlab.sessions.speculation import speculation_lines

    for line in speculation_lines(run):  # drafted / accepted tokens, tokens per step
        console.print(Text(line))
    if run.energy:
        e = Table(
            "window",
            "domain",
            "energy J",
            "net J",
            "method",
            "coverage",
            "mean W",
            "flags",
            title="energy by window and domain",
        )
        for r in run.energy:
            e.add_row(
                *map(
                    Text,
                    (
                        str(r["window_name"]),
                        str(r["domain_id"]),
                        fmt(r["energy_j"]),
                        fmt(r["net_energy_j"]) + ("  below idle" if "below idle" in net_row_notes(r) else ""),
                        str(r["method"]),
                        fmt(r["coverage"]),
                        fmt(r["mean_power_w"]),
                        r.get("flags") or "",
                    ),
                )
            )
        console.print(e)


def cmd_show(args: argparse.Namespace) -> int:
    from wattlab.analysis.queries import get_run

    run = get_run(_store(args), args.run)
    if args.json:
        print(json.dumps(to_jsonable(run.as_dict()), default=str))
    else:
        print_run(run)
    return 0


_HEADLINE_TTFT = frozenset({"ttft_p50_s", "ttft_p90_s", "ttft_p99_s"})


def cmd_compare(args: argparse.Namespace) -> int:
    from wattlab.analysis import queries

    store = _store(args)
    data = queries.compare_runs(store, args.runs)
    if args.json:
        print(json.dumps(to_jsonable(data), default=str))
        return 0
    # Each header: the run's shortest unique id (which `show` takes) and the settings that differ.
    ids = [r["run_id"] for r in data["runs"]]
    short = queries.short_ids(ids, queries.all_ids(store, "runs", "run_id"))
    labels = queries.varying_labels(data["runs"])
    t = Table("figure")
    for run_id, label in zip(ids, labels, strict=True):
        # The id line is never cut (min_width); the settings may wrap under it.
        t.add_column(Text(f"{short[run_id]}\n{label}".strip()), min_width=cell_len(short[run_id]))
    for row in data["rows"]:
        if all(v is None for v in row["values"]):
            continue
        # The headline TTFT says which it is in each run: service (offline) or client (online).
        bases = [f" {r.get('ttft_basis')}" if row["figure"] in _HEADLINE_TTFT else "" for r in data["runs"]]
        cells = [Text(fmt(row["values"][0]) + bases[0])]
        for v, d, basis in zip(row["values"][1:], row["delta_pct"][1:], bases[1:], strict=True):
            cells.append(Text(fmt(v) + basis + (f" ({d:+.1f}%)" if d is not None else "")))
        t.add_row(row["figure"], *cells)
    console.print(t)
    return 0


def cmd_pareto(args: argparse.Namespace) -> int:
    from wattlab.analysis.front import pareto_runs

    objectives = [o.strip() for o in args.objectives.split(",") if o.strip()]
    # The table shows the front only; --json keeps every placed run (`points`) as before.
    data = pareto_runs(_store(args), objectives, session_id=args.session, points=bool(args.json))
    if args.json:
        print(json.dumps(to_jsonable(data), default=str))
        return 0
    cols = ["run_id", "engine", "model", "quant", "batch_size", *(o["column"] for o in data["objectives"])]
    console.print(
        _table(
            data["front"],
            cols,
            title=f"Pareto front over {escape(', '.join(objectives))} "
            f"({len(data['front'])} of {data['considered']} runs)",
            ids=("run_id",),
            drop_order=("model", "quant", "batch_size", "engine"),  # the objectives are always shown
        )
    )
    if data.get("excluded"):
        console.print(f"[dim]{data['excluded']} run(s) lack one of these figures and were left out[/]")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from wattlab.analysis.queries import EXPORT_FORMATS, export

    # The format follows --out's extension unless --format names one; csv otherwise.
    suffix = Path(args.out).suffix.lower().lstrip(".") if args.out else ""
    fmt_ = args.format or (suffix if suffix in EXPORT_FORMATS else "csv")
    out = Path(args.out or f"wattlab-{args.table}.{fmt_}")
    path = export(_store(args), fmt_, out, table=args.table, session_id=args.session)
    print(path)  # absolute: the file is found even when the command ran in another folder
    return 0


def cmd_sql(args: argparse.Namespace) -> int:
    from wattlab.analysis.readonly_sql import run_read_query

    result = run_read_query(_store(args), args.query)  # read statements only, no file access
    cols, rows = result.columns, result.rows
    if args.json:
        print(json.dumps(to_jsonable([dict(zip(cols, r, strict=True)) for r in rows]), default=str))
    else:
        t = Table()
        for c in cols:
            t.add_column(Text(str(c)))
        for r in rows:
            t.add_row(*(Text(fmt(v)) for v in r))  # values are data, never markup
        console.print(t)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from wattlab.doctor import diagnose

    report = diagnose()
    if args.json:
        print(json.dumps(report, default=str))
        return 0
    t = Table("kind", "name", "available", "detail", "fix", title="wattlab doctor")
    for kind in ("meters", "engines"):
        for item in report[kind]:
            t.add_row(  # detail and fix as plain text: `pip install 'wattlab[vllm]'` keeps its brackets
                kind[:-1],
                Text(str(item["name"])),
                "[green]yes[/]" if item["available"] else "[red]no[/]",
                Text(item.get("detail") or ""),
                Text(item.get("fix") or ""),
            )
    console.print(t)
    caps = report["gpu_caps"]  # power_limit_w / sm_clock_mhz / mem_clock_mhz need this
    console.print(
        Text(f"GPU caps: {'yes' if caps['allowed'] else 'no'}, {caps['detail']}")
        + Text(f"\n  fix: {caps['fix']}" if caps["fix"] and not caps["allowed"] else "")
    )
    for key in ("data_dir", "database", "carbon"):
        console.print(f"{key}: {escape(str(report[key]))}")
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    from wattlab.workloads.tasks import list_tasks

    tasks = [
        {"name": t.name, "kind": t.kind, "metrics": list(t.metrics), "items": t.n_items} for t in list_tasks()
    ]
    if args.json:
        print(json.dumps(tasks))
    else:
        console.print(
            _table(
                [{**t, "metrics": ", ".join(t["metrics"])} for t in tasks],  # type: ignore[arg-type]
                ["name", "kind", "metrics", "items"],
            )
        )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from wattlab.analysis.report import write_report

    store = _store(args)
    session = args.session
    if not session:
        # The newest session may still be running with nothing finished: report on the newest one that
        # has something to report, and say which.
        session = _newest_reportable_session(store)
        err_console.print(f"report for session {session} (newest with finished runs)", markup=False)
    from wattlab.cli_advise import slo_from_args

    paths = write_report(
        store, session, Path(args.out), baseline=args.baseline, families=args.family, slo=slo_from_args(args)
    )
    for p in paths:
        print(p)
    return 0


def _newest_reportable_session(store: Any) -> str:
    rows = store.query(
        "SELECT s.session_id FROM sessions s WHERE EXISTS (SELECT 1 FROM runs r "
        "WHERE r.session_id = s.session_id AND r.status = 'finished') ORDER BY s.created_at DESC LIMIT 1"
    )[1]
    if not rows:
        from wattlab.errors import ConfigError

        raise ConfigError(
            "no session has a finished run to report on",
            fix="finish a run with `wattlab run` or `wattlab sweep` first (`wattlab ls` lists the sessions)",
        )
    return str(rows[0][0])


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use the `wattlab` command")
