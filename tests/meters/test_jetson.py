"""JetsonMeter on fake sysfs trees (Orin hwmon, Xavier/Nano iio) and a fake jtop: no double counting."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from wattlab.errors import MeterUnavailable
from wattlab.meters.jetson import JetsonMeter, discover_rails, probe_root


def hwmon_device(root: Path, dev: str, channels: dict[int, tuple[str, int, int]]) -> Path:
    """An INA3221 under the hwmon driver: {channel: (label, mV, mA)}."""
    d = root / "bus/i2c/drivers/ina3221" / dev / "hwmon" / "hwmon3"
    d.mkdir(parents=True)
    for n, (label, mv, ma) in channels.items():
        (d / f"in{n}_label").write_text(label + "\n")
        (d / f"in{n}_input").write_text(f"{mv}\n")
        (d / f"curr{n}_input").write_text(f"{ma}\n")
    return d


def iio_device(root: Path, dev: str, channels: dict[int, tuple[str, int | None, int, int]]) -> Path:
    """An INA3221 under the older iio driver: {channel: (rail name, mW or None, mV, mA)}."""
    d = root / "bus/i2c/drivers/ina3221x" / dev / "iio:device0"
    d.mkdir(parents=True)
    for n, (name, mw, mv, ma) in channels.items():
        (d / f"rail_name_{n}").write_text(name + "\n")
        if mw is not None:
            (d / f"in_power{n}_input").write_text(f"{mw}\n")
        (d / f"in_voltage{n}_input").write_text(f"{mv}\n")
        (d / f"in_current{n}_input").write_text(f"{ma}\n")
    return d


def powers(meter: JetsonMeter) -> dict[str, float | None]:
    return {s.domain: s.power_w for s in meter.read_power()}


def test_orin_nx_hwmon_total_is_vdd_in_alone(tmp_path: Path) -> None:
    hwmon_device(
        tmp_path,
        "1-0040",
        {
            1: ("VDD_IN", 5000, 1000),  # 5 W: the whole module
            2: ("VDD_CPU_GPU_CV", 5000, 400),  # 2 W, inside VDD_IN
            3: ("VDD_SOC", 5000, 200),  # 1 W, inside VDD_IN
            7: ("sum of shunt voltages", 40, 1600),  # not a rail
        },
    )
    meter = JetsonMeter(tmp_path, use_jtop=False)
    ids = [d.id for d in meter.domains]
    assert ids == ["soc-total", "rail-VDD_CPU_GPU_CV", "rail-VDD_SOC"]
    total = meter.domains[0]
    assert (total.kind, total.device, total.has_counter, total.parent) == ("soc", "soc", False, None)
    assert "VDD_IN" in total.label and "hwmon" in total.label
    assert all(d.kind == "rail" and d.parent == "soc-total" for d in meter.domains[1:])
    assert powers(meter) == {
        "soc-total": pytest.approx(5.0),  # not 8 W (jetson_stats #51) and not 9.6 with channel 7
        "rail-VDD_CPU_GPU_CV": pytest.approx(2.0),
        "rail-VDD_SOC": pytest.approx(1.0),
    }


def test_agx_orin_without_input_rail_sums_its_rails(tmp_path: Path) -> None:
    hwmon_device(
        tmp_path,
        "1-0040",
        {1: ("VDD_GPU_SOC", 5000, 1000), 2: ("VDD_CPU_CV", 5000, 600), 3: ("VIN_SYS_5V0", 5000, 500)},
    )
    hwmon_device(tmp_path, "1-0041", {1: ("NC", 0, 0), 2: ("VDDQ_VDD2_1V8AO", 5000, 100), 3: ("NC", 0, 0)})
    meter = JetsonMeter(tmp_path, use_jtop=False)
    total = meter.domains[0]
    assert "sum of rails" in total.label and "VIN_SYS_5V0" in total.label
    assert "rail-NC" not in [d.id for d in meter.domains]
    p = powers(meter)
    # 5 + 3 + 2.5 + 0.5: VIN_SYS_5V0 is one rail of the sum, not the total (jetson_stats #344).
    assert p["soc-total"] == pytest.approx(11.0)
    assert p["rail-VIN_SYS_5V0"] == pytest.approx(2.5)


def test_nano_iio_total_is_pom_5v_in(tmp_path: Path) -> None:
    iio_device(
        tmp_path,
        "6-0040",
        {
            0: ("POM_5V_IN", 4000, 5000, 800),
            1: ("POM_5V_GPU", 1000, 5000, 200),
            2: ("POM_5V_CPU", 1500, 5000, 300),
        },
    )
    meter = JetsonMeter(tmp_path, use_jtop=False)
    assert "iio" in meter.source
    assert powers(meter) == {
        "soc-total": pytest.approx(4.0),
        "rail-POM_5V_GPU": pytest.approx(1.0),
        "rail-POM_5V_CPU": pytest.approx(1.5),
    }


def test_xavier_iio_voltage_times_current_and_summed_total(tmp_path: Path) -> None:
    iio_device(
        tmp_path,
        "1-0040",
        {0: ("GPU", None, 1000, 2000), 1: ("CPU", None, 1000, 1500), 2: ("SOC", 3000, 1000, 3000)},
    )
    iio_device(
        tmp_path,
        "1-0041",
        {0: ("CV", None, 1000, 500), 1: ("VDDRQ", None, 1000, 700), 2: ("SYS5V", None, 5000, 400)},
    )
    rails, layout = discover_rails(tmp_path)
    assert layout == "iio" and {r.name for r in rails} == {"GPU", "CPU", "SOC", "CV", "VDDRQ", "SYS5V"}
    p = powers(JetsonMeter(tmp_path, use_jtop=False))
    assert p["rail-GPU"] == pytest.approx(2.0)  # 1000 mV x 2000 mA
    assert p["rail-SOC"] == pytest.approx(3.0)  # in_power wins when present
    assert p["soc-total"] == pytest.approx(2.0 + 1.5 + 3.0 + 0.5 + 0.7 + 2.0)


def test_unreadable_rail_makes_the_summed_total_missing(tmp_path: Path) -> None:
    d = hwmon_device(tmp_path, "1-0040", {1: ("VDD_GPU_SOC", 5000, 1000), 2: ("VDD_CPU_CV", 5000, 600)})
    meter = JetsonMeter(tmp_path, use_jtop=False)
    (d / "curr2_input").unlink()
    samples = {s.domain: s for s in meter.read_power()}
    assert samples["rail-VDD_CPU_CV"].missing
    assert samples["soc-total"].missing and samples["soc-total"].power_w is None  # never a too-low sum
    assert samples["rail-VDD_GPU_SOC"].power_w == pytest.approx(5.0)


def test_not_a_jetson(tmp_path: Path) -> None:
    probe = probe_root(tmp_path, jtop_socket=tmp_path / "no.sock")
    assert not probe.available and "not a Jetson" in probe.reason
    with pytest.raises(MeterUnavailable):
        JetsonMeter(tmp_path, use_jtop=False)


def test_probe_sees_sysfs_rails(tmp_path: Path) -> None:
    hwmon_device(tmp_path, "1-0040", {1: ("VDD_IN", 5000, 1000)})
    probe = probe_root(tmp_path, jtop_socket=tmp_path / "no.sock")
    assert probe.available and "VDD_IN" in probe.reason and "sysfs" in probe.reason


# --- through jtop ----------------------------------------------------------------------------------
class FakeJtop:
    """The slice of jtop's client the meter uses: start/close/ok/is_alive and the `power` dict (mW)."""

    def __init__(self, power: dict[str, Any], interval: float = 0.5) -> None:
        self.power = power
        self.interval = interval
        self.started = self.closed = False
        self.alive = True

    def start(self) -> None:
        self.started = True

    def ok(self) -> bool:
        return True

    def is_alive(self) -> bool:
        return self.alive

    def close(self) -> None:
        self.closed = True


