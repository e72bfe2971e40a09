"""The Meter contract: every power source looks the same to the sampler and the windows.

Units are in the names: `power_w` (W), `energy_j` (J), `t_ns` (ns from `time.monotonic_ns()`,
which is system-wide on Linux, so marks taken in another process line up with samples).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal

Method = Literal["counter", "integrated", "estimated"]
"""How an energy figure was obtained.

counter:    difference of a hardware energy counter (NVML total energy, RAPL energy_uj).
integrated: trapezoid integral of measured power readings.
estimated:  a model, not a measurement (CPU utilization x TDP). Never shown as measured.
"""

METHOD_RANK: dict[str, int] = {"counter": 2, "integrated": 1, "estimated": 0}


def weakest_method(methods: Sequence[str]) -> Method:
    """The least trustworthy of several methods: a sum is only as good as its worst part."""
    if not methods:
        return "estimated"
    worst = min(methods, key=lambda m: METHOD_RANK.get(m, 0))
    return worst  # type: ignore[return-value]


DomainKind = Literal["gpu", "cpu", "dram", "soc", "rail"]


@dataclass(frozen=True, slots=True)
class Domain:
    """One thing whose power is read: a GPU, a CPU package, DRAM, a Jetson board or rail.

    id:        unique in a session: "gpu0", "cpu-package-0", "dram-0", "soc-total", "rail-VDD_GPU_SOC".
    device:    what a run selects to use this domain: "gpu:0" for GPU index 0, "cpu" for the host
               CPU/DRAM, "soc" for a Jetson. Attribution keeps only the domains a run uses.
    has_counter: the meter reads a cumulative energy counter for it (else power is integrated).
    estimated: the readings are a model (the estimate meter), not a measurement.
    counter_period_s: how often the hardware updates the counter or power reading; a window
               shorter than this is flagged.
    parent:    set on sub-domains (Jetson rails inside the board total): never summed into totals.
    """

    id: str
    kind: DomainKind
    meter: str
    label: str
    device: str
    has_counter: bool = False
    estimated: bool = False
    counter_period_s: float | None = None
    parent: str | None = None

    @property
    def method(self) -> Method:
        if self.estimated:
            return "estimated"
        return "counter" if self.has_counter else "integrated"

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "kind": self.kind,
            "meter": self.meter,
            "label": self.label,
            "device": self.device,
            "has_counter": self.has_counter,
            "estimated": self.estimated,
            "counter_period_s": self.counter_period_s,
            "parent": self.parent,
        }

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Domain:
        return cls(**d)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of one domain at one instant. Immutable: screens only ever see snapshots.

    power_w:   power in W (None if this reading has no power value, or failed).
    energy_j:  cumulative energy in J since the meter opened, already unwrapped and reset-corrected
               (None unless this is a counter reading).
    error:     set when the read failed; such a sample is *missing* and lowers window coverage.
    The rest is telemetry for the live view: utilization (%), memory (MiB), clock (MHz), temp (C).
    """

    t_ns: int
    domain: str
    power_w: float | None = None
    energy_j: float | None = None
    util_pct: float | None = None
    mem_util_pct: float | None = None
    mem_used_mib: float | None = None
    clock_mhz: float | None = None
    temp_c: float | None = None
    power_limit_w: float | None = None
    error: str | None = None

    @property
    def missing(self) -> bool:
        return self.error is not None

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"t": self.t_ns, "d": self.domain}
        for key, name in _SHORT_NAMES.items():
            value = getattr(self, name)
            if value is not None:
                out[key] = value
        return out

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Sample:
        kwargs = {name: d[key] for key, name in _SHORT_NAMES.items() if key in d}
        return cls(t_ns=int(d["t"]), domain=str(d["d"]), **kwargs)  # type: ignore[arg-type, call-overload]


# Short keys keep spool files small (a 10-hour sweep at 10 Hz is ~1M lines per domain).
_SHORT_NAMES = {
    "p": "power_w",
    "e": "energy_j",
    "u": "util_pct",
    "mu": "mem_util_pct",
    "mem": "mem_used_mib",
    "c": "clock_mhz",
    "tc": "temp_c",
    "pl": "power_limit_w",
    "err": "error",
}


@dataclass(frozen=True, slots=True)
class Probe:
    """Whether a meter can run on this box, and if not, why and what to do."""

    meter: str
    available: bool
    reason: str = ""
    fix: str | None = None
    details: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, object]:
        return {
            "meter": self.meter,
            "available": self.available,
            "reason": self.reason,
            "fix": self.fix,
            "details": list(self.details),
        }


class Meter(ABC):
    """A power source.

    Contract:
    - `probe()` is a cheap, cached class method saying whether the meter can run here. It never raises.
    - The constructor opens the source; it raises MeterUnavailable (with a fix) when it cannot.
    - `read_power()` is the fast path (called at ~10 Hz on the sampler thread, never on an engine's):
      one Sample per domain with power and telemetry. A failed read returns a Sample with `error`
      set, never a zero.
    - `read_counters()` is the slow path (~2 Hz and at every mark): Samples carrying `energy_j`,
      the cumulative energy since open in J, unwrapped. Meters without counters return [].
    - `close()` releases the source. Idempotent.
    """

    name: ClassVar[str] = "meter"
    HAS_COUNTERS: ClassVar[bool] = False

    domains: tuple[Domain, ...] = ()

    @classmethod
    @abstractmethod
    def probe(cls) -> Probe: ...

    @abstractmethod
    def read_power(self) -> list[Sample]: ...

    def read_counters(self) -> list[Sample]:
        return []

    def close(self) -> None:  # noqa: B027 - optional hook, default no-op
        pass

    def __enter__(self) -> Meter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def now_ns() -> int:
    return time.monotonic_ns()
