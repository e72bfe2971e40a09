"""Pareto fronts against a brute-force definition, on random points with ties and duplicates."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

import pytest

from wattlab.analysis.pareto import (
    STANDARD_OBJECTIVES,
    Objective,
    dominates,
    pareto_front,
    parse_objectives,
)
from wattlab.errors import ConfigError


def _brute_force(points: Sequence[tuple[float, ...]], directions: list[str]) -> list[int]:
    """The definition, O(n²): i is on the front unless some j is no worse everywhere and better somewhere."""

    def better_or_equal(a: float, b: float, direction: str) -> bool:
        return a <= b if direction == "min" else a >= b

    front = []
    for i, p in enumerate(points):
        dominated = any(
            all(better_or_equal(q[k], p[k], d) for k, d in enumerate(directions)) and q != p
            for j, q in enumerate(points)
            if j != i
        )
        if not dominated:
            front.append(i)
    return front


def _objectives(directions: list[str]) -> list[Objective]:
    return [Objective(f"o{k}", f"o{k}", d) for k, d in enumerate(directions)]  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(25))
@pytest.mark.parametrize("dims", [2, 3])
def test_front_matches_brute_force_on_random_points_with_ties(seed: int, dims: int) -> None:
    rng = random.Random(seed * 10 + dims)
    directions = [rng.choice(["min", "max"]) for _ in range(dims)]
    # Few distinct values per axis, so ties and exact duplicates are frequent.
    points = [tuple(float(rng.randint(0, 6)) for _ in range(dims)) for _ in range(rng.randint(1, 60))]
    front = pareto_front(points, _objectives(directions))
    assert front.indices == _brute_force(points, directions)
    assert front.excluded == {}


@pytest.mark.parametrize("seed", range(5))
def test_front_matches_brute_force_on_continuous_points(seed: int) -> None:
    rng = random.Random(seed)
    points = [(rng.random(), rng.random(), rng.random()) for _ in range(200)]
    directions = ["min", "min", "max"]
    assert pareto_front(points, _objectives(directions)).indices == _brute_force(points, directions)
    two_d = [p[:2] for p in points]
    assert pareto_front(two_d, _objectives(["min", "max"])).indices == _brute_force(two_d, ["min", "max"])


def test_hand_case_with_named_objectives_ties_and_duplicates() -> None:
    runs = [
        {"run": "fp32-b1", "j_per_token": 3.2, "quality": 0.80},
        {"run": "bf16-b64", "j_per_token": 0.05, "quality": 0.80},  # beats fp32-b1: cheaper, same quality
        {"run": "q4-b64", "j_per_token": 0.03, "quality": 0.70},  # cheapest, worse: on the front
        {"run": "bf16-b64-again", "j_per_token": 0.05, "quality": 0.80},  # duplicate: also on the front
        {"run": "q8-b64", "j_per_token": 0.05, "quality": 0.75},  # same J/token, worse quality: dominated
        {"run": "fp16-b8", "j_per_token": 0.2, "quality": 0.85},  # best quality: on the front
    ]
    front = pareto_front(runs, "energy,quality")
    assert [runs[i]["run"] for i in front.indices] == ["bf16-b64", "q4-b64", "bf16-b64-again", "fp16-b8"]
    assert 0 not in front and 1 in front


def test_missing_and_nan_points_are_excluded_and_reported() -> None:
    runs: list[dict[str, Any]] = [
        {"j_per_token": 0.1, "e2e_p50_s": 1.0},
        {"j_per_token": None, "e2e_p50_s": 0.1},
        {"j_per_token": math.nan, "e2e_p50_s": 0.1},
        {"e2e_p50_s": 0.1},
        {"j_per_token": "fast", "e2e_p50_s": 0.1},
        {"j_per_token": 0.2, "e2e_p50_s": 0.5},
    ]
    front = pareto_front(runs, ["j_per_token", "latency"])
    assert front.indices == [0, 5]
    assert front.excluded == {
        1: "missing j_per_token",
        2: "j_per_token is nan",
        3: "missing j_per_token",
        4: "j_per_token is not a number ('fast')",
    }


def test_empty_input_gives_an_empty_front() -> None:
    assert pareto_front([], "j_per_token,quality").indices == []


def test_dominates() -> None:
    assert dominates((1, 1), (1, 2))
    assert not dominates((1, 2), (1, 2))  # equal points do not dominate each other
    assert not dominates((0, 3), (1, 2))


def test_parse_objectives() -> None:
    energy, latency, quality = parse_objectives("energy, latency ,quality")
    assert (energy.column, energy.direction) == ("j_per_token", "min")
    assert (latency.column, latency.direction) == ("e2e_p50_s", "min")
    assert (quality.column, quality.direction) == ("quality", "max")
    throughput, custom = parse_objectives(["throughput", "peak_w:min"])
    assert throughput.direction == "max"
    assert (custom.column, custom.direction) == ("peak_w", "min")
    assert {
        "j_per_token",
        "e2e_p50_s",
        "ttft_p50_s",
        "throughput_tok_s",
        "gco2e_per_request",
        "quality",
    } <= set(STANDARD_OBJECTIVES)
    assert STANDARD_OBJECTIVES["gco2e_per_request"].direction == "min"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("quality", "at least two objectives"),
        ("energy,j_per_token", "repeat"),
        ("energy,speed", "unknown objective 'speed'"),
        ("energy,peak_w:up", "bad objective"),
    ],
)
def test_parse_objectives_errors(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_objectives(spec)


def test_positional_points_need_one_value_per_objective() -> None:
    front = pareto_front([(1.0, 2.0), (1.0,)], "energy,latency")
    assert front.indices == [0]
    assert front.excluded == {1: "has 1 values for 2 objectives"}
