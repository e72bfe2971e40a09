"""Model transforms on Hugging Face checkpoints: pruning and LoRA, derived once and cached.

A run's `transform` (grammar: engines/levers.py) is applied to the base checkpoint (the one the
catalog resolves: a directory given by the user, or the checkpoint de-quantized from a GGUF) before
the engine loads it. Each result is a directory under `models_dir()/transformed`, keyed by the base
checkpoint's identity, the transform and this module's FORMAT_VERSION, built in the derivation child
(derive.derive_in_child -> models.ensure_files) under derive.build_once's lock and atomic rename.

What each transform does (the derived dir's wattlab-source.json records the figures of each build):

- prune:magnitude:S  one global threshold over the |w| of every nn.Linear weight inside the decoder
  layers (attention and MLP projections; embeddings, lm_head and norms are left alone, as is usual
  for unstructured pruning) zeroes exactly the fraction S of them. Stored dense: any saving has to
  come from the engine, which has no sparse kernels for it, so the study shows what it costs.
- prune:2:4          the same Linear weights keep the 2 largest |w| of every 4 consecutive input
  weights (NVIDIA's semi-structured pattern), stored dense; on CUDA sm80+ the transformers engine
  turns them into PyTorch semi-structured sparse tensors at load (apply_semi_structured).
- prune:layers:N     drops the N decoder layers of lowest Block Influence (ShortGPT, Men et al. 2024:
  BI_i = 1 - mean over tokens of cos(input of layer i, output of layer i)), measured once on the
  base checkpoint over the calibration text. A layer that barely changes its input contributes
  least. A smaller checkpoint: a real speed-up on every engine.
- prune:mlp:F        removes the fraction F of every MLP's intermediate channels, per layer, those of
  lowest score_j = ||a_j||_2 * ||down[:, j]||_2, a_j the channel's activation over the calibration
  text (what the channel adds to the output). Weight norms alone (||gate_j, up_j|| * ||down_j||) were
  tried first and wreck SmolLM2-135M: 25% of channels cut that way took its perplexity from 31 to
  1e7 (5%: 1.6e3), against 43 with this score; a few channels with small weights carry massive
  activations. The count kept is rounded to a multiple of 64 where the MLP is at least 128 wide
  (tensor-core and GGUF block friendly; the note says the fraction achieved). A smaller checkpoint.
- Calibration text (layers, mlp): workloads/corpus.txt, the synthetic workload's prose, not the
  perplexity task's text, so perplexity is measured on text the pruning never saw.
- lora:R[:merged|:xN] PEFT LoRA adapters of rank R (alpha = R, so scale 1) on q/k/v/o_proj. PEFT
  initialises B to zero, which makes an adapter an exact no-op; here A is PEFT's default
  U(-1/sqrt(in), 1/sqrt(in)) and B a seeded normal of std LORA_B_STD (the usual 0.02 init range), so
  the adapter changes the outputs a little, like a trained one. Unmerged: the engine loads the base
  and attaches the adapter (runtime cost); merged: the same adapter folded into the weights
  (merge_and_unload), a plain checkpoint again. xN: N adapters (seeds SEED..SEED+N-1), vLLM only.

Heavy imports (torch, transformers, peft) stay inside functions: the preflight imports this module.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wattlab.engines.levers import Transform, parse_transform
from wattlab.errors import ConfigError, ModelError
from wattlab.paths import models_dir

if TYPE_CHECKING:
    from wattlab.engines.base import EngineConfig

FORMAT_VERSION = 2  # bump when a transform's algorithm changes: old cached results are not reused
SEED = 0
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
LORA_B_STD = 0.02
MLP_MULTIPLE = 64
CALIBRATION_TOKENS = 256  # tokens per calibration chunk for Block Influence
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
_NOT_COPIED = {"config.json", "generation_config.json", "wattlab-source.json"}


CALIBRATION_FILE = "workloads/corpus.txt"


def calibration_text() -> str:
    """The text the data-driven transforms (layers, mlp) are calibrated on: the synthetic workload's
    prose (workloads/corpus.txt), not the perplexity task's text, so a pruned model's perplexity is
    measured on text its pruning never saw. Read as a file: engines may not import workloads."""
    return (Path(__file__).parents[1] / CALIBRATION_FILE).read_text(encoding="utf-8")


def calibration_chunks(tokenizer: Any) -> list[list[int]]:
    """The calibration text as token ids, in chunks of CALIBRATION_TOKENS (the last may be shorter)."""
    ids = tokenizer(calibration_text(), add_special_tokens=False)["input_ids"]
    chunks = [ids[i : i + CALIBRATION_TOKENS] for i in range(0, len(ids), CALIBRATION_TOKENS)]
    chunks = [c for c in chunks if len(c) >= 2]
    if not chunks:
        raise ModelError("the calibration text gave no tokens", fix=f"check wattlab/{CALIBRATION_FILE}")
    return chunks


# --- names and keys ------------------------------------------------------------------------------


def transform_text(transform: Transform) -> str:
    """The canonical spelling of `transform` (the inverse of parse_transform)."""
    if transform.kind == "2:4":
        return "prune:2:4"
    if transform.kind == "lora":
        tail = (
            ":merged" if transform.merged else (f":x{transform.adapters}" if transform.adapters > 1 else "")
        )
        return f"lora:{transform.amount}{tail}"
    return f"prune:{transform.kind}:{transform.amount:g}"


def _base_key(base_dir: Path) -> str:
    """The base checkpoint's identity. A directory wattlab derived (under models_dir()) is named by
    its own source's key and never changes once renamed into place, so its path is enough (and is
    known before it is built); a user's directory adds its config.json's size and mtime, so one that
    changes gets a new key."""
    resolved = base_dir.resolve()
    if resolved.is_relative_to(models_dir().resolve()):
        return str(resolved)
    st = (base_dir / "config.json").stat()
    return f"{resolved}|{st.st_size}|{st.st_mtime_ns}"


def _key(base_dir: Path, what: str) -> str:
    blob = f"{_base_key(base_dir)}|{what}|v{FORMAT_VERSION}|seed{SEED}"
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def _slug(text: str) -> str:
    return text.replace(":", "-")


def transformed_checkpoint_path(base_dir: Path, transform: Transform) -> Path:
    """Where `transform` of `base_dir` is cached (nothing is built). Unmerged LoRA changes no
    weights: its checkpoint is the base itself (the adapter is attached at load)."""
    if transform.is_lora and not transform.merged:
        return base_dir
    what = transform_text(transform)
    return models_dir() / "transformed" / f"{base_dir.name}.{_slug(what)}-{_key(base_dir, what)}"


def lora_adapter_paths(base_dir: Path, transform: Transform) -> list[Path]:
    """Where the LoRA adapters of `transform` for `base_dir` are cached: one per served adapter."""
    if not transform.is_lora:
        raise ConfigError(f"{transform_text(transform)} is not a LoRA transform", fix="use lora:R")
    rank = int(transform.amount or 0)
    out = []
    for index in range(transform.adapters):
        what = f"lora-adapter:{rank}:{SEED + index}"
        out.append(models_dir() / "lora" / f"{base_dir.name}.r{rank}-s{SEED + index}-{_key(base_dir, what)}")
    return out


# --- the public builders ---------------------------------------------------------------------------


def transformed_checkpoint(base_dir: Path, transform: Transform) -> Path:
    """The checkpoint directory `transform` makes of `base_dir`, built once and cached.

    For unmerged LoRA it is `base_dir` itself (the adapter is lora_adapter_dir's)."""
    from wattlab.engines.derive import build_once

    target = transformed_checkpoint_path(base_dir, transform)
    if target == base_dir:
        return base_dir
    what = transform_text(transform)
    return build_once(
        target, lambda tmp: _build(base_dir, transform, tmp), f"applying {what} to {base_dir.name}"
    )


def lora_adapter_dir(base_dir: Path, transform: Transform, index: int = 0) -> Path:
    """The PEFT adapter directory (adapter_config.json + adapter_model.safetensors) of LoRA
    `transform` for `base_dir`, adapter `index` of its xN, built once and cached."""
    from wattlab.engines.derive import build_once

    paths = lora_adapter_paths(base_dir, transform)
    if not 0 <= index < len(paths):
        raise ConfigError(f"adapter {index} asked for, {transform_text(transform)} has {len(paths)}")
    rank = int(transform.amount or 0)
    return build_once(
        paths[index],
        lambda tmp: _build_adapter(base_dir, rank, SEED + index, tmp),
        f"writing a rank-{rank} LoRA adapter (seed {SEED + index}) for {base_dir.name}",
    )


def lora_adapter_dirs(base_dir: Path, transform: Transform) -> list[Path]:
    """Every adapter of `transform` (xN: N of them), built once and cached."""
    return [lora_adapter_dir(base_dir, transform, i) for i in range(transform.adapters)]


def ensure_transformed(config: EngineConfig) -> None:
    """Build what a resolved config's transform needs (models.ensure_files calls it in the
    derivation child): the transformed checkpoint, or the LoRA adapters."""
    text = config.options.get("transform")
    if not text:
        return
    transform = parse_transform(str(text))
    base = Path(config.options.get("transform_base") or config.path)
    if transform.is_lora and not transform.merged:
        lora_adapter_dirs(base, transform)
    else:
        transformed_checkpoint(base, transform)


def transform_note(path: Path) -> dict[str, Any] | None:
    """The note a transform build wrote into its directory (what was done, with its figures)."""
    from wattlab.engines.derive import SOURCE_NOTE

    note = path / SOURCE_NOTE
    if not note.exists():
        return None
    data = json.loads(note.read_text(encoding="utf-8"))
    return (
        data
        if isinstance(data, dict) and str(data.get("kind", "")).startswith(("transform", "lora"))
        else None
    )


def run_note(config: EngineConfig) -> dict[str, Any] | None:
    """What a loaded config's transform did, for the run's record (result_json's transform_note):
    the build notes of the transformed checkpoint or of each LoRA adapter, with their paths."""
    text = config.options.get("transform")
    if not text:
        return None
    note: dict[str, Any] = {"transform": text, "base": config.options.get("transform_base")}
    adapters = config.options.get("lora_adapters")
    if adapters:
        note["adapters"] = [{"path": a, **(transform_note(Path(a)) or {})} for a in adapters]
        note["served"] = "unmerged: the base checkpoint plus the adapter(s), attached at load"
    else:
        note["checkpoint"] = config.path
        note.update(transform_note(Path(config.path)) or {})
    return note


# --- building -------------------------------------------------------------------------------------


def _require_hf() -> None:
    import importlib.util

    from wattlab.errors import EngineNotInstalled

    for module in ("torch", "transformers", "peft", "safetensors"):
        if importlib.util.find_spec(module) is None:
            raise EngineNotInstalled(
                f"model transforms need {module}, which is not installed",
                fix="pip install 'wattlab[transformers]'",
            )


def _is_random_dir(base_dir: Path) -> bool:
    return not any(p.suffix in _WEIGHT_SUFFIXES for p in base_dir.iterdir())


def _load_base(base_dir: Path) -> Any:
    """The base checkpoint as a transformers model on the CPU, in its stored dtype."""
    import torch
    from transformers import AutoModelForCausalLM

    if _is_random_dir(base_dir):
        raise ConfigError(
            f"{base_dir} holds no weights (a random: model), so there is nothing to prune or merge into",
            fix="use the bundled model or a checkpoint directory, or lora:R (unmerged) on random: models",
        )
    torch.manual_seed(SEED)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype="auto", device_map={"": "cpu"})
    except Exception as exc:
        raise ModelError(
            f"transformers could not load {base_dir} to transform it: {type(exc).__name__}: {exc}",
            fix="check that the directory is a complete checkpoint (config.json + weights)",
        ) from exc
    model.eval()
    return model


