"""The Green AI index, recomputed by hand from its documented definition."""

from __future__ import annotations

import math

import pytest

from wattlab.analysis.green_index import GreenInputs, GreenWeights, green_index
from wattlab.errors import ConfigError


def test_hand_computed_against_a_baseline() -> None:
    run = GreenInputs(quality=0.6, j_per_token=0.4, latency_s=1.5)
    baseline = GreenInputs(quality=0.8, j_per_token=0.5, latency_s=1.0)
    result = green_index(run, baseline)
    # r_q = 0.6/0.8 = 0.75, r_e = 0.5/0.4 = 1.25, r_l = 1.0/1.5 = 2/3; weights 0.5, 0.3, 0.2
    expected = 0.75**0.5 * 1.25**0.3 * (2 / 3) ** 0.2
    assert result.value == pytest.approx(expected)
    assert result.value == pytest.approx(0.8539, abs=1e-4)  # 0.86603 × 1.06924 × 0.92211
    assert result.ratios == pytest.approx({"quality": 0.75, "energy": 1.25, "latency": 2 / 3})
    assert result.weights == pytest.approx({"quality": 0.5, "energy": 0.3, "latency": 0.2})
    assert result.dropped == {}
    assert result.formula == "(0.6/0.8)^0.5 × (0.5/0.4)^0.3 × (1/1.5)^0.2 = 0.8539"
    assert result.as_dict()["reference"]["j_per_token"] == 0.5


def test_the_baseline_scores_one() -> None:
    baseline = GreenInputs(quality=0.7, j_per_token=0.2, latency_s=2.0)
    assert green_index(baseline, baseline).value == pytest.approx(1.0)


def test_halving_quality_is_not_greener_even_with_60_percent_less_energy() -> None:
    baseline = GreenInputs(quality=0.8, j_per_token=1.0, latency_s=1.0)
    four_bit = GreenInputs(quality=0.4, j_per_token=0.4, latency_s=1.0)
    # 0.5^0.5 × 2.5^0.3 × 1^0.2
    result = green_index(four_bit, baseline)
    assert result.value == pytest.approx(0.5**0.5 * 2.5**0.3)
    assert result.value < 1.0


def test_weights_are_normalised_and_configurable() -> None:
    run = GreenInputs(quality=0.9, j_per_token=0.1, latency_s=2.0)
    ref = GreenInputs(quality=0.9, j_per_token=0.2, latency_s=1.0)
    # quality 2, energy 1, latency 1 -> 0.5, 0.25, 0.25: 1^0.5 × 2^0.25 × 0.5^0.25 = 1
    weights = GreenWeights.parse("quality=2,energy=1,latency=1")
    assert green_index(run, ref, weights).value == pytest.approx(1.0)
    energy_only = green_index(run, ref, GreenWeights(quality=0, energy=1, latency=0))
    assert energy_only.value == pytest.approx(2.0)
    assert energy_only.dropped == {"quality": "weight 0", "latency": "weight 0"}


def test_missing_quality_is_dropped_and_the_rest_renormalised() -> None:
    run = GreenInputs(quality=None, j_per_token=0.25, latency_s=0.5)
    ref = GreenInputs(quality=0.8, j_per_token=0.5, latency_s=1.0)
    result = green_index(run, ref)
    # energy 0.3/0.5 = 0.6, latency 0.2/0.5 = 0.4: 2^0.6 × 2^0.4 = 2
    assert result.value == pytest.approx(2.0)
    assert result.weights == pytest.approx({"energy": 0.6, "latency": 0.4})
    assert result.dropped == {"quality": "missing run value"}
    nan_ref = green_index(GreenInputs(0.5, 0.25, 0.5), GreenInputs(math.nan, 0.5, 1.0))
    assert nan_ref.dropped == {"quality": "missing reference value"}


def test_perplexity_counts_lower_as_better() -> None:
    run = GreenInputs(quality=10.0, j_per_token=1.0, latency_s=1.0, quality_higher_is_better=False)
    ref = GreenInputs(quality=12.5, j_per_token=1.0, latency_s=1.0, quality_higher_is_better=False)
    # r_q = 12.5 / 10 = 1.25 -> 1.25^0.5
    assert green_index(run, ref).value == pytest.approx(1.25**0.5)


def test_without_a_reference_the_unit_reference_is_used() -> None:
    run = GreenInputs(quality=0.64, j_per_token=0.5, latency_s=2.0)
    result = green_index(run)
    # (0.64/1)^0.5 × (1/0.5)^0.3 × (1/2)^0.2 = 0.8 × 2^0.1
    assert result.value == pytest.approx(0.8 * 2**0.1)
    assert result.reference.j_per_token == 1.0


def test_from_row_reads_run_columns() -> None:
    row = {"quality": 0.5, "j_per_token": 0.3, "e2e_p50_s": 1.2, "ttft_p50_s": 0.1}
    inputs = GreenInputs.from_row(row, latency_column="ttft_p50_s")
    assert (inputs.quality, inputs.j_per_token, inputs.latency_s) == (0.5, 0.3, 0.1)


def test_zero_quality_gives_zero() -> None:
    ref = GreenInputs(quality=0.5, j_per_token=1.0, latency_s=1.0)
    assert green_index(GreenInputs(0.0, 0.01, 0.1), ref).value == 0.0


@pytest.mark.parametrize(
    ("run", "ref", "message"),
    [
        (GreenInputs(0.5, 0.0, 1.0), GreenInputs(0.5, 1.0, 1.0), "J/token must be > 0"),
        (GreenInputs(0.5, 1.0, -1.0), GreenInputs(0.5, 1.0, 1.0), "latency must be > 0"),
        (GreenInputs(0.5, 1.0, 1.0), GreenInputs(0.0, 1.0, 1.0), "reference run's quality is 0"),
        (GreenInputs(-0.1, 1.0, 1.0), GreenInputs(0.5, 1.0, 1.0), "cannot be negative"),
        (GreenInputs(None, None, None), GreenInputs(0.5, 1.0, 1.0), "needs at least one"),
        (
            GreenInputs(0.5, 1.0, 1.0, quality_metric="f1"),
            GreenInputs(0.5, 1.0, 1.0, quality_metric="rougeL"),
            "cannot compare quality f1",
        ),
    ],
)
def test_impossible_inputs_are_refused(run: GreenInputs, ref: GreenInputs, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        green_index(run, ref)


def test_bad_weights() -> None:
    with pytest.raises(ConfigError, match="unknown Green index weight 'speed'"):
        GreenWeights.parse("speed=1")
    with pytest.raises(ConfigError, match=">= 0"):
        green_index(GreenInputs(1, 1, 1), None, GreenWeights(quality=-1))
