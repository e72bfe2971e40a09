"""Devices: the only code that talks to vendor libraries (pynvml, amdsmi, jtop).

    base.py     the GPU contract (units: mW, mJ, %, bytes, C, MHz), GpuInfo, errors, GPU selection
    visible.py  CUDA_VISIBLE_DEVICES and ROCR_/HIP_VISIBLE_DEVICES, as selectors (no library)
    nvidia.py   NVML sessions, NvidiaGpu, list_gpus, gpu_processes, cuda_ordinal_to_nvml_index
    amd.py      amdsmi sessions, AmdGpu, list_gpus, visible_gpus
    jetson.py   jtop (jetson-stats) discovery and its client class

Importing this package (or any module in it) imports no vendor library: each imports its own
when a session opens. Meters and engines ask these modules; nothing else imports a vendor library.
"""

from __future__ import annotations

from wattlab.devices.base import (
    GPU,
    DeviceError,
    DeviceNotSupported,
    DeviceUnavailable,
    EnergyCount,
    GpuInfo,
    MemoryUsage,
    Utilization,
    normalize_selection,
    resolve_gpu,
)

__all__ = [
    "GPU",
    "DeviceError",
    "DeviceNotSupported",
    "DeviceUnavailable",
    "EnergyCount",
    "GpuInfo",
    "MemoryUsage",
    "Utilization",
    "discover_gpus",
    "normalize_selection",
    "resolve_gpu",
]


def discover_gpus(*, nvml: object = None, amdsmi: object = None) -> list[GpuInfo]:
    """The GPUs of this box, one vendor's: NVIDIA's when NVML sees any, else AMD's, else [].

    Never raises (a missing library or driver means no GPUs of that vendor). `nvml` / `amdsmi`:
    modules to use instead of the real ones (tests).
    """
    from wattlab.devices import amd, nvidia

    return nvidia.list_gpus(nvml) or amd.list_gpus(amdsmi)
