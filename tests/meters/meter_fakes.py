"""Fakes for the meter tests: an NVML module, a controllable clock, a timeline-file writer.

The fake NVML implements exactly the pynvml calls NvmlMeter makes, with NVML's error codes, so
the meter runs end to end without a GPU: NOT_SUPPORTED readings, errors mid-run, counter resets.
It also implements the caps calls (power-limit constraints and setting, clock locks, clock-event
reasons, violation counters) with NVML's refusals: NO_PERMISSION, NOT_SUPPORTED, INVALID_ARGUMENT.
With `state_path` the GPUs' settings live in a JSON file, so a change made by one process (a runner
killed with SIGKILL) is seen by the next (`FakeNvml.from_state`).
"""

from __future__ import annotations

import json
import os
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
    # caps (an H200's values): power-limit range and default in mW, supported clocks in MHz
    power_min_mw: int = 200_000
    power_max_mw: int = 700_000
    default_limit_mw: int = 700_000
    caps: bool = True  # power-limit constraints supported (NOT_SUPPORTED otherwise)
    mem_clocks: list[int] = field(default_factory=lambda: [3201, 2201])  # as the lent H200 reports
    sm_clocks: list[int] = field(default_factory=lambda: [1980, 1830, 1755, 1410, 1005, 510])
    locked_sm: list[int] | None = None  # [low, high] while locked
    locked_mem: list[int] | None = None
    set_error: int | None = None  # every setter raises this NVML code (NO_PERMISSION: a container)
    persistence: int = 1
    reasons: int = 0  # clock-event reason mask
    violation_power_ns: int = 0
    violation_thermal_ns: int = 0
    violations: bool = True  # nvmlDeviceGetViolationStatus supported
    power_violation_share: float = 0.0  # the power counter also grows by this share of the time passing

    def energy_now(self) -> float:
        return self.energy_mj + self.power_mw * (self.clock() - self.t_base)

    def set_power(self, watts: float) -> None:
        self.energy_mj = self.energy_now()
        self.t_base = self.clock()
        self.power_mw = watts * 1000.0

    def set_energy(self, mj: float) -> None:
        self.energy_mj = mj
        self.t_base = self.clock()


# The FakeGpu fields a state file holds (what a caps change or a test setting touches).
STATE_FIELDS = (
    "name", "uuid", "limit_mw", "power_min_mw", "power_max_mw", "default_limit_mw", "caps", "mem_clocks",
    "sm_clocks", "locked_sm", "locked_mem", "set_error", "persistence", "reasons", "violation_power_ns",
    "violation_thermal_ns", "violations", "power_violation_share",
)  # fmt: skip


