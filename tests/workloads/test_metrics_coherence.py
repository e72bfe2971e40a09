"""Factuality and coherence (coherence.py), recomputed by hand from their documented definitions."""

from __future__ import annotations

import pytest

from wattlab.workloads.tasks.coherence import coherence, content_stems, critical_tokens, factuality, tokens

SOURCE = "The council approved a budget of 4 million pounds on Tuesday. Schools will get new computers."


def test_tokens_keep_numbers_whole_and_drop_possessives() -> None:
    assert tokens("It cost 1,200 euros (3.5% more) in the region's shops; don't ask.") == [
        "it", "cost", "1200", "euros", "3.5", "more", "in", "the", "region", "shops", "don't", "ask",
    ]  # fmt: skip


def test_content_stems_drop_stopwords_and_stem() -> None:
    assert content_stems("The schools were getting new computers") == ["school", "get", "new", "comput"]


def test_critical_tokens_are_numbers_and_capitalised_words_inside_a_sentence() -> None:
    # "The" and "It" open sentences; "Mayor" and "Lyon" are capitalised mid-sentence; "May" is
    # also a stopword ("may"), and stopwords are never names — a documented blind spot.
    assert critical_tokens("The council met the Mayor of Lyon on 3 May. It cost 1,200 euros.") == {
        "mayor", "lyon", "3", "1200",
    }  # fmt: skip


def test_factuality_hand_case() -> None:
    output = "The council approved 5 million pounds for new computers."
    # U: council approv 5 million pound new comput (7); all but "5" in the source -> 6
    # B: council-approv approv-5 5-million million-pound pound-new new-comput (6); a pair is supported
    #    when one source sentence holds both stems: council-approv, million-pound (sentence 1),
    #    new-comput (sentence 2) -> 3; pound-new straddles the two sentences -> unsupported
    # C: "5" (number) not in the source -> 0 of 1
    # factuality = (6 + 3 + 0) / (7 + 6 + 1) = 9/14
    result = factuality(output, SOURCE)
    assert result.units == 14
    assert result.supported == 9
    assert result.score == pytest.approx(9 / 14)
    assert set(result.unsupported) == {"5", "approv 5", "5 million", "pound new", "5 (number/name)"}


def test_factuality_extremes() -> None:
    assert factuality(SOURCE, SOURCE).score == 1.0  # copying the source is fully supported
    assert factuality("Penguins dance in Oslo every 7 days.", SOURCE).score == 0.0
    assert factuality("", SOURCE).score == 0.0  # nothing checkable asserted
    assert factuality("It is what it is.", SOURCE).units == 0  # stopwords only


def test_factuality_catches_an_invented_name() -> None:
    faithful = factuality("The council approved a budget.", SOURCE)
    invented = factuality("The council of Brackley approved a budget.", SOURCE)
    assert faithful.score == 1.0
    assert invented.score < faithful.score
    assert "brackley (number/name)" in invented.unsupported


def test_coherence_of_a_loop_is_low() -> None:
    # tokens: the cat sat ×3 -> 8 bigrams, 3 distinct -> distinct-2 = 3/8
    # the three sentences are identical (Jaccard 1 >= 0.8): repeats, not links -> cohesion 0
    result = coherence("The cat sat. The cat sat. The cat sat.")
    assert result.distinct_2 == pytest.approx(3 / 8)
    assert result.cohesion == 0.0
    assert result.score == pytest.approx(3 / 16)


def test_coherence_rewards_linked_sentences() -> None:
    # "It" in the second sentence refers back: linked; no repeated bigram -> 1.0
    linked = coherence("The council approved the budget. It includes money for schools.")
    assert (linked.distinct_2, linked.cohesion, linked.score) == (1.0, 1.0, 1.0)
    # No shared content word and no referring word: a topic jump -> cohesion 0 -> (1 + 0) / 2
    jump = coherence("The council approved the budget. Penguins swim fast.")
    assert jump.cohesion == 0.0
    assert jump.score == pytest.approx(0.5)
    # A shared content stem links two sentences: budget / budgets
    shared = coherence("The council approved the budget. Teachers praised the budgets.")
    assert shared.cohesion == 1.0


def test_coherence_edge_cases() -> None:
    assert coherence("").score == 0.0
    one = coherence("Fine.")
    assert (one.distinct_2, one.cohesion, one.sentences) == (1.0, 1.0, 1)
