"""NVIDIA GPUs through NVML (`nvidia-ml-py`, imported as `pynvml`): the only module that calls it.

pynvml is imported when an `Nvml` session opens, never at module import. Every function takes an
optional `nvml` module so tests can inject a fake with pynvml's calls and error codes.
NVMLError never leaves this module: NOT_SUPPORTED / FUNCTION_NOT_FOUND become DeviceNotSupported,
anything else DeviceError (with the NVML code), a failed start DeviceUnavailable (with the fix).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from wattlab.devices.base import (
    GPU,
    CapsAccess,
    DeviceError,
    DeviceNotSupported,
    DeviceUnavailable,
    EnergyCount,
    GpuInfo,
    GpuSession,
    MemoryUsage,
    PowerLimits,
    Utilization,
    decode_clock_event_reasons,
    list_with,
    resolve_gpu,
)
from wattlab.devices.visible import cuda_ordinal_to_selector

NO_DRIVER_FIX = (
    "install the NVIDIA driver so that `nvidia-smi` works (in a container: run with --gpus all); "
    "on a CPU-only box the rapl or estimate meters measure the CPU"
)
_NOT_SUPPORTED_CODES = ("NVML_ERROR_NOT_SUPPORTED", "NVML_ERROR_FUNCTION_NOT_FOUND")
CAPS_FIX = (
    "run the sweep as root (`sudo -E wattlab sweep FILE`; in a container, one started with --privileged "
    "or CAP_SYS_ADMIN), then `sudo nvidia-smi -pm 1` keeps the driver loaded between runs; or drop "
    "power_limit_w / sm_clock_mhz / mem_clock_mhz (wattlab has no privileged helper like Zeus's zeusd yet)"
)
_POLICIES = {"power": "NVML_PERF_POLICY_POWER", "thermal": "NVML_PERF_POLICY_THERMAL"}


def _euid() -> int:
    """This process's effective uid (-1 where the OS has none); tests replace it."""
    return os.geteuid() if hasattr(os, "geteuid") else -1


def import_pynvml() -> Any:
    """The pynvml module; DeviceUnavailable when nvidia-ml-py is not installed."""
    try:
        import pynvml
    except ImportError as exc:
        raise DeviceUnavailable("nvidia-ml-py is not installed", fix="pip install nvidia-ml-py") from exc
    return pynvml


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _is_code(nvml: Any, exc: BaseException, name: str) -> bool:
    code = getattr(nvml, name, None)
    return code is not None and getattr(exc, "value", None) == code


def _init_failure(nvml: Any, exc: BaseException) -> DeviceUnavailable:
    code = getattr(exc, "value", None)
    if _is_code(nvml, exc, "NVML_ERROR_LIBRARY_NOT_FOUND"):
        return DeviceUnavailable("no NVIDIA driver (libnvidia-ml.so not found)", code=code, fix=NO_DRIVER_FIX)
    if _is_code(nvml, exc, "NVML_ERROR_DRIVER_NOT_LOADED"):
        return DeviceUnavailable(
            "the NVIDIA driver is installed but not loaded",
            code=code,
            fix="load it (`sudo modprobe nvidia`) or reboot, then check `nvidia-smi`",
        )
    if _is_code(nvml, exc, "NVML_ERROR_NO_PERMISSION"):
        return DeviceUnavailable(
            "no permission to open the NVIDIA devices (/dev/nvidia*)",
            code=code,
            fix="add your user to the group owning /dev/nvidia* (often `video`); in a container use --gpus",
        )
    return DeviceUnavailable(f"NVML could not start: {exc}", code=code, fix=NO_DRIVER_FIX)


