"""One run inside a session: prepare, warm up, measure, and compute every figure with its method."""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from wattlab.engines.base import Completion
from wattlab.errors import ConfigError, WattlabError
from wattlab.meters.timeline import Timeline
from wattlab.meters.windows import NS
from wattlab.sessions import figures
from wattlab.sessions.result import RunResult
from wattlab.sessions.spec import RunSpec
from wattlab.sessions.speculation import speculation_figures
from wattlab.sessions.worker import WorkerClient


@dataclass
class RunContext:
    run_id: str
    spec: RunSpec
    timeline: Timeline
    idle_w: dict[str, float]
    carbon: Any  # wattlab.meters.carbon.CarbonIntensity
    pue: float
    row: RunResult  # the run's settings (base_row): execute_run adds the figures
    worker: WorkerClient | None = None
    load_info: dict[str, Any] | None = None  # set when this run loaded the engine
    idle_not_idle: dict[str, str] = field(default_factory=dict)  # domain -> why its baseline was busy


def _check_capabilities(spec: RunSpec, caps: dict[str, bool], engine: str, needs_logprobs: bool) -> None:
    """Refuse, before anything runs, what this engine cannot do."""
    if spec.decoding == "beam" and not caps.get("beam"):
        raise ConfigError(
            f"the {engine} engine has no beam search", fix="use decoding = greedy or sample, or transformers"
        )
    if spec.decoding == "sample" and not caps.get("sampling"):
        raise ConfigError(f"the {engine} engine cannot sample", fix="use decoding = greedy")
    if spec.mode == "online" and not caps.get("online"):
        raise ConfigError(
            f"the {engine} engine has no online mode", fix="use mode = offline, or vllm / llamacpp / openai"
        )
    if needs_logprobs and not caps.get("logprobs"):
        raise ConfigError(
            f"the {engine} engine cannot return log-probabilities, which perplexity needs",
            fix="run the perplexity task on transformers, llamacpp or vllm",
        )


def _window_bounds(timeline: Timeline, run_id: str, name: str) -> tuple[int, int] | None:
    starts = timeline.find_marks(f"{name}_start", run_id)
    ends = timeline.find_marks(f"{name}_end", run_id)
    if not starts or not ends:
        return None
    return starts[-1].t_ns, ends[-1].t_ns


