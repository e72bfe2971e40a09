"""Scaling laws: how J/token or quality grows with model size, as a fitted power law.

    y = a · x^b       e.g. x = parameter count, y = J/token (or quality, or latency)

fitted by ordinary least squares on ln y = ln a + b · ln x — the straight line through the points
on a log-log plot. Returned with R², the coefficient of determination of that log-log regression
(1 − SS_res / SS_tot, both in ln y), and n, the number of points used.

Reading b: J/token ∝ params^b; b = 1 means energy per token doubles when the model doubles; b < 1
means larger models are relatively cheaper per parameter. With few points (a lab sweep has 3-6
sizes) R² is optimistic; report n beside it, as this module does.

Refused with a clear error (ConfigError): fewer than 3 points (two points always fit exactly and
say nothing about the form), a zero or negative or non-finite value (no logarithm), or x values
that are all the same (no slope). Rows with a missing value are skipped and reported.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from wattlab.errors import ConfigError

MIN_POINTS = 3
_TITLE = "Cannot fit a power law"


@dataclass(frozen=True)
class PowerLawFit:
    """y = a · x^b, its goodness of fit in log-log space, and what went into it."""

    a: float
    b: float
    r2: float
    n: int
    x_name: str = "x"
    y_name: str = "y"
    skipped: dict[int, str] = field(default_factory=dict)  # row index -> why it was left out

    def predict(self, x: float) -> float:
        return self.a * x**self.b

    @property
    def formula(self) -> str:
        return (
            f"{self.y_name} = {self.a:.4g} · {self.x_name}^{self.b:.4g}  (R² = {self.r2:.3f}, n = {self.n})"
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "formula": self.formula}


def fit_power_law(
    x: Sequence[float], y: Sequence[float], *, x_name: str = "x", y_name: str = "y"
) -> PowerLawFit:
    """Least-squares fit of y = a·x^b in log-log space (module docstring)."""
    if len(x) != len(y):
        raise ConfigError(f"{len(x)} {x_name} values but {len(y)} {y_name} values", title=_TITLE)
    if len(x) < MIN_POINTS:
        raise ConfigError(
            f"a power-law fit needs at least {MIN_POINTS} points, got {len(x)}",
            fix="sweep at least three model sizes",
            title=_TITLE,
        )
    for name, values in ((x_name, x), (y_name, y)):
        for index, value in enumerate(values):
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(
                    f"{name}[{index}] = {value}: a power law needs finite values > 0 "
                    "(it fits their logarithms)",
                    title=_TITLE,
                )
    log_x = [math.log(v) for v in x]
    log_y = [math.log(v) for v in y]
    mean_x = math.fsum(log_x) / len(log_x)
    mean_y = math.fsum(log_y) / len(log_y)
    sxx = math.fsum((lx - mean_x) ** 2 for lx in log_x)
    if sxx == 0:
        raise ConfigError(f"every {x_name} value is the same: no slope to fit", title=_TITLE)
    sxy = math.fsum((lx - mean_x) * (ly - mean_y) for lx, ly in zip(log_x, log_y, strict=True))
    b = sxy / sxx
    log_a = mean_y - b * mean_x
    ss_res = math.fsum((ly - (log_a + b * lx)) ** 2 for lx, ly in zip(log_x, log_y, strict=True))
    ss_tot = math.fsum((ly - mean_y) ** 2 for ly in log_y)
    # All y equal: the flat line (b = 0) fits exactly, so R² is 1 by convention rather than 0/0.
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    return PowerLawFit(a=math.exp(log_a), b=b, r2=r2, n=len(x), x_name=x_name, y_name=y_name)


def fit_power_law_rows(rows: Sequence[Mapping[str, Any]], x_column: str, y_column: str) -> PowerLawFit:
    """Fit y_column against x_column over run rows; rows missing either value are skipped."""
    xs: list[float] = []
    ys: list[float] = []
    skipped: dict[int, str] = {}
    for index, row in enumerate(rows):
        x_value, y_value = _number(row.get(x_column)), _number(row.get(y_column))
        if x_value is None or y_value is None:
            missing = [c for c, v in ((x_column, x_value), (y_column, y_value)) if v is None]
            skipped[index] = f"missing {', '.join(missing)}"
            continue
        xs.append(x_value)
        ys.append(y_value)
    fit = fit_power_law(xs, ys, x_name=x_column, y_name=y_column)
    return PowerLawFit(fit.a, fit.b, fit.r2, fit.n, x_column, y_column, skipped)


def _number(value: Any) -> float | None:
    """A row value as a float; None when missing (None or NaN). Bad values are left for the fit to refuse."""
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number