class Nvml(GpuSession):
    """One NVML session (nvmlInit ... nvmlShutdown). Use as a context manager or call close()."""

    def __init__(self, nvml: Any = None) -> None:
        self.module = nvml if nvml is not None else import_pynvml()
        try:
            self.module.nvmlInit()
        except Exception as exc:
            raise _init_failure(self.module, exc) from exc
        self._open = True

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """fn(*args) with NVML's errors translated into wattlab's."""
        nvml = self.module
        try:
            return fn(*args)
        except nvml.NVMLError as exc:
            code = getattr(exc, "value", None)
            if any(_is_code(nvml, exc, name) for name in _NOT_SUPPORTED_CODES):
                raise DeviceNotSupported(f"NVML: {exc}", code=code) from exc
            raise DeviceError(f"NVML error {code}: {exc}", code=code) from exc
        except (AttributeError, IndexError) as exc:  # bindings without the call or the field
            raise DeviceNotSupported(f"NVML bindings lack it: {exc}") from exc

    def inventory(self) -> list[GpuInfo]:
        """Every GPU NVML sees, by NVML index."""
        nvml = self.module
        gpus = []
        for i in range(int(self.call(nvml.nvmlDeviceGetCount))):
            handle = self.call(nvml.nvmlDeviceGetHandleByIndex, i)
            name = _text(self.call(nvml.nvmlDeviceGetName, handle))
            gpus.append(GpuInfo(i, name, _text(self.call(nvml.nvmlDeviceGetUUID, handle))))
        return gpus

    def gpu(self, info: GpuInfo) -> NvidiaGpu:
        return NvidiaGpu(self, info, self.call(self.module.nvmlDeviceGetHandleByIndex, info.index))

    def _shutdown(self) -> None:
        self.module.nvmlShutdown()


def _field_number(nvml: Any, fv: Any) -> float:
    """The numeric value of one nvmlFieldValue_t, whatever its value type."""
    kinds = {
        getattr(nvml, "NVML_VALUE_TYPE_DOUBLE", 0): "dVal",
        getattr(nvml, "NVML_VALUE_TYPE_UNSIGNED_INT", 1): "uiVal",
        getattr(nvml, "NVML_VALUE_TYPE_UNSIGNED_LONG", 2): "ulVal",
        getattr(nvml, "NVML_VALUE_TYPE_UNSIGNED_LONG_LONG", 3): "ullVal",
        getattr(nvml, "NVML_VALUE_TYPE_SIGNED_LONG_LONG", 4): "sllVal",
        getattr(nvml, "NVML_VALUE_TYPE_SIGNED_INT", 5): "siVal",
        getattr(nvml, "NVML_VALUE_TYPE_UNSIGNED_SHORT", 6): "usVal",
    }
    return float(getattr(fv.value, kinds.get(fv.valueType, "uiVal")))