def execute_run(ctx: RunContext) -> RunResult:
    """Run one measured run; its RunResult, built once from the figures gathered here."""
    spec, worker, timeline = ctx.spec, ctx.worker, ctx.timeline
    assert worker is not None
    info = worker.info
    # The figures gathered so far, by RunResult field name; the RunResult is made from them at the end.
    result: dict[str, Any] = {
        **ctx.row.as_dict(),
        "engine_version": info.get("version"),
        "devices": ",".join(info.get("devices") or ["cpu"]),
        "params": info.get("params"),
        "worker_reused": ctx.load_info is None,
        # What actually ran: the catalog's default variant when none was asked for (Q4_1, bf16...).
        "quant": ctx.row.quant or info.get("variant"),
        "transform_note": info.get("transform_note"),  # what the transform did (scores, layers cut)
    }
    domains = figures.attributed_domains(timeline.domains.values(), info.get("devices") or ["cpu"])
    timeout = spec.timeout_s
    prepared = worker.call("prepare", workload=spec.workload_dict(), timeout_s=timeout)
    meta = prepared.get("meta", {})
    requests = prepared["requests"]
    needs_logprobs = bool(meta.get("needs_logprobs"))
    _check_capabilities(spec, info.get("caps", {}), spec.engine, needs_logprobs)
    result["requests"] = len(requests)
    result["input_tokens"] = (
        result["input_tokens"] if meta.get("kind") == "synthetic" else round(meta.get("input_tokens_mean", 0))
    )

    energy_rows: list[dict[str, Any]] = []
    if ctx.load_info is not None and (b := _window_bounds(timeline, ctx.run_id, "load")):
        energy_rows += figures.windows_energy(timeline, domains, "load", [b], ctx.idle_w)
        result["load_s"] = (b[1] - b[0]) / NS

    # Warm up on one full batch of the run's own prompts: a smaller batch left the first measured
    # request of a bf16 run on an H100 7x slower than the rest (kernel selection, clock ramp-up).
    # The output is capped (spec.warmup_shape): a full-length warmup outlasted the measured window.
    n_warm, warm_out = spec.warmup_shape()
    if n_warm and not needs_logprobs:
        warm = [
            {
                **r,
                "arrival_s": 0.0,
                "max_new_tokens": min(r["max_new_tokens"], warm_out),
                "min_new_tokens": min(r.get("min_new_tokens", 0), warm_out),
            }
            for r in requests[:n_warm]
        ]
        worker.call(
            "generate",
            requests=warm,
            decoding=spec.decoding_dict(),
            batch_size=spec.batch_size,
            mode="offline",
            window="warmup",
            timeout_s=timeout,
        )
        if b := _window_bounds(timeline, ctx.run_id, "warmup"):
            energy_rows += figures.windows_energy(timeline, domains, "warmup", [b], ctx.idle_w)
            result["warmup_s"] = (b[1] - b[0]) / NS

    if needs_logprobs:
        out = worker.call("logprobs", ids=[r["prompt_ids"] for r in requests], timeout_s=timeout)
        completions: list[Completion] = []
        bounds = _window_bounds(timeline, ctx.run_id, "logprobs")
    else:
        out = worker.call(
            "generate",
            requests=requests,
            decoding=spec.decoding_dict(),
            batch_size=spec.batch_size,
            mode=spec.mode,
            max_concurrency=spec.max_concurrency or spec.batch_size,
            window="run",
            timeout_s=timeout,
        )
        completions = [Completion.from_dict(c) for c in out["completions"]]
        bounds = _window_bounds(timeline, ctx.run_id, "run")
    assert bounds is not None, "the worker did not mark the measured window"
    t0, t1 = bounds
    # Let the samplers take one more reading past the window's end, so both edges are bracketed.
    time.sleep(timeline.power_period_s * 1.5)

    if needs_logprobs:
        n_tokens = sum(max(0, len(r["prompt_ids"]) - 1) for r in requests)
        result.update(duration_s=(t1 - t0) / NS, tokens_in=n_tokens, tokens_out=0, requests_ok=len(requests))
        result["total_tok_s"] = n_tokens / result["duration_s"] if result["duration_s"] > 0 else None
    else:
        result.update(figures.latency_figures(completions, t0, t1, online=spec.mode == "online"))
    result["peak_mem_mib"] = out.get("peak_mem_mib")
    result["peak_mem_kind"] = out.get("peak_mem_kind")  # gpu | gpu-device | host | engine (peakmem.py)
    result.update(speculation_figures(out.get("speculation")))  # the measured call's drafting counts

    energy_rows += figures.windows_energy(timeline, domains, "measured", [(t0, t1)], ctx.idle_w)
    steady = figures.steady_interval(completions)
    if steady:
        energy_rows += figures.windows_energy(timeline, domains, "steady", [steady], ctx.idle_w)
    if spec.mode == "offline" and completions:
        prefill, decode = figures.prefill_decode_intervals(completions)
        energy_rows += figures.windows_energy(timeline, domains, "prefill", prefill, ctx.idle_w)
        energy_rows += figures.windows_energy(timeline, domains, "decode", decode, ctx.idle_w)
    figures.flag_busy_baseline(energy_rows, ctx.idle_not_idle)
    result["energy"] = energy_rows
    result.update(energy_figures(result, energy_rows, steady, completions, ctx))
    result["peak_power_w"] = figures.peak_total_power(timeline, domains, t0, t1)
    result["util_mean_pct"] = figures.mean_util(timeline, domains, t0, t1)
    result["t0_ns"], result["t1_ns"] = t0, t1
    result["requests_detail"] = [request_row(c) for c in completions]

    if meta.get("kind") == "task":
        result.update(score_task(spec, completions, out.get("logprobs"), requests))
    result.update(green_figures(result))
    flags = figures.measured_flags(energy_rows, result.get("energy_domains"))
    if result.get("energy_method") == "estimated":
        flags.insert(0, "energy-estimated")
    result["flags"] = ",".join(flags)
    result["status"] = "finished"
    result["ended_at"] = utc_now().isoformat()
    return RunResult.from_dict(result)


