"""Transformed models for llama.cpp: a Hugging Face checkpoint written as a GGUF, and LoRA adapters
as GGUF adapter files.

llama.cpp only loads GGUF files, and its convert scripts are not installed with llama-cpp-python,
so the conversion is written here with the `gguf` package (as random_gguf.py writes random weights):

- hf_to_gguf(): a llama / qwen2 checkpoint (what transforms.py makes from the bundled model: pruned
  layers or MLP channels, zeroed weights, merged LoRA) as an F16 GGUF with llama.cpp's tensor names,
  its hyper-parameters from the checkpoint's config.json (so a pruned checkpoint's block count and
  feed-forward length are the GGUF's), and the tokenizer keys of the GGUF the checkpoint came from.
  llama.cpp's llama architecture expects the rows of attn_q / attn_k in its rotary layout (pairs of
  a head's halves interleaved; convert_hf_to_gguf.py's LlamaModel.permute): the Hugging Face layout is
  permuted here the same way. qwen2 (NEOX rotary) keeps the Hugging Face order.
- write_lora_gguf(): a PEFT adapter directory (adapter_config.json + adapter_model.safetensors) as a
  llama.cpp LoRA adapter: general.type "adapter", adapter.type "lora", adapter.lora.alpha, tensors
  `<base tensor>.lora_a` (rank x in, PEFT's lora_A as is) and `.lora_b` (out x rank; for attn_q /
  attn_k with the same row permutation as the base weight, since W + B A permutes as B does).
  llama.cpp scales B A by alpha / rank, PEFT by lora_alpha / r (or / sqrt(r) with rsLoRA), so alpha
  is written so the two agree.
- ensure_transformed_gguf() / ensure_lora_gguf(): the cached pipeline GGUF -> derived checkpoint
  (derive.ensure_hf_checkpoint) -> transformed checkpoint or adapter (transforms.py) -> GGUF ->
  the run's GGUF type (llama.cpp's quantizer: derive._quantize). Each step is a
  derive.build_once (per-target lock, atomic rename); the engine worker runs them in its derivation
  child (derive.derive_in_child -> models.ensure_files), never in its own process. Cache keys hold
  the source GGUF's identity, the transform, and both modules' FORMAT_VERSIONs (and transforms.py's
  seed), so a changed transform algorithm converts anew.
- random:<arch> on llama.cpp takes an unmerged LoRA only (nothing stored to prune or merge into):
  the adapter transforms.py makes from the arch's config, written as GGUF, on the random GGUF.

Proof of the conversion (tests/engines/test_transforms_gguf.py): the bundled SmolLM2 Q4_1 GGUF,
de-quantized to a checkpoint and written back here as F16, is tensor for tensor llama.cpp's own F16
conversion of the bundled file, and llama.cpp's quantizer turns it back into the bundled Q4_1 bytes.

Heavy imports (numpy, torch, safetensors, gguf) happen inside the functions.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wattlab.engines.random_gguf import GGUF_ARCHS, ArchShape, shape_of_config
from wattlab.errors import ConfigError, ModelError

if TYPE_CHECKING:
    from wattlab.engines.base import EngineConfig

FORMAT_VERSION = 1  # part of every cache key: bump when what is written changes
_PERMUTED_ARCHS = {"llama"}  # rotary layout differs between HF and llama.cpp (see module doc)
_FILE_TYPES = {"F32": 0, "F16": 1}  # llama_ftype ALL_F32 / MOSTLY_F16

# Hugging Face module name (inside a decoder layer) -> llama.cpp tensor name (inside blk.N).
_LAYER_TENSORS = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
_TOP_TENSORS = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
_LAYER_NAME = re.compile(r"^model\.layers\.(\d+)\.(.+)\.(weight|bias)$")


# --- shape and names -----------------------------------------------------------------------------


def _rope(config: dict[str, Any]) -> tuple[float, dict[str, Any] | None]:
    """(rope theta, rope scaling or None) from either transformers 4 keys or 5's rope_parameters."""
    params = config.get("rope_parameters") or {}
    theta = config.get("rope_theta") or params.get("rope_theta") or 10000.0
    scaling = config.get("rope_scaling")
    if scaling is None and params.get("rope_type", "default") != "default":
        scaling = params
    if scaling is not None:
        kind = str(scaling.get("rope_type", scaling.get("type", ""))).lower()
        if kind not in ("default", "llama3"):
            raise ModelError(
                f"the checkpoint uses {kind!r} rope scaling, which wattlab's GGUF writer does not carry",
                fix="run this transform on transformers or vllm",
            )
        if kind == "default":
            scaling = None
    return float(theta), scaling


