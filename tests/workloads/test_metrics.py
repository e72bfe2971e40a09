"""Metric implementations against cases computed by hand (the arithmetic is in each comment)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from wattlab.workloads.tasks import metrics as m

# ----------------------------------------------------------------------------- accuracy, macro-F1


def test_accuracy_counts_unparsed_as_wrong() -> None:
    assert m.accuracy(["a", "b", "a", "b"], ["a", "a", None, "b"]) == 0.5


def test_macro_f1_with_a_class_never_predicted_and_an_unparsed_answer() -> None:
    golds = ["a", "a", "a", "b", "b", "c"]
    preds = ["a", "a", "b", "b", None, "a"]
    # a: TP 2 (0,1)  FP 1 (5)  FN 1 (2)  -> 2·2/(4+1+1) = 2/3
    # b: TP 1 (3)    FP 1 (2)  FN 1 (4, unparsed) -> 2/(2+1+1) = 1/2
    # c: TP 0, never predicted -> 0
    per_class = m.f1_per_class(golds, preds)
    assert per_class == pytest.approx({"a": 2 / 3, "b": 0.5, "c": 0.0})
    assert m.macro_f1(golds, preds) == pytest.approx((2 / 3 + 0.5 + 0.0) / 3)  # 7/18
    assert m.accuracy(golds, preds) == pytest.approx(3 / 6)


def test_macro_f1_includes_a_predicted_label_absent_from_gold() -> None:
    # a: TP 1, FN 1 -> 2/3; b (predicted, never gold): TP 0, FP 1 -> 0; macro = 1/3 (sklearn's label set).
    assert m.macro_f1(["a", "a"], ["a", "b"]) == pytest.approx(1 / 3)


def test_classification_metrics_reject_mismatched_lengths() -> None:
    with pytest.raises(ValueError):
        m.accuracy(["a"], ["a", "b"])
    with pytest.raises(ValueError):
        m.macro_f1([], [])


# ----------------------------------------------------------------------------- SQuAD


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("The  Eiffel Tower!", "eiffel tower"),  # lower, punctuation, article, whitespace
        ("An apple, a day.", "apple day"),
        ("theatre", "theatre"),  # articles only as whole words
        ("the-end", "theend"),  # punctuation goes first, so "the" is no longer a word
        ("  A  ", ""),
        ("Père Noël's", "père noëls"),  # only ASCII punctuation is removed
    ],
)
def test_squad_normalization(raw: str, normalized: str) -> None:
    assert m.normalize_answer(raw) == normalized


def test_squad_exact_match_after_normalization() -> None:
    assert m.squad_exact_match("the Eiffel Tower.", ["Eiffel Tower"]) == 1.0
    assert m.squad_exact_match("Eiffel", ["Eiffel Tower"]) == 0.0
    assert m.squad_exact_match("Tower", ["Eiffel Tower", "tower"]) == 1.0  # max over gold answers


def test_squad_f1_token_overlap() -> None:
    # pred [big, red, bus] vs gold [red, bus]: overlap 2, P 2/3, R 1 -> F1 = 2·(2/3)/(5/3) = 0.8
    assert m.squad_f1("the big red bus", ["a red bus"]) == pytest.approx(0.8)
    # repeated tokens are clipped: [bus, bus] vs [bus] -> overlap 1, P 1/2, R 1 -> 2/3
    assert m.squad_f1("bus bus", ["bus"]) == pytest.approx(2 / 3)
    # max over golds: vs [bus] -> 2/3; vs [red, bus, stop] -> P 1, R 2/3 -> 0.8
    assert m.squad_f1("red bus", ["the bus", "red bus stop"]) == pytest.approx(0.8)
    assert m.squad_f1("green car", ["red bus"]) == 0.0


def test_squad_v2_unanswerable_questions() -> None:
    # No gold answer: only the empty prediction is right (EM and F1 both 1), anything else 0.
    assert m.squad_exact_match("", []) == 1.0
    assert m.squad_f1("", []) == 1.0
    assert m.squad_exact_match("Paris", []) == 0.0
    assert m.squad_f1("Paris", []) == 0.0
    # An answerable question answered with nothing scores 0.
    assert m.squad_f1("", ["Paris"]) == 0.0
    # Gold answers that normalize to nothing are dropped; if none is left, the question is unanswerable.
    assert m.squad_f1("", ["the", "a"]) == 1.0
    assert m.squad_exact_match("Paris", ["the", "Paris"]) == 1.0


# ----------------------------------------------------------------------------- ROUGE, BLEU, chrF


def test_rouge_hand_case() -> None:
    # ref  [the cat sat on the mat], pred [the cat lay on the mat]
    # overlap the×2, cat, on, mat = 5 of 6 each side -> 5/6
    # ref bigrams the-cat cat-sat sat-on on-the the-mat; shared the-cat on-the the-mat -> 3/5
    # R-L: LCS "the cat on the mat" = 5 -> 5/6
    scores = m.rouge(["the cat lay on the mat"], ["the cat sat on the mat"])
    assert scores == pytest.approx({"rouge1": 5 / 6, "rouge2": 3 / 5, "rougeL": 5 / 6})


def test_rouge_uses_stemming_and_the_best_of_several_references() -> None:
    # Porter: cats -> cat, running/runs -> run, so the texts match fully after stemming.
    assert m.rouge(["cats running"], ["cat runs"])["rouge1"] == pytest.approx(1.0)
    per_item = m.rouge_scores(["the cat sat"], [("a dog barked", "the cat sat")])
    assert per_item[0]["rougeL"] == pytest.approx(1.0)


def test_rouge_mean_over_items() -> None:
    scores = m.rouge(["alpha beta", "gamma"], ["alpha beta", "delta"])
    assert scores["rouge1"] == pytest.approx(0.5)  # (1 + 0) / 2


def test_bleu_hand_cases() -> None:
    # Same length (BP 1); n-gram precisions 4/5, 3/4, 2/3, 1/2 -> (0.8·0.75·(2/3)·0.5)^(1/4) = 0.2^(1/4)
    assert m.bleu(["the quick brown fox sleeps"], ["the quick brown fox jumps"]) == pytest.approx(0.2**0.25)
    # All precisions 1, hypothesis 4 words vs 5: BP = exp(1 - 5/4)
    assert m.bleu(["the quick brown fox"], ["the quick brown fox jumps"]) == pytest.approx(math.exp(-0.25))
    assert m.bleu(["le chat dort sur le lit"], ["le chat dort sur le lit"]) == pytest.approx(1.0)
    assert m.bleu(["zzz qqq"], ["the quick brown fox jumps"]) == 0.0
    # Corpus BLEU needs 4-grams: a corpus of 3-word sentences scores 0 even when identical (which is
    # why the per-item audit uses sentence BLEU, with effective order, and the task leads with chrF).
    assert m.bleu(["le chat dort"], ["le chat dort"]) == 0.0


def test_chrf_bounds_and_order() -> None:
    assert m.chrf(["Le chat dort sur le canapé."], ["Le chat dort sur le canapé."]) == pytest.approx(1.0)
    assert m.chrf(["xyz"], ["abc"]) == 0.0
    close = m.chrf(["Le chat dort sur le sofa."], ["Le chat dort sur le canapé."])
    far = m.chrf(["Un chien court."], ["Le chat dort sur le canapé."])
    assert 0.0 < far < close < 1.0


def test_sentence_scores_are_fractions() -> None:
    scores = m.sentence_scores("Le chat dort.", "Le chat dort.")
    assert scores == pytest.approx({"bleu": 1.0, "chrf": 1.0})


# ----------------------------------------------------------------------------- perplexity


def test_perplexity_arithmetic() -> None:
    # p = 1/2 and 1/4: mean −ln p = (ln 2 + ln 4)/2 = 1.5 ln 2 -> perplexity 2^1.5
    assert m.perplexity([math.log(0.5), math.log(0.25)]) == pytest.approx(2**1.5)
    # a uniform guess over 10 tokens has perplexity 10
    assert m.perplexity([math.log(0.1)] * 7) == pytest.approx(10.0)
    assert m.perplexity([0.0, 0.0]) == 1.0


def test_perplexity_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="natural-log"):
        m.perplexity([0.5])  # a probability, not a log-probability
    with pytest.raises(ValueError, match="NaN"):
        m.perplexity([float("nan")])
    with pytest.raises(ValueError, match="at least one"):
        m.perplexity([])
    assert m.perplexity([1e-6]) == pytest.approx(1.0)  # half-precision rounding above zero is tolerated
    assert m.perplexity([-1000.0]) == math.inf


def test_scoring_needs_no_nltk_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """ROUGE's stemmer and the coherence stemmer are pure code: no nltk data file, no download."""
    import nltk

    from wattlab.workloads.tasks.coherence import coherence, factuality

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("an nltk download was attempted")

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    monkeypatch.setattr(nltk, "download", no_download)
    assert m.rouge(["cats running"], ["cat runs"])["rouge1"] == pytest.approx(1.0)
    assert factuality("Cats were running.", "The cat runs.").score == 1.0
    assert coherence("Cats run. They sleep.").cohesion == 1.0
