"""The README's screenshots, drawn by the app itself from real measurements.

    python benchmarks/readme_screenshots.py [OUT_DIR]     # default: docs/screenshots

The database starts as a copy of the real H100 batch study (docs/measurements/h100_gpu_sweep.duckdb);
then a real sweep runs on this box (llama.cpp and transformers on the bundled SmolLM2, detached, as
the console's Launch starts one) while the console is attached to it: Live is captured mid-sweep,
History and Pareto once it has finished. On a box without a power meter its energy is estimated,
and the pictures say so. Needs the llamacpp and transformers extras.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZE = (140, 42)
SWEEP = """
[session]
name = "SmolLM2 on this box: engines x batch size"
idle_s = 3

[defaults]
input_tokens = 128
output_tokens = 64
requests = 8

[grid]
engine = ["llamacpp", "transformers"]
batch_size = [1, 4, 8]

[[runs]]
engine = "llamacpp"
task = "qa"
limit = 8
batch_size = 8
"""


async def export(out_dir: Path, db: Path, home: Path) -> list[Path]:
    sys.path.insert(0, str(ROOT / "tests" / "app"))
    from app_helpers import make_app, screen_text, settle, wait_until, widget_text

    from wattlab.sessions.launch import start_detached
    from wattlab.sessions.live import live_sessions
    from wattlab.sessions.runner import new_session_id

    sweep = home / "readme.toml"
    sweep.write_text(SWEEP)
    session = new_session_id()
    start_detached(sweep, session_id=session, db=db)
    deadline = time.monotonic() + 120
    while session not in live_sessions() and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    written: list[Path] = []
    out_dir.mkdir(parents=True, exist_ok=True)
    app = make_app(db, attach=session, catalog=None)
    async with app.run_test(size=SIZE) as pilot:
        # Live, once the third run is generating (two results listed, power history behind it).
        await wait_until(pilot, lambda: "run 3/" in screen_text(app), timeout=900, what="run 3")
        await settle(pilot, 4.0)
        written.append(Path(app.save_screenshot("live.svg", str(out_dir))))
        await pilot.press("2")
        await settle(pilot, 1.5)
        written.append(Path(app.save_screenshot("launch.svg", str(out_dir))))
        await pilot.press("1")
        await wait_until(pilot, lambda: "session finished" in screen_text(app), timeout=1800)
        await pilot.press("3")
        await settle(pilot, 1.5)
        written.append(Path(app.save_screenshot("history.svg", str(out_dir))))
        await pilot.press("5")
        await wait_until(pilot, lambda: "on the front" in widget_text(app, "#pareto-status"), timeout=60)
        await settle(pilot, 0.5)
        written.append(Path(app.save_screenshot("pareto.svg", str(out_dir))))
    return written


def main() -> int:
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screenshots"
    with tempfile.TemporaryDirectory(prefix="wattlab-readme-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        os.environ["WATTLAB_HOME"] = str(home)
        db = Path(tmp) / "lab.duckdb"
        shutil.copy(ROOT / "docs" / "measurements" / "h100_gpu_sweep.duckdb", db)
        db.chmod(0o644)
        for path in asyncio.run(export(out_dir.resolve(), db, home)):
            print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
