"""benchmarks/gpu_study.toml passes the preflight except for the GPU this box lacks, and
benchmarks/peers_side_by_side.py runs end to end on a fake NVML."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from wattlab.sessions.plan import check_sweep
from wattlab.sessions.spec import load_sweep

ROOT = Path(__file__).resolve().parents[2]


def test_the_study_sweep_is_valid_but_for_device_availability() -> None:
    sweep = load_sweep(ROOT / "benchmarks" / "gpu_study.toml")
    half = load_sweep(ROOT / "benchmarks" / "gpu_study_llamacpp.toml")  # after llama.cpp's CUDA build
    specs = [s for s, _ in sweep.runs]
    assert {s.engine for s in specs} == {"transformers", "vllm"}
    assert {s.engine for s, _ in half.runs} == {"llamacpp"}
    # llama.cpp runs the same random shape as the other two
    assert "random:llama-3.2-1b" in {s.model for s, _ in half.runs} & {s.model for s in specs}
    assert sweep.session.meters == "nvml"
    assert all(s.device == "cuda" for s in specs)
    # The comparisons the study exists for are all there.
    assert {s.batch_size for s in specs if s.engine == "transformers"} == {1, 8, 64}
    assert {s.rate for s in specs if s.mode == "online"} == {4.0, 16.0, 64.0}
    assert {s.batch_size for s in specs if s.model == "random:llama-3.1-8b"} == {8, 64}
    assert any(s.options.get("enforce_eager") is True for s in specs)
    assert any(s.options.get("enable_prefix_caching") is True for s in specs)
    # Every problem the preflight finds here is about the GPU this CPU box lacks (or, on a GPU
    # box, none): engine options, models, variants and token budgets are all accepted.
    for problem, _runs in [*check_sweep(sweep), *check_sweep(half)]:
        assert problem.key == "device" and "no NVIDIA GPU" in problem.text, problem


def test_the_study_script_writes_what_comes_back() -> None:
    script = (ROOT / "benchmarks" / "gpu_study.sh").read_text()
    assert subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "gpu_study.sh")]).returncode == 0
    for name in (
        "gpu_study.duckdb",
        "nvml_log.jsonl",
        "reconcile.json",
        "report.md",
        "peers.json",
        "study.log",
    ):
        assert name in script
    assert "benchmarks/gpu_study.toml" in script


@pytest.mark.slow
def test_peers_side_by_side_on_a_fake_nvml(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "peers_side_by_side.py"), "--fake", "--lengths", "0.3,1.2",
         "--intensities", "idle,low", "--gap", "0.2", "--json", str(tmp_path / "peers.json")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "peers.json").read_text())
    assert [w["key"] for w in report["windows"]] == ["idle-0.3s-1", "idle-1.2s-1", "low-0.3s-1", "low-1.2s-1"]
    assert any("zeus" in n for n in report["notes"])  # skipped with a note, not a crash
    for w in report["windows"]:
        wattlab = w["tools"]["wattlab"]
        assert wattlab["window_s"] == pytest.approx(w["seconds"], abs=0.1)
        # The fake GPUs draw a function of the shared clock, so both processes see the same energy,
        # but for an edge near a 100 W step read 100 ms apart by the logger (up to ~2% of 1.2 s).
        assert wattlab["diff_pct"] == pytest.approx(0.0, abs=5.0)
        assert set(w["cpu_s"]) >= {"wattlab", "outside_log"}
    assert set(report["summary_by_length"]) == {"0.3s", "1.2s"}
    assert (tmp_path / "peers_nvml_log.jsonl").exists()
