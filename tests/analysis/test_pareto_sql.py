"""The SQL Pareto front of stored runs (wattlab.analysis.front, used by `wattlab pareto`, the report
and the console) equals the pure-Python reference (wattlab.analysis.pareto) on random runs: ties,
duplicates, NULL / NaN / infinite figures, minimised and maximised objectives, 2 and 3 objectives."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wattlab.analysis.front import pareto_runs
from wattlab.analysis.pareto import pareto_front, parse_objectives
from wattlab.app import data
from wattlab.errors import ConfigError
from wattlab.sessions.store import Store

COLUMNS = ["j_per_token", "e2e_p50_s", "throughput_tok_s", "quality"]

# Few distinct values, so ties and exact duplicates are frequent; and the figures a run may lack.
value = st.one_of(
    st.sampled_from([0.0, 1.0, 2.0, 3.0, 2.5, -1.0]),
    st.floats(min_value=-5, max_value=5, allow_nan=False),
    st.sampled_from([None, math.nan, math.inf, -math.inf]),
)
run = st.fixed_dictionaries(
    {
        **{c: value for c in COLUMNS},
        "status": st.sampled_from(["finished", "finished", "finished", "failed"]),
        "session_id": st.sampled_from(["s1", "s2"]),
        "quality_metric": st.sampled_from([None, "accuracy", "perplexity"]),
    }
)
objectives = (
    st.integers(2, 3)
    .flatmap(lambda n: st.lists(st.sampled_from(COLUMNS), min_size=n, max_size=n, unique=True))
    .flatmap(lambda cols: st.tuples(*[st.sampled_from([c, f"{c}:min", f"{c}:max"]) for c in cols]).map(list))
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return Store(tmp_path_factory.mktemp("front") / "runs.duckdb")


def _write(store: Store, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = [{"run_id": f"r{i:05d}", "engine": "vllm", **r} for i, r in enumerate(runs)]
    cols = list(rows[0]) if rows else []
    with store.writer() as con:
        con.execute("DELETE FROM runs")
        if rows:
            one = "(" + ", ".join("?" for _ in cols) + ")"
            con.execute(
                f"INSERT INTO runs ({', '.join(cols)}) VALUES {', '.join(one for _ in rows)}",
                [r[c] for r in rows for c in cols],
            )
    return rows


def _reference(
    rows: list[dict[str, Any]], spec: list[str], session_id: str | None = None
) -> tuple[list[str], int, int]:
    """Front run ids (by run id), considered and excluded counts, the Python way."""
    objs = parse_objectives(spec)
    finished = [r for r in rows if r["status"] == "finished" and session_id in (None, r["session_id"])]
    perplexity = []
    if any(o.column == "quality" for o in objs):  # lower-is-better "quality": not comparable
        perplexity = [r for r in finished if r["quality_metric"] == "perplexity"]
        finished = [r for r in finished if r["quality_metric"] != "perplexity"]
    front = pareto_front(finished, objs)
    considered = len(finished) - len(front.excluded)
    return [finished[i]["run_id"] for i in front.indices], considered, len(front.excluded) + len(perplexity)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(runs=st.lists(run, max_size=40), spec=objectives, one_session=st.booleans())
def test_sql_front_equals_the_python_reference(
    store: Store, runs: list[dict[str, Any]], spec: list[str], one_session: bool
) -> None:
    rows = _write(store, runs)
    session_id = "s1" if one_session else None
    expected, considered, excluded = _reference(rows, spec, session_id)

    result = pareto_runs(store, spec, session_id=session_id)
    assert [r["run_id"] for r in result["front"]] == expected
    assert (result["considered"], result["excluded"]) == (considered, excluded)
    assert len(result["points"]) == considered
    assert [p["run_id"] for p in result["points"] if p["on_front"]] == expected
    # Without the points (what the `wattlab pareto` table asks for), the same front.
    assert pareto_runs(store, spec, session_id=session_id, points=False)["front"] == result["front"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    runs=st.lists(run, max_size=40),
    xy=st.lists(st.sampled_from(COLUMNS), min_size=2, max_size=2, unique=True),
)
def test_console_front_is_the_same_front(store: Store, runs: list[dict[str, Any]], xy: list[str]) -> None:
    """The Pareto screen's query uses the same SQL: same runs, console directions, x/y named."""
    rows = _write(store, runs)
    x, y = xy
    spec = [f"{c}:{data.OBJECTIVES[c].direction}" for c in xy]
    expected, considered, excluded = _reference(rows, spec)
    result = data.pareto(store, x, y)
    assert sorted(r["run_id"] for r in result["front"]) == sorted(expected)
    assert (result["considered"], result["excluded"]) == (considered, excluded)
    assert [(r["x"], r["y"]) for r in result["front"]] == sorted((r["x"], r["y"]) for r in result["front"])


def test_three_objectives_on_a_bigger_random_set(store: Store) -> None:
    """Enough runs that the seed and pivot pruning of the 3-objective query really prunes."""
    import random

    rng = random.Random(7)
    runs = [
        {
            "j_per_token": rng.lognormvariate(0, 1),
            "e2e_p50_s": rng.choice([1.0, 2.0, 3.0]) * rng.random(),
            "throughput_tok_s": rng.random() * 100,
            "quality": rng.choice([0.5, 0.6, 0.7, None]),
            "status": "finished",
            "session_id": "s1",
            "quality_metric": "accuracy",
        }
        for _ in range(3000)
    ]
    rows = _write(store, runs)
    for spec in (["energy", "latency", "quality"], ["j_per_token", "e2e_p50_s", "throughput_tok_s"]):
        expected, considered, _ = _reference(rows, spec)
        result = pareto_runs(store, spec, points=False)
        assert [r["run_id"] for r in result["front"]] == expected
        assert result["considered"] == considered


def test_unknown_or_unsafe_columns_are_refused(store: Store) -> None:
    _write(store, [])
    with pytest.raises(ConfigError, match="no column"):
        pareto_runs(store, ["j_per_token", "nope:min"])
    with pytest.raises(ConfigError, match="no column"):
        pareto_runs(store, ["j_per_token", "run_id; DROP TABLE runs:min"])
    assert pareto_runs(store, ["j_per_token", "quality"])["front"] == []


def test_empty_database(tmp_path: Path) -> None:
    result = pareto_runs(Store(tmp_path / "empty.duckdb"), "energy,latency,quality")
    assert (result["front"], result["considered"], result["excluded"]) == ([], 0, 0)
