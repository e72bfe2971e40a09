"""Check wattlab's window energies against an outside NVML log (benchmarks/nvml_logger.py).

    python benchmarks/reconcile.py --db gpu_study.duckdb --log nvml_log.jsonl [--session S] [--json OUT]
        [--windows measured,load,warmup]

For every run (of one session, or of every session the log covers) and window, it takes wattlab's
energy of the GPU domains (run_energy rows: domain gpuN is NVML index N) and the same window's edges
(runs.t0_ns/t1_ns for the measured window, the load_/warmup_start/end marks for the others), then
interpolates the outside log's energy counter linearly at those edges and differences it, per GPU.
Both clocks are time.monotonic_ns() (system-wide on Linux), so no alignment is needed.

Per window it reports wattlab J, outside-log J, the difference % (100 x (wattlab - log) / log), the
window length, and flags: `short` (under 1 s: the 1% target does not apply, since NVML's counter
advances in ~100 ms steps), `not-in-log` (an edge outside the log, or a GPU not logged), `log-gap`
(the log readings around an edge are more than 3 periods apart). `step_pct` is 100 x 0.1 s / window:
the difference one counter step at one edge can explain.

Exit status: 0 when every window of 1 s or more is within --tolerance (default 1%), 1 otherwise,
2 when nothing could be compared.
"""

from __future__ import annotations

import argparse
import bisect
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

NS = 1_000_000_000
MIN_WINDOW_S = 1.0  # the 1% target applies to windows at least this long
COUNTER_STEP_S = 0.1  # NVML's energy counter updates every ~100 ms (H100, H200)


# --- the outside log -------------------------------------------------------------------------------
@dataclass
class CounterLog:
    """One GPU's counter readings from the log: times (ns) and cumulative energy (J), monotonic."""

    t: list[int] = field(default_factory=list)
    e_j: list[float] = field(default_factory=list)
    errors: int = 0
    resets: int = 0


@dataclass
class OutsideLog:
    header: dict[str, Any]
    gpus: dict[int, CounterLog]

    @property
    def period_ns(self) -> int:
        return round(NS / float(self.header.get("hz") or 10.0))

    def energy_j(self, gpu: int, t0: int, t1: int) -> tuple[float | None, list[str]]:
        """The logged energy of one GPU between t0 and t1 (J), with flags; None when not bracketed."""
        log = self.gpus.get(gpu)
        if log is None or len(log.t) < 2:
            return None, ["not-in-log"]
        flags: list[str] = []
        values = []
        for t in (t0, t1):
            value, gap = interpolate(log.t, log.e_j, t)
            if value is None:
                return None, ["not-in-log"]
            if gap > 3 * self.period_ns:
                flags.append("log-gap")
            values.append(value)
        return values[1] - values[0], sorted(set(flags))


def read_log(path: str | Path) -> OutsideLog:
    """Parse a logger file; a truncated last line (the logger killed mid-write) is skipped."""
    header: dict[str, Any] | None = None
    raw: dict[int, list[tuple[int, int]]] = {}
    errors: dict[int, int] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "nvml_logger" in item:
                header = item
            elif "err" in item:
                errors[int(item["g"])] = errors.get(int(item["g"]), 0) + 1
            elif "e" in item:
                raw.setdefault(int(item["g"]), []).append((int(item["t"]), int(item["e"])))
    if header is None:
        raise SystemExit(
            f"reconcile: {path} has no nvml_logger header. Fix: pass a file nvml_logger.py wrote"
        )
    gpus = {}
    for gpu, readings in raw.items():
        readings.sort()
        log = CounterLog(errors=errors.get(gpu, 0))
        offset = 0
        last: int | None = None
        for t, mj in readings:
            if last is not None and mj < last:
                offset += last  # the driver reloaded and the counter restarted: keep it monotonic
                log.resets += 1
            last = mj
            log.t.append(t)
            log.e_j.append((mj + offset) / 1000.0)
        gpus[gpu] = log
    return OutsideLog(header, gpus)


def interpolate(ts: Sequence[int], vs: Sequence[float], t: int) -> tuple[float | None, int]:
    """(value at t, linearly interpolated; the span of the bracketing readings in ns)."""
    i = bisect.bisect_left(ts, t)
    if i < len(ts) and ts[i] == t:
        return vs[i], 0
    if i == 0 or i == len(ts):
        return None, 0
    ta, tb = ts[i - 1], ts[i]
    return vs[i - 1] + (vs[i] - vs[i - 1]) * (t - ta) / (tb - ta), tb - ta


