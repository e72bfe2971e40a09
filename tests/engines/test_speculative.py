"""Speculative decoding: the drafter, the preflight's refusals, the stored figures, and on the
bundled model (slow) that prompt lookup keeps greedy output exact while taking fewer target steps."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from engine_support import MAX_BATCH, MAX_TOKENS, EngineCache, needs_bundled_model, prompt_ids

from wattlab.engines import get_engine_class, registry, status_of
from wattlab.engines.base import Decoding, Engine, Request
from wattlab.engines.models import DEFAULT_MODEL, resolve
from wattlab.engines.prompt_lookup import PromptLookup
from wattlab.errors import ConfigError
from wattlab.sessions.plan import check_sweep, preflight
from wattlab.sessions.spec import RunSpec, SessionSettings, Sweep
from wattlab.sessions.speculation import speculation_figures, speculation_lines, speculation_problems

# A prompt whose answer copies from it, so prompt lookup's drafts are accepted.
COPY_PROMPT = (
    "Copy this list exactly, twice: apple, banana, cherry, date, elderberry, fig, grape, honeydew, "
    "kiwi, lemon, mango."
)
OTHER_PROMPTS = ["Count from 1 to 10.", "List the days of the week.", "Say hi."]


# --- the drafter ----------------------------------------------------------------------------------
def test_prompt_lookup_drafts_what_followed_the_longest_latest_match() -> None:
    lookup = PromptLookup([5, 6, 7, 8, 1, 6, 7, 9, 2])
    lookup.extend([6, 7])  # ends with 6 7: seen twice, followed by 8 and (later) 9
    assert lookup.draft(3) == [9, 2, 6]  # the latest occurrence wins
    lookup.extend([8])  # ends with 6 7 8 (3-gram) -> what followed it at the start
    assert lookup.draft(2) == [1, 6]
    assert PromptLookup([1, 2, 3]).draft(4) == []  # the last token never occurred before
    assert lookup.draft(0) == []


def test_prompt_lookup_prefers_a_longer_ngram_over_a_later_shorter_one() -> None:
    lookup = PromptLookup([1, 2, 3, 40, 9, 3, 50, 1, 2, 3])
    # 3-gram (1 2 3) matched at the start -> 40; the 1-gram (3) alone would give 50 (later)
    assert lookup.draft(1) == [40]


# --- the preflight ---------------------------------------------------------------------------------
def _problems(**fields: object) -> list[str]:
    spec = RunSpec(**{"engine": "llamacpp", "speculative": "ngram:4", **fields})  # type: ignore[arg-type]
    return [p.text + " | fix: " + (p.fix or "") for p in speculation_problems(spec, registry()[spec.engine])]


def test_engines_without_speculation_are_refused_with_the_engines_that_have_it() -> None:
    for engine, model in (("openai", DEFAULT_MODEL), ("fake", "fake:any")):
        (problem,) = _problems(engine=engine, model=model)
        assert f"the {engine} engine has no speculative decoding" in problem
        assert "run ngram speculation on llamacpp, transformers, vllm" in problem


def test_llamacpp_refuses_a_draft_model_and_sampling() -> None:
    (draft,) = _problems(speculative="draft:smollm2-135m-instruct:4")
    assert "the llamacpp engine has no draft speculation (it has ngram)" in draft
    assert "transformers, vllm" in draft and "ngram:4 on llamacpp" in draft
    (sample,) = _problems(decoding="sample")
    assert "llamacpp runs ngram speculation with greedy decoding, not sample" in sample
    assert "set decoding = 'greedy'" in sample
    assert _problems(batch_size=64) == []  # batched prompt lookup is allowed on llama.cpp


def test_transformers_speculates_at_batch_one_only_and_never_with_beams_or_a_static_cache() -> None:
    (batch,) = _problems(engine="transformers", device="cpu", batch_size=8)
    assert "transformers runs ngram speculation only at batch_size <= 1" in batch
    assert "assisted generation (5.19) runs one sequence at a time" in batch
    assert "set batch_size = 1, or run batched speculation on llamacpp, vllm" in batch
    (online,) = _problems(engine="transformers", device="cpu", mode="online", max_concurrency=4)
    assert "max_concurrency <= 1" in online and "set max_concurrency = 1" in online
    (beam,) = _problems(engine="transformers", device="cpu", decoding="beam", num_beams=2)
    assert "with greedy or sample decoding, not beam" in beam
    (static,) = _problems(engine="transformers", device="cpu", options={"cache_implementation": "static"})
    assert "static KV cache" in static and "cache_implementation = 'dynamic'" in static
    assert _problems(engine="transformers", device="cpu", decoding="sample") == []


def test_a_draft_model_must_exist_and_share_the_target_vocabulary() -> None:
    (other,) = _problems(engine="vllm", device="cpu", speculative="draft:random:qwen2.5-0.5b:4")
    assert "has a vocabulary of 151936 tokens" in other and "one of 49152" in other
    assert "a draft must share the target's vocabulary" in other
    (missing,) = _problems(engine="transformers", device="cpu", speculative="draft:/no/such/draft:4")
    assert missing.startswith("draft model: no such file or directory")
    # a catalog pair of one vocabulary: SmolLM2-135M drafting for a SmolLM2-360M-shaped model
    pair = {"model": "random:smollm2-360m", "speculative": f"draft:{DEFAULT_MODEL}:4", "device": "cpu"}
    assert _problems(engine="transformers", **pair) == []
    assert _problems(engine="vllm", batch_size=8, **pair) == []


def test_the_preflight_refuses_the_sweep_before_anything_runs() -> None:
    run = RunSpec(engine="transformers", device="cpu", batch_size=4, speculative="ngram:4")
    found = [p for p, _ in check_sweep(Sweep(SessionSettings(), [(run, 0)]))]
    assert any("only at batch_size <= 1" in p.text and p.key == "batch_size" for p in found)
    with pytest.raises(ConfigError) as err:
        preflight(Sweep(SessionSettings(), [(run, 0)], source="wattlab run"))
    assert "transformers runs ngram speculation only at batch_size <= 1" in err.value.message


# --- the stored figures ------------------------------------------------------------------------------
def test_figures_from_the_engine_counts() -> None:
    stats = {"draft_tokens": 224, "accepted_tokens": 164, "target_steps": 92, "emitted_tokens": 256}
    figures = speculation_figures(stats)
    assert figures["spec_draft_tokens"] == 224 and figures["spec_accepted_tokens"] == 164
    assert figures["spec_acceptance_rate"] == pytest.approx(164 / 224)
    assert figures["spec_tokens_per_step"] == pytest.approx(256 / 92)
    assert speculation_figures(None) == {}  # no speculation: the columns stay NULL
    nothing = speculation_figures({**stats, "draft_tokens": 0, "accepted_tokens": 0})
    assert nothing["spec_acceptance_rate"] is None  # no draft, no rate (never 0/0 = 0)
    (line,) = speculation_lines({"speculative": "ngram:4", "engine": "llamacpp", **figures})
    assert "164 of 224 drafted tokens accepted (73.2%), 2.78 tokens per target step" in line
    assert "prompt lookup in the decode loop" in line
    assert speculation_lines({"speculative": None}) == []


# --- real engines on the bundled model (slow) -----------------------------------------------------
class _SpecEngines:
    """Engines loaded with speculation, once per session (plain transformers comes from engine_cache).

    llama.cpp loads in a second, so both of its engines are made here with one thread: on a shared
    2-core box two llama.cpp threads that wait for each other at every op stall for whole time
    slices (a 48-token batch took over 15 minutes)."""

    def __init__(self) -> None:
        self.engines: dict[tuple[str, str | None], Engine] = {}

    def get(self, name: str, speculative: str | None) -> Engine:
        if (name, speculative) not in self.engines:
            needs_bundled_model()
            status = status_of(name)
            if not status.installed:
                pytest.skip(f"{name} is not installed ({status.reason})")
            options = {"n_threads": 1} if name == "llamacpp" else {}
            config = resolve(
                DEFAULT_MODEL, name, device="cpu", max_batch=MAX_BATCH, max_tokens=MAX_TOKENS, options=options
            )
            engine = get_engine_class(name)(dataclasses.replace(config, speculative=speculative))
            engine.load()
            self.engines[(name, speculative)] = engine
        return self.engines[(name, speculative)]


@pytest.fixture(scope="session")
def spec_engines() -> Iterator[_SpecEngines]:
    cache = _SpecEngines()
    yield cache
    for engine in cache.engines.values():
        engine.close()


def _copy_requests(engine: Engine, n: int, exact: bool) -> list[Request]:
    prompts = [COPY_PROMPT, *OTHER_PROMPTS]
    return [
        Request(i, prompt_ids(engine, p), n, n if exact else 0) for i, p in enumerate(prompts[:MAX_BATCH])
    ]


@pytest.mark.slow
def test_llamacpp_prompt_lookup_keeps_greedy_output_and_takes_fewer_steps(spec_engines: _SpecEngines) -> None:
    plain, fast = spec_engines.get("llamacpp", None), spec_engines.get("llamacpp", "ngram:4")
    for batch, exact in ((1, False), (MAX_BATCH, False), (MAX_BATCH, True)):
        requests = _copy_requests(plain, 48, exact)
        want = plain.generate(requests, Decoding(), batch)
        got = fast.generate(requests, Decoding(), batch)
        assert [c.output_ids for c in got] == [c.output_ids for c in want], (batch, exact)
        assert [c.finish_reason for c in got] == [c.finish_reason for c in want]
        stats = fast.speculation_stats()
        assert stats is not None and stats["accepted_tokens"] > 0
        figures = speculation_figures(stats)
        assert 0 < figures["spec_acceptance_rate"] <= 1
        assert figures["spec_tokens_per_step"] > 1
        # every output token was emitted by a step (plus the EOS that ended a request)
        ended = sum(c.finish_reason == "stop" for c in got)
        assert stats["emitted_tokens"] == sum(c.output_tokens for c in got) + ended
        assert all(len(c.token_ns) == c.output_tokens for c in got)
    assert plain.speculation_stats() is None


@pytest.mark.slow
def test_transformers_prompt_lookup_keeps_greedy_output_and_takes_fewer_steps(
    engine_cache: EngineCache, spec_engines: _SpecEngines
) -> None:
    plain, fast = engine_cache.get("transformers"), spec_engines.get("transformers", "ngram:4")
    requests = _copy_requests(plain, 40, exact=False)[:1]  # the copy prompt: drafts get accepted
    want = plain.generate(requests, Decoding(), 1)
    got = fast.generate(requests, Decoding(), 1)
    assert [c.output_ids for c in got] == [c.output_ids for c in want]
    stats = fast.speculation_stats()
    assert stats is not None and 0 < stats["accepted_tokens"] <= stats["draft_tokens"]
    assert speculation_figures(stats)["spec_tokens_per_step"] > 1
    # several tokens of one step share its time; times never go backwards
    for c in got:
        assert len(c.token_ns) == c.output_tokens and c.token_ns == sorted(c.token_ns)
    with pytest.raises(ConfigError, match="one sequence at a time"):
        fast.generate(requests, Decoding(), 2)


@pytest.mark.slow
def test_transformers_draft_model_speculation_accepts_its_own_greedy_drafts(
    engine_cache: EngineCache, spec_engines: _SpecEngines
) -> None:
    """The bundled model drafting for itself: under greedy decoding the draft proposes exactly what
    the target would emit, so (nearly) every drafted token is accepted and the output is unchanged.
    A real draft model, loaded by the engine, counted by the engine's own pass hook."""
    plain = engine_cache.get("transformers")
    fast = spec_engines.get("transformers", f"draft:{DEFAULT_MODEL}:4")
    requests = _copy_requests(plain, 32, exact=False)[1:2]  # not the copy prompt: no help from lookup
    want = plain.generate(requests, Decoding(), 1)
    got = fast.generate(requests, Decoding(), 1)
    assert [c.output_ids for c in got] == [c.output_ids for c in want]
    stats = fast.speculation_stats()
    assert stats is not None and stats["draft_tokens"] > 0
    figures = speculation_figures(stats)
    # fp32 on the CPU: a K-token verify pass may flip a near-tie that a 1-token pass did not
    assert figures["spec_acceptance_rate"] >= 0.8, stats
    assert figures["spec_tokens_per_step"] > 2, stats
    assert all(len(c.token_ns) == c.output_tokens for c in got)