def _copy_side_files(base_dir: Path, out: Path) -> None:
    """Tokenizer and template files of the base, beside the new weights."""
    for path in base_dir.iterdir():
        weights = path.suffix in _WEIGHT_SUFFIXES or path.name.endswith(".index.json")
        if path.is_file() and not weights and path.name not in _NOT_COPIED and not (out / path.name).exists():
            shutil.copy2(path, out / path.name)


def _decoder_layers(model: Any) -> Any:
    """The decoder's nn.ModuleList of layers (llama-style models: model.model.layers)."""
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None:
        raise ModelError(
            f"{type(model).__name__} has no model.layers, so wattlab cannot find its decoder layers",
            fix="transforms support llama-style architectures (Llama, Qwen2, Mistral, SmolLM2)",
        )
    return layers


def _decoder_linears(model: Any) -> list[tuple[str, Any]]:
    import torch

    return [
        (f"layers.{i}.{name}", module)
        for i, layer in enumerate(_decoder_layers(model))
        for name, module in layer.named_modules()
        if isinstance(module, torch.nn.Linear)
    ]


def _build(base_dir: Path, transform: Transform, out: Path) -> None:
    from wattlab.engines.derive import _write_note

    _require_hf()
    import torch

    model = _load_base(base_dir)
    params_before = sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        if transform.kind == "magnitude":
            figures = _prune_magnitude(model, float(transform.amount or 0))
        elif transform.kind == "2:4":
            figures = _prune_2_4(model)
        elif transform.kind == "layers":
            figures = _prune_layers(model, base_dir, int(transform.amount or 0))
        elif transform.kind == "mlp":
            figures = _prune_mlp(model, base_dir, float(transform.amount or 0))
        elif transform.kind == "lora":
            model, figures = _merge_lora(model, base_dir, transform)
        else:
            raise ConfigError(f"unknown transform kind {transform.kind!r}", fix="see engines/levers.py")
    params_after = sum(p.numel() for p in model.parameters())
    # tied embeddings stay tied: save_pretrained writes the shared tensor once
    model.save_pretrained(str(out))
    _copy_side_files(base_dir, out)
    _write_note(
        out,
        kind="transform",
        transform=transform_text(transform),
        source=str(base_dir),
        format_version=FORMAT_VERSION,
        parameters_before=params_before,
        parameters_after=params_after,
        **figures,
    )


