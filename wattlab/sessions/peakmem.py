"""Peak memory of a run, sampled from the runner while the engine worker generates.

The engine lives in the worker subprocess, and vLLM in further children of it, so memory is read
for the worker's whole process tree, from outside it (the runner's thread, never the engine's):

- on a GPU: the device memory NVML reports per process, summed over the tree's processes
  (kind "gpu"). In a container without the host's PID namespace NVML's PIDs name no process
  here; then the device's used memory above what it used before the worker loaded (kind
  "gpu-device", which also counts any other process that allocated on the GPU meanwhile);
- on the CPU: the resident memory (RSS) of the tree (kind "host"; shared pages count once per
  process, so it is an upper bound).

`begin()` and `end()` each take a reading too, so a window shorter than the period has one.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psutil

MIB = 2**20
PERIOD_S = 0.1

# peak_mem_kind -> how the figure was obtained (show, History's run detail)
KINDS = {
    "gpu": "GPU memory of the engine's processes (NVML per process), peak during the run",
    "gpu-device": "GPU memory used above its level before the engine loaded (NVML, whole device), peak",
    "host": "resident host memory (RSS) of the engine's process tree, peak during the run",
    "engine": "reported by the engine itself",
}


@dataclass(frozen=True)
class PeakMemory:
    mib: float
    kind: str  # a key of KINDS


class PeakMemSampler:
    """Samples the memory of process `pid` and its descendants every `period_s` in a thread.

    nvml: an open wattlab.devices.nvidia.Nvml-like session factory for tests; None opens the real
    one when a driver is present (no GPU: host memory only).
    """

    def __init__(self, pid: int, period_s: float = PERIOD_S, nvml: Any = None) -> None:
        self.pid = pid
        self.period_s = period_s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lib, self._gpus = _open_gpus(nvml)
        self._baseline = {index: _used(gpu) for index, gpu in self._gpus.items()}  # before the load
        self._host = 0
        self._gpu: dict[int, int] = {}  # NVML index -> peak bytes of the tree's processes
        self._device: dict[int, int] = {}  # NVML index -> peak used bytes above the baseline

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> PeakMemSampler:
        self._thread = threading.Thread(target=self._loop, name="wattlab-peakmem", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._lib is not None:
            with contextlib.suppress(Exception):  # the driver may already be gone
                self._lib.close()

    def begin(self) -> None:
        """Start a new window: forget earlier peaks, take a reading."""
        with self._lock:
            self._host, self._gpu, self._device = 0, {}, {}
        self.sample()

    def end(self, devices: Iterable[str] | None) -> PeakMemory | None:
        """The window's peak for a run on `devices` (meter ids: "cpu", "gpu:0"); None: nothing read."""
        self.sample()
        gpu_ids = [d.split(":", 1)[1] for d in devices or () if d.startswith("gpu:")]
        indices = {int(i) for i in gpu_ids if i.isdigit()}
        with self._lock:
            if gpu_ids:
                per_process = sum(v for i, v in self._gpu.items() if i in indices or not indices)
                if per_process:
                    return PeakMemory(per_process / MIB, "gpu")
                device = sum(v for i, v in self._device.items() if i in indices)
                if device:
                    return PeakMemory(device / MIB, "gpu-device")
                return None
            return PeakMemory(self._host / MIB, "host") if self._host else None

    # --- sampling -------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            self.sample()

    def sample(self) -> None:
        pids = tree_pids(self.pid)
        if not pids:
            return
        host = tree_rss(pids)
        gpu: dict[int, int] = {}
        device: dict[int, int] = {}
        for index, g in self._gpus.items():
            with contextlib.suppress(Exception):  # a GPU that cannot answer leaves its figure out
                gpu[index] = sum(b for pid, b in g.process_memory().items() if pid in pids)
            with contextlib.suppress(Exception):
                device[index] = max(0, _used(g) - self._baseline.get(index, 0))
        with self._lock:
            self._host = max(self._host, host)
            for index, value in gpu.items():
                self._gpu[index] = max(self._gpu.get(index, 0), value)
            for index, value in device.items():
                self._device[index] = max(self._device.get(index, 0), value)


def tree_pids(pid: int) -> set[int]:
    """`pid` and every descendant alive now; empty when `pid` is gone."""
    try:
        root = psutil.Process(pid)
        return {pid, *(p.pid for p in root.children(recursive=True))}
    except psutil.Error:
        return set()


def tree_rss(pids: Iterable[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(psutil.Error):  # exited between the listing and now
            total += psutil.Process(pid).memory_info().rss
    return total


def _used(gpu: Any) -> int:
    try:
        return int(gpu.memory().used_bytes)
    except Exception:  # no memory reading on this GPU: no fallback figure
        return 0


def _open_gpus(nvml: Any) -> tuple[Any, dict[int, Any]]:
    """(the NVML session, NVML index -> NvidiaGpu for every GPU it sees); (None, {}) without NVML."""
    from wattlab.devices.nvidia import Nvml

    try:
        lib = Nvml(nvml)
    except Exception:  # no driver or no nvidia-ml-py: host memory only
        return None, {}
    try:
        gpus = {info.index: lib.gpu(info) for info in lib.inventory()}
    except Exception:
        gpus = {}
    if not gpus:
        lib.close()
        return None, {}
    return lib, gpus


def describe(kind: str | None) -> str:
    return KINDS.get(kind or "", "reported by the engine")


__all__ = ["KINDS", "PeakMemSampler", "PeakMemory", "describe", "tree_pids", "tree_rss"]
