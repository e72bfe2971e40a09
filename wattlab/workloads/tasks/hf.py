"""Standard sets from the Hugging Face hub, by preset name (`hf:squad`, `hf:xsum`, ...).

Optional on purpose: it needs the `datasets` package and a box that can reach the hub, neither of
which a lab GPU server or a Jetson is guaranteed to have. Without them the error says what to do
(install, go online, or download the set once and load the file with --task-file/--task-format).

Each preset maps a hub id, config and split onto one of our task kinds and names the fields to
read. Rows are converted into the same TaskItems the file loaders build, with the same prompts,
so a preset and its downloaded file score identically. `limit` reads only the first rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from wattlab.errors import ConfigError, DatasetError
from wattlab.workloads.tasks.base import Task, TaskKind
from wattlab.workloads.tasks.classification import ClassificationTask, build_classification_items
from wattlab.workloads.tasks.perplexity import PerplexityTask, build_perplexity_items
from wattlab.workloads.tasks.qa import QA_PROMPT, QA_PROMPT_UNANSWERABLE, QATask, build_qa_item
from wattlab.workloads.tasks.summarization import SUMMARY_PROMPT, SummarizationTask, build_summary_item
from wattlab.workloads.tasks.translation import TranslationTask, build_translation_item

HF_PREFIX = "hf:"


@dataclass(frozen=True)
class HFPreset:
    """A hub dataset read as a wattlab task. `fields` maps our roles to the dataset's columns."""

    hub_id: str
    config: str | None
    split: str
    kind: TaskKind
    fields: dict[str, str]
    description: str


HF_PRESETS: dict[str, HFPreset] = {
    "squad": HFPreset("rajpurkar/squad", None, "validation", "qa", {}, "SQuAD v1.1 dev set"),
    "squad_v2": HFPreset("rajpurkar/squad_v2", None, "validation", "qa", {}, "SQuAD v2.0 dev set"),
    "sst2": HFPreset(
        "stanfordnlp/sst2",
        None,
        "validation",
        "classification",
        {"text": "sentence", "label": "label"},
        "SST-2 movie-review sentiment (validation)",
    ),
    "ag_news": HFPreset(
        "fancyzhx/ag_news",
        None,
        "test",
        "classification",
        {"text": "text", "label": "label"},
        "AG News topic classification (test)",
    ),
    "xsum": HFPreset(
        "EdinburghNLP/xsum",
        None,
        "test",
        "summarization",
        {"document": "document", "summary": "summary"},
        "XSum one-sentence news summaries (test)",
    ),
    "cnn_dailymail": HFPreset(
        "abisee/cnn_dailymail",
        "3.0.0",
        "test",
        "summarization",
        {"document": "article", "summary": "highlights"},
        "CNN/DailyMail highlights (test)",
    ),
    "wmt14-en-fr": HFPreset(
        "wmt/wmt14",
        "fr-en",
        "test",
        "translation",
        {"source": "en", "target": "fr"},
        "WMT14 English->French newstest2014",
    ),
    "wikitext-2": HFPreset(
        "Salesforce/wikitext",
        "wikitext-2-raw-v1",
        "test",
        "perplexity",
        {"text": "text"},
        "WikiText-2 raw test set",
    ),
}

_LANGUAGES = {"en": "English", "fr": "French", "de": "German", "es": "Spanish"}


