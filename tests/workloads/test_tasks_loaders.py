"""Loaders for standard task files, on small files written here, and the Hugging Face presets."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from wattlab.errors import ConfigError, DatasetError
from wattlab.workloads.tasks import TASK_FORMATS, get_task, load_task_file
from wattlab.workloads.tasks.hf import load_hf_task


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _jsonl(*records: Any) -> str:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n"


def test_formats_offered() -> None:
    assert set(TASK_FORMATS) == {"squad", "jsonl-summary", "jsonl-translation", "tsv-label", "text"}


# ----------------------------------------------------------------------------- SQuAD


def _squad(qas: list[dict[str, Any]], context: str = "Ada Lovelace wrote the first program in 1843.") -> str:
    return json.dumps(
        {"version": "1.1", "data": [{"title": "T", "paragraphs": [{"context": context, "qas": qas}]}]}
    )


def test_squad_v11(tmp_path: Path) -> None:
    qas: list[dict[str, Any]] = [
        {
            "id": "q1",
            "question": "Who wrote the first program?",
            "answers": [{"text": "Ada Lovelace", "answer_start": 0}],
        },
        {
            "id": "q2",
            "question": "When?",
            "answers": [{"text": "1843", "answer_start": 39}, {"text": "in 1843"}],
        },
    ]
    task = load_task_file(_write(tmp_path, "dev.json", _squad(qas)), "squad")
    assert task.name == "dev"
    assert task.kind == "qa"
    items = task.items()
    assert [item.id for item in items] == ["q1", "q2"]
    assert items[1].reference == ("1843", "in 1843")
    assert items[0].source == "Ada Lovelace wrote the first program in 1843."
    assert "Who wrote the first program?" in items[0].prompt
    assert "unanswerable" not in items[0].prompt
    score = task.score(items, ["Ada Lovelace", "In 1843."])
    assert score.metrics == pytest.approx({"f1": 1.0, "exact_match": 1.0})


def test_squad_v2_unanswerable(tmp_path: Path) -> None:
    qas: list[dict[str, Any]] = [
        {
            "id": "a",
            "question": "Who?",
            "answers": [{"text": "Ada Lovelace", "answer_start": 0}],
            "is_impossible": False,
        },
        {
            "id": "b",
            "question": "Which language?",
            "answers": [],
            "plausible_answers": [{"text": "x"}],
            "is_impossible": True,
        },
    ]
    task = load_task_file(_write(tmp_path, "dev-v2.json", _squad(qas)), "squad")
    items = task.items()
    assert items[1].reference == ()
    assert 'reply "unanswerable"' in items[1].prompt
    score = task.score(items, ["Ada Lovelace", "Unanswerable."])
    assert score.metrics == pytest.approx({"f1": 1.0, "exact_match": 1.0})
    assert score.info["unanswerable_items"] == 1
    wrong = task.score(items, ["unanswerable", "Python"])
    assert wrong.metrics == pytest.approx({"f1": 0.0, "exact_match": 0.0})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"version": "1.1"}', "'data'"),
        ('{"data": [{"title": "T"}]}', "data[0]: expected field 'paragraphs'"),
        (_squad([{"id": "q", "answers": []}]), "data[0].paragraphs[0].qas[0]: expected field 'question'"),
        (_squad([{"id": "q", "question": "Q?"}]), "expected field 'answers'"),
        (
            _squad([{"id": "q", "question": "Q?", "answers": [{"start": 1}]}]),
            "answers[0]: expected field 'text'",
        ),
        (_squad([{"id": "q", "question": "Q?", "answers": []}]), "at least one entry in 'answers'"),
        ('{"data": [', "not valid JSON (line 1"),
    ],
)
def test_squad_wrong_shape_names_the_field(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(DatasetError) as caught:
        load_task_file(_write(tmp_path, "bad.json", text), "squad")
    assert expected in caught.value.message
    assert "bad.json" in caught.value.message


# ----------------------------------------------------------------------------- JSONL


def test_jsonl_summary_defaults_and_several_references(tmp_path: Path) -> None:
    text = _jsonl(
        {"id": "s1", "document": "The mill reopened after repairs.", "summary": "The mill reopened."},
        "",
        {"document": "Rain closed the road.", "summary": ["Rain closed the road.", "The road shut."]},
    )
    task = load_task_file(_write(tmp_path, "sums.jsonl", text), "jsonl-summary")
    items = task.items()
    assert [item.id for item in items] == ["s1", "3"]  # no id: the line number
    assert items[1].reference == ("Rain closed the road.", "The road shut.")
    assert items[0].source == "The mill reopened after repairs."
    assert "The mill reopened after repairs." in items[0].prompt
    score = task.score(items, ["The mill reopened.", "The road shut."])
    assert score.metrics["rougeL"] == pytest.approx(1.0)


def test_jsonl_summary_custom_field_names(tmp_path: Path) -> None:
    text = _jsonl({"article": "Long text here.", "highlights": "Short."})
    task = load_task_file(
        _write(tmp_path, "cnn.jsonl", text),
        "jsonl-summary",
        document_field="article",
        summary_field="highlights",
    )
    assert task.items()[0].reference == "Short."


@pytest.mark.parametrize(
    ("line2", "expected"),
    [
        ({"document": "Text."}, "line 2: expected field 'summary' (found: document)"),
        ({"doc": "Text.", "summary": "S"}, "line 2: expected field 'document'"),
        ({"document": "Text.", "summary": ""}, "line 2: field 'summary' must be a non-empty string"),
        ('{"document": "Text.",', "line 2: not valid JSON"),
        ("[1, 2]", "line 2: expected a JSON object"),
    ],
)
def test_jsonl_summary_wrong_shape(tmp_path: Path, line2: Any, expected: str) -> None:
    text = _jsonl({"document": "Fine.", "summary": "Fine."}, line2)
    with pytest.raises(DatasetError) as caught:
        load_task_file(_write(tmp_path, "bad.jsonl", text), "jsonl-summary")
    assert expected in caught.value.message


def test_jsonl_translation(tmp_path: Path) -> None:
    text = _jsonl({"source": "Good morning.", "target": "Guten Morgen."})
    task = load_task_file(_write(tmp_path, "de.jsonl", text), "jsonl-translation", target_lang="German")
    item = task.items()[0]
    assert "into German" in item.prompt and "English: Good morning." in item.prompt
    assert item.reference == "Guten Morgen."
    with pytest.raises(DatasetError, match="line 1: expected field 'target'"):
        load_task_file(_write(tmp_path, "bad.jsonl", _jsonl({"source": "Hi."})), "jsonl-translation")


# ----------------------------------------------------------------------------- TSV


def test_tsv_with_header_in_any_column_order(tmp_path: Path) -> None:
    text = "label\tsource\tsentence\npos\tweb\tGreat!\nneg\tweb\tAwful.\n"
    task = load_task_file(_write(tmp_path, "sst.tsv", text), "tsv-label")
    items = task.items()
    assert [(item.id, item.reference) for item in items] == [("2", "pos"), ("3", "neg")]
    assert "Text: Great!" in items[0].prompt
    assert "neg or pos" in items[0].prompt  # labels sorted, listed in the prompt
    assert task.score(items, ["pos", "The answer is neg."]).metrics["accuracy"] == 1.0


def test_tsv_without_header(tmp_path: Path) -> None:
    task = load_task_file(_write(tmp_path, "plain.tsv", "Great!\tpos\n\nAwful.\tneg\n"), "tsv-label")
    assert [item.reference for item in task.items()] == ["pos", "neg"]


def test_tsv_named_columns(tmp_path: Path) -> None:
    text = "review\tstars\nLovely.\tgood\nBroken.\tbad\n"
    task = load_task_file(
        _write(tmp_path, "r.tsv", text), "tsv-label", text_column="review", label_column="stars"
    )
    assert [item.reference for item in task.items()] == ["good", "bad"]
    with pytest.raises(DatasetError, match="header row naming the column"):
        load_task_file(_write(tmp_path, "nohead.tsv", "Lovely.\tgood\n"), "tsv-label", text_column="review")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sentence\tlabel\nGreat!\tpos\nAwful.\n", "line 3: expected field 'label' in column 2"),
        ("sentence\tlabel\nGreat!\tpos\n\tneg\n", "line 3: expected field 'sentence' in column 1"),
        ("Great!\tpos\nAwful. neg\n", "line 2: expected field 'label'"),
        ("Great!\tpos\nFine.\tpos\n", "at least two distinct labels"),
        ("sentence\tlabel\n", "a header but no rows"),
    ],
)
def test_tsv_wrong_shape(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(DatasetError, match=expected):
        load_task_file(_write(tmp_path, "bad.tsv", text), "tsv-label")


# ----------------------------------------------------------------------------- text


def test_text_for_perplexity(tmp_path: Path) -> None:
    paragraphs = ["Sentence one is here. " * 5, "Another paragraph follows. " * 5, "Last. " * 3]
    path = _write(tmp_path, "corpus.txt", "\n\n".join(p.strip() for p in paragraphs))
    task = load_task_file(path, "text", chunk_chars=250)
    items = task.items()
    assert task.needs_logprobs
    assert all(item.text and len(item.text) <= 250 and item.messages == () for item in items)
    assert " ".join(" ".join(item.text or "" for item in items).split()) == " ".join(
        " ".join(paragraphs).split()
    )
    with pytest.raises(DatasetError, match="empty"):
        load_task_file(_write(tmp_path, "empty.txt", "\n \n"), "text")


# ----------------------------------------------------------------------------- load_task_file errors


def test_load_task_file_errors(tmp_path: Path) -> None:
    path = _write(tmp_path, "x.jsonl", _jsonl({"document": "d", "summary": "s"}))
    with pytest.raises(ConfigError, match="unknown task format 'csv'"):
        load_task_file(path, "csv")
    with pytest.raises(ConfigError) as caught:
        load_task_file(path, "jsonl-summary", label_column="x")
    assert "label_column" in caught.value.message
    assert caught.value.fix is not None and "summary_field" in caught.value.fix
    with pytest.raises(DatasetError, match="not found"):
        load_task_file(tmp_path / "missing.json", "squad")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(DatasetError, match="not UTF-8"):
        load_task_file(latin1, "text")
    assert load_task_file(path, "jsonl-summary", name="mine").name == "mine"
    with pytest.raises(ConfigError, match="cannot tell the format"):
        load_task_file(path)  # .jsonl: summary or translation?


def test_format_inferred_from_the_suffix(tmp_path: Path) -> None:
    assert load_task_file(_write(tmp_path, "a.tsv", "Great!\tpos\nAwful.\tneg\n")).kind == "classification"
    assert load_task_file(_write(tmp_path, "b.txt", "Some text to score.")).kind == "perplexity"
    qas = [{"id": "q", "question": "Who?", "answers": [{"text": "Ada"}]}]
    assert load_task_file(_write(tmp_path, "c.json", _squad(qas)), "").kind == "qa"


# ----------------------------------------------------------------------------- Hugging Face presets


class _FakeDataset(list):  # type: ignore[type-arg]
    """Rows plus a `features` mapping, the two things the preset loader reads."""

    def __init__(self, rows: list[dict[str, Any]], features: dict[str, Any] | None = None) -> None:
        super().__init__(rows)
        self.features = features or {}


def _fake_datasets(
    monkeypatch: pytest.MonkeyPatch, dataset: Any = None, error: Exception | None = None
) -> list[Any]:
    calls: list[Any] = []

    def load_dataset(path: str, name: str | None = None, split: str | None = None) -> Any:
        calls.append((path, name, split))
        if error is not None:
            raise error
        return dataset

    module = types.ModuleType("datasets")
    module.load_dataset = load_dataset  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "datasets", module)
    return calls


def test_hf_without_the_datasets_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(DatasetError) as caught:
        get_task("hf:squad")
    assert "datasets" in caught.value.message
    assert caught.value.fix is not None and "--task-file" in caught.value.fix


def test_hf_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_datasets(monkeypatch, error=ConnectionError("no route to huggingface.co"))
    with pytest.raises(DatasetError, match=r"no route to huggingface\.co"):
        load_hf_task("hf:xsum")


def test_hf_unknown_preset() -> None:
    with pytest.raises(ConfigError, match="unknown Hugging Face preset"):
        load_hf_task("hf:nope")


def test_hf_squad_v2_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [
        {
            "id": "x1",
            "context": "Ada wrote code.",
            "question": "Who?",
            "answers": {"text": ["Ada"], "answer_start": [0]},
        },
        {
            "id": "x2",
            "context": "Ada wrote code.",
            "question": "When?",
            "answers": {"text": [], "answer_start": []},
        },
        {
            "id": "x3",
            "context": "More.",
            "question": "Q?",
            "answers": {"text": ["More"], "answer_start": [0]},
        },
    ]
    calls = _fake_datasets(monkeypatch, _FakeDataset(rows))
    task = load_hf_task("hf:squad_v2", limit=2)
    assert calls == [("rajpurkar/squad_v2", None, "validation")]
    items = task.items()
    assert [item.reference for item in items] == [("Ada",), ()]
    assert "unanswerable" in items[0].prompt
    assert task.score(items, ["Ada", "unanswerable"]).metrics["exact_match"] == 1.0


def test_hf_classification_uses_label_names(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [{"sentence": "great film ", "label": 1}, {"sentence": "dull", "label": 0}]
    features = {"label": types.SimpleNamespace(names=["negative", "positive"])}
    _fake_datasets(monkeypatch, _FakeDataset(rows, features))
    task = get_task("hf:sst2")
    assert [item.reference for item in task.items()] == ["positive", "negative"]
    assert "negative or positive" in task.items()[0].prompt


def test_hf_rows_in_the_wrong_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_datasets(monkeypatch, _FakeDataset([{"text": "no document field"}]))
    with pytest.raises(DatasetError, match="'document'"):
        load_hf_task("hf:xsum")


def test_hf_wikitext_rejoins_lines_into_paragraphs(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [{"text": " = Title = \n"}, {"text": ""}, {"text": " First paragraph .\n"}, {"text": ""}]
    _fake_datasets(monkeypatch, _FakeDataset(rows))
    task = load_hf_task("hf:wikitext-2", limit=1)  # limit picks chunks later, not lines here
    assert [item.text for item in task.items()] == ["= Title =\n\nFirst paragraph ."]
