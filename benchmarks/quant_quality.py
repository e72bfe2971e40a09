"""Quantization vs quality on the bundled SmolLM2-135M-Instruct, through `wattlab sweep` itself.

Every quantization variant that runs on this box (llama.cpp GGUF types requantized from the bundled
Q4_1, a q8_0 KV cache; transformers dtypes and torchao weight-only int8 / int4) runs the built-in
perplexity text and the built-in QA set (first --qa-limit items). Prints one table (markdown): per
variant, perplexity, QA F1, J per generated token (QA runs) and J per scored token (perplexity runs),
with the energy method the meters gave (on a box without RAPL: `estimated`, CPU utilisation x TDP).

    python benchmarks/quant_quality.py                       # 5-8 min on the 2-core CPU box
    python benchmarks/quant_quality.py --qa-limit 4 --only transformers:int8wo,llamacpp:Q8_0

Writes to --out (default docs/measurements/quant_quality/): the sweep it ran (sweep.toml), the table
(table.md), the figures (results.json) and the session's DuckDB, gzipped (quant_quality.duckdb.gz).
Derived model files are cached under $WATTLAB_MODELS (else the temporary data dir).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MODEL = "smollm2-135m-instruct"
# (engine, variant, options, label). llama.cpp: the bundled file's own Q4_1 first; the others are
# requantized from it by llama_model_quantize (derive.py), so their quality differences come from
# requantization on top of Q4_1's rounding. transformers loads the checkpoint de-quantized from it.
VARIANTS: list[tuple[str, str, dict[str, Any], str]] = [
    ("llamacpp", "Q4_1", {}, "Q4_1 (as shipped)"),
    ("llamacpp", "Q8_0", {}, "Q8_0"),
    ("llamacpp", "F16", {}, "F16"),
    ("llamacpp", "Q4_K_M", {}, "Q4_K_M"),
    ("llamacpp", "Q3_K_M", {}, "Q3_K_M"),
    ("llamacpp", "Q2_K", {}, "Q2_K"),
    # A quantized V cache needs flash attention in llama.cpp.
    ("llamacpp", "Q4_1", {"type_k": "q8_0", "type_v": "q8_0", "flash_attn": True}, "Q4_1 + KV q8_0"),
    ("transformers", "fp32", {}, "fp32"),
    ("transformers", "bf16", {}, "bf16"),
    ("transformers", "int8wo", {}, "int8wo (torchao)"),
    ("transformers", "int4wo", {}, "int4wo (torchao)"),
]
TASKS = ("perplexity", "qa")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(str(value))


def sweep_text(variants: list[tuple[str, str, dict[str, Any], str]], qa_limit: int, idle_s: float) -> str:
    """The sweep: one run per variant and task, grouped by variant so each load serves both tasks."""
    lines = [
        "# Written by benchmarks/quant_quality.py: quantization variants x quality tasks, bundled model.",
        "[session]",
        'name = "quant quality"',
        f"idle_s = {idle_s}",
        "cooldown_s = 0",
        "",
        "[defaults]",
        f'model = "{MODEL}"',
        'device = "cpu"',
        "batch_size = 1",
        "",
    ]
    for engine, quant, options, _ in variants:
        for task in TASKS:
            lines += ["[[runs]]", f'engine = "{engine}"', f'quant = "{quant}"', f'task = "{task}"']
            if task == "qa":
                lines.append(f"limit = {qa_limit}")
            if options:
                inline = ", ".join(f"{k} = {_toml_value(v)}" for k, v in options.items())
                lines.append(f"options = {{ {inline} }}")
            lines.append("")
    return "\n".join(lines)


def read_results(db: Path) -> list[dict[str, Any]]:
    """One dict per run: variant, options, task, status, energy, tokens and the task's metrics."""
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute(
            "SELECT run_id, engine, quant, task, status, error, energy_j, energy_method, duration_s, "
            "tokens_in, tokens_out, j_per_token, load_s, peak_mem_mib, spec_json FROM runs ORDER BY run_id"
        ).fetchall()
        names = [d[0] for d in con.description]
        quality = con.execute("SELECT run_id, metric, value, n FROM quality").fetchall()
    finally:
        con.close()
    metrics: dict[str, dict[str, float]] = {}
    for run_id, metric, value, _n in quality:
        metrics.setdefault(run_id, {})[metric] = value
    out = []
    for row in rows:
        run = dict(zip(names, row, strict=True))
        spec = run.pop("spec_json")
        spec = json.loads(spec) if isinstance(spec, str) else (spec or {})
        run["options"] = spec.get("options") or {}
        run["metrics"] = metrics.get(run["run_id"], {})
        out.append(run)
    return out


def _label(run: dict[str, Any], variants: list[tuple[str, str, dict[str, Any], str]]) -> str:
    for engine, quant, options, label in variants:
        if run["engine"] == engine and run["quant"] == quant and run["options"] == options:
            return label
    return f"{run['quant']} {run['options']}"


def _ratio(run: dict[str, Any] | None, top: str, bottom: str) -> float | None:
    if not run or not run.get(top) or not run.get(bottom):
        return None
    return float(run[top]) / float(run[bottom])


