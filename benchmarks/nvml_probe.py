"""What NVML readings cost and how often they change, on an NVIDIA GPU; prints JSON.

    python benchmarks/nvml_probe.py [--gpu 0] [--calls 2000] [--counter-calls 200]

1. Cost per call (us, median and p90 of many): nvmlDeviceGetPowerUsage, the instant-power field
   (NVML_FI_DEV_POWER_INSTANT), nvmlDeviceGetTotalEnergyConsumption, and the telemetry the meter
   reads at each power tick (utilization, memory, SM clock, temperature, power limit).
2. Update period of each reading: under a bf16 matmul load (so values move), poll each reading in a
   tight loop and time the changes of value (median interval, ms).
3. Counter vs integrated power over a run (idle, load, idle): power polled every 10 ms and
   integrated by trapezoid, against the counter difference over exactly the same span.

Needs: nvidia-ml-py; torch with CUDA for the load (without torch, 2 and 3 run on an idle GPU and
say so). Imports nothing from wattlab: it measures NVML itself.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import pynvml


def instant_mw(handle: Any) -> float:
    fv = pynvml.nvmlDeviceGetFieldValues(handle, [pynvml.NVML_FI_DEV_POWER_INSTANT])[0]
    if fv.nvmlReturn != pynvml.NVML_SUCCESS:
        raise pynvml.NVMLError(fv.nvmlReturn)
    return float(fv.value.uiVal)


def supported(read: Callable[[], Any]) -> bool:
    try:
        read()
        return True
    except pynvml.NVMLError:
        return False


def cost_us(read: Callable[[], Any], calls: int) -> dict[str, float]:
    read()  # the first call may set things up
    times = []
    for _ in range(calls):
        t0 = time.perf_counter_ns()
        read()
        times.append((time.perf_counter_ns() - t0) / 1000.0)
    times.sort()
    return {
        "median_us": statistics.median(times),
        "p90_us": times[int(0.9 * (len(times) - 1))],
        "min_us": times[0],
        "calls": calls,
    }


def update_period_ms(read: Callable[[], float], seconds: float) -> dict[str, Any]:
    """Poll `read` as fast as it answers for `seconds`; intervals between changes of value."""
    changes: list[float] = []
    last = read()
    polls = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        value = read()
        polls += 1
        if value != last:
            changes.append(time.monotonic())
            last = value
    intervals = [(b - a) * 1000.0 for a, b in itertools.pairwise(changes)]
    return {
        "median_ms": statistics.median(intervals) if intervals else None,
        "p10_ms": sorted(intervals)[len(intervals) // 10] if intervals else None,
        "p90_ms": sorted(intervals)[int(0.9 * (len(intervals) - 1))] if intervals else None,
        "changes": len(changes),
        "polls": polls,
        "seconds": seconds,
    }


class Load:
    """bf16 matrix multiplies on cuda:0 in a background thread, while `active` is set."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.active = threading.Event()
        self.stopping = threading.Event()
        self.matmuls = 0
        self.torch: Any = None
        try:
            import torch

            if torch.cuda.is_available():
                self.torch = torch
        except ImportError:
            pass
        self.thread = threading.Thread(target=self._run, daemon=True)

    @property
    def available(self) -> bool:
        return self.torch is not None

    def start(self) -> Load:
        if self.available:
            self.thread.start()
        return self

    def _run(self) -> None:
        torch = self.torch
        a = torch.randn(self.size, self.size, device="cuda", dtype=torch.bfloat16)
        b = torch.randn(self.size, self.size, device="cuda", dtype=torch.bfloat16)
        while not self.stopping.is_set():
            if not self.active.wait(0.05):
                continue
            for _ in range(4):
                c = a @ b  # noqa: F841 - the work is the point, not the result
            self.matmuls += 4
            torch.cuda.synchronize()  # releases the GIL while the GPU works

    def stop(self) -> None:
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join(timeout=10)


