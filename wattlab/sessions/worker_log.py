"""The engine worker's log (the spool's worker-N.log): set up so a native crash leaves a trace.

The worker's fd 1 and 2 are the log, unbuffered (C's stdout included), and faulthandler is armed on
it; each op writes a line as it starts and ends. crash_tail() picks what a crash message quotes.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

_FAULT_LOG: Any = None  # the file faulthandler writes to: kept open for the process's life


def log_line(text: str) -> None:
    """One timestamped line in the worker log (stderr), written through at once."""
    stamp = time.strftime("%H:%M:%S")
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(f"[{stamp} worker {os.getpid()}] {text}\n")
        sys.stderr.flush()


def describe_op(op: str, payload: dict[str, Any]) -> str:
    """`op` and what it works on, in one line for the log and a crash message."""
    if op == "load":
        c = payload.get("config") or {}
        parts = [f"{k}={c.get(k)}" for k in ("engine", "model", "quant", "device", "max_batch", "max_tokens")]
        if c.get("options"):
            parts.append(f"options={json.dumps(c['options'], separators=(',', ':'), default=str)[:200]}")
        return "load: " + " ".join(parts)
    if op == "generate":
        n = len(payload.get("requests") or [])
        return (
            f"generate: {n} requests, batch_size={payload.get('batch_size')}, "
            f"mode={payload.get('mode', 'offline')}, window={payload.get('window', 'run')}"
        )
    if op == "logprobs":
        return f"logprobs: {len(payload.get('ids') or [])} sequences"
    if op == "tokenize":
        return f"tokenize: {len(payload.get('texts') or [])} texts"
    if op == "prepare":
        w = payload.get("workload") or {}
        return "prepare: " + " ".join(f"{k}={w[k]}" for k in ("kind", "task", "requests") if k in w)
    return op


def setup_log(log_path: str | None = None) -> None:
    """Point fd 1 and fd 2 at the worker log, unbuffered, and arm faulthandler on it.

    Native libraries write to fd 1/2 directly; C's stdout is fully buffered when it is a file, so a
    crash would lose what it held: it is made unbuffered. Python's own streams write through.
    """
    global _FAULT_LOG
    if log_path:
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(fd, 2)
        os.close(fd)
    # Native libraries print to stdout; send that to the log (stderr) so nothing is mistaken for data.
    os.dup2(2, 1)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(line_buffering=True, write_through=True)  # type: ignore[union-attr]
    _unbuffer_c_stdio()
    # A dup of the log of its own: faulthandler still reaches it if a library moves fd 2.
    _FAULT_LOG = os.fdopen(os.dup(2), "w")
    faulthandler.enable(file=_FAULT_LOG, all_threads=True)


def _unbuffer_c_stdio() -> None:
    """setvbuf(stdout/stderr, NULL, _IONBF, 0) in the C library (glibc; best effort elsewhere)."""
    import ctypes
    import ctypes.util

    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        for name in ("stdout", "stderr"):
            stream = ctypes.c_void_p.in_dll(libc, name)
            libc.setvbuf(stream, None, 2, 0)  # _IONBF


_FATAL = "Fatal Python error:"


def crash_tail(path: Path, lines: int = 5, max_bytes: int = 256 * 1024) -> str:
    """The last `lines` non-empty lines of a worker log, indented, for a crash message.

    When the log ends in a faulthandler dump, the lines that matter are not its last ones (the
    outermost frames and the list of extension modules) but the few before it, the fatal error, and
    the innermost frames of the thread that crashed.
    """
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - max_bytes))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    all_lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    starts = [i for i, ln in enumerate(all_lines) if ln.startswith(_FATAL)]
    if not starts:
        kept = all_lines[-lines:]
    else:
        i = starts[-1]
        before = all_lines[max(0, i - 2) : i]
        dump = all_lines[i + 1 :]
        current = next((k for k, ln in enumerate(dump) if ln.startswith("Current thread")), None)
        frames: list[str] = []
        if current is not None:
            for ln in dump[current + 1 :]:
                if not ln.startswith("  File "):
                    break
                frames.append(ln)
        kept = [*before, all_lines[i], *frames[: max(1, lines - len(before) - 1)]]
    return "\n".join("    " + ln.strip()[:300] for ln in kept)
