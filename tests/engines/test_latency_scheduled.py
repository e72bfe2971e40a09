"""Real engines stamp when they first work on a request (Completion.scheduled_ns), so queue time and
the service TTFT can be told apart (sessions/figures.py). The openai engine cannot know it: None."""

from __future__ import annotations

import pytest
from engine_support import EngineCache, prompt_ids

from wattlab.engines.base import Decoding, Request

pytestmark = pytest.mark.slow

PROMPTS = ["Say hi.", "What is 2 + 2?", "Count from 1 to 10.", "List the days of the week."]


@pytest.mark.parametrize("name", ["llamacpp", "transformers", "vllm"])
def test_scheduled_time_lies_between_arrival_and_first_token(name: str, engine_cache: EngineCache) -> None:
    engine = engine_cache.get(name)
    requests = [Request(i, prompt_ids(engine, p), 6, min_new_tokens=6) for i, p in enumerate(PROMPTS)]
    done = engine.generate(requests, Decoding(), 1)  # batch 1: each request queues behind the last
    for c in done:
        assert c.error is None and c.scheduled_ns is not None and c.first_token_ns is not None
        assert c.arrival_ns <= c.scheduled_ns <= c.first_token_ns
    scheduled = [c.scheduled_ns or 0 for c in done]
    assert scheduled == sorted(scheduled)
    # The last request was scheduled only after the first one ended: its wait is queueing.
    assert scheduled[-1] >= (done[0].end_ns or 0) - 1_000_000


def test_llamacpp_online_schedules_on_arrival(engine_cache: EngineCache) -> None:
    engine = engine_cache.get("llamacpp")
    requests = [Request(i, prompt_ids(engine, p), 4, arrival_s=0.2 * i) for i, p in enumerate(PROMPTS[:3])]
    done = engine.generate_online(requests, Decoding(), 2)
    for c in done:
        assert c.error is None and c.scheduled_ns is not None and c.first_token_ns is not None
        assert c.arrival_ns <= c.scheduled_ns <= c.first_token_ns
