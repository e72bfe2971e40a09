"""Prompt files: one JSON object a line, for real-workload runs.

Each line holds either {"prompt": "text"} or {"messages": [{"role": "user", "content": "..."}]},
optionally with "max_tokens" (that request's output budget). Lines can be binned by their
templated token length (`input_bin = [lo, hi]`), as in Fernandez et al.'s binned workloads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from wattlab.errors import DatasetError


def read_prompt_file(path: str | Path) -> list[dict[str, Any]]:
    p = Path(path).expanduser()
    if not p.exists():
        raise DatasetError(f"prompt file {p} does not exist", fix="give the path of a JSONL prompt file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"prompt file {p} is not UTF-8 text ({exc.reason} at byte {exc.start})",
            fix='save it as UTF-8 (e.g. iconv -f latin1 -t utf-8), one {"prompt": "..."} object a line',
        ) from None
    except OSError as exc:
        raise DatasetError(
            f"cannot read prompt file {p}: {exc.strerror}", fix="check the path and its permissions"
        ) from None
    items = []
    for lineno, line in enumerate(text.split("\n"), 1):  # not splitlines: JSON may hold U+2028
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(
                f"{p}:{lineno} is not valid JSON ({exc.msg})",
                fix='each line must be a JSON object like {"prompt": "..."}',
            ) from exc
        if not isinstance(obj, dict) or not ("prompt" in obj or "messages" in obj):
            raise DatasetError(
                f'{p}:{lineno} has no "prompt" or "messages" field',
                fix='each line must be {"prompt": "..."} or {"messages": [{"role": ..., "content": ...}]}',
            )
        if "messages" not in obj:
            obj = {**obj, "messages": [{"role": "user", "content": str(obj["prompt"])}]}
        items.append(obj)
    if not items:
        raise DatasetError(f"prompt file {p} has no prompts", fix="add one JSON object per line")
    return items