def _prune_magnitude(model: Any, sparsity: float) -> dict[str, Any]:
    """Zero exactly round(sparsity * n) of the decoder Linear weights, smallest |w| first.

    One global threshold (kthvalue); ties at the threshold (common in weights de-quantized from a
    4-bit GGUF) are broken in layer order, so the sparsity is exact and the result deterministic."""
    import torch

    linears = _decoder_linears(model)
    weights = [m.weight for _, m in linears]
    total = sum(w.numel() for w in weights)
    k = round(sparsity * total)
    if k == 0:
        return {"sparsity_target": sparsity, "sparsity_achieved": 0.0, "pruned_weights": 0, "scope": _SCOPE}
    # one fp32 copy of every decoder weight (and a bool mask): ~5 bytes per parameter beside the model
    magnitudes = torch.cat([w.detach().abs().flatten().float() for w in weights])
    threshold = float(magnitudes.kthvalue(k).values)
    mask = magnitudes < threshold
    ties_to_zero = k - int(mask.sum())
    if ties_to_zero > 0:
        mask[(magnitudes == threshold).nonzero().flatten()[:ties_to_zero]] = True
    zeros = int((mask | (magnitudes == 0)).sum())
    del magnitudes
    offset = 0
    for w in weights:
        w.masked_fill_(mask[offset : offset + w.numel()].view_as(w), 0)
        offset += w.numel()
    return {
        "sparsity_target": sparsity,
        "sparsity_achieved": zeros / total,
        "pruned_weights": k,
        "threshold": threshold,
        "scope": _SCOPE,
    }


