"""AMD GPUs through amdsmi (ROCm's AMD SMI Python bindings): the only module that calls it.

amdsmi is imported when an `Amdsmi` session opens, never at module import; every function takes
an optional `amdsmi` module so tests inject a fake. AmdSmiLibraryException never leaves this module:
NOT_SUPPORTED becomes DeviceNotSupported, anything else DeviceError, a failed start
DeviceUnavailable (with the fix).

Units as amdsmi gives them, converted to wattlab's (base.py): power info in W, the energy counter
as ticks x `counter_resolution` uJ, the power cap in uW, clocks in MHz, temperatures in C.
The energy counter is known to be unreliable on MI100 (`counter_reliable` is False there): the
meter integrates power instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

from wattlab.devices.base import (
    GPU,
    DeviceError,
    DeviceNotSupported,
    DeviceUnavailable,
    EnergyCount,
    GpuInfo,
    GpuSession,
    MemoryUsage,
    Utilization,
    list_with,
    resolve_gpu,
)
from wattlab.devices.visible import amd_visible_selectors
from wattlab.errors import ConfigError

NO_DRIVER_FIX = (
    "install ROCm with the amdgpu driver so that `amd-smi list` works, and add your user to the "
    "`render` and `video` groups (in a container pass /dev/kfd and /dev/dri)"
)
NOT_SUPPORTED_CODE = 2  # AMDSMI_STATUS_NOT_SUPPORTED
UNRELIABLE_COUNTER_MODELS = ("MI100",)  # amdsmi_get_energy_count drifts from power on these


def import_amdsmi() -> Any:
    """The amdsmi module; DeviceUnavailable when it is missing or its library cannot load."""
    try:
        import amdsmi
    except ImportError as exc:
        raise DeviceUnavailable(
            "amdsmi is not installed", fix="pip install amdsmi (the version matching your ROCm)"
        ) from exc
    except Exception as exc:  # the bindings load libamd_smi.so at import
        raise DeviceUnavailable(f"amdsmi could not load its library: {exc}", fix=NO_DRIVER_FIX) from exc
    return amdsmi


def _code(exc: BaseException) -> int | None:
    getter = getattr(exc, "get_error_code", None)
    try:
        return int(getter()) if callable(getter) else None
    except (TypeError, ValueError):
        return None


def _number(value: Any) -> float | None:
    """A float from an amdsmi field, None for "N/A" or anything not numeric."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, dict) and "value" in value:  # newer bindings: {"value": 300, "unit": "W"}
        return _number(value["value"])
    try:
        return float(str(value).split()[0])
    except (ValueError, IndexError):
        return None


class Amdsmi(GpuSession):
    """One amdsmi session (amdsmi_init ... amdsmi_shut_down). A context manager."""

    def __init__(self, amdsmi: Any = None) -> None:
        self.module = amdsmi if amdsmi is not None else import_amdsmi()
        flags = getattr(getattr(self.module, "AmdSmiInitFlags", None), "INIT_AMD_GPUS", None)
        try:
            self.module.amdsmi_init(*(() if flags is None else (flags,)))
        except Exception as exc:
            raise DeviceUnavailable(
                f"amdsmi could not start: {exc}", code=_code(exc), fix=NO_DRIVER_FIX
            ) from exc
        self._open = True

    @property
    def _exc(self) -> type[BaseException]:
        return getattr(self.module, "AmdSmiLibraryException", Exception)  # type: ignore[no-any-return]

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """fn(*args) with amdsmi's errors translated into wattlab's."""
        try:
            return fn(*args)
        except (AttributeError, KeyError, IndexError, TypeError) as exc:  # older or newer bindings
            raise DeviceNotSupported(f"amdsmi bindings lack it: {exc!r}") from exc
        except self._exc as exc:
            code = _code(exc)
            if code == NOT_SUPPORTED_CODE:
                raise DeviceNotSupported(f"amdsmi: {exc}", code=code) from exc
            raise DeviceError(f"amdsmi error {code}: {exc}", code=code) from exc

    def handles(self) -> list[Any]:
        return list(self.call(self.module.amdsmi_get_processor_handles))

    def inventory(self) -> list[GpuInfo]:
        """Every AMD GPU amdsmi sees, by amdsmi index (the ROCm enumeration order)."""
        gpus = []
        for i, handle in enumerate(self.handles()):
            try:
                name = str(self.call(self.module.amdsmi_get_gpu_asic_info, handle)["market_name"])
            except DeviceError:
                name = "AMD GPU"
            try:
                uuid = str(self.call(self.module.amdsmi_get_gpu_device_uuid, handle))
            except DeviceError:
                uuid = f"amd-gpu-{i}"
            gpus.append(GpuInfo(i, name, uuid, vendor="amd"))
        return gpus

    def gpu(self, info: GpuInfo) -> AmdGpu:
        handles = self.handles()
        if not 0 <= info.index < len(handles):
            raise DeviceError(f"amdsmi has no GPU {info.index}")
        return AmdGpu(self, info, handles[info.index])

    def _shutdown(self) -> None:
        self.module.amdsmi_shut_down()


