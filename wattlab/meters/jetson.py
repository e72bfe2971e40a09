"""NVIDIA Jetson boards: INA3221 power rails, through jtop when its service runs, else sysfs.

Jetson's NVML answers NOT_SUPPORTED for power, so the board's INA3221 monitors are the source.
Two sysfs layouts exist (both read without root):

- hwmon (JetPack 5/6, Orin): /sys/bus/i2c/drivers/ina3221/<dev>/hwmon/hwmonN/
  in{n}_label (rail name), in{n}_input (bus voltage, mV), curr{n}_input (current, mA).
- iio (JetPack 4, Xavier/Nano/TX2): /sys/bus/i2c/drivers/ina3221x/<dev>/iio:deviceN/
  rail_name_{n}, in_power{n}_input (mW), or in_voltage{n}_input (mV) x in_current{n}_input (mA).

Totals without double counting (the traps of jetson_stats issues #51 and #344):
- The board input rail, `VDD_IN` (Orin NX/Nano, Xavier NX) or `POM_5V_IN` (Nano, TX2), already
  contains every other rail: when present it alone is `soc-total`, and the other rails are shown as
  sub-domains (`parent="soc-total"`), never added to it (#51: jtop once summed them all).
- Modules without an input rail (AGX Xavier, AGX Orin) get `soc-total` = sum of their rails, and
  the label says so. On AGX Orin VIN_SYS_5V0 is one rail among the others, not the total (#344:
  jtop showed it as "ALL").
- Channels labelled `NC` (not connected) and Orin's channel 7 "sum of shunt voltages" (a sum of
  the other channels' shunts, not a rail) are skipped, and so are non-INA3221 supplies jtop lists
  (USB-C UCSI entries are negotiated limits, not measurements).
- jtop's `avg` is a moving average of its own, not a time average: never used; only `power`.

No energy counters: windows integrate power (`has_counter=False`).
"""

from __future__ import annotations

import contextlib
import functools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from wattlab.devices.jetson import JTOP_SOCKET, jtop_class, jtop_installed
from wattlab.errors import MeterUnavailable
from wattlab.meters.base import Domain, Meter, Probe, Sample, now_ns

TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")
TOTAL_ID = "soc-total"
_RAIL_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")  # INA3221 labels; excludes UCSI supplies like "1-00081"


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _skip_label(label: str) -> bool:
    return not label or label.upper() == "NC" or "sum of shunt" in label.lower()


@dataclass(frozen=True, slots=True)
class Rail:
    """One INA3221 channel: its name and how to read its power from sysfs."""

    name: str
    volt_path: Path | None = None  # mV
    curr_path: Path | None = None  # mA
    power_path: Path | None = None  # mW, iio layout only

    def read_w(self) -> float:
        if self.power_path is not None and self.power_path.exists():
            return int(self.power_path.read_text().split()[0]) / 1000.0
        assert self.volt_path is not None and self.curr_path is not None
        millivolts = int(self.volt_path.read_text().split()[0])
        milliamps = int(self.curr_path.read_text().split()[0])
        return millivolts * milliamps / 1e6


def discover_rails(root: str | Path = "/sys") -> tuple[list[Rail], str]:
    """INA3221 rails under root (a /sys tree), and which layout they came from ("hwmon"/"iio"/"")."""
    drivers = Path(root) / "bus" / "i2c" / "drivers"
    rails: dict[str, Rail] = {}
    for hwmon in sorted(drivers.glob("ina3221/*/hwmon/hwmon*")):
        for label_path in sorted(hwmon.glob("in*_label")):
            n = label_path.name[2 : -len("_label")]
            label = _read_text(label_path) or ""
            if not n.isdigit() or _skip_label(label) or not (hwmon / f"curr{n}_input").exists():
                continue
            rails.setdefault(label, Rail(label, hwmon / f"in{n}_input", hwmon / f"curr{n}_input"))
    if rails:
        return list(rails.values()), "hwmon"
    for iio in sorted(drivers.glob("ina3221x/*/iio:device*")):
        for name_path in sorted(iio.glob("rail_name_*")):
            n = name_path.name[len("rail_name_") :]
            label = _read_text(name_path) or ""
            if not n.isdigit() or _skip_label(label):
                continue
            power = iio / f"in_power{n}_input"
            volt, curr = iio / f"in_voltage{n}_input", iio / f"in_current{n}_input"
            if not power.exists() and not (volt.exists() and curr.exists()):
                continue
            rails.setdefault(label, Rail(label, volt, curr, power if power.exists() else None))
    return list(rails.values()), ("iio" if rails else "")