# --- wattlab's side ---------------------------------------------------------------------------------
@dataclass
class Window:
    run_id: str
    session_id: str
    label: str
    window: str
    t0_ns: int
    t1_ns: int
    wattlab_j: float | None
    gpus: list[int]
    method: str | None


def windows_from_db(db: str | Path, session: str | None, names: Iterable[str]) -> list[Window]:
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        where, params = ("WHERE r.session_id = ?", [session]) if session else ("", [])
        runs = con.execute(
            "SELECT r.run_id, r.session_id, r.engine, r.model, coalesce(r.quant, ''), r.batch_size, r.mode, "
            f"r.rate, r.t0_ns, r.t1_ns FROM runs r {where} ORDER BY r.session_id, r.seq, r.run_id",
            params,
        ).fetchall()
        energy: dict[tuple[str, str], list[tuple[str, float | None, str]]] = {}
        for run_id, window, domain, joules, method in con.execute(
            "SELECT run_id, window_name, domain_id, energy_j, method FROM run_energy "
            "WHERE domain_id LIKE 'gpu%'"
        ).fetchall():
            energy.setdefault((run_id, window), []).append((domain, joules, method))
        marks: dict[tuple[str, str], int] = {}
        for run_id, name, t in con.execute(
            "SELECT run_id, name, t_ns FROM marks WHERE run_id IS NOT NULL ORDER BY t_ns"
        ).fetchall():
            marks[(run_id, name)] = int(t)  # the last of each name, as the runner takes it
    finally:
        con.close()
    out = []
    for run_id, session_id, engine, model, quant, bs, mode, rate, t0, t1 in runs:
        label = f"{engine} {model}{'/' + quant if quant else ''} bs{bs} {mode}" + (
            f" {rate:g}/s" if rate else ""
        )
        for name in names:
            if name == "measured":
                edges = (t0, t1)
            else:
                edges = (marks.get((run_id, f"{name}_start")), marks.get((run_id, f"{name}_end")))
            rows = energy.get((run_id, name), [])
            if edges[0] is None or edges[1] is None or not rows:
                continue
            joules = [j for _, j, _ in rows]
            total = None if any(j is None for j in joules) else sum(j for j in joules if j is not None)
            methods = sorted({m for _, _, m in rows if m})
            gpus = sorted(int(d.removeprefix("gpu")) for d, _, _ in rows if d.removeprefix("gpu").isdigit())
            out.append(
                Window(
                    run_id,
                    session_id,
                    label,
                    name,
                    int(edges[0]),
                    int(edges[1]),
                    total,
                    gpus,
                    ",".join(methods),
                )
            )
    return out


# --- the comparison ---------------------------------------------------------------------------------
@dataclass
class Row:
    run_id: str
    label: str
    window: str
    window_s: float
    wattlab_j: float | None
    log_j: float | None
    diff_pct: float | None
    step_pct: float
    method: str | None
    gpus: list[int]
    flags: list[str]


def compare(window: Window, log: OutsideLog) -> Row:
    seconds = (window.t1_ns - window.t0_ns) / NS
    flags: set[str] = set()
    log_j: float | None = 0.0
    for gpu in window.gpus:
        part, part_flags = log.energy_j(gpu, window.t0_ns, window.t1_ns)
        flags.update(part_flags)
        log_j = None if part is None or log_j is None else log_j + part
    if not window.gpus:
        log_j = None
        flags.add("no-gpu-domain")
    if seconds < MIN_WINDOW_S:
        flags.add("short")
    diff = None
    if log_j is not None and window.wattlab_j is not None and log_j > 0:
        diff = 100.0 * (window.wattlab_j - log_j) / log_j
    step = 100.0 * COUNTER_STEP_S / seconds if seconds > 0 else float("inf")
    return Row(
        window.run_id,
        window.label,
        window.window,
        seconds,
        window.wattlab_j,
        log_j,
        diff,
        step,
        window.method,
        window.gpus,
        sorted(flags),
    )


