"""CPU time (not just wall time) of each NVML call the sampler makes, with the GPU idle and loaded.

Why: the sampler's cost target is < 1% of one core; this shows which call spends it.
    python benchmarks/nvml_call_cpu.py > nvml_call_cpu.json
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any


def measure(fn: Callable[[], Any], n: int) -> dict[str, float]:
    wall0, cpu0 = time.perf_counter(), time.thread_time()
    for _ in range(n):
        fn()
    wall, cpu = time.perf_counter() - wall0, time.thread_time() - cpu0
    return {"calls": n, "wall_us": wall / n * 1e6, "cpu_us": cpu / n * 1e6}


def calls(nvml: Any, h: Any) -> dict[str, tuple[Callable[[], Any], int]]:
    fi = getattr(nvml, "NVML_FI_DEV_POWER_INSTANT", 186)
    total_fi = nvml.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION
    return {
        "power_usage": (lambda: nvml.nvmlDeviceGetPowerUsage(h), 500),
        "power_instant_field": (lambda: nvml.nvmlDeviceGetFieldValues(h, [fi]), 500),
        "energy_counter": (lambda: nvml.nvmlDeviceGetTotalEnergyConsumption(h), 60),
        # The same counter read as a field value: if the driver serves it cheaper, the sampler uses it.
        "energy_counter_field": (lambda: nvml.nvmlDeviceGetFieldValues(h, [total_fi]), 60),
        "utilization": (lambda: nvml.nvmlDeviceGetUtilizationRates(h), 500),
        "memory_info": (lambda: nvml.nvmlDeviceGetMemoryInfo(h), 500),
        "temperature": (lambda: nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU), 500),
    }


def counter_vs_field(nvml: Any, h: Any) -> list[dict[str, float]]:
    """Back-to-back reads of the counter both ways, 10 times 0.25 s apart: do they agree?"""
    rows = []
    for _ in range(10):
        direct = nvml.nvmlDeviceGetTotalEnergyConsumption(h)
        fv = nvml.nvmlDeviceGetFieldValues(h, [nvml.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION])[0]
        rows.append({"direct": float(direct), "field": float(fv.value.ullVal), "ret": float(fv.nvmlReturn)})
        time.sleep(0.25)
    return rows


def main() -> None:
    import pynvml as nvml

    nvml.nvmlInit()
    h = nvml.nvmlDeviceGetHandleByIndex(0)
    out: dict[str, Any] = {
        "gpu": nvml.nvmlDeviceGetName(h),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    time.sleep(3)
    out["counter_vs_field_mj"] = counter_vs_field(nvml, h)
    out["idle"] = {k: measure(f, n) for k, (f, n) in calls(nvml, h).items()}
    stop = threading.Event()

    def load() -> None:
        import torch

        a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
        while not stop.is_set():
            a @ a
            torch.cuda.synchronize()

    t = threading.Thread(target=load, daemon=True)
    t.start()
    time.sleep(3)
    out["loaded"] = {k: measure(f, n) for k, (f, n) in calls(nvml, h).items()}
    stop.set()
    t.join()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