def energy_figures(
    result: dict[str, Any],
    rows: list[dict[str, Any]],
    steady: tuple[int, int] | None,
    completions: list[Completion],
    ctx: RunContext,
) -> dict[str, Any]:
    """Headline energy and carbon figures of the measured window, with their method."""
    measured = figures.total_of(rows, "measured")
    energy = measured["energy_j"]
    tokens_out = result.get("tokens_out") or 0
    n_ok = result.get("requests_ok") or 0
    duration = result.get("duration_s") or 0.0
    out: dict[str, Any] = {
        "energy_j": energy,
        "energy_net_j": measured["energy_net_j"],
        "energy_method": measured["method"],
        "energy_coverage": measured["coverage"],
        "energy_domains": measured["domains"],
        "carbon_g_per_kwh": ctx.carbon.g_per_kwh,
        "carbon_source": ctx.carbon.source,
        "pue": ctx.pue,
    }
    load = figures.total_of(rows, "load")
    out["load_energy_j"], out["load_energy_method"] = load["energy_j"], load["method"]
    if energy is None:
        return out
    from wattlab.meters.carbon import gco2e

    out["j_per_token"] = energy / tokens_out if tokens_out else None
    net = measured["energy_net_j"]
    out["j_per_token_net"] = net / tokens_out if (tokens_out and net is not None) else None
    out["j_per_request"] = energy / n_ok if n_ok else None
    out["tokens_per_j"] = tokens_out / energy if energy > 0 and tokens_out else None
    out["wh_per_1k_requests"] = energy / 3600.0 / n_ok * 1000.0 if n_ok else None
    out["gco2e"] = gco2e(energy, ctx.carbon.g_per_kwh, ctx.pue)
    out["gco2e_per_request"] = out["gco2e"] / n_ok if n_ok else None
    out["gco2e_per_1k_requests"] = out["gco2e_per_request"] * 1000.0 if n_ok else None
    out["mean_power_w"] = energy / duration if duration > 0 else None
    if steady:
        st = figures.total_of(rows, "steady")
        steady_tokens = figures.tokens_in_interval(completions, steady)
        out["steady_energy_j"] = st["energy_j"]
        out["steady_tokens"] = steady_tokens
        if st["energy_j"] is not None and steady_tokens:
            out["steady_j_per_token"] = st["energy_j"] / steady_tokens
    return out


def green_figures(result: dict[str, Any]) -> dict[str, Any]:
    """The Green AI index against the unit reference (quality 1, 1 J/token, 1 s), with its inputs.

    `wattlab report` also shows it against the session's baseline run; see analysis/green_index.py.
    """
    from wattlab.analysis.green_index import GreenInputs, green_index
    from wattlab.errors import ConfigError

    higher = result.get("quality_metric") != "perplexity"
    try:
        gi = green_index(
            GreenInputs.from_row(
                result, quality_higher_is_better=higher, quality_metric=result.get("quality_metric")
            )
        )
    except ConfigError as exc:
        return {"green_index": None, "green_index_inputs": {"error": exc.message}}
    return {
        "green_index": gi.value,
        "green_index_inputs": {
            "formula": gi.formula,
            "dropped": gi.dropped,
            "weights": gi.weights,
            "reference": "unit",
        },
    }


