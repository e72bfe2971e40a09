"""Power meters: the registry and the factory.

Importing this package imports no vendor module (pynvml, amdsmi, jtop, codecarbon, pandas,
torch): each meter asks wattlab.devices (or its backend) when it opens.

    probe_all()            every meter this box could use, available or not, why not, and the fix
    open_meters("auto")    the meters to use: jetson if present (its NVML has no power) else nvml
                           if available, else amdsmi (AMD GPUs) if available; plus rapl if
                           readable, else estimate for the CPU
    open_meters("nvml,rapl"), open_meters("estimate"), open_meters("replay", replay_path=...)
                           exactly those; one that cannot open raises MeterUnavailable with the fix
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wattlab.errors import ConfigError, MeterUnavailable
from wattlab.meters.base import Domain, Meter, Probe, Sample

__all__ = [
    "METER_NAMES",
    "Domain",
    "Meter",
    "MeterSet",
    "Probe",
    "Sample",
    "meter_class",
    "open_meters",
    "probe_all",
]

# name -> "module:Class"; modules are imported only when a meter is probed or opened.
_REGISTRY = {
    "nvml": "wattlab.meters.nvml:NvmlMeter",
    "amdsmi": "wattlab.meters.amdsmi:AmdsmiMeter",
    "jetson": "wattlab.meters.jetson:JetsonMeter",
    "rapl": "wattlab.meters.rapl:RaplMeter",
    "estimate": "wattlab.meters.estimate:EstimateMeter",
    "replay": "wattlab.meters.replay:ReplayMeter",
}
METER_NAMES = tuple(_REGISTRY)


def meter_class(name: str) -> type[Meter]:
    try:
        module, cls = _REGISTRY[name].split(":")
    except KeyError:
        raise ConfigError(
            f"unknown meter {name!r}", fix=f"choose from {', '.join(METER_NAMES)} (or auto)"
        ) from None
    return getattr(importlib.import_module(module), cls)  # type: ignore[no-any-return]


def _safe_probe(name: str) -> Probe:
    try:
        return meter_class(name).probe()
    except Exception as exc:  # a probe must never take the console down
        return Probe(name, False, f"probe failed: {type(exc).__name__}: {exc}")


def probe_all() -> list[Probe]:
    """Every meter wattlab knows, in preference order, each saying whether it can run here."""
    return [_safe_probe(name) for name in METER_NAMES]


@dataclass
class MeterSet:
    """Opened meters, every probe, and the probes of meters that could not open (`missing`).

    The console shows `missing` (e.g. "rapl: no permission ..., fix: ...") next to the live meters,
    so a source that is not measured is visible, never a silent zero.
    """

    meters: list[Meter] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)
    missing: list[Probe] = field(default_factory=list)

    @property
    def domains(self) -> list[Domain]:
        return [d for m in self.meters for d in m.domains]

    def close(self) -> None:
        for meter in self.meters:
            with contextlib.suppress(Exception):  # best effort: the others must still be released
                meter.close()

    def __enter__(self) -> MeterSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _parse_selection(selection: str | Sequence[str]) -> list[str]:
    names = selection.split(",") if isinstance(selection, str) else list(selection)
    out: list[str] = []
    for raw in names:
        name = raw.strip().lower()
        if not name:
            continue
        if name != "auto" and name not in _REGISTRY:
            raise ConfigError(
                f"unknown meter {raw.strip()!r} in meter selection {selection!r}",
                fix=f"choose from auto, {', '.join(METER_NAMES)}, comma-separated (e.g. nvml,rapl)",
            )
        if name not in out:
            out.append(name)
    if not out:
        raise ConfigError("empty meter selection", fix="use auto, or e.g. nvml,rapl")
    if "auto" in out and len(out) > 1:
        raise ConfigError(f"'auto' cannot be combined with other meters: {selection!r}", fix="use auto alone")
    return out


def open_meters(
    selection: str | Sequence[str] = "auto",
    *,
    gpus: Sequence[str | int] | str | None = None,
    tdp_w: float | None = None,
    replay_path: str | Path | None = None,
    replay_speed: float = 1.0,
) -> MeterSet:
    """Open the selected meters. See the module docstring for what `auto` picks.

    gpus:        GPU indices/UUIDs for nvml or amdsmi (default: CUDA_VISIBLE_DEVICES for nvml,
                 ROCR_/HIP_VISIBLE_DEVICES for amdsmi, else all).
    tdp_w:       CPU TDP for the estimate meter (default: codecarbon's table, else 4 W/CPU).
    replay_path: a timeline file; with `auto` it replaces the live meters (a demo or a test).
    """
    names = _parse_selection(selection)
    openers: dict[str, Callable[[], Meter]] = {
        "nvml": lambda: _open("nvml", gpus=gpus),
        "amdsmi": lambda: _open("amdsmi", gpus=gpus),
        "jetson": lambda: _open("jetson"),
        "rapl": lambda: _open("rapl"),
        "estimate": lambda: _open("estimate", tdp_w=tdp_w),
        "replay": lambda: _open_replay(replay_path, replay_speed),
    }
    if names == ["auto"]:
        if replay_path is not None:
            return MeterSet([openers["replay"]()], [_safe_probe("replay")])
        return _open_auto(openers)
    result = MeterSet(probes=[_safe_probe(n) for n in names])
    try:
        for name in names:
            result.meters.append(openers[name]())
    except BaseException:
        result.close()
        raise
    return result


def _open(name: str, **kwargs: Any) -> Meter:
    return meter_class(name)(**kwargs)


def _open_replay(path: str | Path | None, speed: float) -> Meter:
    if path is None:
        raise ConfigError("the replay meter needs a timeline file", fix="pass --replay PATH")
    return _open("replay", path=path, speed=speed)


def _open_auto(openers: dict[str, Callable[[], Meter]]) -> MeterSet:
    probes = {p.meter: p for p in probe_all()}
    result = MeterSet(probes=list(probes.values()))

    def try_open(name: str) -> bool:
        if not probes[name].available:
            result.missing.append(probes[name])
            return False
        try:
            result.meters.append(openers[name]())
            return True
        except MeterUnavailable as exc:
            result.missing.append(Probe(name, False, exc.message, fix=exc.fix))
            return False

    try:
        # A Jetson's NVML answers NOT_SUPPORTED for power: its rails are the GPU's meter there.
        if probes["jetson"].available and try_open("jetson"):
            pass
        elif not try_open("nvml") and probes["amdsmi"].available:
            try_open("amdsmi")  # AMD GPUs; reported missing only where amdsmi sees one
        if not try_open("rapl"):
            try_open("estimate")
    except BaseException:
        result.close()
        raise
    return result
