"""The `overlap` flag: a run whose energy includes other work on its devices says so, and whose.

A run is flagged when, while it ran, another wattlab session measured on one of its devices (the
session records of sessions/locks.py), or on any device when the run's energy includes a host-wide
domain (CPU package, DRAM, a Jetson board: every session loads the host), or when a process outside
this runner held one of its GPUs (NVML's running-process list, read at the run's start and end).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from wattlab.sessions.locks import DeviceLocks

MAX_REASON_CHARS = 400


@dataclass
class RunWatch:
    started: float  # wall clock (s), comparable across processes
    foreign: dict[str, str]  # who else was on our GPUs at the start: "pid@gpu" -> reason


class OverlapWatch:
    """Watches one session's runs for other work on their devices (see the module docstring)."""

    def __init__(self, locks: DeviceLocks, nvml: Any = None) -> None:
        self.locks = locks
        self.nvml = nvml  # the pynvml module (tests pass a fake); default imports pynvml
        self._gpus: dict[int, str] = {d.index: d.label for d in locks.devices if d.index is not None}

    def begin(self) -> RunWatch:
        return RunWatch(time.time(), self._foreign())

    def finish(self, watch: RunWatch, charged: Iterable[Any]) -> str | None:
        """The overlap reason of a run that measured from `watch.started` to now, or None.

        charged: the Domains its energy sums (anything but a GPU is shared by the whole host).
        """
        ended = time.time()
        host_charged = any(not str(d.device).startswith("gpu") for d in charged)
        reasons: list[str] = []
        for rec in self.locks.records():
            if rec.get("session_id") == self.locks.session_id:
                continue
            until = float(rec["ended"]) if rec.get("ended") is not None else ended
            if not (float(rec.get("started") or 0) < ended and until > watch.started):
                continue
            pairs = zip(rec.get("keys") or [], rec.get("labels") or [], strict=False)
            shared = [lbl for key, lbl in pairs if key in self.locks.keys]
            if shared:
                reasons.append(f"session {rec['session_id']} ran on {', '.join(shared)}")
            elif host_charged:
                where = ", ".join(rec.get("labels") or []) or "this host"
                reasons.append(
                    f"session {rec['session_id']} ran on {where} (the host CPU's energy is shared)"
                )
        reasons += list({**watch.foreign, **self._foreign()}.values())
        text = "; ".join(dict.fromkeys(reasons))  # unique, in order
        return (text[: MAX_REASON_CHARS - 1] + "…" if len(text) > MAX_REASON_CHARS else text) or None

    def _foreign(self) -> dict[str, str]:
        """Processes outside this runner holding our GPUs now (NVML), named by their session when
        they belong to another wattlab runner."""
        if not self._gpus:
            return {}
        from wattlab.devices.nvidia import gpu_processes

        on_gpus = gpu_processes(sorted(self._gpus), self.nvml)
        if not any(on_gpus.values()):
            return {}
        import psutil

        try:
            me = psutil.Process()
            mine = {me.pid} | {c.pid for c in me.children(recursive=True)}
        except psutil.Error:
            mine = {os.getpid()}
        here = socket.gethostname()
        runners = {
            int(r["identity"]["pid"]): str(r["session_id"])
            for r in self.locks.records()
            if r.get("session_id") != self.locks.session_id
            and (r.get("identity") or {}).get("host") == here
            and (r.get("identity") or {}).get("pid") is not None
        }
        out: dict[str, str] = {}
        for index, pids in on_gpus.items():
            label = self._gpus[index]
            for pid in pids:
                if pid in mine:
                    continue
                try:
                    proc = psutil.Process(pid)
                    name = proc.name()
                    lineage = [pid, *(p.pid for p in proc.parents())]
                except psutil.NoSuchProcess:
                    # Not in our PID namespace (a container sees the host's PIDs): it could be our own
                    # worker, so it is not reported.
                    continue
                except psutil.Error:
                    name, lineage = "?", [pid]
                owner = next((runners[p] for p in lineage if p in runners), None)
                out[f"{pid}@{index}"] = (
                    f"session {owner} ran on {label}" if owner else f"pid {pid} ({name}) on {label}"
                )
        return out
