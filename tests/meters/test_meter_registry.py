"""The registry and factory: probe_all, open_meters' auto choice, explicit selections, lazy imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest

import wattlab.meters as meters
from wattlab.errors import ConfigError, MeterUnavailable
from wattlab.meters import METER_NAMES, MeterSet, open_meters, probe_all
from wattlab.meters.base import Domain, Meter, Probe, Sample
from wattlab.meters.estimate import EstimateMeter


def test_importing_meters_imports_no_vendor_module() -> None:
    code = (
        "import sys, wattlab.meters, wattlab.meters.nvml, wattlab.meters.jetson, wattlab.meters.rapl, "
        "wattlab.meters.estimate, wattlab.meters.replay, wattlab.meters.carbon, wattlab.meters.amdsmi; "
        "print(sorted(m for m in ('pynvml', 'amdsmi', 'jtop', 'codecarbon', 'pandas', 'torch', 'pycountry') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_probe_all_covers_every_meter_and_explains() -> None:
    probes = probe_all()
    assert [p.meter for p in probes] == list(METER_NAMES)
    for p in probes:
        assert p.reason, p
        if not p.available and p.meter != "jetson":
            assert p.fix, p  # an unavailable meter says what to do (not being a Jetson has no fix)
    assert next(p for p in probes if p.meter == "estimate").available


class _Fake(Meter):
    """A meter whose availability the test decides."""

    available: ClassVar[bool] = True
    opens: ClassVar[bool] = True

    def __init__(self, **kwargs: object) -> None:
        if not self.opens:
            raise MeterUnavailable(f"{self.name} failed to open", fix=f"fix {self.name}")
        self.kwargs = kwargs
        self.domains = (Domain(self.name, "gpu", self.name, self.name, "gpu:0"),)

    @classmethod
    def probe(cls) -> Probe:
        return Probe(cls.name, cls.available, "fake", fix=None if cls.available else f"install {cls.name}")

    def read_power(self) -> list[Sample]:
        return []


def fake_box(monkeypatch: pytest.MonkeyPatch, **availability: bool | str) -> None:
    """Replace the registry: availability[name] is True, False, or "fails-to-open"."""
    classes: dict[str, type[Meter]] = {}
    for name in METER_NAMES:
        state = availability.get(name, False)
        classes[name] = type(
            f"Fake_{name}",
            (_Fake,),
            {"name": name, "available": bool(state), "opens": state is True},
        )
    monkeypatch.setattr(meters, "meter_class", lambda name: classes[name])


def names(ms: MeterSet) -> list[str]:
    return [m.name for m in ms.meters]


def test_auto_on_a_gpu_server(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_box(monkeypatch, nvml=True, rapl=True, estimate=True)
    ms = open_meters(gpus="0,1")
    assert names(ms) == ["nvml", "rapl"] and ms.missing == []
    assert ms.meters[0].kwargs == {"gpus": "0,1"}


def test_auto_on_a_jetson_skips_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_box(monkeypatch, jetson=True, nvml=True, estimate=True)
    ms = open_meters()
    assert names(ms) == ["jetson", "estimate"]
    assert [p.meter for p in ms.missing] == ["rapl"]


def test_auto_on_a_cpu_box_reports_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_box(monkeypatch, estimate=True)
    ms = open_meters(tdp_w=65)
    assert names(ms) == ["estimate"] and ms.meters[0].kwargs == {"tdp_w": 65}
    assert [p.meter for p in ms.missing] == ["nvml", "rapl"]
    assert all(p.fix for p in ms.missing)
    assert len(ms.probes) == len(METER_NAMES)


def test_auto_keeps_going_when_an_available_meter_fails_to_open(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_box(monkeypatch, nvml="fails-to-open", rapl=True, estimate=True)
    monkeypatch.setattr(_Fake, "opens", True)
    ms = open_meters()
    assert names(ms) == ["rapl"]
    assert [(p.meter, p.reason, p.fix) for p in ms.missing] == [("nvml", "nvml failed to open", "fix nvml")]


def test_explicit_meter_that_cannot_open_raises_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_box(monkeypatch, estimate=True, rapl="fails-to-open")
    with pytest.raises(MeterUnavailable) as info:
        open_meters("estimate,rapl")
    assert info.value.fix == "fix rapl"


@pytest.mark.parametrize("selection", ["gpus", "nvml,bogus", "", "auto,nvml"])
def test_bad_selection_is_a_config_error(selection: str) -> None:
    with pytest.raises(ConfigError) as info:
        open_meters(selection)
    assert info.value.fix and ("nvml" in info.value.fix or "auto" in info.value.fix)


def test_real_estimate_selection_and_close() -> None:
    with open_meters("estimate", tdp_w=50) as ms:
        assert len(ms.meters) == 1 and isinstance(ms.meters[0], EstimateMeter)
        assert [d.id for d in ms.domains] == ["cpu-estimate"]
        assert ms.meters[0].tdp_w == 50


def test_replay_selection(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs a timeline file"):
        open_meters("replay")
    trace = tmp_path / "t.jsonl"
    trace.write_text(
        '{"wattlab_timeline": 1, "domains": [{"id": "gpu0", "kind": "gpu", "meter": "nvml", "label": "g", '
        '"device": "gpu:0"}]}\n{"t": 1, "d": "gpu0", "p": 80.0}\n'
    )
    for selection in ("replay", "auto"):  # with a file, auto replays instead of reading live meters
        ms = open_meters(selection, replay_path=trace, replay_speed=10)
        assert names(ms) == ["replay"] and ms.meters[0].speed == 10
