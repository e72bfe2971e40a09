"""The GPU levers as sweep fields: each engine option's spec (type, values, range, devices), the
preflight refusing impossible ones (all at once), TOML grids over options, and peak memory of the
engine worker's process tree (sessions/peakmem.py) recorded with what it measured."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from wattlab.engines import options as engine_options
from wattlab.engines import spec_of
from wattlab.errors import ConfigError
from wattlab.sessions.plan import check_sweep, preflight
from wattlab.sessions.spec import RunSpec, SessionSettings, Sweep, parse_sweep

GPU_LEVERS = {
    "vllm": (
        "gpu_memory_utilization",
        "max_num_seqs",
        "enforce_eager",
        "enable_prefix_caching",
        "kv_cache_dtype",
        "enable_chunked_prefill",
        "max_num_batched_tokens",
        "tensor_parallel_size",
        "pipeline_parallel_size",
    ),
    "transformers": ("attn_implementation", "torch_compile", "cache_implementation"),
}


def _problems(spec: RunSpec) -> list[str]:
    return [p.text for p, _ in check_sweep(Sweep(SessionSettings(), [(spec, 0)]))]


def _spec(engine: str, device: str = "cpu", **options: Any) -> RunSpec:
    return RunSpec(engine=engine, device=device, batch_size=4, input_tokens=64, options=options)


def test_every_lever_is_declared_with_help_and_values() -> None:
    for engine, names in GPU_LEVERS.items():
        declared = {o.name: o for o in spec_of(engine).options}
        for name in names:
            option = declared[name]
            assert option.help and option.describe()
    vllm = {o.name: o for o in spec_of("vllm").options}
    assert vllm["kv_cache_dtype"].choices[:2] == ("auto", "fp8")
    assert vllm["gpu_memory_utilization"].max == 1.0
    assert vllm["kv_cache_gib"].devices == ("cpu",)
    attn = {o.name: o for o in spec_of("transformers").options}["attn_implementation"]
    assert attn.gpu_values == ("flash_attention_2",)


def test_option_problems_name_value_range_and_device() -> None:
    found = engine_options.problems(
        "vllm",
        {"gpu_memory_utilization": 1.5, "kv_cache_dtype": "fp4", "max_num_seqs": 0, "kv_cache_gib": 2},
        "gpu",
    )
    text = "\n".join(e.message for e in found)
    assert "gpu_memory_utilization = 1.5 is above its maximum 1" in text
    assert "kv_cache_dtype = 'fp4' is not one of auto, fp8" in text
    assert "max_num_seqs = 0 is below its minimum 1" in text
    assert "kv_cache_gib applies only on the CPU" in text
    assert all(e.fix for e in found)
    flash = engine_options.problems("transformers", {"attn_implementation": "flash_attention_2"}, "cpu")
    assert any("works only on a GPU" in e.message for e in flash)
    assert any("eager, sdpa" in (e.fix or "") for e in flash)


def test_preflight_lists_every_option_problem_at_once() -> None:
    spec = RunSpec(
        engine="vllm",
        device="cpu",
        batch_size=8,
        options={"gpu_memory_utilization": 2.0, "max_num_seqs": 4, "kv_cache_dtype": "int8"},
    )
    with pytest.raises(ConfigError) as err:
        preflight(Sweep(SessionSettings(), [(spec, 0)], source="wattlab run"))
    message = err.value.message
    assert "gpu_memory_utilization = 2.0 is above its maximum" in message
    assert "kv_cache_dtype = 'int8'" in message
    assert "max_num_seqs = 4 is smaller than the run's batch of 8" in message
    assert "--option max_num_seqs=..." in message


def test_flash_attention_is_refused_on_cpu_and_where_not_installed() -> None:
    problems = _problems(_spec("transformers", attn_implementation="flash_attention_2"))
    assert any("works only on a GPU" in p for p in problems)
    import importlib.util

    if importlib.util.find_spec("flash_attn") is None:
        assert any("needs the flash_attn package" in p for p in problems)
    assert not [p for p in _problems(_spec("transformers", attn_implementation="eager")) if "option" in p]


def test_parallel_sizes_beyond_the_visible_gpus_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import wattlab.engines as engines

    monkeypatch.setattr(engines, "nvidia_gpu_count", lambda: 4)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    spec = _spec("vllm", "cuda", tensor_parallel_size=2, pipeline_parallel_size=2)
    problems = _problems(spec)
    assert any("2 x 2 = 4 GPUs, but 2 are visible" in p for p in problems), problems
    ok = _spec("vllm", "cuda", tensor_parallel_size=2)
    assert not any("visible" in p for p in _problems(ok))


def test_chunked_prefill_off_needs_batched_tokens_for_the_sequence() -> None:
    spec = _spec("vllm", enable_chunked_prefill=False, max_num_batched_tokens=64)
    assert any("below the run's sequence of 128 tokens" in p for p in _problems(spec))


def test_grid_over_options_merges_with_defaults_and_names_lines() -> None:
    text = """[defaults]
engine = "vllm"
batch_size = 8
options.enable_prefix_caching = false

