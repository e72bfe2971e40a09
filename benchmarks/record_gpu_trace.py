"""Record a real GPU power trace: idle, bf16 matrix-multiply load, idle; write it as a timeline file.

    python benchmarks/record_gpu_trace.py --out tests/data/gpu_trace.jsonl [--gpu 0]

Runs the real NvmlMeter + Sampler + Timeline on one NVIDIA GPU and marks
`idle_start`, 5 s idle, `load_start`, 10 s of bf16 matmuls (torch), `load_end`, 5 s idle, `idle2_end`.
The file (one JSON object a line, header first) is what the replay meter and
tests/meters/test_gpu_trace_replay.py read; it stays well under 1 MB. Prints, per window, the
energy by counter and by integrated power, as JSON.

Needs: nvidia-ml-py, torch with CUDA. wattlab is imported from this checkout (no install needed).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wattlab.errors import WattlabError
from wattlab.meters.nvml import NvmlMeter
from wattlab.meters.sampler import Sampler
from wattlab.meters.timeline import Timeline
from wattlab.meters.windows import window_energy

WINDOWS = {
    "idle": ("idle_start", "load_start"),
    "load": ("load_start", "load_end"),
    "idle2": ("load_end", "idle2_end"),
}


class JsonLinesWriter:
    """The timeline file: the header, then every item the timeline emits, one JSON object a line."""

    def __init__(self, timeline: Timeline, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._file = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._file.write(json.dumps(timeline.header()) + "\n")
        timeline.subscribe(self.write)

    def write(self, item: dict[str, Any]) -> None:
        # Rounded: a committed trace stays small, and sub-mW/mJ digits are below NVML's resolution.
        compact = {k: round(v, 3) if isinstance(v, float) else v for k, v in item.items()}
        with self._lock:
            self._file.write(json.dumps(compact, separators=(",", ":")) + "\n")

    def close(self) -> None:
        with self._lock:
            self._file.close()


def matmul_load(seconds: float, size: int) -> dict[str, float]:
    """bf16 matrix multiplies on cuda:0 for `seconds`; returns achieved TFLOP/s."""
    import torch

    a = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    torch.cuda.synchronize()
    n = 0
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        for _ in range(4):
            c = a @ b  # noqa: F841 - the work is the point, not the result
        n += 4
        torch.cuda.synchronize()  # releases the GIL while the GPU works, so the sampler thread runs
    elapsed = time.monotonic() - start
    return {"matmuls": n, "seconds": elapsed, "tflops": 2 * size**3 * n / elapsed / 1e12}


def warm_up(size: int) -> str:
    """Create the CUDA context and cuBLAS handles before the trace starts, so `idle` is idle."""
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("torch sees no CUDA device: this script needs an NVIDIA GPU and torch with CUDA")
    matmul_load(0.5, size)
    torch.cuda.synchronize()
    return torch.cuda.get_device_name(0)


def report(timeline: Timeline) -> dict[str, Any]:
    marks = {m.name: m.t_ns for m in timeline.marks}
    out: dict[str, Any] = {}
    for domain in timeline.domains.values():
        rows = {}
        for name, (a, b) in WINDOWS.items():
            series = timeline.series(domain.id)
            by_counter = window_energy(domain, series, marks[a], marks[b])
            integrated = dataclasses.replace(domain, has_counter=False)
            by_power = window_energy(integrated, series, marks[a], marks[b])
            diff = None
            if by_counter.energy_j and by_power.energy_j is not None and by_counter.method == "counter":
                diff = 100.0 * (by_power.energy_j - by_counter.energy_j) / by_counter.energy_j
            rows[name] = {
                "seconds": round(by_counter.duration_s, 3),
                "counter_j": by_counter.energy_j if by_counter.method == "counter" else None,
                "integrated_j": by_power.energy_j,
                "integrated_minus_counter_pct": diff,
                "mean_power_w": by_counter.mean_power_w,
                "peak_power_w": by_counter.peak_power_w,
                "power_samples": by_power.samples,
                "coverage": by_power.coverage,
                "flags": list(by_counter.flags + by_power.flags),
            }
        out[domain.id] = {"label": domain.label, "windows": rows}
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("tests/data/gpu_trace.jsonl"))
    p.add_argument("--gpu", default="0", help="NVML index or UUID of the GPU to load and meter")
    p.add_argument("--idle-s", type=float, default=5.0)
    p.add_argument("--load-s", type=float, default=10.0)
    p.add_argument("--size", type=int, default=8192, help="matrix size of the bf16 matmuls")
    p.add_argument("--power-hz", type=float, default=10.0)
    p.add_argument("--counter-hz", type=float, default=2.0)
    args = p.parse_args()

    try:
        meter = NvmlMeter([args.gpu])
    except WattlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    gpu = meter.gpus[0]
    # torch must load exactly the metered GPU: expose only it, by UUID, before CUDA starts.
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu.uuid
    torch_name = warm_up(args.size)

    timeline = Timeline(meter.domains)
    sampler = Sampler([meter], timeline, power_hz=args.power_hz, counter_hz=args.counter_hz)
    writer = JsonLinesWriter(timeline, args.out)  # after Sampler: the header records its rates
    info = {
        "gpu": gpu.name,
        "uuid": gpu.uuid,
        "torch_device": torch_name,
        "power_source": meter.power_source[meter.domains[0].id],
        "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": platform.node(),
    }
    with sampler:
        time.sleep(0.5)  # a few readings before the first mark, so its edge interpolates
        timeline.mark("idle_start", **info)
        sampler.read_counters_now()
        time.sleep(args.idle_s)
        timeline.mark("load_start", size=args.size, dtype="bfloat16")
        sampler.read_counters_now()
        load = matmul_load(args.load_s, args.size)
        timeline.mark("load_end", **load)
        sampler.read_counters_now()
        time.sleep(args.idle_s)
        timeline.mark("idle2_end")
        sampler.read_counters_now()
        time.sleep(0.5)  # readings after the last mark, so its edge interpolates too
    writer.close()
    meter.close()
    result = {
        "out": str(args.out),
        "bytes": args.out.stat().st_size,
        "trace": info,
        "load": load,
        "sampler": sampler.stats(),
        "notes": meter.notes,
        "domains": report(timeline),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
