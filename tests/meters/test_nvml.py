"""NvmlMeter end to end on a fake NVML module: selection, readings, NOT_SUPPORTED, errors, resets."""

from __future__ import annotations

import time

import pytest
from meter_fakes import FakeClock, FakeGpu, FakeNvml

from wattlab.devices.nvidia import cuda_ordinal_to_nvml_index
from wattlab.devices.visible import parse_cuda_visible_devices
from wattlab.errors import ConfigError, MeterUnavailable
from wattlab.meters.nvml import (
    POWER_FROM_COUNTER,
    POWER_INSTANT,
    POWER_USAGE,
    NvmlMeter,
    probe_module,
)
from wattlab.meters.sampler import Sampler
from wattlab.meters.timeline import Timeline


def by_domain(samples):
    return {s.domain: s for s in samples}


# --- opening and readings --------------------------------------------------------------------------
def test_opens_every_gpu_with_domains_named_by_index(two_gpus: FakeNvml) -> None:
    meter = NvmlMeter(nvml=two_gpus)
    assert [d.id for d in meter.domains] == ["gpu0", "gpu1"]
    d0 = meter.domains[0]
    assert (d0.kind, d0.device, d0.meter, d0.has_counter) == ("gpu", "gpu:0", "nvml", True)
    assert d0.counter_period_s == pytest.approx(0.1)
    assert "NVIDIA H200" in d0.label and "GPU-aaaaaaaa" in d0.label and "instant" in d0.label
    assert meter.power_source == {"gpu0": POWER_INSTANT, "gpu1": POWER_INSTANT}


def test_power_and_telemetry_in_si_units(two_gpus: FakeNvml) -> None:
    meter = NvmlMeter(nvml=two_gpus)
    s = by_domain(meter.read_power())
    assert s["gpu0"].power_w == pytest.approx(100.0)
    assert s["gpu1"].power_w == pytest.approx(250.0)
    assert s["gpu0"].util_pct == 55.0 and s["gpu0"].mem_util_pct == 20.0
    assert s["gpu0"].mem_used_mib == pytest.approx(3 * 1024)
    assert s["gpu0"].clock_mhz == 1980.0 and s["gpu0"].temp_c == 41.0
    assert s["gpu0"].power_limit_w == pytest.approx(700.0)
    assert not s["gpu0"].missing


def test_counter_is_joules_since_open(two_gpus: FakeNvml, clock: FakeClock) -> None:
    for gpu in two_gpus.gpus:
        gpu.clock = clock.seconds
        gpu.set_energy(9_000_000)
    meter = NvmlMeter(nvml=two_gpus)
    clock.advance(2.0)
    s = by_domain(meter.read_counters())
    assert s["gpu0"].energy_j == pytest.approx(200.0)  # 100 W x 2 s
    assert s["gpu1"].energy_j == pytest.approx(500.0)  # 250 W x 2 s
    assert s["gpu0"].t_ns == clock.now_ns()


def test_falls_back_to_averaged_power_without_instant_field() -> None:
    nvml = FakeNvml([FakeGpu(instant=False, power_mw=123_000)])
    meter = NvmlMeter(nvml=nvml)
    assert meter.power_source["gpu0"] == POWER_USAGE
    assert "nvmlDeviceGetPowerUsage" in meter.domains[0].label
    assert meter.read_power()[0].power_w == pytest.approx(123.0)


def test_no_counter_means_integrated_windows_and_a_note() -> None:
    meter = NvmlMeter(nvml=FakeNvml([FakeGpu(counter=False)]))
    domain = meter.domains[0]
    assert domain.has_counter is False and domain.method == "integrated"
    assert "no energy counter" in domain.label
    assert meter.read_counters() == []
    assert any("NOT_SUPPORTED" in n for n in meter.notes)
    assert meter.read_power()[0].power_w == pytest.approx(100.0)


def test_power_derived_from_counter_when_power_is_not_supported(clock: FakeClock) -> None:
    gpu = FakeGpu(instant=False, usage=False, power_mw=80_000, clock=clock.seconds)
    nvml = FakeNvml([gpu])
    gpu.set_energy(1_000_000)
    meter = NvmlMeter(nvml=nvml)
    assert meter.power_source["gpu0"] == POWER_FROM_COUNTER
    assert meter.read_power()[0].power_w is None  # one reading: no span to derive from yet
    powers = []
    for _ in range(10):
        clock.advance(0.1)
        powers.append(meter.read_power()[0].power_w)
    assert powers[-1] == pytest.approx(80.0)
    gpu.set_power(200.0)
    for _ in range(10):
        clock.advance(0.1)
        powers.append(meter.read_power()[0].power_w)
    assert powers[-1] == pytest.approx(200.0)  # the 0.5 s span has moved past the step


