"""AMD GPUs through amdsmi, on top of `wattlab.devices.amd` (the only code that calls amdsmi).

Per GPU: power (W) from `amdsmi_get_power_info` (current socket power on MI300+, else the
average), telemetry every TELEMETRY_EVERY-th read, and the cumulative energy counter (ticks x
resolution, uJ) read by `read_counters`. Where the counter is NOT_SUPPORTED, or unreliable (MI100),
the domain has no counter and windows integrate power instead; the note says why.
A decrease of the counter (driver reload) is kept monotonic, as for NVML.

A failed read gives a Sample with `error` set, never a 0.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from wattlab.devices.amd import AmdGpu, Amdsmi, visible_gpus
from wattlab.devices.base import (
    DeviceError,
    DeviceNotSupported,
    DeviceUnavailable,
    GpuInfo,
    normalize_selection,
    resolve_gpu,
)
from wattlab.errors import MeterUnavailable
from wattlab.meters.base import Domain, Meter, Probe, Sample, now_ns

# amdsmi's power and energy readings follow the SMU's update, ~1 ms for the counter and ~1 s
# for the averaged power on MI200; this bounds how short a window can be told apart.
AMD_UPDATE_PERIOD_S = 0.1
TELEMETRY_EVERY = 5


def _counter_state(gpu: AmdGpu) -> tuple[bool, str | None]:
    """(use the energy counter, note why not)."""
    try:
        gpu.energy()
    except DeviceError:
        return False, f"GPU {gpu.info.index}: energy counter NOT_SUPPORTED, windows integrate power"
    if not gpu.counter_reliable:
        return False, (
            f"GPU {gpu.info.index} ({gpu.info.name}): amdsmi's energy counter is unreliable on this "
            "model, windows integrate power"
        )
    return True, None


def _has_power(gpu: AmdGpu) -> bool:
    try:
        gpu.power_mw()
        return True
    except DeviceError:
        return False


def probe_module(amdsmi: Any) -> Probe:
    """Whether amdsmi (the given module, or a fake) can meter any AMD GPU here. Never raises."""
    try:
        lib = Amdsmi(amdsmi)
    except DeviceUnavailable as exc:
        return Probe("amdsmi", False, exc.message, fix=exc.fix)
    except Exception as exc:
        return Probe("amdsmi", False, f"amdsmi could not start: {exc}", fix="check `amd-smi list`")
    with lib:
        try:
            inventory = lib.inventory()
            if not inventory:
                return Probe("amdsmi", False, "amdsmi sees no AMD GPU", fix="check `amd-smi list`")
            details, usable = [], 0
            for info in inventory:
                gpu = lib.gpu(info)
                power = _has_power(gpu)
                counter, _ = _counter_state(gpu)
                usable += power or counter
                details.append(
                    f"{info.describe()}: {'socket power' if power else 'power NOT_SUPPORTED'}; "
                    f"{'energy counter' if counter else 'no energy counter (power is integrated)'}"
                )
            if not usable:
                return Probe(
                    "amdsmi",
                    False,
                    "amdsmi answers NOT_SUPPORTED for power on every GPU",
                    fix="update ROCm and the amdgpu driver",
                    details=tuple(details),
                )
            return Probe("amdsmi", True, f"{len(inventory)} AMD GPU(s)", details=tuple(details))
        except Exception as exc:
            return Probe(
                "amdsmi", False, f"amdsmi failed while listing GPUs: {exc}", fix="check `amd-smi list`"
            )


@functools.cache
def _probe_default() -> Probe:
    return probe_module(None)


@dataclass
class _Gpu:
    device: AmdGpu
    domain: Domain
    has_counter: bool
    base_mj: float = 0.0
    offset_mj: float = 0.0
    last_raw_mj: float | None = None
    unsupported: set[str] = field(default_factory=set)
    reads: int = 0


class AmdsmiMeter(Meter):
    """Power, energy and telemetry of selected AMD GPUs.

    gpus:   amdsmi indices or UUIDs ("0", a list, or "0,1"). None: the GPUs ROCR_VISIBLE_DEVICES /
            HIP_VISIBLE_DEVICES expose, else every GPU. An unknown one raises ConfigError.
    amdsmi: the amdsmi module to use (tests inject a fake); default: wattlab.devices.amd imports it.
    """

    name: ClassVar[str] = "amdsmi"
    HAS_COUNTERS: ClassVar[bool] = True

    def __init__(self, gpus: Sequence[str | int] | str | int | None = None, *, amdsmi: Any = None) -> None:
        self.notes: list[str] = []
        try:
            self._lib = Amdsmi(amdsmi)
        except DeviceUnavailable as exc:
            raise MeterUnavailable(exc.message, fix=exc.fix) from exc
        try:
            self._gpus = self._open_gpus(normalize_selection(gpus))
        except BaseException:
            self._lib.close()
            raise
        self.domains = tuple(g.domain for g in self._gpus)

    @classmethod
    def probe(cls) -> Probe:
        return _probe_default()

    @property
    def gpus(self) -> list[GpuInfo]:
        return [g.device.info for g in self._gpus]

    def _open_gpus(self, selection: list[str] | None) -> list[_Gpu]:
        try:
            inventory = self._lib.inventory()
        except DeviceError as exc:
            raise MeterUnavailable(
                f"amdsmi failed while listing GPUs: {exc.message}", fix="check `amd-smi list`"
            ) from exc
        if not inventory:
            raise MeterUnavailable("amdsmi sees no AMD GPU", fix="check `amd-smi list`")
        if selection is not None:
            chosen = list(
                {g.index: g for g in (resolve_gpu(s, inventory, "GPU") for s in selection)}.values()
            )
        else:
            chosen, notes = visible_gpus(inventory)
            self.notes.extend(notes)
            if not chosen:
                raise MeterUnavailable(
                    "ROCR_VISIBLE_DEVICES / HIP_VISIBLE_DEVICES expose no GPU to meter. GPUs present: "
                    + "; ".join(g.describe() for g in inventory),
                    fix="unset them or name GPUs listed by `amd-smi list`, or pass --gpus",
                )
        opened: list[_Gpu] = []
        for info in chosen:
            device = self._lib.gpu(info)
            has_counter, why_not = _counter_state(device)
            if not _has_power(device) and not has_counter:
                self.notes.append(f"GPU {info.describe()} reports neither power nor energy: skipped")
                continue
            if why_not:
                self.notes.append(why_not)
            counter_text = "energy counter" if has_counter else "no energy counter: power integrated"
            domain = Domain(
                id=f"gpu{info.index}",
                kind="gpu",
                meter=self.name,
                label=f"GPU {info.index} {info.name} ({info.uuid}); amdsmi socket power; {counter_text}",
                device=f"gpu:{info.index}",
                has_counter=has_counter,
                counter_period_s=AMD_UPDATE_PERIOD_S,
            )
            gpu = _Gpu(device=device, domain=domain, has_counter=has_counter)
            if has_counter:
                gpu.base_mj = gpu.last_raw_mj = device.energy().energy_mj
            opened.append(gpu)
        if not opened:
            raise MeterUnavailable(
                "no selected AMD GPU reports power or energy (amdsmi answers NOT_SUPPORTED)",
                fix="update ROCm and the amdgpu driver",
            )
        return opened

    def _energy_j(self, gpu: _Gpu) -> float:
        raw = gpu.device.energy().energy_mj
        if gpu.last_raw_mj is not None and raw < gpu.last_raw_mj:
            gpu.offset_mj += gpu.last_raw_mj
            self.notes.append(
                f"GPU {gpu.device.info.index}: energy counter went back from {gpu.last_raw_mj:.0f} to "
                f"{raw:.0f} mJ (driver reload?); cumulative energy kept monotonic"
            )
        gpu.last_raw_mj = raw
        return (gpu.offset_mj + raw - gpu.base_mj) / 1000.0

    def _reading(self, gpu: _Gpu, t_ns: int, power_w: float) -> Sample:
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
                gpu.unsupported.add(key)
            except DeviceError:
                pass
        util, mem = got.get("util"), got.get("mem")
        return Sample(
            t_ns=t_ns,
            domain=gpu.domain.id,
            power_w=power_w,
            util_pct=util.gpu_pct if util is not None else None,
            mem_util_pct=util.memory_pct if util is not None else None,
            mem_used_mib=mem.used_bytes / 2**20 if mem is not None else None,
            clock_mhz=got.get("clock"),
            temp_c=got.get("temp"),
            power_limit_w=got["limit"] / 1000.0 if "limit" in got else None,
        )

    def read_power(self) -> list[Sample]:
        samples = []
        for gpu in self._gpus:
            t = now_ns()
            try:
                power = gpu.device.power_mw() / 1000.0
            except DeviceError as exc:
                samples.append(
                    Sample(t_ns=t, domain=gpu.domain.id, error=f"amdsmi power read failed: {exc.message}")
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
                samples.append(Sample(t_ns=now_ns(), domain=gpu.domain.id, energy_j=self._energy_j(gpu)))
            except DeviceError as exc:
                samples.append(
                    Sample(
                        t_ns=now_ns(), domain=gpu.domain.id, error=f"amdsmi energy read failed: {exc.message}"
                    )
                )
        return samples

    def close(self) -> None:
        self._lib.close()
