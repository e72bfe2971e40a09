"""llama.cpp batched decoding: batch 4 gives batch 1's greedy tokens (with continuous admission and
chunked prefill mixed in), the numpy greedy path agrees with llama.cpp's own sampler, the context
options reach llama.cpp, and a bad KV-cache type is refused by the preflight."""

from __future__ import annotations

from typing import Any

import pytest
from engine_support import EngineCache, needs_bundled_model, prompt_ids

from wattlab.engines import get_engine_class, status_of
from wattlab.engines.base import Decoding, Engine, Request
from wattlab.engines.models import DEFAULT_MODEL, resolve
from wattlab.errors import ConfigError
from wattlab.sessions.plan import check_sweep, preflight
from wattlab.sessions.spec import RunSpec, SessionSettings, Sweep

PROMPTS = [
    "Count from 1 to 10.",
    "Say hi.",
    "List the days of the week.",
    "Write a long poem about the sea and the wind.",
    "What is 2 + 2?",
    "Name three colours.",
]


def _llamacpp(cache: EngineCache) -> Engine:
    return cache.get("llamacpp")


def _requests(engine: Engine, n_out: int, exact: bool) -> list[Request]:
    return [Request(i, prompt_ids(engine, p), n_out, n_out if exact else 0) for i, p in enumerate(PROMPTS)]


@pytest.mark.slow
@pytest.mark.parametrize("exact", [False, True], ids=["eos-stops", "exact-length"])
def test_batch_of_four_gives_batch_one_tokens(engine_cache: EngineCache, exact: bool) -> None:
    """Six prompts of different lengths at batch 4: slots free up and new prompts are prefilled in
    the same steps as other sequences decode; every sequence still gets batch 1's tokens. llama.cpp's
    CPU kernels compute each output row from its own activations (no cross-row reduction), so the
    logits, and the greedy argmax, do not depend on the batch."""
    engine = _llamacpp(engine_cache)
    requests = _requests(engine, 24, exact)
    batched = engine.generate(requests, Decoding(), 4)
    single = [engine.generate([r], Decoding(), 1)[0] for r in requests]
    for b, s in zip(batched, single, strict=True):
        assert b.error is None and s.error is None
        assert b.output_ids == s.output_ids, f"batch 4 and batch 1 differ: {b.text!r} vs {s.text!r}"
        if exact:
            assert b.output_tokens == 24  # the EOS ban held in the numpy greedy path


@pytest.mark.slow
def test_numpy_greedy_equals_llama_cpp_sampler_chain(engine_cache: EngineCache) -> None:
    """Greedy (numpy argmax over the logits buffer) against llama.cpp's sampler chain with top_k=1."""
    engine = _llamacpp(engine_cache)
    requests = _requests(engine, 12, exact=True)[:4]
    greedy = engine.generate(requests, Decoding(), 4)
    chain = engine.generate(requests, Decoding(strategy="sample", top_k=1, temperature=1.0), 4)
    assert [c.output_ids for c in greedy] == [c.output_ids for c in chain]


@pytest.mark.slow
def test_context_options_reach_llama_cpp() -> None:
    """A second, small load (max_batch 2) with every context option set; read back from llama.cpp."""
    needs_bundled_model()
    if not status_of("llamacpp").installed:
        pytest.skip("llama-cpp-python is not installed")
    import llama_cpp as lc

    options: dict[str, Any] = {
        "n_ubatch": 64,
        "n_batch": 128,
        "n_threads": 1,
        "n_threads_batch": 2,
        "type_k": "q8_0",
        "type_v": "q8_0",
        "flash_attn": True,
        "prefill_chunk": 16,
    }
    config = resolve(DEFAULT_MODEL, "llamacpp", device="cpu", max_batch=2, max_tokens=256, options=options)
    quantized = get_engine_class("llamacpp")(config)
    plain = get_engine_class("llamacpp")(
        resolve(DEFAULT_MODEL, "llamacpp", device="cpu", max_batch=2, max_tokens=256)
    )
    quantized.load()
    plain.load()
    try:
        ctx: Any = quantized._ctx  # type: ignore[attr-defined]
        assert lc.llama_n_ubatch(ctx) == 64
        assert lc.llama_n_batch(ctx) == 128
        assert lc.llama_n_threads(ctx) == 1 and lc.llama_n_threads_batch(ctx) == 2
        # A q8_0 KV cache holds a sequence's state in about half the bytes of f16's.
        sizes = []
        for engine in (quantized, plain):
            request = Request(0, prompt_ids(engine, PROMPTS[3]), 4)
            engine.generate([request], Decoding(), 1)
            ids = list(request.prompt_ids)
            e_ctx: Any = engine._ctx  # type: ignore[attr-defined]
            tokens = (lc.llama_token * len(ids))(*ids)  # kept alive: the batch only points at it
            batch = lc.llama_batch_get_one(tokens, len(ids))
            assert lc.llama_decode(e_ctx, batch) == 0
            sizes.append(lc.llama_state_seq_get_size(e_ctx, 0))
            lc.llama_memory_clear(lc.llama_get_memory(e_ctx), True)
        assert sizes[0] < 0.7 * sizes[1], f"q8_0 KV state {sizes[0]} B vs f16 {sizes[1]} B"
        # A prompt longer than prefill_chunk, admitted while another sequence decodes, still works.
        long_prompts = [Request(i, prompt_ids(quantized, p), 6) for i, p in enumerate(PROMPTS[:3])]
        done = quantized.generate(long_prompts, Decoding(), 2)
        assert all(c.error is None and c.output_tokens > 0 for c in done)
    finally:
        quantized.close()
        plain.close()


def test_quantized_v_without_flash_attention_is_a_config_error() -> None:
    needs_bundled_model()
    if not status_of("llamacpp").installed:
        pytest.skip("llama-cpp-python is not installed")
    options = {"type_v": "q4_0", "flash_attn": False}
    config = resolve(DEFAULT_MODEL, "llamacpp", device="cpu", max_batch=1, max_tokens=64, options=options)
    engine = get_engine_class("llamacpp")(config)
    with pytest.raises(ConfigError, match="flash attention"):
        engine.load()
    engine.close()


def _run(**options: Any) -> RunSpec:
    return RunSpec(engine="llamacpp", device="cpu", batch_size=4, input_tokens=64, options=options)


def test_preflight_refuses_a_bad_kv_type_with_the_allowed_list() -> None:
    found = [p for p, _ in check_sweep(Sweep(SessionSettings(), [(_run(type_k="q5_1"), 0)]))]
    assert any("type_k = 'q5_1' is not one of f16, q8_0, q4_0" in p.text for p in found)
    with pytest.raises(ConfigError) as err:
        preflight(Sweep(SessionSettings(), [(_run(type_v="int8", n_ubatch=0), 0)], source="wattlab run"))
    assert "type_v = 'int8' is not one of f16, q8_0, q4_0" in err.value.message
    assert "n_ubatch = 0 is below its minimum 1" in err.value.message


def test_batching_options_are_sweep_fields() -> None:
    from wattlab.sessions.spec import parse_sweep

    sweep = parse_sweep(
        "[defaults]\nengine = 'llamacpp'\ndevice = 'cpu'\n[grid]\nbatch_size = [1, 4]\n"
        "options = [{ type_k = 'f16' },\n"
        "  { type_k = 'q8_0', type_v = 'q8_0', n_ubatch = 64, flash_attn = true }]\n"
    )
    assert len(sweep.runs) == 4
    assert {s.options.get("type_k") for s, _ in sweep.runs} == {"f16", "q8_0"}
    assert not [p for p, _ in check_sweep(sweep) if "option" in p.text]