def checkpoint_shape(config: dict[str, Any]) -> ArchShape:
    """The hyper-parameters llama.cpp needs, from a checkpoint's config.json (a pruned one included)."""
    model_type = config.get("model_type", "?")
    if model_type not in GGUF_ARCHS:
        raise ModelError(
            f"the checkpoint is a {model_type!r} model; wattlab writes GGUFs for llama and qwen2 only",
            fix="run this transform on transformers or vllm",
        )
    theta, scaling = _rope(config)
    return shape_of_config(
        config,
        rope_theta=theta,
        rope_scaling=scaling,
        qkv_bias=model_type == "qwen2" or bool(config.get("attention_bias", False)),
    )


@dataclass(frozen=True, slots=True)
class TensorMap:
    """One checkpoint tensor and where it goes: its GGUF name, and the head count to permute its
    rows by (llama attn_q / attn_k), or None."""

    hf: str
    gguf: str
    permute_heads: int | None = None


def _permute_heads(shape: ArchShape, module: str) -> int | None:
    if shape.gguf_arch not in _PERMUTED_ARCHS:
        return None
    if module == "self_attn.q_proj":
        return shape.heads
    if module == "self_attn.k_proj":
        return shape.kv_heads
    return None


def tensor_map(shape: ArchShape, names: list[str]) -> list[TensorMap]:
    """Where each of a checkpoint's tensors `names` goes in the GGUF, in writing order.

    Decoder layers are renumbered in order (blk.0 .. blk.N-1), so a checkpoint whose dropped layers
    left gaps in the numbering still loads; their count must be the config's num_hidden_layers.
    Names llama.cpp has no tensor for (rotary caches) are skipped; an unknown weight is an error.
    """
    layer_ids = sorted({int(m.group(1)) for n in names if (m := _LAYER_NAME.match(n))})
    if len(layer_ids) != shape.layers:
        raise ModelError(
            f"the checkpoint holds {len(layer_ids)} decoder layers but its config.json says "
            f"num_hidden_layers = {shape.layers}",
            fix="re-make the transformed checkpoint (delete it under the models dir)",
        )
    block = {old: new for new, old in enumerate(layer_ids)}
    out: list[TensorMap] = []
    for name in names:
        if name in _TOP_TENSORS:
            if name == "lm_head.weight" and shape.tied:
                continue  # tied: llama.cpp reuses token_embd as the output projection
            out.append(TensorMap(name, _TOP_TENSORS[name]))
            continue
        if name.endswith("rotary_emb.inv_freq"):
            continue
        m = _LAYER_NAME.match(name)
        if m is None or m.group(2) not in _LAYER_TENSORS:
            raise ModelError(
                f"the checkpoint has a tensor {name!r} that a llama.cpp {shape.gguf_arch} model "
                "has no place for",
                fix="run this transform on transformers or vllm",
            )
        module, kind = m.group(2), m.group(3)
        target = f"blk.{block[int(m.group(1))]}.{_LAYER_TENSORS[module]}.{kind}"
        out.append(TensorMap(name, target, _permute_heads(shape, module)))
    order = {"token_embd.weight": -1, "output_norm.weight": 1 << 30, "output.weight": (1 << 30) + 1}

    def key(t: TensorMap) -> tuple[int, str]:
        if t.gguf.startswith("blk."):
            return int(t.gguf.split(".")[1]), t.gguf
        return order[t.gguf], t.gguf

    return sorted(out, key=key)


