"""Helpers the adapters share: request checks, completion set-up, arrival pacing, device ids.

No heavy import here; torch-specific helpers import torch inside the function.
"""

from __future__ import annotations

import json
import resource
import struct
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wattlab.engines.base import Completion, Decoding, Engine, Request
from wattlab.errors import ConfigError, EngineError, OutOfMemory

OOM_FIX = "lower --batch-size or the input/output token lengths, or use a smaller model or variant"


def check_decoding(engine: Engine, decoding: Decoding) -> None:
    """Refuse a decoding strategy the engine lacks, naming the engines that have it."""
    if decoding.strategy == "beam" and not engine.SUPPORTS_BEAM:
        raise EngineError(
            f"the {engine.name} engine has no beam search",
            fix="use --decoding greedy or sample, or beam search on transformers or vllm",
        )
    if decoding.strategy == "sample" and not engine.SUPPORTS_SAMPLING:
        raise EngineError(f"the {engine.name} engine cannot sample", fix="use --decoding greedy")
    if decoding.strategy not in ("greedy", "sample", "beam"):
        raise ConfigError(
            f"unknown decoding strategy {decoding.strategy!r}", fix="use greedy, sample or beam"
        )
    if decoding.strategy == "beam" and decoding.num_beams < 2:
        raise ConfigError(f"beam search with num_beams={decoding.num_beams}", fix="use num_beams >= 2")


def check_width(engine: Engine, width: int, what: str) -> None:
    """A batch size / concurrency above the max_batch the engine was loaded for is a config error."""
    if width < 1:
        raise ConfigError(f"{what} must be at least 1, not {width}", fix=f"use {what} >= 1")
    if width > engine.config.max_batch:
        raise ConfigError(
            f"{what} {width} exceeds the {engine.name} engine's max_batch {engine.config.max_batch}",
            fix=f"load the engine with max_batch >= {width} (the runner sets it to the sweep's largest)",
        )


def check_ready(
    engine: Engine, loaded: bool, decoding: Decoding, width: int | None = None, what: str = ""
) -> None:
    """What every generate call checks first: the engine is loaded, the decoding is one it has, and
    (where `width` is given) the batch size / concurrency `what` fits max_batch."""
    if not loaded:
        raise EngineError(f"the {engine.name} engine is not loaded", fix="call load() first")
    check_decoding(engine, decoding)
    if width is not None:
        check_width(engine, width, what)


def request_problem(request: Request, max_tokens: int, vocab_size: int | None = None) -> str | None:
    """Why one request cannot run (then it fails alone, in Completion.error), or None."""
    if not request.prompt_ids:
        return "empty prompt"
    if request.max_new_tokens < 1:
        return f"max_new_tokens is {request.max_new_tokens}"
    if request.min_new_tokens > request.max_new_tokens:
        return f"min_new_tokens {request.min_new_tokens} > max_new_tokens {request.max_new_tokens}"
    if len(request.prompt_ids) + request.max_new_tokens > max_tokens:
        return (
            f"prompt ({len(request.prompt_ids)} tokens) + max_new_tokens ({request.max_new_tokens}) "
            f"exceeds the engine's max_tokens {max_tokens}"
        )
    if vocab_size is not None and any(not 0 <= t < vocab_size for t in request.prompt_ids):
        return f"a prompt token id is outside the vocabulary (0..{vocab_size - 1})"
    return None


def new_completions(requests: Sequence[Request], t0_ns: int, online: bool) -> list[Completion]:
    """One Completion per request, arrival set: the run's start offline, t0 + arrival_s online."""
    return [
        Completion(
            id=r.id,
            input_tokens=len(r.prompt_ids),
            arrival_ns=t0_ns + (int(r.arrival_s * 1e9) if online else 0),
        )
        for r in requests
    ]


def fail(completion: Completion, message: str, t_ns: int | None = None) -> None:
    t = t_ns if t_ns is not None else time.monotonic_ns()
    completion.error = message
    completion.finish_reason = "error"
    completion.start_ns = completion.start_ns or t
    completion.end_ns = t


def trim_at_eos(ids: list[int], eos: set[int], min_new_tokens: int) -> tuple[list[int], bool]:
    """Cut generated ids at the first EOS at or after min_new_tokens (EOS excluded). -> (ids, hit_eos)."""
    for i, token in enumerate(ids):
        if token in eos and i >= min_new_tokens:
            return ids[:i], True
    return ids, False


def sleep_until(t_ns: int) -> None:
    delay = (t_ns - time.monotonic_ns()) / 1e9
    if delay > 0:
        time.sleep(delay)


def request_seed(seed: int, request_id: int) -> int:
    """A per-request sampling seed: repeatable, distinct across requests, independent of batching."""
    return (seed * 1_000_003 + request_id * 7_919 + 12_345) % (2**31 - 1)


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def nvml_index(cuda_ordinal: int) -> str:
    """The NVML selector (index or GPU-uuid) of a CUDA ordinal, honouring CUDA_VISIBLE_DEVICES."""
    from wattlab.devices.nvidia import cuda_ordinal_to_nvml_index

    return cuda_ordinal_to_nvml_index(cuda_ordinal)


def gpu_device_id(cuda_ordinal: int) -> str:
    """A meter device id ("gpu:3") for a CUDA ordinal."""
    return f"gpu:{nvml_index(cuda_ordinal)}"


def is_oom(exc: BaseException) -> bool:
    """Whether an exception is an accelerator or host out-of-memory, whatever library raised it."""
    if isinstance(exc, MemoryError):
        return True
    name = type(exc).__name__
    text = str(exc).lower()
    return name == "OutOfMemoryError" or "out of memory" in text or "cuda error: out of memory" in text


def oom_error(exc: BaseException, where: str) -> OutOfMemory:
    return OutOfMemory(f"out of memory while {where}: {str(exc).splitlines()[0][:300]}", fix=OOM_FIX)


def safetensors_parameter_count(directory: str | Path) -> int | None:
    """Parameters in a checkpoint directory, from its safetensors headers (no tensor is read)."""
    total = 0
    files = sorted(Path(directory).glob("*.safetensors"))
    for path in files:
        with path.open("rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
        for name, info in header.items():
            if name != "__metadata__":
                count = 1
                for dim in info["shape"]:
                    count *= dim
                total += count
    return total or None


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of text with a Hugging Face tokenizer (or the byte-level fallback): special tokens
    in the text (the chat template's markers) are parsed, none is added."""
    from wattlab.engines.bytetok import ByteTokenizer

    if isinstance(tokenizer, ByteTokenizer):
        return tokenizer.encode(text)
    return list(tokenizer.encode(text, add_special_tokens=False))


def decode(tokenizer: Any, ids: list[int]) -> str:
    """Text of token ids, special tokens skipped (the byte-level fallback has none to skip)."""
    from wattlab.engines.bytetok import ByteTokenizer

    if isinstance(tokenizer, ByteTokenizer):
        return str(tokenizer.decode(ids))
    return str(tokenizer.decode(ids, skip_special_tokens=True))
