"""`random:<arch>` on llama.cpp: a random-weight GGUF in the arch's real shape, written, cached, loaded.

The fast tests write the tiny 2-layer arch (random:tiny-llama, 14M parameters, a 28 MB file in ~1 s)
and read it back with the gguf package's own reader; the real archs are checked by their tensor plan
only (no file). The slow test loads the tiny arch in llama.cpp and generates at batch 1 and 4.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_support import needs_bundled_model

from wattlab.engines import derive, get_engine_class, models
from wattlab.engines.base import Decoding, Engine, EngineConfig, Request
from wattlab.engines.chat import render_user
from wattlab.engines.gguf_meta import file_type, read_metadata
from wattlab.engines.random_gguf import arch_shape, tensor_plan
from wattlab.errors import ModelError

TINY = "tiny-llama"
PUBLISHED = {"llama-3.2-1b": 1.24e9, "llama-3.1-8b": 8.03e9, "qwen2.5-7b": 7.62e9, "qwen2.5-0.5b": 494e6}


def _config(arch: str) -> dict[str, object]:
    config = json.loads(derive.random_config_path(arch).read_text())
    config.pop("_wattlab")
    return config


def _tokenizer() -> Path:
    needs_bundled_model()
    pytest.importorskip("gguf")
    gguf = models.bundled_gguf()
    assert gguf is not None
    return gguf


@pytest.fixture(scope="module")
def tiny_f16(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The tiny arch's F16 GGUF, written once for this module's fast tests into their own models dir."""
    tokenizer = _tokenizer()
    saved = os.environ.get("WATTLAB_MODELS")
    os.environ["WATTLAB_MODELS"] = str(tmp_path_factory.mktemp("random-gguf-models"))
    try:
        yield derive.ensure_random_gguf(TINY, "F16", tokenizer)
    finally:
        if saved is None:
            os.environ.pop("WATTLAB_MODELS", None)
        else:
            os.environ["WATTLAB_MODELS"] = saved


@pytest.mark.parametrize("arch", sorted(PUBLISHED))
def test_tensor_plan_has_the_real_archs_shapes(arch: str) -> None:
    config = _config(arch)
    shape = arch_shape(arch, config)
    plan = {t.name: t.shape for t in tensor_plan(shape)}
    hidden, vocab = config["hidden_size"], config["vocab_size"]
    assert plan["token_embd.weight"] == (vocab, hidden)  # the arch's own vocab, not the tokenizer's
    assert ("output.weight" in plan) == (not config["tie_word_embeddings"])
    assert plan["blk.0.ffn_down.weight"] == (hidden, config["intermediate_size"])
    assert plan["blk.0.attn_k.weight"] == (shape.kv_heads * shape.head_dim, hidden)
    assert f"blk.{config['num_hidden_layers'] - 1}.ffn_up.weight" in plan
    assert ("blk.0.attn_q.bias" in plan) == (config["model_type"] == "qwen2")
    assert ("rope_freqs.weight" in plan) == arch.startswith("llama-3")
    weights = sum(t.nbytes // 2 for t in tensor_plan(shape) if t.kind == "weight")
    assert abs(weights - PUBLISHED[arch]) / PUBLISHED[arch] < 0.02


def test_the_gguf_metadata_and_tensors_match_the_arch(tiny_f16: Path) -> None:
    import gguf

    meta = read_metadata(tiny_f16)
    config = _config(TINY)
    assert file_type(meta) == "F16" and meta["general.architecture"] == "llama"
    expected = {
        "llama.context_length": config["max_position_embeddings"],
        "llama.embedding_length": config["hidden_size"],
        "llama.block_count": config["num_hidden_layers"],
        "llama.feed_forward_length": config["intermediate_size"],
        "llama.attention.head_count": config["num_attention_heads"],
        "llama.attention.head_count_kv": config["num_key_value_heads"],
        "llama.rope.dimension_count": config["head_dim"],
        "llama.vocab_size": config["vocab_size"],
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.eos_token_id": 2,
    }
    assert {k: meta.get(k) for k in expected} == expected
    assert meta["llama.rope.freq_base"] == pytest.approx(config["rope_theta"])
    assert meta["llama.attention.layer_norm_rms_epsilon"] == pytest.approx(config["rms_norm_eps"])
    assert models._template_of_gguf(tiny_f16) == "smollm2"  # the SmolLM2 tokenizer's template came along

    reader = gguf.GGUFReader(tiny_f16)
    assert len(reader.fields["tokenizer.ggml.tokens"].contents()) == config["vocab_size"]  # padded
    tensors = {t.name: t for t in reader.tensors}
    assert tensors["token_embd.weight"].shape.tolist() == [256, 49408]  # GGUF order: (cols, rows)
    assert tensors["blk.1.attn_k.weight"].shape.tolist() == [256, 128]
    assert "output.weight" not in tensors  # tied, as the config says
    weights = tensors["blk.0.ffn_gate.weight"].data.astype("float32")
    assert 0.015 < float(weights.std()) < 0.025 and abs(float(weights.mean())) < 1e-3
    assert tensors["blk.0.attn_norm.weight"].data.tolist() == [1.0] * 256


def test_a_second_resolve_reuses_the_cached_file(tiny_f16: Path) -> None:
    before = tiny_f16.stat()
    again = derive.ensure_random_gguf(TINY, "F16", _tokenizer())
    assert again == tiny_f16 and again.stat().st_mtime_ns == before.st_mtime_ns
    config = models.resolve(f"random:{TINY}", "llamacpp", "F16", device="cpu")
    assert config.path == str(tiny_f16) and config.fmt == "gguf"
    assert config.options["chat_template"] == "smollm2"


def test_a_half_written_temp_file_is_never_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WATTLAB_MODELS", str(tmp_path))
    target = derive.random_gguf_path(TINY, "F16", _tokenizer())
    target.parent.mkdir(parents=True)
    stale = target.with_name(f".{target.name}.tmp-999999")  # a killed build's leftover
    stale.write_bytes(b"GGUF" + b"\0" * 100)
    path = derive.ensure_random_gguf(TINY, "F16", _tokenizer())
    assert path == target and not stale.exists()
    assert file_type(read_metadata(path)) == "F16" and path.stat().st_size > 20_000_000


def test_not_enough_disk_is_refused_before_writing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import shutil
    from types import SimpleNamespace

    monkeypatch.setenv("WATTLAB_MODELS", str(tmp_path))
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: SimpleNamespace(free=10**6))  # 1 MB free
    with pytest.raises(ModelError, match=r"needs 0\.\d GB but .* has 0\.0 GB free") as err:
        derive.ensure_random_gguf(TINY, "F16", _tokenizer())
    assert "WATTLAB_MODELS" in (err.value.fix or "")
    left = [p.name for p in (tmp_path / "random-gguf").iterdir() if not p.name.endswith(".lock")]
    assert left == []  # nothing half-written left behind


