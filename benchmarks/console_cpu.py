"""Console CPU while it shows a live session (target: under 10% of one core at its 4 Hz refresh).

    python benchmarks/console_cpu.py [--seconds 30] [--run-seconds 1] [--prefill-hours 0]

A feeder process stands in for a runner: it writes a session spool with
`wattlab.sessions.spool.Spool` (the runner's own writer) — two power domains sampled at 10 Hz,
progress events at 4 Hz, and a run ending every `--run-seconds` (1 s: a fast sweep whose log and
results table change every second). `--prefill-hours H` first writes H hours of samples, as a
10-hour sweep would have when the console attaches to it, and the time to catch up is reported.

The console runs in a pseudo-terminal (`python -m wattlab.cli --db FILE`), attaches to the live
session by itself, and its process CPU time (user + system, from psutil) is measured over
`--seconds` after a warm-up. The terminal side is drained continuously, as a terminal would.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from console_start import start_in_pty

NS = 1_000_000_000
DOMAINS = [
    {
        "id": "gpu0",
        "kind": "gpu",
        "meter": "nvml",
        "label": "GPU 0 (feeder)",
        "device": "gpu:0",
        "has_counter": True,
        "estimated": False,
        "counter_period_s": 0.1,
        "parent": None,
    },
    {
        "id": "cpu-package-0",
        "kind": "cpu",
        "meter": "rapl",
        "label": "CPU package 0 (feeder)",
        "device": "cpu",
        "has_counter": True,
        "estimated": False,
        "counter_period_s": 0.001,
        "parent": None,
    },
]


# --- the feeder (a runner stand-in) ----------------------------------------------------------------
def feed(session_id: str, run_seconds: float, prefill_hours: float, total_runs: int) -> None:
    """Write a live session's spool forever (until killed): samples at 10 Hz, runs ending regularly."""
    from wattlab.sessions.spool import Spool

    spool = Spool(session_id)
    session = {"session_id": session_id, "name": "cpu benchmark", "kind": "sweep", "runs_planned": total_runs}
    spool.create(session)
    spool.event(
        "session_start",
        session_id=session_id,
        session={
            **session,
            "meters_json": {"used": ["nvml", "rapl"], "missing": []},
            "carbon_json": {"g_per_kwh": 56.0, "source": "fixed", "pue": 1.0},
        },
        resumed=False,
        skip=[],
    )
    spool.timeline_item({"domains": DOMAINS})
    energy = {"gpu0": 0.0, "cpu-package-0": 0.0}
    now = time.monotonic_ns()
    t = now - int(prefill_hours * 3600 * NS)

    def sample(t_ns: int, i: int) -> None:
        for did, base in (("gpu0", 250.0), ("cpu-package-0", 60.0)):
            p = base * (1 + 0.1 * ((i * 7) % 10) / 10)
            energy[did] += p * 0.1
            spool.timeline_item(
                {"t": t_ns, "d": did, "p": round(p, 2), "e": round(energy[did], 2), "u": 87.0}
            )

    i = 0
    seq = 0
    tokens = 0
    # Prefill: past hours of samples (runs of one minute each), written as fast as possible.
    while t < now:
        if i % 600 == 0:
            seq += 1
            row = {"engine": "llamacpp", "model": "smollm2-135m-instruct", "quant": "Q4_1", "batch_size": 8}
            spool.event(
                "run_start",
                session_id=session_id,
                run_id=f"{session_id}-{seq:05d}",
                seq=seq,
                total=total_runs,
                label=f"prefill run {seq}",
                row=row,
            )
        sample(t, i)
        if i % 600 == 599:
            spool.event(
                "run_end",
                session_id=session_id,
                result={
                    "seq": seq,
                    "status": "finished",
                    "engine": "llamacpp",
                    "duration_s": 60.0,
                    "throughput_tok_s": 500.0,
                    "energy_j": 18_000.0,
                    "energy_method": "counter",
                },
            )
        t += NS // 10
        i += 1
    spool.flush()
    # Live: 10 Hz samples, progress at ~4 Hz, a run ending every run_seconds.
    next_run_end = time.monotonic() + run_seconds
    seq += 1

    def start_run(seq: int) -> None:
        spool.event(
            "run_start",
            session_id=session_id,
            run_id=f"{session_id}-{seq:05d}",
            seq=seq,
            total=total_runs,
            label=f"live run {seq}",
            row={"engine": "llamacpp", "model": "smollm2-135m-instruct", "batch_size": 8},
        )

    start_run(seq)
    while True:
        sample(time.monotonic_ns(), i)
        i += 1
        tokens += 50
        if i % 3 == 0:
            spool.event(
                "progress",
                session_id=session_id,
                run_id=f"{session_id}-{seq:05d}",
                tokens=tokens,
                t=time.monotonic_ns(),
            )
        if time.monotonic() >= next_run_end:
            spool.event(
                "run_end",
                session_id=session_id,
                result={
                    "seq": seq,
                    "status": "finished",
                    "engine": "llamacpp",
                    "model": "smollm2-135m-instruct",
                    "batch_size": 8,
                    "duration_s": run_seconds,
                    "throughput_tok_s": 500.0,
                    "j_per_token": 0.4,
                    "energy_j": 300.0 * run_seconds,
                    "energy_method": "counter",
                    "e2e_p50_s": 0.5,
                },
            )
            seq += 1
            tokens = 0
            start_run(seq)
            next_run_end += run_seconds
        time.sleep(0.1)