class NvidiaGpu(GPU):
    """One NVIDIA GPU of an open `Nvml` session. Costs (H200, driver 580): power ~1 us, counter ~4 ms."""

    def __init__(self, lib: Nvml, info: GpuInfo, handle: Any) -> None:
        self._lib = lib
        self._nvml = lib.module
        self.info = info
        self.handle = handle

    def power_mw(self) -> float:
        """nvmlDeviceGetPowerUsage: a 1 s moving average on Ampere and newer (except GA100)."""
        return float(self._lib.call(self._nvml.nvmlDeviceGetPowerUsage, self.handle))

    def instant_power_mw(self) -> float:
        """The NVML_FI_DEV_POWER_INSTANT field, where the driver fills it."""
        nvml = self._nvml

        def read() -> float:
            fv = nvml.nvmlDeviceGetFieldValues(self.handle, [nvml.NVML_FI_DEV_POWER_INSTANT])[0]
            if fv.nvmlReturn != getattr(nvml, "NVML_SUCCESS", 0):
                raise nvml.NVMLError(fv.nvmlReturn)
            return _field_number(nvml, fv)

        return float(self._lib.call(read))

    def energy(self) -> EnergyCount:
        """nvmlDeviceGetTotalEnergyConsumption: mJ since the driver loaded (Volta and newer)."""
        return EnergyCount(
            float(self._lib.call(self._nvml.nvmlDeviceGetTotalEnergyConsumption, self.handle)), 1.0
        )

    def utilization(self) -> Utilization:
        u = self._lib.call(self._nvml.nvmlDeviceGetUtilizationRates, self.handle)
        return Utilization(float(u.gpu), float(u.memory))

    def memory(self) -> MemoryUsage:
        m = self._lib.call(self._nvml.nvmlDeviceGetMemoryInfo, self.handle)
        return MemoryUsage(int(m.used), int(m.total) if getattr(m, "total", None) is not None else None)

    def temperature_c(self) -> float:
        nvml = self._nvml
        return float(
            self._lib.call(lambda: nvml.nvmlDeviceGetTemperature(self.handle, nvml.NVML_TEMPERATURE_GPU))
        )

    def power_limit_mw(self) -> float:
        return float(self._lib.call(self._nvml.nvmlDeviceGetEnforcedPowerLimit, self.handle))

    def clock_mhz(self) -> float:
        nvml = self._nvml
        return float(self._lib.call(lambda: nvml.nvmlDeviceGetClockInfo(self.handle, nvml.NVML_CLOCK_SM)))

    def processes(self) -> list[int]:
        procs = self._lib.call(self._nvml.nvmlDeviceGetComputeRunningProcesses, self.handle)
        return sorted({int(p.pid) for p in procs})

    # --- caps and throttling ---------------------------------------------------------------------
    def power_limits(self) -> PowerLimits:
        """nvmlDeviceGetPowerManagementLimitConstraints (+ default and current limit), in mW."""
        nvml, h = self._nvml, self.handle
        low, high = self._lib.call(nvml.nvmlDeviceGetPowerManagementLimitConstraints, h)

        def optional(fn: Any) -> float | None:
            try:
                return float(self._lib.call(fn, h))
            except DeviceError:
                return None

        return PowerLimits(
            float(low),
            float(high),
            optional(getattr(nvml, "nvmlDeviceGetPowerManagementDefaultLimit", None)),
            optional(getattr(nvml, "nvmlDeviceGetPowerManagementLimit", None)),
        )

    def supported_mem_clocks_mhz(self) -> list[int]:
        clocks = self._lib.call(self._nvml.nvmlDeviceGetSupportedMemoryClocks, self.handle)
        return sorted({int(c) for c in clocks}, reverse=True)

    def supported_sm_clocks_mhz(self, mem_mhz: int | None = None) -> list[int]:
        mem = mem_mhz if mem_mhz is not None else self.supported_mem_clocks_mhz()[0]
        clocks = self._lib.call(self._nvml.nvmlDeviceGetSupportedGraphicsClocks, self.handle, int(mem))
        return sorted({int(c) for c in clocks}, reverse=True)

    def caps_access(self) -> CapsAccess:
        """Decided from reads only (a real GPU is never changed to find out): NVML sets the power limit
        and locks clocks for root alone, and only where it reports power-limit constraints."""
        try:
            limits = self.power_limits()
        except DeviceNotSupported:
            return CapsAccess(
                False,
                f"GPU {self.info.index} ({self.info.name}) has no settable power limit (NVML: NOT_SUPPORTED)",
                "leave power_limit_w / sm_clock_mhz / mem_clock_mhz unset for runs on this GPU",
            )
        except DeviceError as exc:
            if exc.code == getattr(self._nvml, "NVML_ERROR_NO_PERMISSION", None):
                return CapsAccess(
                    False, f"NVML refuses even to read GPU {self.info.index}'s limits", CAPS_FIX
                )
            return CapsAccess(False, f"GPU {self.info.index}: {exc.message}", CAPS_FIX)
        uid = _euid()
        if uid != 0:
            return CapsAccess(
                False,
                f"wattlab runs as uid {uid}, not root, and NVML lets only root set a power limit or lock "
                "clocks",
                CAPS_FIX,
            )
        note = ""
        try:
            if int(self._lib.call(self._nvml.nvmlDeviceGetPersistenceMode, self.handle)) == 0:
                note = "; persistence mode is off (`sudo nvidia-smi -pm 1` keeps settings between processes)"
        except DeviceError:
            pass
        return CapsAccess(
            True,
            f"running as root; GPU {self.info.index} accepts power limits {limits.range_w()}{note} "
            "(a container without privileges may still refuse the first change: the run then fails "
            "with NVML's answer)",
        )

    def _set(self, what: str, fn: Callable[..., Any], *args: Any) -> None:
        """A setter, with NO_PERMISSION and INVALID_ARGUMENT said in words."""
        try:
            self._lib.call(fn, self.handle, *args)
        except DeviceNotSupported:
            raise
        except DeviceError as exc:
            if exc.code == getattr(self._nvml, "NVML_ERROR_NO_PERMISSION", None):
                raise DeviceError(
                    f"NVML refused to {what} on GPU {self.info.index}: no permission",
                    code=exc.code,
                    fix=CAPS_FIX,
                ) from exc
            if exc.code == getattr(self._nvml, "NVML_ERROR_INVALID_ARGUMENT", None):
                raise DeviceError(
                    f"NVML refused to {what} on GPU {self.info.index}: value out of range",
                    code=exc.code,
                    fix="`wattlab doctor` and `nvidia-smi -q -d POWER,SUPPORTED_CLOCKS` list what it accepts",
                ) from exc
            raise

    def set_power_limit_mw(self, mw: float) -> None:
        self._set(
            f"set the power limit to {mw / 1000:g} W", self._nvml.nvmlDeviceSetPowerManagementLimit, int(mw)
        )

    def lock_sm_clocks_mhz(self, low: int, high: int) -> None:
        self._set(
            f"lock the SM clock to {low}-{high} MHz", self._nvml.nvmlDeviceSetGpuLockedClocks, low, high
        )

    def reset_sm_clocks(self) -> None:
        self._set("reset the SM clock lock", self._nvml.nvmlDeviceResetGpuLockedClocks)

    def lock_mem_clocks_mhz(self, low: int, high: int) -> None:
        self._set(
            f"lock the memory clock to {low}-{high} MHz",
            self._nvml.nvmlDeviceSetMemoryLockedClocks,
            low,
            high,
        )

    def reset_mem_clocks(self) -> None:
        self._set("reset the memory clock lock", self._nvml.nvmlDeviceResetMemoryLockedClocks)

    def clock_event_reasons(self) -> list[str]:
        """nvmlDeviceGetCurrentClocksEventReasons (named ...ClocksThrottleReasons before driver 535)."""
        nvml = self._nvml
        fn = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
            nvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None
        )
        if fn is None:
            raise DeviceNotSupported("NVML bindings lack clock-event reasons")
        return decode_clock_event_reasons(int(self._lib.call(fn, self.handle)))

    def violation_ns(self, policy: str) -> int:
        """nvmlDeviceGetViolationStatus(NVML_PERF_POLICY_POWER | _THERMAL).violationTime, in ns."""
        nvml = self._nvml
        kind = getattr(nvml, _POLICIES[policy], None)
        if kind is None:
            raise DeviceNotSupported(f"NVML bindings lack {_POLICIES[policy]}")
        return int(self._lib.call(nvml.nvmlDeviceGetViolationStatus, self.handle, kind).violationTime)

    def process_memory(self) -> dict[int, int]:
        """Device memory (bytes) each compute process holds on this GPU, by the driver's PID.
        Processes whose memory the driver does not report (usedGpuMemory None: MIG, WDDM) are left out."""
        procs = self._lib.call(self._nvml.nvmlDeviceGetComputeRunningProcesses, self.handle)
        out: dict[int, int] = {}
        for p in procs:
            used = getattr(p, "usedGpuMemory", None)
            if used is not None:
                out[int(p.pid)] = out.get(int(p.pid), 0) + int(used)
        return out