_SCOPE = (
    "nn.Linear weights of the decoder layers (attention and MLP); embeddings, lm_head and norms untouched"
)


def two_four_mask(weight: Any) -> Any:
    """The 2:4 mask of a (out, in) weight: True for the 2 largest |w| of every 4 consecutive inputs."""
    import torch

    rows, cols = weight.shape
    groups = weight.detach().abs().float().reshape(rows, cols // 4, 4)
    keep = groups.topk(2, dim=-1).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, keep, True)
    return mask.reshape(rows, cols)


def _prune_2_4(model: Any) -> dict[str, Any]:
    linears = _decoder_linears(model)
    bad = [(name, m.weight.shape[1]) for name, m in linears if m.weight.shape[1] % 4]
    if bad:
        raise ModelError(
            f"2:4 sparsity needs every input width to be a multiple of 4; {bad[0][0]} takes {bad[0][1]}",
            fix="use prune:magnitude:0.5 for this model",
        )
    total = zeros = 0
    for _, module in linears:
        module.weight.mul_(two_four_mask(module.weight).to(module.weight.dtype))
        total += module.weight.numel()
        zeros += int((module.weight == 0).sum())
    return {"pattern": "2:4 along the input dimension", "sparsity_achieved": zeros / total, "scope": _SCOPE}


