"""Pareto fronts over runs: which runs no other run beats on every chosen objective.

Pure functions over plain rows (dicts from a DuckDB query, or tuples); nothing here touches the
database, so `wattlab pareto`, the console and the report all call the same code.

    objectives = parse_objectives("j_per_token,quality")         # or ["energy", "latency", "quality"]
    front = pareto_front(rows, objectives)
    front.indices    # positions in `rows` of the non-dominated runs, ascending
    front.excluded   # {position: "missing quality"} — rows that could not be placed

Definitions. Each objective has a direction; "max" objectives are negated so that every objective
is minimised. Run p dominates run q when p is no worse than q on every objective and strictly
better on at least one. The front is every run that no other run dominates. Consequences:
- duplicates (identical on every objective) do not dominate each other: all of them are on the
  front when one of them is;
- a tie on one objective is broken by the others (same J/token, lower latency wins);
- a row with a missing (None), NaN or infinite value on any chosen objective is excluded and
  reported, never silently treated as 0.

Cost: O(n log n) for two objectives (sort, then one sweep); for three or more, a sort followed by
a check of each run against the front found so far, O(n·f) for a front of size f — fine for the
hundreds of runs a lab database holds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from wattlab.errors import ConfigError

Direction = Literal["min", "max"]


@dataclass(frozen=True)
class Objective:
    """One axis of the front: the run column it reads and which way is better."""

    name: str
    column: str
    direction: Direction
    label: str = ""

    def key(self, value: float) -> float:
        """The value as a quantity to minimise."""
        return value if self.direction == "min" else -value


STANDARD_OBJECTIVES: dict[str, Objective] = {
    o.name: o
    for o in (
        Objective("j_per_token", "j_per_token", "min", "energy per output token (J)"),
        Objective("e2e_p50_s", "e2e_p50_s", "min", "median end-to-end latency (s)"),
        Objective(
            "ttft_p50_s", "ttft_p50_s", "min", "median TTFT, headline: service offline, client online (s)"
        ),
        Objective("ttft_service_p50_s", "ttft_service_p50_s", "min", "median TTFT from scheduled (s)"),
        Objective("ttft_client_p50_s", "ttft_client_p50_s", "min", "median TTFT from arrival (s)"),
        Objective("throughput_tok_s", "throughput_tok_s", "max", "output throughput (tokens/s)"),
        Objective("gco2e_per_request", "gco2e_per_request", "min", "carbon per request (gCO2e)"),
        Objective("quality", "quality", "max", "task quality (primary metric, higher is better)"),
        Objective("perplexity", "perplexity", "min", "perplexity (lower is better)"),
    )
}

# Short names users type: `wattlab pareto --objectives energy,latency,quality`.
OBJECTIVE_ALIASES: dict[str, str] = {
    "energy": "j_per_token",
    "latency": "e2e_p50_s",
    "ttft": "ttft_p50_s",
    "ttft_service": "ttft_service_p50_s",
    "ttft_client": "ttft_client_p50_s",
    "throughput": "throughput_tok_s",
    "carbon": "gco2e_per_request",
    "co2": "gco2e_per_request",
    "gco2e": "gco2e_per_request",
}

DEFAULT_OBJECTIVES = ("j_per_token", "quality")


@dataclass(frozen=True)
class ParetoFront:
    """The non-dominated rows and the rows that could not be compared."""

    objectives: tuple[Objective, ...]
    indices: list[int]
    excluded: dict[int, str] = field(default_factory=dict)

    def __contains__(self, index: object) -> bool:
        return index in self.indices


def parse_objectives(spec: str | Sequence[str | Objective]) -> tuple[Objective, ...]:
    """Objectives from "a,b[,c]" or a list. Names: STANDARD_OBJECTIVES keys, OBJECTIVE_ALIASES, or
    "column:min" / "column:max" for any other numeric run column."""
    parts = [p.strip() for p in spec.split(",")] if isinstance(spec, str) else list(spec)
    objectives = tuple(part if isinstance(part, Objective) else _objective(part) for part in parts if part)
    if len(objectives) < 2:
        raise ConfigError(
            f"a Pareto front needs at least two objectives, got {len(objectives)}",
            fix="e.g. --objectives j_per_token,quality or energy,latency,quality",
        )
    columns = [o.column for o in objectives]
    if len(set(columns)) != len(columns):
        raise ConfigError(f"objective columns repeat: {', '.join(columns)}")
    return objectives


def _objective(name: str) -> Objective:
    if ":" in name:
        column, _, direction = name.partition(":")
        if direction not in ("min", "max") or not column:
            raise ConfigError(f"bad objective {name!r}", fix="write column:min or column:max")
        return Objective(column, column, cast(Direction, direction))
    key = OBJECTIVE_ALIASES.get(name, name)
    if key not in STANDARD_OBJECTIVES:
        known = sorted([*STANDARD_OBJECTIVES, *OBJECTIVE_ALIASES])
        raise ConfigError(
            f"unknown objective {name!r}",
            fix=f"use one of {', '.join(known)}, or column:min / column:max",
        )
    return STANDARD_OBJECTIVES[key]


def pareto_front(
    points: Sequence[Mapping[str, Any] | Sequence[Any]],
    objectives: str | Sequence[str | Objective],
) -> ParetoFront:
    """The non-dominated subset of `points` (see the module docstring for the rules).

    A point is a mapping read by each objective's column, or a sequence read positionally in the
    order of `objectives`.
    """
    chosen = parse_objectives(objectives)
    keyed: list[tuple[tuple[float, ...], int]] = []
    excluded: dict[int, str] = {}
    for index, point in enumerate(points):
        values, problem = _values(point, chosen)
        if problem:
            excluded[index] = problem
        else:
            keyed.append((tuple(o.key(v) for o, v in zip(chosen, values, strict=True)), index))
    front = _front_2d(keyed) if len(chosen) == 2 else _front_nd(keyed)
    return ParetoFront(objectives=chosen, indices=sorted(front), excluded=excluded)


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """a dominates b, both as quantities to minimise."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(x < y for x, y in zip(a, b, strict=True))


