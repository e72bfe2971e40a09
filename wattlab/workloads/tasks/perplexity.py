"""Language modelling: perplexity of a model on plain text, from prompt log-probabilities.

Items carry `text` (a chunk of at most `chunk_chars` characters, cut at paragraph, then sentence,
then word boundaries) and no chat messages: the text is scored raw, without a template.

Which tokens count: exactly the tokens the engine returned a log-probability for. The engine
contract (engines/base.py, `prompt_logprobs(ids)`) gives log p(ids[i] | ids[:i]) for i >= 1, so the
first token of each chunk — which has no context — is never scored; if the runner prepends the
model's BOS token, every token of the text is scored. The runner must do the same on every engine
for perplexities to be comparable across engines.

perplexity = exp( Σ_items Σ_tokens −log p  /  Σ_items scored tokens )
i.e. token-weighted over the whole task (a long chunk counts more than a short one), natural logs.
Per-item rows give each chunk's own perplexity and token count. Lower is better.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, ClassVar

from wattlab.errors import ConfigError
from wattlab.workloads.tasks.base import Task, TaskItem, TaskKind, TaskScore, check_pairs
from wattlab.workloads.tasks.metrics import negative_log_likelihood, perplexity_from_nll

DEFAULT_CHUNK_CHARS = 2000


class PerplexityTask(Task):
    """Score text with the model's own token probabilities (engines with SUPPORTS_LOGPROBS)."""

    kind: ClassVar[TaskKind] = "perplexity"
    metrics: ClassVar[tuple[str, ...]] = ("perplexity",)
    needs_logprobs: ClassVar[bool] = True
    default_max_new_tokens: ClassVar[int] = 0

    def score(self, items: Sequence[TaskItem], outputs: Sequence[str]) -> TaskScore:
        raise ConfigError(
            f"task {self.name!r} measures perplexity: score it with score_logprobs() from the engine's "
            "prompt log-probabilities, not from generated text"
        )

    def score_logprobs(
        self,
        items: Sequence[TaskItem],
        logprobs: Sequence[Sequence[float]],
        token_counts: Sequence[int] | None = None,
    ) -> TaskScore:
        """`logprobs[i]`: natural-log probabilities of item i's scored tokens (module docstring).

        `token_counts[i]`, when given, is the length of item i's tokenized prompt: recorded for audit
        and used as a check, since an engine can never return more log-probabilities than that.
        """
        check_pairs(items, logprobs, "log-probability lists")
        counts: Sequence[int | None] = [None] * len(items) if token_counts is None else token_counts
        if len(counts) != len(items):
            raise ValueError(f"got {len(counts)} token counts for {len(items)} items")
        per_item: list[dict[str, Any]] = []
        total_nll = 0.0
        total_tokens = 0
        for item, values, prompt_tokens in zip(items, logprobs, counts, strict=True):
            if prompt_tokens is not None and len(values) > prompt_tokens:
                raise ValueError(
                    f"item {item.id}: {len(values)} log-probabilities for a prompt of {prompt_tokens} tokens"
                )
            try:
                nll, count = negative_log_likelihood(values)
            except ValueError as exc:
                raise ValueError(f"item {item.id}: {exc}") from exc
            row: dict[str, Any] = {"id": item.id, "tokens": count, "prompt_tokens": prompt_tokens, "nll": nll}
            row["perplexity"] = perplexity_from_nll(nll, count) if count else None
            per_item.append(row)
            total_nll += nll
            total_tokens += count
        if total_tokens == 0:
            raise ValueError("no scored tokens: every log-probability list is empty")
        return TaskScore(
            metrics={"perplexity": perplexity_from_nll(total_nll, total_tokens)},
            per_item=per_item,
            n=len(items),
            info={"scored_tokens": total_tokens, "nll_sum": total_nll},
        )


def chunk_text(text: str, max_chars: int = DEFAULT_CHUNK_CHARS) -> list[str]:
    """Split text into chunks of at most `max_chars`, never cutting inside a word.

    Paragraphs (separated by blank lines) are packed together while they fit; a paragraph too long
    for one chunk is split at sentence ends, and a sentence too long at spaces. Chunks are joined
    back with the separator they were split at, so the scored text reads as written.
    """
    if max_chars < 100:
        raise ConfigError(f"chunk size must be at least 100 characters, got {max_chars}")
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    pieces: list[tuple[str, str]] = []  # (text, separator to join it to the previous piece)
    for paragraph in paragraphs:
        for index, part in enumerate(_split_long(paragraph, max_chars)):
            pieces.append((part, "\n\n" if index == 0 else " "))
    chunks: list[str] = []
    current = ""
    for piece, separator in pieces:
        if current and len(current) + len(separator) + len(piece) <= max_chars:
            current += separator + piece
        else:
            if current:
                chunks.append(current)
            current = piece
    if current:
        chunks.append(current)
    return chunks


def _split_long(paragraph: str, max_chars: int) -> list[str]:
    """A paragraph as parts of at most max_chars: whole sentences, else whole words."""
    if len(paragraph) <= max_chars:
        return [paragraph]
    parts: list[str] = []
    for sentence in re.split(r"(?<=[.!?])\s+", paragraph):
        if len(sentence) <= max_chars:
            parts.append(sentence)
            continue
        line = ""
        for word in sentence.split():
            if line and len(line) + 1 + len(word) > max_chars:
                parts.append(line)
                line = word
            else:
                line = f"{line} {word}" if line else word
        if line:
            parts.append(line)
    return parts


def build_perplexity_items(text: str, max_chars: int = DEFAULT_CHUNK_CHARS) -> list[TaskItem]:
    return [
        TaskItem(id=str(i), messages=(), reference=None, text=chunk)
        for i, chunk in enumerate(chunk_text(text, max_chars))
    ]
