"""GPU caps around runs and the throttling recorded in them, on the fake NVML and the fake engine.

The real Runner, worker subprocess, spool, DuckDB and recovery run; only pynvml (and, where a test
says so, the uid NVML checks) is replaced. Caps are set and put back after a finished run, a failed
run, an NVML refusal half-way, Ctrl-C, and a kill -9 of the runner (the next command restores them);
the preflight refuses caps that cannot work; throttle reasons and violation times reach the run row
and `wattlab show`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from wattlab import engines
from wattlab.errors import ConfigError
from wattlab.sessions import caps as caps_mod
from wattlab.sessions.plan import preflight
from wattlab.sessions.result import RunResult
from wattlab.sessions.runner import Runner
from wattlab.sessions.spec import parse_sweep, toml_value
from wattlab.sessions.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "meters"))  # the fake NVML
from meter_fakes import FakeGpu, FakeNvml, FakeNVMLError

DRIVER = Path(__file__).resolve().parents[1] / "devices" / "nvml_driver.py"
DEFAULTS: dict[str, Any] = {
    "engine": "fake",
    "model": "fake:caps",
    "device": "cuda",
    "input_tokens": 32,
    "output_tokens": 10,
    "requests": 1,
    "batch_size": 1,
    "warmup_requests": 0,
    "options": {"tok_s": 50.0},
}


def sweep_text(grid: str = "power_limit_w = [300]", **defaults: Any) -> str:
    lines = [f"{k} = {toml_value(v)}" for k, v in {**DEFAULTS, **defaults}.items() if v is not None]
    return (
        '[session]\nidle_s = 0\nmeters = "estimate"\n\n[defaults]\n'
        + "\n".join(lines)
        + f"\n\n[grid]\n{textwrap.dedent(grid)}\n"
    )


def _clear_gpu_caches() -> None:
    engines.has_nvidia_gpu.cache_clear()
    engines.nvidia_gpu_count.cache_clear()


@pytest.fixture
def box(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeNvml]:
    """One fake H200 as pynvml, wattlab running as root (NVML lets only root change caps)."""
    nvml = FakeNvml([FakeGpu(uuid="GPU-caps-0000", reasons=0x4, power_violation_share=0.5)])
    monkeypatch.setattr("wattlab.devices.nvidia.import_pynvml", lambda: nvml)
    monkeypatch.setattr("wattlab.devices.nvidia._euid", lambda: 0)
    _clear_gpu_caches()
    yield nvml
    _clear_gpu_caches()


def run(tmp_path: Path, text: str, **kw: Any) -> tuple[list[Any], Runner, Store]:
    store = Store(tmp_path / "w.duckdb")
    runner = Runner(parse_sweep(text), store=store, **kw)
    return runner.run(), runner, store


def assert_as_found(nvml: FakeNvml, spool_dir: Path) -> None:
    gpu = nvml.gpus[0]
    assert (gpu.limit_mw, gpu.locked_sm, gpu.locked_mem) == (700_000, None, None)
    assert not (spool_dir / caps_mod.CAPS_FILE).exists()


def test_caps_are_set_for_the_run_and_put_back_and_throttling_is_recorded(
    tmp_path: Path, box: FakeNvml, capsys: pytest.CaptureFixture[str]
) -> None:
    seen_in_spool: list[dict[str, Any]] = []

    def spool_first(name: str) -> None:  # every change comes after the originals are on disk
        files = list((Path(os.environ["WATTLAB_HOME"]) / "spool").glob(f"*/{caps_mod.CAPS_FILE}"))
        assert len(files) == 1, f"{name} before the original values were written to the spool"
        seen_in_spool.append(json.loads(files[0].read_text()))

    box.before_set = spool_first
    results, runner, store = run(tmp_path, sweep_text(sm_clock_mhz=1410))
    (result,) = results
    assert result.status == "finished", result.error
    assert box.calls == [
        ["lock_sm", 0, 1410, 1410],
        ["set_power_limit", 0, 300_000],
        ["reset_sm", 0],
        ["set_power_limit", 0, 700_000],  # the limit read before the run
    ]
    plan = seen_in_spool[0]
    assert plan["gpus"][0]["was_power_limit_mw"] == 700_000 and plan["runner"]["pid"] == os.getpid()
    assert_as_found(box, runner.spool.dir)
    kinds = [e["ev"] for e in runner.spool.events()]
    assert kinds.index("caps_applied") < kinds.index("run_end") and "caps_restored" in kinds

    # Throttling over the measured window: the fake's power counter grows at half the time passing.
    row = store.query_dicts("SELECT * FROM runs")[0]
    assert row["power_violation_s"] == pytest.approx(0.5 * row["duration_s"], abs=0.05)
    assert row["thermal_violation_s"] == 0.0
    throttle = json.loads(row["throttle_json"])
    assert throttle["gpus"]["gpu0"]["reasons"] == {"sw_power_cap": 1.0}
    assert throttle["gpus"]["gpu0"]["samples"] >= 2  # both window edges at least
    assert "NVML counter" in throttle["violation_method"]
    caps = {"was_power_limit_mw": 700_000, "power_limit_w": 300, "sm_clock_mhz": 1410}
    assert throttle["caps"]["gpu0"] == caps

    from wattlab.cli import main

    assert main(["show", result.run_id, "--db", str(tmp_path / "w.duckdb")]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "GPU caps: GPU 0: power limit 300 W (was 700 W), SM clock locked at 1410 MHz" in shown
    assert "power-limit violation time:" in shown and "(NVML counter, measured window" in shown
    assert "throttle reasons gpu0: sw_power_cap 100%" in shown


def test_a_failed_run_and_a_refusal_half_way_leave_the_gpu_as_found(tmp_path: Path, box: FakeNvml) -> None:
    results, runner, _ = run(
        tmp_path, sweep_text(options={"tok_s": 50.0, "fail": "error"}, mem_clock_mhz=2201)
    )
    assert [r.status for r in results] == ["failed"]
    assert ["reset_mem", 0] in box.calls and box.calls[-1] == ["set_power_limit", 0, 700_000]
    assert_as_found(box, runner.spool.dir)

    # NVML accepts the clock lock, then refuses the power limit (root in an unprivileged container):
    # the run fails saying so, and the lock already made is undone.
    def refuse_power(name: str) -> None:
        if name == "set_power_limit" and box.gpus[0].locked_sm:
            raise FakeNVMLError(FakeNvml.NVML_ERROR_NO_PERMISSION)

    box.calls.clear()
    box.before_set = refuse_power
    (result,), runner, _ = run(tmp_path / "b", sweep_text(sm_clock_mhz=1410))
    assert result.status == "failed" and "no permission" in result.error and "root" in result.error_fix
    assert box.calls == [["lock_sm", 0, 1410, 1410], ["reset_sm", 0]]
    assert_as_found(box, runner.spool.dir)


def test_ctrl_c_puts_the_caps_back(tmp_path: Path, box: FakeNvml) -> None:
    """A KeyboardInterrupt in the runner's thread while the measured window runs, as Ctrl-C raises it."""

    def interrupt(item: dict[str, Any]) -> None:
        if item.get("ev") == "progress" and item.get("window") == "run":
            assert box.gpus[0].limit_mw == 300_000  # capped while it measures
            raise KeyboardInterrupt

    results, runner, _ = run(tmp_path, sweep_text(output_tokens=60), echo=interrupt)
    assert runner.status == "interrupted" and [r.status for r in results] == ["interrupted"]
    assert_as_found(box, runner.spool.dir)


