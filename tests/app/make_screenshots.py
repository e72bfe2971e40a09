"""Export the README's screenshots of Live, Launch, History and Pareto, drawn by the app itself.

    python tests/app/make_screenshots.py [OUT_DIR]        # default: docs/screenshots

The data is the deterministic test data (a generated database and a session spool with a live
runner stand-in), so the pictures change only when the console does. Each file is the app's own
`save_screenshot` SVG.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SIZE = (140, 42)
SESSION = "250303-101500-demo"


async def export(out_dir: Path, db: Path) -> list[Path]:
    from app_helpers import load_benchmark, make_app, settle, wait_until, widget_text, write_spool
    from textual.widgets import Input

    from wattlab.paths import spool_root
    from wattlab.sessions.spool import process_identity

    load_benchmark("make_big_db").make_db(db, runs=600, samples=60_000, runs_per_session=60, seed=11)
    spool = write_spool(spool_root(), SESSION, runs=6, finished=False)
    stand_in = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    (spool / "runner.json").write_text(json.dumps(process_identity(stand_in.pid)))
    written: list[Path] = []
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        app = make_app(db, attach=SESSION)
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(pilot, lambda: "running" in widget_text(app, "#live-status"))
            await settle(pilot, 0.5)
            written.append(Path(app.save_screenshot("live.svg", str(out_dir))))
            await pilot.press("2")
            await settle(pilot, 0.5)
            app.screen.query_one("#batch_sizes", Input).value = "1,8,32"
            app.screen.query_one("#input_tokens", Input).value = "128,512"
            await pilot.press("escape", "ctrl+n")
            await wait_until(pilot, lambda: "≈" in widget_text(app, "#launch-summary"))
            app.clear_notifications()
            await settle(pilot, 0.3)
            written.append(Path(app.save_screenshot("launch.svg", str(out_dir))))
            await pilot.press("3")
            await settle(pilot, 0.5)
            await pilot.press("space", "down", "down", "space")
            await settle(pilot, 0.3)
            written.append(Path(app.save_screenshot("history.svg", str(out_dir))))
            await pilot.press("5")
            await wait_until(pilot, lambda: "on the front" in widget_text(app, "#pareto-status"))
            await settle(pilot, 0.3)
            written.append(Path(app.save_screenshot("pareto.svg", str(out_dir))))
    finally:
        stand_in.kill()
        stand_in.wait()
    return written


def main() -> int:
    out_dir = (
        Path(sys.argv[1])
        if len(sys.argv) > 1
        else Path(__file__).resolve().parents[2] / "docs" / "screenshots"
    )
    with tempfile.TemporaryDirectory(prefix="wattlab-shots-") as tmp:
        os.environ["WATTLAB_HOME"] = str(Path(tmp) / "home")
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        for path in asyncio.run(export(out_dir.resolve(), Path(tmp) / "demo.duckdb")):
            print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