def permute_rows(weights: Any, n_head: int) -> Any:
    """HF rotary row order -> llama.cpp's: within each head, the two halves' rows interleaved
    (convert_hf_to_gguf.py's LlamaModel.permute). Works on a weight (rows x cols), a bias (rows,)
    and a LoRA B (rows x rank)."""
    rows = weights.shape[0]
    split = weights.reshape(n_head, 2, rows // n_head // 2, *weights.shape[1:])
    return split.swapaxes(1, 2).reshape(weights.shape)


# --- reading a checkpoint -------------------------------------------------------------------------


def _safetensor_files(directory: Path, single: str) -> list[Path]:
    index = directory / f"{single}.index.json"
    if index.exists():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [directory / s for s in shards]
    if (directory / single).exists():
        return [directory / single]
    raise ModelError(
        f"{directory} has no {single}",
        fix="re-make the transformed checkpoint (delete it under the models dir)",
    )


def _tensors(files: list[Path]) -> dict[str, Path]:
    """Every tensor name of the safetensors `files` -> the file holding it."""
    from safetensors import safe_open

    names: dict[str, Path] = {}
    for path in files:
        with safe_open(str(path), framework="np") as f:
            for name in f.keys():  # noqa: SIM118 - safe_open is not a mapping
                names[name] = path
    return names


def _read(path: Path, name: str) -> Any:
    """One tensor as float32 numpy. numpy reads fp32 / fp16 itself; bf16 (numpy has no such type)
    goes through torch, imported only then."""
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        if f.get_slice(name).get_dtype() != "BF16":
            return f.get_tensor(name).astype("float32")
    import torch

    with safe_open(str(path), framework="pt") as f:
        return f.get_tensor(name).to(torch.float32).numpy()


def _config(directory: Path) -> dict[str, Any]:
    try:
        config: dict[str, Any] = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"cannot read {directory / 'config.json'}: {exc}", fix="give a Hugging Face checkpoint directory"
        ) from None
    return config


# --- HF checkpoint -> GGUF ------------------------------------------------------------------------


def hf_to_gguf(hf_dir: Path, tokenizer_gguf: Path, out: Path, *, ftype: str = "F16") -> None:
    """Write checkpoint `hf_dir` (llama or qwen2) as a GGUF at `out`: 2-D weights in `ftype` (F16 or
    F32), norms and biases F32, tokenizer keys copied from `tokenizer_gguf`. One tensor in memory at a
    time (the writer streams them)."""
    import gguf
    import numpy as np

    from wattlab.engines.random_gguf import _llama3_rope, check_free_space, write_model_keys

    if ftype not in _FILE_TYPES:
        raise ConfigError(f"hf_to_gguf writes F16 or F32, not {ftype!r}", fix="use F16 or F32")
    config = _config(hf_dir)
    shape = checkpoint_shape(config)
    where = _tensors(_safetensor_files(hf_dir, "model.safetensors"))
    plan = tensor_map(shape, list(where))
    weight_dtype = np.float16 if ftype == "F16" else np.float32
    rope = _llama3_rope(shape)
    check_free_space(out.parent, sum(p.stat().st_size for p in set(where.values())), f"{hf_dir.name} as GGUF")

    writer = gguf.GGUFWriter(out, shape.gguf_arch)
    try:
        writer.add_type(gguf.GGUFType.MODEL)
        write_model_keys(
            writer,
            shape,
            name=str(config.get("_model_name_or_path") or hf_dir.name),
            description=f"{hf_dir.name} written as a GGUF by wattlab",
            file_type=_FILE_TYPES[ftype],
            tokenizer_gguf=tokenizer_gguf,
        )

        def converted(t: TensorMap) -> Any:
            data = _read(where[t.hf], t.hf)
            if t.permute_heads is not None:
                data = permute_rows(data, t.permute_heads)
            return data.astype(weight_dtype if data.ndim == 2 else np.float32)

        # The header needs every tensor's shape and size first; reading headers only is cheap.
        from safetensors import safe_open

        infos: list[tuple[str, tuple[int, ...], Any]] = []
        if rope is not None:
            infos.append(("rope_freqs.weight", (len(rope),), np.dtype(np.float32)))
        for t in plan:
            with safe_open(str(where[t.hf]), framework="np") as f:
                dims = tuple(f.get_slice(t.hf).get_shape())
            infos.append((t.gguf, dims, np.dtype(weight_dtype if len(dims) == 2 else np.float32)))
        for name, dims, dtype in infos:
            writer.add_tensor_info(name, dims, dtype, math.prod(dims) * dtype.itemsize)
        writer.write_header_to_file(out)
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        if rope is not None:
            writer.write_tensor_data(np.asarray(rope, dtype=np.float32))
        for t in plan:
            data = converted(t)
            writer.write_tensor_data(data)
            del data
    finally:
        writer.close()


