"""Quantization variants beyond dtypes (engines/quantize.py): which ones each device offers, the
preflight's refusals with reason and fix, and int8 weight-only on the bundled model for real."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, cast

import pytest
from engine_support import MAX_TOKENS, EngineCache, needs_bundled_model, prompt_ids

from wattlab.engines import get_engine_class, quantize, status_of
from wattlab.engines.base import Decoding, Engine, Request
from wattlab.engines.models import DEFAULT_MODEL, bundled_gguf, resolve, variants
from wattlab.engines.spec import EngineSpec
from wattlab.errors import ConfigError
from wattlab.sessions.plan import check_run, preflight
from wattlab.sessions.spec import RunSpec, SessionSettings, Sweep

needs_bundled = pytest.mark.skipif(bundled_gguf() is None, reason="the bundled SmolLM2 GGUF is not installed")
DTYPES = ["fp32", "bf16", "fp16"]


def installed(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Pretend exactly these of the variants' extra packages are importable."""
    monkeypatch.setattr(quantize, "importable", lambda module: module in modules)


# --- what each device offers ---------------------------------------------------------------------


@needs_bundled
def test_the_cpu_offers_torchao_variants_and_never_bitsandbytes(monkeypatch: pytest.MonkeyPatch) -> None:
    installed(monkeypatch, "torchao", "bitsandbytes")
    assert variants(DEFAULT_MODEL, "transformers", device="cpu") == [*DTYPES, "int8wo", "int4wo"]
    installed(monkeypatch)  # neither package: dtypes only
    assert variants(DEFAULT_MODEL, "transformers", device="cpu") == DTYPES


@needs_bundled
def test_a_gpu_offers_bitsandbytes_only_where_it_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    installed(monkeypatch, "torchao", "bitsandbytes")
    every = [*DTYPES, "int8wo", "int4wo", "bnb8", "nf4"]
    assert variants(DEFAULT_MODEL, "transformers", device="cuda:1") == every
    installed(monkeypatch, "torchao")
    assert variants(DEFAULT_MODEL, "transformers", device="gpu") == [*DTYPES, "int8wo", "int4wo"]
    # "any": what the engine declares, whatever this box has (the preflight's list of names).
    installed(monkeypatch)
    assert variants(DEFAULT_MODEL, "transformers", device="any") == every


@needs_bundled
def test_auto_follows_the_engines_default_device_on_this_box(monkeypatch: pytest.MonkeyPatch) -> None:
    from wattlab.engines import models

    installed(monkeypatch, "torchao", "bitsandbytes")
    monkeypatch.setattr(models, "default_device", lambda engine: "cpu")
    assert "nf4" not in variants(DEFAULT_MODEL, "transformers")
    monkeypatch.setattr(models, "default_device", lambda engine: "cuda")
    assert variants(DEFAULT_MODEL, "transformers")[-2:] == ["bnb8", "nf4"]


@needs_bundled
def test_gguf_and_vllm_variants_do_not_change_with_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    installed(monkeypatch)
    gguf = variants(DEFAULT_MODEL, "llamacpp", device="any")
    assert gguf[0] == "Q4_1" and variants(DEFAULT_MODEL, "llamacpp", device="cpu") == gguf
    assert variants(DEFAULT_MODEL, "vllm", device="cpu") == DTYPES


def test_a_spec_cannot_declare_a_gpu_only_variant_it_does_not_have() -> None:
    with pytest.raises(ValueError, match="not variants"):
        EngineSpec("toy", "toy", "x:Y", variants=("a",), gpu_only_variants=(("b", "needs CUDA"),))
    with pytest.raises(ValueError, match="not variants"):
        EngineSpec("toy", "toy", "x:Y", variants=("a",), variant_needs=(("c", "somepkg"),))


def test_quantized_variants_load_on_the_devices_base_dtype() -> None:
    assert quantize.base_dtype("int8wo", "cpu") == "fp32" and quantize.base_dtype("nf4", "cuda") == "bf16"
    assert quantize.base_dtype("fp16", "cpu") == "fp16"  # a dtype is its own base


# --- the preflight refuses what cannot run here, with the reason and the fix --------------------


def refused(**values: Any) -> ConfigError:
    sweep = Sweep(SessionSettings(idle_s=0), [(RunSpec(**values), 0)], source="wattlab run")
    with pytest.raises(ConfigError) as info:
        preflight(sweep)
    return info.value


