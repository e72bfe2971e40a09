"""Speculative decoding around the engines: the preflight's checks and the stored figures.

The preflight (plan.check_run) asks `speculation_problems` whether the run's engine, device, batch,
decoding and draft model allow its `speculative` setting (engines/levers.py says the grammar, each
engine's spec its `speculation` methods and their limits). Nothing is imported or loaded: a draft
model's vocabulary is read from its config.json or GGUF header.

After a run, `speculation_figures` turns the counts an engine reports for its measured generate
call (`Engine.speculation_stats`) into the RunResult's spec_* fields:

    draft_tokens     tokens the drafter proposed, summed over sequences and steps
    accepted_tokens  of those, the ones the target model confirmed
    target_steps     target-model verification steps, per sequence (a batch step of B sequences
                     counts B): each emits the accepted drafts plus the target's own next token
    emitted_tokens   tokens the steps emitted (output tokens, plus any end-of-sequence token)

    spec_acceptance_rate = accepted / drafted        (None when nothing was drafted)
    spec_tokens_per_step = emitted / target_steps    (1.0 without speculation)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from wattlab.engines.levers import Speculation, parse_speculative
from wattlab.engines.spec import EngineSpec, SpecMethod
from wattlab.errors import WattlabError
from wattlab.sessions.plan import Problem, run_device_kind
from wattlab.sessions.spec import RunSpec

KEY = "speculative"


def speculation_problems(spec: RunSpec, engine: EngineSpec) -> list[Problem]:
    """Why this engine, device, batch or decoding cannot run the run's speculation ([] when it can)."""
    if spec.speculative is None:
        return []
    try:
        lever = parse_speculative(spec.speculative)
    except WattlabError as exc:  # RunSpec validation already refuses it; kept for hand-built specs
        return [Problem(exc.message, exc.fix, KEY)]
    supported = {m.method: m for m in engine.speculation}
    method = supported.get(lever.method)
    if method is None:
        return [_unsupported(spec, engine, lever)]
    out: list[Problem] = []
    width = (spec.max_concurrency or spec.batch_size) if spec.mode == "online" else spec.batch_size
    if method.max_batch is not None and width > method.max_batch:
        what = "max_concurrency" if spec.mode == "online" and spec.max_concurrency else "batch_size"
        out.append(
            Problem(
                f"{spec.engine} runs {lever.method} speculation only at {what} <= {method.max_batch} "
                f"({method.why}); this run asks {width}",
                f"set {what} = {method.max_batch}, or run batched speculation on "
                f"{_engines_with(lever.method, batched=True) or 'no installed engine'}",
                "batch_size",
            )
        )
    if spec.decoding not in method.decodings:
        out.append(
            Problem(
                f"{spec.engine} runs {lever.method} speculation with {' or '.join(method.decodings)} "
                f"decoding, not {spec.decoding} ({method.why})",
                f"set decoding = {method.decodings[0]!r}, or drop speculative",
                "decoding",
            )
        )
    device = run_device_kind(spec)
    if device is not None and device not in method.devices:
        out.append(
            Problem(
                f"{spec.engine} cannot run {lever.method} speculation on the {device.upper()} ({method.why})",
                f"run it on the {' or '.join(d.upper() for d in method.devices)}, or drop speculative",
                "device",
            )
        )
    out += _engine_rules(spec, lever)
    if lever.method == "draft":
        out += _draft_problems(spec, lever, method)
    return out


def _unsupported(spec: RunSpec, engine: EngineSpec, lever: Speculation) -> Problem:
    able = _engines_with(lever.method)
    if not engine.speculation:
        why = f"the {spec.engine} engine has no speculative decoding"
    else:
        has = ", ".join(m.method for m in engine.speculation)
        why = f"the {spec.engine} engine has no {lever.method} speculation (it has {has})"
    fix = f"run {lever.method} speculation on {able}" if able else "drop speculative"
    if engine.speculation and lever.method == "draft":
        fix += f", or use ngram:{lever.k} on {spec.engine}"
    return Problem(why, fix, KEY)


def _engines_with(method: str, batched: bool = False) -> str:
    from wattlab.engines import display_order, registry

    names = [
        name
        for name, e in registry().items()
        if not e.hidden
        and any(m.method == method and (not batched or m.max_batch is None) for m in e.speculation)
    ]
    return ", ".join(sorted(names, key=display_order))


