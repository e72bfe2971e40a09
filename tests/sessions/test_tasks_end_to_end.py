"""Every built-in task end to end on the bundled model, on every installed engine, through the real
runner; perplexity agreement across engines; and the guidelines report built from that session."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from wattlab.engines import installed_engines
from wattlab.sessions.store import Store
from wattlab.workloads.tasks import list_tasks

pytestmark = pytest.mark.slow

ENGINES = [e for e in ("llamacpp", "transformers", "vllm") if e in installed_engines()]
TASKS = [t.name for t in list_tasks()]
LIMIT = 3


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if not ENGINES:
        pytest.skip("no local engine installed")
    tmp = tmp_path_factory.mktemp("tasks")
    sweep = tmp / "tasks.toml"
    sweep.write_text(
        f"""
[session]
name = "quality on every engine"
idle_s = 0.3

[defaults]
limit = {LIMIT}
batch_size = {LIMIT}
warmup_requests = 0

[grid]
engine = {json.dumps(ENGINES)}
task = {json.dumps(TASKS)}
"""
    )
    db = tmp / "w.duckdb"
    out = subprocess.run(
        [sys.executable, "-m", "wattlab.cli", "sweep", str(sweep), "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    store = Store(db)
    return {
        "db": db,
        "store": store,
        "tmp": tmp,
        "runs": store.query_dicts("SELECT * FROM runs ORDER BY seq"),
    }


def test_every_task_ran_on_every_engine_with_its_metrics(session: dict[str, Any]) -> None:
    runs = session["runs"]
    assert {(r["engine"], r["task"]) for r in runs} == {(e, t) for e in ENGINES for t in TASKS}
    store: Store = session["store"]
    for r in runs:
        assert r["status"] == "finished", (r["engine"], r["task"], r["error"])
        assert r["quality"] is not None and r["quality_metric"], (r["engine"], r["task"])
        assert r["energy_j"] and r["energy_j"] > 0
        metrics = dict(store.query("SELECT metric, value FROM quality WHERE run_id = ?", [r["run_id"]])[1])
        task = next(t for t in list_tasks() if t.name == r["task"])
        assert set(task.metrics) <= set(metrics), (r["task"], metrics)
        if r["task"] != "perplexity":
            outputs = store.query("SELECT output_text FROM requests WHERE run_id = ?", [r["run_id"]])[1]
            assert len(outputs) == LIMIT  # the generated outputs are stored for audit
        result = json.loads(r["result_json"])
        assert result["green_index"] is not None and "formula" in result["green_index_inputs"]


def test_perplexity_agrees_across_engines(session: dict[str, Any]) -> None:
    ppl = {r["engine"]: r["quality"] for r in session["runs"] if r["task"] == "perplexity"}
    if len(ppl) < 2:
        pytest.skip("needs two engines with log-probabilities")
    values = list(ppl.values())
    # Q4_1 kernels (llama.cpp) vs the de-quantized weights (transformers, vLLM): a few % apart.
    assert max(values) / min(values) < 1.06, ppl


def test_the_report_is_built_from_the_session(session: dict[str, Any]) -> None:
    out_dir = session["tmp"] / "report"
    res = subprocess.run(
        [sys.executable, "-m", "wattlab.cli", "report", "--out", str(out_dir), "--db", str(session["db"])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    md = (out_dir / "report.md").read_text()
    html = (out_dir / "report.html").read_text()
    assert "## Pareto front: j_per_token vs quality" in md
    assert "## Effects against the baseline" in md and "## Recommendations" in md
    assert "Lowest energy per output token:" in md
    for r in session["runs"]:
        assert r["run_id"] in md
    assert "<svg" in html and (out_dir / "energy_phases.svg").exists()
    # Effects are computed, not canned: one line per other configuration, with its numbers.
    effects = md.split("## Effects against the baseline")[1].split("## Recommendations")[0]
    assert effects.count("J/token") >= len(session["runs"]) - 1
