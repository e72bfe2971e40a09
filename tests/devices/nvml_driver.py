"""The wattlab CLI in a process of its own, on the fake NVML whose state is a JSON file.

    python tests/devices/nvml_driver.py STATE.json [--root] -- <wattlab arguments>

The fake (tests/meters/meter_fakes.py, `FakeNvml.from_state`) stands in for pynvml, and every change
a setter makes is written back to STATE.json, so a test sees what a runner it killed with SIGKILL
left changed, and what the next command put back. `--root` makes wattlab see euid 0 (NVML lets only
root change caps). Only the vendor module and the uid are replaced; the CLI, runner and worker run.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "meters"))
from meter_fakes import FakeNvml

import wattlab.devices.nvidia as nvidia


def main() -> int:
    state, *rest = sys.argv[1:]
    split = rest.index("--")
    nvml = FakeNvml.from_state(Path(state))
    nvidia.import_pynvml = lambda: nvml  # type: ignore[assignment]
    if "--root" in rest[:split]:
        nvidia._euid = lambda: 0
    from wattlab.cli import main as wattlab

    return wattlab(rest[split + 1 :])


if __name__ == "__main__":
    sys.exit(main())
