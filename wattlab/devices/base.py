"""The vendor-neutral GPU contract every device backend implements, and its value types.

Units are fixed here and nowhere else: power in mW, energy in mJ, utilization in %, memory in
bytes, temperature in degrees C, clocks in MHz. A reading the hardware or driver does not offer
raises `DeviceNotSupported` (ask once, remember); any other vendor failure raises `DeviceError`.
Vendor exceptions (pynvml.NVMLError, amdsmi.AmdSmiLibraryException) never leave `wattlab.devices`.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Self

from wattlab.errors import ConfigError, WattlabError


class DeviceError(WattlabError):
    """A vendor library failed to answer about a device. `code` is the vendor's error code."""

    title = "GPU problem"

    def __init__(self, message: str, *, code: int | None = None, fix: str | None = None) -> None:
        super().__init__(message, fix=fix)
        self.code = code


class DeviceNotSupported(DeviceError):
    """The device or driver does not offer this reading (NVML/amdsmi NOT_SUPPORTED, old bindings)."""

    title = "Not supported by this GPU"


class DeviceUnavailable(DeviceError):
    """The vendor library is not installed, its driver is absent, or it cannot start."""

    title = "GPU library unavailable"


@dataclass(frozen=True, slots=True)
class GpuInfo:
    """One GPU: its vendor index (NVML / amdsmi order), marketing name and UUID."""

    index: int
    name: str
    uuid: str
    vendor: str = "nvidia"

    def describe(self) -> str:
        return f"{self.index}: {self.name} ({self.uuid})"


@dataclass(frozen=True, slots=True)
class Utilization:
    """Busy share over the driver's last sample period, in % (0-100)."""

    gpu_pct: float
    memory_pct: float | None = None


@dataclass(frozen=True, slots=True)
class MemoryUsage:
    """Device memory in bytes."""

    used_bytes: int
    total_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class EnergyCount:
    """A cumulative energy counter reading: mJ since the driver loaded, and its resolution in mJ."""

    energy_mj: float
    resolution_mj: float | None = None


@dataclass(frozen=True, slots=True)
class PowerLimits:
    """A GPU's power-limit settings in mW: the range the board accepts, its default and the limit set now."""

    min_mw: float
    max_mw: float
    default_mw: float | None = None
    current_mw: float | None = None

    def range_w(self) -> str:
        return f"{self.min_mw / 1000:g}-{self.max_mw / 1000:g} W"


@dataclass(frozen=True, slots=True)
class CapsAccess:
    """Whether wattlab may change this GPU's power limit and clock locks, why, and how to allow it."""

    allowed: bool
    reason: str
    fix: str | None = None


# Clock-event ("throttle") reason bits, the same on every NVIDIA driver (nvml.h), by wattlab's names.
CLOCK_EVENT_REASONS: dict[int, str] = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
    0x200: "board_limit",
    0x400: "reliability",
}


def decode_clock_event_reasons(mask: int) -> list[str]:
    """The names of the bits set in a clock-event reason mask; an unknown bit as `bit_0x...`."""
    names = []
    bit = 1
    while bit <= mask:
        if mask & bit:
            names.append(CLOCK_EVENT_REASONS.get(bit, f"bit_{bit:#x}"))
        bit <<= 1
    return names


