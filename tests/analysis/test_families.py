"""Model families (engines/families.py) and the report's family, scaling and transform sections
(analysis/families.py), on small DuckDBs built with commit.write_run; no engine."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from wattlab.analysis.report import fmt_num, load_configs, write_report
from wattlab.analysis.scaling import fit_power_law
from wattlab.engines import derive, models
from wattlab.engines.families import (
    FAMILIES,
    local_family,
    member_of,
    model_params,
    published_params,
    real_weights,
)
from wattlab.errors import ConfigError
from wattlab.sessions import commit
from wattlab.sessions.store import Store

SID = "s-fam"


def _config(arch: str) -> dict[str, Any]:
    return json.loads(derive.random_config_path(arch).read_text())


# --- the family table -----------------------------------------------------------------------------
def test_every_family_member_is_a_catalog_shape_ordered_teacher_first() -> None:
    names = {m.name for m in models.list_models()}
    assert {f.name for f in FAMILIES} == {"llama-3", "qwen2.5", "smollm2"}
    for family in FAMILIES:
        assert len(family.members) == 3
        assert all(f"random:{arch}" in names for arch in family.members), family.name
        sizes = [published_params(arch) for arch in family.members]
        assert all(s is not None for s in sizes)
        assert sizes == sorted(sizes, reverse=True), f"{family.name}: the teacher is the largest"  # type: ignore[type-var]


def test_members_of_one_family_share_the_vocabulary() -> None:
    for family in FAMILIES:
        configs = [_config(arch) for arch in family.members]
        # the embedding covers the shared tokenizer (Qwen2.5 pads 7B's table further than the small ones)
        assert all(c["vocab_size"] >= (family.vocab_size or 0) for c in configs), family.name
        assert all(c["vocab_size"] - (family.vocab_size or 0) < 1024 for c in configs), family.name
        # the special tokens are the same ids: one tokenizer
        assert len({json.dumps([c.get("bos_token_id"), c.get("eos_token_id")]) for c in configs}) == 1
        # the ladders whose tables are not padded agree exactly
        if family.name != "qwen2.5":
            assert {c["vocab_size"] for c in configs} == {family.vocab_size}


def test_the_added_qwen_1_5b_shape_has_its_published_size() -> None:
    from wattlab.engines.random_gguf import arch_shape, tensor_plan

    config = _config("qwen2.5-1.5b")
    config.pop("_wattlab")
    weights = sum(
        t.nbytes // 2 for t in tensor_plan(arch_shape("qwen2.5-1.5b", config)) if t.kind == "weight"
    )
    assert abs(weights - 1.54e9) / 1.54e9 < 0.01


def test_models_map_to_their_family_and_rank() -> None:
    llama, qwen, smol = FAMILIES
    assert member_of("random:llama-3.1-8b") == (llama, 0)
    assert member_of("random:qwen2.5-0.5b") == (qwen, 2)
    assert member_of("smollm2-135m-instruct") == (smol, 2)  # the bundled trained weights
    assert member_of("random:tiny-llama") is None and member_of("/models/x") is None
    local = local_family("/m/teacher, /m/student", 1)
    assert local.teacher == "/m/teacher" and local.students == ("/m/student",)
    assert member_of("/m/student/", [local]) == (local, 1)  # the same path, spelled differently
    assert model_params("random:qwen2.5-1.5b") == pytest.approx(1.54e9)
    assert real_weights("smollm2-135m-instruct") and not real_weights("random:llama-3.2-1b")


def test_a_family_of_one_model_is_refused() -> None:
    with pytest.raises(ConfigError, match="needs a teacher and a student") as err:
        local_family("/m/only")
    assert "--family" in (err.value.fix or "")


# --- the report -----------------------------------------------------------------------------------
def _run(seq: int, **kw: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "run_id": f"{SID}-{seq:03d}",
        "session_id": SID,
        "seq": seq,
        "status": "finished",
        "engine": "transformers",
        "model": "random:llama-3.2-1b",
        "quant": "bf16",
        "device": "cuda",
        "batch_size": 4,
        "mode": "offline",
        "workload": "synthetic",
        "input_tokens": 128,
        "output_tokens": 64,
        "decoding": "greedy",
        "energy_method": "counter",
        "throughput_tok_s": 100.0,
        "spec_json": {"options": {}},
    }
    row.update(kw)
    return row


# J/token = 2e-9 · params^0.8 and latency = 1e-6 · params^0.5 over the Llama ladder: the fit must find them.
LLAMA = {"random:llama-3.1-8b": 8.03e9, "random:llama-3.2-3b": 3.21e9, "random:llama-3.2-1b": 1.24e9}


def _law(params: float) -> dict[str, float]:
    return {"j_per_token": 2e-9 * params**0.8, "e2e_p50_s": 1e-6 * params**0.5}


RUNS = [
    *(_run(i, model=m, **_law(p)) for i, (m, p) in enumerate(LLAMA.items(), 1)),
    # a student at another batch size: no teacher with the same levers
    _run(4, model="random:llama-3.2-1b", batch_size=16, j_per_token=0.5, e2e_p50_s=0.5),
    # a local teacher/student pair with trained weights and quality (params from the runs)
    _run(
        5,
        model="/m/teacher",
        task="gsm8k",
        params=7_000_000_000,
        j_per_token=2.0,
        e2e_p50_s=4.0,
        quality=0.60,
        quality_metric="exact_match",
    ),
    _run(
        6,
        model="/m/student",
        task="gsm8k",
        params=1_000_000_000,
        j_per_token=0.5,
        e2e_p50_s=1.0,
        quality=0.45,
        quality_metric="exact_match",
    ),
    # transforms of the bundled model on a task: the baseline and two transforms
    _run(
        7,
        model="smollm2-135m-instruct",
        engine="llamacpp",
        quant="Q4_1",
        task="arc",
        j_per_token=0.10,
        e2e_p50_s=1.0,
        quality=0.50,
        quality_metric="accuracy",
    ),
    _run(
        8,
        model="smollm2-135m-instruct",
        engine="llamacpp",
        quant="Q4_1",
        task="arc",
        j_per_token=0.08,
        e2e_p50_s=0.9,
        quality=0.45,
        quality_metric="accuracy",
        transform="prune:layers:2",
    ),
    _run(
        9,
        model="smollm2-135m-instruct",
        engine="llamacpp",
        quant="Q4_1",
        task="arc",
        j_per_token=0.06,
        e2e_p50_s=0.8,
        quality=0.44,
        quality_metric="accuracy",
        transform="prune:magnitude:0.5",
    ),
]


def _store(tmp_path: Path, runs: list[dict[str, Any]]) -> Store:
    store = Store(tmp_path / "w.duckdb")
    with store.writer() as con:
        commit.write_session(
            con, {"session_id": SID, "created_at": "2026-11-29", "status": "finished", "kind": "sweep"}
        )
        for r in runs:
            commit.write_run(con, r)
    return store


def _report(tmp_path: Path, runs: list[dict[str, Any]], families: list[str] | None = None) -> str:
    store = _store(tmp_path, runs)
    write_report(store, SID, tmp_path / "r", families=families)
    md = (tmp_path / "r" / "report.md").read_text()
    assert "<h2>" in (tmp_path / "r" / "report.html").read_text()
    return md


def _section(md: str, title: str) -> str:
    start = md.index(f"## {title}")
    end = md.find("\n## ", start + 1)
    return md[start : end if end > 0 else None]


def test_students_against_their_teacher_and_the_scaling_fit(tmp_path: Path) -> None:
    md = _report(tmp_path, RUNS, families=["/m/teacher,/m/student"])
    section = _section(md, "Model families: students against their teacher")
    llama = section[section.index("### Family llama-3") : section.index("### Family local-1")]
    assert "teacher random:llama-3.1-8b" in llama and "128,256 tokens" in llama
    # each student's ratios against the teacher, from the laws above
    one_b = next(line for line in llama.splitlines() if line.startswith("| random:llama-3.2-1b"))
    j_ratio, lat_ratio = (1.24e9 / 8.03e9) ** 0.8, (1.24e9 / 8.03e9) ** 0.5
    assert f"| {fmt_num(j_ratio, 3)}x | {fmt_num(lat_ratio, 3)}x |" in one_b
    assert "random weights: not meaningful" not in one_b and "no quality measured" in one_b
    assert "No teacher run with the same settings for transformers random:llama-3.2-1b/bf16 bs16" in llama
    # the power law recovered: exponent 0.8 (J/token) and 0.5 (latency), R² 1, three sizes
    assert "J/token = " in llama and "(params/1B)^0.800 (R² 1.000, n = 3" in llama
    assert "p50 latency (s) = " in llama and "(params/1B)^0.500 (R² 1.000, n = 3" in llama
    # the local pair: trained weights, so the quality delta is shown; two sizes, so no fit
    local = section[section.index("### Family local-1") :]
    row = next(line for line in local.splitlines() if line.startswith("| /m/student"))
    assert "| 0.25x |" in row and "-0.150 (0.45 vs 0.6)" in row
    assert "Fewer than three sizes" in local


def test_fit_in_the_report_matches_the_scaling_module(tmp_path: Path) -> None:
    md = _report(tmp_path, RUNS[:3])
    xs = list(LLAMA.values())
    fit = fit_power_law([x / 1e9 for x in xs], [_law(p)["j_per_token"] for p in xs])
    match = re.search(r"J/token = ([\d.,]+) x \(params/1B\)\^([\d.]+)", md)
    assert match is not None
    assert float(match.group(2)) == pytest.approx(fit.b, abs=1e-3)
    assert float(match.group(1).replace(",", "")) == pytest.approx(fit.a, rel=1e-3)


def test_transforms_ranked_by_quality_per_joule(tmp_path: Path) -> None:
    md = _report(tmp_path, RUNS)
    section = _section(md, "Transforms: quality per joule against the untransformed model")
    # quality/J: base 0.5/0.10 = 5; layers 0.45/0.08 = 5.625 (+12.5%); magnitude 0.44/0.06 = 7.33 (+46.7%)
    rows = [line for line in section.splitlines() if line.startswith("| 1 ") or line.startswith("| 2 ")]
    assert "prune:magnitude:0.5" in rows[0] and "+46.7%" in rows[0]
    assert "prune:layers:2" in rows[1] and "+12.5%" in rows[1]
    assert "Best quality per joule: transform prune:magnitude:0.5" in section
    assert "random weights" not in section
    # a transformed config is its own configuration, not averaged with its baseline
    configs, _ = load_configs(_store(tmp_path / "again", RUNS), SID)
    assert len([c for c in configs if c.settings["model"] == "smollm2-135m-instruct"]) == 3


def test_transforms_without_quality_say_so(tmp_path: Path) -> None:
    runs = [
        _run(1, j_per_token=0.2, e2e_p50_s=1.0),
        _run(2, j_per_token=0.15, e2e_p50_s=0.9, transform="prune:mlp:0.25"),
        _run(3, batch_size=8, j_per_token=0.1, e2e_p50_s=0.9, transform="lora:16"),  # no twin
    ]
    section = _section(
        _report(tmp_path, runs), "Transforms: quality per joule against the untransformed model"
    )
    assert "No quality measured for a transformed run" in section
    assert "no quality measured" in section
    assert "By energy alone: transform prune:mlp:0.25" in section and "-25.0%" in section
    assert "1 transformed configuration(s) have no untransformed run" in section


def test_no_family_or_transform_section_when_nothing_applies(tmp_path: Path) -> None:
    md = _report(tmp_path, [_run(1, j_per_token=0.2, e2e_p50_s=1.0)])
    assert "Model families" not in md and "Transforms" not in md


def test_a_local_family_with_no_run_is_named(tmp_path: Path) -> None:
    md = _report(tmp_path, [_run(1, j_per_token=0.2, e2e_p50_s=1.0)], families=["/a,/b"])
    assert "Family local-1: no finished run of this session uses two of its models." in md


def test_report_family_option_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from wattlab.cli import main

    _store(tmp_path, RUNS)
    db, out = str(tmp_path / "w.duckdb"), str(tmp_path / "out")
    assert main(["report", SID, "--db", db, "--out", out, "--family", "/m/teacher,/m/student"]) == 0
    assert "### Family local-1: teacher /m/teacher" in (tmp_path / "out" / "report.md").read_text()
    capsys.readouterr()
    assert main(["report", SID, "--db", db, "--out", out, "--family", "/m/teacher"]) == 2
    err = capsys.readouterr().err
    assert "needs a teacher and a student" in err and "--family /models/teacher,/models/student" in err
