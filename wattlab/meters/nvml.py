"""The NVIDIA GPU meter, on top of `wattlab.devices.nvidia` (the only code that calls NVML).

Per GPU, each fast read gives power (W) and telemetry; each slow read gives the cumulative energy
counter (J since the meter opened). Where the pieces come from:

- Power: the instantaneous field `NVML_FI_DEV_POWER_INSTANT` when the driver supports it, else
  `nvmlDeviceGetPowerUsage` (a 1 s moving average on Ampere and newer, except GA100), else, when
  power is NOT_SUPPORTED but the counter works, power derived from counter differences over ~0.5 s.
  Which one is recorded in the domain label and in `NvmlMeter.power_source`.
- Energy: `nvmlDeviceGetTotalEnergyConsumption` (mJ since the driver loaded, Volta and newer).
  Where it is NOT_SUPPORTED (Jetson's NVML, vGPU, pre-Volta) the domain has no counter and windows
  integrate power instead. A decrease means the driver reloaded: the cumulative value is kept
  monotonic and the reset is noted in `NvmlMeter.notes`.
- Measured on an H200 (driver 580): power and counter both update every ~100 ms; a power read costs
  ~1 us, a counter read ~4 ms. Hence the sampler reads the counter only at ~2 Hz and at marks.

A failed read gives a Sample with `error` set (missing, lowering coverage), never a 0.
"""

from __future__ import annotations

import functools
import os
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from wattlab.devices.base import GPU, DeviceError, DeviceUnavailable, GpuInfo, resolve_gpu
from wattlab.devices.nvidia import Nvml
from wattlab.devices.visible import parse_cuda_visible_devices
from wattlab.errors import ConfigError, MeterUnavailable
from wattlab.meters.base import Probe
from wattlab.meters.gpu import GpuMeter, GpuState

# Measured on an H200 (driver 580): both power and the energy counter change every ~100 ms.
NVML_UPDATE_PERIOD_S = 0.1
# Span over which power is derived from the counter when the driver reports no power at all.
DERIVED_POWER_SPAN_S = 0.5

POWER_INSTANT = "instant"  # NVML_FI_DEV_POWER_INSTANT field
POWER_USAGE = "usage"  # nvmlDeviceGetPowerUsage (1 s average on Ampere+)
POWER_FROM_COUNTER = "counter-derived"  # energy counter differences
_POWER_SOURCE_TEXT = {
    POWER_INSTANT: "instant power field",
    POWER_USAGE: "nvmlDeviceGetPowerUsage (1 s average on Ampere+)",
    POWER_FROM_COUNTER: "power derived from the energy counter",
}


# --- capabilities ----------------------------------------------------------------------------------
def _capabilities(gpu: GPU) -> tuple[str | None, bool]:
    """(power source or None, has energy counter) of one GPU, by trying each reading once."""
    has_counter = True
    try:
        gpu.energy()
    except DeviceError:
        has_counter = False
    source: str | None = None
    try:
        # A powered GPU never draws 0 W: a zero means the driver does not really fill the field.
        if gpu.instant_power_mw() > 0:
            source = POWER_INSTANT
    except DeviceError:
        pass  # older drivers or bindings lack the field
    if source is None:
        try:
            gpu.power_mw()
            source = POWER_USAGE
        except DeviceError:
            source = POWER_FROM_COUNTER if has_counter else None
    return source, has_counter


def probe_module(nvml: Any) -> Probe:
    """Whether NVML (the given pynvml module, or a fake) can meter any GPU here. Never raises."""
    try:
        lib = Nvml(nvml)
    except DeviceUnavailable as exc:
        return Probe("nvml", False, exc.message, fix=exc.fix)
    except Exception as exc:
        return Probe("nvml", False, f"NVML could not start: {exc}", fix="check `nvidia-smi`")
    with lib:
        try:
            inventory = lib.inventory()
            if not inventory:
                return Probe(
                    "nvml",
                    False,
                    "NVML sees no GPU",
                    fix="check `nvidia-smi`; in a container pass --gpus all",
                )
            details = []
            usable = 0
            for info in inventory:
                source, has_counter = _capabilities(lib.gpu(info))
                usable += source is not None
                power = _POWER_SOURCE_TEXT[source] if source else "power NOT_SUPPORTED"
                counter = "energy counter" if has_counter else "no energy counter (power is integrated)"
                details.append(f"{info.describe()}: {power}; {counter}")
            if not usable:
                return Probe(
                    "nvml",
                    False,
                    "NVML answers NOT_SUPPORTED for power and energy on every GPU (Jetson's NVML does this)",
                    fix="on a Jetson use the jetson meter; elsewhere update the NVIDIA driver",
                    details=tuple(details),
                )
            return Probe("nvml", True, f"{len(inventory)} NVIDIA GPU(s)", details=tuple(details))
        except Exception as exc:
            return Probe("nvml", False, f"NVML failed while listing GPUs: {exc}", fix="check `nvidia-smi`")


