"""NVIDIA GPUs through NVML (`nvidia-ml-py`, imported as `pynvml`, lazily: never at module import).

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

import contextlib
import functools
import importlib
import os
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

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

_NO_DRIVER_FIX = (
    "install the NVIDIA driver so that `nvidia-smi` works (in a container: run with --gpus all); "
    "on a CPU-only box the rapl or estimate meters measure the CPU"
)


def _import_pynvml() -> Any:
    return importlib.import_module("pynvml")


def _error_code(exc: BaseException) -> int | None:
    return getattr(exc, "value", None)


def _is_code(nvml: Any, exc: BaseException, name: str) -> bool:
    code = getattr(nvml, name, None)
    return code is not None and _error_code(exc) == code


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# --- GPU selection ---------------------------------------------------------------------------------
def parse_cuda_visible_devices(value: str) -> tuple[list[str], list[str]]:
    """Selectors named by a CUDA_VISIBLE_DEVICES value, and notes about what was dropped.

    Follows CUDA: comma-separated indices or UUIDs (`GPU-...`, a unique prefix is enough); an
    invalid entry hides it and every entry after it; "" or "-1" hides every GPU. MIG devices
    (`MIG-...`) are dropped with a note: NVML reads power per physical GPU.
    Integer entries follow CUDA_DEVICE_ORDER: they equal NVML indices with `PCI_BUS_ID`, and on
    boxes with one GPU model (CUDA's default FASTEST_FIRST may reorder mixed models).
    """
    selectors: list[str] = []
    notes: list[str] = []
    for raw in value.split(","):
        entry = raw.strip()
        if not entry:
            continue
        if entry.startswith("MIG-"):
            notes.append(f"CUDA_VISIBLE_DEVICES entry {entry} is a MIG device: not metered separately")
            continue
        if entry.startswith("GPU-") or (entry.isdigit() and int(entry) >= 0):
            selectors.append(entry)
            continue
        notes.append(f"CUDA_VISIBLE_DEVICES entry {entry!r} is invalid: CUDA hides it and the rest")
        break
    return selectors, notes


def cuda_ordinal_to_nvml_index(ordinal: int, env: dict[str, str] | None = None, *, nvml: Any = None) -> str:
    """The NVML index ("3") of CUDA device `ordinal` in this process, as a string.

    CUDA numbers the devices CUDA_VISIBLE_DEVICES exposes from 0, so `cuda:1` with
    CUDA_VISIBLE_DEVICES=2,3 is NVML GPU 3. Index entries need only the environment (pass `env`
    to test). A UUID entry is turned into its index through NVML (`nvml`, default pynvml); where
    NVML cannot answer, the UUID itself is returned, which NvmlMeter(gpus=[...]) also accepts.
    Engines use it to report the device they ran on as "gpu:<index>", the meters' device names.
    """
    environ = os.environ if env is None else env
    if ordinal < 0:
        raise ConfigError(f"CUDA device ordinal {ordinal} is negative", fix="use cuda:0, cuda:1, ...")
    value = environ.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return str(ordinal)
    selectors, _ = parse_cuda_visible_devices(value)
    if ordinal >= len(selectors):
        raise ConfigError(
            f"CUDA device {ordinal} does not exist: CUDA_VISIBLE_DEVICES={value!r} exposes "
            f"{len(selectors)} GPU(s)",
            fix="use a smaller device ordinal or change CUDA_VISIBLE_DEVICES",
        )
    selector = selectors[ordinal]
    return selector if selector.isdigit() else (_index_of_uuid(selector, nvml) or selector)


def _index_of_uuid(uuid: str, nvml: Any = None) -> str | None:
    """NVML index of the GPU with this UUID (or unique prefix), or None when NVML cannot tell."""
    try:
        nvml = nvml if nvml is not None else _import_pynvml()
        nvml.nvmlInit()
    except Exception:
        return None
    try:
        return str(_resolve(uuid, _inventory(nvml), "GPU").index)
    except Exception:
        return None
    finally:
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()


@dataclass(frozen=True, slots=True)
class GpuInfo:
    index: int
    name: str
    uuid: str

    def describe(self) -> str:
        return f"{self.index}: {self.name} ({self.uuid})"


def _inventory(nvml: Any) -> list[GpuInfo]:
    gpus = []
    for i in range(int(nvml.nvmlDeviceGetCount())):
        handle = nvml.nvmlDeviceGetHandleByIndex(i)
        gpus.append(GpuInfo(i, _text(nvml.nvmlDeviceGetName(handle)), _text(nvml.nvmlDeviceGetUUID(handle))))
    return gpus


def _normalize_selection(gpus: Sequence[str | int] | str | int | None) -> list[str] | None:
    if gpus is None:
        return None
    if isinstance(gpus, int):
        return [str(gpus)]
    if isinstance(gpus, str):
        return [s.strip() for s in gpus.split(",") if s.strip()]
    return [str(g).strip() for g in gpus]


def _resolve(selector: str, inventory: list[GpuInfo], origin: str) -> GpuInfo:
    """One GPU named by an NVML index ("0"), a device ("gpu:0", "gpu0") or a UUID (or unique prefix)."""
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
            f"{origin} names MIG device {s}: NVML reads power per physical GPU",
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
        fix="select GPUs by NVML index or UUID as listed (`nvidia-smi -L` shows them)",
    )


def resolve_gpu(selector: str, inventory: list[GpuInfo], origin: str = "GPU") -> GpuInfo:
    """The GPU an index, "gpu:N" or UUID (prefix) names; ConfigError listing the GPUs otherwise."""
    return _resolve(selector, inventory, origin)


# --- who is on the GPUs ----------------------------------------------------------------------------
def list_gpus(nvml: Any = None) -> list[GpuInfo]:
    """Every GPU NVML sees; [] where NVML is not installed, has no driver or fails. Never raises."""
    try:
        nvml = nvml if nvml is not None else _import_pynvml()
        nvml.nvmlInit()
    except Exception:
        return []
    try:
        return _inventory(nvml)
    except Exception:
        return []
    finally:
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()


def gpu_processes(indices: Sequence[int], nvml: Any = None) -> dict[int, list[int]]:
    """PIDs holding a compute context on each GPU (NVML index -> sorted pids).

    A GPU whose driver answers NOT_SUPPORTED (vGPU, Jetson) or fails is left out: unknown is not
    "nobody". The PIDs are the driver's: in a container without the host's PID namespace they may
    name no process visible here.
    """
    try:
        nvml = nvml if nvml is not None else _import_pynvml()
        nvml.nvmlInit()
    except Exception:
        return {}
    out: dict[int, list[int]] = {}
    try:
        for index in indices:
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(int(index))
                procs = nvml.nvmlDeviceGetComputeRunningProcesses(handle)
            except (nvml.NVMLError, AttributeError, IndexError):
                continue  # NOT_SUPPORTED, a lost GPU, or bindings without the call
            out[int(index)] = sorted({int(p.pid) for p in procs})
    finally:
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()
    return out


# --- capabilities ----------------------------------------------------------------------------------
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


def _read_instant_mw(nvml: Any, handle: Any) -> float:
    fv = nvml.nvmlDeviceGetFieldValues(handle, [nvml.NVML_FI_DEV_POWER_INSTANT])[0]
    if fv.nvmlReturn != getattr(nvml, "NVML_SUCCESS", 0):
        raise nvml.NVMLError(fv.nvmlReturn)
    return _field_number(nvml, fv)


def _capabilities(nvml: Any, handle: Any) -> tuple[str | None, bool]:
    """(power source or None, has energy counter) of one GPU, by trying each reading once."""
    has_counter = True
    try:
        nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    except nvml.NVMLError:
        has_counter = False
    source: str | None = None
    try:
        # A powered GPU never draws 0 W: a zero means the driver does not really fill the field.
        if _read_instant_mw(nvml, handle) > 0:
            source = POWER_INSTANT
    except (nvml.NVMLError, AttributeError, IndexError):
        pass  # older drivers or bindings lack the field
    if source is None:
        try:
            nvml.nvmlDeviceGetPowerUsage(handle)
            source = POWER_USAGE
        except nvml.NVMLError:
            source = POWER_FROM_COUNTER if has_counter else None
    return source, has_counter


def probe_module(nvml: Any) -> Probe:
    """Whether NVML (the given module) can meter any GPU here. Never raises."""
    try:
        nvml.nvmlInit()
    except Exception as exc:
        return _init_failure_probe(nvml, exc)
    try:
        inventory = _inventory(nvml)
        if not inventory:
            return Probe(
                "nvml", False, "NVML sees no GPU", fix="check `nvidia-smi`; in a container pass --gpus all"
            )
        details = []
        usable = 0
        for gpu in inventory:
            source, has_counter = _capabilities(nvml, nvml.nvmlDeviceGetHandleByIndex(gpu.index))
            usable += source is not None
            power = _POWER_SOURCE_TEXT[source] if source else "power NOT_SUPPORTED"
            counter = "energy counter" if has_counter else "no energy counter (power is integrated)"
            details.append(f"{gpu.describe()}: {power}; {counter}")
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
    finally:
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()


def _init_failure_probe(nvml: Any, exc: BaseException) -> Probe:
    if _is_code(nvml, exc, "NVML_ERROR_LIBRARY_NOT_FOUND"):
        return Probe("nvml", False, "no NVIDIA driver (libnvidia-ml.so not found)", fix=_NO_DRIVER_FIX)
    if _is_code(nvml, exc, "NVML_ERROR_DRIVER_NOT_LOADED"):
        return Probe(
            "nvml",
            False,
            "the NVIDIA driver is installed but not loaded",
            fix="load it (`sudo modprobe nvidia`) or reboot, then check `nvidia-smi`",
        )
    if _is_code(nvml, exc, "NVML_ERROR_NO_PERMISSION"):
        return Probe(
            "nvml",
            False,
            "no permission to open the NVIDIA devices (/dev/nvidia*)",
            fix="add your user to the group owning /dev/nvidia* (often `video`); in a container use --gpus",
        )
    return Probe("nvml", False, f"NVML could not start: {exc}", fix=_NO_DRIVER_FIX)


@functools.cache
def _probe_default() -> Probe:
    try:
        nvml = _import_pynvml()
    except ImportError:
        return Probe("nvml", False, "nvidia-ml-py is not installed", fix="pip install nvidia-ml-py")
    return probe_module(nvml)


# --- the meter -------------------------------------------------------------------------------------
TELEMETRY_EVERY = 5  # power reads per telemetry read (10 Hz power -> 2 Hz telemetry)


@dataclass
class _Gpu:
    info: GpuInfo
    handle: Any
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
    nvml: the pynvml module to use (tests inject a fake); default imports pynvml here.
    """

    name: ClassVar[str] = "nvml"
    HAS_COUNTERS: ClassVar[bool] = True

    def __init__(self, gpus: Sequence[str | int] | str | int | None = None, *, nvml: Any = None) -> None:
        self.notes: list[str] = []
        self.power_source: dict[str, str] = {}
        self._closed = True
        if nvml is None:
            try:
                nvml = _import_pynvml()
            except ImportError as exc:
                raise MeterUnavailable(
                    "nvidia-ml-py is not installed", fix="pip install nvidia-ml-py"
                ) from exc
        self._nvml = nvml
        try:
            nvml.nvmlInit()
        except Exception as exc:
            probe = _init_failure_probe(nvml, exc)
            raise MeterUnavailable(probe.reason, fix=probe.fix) from exc
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
            chosen = [_resolve(s, inventory, "GPU") for s in selection]
            explicit = True
        elif "CUDA_VISIBLE_DEVICES" in os.environ:
            value = os.environ["CUDA_VISIBLE_DEVICES"]
            selectors, notes = parse_cuda_visible_devices(value)
            self.notes.extend(notes)
            chosen = []
            for s in selectors:
                try:
                    chosen.append(_resolve(s, inventory, "CUDA_VISIBLE_DEVICES entry"))
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
        nvml = self._nvml
        inventory = _inventory(nvml)
        if not inventory:
            raise MeterUnavailable(
                "NVML sees no GPU", fix="check `nvidia-smi`; in a container pass --gpus all"
            )
        opened: list[_Gpu] = []
        for info, explicit in self._selected(selection, inventory):
            handle = nvml.nvmlDeviceGetHandleByIndex(info.index)
            source, has_counter = _capabilities(nvml, handle)
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
            gpu = _Gpu(info=info, handle=handle, domain=domain, power_source=source, has_counter=has_counter)
            if has_counter:
                gpu.base_mj = gpu.last_raw_mj = float(nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
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
        raw = float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(gpu.handle))
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
        nvml = self._nvml
        if gpu.power_source == POWER_INSTANT:
            return _read_instant_mw(nvml, gpu.handle) / 1000.0
        if gpu.power_source == POWER_USAGE:
            return float(nvml.nvmlDeviceGetPowerUsage(gpu.handle)) / 1000.0
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
        nvml, h = self._nvml, gpu.handle
        readers: dict[str, Callable[[], Any]] = {
            "util": lambda: nvml.nvmlDeviceGetUtilizationRates(h),
            "mem": lambda: nvml.nvmlDeviceGetMemoryInfo(h),
            "clock": lambda: nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_SM),
            "temp": lambda: nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU),
            "limit": lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(h),
        }
        got: dict[str, Any] = {}
        for key, read in readers.items():
            if key in gpu.unsupported:
                continue
            try:
                got[key] = read()
            except nvml.NVMLError as exc:
                # Telemetry is secondary to power: a failed one is just absent from this sample.
                if _is_code(nvml, exc, "NVML_ERROR_NOT_SUPPORTED") or _is_code(
                    nvml, exc, "NVML_ERROR_FUNCTION_NOT_FOUND"
                ):
                    gpu.unsupported.add(key)
        util, mem = got.get("util"), got.get("mem")
        return Sample(
            t_ns=t_ns,
            domain=gpu.domain.id,
            power_w=power_w,
            util_pct=float(util.gpu) if util is not None else None,
            mem_util_pct=float(util.memory) if util is not None else None,
            mem_used_mib=float(mem.used) / 2**20 if mem is not None else None,
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
            except self._nvml.NVMLError as exc:
                samples.append(Sample(t_ns=t, domain=gpu.domain.id, error=f"NVML power read failed: {exc}"))
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
            except self._nvml.NVMLError as exc:
                samples.append(
                    Sample(t_ns=now_ns(), domain=gpu.domain.id, error=f"NVML energy read failed: {exc}")
                )
        return samples

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):  # the driver may already be gone: nothing left to release
            self._nvml.nvmlShutdown()
