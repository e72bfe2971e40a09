"""RaplMeter on fake powercap trees: which zones, wraparound, power from energy, permissions."""

from __future__ import annotations

from pathlib import Path

import pytest
from meter_fakes import FakeClock

from wattlab.errors import MeterUnavailable
from wattlab.meters.rapl import RaplMeter, discover, probe_root


def zone(
    root: Path, name: str, label: str, energy_uj: int, max_uj: int = 1_000_000, limit_uw: int | None = None
):
    z = root / name
    z.mkdir(parents=True)
    (z / "name").write_text(label + "\n")
    (z / "energy_uj").write_text(f"{energy_uj}\n")
    (z / "max_energy_range_uj").write_text(f"{max_uj}\n")
    if limit_uw is not None:
        (z / "constraint_0_power_limit_uw").write_text(f"{limit_uw}\n")
    return z


def set_energy(z: Path, uj: int) -> None:
    (z / "energy_uj").write_text(f"{uj}\n")


@pytest.fixture
def intel(tmp_path: Path) -> Path:
    """One Intel socket: package, core, uncore, dram, psys, and the MMIO duplicate of the package."""
    root = tmp_path / "powercap"
    zone(root, "intel-rapl:0", "package-0", 900_000, limit_uw=100_000_000)
    zone(root, "intel-rapl:0:0", "core", 10)
    zone(root, "intel-rapl:0:1", "uncore", 10)
    zone(root, "intel-rapl:0:2", "dram", 100_000)
    zone(root, "intel-rapl:1", "psys", 10)
    zone(root, "intel-rapl-mmio:0", "package-0", 10)
    (root / "intel-rapl").mkdir()  # the control-type directory, not a zone
    return root


def test_reads_package_and_dram_only(intel: Path) -> None:
    meter = RaplMeter(intel)
    assert [d.id for d in meter.domains] == ["cpu-package-0", "dram-0"]
    package, dram = meter.domains
    assert (package.kind, package.device, package.has_counter, package.method) == (
        "cpu",
        "cpu",
        True,
        "counter",
    )
    assert (dram.kind, dram.device) == ("dram", "cpu")
    assert "intel-rapl:0" in package.label and "intel-rapl:0:2" in dram.label


def test_wraparound_between_reads_gives_the_right_joules(intel: Path) -> None:
    meter = RaplMeter(intel)  # opens at package 900_000 uJ
    set_energy(intel / "intel-rapl:0", 100_000)  # wrapped at 1_000_000: +200_000 uJ
    set_energy(intel / "intel-rapl:0:2", 350_000)  # no wrap: +250_000 uJ
    counters = {s.domain: s.energy_j for s in meter.read_counters()}
    assert counters == {"cpu-package-0": pytest.approx(0.2), "dram-0": pytest.approx(0.25)}
    set_energy(intel / "intel-rapl:0", 950_000)  # +850_000 uJ, no wrap
    set_energy(intel / "intel-rapl:0", 50_000)  # and another wrap: +100_000 uJ
    counters = {s.domain: s.energy_j for s in meter.read_counters()}
    # read_counters saw only the last value: 100_000 -> 50_000 is one wrap = +950_000 uJ
    assert counters["cpu-package-0"] == pytest.approx(0.2 + 0.95)
    assert meter.wraps["cpu-package-0"] == 2


def test_power_is_energy_difference_over_time(intel: Path, clock: FakeClock) -> None:
    meter = RaplMeter(intel)
    clock.advance(0.1)
    set_energy(intel / "intel-rapl:0", 100_000)  # +0.2 J in 0.1 s through a wrap
    set_energy(intel / "intel-rapl:0:2", 150_000)  # +0.05 J
    power = {s.domain: s.power_w for s in meter.read_power()}
    assert power == {"cpu-package-0": pytest.approx(2.0), "dram-0": pytest.approx(0.5)}
    # A counter read in between does not disturb the next power reading's span.
    clock.advance(0.05)
    set_energy(intel / "intel-rapl:0", 200_000)
    meter.read_counters()
    clock.advance(0.05)
    set_energy(intel / "intel-rapl:0", 400_000)
    power = {s.domain: s.power_w for s in meter.read_power()}
    assert power["cpu-package-0"] == pytest.approx(3.0)  # 0.3 J over 0.1 s


def test_max_read_interval_from_range_and_limit(intel: Path) -> None:
    meter = RaplMeter(intel)
    # 1 J of range at a 100 W limit wraps at most every 10 ms.
    assert meter.max_read_interval_s == {"cpu-package-0": pytest.approx(0.01), "dram-0": None}


def test_two_sockets_and_amd_named_tree(tmp_path: Path) -> None:
    root = tmp_path / "powercap"
    zone(root, "amd-rapl:0", "package-0", 0)
    zone(root, "amd-rapl:1", "package-1", 0)
    assert [d for d, _, _ in discover(root)] == ["cpu-package-0", "cpu-package-1"]
    assert [d.id for d in RaplMeter(root).domains] == ["cpu-package-0", "cpu-package-1"]


def test_permission_denied_is_unavailable_with_the_fix(intel: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests may run as root, who reads anything: simulate the root-only energy_uj instead.
    real_read_text = Path.read_text

    def denied(self: Path, *args: object, **kwargs: object) -> str:
        if self.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_text(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", denied)
    probe = probe_root(intel)
    assert not probe.available and "permission" in probe.reason and "CVE-2020-8694" in probe.reason
    assert "chmod a+r" in (probe.fix or "") and "reboot" in (probe.fix or "") and "udev" in (probe.fix or "")
    with pytest.raises(MeterUnavailable, match="permission") as info:
        RaplMeter(intel)
    assert "chmod" in (info.value.fix or "")


def test_no_powercap_is_unavailable(tmp_path: Path) -> None:
    probe = probe_root(tmp_path / "missing")
    assert not probe.available and "does not exist" in probe.reason and probe.fix
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no RAPL package zone" in probe_root(empty).reason


def test_read_failure_mid_run_is_a_missing_sample(intel: Path) -> None:
    meter = RaplMeter(intel)
    (intel / "intel-rapl:0:2" / "energy_uj").unlink()
    power = {s.domain: s for s in meter.read_power()}
    assert power["dram-0"].missing and power["dram-0"].power_w is None
    assert not power["cpu-package-0"].missing
    counters = {s.domain: s for s in meter.read_counters()}
    assert counters["dram-0"].missing and counters["dram-0"].energy_j is None