def agreement(handle: Any, load: Load, idle_s: float, load_s: float, use_instant: bool) -> dict[str, Any]:
    """Integrate power polled every 10 ms over idle/load/idle; compare with the counter difference."""
    read_instant = (lambda: instant_mw(handle)) if use_instant else None
    points_usage: list[tuple[float, float]] = []
    points_instant: list[tuple[float, float]] = []

    def poll_until(t_end: float) -> None:
        while time.monotonic() < t_end:
            t = time.monotonic()
            points_usage.append((t, pynvml.nvmlDeviceGetPowerUsage(handle) / 1000.0))
            if read_instant is not None:
                points_instant.append((t, read_instant() / 1000.0))
            time.sleep(0.01)

    t0 = time.monotonic()
    e0 = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    poll_until(t0 + idle_s)
    load.active.set()
    poll_until(time.monotonic() + load_s)
    load.active.clear()
    poll_until(time.monotonic() + idle_s)
    e1 = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    t1 = time.monotonic()
    counter_j = (e1 - e0) / 1000.0

    def integrate(points: list[tuple[float, float]]) -> float | None:
        if not points:
            return None
        # Hold the first/last reading out to the counter's read times, then trapezoids between readings.
        pts = [(t0, points[0][1]), *points, (t1, points[-1][1])]
        return sum((pa + pb) / 2 * (tb - ta) for (ta, pa), (tb, pb) in itertools.pairwise(pts))

    out: dict[str, Any] = {"seconds": t1 - t0, "counter_j": counter_j, "load_active": load.available}
    for name, points in (("usage", points_usage), ("instant", points_instant)):
        energy = integrate(points)
        if energy is not None:
            out[f"integrated_{name}_j"] = energy
            out[f"integrated_{name}_minus_counter_pct"] = 100.0 * (energy - counter_j) / counter_j
    out["mean_power_w"] = counter_j / (t1 - t0)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gpu", type=int, default=0, help="NVML index")
    p.add_argument("--calls", type=int, default=2000, help="calls per cheap reading")
    p.add_argument("--counter-calls", type=int, default=200, help="calls of the (slow) energy counter")
    p.add_argument("--period-s", type=float, default=3.0, help="polling time per update-period measurement")
    p.add_argument("--idle-s", type=float, default=3.0)
    p.add_argument("--load-s", type=float, default=6.0)
    p.add_argument("--size", type=int, default=8192)
    args = p.parse_args()

    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(args.gpu)
    name = pynvml.nvmlDeviceGetName(handle)
    result: dict[str, Any] = {
        "gpu": name.decode() if isinstance(name, bytes) else name,
        "index": args.gpu,
        "driver": str(pynvml.nvmlSystemGetDriverVersion()),
        "nvml_bindings": getattr(pynvml, "__version__", None),
        "host": platform.node(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    readings: dict[str, Callable[[], Any]] = {
        "power_usage": lambda: pynvml.nvmlDeviceGetPowerUsage(handle),
        "power_instant_field": lambda: instant_mw(handle),
        "energy_counter": lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(handle),
        "utilization": lambda: pynvml.nvmlDeviceGetUtilizationRates(handle),
        "memory_info": lambda: pynvml.nvmlDeviceGetMemoryInfo(handle),
        "sm_clock": lambda: pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM),
        "temperature": lambda: pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU),
        "power_limit": lambda: pynvml.nvmlDeviceGetEnforcedPowerLimit(handle),
    }
    available = {k: supported(read) for k, read in readings.items()}
    result["supported"] = available
    result["cost_per_call"] = {
        k: cost_us(read, args.counter_calls if k == "energy_counter" else args.calls)
        for k, read in readings.items()
        if available[k]
    }

    load = Load(args.size).start()
    result["load"] = {"torch": load.available, "matrix": args.size, "dtype": "bfloat16"}
    try:
        load.active.set()
        time.sleep(1.0)  # let clocks and power settle under load
        periods = {}
        for k in ("power_usage", "power_instant_field", "energy_counter"):
            if available[k]:
                periods[k] = update_period_ms(lambda read=readings[k]: float(read()), args.period_s)
        result["update_period_under_load"] = periods
        load.active.clear()
        time.sleep(2.0)
        if available["energy_counter"] and available["power_usage"]:
            result["counter_vs_integrated"] = agreement(
                handle, load, args.idle_s, args.load_s, use_instant=available["power_instant_field"]
            )
        result["load"]["matmuls"] = load.matmuls
    finally:
        load.active.clear()
        load.stop()
        pynvml.nvmlShutdown()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