# --- one-shot questions (each opens and closes its own session; never raise) ------------------------
def list_gpus(nvml: Any = None) -> list[GpuInfo]:
    """Every GPU NVML sees; [] where NVML is not installed, has no driver or fails."""
    return list_with(lambda: Nvml(nvml))


def gpu_count(nvml: Any = None) -> int:
    """How many GPUs NVML sees (0 without a driver or nvidia-ml-py)."""
    try:
        with Nvml(nvml) as lib:
            return int(lib.call(lib.module.nvmlDeviceGetCount))
    except Exception:
        return 0


def compute_capability(index: int, nvml: Any = None) -> tuple[int, int] | None:
    """The CUDA compute capability (major, minor) of NVML GPU `index`; None where NVML cannot tell."""
    try:
        with Nvml(nvml) as lib:
            handle = lib.call(lib.module.nvmlDeviceGetHandleByIndex, int(index))
            major, minor = lib.call(lib.module.nvmlDeviceGetCudaComputeCapability, handle)
            return int(major), int(minor)
    except Exception:
        return None


def can_change_caps(nvml: Any = None) -> CapsAccess:
    """Whether wattlab may change power limits and clock locks on every GPU here, and why (reads only)."""
    try:
        lib = Nvml(nvml)
    except DeviceError as exc:
        return CapsAccess(False, f"no NVIDIA GPU to cap: {exc.message}", exc.fix)
    with lib:
        try:
            gpus = [lib.gpu(info) for info in lib.inventory()]
        except DeviceError as exc:
            return CapsAccess(False, f"NVML failed to list the GPUs: {exc.message}", exc.fix)
        if not gpus:
            return CapsAccess(False, "NVML sees no GPU", NO_DRIVER_FIX)
        answers = [g.caps_access() for g in gpus]
    refused = next((a for a in answers if not a.allowed), None)
    return refused or answers[0]


