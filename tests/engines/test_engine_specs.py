"""Self-describing engines: each engine declares one light EngineSpec (engines/specs/<name>.py), and
the registry, options, catalog, Launch ETA, plot order, CLI help and console menus derive from it.

The proof: a toy engine added with one module and one registry line shows up everywhere.
"""

from __future__ import annotations

import asyncio
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from wattlab import engines
from wattlab.engines.base import Engine
from wattlab.engines.spec import ABILITIES, EngineSpec
from wattlab.errors import ConfigError

TOY_MODULE = "wattlab_toy_engine_spec"
TOY_SOURCE = '''
"""A toy engine: its spec, and (for the test only) its adapter in the same module."""
from wattlab.engines.spec import EngineSpec, Option

SPEC = EngineSpec(
    "toy",
    "a toy engine a test adds with one module and one registry line",
    "wattlab_toy_engine_spec:ToyEngine",
    abilities=frozenset({"sampling", "beam"}),
    options=(Option("speed", float, "how fast the toy is"),),
    model_kind="fake",
    variants=("toy8", "toy4"),
    default_device="cpu",
    order=0,
    guess_tok_s=123.0,
)


def __getattr__(name):
    if name == "ToyEngine":  # the adapter, built only when a run asks for it
        from wattlab.engines.fake import FakeEngine

        return type("ToyEngine", (FakeEngine,), {"SPEC": SPEC})
    raise AttributeError(name)
'''


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> EngineSpec:
    """The toy engine: one module on sys.path + one registry line."""
    (tmp_path / f"{TOY_MODULE}.py").write_text(TOY_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, TOY_MODULE, raising=False)
    monkeypatch.setattr(engines, "ENGINE_MODULES", (*engines.ENGINE_MODULES, TOY_MODULE))
    return engines.spec_of("toy")


# --- every engine's spec -------------------------------------------------------------------------
@pytest.mark.parametrize("module", engines.ENGINE_MODULES)
def test_each_spec_module_is_light_and_holds_one_spec(module: str) -> None:
    """A spec module imports nothing but wattlab.engines.spec (no engine library, no adapter)."""
    adapters = [spec.adapter.split(":")[0] for spec in engines.registry().values()]
    code = (
        f"import sys, importlib\nm = importlib.import_module({module!r})\n"
        "from wattlab.engines.spec import EngineSpec\nassert isinstance(m.SPEC, EngineSpec)\n"
        "heavy = ['torch', 'transformers', 'vllm', 'llama_cpp', 'pynvml', 'numpy']\n"
        f"adapters = {adapters!r}\n"
        "print([n for n in heavy + adapters if n in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_registry_is_the_spec_modules_in_order() -> None:
    specs = engines.registry()
    assert list(specs) == [importlib.import_module(m).SPEC.name for m in engines.ENGINE_MODULES]
    assert engines.engine_names() == ["transformers", "vllm", "llamacpp", "openai"]
    assert sorted(engines.engine_names(), key=engines.display_order) == [
        "llamacpp",
        "transformers",
        "vllm",
        "openai",
    ]


@pytest.mark.parametrize("name", list(engines.registry()))
def test_adapter_abilities_come_from_the_spec(name: str) -> None:
    spec = engines.spec_of(name)
    module, cls_name = spec.adapter.split(":")
    try:
        cls = getattr(importlib.import_module(module), cls_name)
    except ImportError as exc:
        pytest.skip(f"{name} is not installed here: {exc}")
    assert cls.SPEC is spec and cls.name == name
    assert cls.capabilities() == {a: a in spec.abilities for a in ABILITIES}


def test_abilities_cannot_be_declared_twice() -> None:
    spec = engines.spec_of("fake")
    with pytest.raises(TypeError, match="abilities come from its SPEC"):
        type("Twice", (Engine,), {"SPEC": spec, "SUPPORTS_BEAM": True})
    with pytest.raises(ValueError, match="unknown abilities"):
        EngineSpec("bad", "bad", "x:Y", abilities=frozenset({"teleport"}))


# --- a toy engine: one module, one registry line ----------------------------------------------------
def test_a_toy_engine_is_known_everywhere_the_specs_are_read(toy: EngineSpec) -> None:
    from wattlab.app.data import guess_tok_s
    from wattlab.engines import options
    from wattlab.engines.models import default_device, list_models, resolve, variants

    assert engines.engine_names()[-1] == "toy" and engines.status_of("toy").installed
    assert engines.display_order("toy") < engines.display_order("llamacpp")
    assert "toy" in list_models()[0].engines  # the bundled model is offered to every engine
    assert variants("anything", "toy") == ["toy8", "toy4"] and default_device("toy") == "cpu"
    cfg = resolve("anything", "toy", options={"speed": 2})
    assert (cfg.engine, cfg.variant, cfg.device, cfg.options["speed"]) == ("toy", "toy8", "cpu", 2.0)
    with pytest.raises(ConfigError, match="no option 'n_gpu_layers'") as err:
        options.validate("toy", {"n_gpu_layers": 1})
    assert "speed" in (err.value.fix or "")
    assert guess_tok_s("toy") == 123.0
    cls = engines.get_engine_class("toy")
    assert cls.name == "toy" and cls.SUPPORTS_BEAM and not cls.SUPPORTS_ONLINE and not cls.SUPPORTS_LOGPROBS


def test_a_toy_engine_is_in_the_cli_help(toy: EngineSpec, capsys: pytest.CaptureFixture[str]) -> None:
    from wattlab.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "transformers | vllm | llamacpp | openai | toy" in out
    assert "fake" not in out


def test_a_toy_engine_is_in_the_launch_engine_menu(
    toy: EngineSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from textual.widgets import Select

    from wattlab.app.app import WattlabApp
    from wattlab.app.catalog import BoxProbe, Catalog, EngineChoice

    class InProcessCatalog(Catalog):
        """The real catalog, probed in this process (the doctor subprocess cannot see the toy)."""

        def probe(self) -> BoxProbe:
            statuses = engines.engine_status()
            choices = tuple(EngineChoice(s.name, s.installed, s.version, s.fix, s.reason) for s in statuses)
            return BoxProbe(engines=choices, meters=("estimate",))

    monkeypatch.setenv("WATTLAB_HOME", str(tmp_path / "home"))
    menus: dict[str, list[str]] = {}

    async def main() -> None:
        app = WattlabApp(
            db=tmp_path / "w.duckdb", catalog=InProcessCatalog(), monitor=False, recover=False, attach=None
        )
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("2")
            for _ in range(100):
                await pilot.pause(0.1)
                if type(app.screen).__name__ == "LaunchScreen" and app.probe is not None:
                    break
            await pilot.pause(0.3)
            select = app.screen.query_one("#engine", Select)
            menus["values"] = [str(v) for _, v in select._options if v is not Select.BLANK]
            menus["labels"] = [str(label) for label, _ in select._options]

    asyncio.run(main())
    assert menus["values"] == ["transformers", "vllm", "llamacpp", "openai", "toy"]
    assert "toy (stdlib)" in menus["labels"]


def test_the_toy_leaves_with_its_registry_line() -> None:
    assert "toy" not in engines.registry()
    with pytest.raises(ConfigError, match="unknown engine 'toy'"):
        engines.spec_of("toy")
