"""Weight-only quantization variants beyond dtypes: which ones a box can run, and how they are made.

Light at import (the catalog, the Launch menus and the preflight call it); torch, torchao and
bitsandbytes are imported only by `apply`, inside the engine worker.

The variants an engine declares (its EngineSpec: `variants`, `gpu_only_variants`, `variant_needs`)
are filtered here by device and by the modules installed, so menus offer only what can run, and a
run that asks for another is refused by the preflight with the reason and the fix.

How the transformers variants are made (`apply`), after the checkpoint loads in its base dtype
(fp32 on the CPU, bf16 on a GPU: `base_dtype`). Every linear layer of the decoder blocks is
quantized; the embeddings and the output head stay in the base dtype (the head is tied to the
embeddings in small models, and transformers' bitsandbytes loader leaves it out the same way):

- int8wo: torchao Int8WeightOnlyConfig, int8 weights with one scale per output row (CPU and GPU).
- int4wo on the CPU: torchao IntxWeightOnlyConfig(int4, groups of 32), symmetric int4 values stored
  one per int8 and dequantized per matmul (torchao 0.18 has no packed int4 kernel for x86 CPUs:
  its Int4WeightOnlyConfig layouts need CUDA, XPU, NPU or the mslk package).
- int4wo on a GPU: torchao Int4WeightOnlyConfig(groups of 32, tile_packed_to_4d), packed
  asymmetric int4 through the tinygemm kernel (it needs bf16, the GPU base).
- bnb8 (GPU only): bitsandbytes Linear8bitLt, LLM.int8 with outlier threshold 6.0.
- nf4 (GPU only): bitsandbytes Linear4bit, NF4 in blocks of 64, computing in the base dtype.

The run records the variant name (RunResult.quant) and its devices; this list turns the pair into
the method.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

from wattlab.errors import ConfigError, EngineError

# Quantized variants and the dtype they start from, per device kind.
QUANTIZED = ("int8wo", "int4wo", "bnb8", "nf4")
BASE_DTYPE = {"cpu": "fp32", "gpu": "bf16"}
INT4_GROUP = 32  # divides SmolLM2's 576 and most published hidden sizes; 128 would skip 576-wide layers
NF4_BLOCK = 64
LLM_INT8_THRESHOLD = 6.0


def device_kind(device: str | None) -> str | None:
    """ "cpu" | "gpu" for a device string (cpu, cuda, cuda:N, gpu); None where unknown (auto)."""
    if device is None:
        return None
    if device == "cpu":
        return "cpu"
    if device == "gpu" or device.startswith("cuda"):
        return "gpu"
    return None


def is_quantized(variant: str) -> bool:
    return variant in QUANTIZED


def base_dtype(variant: str, device_type: str) -> str:
    """The dtype variant a model is loaded in before `variant` is applied (device_type: torch's)."""
    if not is_quantized(variant):
        return variant
    return BASE_DTYPE["gpu" if device_type == "cuda" else "cpu"]


def variant_problem(engine: str, variant: str, device: str | None) -> ConfigError | None:
    """Why `engine` cannot run `variant` (one it declares) on `device` on this box, or None.

    device: "cpu" | "gpu" | "cuda[:N]" | None (not known yet: only the modules are checked).
    """
    from wattlab.engines import spec_of

    spec = spec_of(engine)
    gpu_only = dict(spec.gpu_only_variants)
    if device_kind(device) == "cpu" and variant in gpu_only:
        on_cpu = [v for v in spec.variants if v not in gpu_only and _module_missing(spec, v) is None]
        return ConfigError(
            f"{engine} runs {variant} only on a GPU ({gpu_only[variant]}), and this run is on the CPU",
            fix=f"run it with --device cuda on an NVIDIA GPU box; on the CPU use one of: {', '.join(on_cpu)}",
            title="Variant needs a GPU",
        )
    module = _module_missing(spec, variant)
    if module is not None:
        return ConfigError(
            f"the {engine} engine's {variant} variant needs the {module} package, which is not installed",
            fix=f"pip install {module}",
            title="Variant needs a package",
        )
    return None


def _module_missing(spec: Any, variant: str) -> str | None:
    for name, module in spec.variant_needs:
        if name == variant and not importable(module):
            return str(module)
    return None


def importable(module: str) -> bool:
    """Whether `module` can be imported here (found on the path; not imported)."""
    return importlib.util.find_spec(module) is not None


def runnable(engine: str, declared: list[str], device: str | None) -> list[str]:
    """The variants of `declared` that `engine` can run on `device` with the packages installed."""
    return [v for v in declared if variant_problem(engine, v, device) is None]


def variant_problems(model: str, engine: str, variant: str, device: str | None) -> list[ConfigError]:
    """The preflight's check of a run's variant (`quant`): [] when it can run, else why not + fix.

    Unknown to the engine: the variants it offers here. Known but not here: the device or the
    missing package, with the fix. Model errors are left to the preflight's model check.
    """
    from wattlab.engines.models import variants
    from wattlab.errors import WattlabError

    try:
        declared = variants(model, engine, device="any")
    except WattlabError:
        return []  # the model itself is the problem; the preflight reports that once
    match = next((v for v in declared if v.lower() == variant.lower()), None)
    if match is None:
        here = runnable(engine, declared, device)
        return [
            ConfigError(
                f"the {engine} engine cannot run {model} as {variant!r}",
                fix=f"choose one of: {', '.join(here or declared)}",
                title="Variant not available",
            )
        ]
    problem = variant_problem(engine, match, device)
    return [problem] if problem else []


# --- applying a variant (worker side: imports torch and the quantization library) ---------------


def apply(model: Any, variant: str, device: Any) -> int:
    """Quantize `model` (loaded in base_dtype) in place as `variant`; returns the layers quantized.

    device: the torch.device the model is on. Raises EngineError where nothing could be quantized
    or the library fails (an unsupported layer shape, a kernel missing on this device).
    """
    if not is_quantized(variant):
        return 0
    head = model.get_output_embeddings()
    try:
        if variant in ("int8wo", "int4wo"):
            done = _torchao(model, variant, device, head)
        else:
            done = _bitsandbytes(model, variant, device, head)
    except (ImportError, RuntimeError, AssertionError, NotImplementedError, ValueError) as exc:
        raise EngineError(
            f"quantizing the model as {variant} on {device} failed: {type(exc).__name__}: {exc}",
            fix=f"use another variant (`wattlab run --quant ...`); {variant} on {device.type} needs "
            + ("torchao >= 0.18" if variant.endswith("wo") else "bitsandbytes with CUDA kernels"),
        ) from exc
    if done == 0:
        raise EngineError(
            f"no linear layer of this model could be quantized as {variant}",
            fix=f"{variant} needs layer widths divisible by {INT4_GROUP}; use int8wo or a dtype",
        )
    return done


def parameter_count(model: Any) -> int:
    """The model's parameters as it was defined: a bitsandbytes 4-bit weight holds two values a byte,
    so its own numel() is half the layer's; its quant_state keeps the original shape."""
    total = 0
    for param in model.parameters():
        state = getattr(param, "quant_state", None)
        shape = getattr(state, "shape", None)
        if shape is not None:
            count = 1
            for dim in shape:
                count *= int(dim)
            total += count
        else:
            total += param.numel()
    return total


def _linears(model: Any, head: Any) -> list[tuple[Any, str, Any]]:
    """(parent, attribute, layer) of every nn.Linear but the output head."""
    import torch

    out = []
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, torch.nn.Linear) and child is not head:
                out.append((parent, name, child))
    return out


