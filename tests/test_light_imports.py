"""Importing wattlab or running `wattlab --help` must not import any heavy backend (DESIGN convention 5)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["torch", "vllm", "llama_cpp", "pynvml", "amdsmi", "jtop", "transformers", "codecarbon", "pandas"]


def _loaded_after(code: str) -> list[str]:
    probe = code + f"\nimport sys, json\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_wattlab_and_its_layers_is_light() -> None:
    loaded = _loaded_after(
        "import wattlab, wattlab.cli, wattlab.meters, wattlab.engines, "
        "wattlab.sessions.spec, wattlab.workloads"
    )
    assert loaded == []


def test_help_imports_no_backend() -> None:
    code = (
        "import sys\nsys.argv=['wattlab','--help']\nfrom wattlab.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass"
    )
    assert _loaded_after(code) == []