# --- PEFT adapter -> GGUF LoRA adapter ----------------------------------------------------------

_LORA_NAME = re.compile(
    r"(?:^|\.)layers\.(\d+)\.(self_attn\.[qkvo]_proj|mlp\.(?:gate|up|down)_proj)\.lora_([AB])(?:\.\w+)?\.weight$"
)


def lora_alpha_for_llamacpp(adapter_config: dict[str, Any]) -> float:
    """The adapter.lora.alpha that makes llama.cpp's scale (alpha / rank) equal PEFT's."""
    if adapter_config.get("rank_pattern") or adapter_config.get("alpha_pattern"):
        raise ModelError(
            "the LoRA adapter has per-module ranks or alphas, which one GGUF alpha cannot express",
            fix="serve it merged (lora:R:merged) on llama.cpp",
        )
    rank = int(adapter_config["r"])
    alpha = float(adapter_config.get("lora_alpha") or 8)
    if adapter_config.get("use_rslora"):
        return alpha * math.sqrt(rank)  # rsLoRA scales by alpha / sqrt(r)
    return alpha


def lora_tensor_map(names: list[str], layer_count: int) -> list[tuple[str, str, str]]:
    """(PEFT tensor name, GGUF base tensor name, "a" | "b") for every LoRA tensor of an adapter,
    sorted by GGUF name; layers renumbered in order as tensor_map() does for the base."""
    found: list[tuple[int, str, str, str]] = []
    for name in names:
        m = _LORA_NAME.search(name)
        if m is None:
            raise ModelError(
                f"the LoRA adapter has a tensor {name!r} that llama.cpp cannot apply",
                fix="target the attention or MLP projections only, or serve it merged (lora:R:merged)",
            )
        found.append((int(m.group(1)), m.group(2), m.group(3).lower(), name))
    layer_ids = sorted({f[0] for f in found})
    if len(layer_ids) > layer_count:
        raise ModelError(
            f"the LoRA adapter covers {len(layer_ids)} layers but the base model has {layer_count}",
            fix="make the adapter for this base model",
        )
    out = [(name, f"blk.{layer}.{_LAYER_TENSORS[module]}.weight", ab) for layer, module, ab, name in found]
    return sorted(out, key=lambda x: (int(x[1].split(".")[1]), x[1], x[2]))


def write_lora_gguf(adapter_dir: Path, base_config: dict[str, Any], out: Path) -> None:
    """Write the PEFT adapter in `adapter_dir` (made for the checkpoint whose config.json is
    `base_config`) as a llama.cpp GGUF LoRA adapter at `out` (F32 tensors: adapters are small)."""
    import gguf
    import numpy as np

    try:
        adapter_config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"cannot read the LoRA adapter in {adapter_dir}: {exc}",
            fix="delete the adapter directory so it is written again",
        ) from None
    shape = checkpoint_shape(base_config)
    where = _tensors(_safetensor_files(adapter_dir, "adapter_model.safetensors"))
    plan = lora_tensor_map(list(where), shape.layers)
    module_of = {v: k for k, v in _LAYER_TENSORS.items()}

    writer = gguf.GGUFWriter(out, shape.gguf_arch)
    try:
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, lora_alpha_for_llamacpp(adapter_config))
        writer.add_name(f"LoRA r{adapter_config.get('r')} for {base_config.get('_model_name_or_path', '?')}")
        tensors: list[tuple[str, Any]] = []
        for peft_name, base_name, ab in plan:
            data = _read(where[peft_name], peft_name)  # A: rank x in, B: out x rank (llama.cpp's too)
            heads = _permute_heads(shape, module_of[base_name.split(".")[2]])
            if ab == "b" and heads is not None:
                data = permute_rows(data, heads)
            tensors.append((f"{base_name}.lora_{ab}", np.ascontiguousarray(data, dtype=np.float32)))
        for name, data in tensors:
            writer.add_tensor(name, data)
        writer.write_header_to_file(out)
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()


