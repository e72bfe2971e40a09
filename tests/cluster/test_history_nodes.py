"""History with cluster runs: a node menu (hidden while no run has a node) filters the runs in SQL,
and a node column names each run's node as `wattlab cluster status` does (hostname:node id)."""

from __future__ import annotations

import sys
from pathlib import Path

from wattlab.app import data
from wattlab.sessions import commit
from wattlab.sessions.result import RunResult
from wattlab.sessions.store import Store

sys.path.insert(0, str(Path(__file__).parents[1] / "app"))  # the console test helpers

from app_helpers import make_app, pilot_test, settle
from textual.widgets import DataTable, Select

NODES = {"a" * 28: "gpu-box-1", "b" * 28: "gpu-box-2"}


def cluster_db(path: Path) -> Path:
    store = Store(path)
    with store.writer() as con:
        con.execute("BEGIN TRANSACTION")
        for k in range(6):
            node_id = list(NODES)[k % 2]
            session = f"261129-120000-abcd.n{k % 2 + 1}"
            commit.write_session(con, {"session_id": session, "name": "cluster", "status": "finished"})
            commit.write_run(
                con,
                RunResult(
                    run_id=f"{session}-{k + 1:03d}",
                    session_id=session,
                    seq=k + 1,
                    status="finished",
                    engine="fake",
                    model="fake:cluster",
                    started_at=f"2026-11-29T12:00:0{k}",
                    energy_j=1.0 + k,
                    node_id=node_id,
                    hostname=NODES[node_id],
                ),
            )
        commit.write_run(con, RunResult(run_id="one-box-001", session_id="one-box", seq=1, status="finished"))
        con.execute("COMMIT")
    return path


def test_the_history_query_filters_by_node_and_lists_the_nodes(tmp_path: Path) -> None:
    store = Store(cluster_db(tmp_path / "c.duckdb"))
    every = data.history(store, data.RunFilter())
    assert every["nodes"] == [("a" * 28, "gpu-box-1"), ("b" * 28, "gpu-box-2")]
    assert every["total"] == 7
    one = data.history(store, data.RunFilter(node_id="b" * 28))
    assert one["total"] == 3 and {r["hostname"] for r in one["runs"]} == {"gpu-box-2"}


@pilot_test
async def test_history_shows_the_node_menu_and_column_only_for_cluster_runs(tmp_path: Path) -> None:
    app = make_app(cluster_db(tmp_path / "c.duckdb"))
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.press("3")
        await settle(pilot)
        menu = app.screen.query_one("#filter-node", Select)
        assert menu.display
        runs = app.screen.query_one("#runs", DataTable)
        assert runs.row_count == 7
        nodes = [str(c) for c in runs.get_column("node")]
        assert nodes.count(f"gpu-box-1:{'a' * 8}") == 3 and nodes.count("—") + nodes.count("-") <= 1
        menu.value = "a" * 28
        await settle(pilot, 0.5)
        assert runs.row_count == 3
        assert {str(c) for c in runs.get_column("node")} == {f"gpu-box-1:{'a' * 8}"}


@pilot_test
async def test_history_hides_the_node_menu_without_cluster_runs(tmp_path: Path) -> None:
    store = Store(tmp_path / "plain.duckdb")
    with store.writer() as con:
        commit.write_run(con, RunResult(run_id="one-box-001", session_id="one-box", seq=1, status="finished"))
    app = make_app(store.path)
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.press("3")
        await settle(pilot)
        assert not app.screen.query_one("#filter-node", Select).display
        assert "node" not in [c.key.value for c in app.screen.query_one("#runs", DataTable).columns.values()]