def _values(
    point: Mapping[str, Any] | Sequence[Any], objectives: tuple[Objective, ...]
) -> tuple[list[float], str]:
    """The point's objective values, or a reason it cannot be placed."""
    if isinstance(point, Mapping):
        raw = [point.get(o.column) for o in objectives]
    else:
        if len(point) != len(objectives):
            return [], f"has {len(point)} values for {len(objectives)} objectives"
        raw = list(point)
    values: list[float] = []
    for objective, value in zip(objectives, raw, strict=True):
        if value is None:
            return [], f"missing {objective.column}"
        try:
            number = float(value)
        except (TypeError, ValueError):
            return [], f"{objective.column} is not a number ({value!r})"
        if not math.isfinite(number):
            return [], f"{objective.column} is {number}"
        values.append(number)
    return values, ""


def _front_2d(keyed: list[tuple[tuple[float, ...], int]]) -> list[int]:
    """Sort by the first objective, then sweep keeping the best second objective seen so far.

    Points sharing a first-objective value form a group; only the group's best second value can be
    on the front (its other members are dominated within the group), and it is on the front only if
    it is strictly better than every point with a smaller first value. All duplicates of that best
    value are kept.
    """
    ordered = sorted(keyed)
    front: list[int] = []
    best_second = math.inf
    i = 0
    while i < len(ordered):
        first = ordered[i][0][0]
        j = i
        while j < len(ordered) and ordered[j][0][0] == first:
            j += 1
        group_best = ordered[i][0][1]  # the group is sorted by its second value
        if group_best < best_second:
            front.extend(index for values, index in ordered[i:j] if values[1] == group_best)
            best_second = group_best
        i = j
    return front


def _front_nd(keyed: list[tuple[tuple[float, ...], int]]) -> list[int]:
    """Lexicographic sort, then keep each point no front member dominates.

    A dominator always sorts before what it dominates, and anything dominated by a non-front point is
    also dominated by the front point that beats it (dominance is transitive), so checking against
    the front alone is enough.
    """
    front: list[tuple[tuple[float, ...], int]] = []
    for values, index in sorted(keyed):
        if not any(dominates(kept, values) for kept, _ in front):
            front.append((values, index))
    return [index for _, index in front]
