"""The model catalog: names, paths, variants, derived files and the errors a user can hit."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
from engine_support import needs_bundled_model

from wattlab.engines import derive, get_engine_class, models
from wattlab.engines.base import Decoding, Request
from wattlab.engines.chat import render_user
from wattlab.engines.gguf_meta import file_type, read_metadata
from wattlab.engines.models import DEFAULT_MODEL, resolve, variants
from wattlab.errors import ConfigError, ModelError

RANDOM_NAMES = {
    "random:smollm2-135m",
    "random:smollm2-360m",
    "random:smollm2-1.7b",
    "random:llama-3.2-1b",
    "random:llama-3.2-3b",
    "random:llama-3.1-8b",
    "random:qwen2.5-0.5b",
    "random:qwen2.5-7b",
}


def test_catalog_lists_the_default_and_every_random_shape() -> None:
    names = [m.name for m in models.list_models()]
    assert names[0] == DEFAULT_MODEL
    assert set(names) >= RANDOM_NAMES


def test_variants_per_engine() -> None:
    needs_bundled_model()
    gguf = variants(DEFAULT_MODEL, "llamacpp")
    assert gguf[0] == "Q4_1" and {"Q8_0", "F16", "Q4_K_M", "Q5_K_M"} <= set(gguf)
    assert variants(DEFAULT_MODEL, "transformers")[:3] == ["fp32", "bf16", "fp16"]  # then int8wo...
    assert variants(DEFAULT_MODEL, "vllm") == ["fp32", "bf16", "fp16"]
    assert variants("random:llama-3.2-1b", "transformers")[:3] == ["fp32", "bf16", "fp16"]
    assert variants(DEFAULT_MODEL, "openai") == ["served"]


def test_llamacpp_runs_random_weights_as_gguf_types() -> None:
    # a random-weight GGUF is written in F16 and quantized from it (tests/engines/test_random_gguf.py)
    allowed = variants("random:llama-3.2-1b", "llamacpp")
    assert allowed[0] == "F16" and "Q4_K_M" in allowed


def test_unknown_model_lists_the_catalog_and_forms() -> None:
    with pytest.raises(ModelError, match="unknown model") as err:
        resolve("gpt-17-ultra", "llamacpp")
    assert DEFAULT_MODEL in (err.value.fix or "") and ".gguf" in (err.value.fix or "")
    with pytest.raises(ModelError, match="random-weight"):
        resolve("random:gpt-17", "transformers")


def test_missing_path_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "model.gguf"
    with pytest.raises(ModelError, match="no such file") as err:
        resolve(str(missing), "llamacpp")
    assert str(missing) in err.value.message


def test_not_a_gguf_and_truncated_header(tmp_path: Path) -> None:
    needs_bundled_model()
    fake = tmp_path / "notes.gguf"
    fake.write_text("hello, I am not a model")
    with pytest.raises(ModelError, match="not a GGUF"):
        resolve(str(fake), "llamacpp")
    bundled = models.bundled_gguf()
    assert bundled is not None
    cut = tmp_path / "cut-header.gguf"
    cut.write_bytes(bundled.read_bytes()[:4096])  # inside the vocabulary array
    with pytest.raises(ModelError, match="truncated") as err:
        resolve(str(cut), "llamacpp")
    assert "again" in (err.value.fix or "")


@pytest.mark.slow
def test_truncated_tensor_data_fails_at_load_with_a_fix(tmp_path: Path) -> None:
    needs_bundled_model()
    bundled = models.bundled_gguf()
    assert bundled is not None
    cut = tmp_path / "cut-data.gguf"
    cut.write_bytes(bundled.read_bytes()[: bundled.stat().st_size // 2])  # header whole, tensors cut
    config = resolve(str(cut), "llamacpp", device="cpu")  # the header reads fine
    assert config.variant == "Q4_1"
    engine = get_engine_class("llamacpp")(config)
    with pytest.raises(ModelError, match="could not load") as err:
        engine.load()
    assert "truncated or corrupt" in (err.value.fix or "")


def test_disallowed_variant_lists_the_allowed_ones() -> None:
    needs_bundled_model()
    with pytest.raises(ConfigError, match="Q4_K_M") as err:
        resolve(DEFAULT_MODEL, "transformers", "Q4_K_M")
    assert "fp32, bf16, fp16" in (err.value.fix or "")
    with pytest.raises(ConfigError) as err:
        resolve(DEFAULT_MODEL, "llamacpp", "fp16")
    assert "Q8_0" in (err.value.fix or "")


def test_bad_options_and_devices() -> None:
    needs_bundled_model()
    with pytest.raises(ConfigError, match="no option 'n_gpu_layer'"):
        resolve(DEFAULT_MODEL, "llamacpp", options={"n_gpu_layer": 10})
    with pytest.raises(ConfigError, match="must be int"):
        resolve(DEFAULT_MODEL, "llamacpp", options={"n_gpu_layers": "all"})
    with pytest.raises(ConfigError, match="unknown device"):
        resolve(DEFAULT_MODEL, "llamacpp", device="tpu")
    with pytest.raises(ConfigError, match="unknown engine"):
        resolve(DEFAULT_MODEL, "onnx")


def test_hub_id_offline_is_a_clear_model_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for engine in ("transformers", "llamacpp"):
        with pytest.raises(ModelError, match="cannot fetch") as err:
            resolve("wattlab-tests/no-such-model", engine)
        assert "online" in (err.value.fix or "")


def test_build_once_builds_once_under_concurrency(tmp_path: Path) -> None:
    target = tmp_path / "artifact"
    calls = []

    def build(tmp: Path) -> None:
        calls.append(1)
        time.sleep(0.3)  # long enough for the other threads to queue on the lock
        tmp.write_text("built")

    threads = [threading.Thread(target=derive.build_once, args=(target, build)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and target.read_text() == "built"
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]  # the temporary is gone


def test_failed_build_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "artifact"

    def broken(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        derive.build_once(target, broken)
    assert not target.exists() and not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


@pytest.mark.slow
def test_checkpoint_is_derived_once_and_cached() -> None:
    needs_bundled_model()
    pytest.importorskip("transformers")
    first = resolve(DEFAULT_MODEL, "transformers")  # derives (~30 s) unless cached already
    checkpoint = Path(first.path)
    made = (checkpoint / "model.safetensors").stat().st_mtime_ns
    started = time.monotonic()
    second = resolve(DEFAULT_MODEL, "vllm")
    assert time.monotonic() - started < 1.0
    assert second.path == first.path and (checkpoint / "model.safetensors").stat().st_mtime_ns == made
    config = json.loads((checkpoint / "config.json").read_text())
    assert "quantization_config" not in config  # else vLLM refuses: "Unknown quantization method: gguf"
    assert (checkpoint / "tokenizer.json").exists()


@pytest.mark.slow
def test_q8_0_variant_is_made_cached_and_loadable() -> None:
    needs_bundled_model()
    pytest.importorskip("llama_cpp")
    config = resolve(DEFAULT_MODEL, "llamacpp", "Q8_0", device="cpu")
    path = Path(config.path)
    assert file_type(read_metadata(path)) == "Q8_0"
    assert path.stat().st_size > models.bundled_gguf().stat().st_size  # type: ignore[union-attr]
    made = path.stat().st_mtime_ns
    started = time.monotonic()
    assert resolve(DEFAULT_MODEL, "llamacpp", "Q8_0").path == config.path
    assert time.monotonic() - started < 1.0 and path.stat().st_mtime_ns == made
    engine = get_engine_class("llamacpp")(config)
    engine.load()
    try:
        ids = tuple(engine.tokenize(render_user("Count from 1 to 10.", "smollm2")))
        done = engine.generate([Request(0, ids, 6)], Decoding(), 1)[0]
        assert done.output_tokens == 6 and "1" in done.text
    finally:
        engine.close()


@pytest.mark.slow
def test_deferred_derivation_happens_at_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    needs_bundled_model()
    pytest.importorskip("llama_cpp")
    monkeypatch.setenv("WATTLAB_MODELS", str(tmp_path / "models"))
    config = resolve(DEFAULT_MODEL, "llamacpp", "Q5_0", device="cpu", prepare=False)
    assert not Path(config.path).exists() and config.options["derive_from"]
    engine = get_engine_class("llamacpp")(config)
    engine.load()
    engine.close()
    assert file_type(read_metadata(config.path)) == "Q5_0"


@pytest.mark.slow
def test_shipped_configs_have_the_published_sizes() -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    for arch in models.random_archs():
        raw = json.loads((derive.CONFIGS_DIR / f"{arch}.json").read_text())
        published = raw.pop("_wattlab")["parameters"]
        expected = float(published[:-1]) * (1e9 if published.endswith("B") else 1e6)
        config = transformers.AutoConfig.for_model(**raw)
        with torch.device("meta"):  # shapes only: no memory, no init
            model = transformers.AutoModelForCausalLM.from_config(config)
        count = sum(p.numel() for p in model.parameters())
        assert abs(count - expected) / expected < 0.02, f"{arch}: {count:,} parameters, published {published}"


@pytest.mark.slow
def test_random_weight_model_generates_on_cpu() -> None:
    pytest.importorskip("transformers")
    config = resolve("random:smollm2-135m", "transformers", device="cpu", max_batch=2, max_tokens=128)
    assert config.fmt == "random" and config.variant == "fp32"
    engine = get_engine_class("transformers")(config)
    engine.load()
    try:
        ids = tuple(engine.tokenize(render_user("Hello there", config.options["chat_template"])))
        assert ids[0] == 1  # the bundled tokenizer (or the byte fallback) knows <|im_start|>
        done = engine.generate([Request(0, ids, 5, 5), Request(1, ids[:5], 5, 5)], Decoding(), 2)
        assert [c.output_tokens for c in done] == [5, 5]
    finally:
        engine.close()


@pytest.mark.slow
def test_random_weight_model_with_the_byte_tokenizer(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from wattlab.engines.base import EngineConfig

    path = derive.ensure_random_dir("smollm2-135m", None)
    config = EngineConfig(
        "transformers",
        "random:smollm2-135m",
        str(path),
        "random",
        "fp32",
        "cpu",
        1,
        64,
        {"tokenizer": "bytes"},
    )
    engine = get_engine_class("transformers")(config)
    engine.load()
    try:
        ids = engine.tokenize("<|im_start|>user\nhé<|im_end|>")
        assert ids[0] == 1 and ids[-1] == 2 and len(ids) == 2 + 5 + 3  # "user\n" + "hé" (3 bytes)
        assert engine.detokenize(ids) == "user\nhé"
        done = engine.generate([Request(0, tuple(ids), 3, 3)], Decoding(), 1)[0]
        assert done.output_tokens == 3
    finally:
        engine.close()


def test_importing_the_catalog_loads_no_engine() -> None:
    import subprocess
    import sys

    code = (
        "import sys, wattlab.engines, wattlab.engines.models, wattlab.engines.chat, wattlab.engines.derive;"
        "wattlab.engines.engine_status(); wattlab.engines.models.list_models();"
        "heavy = [m for m in ('torch', 'vllm', 'llama_cpp', 'transformers') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    )
    assert out.stdout.strip() == ""
