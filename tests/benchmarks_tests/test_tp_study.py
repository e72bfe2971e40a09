"""The tensor-parallel study (benchmarks/tp_study*.toml, tp_study.sh): every TOML passes the preflight
but for the GPUs this box lacks, a box with too few GPUs is refused naming its count, the script's
filter numbers the blocks that fit, and the random 70B-class shapes have their published sizes."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

from wattlab.engines import derive
from wattlab.engines.random_gguf import arch_shape, tensor_plan
from wattlab.sessions.plan import check_sweep
from wattlab.sessions.spec import RunSpec, load_sweep, parse_sweep

ROOT = Path(__file__).resolve().parents[2]
STUDY, CHECK = ROOT / "benchmarks" / "tp_study.toml", ROOT / "benchmarks" / "tp_study_check.toml"


def _part_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tp_study_part", ROOT / "benchmarks" / "tp_study_part.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _layout(s: RunSpec) -> tuple[int, int, str]:
    o = s.options
    return o.get("tensor_parallel_size", 1), o.get("pipeline_parallel_size", 1), o.get("quantization", "none")


def test_the_70b_study_has_the_runs_it_exists_for() -> None:
    specs = [s for s, _ in load_sweep(STUDY).runs]
    assert {s.engine for s in specs} == {"vllm"} and all(s.device == "cuda" for s in specs)
    assert {s.model for s in specs} == {"random:llama-3.1-70b", "random:qwen2.5-72b"}
    assert {(s.input_tokens, s.output_tokens) for s in specs} == {(512, 256)}
    layouts = {_layout(s) for s in specs if s.model == "random:llama-3.1-70b"}
    assert layouts == {(tp, pp, q) for tp, pp in ((4, 1), (8, 1), (4, 2)) for q in ("none", "fp8")}
    for layout in layouts:  # every block: batch 8 / 64 / 256 offline and one online rate
        block = [s for s in specs if _layout(s) == layout and s.model == "random:llama-3.1-70b"]
        assert {s.batch_size for s in block if s.mode == "offline"} == {8, 64, 256}
        assert len([s for s in block if s.mode == "online" and s.rate]) == 1
    assert load_sweep(STUDY).session.meters == "nvml"


@pytest.mark.parametrize("path", [STUDY, CHECK], ids=lambda p: p.name)
def test_the_study_is_valid_but_for_device_availability(path: Path) -> None:
    for problem, _runs in check_sweep(load_sweep(path)):
        assert problem.key == "device" and "no NVIDIA GPU" in problem.text, problem


def test_the_check_is_the_same_sweep_on_the_8b_shape_at_tp_1_and_2() -> None:
    specs = [s for s, _ in load_sweep(CHECK).runs]
    assert {s.model for s in specs} == {"random:llama-3.1-8b"}
    assert {_layout(s) for s in specs} == {(tp, 1, q) for tp in (1, 2) for q in ("none", "fp8")}
    shape = {
        (s.mode, s.batch_size, s.requests, s.input_tokens, s.output_tokens)
        for s in specs
        if s.mode == "offline"
    }
    big = {
        (s.mode, s.batch_size, s.requests, s.input_tokens, s.output_tokens) for s, _ in load_sweep(STUDY).runs
    }
    assert shape <= big


def test_too_few_gpus_are_refused_naming_the_visible_count(monkeypatch: pytest.MonkeyPatch) -> None:
    import wattlab.engines
    from wattlab.sessions import plan

    monkeypatch.setattr(wattlab.engines, "nvidia_gpu_count", lambda: 2)
    monkeypatch.setattr(wattlab.engines, "has_nvidia_gpu", lambda: True)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    tp_problems = [
        (p, runs)
        for p, runs in plan.check_sweep(load_sweep(STUDY))
        if p.key == "options.tensor_parallel_size"
    ]
    texts = {p.text for p, _ in tp_problems}
    assert any("4 x 1 = 4 GPUs, but 2 are visible" in t for t in texts), texts
    assert any("4 x 2 = 8 GPUs, but 2 are visible" in t for t in texts), texts
    assert any("8 x 1 = 8 GPUs, but 2 are visible" in t for t in texts), texts
    refused = {i for _, runs in tp_problems for i in runs}
    assert len(refused) == len(load_sweep(STUDY).runs)  # every run of the 70B study needs >= 4
    # the 8B check fits two GPUs: nothing about the GPU count
    assert not [p for p, _ in plan.check_sweep(load_sweep(CHECK)) if p.key == "options.tensor_parallel_size"]


@pytest.mark.parametrize(("visible", "fit"), [(2, 0), (4, 3), (8, 8)])
def test_the_filter_numbers_the_blocks_that_fit(visible: int, fit: int, tmp_path: Path) -> None:
    part = _part_module()
    doc = tomllib.loads(STUDY.read_text())
    assert len(part.blocks(doc)) == 8
    blocks = part.fitting(doc, visible)
    assert len(blocks) == fit and all(gpus <= visible for _, gpus, _ in blocks)
    if visible == 4:
        assert [label for label, _, _ in blocks] == [
            "llama-3.1-70b TP4 bf16", "llama-3.1-70b TP4 fp8", "qwen2.5-72b TP4 bf16",
        ]  # fmt: skip
    if not fit:
        return
    # A part's TOML is a valid sweep of that block's runs only (one engine load).
    chosen = part.select(doc, visible, str(fit))
    sweep = parse_sweep(part.part_toml(doc, chosen), "part.toml")
    assert len({s.load_key() for s, _ in sweep.runs}) == 1
    assert [s.as_dict() for s, _ in sweep.runs] == [
        s.as_dict() for s, _ in load_sweep(STUDY).runs if s.load_key() == sweep.runs[0][0].load_key()
    ]
    with pytest.raises(ValueError, match=f"{fit} block"):
        part.select(doc, visible, str(fit + 1))


def test_the_script_wraps_the_gpu_study() -> None:
    script = ROOT / "benchmarks" / "tp_study.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    text = script.read_text()
    assert "benchmarks/gpu_study.sh" in text and "tp_study_part.py" in text and "PEERS=0" in text
    assert "benchmarks/tp_study.toml" in text and "tp_study_check.toml" in text


@pytest.mark.parametrize(("arch", "published"), [("llama-3.1-70b", 70.6e9), ("qwen2.5-72b", 72.7e9)])
def test_the_70b_class_shapes_have_their_published_sizes(arch: str, published: float) -> None:
    config = json.loads(derive.random_config_path(arch).read_text())
    note = config.pop("_wattlab")
    assert note["parameters"] == f"{published / 1e9:.1f}B"
    shape = arch_shape(arch, config)
    assert (shape.hidden, shape.layers, shape.heads, shape.kv_heads) == (8192, 80, 64, 8)
    assert shape.qkv_bias == arch.startswith("qwen")
    weights = sum(t.nbytes // 2 for t in tensor_plan(shape) if t.kind == "weight")
    assert abs(weights - published) / published < 0.02
