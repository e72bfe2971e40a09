"""The NVML caps and throttle calls on the fake NVML: constraints, clocks, permission, setters'
refusals in words, clock-event reasons (new and old names) and violation counters."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from wattlab.devices.base import DeviceError, DeviceNotSupported, PowerLimits, decode_clock_event_reasons
from wattlab.devices.nvidia import CAPS_FIX, Nvml, can_change_caps

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "meters"))  # the meter tests' fake NVML
from meter_fakes import FakeGpu, FakeNvml


@pytest.fixture
def root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("wattlab.devices.nvidia._euid", lambda: 0)


def one_gpu(**kw: object) -> FakeNvml:
    return FakeNvml([FakeGpu(uuid="GPU-caps-0", **kw)])  # type: ignore[arg-type]


def test_power_limits_and_supported_clocks() -> None:
    with Nvml(one_gpu(limit_mw=450_000)) as lib:
        gpu = lib.gpu(lib.inventory()[0])
        limits = gpu.power_limits()
        assert limits == PowerLimits(200_000, 700_000, 700_000, 450_000)
        assert limits.range_w() == "200-700 W"
        assert gpu.supported_mem_clocks_mhz() == [3201, 2201]
        assert gpu.supported_sm_clocks_mhz() == [1980, 1830, 1755, 1410, 1005, 510]
        assert gpu.supported_sm_clocks_mhz(2201) == [1410, 1005, 510]  # fewer at the lower memory clock


def test_caps_access_needs_root_and_a_settable_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("wattlab.devices.nvidia._euid", lambda: 1000)
    with Nvml(one_gpu()) as lib:
        access = lib.gpu(lib.inventory()[0]).caps_access()
    assert not access.allowed and "uid 1000, not root" in access.reason and access.fix == CAPS_FIX
    assert "sudo" in CAPS_FIX and "nvidia-smi -pm 1" in CAPS_FIX

    monkeypatch.setattr("wattlab.devices.nvidia._euid", lambda: 0)
    with Nvml(one_gpu(persistence=0)) as lib:
        access = lib.gpu(lib.inventory()[0]).caps_access()
    assert access.allowed and "200-700 W" in access.reason and "persistence mode is off" in access.reason
    refused = can_change_caps(FakeNvml([FakeGpu(uuid="GPU-a"), FakeGpu(uuid="GPU-b", caps=False)]))
    assert not refused.allowed and "GPU 1" in refused.reason and "NOT_SUPPORTED" in refused.reason
    nothing = can_change_caps(FakeNvml(init_error=FakeNvml.NVML_ERROR_LIBRARY_NOT_FOUND))
    assert not nothing.allowed and "no NVIDIA GPU" in nothing.reason and nothing.fix


def test_setters_change_the_gpu_and_refusals_are_said_in_words(root: None) -> None:
    nvml = one_gpu()
    with Nvml(nvml) as lib:
        gpu = lib.gpu(lib.inventory()[0])
        gpu.set_power_limit_mw(300_000)
        gpu.lock_sm_clocks_mhz(1410, 1410)
        gpu.lock_mem_clocks_mhz(2201, 2201)
        assert (nvml.gpus[0].limit_mw, nvml.gpus[0].locked_sm, nvml.gpus[0].locked_mem) == (
            300_000,
            [1410, 1410],
            [2201, 2201],
        )
        gpu.reset_sm_clocks()
        gpu.reset_mem_clocks()
        assert nvml.gpus[0].locked_sm is None and nvml.gpus[0].locked_mem is None
        with pytest.raises(DeviceError, match="out of range") as bad:
            gpu.set_power_limit_mw(900_000)
        assert bad.value.fix and "nvidia-smi" in bad.value.fix
        nvml.gpus[0].set_error = FakeNvml.NVML_ERROR_NO_PERMISSION  # root in an unprivileged container
        with pytest.raises(DeviceError, match="no permission") as denied:
            gpu.set_power_limit_mw(300_000)
        assert denied.value.fix == CAPS_FIX
        nvml.gpus[0].set_error = None
        nvml.gpus[0].caps = False
        with pytest.raises(DeviceNotSupported):
            gpu.lock_sm_clocks_mhz(1410, 1410)


def test_clock_event_reasons_and_violation_counters() -> None:
    assert decode_clock_event_reasons(0) == []
    assert decode_clock_event_reasons(0x4 | 0x40 | 0x800) == [
        "sw_power_cap",
        "hw_thermal_slowdown",
        "bit_0x800",
    ]
    with Nvml(one_gpu(reasons=0x5, violation_power_ns=2_500_000_000, violation_thermal_ns=7)) as lib:
        gpu = lib.gpu(lib.inventory()[0])
        assert gpu.clock_event_reasons() == ["gpu_idle", "sw_power_cap"]
        assert gpu.violation_ns("power") == 2_500_000_000 and gpu.violation_ns("thermal") == 7
    with Nvml(one_gpu(violations=False)) as lib, pytest.raises(DeviceNotSupported):
        lib.gpu(lib.inventory()[0]).violation_ns("power")


class OldDriverNvml(FakeNvml):
    """Bindings from before driver 535: the reasons call has its older name only."""

    nvmlDeviceGetCurrentClocksEventReasons = None

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, h: FakeGpu) -> int:
        return h.reasons


def test_reasons_through_the_older_throttle_name() -> None:
    with Nvml(OldDriverNvml([FakeGpu(reasons=0x20)])) as lib:
        assert lib.gpu(lib.inventory()[0]).clock_event_reasons() == ["sw_thermal_slowdown"]


def test_fake_state_file_is_shared_between_instances(tmp_path: Path) -> None:
    """What the kill -9 test relies on: a change by one fake (process) is what the next one reads."""
    first = one_gpu()
    first.state_path = tmp_path / "nvml.json"
    first.save_state()
    with Nvml(first) as lib:
        lib.gpu(lib.inventory()[0]).set_power_limit_mw(250_000)
    second = FakeNvml.from_state(tmp_path / "nvml.json")
    assert second.gpus[0].limit_mw == 250_000 and second.calls == [["set_power_limit", 0, 250_000]]