def block_influence(model: Any, chunks: list[list[int]]) -> list[float]:
    """ShortGPT's Block Influence of every decoder layer: 1 - the mean cosine similarity of its
    input and output hidden states over every token of the calibration chunks."""
    import torch

    layers = _decoder_layers(model)
    sums = [0.0] * len(layers)
    captured: dict[int, float] = {}

    def hook(index: int) -> Any:
        def record(_module: Any, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
            hidden_in = args[0] if args else kwargs["hidden_states"]
            hidden_out = output[0] if isinstance(output, tuple) else output
            cos = torch.nn.functional.cosine_similarity(hidden_in.float(), hidden_out.float(), dim=-1)
            captured[index] = float(cos.sum())

        return record

    handles = [layer.register_forward_hook(hook(i), with_kwargs=True) for i, layer in enumerate(layers)]
    try:
        with torch.no_grad():
            for chunk in chunks:
                captured.clear()
                model(input_ids=torch.tensor([chunk]), use_cache=False)
                for i in range(len(layers)):
                    sums[i] += captured[i]
    finally:
        for handle in handles:
            handle.remove()
    count = sum(len(c) for c in chunks)
    return [1.0 - s / count for s in sums]


def mlp_channel_scores(model: Any, chunks: list[list[int]]) -> list[Any]:
    """Each decoder layer's MLP channel scores: ||a_j||_2 * ||down[:, j]||_2, with a_j channel j's
    activation (act(gate_j x) * up_j x, the input of down_proj) over every calibration token.
    The size of what a channel adds to the layer's output (Wanda's weight-times-activation score,
    per channel); weights alone miss the few channels with massive activations."""
    import torch

    layers = _decoder_layers(model)
    squares: dict[int, Any] = {}

    def hook(index: int) -> Any:
        def record(_module: Any, args: tuple[Any, ...]) -> None:
            a = args[0].detach().float().reshape(-1, args[0].shape[-1])
            squares[index] = squares.get(index, 0) + a.pow(2).sum(0)

        return record

    handles = [layer.mlp.down_proj.register_forward_pre_hook(hook(i)) for i, layer in enumerate(layers)]
    try:
        with torch.no_grad():
            for chunk in chunks:
                model(input_ids=torch.tensor([chunk]), use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    return [
        squares[i].sqrt() * layer.mlp.down_proj.weight.float().norm(dim=0) for i, layer in enumerate(layers)
    ]


def _prune_layers(model: Any, base_dir: Path, drop: int) -> dict[str, Any]:
    import torch
    from transformers import AutoTokenizer

    layers = _decoder_layers(model)
    n = len(layers)
    if drop >= n:
        raise ConfigError(
            f"prune:layers:{drop} would drop every layer: {base_dir.name} has {n} decoder layers",
            fix=f"drop at most {n - 1} layers",
        )
    chunks = calibration_chunks(AutoTokenizer.from_pretrained(str(base_dir)))
    scores = block_influence(model, chunks)
    # lowest influence first; ties by index, so the choice is deterministic
    dropped = sorted(sorted(range(n), key=lambda i: (scores[i], i))[:drop])
    kept = [i for i in range(n) if i not in dropped]
    model.model.layers = torch.nn.ModuleList([layers[i] for i in kept])
    for new_index, layer in enumerate(model.model.layers):
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = new_index  # the KV cache is indexed by it
    config = model.config
    config.num_hidden_layers = len(kept)
    if isinstance(getattr(config, "layer_types", None), list) and len(config.layer_types) == n:
        config.layer_types = [config.layer_types[i] for i in kept]
    return {
        "importance": "Block Influence (ShortGPT): 1 - mean cos(layer input, layer output)",
        "calibration": _calibration_note(chunks),
        "block_influence": [round(s, 6) for s in scores],
        "layers_before": n,
        "layers_dropped": dropped,
        "layers_after": len(kept),
    }


def _calibration_note(chunks: list[list[int]]) -> str:
    return f"{CALIBRATION_FILE}, {sum(len(c) for c in chunks)} tokens in {CALIBRATION_TOKENS}-token chunks"


def mlp_channels_kept(width: int, fraction: float) -> int:
    """How many of `width` MLP channels prune:mlp:`fraction` keeps (rounded to MLP_MULTIPLE)."""
    keep = width * (1.0 - fraction)
    if width >= 2 * MLP_MULTIPLE:
        return max(MLP_MULTIPLE, MLP_MULTIPLE * round(keep / MLP_MULTIPLE))
    return max(1, round(keep))


def _prune_mlp(model: Any, base_dir: Path, fraction: float) -> dict[str, Any]:
    from transformers import AutoTokenizer

    layers = _decoder_layers(model)
    first: Any = getattr(layers[0], "mlp", None)
    if not all(hasattr(first, name) for name in ("gate_proj", "up_proj", "down_proj")):
        raise ModelError(
            f"{type(model).__name__}'s MLP is not gate/up/down projections, so prune:mlp cannot cut it",
            fix="transforms support llama-style architectures (Llama, Qwen2, Mistral, SmolLM2)",
        )
    width = first.gate_proj.out_features
    keep = mlp_channels_kept(width, fraction)
    chunks = calibration_chunks(AutoTokenizer.from_pretrained(str(base_dir)))
    scores = mlp_channel_scores(model, chunks)
    for layer, score in zip(layers, scores, strict=True):
        mlp = layer.mlp
        chosen = score.topk(keep).indices.sort().values  # kept channels stay in their order
        mlp.gate_proj = _sliced_linear(mlp.gate_proj, rows=chosen)
        mlp.up_proj = _sliced_linear(mlp.up_proj, rows=chosen)
        mlp.down_proj = _sliced_linear(mlp.down_proj, cols=chosen)
        if hasattr(mlp, "intermediate_size"):
            mlp.intermediate_size = keep
    model.config.intermediate_size = keep
    return {
        "score": "||activation_j||_2 * ||down[:, j]||_2 per channel over the calibration text, "
        "lowest removed in each layer",
        "calibration": _calibration_note(chunks),
        "mlp_width_before": width,
        "mlp_width_after": keep,
        "fraction_target": fraction,
        "fraction_achieved": 1.0 - keep / width,
    }


def _sliced_linear(linear: Any, rows: Any = None, cols: Any = None) -> Any:
    import torch

    weight = linear.weight
    if rows is not None:
        weight = weight[rows]
    if cols is not None:
        weight = weight[:, cols]
    bias = linear.bias
    if bias is not None and rows is not None:
        bias = bias[rows]
    new = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, dtype=weight.dtype)
    new.weight.copy_(weight)
    if bias is not None:
        new.bias.copy_(bias)
    return new


def _lora_config(rank: int, base_dir: Path) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=rank,
        lora_alpha=rank,
        lora_dropout=0.0,
        bias="none",
        target_modules=list(LORA_TARGETS),
        task_type="CAUSAL_LM",
        base_model_name_or_path=str(base_dir),
    )