# --- cached pipeline -----------------------------------------------------------------------------


def _slug(transform: str) -> str:
    """A file-name-safe form of a transform, plus a hash so distinct texts never collide."""
    safe = re.sub(r"[^A-Za-z0-9.]+", "-", transform).strip("-")
    return f"{safe}-{hashlib.sha256(transform.encode()).hexdigest()[:6]}"


def _key(source: Path) -> str:
    from wattlab.engines.derive import source_key

    return _hash(source_key(source))


def _hash(identity: str) -> str:
    """A cache key of a source's identity, this writer's FORMAT_VERSION and transforms.py's (bumped
    when a transform's algorithm changes) and seed: a changed transform is converted anew."""
    transforms = _transforms_module()
    blob = f"{identity}|{FORMAT_VERSION}|transforms-v{transforms.FORMAT_VERSION}|seed{transforms.SEED}"
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def transformed_gguf_path(source: Path, transform: str, variant: str) -> Path:
    """Where `source` (a GGUF) with `transform` applied, as GGUF type `variant`, is cached. Keyed by
    the source's identity, the transform and both modules' format versions (_hash): the F16 file is a
    function of those, so the quantized ones made from it are too."""
    from wattlab.paths import models_dir

    name = f"{source.stem}-{_key(source)}-{_slug(transform)}.{variant}.gguf"
    return models_dir() / "transformed-gguf" / name


def _parse(transform: str) -> Any:
    from wattlab.engines.levers import parse_transform

    return parse_transform(transform)


def _transforms_module() -> Any:
    """transforms.py (the Hugging Face side), which makes the transformed checkpoints."""
    try:
        from wattlab.engines import transforms
    except ImportError as exc:
        raise ModelError(
            f"model transforms are not available in this build ({exc})",
            fix="run without --transform",
        ) from None
    return transforms


def ensure_transformed_gguf(source_gguf: Path, transform: str, variant: str) -> Path:
    """`source_gguf` with `transform` applied (pruning or merged LoRA), as a GGUF of type `variant`.

    Built on first use and cached: checkpoint de-quantized from the GGUF -> transformed checkpoint
    (transforms.py) -> F16 GGUF -> `variant` by llama.cpp's quantizer. Unmerged LoRA is not a new
    base file: see ensure_lora_gguf().
    """
    from wattlab.engines import derive
    from wattlab.engines.gguf_meta import FILE_TYPE_IDS

    parsed = _parse(transform)
    if parsed.is_lora and not parsed.merged:
        raise ConfigError(
            f"transform {transform!r} is an unmerged LoRA: llama.cpp serves it as an adapter on "
            "the base model",
            fix="use lora:R:merged for a merged file",
        )
    if variant not in FILE_TYPE_IDS:
        raise ConfigError(f"unknown GGUF type {variant!r}", fix=f"use one of: {', '.join(FILE_TYPE_IDS)}")
    f16 = transformed_gguf_path(source_gguf, transform, "F16")

    def write(tmp: Path) -> None:
        base = derive.ensure_hf_checkpoint(source_gguf)
        checkpoint = _transforms_module().transformed_checkpoint(base, parsed)
        hf_to_gguf(Path(checkpoint), source_gguf, tmp)

    derive.build_once(f16, write, f"writing {source_gguf.name} with {transform} as an F16 GGUF")
    if variant == "F16":
        return f16
    target = transformed_gguf_path(source_gguf, transform, variant)

    def quantize(tmp: Path) -> None:
        derive._quantize(f16, tmp, variant)

    step = f"quantizing {source_gguf.name} with {transform} to {variant} with llama.cpp's quantizer"
    return derive.build_once(target, quantize, step)