def _jtop_installed() -> bool:
    return jtop_installed()


def probe_root(root: str | Path = "/sys", *, jtop_socket: Path = JTOP_SOCKET) -> Probe:
    """Whether Jetson rails can be read here. Never raises."""
    rails, layout = discover_rails(root)
    jtop_up = _jtop_installed() and jtop_socket.exists()
    if rails:
        names = ", ".join(r.name for r in rails)
        via = "jtop service" if jtop_up else f"sysfs INA3221 ({layout})"
        return Probe("jetson", True, f"Jetson power rails via {via}: {names}")
    if jtop_up:
        return Probe("jetson", True, "Jetson power rails via the jtop service")
    if Path("/etc/nv_tegra_release").exists():
        return Probe(
            "jetson",
            False,
            "a Jetson, but no INA3221 power monitor is visible (the Nano 2GB has none)",
            fix="pip install 'wattlab[jetson]' and `sudo systemctl restart jtop.service`; check "
            "/sys/bus/i2c/drivers/ina3221*",
        )
    return Probe("jetson", False, "not a Jetson (no INA3221 rails, no jtop service)")


@functools.cache
def _probe_default() -> Probe:
    return probe_root("/sys")


def _total_plan(names: list[str]) -> tuple[str | None, list[str]]:
    """(the board input rail, or None; the rails to sum when there is none)."""
    for total in TOTAL_RAILS:
        if total in names:
            return total, []
    return None, [n for n in names if _RAIL_NAME.match(n)]


