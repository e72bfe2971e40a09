"""Before/after of the llama.cpp adapter in one process: an older adapter file and the current one,
loaded side by side and run alternately per batch size and repeat, so load drift hits both.

    python benchmarks/llamacpp_batching_ab.py --before-rev HEAD --output-tokens 256 --option n_threads=1
    python benchmarks/llamacpp_batching_ab.py --before old_llamacpp_engine.py --json ab.json

Takes benchmarks/llamacpp_batching.py's arguments (batch sizes, requests, tokens, options, --json).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llamacpp_batching as lb

from wattlab.engines.base import Decoding

ADAPTER = "wattlab/engines/llamacpp_engine.py"


def old_adapter(argv: list[str]) -> tuple[Any, list[str]]:
    """The older LlamaCppEngine class (--before FILE or --before-rev REV, default HEAD) and the rest."""
    path, rev = None, "HEAD"
    rest = []
    it = iter(argv)
    for arg in it:
        if arg == "--before":
            path = next(it)
        elif arg == "--before-rev":
            rev = next(it)
        else:
            rest.append(arg)
    if path is None:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        text = subprocess.run(
            ["git", "show", f"{rev}:{ADAPTER}"], cwd=root, check=True, capture_output=True, text=True
        ).stdout
        path = os.path.join(tempfile.mkdtemp(), "old_llamacpp_engine.py")
        with open(path, "w") as f:
            f.write(text)
    spec = importlib.util.spec_from_file_location("old_llamacpp_engine", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module.LlamaCppEngine, rest


def main() -> int:
    from wattlab.engines.llamacpp_engine import LlamaCppEngine
    from wattlab.engines.models import DEFAULT_MODEL, resolve

    old_class, argv = old_adapter(sys.argv[1:])
    a = lb.parse_args(argv)
    batches = sorted({int(b) for b in a.batch_sizes.split(",")})
    options = {k: lb._value(v) for k, v in (o.split("=", 1) for o in a.option)}
    max_tokens = a.input_tokens + a.output_tokens + 16
    config = resolve(
        a.model or DEFAULT_MODEL, "llamacpp", a.quant, a.device,
        max_batch=max(batches), max_tokens=max_tokens, options=options,
    )  # fmt: skip
    engines = {"before": old_class(config), "after": LlamaCppEngine(config)}
    for engine in engines.values():
        engine.load()
    passes: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for batch in batches:
        n = a.requests or max(8, 2 * batch)
        requests = lb.requests_for(engines["after"], n, a)
        for engine in engines.values():
            engine.generate(requests[:batch], Decoding(), batch)  # warmup
        for _ in range(a.repeats):
            for who, engine in engines.items():
                passes.setdefault((who, batch), []).append(lb.one_pass(engine, requests, batch))
    rows = []
    print(f"{'who':>6} {'batch':>5} {'tok/s':>7} {'x b1':>6} {'TPOT ms':>8} {'TTFT p50':>9}")
    for who in engines:
        base = 0.0
        for batch in batches:
            ordered = sorted(passes[(who, batch)], key=lambda p: p["tok_s"])
            row = {"who": who, "batch": batch, **ordered[len(ordered) // 2]}
            row["all_tok_s"] = [p["tok_s"] for p in ordered]
            base = base or row["tok_s"]
            rows.append(row)
            print(
                f"{who:>6} {batch:>5} {row['tok_s']:>7.1f} {row['tok_s'] / base:>5.2f}x "
                f"{row['tpot_ms']:>8.1f} {row['ttft_p50_ms']:>9.0f}"
            )
    if a.json:
        result = {
            "benchmark": "llamacpp_batching before/after, interleaved",
            "options": options,
            "input_tokens": a.input_tokens,
            "output_tokens": a.output_tokens,
            "load_avg_end": os.getloadavg(),
            "rows": rows,
        }
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1, default=str)
    for engine in engines.values():
        engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
