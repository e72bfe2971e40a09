"""The console in a real terminal: tmux runs `wattlab`, send-keys drives it, capture-pane reads it.

Needs tmux (apt-get install tmux); skipped with that reason where it is missing. The launch test
also needs the llama.cpp engine (it runs a real sweep on the bundled model) and is marked slow.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None, reason="tmux is not installed (apt-get install tmux)"
)

WATTLAB = str(Path(sys.executable).with_name("wattlab"))


class Tmux:
    """One detached tmux session running a command at a fixed size."""

    def __init__(self, command: list[str], env: dict[str, str], width: int = 120, height: int = 40) -> None:
        self.name = f"wattlab-test-{uuid.uuid4().hex[:8]}"
        exports = " ".join(f"{k}={shlex_quote(v)}" for k, v in env.items())
        shell = f"env {exports} {' '.join(shlex_quote(c) for c in command)}; echo CONSOLE-EXITED $?; sleep 30"
        subprocess.run(
            ["tmux", "new-session", "-d", "-x", str(width), "-y", str(height), "-s", self.name, shell],
            check=True,
        )

    def keys(self, *keys: str) -> None:
        """Send keys one by one, pausing after each: an Escape followed at once by a key reads as Alt+key."""
        for key in keys:
            subprocess.run(["tmux", "send-keys", "-t", self.name, key], check=True)
            time.sleep(0.3)

    def text(self) -> str:
        done = subprocess.run(["tmux", "capture-pane", "-p", "-t", self.name], capture_output=True, text=True)
        return done.stdout

    def wait_for(self, needle: str | Callable[[str], bool], timeout: float = 30.0) -> str:
        """The pane's text once it contains `needle` (or satisfies it, given a predicate)."""
        check = needle if callable(needle) else (lambda text: needle in text)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.text()
            if check(text):
                return text
            time.sleep(0.2)
        raise AssertionError(f"{needle!r} did not show within {timeout}s; the pane shows:\n{self.text()}")

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


def shlex_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


@pytest.fixture
def home(tmp_path: Path, small_db: Path) -> Iterator[tuple[dict[str, str], Path]]:
    db = tmp_path / "wattlab.duckdb"
    shutil.copy(small_db, db)
    env = {
        "WATTLAB_HOME": str(tmp_path / "home"),
        "TERM": "xterm-256color",
        "PATH": os.environ.get("PATH", ""),
    }
    yield env, db


def test_navigation_in_a_real_terminal(home: tuple[dict[str, str], Path]) -> None:
    env, db = home
    term = Tmux([WATTLAB, "--db", str(db)], env)
    try:
        text = term.wait_for("1 Live")
        assert "This box" in term.wait_for("This box")
        term.keys("3")
        text = term.wait_for("120 of 120 run(s)")  # not just "run(s)": the count may still be loading
        assert "120 of 120 run(s)" in text
        term.keys("/")
        time.sleep(0.5)  # let the filter box take focus before typing into it
        term.keys("vllm")
        text = term.wait_for(lambda t: bool(re.search(r"\b([1-9]\d?) of \1 run\(s\)", t)))  # fewer than 120
        # run ids as History shows them: the shortest unique suffix (e.g. 0003-014), never cut
        rows = [line for line in text.splitlines() if re.match(r"\s+(\d{6}-\d{6}-)?\w{4}-\d{3}\s", line)]
        # every listed run is vLLM's: no other engine shows, and the engine column every row now
        # shares is the first left out for room (or, where it fits, reads vllm)
        assert rows and not any(" llamacpp " in row or " transformers " in row for row in rows)
        assert all(" vllm " in row for row in rows) or not any(" vllm " in row for row in rows)
        term.keys("Escape", "5")
        text = term.wait_for("on the front of")
        term.keys("2")
        term.wait_for(lambda t: "Batch sizes" in t and "smollm2-135m-instruct" in t and "llamacpp" in t)
        term.keys("C-n")
        text = term.wait_for("1 run(s)")
        term.keys("Escape", "q")
        assert "CONSOLE-EXITED 0" in term.wait_for("CONSOLE-EXITED")
    finally:
        term.close()


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None, reason="the llamacpp engine is not installed"
)
def test_launch_from_a_real_terminal(home: tuple[dict[str, str], Path], tmp_path: Path) -> None:
    env, db = home
    sweep = tmp_path / "tiny.toml"
    sweep.write_text(
        '[session]\nidle_s = 0.5\n\n[defaults]\nengine = "llamacpp"\nmodel = "smollm2-135m-instruct"\n'
        "input_tokens = 48\noutput_tokens = 8\nrequests = 1\nwarmup_requests = 0\n\n"
        "[grid]\nbatch_size = [1]\n"
    )
    term = Tmux([WATTLAB, "--db", str(db)], env)
    try:
        term.wait_for("1 Live")
        term.keys("2")
        term.wait_for("Batch sizes")
        term.keys("C-o")
        term.wait_for("Load a sweep TOML")
        term.keys("C-u", str(sweep), "Enter")
        term.wait_for("1 run(s)")
        term.keys("C-r")
        term.wait_for("session", timeout=30)
        term.wait_for("✔ finished", timeout=300)
        # capture-pane can catch a frame the console is still drawing (status bar done, panel not yet):
        # wait briefly for a whole frame before reading the run's figures. The event log has two rows
        # at 80x24 and a loaded box adds warnings (baseline-not-idle) that scroll the run's own line
        # out of them, so the proof the run finished (not failed) is the Speed line: it shows the last
        # run's TTFT only for a finished run.
        whole = ["✔ finished", "1/1 runs", "last run: TTFT p50"]
        text = term.wait_for(lambda t: all(n in t for n in whole), timeout=10)
        assert "1/1 runs" in text
        assert "last run: TTFT p50" in text
        term.keys("q")
        assert "CONSOLE-EXITED 0" in term.wait_for("CONSOLE-EXITED")
    finally:
        term.close()
