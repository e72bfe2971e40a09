"""Engine options (EngineConfig.options): the knobs each engine accepts, their types and meaning.

Light on purpose (no engine import): the catalog validates a user's options against this table,
and the CLI and console can list them. Keys marked internal are set by the catalog itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wattlab.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Option:
    name: str
    type: type
    help: str
    internal: bool = False


_COMMON = (
    Option("chat_template", str, "wattlab chat template: chatml, smollm2, qwen2.5, llama3"),
    Option(
        "tokenizer", str, "tokenizer source: a directory, a .gguf, or 'bytes' (byte-level fallback)", True
    ),
    Option("derive_from", str, "the GGUF this model's files are made from when missing", True),
)

OPTIONS: dict[str, tuple[Option, ...]] = {
    "transformers": (
        *_COMMON,
        Option("n_threads", int, "CPU threads for torch (default: torch's own choice)"),
        Option(
            "attn_implementation", str, "eager | sdpa | flash_attention_2 (default: transformers' choice)"
        ),
    ),
    "vllm": (
        *_COMMON,
        Option("tensor_parallel_size", int, "GPUs to shard the model over (default 1)"),
        Option("gpu_memory_utilization", float, "share of GPU memory vLLM reserves (on CPU: of RAM)"),
        Option("kv_cache_gib", int, "CPU only: KV cache size in GiB (VLLM_CPU_KVCACHE_SPACE, default 1)"),
        Option("enforce_eager", bool, "skip CUDA graphs / compilation (default: True on CPU, False on GPU)"),
        Option("enable_prefix_caching", bool, "reuse KV of shared prompt prefixes (default False)"),
        Option("load_format", str, "'dummy' for random weights (set by the catalog for random: models)"),
    ),
    "llamacpp": (
        *_COMMON,
        Option("n_gpu_layers", int, "layers offloaded to the GPU; -1 = all (default: all on cuda, 0 on cpu)"),
        Option("n_threads", int, "CPU threads for generation (default: all cores)"),
        Option("n_batch", int, "tokens per llama_decode call in prompt processing (default 512)"),
        Option("flash_attn", bool, "use flash attention where the build has it (default: llama.cpp's auto)"),
    ),
    "openai": (
        *_COMMON,
        Option("base_url", str, "the server's OpenAI API root, e.g. http://127.0.0.1:8000/v1"),
        Option("api_key", str, "bearer token, if the server wants one"),
        Option("served_model", str, "model name the server knows (default: the first of GET /models)"),
        Option("timeout_s", float, "per-request timeout in seconds (default 600)"),
    ),
    # The hidden test engine (engines/fake.py); values are checked when it loads.
    "fake": (
        *_COMMON,
        Option("tok_s", float, "decode tokens per second, per sequence (default 200)"),
        Option("prefill_tok_s", float, "prompt tokens per second (default 2000)"),
        Option("tokens_per_step", int, "tokens each sequence gets per step (default 1)"),
        Option("load_s", float, "seconds load() takes (default 0.05)"),
        Option("eos_after", int, "stop each output with EOS after this many tokens (default: never)"),
        Option("fail", str, "crash | hang | oom | error: fail on purpose"),
        Option("fail_after_tokens", int, "fail once this many tokens were generated since load"),
        Option("fail_at", str, "generate | load: when `fail` strikes (default generate)"),
    ),
}


def validate(engine: str, options: dict[str, Any]) -> dict[str, Any]:
    """Check option names and types for `engine`; ints are accepted where floats are expected."""
    known = {o.name: o for o in OPTIONS[engine]}
    checked: dict[str, Any] = {}
    for key, value in options.items():
        option = known.get(key)
        if option is None:
            public = ", ".join(o.name for o in OPTIONS[engine] if not o.internal)
            raise ConfigError(f"the {engine} engine has no option {key!r}", fix=f"use one of: {public}")
        if option.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, option.type) or (option.type is int and isinstance(value, bool)):
            raise ConfigError(
                f"option {key!r} of the {engine} engine must be {option.type.__name__}, not {value!r}",
                fix=f"{key}: {option.help}",
            )
        checked[key] = value
    return checked
