"""llama.cpp's log, kept quiet: recent lines are buffered (to explain a failed load) and printed
only when WATTLAB_LLAMA_VERBOSE=1 (everything) or WATTLAB_LLAMA_LOG=info (INFO and above; the engine
worker sets it, so its log holds them). llama.cpp has one process-wide log callback; the adapter and the
GGUF quantizer both install this one.
"""

from __future__ import annotations

import collections
import ctypes
import os
import sys

import llama_cpp as lc

_LOG: collections.deque[str] = collections.deque(maxlen=64)


_INFO, _CONT = 2, 5  # ggml_log_level: DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5 (continues the last)
_last_level = _INFO


@lc.llama_log_callback
def _log_callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    global _last_level
    message = text.decode("utf-8", errors="replace")
    _LOG.append(message)
    if level != _CONT:
        _last_level = level
    # WATTLAB_LLAMA_LOG=info (the engine worker sets it): INFO and above go to stderr, which is the
    # worker log there, so a native crash leaves llama.cpp's last words behind; DEBUG stays out.
    if os.environ.get("WATTLAB_LLAMA_VERBOSE") == "1" or (
        os.environ.get("WATTLAB_LLAMA_LOG") == "info" and _last_level >= _INFO
    ):
        sys.stderr.write(message)
        sys.stderr.flush()


def quiet_llama_logs() -> None:
    """Route llama.cpp's log through wattlab's buffer."""
    lc.llama_log_set(_log_callback, ctypes.c_void_p(0))


def clear_log() -> None:
    _LOG.clear()


def recent_log(lines: int = 6) -> str:
    """The last few non-empty log lines, joined on one line (for an error message)."""
    text = "".join(_LOG).strip().splitlines()
    return " | ".join(line.strip() for line in text[-lines:] if line.strip())
