"""The cluster code's pieces that need no running cluster: addresses, GPU needs, the head's mirror
spool (streamed chunks, a torn line after a killed head, the per-run commit), the Live merge, and
that the console's side of it never imports Ray."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from wattlab.cluster import normalise_address
from wattlab.cluster.head import Mirror, gpu_need
from wattlab.cluster.live import merge
from wattlab.errors import ConfigError
from wattlab.sessions.live import DomainLive, LiveTail
from wattlab.sessions.result import RunResult
from wattlab.sessions.spec import RunSpec
from wattlab.sessions.store import Store


def test_addresses_are_checked_before_any_connection() -> None:
    assert normalise_address("ray://10.0.0.5:10001") == "ray://10.0.0.5:10001"
    assert normalise_address(" 10.0.0.5:6379 ") == "10.0.0.5:6379"
    with pytest.raises(ConfigError) as err:
        normalise_address("ray://head")
    assert "is not HOST:PORT" in err.value.message and "ray://" in (err.value.fix or "")


def test_a_run_needs_tensor_times_pipeline_gpus_on_a_gpu_and_none_on_the_cpu() -> None:
    gpu = RunSpec(
        engine="vllm",
        model="x",
        device="cuda",
        options={"tensor_parallel_size": 2, "pipeline_parallel_size": 2},
    )
    assert gpu_need(gpu) == 4
    assert gpu_need(RunSpec(engine="vllm", model="x", device="cuda")) == 1
    assert gpu_need(RunSpec(engine="fake", model="fake:x", device="cpu")) == 0


def _lines(*items: dict[str, object]) -> bytes:
    return b"".join(json.dumps(i).encode() + b"\n" for i in items)


def test_the_mirror_commits_each_run_with_its_samples_and_reopens_after_a_torn_line(tmp_path: Path) -> None:
    store = Store(tmp_path / "head.duckdb")
    sid = "261129-120000-abcd.n1"
    mirror = Mirror(sid, "box:aaaaaaaa", store)
    mirror.open()
    session = {"session_id": sid, "name": "cluster", "status": "running", "created_at": "2026-11-29T12:00:00"}
    header = {"wattlab_timeline": 1, "domains": [{"id": "cpu", "meter": "estimate", "kind": "cpu"}]}
    samples = [{"t": 1_000 + k, "d": "cpu", "p": 8.0 + k} for k in range(5)]
    row = RunResult(run_id=f"{sid}-001", session_id=sid, seq=1, status="finished", node_id="a" * 28)
    ended = mirror.feed(
        _lines(
            {"ev": "session_start", "session": session}, {"ev": "run_start", "seq": 1, "run_id": row.run_id}
        ),
        _lines(header, *samples[:3]),
    )
    assert ended == []
    ended = mirror.feed(_lines({"ev": "run_end", "result": row.as_dict()}), _lines(*samples[3:]))
    assert [r.run_id for r in ended] == [row.run_id]
    assert mirror.commit_run(ended[0])
    with store.reader() as con:
        assert con.execute("SELECT node_id FROM runs").fetchall() == [("a" * 28,)]
        assert con.execute("SELECT count(*) FROM samples WHERE session_id = ?", [sid]).fetchone() == (5,)
    sizes = list(mirror.offsets)
    mirror.close()
    # A head killed mid-write leaves half a line: the reopened mirror drops it and asks from there.
    with open(mirror.spool.timeline_path, "ab") as f:
        f.write(b'{"t": 2000, "d": "cp')
    again = Mirror(sid, "box:aaaaaaaa", store)
    again.open()
    assert again.offsets == sizes
    assert again.ended[1].run_id == row.run_id and again.started == {1: row.run_id}
    assert again.domains.keys() == {"cpu"}
    summary = again.ingest("finished")  # the end of the sweep: the recovery path, idempotent
    assert summary["runs"] == 1 and summary["interrupted"] == []
    with store.reader() as con:
        assert con.execute("SELECT count(*) FROM samples WHERE session_id = ?", [sid]).fetchone() == (5,)
    again.close()


def _snapshot(session_id: str, domain: str, history: tuple[tuple[float, float], ...]) -> object:
    tail = LiveTail.for_session(session_id)
    snap = tail.poll()
    lane = DomainLive(domain, domain, "cpu", "estimated", history[-1][1], None, None, None, None, history, 0)
    return snap.__class__(**{**snap.__dict__, "domains": (lane,), "runs_done": 2, "session_energy_j": 3.0})


def test_live_merges_node_sessions_into_one_lane_per_node_on_one_time_axis() -> None:
    a = _snapshot("s.n1", "cpu", ((0.0, 5.0), (1.0, 6.0)))
    b = _snapshot("s.n2", "cpu", ((0.0, 7.0), (1.0, 8.0)))
    merged = merge("s", [("box1:aaaa", a), ("box2:bbbb", b)], {"status": "running"}, [0.0, 2.5])  # type: ignore[list-item]
    assert [d.id for d in merged.domains] == ["box1:aaaa/cpu", "box2:bbbb/cpu"]
    assert merged.domains[1].history == ((2.5, 7.0), (3.5, 8.0))  # started 2.5 s after node 1
    assert merged.runs_done == 4 and merged.session_energy_j == 6.0 and merged.session_id == "s"


def test_the_console_side_never_imports_ray() -> None:
    code = (
        "import sys, wattlab.cluster, wattlab.cluster.live, wattlab.cli_cluster, wattlab.app.screens.history;"
        "print('ray' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


class _FlakyRay:
    """A stand-in for the ray module whose client handshake fails `failures` times first."""

    def __init__(self, failures: int, reason: str) -> None:
        self.failures, self.reason, self.calls, self.up = failures, reason, 0, False

    def is_initialized(self) -> bool:
        return self.up

    def shutdown(self) -> None:
        self.up = False

    def init(self, **_: object) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionAbortedError(f"Initialization failure from server:\nTraceback\n{self.reason}")
        self.up = True


def test_a_failed_client_handshake_is_retried_and_a_lasting_one_names_the_servers_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import socket

    import wattlab.cluster as cluster

    with socket.socket() as listener:  # a port that answers, as a live head's would
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        address = f"ray://127.0.0.1:{listener.getsockname()[1]}"
        monkeypatch.setattr(cluster.time, "sleep", lambda _s: None)
        flaky = _FlakyRay(2, "RuntimeError: Proxy failed to Connect to backend!")
        monkeypatch.setattr(cluster, "import_ray", lambda: flaky)
        assert cluster.connect(address) is flaky and flaky.calls == 3

        lasting = _FlakyRay(10**6, "RuntimeError: Proxy failed to Connect to backend!")
        monkeypatch.setattr(cluster, "import_ray", lambda: lasting)
        with pytest.raises(ConfigError) as err:
            cluster.connect(address, handshake_s=0.0)
    assert "Proxy failed to Connect to backend" in err.value.message
    assert lasting.calls == 1
