"""Workloads: what a run asks the engine to do.

A workload is a small dict (from a RunSpec) turned into Requests of token ids inside the engine
worker, where the model's tokenizer lives:

    {"kind": "synthetic", "requests": 8, "input_tokens": 128, "output_tokens": 128, "seed": 0}
    {"kind": "prompts", "path": "prompts.jsonl", "output_tokens": 128, "input_bin": [0, 512]}
    {"kind": "task", "task": "qa", "limit": 20}                   (a built-in or file task)

plus, for online runs, "rate" (requests/s) and "burstiness" (gamma shape; 1 = Poisson).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from wattlab.engines.base import Request
from wattlab.errors import ConfigError, DatasetError
from wattlab.workloads.arrivals import arrival_times

Tokenize = Callable[[str], list[int]]


@dataclass
class BuiltWorkload:
    requests: list[Request]
    meta: dict[str, Any] = field(default_factory=dict)


def load_task(workload: dict[str, Any]) -> Any:
    """The Task object a task workload names (built-in name, or a file with its format)."""
    from wattlab.workloads.tasks import get_task, load_task_file

    if workload.get("task_file"):
        return load_task_file(workload["task_file"], workload.get("task_format") or "")
    return get_task(str(workload["task"]))


def _messages_prompt(messages: list[dict[str, str]], tokenize: Tokenize, template: str | None) -> list[int]:
    if template:
        from wattlab.engines.chat import render

        return tokenize(render(messages, template))
    return tokenize("\n".join(m["content"] for m in messages))


def build_requests(workload: dict[str, Any], tokenize: Tokenize, template: str | None) -> BuiltWorkload:
    kind = workload.get("kind", "synthetic")
    seed = int(workload.get("seed", 0))
    template = template if workload.get("chat", True) else None
    output_tokens = int(workload.get("output_tokens") or 64)
    meta: dict[str, Any] = {"kind": kind}

    if kind == "synthetic":
        from wattlab.workloads.synthetic import synthetic_prompts

        n = int(workload.get("requests") or 1)
        input_tokens = int(workload.get("input_tokens") or 128)
        prompts = synthetic_prompts(n, input_tokens, tokenize, template, seed=seed)
        exact = bool(workload.get("exact_output", True))
        budgets = [(output_tokens, output_tokens if exact else 0)] * n
    elif kind == "prompts":
        from wattlab.workloads.prompts import read_prompt_file

        items = read_prompt_file(workload["path"])
        prompts, budgets = [], []
        lo, hi = workload.get("input_bin") or (0, None)
        for item in items:
            ids = _messages_prompt(item["messages"], tokenize, template)
            if len(ids) < lo or (hi is not None and len(ids) > hi):
                continue
            prompts.append(ids)
            budget = int(item.get("max_tokens") or output_tokens)
            budgets.append((budget, 0))
        limit = workload.get("requests")
        if limit:
            # Cycle through the file when more requests than prompts are asked for.
            if not prompts:
                raise DatasetError(
                    f"no prompt in {workload['path']} falls in input_bin {[lo, hi]}",
                    fix="widen input_bin or use another prompt file",
                )
            prompts = [prompts[i % len(prompts)] for i in range(int(limit))]
            budgets = [budgets[i % len(budgets)] for i in range(int(limit))]
        meta["source"] = str(workload["path"])
    elif kind == "task":
        task = load_task(workload)
        items = task.items(workload.get("limit"))
        budget = int(workload.get("output_tokens") or task.max_new_tokens)
        if task.needs_logprobs:
            prompts = [tokenize(item.text or "") for item in items]
            budgets = [(0, 0)] * len(prompts)
        else:
            prompts = [_messages_prompt(list(item.messages), tokenize, template) for item in items]
            budgets = [(budget, 0)] * len(prompts)
        meta.update(task=task.name, task_kind=task.kind, needs_logprobs=task.needs_logprobs)
    else:
        raise ConfigError(f"unknown workload kind {kind!r}", fix="use synthetic, prompts or task")

    if not prompts:
        raise DatasetError("the workload produced no requests", fix="check the prompt file, task or limit")
    mode = workload.get("mode", "offline")
    arrivals = (
        arrival_times(len(prompts), workload.get("rate"), float(workload.get("burstiness") or 1.0), seed)
        if mode == "online"
        else [0.0] * len(prompts)
    )
    requests = [
        Request(
            id=i,
            prompt_ids=tuple(ids),
            max_new_tokens=mx,
            min_new_tokens=mn,
            arrival_s=arrivals[i],
        )
        for i, (ids, (mx, mn)) in enumerate(zip(prompts, budgets, strict=True))
    ]
    meta["input_tokens_mean"] = sum(len(p) for p in prompts) / len(prompts)
    return BuiltWorkload(requests=requests, meta=meta)
