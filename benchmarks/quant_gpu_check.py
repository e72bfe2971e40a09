"""GPU check of the transformers quantization variants through wattlab's own engine (one H200 call).

Loads `random:<arch>` (default random:llama-3.2-1b) as bf16, int8wo, int4wo, bnb8 and nf4 on cuda
through resolve() + TransformersEngine.load(), and prints per variant: the layer/weight types after
quantization, load time, greedy decode tok/s for 128 new tokens at batch 1 and 16 (after one warm
call), and peak GPU memory. Run on the GPU box with torchao and bitsandbytes wheels on PYTHONPATH:

    PYTHONPATH=$PWD:/tmp/site WATTLAB_HOME=/tmp/wh python3 benchmarks/quant_gpu_check.py

Limitation: random weights are drawn afresh at each load (unseeded), so `cos_vs_bf16` (cosine of
the last 16 positions' logits against the bf16 load) compares different models and says nothing
about quantization error; the quality effect is measured on the real model (quant_quality.py).
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import torch

from wattlab.engines import get_engine_class
from wattlab.engines.base import Decoding, Request
from wattlab.engines.models import resolve, variants

out: dict[str, Any] = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(0)}
for mod in ("transformers", "torchao", "bitsandbytes"):
    try:
        out[mod] = __import__(mod).__version__
    except Exception as exc:
        out[mod] = f"import failed: {exc!r}"[:300]
model = sys.argv[1] if len(sys.argv) > 1 else "random:llama-3.2-1b"
out["model"] = model
out["offered_gpu"] = variants(model, "transformers", device="cuda")
out["offered_cpu"] = variants(model, "transformers", device="cpu")
ids = list(range(1000, 1128))
ref = None
for variant in ["bf16", "int8wo", "int4wo", "bnb8", "nf4"]:
    row: dict = {"variant": variant}
    try:
        t0 = time.time()
        cfg = resolve(model, "transformers", variant, "cuda", max_batch=16, max_tokens=512)
        eng = get_engine_class("transformers")(cfg)
        eng.load()
        row["load_s"] = round(time.time() - t0, 2)
        m = eng.model  # type: ignore[attr-defined]
        w = m.model.layers[0].mlp.up_proj
        row["layer"] = type(w).__name__ + "/" + type(w.weight).__name__
        row["params"] = eng.num_parameters  # type: ignore[attr-defined]
        with torch.inference_mode():
            logits = m(torch.tensor([ids], device="cuda")).logits[0, -16:].float()
        if ref is None:
            ref = logits
        row["cos_vs_bf16"] = float(torch.nn.functional.cosine_similarity(logits, ref, dim=-1).mean())
        for bs in (1, 16):
            reqs = [Request(i, tuple(ids), 128, 128) for i in range(bs)]
            eng.generate(reqs[:1], Decoding(), 1)  # warm
            torch.cuda.synchronize()
            t = time.time()
            done = eng.generate(reqs, Decoding(), bs)
            torch.cuda.synchronize()
            dt = time.time() - t
            row[f"tok_s_bs{bs}"] = round(sum(c.output_tokens for c in done) / dt, 1)
            row[f"errors_bs{bs}"] = [c.error for c in done if c.error][:1]
        row["peak_mib"] = round(eng.peak_memory_mib() or 0)
        eng.close()
        del eng, m
        torch.cuda.empty_cache()
    except Exception as exc:
        row["error"] = f"{type(exc).__name__}: {exc}"[:600]
    print(json.dumps(row), flush=True)
    out.setdefault("rows", []).append(row)
with open(os.path.join(os.environ.get("OUT", "."), "gpu_check.json"), "w") as f:
    json.dump(out, f, indent=1)
print(json.dumps({k: v for k, v in out.items() if k != "rows"}))
