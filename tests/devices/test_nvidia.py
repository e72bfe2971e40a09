"""The NVML wrapper on the meter tests' fake NVML: inventory, error translation, CUDA ordinals."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from wattlab.devices import DeviceError, DeviceNotSupported, DeviceUnavailable, discover_gpus
from wattlab.devices.nvidia import Nvml, cuda_ordinal_to_nvml_index, gpu_count, list_gpus

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "meters"))  # the meter tests' fake NVML
from meter_fakes import FakeGpu, FakeNvml


def two() -> FakeNvml:
    return FakeNvml([FakeGpu(uuid="GPU-aaaa-0"), FakeGpu(uuid="GPU-bbbb-1", counter=False)])


def test_inventory_count_and_discovery_prefer_nvidia() -> None:
    nvml = two()
    assert [(g.index, g.uuid, g.vendor) for g in list_gpus(nvml)] == [
        (0, "GPU-aaaa-0", "nvidia"),
        (1, "GPU-bbbb-1", "nvidia"),
    ]
    assert gpu_count(nvml) == 2 and nvml.inits == nvml.shutdowns == 2
    assert [g.uuid for g in discover_gpus(nvml=two())] == ["GPU-aaaa-0", "GPU-bbbb-1"]
    assert gpu_count(FakeNvml(init_error=12)) == 0


def test_vendor_errors_are_translated() -> None:
    with pytest.raises(DeviceUnavailable, match="no NVIDIA driver") as exc:
        Nvml(FakeNvml(init_error=FakeNvml.NVML_ERROR_LIBRARY_NOT_FOUND))
    assert exc.value.fix
    with Nvml(two()) as lib:
        gpu0, gpu1 = (lib.gpu(info) for info in lib.inventory())
        assert gpu0.energy().energy_mj > 0 and gpu0.instant_power_mw() == pytest.approx(100_000)
        with pytest.raises(DeviceNotSupported):
            gpu1.energy()
        lib.module.gpus[0].fail = FakeNvml.NVML_ERROR_GPU_IS_LOST
        with pytest.raises(DeviceError, match="15") as lost:
            gpu0.power_mw()
        assert not isinstance(lost.value, DeviceNotSupported)


def test_cuda_ordinal_through_uuid() -> None:
    env = {"CUDA_VISIBLE_DEVICES": "GPU-bbbb"}
    assert cuda_ordinal_to_nvml_index(0, env, nvml=two()) == "1"
    assert cuda_ordinal_to_nvml_index(0, env, nvml=FakeNvml(init_error=12)) == "GPU-bbbb"
