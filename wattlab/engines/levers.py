"""The grammar of the model levers a run can ask for: `transform` and `speculative`.

Light on purpose (no engine import): RunSpec validation parses them, so a malformed value is
refused when the sweep is read; whether the chosen engine and device can run them is the
preflight's question (sessions/plan.py), and applying them is the engines' (engines/transforms.py,
each adapter for speculation).

transform:
    prune:magnitude:S   unstructured global magnitude pruning to sparsity S (0 < S <= 0.99), stored dense
    prune:2:4           semi-structured 2:4 sparsity (GPU, Ampere and later)
    prune:layers:N      drop N decoder layers (depth pruning), N >= 1
    prune:mlp:F         remove fraction F (0 < F < 1) of every MLP's intermediate channels (width pruning)
    lora:R              LoRA adapters of rank R on the attention projections, served unmerged
    lora:R:merged       the same adapters merged into the weights
    lora:R:xN           N adapters of rank R served at once (vLLM multi-LoRA), N >= 1

speculative:
    ngram:K             prompt-lookup (n-gram) drafting of K tokens per step, 1 <= K <= 32
    draft:MODEL:K       a draft model (catalog name or local path) proposing K tokens per step
"""

from __future__ import annotations

from dataclasses import dataclass

from wattlab.errors import ConfigError

TRANSFORM_HELP = "prune:magnitude:S | prune:2:4 | prune:layers:N | prune:mlp:F | lora:R[:merged|:xN]"
SPECULATIVE_HELP = "ngram:K | draft:MODEL:K"
MAX_DRAFT_TOKENS = 32


@dataclass(frozen=True, slots=True)
class Transform:
    """A parsed transform. kind: magnitude | 2:4 | layers | mlp | lora.
    amount: sparsity (magnitude), layers dropped (layers), fraction (mlp), rank (lora); None for 2:4.
    merged: LoRA merged into the weights; adapters: LoRA adapters served at once (vLLM multi-LoRA)."""

    kind: str
    amount: float | int | None = None
    merged: bool = False
    adapters: int = 1

    @property
    def is_prune(self) -> bool:
        return self.kind in ("magnitude", "2:4", "layers", "mlp")

    @property
    def is_lora(self) -> bool:
        return self.kind == "lora"


@dataclass(frozen=True, slots=True)
class Speculation:
    """A parsed speculative-decoding setting. method: ngram | draft; k: draft tokens per step;
    draft_model: the draft model (method draft)."""

    method: str
    k: int
    draft_model: str | None = None


def _bad_transform(text: str, why: str) -> ConfigError:
    return ConfigError(f"transform = {text!r}: {why}", fix=f"use one of: {TRANSFORM_HELP}")


def _number(text: str, part: str, kind: type) -> float | int:
    try:
        return kind(part)
    except ValueError:
        raise _bad_transform(text, f"{part!r} is not a {'whole ' if kind is int else ''}number") from None


def parse_transform(text: str) -> Transform:
    """The Transform `text` names, or a ConfigError saying what is wrong and the forms allowed."""
    parts = text.strip().split(":")
    head = parts[0]
    if head == "prune":
        if parts[1:] == ["2", "4"]:
            return Transform("2:4")
        if len(parts) != 3:
            raise _bad_transform(text, "prune takes magnitude:S, 2:4, layers:N or mlp:F")
        kind, value = parts[1], parts[2]
        if kind == "magnitude":
            sparsity = float(_number(text, value, float))
            if not 0 < sparsity <= 0.99:
                raise _bad_transform(text, f"sparsity {sparsity:g} is outside 0-0.99 (exclusive of 0)")
            return Transform("magnitude", sparsity)
        if kind == "layers":
            layers = int(_number(text, value, int))
            if layers < 1:
                raise _bad_transform(text, "drop at least 1 layer")
            return Transform("layers", layers)
        if kind == "mlp":
            fraction = float(_number(text, value, float))
            if not 0 < fraction < 1:
                raise _bad_transform(text, f"fraction {fraction:g} must be between 0 and 1 (exclusive)")
            return Transform("mlp", fraction)
        raise _bad_transform(text, f"unknown pruning kind {kind!r}")
    if head == "lora":
        if len(parts) not in (2, 3):
            raise _bad_transform(text, "lora takes a rank, then optionally merged or xN")
        rank = int(_number(text, parts[1], int))
        if rank < 1:
            raise _bad_transform(text, "the LoRA rank must be at least 1")
        if len(parts) == 2:
            return Transform("lora", rank)
        tail = parts[2]
        if tail == "merged":
            return Transform("lora", rank, merged=True)
        if tail.startswith("x"):
            adapters = int(_number(text, tail[1:], int))
            if adapters < 1:
                raise _bad_transform(text, "serve at least 1 adapter")
            return Transform("lora", rank, adapters=adapters)
        raise _bad_transform(text, f"{tail!r} is neither merged nor xN")
    raise _bad_transform(text, f"unknown transform {head!r}")


def parse_speculative(text: str) -> Speculation:
    """The Speculation `text` names, or a ConfigError saying what is wrong and the forms allowed."""
    parts = text.strip().split(":")

    def bad(why: str) -> ConfigError:
        return ConfigError(f"speculative = {text!r}: {why}", fix=f"use one of: {SPECULATIVE_HELP}")

    def draft_tokens(part: str) -> int:
        try:
            k = int(part)
        except ValueError:
            raise bad(f"{part!r} is not a whole number of draft tokens") from None
        if not 1 <= k <= MAX_DRAFT_TOKENS:
            raise bad(f"draft tokens must be between 1 and {MAX_DRAFT_TOKENS}, got {k}")
        return k

    if parts[0] == "ngram" and len(parts) == 2:
        return Speculation("ngram", draft_tokens(parts[1]))
    if parts[0] == "draft" and len(parts) >= 3:
        # a local path may hold colons: the draft model is everything between the method and K
        model = ":".join(parts[1:-1])
        if not model:
            raise bad("name the draft model")
        return Speculation("draft", draft_tokens(parts[-1]), model)
    raise bad("unknown form")


__all__ = [
    "MAX_DRAFT_TOKENS",
    "SPECULATIVE_HELP",
    "TRANSFORM_HELP",
    "Speculation",
    "Transform",
    "parse_speculative",
    "parse_transform",
]
