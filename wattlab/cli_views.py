"""The CLI's read commands and its terminal output (rich): ls, show, compare, pareto, sql, export,
attach, doctor, tasks, report, plus the progress display of a foreground sweep."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from wattlab.sessions.events import describe_event, fmt
from wattlab.sessions.queries import FIGURES, to_jsonable

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def _store(args: argparse.Namespace) -> Any:
    from wattlab.sessions.commit import recover
    from wattlab.sessions.store import Store

    store = Store(getattr(args, "db", None))
    recover(store)  # sessions whose runner died are ingested before anything is shown
    return store


# --- live output ---------------------------------------------------------------------------------
def event_printer() -> Callable[[dict[str, Any]], None]:
    def echo(ev: dict[str, Any]) -> None:
        text = describe_event(ev)
        if text:
            err_console.print(text)

    return echo


class SweepProgress:
    """A rich progress bar with ETA for a sweep, fed with runner events (live or from a spool)."""

    def __init__(self, total: int) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[tokens]}"),
            console=err_console,
        )
        self.task = self.progress.add_task("sweep", total=total, tokens="")
        self.ended: str | None = None

    def __enter__(self) -> SweepProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def on_event(self, ev: dict[str, Any]) -> None:
        kind = ev.get("ev")
        if kind == "session_start":
            self.progress.update(self.task, total=ev["session"].get("runs_planned"))
        elif kind == "progress":
            self.progress.update(self.task, tokens=f"{ev['tokens']} tokens")
        elif kind in ("run_end", "run_skipped"):
            self.progress.advance(self.task)
        elif kind == "run_start":
            self.progress.update(self.task, description=f"run {ev['seq']}/{ev['total']}", tokens="")
        elif kind == "session_end":
            self.ended = ev["status"]
        text = describe_event(ev)
        if text:
            self.progress.console.print(text)


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
    return 0 if progress.ended == "finished" else 1


def read_jsonl_bytes(data: bytes) -> list[dict[str, Any]]:
    out = []
    for line in data.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def _table(rows: list[dict[str, Any]], columns: list[str], title: str | None = None) -> Table:
    t = Table(title=title, show_lines=False)
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*(fmt(r.get(c)) for c in columns))
    return t


def cmd_ls(args: argparse.Namespace) -> int:
    from wattlab.sessions import queries

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
    else:
        console.print(_table(rows, cols))
    return 0


def print_run(run: dict[str, Any]) -> None:
    what = f"{run.get('engine')} {run.get('model')} {run.get('quant') or ''}"
    head = f"run {run.get('run_id')}: {run.get('status')}  {what}"
    console.print(f"[bold]{head}[/]")
    if run.get("error"):
        console.print(
            f"[red]{run['error']}[/]" + (f"\n  fix: {run['error_fix']}" if run.get("error_fix") else "")
        )
    t = Table("figure", "value", "how obtained")
    for col, label, unit, method_col in FIGURES:
        if run.get(col) is None:
            continue
        how = run.get(method_col) if method_col else ("measured" if col not in ("pue",) else "configured")
        t.add_row(label, fmt(run.get(col), unit), str(how or ""))
    console.print(t)
    if run.get("energy"):
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
        for r in run["energy"]:
            e.add_row(
                r["window_name"],
                r["domain_id"],
                fmt(r["energy_j"]),
                fmt(r["net_energy_j"]),
                str(r["method"]),
                fmt(r["coverage"]),
                fmt(r["mean_power_w"]),
                r.get("flags") or "",
            )
        console.print(e)


def cmd_show(args: argparse.Namespace) -> int:
    from wattlab.sessions.queries import get_run

    run = get_run(_store(args), args.run)
    if args.json:
        print(json.dumps(to_jsonable(run), default=str))
    else:
        print_run(run)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from wattlab.sessions.queries import compare_runs

    data = compare_runs(_store(args), args.runs)
    if args.json:
        print(json.dumps(to_jsonable(data), default=str))
        return 0
    t = Table("figure", *(r["run_id"] for r in data["runs"]))
    for row in data["rows"]:
        if all(v is None for v in row["values"]):
            continue
        cells = [fmt(row["values"][0])]
        for v, d in zip(row["values"][1:], row["delta_pct"][1:], strict=True):
            cells.append(fmt(v) + (f" ({d:+.1f}%)" if d is not None else ""))
        t.add_row(row["figure"], *cells)
    console.print(t)
    return 0


def cmd_pareto(args: argparse.Namespace) -> int:
    from wattlab.sessions.analysis import pareto_runs

    objectives = [o.strip() for o in args.objectives.split(",") if o.strip()]
    data = pareto_runs(_store(args), objectives, session_id=args.session)
    if args.json:
        print(json.dumps(to_jsonable(data), default=str))
        return 0
    cols = ["run_id", "engine", "model", "quant", "batch_size", *(o["column"] for o in data["objectives"])]
    console.print(
        _table(
            data["front"],
            cols,
            title=f"Pareto front over {', '.join(objectives)} "
            f"({len(data['front'])} of {data['considered']} runs)",
        )
    )
    if data.get("excluded"):
        console.print(f"[dim]{data['excluded']} run(s) lack one of these figures and were left out[/]")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from wattlab.sessions.queries import export

    out = Path(args.out or f"wattlab-{args.table}.{args.format}")
    path = export(_store(args), args.format, out, table=args.table, session_id=args.session)
    print(path)
    return 0


def cmd_sql(args: argparse.Namespace) -> int:
    from wattlab.sessions.queries import run_sql

    cols, rows = run_sql(_store(args), args.query)
    if args.json:
        print(json.dumps(to_jsonable([dict(zip(cols, r, strict=True)) for r in rows]), default=str))
    else:
        t = Table(*cols)
        for r in rows:
            t.add_row(*(fmt(v) for v in r))
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
            t.add_row(
                kind[:-1],
                item["name"],
                "[green]yes[/]" if item["available"] else "[red]no[/]",
                item.get("detail") or "",
                item.get("fix") or "",
            )
    console.print(t)
    for key in ("data_dir", "database", "carbon"):
        console.print(f"{key}: {report[key]}")
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
    from wattlab.sessions.report import write_report

    paths = write_report(_store(args), args.session, Path(args.out), baseline=args.baseline)
    for p in paths:
        print(p)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use the `wattlab` command")