# --- the measurement -------------------------------------------------------------------------------
class Drain(threading.Thread):
    """Reads the console's terminal output (as a terminal would) and remembers whether `needle` showed."""

    def __init__(self, master: int, needle: bytes) -> None:
        super().__init__(daemon=True)
        self.master, self.needle = master, needle
        self.seen_at: float | None = None
        self.bytes = 0
        self.stop = False
        self._tail = b""

    def run(self) -> None:
        while not self.stop:
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if not ready:
                continue
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            self.bytes += len(chunk)
            if self.seen_at is None:
                self._tail = (self._tail + chunk)[-4096:]
                if self.needle in self._tail:
                    self.seen_at = time.perf_counter()


def measure(
    seconds: float, run_seconds: float, prefill_hours: float, cols: int, rows: int
) -> dict[str, object]:
    import psutil

    with tempfile.TemporaryDirectory(prefix="wattlab-cpu-") as home:
        env = {**os.environ, "WATTLAB_HOME": home, "TERM": "xterm-256color"}
        session_id = "cpu-bench-0001"
        feeder = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--feed",
                session_id,
                "--run-seconds",
                str(run_seconds),
                "--prefill-hours",
                str(prefill_hours),
            ],
            env=env,
        )
        spool = Path(home) / "spool" / session_id / "timeline.jsonl"
        deadline = time.monotonic() + 3600
        while (
            time.monotonic() < deadline and not (Path(home) / "spool" / session_id / "events.jsonl").exists()
        ):
            time.sleep(0.1)
        while prefill_hours and time.monotonic() < deadline:  # wait for the prefill to be written
            size = spool.stat().st_size
            time.sleep(1.0)
            if spool.stat().st_size - size < 200_000:
                break
        spool_mb = spool.stat().st_size / 1e6
        started = time.perf_counter()
        console, master = start_in_pty(
            [sys.executable, "-m", "wattlab.cli", "--db", str(Path(home) / "w.duckdb")], env, cols, rows
        )
        drain = Drain(master, b"live run")
        drain.start()
        proc = psutil.Process(console.pid)
        while drain.seen_at is None and time.perf_counter() - started < 600:
            time.sleep(0.05)
        catch_up = (drain.seen_at or time.perf_counter()) - started
        time.sleep(5.0)  # warm-up after attaching
        cpu0 = proc.cpu_times()
        wall0 = time.perf_counter()
        bytes0 = drain.bytes
        children = [c.name() for c in proc.children(recursive=True)]
        time.sleep(seconds)
        cpu1 = proc.cpu_times()
        wall = time.perf_counter() - wall0
        used = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
        rss = proc.memory_info().rss / 1e6
        out_bytes = drain.bytes - bytes0
        os.write(master, b"q")
        try:
            console.wait(timeout=10)
        except subprocess.TimeoutExpired:
            console.kill()
        drain.stop = True
        feeder.kill()
        feeder.wait()
        os.close(master)
    return {
        "console_cpu_percent_of_one_core": round(100 * used / wall, 2),
        "measured_s": round(wall, 1),
        "attach_until_shown_s": round(catch_up, 2),
        "spool_mb_at_attach": round(spool_mb, 1),
        "console_rss_mb": round(rss, 1),
        "terminal_output_kb_per_s": round(out_bytes / wall / 1000, 1),
        "console_children_while_attached": children,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--run-seconds", type=float, default=1.0)
    p.add_argument("--prefill-hours", type=float, default=0.0)
    p.add_argument("--size", default="120x40")
    p.add_argument("--feed", metavar="SESSION", help=argparse.SUPPRESS)  # internal: be the feeder
    a = p.parse_args()
    if a.feed:
        feed(a.feed, a.run_seconds, a.prefill_hours, total_runs=100_000)
        return 0
    cols, rows = (int(x) for x in a.size.split("x"))
    result = measure(a.seconds, a.run_seconds, a.prefill_hours, cols, rows)
    print(
        json.dumps(
            {
                "benchmark": "console_cpu_live_session",
                "refresh_hz": 4,
                "sample_hz_per_domain": 10,
                "domains": 2,
                "run_seconds": a.run_seconds,
                "prefill_hours": a.prefill_hours,
                "terminal": f"{cols}x{rows}",
                **result,
                "target_percent": 10,
                "cpus": os.cpu_count(),
                "loadavg_1m": round(os.getloadavg()[0], 2),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