@pytest.mark.slow  # two wattlab processes and a worker: ~5 s
def test_kill_9_of_the_runner_then_the_next_command_restores(tmp_path: Path) -> None:
    """The runner (its own process, on the fake NVML's state file) is killed with SIGKILL while the GPU
    is capped; the next wattlab command (`ls`) finds its caps.json and puts the GPU back."""
    state = tmp_path / "nvml.json"
    FakeNvml([FakeGpu(uuid="GPU-kill-0000")], state_path=state).save_state()
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(sweep_text(output_tokens=300, sm_clock_mhz=1410))
    db = tmp_path / "w.duckdb"
    proc = subprocess.Popen(
        [sys.executable, str(DRIVER), str(state), "--root", "--", "sweep", str(sweep), "--db", str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[0]
            gpu = FakeNvml.from_state(state).gpus[0]
            if gpu.limit_mw == 300_000 and gpu.locked_sm == [1410, 1410]:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the runner never capped the GPU")
        workers = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
        proc.communicate()
    for w in workers:
        w.kill()
    (left,) = (Path(os.environ["WATTLAB_HOME"]) / "spool").glob(f"*/{caps_mod.CAPS_FILE}")
    assert FakeNvml.from_state(state).gpus[0].limit_mw == 300_000  # still capped: nobody restored it

    after = subprocess.run(
        [sys.executable, str(DRIVER), str(state), "--", "ls", "--json", "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert after.returncode == 0, after.stderr
    assert "restored the GPU caps a dead runner left changed" in after.stderr
    nvml = FakeNvml.from_state(state)
    assert (nvml.gpus[0].limit_mw, nvml.gpus[0].locked_sm) == (700_000, None)
    assert nvml.calls[-2:] == [["reset_sm", 0], ["set_power_limit", 0, 700_000]]
    assert not left.exists()
    events = [json.loads(line) for line in (left.parent / "events.jsonl").read_text().splitlines()]
    assert any(e["ev"] == "caps_restored" and e.get("by") == "recovery" for e in events)
    runs = Store(db).query("SELECT status FROM runs")[1]
    assert runs == [("interrupted",)]


def test_leftovers_of_a_live_or_remote_runner_are_left_alone(tmp_path: Path, box: FakeNvml) -> None:
    box.gpus[0].limit_mw = 300_000
    plan = {
        "run_id": "r-001",
        "gpus": [{"index": 0, "uuid": "GPU-caps-0000", "was_power_limit_mw": 700_000, "power_limit_w": 300}],
    }
    dead = psutil.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for name, runner in (
        ("live", {"pid": os.getpid(), "create_time": psutil.Process().create_time(), "host": os.uname()[1]}),
        ("remote", {"pid": dead.pid, "host": "another-host"}),
    ):
        (tmp_path / name).mkdir()
        (tmp_path / name / caps_mod.CAPS_FILE).write_text(json.dumps({**plan, "runner": runner}))
    assert caps_mod.restore_leftovers(tmp_path) == []
    assert box.gpus[0].limit_mw == 300_000 and box.calls == []

    (tmp_path / "dead").mkdir()
    (tmp_path / "dead" / caps_mod.CAPS_FILE).write_text(
        json.dumps({**plan, "runner": {"pid": dead.pid, "host": os.uname()[1]}})
    )
    (done,) = caps_mod.restore_leftovers(tmp_path)
    assert done["errors"] == [] and box.gpus[0].limit_mw == 700_000
    assert not (tmp_path / "dead" / caps_mod.CAPS_FILE).exists()


def refusal(text: str) -> str:
    with pytest.raises(ConfigError) as exc:
        preflight(parse_sweep(text))
    return str(exc.value.message) + "\n" + str(exc.value.fix)


def test_preflight_refuses_caps_that_cannot_work(box: FakeNvml, monkeypatch: pytest.MonkeyPatch) -> None:
    out_of_range = refusal(sweep_text("power_limit_w = [900]"))
    assert "outside GPU 0 (NVIDIA H200)'s power-limit range 200-700 W" in out_of_range
    assert "power_limit_w = [900]" not in out_of_range or "line" in out_of_range

    clock = refusal(sweep_text("sm_clock_mhz = [1400]"))
    assert "sm_clock_mhz = 1400 is not among GPU 0 (NVIDIA H200)'s SM clocks" in clock
    assert "the nearest is 1410" in clock and "use sm_clock_mhz = 1410" in clock
    mem = refusal(sweep_text("mem_clock_mhz = [2000]"))
    assert "the nearest is 2201" in mem
    # at the lower memory clock the board offers fewer SM clocks: 1830 is not among them
    both = refusal(sweep_text("sm_clock_mhz = [1830]", mem_clock_mhz=2201))
    assert "with memory at 2201 MHz" in both and "the nearest is 1410" in both

    cpu = refusal(sweep_text(device="cpu"))
    assert "power_limit_w set on a run on device cpu" in cpu and 'device = "cuda"' in cpu

    monkeypatch.setattr("wattlab.devices.nvidia._euid", lambda: 1000)
    not_root = refusal(sweep_text())
    assert "wattlab may not change GPU 0 (NVIDIA H200)'s caps" in not_root and "not root" in not_root
    assert "sudo" in not_root

    preflight(parse_sweep(sweep_text("batch_size = [1]")))  # no caps: nothing to refuse


def test_preflight_refuses_caps_on_a_box_without_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    none = FakeNvml(init_error=FakeNvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    monkeypatch.setattr("wattlab.devices.nvidia.import_pynvml", lambda: none)
    _clear_gpu_caches()
    try:
        text = refusal(sweep_text(device="auto"))
    finally:
        _clear_gpu_caches()
    assert "power_limit_w set, but this box has no NVIDIA GPU" in text and "wattlab doctor" in text


def test_a_cpu_run_touches_no_gpu_and_records_no_throttling(tmp_path: Path, box: FakeNvml) -> None:
    guard = caps_mod.CapsGuard(tmp_path, hz=10)
    spec = parse_sweep(sweep_text("batch_size = [1]", device="cpu")).runs[0][0]
    guard.begin(spec, "r-001")
    guard.on_mark("run_start")
    guard.on_mark("run_end")
    blank = RunResult(run_id="r-001", session_id="s", status="finished")
    assert guard.record(blank) == blank  # no throttle_json, no violation times
    guard.close()
    assert box.calls == [] and not (tmp_path / caps_mod.CAPS_FILE).exists()
