"""The Engine contract: one adapter per inference backend, all measured the same way.

An engine lives in a worker subprocess of the runner (see sessions/worker.py). It receives token
ids, never text to template: wattlab applies one chat template itself (engines/chat.py) and
tokenizes with the model's tokenizer, so the same prompt is the same ids on every engine.

Timing is taken inside the engine with `time.monotonic_ns()` (system-wide on Linux, so the
runner's power samples line up): a request's arrival, its first token, every later token (or
token batch, where an engine yields several at once) and its end.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

from wattlab.engines.spec import ABILITIES, EngineSpec

Strategy = Literal["greedy", "sample", "beam"]


@dataclass(frozen=True, slots=True)
class Decoding:
    """How tokens are chosen. `seed` makes sampling repeatable where the engine allows."""

    strategy: Strategy = "greedy"
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    num_beams: int = 1
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Request:
    """One generation request.

    prompt_ids:     the templated prompt as token ids.
    max_new_tokens: upper bound on generated tokens.
    min_new_tokens: generate at least this many (EOS ignored until then); set equal to
                    max_new_tokens to force an exact output length for binned workloads.
    arrival_s:      online mode only: when the request arrives, in s after the run starts.
    """

    id: int
    prompt_ids: tuple[int, ...]
    max_new_tokens: int
    min_new_tokens: int = 0
    arrival_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "prompt_ids": list(self.prompt_ids),
            "max_new_tokens": self.max_new_tokens,
            "min_new_tokens": self.min_new_tokens,
            "arrival_s": self.arrival_s,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Request:
        return cls(
            id=int(d["id"]),
            prompt_ids=tuple(d["prompt_ids"]),
            max_new_tokens=int(d["max_new_tokens"]),
            min_new_tokens=int(d.get("min_new_tokens", 0)),
            arrival_s=float(d.get("arrival_s", 0.0)),
        )


@dataclass(slots=True)
class Completion:
    """What one request produced and when. Times are `time.monotonic_ns()` values.

    arrival_ns:   when a client would have sent it (offline: the workload's submission).
    start_ns:     when the adapter handed it to the engine (the engine may still queue it).
    scheduled_ns: when the engine first worked on it (the batch holding its prompt started
                  prefill); arrival -> scheduled is queue time, scheduled -> first token the
                  service TTFT. None where the engine cannot tell (an OpenAI-compatible server).
    token_ns[i] is when output token i was observed (tokens that arrive together share a time).
    """

    id: int
    input_tokens: int
    output_ids: list[int] = field(default_factory=list)
    text: str = ""
    arrival_ns: int = 0
    start_ns: int = 0
    first_token_ns: int | None = None
    end_ns: int | None = None
    token_ns: list[int] = field(default_factory=list)
    finish_reason: str = ""
    error: str | None = None
    scheduled_ns: int | None = None

    @property
    def output_tokens(self) -> int:
        return len(self.output_ids)

    def record_tokens(self, ids: list[int], t_ns: int | None = None) -> None:
        """Append newly observed output tokens, stamping them with one time."""
        if not ids:
            return
        t = t_ns if t_ns is not None else time.monotonic_ns()
        if self.first_token_ns is None:
            self.first_token_ns = t
        self.output_ids.extend(ids)
        self.token_ns.extend([t] * len(ids))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Completion:
        return cls(**d)


Progress = Callable[[int], None]
"""Called by an engine with the number of new output tokens since its last call (for live tokens/s)."""


class Engine(ABC):
    """An inference backend.

    Contract:
    - `__init__` stores the config only; nothing heavy. `load()` loads weights (the runner times it
      and meters its energy as the `load` window). Errors are raised as wattlab errors
      (ModelError, OutOfMemory, EngineError) with a fix, never vendor exceptions.
    - `tokenize(text)` parses special tokens (the chat template's markers) and adds no BOS of its
      own; `detokenize(ids)` skips special tokens.
    - `generate(requests, decoding, batch_size, progress)` runs offline: requests in static batches
      of at most `batch_size` (or, for engines with continuous batching, at most that many at once).
      It returns one Completion per request, in request order, with token times filled in.
    - `generate_online(...)` serves requests as they arrive (Request.arrival_s) with at most
      `max_concurrency` in flight. Only engines with SUPPORTS_ONLINE.
    - `prompt_logprobs(ids)` returns log p(ids[i] | ids[:i]) for i >= 1 (natural log), for
      perplexity. Only engines with SUPPORTS_LOGPROBS.
    - `close()` frees the model. Idempotent.
    """

    name: ClassVar[str] = "engine"
    # An adapter names its light spec (engines/specs/<name>.py) as SPEC; `name` and the SUPPORTS_*
    # flags are then derived from it (abilities are declared once, in the spec). The defaults below
    # serve adapters without a spec (test doubles).
    SPEC: ClassVar[EngineSpec | None] = None
    SUPPORTS_ONLINE: ClassVar[bool] = False
    SUPPORTS_BEAM: ClassVar[bool] = False
    SUPPORTS_SAMPLING: ClassVar[bool] = True
    SUPPORTS_LOGPROBS: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        spec = cls.__dict__.get("SPEC")
        if spec is None:
            return
        declared = [a for a in ABILITIES if f"SUPPORTS_{a.upper()}" in cls.__dict__]
        if declared:
            raise TypeError(f"{cls.__name__}: abilities come from its SPEC, not SUPPORTS_* flags")
        cls.name = spec.name
        for ability in ABILITIES:
            setattr(cls, f"SUPPORTS_{ability.upper()}", ability in spec.abilities)

    @classmethod
    def capabilities(cls) -> dict[str, bool]:
        """Each ability (spec.ABILITIES) and whether this adapter has it."""
        return {a: bool(getattr(cls, f"SUPPORTS_{a.upper()}")) for a in ABILITIES}

    def __init__(self, config: EngineConfig) -> None:
        self.config = config

    @classmethod
    def version(cls) -> str:
        return "unknown"

    @abstractmethod
    def load(self) -> None: ...

    @abstractmethod
    def tokenize(self, text: str) -> list[int]: ...

    @abstractmethod
    def detokenize(self, ids: list[int]) -> str: ...

    @property
    @abstractmethod
    def eos_token_ids(self) -> tuple[int, ...]: ...

    @abstractmethod
    def generate(
        self,
        requests: list[Request],
        decoding: Decoding,
        batch_size: int,
        progress: Progress | None = None,
    ) -> list[Completion]: ...

    def generate_online(
        self,
        requests: list[Request],
        decoding: Decoding,
        max_concurrency: int,
        progress: Progress | None = None,
    ) -> list[Completion]:
        from wattlab.errors import EngineError

        raise EngineError(
            f"the {self.name} engine has no online (serving) mode",
            fix="use --mode offline, or an engine that serves requests as they arrive (vllm, llamacpp)",
        )

    def prompt_logprobs(self, ids: list[int]) -> list[float]:
        from wattlab.errors import EngineError

        raise EngineError(
            f"the {self.name} engine cannot return prompt log-probabilities",
            fix="run perplexity tasks on transformers, llamacpp or vllm",
        )

    def devices(self) -> list[str]:
        """What this engine runs on, as meter device ids: "cpu", "gpu:0", "gpu:1", "soc"."""
        return ["cpu"]

    def peak_memory_mib(self) -> float | None:
        """Peak accelerator (or process) memory since load, in MiB, where the engine can tell."""
        return None

    def speculation_stats(self) -> dict[str, int] | None:
        """Speculative decoding in the last generate call: draft_tokens, accepted_tokens,
        target_steps, emitted_tokens (sessions/speculation.py defines them); None without it."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """What to load and how. Resolved by the models catalog before it reaches the worker.

    model:     catalog name or local path, as the user gave it (for records).
    path:      the file or directory to load (GGUF file, HF checkpoint dir, or config dir).
    fmt:       "gguf" | "hf" | "random" (architecture config, random weights) | "remote".
    variant:   the quantization or dtype: "Q4_1", "Q8_0", "F16" for GGUF; "fp32", "bf16", "fp16"
               for transformers/vLLM.
    device:    "cpu", "cuda", "cuda:1", or "auto".
    options:   engine-specific knobs (n_gpu_layers, tensor_parallel_size, n_threads, base_url, ...).
    """

    engine: str
    model: str
    path: str
    fmt: str
    variant: str
    device: str = "auto"
    max_batch: int = 1
    max_tokens: int = 2048
    options: dict[str, Any] = field(default_factory=dict)
    speculative: str | None = None  # RunSpec.speculative (engines/levers.py), set when the engine loads

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EngineConfig:
        return cls(**d)


class ServingEngine(Engine):
    """An engine whose offline and online modes are one loop, `_serve`: offline is every request
    at once in at most `batch_size` slots, online the same loop pacing arrivals, `max_concurrency`
    slots."""

    def generate(
        self, requests: list[Request], decoding: Decoding, batch_size: int, progress: Progress | None = None
    ) -> list[Completion]:
        return self._serve(requests, decoding, batch_size, online=False, progress=progress)

    def generate_online(
        self,
        requests: list[Request],
        decoding: Decoding,
        max_concurrency: int,
        progress: Progress | None = None,
    ) -> list[Completion]:
        return self._serve(requests, decoding, max_concurrency, online=True, progress=progress)

    @abstractmethod
    def _serve(
        self, requests: list[Request], decoding: Decoding, width: int, online: bool, progress: Progress | None
    ) -> list[Completion]: ...
