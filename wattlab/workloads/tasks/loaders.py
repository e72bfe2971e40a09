"""Loaders for task files in their usual formats; the built-in sets use the same ones.

Format (`fmt`)       Shape                                                   Task
-------------------  ------------------------------------------------------  --------------
squad                SQuAD v1.1 / v2.0 JSON: {"data": [{"paragraphs": [{     QATask
                     "context", "qas": [{"id", "question", "answers": [{
                     "text"}], "is_impossible"?}]}]}]}
jsonl-summary        one JSON object a line: {"document": str, "summary":   SummarizationTask
                     str | [str], "id"?}; field names configurable
jsonl-translation    one JSON object a line: {"source": str, "target": str,  TranslationTask
                     "id"?}; field names and languages configurable
tsv-label            text<TAB>label a line; an optional header row naming    ClassificationTask
                     the columns ("sentence"/"text" and "label")
text                 plain text, cut into chunks for perplexity              PerplexityTask

A file in the wrong shape raises DatasetError naming the field it expected and where: the line
number for line-based formats, the JSON path (data[2].paragraphs[0].qas[1]) for SQuAD.
Each parser takes the file's text and an `origin` (the path, for messages) so package data and
user files go through one code path.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from wattlab.errors import DatasetError
from wattlab.workloads.tasks.base import Task, TaskItem
from wattlab.workloads.tasks.classification import (
    DEFAULT_PROMPT,
    ClassificationTask,
    build_classification_items,
)
from wattlab.workloads.tasks.perplexity import DEFAULT_CHUNK_CHARS, PerplexityTask, build_perplexity_items
from wattlab.workloads.tasks.qa import QA_PROMPT, QA_PROMPT_UNANSWERABLE, QATask, build_qa_item
from wattlab.workloads.tasks.summarization import SUMMARY_PROMPT, SummarizationTask, build_summary_item
from wattlab.workloads.tasks.translation import TRANSLATION_PROMPT, TranslationTask, build_translation_item

# ----------------------------------------------------------------------------- SQuAD JSON


def parse_squad(text: str, origin: str, *, name: str, description: str = "") -> QATask:
    """SQuAD v1.1 or v2.0. v2 questions with is_impossible=true get no gold answer (reference ())."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{origin}: not valid JSON (line {exc.lineno}: {exc.msg})") from exc
    if not isinstance(document, dict) or "data" not in document:
        raise DatasetError(
            f"{origin}: expected a SQuAD JSON object with the top-level field 'data'",
            fix="pass a SQuAD v1.1/v2.0 file (train-v1.1.json, dev-v2.0.json, ...)",
        )
    rows: list[tuple[str, str, str, tuple[str, ...]]] = []  # (id, context, question, answers)
    for a, article in enumerate(_list_field(document, "data", origin, "")):
        for p, paragraph in enumerate(_list_field(article, "paragraphs", origin, f"data[{a}]")):
            where = f"data[{a}].paragraphs[{p}]"
            context = _str_field(paragraph, "context", origin, where)
            for q, qa in enumerate(_list_field(paragraph, "qas", origin, where)):
                at = f"{where}.qas[{q}]"
                question = _str_field(qa, "question", origin, at)
                item_id = str(qa.get("id", f"{a}-{p}-{q}"))
                if qa.get("is_impossible", False):
                    answers: tuple[str, ...] = ()
                else:
                    answer_list = _list_field(qa, "answers", origin, at)
                    answers = tuple(
                        _str_field(answer, "text", origin, f"{at}.answers[{i}]")
                        for i, answer in enumerate(answer_list)
                    )
                    if not answers:
                        raise DatasetError(
                            f"{origin}: {at}: expected at least one entry in 'answers' "
                            "(or 'is_impossible': true for an unanswerable question)"
                        )
                rows.append((item_id, context, question, answers))
    if not rows:
        raise DatasetError(f"{origin}: no questions found under data[].paragraphs[].qas[]")
    has_unanswerable = any(not answers for *_, answers in rows)
    prompt = QA_PROMPT_UNANSWERABLE if has_unanswerable else QA_PROMPT
    items = [build_qa_item(i, c, q, answers, prompt) for i, c, q, answers in rows]
    return QATask(name, items, description=description, origin=origin)