def test_gpu_without_power_or_counter_is_skipped_or_refused() -> None:
    nvml = FakeNvml([FakeGpu(instant=False, usage=False, counter=False), FakeGpu(uuid="GPU-ok")])
    meter = NvmlMeter(nvml=nvml)
    assert [d.id for d in meter.domains] == ["gpu1"]
    assert any("skipped" in n for n in meter.notes)
    with pytest.raises(MeterUnavailable, match="neither power nor energy"):
        NvmlMeter("0", nvml=nvml)


def test_jetson_like_nvml_is_unavailable() -> None:
    nvml = FakeNvml([FakeGpu(name="Orin", instant=False, usage=False, counter=False)])
    with pytest.raises(MeterUnavailable, match="NOT_SUPPORTED") as info:
        NvmlMeter(nvml=nvml)
    assert "jetson" in (info.value.fix or "")
    probe = probe_module(nvml)
    assert not probe.available and "jetson" in (probe.fix or "")


# --- errors mid-run and counter resets -------------------------------------------------------------
def test_error_mid_run_gives_missing_samples_never_zero(two_gpus: FakeNvml) -> None:
    meter = NvmlMeter(nvml=two_gpus)
    two_gpus.gpus[1].fail = FakeNvml.NVML_ERROR_GPU_IS_LOST
    s = by_domain(meter.read_power())
    assert s["gpu1"].missing and s["gpu1"].power_w is None and "15" in (s["gpu1"].error or "")
    assert s["gpu0"].power_w == pytest.approx(100.0)
    c = by_domain(meter.read_counters())
    assert c["gpu1"].missing and c["gpu1"].energy_j is None
    two_gpus.gpus[1].fail = None
    assert by_domain(meter.read_power())["gpu1"].power_w == pytest.approx(250.0)


def test_counter_reset_keeps_energy_monotonic(clock: FakeClock) -> None:
    gpu = FakeGpu(power_mw=0.0, clock=clock.seconds)
    nvml = FakeNvml([gpu])
    gpu.set_energy(1_000_000)
    meter = NvmlMeter(nvml=nvml)
    gpu.set_energy(1_010_000)  # +10 J
    assert meter.read_counters()[0].energy_j == pytest.approx(10.0)
    gpu.set_energy(500)  # driver reloaded: counts from ~0 again
    assert meter.read_counters()[0].energy_j == pytest.approx(10.5)
    gpu.set_energy(2_500)
    assert meter.read_counters()[0].energy_j == pytest.approx(12.5)
    assert any("went back" in n for n in meter.notes)


# --- GPU selection ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "selector", ["1", 1, "gpu:1", "gpu1", "GPU-bbbbbbbb-0000-0000-0000-000000000001", "GPU-bbbb"]
)
def test_select_one_gpu_by_index_device_or_uuid(two_gpus: FakeNvml, selector: str | int) -> None:
    meter = NvmlMeter(selector, nvml=two_gpus)
    assert [d.id for d in meter.domains] == ["gpu1"]


def test_select_several_in_order_without_duplicates(two_gpus: FakeNvml) -> None:
    assert [d.id for d in NvmlMeter("1,0,1", nvml=two_gpus).domains] == ["gpu1", "gpu0"]
    assert [d.id for d in NvmlMeter([0, "GPU-bbbb"], nvml=two_gpus).domains] == ["gpu0", "gpu1"]


@pytest.mark.parametrize("selector", ["7", "GPU-ffff", "MIG-abc"])
def test_unknown_gpu_error_lists_the_gpus_present(two_gpus: FakeNvml, selector: str) -> None:
    with pytest.raises(ConfigError) as info:
        NvmlMeter(selector, nvml=two_gpus)
    if not selector.startswith("MIG"):
        message = info.value.message
        assert "0: NVIDIA H200 (GPU-aaaaaaaa-0000-0000-0000-000000000000)" in message
        assert "1: NVIDIA H200 (GPU-bbbbbbbb-0000-0000-0000-000000000001)" in message
    assert info.value.fix
    assert two_gpus.shutdowns == two_gpus.inits  # NVML released even when opening fails


def test_ambiguous_uuid_prefix_is_refused(two_gpus: FakeNvml) -> None:
    with pytest.raises(ConfigError, match="several"):
        NvmlMeter("GPU-", nvml=two_gpus)


