"""How many samples per second the head's commit path takes into DuckDB (docs/SCALE.md).

    python benchmarks/ingest_rate.py [--samples N] [--batch B] [--rounds R] [--json]

A cluster sweep's head receives each node's spool lines and commits them (wattlab/cluster/head.py
Mirror): the lines are parsed (json.loads, one per sample), appended to the mirror spool file, and
inserted with `sessions.commit.write_timeline_items` in one transaction per batch. This script times
exactly those calls on synthetic GPU samples shaped like the NVML meter's (power, energy counter,
utilisation, memory, clock, temperature, power limit: every column filled, the worst case), 8 GPU
domains, into a fresh DuckDB file with wattlab's schema:

  live      parse + append + write_timeline_items per batch of B samples (the per-run commit path)
  insert    write_timeline_items alone (the DuckDB share of it)
  bulk      the recovery path: `commit.ingest_spool`'s read_json of a whole spool file

Each path runs R rounds (fresh database each) and the median samples/s is reported, with the
machine (CPU count, load average) since the figure moves with the load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from wattlab.sessions import commit
from wattlab.sessions.store import Store


def make_lines(n: int, domains: int = 8) -> list[bytes]:
    """n sample lines, round robin over `domains` GPUs at 10 Hz each."""
    out = []
    t0 = 1_000_000_000_000
    for i in range(n):
        d = i % domains
        item = {
            "t": t0 + (i // domains) * 100_000_000 + d,
            "d": f"gpu{d}",
            "p": 312.5 + (i % 97) * 0.25,
            "e": 1_000_000.0 + i * 31.25,
            "u": float(i % 100),
            "mu": float(i % 50),
            "mem": 81_000.0 + (i % 13),
            "c": 1980.0,
            "tc": 61.0 + (i % 7),
            "pl": 700.0,
        }
        out.append(json.dumps(item, separators=(",", ":")).encode() + b"\n")
    return out


def fresh_store(folder: Path, k: int) -> Store:
    store = Store(folder / f"bench-{k}.duckdb")
    with store.writer():
        pass  # schema created outside the timed part
    return store


def live(store: Store, lines: list[bytes], batch: int, spool_file: Path) -> float:
    start = time.perf_counter()
    with open(spool_file, "ab") as f:
        for lo in range(0, len(lines), batch):
            chunk = lines[lo : lo + batch]
            f.write(b"".join(chunk))
            f.flush()
            items = [json.loads(raw) for raw in chunk]
            with store.writer() as con:
                con.execute("BEGIN TRANSACTION")
                commit.write_timeline_items(con, "bench", items)
                con.execute("COMMIT")
    return len(lines) / (time.perf_counter() - start)


def insert_only(store: Store, lines: list[bytes], batch: int) -> float:
    batches = [[json.loads(raw) for raw in lines[lo : lo + batch]] for lo in range(0, len(lines), batch)]
    start = time.perf_counter()
    with store.writer() as con:
        for items in batches:
            con.execute("BEGIN TRANSACTION")
            commit.write_timeline_items(con, "bench", items)
            con.execute("COMMIT")
    return len(lines) / (time.perf_counter() - start)


def bulk(store: Store, lines: list[bytes], spool_file: Path) -> float:
    spool_file.write_bytes(b"".join(lines))
    start = time.perf_counter()
    with store.writer() as con:
        con.execute("BEGIN TRANSACTION")
        commit._ingest_timeline_file(con, "bench", str(spool_file))
        con.execute("COMMIT")
    return len(lines) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument(
        "--batch",
        type=int,
        default=20_480,
        help="samples per commit (default: 1 s of 256 nodes x 8 GPUs at 10 Hz)",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    lines = make_lines(args.samples)
    rates: dict[str, list[float]] = {"live": [], "insert": [], "bulk": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        k = 0
        for _ in range(args.rounds):
            for name in rates:
                k += 1
                store = fresh_store(folder, k)
                spool = folder / f"timeline-{k}.jsonl"
                if name == "live":
                    rates[name].append(live(store, lines, args.batch, spool))
                elif name == "insert":
                    rates[name].append(insert_only(store, lines, args.batch))
                else:
                    rates[name].append(bulk(store, lines, spool))
                store.path.unlink()
    target = 256 * 8 * 10
    result: dict[str, Any] = {
        "samples": args.samples,
        "batch": args.batch,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "median_samples_per_s": {k: round(statistics.median(v)) for k, v in rates.items()},
        "all_samples_per_s": {k: [round(x) for x in v] for k, v in rates.items()},
        "target_256x8_at_10hz": target,
        "headroom": {k: round(statistics.median(v) / target, 2) for k, v in rates.items()},
    }
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"{args.samples} samples, {args.batch} per commit, {args.rounds} rounds, "
        f"{result['cpus']} CPUs, load {result['loadavg_1m']}"
    )
    for name, rate in result["median_samples_per_s"].items():
        print(
            f"  {name:7s} {rate:>10,} samples/s   headroom for 256x8 GPUs at 10 Hz "
            f"({target:,}/s): {result['headroom'][name]}x"
        )


if __name__ == "__main__":
    main()