def _list_field(obj: Any, field: str, origin: str, where: str) -> list[Any]:
    value = _field(obj, field, origin, where)
    if not isinstance(value, list):
        raise DatasetError(f"{origin}: {_path(where, field)}: expected a list, got {type(value).__name__}")
    return value


def _str_field(obj: Any, field: str, origin: str, where: str) -> str:
    value = _field(obj, field, origin, where)
    if not isinstance(value, str):
        raise DatasetError(f"{origin}: {_path(where, field)}: expected a string, got {type(value).__name__}")
    return value


def _field(obj: Any, field: str, origin: str, where: str) -> Any:
    if not isinstance(obj, dict):
        raise DatasetError(f"{origin}: {where or 'top level'}: expected an object with field '{field}'")
    if field not in obj:
        found = ", ".join(sorted(obj)) or "none"
        raise DatasetError(f"{origin}: {where or 'top level'}: expected field '{field}' (found: {found})")
    return obj[field]


def _path(where: str, field: str) -> str:
    return f"{where}.{field}" if where else field


# ----------------------------------------------------------------------------- JSON lines


def _json_lines(text: str, origin: str) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line."""
    records: list[tuple[int, dict[str, Any]]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{origin} line {number}: not valid JSON ({exc.msg})") from exc
        if not isinstance(record, dict):
            raise DatasetError(f"{origin} line {number}: expected a JSON object, got {type(record).__name__}")
        records.append((number, record))
    if not records:
        raise DatasetError(f"{origin}: no records (the file is empty)")
    return records


def _line_text(record: dict[str, Any], field: str, origin: str, number: int, option: str) -> str:
    if field not in record:
        found = ", ".join(sorted(record)) or "none"
        raise DatasetError(
            f"{origin} line {number}: expected field '{field}' (found: {found})",
            fix=f"rename the field, or name it with {option}=",
        )
    value = record[field]
    if not isinstance(value, str) or not value.strip():
        raise DatasetError(f"{origin} line {number}: field '{field}' must be a non-empty string")
    return value


def parse_jsonl_summary(
    text: str,
    origin: str,
    *,
    name: str,
    description: str = "",
    document_field: str = "document",
    summary_field: str = "summary",
    id_field: str = "id",
) -> SummarizationTask:
    """Document/summary pairs; a summary may be a list of reference summaries."""
    items: list[TaskItem] = []
    for number, record in _json_lines(text, origin):
        document = _line_text(record, document_field, origin, number, "document_field")
        summary = record.get(summary_field)
        if isinstance(summary, list) and summary and all(isinstance(s, str) and s.strip() for s in summary):
            reference: str | Sequence[str] = summary
        else:
            reference = _line_text(record, summary_field, origin, number, "summary_field")
        item_id = str(record.get(id_field, number))
        items.append(build_summary_item(item_id, document, reference, SUMMARY_PROMPT))
    return SummarizationTask(name, items, description=description, origin=origin)


def parse_jsonl_translation(
    text: str,
    origin: str,
    *,
    name: str,
    description: str = "",
    source_field: str = "source",
    target_field: str = "target",
    id_field: str = "id",
    source_lang: str = "English",
    target_lang: str = "French",
) -> TranslationTask:
    """Sentence pairs: translate `source_field` (in source_lang) into `target_field` (target_lang)."""
    items = []
    for number, record in _json_lines(text, origin):
        source = _line_text(record, source_field, origin, number, "source_field")
        target = _line_text(record, target_field, origin, number, "target_field")
        item_id = str(record.get(id_field, number))
        items.append(
            build_translation_item(item_id, source, target, source_lang, target_lang, TRANSLATION_PROMPT)
        )
    return TranslationTask(
        name, items, source_lang=source_lang, target_lang=target_lang, description=description, origin=origin
    )


# ----------------------------------------------------------------------------- TSV


def parse_tsv_label(
    text: str,
    origin: str,
    *,
    name: str,
    description: str = "",
    text_column: str | None = None,
    label_column: str = "label",
    prompt: str = DEFAULT_PROMPT,
) -> ClassificationTask:
    """Sentence<TAB>label lines.

    Header rule: the first line is a header when it contains `label_column` and `text_column` (by
    default "sentence" or "text"), case-insensitively; columns are then found by name, and extra
    columns are ignored. Without a header the text is column 1 and the label column 2 — unless a
    column was named explicitly, which requires a header. The label set, listed in the prompt, is
    every distinct label in the file, sorted.
    """
    lines = [(n, line.rstrip("\r")) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        raise DatasetError(f"{origin}: no rows (the file is empty)")
    header = [cell.strip().lower() for cell in lines[0][1].split("\t")]
    text_names = (text_column.lower(),) if text_column else ("sentence", "text")
    text_name = next((t for t in text_names if t in header), None)
    if label_column.lower() in header and text_name is not None:
        text_index, label_index = header.index(text_name), header.index(label_column.lower())
        text_field, label_field = text_name, label_column
        lines = lines[1:]
    elif text_column is not None or label_column != "label":
        wanted = [c for c in (text_column, label_column) if c is not None]
        raise DatasetError(
            f"{origin} line {lines[0][0]}: expected a header row naming the column(s) {', '.join(wanted)}",
            fix="add a tab-separated header row, or drop the column options to read text<TAB>label",
        )
    else:
        text_index, label_index = 0, 1
        text_field, label_field = "sentence", "label"
    rows: list[tuple[str, str, str]] = []
    for number, line in lines:
        cells = line.split("\t")
        for index, field in ((text_index, text_field), (label_index, label_field)):
            if index >= len(cells) or not cells[index].strip():
                raise DatasetError(
                    f"{origin} line {number}: expected field '{field}' in column {index + 1} "
                    f"(the line has {len(cells)} tab-separated column(s))",
                    fix="separate text and label with a tab character",
                )
        rows.append((str(number), cells[text_index].strip(), cells[label_index].strip()))
    if not rows:
        raise DatasetError(f"{origin}: a header but no rows")
    labels = sorted({label for *_, label in rows})
    items = build_classification_items(rows, labels, prompt)
    return ClassificationTask(name, items, labels, description=description, origin=origin)


# ----------------------------------------------------------------------------- plain text


def parse_text(
    text: str, origin: str, *, name: str, description: str = "", chunk_chars: int = DEFAULT_CHUNK_CHARS
) -> PerplexityTask:
    """Plain UTF-8 text, cut into chunks of at most `chunk_chars` characters (perplexity.chunk_text)."""
    if not text.strip():
        raise DatasetError(f"{origin}: no text (the file is empty)")
    return PerplexityTask(
        name, build_perplexity_items(text, int(chunk_chars)), description=description, origin=origin
    )


Parser = Callable[..., Task]

# What a file of each format must look like: the fix for a file that does not.
FORMAT_SHAPES: dict[str, str] = {
    "squad": 'write SQuAD JSON: {"data": [{"paragraphs": [{"context": "...", '
    '"qas": [{"question": "...", "answers": [{"text": "..."}]}]}]}]}',
    "jsonl-summary": 'write one JSON object a line: {"document": "...", "summary": "..."}',
    "jsonl-translation": 'write one JSON object a line: {"source": "...", "target": "..."}',
    "tsv-label": "write one text<TAB>label pair a line (an optional first row: text<TAB>label)",
    "text": "write plain UTF-8 text: at least one line that is not blank",
}

PARSERS: dict[str, Parser] = {
    "squad": parse_squad,
    "jsonl-summary": parse_jsonl_summary,
    "jsonl-translation": parse_jsonl_translation,
    "tsv-label": parse_tsv_label,
    "text": parse_text,
}
