"""CPU power *estimated* as system-wide CPU utilization x TDP, for boxes without RAPL.

A model, not a measurement: it ignores idle power, frequency scaling and memory, and is always
labelled `estimated` (method `estimated`, never shown as measured).

TDP, in order:
1. `tdp_w` as configured;
2. codecarbon's CPU table (`data/hardware/cpu_power.csv`, TDP by model name), read straight from
   the installed package without importing codecarbon (which pulls pandas);
3. codecarbon's rule for unknown CPUs: 4 W per logical CPU this box has (so a 2-vCPU VM on a
   64-core host is charged for 2 vCPUs, not for the host's whole package).

Utilization comes from `psutil.cpu_times()` differences kept by this meter, not from
`psutil.cpu_percent()`, whose single per-process baseline any other caller would reset.
"""

from __future__ import annotations

import csv
import functools
import importlib.util
import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from wattlab.errors import ConfigError, MeterUnavailable
from wattlab.meters.base import Domain, Meter, Probe, Sample, now_ns

WATTS_PER_LOGICAL_CPU = 4.0  # codecarbon's DEFAULT_POWER_PER_CORE for CPUs missing from its table


def codecarbon_data_file(relative: str) -> Path | None:
    """A file under the installed codecarbon package's data/ dir, found without importing codecarbon."""
    spec = importlib.util.find_spec("codecarbon")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / "data" / relative
        if path.is_file():
            return path
    return None


def cpu_model_name() -> str:
    """The CPU's marketing name ("AMD EPYC 7763 64-Core Processor"), or "" when unknown."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or ""


_NOISE = re.compile(r"\((?:r|tm)\)|\bcpu\b|@.*$|\b\d+-core\b|\bprocessor\b|\bwith\b.*$", re.IGNORECASE)


def _tokens(model: str) -> list[str]:
    return _NOISE.sub(" ", model).lower().split()


@functools.cache
def _cpu_table() -> tuple[tuple[str, float], ...]:
    path = codecarbon_data_file("hardware/cpu_power.csv")
    if path is None:
        return ()
    rows = []
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            try:
                rows.append((row["Name"], float(row["TDP"])))
            except (KeyError, TypeError, ValueError):
                continue
    return tuple(rows)


def lookup_tdp(model: str) -> tuple[str, float] | None:
    """(table name, TDP in W) for a CPU model name from codecarbon's table, or None.

    An exact match (ignoring "(R)", "CPU", "@ 2.20GHz", "64-Core Processor") wins; else the
    longest table name all of whose words appear, in order, in the model name. A name with no
    model number ("AMD EPYC" in a VM) matches nothing rather than a guess.
    """
    wanted = _tokens(model)
    if not wanted:
        return None
    best: tuple[int, str, float] | None = None
    for name, tdp in _cpu_table():
        tokens = _tokens(name)
        if tokens == wanted:
            return name, tdp
        if (
            tokens
            and len(tokens) >= 2
            and _in_order(tokens, wanted)
            and (best is None or len(tokens) > best[0])
        ):
            best = (len(tokens), name, tdp)
    return (best[1], best[2]) if best else None


def _in_order(needle: list[str], haystack: list[str]) -> bool:
    it = iter(haystack)
    return all(any(word == h for h in it) for word in needle)


def resolve_tdp(tdp_w: float | None = None, model: str | None = None) -> tuple[float, str]:
    """(TDP in W, where it came from) following the module docstring's order."""
    if tdp_w is not None:
        if not tdp_w > 0:
            raise ConfigError(
                f"CPU TDP must be a positive number of watts, got {tdp_w}", fix="e.g. --tdp-w 125"
            )
        return float(tdp_w), "configured"
    model = cpu_model_name() if model is None else model
    found = lookup_tdp(model)
    if found:
        return found[1], f"codecarbon table: {found[0]}"
    cpus = os.cpu_count() or 1
    return (
        WATTS_PER_LOGICAL_CPU * cpus,
        f"default {WATTS_PER_LOGICAL_CPU:.0f} W x {cpus} logical CPUs ({model or 'unknown CPU'} not in "
        "codecarbon's table; set --tdp-w)",
    )


@dataclass
class _CpuTimes:
    busy: float
    total: float


def _cpu_times(psutil: Any) -> _CpuTimes:
    times = psutil.cpu_times()
    fields = times._asdict()
    # On Linux guest time is already inside user/nice: don't count it twice.
    total = sum(fields.values()) - fields.get("guest", 0.0) - fields.get("guest_nice", 0.0)
    idle = fields.get("idle", 0.0) + fields.get("iowait", 0.0)
    return _CpuTimes(busy=total - idle, total=total)


@functools.cache
def _probe_default() -> Probe:
    if importlib.util.find_spec("psutil") is None:
        return Probe("estimate", False, "psutil is not installed", fix="pip install psutil")
    tdp, source = resolve_tdp()
    return Probe(
        "estimate", True, f"CPU utilization x TDP {tdp:.0f} W ({source}); an estimate, not a measurement"
    )


class EstimateMeter(Meter):
    """One domain, `cpu-estimate`: power = CPU utilization (0..1, all cores) x TDP, in W. Estimated."""

    name: ClassVar[str] = "estimate"
    HAS_COUNTERS: ClassVar[bool] = False

    def __init__(self, tdp_w: float | None = None) -> None:
        try:
            import psutil
        except ImportError as exc:
            raise MeterUnavailable("psutil is not installed", fix="pip install psutil") from exc
        self._psutil = psutil
        self.tdp_w, self.tdp_source = resolve_tdp(tdp_w)
        self.domains = (
            Domain(
                id="cpu-estimate",
                kind="cpu",
                meter=self.name,
                label=f"CPU estimated: utilization x TDP {self.tdp_w:.0f} W ({self.tdp_source})",
                device="cpu",
                estimated=True,
            ),
        )
        self._last = _cpu_times(psutil)
        self._last_util = 0.0

    @classmethod
    def probe(cls) -> Probe:
        return _probe_default()

    def read_power(self) -> list[Sample]:
        now = _cpu_times(self._psutil)
        d_total = now.total - self._last.total
        if d_total > 0:
            # CPU times tick in 10 ms steps: between two ticks keep the last utilization.
            self._last_util = min(1.0, max(0.0, (now.busy - self._last.busy) / d_total))
            self._last = now
        util = self._last_util
        return [
            Sample(t_ns=now_ns(), domain="cpu-estimate", power_w=util * self.tdp_w, util_pct=util * 100.0)
        ]
