"""wattlab's meter next to the tools labs use (Zeus, codecarbon) and an outside NVML log, window by window.

    python benchmarks/peers_side_by_side.py --json peers.json [--gpus 0] [--lengths 0.5,2,10]
        [--intensities idle,low,high] [--repeats 2]
    python benchmarks/peers_side_by_side.py --fake --lengths 0.3,1 --intensities idle,low   # no GPU

Each window runs a workload on the GPU (idle: nothing; low: back-to-back bf16 2048^2 matmuls;
high: 8192^2), and around the same window:
- wattlab: its NVML meter, Sampler and Timeline (the code the runner uses), with a counter read at
  each edge as the runner takes at marks; the energy is Timeline.window(...) summed over the GPUs.
- Zeus (`zeus` 0.16): ZeusMonitor(gpu_indices, cpu_indices=[]).begin_window / end_window -> .gpu_energy.
- codecarbon: one OfflineEmissionsTracker, start_task / stop_task per window -> gpu_energy (kWh; its
  energy_consumed adds estimated CPU and RAM, reported beside).
- the outside log: benchmarks/nvml_logger.py in its own process, interpolated at each tool's own
  window edges (each tool's begin/end call takes time: its edges are the midpoints of those calls).
Differences are against the outside log at the same tool's edges: 100 x (tool - log) / log.

What each needed: its sampling, and the CPU its measuring took during the window (thread CPU time:
the wattlab sampler threads by native id, Zeus's and codecarbon's calls on the main thread,
codecarbon's timer threads (alive at both edges, or the process's remaining CPU when they come and
go), the logger process's CPU from psutil).

Zeus or codecarbon missing: their columns are skipped with a note. --fake (or WATTLAB_FAKE_NVML=1):
a fake NVML whose GPUs draw a 1 s square wave (nvml_logger.fake_nvml) for wattlab and the logger, a
CPU matmul as the workload, and Zeus/codecarbon skipped (they read the real NVML): it checks the
plumbing, not the GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import nvml_logger  # noqa: E402
import reconcile  # noqa: E402

from wattlab.meters.nvml import NvmlMeter  # noqa: E402
from wattlab.meters.sampler import Sampler  # noqa: E402
from wattlab.meters.timeline import Timeline  # noqa: E402

NS = 1_000_000_000
SIZES = {"idle": 0, "low": 2048, "high": 8192}
KWH_TO_J = 3.6e6


# --- CPU accounting ---------------------------------------------------------------------------------
def thread_cpu() -> dict[int, float]:
    """CPU seconds of each of this process's threads, by native id (Linux /proc via psutil)."""
    import psutil

    return {t.id: t.user_time + t.system_time for t in psutil.Process().threads()}


def process_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Timed:
    """Main-thread CPU and the monotonic midpoint of a tool's call at a window edge."""

    def __init__(self) -> None:
        self.cpu_s = 0.0

    def call(self, fn: Callable[[], Any]) -> tuple[Any, int]:
        c0, a = time.thread_time(), time.monotonic_ns()
        out = fn()
        b, c1 = time.monotonic_ns(), time.thread_time()
        self.cpu_s += c1 - c0
        return out, (a + b) // 2


# --- the peers ---------------------------------------------------------------------------------------
class Zeus:
    name = "zeus"

    def __init__(self, gpus: list[int]) -> None:
        from zeus.monitor import ZeusMonitor

        # cpu_indices=[]: GPU energy only, and no RAPL permission needed on the lent box.
        # Zeus takes CUDA indices; on the lent box (no CUDA_VISIBLE_DEVICES) they are NVML's.
        self.monitor = ZeusMonitor(gpu_indices=list(gpus), cpu_indices=[])
        self.sampling = "counter read at each window edge only (no background sampling)"

    def begin(self, key: str) -> None:
        self.monitor.begin_window(key, sync_execution=False)  # the workload synchronizes itself

    def end(self, key: str) -> dict[str, Any]:
        m = self.monitor.end_window(key, sync_execution=False)
        return {"j": float(m.total_energy), "tool_time_s": float(m.time)}


class CodeCarbon:
    name = "codecarbon"

    def __init__(self, gpus: list[int], country: str, period_s: float) -> None:
        from codecarbon import OfflineEmissionsTracker

        self.tracker = OfflineEmissionsTracker(
            country_iso_code=country,
            measure_power_secs=period_s,
            tracking_mode="machine",
            gpu_ids=gpus,
            save_to_file=False,
            log_level="error",
            allow_multiple_runs=True,
        )
        self.tracker.start()  # hardware detection happens here, outside every window
        self.sampling = f"counter at task edges, power every 1 s (monitor), measure_power_secs={period_s}"

    def begin(self, key: str) -> None:
        self.tracker.start_task(key)

    def end(self, key: str) -> dict[str, Any]:
        data = self.tracker.stop_task(key)
        return {
            "j": float(data.gpu_energy) * KWH_TO_J,
            "all_j": float(data.energy_consumed) * KWH_TO_J,  # + CPU and RAM (estimated where no RAPL)
            "tool_time_s": float(data.duration),
        }

    def close(self) -> None:
        self.tracker.stop()


