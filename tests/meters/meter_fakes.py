"""Fakes for the meter tests: an NVML module, a controllable clock, a timeline-file writer.

The fake NVML implements exactly the pynvml calls NvmlMeter makes, with NVML's error codes, so
the meter runs end to end without a GPU: NOT_SUPPORTED readings, errors mid-run, counter resets.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from wattlab.meters.timeline import Timeline


class FakeNVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(f"NVML error {value}")
        self.value = value


@dataclass
class FakeGpu:
    """One fake GPU. Energy grows at power_mw from the fake clock (mJ = mW x s) unless frozen."""

    name: str = "NVIDIA H200"
    uuid: str = "GPU-00000000-1111-2222-3333-444444444444"
    power_mw: float = 100_000.0
    instant: bool = True  # NVML_FI_DEV_POWER_INSTANT supported
    usage: bool = True  # nvmlDeviceGetPowerUsage supported
    counter: bool = True  # nvmlDeviceGetTotalEnergyConsumption supported
    fail: int | None = None  # every reading raises this NVML error code while set
    util: tuple[int, int] = (55, 20)
    mem_used_bytes: int = 3 * 2**30
    clock_mhz: int = 1980
    temp_c: int = 41
    limit_mw: int = 700_000
    processes: list[int] | None = field(default_factory=list)  # compute PIDs; None: NOT_SUPPORTED
    energy_mj: float = 5_000_000.0  # value at the last set_power/set_energy
    t_base: float = 0.0
    clock: Callable[[], float] = time.monotonic

    def energy_now(self) -> float:
        return self.energy_mj + self.power_mw * (self.clock() - self.t_base)

    def set_power(self, watts: float) -> None:
        self.energy_mj = self.energy_now()
        self.t_base = self.clock()
        self.power_mw = watts * 1000.0

    def set_energy(self, mj: float) -> None:
        self.energy_mj = mj
        self.t_base = self.clock()


@dataclass
class FakeNvml:
    """Module-like stand-in for pynvml."""

    gpus: list[FakeGpu] = field(default_factory=list)
    init_error: int | None = None
    inits: int = 0
    shutdowns: int = 0
    counter_calls: int = 0

    NVMLError = FakeNVMLError
    NVML_SUCCESS = 0
    NVML_ERROR_UNINITIALIZED = 1
    NVML_ERROR_NOT_SUPPORTED = 3
    NVML_ERROR_NO_PERMISSION = 4
    NVML_ERROR_DRIVER_NOT_LOADED = 9
    NVML_ERROR_LIBRARY_NOT_FOUND = 12
    NVML_ERROR_GPU_IS_LOST = 15
    NVML_FI_DEV_POWER_INSTANT = 186
    NVML_CLOCK_SM = 1
    NVML_TEMPERATURE_GPU = 0
    NVML_VALUE_TYPE_UNSIGNED_INT = 1

    def __post_init__(self) -> None:
        for gpu in self.gpus:
            gpu.t_base = gpu.clock()

    def _gpu(self, handle: FakeGpu) -> FakeGpu:
        if handle.fail is not None:
            raise FakeNVMLError(handle.fail)
        return handle

    def _supported(self, ok: bool) -> None:
        if not ok:
            raise FakeNVMLError(self.NVML_ERROR_NOT_SUPPORTED)

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise FakeNVMLError(self.init_error)
        self.inits += 1

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> FakeGpu:
        return self.gpus[i]

    def nvmlDeviceGetName(self, h: FakeGpu) -> str:
        return h.name

    def nvmlDeviceGetUUID(self, h: FakeGpu) -> str:
        return h.uuid

    def nvmlDeviceGetPowerUsage(self, h: FakeGpu) -> int:
        self._supported(self._gpu(h).usage)
        return int(h.power_mw)

    def nvmlDeviceGetFieldValues(self, h: FakeGpu, ids: list[int]) -> list[Any]:
        self._gpu(h)
        out = []
        for field_id in ids:
            ok = field_id == self.NVML_FI_DEV_POWER_INSTANT and h.instant
            out.append(
                SimpleNamespace(
                    fieldId=field_id,
                    nvmlReturn=self.NVML_SUCCESS if ok else self.NVML_ERROR_NOT_SUPPORTED,
                    valueType=self.NVML_VALUE_TYPE_UNSIGNED_INT,
                    value=SimpleNamespace(uiVal=int(h.power_mw) if ok else 0),
                )
            )
        return out

    def nvmlDeviceGetTotalEnergyConsumption(self, h: FakeGpu) -> int:
        self._supported(self._gpu(h).counter)
        self.counter_calls += 1
        return int(h.energy_now())

    def nvmlDeviceGetUtilizationRates(self, h: FakeGpu) -> Any:
        return SimpleNamespace(gpu=self._gpu(h).util[0], memory=h.util[1])

    def nvmlDeviceGetMemoryInfo(self, h: FakeGpu) -> Any:
        return SimpleNamespace(used=self._gpu(h).mem_used_bytes, total=141 * 2**30)

    def nvmlDeviceGetClockInfo(self, h: FakeGpu, kind: int) -> int:
        return self._gpu(h).clock_mhz

    def nvmlDeviceGetTemperature(self, h: FakeGpu, sensor: int) -> int:
        return self._gpu(h).temp_c

    def nvmlDeviceGetEnforcedPowerLimit(self, h: FakeGpu) -> int:
        return self._gpu(h).limit_mw

    def nvmlDeviceGetComputeRunningProcesses(self, h: FakeGpu) -> list[Any]:
        self._supported(self._gpu(h).processes is not None)
        return [SimpleNamespace(pid=pid, usedGpuMemory=2**30) for pid in h.processes or []]


class FakeClock:
    """A monotonic clock the test moves by hand: `now_ns()` for meters, `seconds()` for fakes."""

    def __init__(self, start_ns: int = 1_000_000_000_000) -> None:
        self.t_ns = start_ns

    def now_ns(self) -> int:
        return self.t_ns

    def seconds(self) -> float:
        return self.t_ns / 1e9

    def advance(self, seconds: float) -> None:
        self.t_ns += round(seconds * 1e9)


class TimelineWriter:
    """Writes a timeline file the way a spool does: the header first, then every item, one a line."""

    def __init__(self, timeline: Timeline, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._file = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._file.write(json.dumps(timeline.header()) + "\n")
        timeline.subscribe(self.write)

    def write(self, item: dict[str, Any]) -> None:
        with self._lock:
            self._file.write(json.dumps(item) + "\n")

    def close(self) -> None:
        with self._lock:
            self._file.close()
