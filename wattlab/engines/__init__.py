"""The engine registry: which inference backends exist, which are installed, and how to load one.

Importing this package imports no engine (no torch, vllm or llama_cpp): installed-ness and versions
come from package metadata, and `get_engine_class` imports the chosen adapter only when asked.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from wattlab.engines.spec import EngineSpec, Option
from wattlab.errors import ConfigError, EngineError, EngineNotInstalled

if TYPE_CHECKING:
    from wattlab.engines.base import Engine


# The registry: one light spec module per engine (each holds `SPEC`, see engines/spec.py), one line
# per engine, in menu and help order. Adding an engine = its spec module + its adapter + a line here.
ENGINE_MODULES: tuple[str, ...] = (
    "wattlab.engines.specs.transformers",
    "wattlab.engines.specs.vllm",
    "wattlab.engines.specs.llamacpp",
    "wattlab.engines.specs.openai",
    "wattlab.engines.specs.fake",
)

# name -> spec, built from ENGINE_MODULES (and rebuilt in place by registry() when that changes).
ENGINES: dict[str, EngineSpec] = {}
_built_from: tuple[str, ...] | None = None


def _load_specs(modules: tuple[str, ...]) -> dict[str, EngineSpec]:
    specs: dict[str, EngineSpec] = {}
    for module_name in modules:
        spec = importlib.import_module(module_name).SPEC
        if not isinstance(spec, EngineSpec):
            raise TypeError(f"{module_name}.SPEC is not an EngineSpec")
        if spec.name in specs:
            raise ValueError(f"engine {spec.name!r} is registered twice ({module_name})")
        specs[spec.name] = spec
    return specs


def registry() -> dict[str, EngineSpec]:
    """Every engine's spec by name, hidden ones included, in registry order."""
    global _built_from
    modules = tuple(ENGINE_MODULES)
    if modules != _built_from:
        ENGINES.clear()
        ENGINES.update(_load_specs(modules))
        _built_from = modules
    return ENGINES


registry()


DEFAULT_ENGINE = "llamacpp"


@dataclass(frozen=True, slots=True)
class EngineStatus:
    """Whether one engine can be used here, and if not, what to do."""

    name: str
    description: str
    installed: bool
    version: str | None
    reason: str | None
    fix: str | None


@cache
def has_nvidia_gpu() -> bool:
    """Whether NVML sees an NVIDIA GPU (cached; asks wattlab.devices, which owns NVML)."""
    from wattlab.devices.nvidia import gpu_count

    return gpu_count() > 0


@cache
def nvidia_gpu_count() -> int:
    """How many NVIDIA GPUs NVML sees (0 without a driver); checks `--device cuda:N` before a run."""
    from wattlab.devices.nvidia import gpu_count

    return gpu_count()


def engine_names() -> list[str]:
    """The engines a user can pick (hidden ones left out)."""
    return [name for name, spec in registry().items() if not spec.hidden]


def display_order(name: str) -> tuple[int, str]:
    """Sort key for engines in plots and legends (unknown names last)."""
    spec = registry().get(name)
    return (spec.order if spec else 999, name)


def is_served(name: str) -> bool:
    """Whether the engine talks to a server whose device is its own (spec.model_kind "served")."""
    spec = registry().get(name)
    return spec is not None and spec.model_kind == "served"


def spec_of(name: str) -> EngineSpec:
    try:
        return registry()[name]
    except KeyError:
        raise ConfigError(
            f"unknown engine {name!r}",
            fix=f"use one of: {', '.join(engine_names())}",
        ) from None


def install_hint(name: str) -> str | None:
    """The pip command that installs an engine on this box (GPU or CPU flavour)."""
    spec = spec_of(name)
    extra = spec.gpu_extra if spec.gpu_extra and has_nvidia_gpu() else spec.extra
    return f"pip install 'wattlab[{extra}]'" if extra else None


def _installed_version(group: tuple[str, ...]) -> str | None:
    for dist in group:
        try:
            return f"{dist} {importlib.metadata.version(dist)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def status_of(name: str) -> EngineStatus:
    spec = spec_of(name)
    versions: list[str] = []
    for group in spec.distributions:
        version = _installed_version(group)
        if version is None:
            return EngineStatus(
                name,
                spec.description,
                False,
                None,
                f"{' or '.join(group)} is not installed",
                install_hint(name),
            )
        versions.append(version)
    for module in spec.modules:
        if importlib.util.find_spec(module) is None:
            return EngineStatus(
                name, spec.description, False, None, f"module {module} not found", install_hint(name)
            )
    return EngineStatus(name, spec.description, True, ", ".join(versions) or "stdlib", None, None)


def engine_status() -> list[EngineStatus]:
    """Every engine a user can pick, installed or not, with the fix for those that are not."""
    return [status_of(name) for name in engine_names()]


def installed_engines() -> list[str]:
    return [s.name for s in engine_status() if s.installed]


def get_engine_class(name: str) -> type[Engine]:
    """Import an engine's adapter and return its class.

    Raises ConfigError for an unknown name, EngineNotInstalled (naming the extra) when its packages
    are missing, EngineError when they are present but fail to import.
    """
    status = status_of(name)
    if not status.installed:
        raise EngineNotInstalled(f"the {name} engine is not installed: {status.reason}", fix=status.fix)
    module_name, class_name = registry()[name].adapter.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EngineError(
            f"the {name} engine is installed but fails to import: {exc}",
            fix=f"reinstall it ({install_hint(name) or 'see the README'}) and run `wattlab doctor`",
        ) from exc
    cls: type[Engine] = getattr(module, class_name)
    return cls


__all__ = [
    "DEFAULT_ENGINE",
    "ENGINES",
    "ENGINE_MODULES",
    "EngineSpec",
    "EngineStatus",
    "Option",
    "display_order",
    "engine_names",
    "engine_status",
    "get_engine_class",
    "has_nvidia_gpu",
    "install_hint",
    "installed_engines",
    "is_served",
    "registry",
    "spec_of",
    "status_of",
]