class JetsonMeter(Meter):
    """Board total (`soc-total`) and each rail (`rail-<NAME>`, a sub-domain) of a Jetson, in W.

    root:       the /sys tree to read (tests pass a fake one).
    use_jtop:   read through jtop (jetson-stats) when its service answers; else sysfs.
    jtop:       the jtop class to use (tests inject a fake); default imports it lazily.
    jtop_interval_s: how often jtop's service refreshes, which bounds how fresh its readings are.
    """

    name: ClassVar[str] = "jetson"
    HAS_COUNTERS: ClassVar[bool] = False

    def __init__(
        self,
        root: str | Path = "/sys",
        *,
        use_jtop: bool = True,
        jtop: Callable[..., Any] | None = None,
        jtop_interval_s: float = 0.5,
    ) -> None:
        self._jtop: Any = None
        self.source = ""
        self.notes: list[str] = []
        self._rails: list[Rail] = []
        self._names: list[str] = []
        names: list[str] = []
        period: float | None = None
        if use_jtop and (jtop is not None or (_jtop_installed() and JTOP_SOCKET.exists())):
            try:
                names = self._open_jtop(jtop, jtop_interval_s)
                self.source = "jtop"
                period = jtop_interval_s
            except Exception as exc:  # jtop raises its own JtopException; any failure -> sysfs
                self.notes.append(f"jtop unavailable ({exc}); reading sysfs instead")
                self._close_jtop()
        if not self.source:
            self._rails, layout = discover_rails(root)
            if not self._rails:
                probe = probe_root(root)
                raise MeterUnavailable(f"Jetson meter unavailable: {probe.reason}", fix=probe.fix)
            names = [r.name for r in self._rails]
            self.source = f"sysfs INA3221 ({layout})"
        self._names = names
        self._total_rail, self._summed = _total_plan(names)
        self.domains = self._make_domains(names, period)

    def _open_jtop(self, jtop: Callable[..., Any] | None, interval_s: float) -> list[str]:
        if jtop is None:
            jtop = jtop_class()
        self._jtop = jtop(interval=interval_s)
        self._jtop.start()
        deadline = time.monotonic() + max(3 * interval_s, 2.0)
        while not self._power_dict().get("rail") and time.monotonic() < deadline:
            self._jtop.ok()  # waits for the service's next update
        rails = self._power_dict().get("rail") or {}
        # Only INA3221 rails: jtop also lists USB-C (UCSI) supplies, negotiated limits, not readings.
        names = [n for n in rails if _RAIL_NAME.match(n) and not _skip_label(n)]
        if len(names) < len(rails):
            self.notes.append(
                f"ignored non-rail jtop entries: {', '.join(n for n in rails if n not in names)}"
            )
        tot = self._power_dict().get("tot") or {}
        # jtop moves the input rail out of "rail" into "tot" (with its name): keep it as a rail here.
        if tot.get("name") in TOTAL_RAILS and tot["name"] not in names:
            names.append(str(tot["name"]))
        if not names:
            raise MeterUnavailable("jtop reports no power rails")
        return names

    def _power_dict(self) -> dict[str, Any]:
        power = getattr(self._jtop, "power", None)
        return power if isinstance(power, dict) else {}

    def _make_domains(self, names: list[str], period: float | None) -> tuple[Domain, ...]:
        if self._total_rail:
            total_label = f"Jetson board input {self._total_rail} ({self.source})"
        else:
            total_label = (
                f"Jetson module: sum of rails {' + '.join(self._summed)} "
                f"(no board-input rail on this module; {self.source})"
            )
        total = Domain(TOTAL_ID, "soc", self.name, total_label, "soc", counter_period_s=period)
        rails = tuple(
            Domain(
                f"rail-{n}",
                "rail",
                self.name,
                f"Jetson rail {n} (inside {TOTAL_ID}; {self.source})",
                "soc",
                counter_period_s=period,
                parent=TOTAL_ID,
            )
            for n in names
            if n != self._total_rail
        )
        return (total, *rails)

    @classmethod
    def probe(cls) -> Probe:
        return _probe_default()

    # --- readings ----------------------------------------------------------------------------------
    def _read_rails_w(self) -> dict[str, float | str]:
        """Rail name -> power in W, or an error message for a rail that could not be read."""
        out: dict[str, float | str] = {}
        if self._jtop is not None:
            alive = getattr(self._jtop, "is_alive", None)
            if alive is not None and not alive():
                # jtop's client thread stops when the service goes away: its last values are stale.
                return {name: "jtop lost its connection to the jtop service" for name in self._names}
            power = self._power_dict()
            rails = dict(power.get("rail") or {})
            tot = power.get("tot") or {}
            if tot.get("name") in TOTAL_RAILS:
                rails.setdefault(str(tot["name"]), tot)
            for name in self._names:
                value = (rails.get(name) or {}).get("power")  # mW
                out[name] = float(value) / 1000.0 if value is not None else f"jtop has no reading for {name}"
            return out
        for rail in self._rails:
            try:
                out[rail.name] = rail.read_w()
            except (OSError, ValueError, AssertionError) as exc:
                out[rail.name] = f"cannot read rail {rail.name}: {exc}"
        return out

    def read_power(self) -> list[Sample]:
        values = self._read_rails_w()
        t = now_ns()
        samples = []
        if self._total_rail:
            total = values.get(self._total_rail, f"no reading for {self._total_rail}")
        else:
            parts = [values.get(n, f"no reading for {n}") for n in self._summed]
            failed = [p for p in parts if isinstance(p, str)]
            # A sum with a missing part would be too low: the total goes missing instead.
            total = (
                f"total is missing a rail: {failed[0]}"
                if failed
                else sum(p for p in parts if not isinstance(p, str))
            )
        samples.append(self._sample(t, TOTAL_ID, total))
        for domain in self.domains[1:]:
            samples.append(self._sample(t, domain.id, values.get(domain.id[len("rail-") :], "no reading")))
        return samples

    @staticmethod
    def _sample(t: int, domain_id: str, value: float | str) -> Sample:
        if isinstance(value, str):
            return Sample(t_ns=t, domain=domain_id, error=value)
        return Sample(t_ns=t, domain=domain_id, power_w=value)

    def _close_jtop(self) -> None:
        if self._jtop is not None:
            with contextlib.suppress(Exception):  # the service may be gone already
                self._jtop.close()
            self._jtop = None

    def close(self) -> None:
        self._close_jtop()
