"""Coherence and factuality of generated text: lexical, reproducible, no model.

Both measures are deliberately simple so a reader can recompute them by hand; both are English-centric
(the stopword list) and neither understands meaning. They catch the failures small and heavily
quantized models actually show — loops, topic jumps, invented numbers and names — not subtle errors.

Tokens: runs of letters (with an inner apostrophe: "don't"; a possessive "'s" is dropped) or
numbers ("1,200" and "3.5" stay one token; thousands commas are dropped, so "1,200" == "1200"),
lower-cased. Content tokens: tokens not in `STOPWORDS`, reduced with the Porter stemmer (NLTK's
implementation: pure code, no data download; the stemmer rouge-score uses). Sentences: split after
. ! or ? followed by whitespace, and at line breaks.

factuality(output, source) — the share of the output's checkable units that the source supports:
    U = the distinct content stems of the output            supported if they occur in the source
    B = the distinct pairs of consecutive content stems       supported if one source sentence
        within one output sentence (stopwords skipped)        contains both stems (any order)
    C = the distinct "critical" tokens of the output: numbers  supported if the same token occurs in
        and named-like words (capitalised, not sentence-     the source (lower-cased, unstemmed)
        initial, e.g. "Tuesday", "Lyon", "EU")
    factuality = (|U_supported| + |B_supported| + |C_supported|) / (|U| + |B| + |C|)
    Numbers and names are thus counted twice (in U and in C): inventing them is the most harmful error.
    An output with no units (empty, or only stopwords) scores 0: it asserts nothing checkable.
    The pairs catch true words recombined into a false claim: "the market became a car park" when
    the source has the market and the car park in different sentences.
    Limits: a faithful paraphrase with new words scores low; copying the source scores 1.0; negation
    ("did not rise" vs "rose") is invisible; world knowledge is never consulted.

coherence(output) = (distinct_2 + cohesion) / 2
    distinct_2 = distinct word bigrams / all word bigrams of the output (all tokens, stopwords
                 included): 1.0 for text that never repeats itself, low for loops. 1.0 if the output
                 has fewer than two tokens.
    cohesion   = share of consecutive sentence pairs that are linked: they share a content stem, or
                 the second contains a referring word (it, they, this, ... see `REFERRING_WORDS`),
                 and they are not near-copies (Jaccard similarity of content stems >= 0.8 counts as
                 a repeat, not a link). 1.0 if the output has a single sentence.
    An empty output scores 0.
    Limits: cohesion is lenient (any shared word links two sentences), so it catches topic jumps
    and repeated sentences, not weak argument; a one-sentence output is judged on repetition only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise
from typing import Any

_STOPWORD_TEXT = """
    a about above after again against all also am an and any are aren't as at be because been before
    being below between both but by can can't cannot could couldn't did didn't do does doesn't doing
    don't down during each either few for from further had hadn't has hasn't have haven't having he
    he'd he'll he's her here here's hers herself him himself his how how's i i'd i'll i'm i've if in
    into is isn't it it's its itself just let's may me might more most must mustn't my myself neither
    no nor not now of off on once only or other ought our ours ourselves out over own same shall shan't
    she she'd she'll she's should shouldn't so some such than that that's the their theirs them
    themselves then there there's these they they'd they'll they're they've this those through to too
    under until up upon us very was wasn't we we'd we'll we're we've were weren't what what's when
    when's where where's which while who who's whom whose why why's will with won't would wouldn't yet
    you you'd you'll you're you've your yours yourself yourselves