@dataclass
class FakeNvml:
    """Module-like stand-in for pynvml. `calls` logs every setter call, in order."""

    gpus: list[FakeGpu] = field(default_factory=list)
    init_error: int | None = None
    inits: int = 0
    shutdowns: int = 0
    counter_calls: int = 0
    state_path: Path | None = None  # where the GPUs' settings are kept across processes
    calls: list[list[Any]] = field(default_factory=list)
    before_set: Callable[[str], None] | None = None  # called before each setter acts (a test's check)

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
    NVML_ERROR_INVALID_ARGUMENT = 2
    NVML_PERF_POLICY_POWER = 0
    NVML_PERF_POLICY_THERMAL = 1

    def __post_init__(self) -> None:
        for gpu in self.gpus:
            gpu.t_base = gpu.clock()

    # --- state shared between processes -------------------------------------------------------------
    @classmethod
    def from_state(cls, path: Path) -> FakeNvml:
        """The fake whose GPUs are those saved in `path` (by `save_state`, here or in another process)."""
        data = json.loads(Path(path).read_text())
        gpus = [FakeGpu(**g) for g in data["gpus"]]
        return cls(gpus, state_path=Path(path), calls=data.get("calls", []))

    def save_state(self, path: Path | None = None) -> None:
        """Write the GPUs' settings and the call log atomically (a reader never sees half a file)."""
        target = Path(path or self.state_path)  # type: ignore[arg-type]
        data = {"gpus": [{k: getattr(g, k) for k in STATE_FIELDS} for g in self.gpus], "calls": self.calls}
        tmp = target.with_name(f".{target.name}.{os.getpid()}")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, target)

    def _setter(self, h: FakeGpu, name: str, *args: Any) -> FakeGpu:
        self._gpu(h)
        if self.before_set is not None:
            self.before_set(name)
        if h.set_error is not None:
            raise FakeNVMLError(h.set_error)
        self._supported(h.caps)
        self.calls.append([name, self.gpus.index(h), *args])
        return h

    def _saved(self) -> None:
        if self.state_path is not None:
            self.save_state()

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

    # --- caps ---------------------------------------------------------------------------------------
    def nvmlDeviceGetPowerManagementLimitConstraints(self, h: FakeGpu) -> list[int]:
        self._supported(self._gpu(h).caps)
        return [h.power_min_mw, h.power_max_mw]

    def nvmlDeviceGetPowerManagementDefaultLimit(self, h: FakeGpu) -> int:
        self._supported(self._gpu(h).caps)
        return h.default_limit_mw

    def nvmlDeviceGetPowerManagementLimit(self, h: FakeGpu) -> int:
        self._supported(self._gpu(h).caps)
        return h.limit_mw

    def nvmlDeviceGetPersistenceMode(self, h: FakeGpu) -> int:
        return self._gpu(h).persistence

    def nvmlDeviceGetSupportedMemoryClocks(self, h: FakeGpu) -> list[int]:
        self._supported(bool(self._gpu(h).mem_clocks))
        return list(h.mem_clocks)

    def nvmlDeviceGetSupportedGraphicsClocks(self, h: FakeGpu, mem_mhz: int) -> list[int]:
        if mem_mhz not in self._gpu(h).mem_clocks:
            raise FakeNVMLError(self.NVML_ERROR_INVALID_ARGUMENT)
        # a lower memory clock allows only the lower half of the SM clocks, as on real boards
        return list(h.sm_clocks) if mem_mhz == max(h.mem_clocks) else h.sm_clocks[len(h.sm_clocks) // 2 :]

    def nvmlDeviceSetPowerManagementLimit(self, h: FakeGpu, mw: int) -> None:
        self._setter(h, "set_power_limit", mw)
        if not h.power_min_mw <= mw <= h.power_max_mw:
            raise FakeNVMLError(self.NVML_ERROR_INVALID_ARGUMENT)
        h.limit_mw = mw
        self._saved()

    def nvmlDeviceSetGpuLockedClocks(self, h: FakeGpu, low: int, high: int) -> None:
        self._setter(h, "lock_sm", low, high)
        h.locked_sm = [low, high]
        self._saved()

    def nvmlDeviceResetGpuLockedClocks(self, h: FakeGpu) -> None:
        self._setter(h, "reset_sm")
        h.locked_sm = None
        self._saved()

    def nvmlDeviceSetMemoryLockedClocks(self, h: FakeGpu, low: int, high: int) -> None:
        self._setter(h, "lock_mem", low, high)
        h.locked_mem = [low, high]
        self._saved()

    def nvmlDeviceResetMemoryLockedClocks(self, h: FakeGpu) -> None:
        self._setter(h, "reset_mem")
        h.locked_mem = None
        self._saved()

    # --- throttling --------------------------------------------------------------------------------
    def nvmlDeviceGetCurrentClocksEventReasons(self, h: FakeGpu) -> int:
        return self._gpu(h).reasons

    def nvmlDeviceGetViolationStatus(self, h: FakeGpu, policy: int) -> Any:
        self._supported(self._gpu(h).violations)
        if policy == self.NVML_PERF_POLICY_POWER:
            ns = h.violation_power_ns + int(h.power_violation_share * (h.clock() - h.t_base) * 1e9)
        else:
            ns = h.violation_thermal_ns
        return SimpleNamespace(referenceTime=int(time.time() * 1e6), violationTime=ns)

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
