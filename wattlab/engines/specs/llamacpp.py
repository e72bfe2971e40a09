"""The llama.cpp engine, as wattlab knows it without importing llama_cpp (adapter: llamacpp_engine.py)."""

from __future__ import annotations

from wattlab.engines.spec import GGUF_VARIANTS, EngineSpec, Option, SpecMethod

# KV-cache element types offered (llama.cpp's ggml types; q8_0/q4_0 V caches need flash attention
# on most builds, which llama.cpp's "auto" turns on where it can).
KV_TYPES = ("f16", "q8_0", "q4_0")

SPEC = EngineSpec(
    "llamacpp",
    "llama.cpp through llama-cpp-python: GGUF files, parallel sequences, n_gpu_layers",
    "wattlab.engines.llamacpp_engine:LlamaCppEngine",
    distributions=(("llama-cpp-python",),),
    modules=("llama_cpp",),
    extra="llamacpp",
    abilities=frozenset({"online", "sampling", "logprobs"}),
    options=(
        Option(
            "n_gpu_layers",
            int,
            "layers offloaded to the GPU; -1 = all (default: all on cuda, 0 on cpu)",
            min=-1,
        ),
        Option("n_threads", int, "CPU threads for one-token decode steps (default: all cores)", min=1),
        Option(
            "n_threads_batch",
            int,
            "CPU threads for multi-token steps: prompts and batched decode (default: n_threads)",
            min=1,
        ),
        Option("n_batch", int, "most tokens one llama_decode call carries (default 512)", min=1),
        Option(
            "n_ubatch",
            int,
            "physical batch: most tokens one compute-graph pass holds (default: min(n_batch, 512))",
            min=1,
        ),
        Option(
            "prefill_chunk",
            int,
            "most prompt tokens added to a step that also decodes, so a new "
            "prompt stalls the running sequences at most that long (default: n_ubatch)",
            min=1,
        ),
        Option("flash_attn", bool, "use flash attention (default: llama.cpp's auto)"),
        Option("type_k", str, "KV-cache type of K (default f16)", choices=KV_TYPES, default="f16"),
        Option(
            "type_v",
            str,
            "KV-cache type of V (default f16; quantized V needs flash attention)",
            choices=KV_TYPES,
            default="f16",
        ),
        Option(
            "kv_unified",
            bool,
            "one KV buffer shared by all sequences instead of one stream each (default false)",
            default=False,
        ),
    ),
    model_kind="gguf",
    variants=GGUF_VARIANTS,  # the file's own type first (models.variants)
    default_device="auto",  # llama.cpp decides (n_gpu_layers)
    order=1,
    guess_tok_s=40.0,
    # Prompt lookup is wattlab's own, in the decode loop (llamacpp_engine.py): drafts are verified by
    # greedy argmax, so it keeps greedy output exact; llama-cpp-python has no draft-model path.
    speculation=(
        SpecMethod(
            "ngram",
            why="wattlab's prompt-lookup drafting on llama.cpp verifies drafts against the greedy token",
        ),
    ),
)
