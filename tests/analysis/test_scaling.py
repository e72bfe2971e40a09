"""Power-law fits: known a and b recovered, R² by hand, bad input refused."""

from __future__ import annotations

import math

import pytest

from wattlab.analysis.scaling import fit_power_law, fit_power_law_rows
from wattlab.errors import ConfigError


def test_recovers_an_exact_power_law() -> None:
    params = [135e6, 360e6, 1.7e9, 7e9, 70e9]
    j_per_token = [2.5e-4 * p**0.7 for p in params]
    fit = fit_power_law(params, j_per_token, x_name="params", y_name="j_per_token")
    assert fit.a == pytest.approx(2.5e-4, rel=1e-9)
    assert fit.b == pytest.approx(0.7, rel=1e-12)
    assert fit.r2 == pytest.approx(1.0)
    assert fit.n == 5
    assert fit.predict(1e9) == pytest.approx(2.5e-4 * 1e9**0.7)
    assert fit.formula.startswith("j_per_token = 0.00025 · params^0.7")


def test_recovers_a_negative_exponent_under_noise_orthogonal_to_x() -> None:
    # ln x centred is (−2, −1, 0, 1, 2)·ln 2. Log-noise (u, −v, 0, v, −u) has zero mean and is
    # orthogonal to it when −2u + v + v − 2u = 0, i.e. v = 2u: least squares then returns a and b
    # exactly, while the noise still leaves R² below 1.
    x = [1.0, 2.0, 4.0, 8.0, 16.0]
    u = 0.05
    v = 2 * u
    noise = [math.exp(u), math.exp(-v), 1.0, math.exp(v), math.exp(-u)]
    y = [3.0 * xi**-0.5 * n for xi, n in zip(x, noise, strict=True)]
    fit = fit_power_law(x, y)
    assert fit.b == pytest.approx(-0.5, abs=1e-12)
    assert fit.a == pytest.approx(3.0, rel=1e-12)
    assert 0.9 < fit.r2 < 1.0


def test_r2_by_hand() -> None:
    # ln x = 0, 1, 2; ln y = 0, 1, 3
    # b = Sxy/Sxx = 3/2; ln a = 4/3 − 3/2 = −1/6
    # residuals 1/6, −1/3, 1/6 -> SS_res = 1/6; SS_tot = 14/3 -> R² = 1 − (1/6)/(14/3) = 27/28
    x = [1.0, math.e, math.e**2]
    y = [1.0, math.e, math.e**3]
    fit = fit_power_law(x, y)
    assert fit.b == pytest.approx(1.5)
    assert fit.a == pytest.approx(math.exp(-1 / 6))
    assert fit.r2 == pytest.approx(27 / 28)


def test_flat_y_fits_with_zero_exponent() -> None:
    fit = fit_power_law([1.0, 10.0, 100.0], [0.5, 0.5, 0.5])
    assert (fit.b, fit.r2) == (pytest.approx(0.0), 1.0)


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        ([1.0, 2.0], [1.0, 2.0], "at least 3 points, got 2"),
        ([1.0, 2.0, 0.0], [1.0, 2.0, 3.0], r"x\[2\] = 0.0"),
        ([1.0, 2.0, 3.0], [1.0, -2.0, 3.0], r"y\[1\] = -2.0"),
        ([1.0, 2.0, 3.0], [1.0, math.inf, 3.0], r"y\[1\] = inf"),
        ([5.0, 5.0, 5.0], [1.0, 2.0, 3.0], "no slope"),
        ([1.0, 2.0, 3.0], [1.0, 2.0], "3 x values but 2 y values"),
    ],
)
def test_refuses_bad_input(x: list[float], y: list[float], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        fit_power_law(x, y)
    assert caught.value.title == "Cannot fit a power law"


def test_rows_skip_missing_values_and_report_them() -> None:
    rows = [
        {"params": 1e8, "j_per_token": 2 * 1e8**0.5},
        {"params": 4e8, "j_per_token": None},
        {"params": 1e9, "j_per_token": 2 * 1e9**0.5},
        {"params": float("nan"), "j_per_token": 1.0},
        {"params": 1e10, "j_per_token": 2 * 1e10**0.5},
    ]
    fit = fit_power_law_rows(rows, "params", "j_per_token")
    assert fit.n == 3
    assert fit.b == pytest.approx(0.5)
    assert fit.skipped == {1: "missing j_per_token", 3: "missing params"}
    assert fit.as_dict()["formula"] == fit.formula
    with pytest.raises(ConfigError, match="at least 3 points"):
        fit_power_law_rows(rows[:2], "params", "j_per_token")
