"""J/token with and without speculative decoding (prompt lookup, ngram:K) at batch 1, 8 and 64.

    python benchmarks/speculative_study.py [--engines llamacpp,transformers,vllm] [--batches 1,8,64]
        [--k 4] [--output-tokens 48] [--repeats 1] [--out docs/measurements/speculative_cpu]

Workload: the bundled summarization set's 30 reports, each asked back word for word ("copy"), so
the answer copies from the prompt, as in the seeds' setting where prompt lookup helps; on the
bundled SmolLM2-135M (real weights, so acceptance is real). Each (engine, batch) pair runs without
and with speculation back to back, repeated --repeats times, so a load change on the box hits both.
Combinations the preflight refuses (transformers speculates at batch 1 only) are left out and listed.

It writes a sweep TOML, runs it with `wattlab sweep --db`, and prints one row per run: J/token and
its method, output tok/s, acceptance rate and tokens per target step (as the engine counted them).
--out PREFIX writes PREFIX.json (the rows) and PREFIX.duckdb.gz (the whole database).
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
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "wattlab" / "workloads" / "data" / "summarization.jsonl"
COPY = "Repeat the following report word for word, with nothing before or after it.\n\n{document}"
COLUMNS = (
    "engine",
    "batch_size",
    "speculative",
    "started_at",
    "requests_ok",
    "tokens_out",
    "duration_s",
    "throughput_tok_s",
    "j_per_token",
    "energy_method",
    "spec_draft_tokens",
    "spec_accepted_tokens",
    "spec_acceptance_rate",
    "spec_tokens_per_step",
)


def write_prompts(path: Path) -> None:
    docs = [json.loads(line)["document"] for line in DOCS.read_text(encoding="utf-8").splitlines() if line]
    path.write_text("".join(json.dumps({"prompt": COPY.format(document=d)}) + "\n" for d in docs))


def plan(args: argparse.Namespace, prompts: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The runs, and the combinations left out (with the preflight's reason). Batch 64 asks for more
    requests than the 30 reports: the prompts workload cycles through the file."""
    from wattlab.engines import registry
    from wattlab.sessions.spec import RunSpec
    from wattlab.sessions.speculation import speculation_problems

    runs, skipped = [], []
    for engine in args.engines:
        for batch in args.batches:
            pair: list[dict[str, Any]] = []
            for speculative in (None, f"ngram:{args.k}"):
                run: dict[str, Any] = {
                    "engine": engine,
                    "device": "cpu",
                    "batch_size": batch,
                    # batch 1: a few requests in a row; larger batches: one full batch of the reports
                    "requests": max(batch, args.requests_at_1) if batch == 1 else batch,
                    "warmup_requests": min(batch, 4),
                    "output_tokens": args.output_tokens,
                }
                if speculative:
                    run["speculative"] = speculative
                spec = RunSpec(workload="prompts", prompts_file=str(prompts), **run)
                problems = speculation_problems(spec, registry()[engine])
                if problems:
                    skipped.append(f"{engine} batch {batch} {speculative}: {problems[0].text}")
                    pair = []
                    break
                pair.append(run)
            for repeat in range(args.repeats):
                runs += [{**r, "_repeat": repeat} for r in pair]
    return runs, skipped


def toml(runs: list[dict[str, Any]], prompts: Path, threads: int | None) -> str:
    lines = [
        "[session]",
        'name = "speculative decoding study (copy workload)"',
        "idle_s = 3",
        "cooldown_s = 0",
        "",
        "[defaults]",
        'model = "smollm2-135m-instruct"',
        'workload = "prompts"',
        f"prompts_file = {json.dumps(str(prompts))}",
        'decoding = "greedy"',
        "",
    ]
    for run in runs:
        lines.append("[[runs]]")
        for key, value in run.items():
            if key.startswith("_"):
                continue
            lines.append(f"{key} = {json.dumps(value)}")
        if threads and run["engine"] in ("llamacpp", "transformers"):
            lines.append(f"options = {{ n_threads = {threads} }}")
        lines.append("")
    return "\n".join(lines)


def read_rows(db: Path) -> list[dict[str, Any]]:
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        cur = con.execute(f"SELECT {', '.join(COLUMNS)} FROM runs ORDER BY started_at")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    finally:
        con.close()


def fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engines", default="llamacpp,transformers,vllm")
    ap.add_argument("--batches", default="1,8,64")
    ap.add_argument("--k", type=int, default=4, help="draft tokens per step (ngram:K)")
    ap.add_argument("--output-tokens", type=int, default=48)
    ap.add_argument("--requests-at-1", type=int, default=4, help="requests of the batch-1 runs")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, help="n_threads for llama.cpp and torch")
    ap.add_argument("--interleave", action="store_true", help="one sweep per run, in alternating order")
    ap.add_argument("--out", default=None, help="PREFIX: write PREFIX.json and PREFIX.duckdb.gz")
    args = ap.parse_args()
    args.engines = [e for e in args.engines.split(",") if e]
    args.batches = [int(b) for b in args.batches.split(",") if b]

    work = Path(tempfile.mkdtemp(prefix="wattlab-spec-"))
    prompts = work / "copy.jsonl"
    write_prompts(prompts)
    runs, skipped = plan(args, prompts)
    db = work / "study.duckdb"
    env = {**os.environ, "WATTLAB_HOME": str(work / "home")}
    # One sweep runs the runs of one engine load together (plain first, then speculative); with
    # --interleave each run is a sweep of its own, so they run in the planned order, alternating.
    batches = [[r] for r in runs] if args.interleave else [runs]
    for i, batch in enumerate(batches):
        sweep = work / f"speculative-{i}.toml"
        sweep.write_text(toml(batch, prompts, args.threads))
        cmd = [sys.executable, "-m", "wattlab", "sweep", str(sweep), "--db", str(db)]
        print("$", " ".join(cmd), flush=True)
        done = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode not in (0, 1):
            print(done.stderr[-3000:], file=sys.stderr)
            return done.returncode
    rows = read_rows(db)
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + " --- |" * len(COLUMNS))
    for row in rows:
        print("| " + " | ".join(fmt(row[c]) for c in COLUMNS) + " |")
    for line in skipped:
        print("left out:", line)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "command": " ".join(sys.argv),
            "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
            f"load average {os.getloadavg()[0]:.1f} at the end",
            "python": platform.python_version(),
            "skipped": skipped,
        }
        out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=str))
        with open(db, "rb") as src, gzip.open(str(out) + ".duckdb.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
        print(f"wrote {out.with_suffix('.json')} and {out}.duckdb.gz")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
