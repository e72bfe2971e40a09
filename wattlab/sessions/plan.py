"""What a sweep needs before it runs: checks that refuse it early, and the sizes each engine load
must allow (the largest batch and the longest sequence of the runs that share it)."""

from __future__ import annotations

from typing import Any

from wattlab.errors import WattlabError
from wattlab.sessions.spec import RunSpec, Sweep


def preflight(sweep: Sweep) -> None:
    """Refuse a sweep before it starts when a run asks an engine for what it cannot do (perplexity
    without log-probabilities, beam search, online serving). Unknown engines and models fail their
    own run instead, with the reason, and the sweep goes on."""
    from wattlab.engines import ENGINES
    from wattlab.errors import ConfigError

    problems: list[str] = []
    for i, (spec, _) in enumerate(sweep.runs, 1):
        engine = ENGINES.get(spec.engine)
        if engine is None:
            continue
        needs = set()
        if spec.decoding == "beam":
            needs.add("beam")
        if spec.decoding == "sample":
            needs.add("sampling")
        if spec.mode == "online":
            needs.add("online")
        if (spec.task or spec.task_file) and _task_needs_logprobs(spec):
            needs.add("logprobs")
        missing = sorted(needs - engine.abilities)
        if missing:
            what = {
                "logprobs": "log-probabilities (perplexity)",
                "beam": "beam search",
                "online": "online serving",
                "sampling": "sampling",
            }
            problems.append(
                f"run {i} ({spec.label()}): {spec.engine} has no {', '.join(what[m] for m in missing)}"
            )
    if problems:
        able = {
            m: ", ".join(n for n, e in ENGINES.items() if m in e.abilities)
            for m in ("logprobs", "beam", "online", "sampling")
        }
        raise ConfigError(
            "this sweep asks engines for what they cannot do:\n  " + "\n  ".join(problems),
            fix=f"perplexity runs on {able['logprobs']}; beam search on {able['beam']}; "
            f"online mode on {able['online']}",
            title="Impossible configuration",
        )


def _task_needs_logprobs(spec: RunSpec) -> bool:
    from wattlab.workloads import load_task

    try:
        return bool(load_task(spec.workload_dict()).needs_logprobs)
    except WattlabError:
        return False  # a missing task file fails its own run, with the reason


# Task and prompt-file runs learn their prompt lengths only once the engine's tokenizer is loaded,
# so their engine gets a context long enough for the built-in tasks and typical prompt files.
TEXT_WORKLOAD_MAX_TOKENS = 2048


def max_tokens_per_load(runs: list[tuple[RunSpec, int]]) -> dict[tuple[Any, ...], int]:
    """The longest sequence (prompt + output, tokens) any run sharing an engine load needs."""
    out: dict[tuple[Any, ...], int] = {}
    for spec, _ in runs:
        if spec.task or spec.task_file or spec.workload == "prompts":
            need = max(TEXT_WORKLOAD_MAX_TOKENS, (spec.output_tokens or 0) + 1024)
        else:
            need = spec.input_tokens + spec.output_tokens_or_default + 16
        out[spec.load_key()] = max(out.get(spec.load_key(), 0), need)
    return out


def max_batch_per_load(runs: list[tuple[RunSpec, int]]) -> dict[tuple[Any, ...], int]:
    out: dict[tuple[Any, ...], int] = {}
    for spec, _ in runs:
        need = max(spec.batch_size, spec.max_concurrency or 0)
        out[spec.load_key()] = max(out.get(spec.load_key(), 1), need)
    return out