@functools.cache
def _probe_default() -> Probe:
    try:
        return probe_module(None)
    except Exception as exc:  # a probe never raises
        return Probe("nvml", False, f"NVML probe failed: {exc}", fix="check `nvidia-smi`")


# --- the meter -------------------------------------------------------------------------------------
@dataclass
class _Gpu(GpuState):
    power_source: str = POWER_USAGE
    derived: deque[tuple[int, float]] = field(default_factory=deque)  # (t_ns, J) for counter-derived power


class NvmlMeter(GpuMeter[_Gpu]):
    """Power, energy and telemetry of selected NVIDIA GPUs.

    gpus: NVML indices or UUIDs ("0", "GPU-8a2f...", a list, or "0,1"). None: the GPUs
          CUDA_VISIBLE_DEVICES exposes, else every GPU. An unknown one raises ConfigError listing
          the GPUs present.
    nvml: the pynvml module to use (tests inject a fake); default: wattlab.devices.nvidia imports it.
    """

    name: ClassVar[str] = "nvml"
    VENDOR: ClassVar[str] = "NVML"
    COUNTER_PERIOD_S: ClassVar[float] = NVML_UPDATE_PERIOD_S
    CHECK_FIX: ClassVar[str] = "check `nvidia-smi`"
    NO_GPU: ClassVar[tuple[str, str]] = (
        "NVML sees no GPU",
        "check `nvidia-smi`; in a container pass --gpus all",
    )
    NONE_USABLE: ClassVar[tuple[str, str]] = (
        "no selected GPU reports power or energy (NVML answers NOT_SUPPORTED)",
        "on a Jetson use the jetson meter; elsewhere update the NVIDIA driver",
    )

    def __init__(self, gpus: Sequence[str | int] | str | int | None = None, *, nvml: Any = None) -> None:
        self.power_source: dict[str, str] = {}
        super().__init__(lambda: Nvml(nvml), gpus)

    @classmethod
    def probe(cls) -> Probe:
        return _probe_default()

    def _default_gpus(self, inventory: list[GpuInfo]) -> tuple[list[GpuInfo], bool]:
        if "CUDA_VISIBLE_DEVICES" not in os.environ:
            return list(inventory), False
        value = os.environ["CUDA_VISIBLE_DEVICES"]
        selectors, notes = parse_cuda_visible_devices(value)
        self.notes.extend(notes)
        chosen = []
        for s in selectors:
            try:
                chosen.append(resolve_gpu(s, inventory, "CUDA_VISIBLE_DEVICES entry"))
            except ConfigError as exc:
                # CUDA hides an unknown entry and everything after it: do the same, and say so.
                self.notes.append(exc.message)
                break
        if not chosen:
            listing = "; ".join(g.describe() for g in inventory)
            raise MeterUnavailable(
                f"CUDA_VISIBLE_DEVICES={value!r} exposes no GPU to meter. GPUs present: {listing}",
                fix="unset CUDA_VISIBLE_DEVICES or set it to GPUs listed, or pass --gpus",
            )
        if os.environ.get("CUDA_DEVICE_ORDER") != "PCI_BUS_ID" and len({g.name for g in inventory}) > 1:
            self.notes.append(
                "mixed GPU models and CUDA_DEVICE_ORDER is not PCI_BUS_ID: CUDA indices may differ "
                "from NVML's; set CUDA_DEVICE_ORDER=PCI_BUS_ID or use UUIDs"
            )
        return chosen, True

    def _open_gpu(self, info: GpuInfo, device: GPU, explicit: bool) -> _Gpu | None:
        source, has_counter = _capabilities(device)
        if source is None:
            message = f"GPU {info.describe()} reports neither power nor energy (NOT_SUPPORTED)"
            if explicit:
                raise MeterUnavailable(
                    message, fix="on a Jetson use the jetson meter; else update the driver"
                )
            self.notes.append(message + ": skipped")
            return None
        domain = self._domain(info, _POWER_SOURCE_TEXT[source], has_counter)
        if not has_counter:
            self.notes.append(f"GPU {info.index}: energy counter NOT_SUPPORTED, windows integrate power")
        self.power_source[domain.id] = source
        return _Gpu(device=device, domain=domain, has_counter=has_counter, power_source=source)

    def _power_w(self, gpu: _Gpu, t_ns: int) -> float | None:
        if gpu.power_source == POWER_INSTANT:
            return gpu.device.instant_power_mw() / 1000.0
        if gpu.power_source == POWER_USAGE:
            return gpu.device.power_mw() / 1000.0
        # Counter-derived: mean power over the last ~0.5 s, since the counter ticks every ~0.1 s.
        energy = self._energy_j(gpu)
        history = gpu.derived
        history.append((t_ns, energy))
        while len(history) > 2 and t_ns - history[1][0] >= DERIVED_POWER_SPAN_S * 1e9:
            history.popleft()
        t0, e0 = history[0]
        if t_ns - t0 < NVML_UPDATE_PERIOD_S * 1e9:
            return None  # not enough span yet to say anything
        return (energy - e0) / ((t_ns - t0) / 1e9)
