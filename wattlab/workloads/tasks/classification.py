"""Text classification: the labels are listed in the prompt, the answer is parsed from free text.

Parsing rule (`parse_label`), for small instruct models that rarely answer with the bare label:
  1. Case is ignored; the output is searched for each label as a whole word (or whole phrase), so
     "Positive." and "The sentiment is positive" both give "positive" but "positively" does not.
  2. The label mentioned FIRST wins ("positive, not negative" -> positive). At the same position
     the longer label wins (labels "sci" and "science fiction" on "science fiction..." -> the latter).
  3. No label anywhere -> unparsed (None): wrong for accuracy, a miss of the gold class for
     macro-F1, and counted in `unparsed_rate` so a format failure is told apart from a wrong answer.
Limits: an answer that echoes the question ("positive or negative? negative") parses as the first
label it echoes; negations ("not positive") are not understood.

Metrics: macro_f1 (primary: an always-"positive" model scores 0.5 accuracy on a balanced set but
only 0.33 macro-F1), accuracy, unparsed_rate.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, ClassVar

from wattlab.errors import DatasetError
from wattlab.workloads.tasks.base import Task, TaskItem, TaskKind, TaskScore, check_pairs, user_message
from wattlab.workloads.tasks.metrics import accuracy, f1_per_class, macro_f1

DEFAULT_PROMPT = (
    "Classify the text into one of these labels: {labels}.\n\nText: {text}\n\nAnswer with the label only."
)


def format_labels(labels: Sequence[str]) -> str:
    """How labels read in a prompt: "a, b or c"."""
    return labels[0] if len(labels) == 1 else f"{', '.join(labels[:-1])} or {labels[-1]}"


def parse_label(output: str, labels: Sequence[str]) -> str | None:
    """The label a free-text answer names, by the rule in the module docstring; None if none."""
    best: tuple[int, int, str] | None = None  # (position, -length, label): smallest wins
    lowered = output.lower()
    for label in labels:
        pattern = r"(?<!\w)" + r"\s+".join(re.escape(part) for part in label.lower().split()) + r"(?!\w)"
        match = re.search(pattern, lowered)
        if match is not None:
            candidate = (match.start(), -len(label), label)
            if best is None or candidate < best:
                best = candidate
    return best[2] if best is not None else None


class ClassificationTask(Task):
    """Pick one label per text; scored by macro-F1, accuracy and the share of unparsed answers."""

    kind: ClassVar[TaskKind] = "classification"
    metrics: ClassVar[tuple[str, ...]] = ("macro_f1", "accuracy", "unparsed_rate")
    default_max_new_tokens: ClassVar[int] = 16

    def __init__(self, name: str, items: Sequence[TaskItem], labels: Sequence[str], **kwargs: Any) -> None:
        if len(set(labels)) < 2:
            raise DatasetError(
                f"classification task {name!r} needs at least two distinct labels, got {labels!r}"
            )
        self.labels = tuple(labels)
        super().__init__(name, items, **kwargs)

    def score(self, items: Sequence[TaskItem], outputs: Sequence[str]) -> TaskScore:
        check_pairs(items, outputs, "outputs")
        golds = [str(item.reference) for item in items]
        predictions = [parse_label(output, self.labels) for output in outputs]
        per_item = [
            {"id": item.id, "output": output, "reference": gold, "prediction": pred, "correct": pred == gold}
            for item, output, gold, pred in zip(items, outputs, golds, predictions, strict=True)
        ]
        unparsed = sum(pred is None for pred in predictions)
        return TaskScore(
            metrics={
                "macro_f1": macro_f1(golds, predictions),
                "accuracy": accuracy(golds, predictions),
                "unparsed_rate": unparsed / len(items),
            },
            per_item=per_item,
            n=len(items),
            info={"unparsed": unparsed, "f1_per_class": f1_per_class(golds, predictions)},
        )


def build_classification_items(
    rows: Sequence[tuple[str, str, str]], labels: Sequence[str], prompt: str = DEFAULT_PROMPT
) -> list[TaskItem]:
    """Items from (id, text, label) rows. `prompt` has {text} and {labels} ("a, b or c") fields."""
    label_text = format_labels(labels)
    return [
        TaskItem(
            id=item_id, messages=user_message(prompt.format(text=text, labels=label_text)), reference=label
        )
        for item_id, text, label in rows
    ]
