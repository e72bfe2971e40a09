"""The engine worker: a subprocess of the runner that hosts one loaded engine.

Why a subprocess: an OOM, a segfault in a native library or a hung CUDA call then fails one run,
not the sweep, and the runner (which holds the meters and the spool) never dies with the engine.
The worker is reused while model/variant/engine stay the same, and restarted after a crash.

Protocol: JSON lines over two pipes (not stdout, which native libraries write to freely).

    runner -> worker   {"op": "load", "config": {...}}
                       {"op": "prepare", "workload": {...}}          -> requests (token ids)
                       {"op": "generate", "requests": [...], "decoding": {...}, "batch_size": N,
                        "mode": "offline"|"online", "max_concurrency": N, "window": "measured"}
                       {"op": "logprobs", "ids": [[...], ...]}
                       {"op": "close"}
    worker -> runner   {"ev": "mark", "name": "load_start", "t": ns}  (window edges, as they happen)
                       {"ev": "progress", "tokens": n, "t": ns}       (output tokens so far, <= 10/s)
                       {"ev": "ok", "result": {...}}                  (the reply to one op)
                       {"ev": "error", "error": "OutOfMemory", "message": ..., "fix": ...}

The worker log (the spool's worker-N.log; worker_log.py) is the worker's fd 1 and fd 2, unbuffered,
so whatever a native library prints survives a crash; each op writes a line there as it starts and
ends, and faulthandler dumps every thread's Python stack there on a SIGSEGV / SIGABRT / SIGBUS /
SIGFPE. A native crash thus leaves the op it hit, the last lines before it and where Python was.
Model files are derived in a child of the worker (derive.derive_in_child), never in it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wattlab.errors import EngineCrashed, EngineError, WattlabError
from wattlab.sessions.worker_log import crash_tail, describe_op, log_line, setup_log

PROGRESS_PERIOD_NS = 100_000_000


# --------------------------------------------------------------------------------------------------
# The worker side (runs in the subprocess)
# --------------------------------------------------------------------------------------------------
class _Worker:
    def __init__(self, rfd: int, wfd: int) -> None:
        self.inp = os.fdopen(rfd, "r", encoding="utf-8")
        self.out = os.fdopen(wfd, "w", encoding="utf-8")
        self.engine: Any = None
        self.template: str | None = None

    def send(self, item: dict[str, Any]) -> None:
        self.out.write(json.dumps(item, separators=(",", ":")) + "\n")
        self.out.flush()

    def mark(self, name: str, **data: Any) -> None:
        self.send({"ev": "mark", "name": name, "t": time.monotonic_ns(), **data})

    def serve(self) -> None:
        for line in self.inp:
            msg = json.loads(line)
            op = msg.pop("op")
            if op == "close":
                log_line("op close")
                break
            log_line(f"op {describe_op(op, msg)}")
            t0 = time.monotonic()
            try:
                result = getattr(self, f"op_{op}")(**msg)
                log_line(f"op {op} ok ({time.monotonic() - t0:.2f} s)")
                self.send({"ev": "ok", "result": result})
            except WattlabError as exc:
                log_line(f"op {op} failed: {type(exc).__name__}: {exc.message}")
                self.send({"ev": "error", **exc.as_dict()})
            except MemoryError:
                log_line(f"op {op} failed: MemoryError")
                self.send(
                    {
                        "ev": "error",
                        "error": "OutOfMemory",
                        "title": "Out of memory",
                        "message": "the engine ran out of host memory",
                        "fix": "lower --batch-size or the token lengths, or use a smaller model/variant",
                    }
                )
            except Exception as exc:  # an untranslated vendor error: report it, stay alive
                log_line(f"op {op} failed: {type(exc).__name__}: {exc}")
                self.send({"ev": "error", **translate_exception(exc).as_dict()})
        if self.engine is not None:
            self.engine.close()

    # --- ops ------------------------------------------------------------------------------------
    def op_load(self, config: dict[str, Any]) -> dict[str, Any]:
        """Resolve the model, derive its files on first use (outside the load window, in a child
        process of their own: derive.derive_in_child), then load it."""
        from wattlab.engines import get_engine_class
        from wattlab.engines.derive import derive_in_child
        from wattlab.engines.models import files_ready, resolve

        cfg = resolve(
            config["model"],
            config["engine"],
            config.get("quant"),
            config.get("device") or "auto",
            max_batch=int(config.get("max_batch") or 1),
            max_tokens=int(config.get("max_tokens") or 2048),
            options=config.get("options") or {},
            prepare=False,  # GGUF variants and checkpoints are derived below, not in this process
            transform=config.get("transform"),  # pruned / LoRA checkpoints: engines/transforms.py
        )
        if config.get("speculative"):  # the engine sets its drafter up at load (engines/levers.py)
            cfg = dataclasses.replace(cfg, speculative=config["speculative"])
        if cfg.options.get("derive_from") and not files_ready(cfg):
            derive_in_child(cfg)
        cls = get_engine_class(cfg.engine)
        self.template = cfg.options.get("chat_template")
        self.mark("load_start")
        engine = cls(cfg)
        engine.load()
        self.mark("load_end")
        self.engine = engine
        return {
            "version": cls.version(),
            "devices": engine.devices(),
            "eos": list(engine.eos_token_ids),
            "caps": cls.capabilities(),
            "params": getattr(engine, "num_parameters", None),
            "variant": cfg.variant,
            "path": cfg.path,
            "transform_note": _transform_note(cfg) if cfg.options.get("transform") else None,
        }

    def op_prepare(self, workload: dict[str, Any]) -> dict[str, Any]:
        from wattlab.workloads import build_requests

        built = build_requests(workload, self.engine.tokenize, self.template)
        return {"requests": [r.as_dict() for r in built.requests], "meta": built.meta}

    def op_generate(
        self,
        requests: list[dict[str, Any]],
        decoding: dict[str, Any],
        batch_size: int,
        mode: str = "offline",
        max_concurrency: int | None = None,
        window: str = "run",
    ) -> dict[str, Any]:
        from wattlab.engines.base import Decoding, Request

        reqs = [Request.from_dict(r) for r in requests]
        dec = Decoding(**decoding)
        total = 0
        last_sent = 0

        def progress(n: int) -> None:
            nonlocal total, last_sent
            total += n
            now = time.monotonic_ns()
            if now - last_sent >= PROGRESS_PERIOD_NS:
                last_sent = now
                self.send({"ev": "progress", "tokens": total, "t": now})

        self.mark(f"{window}_start")
        if mode == "online":
            completions = self.engine.generate_online(reqs, dec, max_concurrency or batch_size, progress)
        else:
            completions = self.engine.generate(reqs, dec, batch_size, progress)
        self.mark(f"{window}_end")
        return {
            "completions": [c.as_dict() for c in completions],
            "peak_mem_mib": self.engine.peak_memory_mib(),
            "speculation": self.engine.speculation_stats(),
        }

    def op_logprobs(self, ids: list[list[int]]) -> dict[str, Any]:
        self.mark("logprobs_start")
        out = [self.engine.prompt_logprobs(list(x)) for x in ids]
        self.mark("logprobs_end")
        return {"logprobs": out}

    def op_tokenize(self, texts: list[str]) -> dict[str, Any]:
        return {"ids": [self.engine.tokenize(t) for t in texts]}


def _transform_note(cfg: Any) -> dict[str, Any] | None:
    from wattlab.engines.transforms import run_note

    return run_note(cfg)


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    rfd, wfd = int(args[0]), int(args[1])
    setup_log(args[2] if len(args) > 2 else None)
    # llama.cpp's own log (kept in a buffer otherwise) is written to the worker log too.
    os.environ.setdefault("WATTLAB_LLAMA_LOG", "info")
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # survive a dropped SSH link, like the runner
    log_line(f"started: python {sys.version.split()[0]}, pid {os.getpid()}, parent {os.getppid()}")
    _Worker(rfd, wfd).serve()
    log_line("closed")
    return 0


# --------------------------------------------------------------------------------------------------
# The runner side
# --------------------------------------------------------------------------------------------------
MarkHandler = Callable[[str, int, dict[str, Any]], None]
ProgressHandler = Callable[[int, int], None]


class WorkerClient:
    """Starts and talks to one engine worker subprocess."""

    def __init__(
        self,
        log_path: Path,
        *,
        on_mark: MarkHandler | None = None,
        on_progress: ProgressHandler | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.log_path = log_path
        self.on_mark = on_mark
        self.on_progress = on_progress
        self.key: tuple[Any, ...] | None = None  # what is loaded: reuse while it stays the same
        self.info: dict[str, Any] = {}
        to_worker_r, self._to_worker = os.pipe()
        self._from_worker, from_worker_w = os.pipe()
        self.last_op: str | None = None  # the op sent last, described (for a crash message)
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "wattlab.sessions.worker",
                str(to_worker_r),
                str(from_worker_w),
                str(log_path),
            ],
            pass_fds=(to_worker_r, from_worker_w),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
        )
        os.close(to_worker_r)
        os.close(from_worker_w)
        self._buf = b""
        # Peak memory of the worker's process tree, read from here while it generates (peakmem.py).
        from wattlab.sessions.peakmem import PeakMemSampler

        self.memory = PeakMemSampler(self.proc.pid).start()

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def call(self, op: str, timeout_s: float | None = None, **payload: Any) -> dict[str, Any]:
        """Send one op and wait for its reply, dispatching marks and progress meanwhile."""
        data = (json.dumps({"op": op, **payload}, separators=(",", ":")) + "\n").encode()
        self.last_op = describe_op(op, payload)
        try:
            _write_all(self._to_worker, data)
        except BrokenPipeError as exc:
            raise self._crashed() from exc
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        measures = op in ("generate", "logprobs")
        if measures:
            self.memory.begin()
        while True:
            msg = self._next_message(deadline, timeout_s)
            ev = msg.get("ev")
            if ev == "mark" and self.on_mark:
                self.on_mark(
                    msg["name"], int(msg["t"]), {k: v for k, v in msg.items() if k not in ("ev", "name", "t")}
                )
            elif ev == "progress" and self.on_progress:
                self.on_progress(int(msg["tokens"]), int(msg["t"]))
            elif ev == "ok":
                result = msg.get("result") or {}
                return self._with_peak_memory(result) if measures else result
            elif ev == "error":
                raise _error_from(msg)

    def _with_peak_memory(self, result: dict[str, Any]) -> dict[str, Any]:
        """The reply with peak_mem_mib / peak_mem_kind from the sampler; where it read nothing, the
        engine's own figure (kind "engine")."""
        peak = self.memory.end(self.info.get("devices"))
        if peak is not None:
            return {**result, "peak_mem_mib": peak.mib, "peak_mem_kind": peak.kind}
        if result.get("peak_mem_mib") is not None:
            return {**result, "peak_mem_kind": "engine"}
        return result

    def _next_message(self, deadline: float | None, timeout_s: float | None) -> dict[str, Any]:
        while b"\n" not in self._buf:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            with selectors.DefaultSelector() as sel:
                sel.register(self._from_worker, selectors.EVENT_READ)
                ready = sel.select(timeout)
            if not ready:
                self.kill()
                raise EngineError(
                    f"the engine did not answer within {timeout_s:.0f} s; it was stopped",
                    fix="raise the run's timeout_s, or lower the batch size / token lengths",
                    title="Engine timed out",
                )
            chunk = os.read(self._from_worker, 1 << 20)
            if not chunk:
                raise self._crashed()
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def _crashed(self) -> EngineCrashed:
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        if code is not None and code < 0:
            sig = signal.Signals(-code).name
            how = f"was killed by {sig}"
            if -code == signal.SIGKILL:
                how += " (often the kernel's out-of-memory killer)"
        else:
            how = f"exited with code {code}"
        during = f" during op {self.last_op}" if self.last_op else ""
        tail = crash_tail(self.log_path)
        return EngineCrashed(
            f"the engine worker {how}{during}"
            + (f"; last log lines:\n{tail}" if tail else f"; its log {self.log_path} is empty"),
            fix=f"see {self.log_path}; if it ran out of memory, lower the batch size or token lengths",
        )

    def kill(self) -> None:
        self.memory.stop()
        if self.alive:
            self.proc.kill()
            self.proc.wait()

    def close(self, timeout_s: float = 30.0) -> None:
        self.memory.stop()
        if self.alive:
            try:
                _write_all(self._to_worker, b'{"op":"close"}\n')
                self.proc.wait(timeout=timeout_s)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.kill()
        for fd in (self._to_worker, self._from_worker):
            with contextlib.suppress(OSError):  # already closed
                os.close(fd)
        self._log.close()


def translate_exception(exc: BaseException) -> WattlabError:
    """A last-resort translation of a vendor exception an adapter did not translate itself."""
    from wattlab.errors import OutOfMemory

    text = f"{type(exc).__name__}: {exc}".strip()
    first = text.splitlines()[0][:500]
    lowered = text.lower()
    if "out of memory" in lowered or "not enough memory" in lowered or "OutOfMemoryError" in text:
        return OutOfMemory(
            f"the engine ran out of memory ({first})",
            fix="lower --batch-size or the token lengths, or use a smaller model/variant",
        )
    return EngineError(f"the engine failed: {first}", fix="see the worker log in the session's spool")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _error_from(msg: dict[str, Any]) -> WattlabError:
    import wattlab.errors as errors

    cls = getattr(errors, str(msg.get("error")), None)
    if not (isinstance(cls, type) and issubclass(cls, WattlabError)):
        cls = EngineError
    return cls(str(msg.get("message")), fix=msg.get("fix"), title=msg.get("title"))


if __name__ == "__main__":
    raise SystemExit(main())
