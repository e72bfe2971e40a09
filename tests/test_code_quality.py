"""The code stays ruff-clean (lint and format) and type-checks (DESIGN convention 8)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> list[str]:
    if (
        shutil.which(name) is None
        and subprocess.run([sys.executable, "-m", name, "--version"], capture_output=True).returncode
    ):
        pytest.skip(f"{name} is not installed (pip install -e '.[dev]')")
    return [sys.executable, "-m", name]


def test_ruff_lint_and_format() -> None:
    ruff = _tool("ruff")
    lint = subprocess.run([*ruff, "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = subprocess.run([*ruff, "format", "--check", "."], cwd=ROOT, capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


# In the default suite: ~50 s of CPU from a cold cache (torch's and vLLM's stubs), ~7 s warm.
def test_mypy() -> None:
    mypy = _tool("mypy")
    out = subprocess.run([*mypy, "wattlab"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_only_the_devices_layer_imports_vendor_libraries() -> None:
    """pynvml, amdsmi and jtop are imported in wattlab/devices/ alone: a new vendor is two files there
    (docs/ARCHITECTURE.md), and meters and engines ask the devices layer."""
    import re

    root = Path(__file__).resolve().parents[1] / "wattlab"
    pattern = re.compile(r"^\s*(import|from)\s+(pynvml|amdsmi|jtop)\b", re.MULTILINE)
    offenders = [
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if pattern.search(p.read_text()) and p.relative_to(root).parts[0] != "devices"
    ]
    assert offenders == []
