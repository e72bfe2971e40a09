"""The built-in tasks, the registry and each task kind's parsing and scoring rules."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from wattlab.errors import ConfigError
from wattlab.workloads.tasks import BUILTIN_TASKS, METRIC_DIRECTIONS, Task, TaskItem, get_task, list_tasks
from wattlab.workloads.tasks.classification import parse_label
from wattlab.workloads.tasks.perplexity import chunk_text
from wattlab.workloads.tasks.qa import extract_answer

BUILTIN_NAMES = list(BUILTIN_TASKS)
GENERATIVE = [name for name in BUILTIN_NAMES if BUILTIN_TASKS[name].kind != "perplexity"]


def _perfect_output(item: TaskItem) -> str:
    """What a perfect model would say: the reference itself (the first gold answer, or summary)."""
    reference = item.reference
    return reference if isinstance(reference, str) else reference[0]


# ----------------------------------------------------------------------------- registry


def test_list_tasks_names_every_builtin_with_its_metrics() -> None:
    infos = {info.name: info for info in list_tasks()}
    assert set(infos) == {"sentiment", "topic", "qa", "summarization", "translation-en-fr", "perplexity"}
    assert infos["qa"].metrics == ("f1", "exact_match")
    assert infos["perplexity"].needs_logprobs is True
    assert infos["sentiment"].needs_logprobs is False
    assert {name: info.n_items for name, info in infos.items()} == {
        "sentiment": 40, "topic": 40, "qa": 40, "summarization": 30, "translation-en-fr": 40, "perplexity": 4,
    }  # fmt: skip
    for info in infos.values():
        assert all(metric in METRIC_DIRECTIONS for metric in info.metrics)
        assert info.description
    with_hub = {info.name: info for info in list_tasks(include_hf=True)}
    assert {"hf:squad_v2", "hf:wikitext-2"} <= set(with_hub)
    assert with_hub["hf:squad_v2"].n_items is None  # listing never contacts the hub
    assert with_hub["hf:squad_v2"].metrics == ("f1", "exact_match")


def test_unknown_task_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        get_task("sentimentt")
    assert "sentimentt" in caught.value.message
    assert caught.value.fix is not None
    assert "sentiment" in caught.value.fix and "translation-en-fr" in caught.value.fix


def test_importing_tasks_loads_no_metric_library_or_engine() -> None:
    code = (
        "import sys, wattlab.workloads.tasks as t, wattlab.analysis.pareto, wattlab.analysis.green_index, "
        "wattlab.analysis.scaling\n"
        "t.list_tasks(); t.get_task('sentiment')\n"
        "heavy = ['rouge_score', 'sacrebleu', 'nltk', 'datasets', 'torch', 'vllm', 'llama_cpp']\n"
        "print([m for m in heavy if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# ----------------------------------------------------------------------------- every built-in set


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_builtin_items_load_and_are_well_formed(name: str) -> None:
    task = get_task(name)
    items = task.items()
    assert 30 <= len(items) <= 60 or task.kind == "perplexity"
    assert len({item.id for item in items}) == len(items)
    assert task.items(limit=3) == items[:3]
    # A generation budget that fits the answer: a label, a phrase, a sentence; nothing for perplexity.
    budget = {"classification": 16, "qa": 32, "summarization": 96, "translation": 128, "perplexity": 0}
    assert task.max_new_tokens == budget[task.kind]
    for item in items:
        if task.kind == "perplexity":
            assert item.messages == ()
            assert item.text and len(item.text) <= 1500
            continue
        assert len(item.messages) == 1
        message = item.messages[0]
        assert message["role"] == "user"
        content = message["content"]
        # Every template field was filled, and the instruction comes before the material.
        assert "{" not in content and "}" not in content
        assert len(content) < 2500
        assert item.reference
    if task.kind == "classification":
        labels = task.labels  # type: ignore[attr-defined]
        assert all(label in items[0].prompt for label in labels)
        assert {item.reference for item in items} == set(labels)


@pytest.mark.parametrize("name", GENERATIVE)
def test_builtin_reference_outputs_get_the_top_score(name: str) -> None:
    task = get_task(name)
    items = task.items()
    score = task.score(items, [_perfect_output(item) for item in items])
    assert score.n == len(items) == len(score.per_item)
    primary = score.metrics[task.primary_metric]
    assert primary == pytest.approx(1.0)
    for metric, value in score.metrics.items():
        assert 0.0 <= value <= 1.0 + 1e-9, metric
    if name == "summarization":
        # References are abstractive: most, not all, of their words and pairs occur in the document.
        assert score.metrics["factuality"] > 0.75
        assert score.metrics["coherence"] == pytest.approx(1.0)
    json.dumps(score.as_dict())  # the audit record must be storable as JSON


@pytest.mark.parametrize("name", GENERATIVE)
def test_builtin_nonsense_outputs_score_low(name: str) -> None:
    task = get_task(name)
    items = task.items()
    nonsense = ["purple wombat purple wombat purple wombat"] * len(items)
    score = task.score(items, nonsense)
    assert score.metrics[task.primary_metric] < 0.15
    if "factuality" in score.metrics:
        assert score.metrics["factuality"] == 0.0
    if "coherence" in score.metrics:
        # 6 tokens, 5 bigrams, 2 distinct -> distinct-2 = 0.4; one sentence -> cohesion 1; (0.4 + 1)/2
        assert score.metrics["coherence"] == pytest.approx(0.7)


def test_always_the_same_label_is_punished_by_macro_f1() -> None:
    task = get_task("sentiment")
    items = task.items()
    score = task.score(items, ["Positive."] * len(items))
    # Balanced set: accuracy 1/2; positive F1 = 2·20/(40+20) = 2/3, negative 0 -> macro 1/3.
    assert score.metrics["accuracy"] == pytest.approx(0.5)
    assert score.metrics["macro_f1"] == pytest.approx(1 / 3)
    assert score.metrics["unparsed_rate"] == 0.0


def test_generative_score_checks_pairs_and_perplexity_refuses_text() -> None:
    task = get_task("qa")
    with pytest.raises(ValueError, match="2 outputs for 3 items"):
        task.score(task.items(3), ["a", "b"])
    with pytest.raises(ConfigError, match="log-probabilities"):
        task.score_logprobs(task.items(1), [[-1.0]])
    with pytest.raises(ConfigError, match="score_logprobs"):
        get_task("perplexity").score(get_task("perplexity").items(1), ["text"])
    with pytest.raises(ConfigError):
        task.items(limit=0)


# ----------------------------------------------------------------------------- parsing rules


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("Positive", "positive"),
        ("  NEGATIVE.", "negative"),
        ("The sentiment of this review is positive.", "positive"),
        ("positive, not negative", "positive"),  # first mention wins
        ("Negative - although parts are positive", "negative"),
        ("positively charming", None),  # whole words only
        ("I cannot tell.", None),
        ("", None),
    ],
)
def test_parse_label(output: str, expected: str | None) -> None:
    assert parse_label(output, ["negative", "positive"]) == expected


def test_parse_label_prefers_the_longer_label_at_the_same_position() -> None:
    labels = ["science", "science fiction", "history"]
    assert parse_label("Science fiction, clearly.", labels) == "science fiction"
    assert parse_label("Science\nfiction", labels) == "science fiction"  # any whitespace inside a label
    assert parse_label("science, then history", labels) == "science"


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("Agnes Tull", "Agnes Tull"),
        ("Answer: Agnes Tull\nShe was an engineer.", "Agnes Tull"),
        ("\n\n  1932.  ", "1932."),
        ("Unanswerable.", ""),
        ("no answer", ""),
        ("", ""),
    ],
)
def test_extract_answer(output: str, expected: str) -> None:
    assert extract_answer(output) == expected


def test_qa_scores_a_sentence_answer_with_partial_credit() -> None:
    task = get_task("qa")
    item = task.items(1)[0]  # "Who designed the Harlow Bridge?" -> Agnes Tull
    score = task.score([item], ["It was designed by Agnes Tull."])
    # best gold "the engineer Agnes Tull" -> [engineer, agnes, tull] vs pred
    # [it, was, designed, by, agnes, tull]: overlap 2, P 2/6, R 2/3 -> F1 = 4/9; vs "Agnes Tull" R 1 -> 1/2
    assert score.metrics["f1"] == pytest.approx(0.5)
    assert score.metrics["exact_match"] == 0.0
    assert score.per_item[0]["prediction"] == "It was designed by Agnes Tull."


def test_translation_uses_the_first_line_without_a_lead_in() -> None:
    task = get_task("translation-en-fr")
    item = task.items(1)[0]
    score = task.score([item], ["French: " + item.reference + "\nThis means the train leaves at 8."])
    assert score.per_item[0]["prediction"] == item.reference
    assert score.metrics["chrf"] == pytest.approx(1.0)


# ----------------------------------------------------------------------------- perplexity


def test_perplexity_pools_tokens_over_items() -> None:
    task: Task = get_task("perplexity")
    items = task.items(3)
    half, quarter = math.log(0.5), math.log(0.25)
    score = task.score_logprobs(items, [[half, half], [quarter], []])
    # total −ln p = 2 ln 2 + 2 ln 2 = 4 ln 2 over 3 tokens -> 2^(4/3); item perplexities 2 and 4
    assert score.metrics["perplexity"] == pytest.approx(2 ** (4 / 3))
    assert [row["perplexity"] for row in score.per_item] == pytest.approx([2.0, 4.0, None])
    assert [row["tokens"] for row in score.per_item] == [2, 1, 0]
    assert score.info["scored_tokens"] == 3
    with pytest.raises(ValueError, match="no scored tokens"):
        task.score_logprobs(items[:1], [[]])
    with pytest.raises(ValueError, match=r"item 0: .*natural-log"):
        task.score_logprobs(items[:1], [[0.9]])


def test_perplexity_token_counts_are_recorded_and_checked() -> None:
    task = get_task("perplexity")
    items = task.items(2)
    # prompts of 3 and 2 tokens: the engine scores tokens 1.. (2 and 1 log-probs)
    score = task.score_logprobs(items, [[-1.0, -1.0], [-1.0]], token_counts=[3, 2])
    assert score.metrics["perplexity"] == pytest.approx(math.e)
    assert [row["prompt_tokens"] for row in score.per_item] == [3, 2]
    with pytest.raises(ValueError, match="3 log-probabilities for a prompt of 2 tokens"):
        task.score_logprobs(items, [[-1.0], [-1.0, -1.0, -1.0]], token_counts=[3, 2])
    with pytest.raises(ValueError, match="1 token counts for 2 items"):
        task.score_logprobs(items, [[-1.0], [-1.0]], token_counts=[3])


def test_chunk_text_packs_paragraphs_and_never_splits_words() -> None:
    paragraph = "One two three. " * 10  # 150 chars
    text = "\n\n".join([paragraph.strip()] * 4)
    chunks = chunk_text(text, max_chars=400)
    assert all(len(chunk) <= 400 for chunk in chunks)
    assert chunks[0].count("\n\n") == 1  # two paragraphs of 149 chars fit, a third would not
    assert " ".join(" ".join(chunks).split()) == " ".join(text.split())  # nothing lost or reordered
    long_sentence = "word " * 200  # 1000 chars, no sentence end
    assert all(len(c) <= 300 and not c.startswith(" ") for c in chunk_text(long_sentence, 300))
    with pytest.raises(ConfigError):
        chunk_text("text", max_chars=10)