def gpu_processes(indices: Sequence[int], nvml: Any = None) -> dict[int, list[int]]:
    """PIDs holding a compute context on each GPU (NVML index -> sorted pids).

    A GPU whose driver answers NOT_SUPPORTED (vGPU, Jetson) or fails is left out: unknown is not
    "nobody". The PIDs are the driver's: in a container without the host's PID namespace they may
    name no process visible here.
    """
    try:
        lib = Nvml(nvml)
    except Exception:
        return {}
    out: dict[int, list[int]] = {}
    with lib:
        for index in indices:
            try:
                handle = lib.call(lib.module.nvmlDeviceGetHandleByIndex, int(index))
                out[int(index)] = NvidiaGpu(lib, GpuInfo(int(index), "", ""), handle).processes()
            except DeviceError:
                continue  # NOT_SUPPORTED, a lost GPU, or bindings without the call
    return out


def cuda_ordinal_to_nvml_index(
    ordinal: int, env: Mapping[str, str] | None = None, *, nvml: Any = None
) -> str:
    """The NVML index ("3") of CUDA device `ordinal` in this process, as a string.

    CUDA numbers the devices CUDA_VISIBLE_DEVICES exposes from 0, so `cuda:1` with
    CUDA_VISIBLE_DEVICES=2,3 is NVML GPU 3. Index entries need only the environment (pass `env`
    to test). A UUID entry is turned into its index through NVML (`nvml`, default pynvml); where
    NVML cannot answer, the UUID itself is returned, which NvmlMeter(gpus=[...]) also accepts.
    Engines use it to report the device they ran on as "gpu:<index>", the meters' device names.
    """
    selector = cuda_ordinal_to_selector(ordinal, env)
    if selector.isdigit():
        return selector
    try:
        with Nvml(nvml) as lib:
            return str(resolve_gpu(selector, lib.inventory(), "GPU").index)
    except Exception:
        return selector