def table(runs: list[dict[str, Any]], variants: list[tuple[str, str, dict[str, Any], str]]) -> str:
    """Markdown: one row per variant (its perplexity run and its QA run side by side)."""
    by: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for run in runs:
        by.setdefault((run["engine"], _label(run, variants)), {})[run["task"]] = run
    head = (
        "| engine | variant | perplexity | QA F1 | QA exact | QA tokens out | J / generated token (QA) | "
        "J / scored token (perplexity) | QA s / token | peak MiB (QA) | energy method |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    )
    lines = [head]
    for (engine, label), tasks in by.items():
        ppl, qa = tasks.get("perplexity"), tasks.get("qa")

        def fig(run: dict[str, Any] | None, value: float | None, fmt: str) -> str:
            if run is None:
                return "not run"
            if run["status"] != "finished":
                return f"{run['status']}: {(run['error'] or '')[:60]}"
            return "-" if value is None else format(value, fmt)

        ppl_value = ppl["metrics"].get("perplexity") if ppl else None
        f1 = qa["metrics"].get("f1") if qa else None
        exact = qa["metrics"].get("exact_match") if qa else None
        per_scored = (
            ppl["energy_j"] / ppl["tokens_in"] if ppl and ppl["energy_j"] and ppl["tokens_in"] else None
        )
        s_per_tok = (
            qa["duration_s"] / qa["tokens_out"] if qa and qa["duration_s"] and qa["tokens_out"] else None
        )
        methods = sorted({r["energy_method"] for r in (ppl, qa) if r and r["energy_method"]})
        lines.append(
            f"| {engine} | {label} | {fig(ppl, ppl_value, '.2f')} | {fig(qa, f1, '.3f')} | "
            f"{fig(qa, exact, '.3f')} | {fig(qa, qa['tokens_out'] if qa else None, 'd')} | "
            f"{fig(qa, qa['j_per_token'] if qa else None, '.2f')} | "
            f"{fig(ppl, per_scored, '.3f')} | {fig(qa, s_per_tok, '.3f')} | "
            f"{fig(qa, qa['peak_mem_mib'] if qa else None, '.0f')} | {', '.join(methods) or '-'} |"
        )
    return "\n".join(lines)


def _plain_db(path: Path) -> Path:
    """A gzipped DuckDB unpacked to a temporary file (DuckDB reads only plain files)."""
    if path.suffix != ".gz":
        return path
    plain = Path(tempfile.mkdtemp(prefix="quant-quality-db-")) / path.stem
    with gzip.open(path, "rb") as src, plain.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    return plain


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="docs/measurements/quant_quality", help="output folder")
    parser.add_argument("--qa-limit", type=int, default=8, help="QA items per run (default 8)")
    parser.add_argument("--idle-s", type=float, default=5.0, help="idle baseline before the first run")
    parser.add_argument(
        "--only", default="", help="comma list of engine:variant to run (default: every variant)"
    )
    parser.add_argument(
        "--from-db", help="print the table of an earlier run's DuckDB (.duckdb or .gz); run nothing"
    )
    args = parser.parse_args()
    if args.from_db:
        print(table(read_results(_plain_db(Path(args.from_db))), VARIANTS))
        return 0
    variants = VARIANTS
    if args.only:
        wanted = {tuple(x.split(":", 1)) for x in args.only.split(",")}
        variants = [v for v in VARIANTS if (v[0], v[1]) in wanted]
        if not variants:
            print(f"--only {args.only!r} names no variant of {[f'{e}:{q}' for e, q, _, _ in VARIANTS]}")
            return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="quant-quality-"))
    env = {**os.environ, "WATTLAB_HOME": str(work / "home")}
    env.setdefault("WATTLAB_MODELS", str(work / "models"))
    sweep = out / "sweep.toml"
    sweep.write_text(sweep_text(variants, args.qa_limit, args.idle_s), encoding="utf-8")
    db = work / "quant_quality.duckdb"
    started = time.time()
    load = os.getloadavg()
    done = subprocess.run(
        [sys.executable, "-m", "wattlab", "sweep", str(sweep), "--db", str(db), "--quiet"],
        env=env,
        check=False,
    )
    wall = time.time() - started
    if not db.exists():
        print(f"wattlab sweep exited {done.returncode} without a database")
        return 1
    runs = read_results(db)
    text = table(runs, variants)
    load_after = os.getloadavg()
    import importlib.metadata as md

    versions = {p: md.version(p) for p in ("torch", "transformers", "torchao", "llama_cpp_python")}
    meta = {
        "command": "python benchmarks/quant_quality.py " + " ".join(sys.argv[1:]),
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime(started)),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
        "versions": versions,
        "wall_s": round(wall, 1),
        "load_avg_1m_before_after": [round(load[0], 2), round(load_after[0], 2)],
        "sweep_exit": done.returncode,
        "qa_limit": args.qa_limit,
    }
    (out / "results.json").write_text(json.dumps({"meta": meta, "runs": runs}, indent=1, default=str) + "\n")
    (out / "table.md").write_text(text + "\n")
    with db.open("rb") as src, gzip.open(out / "quant_quality.duckdb.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    print(json.dumps(meta, indent=1))
    print(text)
    shutil.rmtree(work / "home", ignore_errors=True)
    return 0 if done.returncode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
