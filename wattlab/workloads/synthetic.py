"""Synthetic prompts of an exact token length, for binned workloads (input bins x output bins).

A prompt is the chat template around a slice of a built-in English text (corpus.txt), cut in token
ids so the templated prompt is exactly `input_tokens` long. Each request starts at a different,
seeded offset in the text, so no two prompts share a prefix (prefix caching would otherwise make
later requests cheaper than a real workload's).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import cache
from pathlib import Path

from wattlab.errors import ConfigError

Tokenize = Callable[[str], list[int]]


@cache
def corpus_text() -> str:
    return (Path(__file__).with_name("corpus.txt")).read_text(encoding="utf-8")


def template_parts(template: str | None, tokenize: Tokenize) -> tuple[list[int], list[int]]:
    """Token ids before and after the user's content in the chat template (empty if no template)."""
    if not template:
        return [], []
    from wattlab.engines.chat import render

    marker = "\x00CONTENT\x00"
    text = render([{"role": "user", "content": marker}], template)
    before, after = text.split(marker)
    return tokenize(before), tokenize(after)


def synthetic_prompts(
    n: int, input_tokens: int, tokenize: Tokenize, template: str | None, seed: int = 0
) -> list[list[int]]:
    """n prompts of exactly `input_tokens` token ids each."""
    before, after = template_parts(template, tokenize)
    content_len = input_tokens - len(before) - len(after)
    if content_len < 1:
        raise ConfigError(
            f"input_tokens={input_tokens} is shorter than the chat template alone "
            f"({len(before) + len(after)} tokens)",
            fix=f"use input_tokens >= {len(before) + len(after) + 1}, or chat = false for raw prompts",
        )
    body = tokenize(" " + corpus_text().replace("\n", " "))
    rng = random.Random(seed)
    prompts = []
    for _ in range(n):
        start = rng.randrange(len(body))
        ids = [body[(start + i) % len(body)] for i in range(content_len)]
        prompts.append(before + ids + after)
    return prompts
