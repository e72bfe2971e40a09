"""What a sweep needs before it runs: checks that refuse it early, and the sizes each engine load
must allow (the largest batch and the longest sequence of the runs that share it)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wattlab.errors import ConfigError, DatasetError, WattlabError
from wattlab.sessions.spec import RunSpec, Sweep


@dataclass(frozen=True)
class Problem:
    """One reason a run cannot work: what is wrong, its fix, and the run field at fault (its line)."""

    text: str
    fix: str | None
    key: str | None = None


def preflight(sweep: Sweep) -> None:
    """Refuse a sweep before anything runs (no session, no idle baseline, no spool) when any run
    cannot work, listing EVERY problem at once with the runs it affects, where it is set (the sweep
    file's line, or the `wattlab run` flag) and its fix.

    Checks: engines known and installed, asked only for what they can do; models found and variants
    allowed; engine options; devices present; tasks, task files and prompt files readable and in
    their format; input + output tokens within the model's context and the input longer than the
    chat template. It reads package metadata, GGUF headers, config.json and the workload files:
    no engine is imported, nothing is loaded or downloaded.
    """
    found = check_sweep(sweep)
    if not found:
        return

    def line(problem: Problem, runs: list[int]) -> str:
        which = f"run {_ranges(runs)}: " if len(sweep.runs) > 1 else ""
        where = f" ({sweep.where(problem.key)})" if problem.key else ""
        return f"{which}{problem.text}{where}"

    if len(found) == 1:
        problem, runs = found[0]
        head = f"{sweep.source}: " if sweep.text else ""
        raise ConfigError(head + line(problem, runs), fix=problem.fix, title="Sweep refused")
    what = sweep.source if sweep.text else "this run"
    lines = [f"{what} has {len(found)} problems, so nothing was started:"]
    for problem, runs in found:
        lines.append(f"  - {line(problem, runs)}")
        if problem.fix:
            lines.append(f"      fix: {problem.fix}")
    raise ConfigError("\n".join(lines), fix="each problem's fix is under it", title="Sweep refused")


def check_sweep(sweep: Sweep) -> list[tuple[Problem, list[int]]]:
    """Every problem of the sweep's runs, each once, with the run numbers (1-based) it affects."""
    cache: dict[tuple[Any, ...], Any] = {}
    found: dict[Problem, list[int]] = {}
    for i, (spec, _) in enumerate(sweep.runs, 1):
        for problem in check_run(spec, cache):
            runs = found.setdefault(problem, [])
            if i not in runs:
                runs.append(i)
    return list(found.items())


def check_run(spec: RunSpec, cache: dict[tuple[Any, ...], Any] | None = None) -> list[Problem]:
    """The problems of one run; `cache` shares file reads between the runs of one sweep."""
    from wattlab import engines

    memo: dict[tuple[Any, ...], Any] = {} if cache is None else cache
    engine = engines.registry().get(spec.engine)
    problems: list[Problem] = []
    if engine is None:
        known = ", ".join(engines.engine_names())
        problems.append(Problem(f"unknown engine {spec.engine!r}", f"use one of: {known}", "engine"))
        _workload_problems(spec, memo, problems)
        return problems + _device_problems(spec)
    status = _once(memo, ("status", spec.engine), lambda: engines.status_of(spec.engine))
    if not status.installed:
        problems.append(
            Problem(
                f"the {spec.engine} engine is not installed ({status.reason})",
                f"pip install -e '.[{_extra(engine)}]'",
                "engine",
            )
        )
    kind, needs_logprobs = _workload_problems(spec, memo, problems)
    problems += _ability_problems(spec, engine, needs_logprobs)
    problems += _model_problems(spec, kind, memo)
    problems += _device_problems(spec)
    from wattlab.sessions.speculation import speculation_problems

    problems += speculation_problems(spec, engine)
    from wattlab.sessions.caps import cap_problems

    problems += cap_problems(spec, memo)  # GPU caps: allowed on this box, within the GPU's ranges
    from wattlab.engines.transforms import transform_problems

    problems += [Problem(e.message, e.fix, "transform") for e in transform_problems(spec)]
    return problems


def _once(memo: dict[tuple[Any, ...], Any], key: tuple[Any, ...], fn: Callable[[], Any]) -> Any:
    """fn()'s result or its WattlabError, computed once per key."""
    if key not in memo:
        try:
            memo[key] = fn()
        except WattlabError as exc:
            memo[key] = exc
    return memo[key]


def _extra(engine: Any) -> str:
    from wattlab.engines import has_nvidia_gpu

    return engine.gpu_extra if engine.gpu_extra and has_nvidia_gpu() else engine.extra


def _workload_problems(
    spec: RunSpec, memo: dict[tuple[Any, ...], Any], out: list[Problem]
) -> tuple[str, bool]:
    """Check the task or prompt file; returns (workload kind, whether it needs log-probabilities)."""
    kind = "task" if (spec.task or spec.task_file) else spec.workload
    if kind == "task":
        if not (spec.task or spec.task_file):
            out.append(
                Problem("workload 'task' names no task", "set task = 'qa' (see `wattlab tasks`)", "workload")
            )
            return kind, False
        key = "task_file" if spec.task_file else "task"
        task = _once(memo, ("task", spec.task, spec.task_file, spec.task_format), lambda: _task(spec))
        if isinstance(task, WattlabError):
            out.append(Problem(task.message, task.fix, key))
            return kind, False
        return kind, bool(task)
    if kind == "prompts":
        if not spec.prompts_file:
            fix = "set prompts_file = 'path.jsonl' (wattlab run: --prompts PATH)"
            out.append(Problem("workload 'prompts' names no prompt file", fix, "workload"))
            return kind, False
        from wattlab.workloads.prompts import read_prompt_file

        read = _once(memo, ("prompts", spec.prompts_file), lambda: read_prompt_file(spec.prompts_file or ""))
        if isinstance(read, WattlabError):
            out.append(Problem(read.message, read.fix, "prompts_file"))
    return kind, False


def _task(spec: RunSpec) -> bool:
    """Read and parse the run's task (never downloads one); returns whether it needs log-probs."""
    from wattlab.workloads import load_task
    from wattlab.workloads.tasks.hf import HF_PREFIX, HF_PRESETS

    if spec.task and not spec.task_file and spec.task.startswith(HF_PREFIX):
        import importlib.util

        preset = HF_PRESETS.get(spec.task.removeprefix(HF_PREFIX))
        if preset is None:
            load_task(spec.workload_dict())  # raises the unknown-preset message
        elif importlib.util.find_spec("datasets") is None:
            raise DatasetError(
                f"{spec.task} needs the Hugging Face `datasets` package",
                fix="pip install datasets (on a box that can reach huggingface.co), or download the set "
                "and run it with --task-file PATH --task-format FORMAT",
            )
        return preset is not None and preset.kind == "perplexity"
    return bool(load_task(spec.workload_dict()).needs_logprobs)


def _ability_problems(spec: RunSpec, engine: Any, needs_logprobs: bool) -> list[Problem]:
    """What this run asks of an engine that it cannot do (perplexity, beam search, online serving)."""
    from wattlab.engines import registry

    needs = set()
    if spec.decoding == "beam":
        needs.add("beam")
    if spec.decoding == "sample":
        needs.add("sampling")
    if spec.mode == "online":
        needs.add("online")
    if needs_logprobs:
        needs.add("logprobs")
    out = []
    for need in sorted(needs - engine.abilities):
        able = ", ".join(n for n, e in registry().items() if need in e.abilities)
        what, key = _ABILITIES[need]
        out.append(Problem(f"{spec.engine} has no {what}", f"{what} runs on {able}", key))
    return out


_ABILITIES = {
    "logprobs": ("log-probabilities (perplexity)", "task"),
    "beam": ("beam search", "decoding"),
    "online": ("online serving", "mode"),
    "sampling": ("sampling", "decoding"),
}


def _model_problems(spec: RunSpec, kind: str, memo: dict[tuple[Any, ...], Any]) -> list[Problem]:
    """Model found, variant allowed, options known, and the run's tokens fit the model."""
    from wattlab.engines import models

    out: list[Problem] = []
    found = _once(memo, ("options", spec.engine, spec.device, _json(spec.options)), lambda: _options(spec))
    if isinstance(found, WattlabError):
        out.append(Problem(found.message, found.fix, "options"))
    else:
        out += found
    allowed = _once(
        memo, ("variants", spec.engine, spec.model), lambda: models.variants(spec.model, spec.engine)
    )
    if isinstance(allowed, WattlabError):
        return [*out, Problem(allowed.message, allowed.fix, "model")]
    if spec.quant:  # unknown to the engine, or needs a GPU / a package this run lacks
        from wattlab.engines.quantize import variant_problems

        found = variant_problems(spec.model, spec.engine, spec.quant, run_device_kind(spec))
        out += [Problem(e.message, e.fix, "quant") for e in found]
    limits = _once(
        memo,
        ("limits", spec.engine, spec.model, _json(spec.options)),
        lambda: models.model_limits(spec.model, spec.engine, spec.options),
    )
    if isinstance(limits, WattlabError):
        return [*out, Problem(limits.message, limits.fix, "model")]
    out += _token_problems(spec, kind, limits)
    return out


def run_device_kind(spec: RunSpec) -> str | None:
    """Where the run's engine will run: "cpu", "gpu", or None where the engine decides (llama.cpp
    on `auto`) or the device is a server's."""
    from wattlab.engines import is_served
    from wattlab.engines.models import default_device

    if is_served(spec.engine):
        return None
    device = default_device(spec.engine) if spec.device == "auto" else spec.device
    return "gpu" if device.startswith("cuda") else "cpu" if device == "cpu" else None


def _options(spec: RunSpec) -> list[Problem]:
    """Every problem of the run's engine options: names, types, values, ranges and devices (from
    the engine's spec), and what they ask of this box and of the run (GPUs, batch sizes)."""
    from wattlab.engines import options as engine_options

    device = run_device_kind(spec)
    out = [
        Problem(err.message, err.fix, _option_key(spec, err.message))
        for err in engine_options.problems(spec.engine, dict(spec.options), device)
    ]
    if any(" must be " in p.text for p in out):  # the cross-checks below need well-typed values
        return out
    opts = spec.options
    tp, pp = int(opts.get("tensor_parallel_size", 1)), int(opts.get("pipeline_parallel_size", 1))
    if device == "gpu" and tp * pp > 1:
        out += _gpu_count_problems(spec, tp, pp)
    width = max(spec.batch_size, spec.max_concurrency or 0)
    seqs = opts.get("max_num_seqs")
    if seqs is not None and seqs < width:
        out.append(
            Problem(
                f"max_num_seqs = {seqs} is smaller than the run's batch of {width}: vLLM would queue "
                "the rest, so the run would not measure the batch it names",
                f"use max_num_seqs >= {width}, or batch_size <= {seqs}",
                "options.max_num_seqs",
            )
        )
    tokens = opts.get("max_num_batched_tokens")
    if tokens is not None:
        if tokens < max(seqs or 0, width):
            out.append(
                Problem(
                    f"max_num_batched_tokens = {tokens} is below max_num_seqs ({max(seqs or 0, width)}); "
                    "vLLM refuses that",
                    f"use max_num_batched_tokens >= {max(seqs or 0, width)}",
                    "options.max_num_batched_tokens",
                )
            )
        longest = spec.input_tokens + spec.output_tokens_or_default
        if opts.get("enable_chunked_prefill") is False and tokens < longest:
            out.append(
                Problem(
                    f"max_num_batched_tokens = {tokens} is below the run's sequence of {longest} tokens "
                    "while enable_chunked_prefill is false; vLLM refuses that",
                    f"use max_num_batched_tokens >= {longest}, or enable_chunked_prefill = true",
                    "options.max_num_batched_tokens",
                )
            )
    return out


def _option_key(spec: RunSpec, message: str) -> str:
    """The sweep field a message about an option points at: options.<name> where it names one."""
    for name in sorted(spec.options, key=len, reverse=True):
        if f"{name} " in message or f"{name!r}" in message:
            return f"options.{name}"
    return "options"


def _gpu_count_problems(spec: RunSpec, tp: int, pp: int) -> list[Problem]:
    from wattlab.devices.visible import visible_cuda_count
    from wattlab.engines import nvidia_gpu_count

    nvml = nvidia_gpu_count()
    if nvml == 0:  # the device check already says this box has no GPU
        return []
    visible = visible_cuda_count(nvml)
    first = int(spec.device.split(":")[1]) if spec.device.startswith("cuda:") else 0
    if tp * pp <= visible - first:
        return []
    where = f"from cuda:{first} " if first else ""
    return [
        Problem(
            f"tensor_parallel_size x pipeline_parallel_size = {tp} x {pp} = {tp * pp} GPUs, but "
            f"{visible - first} are visible {where}(NVML and CUDA_VISIBLE_DEVICES)",
            f"keep tensor_parallel_size x pipeline_parallel_size <= {max(1, visible - first)}"
            + (", or start at cuda:0" if first else ""),
            "options.tensor_parallel_size",
        )
    ]


def _token_problems(spec: RunSpec, kind: str, limits: Any) -> list[Problem]:
    out: list[Problem] = []
    ctx = limits.context
    n_out = spec.output_tokens_or_default
    if kind == "synthetic":
        need = spec.input_tokens + n_out
        if ctx and need > ctx:
            out.append(
                Problem(
                    f"{spec.input_tokens} input + {n_out} output tokens = {need} is more than "
                    f"{spec.model}'s context of {ctx} tokens (from {limits.context_source})",
                    f"keep input_tokens + output_tokens <= {ctx}",
                    "input_tokens",
                )
            )
        if spec.chat and limits.template:
            least, exact = template_overhead(limits.template, limits.byte_tokens)
            if spec.input_tokens <= least:
                out.append(
                    Problem(
                        f"input_tokens = {spec.input_tokens} is not longer than the {limits.template} chat "
                        f"template alone ({'' if exact else 'at least '}{least} tokens)",
                        f"use input_tokens > {least}"
                        + ("" if exact else " (the template's exact length depends on the tokenizer)")
                        + ", or chat = false for raw prompts",
                        "input_tokens",
                    )
                )
    elif ctx and spec.output_tokens and spec.output_tokens >= ctx:
        out.append(
            Problem(
                f"output_tokens = {spec.output_tokens} leaves no room for a prompt in {spec.model}'s "
                f"context of {ctx} tokens (from {limits.context_source})",
                f"use output_tokens < {ctx}",
                "output_tokens",
            )
        )
    return out


def _device_problems(spec: RunSpec) -> list[Problem]:
    from wattlab.engines import is_served, nvidia_gpu_count

    device = spec.device
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        return [Problem(f"unknown device {device!r}", "use auto, cpu, cuda or cuda:N", "device")]
    if not device.startswith("cuda") or is_served(spec.engine):  # a server's device is its own
        return []
    count = nvidia_gpu_count()
    if count == 0:
        return [
            Problem(
                f"device {device} asked for, but this box has no NVIDIA GPU (NVML sees none)",
                "use device cpu or auto; `wattlab doctor` shows what this box has",
                "device",
            )
        ]
    index = int(device.split(":")[1]) if ":" in device else 0
    if index >= count:
        return [
            Problem(
                f"device {device} asked for, but this box has {count} GPU(s): cuda:0..cuda:{count - 1}",
                f"use cuda:0..cuda:{count - 1}",
                "device",
            )
        ]
    return []


# Specials like <|im_start|> are one token each; the text between them is at least one token per
# whitespace-separated piece (BPE and SentencePiece never merge across whitespace or specials).
_SPECIAL = re.compile(r"(<\|[^|<>\s]+\|>)")


def template_overhead(template: str, byte_tokens: bool = False) -> tuple[int, bool]:
    """Tokens the chat template adds around a prompt: (count, exact). Without the model's tokenizer
    (which preflight never loads) it is a lower bound; with the byte-level fallback it is exact."""
    from wattlab.engines.chat import render

    marker = "\x00"
    before, after = render([{"role": "user", "content": marker}], template).split(marker)
    if byte_tokens:
        from wattlab.engines.bytetok import ByteTokenizer

        tok = ByteTokenizer()
        return len(tok.encode(before)) + len(tok.encode(after)), True
    return _least_tokens(before) + _least_tokens(after), False


def _least_tokens(text: str) -> int:
    n = 0
    for part in _SPECIAL.split(text):
        if _SPECIAL.fullmatch(part):
            n += 1
        elif part:
            n += max(1, len(part.split()))
    return n


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _ranges(runs: list[int]) -> str:
    """[1, 2, 3, 5] -> "1-3, 5"."""
    parts: list[str] = []
    start = prev = runs[0]
    for n in [*runs[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    return ", ".join(parts)


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