def open_peers(args: argparse.Namespace, gpus: list[int]) -> tuple[list[Any], list[str]]:
    peers: list[Any] = []
    notes: list[str] = []
    if args.fake:
        return [], ["fake NVML: zeus and codecarbon read the real NVML, so their columns are skipped"]
    for name, opener in (
        ("zeus", lambda: Zeus(gpus)),
        ("codecarbon", lambda: CodeCarbon(gpus, args.country, args.codecarbon_period)),
    ):
        if name in args.skip:
            notes.append(f"{name}: skipped (--skip)")
            continue
        try:
            peers.append(opener())
        except ImportError:
            notes.append(f"{name}: not installed, column skipped (pip install {name})")
        except Exception as exc:  # a peer that cannot start must not cost the others their figures
            notes.append(f"{name}: could not start ({type(exc).__name__}: {exc}), column skipped")
    return peers, notes


# --- the workload ------------------------------------------------------------------------------------
class Workload:
    def __init__(self, fake: bool, device_index: int) -> None:
        self.fake = fake
        self.device = f"cuda:{device_index}"
        self.torch: Any = None
        if not fake:
            import torch

            self.torch = torch
            torch.ones(1, device=self.device)  # CUDA context up front, not in the first window

    def prepare(self, intensity: str) -> Any:
        size = SIZES[intensity]
        if not size:
            return None
        if self.fake:
            import numpy as np

            size = min(size, 256)  # the CPU box: keep a core for the others
            return np.ones((size, size), dtype=np.float32), np.ones((size, size), dtype=np.float32)
        t = self.torch
        a = t.randn(size, size, device=self.device, dtype=t.bfloat16)
        b = t.randn(size, size, device=self.device, dtype=t.bfloat16)
        t.cuda.synchronize(self.device)
        return a, b

    def run(self, tensors: Any, seconds: float) -> int:
        end = time.monotonic() + seconds
        n = 0
        if tensors is None:
            time.sleep(seconds)
            return 0
        a, b = tensors
        while time.monotonic() < end:
            if self.fake:
                a @ b
                n += 1
                continue
            for _ in range(2):
                a @ b
            n += 2
            # Synchronize often: no queued work may spill past the window's end.
            self.torch.cuda.synchronize(self.device)
        return n

    def sync(self) -> None:
        if not self.fake:
            self.torch.cuda.synchronize(self.device)


# --- one window ----------------------------------------------------------------------------------------
def measure_window(
    key: str,
    intensity: str,
    seconds: float,
    *,
    workload: Workload,
    sampler: Sampler,
    timeline: Timeline,
    domains: list[str],
    peers: list[Any],
    logger_pid: int,
) -> dict[str, Any]:
    import psutil

    tensors = workload.prepare(intensity)
    timed = {p.name: Timed() for p in peers}
    timed["wattlab"] = Timed()
    logger = psutil.Process(logger_pid)
    sampler_ids = {t.native_id for t in sampler._threads}  # the runner's sampler threads
    main_id = threading.get_native_id()
    main0 = time.thread_time()
    log_cpu0 = sum(logger.cpu_times()[:2])
    threads0, proc0 = thread_cpu(), process_cpu()

    edges: dict[str, list[int]] = {}
    for p in peers:  # peers open first and close last, so every window contains the workload
        _, t = timed[p.name].call(lambda p=p: p.begin(key))
        edges[p.name] = [t]
    _, t0 = timed["wattlab"].call(sampler.read_counters_now)
    edges["wattlab"] = [t0]
    ops = workload.run(tensors, seconds)
    workload.sync()
    _, t1 = timed["wattlab"].call(sampler.read_counters_now)
    edges["wattlab"].append(t1)
    results: dict[str, dict[str, Any]] = {}
    for p in reversed(peers):
        out, t = timed[p.name].call(lambda p=p: p.end(key))
        edges[p.name].append(t)
        results[p.name] = out

    threads1, proc1, main1 = thread_cpu(), process_cpu(), time.thread_time()
    log_cpu1 = sum(logger.cpu_times()[:2])
    time.sleep(timeline.power_period_s * 1.5)  # one more sample past the end, as the runner waits

    parts = [timeline.window(d, t0, t1) for d in domains]
    energies = [w.energy_j for w in parts]
    results["wattlab"] = {
        "j": None if any(e is None for e in energies) else sum(e for e in energies if e is not None),
        "method": ",".join(sorted({w.method for w in parts})),
        "flags": sorted({f for w in parts for f in w.flags}),
    }
    # CPU during the window: threads alive at both edges by native id; the rest of the process
    # (threads that came and went: codecarbon's timers) is what no long-lived thread accounts for.
    both = set(threads0) & set(threads1)
    delta = {i: threads1[i] - threads0[i] for i in both}
    sampler_cpu = sum(delta.get(i, 0.0) for i in sampler_ids)
    timer_ids = {t.native_id for t in threading.enumerate() if isinstance(t, threading.Timer)}
    leftover = max(0.0, (proc1 - proc0) - sum(delta.values()))
    cpu = {
        "wattlab": sampler_cpu + timed["wattlab"].cpu_s,
        "outside_log": log_cpu1 - log_cpu0,
        "workload_main_thread": (main1 - main0) - sum(t.cpu_s for t in timed.values()),
    }
    for p in peers:
        cpu[p.name] = timed[p.name].cpu_s
    if "codecarbon" in cpu:
        cpu["codecarbon"] += sum(delta.get(i, 0.0) for i in timer_ids - {main_id}) + leftover
    return {
        "key": key,
        "intensity": intensity,
        "seconds": seconds,
        "ops": ops,
        "edges_ns": edges,
        "tools": results,
        "cpu_s": cpu,
    }