"""
STOPWORDS: frozenset[str] = frozenset(_STOPWORD_TEXT.split())

_REFERRING_TEXT = (
    "it its they them their theirs he him his she her hers this these that those there such "
    "also however then therefore thus meanwhile instead"
)
REFERRING_WORDS: frozenset[str] = frozenset(_REFERRING_TEXT.split())

NEAR_COPY_JACCARD = 0.8

_TOKEN = re.compile(r"\d+(?:[.,]\d+)*|[^\W\d_]+(?:['’][^\W\d_]+)*", re.UNICODE)
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass(frozen=True)
class Factuality:
    """The factuality score and the counts behind it (see the module docstring)."""

    score: float
    units: int
    supported: int
    unsupported: tuple[str, ...]  # the output's units the source does not support, for audit


@dataclass(frozen=True)
class Coherence:
    """The coherence score and its two parts (see the module docstring)."""

    score: float
    distinct_2: float
    cohesion: float
    sentences: int


@lru_cache(maxsize=1)
def _porter() -> Any:
    from nltk.stem.porter import PorterStemmer  # no data files needed; imported only when scoring

    return PorterStemmer()


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """Porter stem of a lower-case word; numbers are returned unchanged."""
    if word[0].isdigit():
        return word
    return str(_porter().stem(word))


def tokens(text: str) -> list[str]:
    """Lower-cased word and number tokens (thousands commas dropped from numbers)."""
    return [_normalize_token(t) for t in _TOKEN.findall(text)]


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_BREAK.split(text) if s.strip()]


def content_stems(text: str) -> list[str]:
    """Stems of the non-stopword tokens of `text`, in order."""
    return [stem(t) for t in tokens(text) if t not in STOPWORDS]


def critical_tokens(text: str) -> set[str]:
    """Numbers and named-like words (capitalised and not the first word of a sentence), lower-cased."""
    found: set[str] = set()
    for sentence in sentences(text):
        for position, raw in enumerate(_TOKEN.findall(sentence)):
            if raw[0].isdigit():
                found.add(_normalize_token(raw))
            elif position > 0 and raw[0].isupper() and raw.lower() not in STOPWORDS:
                found.add(raw.lower())
    return found


def factuality(output: str, source: str) -> Factuality:
    """Share of the output's content stems, stem pairs, numbers and names supported by `source`."""
    source_sentences = [set(content_stems(sentence)) for sentence in sentences(source)]
    source_stems = set().union(*source_sentences)
    source_tokens = set(tokens(source))

    unigrams = set(content_stems(output))
    pairs = _stem_pairs(output)
    critical = critical_tokens(output)

    unsupported = sorted(unigrams - source_stems)
    unsupported += sorted(
        f"{a} {b}" for a, b in pairs if not any(a in stems and b in stems for stems in source_sentences)
    )
    unsupported += sorted(f"{t} (number/name)" for t in critical - source_tokens)
    units = len(unigrams) + len(pairs) + len(critical)
    supported = units - len(unsupported)
    score = supported / units if units else 0.0
    return Factuality(score=score, units=units, supported=supported, unsupported=tuple(unsupported))


def coherence(output: str) -> Coherence:
    """Repetition (distinct-2) and sentence-to-sentence linkage, averaged (module docstring)."""
    words = tokens(output)
    parts = sentences(output)
    if not words:
        return Coherence(score=0.0, distinct_2=0.0, cohesion=0.0, sentences=len(parts))
    bigrams = list(pairwise(words))
    distinct_2 = len(set(bigrams)) / len(bigrams) if bigrams else 1.0
    cohesion = _cohesion(parts)
    return Coherence(
        score=(distinct_2 + cohesion) / 2, distinct_2=distinct_2, cohesion=cohesion, sentences=len(parts)
    )


def _cohesion(parts: list[str]) -> float:
    if len(parts) < 2:
        return 1.0
    stem_sets = [set(content_stems(p)) for p in parts]
    token_sets = [set(tokens(p)) for p in parts]
    linked = 0
    for i in range(len(parts) - 1):
        first, second = stem_sets[i], stem_sets[i + 1]
        union = first | second
        near_copy = bool(union) and len(first & second) / len(union) >= NEAR_COPY_JACCARD
        refers_back = bool(token_sets[i + 1] & REFERRING_WORDS)
        if not near_copy and (first & second or refers_back):
            linked += 1
    return linked / (len(parts) - 1)


def _stem_pairs(text: str) -> set[tuple[str, str]]:
    """Consecutive content-stem pairs within each sentence (stopwords skipped, never across sentences)."""
    pairs: set[tuple[str, str]] = set()
    for sentence in sentences(text):
        stems = content_stems(sentence)
        pairs.update(pairwise(stems))
    return pairs


def _normalize_token(raw: str) -> str:
    lowered = raw.lower().replace("’", "'")
    if lowered[0].isdigit():
        # "1,200" -> "1200"; a decimal point stays ("3.5"). English convention (a French "3,5" is
        # read as 35): documented as a limit of the measure.
        return lowered.replace(",", "")
    # Possessive "'s" is grammar, not content: "region's" and "region" are the same word.
    return lowered[:-2] if lowered.endswith("'s") and len(lowered) > 2 else lowered
