"""The transformers engine, as wattlab knows it without importing torch (adapter: transformers_engine.py)."""

from __future__ import annotations

from wattlab.engines.spec import DTYPE_VARIANTS, EngineSpec, Option, SpecMethod

SPEC = EngineSpec(
    "transformers",
    "Hugging Face transformers (PyTorch), CPU or CUDA; static batches, beam search",
    "wattlab.engines.transformers_engine:TransformersEngine",
    distributions=(("torch",), ("transformers",)),
    modules=("torch", "transformers"),
    extra="transformers",
    abilities=frozenset({"online", "beam", "sampling", "logprobs"}),
    options=(
        Option("n_threads", int, "CPU threads for torch (default: torch's own choice)", min=1),
        Option(
            "attn_implementation",
            str,
            "attention kernels: eager (plain PyTorch), sdpa (torch's fused attention) or "
            "flash_attention_2 (GPU, needs the flash-attn package); default: transformers' choice, sdpa",
            choices=("eager", "sdpa", "flash_attention_2"),
            gpu_values=("flash_attention_2",),
            needs=(("flash_attention_2", "flash_attn"),),
        ),
        Option(
            "cache_implementation",
            str,
            "KV cache: dynamic (grows per step) or static (preallocated for the load's longest "
            "sequence, fixed shapes that torch_compile and CUDA graphs need); default dynamic",
            choices=("dynamic", "static"),
            default="dynamic",
        ),
        Option(
            "torch_compile",
            bool,
            "compile the model with torch.compile (inductor; with a static cache, transformers' "
            "decode-step compile, CUDA graphs on GPU); the warmup pays the compile (default false)",
            default=False,
        ),
    ),
    model_kind="hf",
    # dtypes, then weight-only quantizations of the dtype base (engines/quantize.py says how each is made)
    variants=(*DTYPE_VARIANTS, "int8wo", "int4wo", "bnb8", "nf4"),
    gpu_only_variants=(
        ("bnb8", "bitsandbytes' LLM.int8 matmul is a CUDA kernel"),
        ("nf4", "bitsandbytes' NF4 matmul is a CUDA kernel"),
    ),
    variant_needs=(
        ("int8wo", "torchao"),
        ("int4wo", "torchao"),
        ("bnb8", "bitsandbytes"),
        ("nf4", "bitsandbytes"),
    ),
    gpu_variant="bf16",
    default_device="gpu",
    order=2,
    guess_tok_s=15.0,
    # Assisted generation (prompt_lookup_num_tokens, assistant_model) in transformers 5.19 raises
    # "assisted generate is only supported for batch_size = 1".
    speculation=tuple(
        SpecMethod(
            method,
            max_batch=1,
            decodings=("greedy", "sample"),
            why="transformers' assisted generation (5.19) runs one sequence at a time",
        )
        for method in ("ngram", "draft")
    ),
)
