"""An outside witness for wattlab's meter: log each GPU's NVML energy counter at a fixed rate.

    python benchmarks/nvml_logger.py --out nvml_log.jsonl --hz 10 --gpus 0,1
    python benchmarks/nvml_logger.py --out log.jsonl --fake      # no GPU: a fake NVML (tests)

Standalone on purpose: it imports pynvml only (never wattlab), so it shares no code with the meter it
checks. It runs in its own process next to a sweep and stops on SIGTERM or SIGINT. Timestamps come
from time.monotonic_ns(), which is system-wide on Linux: the same clock wattlab's timeline and marks
use, so benchmarks/reconcile.py can interpolate this log at wattlab's window edges.

One JSON object a line, each flushed as written (a killed logger loses at most the line in flight):

    {"nvml_logger": 1, "clock": "monotonic_ns", "hz": 10, "gpus": [{"index": 0, "name": ..., "uuid": ...}],
     "fake": false, "pid": 123, "started_ns": ...}                                   the header
    {"t": 123456789, "g": 0, "e": 98765432, "p": 301250, "dt": 3900000}              a reading
    {"t": 123556789, "g": 0, "err": "NVMLError_Unknown: ..."}                        a failed read
    {"end": 987654321, "lines": 5400, "reason": "SIGTERM"}                           the last line

e: the raw counter (nvmlDeviceGetTotalEnergyConsumption, mJ since the driver loaded); p: power (mW,
nvmlDeviceGetPowerUsage); t: the midpoint of the counter call (a counter read costs ~4 ms of CPU on an
H100/H200, so the call's own span matters at the 1% level); dt: the call's duration (ns).

--fake (or WATTLAB_FAKE_NVML=1) uses tests/meters/meter_fakes.FakeNvml with GPUs whose power is a
1 s square wave (250 W on even seconds of the monotonic clock, 150 W on odd ones): a pure function of
time, so this process and another one using the same fake agree on every window's energy.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FAKE_ENV = "WATTLAB_FAKE_NVML"
FAKE_LOW_W, FAKE_HIGH_W = 150.0, 250.0


def fake_energy_mj(t_s: float) -> float:
    """Energy (mJ) of a fake GPU from monotonic time 0 to t_s: FAKE_HIGH_W on even seconds, low on odd."""
    n = int(t_s // 1)
    high_seconds = (n + 1) // 2 + ((t_s - n) if n % 2 == 0 else 0.0)
    return (FAKE_LOW_W * t_s + (FAKE_HIGH_W - FAKE_LOW_W) * high_seconds) * 1000.0


def fake_power_w(t_s: float) -> float:
    return FAKE_HIGH_W if int(t_s // 1) % 2 == 0 else FAKE_LOW_W


def fake_nvml(n_gpus: int = 2) -> Any:
    """A pynvml stand-in (tests/meters/meter_fakes.py) whose GPUs follow the square wave above."""
    sys.path.insert(0, str(ROOT / "tests" / "meters"))
    sys.path.insert(0, str(ROOT))
    from meter_fakes import FakeGpu, FakeNvml

    class WaveGpu(FakeGpu):
        # Energy and power are functions of the shared monotonic clock, not of this process's start.
        def energy_now(self) -> float:
            return fake_energy_mj(time.monotonic())

        @property  # type: ignore[override]
        def power_mw(self) -> float:
            return fake_power_w(time.monotonic()) * 1000.0

        @power_mw.setter
        def power_mw(self, value: float) -> None:  # the dataclass __init__ sets it: ignored
            pass

    uuids = [f"GPU-fa4e0000-0000-0000-0000-00000000000{i}" for i in range(n_gpus)]
    return FakeNvml(gpus=[WaveGpu(uuid=u) for u in uuids])


def load_nvml(fake: bool) -> Any:
    if fake or os.environ.get(FAKE_ENV) == "1":
        return fake_nvml()
    try:
        import pynvml
    except ImportError:
        raise SystemExit("nvml_logger: pynvml is missing. Fix: pip install nvidia-ml-py") from None
    return pynvml


def parse_gpus(text: str | None, count: int) -> list[int]:
    if not text:
        return list(range(count))
    try:
        gpus = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(
            f"nvml_logger: --gpus {text!r} is not a list of NVML indices. Fix: --gpus 0,1"
        ) from None
    bad = [g for g in gpus if not 0 <= g < count]
    if bad or not gpus:
        raise SystemExit(
            f"nvml_logger: GPU(s) {bad or text} not present; NVML sees {count}. Fix: --gpus 0..{count - 1}"
        )
    return gpus


class Logger:
    def __init__(self, nvml: Any, gpus: list[int], out: Path, hz: float, fake: bool) -> None:
        self.nvml = nvml
        self.gpus = gpus
        self.period_ns = round(1e9 / hz)
        self.handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in gpus]
        out.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(out, "w", encoding="utf-8")  # noqa: SIM115 - closed in run()
        self.lines = 0
        self.stop_reason: str | None = None
        info = [
            {"index": i, "name": _text(nvml.nvmlDeviceGetName(h)), "uuid": _text(nvml.nvmlDeviceGetUUID(h))}
            for i, h in zip(gpus, self.handles, strict=True)
        ]
        self.write(
            {
                "nvml_logger": 1,
                "clock": "monotonic_ns",
                "hz": hz,
                "gpus": info,
                "fake": fake,
                "pid": os.getpid(),
                "started_ns": time.monotonic_ns(),
            }
        )

    def write(self, item: dict[str, Any]) -> None:
        self.file.write(json.dumps(item, separators=(",", ":")) + "\n")
        self.file.flush()  # each line reaches the file as it is taken: a kill loses nothing before it
        self.lines += 1

    def read(self, index: int, handle: Any) -> dict[str, Any]:
        try:
            a = time.monotonic_ns()
            energy = self.nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
            b = time.monotonic_ns()
            item: dict[str, Any] = {"t": (a + b) // 2, "g": index, "e": int(energy), "dt": b - a}
        except Exception as exc:  # a failed read is a line saying so, never a made-up value
            return {"t": time.monotonic_ns(), "g": index, "err": f"{type(exc).__name__}: {exc}"}
        with contextlib.suppress(Exception):  # power is context only; reconcile uses the counter
            item["p"] = int(self.nvml.nvmlDeviceGetPowerUsage(handle))
        return item

    def run(self, seconds: float | None = None) -> None:
        def stop(signum: int, _frame: Any) -> None:
            self.stop_reason = signal.Signals(signum).name

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        start = next_t = time.monotonic_ns()
        try:
            while self.stop_reason is None:
                for index, handle in zip(self.gpus, self.handles, strict=True):
                    self.write(self.read(index, handle))
                now = time.monotonic_ns()
                if seconds is not None and now - start >= seconds * 1e9:
                    self.stop_reason = "duration"
                    break
                # A fixed grid (skipping missed ticks) keeps the rate exact without bursts.
                next_t = max(next_t + self.period_ns, now)
                time.sleep(max(0.0, (next_t - time.monotonic_ns()) / 1e9))
        finally:
            self.write({"end": time.monotonic_ns(), "lines": self.lines + 1, "reason": self.stop_reason})
            self.file.close()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="JSONL file to write")
    ap.add_argument("--hz", type=float, default=10.0, help="counter reads per second per GPU (default 10)")
    ap.add_argument("--gpus", help="NVML indices, comma-separated (default: all)")
    ap.add_argument("--seconds", type=float, help="stop after this long (default: at SIGTERM/SIGINT)")
    ap.add_argument("--fake", action="store_true", help=f"fake NVML (also {FAKE_ENV}=1), for tests")
    args = ap.parse_args(argv)
    if args.hz <= 0 or args.hz > 100:
        raise SystemExit(f"nvml_logger: --hz {args.hz} is out of range. Fix: 0 < --hz <= 100 (e.g. 10)")
    fake = args.fake or os.environ.get(FAKE_ENV) == "1"
    nvml = load_nvml(fake)
    try:
        nvml.nvmlInit()
    except Exception as exc:
        raise SystemExit(f"nvml_logger: NVML would not start ({exc}). Fix: check `nvidia-smi`") from None
    try:
        gpus = parse_gpus(args.gpus, int(nvml.nvmlDeviceGetCount()))
        Logger(nvml, gpus, args.out, args.hz, fake).run(args.seconds)
    finally:
        nvml.nvmlShutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
