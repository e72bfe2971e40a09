"""wattlab's own error hierarchy.

Vendor errors (pynvml.NVMLError, llama.cpp, vLLM, CUDA OOM, DuckDB locks) are translated at the
boundary into these, so the CLI and the console can show one clear message, with the fix, and
never a traceback dump.
"""

from __future__ import annotations


class WattlabError(Exception):
    """An error the user can act on.

    title: a few words for a console notification title ("Model not found").
    message: what went wrong, naming the thing (the path, the GPU index, the TOML key).
    fix: what to do about it, when known.
    """

    title = "wattlab error"

    def __init__(self, message: str, *, fix: str | None = None, title: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
        if title is not None:
            self.title = title

    def __str__(self) -> str:
        return f"{self.message}\n  fix: {self.fix}" if self.fix else self.message

    def as_dict(self) -> dict[str, str | None]:
        return {"error": type(self).__name__, "title": self.title, "message": self.message, "fix": self.fix}


class ConfigError(WattlabError):
    """A spec, sweep file or option is impossible or malformed."""

    title = "Bad configuration"


class MeterError(WattlabError):
    """A power meter is unavailable or failed."""

    title = "Meter problem"


class MeterUnavailable(MeterError):
    """A meter cannot be used on this box (no driver, no permission, no device)."""

    title = "Meter unavailable"


class EngineError(WattlabError):
    """An inference engine failed to load or run."""

    title = "Engine problem"


class EngineNotInstalled(EngineError):
    title = "Engine not installed"


class ModelError(WattlabError):
    """A model path, id or file is unknown or unreadable."""

    title = "Model problem"


class OutOfMemory(EngineError):
    title = "Out of memory"


class EngineCrashed(EngineError):
    title = "Engine crashed"


class StoreError(WattlabError):
    """The session database or spool could not be read or written."""

    title = "Database problem"


class DatasetError(WattlabError):
    """A task or dataset file is missing or in the wrong shape."""

    title = "Dataset problem"


class DeviceBusy(WattlabError):
    """Another session is measuring on the devices a session needs (see sessions/locks.py)."""

    title = "Devices busy"
