"""A module-like stand-in for amdsmi: the calls wattlab.devices.amd makes, with amdsmi's shapes
(dicts, W / uJ / uW units, "N/A" strings) and its exception carrying a status code."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

NOT_SUPPORTED = 2
NO_PERM = 10


class FakeAmdSmiLibraryException(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"amdsmi status {code}")
        self.code = code

    def get_error_code(self) -> int:
        return self.code


@dataclass
class FakeAmdGpu:
    """One fake AMD GPU; the energy counter grows at power_w from the fake clock."""

    name: str = "AMD Instinct MI300X"
    uuid: str = "GPU-aa000000-0000-0000-0000-000000000000"
    power_w: float = 200.0
    current_power: bool = True  # MI300 reports current_socket_power; MI200 only the average
    counter: bool = True
    resolution_uj: float = 15.3
    fail: int | None = None  # every reading raises this status while set
    activity: tuple[int, int] = (70, 30)
    vram_used: int = 5 * 2**30
    clock_mhz: int = 2100
    temp_c: int = 52
    cap_uw: int = 750_000_000
    processes: list[int] | None = field(default_factory=list)
    old_energy_key: bool = False  # amdsmi < 6.2.1 calls the accumulator "power"
    energy_uj: float = 1e9
    t_base: float = 0.0
    clock: Callable[[], float] = time.monotonic

    def energy_now_uj(self) -> float:
        return self.energy_uj + self.power_w * 1e6 * (self.clock() - self.t_base)


class FakeAmdsmi:
    AmdSmiLibraryException = FakeAmdSmiLibraryException
    AmdSmiMemoryType = SimpleNamespace(VRAM=0)
    AmdSmiTemperatureType = SimpleNamespace(EDGE=0, HOTSPOT=1)
    AmdSmiTemperatureMetric = SimpleNamespace(CURRENT=0)
    AmdSmiClkType = SimpleNamespace(GFX=0)

    def __init__(self, gpus: list[FakeAmdGpu] | None = None, init_error: int | None = None) -> None:
        self.gpus = gpus or []
        self.init_error = init_error
        self.inits = self.shutdowns = 0
        for gpu in self.gpus:
            gpu.t_base = gpu.clock()

    def _gpu(self, h: FakeAmdGpu) -> FakeAmdGpu:
        if h.fail is not None:
            raise FakeAmdSmiLibraryException(h.fail)
        return h

    def amdsmi_init(self, *flags: Any) -> None:
        if self.init_error is not None:
            raise FakeAmdSmiLibraryException(self.init_error)
        self.inits += 1

    def amdsmi_shut_down(self) -> None:
        self.shutdowns += 1

    def amdsmi_get_processor_handles(self) -> list[FakeAmdGpu]:
        return list(self.gpus)

    def amdsmi_get_gpu_asic_info(self, h: FakeAmdGpu) -> dict[str, Any]:
        return {"market_name": h.name, "vendor_id": 4098}

    def amdsmi_get_gpu_device_uuid(self, h: FakeAmdGpu) -> str:
        return h.uuid

    def amdsmi_get_power_info(self, h: FakeAmdGpu) -> dict[str, Any]:
        g = self._gpu(h)
        return {
            "current_socket_power": g.power_w if g.current_power else "N/A",
            "average_socket_power": g.power_w,
            "power_limit": g.cap_uw // 1_000_000,
        }

    def amdsmi_get_energy_count(self, h: FakeAmdGpu) -> dict[str, Any]:
        g = self._gpu(h)
        if not g.counter:
            raise FakeAmdSmiLibraryException(NOT_SUPPORTED)
        ticks = int(g.energy_now_uj() / g.resolution_uj)
        key = "power" if g.old_energy_key else "energy_accumulator"
        return {key: ticks, "counter_resolution": g.resolution_uj, "timestamp": 0}

    def amdsmi_get_gpu_activity(self, h: FakeAmdGpu) -> dict[str, Any]:
        g = self._gpu(h)
        return {"gfx_activity": g.activity[0], "umc_activity": g.activity[1], "mm_activity": "N/A"}

    def amdsmi_get_gpu_memory_usage(self, h: FakeAmdGpu, kind: int) -> int:
        return self._gpu(h).vram_used

    def amdsmi_get_gpu_memory_total(self, h: FakeAmdGpu, kind: int) -> int:
        return 192 * 2**30

    def amdsmi_get_temp_metric(self, h: FakeAmdGpu, sensor: int, metric: int) -> int:
        if sensor == 0 and "MI300" in h.name:
            raise FakeAmdSmiLibraryException(NOT_SUPPORTED)  # MI300 has no edge sensor
        return self._gpu(h).temp_c

    def amdsmi_get_power_cap_info(self, h: FakeAmdGpu) -> dict[str, Any]:
        return {"power_cap": self._gpu(h).cap_uw}

    def amdsmi_get_clock_info(self, h: FakeAmdGpu, kind: int) -> dict[str, Any]:
        return {"clk": self._gpu(h).clock_mhz, "min_clk": 500, "max_clk": 2100}

    def amdsmi_get_gpu_process_list(self, h: FakeAmdGpu) -> list[dict[str, Any]]:
        g = self._gpu(h)
        if g.processes is None:
            raise FakeAmdSmiLibraryException(NOT_SUPPORTED)
        return [{"name": "python", "pid": pid} for pid in g.processes]
