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
from collections.abc import Sequence
from typing import Any, ClassVar

from wattlab.devices.amd import AmdGpu, Amdsmi, visible_gpus
from wattlab.devices.base import GPU, DeviceError, DeviceUnavailable, GpuInfo
from wattlab.errors import MeterUnavailable
from wattlab.meters.base import Probe
from wattlab.meters.gpu import GpuMeter, GpuState

# amdsmi's power and energy readings follow the SMU's update, ~1 ms for the counter and ~1 s
# for the averaged power on MI200; this bounds how short a window can be told apart.
AMD_UPDATE_PERIOD_S = 0.1


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


class AmdsmiMeter(GpuMeter[GpuState]):
    """Power, energy and telemetry of selected AMD GPUs.

    gpus:   amdsmi indices or UUIDs ("0", a list, or "0,1"). None: the GPUs ROCR_VISIBLE_DEVICES /
            HIP_VISIBLE_DEVICES expose, else every GPU. An unknown one raises ConfigError.
    amdsmi: the amdsmi module to use (tests inject a fake); default: wattlab.devices.amd imports it.
    """

    name: ClassVar[str] = "amdsmi"
    VENDOR: ClassVar[str] = "amdsmi"
    COUNTER_PERIOD_S: ClassVar[float] = AMD_UPDATE_PERIOD_S
    CHECK_FIX: ClassVar[str] = "check `amd-smi list`"
    NO_GPU: ClassVar[tuple[str, str]] = ("amdsmi sees no AMD GPU", "check `amd-smi list`")
    NONE_USABLE: ClassVar[tuple[str, str]] = (
        "no selected AMD GPU reports power or energy (amdsmi answers NOT_SUPPORTED)",
        "update ROCm and the amdgpu driver",
    )

    def __init__(self, gpus: Sequence[str | int] | str | int | None = None, *, amdsmi: Any = None) -> None:
        super().__init__(lambda: Amdsmi(amdsmi), gpus)

    @classmethod
    def probe(cls) -> Probe:
        return _probe_default()

    def _default_gpus(self, inventory: list[GpuInfo]) -> tuple[list[GpuInfo], bool]:
        chosen, notes = visible_gpus(inventory)
        self.notes.extend(notes)
        if not chosen:
            raise MeterUnavailable(
                "ROCR_VISIBLE_DEVICES / HIP_VISIBLE_DEVICES expose no GPU to meter. GPUs present: "
                + "; ".join(g.describe() for g in inventory),
                fix="unset them or name GPUs listed by `amd-smi list`, or pass --gpus",
            )
        return chosen, False

    def _open_gpu(self, info: GpuInfo, device: GPU, explicit: bool) -> GpuState | None:
        assert isinstance(device, AmdGpu)
        has_counter, why_not = _counter_state(device)
        if not _has_power(device) and not has_counter:
            self.notes.append(f"GPU {info.describe()} reports neither power nor energy: skipped")
            return None
        if why_not:
            self.notes.append(why_not)
        domain = self._domain(info, "amdsmi socket power", has_counter)
        return GpuState(device=device, domain=domain, has_counter=has_counter)
