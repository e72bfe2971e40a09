"""`wattlab advise`: per workload bin, the lowest-energy configuration that meets the SLO
(`wattlab.analysis.advise` has the definitions). Light at import: `wattlab --help` builds its parser."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "advise",
        help="per workload bin, the lowest-energy configuration meeting latency/quality bounds (SLO)",
        description="Per workload bin: the configuration with the lowest energy per SLO-meeting request "
        "among those meeting every bound, its goodput, and what the next-best costs. Unstable runs "
        "(ML.ENERGY's rule: steady state too short, or the batch never filled) are left out unless "
        "--include-unstable.",
    )
    p.add_argument("session", nargs="?", help="default: the newest session with finished runs")
    add_slo_arguments(p)
    p.add_argument("--include-unstable", action="store_true", help="consider runs flagged unstable too")
    p.add_argument(
        "--min-steady-s",
        type=float,
        default=None,
        metavar="S",
        help="steady state shorter than this is unstable (default 10, ML.ENERGY's)",
    )
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--db",
        default=argparse.SUPPRESS,
        help="DuckDB file (default: $WATTLAB_HOME or $XDG_DATA_HOME/wattlab/wattlab.duckdb)",
    )


def add_slo_arguments(p: argparse.ArgumentParser) -> None:
    """The SLO bounds, on `wattlab advise` and `wattlab report`."""
    g = p.add_argument_group("SLO bounds (wattlab advise)")
    g.add_argument("--ttft-p90", type=float, metavar="S", help="bound on the p90 time to first token (s)")
    g.add_argument("--tpot-p90", type=float, metavar="S", help="bound on the p90 time per output token (s)")
    g.add_argument("--e2e-p99", type=float, metavar="S", help="bound on the p99 end-to-end latency (s)")
    g.add_argument(
        "--min-quality",
        action="append",
        default=[],
        metavar="METRIC=V",
        help="quality bound, e.g. exact_match=0.3 (perplexity: at most V); repeatable",
    )


def slo_from_args(args: argparse.Namespace) -> Any:
    """The Slo the flags of add_slo_arguments give (bad values refused with a ConfigError)."""
    from wattlab.analysis.advise import make_slo

    return make_slo(args.ttft_p90, args.tpot_p90, args.e2e_p99, args.min_quality)


def cmd_advise(args: argparse.Namespace) -> int:
    from wattlab.analysis import advise as adv
    from wattlab.analysis.queries import resolve_id, to_jsonable
    from wattlab.cli_views import _newest_reportable_session, _store, console, err_console
    from wattlab.errors import ConfigError

    slo = slo_from_args(args)
    min_steady = adv.MIN_STEADY_S if args.min_steady_s is None else args.min_steady_s
    if not min_steady >= 0:
        raise ConfigError(
            f"--min-steady-s must be 0 or more, not {args.min_steady_s}", fix="e.g. --min-steady-s 2"
        )
    store = _store(args)
    if args.session:
        session = resolve_id(store, "sessions", "session_id", args.session)
    else:
        session = _newest_reportable_session(store)
        if not args.json:
            err_console.print(f"advice for session {session} (newest with finished runs)", markup=False)
    with store.reader() as con:
        advice = adv.advise(con, session, slo, args.include_unstable, min_steady_s=min_steady)
    if args.json:
        print(json.dumps(to_jsonable(advice.to_dict()), default=str))
        return 0
    for renderable in render(advice):
        console.print(renderable)
    return 0


def _n(v: float | None, unit: str = "") -> str:
    from wattlab.analysis.report import fmt_num

    return "—" if v is None else f"{fmt_num(v)}{unit}"


def render(advice: Any) -> list[Any]:
    """The advice as rich renderables: a line with the bounds, then one small table per bin. Run ids
    are never cut (one per line); the configuration column wraps instead."""
    from rich.table import Table
    from rich.text import Text

    out: list[Any] = [
        Text(f"SLO: {advice.slo.describe()} · session {advice.session_id}", style="bold"),
        Text(
            "best = lowest J per SLO-meeting request (gross measured-window energy / requests within "
            "every bound); goodput = those requests per second of measured time."
            + ("" if advice.include_unstable else " Unstable configurations are left out."),
            style="dim",
        ),
    ]
    for b in advice.bins:
        t = Table(title=Text(b.label), title_justify="left", show_lines=False, expand=False)
        t.add_column("configuration", ratio=1)
        width = max([len(r) for a in (b.best, b.next_best) if a for r in a.run_ids] + [6])
        t.add_column("run", no_wrap=True, min_width=width)
        t.add_column("goodput/s", justify="right")
        t.add_column("J/SLO req", justify="right")
        t.add_column("met", justify="right")
        for tag, a in (("best", b.best), ("next", b.next_best)):
            if a is None:
                continue
            extra = ""
            if tag == "next" and b.next_extra_pct is not None:
                extra = f" (+{b.next_extra_pct:,.1f}%)"
            t.add_row(
                Text(f"{tag}: {a.levers}" + (" (unstable)" if a.unstable else "")),
                Text("\n".join(a.run_ids)),
                _n(a.goodput_rps),
                Text(f"{_n(a.j_per_slo_request)} {a.energy_method}{extra}"),
                "—" if a.attainment is None else f"{a.attainment:.0%}",
            )
        notes = [f"{b.meeting} of {b.configs} configuration(s) meet every bound"]
        if b.unstable_left_out:
            notes.append(f"{b.unstable_left_out} unstable left out (--include-unstable)")
        if b.best is None:
            notes.append(b.why_none)
        t.caption = Text("; ".join(notes))
        t.caption_justify = "left"
        out.append(t if b.best is not None else Text(f"{b.label}: " + "; ".join(notes)))
    if not advice.bins:
        out.append(Text("no finished run in this session"))
    return out
