"""Generate a plausible wattlab database of any size, through wattlab's own write path.

    python benchmarks/make_big_db.py OUT.duckdb                     # 100,000 runs, 10 million samples
    python benchmarks/make_big_db.py OUT.duckdb --runs 2000 --samples 200000 --seed 3

Prints one JSON object (rows written, seconds taken). The console tests import `make_db` to build
small deterministic databases; `benchmarks/query_time.py` times the console's queries on a big one.

What is in it (synthetic, but shaped like real sweeps, so queries and screens see realistic data):
- sessions of `--runs-per-session` runs on one of three hosts (an H100 box metered by NVML + RAPL,
  a CPU box with RAPL, a CPU box on the *estimate* meter), each with its domains and idle baseline;
- runs over engines (llamacpp, transformers, vllm, openai), the catalog's models, their
  quantizations, batch sizes 1-64, token-length bins, offline/online, greedy/sample; ~4% failed
  (out of memory, engine crash) and ~1% interrupted, as the runner records them;
- figures from a simple physical model: throughput from model size, batch and engine; power from
  the host's idle power plus a load-dependent part; energy = power x duration; J/token, gCO2e,
  latency percentiles, steady-state J/token; each energy figure with its method;
- quality (the task's primary metric) for ~20% of runs, lower for coarser quantizations;
- per-run energy rows per window (load, warmup, measured, prefill, decode, steady) and domain;
- power samples around every run's window (`--samples` in total) and run_start/run_end marks.

Every value comes from `random.Random(seed)` and a fixed epoch, so a seed gives the same file.
Rows are built as the runner builds them and written with `wattlab.sessions.commit`: small
databases run by run through `write_run`; big ones (more than `--per-run-limit` runs) in batches
through the same insert helper `write_run` uses, because one transaction per run would take
~15 minutes for 100,000 runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NS = 1_000_000_000
EPOCH = dt.datetime(2025, 3, 3, 9, 0, 0)  # sessions start here, one after another
T0_NS = 1_000 * NS  # session clock origin (monotonic_ns on the "hosts")

# name: (parameters in millions, tokens/s of one stream on the H100 with vllm bf16)
MODELS: dict[str, tuple[float, float]] = {
    "smollm2-135m-instruct": (135, 900.0),
    "random:smollm2-360m": (360, 620.0),
    "random:qwen2.5-0.5b": (494, 540.0),
    "random:llama-3.2-1b": (1236, 330.0),
    "random:llama-3.2-3b": (3213, 160.0),
    "random:llama-3.1-8b": (8030, 95.0),
}
# engine: (quantizations, speed factor vs vllm, models it can run)
ENGINES: dict[str, tuple[tuple[str, ...], float, tuple[str, ...]]] = {
    "llamacpp": (("Q4_1", "Q8_0", "F16", "Q4_K_M"), 0.55, ("smollm2-135m-instruct",)),
    "transformers": (("fp32", "bf16", "fp16"), 0.35, tuple(MODELS)),
    "vllm": (("bf16", "fp16"), 1.0, tuple(MODELS)),
    "openai": (("served",), 0.9, ("smollm2-135m-instruct", "random:qwen2.5-0.5b")),
}
QUANT_SPEED = {
    "Q4_1": 1.25,
    "Q4_K_M": 1.2,
    "Q8_0": 1.0,
    "F16": 0.8,
    "fp32": 0.5,
    "bf16": 1.0,
    "fp16": 1.0,
    "served": 1.0,
}
QUANT_QUALITY = {
    "Q4_1": 0.93,
    "Q4_K_M": 0.95,
    "Q8_0": 0.99,
    "F16": 1.0,
    "fp32": 1.0,
    "bf16": 1.0,
    "fp16": 1.0,
    "served": 1.0,
}
TASKS = {"sentiment": ("macro_f1", 0.62), "qa": ("f1", 0.41), "summarization": ("rougeL", 0.27)}
BINS = ((128, 64), (512, 128), (1024, 256), (256, 32))
BATCHES = (1, 4, 8, 16, 32, 64)


@dataclass(frozen=True)
class Host:
    name: str
    domains: tuple[dict[str, Any], ...]
    idle_w: dict[str, float]
    dynamic_w: dict[str, float]  # extra power at full load
    speed: float  # relative to the H100
    gpu: bool
    carbon: dict[str, Any]


def _domain(
    did: str, kind: str, meter: str, label: str, device: str, counter: bool, estimated: bool
) -> dict[str, Any]:
    return {
        "id": did,
        "kind": kind,
        "meter": meter,
        "label": label,
        "device": device,
        "has_counter": counter,
        "estimated": estimated,
        "counter_period_s": 0.1 if counter else None,
        "parent": None,
    }


HOSTS = (
    Host(
        "gpu-h100",
        (
            _domain("gpu0", "gpu", "nvml", "NVIDIA H100 80GB HBM3", "gpu:0", True, False),
            _domain("cpu-package-0", "cpu", "rapl", "CPU package 0", "cpu", True, False),
        ),
        {"gpu0": 72.0, "cpu-package-0": 48.0},
        {"gpu0": 520.0, "cpu-package-0": 60.0},
        1.0,
        True,
        {
            "g_per_kwh": 56.0,
            "source": "codecarbon energy mix 2023",
            "country": "FRA",
            "note": None,
            "pue": 1.2,
        },
    ),
    Host(
        "cpu-rapl",
        (_domain("cpu-package-0", "cpu", "rapl", "CPU package 0", "cpu", True, False),),
        {"cpu-package-0": 22.0},
        {"cpu-package-0": 95.0},
        0.06,
        False,
        {
            "g_per_kwh": 380.0,
            "source": "codecarbon energy mix 2023",
            "country": "DEU",
            "note": None,
            "pue": 1.0,
        },
    ),
    Host(
        "cpu-estimate",
        (_domain("cpu", "cpu", "estimate", "CPU (estimated from utilization x TDP)", "cpu", False, True),),
        {"cpu": 9.0},
        {"cpu": 56.0},
        0.04,
        False,
        {
            "g_per_kwh": 475.0,
            "source": "world average",
            "country": None,
            "note": "country unknown",
            "pue": 1.0,
        },
    ),
)


def _percentiles(rng: random.Random, median: float, spread: float) -> tuple[float, float, float, float]:
    """p50, p90, p99 and mean of a right-skewed latency distribution."""
    p90 = median * (1 + spread * (0.8 + 0.4 * rng.random()))
    p99 = p90 * (1 + spread * (0.5 + 0.5 * rng.random()))
    return median, p90, p99, (median * 2 + p90) / 3


class _Generator:
    """Builds session, run and timeline rows from one seeded random stream."""

    def __init__(self, seed: int, request_rows: bool) -> None:
        self.rng = random.Random(seed)
        self.request_rows = request_rows
        self.clock_ns = T0_NS
        self.wall = EPOCH

    def session(self, index: int, n_runs: int) -> tuple[dict[str, Any], Host]:
        rng = self.rng
        host = HOSTS[0] if rng.random() < 0.6 else HOSTS[1 + (rng.random() < 0.4)]
        session_id = f"{self.wall:%y%m%d-%H%M%S}-{index:04x}"
        runs = [{"run": i} for i in range(n_runs)]
        row = {
            "session_id": session_id,
            "name": f"sweep {index + 1} on {host.name}",
            "kind": "sweep" if n_runs > 1 else "run",
            "status": "finished",
            "created_at": self.wall.isoformat(),
            "host": host.name,
            "platform": "Linux x86_64",
            "wattlab_version": "0.1.0",
            "runs_planned": n_runs,
            "sweep_hash": f"{index:016x}",
            "spec_json": {"session": {"idle_s": 3.0}, "runs": runs[:3], "source": f"sweep-{index}.toml"},
            "meters_json": {
                "used": sorted({d["meter"] for d in host.domains}),
                "missing": []
                if host.name != "cpu-estimate"
                else [
                    {
                        "meter": "rapl",
                        "available": False,
                        "reason": "no permission to read energy_uj",
                        "fix": "sudo chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj",
                        "details": [],
                    }
                ],
            },
            "carbon_json": host.carbon,
            "idle_json": {"idle_w": host.idle_w},
            "spool_dir": None,
        }
        return row, host

    def run(self, session: dict[str, Any], host: Host, seq: int) -> dict[str, Any]:
        rng = self.rng
        engine = rng.choices(list(ENGINES), weights=(4, 3, 3 if host.gpu else 1, 1))[0]
        quants, engine_speed, models = ENGINES[engine]
        model = rng.choice(models if host.gpu else models[:2])
        quant = rng.choice(quants)
        params_m, base_speed = MODELS[model]
        batch = rng.choice(BATCHES if host.gpu else BATCHES[:3])
        in_tok, out_tok = rng.choice(BINS)
        mode = "online" if rng.random() < 0.15 else "offline"
        task = rng.choice(list(TASKS)) if rng.random() < 0.2 else None
        decoding = "sample" if rng.random() < 0.2 else "greedy"
        requests = batch * rng.choice((1, 2, 4))
        run_id = f"{session['session_id']}-{seq:03d}"
        started = self.wall
        row: dict[str, Any] = {
            "run_id": run_id,
            "session_id": session["session_id"],
            "seq": seq,
            "run_key": f"{seq:016x}",
            "started_at": started.isoformat(),
            "engine": engine,
            "engine_version": {
                "llamacpp": "llama-cpp-python 0.3.36",
                "transformers": "torch 2.13.0, transformers 5.19.0",
                "vllm": "vllm 0.12.0",
                "openai": "stdlib",
            }[engine],
            "model": model,
            "quant": quant,
            "device": "cuda" if host.gpu and engine != "llamacpp" else "cpu",
            "devices": "gpu:0,cpu" if host.gpu else "cpu",
            "params": int(params_m * 1e6),
            "mode": mode,
            "workload": "task" if task else "synthetic",
            "task": task,
            "batch_size": batch,
            "input_tokens": in_tok,
            "output_tokens": out_tok,
            "requests": requests,
            "rate": 4.0 if mode == "online" else None,
            "burstiness": 1.0,
            "max_concurrency": batch if mode == "online" else None,
            "decoding": decoding,
            "temperature": 0.7 if decoding == "sample" else 1.0,
            "top_p": 0.95 if decoding == "sample" else 1.0,
            "top_k": 0,
            "num_beams": 1,
            "seed": 0,
            "repeat": 0,
            "worker_reused": seq > 1,
            "spec_json": {"engine": engine, "model": model, "quant": quant, "batch_size": batch},
        }
        fate = rng.random()
        if fate < 0.04:
            big = params_m > 3000
            self.wall += dt.timedelta(seconds=3)
            self.clock_ns += 3 * NS
            return {
                **row,
                "status": "failed",
                "ended_at": self.wall.isoformat(),
                "error": "CUDA out of memory while loading the model"
                if big
                else "the engine worker crashed (signal 11)",
                "error_fix": "use a smaller batch or model" if big else "see the worker log in the spool",
            }
        # Throughput: one stream's speed x sub-linear batching gain x quantization x host speed.
        per_stream = base_speed * engine_speed * QUANT_SPEED[quant] * host.speed
        gain = batch ** (0.85 if engine == "vllm" else 0.6 if engine == "transformers" else 0.45)
        throughput = per_stream * gain * rng.uniform(0.92, 1.08)
        tokens_out = requests * out_tok
        duration = max(0.2, tokens_out / throughput + in_tok * requests / (throughput * 12))
        load_s = rng.uniform(0.6, 1.6) * (1 + params_m / 2000) if seq == 1 or rng.random() < 0.1 else None
        if fate < 0.05:
            duration *= rng.uniform(0.1, 0.6)
            status = "interrupted"
        else:
            status = "finished"
        load_level = min(1.0, 0.25 + 0.12 * math.log2(batch + 1) + params_m / 20000)
        t0 = self.clock_ns + int((load_s or 0) * NS) + NS // 2
        t1 = t0 + int(duration * NS)
        energy_rows, power = self._energy_rows(host, load_level, duration, load_s)
        total = sum(r["energy_j"] for r in energy_rows if r["window_name"] == "measured")
        net = sum(r["net_energy_j"] for r in energy_rows if r["window_name"] == "measured")
        method = "estimated" if host.name == "cpu-estimate" else "counter"
        ttft = _percentiles(rng, (in_tok / (per_stream * 20)) * (1 + batch / 16), 0.6)
        tpot_med = 1.0 / (per_stream * gain / batch)
        tpot = _percentiles(rng, tpot_med, 0.25)
        e2e = _percentiles(rng, ttft[0] + tpot_med * (out_tok - 1), 0.3)
        g = host.carbon["g_per_kwh"] * host.carbon["pue"]
        gco2e = total / 3.6e6 * g
        basis = "client" if row.get("mode") == "online" else "service"  # what the headline TTFT is
        result: dict[str, Any] = {
            **row,
            "status": status,
            "load_s": load_s,
            "warmup_s": 0.3 * duration / requests,
            "duration_s": duration,
            "tokens_in": in_tok * requests,
            "tokens_out": tokens_out,
            "requests_ok": requests,
            "throughput_tok_s": tokens_out / duration,
            "total_tok_s": (tokens_out + in_tok * requests) / duration,
            "requests_per_s": requests / duration,
            "ttft_p50_s": ttft[0],
            "ttft_p90_s": ttft[1],
            "ttft_p99_s": ttft[2],
            "ttft_mean_s": ttft[3],
            "ttft_basis": basis,
            **{f"ttft_{basis}_{q}_s": v for q, v in zip(("p50", "p90", "p99", "mean"), ttft, strict=True)},
            "tpot_p50_s": tpot[0],
            "tpot_p90_s": tpot[1],
            "tpot_p99_s": tpot[2],
            "tpot_mean_s": tpot[3],
            "itl_p50_s": tpot[0] * 0.97,
            "itl_p90_s": tpot[1],
            "itl_p99_s": tpot[2],
            "e2e_p50_s": e2e[0],
            "e2e_p90_s": e2e[1],
            "e2e_p99_s": e2e[2],
            "e2e_mean_s": e2e[3],
            "energy_j": total,
            "energy_net_j": net,
            "energy_method": method,
            "energy_coverage": 1.0,
            "j_per_token": total / tokens_out,
            "j_per_token_net": net / tokens_out,
            "steady_energy_j": total * 0.7,
            "steady_tokens": int(tokens_out * 0.75),
            "steady_j_per_token": total * 0.7 / int(tokens_out * 0.75),
            "j_per_request": total / requests,
            "tokens_per_j": tokens_out / total,
            "wh_per_1k_requests": total / 3600 / requests * 1000,
            "gco2e": gco2e,
            "gco2e_per_request": gco2e / requests,
            "carbon_g_per_kwh": host.carbon["g_per_kwh"],
            "carbon_source": host.carbon["source"],
            "pue": host.carbon["pue"],
            "mean_power_w": total / duration,
            "peak_power_w": power * 1.12,
            "util_mean_pct": 100 * load_level,
            "peak_mem_mib": params_m * 2.1 + 300 * batch,
            "t0_ns": t0,
            "t1_ns": t1,
            "flags": "energy-estimated" if method == "estimated" else "",
            "load_energy_j": next((r["energy_j"] for r in energy_rows if r["window_name"] == "load"), None),
            "load_energy_method": method if load_s else None,
            "energy": energy_rows,
        }
        if status == "interrupted":
            result.update(
                error="the runner stopped before this run finished (killed, crashed or power lost)",
                error_fix="rerun the sweep: finished runs are kept and skipped",
            )
        if task and status == "finished":
            metric, base = TASKS[task]
            quality = min(
                1.0,
                base
                * QUANT_QUALITY[quant]
                * (1 + math.log10(params_m / 135) * 0.25)
                * rng.uniform(0.95, 1.05),
            )
            result.update(
                quality=quality,
                quality_metric=metric,
                quality_detail=[{"task": task, "metric": metric, "value": quality, "n": 40}],
                green_index=round(100 * quality / (1 + total / tokens_out), 2),
            )
        if self.request_rows and status == "finished":
            result["requests_detail"] = self._requests(requests, in_tok, out_tok, t0, ttft[0], tpot[0])
        self.clock_ns = t1 + NS  # a second of cooldown before the next run
        self.wall = started + dt.timedelta(seconds=(t1 - t0) / NS + (load_s or 0) + 1.5)
        result["ended_at"] = self.wall.isoformat()
        return result

    def _energy_rows(
        self, host: Host, load_level: float, duration: float, load_s: float | None
    ) -> tuple[list[dict[str, Any]], float]:
        rows = []
        total_power = 0.0
        method = "estimated" if host.name == "cpu-estimate" else "counter"
        windows = [
            ("measured", duration, 1.0),
            ("prefill", duration * 0.12, 1.1),
            ("decode", duration * 0.88, 0.97),
            ("steady", duration * 0.7, 1.0),
            ("warmup", duration * 0.05, 0.8),
        ]
        if load_s:
            windows.append(("load", load_s, 0.35))
        for d in host.domains:
            idle = host.idle_w[d["id"]]
            for name, seconds, factor in windows:
                power = idle + host.dynamic_w[d["id"]] * load_level * factor * self.rng.uniform(0.95, 1.05)
                if name == "measured":
                    total_power += power
                rows.append(
                    {
                        "window_name": name,
                        "domain_id": d["id"],
                        "energy_j": power * seconds,
                        "net_energy_j": (power - idle) * seconds,
                        "method": method,
                        "coverage": 1.0,
                        "gaps": 0,
                        "duration_s": seconds,
                        "mean_power_w": power,
                        "peak_power_w": power * 1.1,
                        "idle_power_w": idle,
                        "flags": "short-window" if seconds < 0.1 else "",
                    }
                )
        return rows, total_power

    def _requests(
        self, n: int, in_tok: int, out_tok: int, t0: int, ttft: float, tpot: float
    ) -> list[dict[str, Any]]:
        out = []
        for i in range(n):
            first = t0 + int(ttft * NS * self.rng.uniform(0.9, 1.1))
            end = first + int(tpot * (out_tok - 1) * NS)
            out.append(
                {
                    "request_id": i,
                    "input_tokens": in_tok,
                    "output_tokens": out_tok,
                    "arrival_ns": t0,
                    "first_token_ns": first,
                    "end_ns": end,
                    "ttft_s": (first - t0) / NS,
                    "tpot_s": tpot,
                    "e2e_s": (end - t0) / NS,
                    "token_ns": None,
                    "finish_reason": "length",
                    "output_text": "",
                    "error": None,
                }
            )
        return out

    def timeline(self, host: Host, run: dict[str, Any], n_samples: int) -> list[dict[str, Any]]:
        """Power samples around a run's window (and its two marks), spread evenly over the domains."""
        items: list[dict[str, Any]] = []
        if run.get("t0_ns") is None:
            return items
        t0, t1 = run["t0_ns"], run["t1_ns"]
        a, b = t0 - NS // 2, t1 + NS // 2
        per_domain = max(2, n_samples // len(host.domains))
        step = (b - a) / (per_domain - 1)
        measured = {
            r["domain_id"]: r["mean_power_w"] for r in run["energy"] if r["window_name"] == "measured"
        }
        rng = self.rng
        for d in host.domains:
            did, idle, busy = d["id"], host.idle_w[d["id"]], measured[d["id"]]
            energy = 0.0
            for i in range(per_domain):
                t = int(a + i * step)
                p = (busy if t0 <= t <= t1 else idle) * (1 + rng.gauss(0, 0.03))
                energy += p * step / NS
                item = {
                    "t": t,
                    "d": did,
                    "p": round(p, 2),
                    "u": 0.0 if not t0 <= t <= t1 else round(run["util_mean_pct"], 1),
                }
                if d["has_counter"]:
                    item["e"] = round(energy, 3)
                if d["kind"] == "gpu":
                    item.update(
                        mem=round(run["peak_mem_mib"] or 0.0, 1), c=1980.0, tc=round(38 + 30 * p / 600, 1)
                    )
                items.append(item)
        items.append({"t": t0, "m": "run_start", "r": run["run_id"]})
        items.append({"t": t1, "m": "run_end", "r": run["run_id"]})
        items.sort(key=lambda x: x["t"])
        return items


def make_db(
    path: str | Path,
    *,
    runs: int = 100_000,
    samples: int = 10_000_000,
    runs_per_session: int = 100,
    seed: int = 0,
    per_run_limit: int = 5_000,
    request_rows: bool | None = None,
) -> dict[str, Any]:
    """Write a database of `runs` runs and about `samples` samples at `path` (replaced if present)."""
    from wattlab.sessions import commit
    from wattlab.sessions.store import Store

    path = Path(path)
    if path.exists():
        path.unlink()
    per_run = runs <= per_run_limit
    gen = _Generator(seed, request_rows if request_rows is not None else per_run)
    written = {"sessions": 0, "runs": 0, "samples": 0}
    started = time.perf_counter()
    batch_runs: list[dict[str, Any]] = []
    store = Store(path)
    with store.writer() as con:
        con.execute("BEGIN TRANSACTION")
        index = 0
        while written["runs"] < runs:
            n = min(runs_per_session, runs - written["runs"])
            session, host = gen.session(index, n)
            commit.write_session(con, session)
            commit.write_domains(con, session["session_id"], list(host.domains), host.idle_w)
            items: list[dict[str, Any]] = []
            for seq in range(1, n + 1):
                result = gen.run(session, host, seq)
                # Spread what is left of the sample budget over the runs left (failed runs have none).
                runs_left = runs - written["runs"] - seq + 1
                run_items = gen.timeline(host, result, (samples - written["samples"]) // runs_left)
                written["samples"] += len(run_items) - (2 if run_items else 0)  # less the two marks
                items += run_items
                if per_run:
                    commit.write_run(con, result)
                else:
                    batch_runs.append(result)
            commit.write_timeline_items(con, session["session_id"], items)
            written["sessions"] += 1
            written["runs"] += n
            index += 1
            gen.wall += dt.timedelta(minutes=7)
            if len(batch_runs) >= 2_000:
                _write_runs_batch(con, batch_runs)
                batch_runs = []
        _write_runs_batch(con, batch_runs)
        con.execute("COMMIT")
    return {
        **written,
        "path": str(path),
        "seconds": round(time.perf_counter() - started, 1),
        "mode": "write_run per run" if per_run else "batched inserts",
    }


def _write_runs_batch(con: Any, results: list[dict[str, Any]]) -> None:
    """Many runs at once: the rows `write_run` writes, one INSERT per table instead of per run."""
    from wattlab.sessions import commit

    if not results:
        return
    runs, energy, quality = [], [], []
    for result in results:
        row = {k: v for k, v in result.items() if k not in ("energy", "requests_detail", "quality_detail")}
        row["result_json"] = {k: v for k, v in result.items() if k not in ("requests_detail", "energy")}
        runs.append(row)
        extra = {"run_id": result["run_id"], "session_id": result["session_id"]}
        energy += [{**r, **extra} for r in result.get("energy") or []]
        quality += [{**r, **extra} for r in result.get("quality_detail") or []]
    commit._insert_dicts(con, "runs", runs)
    commit._insert_dicts(con, "run_energy", energy)
    commit._insert_dicts(con, "quality", quality)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="the DuckDB file to write (replaced if present)")
    p.add_argument("--runs", type=int, default=100_000)
    p.add_argument("--samples", type=int, default=10_000_000)
    p.add_argument("--runs-per-session", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--per-run-limit", type=int, default=5_000, help="up to this many runs: write_run per run")
    a = p.parse_args()
    if a.runs < 1 or a.samples < 0 or a.runs_per_session < 1:
        print(
            "error: --runs and --runs-per-session must be at least 1, --samples at least 0", file=sys.stderr
        )
        return 2
    summary = make_db(
        a.out,
        runs=a.runs,
        samples=a.samples,
        runs_per_session=a.runs_per_session,
        seed=a.seed,
        per_run_limit=a.per_run_limit,
    )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