@needs_bundled
def test_bitsandbytes_on_the_cpu_is_refused_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    installed(monkeypatch, "torchao", "bitsandbytes")
    error = refused(engine="transformers", quant="nf4", device="cpu", input_tokens=32, output_tokens=8)
    assert "runs nf4 only on a GPU" in error.message and "CUDA kernel" in error.message
    assert error.fix and "--device cuda" in error.fix and "int8wo" in error.fix
    assert "(--quant)" in error.message  # the flag it came from


@needs_bundled
def test_a_variant_whose_package_is_missing_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    installed(monkeypatch, "torchao")
    problems = check_run(RunSpec(engine="transformers", quant="bnb8", device="cuda", input_tokens=32))
    mine = [p for p in problems if p.key == "quant"]
    assert len(mine) == 1 and "needs the bitsandbytes package" in mine[0].text
    assert mine[0].fix == "pip install bitsandbytes"
    installed(monkeypatch)
    error = refused(engine="transformers", quant="int8wo", device="cpu", input_tokens=32, output_tokens=8)
    assert "needs the torchao package" in error.message and error.fix == "pip install torchao"


@needs_bundled
def test_an_unknown_variant_lists_those_that_run_here(monkeypatch: pytest.MonkeyPatch) -> None:
    installed(monkeypatch, "torchao")
    error = refused(engine="transformers", quant="int3wo", device="cpu", input_tokens=32, output_tokens=8)
    assert "cannot run smollm2-135m-instruct as 'int3wo'" in error.message
    assert error.fix == "choose one of: fp32, bf16, fp16, int8wo, int4wo"


@needs_bundled
def test_variants_that_run_here_pass_the_preflight(monkeypatch: pytest.MonkeyPatch) -> None:
    installed(monkeypatch, "torchao")
    for quant in ("INT8WO", "int4wo", "bf16"):  # variant names match case-insensitively, as GGUF types do
        spec = RunSpec(engine="transformers", quant=quant, device="cpu", input_tokens=32, output_tokens=8)
        assert [p for p in check_run(spec) if p.key == "quant"] == []


@needs_bundled
def test_resolve_refuses_a_gpu_only_variant_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    installed(monkeypatch, "torchao", "bitsandbytes")
    with pytest.raises(ConfigError, match="only on a GPU"):
        resolve(DEFAULT_MODEL, "transformers", "nf4", device="cpu", prepare=False)
    config = resolve(DEFAULT_MODEL, "transformers", "int4wo", device="cpu", prepare=False)
    assert config.variant == "int4wo"


# --- int8 weight-only on the bundled model, for real --------------------------------------------

TEXT = (
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. It is named "
    "after the engineer Gustave Eiffel, whose company designed and built the tower from 1887 to 1889."
)


@pytest.fixture(scope="module")
def int8wo_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    needs_bundled_model()
    if not status_of("transformers").installed:
        pytest.skip("transformers is not installed: pip install -e '.[transformers]'")
    if not quantize.importable("torchao"):
        pytest.skip("torchao is not installed: pip install torchao")
    config = resolve(DEFAULT_MODEL, "transformers", "int8wo", "cpu", max_batch=1, max_tokens=MAX_TOKENS)
    engine = get_engine_class("transformers")(config)
    engine.load()
    yield engine
    engine.close()


def perplexity(engine: Engine) -> float:
    logprobs = engine.prompt_logprobs(engine.tokenize(TEXT))
    return math.exp(-sum(logprobs) / len(logprobs))


@pytest.mark.slow
def test_int8wo_generates_and_keeps_perplexity_near_fp32(
    int8wo_engine: Engine, engine_cache: EngineCache
) -> None:
    model: Any = cast(Any, int8wo_engine).model
    # Every decoder linear holds torchao int8 weights; the tied output head stays fp32.
    up = model.model.layers[0].mlp.up_proj.weight
    assert "Int8" in type(up).__name__ or "Affine" in type(up).__name__, type(up).__name__
    assert type(model.get_output_embeddings().weight).__name__ == "Parameter"
    request = Request(0, prompt_ids(int8wo_engine, "What is the capital of France?"), 12, 12)
    [done] = int8wo_engine.generate([request], Decoding(), 1)
    assert done.error is None and done.output_tokens == 12 and done.text.strip()
    fp32 = perplexity(engine_cache.get("transformers"))  # the session's fp32 engine
    int8 = perplexity(int8wo_engine)
    # Per-row int8 weights move this model's perplexity by under 1% (+0.6% on the built-in perplexity
    # text, docs/BENCHMARKS.md); a broken quantization (wrong scales, lost layers) moves it by multiples.
    assert 2.0 < fp32 < 200.0
    assert abs(int8 / fp32 - 1) < 0.10, (fp32, int8)
