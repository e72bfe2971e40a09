"""The runner: executes a run or a sweep as one session, and never loses what it measured.

It owns the meters (one sampler thread each), the session timeline, the spool and the engine
worker subprocess. Per run: (re)load the engine if model/variant/engine changed (the `load`
window), build the requests in the worker, warm up (`warmup` window), run the measured window,
compute the figures, append them to the spool, commit them to DuckDB, cool down.

Failures are contained: an engine error or crash fails that run (with the reason and the fix)
and the sweep goes on with a fresh worker; Ctrl-C or SIGTERM marks the current run
`interrupted` and commits everything measured so far; SIGHUP is ignored (a dropped SSH link).
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as dt
import platform
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from wattlab import __version__
from wattlab.errors import EngineCrashed, EngineError, OutOfMemory, StoreError, WattlabError
from wattlab.meters.timeline import Timeline
from wattlab.meters.windows import IdleJudgement, judge_idle
from wattlab.sessions import commit
from wattlab.sessions.execute import RunContext, base_row, execute_run, failed, utc_now
from wattlab.sessions.plan import max_batch_per_load, max_tokens_per_load, preflight
from wattlab.sessions.result import RunResult
from wattlab.sessions.spec import RunSpec, Sweep
from wattlab.sessions.spool import Spool
from wattlab.sessions.store import Store
from wattlab.sessions.worker import WorkerClient

EventSink = Callable[[dict[str, Any]], None]


def new_session_id() -> str:
    return dt.datetime.now().strftime("%y%m%d-%H%M%S-") + secrets.token_hex(2)


class _Terminated(BaseException):
    """SIGTERM, turned into an exception so `finally` blocks commit what was measured."""


class Runner:
    def __init__(
        self,
        sweep: Sweep,
        *,
        store: Store | None = None,
        session_id: str | None = None,
        kind: str = "sweep",
        echo: EventSink | None = None,
        commit_timeout_s: float = 30.0,
        wait: bool = True,
    ) -> None:
        self.sweep = sweep
        self.settings = sweep.session
        self.store = store or Store()
        self.session_id = session_id or new_session_id()
        self.kind = kind
        self.echo = echo
        self.commit_timeout_s = commit_timeout_s  # how long one commit waits for a locked database
        # Another session measuring on our devices: queue behind it (wait) or refuse (DeviceBusy).
        self.wait = wait
        self._locks: Any = None  # sessions.locks.DeviceLocks, from run()
        self._overlap: Any = None  # sessions.locks.OverlapWatch, once the devices are ours
        from wattlab.sessions.caps import CapsGuard

        self.spool = Spool(self.session_id)
        self._caps = CapsGuard(self.spool.dir, self.event, hz=self.settings.power_hz)  # GPU caps, throttling
        self.timeline = Timeline(
            power_period_s=1.0 / self.settings.power_hz, counter_period_s=1.0 / self.settings.counter_hz
        )
        self.results: list[RunResult] = []
        self.status = "created"  # then running -> finished | interrupted | failed
        self.idle_w: dict[str, float] = {}
        self.idle_not_idle: dict[str, str] = {}  # domain -> why its baseline was not idle
        self._pending_items: list[dict[str, Any]] = []
        self._pending_runs: list[RunResult] = []
        self._pending_lock = threading.Lock()
        self._worker: WorkerClient | None = None
        self._worker_n = 0
        self._sampler: Any = None
        self._meterset: Any = None
        self.current_run_id: str | None = None
        self._last_progress = 0.0
        self._window: tuple[str, int] | None = None  # the engine window in progress: (name, start ns)
        self.carbon: Any = None
        self._max_tokens: dict[tuple[Any, ...], int] = {}
        self._starts: dict[int, int] = {}  # run seq -> times started (a resumed sweep retries)
        # After run(): "committed" (every row is in DuckDB) or "deferred" (the spool keeps them and
        # the next command commits them); deferred_reason says why the last commit failed.
        self.commit_state: str | None = None
        self.deferred_reason: str | None = None
        # Fields set on every run row of this session (a cluster node's node_id, wattlab/cluster/).
        self.run_fields: dict[str, Any] = {}

    # --- events -----------------------------------------------------------------------------------
    def event(self, kind: str, **data: Any) -> dict[str, Any]:
        item = self.spool.event(kind, session_id=self.session_id, **data)
        self._echo(item)
        return item

    def _echo(self, item: dict[str, Any]) -> None:
        """Show an event on the terminal. A terminal that went away (closed pipe, dropped SSH link:
        BrokenPipeError, EIO) or any other echo failure must never reach the measurement: the echo is
        switched off and the sweep goes on, everything still in the spool."""
        if self.echo is None:
            return
        try:
            self.echo(item)
        except Exception:
            self.echo = None

    def _on_timeline_item(self, item: dict[str, Any]) -> None:
        self.spool.timeline_item(item)
        if "domains" not in item:
            with self._pending_lock:
                self._pending_items.append(item)

    def on_mark(self, name: str, t_ns: int, data: dict[str, Any]) -> None:
        self.timeline.mark(name, run_id=self.current_run_id, t_ns=t_ns, **data)
        self._caps.on_mark(name)
        if name.endswith("_start"):
            self._window = (name.removesuffix("_start"), t_ns)
            self._last_progress = 0.0  # a window's first tokens are always reported (its phase starts)
        if self._sampler is not None:
            self._sampler.read_counters_now(timeout_s=0.1)

    def on_progress(self, tokens: int, t_ns: int) -> None:
        now = time.monotonic()
        if now - self._last_progress >= 0.25:
            self._last_progress = now
            # Token counts restart with each engine window (warmup, then run): name the window, so
            # the live view never reads the restart as tokens going backwards.
            window, window_t0 = self._window or (None, None)
            self.event(
                "progress",
                run_id=self.current_run_id,
                tokens=tokens,
                t=t_ns,
                window=window,
                window_t0=window_t0,
            )

    # --- the session ------------------------------------------------------------------------------
    def session_row(self, status: str) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "name": self.settings.name or (self.sweep.source if self.kind == "sweep" else None),
            "kind": self.kind,
            "status": status,
            "created_at": utc_now().isoformat(),
            "host": socket.gethostname(),
            "platform": f"{platform.system()} {platform.machine()} {platform.processor() or ''}".strip(),
            "wattlab_version": __version__,
            "runs_planned": len(self.sweep.runs),
            "sweep_hash": self.sweep.hash(),
            "spec_json": {
                "session": self.settings.as_dict(),
                "runs": [{**s.as_dict(), "repeat": r} for s, r in self.sweep.runs],
                "source": self.sweep.source,
            },
            "spool_dir": str(self.spool.dir),
        }

    def finished_keys(self) -> set[str]:
        """Run keys already finished in this session (when resuming)."""
        try:
            rows = self.store.query(
                "SELECT run_key FROM runs WHERE session_id = ? AND status = 'finished'", [self.session_id]
            )[1]
        except StoreError:
            rows = []
        keys = {r[0] for r in rows}
        for ev in self.spool.events():
            if ev.get("ev") == "run_end" and ev["result"].get("status") == "finished":
                keys.add(ev["result"].get("run_key"))
            elif ev.get("ev") == "run_start":
                self._starts[ev["seq"]] = self._starts.get(ev["seq"], 0) + 1
        return keys

    def run(self) -> list[RunResult]:
        """Execute every run of the sweep. Returns the run results (also in the database).

        Raises ConfigError before anything starts when a run asks an engine for what it cannot do.
        """
        preflight(self.sweep)
        from wattlab.sessions.locks import DeviceLocks, busy_error, session_devices

        devices = session_devices(s for s, _ in self.sweep.runs)
        self._locks = DeviceLocks(devices, self.session_id, events_path=self.spool.events_path)
        if not self.wait and (blockers := self._locks.blockers()):
            raise busy_error(blockers)  # refused before anything is written
        from wattlab.meters import open_meters
        from wattlab.meters.carbon import resolve_intensity
        from wattlab.meters.sampler import Sampler

        previous_term = signal.getsignal(signal.SIGTERM)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _raise_terminated)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
        # Earlier sessions killed before committing; a locked database must not stop a new session
        # (the next command recovers them).
        with contextlib.suppress(StoreError):
            commit.recover(self.store)
        resuming = self.spool.dir.exists()
        done_keys = self.finished_keys() if resuming else set()
        session = self.session_row("running")
        self.spool.create(session)
        self.spool.timeline_item(self.timeline.header())  # the spool is a loadable timeline file
        self.timeline.subscribe(self._on_timeline_item)
        status = "failed"
        try:
            self._take_devices(session)
            self.carbon = resolve_intensity(
                country=self.settings.country, fixed_g_per_kwh=self.settings.intensity_g_per_kwh
            )
            self._meterset = open_meters(
                self.settings.meters, gpus=self.settings.gpus, tdp_w=self.settings.tdp_w
            )
            session["meters_json"] = {
                "used": [m.name for m in self._meterset.meters],
                "missing": [p.as_dict() for p in self._meterset.missing],
            }
            session["carbon_json"] = {**self.carbon.as_dict(), "pue": self.settings.pue}
            self.event("session_start", session=session, resumed=resuming, skip=sorted(done_keys))
            self.event(
                "session_update",
                fields={"meters_json": session["meters_json"], "carbon_json": session["carbon_json"]},
            )
            self._sampler = Sampler(
                self._meterset.meters,
                self.timeline,
                power_hz=self.settings.power_hz,
                counter_hz=self.settings.counter_hz,
            ).start()
            self._measure_idle()
            session["idle_json"] = {
                "idle_w": self.idle_w,
                "seconds": self.settings.idle_s,
                "not_idle": self.idle_not_idle,
            }
            self._commit(session_row=session)
            max_batch = max_batch_per_load(self.sweep.runs)
            self._max_tokens = max_tokens_per_load(self.sweep.runs)
            for seq, spec, repeat in self._runs_to_do():
                if spec.key(repeat) in done_keys:
                    self.event("run_skipped", seq=seq, run_key=spec.key(repeat), label=spec.label())
                    continue
                try:
                    result = self._one_run(seq, spec, repeat, max_batch[spec.load_key()])
                finally:
                    self._caps.end()  # the run's GPU caps back, however it ended
                self.results.append(result)
                self._commit(run=result)
                if seq < len(self.sweep.runs):
                    self._cooldown()
            status = "finished"
        except (KeyboardInterrupt, _Terminated):
            status = "interrupted"
        except WattlabError as exc:
            self.event("session_error", **exc.as_dict())
            status = "failed"
            raise
        finally:
            self.status = status
            self._shutdown(session, status)
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, previous_term)
        return self.results

    def _runs_to_do(self) -> Iterator[tuple[int, RunSpec, int]]:
        """(seq, spec, repeat) in the order they run: the whole sweep here; a cluster node's runner
        (wattlab/cluster/agent.py) yields the runs the head hands it instead."""
        for seq, (spec, repeat) in enumerate(self.sweep.runs, 1):
            yield seq, spec, repeat

    def _shutdown(self, session: dict[str, Any], status: str) -> None:
        self._caps.close()  # before the device locks go: a queued session must find the GPU as it was
        if self._worker is not None:
            self._worker.close(timeout_s=10)
        if self._sampler is not None:
            self._sampler.stop()
            self.event("sampler_stats", stats=self._sampler.stats())
        if self._meterset is not None:
            self._meterset.close()
        if self._locks is not None:
            self._locks.release()  # the engine is gone: a queued session may take the devices
        ended = utc_now().isoformat()
        self.event("session_end", status=status, ended_at=ended)
        session.update(status=status, ended_at=ended)
        committed = self._commit(session_row=session)
        self.spool.close()
        all_in = committed and not self._pending_items and not self._pending_runs
        self.commit_state = "committed" if all_in else "deferred"
        try:
            if all_in:
                self.spool.mark_committed()
            else:
                self.spool.mark_runner_done()  # the next wattlab command ingests the spool
        except StoreError as exc:
            # No marker (a full disk): the next command re-ingests the spool, which is harmless.
            # The spool is closed, so say it through the echo only.
            self._echo({"ev": "session_error", "session_id": self.session_id, **exc.as_dict()})

    def _take_devices(self, session: dict[str, Any]) -> None:
        """Lock the session's devices before its idle baseline. While another session measures on
        them this one waits with status `queued` (a `queued` event names who is ahead)."""
        from wattlab.sessions.locks import describe_holder
        from wattlab.sessions.overlap import OverlapWatch

        locks = self._locks

        def queued(blockers: list[dict[str, Any]]) -> None:
            self.event(
                "queued",
                devices=locks.labels,
                behind=[b.get("session_id") for b in blockers],
                reasons=[describe_holder(b) for b in blockers],
            )
            if session.get("status") != "queued":
                session["status"] = "queued"
                self._commit(session_row=session)  # `wattlab ls` and History show it waiting

        locks.acquire(wait=self.wait, on_queued=queued)
        session["status"] = "running"
        self.event("devices_locked", devices=locks.labels, queued_s=round(locks.queued_s, 1))
        self._overlap = OverlapWatch(locks)

    def _measure_idle(self) -> None:
        """Idle baseline per domain: mean power over idle_s with nothing running (W)."""
        idle_s = float(self.settings.idle_s)
        if idle_s <= 0:
            self.event("idle", idle_w={}, seconds=0)
            return
        start = self.timeline.mark("idle_start")
        time.sleep(idle_s)
        self._sampler.read_counters_now()
        end = self.timeline.mark("idle_end")
        for d in self.timeline.domains.values():
            w = self.timeline.window(d.id, start.t_ns, end.t_ns)
            if w.mean_power_w is not None:
                self.idle_w[d.id] = w.mean_power_w
                # A baseline taken on a busy box turns gross energy into a meaningless net: judge it.
                verdict = self._judge_idle(d.id, start.t_ns, end.t_ns)
                if verdict.reasons:
                    self.idle_not_idle[d.id] = "; ".join(verdict.reasons)
        self.event("idle", idle_w=self.idle_w, seconds=idle_s, not_idle=self.idle_not_idle)

    def _judge_idle(self, domain_id: str, t0: int, t1: int) -> IdleJudgement:
        """The idle judgement of one domain's readings in [t0, t1] (meters/windows.judge_idle)."""
        series = self.timeline.series(domain_id)
        lo, hi = bisect.bisect_left(series.power_t, t0), bisect.bisect_right(series.power_t, t1)
        latest = self.timeline.latest(domain_id)
        limit = latest.power_limit_w if latest is not None else None
        if limit is None:  # the estimate meter's maximum is its TDP
            domain = self.timeline.domains[domain_id]
            meters = self._meterset.meters if self._meterset is not None else []
            limit = next((getattr(m, "tdp_w", None) for m in meters if m.name == domain.meter), None)
        return judge_idle(
            domain_id,
            list(series.power_w[lo:hi]),
            self.timeline.mean_util(domain_id, t0, t1),
            limit,
        )

    def _cooldown(self) -> None:
        setting = self.settings.cooldown_s
        if setting == "settle":
            deadline = time.monotonic() + 60.0
            while time.monotonic() < deadline:
                if all(
                    (s := self.timeline.latest(d)) is None
                    or s.power_w is None
                    or s.power_w <= idle * 1.1 + 5.0
                    for d, idle in self.idle_w.items()
                ):
                    break
                time.sleep(0.5)
        elif float(setting) > 0:
            time.sleep(float(setting))

    # --- one run ----------------------------------------------------------------------------------
    def _ensure_worker(self, spec: RunSpec, max_batch: int) -> tuple[WorkerClient, dict[str, Any] | None]:
        """The worker for this spec's load key; (worker, load figures) — None when reused."""
        key = spec.load_key()
        if self._worker is not None and self._worker.key == key and self._worker.alive:
            return self._worker, None
        if self._worker is not None:
            self._worker.close(timeout_s=10)
            self._worker = None
        self._worker_n += 1
        worker = WorkerClient(
            self.spool.worker_log(self._worker_n), on_mark=self.on_mark, on_progress=self.on_progress
        )
        self._worker = worker
        info = worker.call(
            "load",
            config={
                "engine": spec.engine,
                "model": spec.model,
                "quant": spec.quant,
                "device": spec.device,
                "max_batch": max_batch,
                "max_tokens": self._max_tokens[key],
                "options": spec.options,
                "speculative": spec.speculative,
                "transform": spec.transform,
            },
            timeout_s=spec.timeout_s or 3600,
        )
        worker.key = key
        worker.info = info
        return worker, info

    def _drop_worker(self) -> None:
        if self._worker is not None:
            self._worker.kill()
            self._worker.close(timeout_s=1)
            self._worker = None

    def _one_run(self, seq: int, spec: RunSpec, repeat: int, max_batch: int) -> RunResult:
        # A retry after an interruption or failure gets its own id, so the earlier record is kept.
        attempt = self._starts.get(seq, 0) + 1
        self._starts[seq] = attempt
        run_id = f"{self.session_id}-{seq:03d}" + (f".{attempt}" if attempt > 1 else "")
        self.current_run_id = run_id
        row = base_row(self.session_id, run_id, seq, spec, repeat)
        if self.run_fields:
            row = row.replace(**self.run_fields)
        self.event(
            "run_start",
            run_id=run_id,
            seq=seq,
            total=len(self.sweep.runs),
            label=spec.label(),
            row=row.as_dict(),
            t=time.monotonic_ns(),  # on the samples' clock: the live view's run energy starts here
        )
        ctx = RunContext(
            run_id=run_id,
            spec=spec,
            timeline=self.timeline,
            idle_w=self.idle_w,
            idle_not_idle=self.idle_not_idle,
            carbon=self.carbon,
            pue=self.settings.pue,
            row=row,
        )
        try:
            watch = self._overlap.begin() if self._overlap is not None else None
            self._caps.begin(spec, run_id)  # original values to the spool, then the caps set
            ctx.worker, ctx.load_info = self._ensure_worker(spec, max_batch)
            self.event(
                "run_loaded",
                run_id=run_id,
                devices=ctx.worker.info.get("devices"),
                engine_version=ctx.worker.info.get("version"),
                reused=ctx.load_info is None,
            )
            result = execute_run(ctx)
            if watch is not None:
                charged = str(result.energy_domains or "").split(",")
                domains = [self.timeline.domains[d] for d in charged if d in self.timeline.domains]
                result = result.replace(overlap=self._overlap.finish(watch, domains))
            result = self._caps.record(result)  # throttle reasons, violation times
        except (KeyboardInterrupt, _Terminated):
            self._drop_worker()
            result = row.replace(
                status="interrupted",
                error="stopped by the user (Ctrl-C or SIGTERM)",
                ended_at=utc_now().isoformat(),
            )
            self._record(result)
            self.results.append(result)
            self._pending_runs.append(result)  # committed with the session's last commit
            raise
        except (EngineCrashed, OutOfMemory) as exc:
            self._drop_worker()
            result = failed(row, exc)
        except WattlabError as exc:
            if isinstance(exc, EngineError) and "did not answer" in exc.message:
                self._drop_worker()
            elif self._worker is not None and self._worker.key is None:
                self._drop_worker()  # the load itself failed: don't reuse a half-loaded worker
            result = failed(row, exc)
        except Exception as exc:  # a bug of ours: fail this run with the reason, keep the sweep going
            self._drop_worker()
            result = failed(
                row,
                EngineError(f"{type(exc).__name__}: {exc}", fix="please report this with the spool's logs"),
            )
        self._record(result)
        self.current_run_id = None
        return result

    def _record(self, result: RunResult) -> None:
        self.event("run_end", result=result.as_dict(), t=time.monotonic_ns())

    # --- committing -------------------------------------------------------------------------------
    def _commit(self, run: RunResult | None = None, session_row: dict[str, Any] | None = None) -> bool:
        """One short transaction: the run (and any earlier uncommitted ones) plus pending samples."""
        with self._pending_lock:
            items, self._pending_items = self._pending_items, []
        if run is not None:
            self._pending_runs.append(run)
        try:
            with self.store.writer(timeout_s=self.commit_timeout_s) as con:
                con.execute("BEGIN TRANSACTION")
                if session_row is not None:
                    commit.write_session(con, session_row)
                    commit.write_domains(
                        con,
                        self.session_id,
                        [d.as_dict() for d in self.timeline.domains.values()],
                        self.idle_w,
                    )
                for r in self._pending_runs:
                    commit.write_run(con, r)
                commit.write_timeline_items(con, self.session_id, items)
                con.execute("COMMIT")
            self._pending_runs = []
            return True
        except (StoreError, OSError, Exception) as exc:  # locked DB, full disk: keep it all for next time
            with self._pending_lock:
                self._pending_items = items + self._pending_items
            text = str(exc)
            self.deferred_reason = (
                exc.message if isinstance(exc, StoreError) else text.splitlines()[0] if text else repr(exc)
            )[:300]
            self.event("commit_deferred", reason=self.deferred_reason)
            return False

    def deferral_note(self) -> str | None:
        """One line for stderr when the session's rows are not (all) in the database yet: why, where
        they are kept, and what commits them. None when everything was committed."""
        if self.commit_state != "deferred":
            return None
        reason = self.deferred_reason or "the database could not be written"
        low = reason.lower()
        if "locked" in low or "lock on file" in low:
            when = "once the lock is free"
        elif "no space" in low or ("disk" in low and "full" in low):
            when = "once space is freed on that disk"
        else:
            when = "once the database can be written"
        lost = self.spool.unwritten
        return (
            f"commit deferred: {reason}; the session is kept in the spool {self.spool.dir} and is "
            f"committed by the next wattlab command (e.g. `wattlab ls`) {when}"
            + (f" ({lost} spool lines could not be written to the full disk and are lost)" if lost else "")
        )


def _raise_terminated(signum: int, frame: Any) -> None:
    raise _Terminated()
