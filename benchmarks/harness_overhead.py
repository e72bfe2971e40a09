"""Harness overhead: wattlab's tokens/s against the engine's own API on the same workload.

For each engine, the same prompts (token ids from wattlab's synthetic workload), the same batch
size and forced output length, timed three ways in one script:
  own      the engine's own API, timed around the call (llama.cpp: Llama.generate token loop,
           batch 1; transformers: model.generate; vLLM: LLM.generate with ignore_eos)
  adapter  wattlab's adapter in this process (Engine.generate), timed the same way
  wattlab  `wattlab run --json` (worker subprocess, meters sampling, spool): its measured-window
           output tokens/s
Each way runs `--repeats` times after a warmup; the median is reported. Target: wattlab at most
2% slower than own.

    python benchmarks/harness_overhead.py --engines llamacpp,transformers,vllm > overhead.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from wattlab.engines.base import Decoding, Request


def build(engine: str, a: argparse.Namespace) -> tuple[Any, list[Request]]:
    from wattlab.engines import get_engine_class
    from wattlab.engines.models import resolve
    from wattlab.workloads import build_requests

    inp, out = a.input_tokens, a.output_tokens
    cfg = resolve(a.model, engine, a.quant, a.device, max_batch=a.batch_size, max_tokens=inp + out + 16)
    eng = get_engine_class(engine)(cfg)
    eng.load()
    built = build_requests(
        {"kind": "synthetic", "requests": a.requests, "input_tokens": inp, "output_tokens": out},
        eng.tokenize,
        cfg.options.get("chat_template"),
    )
    return eng, built.requests


_LLAMAS: dict[str, Any] = {}


def _own_llama(eng: Any) -> Any:
    """llama-cpp-python's high-level Llama on the same GGUF and thread count as the adapter."""
    from llama_cpp import Llama

    path = eng.config.path
    if path not in _LLAMAS:
        _LLAMAS[path] = Llama(
            model_path=path,
            n_ctx=eng.config.max_tokens,
            verbose=False,
            n_threads=len(os.sched_getaffinity(0)),
        )
    return _LLAMAS[path]


def own_api(engine: str, eng: Any, reqs: list[Request], batch: int, out: int) -> float:
    """Output tokens/s of the engine's own API on these requests."""
    t0 = time.perf_counter()
    if engine == "llamacpp":
        llm = _own_llama(eng)
        for r in reqs:
            llm.reset()
            tokens = llm.generate(
                list(r.prompt_ids), top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0, reset=True
            )
            for produced, _tok in enumerate(tokens, 1):
                if produced >= out:
                    break
    elif engine == "transformers":
        import torch

        model = eng.model
        for i in range(0, len(reqs), batch):
            chunk = reqs[i : i + batch]
            ids = torch.tensor([list(r.prompt_ids) for r in chunk], device=eng.device)
            with torch.no_grad():
                model.generate(
                    ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=out,
                    min_new_tokens=out,
                    do_sample=False,
                    pad_token_id=0,
                )
    elif engine == "vllm":
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        llm = eng.llm
        llm.generate(
            [TokensPrompt(prompt_token_ids=list(r.prompt_ids)) for r in reqs],
            SamplingParams(max_tokens=out, ignore_eos=True, temperature=0.0),
            use_tqdm=False,
        )
    return len(reqs) * out / (time.perf_counter() - t0)


def adapter(eng: Any, reqs: list[Request], batch: int) -> float:
    t0 = time.perf_counter()
    comps = eng.generate(reqs, Decoding(), batch)
    return sum(c.output_tokens for c in comps) / (time.perf_counter() - t0)


def full_wattlab(engine: str, a: argparse.Namespace) -> float:
    quant = ["--quant", a.quant] if a.quant else []
    cmd = [sys.executable, "-m", "wattlab.cli", "run", "--engine", engine, "--model", a.model]
    cmd += ["--device", a.device, *quant, "--batch-size", str(a.batch_size), "--requests", str(a.requests)]
    cmd += ["--input-tokens", str(a.input_tokens), "--output-tokens", str(a.output_tokens)]
    cmd += ["--idle-s", "0", "--json"]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return float(json.loads(res.stdout)["throughput_tok_s"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--engines", default="llamacpp,transformers")
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quant")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--requests", type=int, default=4)
    p.add_argument("--input-tokens", type=int, default=64)
    p.add_argument("--output-tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    results = []
    for engine in a.engines.split(","):
        eng, reqs = build(engine, a)
        if engine == "llamacpp" and a.batch_size != 1:
            raise SystemExit(
                "llama-cpp-python's own API generates one sequence at a time: use --batch-size 1"
            )
        own_api(engine, eng, reqs[:1], a.batch_size, a.output_tokens)  # warm up both paths
        adapter(eng, reqs[:1], a.batch_size)
        own, ad = [], []
        for _ in range(a.repeats):  # interleaved, so drift on a shared box hits both alike
            own.append(own_api(engine, eng, reqs, a.batch_size, a.output_tokens))
            ad.append(adapter(eng, reqs, a.batch_size))
        eng.close()
        full = [full_wattlab(engine, a) for _ in range(a.repeats)]
        row = {
            "engine": engine,
            "own_tok_s": statistics.median(own),
            "adapter_tok_s": statistics.median(ad),
            "wattlab_run_tok_s": statistics.median(full),
            "own_all": own,
            "adapter_all": ad,
            "wattlab_all": full,
        }
        row["adapter_vs_own_pct"] = (row["adapter_tok_s"] / row["own_tok_s"] - 1) * 100
        row["wattlab_vs_own_pct"] = (row["wattlab_run_tok_s"] / row["own_tok_s"] - 1) * 100
        results.append(row)
        print(json.dumps(row), file=sys.stderr)
    print(json.dumps({"settings": vars(a), "date": time.strftime("%Y-%m-%d"), "results": results}, indent=1))
    sys.stdout.flush()
    # Two llama.cpp contexts (the adapter's and the high-level Llama) tearing down at interpreter
    # exit can crash in llama.cpp's log callback; everything is printed, so leave without teardown.
    os._exit(0)


if __name__ == "__main__":
    main()