def request_row(c: Completion) -> dict[str, Any]:
    arrival = c.arrival_ns
    ttft = (c.first_token_ns - arrival) / NS if c.first_token_ns is not None else None
    scheduled = c.scheduled_ns  # None where the engine cannot tell (an OpenAI-compatible server)
    queue = (scheduled - arrival) / NS if scheduled is not None else None
    service = None
    if scheduled is not None and c.first_token_ns is not None:
        service = (c.first_token_ns - scheduled) / NS
    e2e = (c.end_ns - arrival) / NS if c.end_ns is not None else None
    tpot = None
    if c.output_tokens > 1 and c.first_token_ns is not None and c.end_ns is not None:
        tpot = (c.end_ns - c.first_token_ns) / NS / (c.output_tokens - 1)
    return {
        "request_id": c.id,
        "input_tokens": c.input_tokens,
        "output_tokens": c.output_tokens,
        "arrival_ns": arrival,
        "first_token_ns": c.first_token_ns,
        "end_ns": c.end_ns,
        "ttft_s": ttft,
        "scheduled_ns": scheduled,
        "queue_s": queue,
        "ttft_service_s": service,
        "tpot_s": tpot,
        "e2e_s": e2e,
        "token_ns": c.token_ns,
        "finish_reason": c.finish_reason,
        "output_text": c.text,
        "error": c.error,
    }


def score_task(
    spec: RunSpec,
    completions: list[Completion],
    logprobs: list[list[float]] | None,
    requests: list[dict[str, Any]],
) -> dict[str, Any]:
    """Quality of a task run: the task's metrics on the outputs (or log-probs, for perplexity)."""
    from wattlab.workloads import load_task

    task = load_task(spec.workload_dict())
    items = task.items(spec.limit)
    if task.needs_logprobs:
        score = task.score_logprobs(items, logprobs or [], [len(r["prompt_ids"]) for r in requests])
    else:
        by_id = {c.id: c.text for c in completions}
        score = task.score(items, [by_id.get(i, "") for i in range(len(items))])
    headline = task.primary_metric
    return {
        "quality": score.metrics.get(headline),
        "quality_metric": headline,
        "quality_metrics": score.metrics,
        "quality_detail": [
            {"task": task.name, "metric": k, "value": v, "n": score.n} for k, v in score.metrics.items()
        ],
        "quality_items": score.per_item,
    }


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def base_row(session_id: str, run_id: str, seq: int, spec: RunSpec, repeat: int) -> RunResult:
    """The run's settings as a `running` RunResult (figures are added when it finishes)."""
    is_task = bool(spec.task or spec.task_file)
    return RunResult(
        run_id=run_id,
        session_id=session_id,
        seq=seq,
        run_key=spec.key(repeat),
        status="running",
        started_at=utc_now().isoformat(),
        engine=spec.engine,
        model=spec.model,
        quant=spec.quant,
        device=spec.device,
        mode=spec.mode,
        workload="task" if is_task else spec.workload,
        task=spec.task or (os.path.basename(spec.task_file) if spec.task_file else None),
        batch_size=spec.batch_size,
        input_tokens=spec.input_tokens,
        output_tokens=spec.output_tokens if is_task else spec.output_tokens_or_default,
        requests=spec.n_requests,
        rate=spec.rate,
        burstiness=spec.burstiness,
        max_concurrency=spec.max_concurrency,
        decoding=spec.decoding,
        temperature=spec.temperature,
        top_p=spec.top_p,
        top_k=spec.top_k,
        num_beams=spec.num_beams,
        seed=spec.seed,
        repeat=repeat,
        spec_json=spec.as_dict(),
        transform=spec.transform,
        speculative=spec.speculative,
        power_limit_w=spec.power_limit_w,
        sm_clock_mhz=spec.sm_clock_mhz,
        mem_clock_mhz=spec.mem_clock_mhz,
        hostname=socket.gethostname(),
    )


def failed(row: RunResult, exc: WattlabError) -> RunResult:
    """A run that failed: its settings, the reason and the fix."""
    return row.replace(
        status="failed",
        error=exc.message,
        error_fix=exc.fix,
        error_title=exc.title,
        ended_at=utc_now().isoformat(),
    )
