"""The task contract: items to run, and how to score what the model produced.

A task is a list of `TaskItem`s plus a scoring rule. The runner never looks inside a task:

    task = get_task("sentiment")                 # or load_task_file(path, "squad")
    items = task.items(limit=20)                 # deterministic: the first 20, in file order
    if task.needs_logprobs:                      # perplexity: raw text, no chat template
        prompts = [tokenize(item.text) for item in items]
        logprobs = [engine.prompt_logprobs(ids) for ids in prompts]
        score = task.score_logprobs(items, logprobs, token_counts=[len(ids) for ids in prompts])
    else:                                        # generative: chat messages -> output text
        outputs = [generate(apply_template(item.messages), task.max_new_tokens) for item in items]
        score = task.score(items, outputs)
    score.metrics        # {"macro_f1": 0.85, "accuracy": 0.85, "unparsed_rate": 0.0}
    score.per_item       # one JSON-ready dict per item, for the audit trail

Scales: every higher-is-better metric lies in [0, 1] (BLEU and chrF are sacrebleu's score / 100,
so a quality column never mixes 0-1 and 0-100 figures). Perplexity is the only lower-is-better
quality metric; `METRIC_DIRECTIONS` says which way each metric points. The first metric of a task
is its primary metric: the one the Pareto front and the Green AI index use as "quality".
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

from wattlab.errors import ConfigError, DatasetError

TaskKind = Literal["classification", "qa", "summarization", "translation", "perplexity"]
TASK_KINDS: tuple[TaskKind, ...] = ("classification", "qa", "summarization", "translation", "perplexity")

METRIC_DIRECTIONS: dict[str, Literal["max", "min"]] = {
    "accuracy": "max",
    "macro_f1": "max",
    "unparsed_rate": "min",
    "exact_match": "max",
    "f1": "max",
    "rouge1": "max",
    "rouge2": "max",
    "rougeL": "max",
    "bleu": "max",
    "chrf": "max",
    "coherence": "max",
    "factuality": "max",
    "perplexity": "min",
}


@dataclass(frozen=True)
class TaskItem:
    """One thing to ask the model.

    id:        stable within the task (from the file where it has ids, else the position).
    messages:  chat messages ({"role": "user", "content": ...}); the runner applies the model's
               chat template. Empty for perplexity items, which are scored on raw `text`.
    reference: what a perfect answer is: a label (classification), a tuple of gold answers, empty
               for an unanswerable question (qa), a summary or a tuple of summaries
               (summarization), a translation (translation), None (perplexity).
    text:      the passage whose tokens are scored (perplexity only).
    source:    the document an output must stay faithful to (summarization: the document; qa: the
               context), used by the factuality measure and shown in audits.
    """

    id: str
    messages: tuple[dict[str, str], ...]
    reference: Any
    text: str | None = None
    source: str | None = None

    @property
    def prompt(self) -> str:
        """The user message content (what the model is asked), for display."""
        return "\n".join(m["content"] for m in self.messages if m.get("role") == "user")


@dataclass
class TaskScore:
    """What a task's scoring produced.

    metrics:  corpus-level figures, keyed by the task's `metrics` names (NaN never appears: an
              undefined figure raises instead).
    per_item: one dict per item, in item order: its id, the raw output (or token count), the parsed
              prediction where there is one, and its own scores, for audit.
    n:        number of items scored.
    info:     counts that explain the figures (unparsed outputs, scored tokens...), not quality.
    """

    metrics: dict[str, float]
    per_item: list[dict[str, Any]]
    n: int
    info: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TaskInfo:
    """A task as listed (`wattlab tasks`). n_items: None for a hub preset (not contacted to list it)."""

    name: str
    kind: TaskKind
    metrics: tuple[str, ...]
    max_new_tokens: int
    needs_logprobs: bool
    description: str
    origin: str
    n_items: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Task(ABC):
    """A set of items and the rule that scores a model's answers to them.

    Subclasses set the class attributes and implement `score` (generative tasks) or
    `score_logprobs` (perplexity). Items are built by the loaders (loaders.py) and handed over
    complete, so a Task holds no file handles and can be scored in any process.
    """

    kind: ClassVar[TaskKind]
    metrics: ClassVar[tuple[str, ...]]
    needs_logprobs: ClassVar[bool] = False
    default_max_new_tokens: ClassVar[int]

    def __init__(
        self,
        name: str,
        items: Sequence[TaskItem],
        *,
        description: str = "",
        origin: str = "built-in",
        max_new_tokens: int | None = None,
    ) -> None:
        if not items:
            raise DatasetError(f"task {name!r} ({origin}) has no items", fix="check the file is not empty")
        ids = [item.id for item in items]
        if len(set(ids)) != len(ids):
            duplicate = next(i for i in ids if ids.count(i) > 1)
            raise DatasetError(f"task {name!r} ({origin}) has two items with id {duplicate!r}")
        self.name = name
        self.description = description
        self.origin = origin
        self.max_new_tokens = max_new_tokens if max_new_tokens is not None else self.default_max_new_tokens
        self._items = list(items)

    @property
    def primary_metric(self) -> str:
        """The figure used as "quality" in Pareto fronts and the Green AI index."""
        return self.metrics[0]

    @property
    def higher_is_better(self) -> bool:
        return METRIC_DIRECTIONS[self.primary_metric] == "max"

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {len(self)} items from {self.origin}>"

    def items(self, limit: int | None = None) -> list[TaskItem]:
        """The first `limit` items in file order (all when None): the same items on every run."""
        if limit is None:
            return list(self._items)
        if limit < 1:
            raise ConfigError(f"--limit must be at least 1, got {limit}")
        return self._items[:limit]

    def info(self) -> TaskInfo:
        return TaskInfo(
            name=self.name,
            kind=self.kind,
            metrics=self.metrics,
            max_new_tokens=self.max_new_tokens,
            needs_logprobs=self.needs_logprobs,
            description=self.description,
            origin=self.origin,
            n_items=len(self),
        )

    @abstractmethod
    def score(self, items: Sequence[TaskItem], outputs: Sequence[str]) -> TaskScore:
        """Score generated texts; `outputs[i]` answers `items[i]`."""

    def score_logprobs(
        self,
        items: Sequence[TaskItem],
        logprobs: Sequence[Sequence[float]],
        token_counts: Sequence[int] | None = None,
    ) -> TaskScore:
        """Score prompt log-probabilities (perplexity tasks only); see PerplexityTask.score_logprobs."""
        raise ConfigError(
            f"task {self.name!r} is a {self.kind} task: it is scored from output text with score(), "
            "not from log-probabilities"
        )


def check_pairs(items: Sequence[TaskItem], answers: Sequence[Any], what: str) -> None:
    """The runner must hand back exactly one answer per item; anything else is a runner bug."""
    if len(items) != len(answers):
        raise ValueError(f"got {len(answers)} {what} for {len(items)} items")
    if not items:
        raise ValueError("nothing to score: no items")


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean of a non-empty sequence (math.fsum for stable sums)."""
    if not values:
        raise ValueError("mean of no values")
    return math.fsum(values) / len(values)


def user_message(content: str) -> tuple[dict[str, str], ...]:
    """A one-turn chat: the prompt as the user's message (no system prompt: the template adds its own)."""
    return ({"role": "user", "content": content},)


def strip_lead_in(output: str, lead_ins: Sequence[str]) -> str:
    """Drop surrounding whitespace and one leading "Label:" a small model likes to echo.

    `lead_ins` are matched case-insensitively and must be followed by a colon, e.g. "Summary"
    removes "Summary:" and "summary :" but leaves "Summary of the week..." alone.
    """
    text = output.strip()
    lowered = text.lower()
    for lead in lead_ins:
        head = lead.lower()
        if lowered.startswith(head):
            rest = text[len(head) :].lstrip()
            if rest.startswith(":"):
                return rest[1:].strip()
    return text