def _build_adapter(base_dir: Path, rank: int, seed: int, out: Path) -> None:
    """A seeded LoRA adapter in PEFT's format. The model is built on the meta device: an adapter
    needs only the shapes, so random: models of any size get one without their weights."""
    from wattlab.engines.derive import _write_note

    _require_hf()
    import torch
    from peft import get_peft_model, get_peft_model_state_dict
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(base_dir))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    lora = _lora_config(rank, base_dir)
    try:
        peft_model = get_peft_model(model, lora)
    except ValueError as exc:  # PEFT: "Target modules ... not found in the base model"
        raise ModelError(
            f"cannot attach LoRA to {base_dir.name}: {exc}",
            fix=f"LoRA targets {', '.join(LORA_TARGETS)} (llama-style attention)",
        ) from exc
    generator = torch.Generator().manual_seed(seed)
    tensors: dict[str, Any] = {}
    for key, meta in sorted(get_peft_model_state_dict(peft_model).items()):
        if ".lora_A." in key:
            bound = 1.0 / math.sqrt(meta.shape[1])
            value = (torch.rand(meta.shape, generator=generator) * 2 - 1) * bound
        elif ".lora_B." in key:
            # B = 0 (PEFT's default) would make the adapter a no-op; see the module docstring
            value = torch.randn(meta.shape, generator=generator) * LORA_B_STD
        else:
            raise ModelError(f"unexpected LoRA tensor {key}", fix="report this with the model's config.json")
        tensors[key] = value.contiguous()
    out.mkdir(parents=True)
    save_file(tensors, str(out / "adapter_model.safetensors"), metadata={"format": "pt"})
    lora.save_pretrained(str(out))
    _write_note(
        out,
        kind="lora-adapter",
        source=str(base_dir),
        rank=rank,
        seed=seed,
        targets=list(LORA_TARGETS),
        init=f"A ~ U(-1/sqrt(in), 1/sqrt(in)), B ~ N(0, {LORA_B_STD}^2), alpha = rank",
        adapter_parameters=sum(t.numel() for t in tensors.values()),
        format_version=FORMAT_VERSION,
    )


def _merge_lora(model: Any, base_dir: Path, transform: Transform) -> tuple[Any, dict[str, Any]]:
    """The same adapter lora:R serves unmerged, folded into the weights."""
    from peft import PeftModel

    adapter = lora_adapter_dir(base_dir, Transform("lora", transform.amount))
    peft_model = PeftModel.from_pretrained(model, str(adapter))
    merged = peft_model.merge_and_unload()
    return merged, {"adapter": str(adapter), "rank": int(transform.amount or 0), "seed": SEED}