[grid]
options.max_num_seqs = [4, 64]
options.enforce_eager = [true, false]

[[runs]]
options = { kv_cache_dtype = "fp8" }
"""
    sweep = parse_sweep(text, "s.toml")
    options = [spec.options for spec, _ in sweep.runs]
    assert len(options) == 5
    assert {"enable_prefix_caching": False, "max_num_seqs": 64, "enforce_eager": False} in options
    assert {"enable_prefix_caching": False, "kv_cache_dtype": "fp8"} in options
    assert sweep.where("options.max_num_seqs") == "s.toml line 7: [grid] options.max_num_seqs"
    refused = [(p, runs) for p, runs in check_sweep(sweep) if "max_num_seqs = 4" in p.text]
    assert refused and refused[0][1] == [1, 2]


def test_grid_options_table_form() -> None:
    text = '[defaults]\nengine = "transformers"\n\n[grid.options]\nattn_implementation = ["eager", "sdpa"]\n'
    sweep = parse_sweep(text, "t.toml")
    assert [s.options for s, _ in sweep.runs] == [
        {"attn_implementation": "eager"},
        {"attn_implementation": "sdpa"},
    ]
    assert sweep.where("options.attn_implementation") == "t.toml line 5: [grid] options.attn_implementation"


def test_an_empty_option_axis_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"options\.max_num_seqs"):
        parse_sweep('[defaults]\nengine = "vllm"\n[grid]\noptions.max_num_seqs = []\n', "e.toml")


# --- peak memory ------------------------------------------------------------------------------------
def test_sampler_reads_the_rss_of_the_whole_process_tree() -> None:
    from wattlab.sessions.peakmem import PeakMemSampler

    # A parent holding ~60 MB with a child holding ~80 MB: the tree's peak counts both.
    code = (
        "import subprocess, sys, time; a = bytearray(60 * 2**20); "
        "c = subprocess.Popen([sys.executable, '-c', "
        "'b = bytearray(80 * 2**20); import time; time.sleep(30)']); "
        "time.sleep(30)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        sampler = PeakMemSampler(proc.pid, period_s=0.05, nvml=_no_nvml()).start()
        deadline = time.monotonic() + 20
        peak = None
        while time.monotonic() < deadline:
            sampler.begin()
            time.sleep(0.2)
            peak = sampler.end(["cpu"])
            if peak and peak.mib > 140:
                break
        sampler.stop()
        assert peak is not None and peak.kind == "host" and peak.mib > 140
    finally:
        for child in __import__("psutil").Process(proc.pid).children(recursive=True):
            child.kill()
        proc.kill()
        proc.wait()


class _FakeNvml:
    """The pynvml calls the sampler makes, on one GPU (init_error: no driver)."""

    class NVMLError(Exception):
        value = 12

    def __init__(self, processes: list[int] | None = None, init_error: bool = False) -> None:
        self.processes = processes or []
        self.used = 3 * 2**30
        self.init_error = init_error

    def nvmlInit(self) -> None:
        if self.init_error:
            raise self.NVMLError("no driver")

    def nvmlShutdown(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetName(self, h: int) -> str:
        return "NVIDIA H200"

    def nvmlDeviceGetUUID(self, h: int) -> str:
        return "GPU-0"

    def nvmlDeviceGetMemoryInfo(self, h: int) -> Any:
        return SimpleNamespace(used=self.used, total=141 * 2**30)

    def nvmlDeviceGetComputeRunningProcesses(self, h: int) -> list[Any]:
        return [SimpleNamespace(pid=pid, usedGpuMemory=2**30) for pid in self.processes]


def _no_nvml() -> Any:
    return _FakeNvml(init_error=True)


def test_sampler_sums_nvml_memory_of_the_tree_else_the_device_delta() -> None:
    from wattlab.sessions.peakmem import PeakMemSampler

    gpu = _FakeNvml(processes=[os.getpid(), 999_999])  # ours, and a stranger's (not in our tree)
    sampler = PeakMemSampler(os.getpid(), nvml=gpu)
    sampler.begin()
    peak = sampler.end(["gpu:0"])
    assert peak is not None and peak.kind == "gpu" and peak.mib == 1024  # the fake's 1 GiB per process
    # A container without the host's PID namespace: NVML's PIDs are not ours; the device's used
    # memory above its level when the sampler started is what is left.
    gpu.processes = [999_999]
    gpu.used += 5 * 2**30
    sampler.begin()
    peak = sampler.end(["gpu:0"])
    assert peak is not None and peak.kind == "gpu-device" and peak.mib == 5 * 1024
    sampler.stop()


def test_a_fake_engine_run_records_its_peak_rss(tmp_path: Path) -> None:
    from test_runner_fake import run_sweep, runs_of

    _records, store, runner = run_sweep(tmp_path, "[grid]\nbatch_size = [2]\n")
    row = runs_of(store, runner.session_id)[0]
    assert row["status"] == "finished"
    assert row["peak_mem_kind"] == "host"
    assert row["peak_mem_mib"] > 10  # a Python interpreter with wattlab loaded, at least
    assert row["spec_json"]