def add_log_figures(windows: list[dict[str, Any]], log: reconcile.OutsideLog, gpus: list[int]) -> None:
    """Each tool's J against the outside log over that tool's own edges."""
    for w in windows:
        for tool, (a, b) in w["edges_ns"].items():
            log_j: float | None = 0.0
            flags: set[str] = set()
            for g in gpus:
                part, part_flags = log.energy_j(g, a, b)
                flags.update(part_flags)
                log_j = None if part is None or log_j is None else log_j + part
            figures = w["tools"][tool]
            figures["window_s"] = (b - a) / NS
            figures["log_j"] = log_j
            figures["log_flags"] = sorted(flags)
            j = figures.get("j")
            figures["diff_pct"] = 100.0 * (j - log_j) / log_j if j is not None and log_j else None


def summarize(windows: list[dict[str, Any]], tools: list[str]) -> dict[str, Any]:
    by_length: dict[str, Any] = {}
    for length in sorted({w["seconds"] for w in windows}):
        group = [w for w in windows if w["seconds"] == length]
        row: dict[str, Any] = {}
        for tool in tools:
            diffs = [
                w["tools"][tool]["diff_pct"]
                for w in group
                if w["tools"].get(tool, {}).get("diff_pct") is not None
            ]
            cpu = [w["cpu_s"].get(tool) for w in group if w["cpu_s"].get(tool) is not None]
            row[tool] = {
                "mean_j": _mean(
                    [w["tools"][tool]["j"] for w in group if w["tools"].get(tool, {}).get("j") is not None]
                ),
                "mean_abs_diff_pct": _mean([abs(d) for d in diffs]),
                "max_abs_diff_pct": max((abs(d) for d in diffs), default=None),
                "cpu_pct_of_core": 100.0 * sum(cpu) / (length * len(group)) if cpu else None,
            }
        row["outside_log"] = {
            "cpu_pct_of_core": 100.0 * sum(w["cpu_s"]["outside_log"] for w in group) / (length * len(group))
        }
        by_length[f"{length:g}s"] = row
    return by_length


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _fmt(value: float | None, spec: str) -> str:
    # "-" for a missing figure, padded to the column's width
    return format(value, spec) if value is not None else "-".rjust(int(spec.lstrip("+").split(".")[0] or 0))


