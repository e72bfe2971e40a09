"""The README's screenshots, drawn by the app itself from real measurements.

    python benchmarks/readme_screenshots.py [OUT_DIR]     # default: docs/screenshots
    python benchmarks/readme_screenshots.py --gpu OUT_DIR  # Live and History during a GPU sweep

The database starts as a copy of the real H100 batch study (docs/measurements/h100_gpu_sweep.duckdb);
then a real sweep runs on this box (llama.cpp and transformers on the bundled SmolLM2, detached, as
the console's Launch starts one) while the console is attached to it: Live is captured mid-sweep,
History and Pareto once it has finished. On a box without a power meter its energy is estimated,
and the pictures say so. Needs the llamacpp and transformers extras.

`--gpu` (for a GPU box without the bundled model): an empty database, a transformers sweep of the
random-weight Llama-3.2-1B shape on the first GPU (bf16, batch 1, 8, 64), Live captured during the
third run (live_gpu.svg, 80x24 as over SSH) and History at the end (history_gpu.svg).
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

GPU_SIZE = (80, 24)
GPU_SWEEP = """
[session]
name = "transformers on the GPU: random Llama-3.2-1B shape, batch 1/8/64"
idle_s = 3

[defaults]
engine = "transformers"
model = "random:llama-3.2-1b"
device = "cuda"
quant = "bf16"
input_tokens = 128
output_tokens = 128

[[runs]]
batch_size = 1
requests = 4

[[runs]]
batch_size = 8
requests = 16

[[runs]]
batch_size = 64
requests = 512
"""


async def start_sweep(body: str, db: Path, home: Path, out_dir: Path) -> str:
    """Start the sweep `body` detached, as the console's Launch does; its session id once its runner
    is live. Puts the test helpers (make_app, screen_text...) on the path for the caller."""
    sys.path.insert(0, str(ROOT / "tests" / "app"))
    from wattlab.sessions.launch import start_detached
    from wattlab.sessions.live import live_sessions
    from wattlab.sessions.runner import new_session_id

    sweep = home / "sweep.toml"
    sweep.write_text(body)
    session = new_session_id()
    start_detached(sweep, session_id=session, db=db)
    deadline = time.monotonic() + 120
    while session not in live_sessions() and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    out_dir.mkdir(parents=True, exist_ok=True)
    return session


async def export_gpu(out_dir: Path, db: Path, home: Path) -> list[Path]:
    """Live during the GPU sweep's third run, then History: the console over SSH at 80x24."""
    session = await start_sweep(GPU_SWEEP, db, home, out_dir)
    from app_helpers import make_app, screen_text, settle, wait_until

    written: list[Path] = []
    app = make_app(db, attach=session, catalog=None)
    async with app.run_test(size=GPU_SIZE) as pilot:
        # The run panel's "Run 3/3", not the log's "run 3/3": at 80x24 the log shows two or three
        # lines, and on a GPU the warmup and measure lines push the run's first line out within a
        # second (two tries on the H200 waited for it in vain, 2026-11-30).
        await wait_until(pilot, lambda: "Run 3/" in screen_text(app), timeout=300, what="Run 3")
        await settle(pilot, 3.0)
        written.append(Path(app.save_screenshot("live_gpu.svg", str(out_dir))))
        await wait_until(pilot, lambda: "session finished" in screen_text(app), timeout=300)
        await pilot.press("3")
        await settle(pilot, 1.5)
        written.append(Path(app.save_screenshot("history_gpu.svg", str(out_dir))))
    return written


async def export(out_dir: Path, db: Path, home: Path) -> list[Path]:
    session = await start_sweep(SWEEP, db, home, out_dir)
    from app_helpers import make_app, screen_text, settle, wait_until, widget_text

    written: list[Path] = []
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
    args = sys.argv[1:]
    gpu = "--gpu" in args
    args = [a for a in args if a != "--gpu"]
    out_dir = Path(args[0]) if args else ROOT / "docs" / "screenshots"
    with tempfile.TemporaryDirectory(prefix="wattlab-readme-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        os.environ["WATTLAB_HOME"] = str(home)
        db = Path(tmp) / "lab.duckdb"
        if gpu:  # the database is kept beside the pictures: the sweep's figures behind them
            db = out_dir.resolve() / "gpu_screenshots.duckdb"
            out_dir.mkdir(parents=True, exist_ok=True)
        else:
            shutil.copy(ROOT / "docs" / "measurements" / "h100_gpu_sweep.duckdb", db)
            db.chmod(0o644)
        run = export_gpu if gpu else export
        for path in asyncio.run(run(out_dir.resolve(), db, home)):
            print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
