"""Transforms on llama.cpp: a Hugging Face checkpoint written as a GGUF, and a PEFT LoRA adapter as a
GGUF adapter (engines/transforms_gguf.py), resolved through the catalog and applied by the engine.

Fast tests write a tiny random llama checkpoint (3 layers, 64 wide, the bundled tokenizer's 49152
ids) with safetensors and check the GGUF's keys, names, shapes and the rotary row permutation
against llama.cpp's layout; llama.cpp then loads the tiny GGUF, applies a tiny adapter, and the
adapter at scale 1 scores the same as the adapter merged into the weights (F32 throughout).
Slow tests use the bundled SmolLM2 model: the GGUF written from its de-quantized checkpoint,
requantized to Q4_1 by llama.cpp, is tensor for tensor the bundled file; `wattlab run --transform
prune:layers:4` runs a 26-layer GGUF; the lora:8 adapter matches lora:8:merged.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from engine_support import needs_bundled_model

from wattlab.engines import models
from wattlab.engines import transforms_gguf as tg
from wattlab.engines.base import Decoding, EngineConfig, Request
from wattlab.errors import ConfigError, ModelError

HIDDEN, HEADS, KV_HEADS, HEAD_DIM, FFN, VOCAB, LAYERS = 64, 4, 2, 16, 96, 49152, 3
RANK, ALPHA = 4, 8.0
TEXT = (
    "The quick brown fox jumps over the lazy dog. Paris is the capital of France, and Berlin is the "
    "capital of Germany. Water boils at 100 degrees Celsius at sea level."
)


def _bundled() -> Path:
    needs_bundled_model()
    pytest.importorskip("gguf")
    pytest.importorskip("safetensors")
    path = models.bundled_gguf()
    assert path is not None
    return path


def _config(layers: int = LAYERS, ffn: int = FFN, **extra: Any) -> dict[str, Any]:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": HIDDEN,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "head_dim": HEAD_DIM,
        "num_hidden_layers": layers,
        "intermediate_size": ffn,
        "vocab_size": VOCAB,
        "max_position_embeddings": 512,
        "rms_norm_eps": 1e-5,
        "rope_parameters": {"rope_theta": 50000.0, "rope_type": "default"},  # transformers 5's spelling
        "tie_word_embeddings": True,
        **extra,
    }


def _tiny_weights(layer_ids: list[int], seed: int = 0) -> dict[str, Any]:
    import numpy as np

    rng = np.random.default_rng(seed)

    def w(*shape: int) -> Any:
        return (rng.standard_normal(shape) * 0.05).astype(np.float32)

    out = {"model.embed_tokens.weight": w(VOCAB, HIDDEN), "model.norm.weight": 1 + w(HIDDEN)}
    for i in layer_ids:
        p = f"model.layers.{i}."
        out |= {
            p + "input_layernorm.weight": 1 + w(HIDDEN),
            p + "self_attn.q_proj.weight": w(HEADS * HEAD_DIM, HIDDEN),
            p + "self_attn.k_proj.weight": w(KV_HEADS * HEAD_DIM, HIDDEN),
            p + "self_attn.v_proj.weight": w(KV_HEADS * HEAD_DIM, HIDDEN),
            p + "self_attn.o_proj.weight": w(HIDDEN, HEADS * HEAD_DIM),
            p + "post_attention_layernorm.weight": 1 + w(HIDDEN),
            p + "mlp.gate_proj.weight": w(FFN, HIDDEN),
            p + "mlp.up_proj.weight": w(FFN, HIDDEN),
            p + "mlp.down_proj.weight": w(HIDDEN, FFN),
        }
    return out


def _write_checkpoint(directory: Path, weights: dict[str, Any], config: dict[str, Any]) -> Path:
    from safetensors.numpy import save_file

    directory.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(directory / "model.safetensors"))
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def _adapter(seed: int = 1) -> dict[str, Any]:
    """A PEFT-format adapter on q/k/v/o of every layer, with B nonzero so it changes the model."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    dims = {"q": HEADS * HEAD_DIM, "k": KV_HEADS * HEAD_DIM, "v": KV_HEADS * HEAD_DIM, "o": HIDDEN}
    for i in range(LAYERS):
        for proj, rows in dims.items():
            cols = HEADS * HEAD_DIM if proj == "o" else HIDDEN
            p = f"base_model.model.model.layers.{i}.self_attn.{proj}_proj"
            out[f"{p}.lora_A.weight"] = (rng.standard_normal((RANK, cols)) * 0.2).astype(np.float32)
            out[f"{p}.lora_B.weight"] = (rng.standard_normal((rows, RANK)) * 0.2).astype(np.float32)
    return out