def test_llamacpp_offers_gguf_types_for_random_models() -> None:
    allowed = models.variants("random:llama-3.2-1b", "llamacpp")
    assert allowed[0] == "F16" and {"Q8_0", "Q4_K_M", "Q4_0"} <= set(allowed)
    entry = {m.name: m for m in models.list_models()}["random:llama-3.2-1b"]
    assert "llamacpp" in entry.engines
    limits = models.model_limits("random:llama-3.2-1b", "llamacpp")
    assert limits.context == 131072 and limits.template == "smollm2" and not limits.byte_tokens


def test_preflight_accepts_llamacpp_on_random_weights() -> None:
    from wattlab.sessions.plan import check_run
    from wattlab.sessions.spec import RunSpec

    spec = RunSpec(engine="llamacpp", model="random:llama-3.2-1b", quant="Q4_K_M", input_tokens=128)
    assert [p.text for p in check_run(spec)] == []
    bad = check_run(RunSpec(engine="llamacpp", model="random:llama-3.2-1b", quant="fp32"))
    assert any("cannot run random:llama-3.2-1b as 'fp32'" in p.text for p in bad)


def test_resolve_without_prepare_leaves_the_build_to_load(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _tokenizer()
    monkeypatch.setenv("WATTLAB_MODELS", str(tmp_path))
    config = models.resolve(f"random:{TINY}", "llamacpp", "Q4_K_M", device="cpu", prepare=False)
    assert not Path(config.path).exists() and config.options["derive_from"] == f"random:{TINY}"
    assert config.path.endswith(".Q4_K_M.gguf")


def test_an_unknown_arch_is_refused_with_the_list() -> None:
    with pytest.raises(ModelError, match="no random-weight architecture named 'gpt-17'") as err:
        models.resolve("random:gpt-17", "llamacpp")
    assert "random:llama-3.2-1b" in (err.value.fix or "") and f"random:{TINY}" in (err.value.fix or "")
    with pytest.raises(ModelError, match="llama and qwen2"):
        arch_shape("mamba", {"model_type": "mamba"})


# --- slow: llama.cpp loads the file and generates -----------------------------------------------


@pytest.fixture(scope="module")
def tiny_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, EngineConfig]]:
    """random:tiny-llama as Q4_K_M on llama.cpp, built by the engine's load() (resolve(prepare=False))."""
    _tokenizer()
    pytest.importorskip("llama_cpp")
    saved = os.environ.get("WATTLAB_MODELS")
    os.environ["WATTLAB_MODELS"] = str(tmp_path_factory.mktemp("random-gguf-engine"))
    config = models.resolve(
        f"random:{TINY}", "llamacpp", "Q4_K_M", device="cpu", max_batch=4, max_tokens=128, prepare=False
    )
    engine = get_engine_class("llamacpp")(config)
    try:
        engine.load()
        yield engine, config
    finally:
        engine.close()
        if saved is None:
            os.environ.pop("WATTLAB_MODELS", None)
        else:
            os.environ["WATTLAB_MODELS"] = saved


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 4])
def test_llamacpp_generates_from_the_random_gguf(
    tiny_engine: tuple[Engine, EngineConfig], batch: int
) -> None:
    engine, config = tiny_engine
    assert file_type(read_metadata(config.path)) == "Q4_K_M"
    assert getattr(engine, "num_parameters", 0) == 13_829_376  # the tiny arch's exact count
    ids = tuple(engine.tokenize(render_user("Hello there", config.options["chat_template"])))
    assert ids[0] == 1  # <|im_start|> of the SmolLM2 tokenizer the file carries
    done = engine.generate([Request(i, ids, 8, 8) for i in range(batch)], Decoding(), batch)
    assert [c.output_tokens for c in done] == [8] * batch
