"""A native crash leaves something to diagnose, and model derivation never shares the engine process.

- The engine worker's log (the spool's worker-N.log) is its fd 1 and 2, unbuffered, with a line per op
  and faulthandler armed on it: a SIGSEGV leaves the op it hit and every thread's Python stack, and
  the run's error names the signal, the op and the last log lines.
- Deriving model files (random GGUF writing, quantization) runs in a child of the worker: a crash
  there is a ModelError naming the model, the step and the signal, and the sweep goes on.
"""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path
from typing import Any

import pytest

from wattlab.engines import derive, models
from wattlab.errors import EngineCrashed, ModelError
from wattlab.sessions.runner import Runner
from wattlab.sessions.spec import parse_sweep, toml_value
from wattlab.sessions.store import Store
from wattlab.sessions.worker import WorkerClient, crash_tail

FAKE: dict[str, Any] = {
    "engine": "fake",
    "model": "fake:crashlog",
    "input_tokens": 32,
    "output_tokens": 8,
    "requests": 1,
    "batch_size": 1,
    "warmup_requests": 0,
    "options": {"tok_s": 400, "prefill_tok_s": 4000},
}

needs_random_gguf = pytest.mark.skipif(
    importlib.util.find_spec("gguf") is None or models.bundled_gguf() is None,
    reason="random GGUF files need the gguf package and the bundled SmolLM2 GGUF",
)


def run_sweep(tmp_path: Path, body: str, **defaults: Any) -> tuple[list[dict[str, Any]], Store, Runner]:
    lines = [f"{k} = {toml_value(v)}" for k, v in {**FAKE, **defaults}.items()]
    toml = '[session]\nidle_s = 0\nmeters = "estimate"\n\n[defaults]\n' + "\n".join(lines) + "\n"
    store = Store(tmp_path / "w.duckdb")
    runner = Runner(parse_sweep(toml + textwrap.dedent(body)), store=store)
    return runner.run(), store, runner


def rows_of(store: Store, runner: Runner) -> list[dict[str, Any]]:
    return store.query_dicts("SELECT * FROM runs WHERE session_id = ? ORDER BY seq", [runner.session_id])


def test_a_segfault_at_load_leaves_the_op_and_the_stack_in_the_log(tmp_path: Path) -> None:
    log = tmp_path / "worker-1.log"
    worker = WorkerClient(log)
    try:
        with pytest.raises(EngineCrashed) as info:
            worker.call(
                "load",
                config={"engine": "fake", "model": "fake:x", "options": {"fail": "segv", "fail_at": "load"}},
                timeout_s=60,
            )
    finally:
        worker.close(timeout_s=5)
    text = log.read_text()
    assert "op load: engine=fake model=fake:x" in text
    assert "fake engine: segfaulting on purpose" in text
    assert "Fatal Python error: Segmentation fault" in text
    assert "Current thread" in text and "in _fail" in text and "in op_load" in text
    message = info.value.message
    assert "killed by SIGSEGV during op load: engine=fake model=fake:x" in message
    assert "last log lines:" in message and "Fatal Python error: Segmentation fault" in message
    assert "in _fail" in message  # the crashing thread's innermost frame is quoted
    assert len(message.split("last log lines:\n", 1)[1].splitlines()) <= 6


def test_a_segfault_mid_run_fails_that_run_and_the_sweep_goes_on(tmp_path: Path) -> None:
    results, store, runner = run_sweep(
        tmp_path,
        """
        [[runs]]
        options = { fail = "segv", fail_after_tokens = 3 }

        [[runs]]
        output_tokens = 4
        """,
    )
    rows = rows_of(store, runner)
    assert [r["status"] for r in rows] == ["failed", "finished"]
    error = rows[0]["error"]
    assert "SIGSEGV" in error and "during op generate: 1 requests" in error
    assert "Fatal Python error: Segmentation fault" in error and "fake engine: segfaulting" in error
    assert results[0]["error_title"] == "Engine crashed"
    log = (runner.spool.dir / "worker-1.log").read_text()
    assert "op load: engine=fake" in log and "op generate:" in log and "Fatal Python error" in log
    assert "op load ok" in (runner.spool.dir / "worker-2.log").read_text()  # a healthy worker logs too


def test_the_tail_of_a_plain_log_is_its_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "w.log"
    log.write_text("".join(f"line {i}\n\n" for i in range(20)))
    assert crash_tail(log).splitlines() == [f"    line {i}" for i in range(15, 20)]
    assert crash_tail(tmp_path / "missing.log") == ""


def _random_tiny_config(variant: str = "F16") -> Any:
    cfg = models.resolve("random:tiny-llama", "llamacpp", variant, "cpu", prepare=False)
    assert cfg.options.get("derive_from") == "random:tiny-llama" and not Path(cfg.path).exists()
    return cfg


@needs_random_gguf
def test_a_crashing_derivation_child_is_a_model_error_naming_the_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATTLAB_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv(derive.CRASH_ENV, "F16")
    cfg = _random_tiny_config()
    with pytest.raises(ModelError) as info:
        derive.derive_in_child(cfg)
    err = info.value
    assert "random:tiny-llama as F16" in err.message and "killed by SIGSEGV" in err.message
    assert "while writing random:tiny-llama as an F16 GGUF" in err.message
    assert err.fix and "delete the partial files under" in err.fix and ".tmp-" in err.fix
    assert not Path(cfg.path).exists()  # never a half-written target
    # The next try (no crash) reclaims the partial file and lands the model.
    monkeypatch.delenv(derive.CRASH_ENV)
    derive.derive_in_child(cfg)
    assert Path(cfg.path).exists()
    assert not list(Path(cfg.path).parent.glob(".*.tmp-*"))


@needs_random_gguf
@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="needs llama-cpp-python")
def test_a_derivation_crash_fails_its_run_and_the_sweep_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATTLAB_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv(derive.CRASH_ENV, "F16")
    results, store, runner = run_sweep(
        tmp_path,
        """
        [[runs]]
        engine = "llamacpp"
        model = "random:tiny-llama"
        quant = "Q8_0"
        device = "cpu"

        [[runs]]
        """,
        options={},
    )
    rows = rows_of(store, runner)
    assert [r["status"] for r in rows] == ["failed", "finished"]
    assert "killed by SIGSEGV while writing random:tiny-llama as an F16 GGUF" in rows[0]["error"]
    assert "delete the partial files" in rows[0]["error_fix"]
    assert results[0]["error_title"] == "Model derivation crashed"
    log = (runner.spool.dir / "worker-1.log").read_text()
    assert "writing random:tiny-llama as an F16 GGUF" in log and "Fatal Python error" in log