class AmdGpu(GPU):
    """One AMD GPU of an open `Amdsmi` session."""

    def __init__(self, lib: Amdsmi, info: GpuInfo, handle: Any) -> None:
        self._lib = lib
        self._smi = lib.module
        self.info = info
        self.handle = handle

    @property
    def counter_reliable(self) -> bool:
        """False on models whose energy counter is known to be wrong (MI100): integrate power there."""
        return not any(model in self.info.name.upper() for model in UNRELIABLE_COUNTER_MODELS)

    def _power_field(self, *keys: str) -> float:
        info = self._lib.call(self._smi.amdsmi_get_power_info, self.handle)
        for key in keys:
            watts = _number(info.get(key))
            if watts is not None and watts > 0:
                return watts * 1000.0
        raise DeviceNotSupported(f"amdsmi power info has no {' or '.join(keys)}")

    def power_mw(self) -> float:
        """Socket power: `current_socket_power` (MI300 and newer), else `average_socket_power`."""
        return self._power_field("current_socket_power", "average_socket_power")

    def instant_power_mw(self) -> float:
        return self._power_field("current_socket_power")

    def energy(self) -> EnergyCount:
        """The energy accumulator x its resolution (uJ), in mJ. Older amdsmi calls the ticks "power"."""
        count = self._lib.call(self._smi.amdsmi_get_energy_count, self.handle)
        ticks = _number(count.get("energy_accumulator", count.get("power")))
        resolution_uj = _number(count.get("counter_resolution"))
        if ticks is None or resolution_uj is None:
            raise DeviceNotSupported("amdsmi energy count has no accumulator or resolution")
        return EnergyCount(ticks * resolution_uj / 1000.0, resolution_uj / 1000.0)

    def utilization(self) -> Utilization:
        activity = self._lib.call(self._smi.amdsmi_get_gpu_activity, self.handle)
        gfx = _number(activity.get("gfx_activity"))
        if gfx is None:
            raise DeviceNotSupported("amdsmi reports no gfx activity")
        return Utilization(gfx, _number(activity.get("umc_activity")))

    def memory(self) -> MemoryUsage:
        vram = self._smi.AmdSmiMemoryType.VRAM if hasattr(self._smi, "AmdSmiMemoryType") else 0
        used = int(self._lib.call(self._smi.amdsmi_get_gpu_memory_usage, self.handle, vram))
        try:
            total: int | None = int(self._lib.call(self._smi.amdsmi_get_gpu_memory_total, self.handle, vram))
        except DeviceError:
            total = None
        return MemoryUsage(used, total)

    def temperature_c(self) -> float:
        smi = self._smi
        kinds = getattr(smi, "AmdSmiTemperatureType", None)
        metric = smi.AmdSmiTemperatureMetric.CURRENT if hasattr(smi, "AmdSmiTemperatureMetric") else 0
        last: DeviceError = DeviceNotSupported("amdsmi reports no temperature")
        for sensor in ("EDGE", "HOTSPOT"):  # MI300 has no edge sensor
            kind = getattr(kinds, sensor, 0 if sensor == "EDGE" else 1)
            try:
                return float(self._lib.call(smi.amdsmi_get_temp_metric, self.handle, kind, metric))
            except DeviceError as exc:
                last = exc
        raise last

    def power_limit_mw(self) -> float:
        cap = self._lib.call(self._smi.amdsmi_get_power_cap_info, self.handle)
        microwatts = _number(cap.get("power_cap"))
        if microwatts is None:
            raise DeviceNotSupported("amdsmi reports no power cap")
        return microwatts / 1000.0

    def clock_mhz(self) -> float:
        smi = self._smi
        gfx = smi.AmdSmiClkType.GFX if hasattr(smi, "AmdSmiClkType") else 0
        clock = self._lib.call(smi.amdsmi_get_clock_info, self.handle, gfx)
        mhz = _number(clock.get("clk", clock.get("cur_clk")))
        if mhz is None:
            raise DeviceNotSupported("amdsmi reports no graphics clock")
        return mhz

    def processes(self) -> list[int]:
        pids = set()
        for proc in self._lib.call(self._smi.amdsmi_get_gpu_process_list, self.handle):
            if not isinstance(proc, dict):  # older bindings list handles to look up
                proc = self._lib.call(self._smi.amdsmi_get_gpu_process_info, self.handle, proc)
            pids.add(int(proc["pid"]))
        return sorted(pids)


# --- choosing and listing ---------------------------------------------------------------------------
def visible_gpus(
    inventory: list[GpuInfo], env: Mapping[str, str] | None = None
) -> tuple[list[GpuInfo], list[str]]:
    """The GPUs ROCR_VISIBLE_DEVICES / HIP_VISIBLE_DEVICES expose (all when unset), and notes.

    An entry naming no GPU here hides it and the rest, as the ROCm runtime does; the note says so.
    """
    selectors, notes = amd_visible_selectors(env)
    if selectors is None:
        return list(inventory), notes
    chosen: list[GpuInfo] = []
    for selector in selectors:
        try:
            gpu = resolve_gpu(selector, inventory, "ROCR/HIP_VISIBLE_DEVICES entry")
        except ConfigError as exc:
            notes.append(exc.message)
            break
        if gpu not in chosen:
            chosen.append(gpu)
    return chosen, notes


def list_gpus(amdsmi: Any = None) -> list[GpuInfo]:
    """Every AMD GPU amdsmi sees; [] where amdsmi is missing, has no driver or fails. Never raises."""
    return list_with(lambda: Amdsmi(amdsmi))


def gpu_processes(indices: list[int], amdsmi: Any = None) -> dict[int, list[int]]:
    """PIDs using each AMD GPU (amdsmi index -> sorted pids); unknown ones left out. Never raises."""
    try:
        lib = Amdsmi(amdsmi)
    except Exception:
        return {}
    out: dict[int, list[int]] = {}
    with lib:
        for index in indices:
            with contextlib.suppress(DeviceError):
                out[int(index)] = lib.gpu(GpuInfo(int(index), "", "", "amd")).processes()
    return out
