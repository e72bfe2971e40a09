"""Prompt-lookup (n-gram) drafting: propose the tokens that followed the last time the sequence's
newest n tokens occurred in its own prompt or output.

Used by the llama.cpp adapter, whose low-level API has no drafting of its own. The same n-gram
sizes go to transformers (max_matching_ngram_size) and vLLM (prompt_lookup_min/max), so the three
engines draft alike: the longest n from NGRAM_MAX down to NGRAM_MIN whose earlier occurrence has a
continuation wins, and of several occurrences the latest (the most recent context).

Pure Python, no engine import: an index from each n-gram to where its latest continuation starts
is kept up to date as tokens are appended, so a draft costs a few dict lookups, not a scan.
"""

from __future__ import annotations

from collections.abc import Iterable

NGRAM_MIN = 1
NGRAM_MAX = 3


class PromptLookup:
    """One sequence's tokens (prompt, then output) and its n-gram index."""

    __slots__ = ("_index", "tokens")

    def __init__(self, tokens: Iterable[int] = ()) -> None:
        self.tokens: list[int] = []
        # _index[n - NGRAM_MIN]: n-gram -> position of the token that followed its latest occurrence
        self._index: list[dict[tuple[int, ...], int]] = [{} for _ in range(NGRAM_MIN, NGRAM_MAX + 1)]
        self.extend(tokens)

    def extend(self, tokens: Iterable[int]) -> None:
        for token in tokens:
            p = len(self.tokens)
            self.tokens.append(token)
            # every n-gram ending just before p now has a continuation starting at p
            for n in range(NGRAM_MIN, NGRAM_MAX + 1):
                if p >= n:
                    self._index[n - NGRAM_MIN][tuple(self.tokens[p - n : p])] = p

    def draft(self, k: int) -> list[int]:
        """Up to k tokens that followed the longest earlier match of the sequence's last tokens
        ([] when the last token never occurred before, or k < 1)."""
        if k < 1:
            return []
        size = len(self.tokens)
        for n in range(min(NGRAM_MAX, size), NGRAM_MIN - 1, -1):
            start = self._index[n - NGRAM_MIN].get(tuple(self.tokens[size - n :]))
            if start is not None:
                return self.tokens[start : start + k]
        return []


__all__ = ["NGRAM_MAX", "NGRAM_MIN", "PromptLookup"]
