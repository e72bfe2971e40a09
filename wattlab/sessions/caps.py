"""GPU caps (power limit, locked SM / memory clocks) around each run, and the throttling seen in it.

A run's caps (RunSpec `power_limit_w`, `sm_clock_mhz`, `mem_clock_mhz`) are set on the run's GPUs
(the ones its device names, as `sessions.locks.session_devices` finds them) before its engine loads,
and put back after it: when it finishes, fails, on Ctrl-C / SIGTERM (the runner's `finally`), and
after a kill -9 by the next wattlab command (`restore_leftovers`, called by `commit.recover`).

Before anything is changed, the original values and the intended changes are written to
`<spool>/caps.json` (temp file, fsync, rename), with the runner's identity; the file is removed once
everything is back. The power limit goes back to the value read before the run; a clock lock goes
back to unlocked (NVML has no reading of an earlier lock, and a GPU is unlocked unless someone locked
it). A file whose runner is dead is restored by whoever finds it; a file of a live runner, or one
written on another host (a shared disk), is left alone.

Throttling, recorded for every run on NVIDIA GPUs, caps or not, over the measured window (the
`run` or `logprobs` marks): the clock-event ("throttle") reasons sampled at the session's power_hz
(plus one reading at each edge), as the share of samples each reason was active, per GPU; and the
NVML violation counters for the power and thermal policies (end minus start), summed over the
run's GPUs, in `power_violation_s` / `thermal_violation_s`. Both go in `throttle_json` with how they
were obtained.

The preflight (`cap_problems`, called by `plan.check_run`) refuses caps on a CPU or served run, on a
box where wattlab may not change them (not root), outside the GPU's power-limit range, or on a clock
the GPU does not offer (naming the nearest). It reads only; nothing is changed before the run.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from wattlab.errors import ConfigError, WattlabError
from wattlab.sessions.plan import Problem
from wattlab.sessions.result import RunResult
from wattlab.sessions.spec import RunSpec

CAPS_FILE = "caps.json"
CAP_FIELDS = ("power_limit_w", "sm_clock_mhz", "mem_clock_mhz")
MEASURED_WINDOWS = ("run", "logprobs")
log = logging.getLogger("wattlab.caps")

REASONS_METHOD = (
    "NVML clock-event reasons (nvmlDeviceGetCurrentClocksEventReasons), sampled at {hz:g} Hz over the "
    "measured window: share of samples each reason was active"
)
VIOLATION_METHOD = (
    "NVML counter (nvmlDeviceGetViolationStatus, power and thermal policies): end minus start of the "
    "measured window, summed over the run's GPUs"
)


def requested(spec: RunSpec) -> dict[str, Any]:
    """The caps a run asks for ({field: value}; empty when it leaves the GPU as found)."""
    return {k: getattr(spec, k) for k in CAP_FIELDS if getattr(spec, k) is not None}


def _nvml_module(nvml: Any) -> Any:
    from wattlab.devices.nvidia import import_pynvml

    return nvml if nvml is not None else import_pynvml()


def run_gpu_indices(spec: RunSpec, nvml: Any = None) -> list[int]:
    """NVML indices of the GPUs the run uses; [] for a CPU or served run, or a box without GPUs.
    A device that is not there raises ConfigError (the preflight's device check names it first)."""
    from wattlab.engines import is_served
    from wattlab.sessions.locks import session_devices

    if str(spec.device).strip().lower() == "cpu" or is_served(spec.engine):
        return []
    return [d.index for d in session_devices([spec], nvml) if d.index is not None]


# --- preflight ----------------------------------------------------------------------------------------
def cap_problems(
    spec: RunSpec, memo: dict[tuple[Any, ...], Any] | None = None, nvml: Any = None
) -> list[Problem]:
    """Why the run's caps cannot be applied: CPU/served run, no GPU, no permission, out of range,
    unsupported clock. Reads NVML only when a cap is set; `memo` shares the readings within a sweep."""
    caps = requested(spec)
    if not caps:
        return []
    from wattlab.engines import is_served

    memo = {} if memo is None else memo
    key = next(iter(caps))
    names = " / ".join(caps)
    drop = f"drop {names} for this run"
    if str(spec.device).strip().lower() == "cpu" or is_served(spec.engine):
        where = f"the {spec.engine} engine's server" if is_served(spec.engine) else "device cpu"
        return [
            Problem(
                f"{names} set on a run on {where}: GPU caps apply to the NVIDIA GPUs wattlab runs on",
                f'run it on a GPU (device = "cuda") or {drop}',
                key,
            )
        ]
    try:
        indices = run_gpu_indices(spec, nvml)
    except ConfigError:
        return []  # a missing cuda:N: the device check says so
    if not indices:
        return [
            Problem(
                f"{names} set, but this box has no NVIDIA GPU (NVML sees none)",
                f"{drop}; `wattlab doctor` shows what this box has",
                key,
            )
        ]
    memo_key = ("caps", tuple(indices), spec.mem_clock_mhz)
    if memo_key not in memo:
        memo[memo_key] = _inspect(indices, spec.mem_clock_mhz, nvml)
    problems: list[Problem] = []
    for gpu in memo[memo_key]:
        problems += _gpu_problems(spec, gpu, drop)
    return problems


def _inspect(indices: list[int], mem_mhz: int | None, nvml: Any) -> list[dict[str, Any]]:
    """What the preflight needs of each GPU: access, power-limit range, clocks (reads only)."""
    from wattlab.devices.base import DeviceError
    from wattlab.devices.nvidia import Nvml

    out: list[dict[str, Any]] = []
    try:
        lib = Nvml(_nvml_module(nvml))
    except WattlabError as exc:
        return [{"index": i, "error": exc.message, "fix": exc.fix} for i in indices]
    with lib:
        inventory = {g.index: g for g in lib.inventory()}
        for i in indices:
            gpu = lib.gpu(inventory[i])
            info: dict[str, Any] = {"index": i, "name": gpu.info.name, "access": gpu.caps_access()}
            for name, read in (
                ("limits", gpu.power_limits),
                ("mem_clocks", gpu.supported_mem_clocks_mhz),
            ):
                try:
                    info[name] = read()
                except DeviceError as exc:
                    info[name] = exc
            mem_ok = mem_mhz is None or (
                isinstance(info["mem_clocks"], list) and mem_mhz in info["mem_clocks"]
            )
            try:
                info["sm_clocks"] = gpu.supported_sm_clocks_mhz(mem_mhz if mem_ok else None)
            except DeviceError as exc:
                info["sm_clocks"] = exc
            out.append(info)
    return out


def nearest(value: int, allowed: list[int]) -> int:
    """The allowed value closest to `value` (the higher one on a tie)."""
    return min(allowed, key=lambda c: (abs(c - value), -c))


def _gpu_problems(spec: RunSpec, gpu: dict[str, Any], drop: str) -> list[Problem]:
    from wattlab.devices.base import DeviceError

    if "error" in gpu:
        return [Problem(f"cannot read GPU {gpu['index']}'s caps: {gpu['error']}", gpu.get("fix"), None)]
    label = f"GPU {gpu['index']} ({gpu['name']})"
    key = next(iter(requested(spec)))
    out: list[Problem] = []
    access = gpu["access"]
    if not access.allowed:
        out.append(Problem(f"wattlab may not change {label}'s caps: {access.reason}", access.fix, key))
    limits = gpu["limits"]
    if spec.power_limit_w is not None:
        if isinstance(limits, DeviceError):
            out.append(
                Problem(f"{label} has no settable power limit ({limits.message})", drop, "power_limit_w")
            )
        elif not limits.min_mw <= spec.power_limit_w * 1000 <= limits.max_mw:
            out.append(
                Problem(
                    f"power_limit_w = {spec.power_limit_w:g} is outside {label}'s power-limit range "
                    f"{limits.range_w()}",
                    f"choose a power limit within {limits.range_w()} (`nvidia-smi -q -d POWER` shows it)",
                    "power_limit_w",
                )
            )
    for field, clocks, what in (
        ("mem_clock_mhz", gpu["mem_clocks"], "memory clocks"),
        ("sm_clock_mhz", gpu["sm_clocks"], "SM clocks"),
    ):
        value = getattr(spec, field)
        if value is None:
            continue
        if isinstance(clocks, DeviceError):
            out.append(Problem(f"{label} offers no list of {what} ({clocks.message})", drop, field))
        elif value not in clocks:
            with_mem = f" with memory at {clocks_mem(gpu, spec)} MHz" if field == "sm_clock_mhz" else ""
            out.append(
                Problem(
                    f"{field} = {value} is not among {label}'s {what}{with_mem} "
                    f"({_clock_range(clocks)}); the nearest is {nearest(value, clocks)}",
                    f"use {field} = {nearest(value, clocks)} "
                    "(`nvidia-smi -q -d SUPPORTED_CLOCKS` lists them all)",
                    field,
                )
            )
    return out


def clocks_mem(gpu: dict[str, Any], spec: RunSpec) -> Any:
    mems = gpu["mem_clocks"]
    if spec.mem_clock_mhz is not None and isinstance(mems, list) and spec.mem_clock_mhz in mems:
        return spec.mem_clock_mhz
    return mems[0] if isinstance(mems, list) and mems else "its highest clock"


def _clock_range(clocks: list[int]) -> str:
    shown = ", ".join(map(str, clocks[:6]))
    return (
        f"{len(clocks)} from {max(clocks)} to {min(clocks)} MHz: {shown}{', ...' if len(clocks) > 6 else ''}"
    )


# --- applying and restoring ---------------------------------------------------------------------------
def _write_plan(path: Path, plan: dict[str, Any]) -> None:
    from wattlab.sessions.spool import write_atomic

    write_atomic(path, json.dumps(plan, indent=1))


def _find(lib: Any, inventory: list[Any], entry: dict[str, Any]) -> Any:
    """The GPU a plan entry names, by UUID (indices may change across a reboot), else by index."""
    for info in inventory:
        if entry.get("uuid") and info.uuid == entry["uuid"]:
            return lib.gpu(info)
    for info in inventory:
        if info.index == entry.get("index"):
            return lib.gpu(info)
    raise ConfigError(f"GPU {entry.get('uuid') or entry.get('index')} is no longer on this box")


def restore_plan(lib: Any, plan: dict[str, Any]) -> list[str]:
    """Put back everything `plan` changes (clock locks reset, power limit to its earlier value).
    Returns the failures in words ([] when all is back); each step is tried even if one fails."""
    errors: list[str] = []
    try:
        inventory = lib.inventory()
    except WattlabError as exc:
        return [f"NVML could not list the GPUs: {exc.message}"]
    for entry in plan.get("gpus", []):
        try:
            gpu = _find(lib, inventory, entry)
        except WattlabError as exc:
            errors.append(exc.message)
            continue
        was = entry.get("was_power_limit_mw")
        steps: list[tuple[str, Callable[[], None]]] = []
        if entry.get("mem_clock_mhz") is not None:
            steps.append(("memory clock lock", gpu.reset_mem_clocks))
        if entry.get("sm_clock_mhz") is not None:
            steps.append(("SM clock lock", gpu.reset_sm_clocks))
        if entry.get("power_limit_w") is not None and was is not None:
            steps.append(("power limit", functools.partial(gpu.set_power_limit_mw, float(was))))
        for what, step in steps:
            try:
                step()
            except WattlabError as exc:
                errors.append(f"GPU {entry.get('index')} {what}: {exc.message}")
    return errors


def describe_plan(plan: dict[str, Any]) -> str:
    """'GPU 0: power limit 300 W (was 700 W), SM clock 1410 MHz' for a plan (or a run's caps)."""
    parts = []
    for entry in plan.get("gpus", []):
        bits = []
        if entry.get("power_limit_w") is not None:
            was = entry.get("was_power_limit_mw")
            bits.append(
                f"power limit {entry['power_limit_w']:g} W" + (f" (was {was / 1000:g} W)" if was else "")
            )
        if entry.get("sm_clock_mhz") is not None:
            bits.append(f"SM clock locked at {entry['sm_clock_mhz']} MHz")
        if entry.get("mem_clock_mhz") is not None:
            bits.append(f"memory clock locked at {entry['mem_clock_mhz']} MHz")
        parts.append(f"GPU {entry.get('index')}: " + ", ".join(bits))
    return "; ".join(parts)


CAP_ORDER = ("mem_clock_mhz", "sm_clock_mhz", "power_limit_w")  # the clocks first, as nvidia-smi does


def _set_cap(gpu: Any, field: str, value: float) -> None:
    if field == "mem_clock_mhz":
        gpu.lock_mem_clocks_mhz(int(value), int(value))
    elif field == "sm_clock_mhz":
        gpu.lock_sm_clocks_mhz(int(value), int(value))
    else:
        gpu.set_power_limit_mw(value * 1000.0)


class CapsGuard:
    """The runner's caps and throttle bookkeeping, one run at a time: `begin` (before the engine
    loads), `on_mark` (window edges), `record` (fills the RunResult), `end` (after the run, whatever
    happened), `close` (when the session ends). `event(kind, **data)` writes the runner's events."""

    def __init__(
        self,
        spool_dir: Path,
        event: Callable[..., Any] | None = None,
        *,
        hz: float = 10.0,
        nvml: Any = None,
    ) -> None:
        self.path = Path(spool_dir) / CAPS_FILE
        self._event = event
        self.hz = max(0.1, float(hz))
        self._nvml = nvml
        self._lib: Any = None
        self._gpus: list[Any] = []
        self._plan: dict[str, Any] | None = None
        self._watch: _ThrottleWatch | None = None
        self._applied: dict[str, Any] | None = None

    def _emit(self, kind: str, **data: Any) -> None:
        if self._event is not None:
            with contextlib.suppress(Exception):  # an event must never stop a restore
                self._event(kind, **data)

    def _session(self) -> Any:
        if self._lib is None:
            from wattlab.devices.nvidia import Nvml

            self._lib = Nvml(_nvml_module(self._nvml))
        return self._lib

    def begin(self, spec: RunSpec, run_id: str) -> None:
        """Find the run's GPUs and apply its caps (original values written to the spool first).
        Raises a WattlabError naming NVML's refusal; whatever was already changed is put back."""
        self.end()
        self._applied = None
        caps = requested(spec)
        try:
            indices = run_gpu_indices(spec, self._nvml)
        except ConfigError:
            if caps:
                raise
            indices = []
        if not indices:
            self._gpus = []
            return
        try:
            lib = self._session()
            inventory = {g.index: g for g in lib.inventory()}
            self._gpus = [lib.gpu(inventory[i]) for i in indices if i in inventory]
        except WattlabError:
            if caps:
                raise
            self._gpus = []  # throttle figures are extras: a GPU NVML cannot open has none
            return
        if caps:
            self._apply(caps, run_id)

    def _apply(self, caps: dict[str, Any], run_id: str) -> None:
        entries = []
        for gpu in self._gpus:
            was = gpu.power_limits().current_mw if "power_limit_w" in caps else None
            entries.append(
                {"index": gpu.info.index, "uuid": gpu.info.uuid, "was_power_limit_mw": was, **caps}
            )
        from wattlab.sessions.spool import process_identity

        plan = {"run_id": run_id, "runner": process_identity(), "written_at": time.time(), "gpus": entries}
        _write_plan(
            self.path, plan
        )  # before any change: a kill -9 from here on is undone by the next command
        # What has been changed so far: a refusal half-way undoes exactly that (the file on disk keeps
        # the whole plan, which recovery undoes in full: putting back an unchanged value is harmless).
        done: list[dict[str, Any]] = []
        self._plan = {**plan, "gpus": done}
        try:
            for gpu, entry in zip(self._gpus, entries, strict=True):
                changed = {k: v for k, v in entry.items() if k not in CAP_FIELDS}
                done.append(changed)
                for field in CAP_ORDER:
                    if caps.get(field) is not None:
                        _set_cap(gpu, field, caps[field])
                        changed[field] = caps[field]
        except WattlabError:
            self._restore()
            raise
        self._plan = plan
        self._applied = plan
        self._emit("caps_applied", run_id=run_id, caps=describe_plan(plan))

    def _restore(self) -> None:
        plan = self._plan
        if plan is None:
            return
        errors = restore_plan(self._session(), plan)
        self._plan = None  # only now: a second Ctrl-C during the restore leaves it to close() to retry
        if errors:
            # The file stays: the next wattlab command, once this runner is gone, tries again.
            self._emit("caps_restore_failed", run_id=plan.get("run_id"), errors=errors)
            log.warning(
                "could not restore GPU caps: %s (%s is kept for a retry)", "; ".join(errors), self.path
            )
            return
        self.path.unlink(missing_ok=True)
        self._emit("caps_restored", run_id=plan.get("run_id"), caps=describe_plan(plan))

    def on_mark(self, name: str) -> None:
        """Window edges from the worker: the measured window's start and end bound the throttle figures."""
        window, _, edge = name.rpartition("_")
        if window not in MEASURED_WINDOWS or not self._gpus:
            return
        if edge == "start":
            self._stop_watch()
            self._watch = _ThrottleWatch(self._gpus, self.hz)
            self._watch.start()
        elif edge == "end" and self._watch is not None:
            self._watch.stop()

    def _stop_watch(self) -> None:
        if self._watch is not None:
            self._watch.stop()

    def record(self, result: RunResult) -> RunResult:
        """The result with throttle_json and the violation times (unchanged when nothing was watched)."""
        if self._watch is None:
            return result
        self._watch.stop()
        figures = self._watch.figures()
        if self._applied is not None:
            figures["caps"] = {
                f"gpu{e['index']}": {k: e[k] for k in ("was_power_limit_mw", *CAP_FIELDS) if k in e}
                for e in self._applied["gpus"]
            }
            figures["caps_restored"] = "after the run (power limit to its earlier value, clock locks reset)"
        power_s, thermal_s = figures.pop("_power_s"), figures.pop("_thermal_s")
        return result.replace(
            throttle_json=json.dumps(figures), power_violation_s=power_s, thermal_violation_s=thermal_s
        )

    def end(self) -> None:
        """After a run, whatever happened: stop watching, put the caps back."""
        self._stop_watch()
        self._watch = None
        self._restore()

    def close(self) -> None:
        """When the session ends (also on Ctrl-C / SIGTERM): restore anything left, close NVML."""
        try:
            self.end()
        finally:
            if self._lib is not None:
                self._lib.close()
                self._lib = None


class _ThrottleWatch:
    """Clock-event reasons sampled on a thread, and violation counters at the window's edges."""

    def __init__(self, gpus: list[Any], hz: float) -> None:
        self.gpus = gpus
        self.hz = hz
        self.samples = {g.info.index: 0 for g in gpus}
        self.counts: dict[int, dict[str, int]] = {g.info.index: {} for g in gpus}
        self.unsupported: set[int] = set()
        self.start_ns: dict[tuple[int, str], int] = {}
        self.end_ns: dict[tuple[int, str], int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopped = False

    def _violations(self) -> dict[tuple[int, str], int]:
        from wattlab.devices.base import DeviceError

        out = {}
        for gpu in self.gpus:
            for policy in ("power", "thermal"):
                with contextlib.suppress(DeviceError):
                    out[(gpu.info.index, policy)] = gpu.violation_ns(policy)
        return out

    def _sample(self) -> None:
        from wattlab.devices.base import DeviceError

        for gpu in self.gpus:
            i = gpu.info.index
            try:
                reasons = gpu.clock_event_reasons()
            except DeviceError:
                self.unsupported.add(i)
                continue
            with self._lock:
                self.samples[i] += 1
                for r in reasons:
                    self.counts[i][r] = self.counts[i].get(r, 0) + 1

    def _loop(self) -> None:
        while not self._stop.wait(1.0 / self.hz):
            self._sample()

    def start(self) -> None:
        self.start_ns = self._violations()
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="wattlab-throttle", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self._sample()
        self.end_ns = self._violations()

    def figures(self) -> dict[str, Any]:
        gpus: dict[str, Any] = {}
        totals: dict[str, float | None] = {"power": None, "thermal": None}
        for gpu in self.gpus:
            i = gpu.info.index
            entry: dict[str, Any] = {"samples": self.samples[i]}
            if i in self.unsupported and not self.samples[i]:
                entry["reasons"] = None  # NOT_SUPPORTED: unknown, not "none"
            else:
                n = max(1, self.samples[i])
                entry["reasons"] = {r: round(c / n, 3) for r, c in sorted(self.counts[i].items())}
            for policy in ("power", "thermal"):
                a, b = self.start_ns.get((i, policy)), self.end_ns.get((i, policy))
                seconds = (b - a) / 1e9 if a is not None and b is not None else None
                entry[f"{policy}_violation_s"] = seconds
                if seconds is not None:
                    totals[policy] = (totals[policy] or 0.0) + seconds
            gpus[f"gpu{i}"] = entry
        return {
            "reasons_method": REASONS_METHOD.format(hz=self.hz),
            "violation_method": VIOLATION_METHOD,
            "gpus": gpus,
            "_power_s": totals["power"],
            "_thermal_s": totals["thermal"],
        }


# --- recovery -----------------------------------------------------------------------------------------
def _caps_files(root: Path | None) -> Iterator[Path]:
    from wattlab.paths import spool_root

    base = Path(root) if root is not None else spool_root()
    if base.exists():
        yield from sorted(base.glob(f"*/{CAPS_FILE}"))


def restore_leftovers(root: Path | None = None, nvml: Any = None) -> list[dict[str, Any]]:
    """Restore the caps every dead runner left changed (its `caps.json` still in its spool). Called by
    `commit.recover`, so the next wattlab command does it. Never raises; returns what it did, and
    writes a `caps_restored` / `caps_restore_failed` event into that session's spool."""
    done: list[dict[str, Any]] = []
    for path in _caps_files(root):
        try:
            done += _restore_leftover(path, nvml)
        except Exception as exc:  # recovery of the database must go on whatever happens here
            log.warning("could not restore the GPU caps in %s: %s", path, exc)
            done.append({"path": str(path), "errors": [str(exc)]})
    return done


def _restore_leftover(path: Path, nvml: Any) -> list[dict[str, Any]]:
    from wattlab.devices.nvidia import Nvml
    from wattlab.sessions.spool import is_alive

    try:
        plan = json.loads(path.read_text())
    except (OSError, ValueError):
        return []  # being written right now (the rename is atomic, so not torn): its runner is alive
    runner = plan.get("runner") or {}
    if runner.get("host") not in (None, socket.gethostname()) or is_alive(runner):
        return []
    with Nvml(_nvml_module(nvml)) as lib:
        errors = restore_plan(lib, plan)
    what = describe_plan(plan)
    summary = {"path": str(path), "run_id": plan.get("run_id"), "caps": what, "errors": errors}
    kind = "caps_restore_failed" if errors else "caps_restored"
    event = {"ev": kind, "wall": time.time(), "run_id": plan.get("run_id"), "caps": what, "by": "recovery"}
    if errors:
        event["errors"] = errors
        log.warning("could not restore the GPU caps a dead runner left (%s): %s", what, "; ".join(errors))
    with contextlib.suppress(OSError), open(path.parent / "events.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(event) + "\n")
    if not errors:
        path.unlink(missing_ok=True)
        log.warning("restored the GPU caps a dead runner left changed (%s)", what)
    return [summary]


# --- showing ------------------------------------------------------------------------------------------
def throttle_lines(run: Any) -> list[str]:
    """Plain-text lines on a run's caps and throttling, each saying how it was obtained; [] when the
    run has none (a CPU run, or one recorded before wattlab read them). `run` is a RunResult or a dict."""
    get = run.get if isinstance(run, dict) else lambda k: getattr(run, k, None)
    raw = get("throttle_json")
    data = json.loads(raw) if isinstance(raw, str) else raw
    lines: list[str] = []
    asked = {k: get(k) for k in CAP_FIELDS if get(k) is not None}
    if isinstance(data, dict) and data.get("caps"):
        plan = {"gpus": [{"index": k.removeprefix("gpu"), **v} for k, v in data["caps"].items()]}
        lines.append(
            f"GPU caps: {describe_plan(plan)}; restored {data.get('caps_restored', 'after the run')}"
        )
    elif asked:
        lines.append("GPU caps asked: " + ", ".join(f"{k} = {v:g}" for k, v in asked.items()))
    for field, label in (("power_violation_s", "power"), ("thermal_violation_s", "thermal")):
        value = get(field)
        if value is not None:
            lines.append(
                f"{label}-limit violation time: {value:.3f} s (NVML counter, measured window, all GPUs)"
            )
    if isinstance(data, dict) and isinstance(data.get("gpus"), dict):
        for gpu, entry in data["gpus"].items():
            reasons = entry.get("reasons")
            if reasons is None:
                text = "not reported by this GPU (NVML: NOT_SUPPORTED)"
            elif reasons:
                text = ", ".join(f"{r} {share:.0%}" for r, share in reasons.items())
            else:
                text = "none"
            lines.append(f"throttle reasons {gpu}: {text} of {entry.get('samples')} samples")
        if data.get("reasons_method"):
            lines.append(f"  how: {data['reasons_method']}; violation times: {data.get('violation_method')}")
    return lines
