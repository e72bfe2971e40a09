"""What the background sampler costs: its threads' CPU time as a share of one core; prints JSON.

    python benchmarks/sampler_cost.py --meters estimate --seconds 30
    python benchmarks/sampler_cost.py --meters nvml --seconds 30          (on a GPU box)
    python benchmarks/sampler_cost.py --meters replay [--replay FILE]

Runs the real Sampler at the default rates (power 10 Hz, counters 2 Hz; change with --power-hz,
--counter-hz) over the selected meters (any `open_meters` selection: auto, nvml, rapl, estimate,
replay, or a list like nvml,rapl) into a Timeline with a listener that serializes every item, as
the runner's spool does. The cost is the sampler threads' own CPU time (`time.thread_time()`
inside each thread), divided by wall time: the target is under 1% of one core.

For `replay` without --replay, tests/data/gpu_trace.jsonl is used when present, else a synthetic
trace is generated (two domains at 10 Hz, power and counter): it exercises the same code paths,
and the output says it was synthetic.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wattlab.meters import open_meters
from wattlab.meters.sampler import Sampler
from wattlab.meters.timeline import Timeline

RECORDED_TRACE = Path(__file__).resolve().parents[1] / "tests" / "data" / "gpu_trace.jsonl"


def synthetic_trace(path: Path, seconds: float) -> None:
    """A timeline file with two GPU domains read at 10 Hz (power) and 2 Hz (counter)."""
    domains = [
        {
            "id": f"gpu{i}",
            "kind": "gpu",
            "meter": "synthetic",
            "label": f"synthetic GPU {i}",
            "device": f"gpu:{i}",
            "has_counter": True,
            "counter_period_s": 0.1,
        }
        for i in range(2)
    ]
    lines = [{"wattlab_timeline": 1, "domains": domains, "power_period_s": 0.1, "counter_period_s": 0.5}]
    t0 = time.monotonic_ns()
    for k in range(int(seconds * 10) + 1):
        t = t0 + k * 100_000_000
        for i in range(2):
            power = 100.0 + 50.0 * i + (k % 7)
            lines.append(
                {"t": t, "d": f"gpu{i}", "p": power, "u": float(k % 100), "mem": 1024.0, "c": 1980.0}
            )
            if k % 5 == 0:
                lines.append({"t": t, "d": f"gpu{i}", "e": (100.0 + 50.0 * i) * k / 10})
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--meters", default="auto", help="auto, nvml, rapl, estimate, jetson, replay, or a list")
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--power-hz", type=float, default=10.0)
    p.add_argument("--counter-hz", type=float, default=2.0)
    p.add_argument("--replay", type=Path, help="timeline file for the replay meter")
    p.add_argument("--gpus", help="NVML indices/UUIDs for nvml (default: all / CUDA_VISIBLE_DEVICES)")
    args = p.parse_args()

    replay_path = args.replay
    trace_kind = None
    tmp = None
    if "replay" in args.meters:
        if replay_path is None and RECORDED_TRACE.exists():
            replay_path, trace_kind = RECORDED_TRACE, "recorded"
        elif replay_path is None:
            tmp = tempfile.TemporaryDirectory()
            replay_path = Path(tmp.name) / "synthetic.jsonl"
            synthetic_trace(replay_path, args.seconds + 1)
            trace_kind = "synthetic"
        else:
            trace_kind = "given"

    meterset = open_meters(args.meters, gpus=args.gpus, replay_path=replay_path)
    timeline = Timeline()
    serialized = 0

    def spool_like(item: dict[str, Any]) -> None:
        nonlocal serialized
        serialized += len(json.dumps(item, separators=(",", ":")))  # what the spool writer would do

    sampler = Sampler(meterset.meters, timeline, power_hz=args.power_hz, counter_hz=args.counter_hz)
    timeline.subscribe(spool_like)
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    wall0 = time.monotonic()
    sampler.start()
    time.sleep(args.seconds)
    sampler.stop()  # the threads record their CPU time when they finish
    wall = time.monotonic() - wall0
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    meterset.close()

    stats = sampler.stats()
    power_reads = sum(s["power_reads"] for s in stats.values())
    counter_reads = sum(s["counter_reads"] for s in stats.values())
    result = {
        "meters": [m.name for m in meterset.meters],
        "domains": [d.id for d in meterset.domains],
        "missing": [f"{p.meter}: {p.reason}" for p in meterset.missing],
        "replay_trace": trace_kind,
        "power_hz": args.power_hz,
        "counter_hz": args.counter_hz,
        "wall_s": wall,
        "sampler_cpu_s": sampler.cpu_seconds,
        "sampler_pct_of_one_core": 100.0 * sampler.cpu_seconds / wall,
        "process_cpu_pct_of_one_core": 100.0
        * ((usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime))
        / wall,
        "power_reads_per_s": power_reads / wall,
        "counter_reads_per_s": counter_reads / wall,
        "samples_per_s": sum(len(timeline.series(d).power_t) for d in timeline.domains) / wall,
        "spool_bytes_per_s": serialized / wall,
        "per_meter": stats,
        "machine": {
            "host": platform.node(),
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
        },
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(json.dumps(result, indent=2))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