def summarize(rows: list[Row], tolerance_pct: float) -> dict[str, Any]:
    compared = [r for r in rows if r.diff_pct is not None]
    long = [r for r in compared if r.window_s >= MIN_WINDOW_S]
    short = [r for r in compared if r.window_s < MIN_WINDOW_S]

    def stats(group: list[Row]) -> dict[str, Any]:
        diffs = [abs(r.diff_pct or 0.0) for r in group]
        return {
            "windows": len(group),
            "within_tolerance": sum(d <= tolerance_pct for d in diffs),
            "max_abs_diff_pct": max(diffs, default=None),
            "mean_abs_diff_pct": sum(diffs) / len(diffs) if diffs else None,
        }

    return {
        "tolerance_pct": tolerance_pct,
        "min_window_s": MIN_WINDOW_S,
        "windows_at_least_1s": stats(long),
        "windows_under_1s": stats(short),
        "not_compared": len(rows) - len(compared),
        "ok": bool(long) and all(abs(r.diff_pct or 0.0) <= tolerance_pct for r in long),
    }


def reconcile(
    db: str | Path,
    log_path: str | Path,
    session: str | None = None,
    windows: Sequence[str] = ("measured",),
    tolerance_pct: float = 1.0,
) -> dict[str, Any]:
    log = read_log(log_path)
    rows = [compare(w, log) for w in windows_from_db(db, session, windows)]
    return {
        "db": str(db),
        "log": str(log_path),
        "session": session,
        "log_header": log.header,
        "log_errors": {g: c.errors for g, c in log.gpus.items()},
        "log_resets": {g: c.resets for g, c in log.gpus.items()},
        "rows": [asdict(r) for r in rows],
        "summary": summarize(rows, tolerance_pct),
    }


def _fmt(value: float | None, spec: str) -> str:
    # "-" for a missing figure, padded to the column's width
    return format(value, spec) if value is not None else "-".rjust(int(spec.lstrip("+").split(".")[0] or 0))


def print_table(report: dict[str, Any], file: Any = sys.stdout) -> None:
    print(
        f"{'run':<18} {'window':<8} {'what':<44} {'s':>7} {'wattlab J':>10} {'log J':>10} {'diff %':>7} "
        f"{'step %':>6}  flags",
        file=file,
    )
    for r in report["rows"]:
        print(
            f"{r['run_id'][-18:]:<18} {r['window']:<8} {r['label'][:44]:<44} {r['window_s']:>7.2f} "
            f"{_fmt(r['wattlab_j'], '10.1f')} {_fmt(r['log_j'], '10.1f')} {_fmt(r['diff_pct'], '+7.2f')} "
            f"{r['step_pct']:>6.1f}  {','.join(r['flags'])}",
            file=file,
        )
    s = report["summary"]
    long, short = s["windows_at_least_1s"], s["windows_under_1s"]
    print(
        f"windows >= 1 s: {long['within_tolerance']}/{long['windows']} within {s['tolerance_pct']}% "
        f"(max |diff| {_fmt(long['max_abs_diff_pct'], '.2f')}%); under 1 s: {short['windows']} "
        f"(max |diff| {_fmt(short['max_abs_diff_pct'], '.2f')}%); not compared: {s['not_compared']}",
        file=file,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", required=True, help="the DuckDB file the sweep wrote")
    ap.add_argument("--log", required=True, help="the JSONL file nvml_logger.py wrote")
    ap.add_argument("--session", help="only this session (default: every session in the DB)")
    ap.add_argument("--json", type=Path, help="also write the report as JSON here")
    ap.add_argument("--windows", default="measured", help="comma-separated: measured, load, warmup")
    ap.add_argument("--tolerance", type=float, default=1.0, help="target |diff| in %% (default 1)")
    args = ap.parse_args(argv)
    for what, path in (("--db", args.db), ("--log", args.log)):
        if not Path(path).is_file():
            raise SystemExit(f"reconcile: {what} {path} does not exist. Fix: give the file's path")
    names = [w.strip() for w in args.windows.split(",") if w.strip()]
    unknown = set(names) - {"measured", "load", "warmup"}
    if unknown:
        raise SystemExit(
            f"reconcile: unknown window(s) {sorted(unknown)}. Fix: --windows measured,load,warmup"
        )
    report = reconcile(args.db, args.log, args.session, names, args.tolerance)
    print_table(report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    if not any(r["diff_pct"] is not None for r in report["rows"]):
        print("reconcile: no window could be compared (no GPU runs inside the log's span)", file=sys.stderr)
        return 2
    return 0 if report["summary"]["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
