"""llama.cpp's log, kept quiet: recent lines are buffered (to explain a failed load) and printed
only when WATTLAB_LLAMA_VERBOSE=1. llama.cpp has one process-wide log callback; the adapter and the
GGUF quantizer both install this one.
"""

from __future__ import annotations

import collections
import ctypes
import os
import sys

import llama_cpp as lc

_LOG: collections.deque[str] = collections.deque(maxlen=64)


@lc.llama_log_callback
def _log_callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    message = text.decode("utf-8", errors="replace")
    _LOG.append(message)
    if os.environ.get("WATTLAB_LLAMA_VERBOSE") == "1":
        sys.stderr.write(message)


def quiet_llama_logs() -> None:
    """Route llama.cpp's log through wattlab's buffer."""
    lc.llama_log_set(_log_callback, ctypes.c_void_p(0))


def clear_log() -> None:
    _LOG.clear()


def recent_log(lines: int = 6) -> str:
    """The last few non-empty log lines, joined on one line (for an error message)."""
    text = "".join(_LOG).strip().splitlines()
    return " | ".join(line.strip() for line in text[-lines:] if line.strip())