class GPU(abc.ABC):
    """One opened GPU of one vendor. Only `power_mw` is required; the rest default to NotSupported.

    Instances are only valid while the vendor library session that made them is open.
    """

    info: GpuInfo

    @abc.abstractmethod
    def power_mw(self) -> float:
        """Board power in mW (the driver's usual reading; on NVIDIA Ampere+ a 1 s average)."""

    def instant_power_mw(self) -> float:
        """Instantaneous board power in mW, where the driver has a separate field for it."""
        raise DeviceNotSupported("no instantaneous power reading")

    def energy(self) -> EnergyCount:
        """The cumulative energy counter (mJ since driver load; may restart when the driver reloads)."""
        raise DeviceNotSupported("no energy counter")

    def utilization(self) -> Utilization:
        raise DeviceNotSupported("no utilization reading")

    def memory(self) -> MemoryUsage:
        raise DeviceNotSupported("no memory reading")

    def temperature_c(self) -> float:
        raise DeviceNotSupported("no temperature reading")

    def power_limit_mw(self) -> float:
        """The enforced power limit in mW."""
        raise DeviceNotSupported("no power limit reading")

    def clock_mhz(self) -> float:
        """The graphics/SM clock in MHz."""
        raise DeviceNotSupported("no clock reading")

    def processes(self) -> list[int]:
        """PIDs holding a compute context on this GPU (the driver's PID namespace)."""
        raise DeviceNotSupported("no process list")

    # --- caps (power limit, clock locks) and throttling; see sessions/caps.py ------------------------
    def power_limits(self) -> PowerLimits:
        """The power-limit range, default and current setting."""
        raise DeviceNotSupported("no power-limit constraints")

    def supported_mem_clocks_mhz(self) -> list[int]:
        """Memory clocks the GPU can be locked to, highest first."""
        raise DeviceNotSupported("no supported memory clock list")

    def supported_sm_clocks_mhz(self, mem_mhz: int | None = None) -> list[int]:
        """SM (graphics) clocks allowed with memory clock `mem_mhz` (default: the highest), highest first."""
        raise DeviceNotSupported("no supported SM clock list")

    def caps_access(self) -> CapsAccess:
        """Whether this process may change the power limit and clock locks. Reads only: never sets."""
        return CapsAccess(False, "this GPU's library offers no power-limit or clock control")

    def set_power_limit_mw(self, mw: float) -> None:
        raise DeviceNotSupported("no power-limit control")

    def lock_sm_clocks_mhz(self, low: int, high: int) -> None:
        raise DeviceNotSupported("no SM clock locking")

    def reset_sm_clocks(self) -> None:
        raise DeviceNotSupported("no SM clock locking")

    def lock_mem_clocks_mhz(self, low: int, high: int) -> None:
        raise DeviceNotSupported("no memory clock locking")

    def reset_mem_clocks(self) -> None:
        raise DeviceNotSupported("no memory clock locking")

    def clock_event_reasons(self) -> list[str]:
        """Why the clocks are held below their maximum right now (names from CLOCK_EVENT_REASONS)."""
        raise DeviceNotSupported("no clock-event (throttle) reasons")

    def violation_ns(self, policy: str) -> int:
        """Cumulative time (ns) the GPU was held back by `policy` ("power" | "thermal") since driver load."""
        raise DeviceNotSupported("no violation counters")


class GpuSession(abc.ABC):
    """One open session of a vendor library (init ... shutdown), a context manager.

    `close()` is idempotent and never raises (the driver may already be gone).
    """

    _open: bool = False

    @abc.abstractmethod
    def inventory(self) -> list[GpuInfo]:
        """Every GPU the library sees, by its index."""

    @abc.abstractmethod
    def gpu(self, info: GpuInfo) -> GPU:
        """The GPU `info` names, valid while this session is open."""

    @abc.abstractmethod
    def _shutdown(self) -> None:
        """The library's shutdown call."""

    def close(self) -> None:
        if self._open:
            self._open = False
            with contextlib.suppress(Exception):  # the driver may already be gone
                self._shutdown()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def list_with(open_session: Callable[[], GpuSession]) -> list[GpuInfo]:
    """The inventory of a session opened for the purpose; [] where the library is missing, has no
    driver or fails. Never raises."""
    try:
        with open_session() as lib:
            return lib.inventory()
    except Exception:
        return []


# --- choosing GPUs (vendor-neutral) ----------------------------------------------------------------
def normalize_selection(gpus: Sequence[str | int] | str | int | None) -> list[str] | None:
    """A --gpus value ("0,1", 0, ["0", "GPU-..."]) as a list of selectors; None stays None."""
    if gpus is None:
        return None
    if isinstance(gpus, int):
        return [str(gpus)]
    if isinstance(gpus, str):
        return [s.strip() for s in gpus.split(",") if s.strip()]
    return [str(g).strip() for g in gpus]


def resolve_gpu(selector: str, inventory: Sequence[GpuInfo], origin: str = "GPU") -> GpuInfo:
    """The GPU an index ("0"), a device ("gpu:0", "gpu0") or a UUID (or unique prefix) names.

    ConfigError listing the GPUs present otherwise; MIG devices are refused (power is per GPU).
    """
    s = selector.strip()
    for prefix in ("gpu:", "gpu"):
        if s.lower().startswith(prefix) and s[len(prefix) :].isdigit():
            s = s[len(prefix) :]
            break
    found: list[GpuInfo] = []
    if s.isdigit():
        found = [g for g in inventory if g.index == int(s)]
    elif s.startswith("MIG-"):
        raise ConfigError(
            f"{origin} names MIG device {s}: power is read per physical GPU",
            fix="select the parent GPU by index or GPU- UUID (see `nvidia-smi -L`)",
        )
    elif s:
        found = [g for g in inventory if g.uuid.lower().startswith(s.lower())]
    if len(found) == 1:
        return found[0]
    listing = "; ".join(g.describe() for g in inventory) or "none"
    what = "matches several GPUs" if found else "is not a GPU on this box"
    raise ConfigError(
        f"{origin} {selector!r} {what}. GPUs present: {listing}",
        fix="select GPUs by index or UUID as listed (`nvidia-smi -L` / `amd-smi list` show them)",
    )
