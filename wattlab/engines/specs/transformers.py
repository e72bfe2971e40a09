"""The transformers engine, as wattlab knows it without importing torch (adapter: transformers_engine.py)."""

from __future__ import annotations

from wattlab.engines.spec import DTYPE_VARIANTS, EngineSpec, Option

SPEC = EngineSpec(
    "transformers",
    "Hugging Face transformers (PyTorch), CPU or CUDA; static batches, beam search",
    "wattlab.engines.transformers_engine:TransformersEngine",
    distributions=(("torch",), ("transformers",)),
    modules=("torch", "transformers"),
    extra="transformers",
    abilities=frozenset({"online", "beam", "sampling", "logprobs"}),
    options=(
        Option("n_threads", int, "CPU threads for torch (default: torch's own choice)"),
        Option(
            "attn_implementation", str, "eager | sdpa | flash_attention_2 (default: transformers' choice)"
        ),
    ),
    model_kind="hf",
    variants=DTYPE_VARIANTS,
    gpu_variant="bf16",
    default_device="gpu",
    order=2,
    guess_tok_s=15.0,
)
