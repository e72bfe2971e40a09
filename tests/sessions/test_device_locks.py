"""One measuring runner per set of devices (sessions/locks.py): real processes contending for device
locks, a dead runner's lock taken over, disjoint GPUs side by side, the first-come queue, the
`overlap` flag (other sessions, foreign GPU processes from a fake NVML) stored, migrated and shown,
and the CLI: `wattlab run` refuses a busy box unless --wait, which queues it (status `queued`)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from wattlab.devices.nvidia import gpu_processes
from wattlab.errors import ConfigError, DeviceBusy
from wattlab.meters.base import Domain
from wattlab.sessions import commit
from wattlab.sessions.locks import HOST, Device, DeviceLocks, session_devices
from wattlab.sessions.overlap import OverlapWatch
from wattlab.sessions.schema import MIGRATIONS, SCHEMA_VERSION, current_version
from wattlab.sessions.spec import RunSpec
from wattlab.sessions.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "meters"))  # the meter tests' fake NVML
from meter_fakes import FakeGpu, FakeNvml

GPU0 = Device("GPU-aaaa", "gpu0", 0)
GPU1 = Device("GPU-bbbb", "gpu1", 1)

# A runner stand-in in its own process: takes the locks (queueing if need be), says "held", and
# keeps them until the test closes its stdin.
HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from wattlab.sessions.locks import Device, DeviceLocks
    root, session, specs = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    devices = [Device(key, label, None) for key, label in (s.split("=") for s in specs)]
    locks = DeviceLocks(devices, session, root=root)
    locks.acquire(wait=True, poll_s=0.05)
    print("held", flush=True)
    sys.stdin.read()
    locks.release()
    """
)