# --- at load ---------------------------------------------------------------------------------------


def attach_lora(model: Any, adapter: Path) -> Any:
    """The transformers model with the PEFT adapter at `adapter` attached (unmerged: every forward
    runs the base projection plus the low-rank path)."""
    from peft import PeftModel

    try:
        # autocast_adapter_dtype=False: the adapter runs in the model's dtype (bf16 on a GPU), as
        # vLLM serves it, rather than PEFT's fp32 upcast for training
        return PeftModel.from_pretrained(
            model, str(adapter), is_trainable=False, autocast_adapter_dtype=False
        )
    except Exception as exc:
        raise ModelError(
            f"PEFT could not attach the LoRA adapter {adapter}: {type(exc).__name__}: {exc}",
            fix="delete that adapter directory so it is written again",
        ) from exc


def apply_semi_structured(model: Any) -> tuple[int, int]:
    """Turn the decoder's 2:4-pruned Linear weights into PyTorch semi-structured sparse tensors
    (CUDA sm80+, fp16/bf16). -> (converted, left dense): a weight whose shape the sparse kernels
    do not take stays dense, and the log says how many."""
    import torch
    from torch.sparse import to_sparse_semi_structured

    converted = dense = 0
    for _, module in _decoder_linears(model):
        weight = module.weight
        try:
            module.weight = torch.nn.Parameter(
                to_sparse_semi_structured(weight.detach()), requires_grad=False
            )
            converted += 1
        except (RuntimeError, ValueError):  # shape or dtype the kernels do not take
            dense += 1
    return converted, dense


def lora_rank_for_vllm(rank: int) -> int:
    """The smallest max_lora_rank vLLM accepts that holds `rank`."""
    for allowed in VLLM_LORA_RANKS:
        if rank <= allowed:
            return allowed
    raise ConfigError(
        f"vLLM serves LoRA ranks up to {VLLM_LORA_RANKS[-1]}, not {rank}", fix="use a lower rank"
    )


VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


# --- the preflight ----------------------------------------------------------------------------------


def transform_problems(spec: Any) -> list[ConfigError]:
    """Why the run's transform cannot run on its engine, model and device (empty: it can).

    Reads the engine registry, config.json / GGUF headers and NVML only: nothing is loaded."""
    if not spec.transform:
        return []
    from wattlab import engines

    try:
        transform = parse_transform(spec.transform)
    except ConfigError as exc:
        return [exc]
    if spec.engine not in engines.registry():
        return []  # the preflight already names the unknown engine
    what = f"transform = {spec.transform!r}"
    kind = engines.spec_of(spec.engine).model_kind
    out: list[ConfigError] = []
    if kind not in ("hf", "gguf"):
        return [
            ConfigError(
                f"{what}: the {spec.engine} engine serves a model wattlab does not load, so it cannot "
                "transform its weights",
                fix="run transforms on transformers, vllm or llamacpp",
            )
        ]
    if transform.is_lora and transform.adapters > 1 and spec.engine != "vllm":
        out.append(
            ConfigError(
                f"{what}: serving {transform.adapters} LoRA adapters at once is vLLM's multi-LoRA; "
                f"the {spec.engine} engine serves one",
                fix=f"use engine vllm, or lora:{transform.amount} (one adapter)",
            )
        )
    if transform.is_lora and spec.engine == "vllm" and int(transform.amount or 0) > VLLM_LORA_RANKS[-1]:
        out.append(
            ConfigError(
                f"{what}: vLLM serves LoRA ranks up to {VLLM_LORA_RANKS[-1]}",
                fix=f"use a rank <= {VLLM_LORA_RANKS[-1]}",
            )
        )
    if transform.kind == "2:4":
        out += _two_four_problems(spec, what, kind)
    random = spec.model.strip().lower().startswith("random:")
    if random and not (transform.is_lora and not transform.merged):
        out.append(
            ConfigError(
                f"{what}: {spec.model} has random weights made at load, so there is nothing stored to "
                "prune or merge into (and pruning random weights measures nothing about a real model)",
                fix="use the bundled model or a checkpoint; for a smaller random model pick a smaller "
                "random: architecture; lora:R (unmerged) runs on random: models",
            )
        )
    if transform.kind == "layers" and not random:
        count, where = _layer_count(spec.model, spec.engine)
        if count is not None and int(transform.amount or 0) >= count:
            out.append(
                ConfigError(
                    f"{what}: {spec.model} has {count} decoder layers ({where}), so dropping "
                    f"{transform.amount} leaves none",
                    fix=f"drop at most {count - 1} layers",
                )
            )
    if kind == "gguf" and not out:
        from wattlab.engines import models

        if not models.GGUF_TRANSFORMS_READY:  # the llama.cpp hook in models.resolve
            out.append(
                ConfigError(
                    f"{what}: transforms on llama.cpp (a GGUF of the transformed checkpoint) are not "
                    "available in this wattlab yet",
                    fix="run the transform on transformers or vllm",
                )
            )
    return out


