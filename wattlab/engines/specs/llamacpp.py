"""The llama.cpp engine, as wattlab knows it without importing llama_cpp (adapter: llamacpp_engine.py)."""

from __future__ import annotations

from wattlab.engines.spec import GGUF_VARIANTS, EngineSpec, Option

SPEC = EngineSpec(
    "llamacpp",
    "llama.cpp through llama-cpp-python: GGUF files, parallel sequences, n_gpu_layers",
    "wattlab.engines.llamacpp_engine:LlamaCppEngine",
    distributions=(("llama-cpp-python",),),
    modules=("llama_cpp",),
    extra="llamacpp",
    abilities=frozenset({"online", "sampling", "logprobs"}),
    options=(
        Option("n_gpu_layers", int, "layers offloaded to the GPU; -1 = all (default: all on cuda, 0 on cpu)"),
        Option("n_threads", int, "CPU threads for generation (default: all cores)"),
        Option("n_batch", int, "tokens per llama_decode call in prompt processing (default 512)"),
        Option("flash_attn", bool, "use flash attention where the build has it (default: llama.cpp's auto)"),
    ),
    model_kind="gguf",
    variants=GGUF_VARIANTS,  # the file's own type first (models.variants)
    default_device="auto",  # llama.cpp decides (n_gpu_layers)
    order=1,
    guess_tok_s=40.0,
)