def lora_gguf_path(source: Path, transform: str) -> Path:
    from wattlab.paths import models_dir

    return models_dir() / "lora-gguf" / f"{source.stem}-{_key(source)}-{_slug(transform)}.lora.gguf"


def ensure_lora_gguf(source_gguf: Path, transform: str) -> Path:
    """The GGUF LoRA adapter of an unmerged `lora:R` transform, for the base model `source_gguf`."""
    from wattlab.engines import derive

    parsed = _parse(transform)
    if not parsed.is_lora or parsed.merged:
        raise ConfigError(f"transform {transform!r} is not an unmerged LoRA", fix="use lora:R")

    def write(tmp: Path) -> None:
        base = derive.ensure_hf_checkpoint(source_gguf)
        adapter = _transforms_module().lora_adapter_dir(base, parsed)
        write_lora_gguf(Path(adapter), _config(base), tmp)

    step = f"writing the {transform} adapter of {source_gguf.name} as a GGUF"
    return derive.build_once(lora_gguf_path(source_gguf, transform), write, step)


def canonical(transform: str) -> str:
    """The transform's canonical spelling (transforms.transform_text), so `lora:8` and ` lora:8 `
    share one cached file."""
    from wattlab.engines.transforms import transform_text

    return transform_text(_parse(transform))


def resolve_paths(origin: Path, transform: str, variant: str, opts: dict[str, Any], prepare: bool) -> Path:
    """The GGUF llama.cpp loads for `origin` with `transform` as type `variant` (built now when
    `prepare`), recording in `opts` what ensure_for_config() needs to build it later: transform,
    transform_base (the GGUF it is made from), derive_from, and for unmerged LoRA lora_adapters
    (the GGUF adapter, which the engine applies to the base at load)."""
    from wattlab.engines import derive
    from wattlab.engines.gguf_meta import file_type, read_metadata

    parsed = _parse(transform)
    text = canonical(transform)
    opts["transform"] = text
    opts["transform_base"] = str(origin)
    opts["derive_from"] = str(origin)
    # The Hugging Face directory the GGUF is converted from, whose wattlab-source.json holds the
    # transform's figures (layers dropped, sparsity, adapter init), for the run's record.
    transforms = _transforms_module()
    base_dir = derive.hf_checkpoint_path(origin)
    if parsed.is_lora and not parsed.merged:
        opts["transform_checkpoint"] = str(transforms.lora_adapter_paths(base_dir, parsed)[0])
    else:
        opts["transform_checkpoint"] = str(transforms.transformed_checkpoint_path(base_dir, parsed))
    if not (parsed.is_lora and not parsed.merged):
        if prepare:
            return ensure_transformed_gguf(origin, text, variant)
        return transformed_gguf_path(origin, text, variant)
    if parsed.adapters > 1:
        raise ConfigError(
            f"transform {transform!r} serves {parsed.adapters} LoRA adapters at once, which llama.cpp "
            "does not do here",
            fix="use lora:R (one adapter) on llamacpp; lora:R:xN runs on vllm",
        )
    native = file_type(read_metadata(origin)) == variant
    if prepare:
        base = origin if native else derive.ensure_gguf_variant(origin, variant)
        adapter = ensure_lora_gguf(origin, text)
    else:
        base = origin if native else derive.gguf_variant_path(origin, variant)
        adapter = lora_gguf_path(origin, text)
    opts["lora_adapters"] = [str(adapter)]
    return base


