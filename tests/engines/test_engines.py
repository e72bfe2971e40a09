"""Every installed engine on the bundled SmolLM2-135M-Instruct: real engines, no mocks.

llama.cpp runs the Q4_1 GGUF with its own kernels; transformers and vLLM run the same weights
de-quantized to fp32; the openai engine drives vLLM's API server. Top-2 logits of a chat prompt
can be within 0.1 of each other, so greedy texts may part after a few tokens between llama.cpp and
the fp32 engines: cross-engine checks use prompts with a clear answer and ask for agreement on
the first tokens of most prompts, not all.
"""

from __future__ import annotations

import math

import pytest
from engine_support import ENGINES, MAX_BATCH, EngineCache, prompt_ids

from wattlab.engines.base import Completion, Decoding, Engine, Request
from wattlab.engines.chat import render_user
from wattlab.errors import ConfigError, EngineError

pytestmark = pytest.mark.slow

CLEAR_PROMPTS = [
    "Count from 1 to 10.",
    "Say hi.",
    "List the days of the week.",
    "Write a long poem about the sea and the wind.",
    "What is 2 + 2?",
]
PERPLEXITY_TEXT = (
    "The sun rose over the quiet village. Farmers walked to their fields, and children ran to school "
    "along the river. By noon the market was full of people buying bread, fruit and fresh fish."
)


def greedy(engine: Engine, prompts: list[str], max_new: int, batch_size: int) -> list[Completion]:
    requests = [Request(i, prompt_ids(engine, p), max_new) for i, p in enumerate(prompts)]
    return engine.generate(requests, Decoding(), batch_size)


def loaded(cache: EngineCache) -> dict[str, Engine]:
    """Every engine that is installed here, loaded (at least two, or the comparison is skipped)."""
    engines = {}
    for name in ENGINES:
        try:
            engines[name] = cache.get(name)
        except pytest.skip.Exception:
            continue
    if len(engines) < 2:
        pytest.skip("fewer than two engines are installed")
    return engines


def test_same_text_is_same_ids_on_every_engine(engine_cache: EngineCache) -> None:
    engines = loaded(engine_cache)
    text = render_user("What is the capital of France? Answer in one word, please.", "smollm2")
    ids = {name: engine.tokenize(text) for name, engine in engines.items()}
    reference = ids["llamacpp"] if "llamacpp" in ids else next(iter(ids.values()))
    assert reference[0] == 1 and reference.count(2) == 2  # <|im_start|> first; two <|im_end|>
    for name, got in ids.items():
        assert got == reference, f"{name} tokenizes the templated prompt differently"


def test_greedy_outputs_agree_across_engines_on_first_tokens(engine_cache: EngineCache) -> None:
    engines = loaded(engine_cache)
    outputs = {name: greedy(e, CLEAR_PROMPTS, 6, MAX_BATCH) for name, e in engines.items()}
    reference = outputs.pop("transformers", None) or outputs.pop(next(iter(outputs)))
    for name, completions in outputs.items():
        agreeing = sum(
            c.output_ids[:3] == r.output_ids[:3] for c, r in zip(completions, reference, strict=True)
        )
        assert agreeing >= 4, (
            f"{name} agrees with the reference on the first 3 tokens for {agreeing}/5 prompts"
        )


def test_batch_of_four_equals_batch_of_one(engine: Engine) -> None:
    prompts = [CLEAR_PROMPTS[0], "Say hi.", CLEAR_PROMPTS[3], "What is the capital of France?"]
    assert len({len(prompt_ids(engine, p)) for p in prompts}) == 4  # different prompt lengths
    batched = greedy(engine, prompts, 8, 4)
    single = [greedy(engine, [p], 8, 1)[0] for p in prompts]
    for b, s in zip(batched, single, strict=True):
        assert b.output_ids == s.output_ids, f"batch and single runs differ: {b.text!r} vs {s.text!r}"


def test_counts_text_and_times_are_consistent(engine: Engine) -> None:
    prompts = ["Say hi.", "List the days of the week."]
    done = greedy(engine, prompts, 10, 2)
    for prompt, c in zip(prompts, done, strict=True):
        assert c.error is None
        assert c.input_tokens == len(engine.tokenize(render_user(prompt, "smollm2")))
        assert 1 <= c.output_tokens <= 10
        assert len(c.token_ns) == c.output_tokens
        assert c.finish_reason in ("stop", "length")
        assert c.text == engine.detokenize(c.output_ids) and c.text.strip()
        assert not set(c.output_ids) & set(engine.eos_token_ids)  # the ending EOS is not an output token
        assert c.first_token_ns is not None and c.end_ns is not None
        times = [c.arrival_ns, c.start_ns, c.first_token_ns, *c.token_ns, c.end_ns]
        assert times == sorted(times), "arrival <= start <= first token <= each token <= end"


