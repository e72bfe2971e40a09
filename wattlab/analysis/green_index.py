"""The Green AI index: one number for quality, energy per token and latency, relative to a reference.

Definition (recompute it by hand from the inputs it is always shown with):

    r_quality = Q / Q_ref            (Q_ref / Q for a lower-is-better metric such as perplexity)
    r_energy  = E_ref / E            E: energy per output token, J/token
    r_latency = L_ref / L            L: latency, s (median end-to-end by default)

    green_index = r_quality^w_q × r_energy^w_e × r_latency^w_l,   weights normalised to sum to 1

a weighted geometric mean of "how many times better than the reference" on each axis. The reference
scores exactly 1; above 1 is greener, below 1 is worse. Default weights: quality 0.5, energy 0.3,
latency 0.2 — so quality dominates: a 4-bit variant that cuts J/token by 60% (r_energy = 2.5) but
halves F1 (r_quality = 0.5), at equal latency, scores 0.5^0.5 × 2.5^0.3 = 0.93: not greener.
Because it is a geometric mean, a 10% change on an axis moves the index by the same factor whatever
the units, and a run with zero quality scores 0 whatever its energy.

The reference is normally the session's baseline run (`wattlab report` compares every run to it).
Without one, `UNIT_REFERENCE` is used: quality 1 (a perfect score, or perplexity 1), 1 J/token and
1 s; the index is then an absolute figure in those units.

Missing inputs: a component whose run or reference value is missing (None, NaN) — a speed run
with no task has no quality — is dropped, the remaining weights are renormalised, and the drop is
reported in `dropped`. Impossible inputs (energy or latency <= 0, negative quality, zero reference
quality) raise ConfigError instead: they mean a measurement went wrong.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from wattlab.errors import ConfigError

COMPONENTS = ("quality", "energy", "latency")


@dataclass(frozen=True)
class GreenWeights:
    """Relative importance of each axis; only the ratios matter (they are normalised)."""

    quality: float = 0.5
    energy: float = 0.3
    latency: float = 0.2

    @classmethod
    def parse(cls, spec: str) -> GreenWeights:
        """From "quality=0.6,energy=0.3,latency=0.1" (omitted axes keep their defaults)."""
        values: dict[str, float] = {}
        for part in (p.strip() for p in spec.split(",") if p.strip()):
            name, _, number = part.partition("=")
            name = name.strip()
            if name not in COMPONENTS:
                raise ConfigError(f"unknown Green index weight {name!r}", fix=f"use {', '.join(COMPONENTS)}")
            try:
                values[name] = float(number)
            except ValueError as exc:
                raise ConfigError(f"weight {name} is not a number: {number!r}") from exc
        return cls(**values)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


DEFAULT_WEIGHTS = GreenWeights()


@dataclass(frozen=True)
class GreenInputs:
    """The three figures of one run (or of the reference)."""

    quality: float | None
    j_per_token: float | None
    latency_s: float | None
    quality_higher_is_better: bool = True
    quality_metric: str | None = None

    @classmethod
    def from_row(
        cls,
        row: Mapping[str, Any],
        *,
        quality_column: str = "quality",
        latency_column: str = "e2e_p50_s",
        quality_higher_is_better: bool = True,
        quality_metric: str | None = None,
    ) -> GreenInputs:
        """From a run row (a dict with j_per_token, the latency column and the quality column)."""
        return cls(
            quality=row.get(quality_column),
            j_per_token=row.get("j_per_token"),
            latency_s=row.get(latency_column),
            quality_higher_is_better=quality_higher_is_better,
            quality_metric=quality_metric,
        )


UNIT_REFERENCE = GreenInputs(quality=1.0, j_per_token=1.0, latency_s=1.0)


@dataclass(frozen=True)
class GreenIndex:
    """The index with everything needed to check it."""

    value: float
    run: GreenInputs
    reference: GreenInputs
    weights: dict[str, float]  # normalised weights of the components used
    ratios: dict[str, float]  # r_quality, r_energy, r_latency of the components used
    dropped: dict[str, str] = field(default_factory=dict)  # component -> why it was left out
    formula: str = ""  # the computation written out with its numbers

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def green_index(
    run: GreenInputs, reference: GreenInputs | None = None, weights: GreenWeights = DEFAULT_WEIGHTS
) -> GreenIndex:
    """The Green AI index of `run` against `reference` (UNIT_REFERENCE when None)."""
    ref = reference if reference is not None else _unit_reference_for(run)
    if run.quality_higher_is_better != ref.quality_higher_is_better or (
        run.quality_metric and ref.quality_metric and run.quality_metric != ref.quality_metric
    ):
        raise ConfigError(
            f"cannot compare quality {run.quality_metric or '?'} "
            f"with reference quality {ref.quality_metric or '?'}",
            fix="compare runs of the same task",
        )
    raw_weights = weights.as_dict()
    if any(w < 0 or not math.isfinite(w) for w in raw_weights.values()):
        raise ConfigError(f"Green index weights must be >= 0, got {raw_weights}")

    pairs = {
        "quality": (run.quality, ref.quality),
        "energy": (run.j_per_token, ref.j_per_token),
        "latency": (run.latency_s, ref.latency_s),
    }
    ratios: dict[str, float] = {}
    terms: dict[str, str] = {}
    dropped: dict[str, str] = {}
    for name in COMPONENTS:
        value, ref_value = (_number(v) for v in pairs[name])
        if raw_weights[name] == 0:
            dropped[name] = "weight 0"
        elif value is None or ref_value is None:
            dropped[name] = f"missing {'run' if value is None else 'reference'} value"
        else:
            ratios[name], terms[name] = _ratio(name, value, ref_value, run.quality_higher_is_better)
    if not ratios:
        raise ConfigError(
            "the Green AI index needs at least one of quality, J/token or latency for both the run and "
            f"the reference ({'; '.join(f'{k}: {v}' for k, v in dropped.items())})"
        )
    total = math.fsum(raw_weights[name] for name in ratios)
    used = {name: raw_weights[name] / total for name in ratios}
    value = math.prod(ratios[name] ** used[name] for name in ratios)
    formula = " × ".join(f"{terms[name]}^{used[name]:.3g}" for name in ratios) + f" = {value:.4g}"
    return GreenIndex(
        value=value, run=run, reference=ref, weights=used, ratios=ratios, dropped=dropped, formula=formula
    )


def _unit_reference_for(run: GreenInputs) -> GreenInputs:
    return GreenInputs(
        quality=1.0,
        j_per_token=1.0,
        latency_s=1.0,
        quality_higher_is_better=run.quality_higher_is_better,
        quality_metric=run.quality_metric,
    )


def _number(value: float | None) -> float | None:
    """The value as a float, or None when it is missing (None or NaN)."""
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def _ratio(name: str, value: float, ref_value: float, higher_is_better: bool) -> tuple[float, str]:
    """(ratio, "(numerator/denominator)") for one component; "better than reference" is > 1."""
    if name == "quality":
        if value < 0 or ref_value < 0:
            raise ConfigError(f"quality cannot be negative (run {value}, reference {ref_value})")
        if higher_is_better:
            if ref_value == 0:
                raise ConfigError("the reference run's quality is 0: nothing can be compared with it")
            return value / ref_value, f"({value:.4g}/{ref_value:.4g})"
        if value == 0 or ref_value == 0:
            raise ConfigError(f"perplexity-like quality must be > 0 (run {value}, reference {ref_value})")
        return ref_value / value, f"({ref_value:.4g}/{value:.4g})"
    if value <= 0 or ref_value <= 0:
        unit = "J/token" if name == "energy" else "latency"
        raise ConfigError(f"{unit} must be > 0 for the Green AI index (run {value}, reference {ref_value})")
    return ref_value / value, f"({ref_value:.4g}/{value:.4g})"