def resolve_random_lora(model: str, arch: str, transform: str, opts: dict[str, Any], prepare: bool) -> None:
    """`random:<arch>` on llama.cpp with `transform`: only an unmerged LoRA, whose adapter (made from
    the arch's config alone) goes in `opts` as for resolve_paths(); the base is the random GGUF."""
    parsed = _parse(transform)
    if not (parsed.is_lora and not parsed.merged):
        raise ConfigError(
            f"{model} has random weights written at load, so there is nothing stored to apply "
            f"{transform!r} to",
            fix="use the bundled model or a GGUF file; lora:R (unmerged) runs on random: models",
        )
    if parsed.adapters > 1:
        raise ConfigError(
            f"transform {transform!r} serves {parsed.adapters} LoRA adapters at once, which llama.cpp "
            "does not do here",
            fix="use lora:R (one adapter) on llamacpp; lora:R:xN runs on vllm",
        )
    text = canonical(transform)
    opts["transform"] = text
    opts["transform_base"] = f"random:{arch}"
    opts["derive_from"] = f"random:{arch}"
    adapter = ensure_random_lora_gguf(arch, text) if prepare else random_lora_gguf_path(arch, text)
    opts["lora_adapters"] = [str(adapter)]


def random_lora_gguf_path(arch: str, transform: str) -> Path:
    from wattlab.engines.derive import random_config_path, source_key
    from wattlab.paths import models_dir

    key = _hash(source_key(random_config_path(arch)))
    return models_dir() / "lora-gguf" / f"random-{arch}-{key}-{_slug(transform)}.lora.gguf"


def ensure_random_lora_gguf(arch: str, transform: str) -> Path:
    """The GGUF LoRA adapter of `transform` for `random:<arch>`: an adapter needs only the shapes, so
    transforms.py makes it from the arch's config directory (no weights)."""
    from wattlab.engines import derive

    parsed = _parse(transform)

    def write(tmp: Path) -> None:
        base = derive.ensure_random_dir(arch, None)
        adapter = _transforms_module().lora_adapter_dir(base, parsed)
        write_lora_gguf(Path(adapter), _config(base), tmp)

    step = f"writing the {transform} adapter of random:{arch} as a GGUF"
    return derive.build_once(random_lora_gguf_path(arch, transform), write, step)


def ensure_for_config(config: EngineConfig) -> None:
    """Build the files a config from resolve_paths() or resolve_random_lora() loads
    (models.ensure_files calls it, in the derivation child)."""
    from wattlab.engines import derive

    text = str(config.options["transform"])
    source = str(config.options["derive_from"])
    if source.startswith("random:"):
        from wattlab.engines.models import _random_tokenizer_gguf

        arch = source.removeprefix("random:")
        if not Path(config.path).exists():
            derive.ensure_random_gguf(arch, config.variant, _random_tokenizer_gguf())
        ensure_random_lora_gguf(arch, text)
        return
    origin = Path(source)
    parsed = _parse(text)
    if parsed.is_lora and not parsed.merged:
        if not Path(config.path).exists():
            derive.ensure_gguf_variant(origin, config.variant)
        ensure_lora_gguf(origin, text)
    else:
        ensure_transformed_gguf(origin, text, config.variant)


def gguf_metadata_summary(path: Path) -> dict[str, Any]:
    """The header keys a test or a report checks (block count, feed-forward length, type)."""
    from wattlab.engines.gguf_meta import read_metadata

    meta = read_metadata(path)
    arch = meta.get("general.architecture")
    return {
        "arch": arch,
        "type": meta.get("general.type"),
        "block_count": meta.get(f"{arch}.block_count"),
        "feed_forward_length": meta.get(f"{arch}.feed_forward_length"),
        "file_type": meta.get("general.file_type"),
    }


__all__ = [
    "TensorMap",
    "canonical",
    "checkpoint_shape",
    "ensure_for_config",
    "ensure_lora_gguf",
    "ensure_random_lora_gguf",
    "ensure_transformed_gguf",
    "gguf_metadata_summary",
    "hf_to_gguf",
    "lora_alpha_for_llamacpp",
    "lora_gguf_path",
    "lora_tensor_map",
    "permute_rows",
    "random_lora_gguf_path",
    "resolve_paths",
    "resolve_random_lora",
    "tensor_map",
    "transformed_gguf_path",
    "write_lora_gguf",
]
