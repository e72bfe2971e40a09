"""Translation: corpus chrF and BLEU against one reference translation per sentence.

Output cleaning: the first non-empty line, minus one echoed "<target language>:" or "Translation:"
lead-in (sources are single sentences; a small model's later lines are commentary).
Metrics, in [0, 1]:
  chrf (primary) — sacrebleu corpus chrF / 100. Primary because it is stable on the small corpora a
      lab runs (tens of sentences), where corpus BLEU swings on a few 4-gram matches;
  bleu — sacrebleu corpus BLEU / 100 (13a tokenization, exp smoothing);
  coherence — repetition and linkage of each output, averaged (coherence.py); it catches the
      loops quantized models fall into. Factuality is not scored: a lexical support check between
      two languages would measure vocabulary overlap, not faithfulness.
Per-item rows carry sentence-level BLEU and chrF for audit (not averaged into the figures).
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
from wattlab.workloads.tasks.coherence import coherence
from wattlab.workloads.tasks.metrics import bleu, chrf, sentence_scores

TRANSLATION_PROMPT = (
    "Translate this {source_lang} sentence into {target_lang}. "
    "Reply with the {target_lang} translation only.\n\n{source_lang}: {text}"
)


class TranslationTask(Task):
    """Reference: the target-language sentence; source: the source-language sentence."""

    kind: ClassVar[TaskKind] = "translation"
    metrics: ClassVar[tuple[str, ...]] = ("chrf", "bleu", "coherence")
    default_max_new_tokens: ClassVar[int] = 128

    def __init__(
        self, name: str, items: Sequence[TaskItem], *, source_lang: str, target_lang: str, **kwargs: Any
    ) -> None:
        self.source_lang = source_lang
        self.target_lang = target_lang
        super().__init__(name, items, **kwargs)

    def clean(self, output: str) -> str:
        lines = [line for line in output.strip().splitlines() if line.strip()]
        return strip_lead_in(lines[0], (self.target_lang, "translation")) if lines else ""

    def score(self, items: Sequence[TaskItem], outputs: Sequence[str]) -> TaskScore:
        check_pairs(items, outputs, "outputs")
        hypotheses = [self.clean(output) for output in outputs]
        references = [str(item.reference) for item in items]
        per_item: list[dict[str, Any]] = []
        for item, output, hypothesis, reference in zip(items, outputs, hypotheses, references, strict=True):
            per_item.append(
                {
                    "id": item.id,
                    "output": output,
                    "prediction": hypothesis,
                    "reference": reference,
                    **{f"sentence_{k}": v for k, v in sentence_scores(hypothesis, reference).items()},
                    "coherence": coherence(hypothesis).score,
                }
            )
        return TaskScore(
            metrics={
                "chrf": chrf(hypotheses, references),
                "bleu": bleu(hypotheses, references),
                "coherence": mean([row["coherence"] for row in per_item]),
            },
            per_item=per_item,
            n=len(items),
            info={"empty_outputs": sum(1 for h in hypotheses if not h)},
        )


def build_translation_item(
    item_id: str, text: str, target: str, source_lang: str, target_lang: str, prompt: str = TRANSLATION_PROMPT
) -> TaskItem:
    content = prompt.format(source_lang=source_lang, target_lang=target_lang, text=text)
    return TaskItem(id=item_id, messages=user_message(content), reference=target, source=text)
