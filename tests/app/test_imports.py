"""Starting the console must not import an inference engine or a vendor meter library (DESIGN rule 5)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ["torch", "vllm", "llama_cpp", "pynvml", "jtop", "transformers"]

PROBE = """
import asyncio, json, sys
from wattlab.app.main import run_console  # what `wattlab` imports
from wattlab.app.app import WattlabApp

async def main():
    app = WattlabApp(db=sys.argv[1], monitor=False)  # the real catalog, probe and recovery
    async with app.run_test(size=(80, 24)) as pilot:
        for key in "123456":
            await pilot.press(key)
            await pilot.pause(0.3)
        await app.workers.wait_for_complete()
        await pilot.pause(0.3)
        assert app.probe is not None  # the box probe (doctor, in a subprocess) has answered

asyncio.run(main())
print(json.dumps([m for m in HEAVY if m in sys.modules]))
"""


def test_console_start_and_every_screen_import_no_heavy_module(tmp_path: Path) -> None:
    code = f"HEAVY = {HEAVY!r}\n" + PROBE
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "w.duckdb")], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
