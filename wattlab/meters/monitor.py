"""A standalone power monitor: samples this box's meters into a timeline file.

The console starts one (`python -m wattlab.meters.monitor --out FILE`) so its Live screen shows
power, utilization and temperature before and between sweeps, while the console process itself
never imports a vendor library (pynvml, jtop). The file is rewritten from scratch every
`--keep-s` seconds so it stays small; it stops when its parent (the console) goes away.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from pathlib import Path
from typing import Any


def run_monitor(out: Path, *, meters: str = "auto", power_hz: float = 4.0, keep_s: float = 600.0) -> None:
    from wattlab.meters import open_meters
    from wattlab.meters.sampler import Sampler
    from wattlab.meters.timeline import Timeline

    parent = os.getppid()
    meterset = open_meters(meters)
    timeline = Timeline()
    f: Any = None

    def reopen() -> None:
        nonlocal f
        if f is not None:
            f.close()
        tmp = out.with_suffix(".tmp")
        f = open(tmp, "w", encoding="utf-8")  # noqa: SIM115 - rotated below, closed at exit
        f.write(json.dumps({**timeline.header(), "missing": [p.as_dict() for p in meterset.missing]}) + "\n")
        f.flush()
        os.replace(tmp, out)

    def write(item: dict[str, Any]) -> None:
        if f is not None and "domains" not in item:
            f.write(json.dumps(item, separators=(",", ":")) + "\n")
            f.flush()

    sampler = Sampler(meterset.meters, timeline, power_hz=power_hz, counter_hz=1.0)
    reopen()
    timeline.subscribe(write)
    stop = False

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    sampler.start()
    started = time.monotonic()
    try:
        while not stop and os.getppid() == parent:
            time.sleep(0.5)
            if time.monotonic() - started > keep_s:
                started = time.monotonic()
                timeline.prune_before(time.monotonic_ns())
                reopen()
    finally:
        sampler.stop()
        meterset.close()
        if f is not None:
            f.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", required=True)
    p.add_argument("--meters", default="auto")
    p.add_argument("--power-hz", type=float, default=4.0)
    p.add_argument("--keep-s", type=float, default=600.0)
    a = p.parse_args()
    try:
        run_monitor(Path(a.out), meters=a.meters, power_hz=a.power_hz, keep_s=a.keep_s)
    except Exception as exc:  # the console shows this file's content as the reason
        Path(a.out).write_text(json.dumps({"monitor_error": str(exc)}) + "\n")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