def _holder(root: Path, session: str, *devices: str, wait_held: bool = True) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(root), session, *devices],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    if wait_held:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def _until(check: Callable[[], Any], timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for p in started:  # only the processes this test started
        if p.poll() is None:
            p.kill()
            p.wait()


# --- the locks ------------------------------------------------------------------------------------
def test_a_second_session_on_busy_devices_is_refused_or_queued(tmp_path: Path, procs: list) -> None:
    holder = _holder(tmp_path, "sess-a", "host=host")
    procs.append(holder)
    locks = DeviceLocks([HOST], "sess-b", root=tmp_path)
    blockers = locks.try_acquire()
    assert [(b["session_id"], b["on"], b["pid"]) for b in blockers] == [("sess-a", ["host"], holder.pid)]
    with pytest.raises(DeviceBusy) as refused:
        locks.acquire(wait=False)
    assert "host: session sess-a is measuring" in refused.value.message and f"pid {holder.pid}" in str(
        refused.value
    )
    assert "--wait" in (refused.value.fix or "") and "cuda" not in (refused.value.fix or "")  # no GPU here

    queued: list[list[dict[str, Any]]] = []
    waiter = threading.Thread(target=locks.acquire, kwargs={"on_queued": queued.append, "poll_s": 0.05})
    waiter.start()
    _until(lambda: queued)
    assert queued[0][0]["session_id"] == "sess-a" and not locks.held
    assert [p.name.endswith("-sess-b.json") for p in (tmp_path / "queue").iterdir()] == [True]
    assert holder.stdin is not None
    holder.stdin.close()  # the first session ends: the queued one starts
    holder.wait(10)
    waiter.join(10)
    assert locks.held and locks.queued_s > 0
    assert list((tmp_path / "queue").iterdir()) == []  # it left the queue
    assert json.loads((tmp_path / "host.json").read_text())["session_id"] == "sess-b"
    locks.release()
    assert not (tmp_path / "host.json").exists()
    assert DeviceLocks([HOST], "sess-c", root=tmp_path).try_acquire() == []


def test_a_dead_runners_lock_is_taken_over(tmp_path: Path, procs: list) -> None:
    holder = _holder(tmp_path, "sess-dead", "host=host")
    procs.append(holder)
    holder.kill()  # kill -9: no release, its files stay behind
    holder.wait(10)
    assert json.loads((tmp_path / "host.json").read_text())["session_id"] == "sess-dead"
    locks = DeviceLocks([HOST], "sess-next", root=tmp_path)
    assert locks.blockers() == []
    assert locks.try_acquire() == [] and locks.held
    assert json.loads((tmp_path / "host.json").read_text())["session_id"] == "sess-next"
    dead = next(r for r in locks.records() if r["session_id"] == "sess-dead")
    assert dead["ended"] is not None  # it stopped when it went quiet, not "still running"
    locks.release()


def test_sessions_on_disjoint_gpus_run_side_by_side(tmp_path: Path, procs: list) -> None:
    procs.append(_holder(tmp_path, "sess-gpu0", "GPU-aaaa=gpu0"))
    on_gpu1 = DeviceLocks([GPU1], "sess-gpu1", root=tmp_path)
    assert on_gpu1.try_acquire() == []  # gpu1 is free although gpu0 is busy
    both = DeviceLocks([GPU0, GPU1], "sess-both", root=tmp_path)
    blockers = {b["session_id"]: b["on"] for b in both.try_acquire()}
    assert blockers == {"sess-gpu0": ["gpu0"], "sess-gpu1": ["gpu1"]}
    on_gpu1.release()
    assert [b["session_id"] for b in both.try_acquire()] == ["sess-gpu0"]
    # All or none: the refused session does not sit on gpu1 while waiting for gpu0.
    again = DeviceLocks([GPU1], "sess-gpu1-again", root=tmp_path)
    assert again.try_acquire() == []
    again.release()
    with pytest.raises(DeviceBusy, match="gpu0: session sess-gpu0") as refused:
        both.acquire(wait=False)
    assert "--device cuda:N" in (refused.value.fix or "")


def test_the_queue_is_first_come_first_served(tmp_path: Path, procs: list) -> None:
    first = _holder(tmp_path, "sess-first", "host=host")
    procs.append(first)
    waiter = _holder(tmp_path, "sess-waiter", "host=host", wait_held=False)
    procs.append(waiter)
    _until(lambda: list((tmp_path / "queue").glob("*-sess-waiter.json")))
    late = DeviceLocks([HOST], "sess-late", root=tmp_path)
    assert first.stdin is not None and waiter.stdout is not None and waiter.stdin is not None
    first.stdin.close()
    first.wait(10)
    assert waiter.stdout.readline().strip() == "held"  # the earlier waiter goes first
    assert [b["session_id"] for b in late.try_acquire()] == ["sess-waiter"]
    waiter.stdin.close()
    waiter.wait(10)
    assert late.try_acquire() == []
    late.release()


def test_a_waiter_that_died_in_the_queue_holds_nobody_up(tmp_path: Path, procs: list) -> None:
    first = _holder(tmp_path, "sess-first", "host=host")
    procs.append(first)
    waiter = _holder(tmp_path, "sess-gone", "host=host", wait_held=False)
    procs.append(waiter)
    _until(lambda: list((tmp_path / "queue").glob("*-sess-gone.json")))
    waiter.kill()
    waiter.wait(10)
    assert first.stdin is not None
    first.stdin.close()
    first.wait(10)
    locks = DeviceLocks([HOST], "sess-next", root=tmp_path)
    assert locks.try_acquire() == []
    assert list((tmp_path / "queue").iterdir()) == []  # the dead waiter's ticket was cleared
    locks.release()


# --- which devices a session locks ----------------------------------------------------------------
def _two_gpus() -> FakeNvml:
    return FakeNvml(gpus=[FakeGpu(uuid="GPU-aaaa"), FakeGpu(uuid="GPU-bbbb")])


def test_session_devices_follow_the_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    nvml = _two_gpus()
    assert session_devices([RunSpec(device="cuda:1")], nvml) == [GPU1]
    assert session_devices([RunSpec(device="cpu"), RunSpec(device="auto")], nvml) == [GPU0, HOST]
    assert session_devices([RunSpec(engine="openai")], nvml) == [HOST]  # an HTTP client
    sharded = RunSpec(engine="vllm", device="cuda", options={"tensor_parallel_size": 2})
    assert session_devices([sharded], nvml) == [GPU0, GPU1]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert session_devices([RunSpec(device="cuda:0")], nvml) == [GPU1]  # CUDA's 0 is NVML's 1
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    with pytest.raises(ConfigError, match="cuda:5") as bad:
        session_devices([RunSpec(device="cuda:5")], nvml)
    assert "GPU-bbbb" in bad.value.message and "nvidia-smi -L" in (bad.value.fix or "")
    assert session_devices([RunSpec(device="cuda:0")], FakeNvml(init_error=12)) == [HOST]  # no driver


def test_the_nvml_process_list_tolerates_not_supported() -> None:
    nvml = _two_gpus()
    nvml.gpus[0].processes = [4242, 17]
    nvml.gpus[1].processes = None  # vGPU / Jetson: NOT_SUPPORTED
    assert gpu_processes([0, 1], nvml) == {0: [17, 4242]}
    assert nvml.inits == nvml.shutdowns == 1
    assert gpu_processes([0], FakeNvml(init_error=12)) == {}


# --- overlap --------------------------------------------------------------------------------------
GPU_DOMAIN = Domain(id="gpu0", kind="gpu", meter="nvml", label="GPU 0", device="gpu:0")
CPU_DOMAIN = Domain(id="cpu-package-0", kind="cpu", meter="rapl", label="CPU", device="cpu")


def test_overlap_names_other_sessions_and_foreign_gpu_processes(tmp_path: Path) -> None:
    nvml = _two_gpus()
    stranger = os.getppid()  # a live process outside this one's tree
    nvml.gpus[0].processes = [os.getpid(), stranger]  # our own process is never "foreign"
    mine = DeviceLocks([GPU0], "sess-me", root=tmp_path)
    mine.acquire(wait=False)
    watch = OverlapWatch(mine, nvml=nvml)

    run = watch.begin()
    other = DeviceLocks([GPU1], "sess-other", root=tmp_path)
    other.acquire(wait=False)  # another session measures on gpu1 during our run
    other.release()
    gpu_only = watch.finish(run, [GPU_DOMAIN])
    assert gpu_only is not None and f"pid {stranger} (" in gpu_only and "on gpu0" in gpu_only
    assert f"pid {os.getpid()} " not in gpu_only
    assert "sess-other" not in gpu_only  # its gpu1 work is not in our gpu0 energy
    with_cpu = watch.finish(run, [GPU_DOMAIN, CPU_DOMAIN])
    assert "session sess-other ran on gpu1 (the host CPU's energy is shared)" in (with_cpu or "")

    nvml.gpus[0].processes = None  # NOT_SUPPORTED: unknown, never a crash
    later = watch.begin()  # sess-other ended before this run began: no overlap
    assert watch.finish(later, [GPU_DOMAIN, CPU_DOMAIN]) is None

    # A GPU process that belongs to another wattlab runner is named by its session.
    nvml.gpus[0].processes = [stranger]
    (tmp_path / "sessions" / "sess-parent.json").write_text(
        json.dumps(
            {
                "session_id": "sess-parent",
                "identity": {"pid": stranger, "create_time": None, "host": socket.gethostname()},
                "keys": [],
                "labels": [],
                "started": time.time() - 60,
                "ended": None,
            }
        )
    )
    assert watch.finish(watch.begin(), [GPU_DOMAIN]) == "session sess-parent ran on gpu0"
    mine.release()


# --- stored, migrated, shown ----------------------------------------------------------------------
def test_an_older_database_gets_the_overlap_column(tmp_path: Path) -> None:
    path = tmp_path / "v1.duckdb"
    con = duckdb.connect(str(path))
    for statement in MIGRATIONS[0]:
        con.execute(statement)
    con.execute("INSERT INTO schema_version VALUES (1)")
    con.execute("INSERT INTO runs (run_id, session_id, status) VALUES ('old-001', 'old', 'finished')")
    con.close()
    store = Store(path)
    assert store.query("SELECT run_id, overlap FROM runs")[1] == [("old-001", None)]  # a read migrates
    with store.reader() as con:
        assert current_version(con) == SCHEMA_VERSION


def test_the_overlap_flag_is_stored_and_shown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from wattlab.cli import main

    db = tmp_path / "w.duckdb"
    store = Store(db)
    reason = "pid 4242 (python) on gpu0"
    with store.writer() as con:
        commit.write_session(con, {"session_id": "s1", "status": "finished", "created_at": "2026-11-29"})
        for rid, overlap in (("s1-001", reason), ("s1-002", None)):
            row = {"run_id": rid, "session_id": "s1", "status": "finished", "engine": "fake"}
            commit.write_run(con, {**row, "energy_j": 12.5, "energy_method": "counter", "overlap": overlap})
    assert store.query("SELECT run_id, overlap FROM runs ORDER BY 1")[1] == [
        ("s1-001", reason),
        ("s1-002", None),
    ]
    assert main(["show", "s1-001", "--db", str(db)]) == 0
    assert f"overlap: {reason}" in capsys.readouterr().out
    assert main(["show", "s1-002", "--db", str(db)]) == 0
    assert "overlap" not in capsys.readouterr().out
    assert main(["ls", "s1", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "12.5 !" in out and f"overlapped: {reason}" in out
    assert main(["ls", "--db", str(db)]) == 0
    assert "1 run(s) overlapped other work" in capsys.readouterr().out
    assert main(["ls", "s1", "--json", "--db", str(db)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["run_id"]: r["overlap"] for r in rows} == {"s1-001": reason, "s1-002": None}


def test_the_history_energy_cell_and_the_run_line_carry_the_marker() -> None:
    from wattlab.app.screens.history import RUN_COLUMNS, run_cells
    from wattlab.sessions.events import run_line

    run = {"run_id": "r1", "status": "finished", "energy_j": 12.5, "energy_method": "counter"}
    energy = [key for key, _ in RUN_COLUMNS].index("energy_j")
    assert "!" not in run_cells(run, False)[energy]
    assert run_cells({**run, "overlap": "session s2 ran on gpu0"}, False)[energy].endswith("[yellow]![/]")
    assert "overlap: session s2 ran on gpu0" in run_line({**run, "overlap": "session s2 ran on gpu0"})
    assert "overlap" not in run_line(run)


# --- the command line, end to end (the fake engine: no inference engine needed) -------------------
def _wattlab(home: Path, *args: str, **kw: Any) -> Any:
    env = {**os.environ, "WATTLAB_HOME": str(home)}
    cmd = [sys.executable, "-m", "wattlab.cli", *args]
    if kw.pop("background", False):
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


RUN = ["run", "--engine", "fake", "--model", "fake:x", "--output-tokens", "8", "--idle-s", "0"]


def test_run_refuses_a_busy_box_and_with_wait_queues_behind_it(tmp_path: Path, procs: list) -> None:
    db = str(tmp_path / "w.duckdb")
    holder = _holder(tmp_path / "locks", "sess-busy", "host=host")
    procs.append(holder)
    refused = _wattlab(tmp_path, *RUN, "--meters", "estimate", "--json", "--db", db)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "host: session sess-busy is measuring" in refused.stderr and "--wait" in refused.stderr
    assert not (tmp_path / "spool").exists() or not list((tmp_path / "spool").iterdir())  # nothing recorded

    sweep = tmp_path / "s.toml"
    sweep.write_text(
        '[session]\nidle_s = 0\nmeters = "estimate"\n[defaults]\nengine = "fake"\nmodel = "fake:x"\n'
        "[grid]\nbatch_size = [1]\n"
    )
    no_wait = _wattlab(tmp_path, "sweep", str(sweep), "--no-wait", "--db", db)
    assert no_wait.returncode == 2 and "sess-busy" in no_wait.stderr

    queued = _wattlab(tmp_path, *RUN, "--meters", "estimate", "--json", "--wait", "--db", db, background=True)
    procs.append(queued)
    events = _until(lambda: list((tmp_path / "spool").glob("*/events.jsonl")))[0]
    _until(lambda: '"ev":"queued"' in events.read_text())
    event = next(json.loads(x) for x in events.read_text().splitlines() if '"ev":"queued"' in x)
    assert event["behind"] == ["sess-busy"]
    from wattlab.sessions.live import LiveTail
    from wattlab.sessions.spool import Spool

    assert LiveTail(Spool(events.parent.name, tmp_path / "spool")).poll().status == "queued"
    assert Store(db).query("SELECT status FROM sessions")[1] == [("queued",)]  # `wattlab ls` shows it
    assert holder.stdin is not None
    holder.stdin.close()  # the measuring session ends: the queued run starts
    out, err = queued.communicate(timeout=120)
    assert queued.returncode == 0, err
    result = json.loads(out)
    assert result["status"] == "finished" and result["overlap"] is None  # it ran alone, after the other


def test_a_run_beside_another_session_carries_the_overlap_flag(tmp_path: Path, procs: list) -> None:
    db = str(tmp_path / "w.duckdb")
    # Another session measures on a GPU meanwhile: our CPU run's (estimated) CPU energy shares the host.
    procs.append(_holder(tmp_path / "locks", "sess-gpu", "GPU-zzzz=gpu7"))
    done = _wattlab(tmp_path, *RUN, "--meters", "estimate", "--json", "--db", db)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["overlap"] == "session sess-gpu ran on gpu7 (the host CPU's energy is shared)"
    stored = Store(db).query("SELECT overlap FROM runs WHERE run_id = ?", [result["run_id"]])[1]
    assert stored == [(result["overlap"],)]
