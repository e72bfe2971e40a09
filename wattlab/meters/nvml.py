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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from wattlab.devices.base import DeviceError, DeviceNotSupported, DeviceUnavailable, GpuInfo, resolve_gpu
from wattlab.devices.base import normalize_selection as _normalize_selection
from wattlab.devices.nvidia import NvidiaGpu, Nvml
from wattlab.devices.visible import parse_cuda_visible_devices
from wattlab.errors import ConfigError, MeterUnavailable
from wattlab.meters.base import Domain, Meter, Probe, Sample, now_ns

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
def _capabilities(gpu: NvidiaGpu) -> tuple[str | None, bool]:
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
TELEMETRY_EVERY = 5  # power reads per telemetry read (10 Hz power -> 2 Hz telemetry)


@dataclass
class _Gpu:
    info: GpuInfo
    device: NvidiaGpu
    domain: Domain
    power_source: str
    has_counter: bool
    base_mj: float = 0.0  # raw counter at open
    offset_mj: float = 0.0  # energy accumulated before driver counter resets
    last_raw_mj: float | None = None
    derived: deque[tuple[int, float]] = field(default_factory=deque)  # (t_ns, J) for counter-derived power
    unsupported: set[str] = field(default_factory=set)  # telemetry NVML refused once: not asked again
    reads: int = 0  # power reads so far; telemetry is read on every TELEMETRY_EVERY-th


