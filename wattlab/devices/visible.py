"""Which GPUs a process sees: CUDA_VISIBLE_DEVICES (NVIDIA), ROCR_/HIP_VISIBLE_DEVICES (AMD).

Pure string handling, no vendor library: each function turns the environment into selectors
(vendor indices "3" or UUIDs "GPU-...") that `base.resolve_gpu` matches against an inventory, plus
notes about entries the runtime would drop.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from wattlab.errors import ConfigError

AMD_VISIBLE_VARS = ("ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES")


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


def cuda_ordinal_to_selector(ordinal: int, env: Mapping[str, str] | None = None) -> str:
    """The CUDA_VISIBLE_DEVICES entry (NVML index or GPU- UUID) CUDA device `ordinal` is.

    Without CUDA_VISIBLE_DEVICES CUDA ordinals are NVML indices. ConfigError for a negative or
    hidden ordinal.
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
    return selectors[ordinal]


def visible_cuda_count(nvml_count: int, env: Mapping[str, str] | None = None) -> int:
    """How many GPUs CUDA exposes to processes started with this environment: NVML's count, cut
    down by CUDA_VISIBLE_DEVICES (entries naming no GPU NVML has are not counted)."""
    environ = os.environ if env is None else env
    value = environ.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return nvml_count
    selectors, _ = parse_cuda_visible_devices(value)
    indices = [s for s in selectors if s.isdigit()]
    return sum(1 for s in indices if int(s) < nvml_count) + len(selectors) - len(indices)


def amd_visible_selectors(env: Mapping[str, str] | None = None) -> tuple[list[str] | None, list[str]]:
    """amdsmi selectors (indices or GPU- UUIDs) the ROCm runtime exposes, or None for all; and notes.

    ROCR_VISIBLE_DEVICES (indices or UUIDs) filters the physical GPUs first; HIP_VISIBLE_DEVICES
    (or, where it is unset, CUDA_VISIBLE_DEVICES, which HIP also honours) then picks by position
    among those. An invalid or out-of-range entry hides it and every entry after it, as ROCm does.
    """
    environ = os.environ if env is None else env
    notes: list[str] = []
    base: list[str] | None = None
    rocr = environ.get("ROCR_VISIBLE_DEVICES")
    if rocr is not None:
        base = []
        for raw in rocr.split(","):
            entry = raw.strip()
            if not entry:
                continue
            if entry.isdigit() or entry.startswith("GPU-"):
                base.append(entry)
                continue
            notes.append(f"ROCR_VISIBLE_DEVICES entry {entry!r} is invalid: ROCm hides it and the rest")
            break
    hip_var = "HIP_VISIBLE_DEVICES" if "HIP_VISIBLE_DEVICES" in environ else "CUDA_VISIBLE_DEVICES"
    hip = environ.get(hip_var)
    if hip is None:
        return base, notes
    chosen: list[str] = []
    for raw in hip.split(","):
        entry = raw.strip()
        if not entry:
            continue
        if not entry.isdigit():
            notes.append(f"{hip_var} entry {entry!r} is invalid: HIP hides it and the rest")
            break
        position = int(entry)
        if base is None:
            chosen.append(entry)
        elif position < len(base):
            chosen.append(base[position])
        else:
            notes.append(
                f"{hip_var} entry {entry} is past the {len(base)} GPU(s) ROCR_VISIBLE_DEVICES exposes: hidden"
            )
            break
    return chosen, notes
