"""llama.cpp batched decoding: does a batch of B sequences give more tokens/s than one?

Loads wattlab's llama.cpp adapter once (max_batch = the largest batch asked for, as a sweep does)
and, for each batch size, runs the same synthetic requests (`--requests` of `--input-tokens` in,
exactly `--output-tokens` out, greedy), after one warmup pass. Prints per batch size: output tokens/s,
TPOT (mean of each request's (end - first token) / (n - 1)), TTFT p50, and llama.cpp's own
`llama_perf_context` timings of the timed pass (prompt-eval and eval ms and token counts; llama.cpp
counts a multi-token decode, batched decode included, as "prompt eval").

    python benchmarks/llamacpp_batching.py                       # CPU, bundled SmolLM2 Q4_1
    python benchmarks/llamacpp_batching.py --device cuda --requests 64 --output-tokens 128 \
        --json docs/measurements/gpu_llamacpp_batching.json    # all layers on the GPU (CUDA build)
    python benchmarks/llamacpp_batching.py --option n_ubatch=64 --option type_k=q8_0 --profile

`--option k=v` passes engine options (ints, true/false, strings); `--profile` prints the cProfile top
of the largest batch's pass (where Python time goes between llama_decode calls).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import statistics
import sys
import time
from typing import Any

from wattlab.engines.base import Completion, Decoding, Request


def _value(text: str) -> Any:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return int(text)
    except ValueError:
        return text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="model name or .gguf path (default: the bundled model)")
    p.add_argument("--quant", default=None, help="GGUF variant (default: the file's own type)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--batch-sizes", default="1,2,4,8,16", help="comma-separated (default 1,2,4,8,16)")
    p.add_argument("--requests", type=int, default=0, help="requests per pass (default: max(8, 2 x batch))")
    p.add_argument("--input-tokens", type=int, default=64)
    p.add_argument("--output-tokens", type=int, default=32)
    p.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="timed rounds over the batch sizes (medians; `x b1`: median of each round's ratio)",
    )
    p.add_argument("--option", action="append", default=[], help="engine option k=v (repeatable)")
    p.add_argument("--profile", action="store_true", help="cProfile the largest batch's pass")
    p.add_argument("--json", default=None, help="write the results as JSON to this path")
    return p.parse_args(argv)


def load(a: argparse.Namespace, max_batch: int) -> Any:
    from wattlab.engines import get_engine_class
    from wattlab.engines.models import DEFAULT_MODEL, resolve

    options = {k: _value(v) for k, v in (o.split("=", 1) for o in a.option)}
    max_tokens = a.input_tokens + a.output_tokens + 16
    config = resolve(
        a.model or DEFAULT_MODEL, "llamacpp", a.quant, a.device,
        max_batch=max_batch, max_tokens=max_tokens, options=options,
    )  # fmt: skip
    engine = get_engine_class("llamacpp")(config)
    engine.load()
    return engine


def requests_for(engine: Any, n: int, a: argparse.Namespace) -> list[Request]:
    from wattlab.workloads import build_requests

    workload = {"kind": "synthetic", "requests": n, "input_tokens": a.input_tokens,
                "output_tokens": a.output_tokens}  # fmt: skip
    return build_requests(workload, engine.tokenize, engine.config.options.get("chat_template")).requests


def perf(engine: Any) -> dict[str, float]:
    import llama_cpp as lc

    data = lc.llama_perf_context(engine._ctx)
    return {
        "prompt_eval_ms": round(data.t_p_eval_ms, 1),
        "prompt_eval_tokens": int(data.n_p_eval),
        "eval_ms": round(data.t_eval_ms, 1),
        "eval_tokens": int(data.n_eval),
    }


def summarize(done: list[Completion], wall_s: float) -> dict[str, float]:
    out_tokens = sum(c.output_tokens for c in done)
    tpot = [
        (c.token_ns[-1] - c.token_ns[0]) / (len(c.token_ns) - 1) / 1e6 for c in done if len(c.token_ns) > 1
    ]
    ttft = [(c.first_token_ns - c.arrival_ns) / 1e6 for c in done if c.first_token_ns is not None]
    return {
        "output_tokens": out_tokens,
        "wall_s": round(wall_s, 3),
        "tok_s": round(out_tokens / wall_s, 1),
        "tpot_ms": round(statistics.mean(tpot), 2) if tpot else 0.0,
        "ttft_p50_ms": round(statistics.median(ttft), 1) if ttft else 0.0,
        "ttft_max_ms": round(max(ttft), 1) if ttft else 0.0,
    }


def one_pass(engine: Any, requests: list[Request], batch: int, profiler: Any = None) -> dict[str, Any]:
    import llama_cpp as lc

    lc.llama_perf_context_reset(engine._ctx)
    if profiler:
        profiler.enable()
    t0 = time.perf_counter()
    done = engine.generate(requests, Decoding(), batch)
    wall = time.perf_counter() - t0
    if profiler:
        profiler.disable()
    errors = [c.error for c in done if c.error]
    if errors:
        raise SystemExit(f"batch {batch}: {len(errors)} requests failed: {errors[0]}")
    return {**summarize(done, wall), "llama_perf": perf(engine)}


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    batches = sorted({int(b) for b in a.batch_sizes.split(",")})
    engine = load(a, max(batches))
    print(
        f"llama.cpp batching: {os.path.basename(engine.config.path)} on {a.device} "
        f"(n_gpu_layers {engine._gpu_layers}), {a.input_tokens} in / {a.output_tokens} out, "
        f"options {engine.config.options}",
        file=sys.stderr,
    )
    header = (
        f"{'batch':>5} {'reqs':>5} {'tok/s':>8} {'x b1':>6} {'TPOT ms':>8} {'TTFT p50':>9} {'TTFT max':>9}"
    )
    print(header + "   llama_perf: prompt-eval ms/tokens, eval ms/tokens")
    # Repeats go round the batch sizes (1, 4, 8, 1, 4, 8, ...), so a load change on a shared box
    # hits every batch size alike; each ratio to batch 1 is taken within one round, then medianed.
    sizes = {batch: a.requests or max(8, 2 * batch) for batch in batches}
    request_sets = {batch: requests_for(engine, n, a) for batch, n in sizes.items()}
    for batch in batches:
        engine.generate(request_sets[batch][:batch], Decoding(), batch)  # warmup: graphs, caches, kernels
    passes: dict[int, list[dict[str, Any]]] = {batch: [] for batch in batches}
    profile_text = ""
    for r in range(a.repeats):
        for batch in batches:
            profiler = cProfile.Profile() if a.profile and batch == batches[-1] and r == 0 else None
            passes[batch].append(one_pass(engine, request_sets[batch], batch, profiler))
            if profiler:
                s = io.StringIO()
                pstats.Stats(profiler, stream=s).sort_stats("tottime").print_stats(12)
                profile_text = s.getvalue()
    rows: list[dict[str, Any]] = []
    for batch in batches:
        row = sorted(passes[batch], key=lambda p: p["tok_s"])[len(passes[batch]) // 2]
        ratios = [p["tok_s"] / b1["tok_s"] for p, b1 in zip(passes[batch], passes[batches[0]], strict=True)]
        row = {
            "batch": batch,
            "requests": sizes[batch],
            **row,
            "x_first_batch_paired": round(statistics.median(ratios), 3),
            "tok_s_passes": [round(p["tok_s"], 1) for p in passes[batch]],
        }
        rows.append(row)
        lp = row["llama_perf"]
        print(
            f"{batch:>5} {sizes[batch]:>5} {row['tok_s']:>8.1f} {row['x_first_batch_paired']:>5.2f}x "
            f"{row['tpot_ms']:>8.2f} {row['ttft_p50_ms']:>9.1f} {row['ttft_max_ms']:>9.1f}   "
            f"{lp['prompt_eval_ms']:.0f}/{lp['prompt_eval_tokens']}, {lp['eval_ms']:.0f}/{lp['eval_tokens']}",
            flush=True,
        )
    if profile_text:
        print(profile_text)
    if a.json:
        import llama_cpp as lc

        result = {
            "benchmark": "llamacpp_batching",
            "model": engine.config.path,
            "device": a.device,
            "n_gpu_layers": engine._gpu_layers,
            "options": engine.config.options,
            "input_tokens": a.input_tokens,
            "output_tokens": a.output_tokens,
            "llama_cpp_python": engine.version(),
            "system_info": lc.llama_print_system_info().decode(errors="replace"),
            "cpu_count": len(os.sched_getaffinity(0)),
            "load_avg": os.getloadavg(),
            "machine": platform.node(),
            "rows": rows,
        }
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1, default=str)
    engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