class NvmlMeter(Meter):
    """Power, energy and telemetry of selected NVIDIA GPUs.

    gpus: NVML indices or UUIDs ("0", "GPU-8a2f...", a list, or "0,1"). None: the GPUs
          CUDA_VISIBLE_DEVICES exposes, else every GPU. An unknown one raises ConfigError listing
          the GPUs present.
    nvml: the pynvml module to use (tests inject a fake); default: wattlab.devices.nvidia imports it.
    """

    name: ClassVar[str] = "nvml"
    HAS_COUNTERS: ClassVar[bool] = True

    def __init__(self, gpus: Sequence[str | int] | str | int | None = None, *, nvml: Any = None) -> None:
        self.notes: list[str] = []
        self.power_source: dict[str, str] = {}
        self._closed = True
        try:
            self._lib = Nvml(nvml)
        except DeviceUnavailable as exc:
            raise MeterUnavailable(exc.message, fix=exc.fix) from exc
        self._closed = False
        try:
            self._gpus = self._open_gpus(_normalize_selection(gpus))
        except BaseException:
            self.close()
            raise
        self.domains = tuple(g.domain for g in self._gpus)

    @classmethod
    def probe(cls) -> Probe:
        return _probe_default()

    @property
    def gpus(self) -> list[GpuInfo]:
        """The metered GPUs (NVML index, name, UUID), in domain order."""
        return [g.info for g in self._gpus]

    def _selected(self, selection: list[str] | None, inventory: list[GpuInfo]) -> list[tuple[GpuInfo, bool]]:
        """(GPU, explicitly chosen) pairs, in the order given, without duplicates."""
        if selection is not None:
            chosen = [resolve_gpu(s, inventory, "GPU") for s in selection]
            explicit = True
        elif "CUDA_VISIBLE_DEVICES" in os.environ:
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
            explicit = True
        else:
            chosen = list(inventory)
            explicit = False
        unique: dict[int, GpuInfo] = {g.index: g for g in chosen}
        return [(g, explicit) for g in unique.values()]

    def _open_gpus(self, selection: list[str] | None) -> list[_Gpu]:
        try:
            inventory = self._lib.inventory()
        except DeviceError as exc:
            raise MeterUnavailable(
                f"NVML failed while listing GPUs: {exc.message}", fix="check `nvidia-smi`"
            ) from exc
        if not inventory:
            raise MeterUnavailable(
                "NVML sees no GPU", fix="check `nvidia-smi`; in a container pass --gpus all"
            )
        opened: list[_Gpu] = []
        for info, explicit in self._selected(selection, inventory):
            device = self._lib.gpu(info)
            source, has_counter = _capabilities(device)
            if source is None:
                message = f"GPU {info.describe()} reports neither power nor energy (NOT_SUPPORTED)"
                if explicit:
                    raise MeterUnavailable(
                        message, fix="on a Jetson use the jetson meter; else update the driver"
                    )
                self.notes.append(message + ": skipped")
                continue
            counter_text = "energy counter" if has_counter else "no energy counter: power integrated"
            domain = Domain(
                id=f"gpu{info.index}",
                kind="gpu",
                meter=self.name,
                label=f"GPU {info.index} {info.name} ({info.uuid}); {_POWER_SOURCE_TEXT[source]}; "
                f"{counter_text}",
                device=f"gpu:{info.index}",
                has_counter=has_counter,
                counter_period_s=NVML_UPDATE_PERIOD_S,
            )
            gpu = _Gpu(info=info, device=device, domain=domain, power_source=source, has_counter=has_counter)
            if has_counter:
                gpu.base_mj = gpu.last_raw_mj = device.energy().energy_mj
            else:
                self.notes.append(f"GPU {info.index}: energy counter NOT_SUPPORTED, windows integrate power")
            self.power_source[domain.id] = source
            opened.append(gpu)
        if not opened:
            raise MeterUnavailable(
                "no selected GPU reports power or energy (NVML answers NOT_SUPPORTED)",
                fix="on a Jetson use the jetson meter; elsewhere update the NVIDIA driver",
            )
        return opened

    # --- readings ----------------------------------------------------------------------------------
    def _energy_j(self, gpu: _Gpu) -> float:
        """Cumulative energy since open in J; monotonic across driver counter resets."""
        raw = gpu.device.energy().energy_mj
        if gpu.last_raw_mj is not None and raw < gpu.last_raw_mj:
            # The counter restarts from 0 when the driver reloads: keep what was counted so far.
            gpu.offset_mj += gpu.last_raw_mj
            self.notes.append(
                f"GPU {gpu.info.index}: energy counter went back from {gpu.last_raw_mj:.0f} to {raw:.0f} mJ "
                "(driver reload?); cumulative energy kept monotonic"
            )
        gpu.last_raw_mj = raw
        return (gpu.offset_mj + raw - gpu.base_mj) / 1000.0

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

    def _reading(self, gpu: _Gpu, t_ns: int, power_w: float | None) -> Sample:
        """A power Sample, with telemetry on every TELEMETRY_EVERY-th read: utilization (%), memory
        used (MiB), SM clock (MHz), temperature (C), enforced power limit (W).

        Telemetry changes slowly and the live view refreshes at 4 Hz, so reading it at 2 Hz instead
        of 10 keeps the sampler's cost down (measured on an H100: 1.18% of a core with every read).
        One NOT_SUPPORTED is not asked again."""
        gpu.reads += 1
        if (gpu.reads - 1) % TELEMETRY_EVERY:
            return Sample(t_ns=t_ns, domain=gpu.domain.id, power_w=power_w)
        dev = gpu.device
        readers: dict[str, Callable[[], Any]] = {
            "util": dev.utilization,
            "mem": dev.memory,
            "clock": dev.clock_mhz,
            "temp": dev.temperature_c,
            "limit": dev.power_limit_mw,
        }
        got: dict[str, Any] = {}
        for key, read in readers.items():
            if key in gpu.unsupported:
                continue
            try:
                got[key] = read()
            except DeviceNotSupported:
                gpu.unsupported.add(key)  # one NOT_SUPPORTED is not asked again
            except DeviceError:
                pass  # telemetry is secondary to power: a failed one is just absent from this sample
        util, mem = got.get("util"), got.get("mem")
        return Sample(
            t_ns=t_ns,
            domain=gpu.domain.id,
            power_w=power_w,
            util_pct=util.gpu_pct if util is not None else None,
            mem_util_pct=util.memory_pct if util is not None else None,
            mem_used_mib=mem.used_bytes / 2**20 if mem is not None else None,
            clock_mhz=float(got["clock"]) if "clock" in got else None,
            temp_c=float(got["temp"]) if "temp" in got else None,
            power_limit_w=float(got["limit"]) / 1000.0 if "limit" in got else None,
        )

    def read_power(self) -> list[Sample]:
        samples = []
        for gpu in self._gpus:
            t = now_ns()
            try:
                power = self._power_w(gpu, t)
            except DeviceError as exc:
                samples.append(
                    Sample(t_ns=t, domain=gpu.domain.id, error=f"NVML power read failed: {exc.message}")
                )
                continue
            samples.append(self._reading(gpu, t, power))
        return samples

    def read_counters(self) -> list[Sample]:
        samples = []
        for gpu in self._gpus:
            if not gpu.has_counter:
                continue
            try:
                energy = self._energy_j(gpu)
                samples.append(Sample(t_ns=now_ns(), domain=gpu.domain.id, energy_j=energy))
            except DeviceError as exc:
                samples.append(
                    Sample(
                        t_ns=now_ns(), domain=gpu.domain.id, error=f"NVML energy read failed: {exc.message}"
                    )
                )
        return samples

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._lib.close()
