"""Where tasks come from: the built-in sets, local files, and Hugging Face presets.

    list_tasks(include_hf=False) -> list[TaskInfo]   cheap: counts built-in items (ms), no network
    get_task("sentiment")        -> Task             a built-in set (package data)
    get_task("hf:squad_v2")      -> Task             a hub preset (needs `datasets` and internet)
    load_task_file(path, "squad", name=None, **options) -> Task
                                                     a local file; formats in loaders.py, options are
                                                     the parser's keywords (summary_field=, ...);
                                                     fmt None/"" is inferred from .json (squad),
                                                     .tsv (tsv-label) or .txt (text)

The built-in sets are original text written for wattlab (no dataset was copied), small enough to
score quality on a box with no internet, and stored in the same standard formats the file loaders
read (wattlab/workloads/data/).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from wattlab.errors import ConfigError, DatasetError
from wattlab.workloads.tasks.base import Task, TaskInfo, TaskKind
from wattlab.workloads.tasks.classification import ClassificationTask
from wattlab.workloads.tasks.hf import HF_PREFIX, HF_PRESETS, load_hf_task
from wattlab.workloads.tasks.loaders import FORMAT_SHAPES, PARSERS
from wattlab.workloads.tasks.perplexity import PerplexityTask
from wattlab.workloads.tasks.qa import QATask
from wattlab.workloads.tasks.summarization import SummarizationTask
from wattlab.workloads.tasks.translation import TranslationTask

TASK_FORMATS: tuple[str, ...] = tuple(PARSERS)

TASK_CLASSES: dict[TaskKind, type[Task]] = {
    "classification": ClassificationTask,
    "qa": QATask,
    "summarization": SummarizationTask,
    "translation": TranslationTask,
    "perplexity": PerplexityTask,
}

SENTIMENT_PROMPT = (
    "Is the sentiment of this review positive or negative?\n\n"
    "Review: {text}\n\n"
    "Answer with one word: {labels}."
)
TOPIC_PROMPT = (
    "What is the topic of this news sentence? Choose one of: {labels}.\n\n"
    "Sentence: {text}\n\n"
    "Answer with one word."
)


@dataclass(frozen=True)
class BuiltinTask:
    """A built-in set: its data file (in wattlab/workloads/data) and how to read it."""

    name: str
    kind: TaskKind
    filename: str
    fmt: str
    description: str
    options: dict[str, Any] = field(default_factory=dict)


BUILTIN_TASKS: dict[str, BuiltinTask] = {
    task.name: task
    for task in (
        BuiltinTask(
            "sentiment", "classification", "sentiment.tsv", "tsv-label",
            "product, film and restaurant reviews: positive or negative",
            {"prompt": SENTIMENT_PROMPT},
        ),
        BuiltinTask(
            "topic", "classification", "topic.tsv", "tsv-label",
            "news sentences: business, politics, science or sports",
            {"prompt": TOPIC_PROMPT},
        ),
        BuiltinTask(
            "qa", "qa", "qa.json", "squad",
            "extractive questions on short paragraphs, SQuAD v1.1 format",
        ),
        BuiltinTask(
            "summarization", "summarization", "summarization.jsonl", "jsonl-summary",
            "short news-style reports with one-sentence reference summaries",
        ),
        BuiltinTask(
            "translation-en-fr", "translation", "translation-en-fr.jsonl", "jsonl-translation",
            "everyday English sentences with French reference translations",
            {"source_field": "en", "target_field": "fr", "source_lang": "English", "target_lang": "French"},
        ),
        BuiltinTask(
            "perplexity", "perplexity", "perplexity.txt", "text",
            "expository English prose cut into ~1,500-character chunks",
            {"chunk_chars": 1500},
        ),
    )
}  # fmt: skip


def list_tasks(include_hf: bool = False) -> list[TaskInfo]:
    """Every built-in task (and, with include_hf, every hub preset, n_items None: never downloaded)."""
    infos = [get_task(name).info() for name in BUILTIN_TASKS]
    if include_hf:
        infos += [
            _info(
                HF_PREFIX + key,
                preset.kind,
                preset.description,
                f"hf:{preset.hub_id} (needs datasets, online)",
            )
            for key, preset in HF_PRESETS.items()
        ]
    return infos


def task_names(include_hf: bool = False) -> list[str]:
    names = list(BUILTIN_TASKS)
    return names + [HF_PREFIX + key for key in HF_PRESETS] if include_hf else names


def get_task(name: str) -> Task:
    """A built-in task by name, or a hub preset as "hf:<preset>". Unknown -> ConfigError listing them."""
    if name.startswith(HF_PREFIX):
        return load_hf_task(name)
    spec = BUILTIN_TASKS.get(name)
    if spec is None:
        raise ConfigError(
            f"unknown task {name!r}",
            fix=f"use one of: {', '.join(task_names(include_hf=True))}; or run a local file with "
            f"--task-file PATH --task-format {{{','.join(TASK_FORMATS)}}}",
            title="Unknown task",
        )
    data = resources.files("wattlab.workloads").joinpath("data", spec.filename)
    try:
        text = data.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise DatasetError(
            f"the built-in data file {spec.filename} is missing from this install",
            fix="reinstall wattlab (the package data was not shipped)",
        ) from exc
    origin = f"built-in {spec.filename}"
    return PARSERS[spec.fmt](text, origin, name=spec.name, description=spec.description, **spec.options)


# Extensions that say which format a file is in; .jsonl is ambiguous (summary or translation).
_FORMAT_BY_SUFFIX = {".json": "squad", ".tsv": "tsv-label", ".txt": "text"}


def load_task_file(
    path: str | Path, fmt: str | None = None, *, name: str | None = None, **options: Any
) -> Task:
    """A task from a local file in one of TASK_FORMATS; `options` go to that format's parser."""
    if not fmt:
        fmt = _FORMAT_BY_SUFFIX.get(Path(path).suffix.lower())
        if fmt is None:
            raise ConfigError(
                f"cannot tell the format of {path} from its name",
                fix=f"pass --task-format, one of: {', '.join(TASK_FORMATS)}",
            )
    parser = PARSERS.get(fmt)
    if parser is None:
        raise ConfigError(f"unknown task format {fmt!r}", fix=f"use one of: {', '.join(TASK_FORMATS)}")
    allowed = [p for p in inspect.signature(parser).parameters if p not in ("text", "origin", "name")]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"option(s) {', '.join(unknown)} do not apply to the {fmt} format",
            fix=f"{fmt} takes: {', '.join(allowed)}",
        )
    file = Path(path).expanduser()
    shape = FORMAT_SHAPES[fmt]
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise DatasetError(f"task file not found: {file}", fix="check the path of --task-file") from exc
    except IsADirectoryError as exc:
        raise DatasetError(f"task file {file} is a directory", fix="give the path of one file") from exc
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})",
            fix=f"save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8); {shape}",
        ) from exc
    except OSError as exc:
        raise DatasetError(
            f"cannot read task file {file}: {exc.strerror}", fix="check the path and its permissions"
        ) from exc
    try:
        return parser(text, str(file), name=name or file.stem, **options)
    except DatasetError as exc:
        if exc.fix:
            raise
        # Every shape problem of a user file gets the format's expected shape as its fix.
        raise DatasetError(exc.message, fix=f"{shape} (format {fmt})", title=exc.title) from exc


def _info(name: str, kind: TaskKind, description: str, origin: str) -> TaskInfo:
    cls = TASK_CLASSES[kind]
    return TaskInfo(
        name=name,
        kind=kind,
        metrics=cls.metrics,
        max_new_tokens=cls.default_max_new_tokens,
        needs_logprobs=cls.needs_logprobs,
        description=description,
        origin=origin,
    )
