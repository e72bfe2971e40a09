"""`wattlab`: the console (default) and the scriptable commands.

Keep this module light: `wattlab --help` must not import torch, vllm, llama_cpp, pynvml or jtop
(a test checks it). Every command imports what it needs when it runs.

Exit codes: 0 success; 1 a run failed or was interrupted; 2 bad input or an unusable setup
(one message naming the problem and the fix, no traceback; WATTLAB_DEBUG=1 shows it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from wattlab import __version__
from wattlab.engines.levers import SPECULATIVE_HELP, TRANSFORM_HELP
from wattlab.errors import WattlabError

RUN_JSON_KEYS = [
    "run_id",
    "session_id",
    "status",
    "error",
    "error_fix",
    "engine",
    "engine_version",
    "model",
    "quant",
    "device",
    "devices",
    "mode",
    "workload",
    "task",
    "batch_size",
    "input_tokens",
    "output_tokens",
    "requests",
    "requests_ok",
    "rate",
    "decoding",
    "transform",  # the levers (engines/levers.py); null where unset
    "speculative",
    "spec_draft_tokens",
    "spec_accepted_tokens",
    "spec_acceptance_rate",
    "spec_tokens_per_step",
    "power_limit_w",
    "sm_clock_mhz",
    "mem_clock_mhz",
    "power_violation_s",
    "thermal_violation_s",
    "duration_s",
    "load_s",
    "load_energy_j",
    "tokens_in",
    "tokens_out",
    "throughput_tok_s",
    "total_tok_s",
    "requests_per_s",
    "ttft_p50_s",
    "ttft_p90_s",
    "ttft_p99_s",
    "ttft_basis",  # which TTFT the ttft_* headline is: "service" (offline) | "client" (online)
    "ttft_client_p50_s",
    "ttft_client_p90_s",
    "ttft_client_p99_s",
    "ttft_service_p50_s",
    "ttft_service_p90_s",
    "ttft_service_p99_s",
    "queue_p50_s",
    "queue_p90_s",
    "queue_p99_s",
    "tpot_p50_s",
    "tpot_p90_s",
    "tpot_p99_s",
    "itl_p50_s",
    "e2e_p50_s",
    "e2e_p90_s",
    "e2e_p99_s",
    "energy_j",
    "energy_net_j",
    "energy_method",
    "energy_coverage",
    "energy_domains",
    "j_per_token",
    "j_per_token_net",
    "steady_j_per_token",
    "j_per_request",
    "tokens_per_j",
    "wh_per_1k_requests",
    "gco2e",
    "gco2e_per_request",
    "gco2e_per_1k_requests",
    "carbon_g_per_kwh",
    "carbon_source",
    "pue",
    "mean_power_w",
    "peak_power_w",
    "util_mean_pct",
    "peak_mem_mib",
    "peak_mem_kind",
    "quality",
    "quality_metric",
    "green_index",
    "green_index_inputs",
    "flags",
    "overlap",
    "energy",
]


def _add_db(p: argparse.ArgumentParser, top: bool = False) -> None:
    # SUPPRESS on subcommands, so `wattlab --db X ls` and `wattlab ls --db X` both work.
    p.add_argument(
        "--db",
        default=None if top else argparse.SUPPRESS,
        help="DuckDB file (default: $WATTLAB_HOME or $XDG_DATA_HOME/wattlab/wattlab.duckdb)",
    )


def _add_session_settings(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("measurement")
    g.add_argument("--meters", default="auto", help="auto, or a list like nvml,rapl / estimate / jetson")
    g.add_argument("--gpus", help="NVML GPU indices or UUIDs to meter, comma-separated")
    g.add_argument("--tdp-w", type=float, help="CPU TDP in W for the estimate meter")
    g.add_argument("--idle-s", type=float, default=2.0, help="idle baseline before the run (s)")
    g.add_argument("--country", help="ISO country code for grid carbon intensity (e.g. FRA)")
    g.add_argument("--intensity", type=float, help="fixed grid intensity, gCO2e/kWh")
    g.add_argument("--pue", type=float, default=1.0, help="data-centre PUE factor")


def build_parser() -> argparse.ArgumentParser:
    from wattlab.engines import DEFAULT_ENGINE, engine_names  # light: the engines' specs only

    parser = argparse.ArgumentParser(
        prog="wattlab",
        description="Measure what LLM inference costs in energy, time and quality. "
        "With no command, opens the console.",
    )
    parser.add_argument("--version", action="version", version=f"wattlab {__version__}")
    _add_db(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("console", help="open the console (the default)")
    _add_db(p)

    p = sub.add_parser("run", help="run one configuration and print its figures")
    p.add_argument("--engine", default=DEFAULT_ENGINE, help=" | ".join(engine_names()))
    p.add_argument("--model", default=None, help="catalog name, local path, hub id or random:<arch>")
    p.add_argument("--quant", help="GGUF type (Q4_1, Q8_0...), dtype (fp32, bf16...) or int8wo, int4wo...")
    p.add_argument("--device", default="auto", help="cpu | cuda | cuda:N | auto")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--input-tokens", type=int, default=128)
    p.add_argument("--output-tokens", type=int)
    p.add_argument("--requests", type=int, help="number of requests (default: one batch)")
    p.add_argument("--mode", default="offline", choices=["offline", "online"])
    p.add_argument("--rate", type=float, help="online: arrivals per second (Poisson)")
    p.add_argument(
        "--burstiness", type=float, default=1.0, help="online: gamma shape of the gaps (1 = Poisson)"
    )
    p.add_argument("--max-concurrency", type=int)
    p.add_argument("--decoding", default="greedy", choices=["greedy", "sample", "beam"])
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--num-beams", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prompts", help="JSONL prompt file (workload: prompts)")
    p.add_argument("--task", help="a task name (see `wattlab tasks`)")
    p.add_argument("--task-file", help="a local task file")
    p.add_argument("--task-format", help="squad | jsonl-summary | tsv-label | text")
    p.add_argument("--limit", type=int, help="task items to run")
    p.add_argument(
        "--warmup", type=int, help="warmup requests before the measured window (default: one batch)"
    )
    p.add_argument("--timeout", type=float, help="seconds before the engine is stopped and the run failed")
    levers = p.add_argument_group("levers (each refused before the run where the engine or device lacks it)")
    levers.add_argument("--transform", help=f"model transformation: {TRANSFORM_HELP}")
    levers.add_argument("--speculative", help=f"speculative decoding: {SPECULATIVE_HELP}")
    levers.add_argument("--power-limit-w", type=float, help="GPU power cap for the run (restored after)")
    levers.add_argument("--sm-clock-mhz", type=int, help="lock the GPU SM clock for the run (restored after)")
    levers.add_argument("--mem-clock-mhz", type=int, help="lock the GPU memory clock (restored after)")
    p.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="engine option (repeatable), e.g. n_gpu_layers=99 or max_num_seqs=64",
    )
    p.add_argument("--json", action="store_true", help="print the run's figures as one JSON object")
    p.add_argument(
        "--quiet", action="store_true", help="no progress on stderr (phase, tokens, ETA); errors still show"
    )
    p.add_argument(
        "--wait",
        action="store_true",
        help="when another session is measuring on these devices, queue behind it (default: refuse)",
    )
    _add_session_settings(p)
    _add_db(p)

    p = sub.add_parser("sweep", help="run a TOML sweep (a grid of runs) as one session")
    p.add_argument("file", help="sweep TOML file")
    p.add_argument(
        "--detach", action="store_true", help="run in the background; follow with `wattlab attach`"
    )
    p.add_argument("--new", action="store_true", help="start a new session even if an unfinished one exists")
    p.add_argument("--resume", metavar="SESSION", help="resume this session (finished runs are skipped)")
    p.add_argument(
        "--cluster", metavar="ADDRESS", help="run on a Ray cluster, e.g. ray://HEAD:10001 (wattlab[ray])"
    )
    p.add_argument("--quiet", action="store_true", help="no progress display; the summary line still prints")
    p.add_argument(
        "--no-wait",
        action="store_true",
        help="refuse, instead of queueing, when another session is measuring on these devices",
    )
    _add_db(p)

    p = sub.add_parser("cluster", help="a Ray cluster for sweeps: status, up --local N, down")
    p.add_argument("action", choices=["status", "up", "down"])
    p.add_argument("--cluster", metavar="ADDRESS", help="the cluster (status; default: the local one)")
    p.add_argument("--local", type=int, metavar="N", help="up: a head and N worker nodes on this box")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("attach", help="follow a running session (default: the newest)")
    p.add_argument("session", nargs="?")
    _add_db(p)

    p = sub.add_parser("ls", help="list sessions, or the runs of one")
    p.add_argument("session", nargs="?")
    p.add_argument("--json", action="store_true")
    _add_db(p)

    p = sub.add_parser("show", help="one run's figures and how each was obtained")
    p.add_argument("run")
    p.add_argument("--json", action="store_true")
    _add_db(p)

    p = sub.add_parser("compare", help="runs side by side, with %% change against the first")
    p.add_argument("runs", nargs="+")
    p.add_argument("--json", action="store_true")
    _add_db(p)

    p = sub.add_parser("pareto", help="the non-dominated runs over 2 or 3 objectives")
    p.add_argument("--objectives", default="j_per_token,e2e_p50_s", help="e.g. j_per_token,e2e_p50_s,quality")
    p.add_argument("--session", help="only this session's runs")
    p.add_argument("--json", action="store_true")
    _add_db(p)

    p = sub.add_parser("export", help="write runs (or another table) as csv, parquet or json")
    p.add_argument(
        "--format", choices=["csv", "parquet", "json"], help="default: --out's extension, else csv"
    )
    p.add_argument("--table", default="runs")
    p.add_argument("--session")
    p.add_argument(
        "--out",
        metavar="PATH",
        help="output file; its folder must exist; never a .duckdb file (default: ./wattlab-<table>.<format>)",
    )
    _add_db(p)

    p = sub.add_parser(
        "sql",
        help="run one read-only query (SELECT, WITH, SHOW, DESCRIBE...) on the database; no file access",
    )
    p.add_argument("query", help="one read statement; writing files is `wattlab export`'s job")
    p.add_argument("--json", action="store_true")
    _add_db(p)

    p = sub.add_parser("doctor", help="what this box can measure and run, and how to fix what it can't")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("tasks", help="the quality tasks and their metrics")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("report", help="write a Markdown + HTML guidelines report for a session")
    p.add_argument("session", nargs="?")
    p.add_argument("--out", default="wattlab-report", help="output directory")
    p.add_argument(
        "--baseline",
        help="the run its workload bin is compared against (default per bin: transformers fp32 batch 1, "
        "else the bin's highest-J/token run)",
    )
    p.add_argument(
        "--family",
        action="append",
        metavar="TEACHER,STUDENT,...",
        help="your own teacher/student models (paths or names as run), teacher first; repeatable. "
        "Catalog families (Llama 3, Qwen2.5, SmolLM2) are recognised by name",
    )
    from wattlab.cli_advise import add_parser as add_advise_parser  # light: argparse only
    from wattlab.cli_advise import add_slo_arguments

    add_slo_arguments(p)  # the report's "SLO advice" table
    _add_db(p)

    add_advise_parser(sub)

    p = sub.add_parser("_runner")  # the detached sweep process; no help, so it stays unlisted
    p.add_argument("file")
    p.add_argument("--session", required=True)
    p.add_argument("--no-wait", action="store_true")
    _add_db(p)
    return parser


def _options(pairs: list[str]) -> dict[str, Any]:
    from wattlab.errors import ConfigError

    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--option {pair!r} is not KEY=VALUE", fix="e.g. --option n_gpu_layers=99")
        key, value = pair.split("=", 1)
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def cmd_run(args: argparse.Namespace) -> int:
    from wattlab.sessions.plan import preflight
    from wattlab.sessions.runner import Runner
    from wattlab.sessions.spec import DEFAULT_MODEL, SessionSettings, Sweep, make_spec
    from wattlab.sessions.store import Store

    values: dict[str, Any] = {
        "engine": args.engine,
        "model": args.model or DEFAULT_MODEL,
        "quant": args.quant,
        "device": args.device,
        "batch_size": args.batch_size,
        "input_tokens": args.input_tokens,
        "output_tokens": args.output_tokens,
        "requests": args.requests,
        "mode": args.mode,
        "rate": args.rate,
        "burstiness": args.burstiness,
        "max_concurrency": args.max_concurrency,
        "decoding": args.decoding,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "top_k": args.top_k,
        "num_beams": args.num_beams,
        "seed": args.seed,
        "task": args.task,
        "task_file": args.task_file,
        "task_format": args.task_format,
        "limit": args.limit,
        "warmup_requests": args.warmup,
        "timeout_s": args.timeout,
        "options": _options(args.option),
        "transform": args.transform,
        "speculative": args.speculative,
        "power_limit_w": args.power_limit_w,
        "sm_clock_mhz": args.sm_clock_mhz,
        "mem_clock_mhz": args.mem_clock_mhz,
    }
    if args.prompts:
        values.update(workload="prompts", prompts_file=args.prompts)
    spec = make_spec(values)
    settings = SessionSettings(
        idle_s=args.idle_s,
        country=args.country,
        intensity_g_per_kwh=args.intensity,
        pue=args.pue,
        meters=args.meters,
        gpus=args.gpus.split(",") if args.gpus else None,
        tdp_w=args.tdp_w,
    )
    sweep = Sweep(session=settings, runs=[(spec, 0)], source="wattlab run")
    preflight(sweep)  # bad input is refused here: no session, no idle baseline, nothing recorded
    from wattlab.cli_views import SweepProgress

    # Progress (phase, tokens, ETA) goes to stderr, so stdout stays pure JSON with --json.
    progress = SweepProgress(1, single=True, quiet=args.quiet)
    runner = Runner(sweep, store=Store(args.db), kind="run", echo=progress.on_event, wait=args.wait)
    with progress:
        results = runner.run()
    note = runner.deferral_note()  # a locked database defers the commit: say so, even with --json
    if note:
        print(note, file=sys.stderr)
    if not results:
        print("interrupted before the run started", file=sys.stderr)
        return 1
    result = results[-1]
    if args.json:
        from wattlab.analysis.queries import to_jsonable

        out = {k: result[k] for k in RUN_JSON_KEYS}
        # `quality` is every metric of the task ({metric: value}); `quality_metric` names the primary one.
        out["quality"] = result.quality_metrics
        out["commit"] = runner.commit_state  # "committed", or "deferred" to the next command
        print(json.dumps(to_jsonable(out), default=str))
    else:
        from wattlab.cli_views import print_run

        print_run(result)
    return 0 if result.status == "finished" else 1


def cmd_sweep(args: argparse.Namespace) -> int:
    from wattlab.sessions.plan import preflight
    from wattlab.sessions.runner import Runner, new_session_id
    from wattlab.sessions.spec import load_sweep
    from wattlab.sessions.store import Store

    sweep = load_sweep(args.file)
    cluster = args.cluster or sweep.session.cluster
    if cluster:  # the cluster's own preflight runs on every node
        from wattlab.cli_cluster import cmd_cluster_sweep

        return cmd_cluster_sweep(args, sweep, str(cluster))
    # Refused here, in the foreground (also for --detach): before any database, session or spool.
    preflight(sweep)
    store = Store(args.db)
    session_id = args.resume
    if session_id is not None:
        from wattlab.sessions.spool import Spool

        if Spool(session_id).runner_alive():
            from wattlab.errors import ConfigError

            raise ConfigError(
                f"session {session_id} is still running: its runner is at work",
                fix=f"follow it with `wattlab attach {session_id}`, or stop it before resuming it",
            )
    if session_id is None and not args.new:
        session_id = _unfinished_session(store, sweep.hash())
        if session_id:
            print(
                f"resuming unfinished session {session_id} (finished runs are skipped; --new starts afresh)"
            )
    session_id = session_id or new_session_id()
    if args.no_wait:  # refused here, in the foreground, also for --detach
        from wattlab.sessions.locks import DeviceLocks, busy_error, session_devices

        blockers = DeviceLocks(session_devices(s for s, _ in sweep.runs), session_id).blockers()
        if blockers:
            raise busy_error(blockers)
    if args.detach:
        from wattlab.sessions.launch import start_detached

        log = start_detached(args.file, session_id=session_id, db=args.db, no_wait=args.no_wait)
        print(f"session {session_id}: {len(sweep.runs)} runs started in the background")
        print(f"follow it: wattlab attach {session_id}   (log: {log})")
        return 0
    from wattlab.cli_views import SweepProgress, session_summary

    runner = Runner(sweep, store=store, session_id=session_id, wait=not args.no_wait)
    with SweepProgress(len(sweep.runs), quiet=args.quiet) as progress:
        runner.echo = progress.on_event
        results = runner.run()
    failed = [r for r in results if r.status != "finished"]
    # the last attempt of each run decides (a resumed session retries interrupted ones)
    last = {r.seq: str(r.status) for r in results}
    print(
        f"session {session_id} "
        + session_summary(runner.status, len(sweep.runs), len(failed), list(last.values()))
    )
    note = runner.deferral_note()
    if note:
        print(note, file=sys.stderr)
    return 1 if failed or runner.status != "finished" else 0


def _unfinished_session(store: Any, sweep_hash: str) -> str | None:
    """The newest unfinished session of this sweep, unless its runner is still at work (running or
    queued): launching the same file twice makes a second session, never two runners on one."""
    from wattlab.sessions.spool import Spool

    rows = store.query(
        "SELECT session_id FROM sessions WHERE sweep_hash = ? AND status <> 'finished' "
        "ORDER BY created_at DESC LIMIT 1",
        [sweep_hash],
    )[1]
    return rows[0][0] if rows and not Spool(rows[0][0]).runner_alive() else None


def cmd_runner(args: argparse.Namespace) -> int:
    from wattlab.sessions.launch import log_printer
    from wattlab.sessions.runner import Runner
    from wattlab.sessions.spec import load_sweep
    from wattlab.sessions.store import Store

    # stdout is the session's log file (start_detached): the runner's progress goes there, flushed.
    echo = log_printer()
    runner = Runner(
        load_sweep(args.file), store=Store(args.db), session_id=args.session, echo=echo, wait=not args.no_wait
    )
    results = runner.run()
    failed = [r for r in results if r.status != "finished"]
    print(f"session {args.session} {runner.status}: {len(results) - len(failed)} finished, {len(failed)} not")
    note = runner.deferral_note()
    if note:
        print(note)
    sys.stdout.flush()
    return 0 if runner.status == "finished" and not failed else 1


def cmd_advise(args: argparse.Namespace) -> int:
    from wattlab.cli_advise import cmd_advise as advise

    return advise(args)


def cmd_console(args: argparse.Namespace) -> int:
    from wattlab.app.main import run_console

    return run_console(db=args.db)


def cmd_cluster(args: argparse.Namespace) -> int:
    from wattlab.cli_cluster import cmd_cluster as run

    return run(args)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = args.command or "console"
    handlers = {
        "console": cmd_console,
        "run": cmd_run,
        "sweep": cmd_sweep,
        "_runner": cmd_runner,
        "cluster": cmd_cluster,
        "advise": cmd_advise,
    }
    try:
        if command in handlers:
            return handlers[command](args)
        from wattlab import cli_views

        return getattr(cli_views, f"cmd_{command}")(args)
    except WattlabError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.fix:
            print(f"  fix: {exc.fix}", file=sys.stderr)
        if os.environ.get("WATTLAB_DEBUG"):
            raise
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
