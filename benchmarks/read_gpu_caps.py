"""Read (never change) what wattlab's caps and throttle code sees on a real NVIDIA box.

    PYTHONPATH=$PWD python benchmarks/read_gpu_caps.py [--load-s 5]

Imports only wattlab.devices.nvidia (no wattlab dependency beyond nvidia-ml-py). NVML is wrapped so
that any Set*/Reset* call raises before it reaches the driver: this script cannot change a GPU. It
prints, per GPU: power-limit range, default and current limit, supported clocks, whether wattlab may
change caps here and why, and the clock-event reasons and violation counters while idle and, with
torch installed, while a matmul loop loads GPU 0 for --load-s seconds.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from typing import Any

from wattlab.devices.nvidia import Nvml, can_change_caps, import_pynvml


class ReadOnlyNvml:
    """pynvml with every setter and reset refused (this script reads only)."""

    def __init__(self, module: Any) -> None:
        self._module = module

    def __getattr__(self, name: str) -> Any:
        if name.startswith(("nvmlDeviceSet", "nvmlDeviceReset", "nvmlDeviceClear")):
            raise RuntimeError(f"read-only: {name} refused")
        return getattr(self._module, name)


def load(seconds: float, stop: threading.Event) -> str:
    try:
        import torch
    except ImportError:
        return "no torch: no load phase"
    try:
        a = torch.randn(8192, 8192, device="cuda:0", dtype=torch.bfloat16)
        end = time.monotonic() + seconds
        n = 0
        while time.monotonic() < end and not stop.is_set():
            a = (a @ a).clamp_(-1, 1)
            n += 1
        torch.cuda.synchronize()
    except Exception as exc:  # no CUDA build, no memory: the idle readings still stand
        return f"no load: {type(exc).__name__}: {exc}"
    return f"{n} bf16 8192x8192 matmuls on cuda:0"


def watch(gpu: Any, seconds: float, hz: float = 10.0) -> dict[str, Any]:
    counts: dict[str, int] = {}
    v0 = {p: gpu.violation_ns(p) for p in ("power", "thermal")}
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < seconds:
        for r in gpu.clock_event_reasons():
            counts[r] = counts.get(r, 0) + 1
        n += 1
        time.sleep(1 / hz)
    v1 = {p: gpu.violation_ns(p) for p in ("power", "thermal")}
    return {
        "seconds": round(time.monotonic() - t0, 2),
        "samples": n,
        "reasons_share": {r: round(c / n, 3) for r, c in sorted(counts.items())},
        "violation_s": {p: (v1[p] - v0[p]) / 1e9 for p in v0},
        "violation_total_s_since_driver_load": {p: v1[p] / 1e9 for p in v1},
        "power_w_now": gpu.power_mw() / 1000,
        "sm_clock_mhz_now": gpu.clock_mhz(),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--load-s", type=float, default=5.0)
    args = parser.parse_args()
    nvml = ReadOnlyNvml(import_pynvml())
    print(f"euid {os.geteuid()}; host {os.uname()[1]}")
    access = can_change_caps(nvml)
    print(f"can_change_caps: allowed={access.allowed}; {access.reason}; fix: {access.fix}")
    with Nvml(nvml) as lib:
        print(
            f"driver {lib.module.nvmlSystemGetDriverVersion()}; NVML {lib.module.nvmlSystemGetNVMLVersion()}"
        )
        gpus = [lib.gpu(info) for info in lib.inventory()]
        for gpu in gpus:
            limits = gpu.power_limits()
            mems = gpu.supported_mem_clocks_mhz()
            sms = gpu.supported_sm_clocks_mhz()
            print(f"\nGPU {gpu.info.describe()}")
            print(
                f"  power limit range {limits.range_w()}, default {limits.default_mw / 1000:g} W, "  # type: ignore[operator]
                f"current {limits.current_mw / 1000:g} W, enforced {gpu.power_limit_mw() / 1000:g} W"  # type: ignore[operator]
            )
            print(f"  memory clocks {mems}")
            print(f"  SM clocks at {mems[0]} MHz: {len(sms)} from {sms[0]} to {sms[-1]} MHz; first {sms[:8]}")
            print(f"  caps_access: {gpu.caps_access()}")
            print(f"  clock-event reasons now: {gpu.clock_event_reasons()}")
            print(
                f"  violation counters (s since driver load): power {gpu.violation_ns('power') / 1e9:.3f}, "
                f"thermal {gpu.violation_ns('thermal') / 1e9:.3f}"
            )
        print(f"\nGPU 0 idle, 2 s: {watch(gpus[0], 2.0)}")
        stop = threading.Event()
        result: dict[str, str] = {}
        worker = threading.Thread(target=lambda: result.update(load=load(args.load_s, stop)))
        worker.start()
        time.sleep(1.0)  # the load ramps up first
        loaded = watch(gpus[0], max(0.5, args.load_s - 1.5))
        stop.set()
        worker.join()
        print(f"GPU 0 under load ({result.get('load')}): {loaded}")


if __name__ == "__main__":
    main()
