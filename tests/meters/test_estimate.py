"""EstimateMeter on this machine (real psutil readings) and its TDP lookup in codecarbon's table."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from wattlab.errors import ConfigError
from wattlab.meters.estimate import EstimateMeter, codecarbon_data_file, lookup_tdp, resolve_tdp
from wattlab.meters.sampler import Sampler
from wattlab.meters.timeline import Timeline


def test_domain_is_always_labelled_estimated() -> None:
    meter = EstimateMeter(tdp_w=65)
    (domain,) = meter.domains
    assert domain.id == "cpu-estimate" and domain.kind == "cpu" and domain.device == "cpu"
    assert domain.estimated and domain.method == "estimated" and not domain.has_counter
    assert "estimated" in domain.label and "65 W" in domain.label and "configured" in domain.label


def test_readings_are_utilization_times_tdp() -> None:
    meter = EstimateMeter(tdp_w=100)
    deadline = time.monotonic() + 0.2
    while time.monotonic() < deadline:  # keep one core busy so utilization is above zero
        sum(range(1000))
    (sample,) = meter.read_power()
    assert sample.domain == "cpu-estimate" and not sample.missing
    assert sample.util_pct is not None and 0.0 < sample.util_pct <= 100.0
    assert sample.power_w == pytest.approx(sample.util_pct / 100.0 * 100.0)


def test_tdp_from_codecarbon_table() -> None:
    assert codecarbon_data_file("hardware/cpu_power.csv") is not None
    assert lookup_tdp("AMD EPYC 7763 64-Core Processor") == ("AMD EPYC 7763", 280.0)
    assert lookup_tdp("Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz") == ("Intel Xeon Gold 6338", 205.0)
    # A name without a model number (as VMs report) matches nothing rather than a guess.
    assert lookup_tdp("AMD EPYC") is None
    tdp, source = resolve_tdp(model="AMD EPYC 7763 64-Core Processor")
    assert tdp == 280.0 and "codecarbon" in source


def test_unknown_cpu_gets_4_w_per_logical_cpu() -> None:
    tdp, source = resolve_tdp(model="Mystery CPU 9000")
    assert tdp == 4.0 * (os.cpu_count() or 1)
    assert "default" in source and "--tdp-w" in source


def test_bad_tdp_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="positive"):
        EstimateMeter(tdp_w=0)


def test_tdp_lookup_does_not_import_codecarbon() -> None:
    code = (
        "import sys; from wattlab.meters.estimate import resolve_tdp; resolve_tdp(); "
        "print(sorted(m for m in ('codecarbon', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_estimate_under_the_real_sampler() -> None:
    meter = EstimateMeter()
    timeline = Timeline()
    with Sampler([meter], timeline) as sampler:
        time.sleep(0.15)
        start = timeline.mark("start")
        sampler.read_counters_now()
        time.sleep(1.0)
        end = timeline.mark("end")
        time.sleep(0.15)
    window = timeline.window("cpu-estimate", start.t_ns, end.t_ns, idle_power_w=0.0)
    assert window.method == "estimated"
    assert window.energy_j is not None and window.energy_j >= 0.0
    assert window.coverage == 1.0 and window.gaps == 0
    assert 5 <= window.samples <= 12  # 10 Hz for 1 s (fewer if this shared box starves the thread)
    assert window.mean_power_w is not None and window.mean_power_w <= meter.tdp_w
    assert window.net_energy_j == window.energy_j
