"""Quality metrics, as the standard definitions state them.

- accuracy, macro-F1: our own (below), with sklearn's conventions (`zero_division=0`).
- SQuAD exact match and token F1: our own re-implementation of the official evaluation scripts.
  The v2.0 script's rules are used for every question; on answerable questions they give the same
  numbers as the v1.1 script (both normalize the same way and take the max over gold answers).
- ROUGE-1/2/L: `rouge_score` (Google's reimplementation of Lin's ROUGE) with Porter stemming.
- BLEU and chrF: `sacrebleu` corpus-level functions with their defaults (BLEU: 13a tokenizer,
  exp smoothing; chrF: character 6-grams, beta 2).
- perplexity: exp of the mean negative natural-log probability of the scored tokens.

All higher-is-better figures are fractions in [0, 1]; sacrebleu's 0-100 scores are divided by 100.
The metric libraries are imported inside the functions that use them, so importing this module
(which the console does at start-up to list tasks) stays cheap.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Iterable, Sequence

ROUGE_TYPES: tuple[str, ...] = ("rouge1", "rouge2", "rougeL")

# ----------------------------------------------------------------------------- classification


def accuracy(golds: Sequence[str], predictions: Sequence[str | None]) -> float:
    """Share of items whose prediction equals the gold label (None, an unparsed answer, is wrong)."""
    _same_length(golds, predictions)
    return sum(gold == pred for gold, pred in zip(golds, predictions, strict=True)) / len(golds)


def f1_per_class(golds: Sequence[str], predictions: Sequence[str | None]) -> dict[str, float]:
    """F1 of each class, one-vs-rest.

    Classes are the gold labels plus any label that was predicted (sklearn's default label set).
    F1 = 2·TP / (2·TP + FP + FN), which equals 2PR/(P+R) and is 0 when TP = 0 — so a class that is
    never predicted scores 0 (sklearn's zero_division=0). An unparsed prediction (None) is not a
    class: it is a false negative for the gold class and a false positive for none.
    """
    _same_length(golds, predictions)
    classes = sorted({*golds, *(p for p in predictions if p is not None)})
    scores: dict[str, float] = {}
    for label in classes:
        tp = sum(g == label and p == label for g, p in zip(golds, predictions, strict=True))
        fp = sum(g != label and p == label for g, p in zip(golds, predictions, strict=True))
        fn = sum(g == label and p != label for g, p in zip(golds, predictions, strict=True))
        denominator = 2 * tp + fp + fn
        scores[label] = 2 * tp / denominator if denominator else 0.0
    return scores


def macro_f1(golds: Sequence[str], predictions: Sequence[str | None]) -> float:
    """Unweighted mean of the per-class F1 scores (see `f1_per_class` for the class set)."""
    per_class = f1_per_class(golds, predictions)
    return math.fsum(per_class.values()) / len(per_class)


# ----------------------------------------------------------------------------- SQuAD

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's normalization: lower-case, drop ASCII punctuation, drop a/an/the, collapse whitespace.

    The order matters and is the official one: punctuation goes before articles, so "the-end"
    becomes "theend" (not "end"), exactly as in the reference script.
    """
    lowered = text.lower()
    no_punct = "".join(ch for ch in lowered if ch not in _PUNCTUATION)
    no_articles = _ARTICLES.sub(" ", no_punct)
    return " ".join(no_articles.split())


def _answer_tokens(text: str) -> list[str]:
    return normalize_answer(text).split() if text else []


def _gold_answers(gold_answers: Iterable[str]) -> list[str]:
    """v2 rule: gold answers that normalize to nothing are dropped; none left means unanswerable,
    whose only correct answer is the empty string."""
    kept = [g for g in gold_answers if normalize_answer(g)]
    return kept or [""]


def squad_exact_match(prediction: str, gold_answers: Iterable[str]) -> float:
    """1.0 if the normalized prediction equals any normalized gold answer, else 0.0.

    An unanswerable question (no gold answers) is matched only by an empty prediction.
    """
    normalized = normalize_answer(prediction)
    return max(float(normalize_answer(gold) == normalized) for gold in _gold_answers(gold_answers))


def _token_f1(gold: str, prediction: str) -> float:
    gold_tokens = _answer_tokens(gold)
    pred_tokens = _answer_tokens(prediction)
    if not gold_tokens or not pred_tokens:
        # v2: if either side is "no answer", F1 is 1 when both are, else 0.
        return float(gold_tokens == pred_tokens)
    common = Counter(gold_tokens) & Counter(pred_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(pred_tokens)
    recall = overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_f1(prediction: str, gold_answers: Iterable[str]) -> float:
    """Token-overlap F1 (bag of normalized tokens), maximised over the gold answers."""
    return max(_token_f1(gold, prediction) for gold in _gold_answers(gold_answers))


# ----------------------------------------------------------------------------- ROUGE, BLEU, chrF


def rouge_scores(
    predictions: Sequence[str], references: Sequence[str | Sequence[str]]
) -> list[dict[str, float]]:
    """ROUGE-1/2/L F-measure per item, Porter-stemmed (rouge_score's default tokenizer).

    A reference may be several texts: the item gets the best-matching one (rouge_score's
    score_multi). rouge_score keeps only [a-z0-9] tokens, so use it for English text.
    """
    _same_length(references, predictions)
    from rouge_score import rouge_scorer  # heavy (imports nltk): only when scoring

    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    results: list[dict[str, float]] = []
    for prediction, reference in zip(predictions, references, strict=True):
        targets = [reference] if isinstance(reference, str) else list(reference)
        scored = (
            scorer.score_multi(targets, prediction)
            if len(targets) > 1
            else scorer.score(targets[0], prediction)
        )
        results.append({name: float(scored[name].fmeasure) for name in ROUGE_TYPES})
    return results


def rouge(predictions: Sequence[str], references: Sequence[str | Sequence[str]]) -> dict[str, float]:
    """Mean over items of each ROUGE F-measure (rouge_score's aggregate, without bootstrap)."""
    per_item = rouge_scores(predictions, references)
    return {name: math.fsum(s[name] for s in per_item) / len(per_item) for name in ROUGE_TYPES}


def bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (sacrebleu defaults) as a fraction: sacrebleu's score / 100."""
    _same_length(references, predictions)
    import sacrebleu

    return float(sacrebleu.corpus_bleu(list(predictions), [list(references)]).score) / 100.0


def chrf(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus chrF (sacrebleu defaults: char 6-grams, beta 2) as a fraction."""
    _same_length(references, predictions)
    import sacrebleu

    return float(sacrebleu.corpus_chrf(list(predictions), [list(references)]).score) / 100.0


def sentence_scores(prediction: str, reference: str) -> dict[str, float]:
    """Sentence-level BLEU and chrF of one pair, for the per-item audit only.

    Sentence BLEU is noisy (short segments often share no 4-gram); the task's figure is the
    corpus-level score, which is not the mean of these.
    """
    import sacrebleu

    return {
        "bleu": float(sacrebleu.sentence_bleu(prediction, [reference]).score) / 100.0,
        "chrf": float(sacrebleu.sentence_chrf(prediction, [reference]).score) / 100.0,
    }


# ----------------------------------------------------------------------------- perplexity

# A log-probability is <= 0; engines in float16/bfloat16 can overshoot zero by rounding, so a tiny
# positive value is tolerated, a clearly positive one (a probability, or a negated value) is not.
_LOGPROB_TOLERANCE = 1e-4


def negative_log_likelihood(logprobs: Iterable[float]) -> tuple[float, int]:
    """(sum of −log p, number of tokens) over natural-log token probabilities, validated."""
    total = 0.0
    count = 0
    for value in logprobs:
        number = float(value)
        if math.isnan(number):
            raise ValueError(f"log-probability {count} is NaN")
        if number > _LOGPROB_TOLERANCE:
            raise ValueError(
                f"log-probability {count} is {number} > 0: expected natural-log probabilities (<= 0)"
            )
        total -= min(number, 0.0)
        count += 1
    return total, count


def perplexity_from_nll(nll_sum: float, token_count: int) -> float:
    """exp(nll_sum / token_count); inf when the mean is too large for a float."""
    if token_count <= 0:
        raise ValueError("perplexity needs at least one scored token")
    mean_nll = nll_sum / token_count
    return math.exp(mean_nll) if mean_nll < 709.0 else math.inf


def perplexity(logprobs: Iterable[float]) -> float:
    """exp(−mean log p) over the given natural-log token probabilities."""
    return perplexity_from_nll(*negative_log_likelihood(logprobs))


def _same_length(golds: Sequence[object], predictions: Sequence[object]) -> None:
    if len(golds) != len(predictions):
        raise ValueError(f"{len(predictions)} predictions for {len(golds)} references")
    if not golds:
        raise ValueError("nothing to score")
