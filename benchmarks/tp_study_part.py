"""The filter of benchmarks/tp_study.sh: the blocks (engine loads) of a tensor-parallel study TOML
that fit the visible GPUs, numbered, and a sweep TOML of the ones a call runs.

A block is the runs sharing model, quantization, tensor_parallel_size and pipeline_parallel_size (one
vLLM load each). Blocks needing more GPUs than visible (TP x PP > --gpus) are left out and not
numbered, so on a 4-GPU box PART=1 is the first TP4 block and on an 8-GPU box every block counts.

    python benchmarks/tp_study_part.py benchmarks/tp_study.toml --gpus 4 --list
    python benchmarks/tp_study_part.py benchmarks/tp_study.toml --gpus 8 --part 1,2 --out part.toml

--part: "all", or block numbers (among those that fit) separated by commas.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path
from typing import Any

from wattlab.sessions.spec import toml_value


def _label(run: dict[str, Any], defaults: dict[str, Any]) -> tuple[str, int]:
    """(a block's label, the GPUs it needs) for one raw [[runs]] entry over [defaults]."""
    opts = {**(defaults.get("options") or {}), **(run.get("options") or {})}
    tp, pp = int(opts.get("tensor_parallel_size", 1)), int(opts.get("pipeline_parallel_size", 1))
    quant = opts.get("quantization", "none")
    precision = run.get("quant", defaults.get("quant", "?")) if quant == "none" else quant
    model = str(run.get("model", defaults.get("model", "?"))).removeprefix("random:")
    return f"{model} TP{tp}" + (f" x PP{pp}" if pp > 1 else "") + f" {precision}", tp * pp


def blocks(doc: dict[str, Any]) -> list[tuple[str, int, list[dict[str, Any]]]]:
    """(label, GPUs needed, its runs) for every block of a parsed study TOML, in file order."""
    defaults = doc.get("defaults", {})
    out: dict[str, tuple[int, list[dict[str, Any]]]] = {}
    for run in doc.get("runs", []):
        label, gpus = _label(run, defaults)
        out.setdefault(label, (gpus, []))[1].append(run)
    return [(label, gpus, runs) for label, (gpus, runs) in out.items()]


def fitting(doc: dict[str, Any], visible: int) -> list[tuple[str, int, list[dict[str, Any]]]]:
    return [b for b in blocks(doc) if b[1] <= visible]


def select(doc: dict[str, Any], visible: int, part: str) -> list[tuple[str, int, list[dict[str, Any]]]]:
    fit = fitting(doc, visible)
    if part.strip() == "all":
        return fit
    chosen = []
    for item in part.split(","):
        n = int(item)
        if not 1 <= n <= len(fit):
            raise ValueError(f"block {n} does not exist: {len(fit)} block(s) fit {visible} GPU(s)")
        chosen.append(fit[n - 1])
    return chosen


def part_toml(doc: dict[str, Any], chosen: list[tuple[str, int, list[dict[str, Any]]]]) -> str:
    """A sweep TOML of the chosen blocks: the study's [session] (its name naming them) and [defaults]."""
    session = dict(doc.get("session", {}))
    session["name"] = f"{session.get('name', 'TP study')} [{'; '.join(label for label, _, _ in chosen)}]"
    lines = ["[session]", *(f"{k} = {toml_value(v)}" for k, v in session.items())]
    lines += ["", "[defaults]", *(f"{k} = {toml_value(v)}" for k, v in doc.get("defaults", {}).items())]
    for _, _, runs in chosen:
        for run in runs:
            lines += ["", "[[runs]]", *(f"{k} = {toml_value(v)}" for k, v in run.items())]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study", type=Path)
    ap.add_argument("--gpus", type=int, required=True, help="GPUs visible on this box")
    ap.add_argument("--list", action="store_true", help="print the blocks, numbered where they fit")
    ap.add_argument("--part", default="all", help='"all" or block numbers: 1 or 1,2')
    ap.add_argument("--out", type=Path, help="where to write the sweep TOML of --part")
    args = ap.parse_args(argv)
    doc = tomllib.loads(args.study.read_text())
    if args.list:
        n = 0
        for label, gpus, runs in blocks(doc):
            fits = gpus <= args.gpus
            n += fits
            print(f"{n if fits else '-':>2}  {label:<32} {len(runs)} runs, {gpus} GPU(s)"
                  + ("" if fits else f": needs more than the {args.gpus} visible"))  # fmt: skip
    if args.out is None:
        return 0
    try:
        chosen = select(doc, args.gpus, args.part)
    except ValueError as exc:
        print(f"PART={args.part}: {exc}", file=sys.stderr)
        return 2
    if not chosen:
        print(f"no block of {args.study} fits {args.gpus} GPU(s)", file=sys.stderr)
        return 2
    args.out.write_text(part_toml(doc, chosen))
    print(f"{args.out}: {', '.join(label for label, _, _ in chosen)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
