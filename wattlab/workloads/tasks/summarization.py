"""Summarization: ROUGE against reference summaries, plus factuality and coherence.

The output is used whole, minus surrounding whitespace and one echoed "Summary:" lead-in.
Metrics (all means over items, in [0, 1]):
  rougeL (primary), rouge1, rouge2 — rouge_score F-measure with Porter stemming; an item with
      several reference summaries is scored against the best-matching one;
  factuality — share of the summary's content words, word pairs, numbers and names that the
      document supports (coherence.py says exactly how, and its limits);
  coherence  — repetition and sentence linkage of the summary (coherence.py).
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
from wattlab.workloads.tasks.coherence import coherence, factuality
from wattlab.workloads.tasks.metrics import rouge_scores

SUMMARY_PROMPT = "Write a one-sentence summary of the following text.\n\nText: {document}"

# How many unsupported units an audit row lists (the full count is in "factuality_units").
_AUDIT_UNSUPPORTED = 12


def clean_summary(output: str) -> str:
    return strip_lead_in(output, ("summary", "one-sentence summary"))


class SummarizationTask(Task):
    """Reference: a summary (str) or several (tuple of str); source: the document."""

    kind: ClassVar[TaskKind] = "summarization"
    metrics: ClassVar[tuple[str, ...]] = ("rougeL", "rouge1", "rouge2", "factuality", "coherence")
    default_max_new_tokens: ClassVar[int] = 96

    def score(self, items: Sequence[TaskItem], outputs: Sequence[str]) -> TaskScore:
        check_pairs(items, outputs, "outputs")
        summaries = [clean_summary(output) for output in outputs]
        references = [item.reference for item in items]
        rouge_per_item = rouge_scores(summaries, references)
        per_item: list[dict[str, Any]] = []
        for item, output, summary, rouge in zip(items, outputs, summaries, rouge_per_item, strict=True):
            fact = factuality(summary, item.source or "")
            coh = coherence(summary)
            per_item.append(
                {
                    "id": item.id,
                    "output": output,
                    **rouge,
                    "factuality": fact.score,
                    "factuality_units": fact.units,
                    "unsupported": list(fact.unsupported[:_AUDIT_UNSUPPORTED]),
                    "coherence": coh.score,
                    "distinct_2": coh.distinct_2,
                    "cohesion": coh.cohesion,
                }
            )
        return TaskScore(
            metrics={name: mean([row[name] for row in per_item]) for name in self.metrics},
            per_item=per_item,
            n=len(items),
            info={"empty_outputs": sum(1 for s in summaries if not s)},
        )


def build_summary_item(item_id: str, document: str, summary: str | Sequence[str], prompt: str) -> TaskItem:
    reference = summary if isinstance(summary, str) else tuple(summary)
    return TaskItem(
        id=item_id,
        messages=user_message(prompt.format(document=document)),
        reference=reference,
        source=document,
    )
