"""Workload bins: which runs of a session did the same work, so that their energy compares.

A **workload bin** is (model, workload, mode[, rate]):

- model: the model name as run (a different model is different work, even at the same lengths);
- workload: the quality task when the run had one, else the synthetic input/output token lengths
  (`128in/128out`), else the workload kind and its prompts file;
- mode: offline or online;
- rate: the arrival rate, for online runs only (a different load is a different workload).

Everything else (engine, quant/variant, device, batch size, decoding, engine options) is a lever:
runs of one bin that differ only in levers are compared; runs of different bins are not, because
J/token across different models or token lengths measures different work.

The baseline of a bin is, in order: the run given with `--baseline` when it falls in that bin; the
seed study's baseline, transformers fp32 batch 1 with no lever pulled (without engine options when
there is a choice), when the bin has that run; else the bin's highest-J/token configuration (the
worst measured, so the saving reads as "what choosing well saves here").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol


class _Cfg(Protocol):
    settings: dict[str, Any]

    def mean(self, col: str) -> float | None: ...


def workload_label(s: dict[str, Any]) -> str:
    if s.get("task"):
        return f"task {s['task']}"
    if s.get("input_tokens") is not None or s.get("output_tokens") is not None:
        return f"{s.get('input_tokens')}in/{s.get('output_tokens')}out"
    pf = s.get("prompts_file")
    return f"{s.get('workload') or 'workload ?'}" + (f" {pf}" if pf else "")


def bin_key(s: dict[str, Any]) -> tuple[Any, ...]:
    mode = s.get("mode")
    rate = s.get("rate") if mode == "online" else None
    return (s.get("model"), workload_label(s), mode, rate)


def bin_label(s: dict[str, Any]) -> str:
    mode = s.get("mode") or "?"
    if mode == "online":
        rate = s.get("rate")
        mode = f"online at {_rate(rate)} req/s" if rate is not None else "online, no rate limit"
    return f"{s.get('model')} · {workload_label(s)} · {mode}"


def _rate(r: Any) -> str:
    return f"{r:g}" if isinstance(r, float) else str(r)


def is_seed_baseline(s: dict[str, Any]) -> bool:
    """Transformers fp32 batch 1 with no lever pulled (no transform, speculation or GPU cap): the seed
    study's baseline."""
    levers = ("transform", "speculative", "power_limit_w", "sm_clock_mhz", "mem_clock_mhz")
    return (
        s.get("engine") == "transformers"
        and str(s.get("quant") or "").lower() in ("fp32", "float32")
        and s.get("batch_size") == 1
        and not any(s.get(lever) for lever in levers)
    )


@dataclass
class Bin:
    key: tuple[Any, ...]
    label: str
    configs: list[Any] = field(default_factory=list)
    baseline: Any = None
    why: str = ""

    def greenest(self) -> Any | None:
        """The configuration with the lowest mean J/token; None when none has the figure."""
        with_e = [c for c in self.configs if c.mean("j_per_token") is not None]
        return min(with_e, key=lambda c: c.mean("j_per_token")) if with_e else None


def group(configs: list[Any]) -> list[Bin]:
    """Configurations grouped into bins, in order of first appearance."""
    bins: dict[tuple[Any, ...], Bin] = {}
    for c in configs:
        k = bin_key(c.settings)
        bins.setdefault(k, Bin(k, bin_label(c.settings))).configs.append(c)
    return list(bins.values())


GIVEN = "given with --baseline"
SEED = "transformers fp32 batch 1, the seed study's baseline"
ONLY = "the only configuration in this bin"
WORST = "no transformers fp32 batch-1 run in this bin, so its highest-J/token configuration"
FIRST = "no run in this bin has J/token, so its first configuration"
_SHORT = {
    GIVEN: "--baseline",
    SEED: "seed baseline",
    ONLY: "only configuration",
    WORST: "highest J/token in bin",
    FIRST: "first configuration",
}


def short_why(why: str) -> str:
    return _SHORT.get(why, why)


def choose_baseline(b: Bin, forced: Any | None = None) -> tuple[Any, str]:
    """The bin's baseline configuration and why it was chosen (see the module docstring)."""
    if forced is not None and forced in b.configs:
        return forced, GIVEN
    seeds = [c for c in b.configs if is_seed_baseline(c.settings)]
    if seeds:
        seeds.sort(key=lambda c: bool(c.settings.get("options")))
        return seeds[0], SEED
    if len(b.configs) == 1:
        return b.configs[0], ONLY
    with_e = [c for c in b.configs if c.mean("j_per_token") is not None]
    if with_e:
        worst = max(with_e, key=lambda c: c.mean("j_per_token") or -math.inf)
        return worst, WORST
    return b.configs[0], FIRST


def assign(configs: list[Any], forced: Any | None = None) -> list[Bin]:
    bins = group(configs)
    for b in bins:
        b.baseline, b.why = choose_baseline(b, forced)
    return bins