def print_table(windows: list[dict[str, Any]], tools: list[str]) -> None:
    head = f"{'window':<18} {'s':>5}"
    for tool in tools:
        head += f" | {tool + ' J':>13} {'log J':>9} {'diff%':>6}"
    print(head)
    for w in windows:
        line = f"{w['key']:<18} {w['seconds']:>5g}"
        for tool in tools:
            f = w["tools"].get(tool, {})
            line += f" | {_fmt(f.get('j'), '13.1f')} {_fmt(f.get('log_j'), '9.1f')}"
            line += f" {_fmt(f.get('diff_pct'), '+6.2f')}"
        print(line)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, help="write the windows and the summary here")
    ap.add_argument(
        "--gpus", default="0", help="NVML indices to meter (default 0); the workload runs on the first"
    )
    ap.add_argument("--lengths", default="0.5,2,10", help="window lengths in s (default 0.5,2,10)")
    ap.add_argument("--intensities", default="idle,low,high", help="idle, low, high (default all)")
    ap.add_argument("--repeats", type=int, default=1, help="windows of each kind (default 1)")
    ap.add_argument("--gap", type=float, default=1.0, help="seconds between windows (default 1)")
    ap.add_argument("--country", default="USA", help="codecarbon's country (ISO 3), offline")
    ap.add_argument("--codecarbon-period", type=float, default=1.0, help="codecarbon measure_power_secs")
    ap.add_argument("--logger-hz", type=float, default=10.0, help="the outside logger's rate")
    ap.add_argument("--skip", default="", help="peers to leave out: zeus,codecarbon")
    ap.add_argument(
        "--fake", action="store_true", help=f"fake NVML, CPU workload (also {nvml_logger.FAKE_ENV}=1)"
    )
    args = ap.parse_args(argv)
    import psutil

    args.fake = args.fake or os.environ.get(nvml_logger.FAKE_ENV) == "1"
    try:
        gpus = [int(g) for g in args.gpus.split(",") if g.strip()]
        lengths = [float(x) for x in args.lengths.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(
            "peers_side_by_side: --gpus and --lengths take comma-separated numbers. "
            "Fix: --gpus 0 --lengths 0.5,2,10"
        ) from None
    intensities = [x.strip() for x in args.intensities.split(",") if x.strip()]
    if bad := [x for x in intensities if x not in SIZES]:
        raise SystemExit(f"peers_side_by_side: unknown intensity {bad}. Fix: choose from {', '.join(SIZES)}")
    if not gpus or not lengths or any(x <= 0 for x in lengths) or args.repeats < 1:
        raise SystemExit(
            "peers_side_by_side: need GPUs, positive lengths and --repeats >= 1. Fix: see --help"
        )

    nvml = nvml_logger.fake_nvml() if args.fake else None
    meter = NvmlMeter([str(g) for g in gpus], nvml=nvml)  # raises MeterUnavailable with its fix
    timeline = Timeline()
    sampler = Sampler([meter], timeline, power_hz=10.0, counter_hz=2.0)
    workload = Workload(args.fake, gpus[0])
    tmp = Path(tempfile.mkdtemp(prefix="wattlab-peers-"))
    log_path = (args.json.parent if args.json else tmp) / "peers_nvml_log.jsonl"
    cmd = [sys.executable, str(HERE / "nvml_logger.py"), "--out", str(log_path), "--hz", str(args.logger_hz)]
    cmd += ["--gpus", ",".join(map(str, gpus))] + (["--fake"] if args.fake else [])
    logger = subprocess.Popen(cmd)
    peers, notes = open_peers(args, gpus)
    tools = ["wattlab"] + [p.name for p in peers]
    windows: list[dict[str, Any]] = []
    sampler.start()
    started, logger_cpu = time.monotonic(), None
    try:
        time.sleep(1.0)  # the logger and the sampler have readings before the first window
        for r in range(args.repeats):
            for intensity in intensities:
                for seconds in lengths:
                    key = f"{intensity}-{seconds:g}s-{r + 1}"
                    windows.append(
                        measure_window(
                            key, intensity, seconds, workload=workload, sampler=sampler, timeline=timeline,
                            domains=[d.id for d in meter.domains], peers=peers, logger_pid=logger.pid,
                        )
                    )  # fmt: skip
                    print(f"  {key}: done", file=sys.stderr)
                    time.sleep(args.gap)
    finally:
        elapsed = time.monotonic() - started
        with contextlib.suppress(Exception):  # psutil reads CPU in 10 ms ticks: over the whole run
            logger_cpu = sum(psutil.Process(logger.pid).cpu_times()[:2])
        sampler.stop()
        for p in peers:
            if hasattr(p, "close"):
                p.close()
        logger.send_signal(signal.SIGTERM)
        logger.wait(timeout=30)
        meter.close()
    add_log_figures(windows, reconcile.read_log(log_path), gpus)
    print_table(windows, tools)
    for note in notes:
        print("note:", note)
    report = {
        "machine": platform.node(),
        "fake": args.fake,
        "gpus": gpus,
        "gpu_names": [g.name for g in meter.gpus],
        "notes": notes,
        "sampling": {
            "wattlab": "power 10 Hz, counter 2 Hz and at each window edge (as at every mark)",
            "outside_log": f"counter and power at {args.logger_hz:g} Hz, separate process",
            **{p.name: p.sampling for p in peers},
        },
        "summary_by_length": summarize(windows, tools),
        "whole_run_cpu_pct_of_core": {
            "wattlab_sampler": 100.0 * sampler.cpu_seconds / elapsed,
            "outside_log": 100.0 * logger_cpu / elapsed if logger_cpu is not None else None,
            "seconds": elapsed,
        },
        "windows": windows,
        "log": str(log_path),
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
