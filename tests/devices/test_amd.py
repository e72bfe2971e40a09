"""AMD GPUs on a fake amdsmi: discovery, ROCR/HIP visible mapping, the amdsmi meter's samples
(counter and integrated fallback), and NOT_SUPPORTED / a missing library reported, never a crash."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
from amd_fakes import NO_PERM, FakeAmdGpu, FakeAmdsmi

import wattlab.meters as meters
from wattlab.devices import DeviceNotSupported, discover_gpus
from wattlab.devices.amd import Amdsmi, gpu_processes, list_gpus, visible_gpus
from wattlab.devices.visible import amd_visible_selectors
from wattlab.errors import ConfigError, MeterUnavailable
from wattlab.meters import amdsmi as amd_meter
from wattlab.meters.amdsmi import AmdsmiMeter, probe_module

AMD_ENV = ("ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES")


class Clock:
    def __init__(self) -> None:
        self.t_ns = 10**12

    def now_ns(self) -> int:
        return self.t_ns

    def seconds(self) -> float:
        return self.t_ns / 1e9

    def advance(self, s: float) -> None:
        self.t_ns += round(s * 1e9)


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in AMD_ENV:
        monkeypatch.delenv(var, raising=False)
    amd_meter._probe_default.cache_clear()
    yield
    amd_meter._probe_default.cache_clear()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr("wattlab.meters.gpu.now_ns", c.now_ns)
    return c


def two_amd(clock: Clock | None = None) -> FakeAmdsmi:
    gpus = [
        FakeAmdGpu(uuid="GPU-aa000000-0000-0000-0000-000000000000"),
        FakeAmdGpu(
            name="AMD Instinct MI250X", uuid="GPU-bb000000-0000-0000-0000-000000000001", power_w=300.0
        ),
    ]
    if clock is not None:
        for g in gpus:
            g.clock = clock.seconds
    return FakeAmdsmi(gpus)


# --- discovery -------------------------------------------------------------------------------------
def test_lists_amd_gpus_and_closes_the_session() -> None:
    smi = two_amd()
    gpus = list_gpus(smi)
    assert [(g.index, g.name, g.vendor) for g in gpus] == [
        (0, "AMD Instinct MI300X", "amd"),
        (1, "AMD Instinct MI250X", "amd"),
    ]
    assert smi.inits == smi.shutdowns == 1
    assert list_gpus(FakeAmdsmi(init_error=NO_PERM)) == []


def test_discovery_prefers_nvidia_then_amd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # no NVIDIA bindings: AMD's GPUs are the box's
    assert [g.vendor for g in discover_gpus(amdsmi=two_amd())] == ["amd", "amd"]
    monkeypatch.setitem(sys.modules, "amdsmi", None)
    assert discover_gpus() == []


def test_readings_in_wattlab_units() -> None:
    with Amdsmi(two_amd()) as lib:
        gpu = lib.gpu(lib.inventory()[0])
        assert gpu.power_mw() == pytest.approx(200_000.0)
        energy = gpu.energy()
        assert energy.resolution_mj == pytest.approx(0.0153)
        assert energy.energy_mj == pytest.approx(1e6, rel=1e-3)  # 1e9 uJ
        assert gpu.utilization().gpu_pct == 70.0 and gpu.memory().total_bytes == 192 * 2**30
        assert gpu.temperature_c() == 52.0  # edge NOT_SUPPORTED on MI300: hotspot instead
        assert gpu.power_limit_mw() == pytest.approx(750_000.0) and gpu.clock_mhz() == 2100.0
        assert gpu.counter_reliable
    smi = two_amd()
    smi.gpus[0].current_power = False  # MI200: only the average
    smi.gpus[0].processes = None
    with Amdsmi(smi) as lib:
        gpu = lib.gpu(lib.inventory()[0])
        assert gpu.power_mw() == pytest.approx(200_000.0)
        with pytest.raises(DeviceNotSupported):
            gpu.instant_power_mw()
        with pytest.raises(DeviceNotSupported):
            gpu.processes()


def test_process_list_leaves_unknown_gpus_out() -> None:
    smi = two_amd()
    smi.gpus[0].processes = [42, 7]
    smi.gpus[1].processes = None
    assert gpu_processes([0, 1], smi) == {0: [7, 42]}
    assert gpu_processes([0], FakeAmdsmi(init_error=NO_PERM)) == {}


# --- visible devices -------------------------------------------------------------------------------
def test_rocr_then_hip_visible_mapping() -> None:
    assert amd_visible_selectors({}) == (None, [])
    assert amd_visible_selectors({"ROCR_VISIBLE_DEVICES": "2,3"}) == (["2", "3"], [])
    assert amd_visible_selectors({"ROCR_VISIBLE_DEVICES": "2,3", "HIP_VISIBLE_DEVICES": "1"}) == (["3"], [])
    assert amd_visible_selectors({"HIP_VISIBLE_DEVICES": "1,0"}) == (["1", "0"], [])
    assert amd_visible_selectors({"CUDA_VISIBLE_DEVICES": "1"}) == (["1"], [])  # HIP honours it too
    chosen, notes = amd_visible_selectors({"ROCR_VISIBLE_DEVICES": "0", "HIP_VISIBLE_DEVICES": "0,1"})
    assert chosen == ["0"] and "past the 1 GPU" in notes[0]
    chosen, notes = amd_visible_selectors({"ROCR_VISIBLE_DEVICES": "1,x,0"})
    assert chosen == ["1"] and "invalid" in notes[0]


def test_visible_gpus_resolve_indices_and_uuids() -> None:
    inventory = list_gpus(two_amd())
    env = {"ROCR_VISIBLE_DEVICES": "GPU-bb"}
    assert [g.index for g in visible_gpus(inventory, env)[0]] == [1]
    chosen, notes = visible_gpus(inventory, {"ROCR_VISIBLE_DEVICES": "1,7,0"})
    assert [g.index for g in chosen] == [1] and "7" in notes[0]


# --- the meter -------------------------------------------------------------------------------------
def test_meter_power_telemetry_and_counter(clock: Clock) -> None:
    meter = AmdsmiMeter(amdsmi=two_amd(clock))
    assert [(d.id, d.device, d.meter, d.has_counter) for d in meter.domains] == [
        ("gpu0", "gpu:0", "amdsmi", True),
        ("gpu1", "gpu:1", "amdsmi", True),
    ]
    s = {x.domain: x for x in meter.read_power()}
    assert s["gpu0"].power_w == pytest.approx(200.0) and s["gpu1"].power_w == pytest.approx(300.0)
    assert s["gpu0"].util_pct == 70.0 and s["gpu0"].mem_used_mib == pytest.approx(5 * 1024)
    assert s["gpu0"].power_limit_w == pytest.approx(750.0) and s["gpu0"].temp_c == 52.0
    clock.advance(2.0)
    e = {x.domain: x for x in meter.read_counters()}
    assert e["gpu0"].energy_j == pytest.approx(400.0, abs=0.05)  # 200 W x 2 s, at the counter's resolution
    assert e["gpu1"].energy_j == pytest.approx(600.0, abs=0.05)
    meter.close()


def test_old_bindings_energy_key(clock: Clock) -> None:
    smi = two_amd(clock)
    smi.gpus[0].old_energy_key = True
    meter = AmdsmiMeter(gpus="0", amdsmi=smi)
    clock.advance(1.0)
    assert meter.read_counters()[0].energy_j == pytest.approx(200.0, abs=0.05)


def test_mi100_and_unsupported_counter_integrate_power(clock: Clock) -> None:
    smi = two_amd(clock)
    smi.gpus[0].name = "AMD Instinct MI100"
    smi.gpus[1].counter = False
    meter = AmdsmiMeter(amdsmi=smi)
    assert [d.has_counter for d in meter.domains] == [False, False]
    assert any("unreliable" in n and "MI100" in n for n in meter.notes)
    assert any("NOT_SUPPORTED" in n for n in meter.notes)
    assert meter.read_counters() == []
    assert all(s.power_w and s.power_w > 0 for s in meter.read_power())  # windows integrate these


def test_meter_selection_follows_rocr_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROCR_VISIBLE_DEVICES", "1")
    assert [d.id for d in AmdsmiMeter(amdsmi=two_amd()).domains] == ["gpu1"]
    monkeypatch.setenv("ROCR_VISIBLE_DEVICES", "5")
    with pytest.raises(MeterUnavailable, match="expose no GPU"):
        AmdsmiMeter(amdsmi=two_amd())
    with pytest.raises(ConfigError, match="GPUs present"):
        AmdsmiMeter(gpus="9", amdsmi=two_amd())


def test_failed_read_is_missing_never_zero(clock: Clock) -> None:
    smi = two_amd(clock)
    meter = AmdsmiMeter(amdsmi=smi)
    smi.gpus[1].fail = 8
    s = {x.domain: x for x in meter.read_power()}
    assert s["gpu1"].missing and s["gpu1"].power_w is None and "8" in (s["gpu1"].error or "")
    e = {x.domain: x for x in meter.read_counters()}
    assert e["gpu1"].missing and e["gpu1"].energy_j is None


# --- missing library / driver: reported, not crashed ------------------------------------------------
def test_missing_library_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "amdsmi", None)
    probe = AmdsmiMeter.probe()
    assert not probe.available and "not installed" in probe.reason and probe.fix
    with pytest.raises(MeterUnavailable, match="not installed"):
        AmdsmiMeter()
    assert "amdsmi" in [p.meter for p in meters.probe_all()]


def test_no_driver_and_no_power_are_reported() -> None:
    probe = probe_module(FakeAmdsmi(init_error=NO_PERM))
    assert not probe.available and "could not start" in probe.reason and "render" in (probe.fix or "")
    with pytest.raises(MeterUnavailable):
        AmdsmiMeter(amdsmi=FakeAmdsmi(init_error=NO_PERM))
    assert not probe_module(FakeAmdsmi([])).available
    dead = FakeAmdsmi([FakeAmdGpu(fail=2)])  # NOT_SUPPORTED for everything
    probe = probe_module(dead)
    assert not probe.available and "NOT_SUPPORTED" in probe.reason
    with pytest.raises(MeterUnavailable, match="NOT_SUPPORTED"):
        AmdsmiMeter(amdsmi=dead)


def test_the_factory_opens_amdsmi_on_an_amd_box(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "amdsmi", two_amd())  # the real import path, faked
    monkeypatch.setattr(
        meters,
        "_safe_probe",
        lambda name: meters.Probe(name, name in ("amdsmi", "estimate"), "fake", fix="x"),
    )
    with meters.open_meters("auto") as ms:
        assert [m.name for m in ms.meters] == ["amdsmi", "estimate"]
        assert [p.meter for p in ms.missing] == ["nvml", "rapl"]
    with meters.open_meters("amdsmi", gpus="1") as ms:
        assert [d.id for d in ms.domains] == ["gpu1"]
