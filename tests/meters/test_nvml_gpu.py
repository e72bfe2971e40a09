"""The real NvmlMeter on a real NVIDIA GPU (skipped where NVML sees none; run on the lent GPU)."""

from __future__ import annotations

import dataclasses
import time

import pytest

from wattlab.devices.nvidia import cuda_ordinal_to_nvml_index
from wattlab.meters.nvml import NvmlMeter
from wattlab.meters.sampler import Sampler
from wattlab.meters.timeline import Timeline
from wattlab.meters.windows import window_energy

pytestmark = pytest.mark.gpu


def test_probe_lists_the_gpus() -> None:
    probe = NvmlMeter.probe()
    assert probe.available, probe
    assert probe.details and all("GPU-" in d for d in probe.details)


def test_reads_power_telemetry_and_counter_of_every_gpu() -> None:
    with NvmlMeter() as meter:
        assert meter.domains and all(d.kind == "gpu" and d.device.startswith("gpu:") for d in meter.domains)
        for sample in meter.read_power():
            assert not sample.missing, sample
            assert sample.power_w is not None and 10.0 < sample.power_w < 2000.0  # a real GPU, not 0 W
            assert sample.util_pct is not None and sample.mem_used_mib is not None
            assert sample.temp_c is not None and sample.power_limit_w is not None
        if any(d.has_counter for d in meter.domains):
            first = {s.domain: s.energy_j for s in meter.read_counters()}
            time.sleep(0.5)
            second = {s.domain: s.energy_j for s in meter.read_counters()}
            for domain, energy in second.items():
                # Even idle, a data-centre GPU draws tens of W: 0.5 s is several joules.
                assert energy is not None and energy - (first[domain] or 0.0) > 1.0


def test_counter_and_integrated_power_agree_under_the_sampler() -> None:
    meter = NvmlMeter(cuda_ordinal_to_nvml_index(0))
    domain = meter.domains[0]
    if not domain.has_counter:
        pytest.skip(f"{domain.label}: no energy counter to compare with")
    timeline = Timeline()
    with Sampler([meter], timeline) as sampler:
        time.sleep(0.3)
        start = timeline.mark("start")
        sampler.read_counters_now()
        time.sleep(3.0)
        end = timeline.mark("end")
        sampler.read_counters_now()
        time.sleep(0.2)
    meter.close()
    by_counter = timeline.window(domain.id, start.t_ns, end.t_ns)
    integrated_domain = dataclasses.replace(domain, has_counter=False)
    by_power = window_energy(integrated_domain, timeline.series(domain.id), start.t_ns, end.t_ns)
    assert by_counter.method == "counter" and by_power.method == "integrated"
    assert by_counter.energy_j is not None and by_power.energy_j is not None
    assert by_power.energy_j == pytest.approx(by_counter.energy_j, rel=0.10)
    assert by_power.coverage == 1.0