def jtop_with(power: dict[str, Any]) -> Callable[..., FakeJtop]:
    return lambda interval=0.5: FakeJtop(power, interval)


def test_jtop_orin_nx_total_from_tot_and_avg_ignored(tmp_path: Path) -> None:
    power = {
        "rail": {
            "VDD_CPU_GPU_CV": {"volt": 5000, "curr": 400, "power": 2000, "avg": 9999},
            "VDD_SOC": {"volt": 5000, "curr": 200, "power": 1000, "avg": 9999},
        },
        "tot": {"volt": 5000, "curr": 1000, "power": 5000, "avg": 9999, "name": "VDD_IN"},
    }

    meter = JetsonMeter(tmp_path, jtop=jtop_with(power), jtop_interval_s=0.25)
    assert meter.source == "jtop" and "VDD_IN" in meter.domains[0].label
    assert meter.domains[0].counter_period_s == 0.25
    assert powers(meter) == {
        "soc-total": pytest.approx(5.0),
        "rail-VDD_CPU_GPU_CV": pytest.approx(2.0),
        "rail-VDD_SOC": pytest.approx(1.0),
    }
    handle = meter._jtop
    meter.close()
    assert handle.closed


def test_jtop_agx_orin_sums_rails_but_not_usb_supplies(tmp_path: Path) -> None:
    power = {
        "rail": {
            "VDD_GPU_SOC": {"power": 5000},
            "VDD_CPU_CV": {"power": 3000},
            "VIN_SYS_5V0": {"power": 2500},
            "1-00081": {"power": 15000},  # a USB-C UCSI supply: a negotiated limit, not a rail
        },
        "tot": {"power": 25500},  # jtop's own sum, which included the USB entry
    }

    meter = JetsonMeter(tmp_path, jtop=jtop_with(power))
    assert powers(meter) == {
        "soc-total": pytest.approx(10.5),
        "rail-VDD_GPU_SOC": pytest.approx(5.0),
        "rail-VDD_CPU_CV": pytest.approx(3.0),
        "rail-VIN_SYS_5V0": pytest.approx(2.5),
    }
    assert "sum of rails" in meter.domains[0].label and any("1-00081" in n for n in meter.notes)


def test_jtop_lost_connection_gives_missing_samples(tmp_path: Path) -> None:
    power = {"rail": {"VDD_GPU_SOC": {"power": 5000}}, "tot": {"power": 5000}}

    meter = JetsonMeter(tmp_path, jtop=jtop_with(power))
    meter._jtop.alive = False
    assert all(s.missing for s in meter.read_power())


def test_jtop_failure_falls_back_to_sysfs(tmp_path: Path) -> None:
    hwmon_device(tmp_path, "1-0040", {1: ("VDD_IN", 5000, 1000)})

    class Broken(FakeJtop):
        def start(self) -> None:
            raise RuntimeError("The jetson_stats.service is not active")

    meter = JetsonMeter(tmp_path, jtop=lambda interval: Broken({}, interval))
    assert meter.source.startswith("sysfs") and any("not active" in n for n in meter.notes)
    assert powers(meter) == {"soc-total": pytest.approx(5.0)}