def load_hf_task(name: str, limit: int | None = None) -> Task:
    """Load preset `name` ("squad" or "hf:squad") from the hub; `limit` caps the rows read."""
    key = name.removeprefix(HF_PREFIX)
    preset = HF_PRESETS.get(key)
    if preset is None:
        raise ConfigError(
            f"unknown Hugging Face preset {key!r}",
            fix=f"use one of: {', '.join(HF_PREFIX + k for k in HF_PRESETS)}",
        )
    try:
        import datasets  # optional: only installed on boxes that fetch sets from the hub
    except ImportError as exc:
        raise DatasetError(
            f"{HF_PREFIX}{key} needs the Hugging Face `datasets` package",
            fix="pip install datasets (on a box that can reach huggingface.co), or download the set and "
            "run it with --task-file PATH --task-format FORMAT",
        ) from exc
    try:
        dataset = datasets.load_dataset(preset.hub_id, preset.config, split=preset.split)
    except Exception as exc:  # offline, hub errors, missing config: all one message for the user
        raise DatasetError(
            f"could not load {preset.hub_id} ({preset.config or 'default'}, {preset.split}) from the Hugging "
            f"Face hub: {exc}",
            fix="check this box is online (or HF_DATASETS_OFFLINE with a warm cache), or download the set "
            "and use --task-file",
        ) from exc
    # Perplexity reads the whole text (the runner's --limit then picks chunks); other kinds read rows.
    rows = _take(dataset, None if preset.kind == "perplexity" else limit)
    origin = f"{HF_PREFIX}{key} ({preset.hub_id})"
    task_name = f"{HF_PREFIX}{key}"
    try:
        return _build(task_name, preset, rows, _label_names(dataset, preset), origin)
    except (KeyError, TypeError) as exc:
        raise DatasetError(
            f"{origin}: rows are not in the expected shape: missing or bad field {exc}"
        ) from exc


def _take(dataset: Iterable[dict[str, Any]], limit: int | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for row in dataset:
        if limit is not None and len(rows) >= limit:
            break
        rows.append(row)
    return rows


def _label_names(dataset: Any, preset: HFPreset) -> list[str] | None:
    """Names of a ClassLabel column (0 -> "negative"), when the dataset declares them."""
    label = preset.fields.get("label")
    feature = getattr(dataset, "features", {}).get(label) if label else None
    names = getattr(feature, "names", None)
    return list(names) if names else None


def _build(
    name: str, preset: HFPreset, rows: list[dict[str, Any]], label_names: list[str] | None, origin: str
) -> Task:
    f = preset.fields
    common: dict[str, Any] = {"description": preset.description, "origin": origin}
    if preset.kind == "qa":
        answers = [tuple(row["answers"]["text"]) for row in rows]
        prompt = QA_PROMPT_UNANSWERABLE if any(not a for a in answers) else QA_PROMPT
        items = [
            build_qa_item(str(row["id"]), row["context"], row["question"], gold, prompt)
            for row, gold in zip(rows, answers, strict=True)
        ]
        return QATask(name, items, **common)
    if preset.kind == "classification":

        def label_of(value: Any) -> str:
            return label_names[int(value)] if label_names is not None else str(value)

        data = [
            (str(i), str(row[f["text"]]).strip(), label_of(row[f["label"]])) for i, row in enumerate(rows)
        ]
        labels = label_names or sorted({label for *_, label in data})
        return ClassificationTask(name, build_classification_items(data, labels), labels, **common)
    if preset.kind == "summarization":
        items = [
            build_summary_item(str(i), row[f["document"]], row[f["summary"]], SUMMARY_PROMPT)
            for i, row in enumerate(rows)
        ]
        return SummarizationTask(name, items, **common)
    if preset.kind == "translation":
        source_lang, target_lang = _LANGUAGES[f["source"]], _LANGUAGES[f["target"]]
        items = [
            build_translation_item(
                str(i),
                row["translation"][f["source"]],
                row["translation"][f["target"]],
                source_lang,
                target_lang,
            )
            for i, row in enumerate(rows)
        ]
        return TranslationTask(name, items, source_lang=source_lang, target_lang=target_lang, **common)
    # WikiText rows are lines ending in "\n" and "" for blank lines: rejoined, paragraphs come back.
    text = "\n".join(str(row[f["text"]]).rstrip("\n") for row in rows)
    return PerplexityTask(name, build_perplexity_items(text), **common)
