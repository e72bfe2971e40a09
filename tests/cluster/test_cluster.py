"""Sweeps on a real local Ray cluster (`wattlab cluster up --local 3`: a head and 3 worker nodes on
this box, each its own raylet, node id and data dir): runs land in the one DuckDB with their node
ids; a node's agent killed mid-run and the head killed mid-sweep lose nothing; bad input is refused
before anything starts. The cluster is started once for the module (about 20 s)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest

pytest.importorskip("ray", reason="needs Ray: pip install 'wattlab[ray]'")

WATTLAB = [sys.executable, "-m", "wattlab.cli"]


def wattlab(*args: str, timeout: float = 420) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*WATTLAB, *args], capture_output=True, text=True, timeout=timeout)


def sweep_file(tmp_path: Path, name: str, body: str, **session: Any) -> Path:
    lines = ["[session]", f'name = "{name}"', "idle_s = 0.3", 'meters = "estimate"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in session.items()]
    path = tmp_path / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n" + body)
    return path


FAKE = """
[defaults]
engine = "fake"
model = "fake:cluster"
device = "cpu"
input_tokens = 32
requests = 1
batch_size = 1
warmup_requests = 0
options = {{ tok_s = {tok_s}, prefill_tok_s = 2000.0 }}

[grid]
output_tokens = {outputs}
"""


def db() -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(Path(os.environ["WATTLAB_HOME"]) / "wattlab.duckdb"), read_only=True)


def runs_of(session: str) -> list[tuple[Any, ...]]:
    with db() as con:
        return con.execute(
            "SELECT seq, status, node_id, hostname, run_id, error FROM runs WHERE session_id LIKE ? "
            "ORDER BY seq, started_at",
            [session + ".n%"],
        ).fetchall()


def session_of(stdout: str) -> str:
    return stdout.split("session ", 1)[1].split()[0]


@pytest.fixture(scope="module")
def address() -> Any:
    up = wattlab("cluster", "up", "--local", "3", "--json", timeout=180)
    assert up.returncode == 0, up.stderr
    addr = json.loads(up.stdout)["address"]
    assert addr.startswith("ray://")
    yield addr
    down = wattlab("cluster", "down", timeout=120)
    assert down.returncode == 0, down.stderr


def state_of(session: str) -> dict[str, Any]:
    path = Path(os.environ["WATTLAB_HOME"]) / "cluster" / "sessions" / f"{session}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def newest_state() -> dict[str, Any]:
    folder = Path(os.environ["WATTLAB_HOME"]) / "cluster" / "sessions"
    files = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime) if folder.exists() else []
    return json.loads(files[-1].read_text()) if files else {}


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_status_lists_every_node_with_wattlab_version(address: str) -> None:
    out = wattlab("cluster", "status", "--cluster", address, "--json")
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    nodes = status["nodes"]
    assert len(nodes) == 4 and len({n["node_id"] for n in nodes}) == 4  # head + 3 workers
    assert sum(n["head"] for n in nodes) == 1
    assert all(n["wattlab"] for n in nodes)
    assert [n["gpus"] for n in nodes if not n["head"]] == [1, 1, 1]
    assert [n["gpus_busy"] for n in nodes if not n["head"]] == [0, 0, 0]  # no sweep holds them


@pytest.mark.slow
def test_fake_sweep_lands_every_run_in_one_duckdb_across_nodes(address: str, tmp_path: Path) -> None:
    path = sweep_file(tmp_path, "fake3", FAKE.format(tok_s=200.0, outputs="[8, 12, 16, 20, 24, 28]"))
    out = wattlab("sweep", str(path), "--cluster", address, "--quiet")
    assert out.returncode == 0, out.stdout + out.stderr
    session = session_of(out.stdout)
    rows = runs_of(session)
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert {r[1] for r in rows} == {"finished"}
    nodes = {r[2] for r in rows}
    assert len(nodes) >= 2 and all(len(n) > 20 for n in nodes)  # Ray node ids
    assert all(r[3] for r in rows)  # hostname
    with db() as con:
        per_node = con.execute(
            "SELECT s.session_id, count(*) FROM samples s WHERE s.session_id LIKE ? GROUP BY 1",
            [session + ".n%"],
        ).fetchall()
        energy = con.execute(
            "SELECT count(*) FROM runs WHERE session_id LIKE ? AND energy_j > 0", [session + ".n%"]
        ).fetchone()
    assert len(per_node) == 3 and all(n > 0 for _, n in per_node)  # each node's own samples
    assert energy == (6,)
    # The Live screen's view of it: one lane per node, named by node, every run counted.
    from wattlab.cluster.live import tail_for

    snap = tail_for(f"{session}.n2").poll()
    assert snap.session_id == session and snap.runs_done == 6 and snap.status == "finished"
    lanes = [d.id for d in snap.domains]
    assert len(lanes) == 3 and len({lane.split("/")[0] for lane in lanes}) == 3
    assert all(d.history for d in snap.domains)


@pytest.mark.slow
def test_a_node_lost_mid_run_interrupts_it_and_requeues_it(address: str, tmp_path: Path) -> None:
    # 6 runs of 120 tokens at 40 tok/s: each measures ~3 s, long enough to kill an agent inside one.
    path = sweep_file(tmp_path, "nodekill", FAKE.format(tok_s=40.0, outputs="[120, 121, 122, 123, 124, 125]"))
    before = newest_state().get("session_id")
    head = subprocess.Popen(
        [*WATTLAB, "sweep", str(path), "--cluster", address, "--quiet"],
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        state = wait_for(
            lambda: (
                (s := newest_state()).get("session_id") != before
                and any(a["busy"] and a.get("pid") for a in s.get("agents", []))
                and s
            ),
            120,
            "a run handed to a node",
        )
        session = state["session_id"]
        victim = next(a for a in state["agents"] if a["busy"])
        time.sleep(1.5)  # inside the run: samples have streamed
        os.kill(int(victim["pid"]), signal.SIGKILL)  # the node's Ray worker (its agent) dies
        stdout, stderr = head.communicate(timeout=420)
    finally:
        if head.poll() is None:
            head.kill()
    assert head.returncode == 0, stdout + stderr
    rows = runs_of(session)
    lost = [r for r in rows if r[1] == "interrupted"]
    assert len(lost) == 1 and lost[0][0] == victim["busy"]
    assert f"node {victim['label']} was lost" in lost[0][5]
    retried = [r for r in rows if r[0] == victim["busy"] and r[1] == "finished"]
    assert len(retried) == 1 and retried[0][2] != victim["node_id"]
    assert sorted({r[0] for r in rows if r[1] == "finished"}) == [1, 2, 3, 4, 5, 6]
    with db() as con:
        streamed = con.execute(
            "SELECT count(*) FROM samples WHERE session_id = ? AND t_ns >= "
            "(SELECT min(t_ns) FROM marks WHERE run_id = ?)",
            [victim["session_id"], lost[0][4]],
        ).fetchone()
    assert streamed is not None and streamed[0] > 0  # the samples streamed before the node died


@pytest.mark.slow
def test_a_killed_head_resumes_the_sweep_and_pulls_the_nodes_spools(address: str, tmp_path: Path) -> None:
    path = sweep_file(tmp_path, "headkill", FAKE.format(tok_s=50.0, outputs="[100, 101, 102, 103, 104, 105]"))
    before = newest_state().get("session_id")
    head = subprocess.Popen(
        [*WATTLAB, "sweep", str(path), "--cluster", address, "--quiet"],
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        state = wait_for(
            lambda: (
                (s := newest_state()).get("session_id") != before
                and any(a["busy"] for a in s.get("agents", []))
                and s
            ),
            120,
            "a run handed to a node",
        )
        time.sleep(1.0)
        head.send_signal(signal.SIGKILL)  # the head dies mid-run; the nodes keep measuring
        head.wait(timeout=30)
    finally:
        if head.poll() is None:
            head.kill()
    session = state["session_id"]
    again = wattlab("sweep", str(path), "--cluster", address, "--resume", session, "--quiet")
    assert again.returncode == 0, again.stdout + again.stderr
    rows = runs_of(session)
    finished = [r for r in rows if r[1] == "finished"]
    assert sorted(r[0] for r in finished) == [1, 2, 3, 4, 5, 6]  # each run once, none lost
    assert len({r[2] for r in finished}) >= 2
    resumed = state_of(session)
    assert resumed["status"] == "finished" and len(resumed["agents"]) == 3


@pytest.mark.slow
def test_refused_before_anything_runs(address: str, tmp_path: Path) -> None:
    big = sweep_file(
        tmp_path,
        "big",
        FAKE.format(tok_s=200.0, outputs="[8]").replace('device = "cpu"', 'device = "cuda:0"'),
    )
    text = big.read_text().replace("options = {", "options = { tensor_parallel_size = 2,")
    big.write_text(text)
    out = wattlab("sweep", str(big), "--cluster", address)
    assert out.returncode == 2
    assert "needs 2 GPUs on one node" in out.stderr and "has 1" in out.stderr and "fix:" in out.stderr
    missing = sweep_file(
        tmp_path,
        "missing",
        '[[runs]]\nengine = "llamacpp"\nmodel = "/nowhere/model.gguf"\ndevice = "cpu"\n',
    )
    out = wattlab("sweep", str(missing), "--cluster", address)
    assert out.returncode == 2
    assert out.stderr.count("node ") >= 3 and "/nowhere/model.gguf" in out.stderr  # named per node
    assert "Traceback" not in out.stderr


@pytest.mark.slow  # two CLI processes that import Ray: ~4 s
def test_an_unreachable_address_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = sweep_file(tmp_path, "nowhere", FAKE.format(tok_s=200.0, outputs="[8]"))
    out = wattlab("sweep", str(path), "--cluster", "ray://127.0.0.1:9", timeout=60)
    assert out.returncode == 2
    assert "cannot reach the Ray cluster at ray://127.0.0.1:9" in out.stderr
    assert "fix:" in out.stderr and "Traceback" not in out.stderr
    bad = wattlab("sweep", str(path), "--cluster", "not-an-address", timeout=60)
    assert bad.returncode == 2 and "is not HOST:PORT" in bad.stderr


@pytest.mark.slow
def test_llamacpp_sweep_runs_on_several_nodes(address: str, tmp_path: Path) -> None:
    body = (
        '[defaults]\nengine = "llamacpp"\nmodel = "smollm2-135m-instruct"\ndevice = "cpu"\n'
        "input_tokens = 32\nrequests = 1\nbatch_size = 1\nwarmup_requests = 0\n"
        "options = { n_threads = 1 }\n[grid]\noutput_tokens = [8, 12, 16]\n"
    )
    # The cluster from the sweep file's [session] table this time, not the flag.
    out = wattlab("sweep", str(sweep_file(tmp_path, "llama3", body, cluster=address)), "--quiet")
    assert out.returncode == 0, out.stdout + out.stderr
    rows = runs_of(session_of(out.stdout))
    assert [r[1] for r in rows] == ["finished"] * 3
    assert len({r[2] for r in rows}) >= 2
