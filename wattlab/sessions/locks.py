"""One measuring runner per set of devices, a queue for the others, and who overlapped whom.

Two sessions measuring on one GPU at once each get charged the other's energy. So a runner locks
the devices its runs use before its idle baseline and holds them to its end; a session needing any
of them waits in a queue (status `queued`) or, told not to wait, is refused naming the holder.
Sessions on disjoint GPUs run side by side.

    <data dir>/locks/
        <key>.lock              flock()ed by the holder: the kernel frees it when the holder dies,
                                so a crashed runner's lock is never stale
        <key>.json              who holds it: session, pid, process start time, since when
        queue/<ns>-<sid>.json   a waiting session; among sessions wanting a device, first come first served
        sessions/<sid>.json     every session that measured: its devices, pid, start and end (wall clock)

Device keys: a GPU's NVML UUID ("GPU-8a2f..."), "gpu<index>" where NVML gives none, and "host" for
work on the CPU (the whole device set of a CPU-only box).

The session records feed the `overlap` flag of runs (sessions/overlap.py).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wattlab.errors import ConfigError, DeviceBusy
from wattlab.paths import data_dir
from wattlab.sessions.spool import is_alive, process_identity

POLL_S = 0.5  # how often a queued session tries again
RECORD_KEEP_S = 2 * 86400  # ended sessions' records are pruned after this (only overlap needs them)
BUSY_FIX = "queue behind it (`wattlab run --wait`; `wattlab sweep` queues unless --no-wait)"


@dataclass(frozen=True)
class Device:
    """One lockable device: `key` names its lock file, `label` is what people read."""

    key: str
    label: str
    index: int | None = None  # NVML index of a GPU


HOST = Device("host", "host")


def locks_root() -> Path:
    return data_dir() / "locks"


def _safe(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", key)


def gpu_device(index: int, uuid: str | None) -> Device:
    return Device(_safe(uuid) if uuid else f"gpu{index}", f"gpu{index}", index)


# --- which devices a session uses ------------------------------------------------------------------
def session_devices(specs: Iterable[Any], nvml: Any = None) -> list[Device]:
    """The devices a session's runs will use, known before any engine loads.

    A run on `cuda`/`cuda:N`/`auto` uses GPU N (0 by default) and, with tensor_parallel_size k, the
    k GPUs from there, as CUDA_VISIBLE_DEVICES maps them; `cpu` runs, the openai engine (an HTTP
    client) and any run on a box without GPUs use the host. A CUDA device that is not there is
    refused here, before anything runs.
    """
    from wattlab.devices.nvidia import list_gpus

    inventory = list_gpus(nvml)
    found: dict[str, Device] = {}
    for spec in specs:
        for device in _spec_devices(spec, inventory, nvml):
            found[device.key] = device
    return sorted(found.values(), key=lambda d: (d.index is None, d.index or 0, d.key)) or [HOST]


def _spec_devices(spec: Any, inventory: list[Any], nvml: Any) -> list[Device]:
    from wattlab.devices.base import resolve_gpu
    from wattlab.devices.nvidia import cuda_ordinal_to_nvml_index

    device = str(spec.device or "auto").strip().lower()
    on_gpu = device in ("auto", "cuda") or re.fullmatch(r"cuda:\d+", device) is not None
    from wattlab.engines import is_served

    if not inventory or not on_gpu or is_served(spec.engine):  # a server's device is its own
        return [HOST]
    first = int(device.split(":")[1]) if ":" in device else 0
    try:
        opts = spec.options or {}
        # tensor x pipeline parallel: every shard holds a GPU
        shards = max(1, int(opts.get("tensor_parallel_size", 1))) * max(
            1, int(opts.get("pipeline_parallel_size", 1))
        )
    except (TypeError, ValueError):
        shards = 1  # the engine's own option check names a bad value
    out = []
    for ordinal in range(first, first + shards):
        try:
            gpu = resolve_gpu(cuda_ordinal_to_nvml_index(ordinal, nvml=nvml), inventory, f"cuda:{ordinal}")
        except ConfigError as exc:
            present = "; ".join(g.describe() for g in inventory)
            raise ConfigError(
                f"run {spec.label()} asks for device cuda:{ordinal}, which is not a GPU here "
                f"({exc.message.split('. GPUs present')[0]}). GPUs present: {present}",
                fix='use --device cuda:N (device = "cuda:N" in a sweep) with N from `nvidia-smi -L`, '
                "or fewer tensor_parallel_size GPUs",
            ) from exc
        out.append(gpu_device(gpu.index, gpu.uuid))
    return out


# --- holders, the queue, the session records --------------------------------------------------------
def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically (a reader never sees half a file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, default=str))
    tmp.replace(path)


def _clock(wall: Any) -> str:
    try:
        return dt.datetime.fromtimestamp(float(wall)).strftime("%H:%M:%S")
    except (TypeError, ValueError, OverflowError, OSError):
        return "?"


def describe_holder(holder: dict[str, Any]) -> str:
    """One holder (or earlier waiter) for people: "gpu0: session 261129-... (pid 4242, since 10:01:02)"."""
    on = ", ".join(holder.get("on") or []) or "?"
    sid = holder.get("session_id")
    if not sid:
        return f"{on}: held by another wattlab process"
    if holder.get("queued"):
        return f"{on}: session {sid} is queued first (pid {holder.get('pid')})"
    return f"{on}: session {sid} is measuring (pid {holder.get('pid')}, since {_clock(holder.get('since'))})"


def busy_error(blockers: list[dict[str, Any]]) -> DeviceBusy:
    on_gpus = any(label != HOST.label for b in blockers for label in b.get("on") or [])
    return DeviceBusy(
        "the devices this session needs are busy: " + "; ".join(describe_holder(b) for b in blockers),
        fix=BUSY_FIX + (", or run on other GPUs (--device cuda:N)" if on_gpus else ""),
    )


class DeviceLocks:
    """The locks of one session's devices: all taken or none, held until release()."""

    def __init__(
        self,
        devices: Sequence[Device],
        session_id: str,
        *,
        root: Path | None = None,
        events_path: Path | str | None = None,
    ) -> None:
        self.devices = list(devices) or [HOST]
        self.session_id = session_id
        self.root = root or locks_root()
        self.events_path = str(events_path) if events_path else None  # tells when a dead holder stopped
        self.identity = process_identity()
        self._fds: dict[str, int] = {}
        self._ticket: Path | None = None
        self.queued_s = 0.0  # how long acquire() waited

    @property
    def keys(self) -> set[str]:
        return {d.key for d in self.devices}

    @property
    def labels(self) -> list[str]:
        return [d.label for d in self.devices]

    @property
    def held(self) -> bool:
        return bool(self._fds) and set(self._fds) == self.keys

    def _dirs(self) -> None:
        for sub in ("queue", "sessions"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    # --- looking ---------------------------------------------------------------------------------
    def blockers(self) -> list[dict[str, Any]]:
        """Who stands in the way now: holders of our devices, then earlier live waiters for them."""
        self._dirs()
        busy = []
        for d in self.devices:
            if d.key in self._fds:
                continue
            fd = os.open(self.root / f"{d.key}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
            except BlockingIOError:
                busy.append(d)
            finally:
                os.close(fd)
        return self._holders(busy) or self._waiters_ahead()

    def _holders(self, busy: list[Device]) -> list[dict[str, Any]]:
        by_session: dict[str, dict[str, Any]] = {}
        for d in busy:
            holder = _read_json(self.root / f"{d.key}.json") or {}
            entry = by_session.setdefault(str(holder.get("session_id")), {**holder, "on": []})
            entry["on"].append(d.label)
        return list(by_session.values())

    def _waiters_ahead(self) -> list[dict[str, Any]]:
        """Live queued sessions wanting one of our devices that came before us."""
        mine = (self._ticket.name if self._ticket else f"{time.time_ns()}-{self.session_id}.json",)
        ahead = []
        for path in sorted((self.root / "queue").glob("*.json")):
            entry = _read_json(path)
            if entry is None or entry.get("session_id") == self.session_id:
                continue
            if not is_alive(entry.get("identity") or {}):
                path.unlink(missing_ok=True)  # a waiter that died in the queue
                continue
            pairs = zip(entry.get("keys") or [], entry.get("labels") or [], strict=False)
            shared = [lbl for key, lbl in pairs if key in self.keys]
            if shared and (path.name,) < mine:
                ahead.append({**entry, **entry["identity"], "on": shared, "queued": True})
        return ahead

    def records(self) -> list[dict[str, Any]]:
        """Every session that measured here recently (pruning old ones): devices, pid, start, end."""
        out = []
        now = time.time()
        for path in (self.root / "sessions").glob("*.json"):
            rec = _read_json(path)
            if rec is None:
                continue
            if rec.get("ended") is None and not is_alive(rec.get("identity") or {}):
                rec["ended"] = _last_sign_of_life(rec, path)  # killed: it stopped when it went quiet
            if rec.get("ended") is not None and now - float(rec["ended"]) > RECORD_KEEP_S:
                path.unlink(missing_ok=True)
                continue
            out.append(rec)
        return out

    # --- taking ----------------------------------------------------------------------------------
    def try_acquire(self) -> list[dict[str, Any]]:
        """Take every lock, or none: [] when taken, else who stands in the way."""
        self._dirs()
        ahead = self._waiters_ahead()
        if ahead:
            return ahead
        busy: list[Device] = []
        for _ in range(3):  # a peek by blockers() holds a lock for microseconds: look again
            busy = []
            for d in self.devices:
                if d.key in self._fds:
                    continue
                fd = os.open(self.root / f"{d.key}.lock", os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    busy.append(d)
                    continue
                self._fds[d.key] = fd
            if not busy:
                self._claimed()
                return []
            self._let_go()  # never sit on some devices while waiting for others: no deadlock
            time.sleep(0.01)
        return self._holders(busy) or [{"on": [d.label for d in busy]}]

    def acquire(
        self,
        *,
        wait: bool = True,
        on_queued: Callable[[list[dict[str, Any]]], None] | None = None,
        poll_s: float = POLL_S,
    ) -> None:
        """Take the locks; when busy, wait in the queue (calling on_queued with who is ahead, again
        whenever that changes) or, with wait=False, raise DeviceBusy naming the holders."""
        started = time.monotonic()
        blockers = self.try_acquire()
        if not blockers:
            return
        if not wait:
            raise busy_error(blockers)
        self._dirs()
        self._ticket = self.root / "queue" / f"{time.time_ns()}-{self.session_id}.json"
        _write_json(
            self._ticket,
            {
                "session_id": self.session_id,
                "identity": self.identity,
                "keys": [d.key for d in self.devices],
                "labels": self.labels,
                "since": time.time(),
            },
        )
        shown: list[Any] | None = None
        try:
            while blockers:
                who = [(b.get("session_id"), tuple(b.get("on") or ()), b.get("queued")) for b in blockers]
                if who != shown and on_queued is not None:
                    on_queued(blockers)
                shown = who
                time.sleep(poll_s)
                blockers = self.try_acquire()
        finally:
            self._ticket.unlink(missing_ok=True)
            self._ticket = None
        self.queued_s = time.monotonic() - started

    def _claimed(self) -> None:
        now = time.time()
        holder = {**self.identity, "session_id": self.session_id, "since": now, "devices": self.labels}
        for d in self.devices:
            _write_json(self.root / f"{d.key}.json", holder)
        _write_json(
            self.root / "sessions" / f"{self.session_id}.json",
            {
                "session_id": self.session_id,
                "identity": self.identity,
                "keys": [d.key for d in self.devices],
                "labels": self.labels,
                "started": now,
                "ended": None,
                "events_path": self.events_path,
            },
        )

    def _let_go(self) -> None:
        for fd in self._fds.values():
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        self._fds.clear()

    def release(self) -> None:
        """Free the devices (idempotent); the session's record keeps when it ended."""
        if self._ticket is not None:
            self._ticket.unlink(missing_ok=True)
            self._ticket = None
        if not self._fds:
            return
        record_path = self.root / "sessions" / f"{self.session_id}.json"
        record = _read_json(record_path)
        if record is not None:
            record["ended"] = time.time()
            _write_json(record_path, record)
        for key in self._fds:
            path = self.root / f"{key}.json"
            if (_read_json(path) or {}).get("session_id") == self.session_id:
                path.unlink(missing_ok=True)  # before unlocking: never remove the next holder's
        self._let_go()


def _last_sign_of_life(record: dict[str, Any], path: Path) -> float:
    """When a runner that died without ending last wrote anything (its spool's events, else its record)."""
    for candidate in (record.get("events_path"), str(path)):
        if candidate:
            with contextlib.suppress(OSError):
                return os.stat(candidate).st_mtime
    return float(record.get("started") or 0.0)