def _two_four_problems(spec: Any, what: str, kind: str) -> list[ConfigError]:
    from wattlab.engines.models import default_device

    if kind == "gguf" or spec.engine == "vllm":
        return [
            ConfigError(
                f"{what}: wattlab's 2:4 sparsity uses PyTorch's semi-structured sparse tensors, which "
                f"only the transformers engine runs ({spec.engine} has no kernel for them)",
                fix="use engine transformers on an NVIDIA GPU (Ampere or later)",
            )
        ]
    device = default_device(spec.engine) if spec.device == "auto" else spec.device
    if not device.startswith("cuda"):
        return [
            ConfigError(
                f"{what}: 2:4 semi-structured sparse kernels run only on NVIDIA GPUs of compute "
                "capability 8.0 or later (Ampere+); this run is on the CPU, where the zeros would be "
                "stored and multiplied dense",
                fix="run it on an Ampere-or-later GPU (--device cuda), or use prune:magnitude:0.5 "
                "to study unstructured sparsity on the CPU",
            )
        ]
    out = []
    if spec.quant and spec.quant.lower() not in ("bf16", "fp16"):
        out.append(
            ConfigError(
                f"{what}: PyTorch's semi-structured sparse kernels take bf16 or fp16 weights, "
                f"not {spec.quant}",
                fix="set quant = bf16 (or fp16)",
            )
        )
    capability = _gpu_capability(device)
    if capability is not None and capability < (8, 0):
        out.append(
            ConfigError(
                f"{what}: 2:4 semi-structured sparse kernels need compute capability 8.0 or later "
                f"(Ampere+); {device} is {capability[0]}.{capability[1]}",
                fix="run it on an Ampere-or-later GPU, or use prune:magnitude:0.5",
            )
        )
    return out


def _gpu_capability(device: str) -> tuple[int, int] | None:
    """The CUDA compute capability of `device` from NVML, or None where NVML cannot tell."""
    from wattlab.devices.nvidia import compute_capability, cuda_ordinal_to_nvml_index

    ordinal = int(device.split(":")[1]) if ":" in device else 0
    index = cuda_ordinal_to_nvml_index(ordinal)
    return compute_capability(int(index)) if index.isdigit() else None


def _layer_count(model: str, engine: str) -> tuple[int | None, str]:
    """The model's decoder layer count and where it was read (config.json or a GGUF header)."""
    from wattlab.engines import models
    from wattlab.engines.gguf_meta import read_metadata
    from wattlab.errors import WattlabError

    try:
        source = models._source(model, engine)
    except WattlabError:
        return None, ""  # the preflight's model check names the problem
    if source.path is None:
        return None, ""
    if source.kind in ("bundled", "gguf"):
        meta = read_metadata(source.path)
        arch = meta.get("general.architecture")
        count = meta.get(f"{arch}.block_count") if arch else None
        return (int(count) if count else None), f"the GGUF header of {source.path.name}"
    try:
        config = json.loads((source.path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, ""
    count = config.get("num_hidden_layers")
    return (int(count) if isinstance(count, int) else None), f"{source.path.name}/config.json"


__all__ = [
    "FORMAT_VERSION",
    "LORA_TARGETS",
    "apply_semi_structured",
    "attach_lora",
    "block_influence",
    "calibration_text",
    "ensure_transformed",
    "lora_adapter_dir",
    "lora_adapter_dirs",
    "lora_adapter_paths",
    "lora_rank_for_vllm",
    "mlp_channels_kept",
    "transform_note",
    "transform_problems",
    "transform_text",
    "transformed_checkpoint",
    "transformed_checkpoint_path",
    "two_four_mask",
]