def _torchao(model: Any, variant: str, device: Any, head: Any) -> int:
    import torch

    # torchao logs a warning for each optional CUDA extension it cannot load (a CPU build has none).
    logging.getLogger("torchao").setLevel(logging.ERROR)
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    config: Any
    if variant == "int8wo":
        config = Int8WeightOnlyConfig()
    elif device.type == "cuda":
        from torchao.quantization import Int4WeightOnlyConfig

        config = Int4WeightOnlyConfig(group_size=INT4_GROUP, int4_packing_format="tile_packed_to_4d")
    else:
        from torchao.quantization import IntxWeightOnlyConfig
        from torchao.quantization.granularity import PerGroup

        config = IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(INT4_GROUP))  # type: ignore[attr-defined]
    targets = {id(layer) for _, _, layer in _linears(model, head)}
    quantize_(model, config, filter_fn=lambda module, _fqn: id(module) in targets)
    # torchao leaves a layer whose width its groups do not divide as it was: count what changed.
    return sum(
        1
        for _, _, layer in _linears(model, head)
        if type(layer.weight) not in (torch.nn.Parameter, torch.Tensor)
    )


def _bitsandbytes(model: Any, variant: str, device: Any, head: Any) -> int:
    import bitsandbytes as bnb
    import torch

    if device.type != "cuda":
        raise RuntimeError(f"bitsandbytes variants run on CUDA only, and the model is on {device}")
    layers = _linears(model, head)
    for parent, name, layer in layers:
        weight = layer.weight.data.to("cpu")  # bitsandbytes quantizes when a CPU weight moves to CUDA
        new: Any
        if variant == "bnb8":
            new = bnb.nn.Linear8bitLt(
                layer.in_features,
                layer.out_features,
                bias=layer.bias is not None,
                has_fp16_weights=False,
                threshold=LLM_INT8_THRESHOLD,
            )
            new.weight = bnb.nn.Int8Params(weight, requires_grad=False, has_fp16_weights=False)
        else:
            new = bnb.nn.Linear4bit(
                layer.in_features,
                layer.out_features,
                bias=layer.bias is not None,
                compute_dtype=layer.weight.dtype,
                quant_type="nf4",
            )
            new.weight = bnb.nn.Params4bit(weight, requires_grad=False, quant_type="nf4", blocksize=NF4_BLOCK)
        if layer.bias is not None:
            new.bias = torch.nn.Parameter(layer.bias.data.to("cpu"), requires_grad=False)
        setattr(parent, name, new.to(device))
    return len(layers)


__all__ = [
    "QUANTIZED",
    "apply",
    "base_dtype",
    "device_kind",
    "is_quantized",
    "parameter_count",
    "runnable",
    "variant_problem",
    "variant_problems",
]