def _write_adapter(directory: Path, tensors: dict[str, Any], **config: Any) -> Path:
    from safetensors.numpy import save_file

    directory.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(directory / "adapter_model.safetensors"))
    settings = {"peft_type": "LORA", "r": RANK, "lora_alpha": ALPHA, "target_modules": ["q_proj"], **config}
    (directory / "adapter_config.json").write_text(json.dumps(settings))
    return directory


def _tensor_table(path: Path) -> tuple[list[tuple[str, tuple[int, ...], int, int]], int]:
    """([(name, GGUF dims, ggml type, offset)], start of the tensor data) of a GGUF file, read with
    the stdlib header parser: gguf.GGUFReader parses the 49k-token vocabulary too (seconds here)."""
    import struct

    from wattlab.engines import gguf_meta

    infos = []
    with path.open("rb") as f:
        assert f.read(4) == gguf_meta.GGUF_MAGIC
        _version, n_tensors, n_kv = struct.unpack("<IQQ", f.read(20))
        alignment = 32
        for _ in range(n_kv):
            key = gguf_meta._string(f)
            (code,) = struct.unpack("<I", f.read(4))
            value = gguf_meta._value(f, code, False)
            if key == "general.alignment":
                alignment = int(value)
        for _ in range(n_tensors):
            name = gguf_meta._string(f)
            (n_dims,) = struct.unpack("<I", f.read(4))
            dims = struct.unpack(f"<{n_dims}Q", f.read(8 * n_dims))
            ggml_type, offset = struct.unpack("<IQ", f.read(12))
            infos.append((name, dims, ggml_type, offset))
        start = -(-f.tell() // alignment) * alignment
    return infos, start


def _tensors(path: Path) -> dict[str, Any]:
    """name -> data of an F32/F16 GGUF's tensors (numpy order: GGUF dims reversed), memory-mapped."""
    import numpy as np

    dtypes = {0: np.float32, 1: np.float16}
    infos, start = _tensor_table(path)
    data = np.memmap(path, mode="r")
    out = {}
    for name, dims, ggml_type, offset in infos:
        dtype = np.dtype(dtypes[ggml_type])
        raw = data[start + offset : start + offset + math.prod(dims) * dtype.itemsize]
        out[name] = raw.view(dtype).reshape(tuple(reversed(dims)))
    return out


def _raw_tensors(path: Path) -> dict[str, tuple[tuple[int, ...], int, bytes]]:
    """name -> (dims, ggml type, the tensor's bytes up to the next tensor) of any GGUF file."""
    infos, start = _tensor_table(path)
    blob = path.read_bytes()
    offsets = sorted(offset for *_, offset in infos)
    by_offset = dict(zip(offsets, [*offsets[1:], len(blob) - start], strict=True))
    return {
        name: (dims, ggml_type, blob[start + offset : start + by_offset[offset]])
        for name, dims, ggml_type, offset in infos
    }


# --- fast: shapes, names and the rotary permutation ---------------------------------------------


def test_permute_rows_interleaves_each_heads_halves_as_llamacpp_expects() -> None:
    import numpy as np

    # 2 heads of 4 rows: HF keeps a head's rotary halves apart (rows 0,1 | 2,3); llama.cpp pairs them.
    hf = np.arange(8 * 3).reshape(8, 3)
    expected_rows = [0, 2, 1, 3, 4, 6, 5, 7]
    assert (tg.permute_rows(hf, 2) == hf[expected_rows]).all()
    assert (tg.permute_rows(np.arange(8), 2) == np.array(expected_rows)).all()  # a bias


def test_checkpoint_shape_reads_a_pruned_config_and_transformers_5_rope() -> None:
    shape = tg.checkpoint_shape(_config(layers=2, ffn=64))
    assert (shape.layers, shape.ffn, shape.heads, shape.kv_heads, shape.head_dim) == (2, 64, 4, 2, 16)
    assert shape.rope_theta == 50000.0 and shape.rope_scaling is None and shape.tied
    with pytest.raises(ModelError, match="'gpt2' model"):
        tg.checkpoint_shape({**_config(), "model_type": "gpt2"})
    yarn = {"rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0}
    with pytest.raises(ModelError, match="'yarn' rope scaling"):
        tg.checkpoint_shape(_config(rope_parameters=yarn))


def test_tensor_map_renumbers_layers_and_permutes_q_and_k_only() -> None:
    shape = tg.checkpoint_shape(_config(layers=2))
    names = [*_tiny_weights([0, 5]), "lm_head.weight", "model.layers.0.self_attn.rotary_emb.inv_freq"]
    plan = {t.gguf: t for t in tg.tensor_map(shape, names)}
    assert plan["blk.1.attn_q.weight"].hf == "model.layers.5.self_attn.q_proj.weight"  # the gap closed
    assert plan["blk.0.attn_q.weight"].permute_heads == HEADS
    assert plan["blk.0.attn_k.weight"].permute_heads == KV_HEADS
    assert plan["blk.0.attn_v.weight"].permute_heads is None
    assert "output.weight" not in plan  # tied: llama.cpp reuses token_embd
    assert len(plan) == 2 + 2 * 9
    first, last = tg.tensor_map(shape, names)[0], tg.tensor_map(shape, names)[-1]
    assert (first.gguf, last.gguf) == ("token_embd.weight", "output_norm.weight")
    with pytest.raises(ModelError, match="holds 2 decoder layers but its config"):
        tg.tensor_map(tg.checkpoint_shape(_config(layers=3)), names)
    with pytest.raises(ModelError, match="no place for"):
        tg.tensor_map(shape, [*names, "model.layers.0.mlp.experts.weight"])


def test_qwen2_keeps_the_hf_row_order_and_carries_biases() -> None:
    shape = tg.checkpoint_shape({**_config(), "model_type": "qwen2"})
    names = [*_tiny_weights([0, 1, 2]), "model.layers.0.self_attn.q_proj.bias"]
    plan = {t.gguf: t for t in tg.tensor_map(shape, names)}
    assert shape.gguf_arch == "qwen2" and shape.qkv_bias
    assert plan["blk.0.attn_q.weight"].permute_heads is None  # NEOX rotary: no permutation
    assert plan["blk.0.attn_q.bias"].hf == "model.layers.0.self_attn.q_proj.bias"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny checkpoint, its F32 GGUF, an adapter for it as GGUF, and the merged checkpoint's F32 GGUF."""
    import numpy as np

    tokenizer = _bundled()
    root = tmp_path_factory.mktemp("transforms-gguf")
    weights = _tiny_weights(list(range(LAYERS)))
    config = _config()
    base = _write_checkpoint(root / "base", weights, config)
    tg.hf_to_gguf(base, tokenizer, root / "base.gguf", ftype="F32")
    adapter_tensors = _adapter()
    adapter = _write_adapter(root / "adapter", adapter_tensors)
    tg.write_lora_gguf(adapter, config, root / "adapter.gguf")
    merged = dict(weights)  # PEFT's merge: W + (alpha / r) B A
    for name, a in adapter_tensors.items():
        if ".lora_A." in name:
            b = adapter_tensors[name.replace("lora_A", "lora_B")]
            target = name.replace("base_model.model.", "").replace(".lora_A", "")
            merged[target] = (merged[target] + (ALPHA / RANK) * b @ a).astype(np.float32)
    _write_checkpoint(root / "merged", merged, config)
    tg.hf_to_gguf(root / "merged", tokenizer, root / "merged.gguf", ftype="F32")
    return {"root": root, "weights": weights, "adapter": adapter_tensors, "tokenizer": tokenizer}


def test_the_gguf_carries_the_checkpoints_shape_and_tokenizer(tiny: dict[str, Any]) -> None:
    from wattlab.engines.gguf_meta import read_metadata
    from wattlab.engines.random_gguf import _read_tokenizer_kv

    meta = read_metadata(tiny["root"] / "base.gguf")
    assert meta["general.architecture"] == "llama"
    assert meta["llama.block_count"] == LAYERS
    assert meta["llama.feed_forward_length"] == FFN
    assert meta["llama.attention.head_count"] == HEADS
    assert meta["llama.attention.head_count_kv"] == KV_HEADS
    assert meta["llama.rope.freq_base"] == 50000.0
    assert meta["llama.context_length"] == 512
    assert meta["general.file_type"] == 0  # ALL_F32, as asked
    assert _read_tokenizer_kv(tiny["root"] / "base.gguf") == _read_tokenizer_kv(tiny["tokenizer"])


def test_the_gguf_tensors_are_the_checkpoints_in_llamacpp_layout(tiny: dict[str, Any]) -> None:
    import numpy as np

    tensors = _tensors(tiny["root"] / "base.gguf")
    weights = tiny["weights"]
    assert len(tensors) == 2 + LAYERS * 9
    down = weights["model.layers.2.mlp.down_proj.weight"]
    np.testing.assert_array_equal(tensors["blk.2.ffn_down.weight"], down)
    np.testing.assert_array_equal(tensors["token_embd.weight"], weights["model.embed_tokens.weight"])
    # attn_k: within each of the 2 KV heads, row 2i + j is HF row j * 8 + i (j: rotary half)
    hf_k = weights["model.layers.1.self_attn.k_proj.weight"].reshape(KV_HEADS, 2, HEAD_DIM // 2, HIDDEN)
    gguf_k = tensors["blk.1.attn_k.weight"].reshape(KV_HEADS, HEAD_DIM // 2, 2, HIDDEN)
    for half in range(2):
        np.testing.assert_array_equal(gguf_k[:, :, half, :], hf_k[:, half, :, :])


def test_the_lora_gguf_is_a_llamacpp_adapter(tiny: dict[str, Any]) -> None:
    import numpy as np

    from wattlab.engines.gguf_meta import read_metadata

    path = tiny["root"] / "adapter.gguf"
    meta = read_metadata(path)
    kind = (meta["general.type"], meta["adapter.type"], meta["adapter.lora.alpha"])
    assert kind == ("adapter", "lora", ALPHA)
    tensors = _tensors(path)
    assert len(tensors) == LAYERS * 4 * 2
    assert tensors["blk.0.attn_output.weight.lora_a"].shape == (RANK, HEADS * HEAD_DIM)  # PEFT's lora_A
    peft = tiny["adapter"]
    prefix = "base_model.model.model.layers.0.self_attn"
    np.testing.assert_array_equal(
        tensors["blk.0.attn_v.weight.lora_b"], peft[f"{prefix}.v_proj.lora_B.weight"]
    )
    # B of q is permuted like q's rows (W + B A permutes as B does); A is not
    q_b = tg.permute_rows(peft[f"{prefix}.q_proj.lora_B.weight"], HEADS)
    np.testing.assert_array_equal(tensors["blk.0.attn_q.weight.lora_b"], q_b)
    np.testing.assert_array_equal(
        tensors["blk.0.attn_q.weight.lora_a"], peft[f"{prefix}.q_proj.lora_A.weight"]
    )


def test_lora_alpha_makes_llamacpps_scale_peft_s() -> None:
    assert tg.lora_alpha_for_llamacpp({"r": 16, "lora_alpha": 32}) == 32.0  # both scale by alpha / r
    assert tg.lora_alpha_for_llamacpp({"r": 16, "lora_alpha": 8, "use_rslora": True}) == 32.0  # 8 / 4
    with pytest.raises(ModelError, match="per-module ranks"):
        tg.lora_alpha_for_llamacpp({"r": 8, "lora_alpha": 8, "rank_pattern": {"q_proj": 4}})
    with pytest.raises(ModelError, match="cannot apply"):
        tg.lora_tensor_map(["base_model.model.lm_head.lora_A.weight"], 3)


def _tiny_engine(gguf: Path, adapters: list[str] | None = None) -> Any:
    pytest.importorskip("llama_cpp")
    from wattlab.engines.llamacpp_engine import LlamaCppEngine

    options: dict[str, Any] = {"n_threads": 1}
    if adapters is not None:
        options["lora_adapters"] = adapters
    engine = LlamaCppEngine(
        EngineConfig("llamacpp", "tiny", str(gguf), "gguf", "F32", "cpu", 1, 128, options)
    )
    engine.load()
    return engine


def _logprobs(gguf: Path, adapters: list[str] | None = None) -> list[float]:
    engine = _tiny_engine(gguf, adapters)
    try:
        return engine.prompt_logprobs(engine.tokenize(TEXT))
    finally:
        engine.close()


def test_llamacpp_applies_the_adapter_as_the_merged_weights_score(tiny: dict[str, Any]) -> None:
    root = tiny["root"]
    base = _logprobs(root / "base.gguf")
    unmerged = _logprobs(root / "base.gguf", [str(root / "adapter.gguf")])
    merged = _logprobs(root / "merged.gguf")
    effect = max(abs(u - b) for u, b in zip(unmerged, base, strict=True))
    gap = max(abs(u - m) for u, m in zip(unmerged, merged, strict=True))
    assert effect > 0.05  # the adapter changes the model...
    assert gap < 1e-3 * effect  # ...exactly as merging it into the weights does (F32 both ways)


def test_an_adapter_for_another_model_is_a_clear_error(tiny: dict[str, Any]) -> None:
    import numpy as np

    root = tiny["root"]
    wrong = {k: np.concatenate([v, v], axis=1) if ".lora_A." in k else v for k, v in tiny["adapter"].items()}
    config = _config(hidden_size=2 * HIDDEN)
    tg.write_lora_gguf(_write_adapter(root / "wrong", wrong), config, root / "wrong.gguf")
    with pytest.raises(ModelError, match="could not apply the LoRA adapter") as caught:
        _tiny_engine(root / "base.gguf", [str(root / "wrong.gguf")])
    assert caught.value.fix and "delete that adapter file" in caught.value.fix


# --- fast: the catalog hook (nothing built: prepare=False) -----------------------------------------


def _plan(transform: str, variant: str | None = None, model: str = models.DEFAULT_MODEL) -> EngineConfig:
    return models.resolve(model, "llamacpp", variant, "cpu", prepare=False, transform=transform)


def test_resolve_points_llamacpp_at_the_transformed_gguf_and_the_adapter() -> None:
    from wattlab.engines import derive, transforms
    from wattlab.engines.levers import parse_transform

    bundled = _bundled()
    pruned = _plan("prune:layers:4")
    assert pruned.path == str(tg.transformed_gguf_path(bundled, "prune:layers:4", "Q4_1"))
    assert pruned.options["derive_from"] == str(bundled) and pruned.options["transform"] == "prune:layers:4"
    # the Hugging Face checkpoint it is converted from (its note has the transform's figures)
    hf_base = derive.hf_checkpoint_path(bundled)
    expected = transforms.transformed_checkpoint_path(hf_base, parse_transform("prune:layers:4"))
    assert pruned.options["transform_checkpoint"] == str(expected)
    lora = _plan("lora:8")
    assert lora.path == str(bundled)  # the base model as it is, the adapter applied at load
    assert lora.options["lora_adapters"] == [str(tg.lora_gguf_path(bundled, "lora:8"))]
    # the worker derives a missing adapter in its derivation child before loading
    assert models.files_ready(lora) == tg.lora_gguf_path(bundled, "lora:8").exists()
    merged = _plan("lora:8:merged", "F16")
    assert merged.path == str(tg.transformed_gguf_path(bundled, "lora:8:merged", "F16"))
    assert "lora_adapters" not in merged.options


def test_resolve_gives_random_weights_an_adapter_on_the_random_gguf() -> None:
    from wattlab.engines import derive

    tokenizer = _bundled()
    config = _plan("lora:8", "F16", model="random:tiny-llama")
    assert config.path == str(derive.random_gguf_path("tiny-llama", "F16", tokenizer))
    assert config.options["lora_adapters"] == [str(tg.random_lora_gguf_path("tiny-llama", "lora:8"))]
    assert config.options["derive_from"] == "random:tiny-llama"


def test_resolve_refuses_what_llamacpp_cannot_serve() -> None:
    _bundled()
    with pytest.raises(ConfigError, match="serves 2 LoRA adapters at once"):
        _plan("lora:8:x2")
    with pytest.raises(ConfigError, match="random weights written at load"):
        _plan("prune:layers:1", model="random:tiny-llama")


# --- slow: the bundled model -----------------------------------------------------------------------


def _greedy(engine: Any, prompt: str, n: int = 24) -> list[int]:
    from wattlab.engines.chat import render_user

    ids = engine.tokenize(render_user(prompt, "smollm2"))
    return list(engine.generate([Request(0, ids, n)], Decoding(), 1)[0].output_ids)


def _load(config: EngineConfig) -> Any:
    from wattlab.engines import get_engine_class

    engine = get_engine_class("llamacpp")(config)
    engine.load()
    return engine


@pytest.fixture(scope="module")
def derived(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(the bundled GGUF, its de-quantized checkpoint), built once (the session's, when present)."""
    pytest.importorskip("llama_cpp")
    pytest.importorskip("transformers")
    from wattlab.engines.derive import ensure_hf_checkpoint

    bundled = _bundled()
    yield bundled, ensure_hf_checkpoint(bundled)


@pytest.mark.slow
def test_the_bundled_model_round_trips_through_the_gguf_writer(
    derived: tuple[Path, Path], tmp_path: Path
) -> None:

    from wattlab.engines.derive import _quantize, ensure_gguf_variant

    bundled, checkpoint = derived
    f16 = tmp_path / "roundtrip.F16.gguf"
    tg.hf_to_gguf(checkpoint, bundled, f16)
    q4 = tmp_path / "roundtrip.Q4_1.gguf"
    _quantize(f16, q4, "Q4_1")
    # Tensor for tensor, our F16 file is llama.cpp's own F16 conversion of the bundled file, and
    # llama.cpp's quantizer turns it back into the bundled file's Q4_1 bytes: names, rotary row
    # order and values all match what llama.cpp's converter wrote.
    for ours_path, theirs_path in ((f16, ensure_gguf_variant(bundled, "F16")), (q4, bundled)):
        ours, theirs = _raw_tensors(ours_path), _raw_tensors(theirs_path)
        assert ours.keys() == theirs.keys()
        differing = [name for name in theirs if ours[name] != theirs[name]]
        assert not differing, (ours_path.name, differing[:5])
    answers, scores = [], []
    for path in (bundled, q4):
        engine = _load(EngineConfig("llamacpp", "m", str(path), "gguf", "Q4_1", "cpu", 1, 256, {}))
        try:
            answers.append(_greedy(engine, "What is the capital of France?", 16))
            lp = engine.prompt_logprobs(engine.tokenize(TEXT))
            scores.append(math.exp(-sum(lp) / len(lp)))
        finally:
            engine.close()
    assert answers[0] == answers[1] and scores[0] == scores[1]


@pytest.mark.slow
def test_wattlab_run_prunes_layers_on_llamacpp(derived: tuple[Path, Path], tmp_path: Path) -> None:
    import duckdb

    bundled, _ = derived
    db = tmp_path / "w.duckdb"
    # prune:layers:2, as test_transforms.py's transformers run: the session builds that pruned
    # checkpoint once (Block Influence is most of the cost), and this test adds the GGUF path.
    args = ["run", "--engine", "llamacpp", "--device", "cpu", "--transform", "prune:layers:2"]
    args += ["--input-tokens", "32", "--output-tokens", "4", "--requests", "1", "--warmup", "0"]
    args += ["--meters", "estimate", "--idle-s", "0", "--quiet", "--db", str(db)]
    out = subprocess.run(
        [sys.executable, "-m", "wattlab.cli", *args], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    with duckdb.connect(str(db), read_only=True) as con:
        row = con.execute("SELECT status, transform, result_json FROM runs").fetchone()
    assert row is not None
    status, transform, result = row
    assert (status, transform) == ("finished", "prune:layers:2")
    path = Path(json.loads(result)["transform_note"]["checkpoint"])
    meta = tg.gguf_metadata_summary(path)
    assert meta["block_count"] == tg.gguf_metadata_summary(bundled)["block_count"] - 2 == 28
    assert meta["file_type"] == 3  # Q4_1, the bundled file's own type
    assert path.stat().st_size < bundled.stat().st_size


@pytest.mark.slow
def test_the_lora_adapter_on_llamacpp_matches_the_merged_model(derived: tuple[Path, Path]) -> None:
    scores: dict[str, list[float]] = {}
    answers: dict[str, list[int]] = {}
    for transform in (None, "lora:8", "lora:8:merged"):
        # F16 on both sides, so the only difference left is where B A is added
        config = models.resolve(
            models.DEFAULT_MODEL, "llamacpp", "F16", "cpu", max_tokens=256, transform=transform
        )
        engine = _load(config)
        try:
            scores[str(transform)] = engine.prompt_logprobs(engine.tokenize(TEXT))
            if transform:
                answers[transform] = _greedy(engine, "Write a haiku about the sea.", 16)
        finally:
            engine.close()
    effect = max(abs(a - b) for a, b in zip(scores["lora:8"], scores["None"], strict=True))
    gap = max(abs(a - b) for a, b in zip(scores["lora:8"], scores["lora:8:merged"], strict=True))
    assert effect > 0.05
    assert gap < 0.1 * effect, (gap, effect)
    assert answers["lora:8"] == answers["lora:8:merged"]


@pytest.mark.slow
def test_a_random_model_runs_with_its_adapter_derived_in_the_child() -> None:
    """The worker's path: resolve(prepare=False), the derivation child builds the random GGUF and
    the adapter (transforms.py's, from the arch's config alone), then llama.cpp applies it."""
    from wattlab.engines.derive import derive_in_child

    _bundled()
    pytest.importorskip("llama_cpp")
    pytest.importorskip("peft")
    config = _plan("lora:8", "F16", model="random:tiny-llama")
    derive_in_child(config)
    assert models.files_ready(config)
    assert tg.gguf_metadata_summary(Path(config.options["lora_adapters"][0]))["type"] == "adapter"
    engine = _load(config)
    try:
        done = engine.generate([Request(0, engine.tokenize("Hello there"), 4, 4)], Decoding(), 1)
    finally:
        engine.close()
    assert done[0].output_tokens == 4


@pytest.mark.slow
@pytest.mark.parametrize("model_type", ["llama", "qwen2"])
def test_llamacpp_scores_a_written_checkpoint_as_transformers_does(model_type: str, tmp_path: Path) -> None:
    """A random 2-layer checkpoint made by transformers itself (qwen2: biases, NEOX rotary, tied
    embeddings), written as F32 GGUF: llama.cpp and transformers give the same log-probabilities."""
    tokenizer = _bundled()
    pytest.importorskip("llama_cpp")
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")

    config = transformers.AutoConfig.for_model(
        model_type, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=VOCAB, max_position_embeddings=256, rope_theta=1e6,
        tie_word_embeddings=model_type == "qwen2",
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():  # larger than the init range, so a wrong row order shows in the scores
        for p in model.parameters():
            p.normal_(0, 0.2) if p.dim() == 2 else p.uniform_(0.5, 1.5)
    model.save_pretrained(tmp_path / "hf")
    tg.hf_to_gguf(tmp_path / "hf", tokenizer, tmp_path / "m.gguf", ftype="F32")
    engine = _tiny_engine(tmp_path / "m.gguf")
    try:
        ids = engine.tokenize(TEXT)
        ours = engine.prompt_logprobs(ids)
    finally:
        engine.close()
    with torch.no_grad():
        logprobs = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
    theirs = [float(logprobs[i, ids[i + 1]]) for i in range(len(ids) - 1)]
    spread = max(theirs) - min(theirs)
    assert spread > 1.0  # the scores differ token to token, so matching them means something
    assert max(abs(a - b) for a, b in zip(ours, theirs, strict=True)) < 0.01 * spread