def test_honours_cuda_visible_devices(two_gpus: FakeNvml, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert [d.id for d in NvmlMeter(nvml=two_gpus).domains] == ["gpu1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-aaaaaaaa-0000-0000-0000-000000000000")
    assert [d.id for d in NvmlMeter(nvml=two_gpus).domains] == ["gpu0"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "MIG-1234,1")
    meter = NvmlMeter(nvml=two_gpus)
    assert [d.id for d in meter.domains] == ["gpu1"] and any("MIG" in n for n in meter.notes)
    # An explicit selection wins over the environment.
    assert [d.id for d in NvmlMeter("0", nvml=two_gpus).domains] == ["gpu0"]


def test_cuda_visible_devices_hiding_every_gpu(two_gpus: FakeNvml, monkeypatch: pytest.MonkeyPatch) -> None:
    for value in ("", "-1", "9"):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
        with pytest.raises(MeterUnavailable, match="GPUs present: 0: NVIDIA H200") as info:
            NvmlMeter(nvml=two_gpus)
        assert "CUDA_VISIBLE_DEVICES" in info.value.fix


def test_parse_cuda_visible_devices_follows_cuda() -> None:
    assert parse_cuda_visible_devices("0, 2") == (["0", "2"], [])
    selectors, notes = parse_cuda_visible_devices("1,foo,2")
    assert selectors == ["1"] and "invalid" in notes[0]
    assert parse_cuda_visible_devices("")[0] == []


def test_cuda_ordinal_maps_through_visible_devices(two_gpus: FakeNvml) -> None:
    assert cuda_ordinal_to_nvml_index(1, env={}) == "1"
    assert cuda_ordinal_to_nvml_index(1, env={"CUDA_VISIBLE_DEVICES": "2,3"}) == "3"
    # A UUID entry becomes its NVML index when NVML answers, else stays a UUID NvmlMeter accepts.
    uuids = {"CUDA_VISIBLE_DEVICES": "GPU-bbbb,0"}
    assert cuda_ordinal_to_nvml_index(0, env=uuids, nvml=two_gpus) == "1"
    assert two_gpus.shutdowns == two_gpus.inits
    no_driver = FakeNvml([], init_error=FakeNvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    assert cuda_ordinal_to_nvml_index(0, env=uuids, nvml=no_driver) == "GPU-bbbb"
    assert (
        cuda_ordinal_to_nvml_index(0, env={"CUDA_VISIBLE_DEVICES": "GPU-ffff"}, nvml=two_gpus) == "GPU-ffff"
    )
    with pytest.raises(ConfigError, match="exposes 2 GPU"):
        cuda_ordinal_to_nvml_index(2, env={"CUDA_VISIBLE_DEVICES": "2,3"})


# --- probe and driver failures ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (FakeNvml.NVML_ERROR_LIBRARY_NOT_FOUND, "no NVIDIA driver"),
        (FakeNvml.NVML_ERROR_DRIVER_NOT_LOADED, "not loaded"),
        (FakeNvml.NVML_ERROR_NO_PERMISSION, "permission"),
    ],
)
def test_driver_problems_are_unavailable_with_a_fix(code: int, reason: str) -> None:
    nvml = FakeNvml([FakeGpu()], init_error=code)
    probe = probe_module(nvml)
    assert not probe.available and reason in probe.reason and probe.fix
    with pytest.raises(MeterUnavailable, match=reason) as info:
        NvmlMeter(nvml=nvml)
    assert info.value.fix


def test_probe_lists_gpus_and_capabilities(two_gpus: FakeNvml) -> None:
    probe = probe_module(two_gpus)
    assert probe.available and "2 NVIDIA GPU" in probe.reason
    assert any("GPU-aaaaaaaa" in d and "energy counter" in d for d in probe.details)
    assert two_gpus.shutdowns == two_gpus.inits
    no_gpu = probe_module(FakeNvml([]))
    assert not no_gpu.available and "no GPU" in no_gpu.reason


def test_close_shuts_nvml_down_once(two_gpus: FakeNvml) -> None:
    meter = NvmlMeter(nvml=two_gpus)
    meter.close()
    meter.close()
    assert two_gpus.shutdowns == 1


# --- under the real sampler ------------------------------------------------------------------------
def test_sampler_timeline_window_by_counter(two_gpus: FakeNvml) -> None:
    meter = NvmlMeter(nvml=two_gpus)
    timeline = Timeline()
    with Sampler([meter], timeline, power_hz=20, counter_hz=4) as sampler:
        time.sleep(0.15)
        start = timeline.mark("start")
        sampler.read_counters_now()
        time.sleep(0.5)
        end = timeline.mark("end")
        sampler.read_counters_now()
        time.sleep(0.05)
    w0 = timeline.window("gpu0", start.t_ns, end.t_ns)
    w1 = timeline.window("gpu1", start.t_ns, end.t_ns)
    assert w0.method == "counter" and w1.method == "counter"
    # The fake's counter grows at exactly its power, so the window holds power x duration.
    assert w0.energy_j == pytest.approx(100.0 * w0.duration_s, rel=0.02)
    assert w1.energy_j == pytest.approx(250.0 * w1.duration_s, rel=0.02)
    assert w0.samples >= 5 and w0.coverage == 1.0


def test_instant_field_reading_zero_is_not_trusted() -> None:
    class ZeroField(FakeNvml):
        def nvmlDeviceGetFieldValues(self, h, ids):  # the driver answers SUCCESS but fills 0 mW
            values = super().nvmlDeviceGetFieldValues(h, ids)
            for v in values:
                v.value.uiVal = 0
            return values

    meter = NvmlMeter(nvml=ZeroField([FakeGpu(power_mw=90_000)]))
    assert meter.power_source["gpu0"] == POWER_USAGE
    assert meter.read_power()[0].power_w == pytest.approx(90.0)