def _engine_rules(spec: RunSpec, lever: Speculation) -> list[Problem]:
    """Settings of one engine that its speculation cannot run with."""
    if spec.engine == "transformers" and spec.options.get("cache_implementation") == "static":
        return [
            Problem(
                "transformers' assisted generation cannot run with a static KV cache "
                "(it crops the cache after rejected drafts)",
                "set options.cache_implementation = 'dynamic', or drop speculative",
                "options",
            )
        ]
    return []


def _draft_problems(spec: RunSpec, lever: Speculation, method: SpecMethod) -> list[Problem]:
    """The draft model exists for this engine and shares the target's vocabulary."""
    assert lever.draft_model is not None
    draft = _vocabulary(lever.draft_model, spec.engine)
    if isinstance(draft, WattlabError):
        return [Problem(f"draft model: {draft.message}", draft.fix, KEY)]
    target = _vocabulary(spec.model, spec.engine)
    if isinstance(target, WattlabError):
        return []  # the model check reports it
    if draft is not None and target is not None and draft != target:
        return [
            Problem(
                f"the draft model {lever.draft_model} has a vocabulary of {draft} tokens and "
                f"{spec.model} one of {target}: a draft must share the target's vocabulary",
                "pick a draft model of the same family (e.g. smollm2-135m-instruct for "
                "random:smollm2-360m), or use ngram:K",
                KEY,
            )
        ]
    return []


def _vocabulary(model: str, engine: str) -> int | WattlabError | None:
    """The model's vocabulary size from its config.json or GGUF header (None: not known without
    downloading), or the error resolving it raised."""
    from wattlab.engines import models
    from wattlab.engines.gguf_meta import read_metadata

    try:
        models.variants(model, engine)  # raises for an unknown model or one this engine cannot load
        source = models._source(model, engine)
    except WattlabError as exc:
        return exc
    if source.kind == "random":
        config = json.loads((models.CONFIGS_DIR / f"{source.arch}.json").read_text(encoding="utf-8"))
        return int(config["vocab_size"])
    if source.path is None:
        return None
    path = Path(source.path)
    if path.is_file():
        meta = read_metadata(path)
        arch = meta.get("general.architecture")
        size = meta.get(f"{arch}.vocab_size") if arch else None
        return int(size) if size else None
    try:
        size = json.loads((path / "config.json").read_text(encoding="utf-8")).get("vocab_size")
    except (OSError, ValueError):
        return None
    return int(size) if isinstance(size, int) else None


def speculation_figures(stats: dict[str, Any] | None) -> dict[str, Any]:
    """The RunResult's spec_* fields from an engine's speculation counts (see the module doc)."""
    if not stats:
        return {}
    drafted = int(stats.get("draft_tokens") or 0)
    accepted = int(stats.get("accepted_tokens") or 0)
    steps = int(stats.get("target_steps") or 0)
    emitted = int(stats.get("emitted_tokens") or 0)
    return {
        "spec_draft_tokens": drafted,
        "spec_accepted_tokens": accepted,
        "spec_acceptance_rate": accepted / drafted if drafted else None,
        "spec_tokens_per_step": emitted / steps if steps else None,
    }


# How each engine's counts are obtained, as `show` and the console's run detail say it.
COUNTED_BY = {
    "llamacpp": "wattlab's prompt lookup in the decode loop counts each verify step",
    "transformers": "a hook counts the target's forward passes and their input lengths",
    "vllm": "vLLM's spec_decode draft/accepted counters; steps = engine steps giving a request tokens",
}


def speculation_lines(run: Any) -> list[str]:
    """What `show` and the run detail print about a run's speculation (nothing without it)."""
    method = run.get("speculative")
    if not method:
        return []
    drafted, accepted = run.get("spec_draft_tokens"), run.get("spec_accepted_tokens")
    if drafted is None:
        return [f"speculative {method}: no drafting counts stored (the run did not finish)"]
    rate = run.get("spec_acceptance_rate")
    per_step = run.get("spec_tokens_per_step")
    how = COUNTED_BY.get(str(run.get("engine")), "counted by the engine")
    return [
        f"speculative {method}: {accepted} of {drafted} drafted tokens accepted"
        + (f" ({rate:.1%})" if rate is not None else "")
        + (f", {per_step:.2f} tokens per target step" if per_step is not None else "")
        + f" (measured window; {how})"
    ]


__all__ = ["COUNTED_BY", "speculation_figures", "speculation_lines", "speculation_problems"]
