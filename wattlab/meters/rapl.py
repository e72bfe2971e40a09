"""CPU package and DRAM energy from RAPL through Linux powercap (`/sys/class/powercap`).

Intel and AMD (Zen, kernel >= 5.8) both expose RAPL as powercap zones named `intel-rapl:N`
(an `amd-rapl:N` tree is read the same way where a kernel names it so):

    intel-rapl:0/        name "package-0", energy_uj, max_energy_range_uj
    intel-rapl:0:0/      name "core"      (inside the package: not read, it would double count)
    intel-rapl:0:1/      name "uncore"    (inside the package: not read)
    intel-rapl:0:2/      name "dram"      -> domain dram-0
    intel-rapl:1/        name "psys"      (whole platform, includes the package: not read)

`intel-rapl-mmio:*` zones repeat the package counter through MMIO on some Intel laptops: skipped.

energy_uj is a counter in uJ that wraps to 0 after max_energy_range_uj. A wrap between two reads is
corrected; two wraps cannot be told from one, so reads must come more often than
max_energy_range_uj / power. Typical: 262 kJ on Intel (over 10 minutes even at 400 W), 65.5 kJ on
AMD (about 4 minutes at 280 W). The sampler reads it 10 times a second (for power) and at every
counter tick, so a wrap is never missed; `max_read_interval_s` gives the bound per domain.

Since 2020 (CVE-2020-8694, "Platypus") energy_uj is readable by root only: the probe says how to
grant read access.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from wattlab.errors import MeterUnavailable
from wattlab.meters.base import Domain, DomainKind, Meter, Probe, Sample, now_ns

DEFAULT_ROOT = "/sys/class/powercap"
# RAPL counters update about every 1 ms; only windows shorter than that would be flagged.
RAPL_UPDATE_PERIOD_S = 0.001

_ZONE = re.compile(r"^(?:intel|amd)-rapl:(\d+)(?::(\d+))?$")


def permission_fix(root: str = DEFAULT_ROOT) -> str:
    return (
        f"grant read access: `sudo chmod a+r {root}/*-rapl:*/energy_uj` (lost at reboot; make it "
        'permanent with a udev rule: SUBSYSTEM=="powercap", ACTION=="add", RUN+="/bin/chmod a+r '
        '/sys%p/energy_uj"), or run as root'
    )


@dataclass
class _Zone:
    """One RAPL zone wattlab reads, with its unwrapping state."""

    domain: Domain
    energy_path: Path
    max_range_uj: int
    limit_w: float | None
    last_raw_uj: int | None = None
    total_uj: int = 0  # unwrapped energy since open
    wraps: int = 0
    last_power: tuple[int, int] | None = None  # (t_ns, total_uj) at the previous read_power

    @property
    def max_read_interval_s(self) -> float | None:
        """Longest safe time between reads at the zone's power limit (two wraps are undetectable)."""
        if not self.limit_w or not self.max_range_uj:
            return None
        return self.max_range_uj / 1e6 / self.limit_w


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _read_int(path: Path) -> int | None:
    text = _read_text(path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def discover(root: str | Path = DEFAULT_ROOT) -> list[tuple[str, str, Path]]:
    """(domain id, zone name, zone dir) of every package and DRAM zone under root, packages first.

    Only `package-N` top-level zones and their `dram` subzones: core/uncore are inside the package,
    psys contains it. Domain ids follow the package's socket number: cpu-package-N, dram-N.
    """
    base = Path(root)
    if not base.is_dir():
        return []
    found: dict[str, tuple[str, str, Path]] = {}
    packages: dict[str, int] = {}  # "intel-rapl:0" -> socket number from "package-0"
    entries = sorted((e for e in base.iterdir() if _ZONE.match(e.name)), key=lambda e: e.name.count(":"))
    for entry in entries:
        match = _ZONE.match(entry.name)
        assert match is not None
        name = _read_text(entry / "name") or ""
        if match.group(2) is None:
            pkg = re.fullmatch(r"package-(\d+)", name)
            if pkg:
                packages[entry.name] = int(pkg.group(1))
                found.setdefault(f"cpu-package-{pkg.group(1)}", (f"cpu-package-{pkg.group(1)}", name, entry))
        elif name == "dram":
            parent = entry.name.rsplit(":", 1)[0]
            if parent in packages:
                socket = packages[parent]
                found.setdefault(f"dram-{socket}", (f"dram-{socket}", name, entry))
    return sorted(found.values(), key=lambda f: (not f[0].startswith("cpu"), f[0]))


def probe_root(root: str | Path = DEFAULT_ROOT) -> Probe:
    """Whether RAPL can be read under root. Never raises."""
    if not Path(root).is_dir():
        return Probe(
            "rapl",
            False,
            f"{root} does not exist (no RAPL: a VM, an ARM box, or the powercap driver is not loaded)",
            fix="on bare-metal x86 load it: `sudo modprobe intel_rapl_common intel_rapl_msr`; "
            "otherwise the estimate meter models CPU power",
        )
    zones = discover(root)
    if not zones:
        return Probe(
            "rapl",
            False,
            f"no RAPL package zone under {root}",
            fix="`sudo modprobe intel_rapl_msr` on bare-metal x86; elsewhere the estimate meter models CPU",
        )
    denied = []
    for _, _, path in zones:
        try:
            (path / "energy_uj").read_text()
        except PermissionError:
            denied.append(str(path / "energy_uj"))
        except OSError as exc:
            return Probe(
                "rapl", False, f"cannot read {path / 'energy_uj'}: {exc}", fix="check the powercap driver"
            )
    if denied:
        return Probe(
            "rapl",
            False,
            f"no permission to read {', '.join(denied)} (root-only since 2020, CVE-2020-8694)",
            fix=permission_fix(str(root)),
        )
    return Probe("rapl", True, ", ".join(d for d, _, _ in zones), details=tuple(str(p) for _, _, p in zones))


@functools.cache
def _probe_default() -> Probe:
    return probe_root(DEFAULT_ROOT)


class RaplMeter(Meter):
    """Package and DRAM energy counters of every CPU socket (has_counter=True).

    read_power(): power in W as the energy difference since the previous read_power / elapsed time
    (RAPL has no instantaneous power). read_counters(): unwrapped energy since open in J.
    """

    name: ClassVar[str] = "rapl"
    HAS_COUNTERS: ClassVar[bool] = True

    def __init__(self, root: str | Path = DEFAULT_ROOT) -> None:
        probe = probe_root(root)
        if not probe.available:
            raise MeterUnavailable(f"RAPL unavailable: {probe.reason}", fix=probe.fix)
        self._lock = threading.Lock()  # both read paths update the same unwrapping state
        self._zones: list[_Zone] = []
        for domain_id, zone_name, path in discover(root):
            max_range = _read_int(path / "max_energy_range_uj") or 0
            limit_uw = _read_int(path / "constraint_0_power_limit_uw") or _read_int(
                path / "constraint_0_max_power_uw"
            )
            limit_w = limit_uw / 1e6 if limit_uw else None
            kind: DomainKind = "cpu" if domain_id.startswith("cpu") else "dram"
            what = "CPU package" if kind == "cpu" else "DRAM"
            domain = Domain(
                id=domain_id,
                kind=kind,
                meter=self.name,
                label=f"{what} {domain_id.rsplit('-', 1)[1]} (RAPL {path.name}, {zone_name})",
                device="cpu",
                has_counter=True,
                counter_period_s=RAPL_UPDATE_PERIOD_S,
            )
            self._zones.append(_Zone(domain, path / "energy_uj", max_range, limit_w))
        self.domains = tuple(z.domain for z in self._zones)
        with self._lock:
            for zone in self._zones:
                self._advance(zone)
                zone.last_power = (now_ns(), zone.total_uj)

    @classmethod
    def probe(cls) -> Probe:
        return _probe_default()

    @property
    def max_read_interval_s(self) -> dict[str, float | None]:
        """Per domain: the longest time between reads before a second wrap could go unseen (s)."""
        return {z.domain.id: z.max_read_interval_s for z in self._zones}

    @property
    def wraps(self) -> dict[str, int]:
        return {z.domain.id: z.wraps for z in self._zones}

    def _advance(self, zone: _Zone) -> int:
        """Read energy_uj, fold it into the zone's unwrapped total, return the read time (ns)."""
        raw = int(zone.energy_path.read_text())
        t = now_ns()
        if zone.last_raw_uj is not None:
            delta = raw - zone.last_raw_uj
            if delta < 0:
                # Wrapped past max_energy_range_uj back to 0 since the last read.
                delta += zone.max_range_uj
                zone.wraps += 1
            zone.total_uj += max(delta, 0)
        zone.last_raw_uj = raw
        return t

    def _read_zones(self, sample: Callable[[_Zone, int], Sample]) -> list[Sample]:
        """Advance every zone's counter and turn each into a Sample; a failed read is a missing one."""
        samples = []
        with self._lock:
            for zone in self._zones:
                try:
                    t = self._advance(zone)
                except (OSError, ValueError) as exc:
                    samples.append(
                        Sample(t_ns=now_ns(), domain=zone.domain.id, error=f"RAPL read failed: {exc}")
                    )
                    continue
                samples.append(sample(zone, t))
        return samples

    def read_power(self) -> list[Sample]:
        def power(zone: _Zone, t: int) -> Sample:
            watts = None
            if zone.last_power is not None and t > zone.last_power[0]:
                t0, e0 = zone.last_power
                watts = (zone.total_uj - e0) / 1e6 / ((t - t0) / 1e9)
            zone.last_power = (t, zone.total_uj)
            return Sample(t_ns=t, domain=zone.domain.id, power_w=watts)

        return self._read_zones(power)

    def read_counters(self) -> list[Sample]:
        return self._read_zones(
            lambda zone, t: Sample(t_ns=t, domain=zone.domain.id, energy_j=zone.total_uj / 1e6)
        )