def test_min_equal_max_forces_exact_length(engine: Engine) -> None:
    ids = prompt_ids(engine, "What is 2 + 2?")  # answered, then EOS, in ~11 tokens
    free = engine.generate([Request(0, ids, 24)], Decoding(), 1)[0]
    assert free.finish_reason == "stop" and free.output_tokens < 16
    forced = engine.generate([Request(0, ids, 16, min_new_tokens=16)], Decoding(), 1)[0]
    assert forced.output_tokens == 16 and forced.finish_reason == "length"


def test_sampling_with_a_seed_is_repeatable(engine: Engine) -> None:
    requests = [Request(i, prompt_ids(engine, p), 10) for i, p in enumerate(["Say hi.", "Tell me a joke."])]
    decoding = Decoding("sample", temperature=0.9, top_p=0.95, top_k=50, seed=7)
    first = engine.generate(requests, decoding, 2)
    second = engine.generate(requests, decoding, 2)
    assert [c.output_ids for c in first] == [c.output_ids for c in second]
    assert all(c.output_tokens > 0 for c in first)


def test_online_mode_honours_arrivals(engine: Engine) -> None:
    if not engine.SUPPORTS_ONLINE:
        pytest.skip(f"{engine.name} has no online mode")
    requests = [
        Request(i, prompt_ids(engine, p), 6, arrival_s=0.15 * i) for i, p in enumerate(CLEAR_PROMPTS[:3])
    ]
    done = engine.generate_online(requests, Decoding(), 2)
    for request, c in zip(requests, done, strict=True):
        assert c.error is None and c.output_tokens > 0
        assert c.start_ns >= c.arrival_ns and c.arrival_ns - done[0].arrival_ns == int(
            request.arrival_s * 1e9
        )


def test_a_bad_request_fails_alone(engine: Engine) -> None:
    good = Request(0, prompt_ids(engine, "Say hi."), 4)
    too_long = Request(1, (1,) * 600, 4)  # longer than the engine's max_tokens (512)
    done = engine.generate([good, too_long], Decoding(), 2)
    assert done[0].error is None and done[0].output_tokens > 0
    assert done[1].error and done[1].finish_reason == "error"


def test_batch_wider_than_loaded_is_a_config_error(engine: Engine) -> None:
    if engine.name == "openai":
        pytest.skip("the openai engine's concurrency is the client's, not bounded by a load")
    with pytest.raises(ConfigError, match="max_batch"):
        engine.generate([Request(0, prompt_ids(engine, "Hi"), 2)], Decoding(), 9)


def test_beam_search_or_a_clear_refusal(engine: Engine) -> None:
    request = Request(0, prompt_ids(engine, "What is the capital of France?"), 8)
    if not engine.SUPPORTS_BEAM:
        with pytest.raises(EngineError, match="beam"):
            engine.generate([request], Decoding("beam", num_beams=3), 1)
        return
    done = engine.generate(
        [request, Request(1, prompt_ids(engine, "Say hi."), 8)], Decoding("beam", num_beams=3), 2
    )
    assert "Paris" in done[0].text
    assert all(c.output_tokens > 0 and c.first_token_ns and c.end_ns >= c.first_token_ns for c in done)


def test_perplexity_agrees_across_engines(engine_cache: EngineCache) -> None:
    engines = {n: e for n, e in loaded(engine_cache).items() if e.SUPPORTS_LOGPROBS}
    if len(engines) < 2:
        pytest.skip("fewer than two engines with prompt log-probabilities")
    perplexities = {}
    for name, engine in engines.items():
        ids = engine.tokenize(PERPLEXITY_TEXT)
        logprobs = engine.prompt_logprobs(ids)
        assert len(logprobs) == len(ids) - 1 and all(lp <= 0 for lp in logprobs)
        perplexities[name] = math.exp(-sum(logprobs) / len(logprobs))
    low, high = min(perplexities.values()), max(perplexities.values())
    assert low > 1 and high / low < 1.05, f"perplexities differ by more than 5%: {perplexities}"
