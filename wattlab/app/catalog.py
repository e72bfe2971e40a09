"""What the Launch menus offer: engines, models, variants, tasks, and what this box can meter.

`Catalog` reads the engine registry, the model catalog and the task registry, which are light
to import. Two things are probed in a subprocess instead, because answering them imports vendor
libraries the console must never load (pynvml): engine installed-ness (its install hint checks
for an NVIDIA GPU) and meter availability. `wattlab doctor --json` answers both.

`StaticCatalog` serves fixed answers, for snapshot tests and screenshots.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

from wattlab.errors import WattlabError


@dataclass(frozen=True)
class EngineChoice:
    name: str
    installed: bool | None  # None: not probed yet (or the probe failed)
    version: str | None = None
    fix: str | None = None
    reason: str | None = None

    def label(self) -> str:
        if self.installed is None:
            return self.name
        if self.installed:
            return f"{self.name} ({self.version})" if self.version else self.name
        return f"{self.name} — not installed"


@dataclass(frozen=True)
class ModelChoice:
    name: str
    description: str
    engines: tuple[str, ...]
    available: bool
    why_not: str | None = None


@dataclass(frozen=True)
class TaskChoice:
    name: str
    kind: str
    metric: str


@dataclass(frozen=True)
class BoxProbe:
    """`wattlab doctor --json`, digested: engines, meters available and missing, carbon."""

    engines: tuple[EngineChoice, ...] = ()
    meters: tuple[str, ...] = ()
    missing: tuple[dict[str, Any], ...] = ()
    carbon: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def estimated_only(self) -> bool:
        """Only the estimate meter is available: every energy figure will be estimated."""
        return bool(self.meters) and set(self.meters) <= {"estimate"}


def parse_doctor(report: dict[str, Any]) -> BoxProbe:
    engines = tuple(
        EngineChoice(
            e["name"],
            bool(e.get("available")),
            version=(e.get("detail") or None) if e.get("available") else None,
            fix=e.get("fix"),
            reason=None if e.get("available") else e.get("detail"),
        )
        for e in report.get("engines", [])
    )
    meters = tuple(
        m["name"] for m in report.get("meters", []) if m.get("available") and m.get("name") != "replay"
    )
    missing = tuple(
        {"meter": m["name"], "reason": m.get("detail"), "fix": m.get("fix")}
        for m in report.get("meters", [])
        if not m.get("available") and m.get("name") != "replay"
    )
    return BoxProbe(engines=engines, meters=meters, missing=missing, carbon=report.get("carbon") or {})


def probe_box(timeout_s: float = 60.0) -> BoxProbe:
    """Run `wattlab doctor --json` in a subprocess (blocking: call it from a worker thread).

    If doctor itself fails, the engines are still asked for (their statuses alone, in another
    subprocess), so Launch can say what is installed; the failure is reported.
    """
    cmd = [sys.executable, "-m", "wattlab.cli", "doctor", "--json"]
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return BoxProbe(
            engines=_engine_statuses(timeout_s), error=f"`wattlab doctor --json` did not answer: {exc}"
        )
    try:
        return parse_doctor(json.loads(done.stdout))
    except (ValueError, KeyError, TypeError):
        lines = [ln for ln in (done.stderr or done.stdout).strip().splitlines() if ln.strip()]
        reason = lines[-1] if lines else f"exit {done.returncode}"
        return BoxProbe(
            engines=_engine_statuses(timeout_s), error=f"`wattlab doctor --json` failed: {reason}"
        )


_ENGINE_STATUS_CODE = (
    "import dataclasses, json\n"
    "from wattlab.engines import engine_status\n"
    "print(json.dumps([dataclasses.asdict(s) for s in engine_status()]))"
)


def _engine_statuses(timeout_s: float) -> tuple[EngineChoice, ...]:
    """`wattlab.engines.engine_status()` in a subprocess (its install hints may load pynvml)."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", _ENGINE_STATUS_CODE],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
        )
        rows = json.loads(done.stdout)
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return ()
    return tuple(
        EngineChoice(r["name"], bool(r["installed"]), r.get("version"), r.get("fix"), r.get("reason"))
        for r in rows
    )


class Catalog:
    """The real catalog (engine registry, model catalog, task registry)."""

    def engine_names(self) -> list[str]:
        from wattlab.engines import engine_names

        return engine_names()

    def default_engine(self) -> str:
        from wattlab.engines import DEFAULT_ENGINE

        return DEFAULT_ENGINE

    def default_model(self) -> str:
        from wattlab.engines.models import DEFAULT_MODEL

        return DEFAULT_MODEL

    def models(self) -> list[ModelChoice]:
        from wattlab.engines.models import list_models

        return [
            ModelChoice(m.name, m.description, tuple(m.engines), m.available, m.why_not)
            for m in list_models()
        ]

    def variants(self, model: str, engine: str) -> list[str]:
        """Variants `engine` can run `model` in (reads at most a GGUF header: call from a worker)."""
        from wattlab.engines.models import variants

        return variants(model, engine)

    def tasks(self) -> list[TaskChoice]:
        from wattlab.workloads.tasks import list_tasks

        return [TaskChoice(t.name, str(t.kind), t.metrics[0] if t.metrics else "") for t in list_tasks()]

    def probe(self) -> BoxProbe:
        return probe_box()


class StaticCatalog(Catalog):
    """Fixed answers (tests, screenshots): no subprocess, no file reads."""

    def __init__(
        self,
        probe: BoxProbe,
        models: list[ModelChoice],
        variants: dict[tuple[str, str], list[str] | WattlabError],
        tasks: list[TaskChoice],
        engines: list[str] | None = None,
    ) -> None:
        self._probe = probe
        self._models = models
        self._variants = variants
        self._tasks = tasks
        self._engines = engines or [e.name for e in probe.engines]

    def engine_names(self) -> list[str]:
        return list(self._engines)

    def default_engine(self) -> str:
        return "llamacpp"

    def default_model(self) -> str:
        return "smollm2-135m-instruct"

    def models(self) -> list[ModelChoice]:
        return list(self._models)

    def variants(self, model: str, engine: str) -> list[str]:
        found = self._variants.get((model, engine))
        if isinstance(found, WattlabError):
            raise found
        if found is None:
            from wattlab.errors import ConfigError

            raise ConfigError(f"the {engine} engine cannot run {model}", fix="choose another engine or model")
        return list(found)

    def tasks(self) -> list[TaskChoice]:
        return list(self._tasks)

    def probe(self) -> BoxProbe:
        return self._probe
