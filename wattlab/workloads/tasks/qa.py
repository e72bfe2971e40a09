"""Extractive question answering, scored as SQuAD scores it (exact match and token F1).

The model sees a context paragraph and a question and is asked for a short phrase copied from the
context. Answer extraction (`extract_answer`), applied before SQuAD's own normalization:
  1. keep the first non-empty line (small models often add an explanation on later lines);
  2. drop one leading "Answer:" the model may echo;
  3. if what is left normalizes to one of NO_ANSWER_PHRASES ("unanswerable", "no answer"), the
     prediction is the empty string — SQuAD v2's "no answer", correct only for unanswerable items.
A whole-sentence answer ("The bridge opened in 1932.") is not trimmed further: token F1 gives it
partial credit and exact match none, which is what the official script would do too.

Metrics: f1 (primary), exact_match — both means over items, in [0, 1] (the official script prints
them ×100). Unanswerable items (empty gold) follow the v2 script: 1.0 only for an empty prediction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from wattlab.workloads.tasks.base import (
    Task,
    TaskItem,
    TaskKind,
    TaskScore,
    check_pairs,
    mean,
    strip_lead_in,
    user_message,
)
from wattlab.workloads.tasks.metrics import normalize_answer, squad_exact_match, squad_f1

NO_ANSWER_PHRASES: frozenset[str] = frozenset({"unanswerable", "no answer"})

QA_PROMPT = (
    "Read the context, then answer the question with a few words copied from the context.\n\n"
    "Context: {context}\n\nQuestion: {question}"
)
QA_PROMPT_UNANSWERABLE = (
    "Read the context, then answer the question with a few words copied from the context. "
    'If the context does not contain the answer, reply "unanswerable".\n\n'
    "Context: {context}\n\nQuestion: {question}"
)


def extract_answer(output: str) -> str:
    """The answer span a free-text output gives, by the rule in the module docstring."""
    lines = [line for line in output.strip().splitlines() if line.strip()]
    first = lines[0] if lines else ""
    answer = strip_lead_in(first, ("answer",))
    return "" if normalize_answer(answer) in NO_ANSWER_PHRASES else answer


class QATask(Task):
    """SQuAD-style extractive QA: reference is a tuple of gold answers (empty: unanswerable)."""

    kind: ClassVar[TaskKind] = "qa"
    metrics: ClassVar[tuple[str, ...]] = ("f1", "exact_match")
    default_max_new_tokens: ClassVar[int] = 32

    def score(self, items: Sequence[TaskItem], outputs: Sequence[str]) -> TaskScore:
        check_pairs(items, outputs, "outputs")
        per_item: list[dict[str, Any]] = []
        for item, output in zip(items, outputs, strict=True):
            golds = tuple(item.reference)
            prediction = extract_answer(output)
            per_item.append(
                {
                    "id": item.id,
                    "output": output,
                    "reference": list(golds),
                    "prediction": prediction,
                    "exact_match": squad_exact_match(prediction, golds),
                    "f1": squad_f1(prediction, golds),
                }
            )
        unanswerable = sum(1 for item in items if not any(normalize_answer(g) for g in item.reference))
        return TaskScore(
            metrics={
                "f1": mean([row["f1"] for row in per_item]),
                "exact_match": mean([row["exact_match"] for row in per_item]),
            },
            per_item=per_item,
            n=len(items),
            info={"unanswerable_items": unanswerable},
        )


def build_qa_item(item_id: str, context: str, question: str, answers: Sequence[str], prompt: str) -> TaskItem:
    return TaskItem(
        id=item_id,
        messages=user_message(prompt.format(context=context, question=question)),
        reference=tuple(answers),
        source=context,
    )
