"""Model families: sizes of one vocabulary, teacher (largest) first, for student-vs-teacher reports.

A family is a ladder of published sizes that share a tokenizer, so a student and its teacher see
the same token ids for the same prompt and their J/token and latency compare token for token:

    llama-3     Llama-3.1-8B -> Llama-3.2-3B -> Llama-3.2-1B (3.2's small models were pretrained with
                the 8B/70B models' logits as targets, Meta's distillation)
    qwen2.5     Qwen2.5-7B -> Qwen2.5-1.5B -> Qwen2.5-0.5B
    smollm2     SmolLM2-1.7B -> SmolLM2-360M -> SmolLM2-135M

Every member is a `random:<arch>` shape in engines/configs (random weights: energy and latency are
real, quality is not); the bundled SmolLM2-135M-Instruct (`smollm2-135m-instruct`, trained weights)
stands in the smollm2 ladder at 135M. A user's own teacher/student checkpoints are a family too:
`wattlab report --family TEACHER,STUDENT[,...]` (`local_family`), matched on the model as run.

`vocab_size` is the shared tokenizer's size. A member's embedding may have more rows (Qwen2.5-7B
pads its table to 152,064, the small ones to 151,936; the tokenizer defines 151,665): the test
checks every member covers the tokenizer and agrees on the special token ids.

Light: no engine import (the report and the catalog read it).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from wattlab.errors import ConfigError

RANDOM_PREFIX = "random:"
CONFIGS_DIR = Path(__file__).parent / "configs"
# Catalog models with trained weights that stand in a family's ladder: model name -> member arch.
REAL_MEMBERS = {"smollm2-135m-instruct": "smollm2-135m"}


@dataclass(frozen=True)
class Family:
    """name; members as model names (catalog arch names, or local paths), teacher first;
    tokenizer: what the members share; vocab_size: that tokenizer's token count (None: unknown)."""

    name: str
    members: tuple[str, ...]
    tokenizer: str
    vocab_size: int | None = None
    local: bool = False

    @property
    def teacher(self) -> str:
        return self.members[0]

    @property
    def students(self) -> tuple[str, ...]:
        return self.members[1:]


FAMILIES: tuple[Family, ...] = (
    Family("llama-3", ("llama-3.1-8b", "llama-3.2-3b", "llama-3.2-1b"), "Llama 3 (tiktoken, 128k)", 128256),
    Family("qwen2.5", ("qwen2.5-7b", "qwen2.5-1.5b", "qwen2.5-0.5b"), "Qwen2.5 (byte-level BPE)", 151665),
    Family("smollm2", ("smollm2-1.7b", "smollm2-360m", "smollm2-135m"), "SmolLM2 (BPE, 49k)", 49152),
)


def local_family(text: str, index: int = 1) -> Family:
    """`TEACHER,STUDENT[,...]` (paths or model names as run) as a family; at least two members."""
    members = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    if len(members) < 2:
        raise ConfigError(
            f"--family {text!r} names {len(members)} model(s): a family needs a teacher and a student",
            fix="give the teacher first, then its students: --family /models/teacher,/models/student",
        )
    return Family(f"local-{index}", members, "as the checkpoints ship (not checked)", None, local=True)


def _same_model(a: str, b: str) -> bool:
    """A run's model and a family member name the same model: equal text, or the same local path."""
    if a == b:
        return True
    if "/" not in a and "/" not in b:
        return False
    return Path(a).expanduser().resolve(strict=False) == Path(b).expanduser().resolve(strict=False)


def member_of(model: str, extra: Sequence[Family] = ()) -> tuple[Family, int] | None:
    """The family a run's model belongs to and its rank (0 = teacher), or None.

    Local families (`extra`) win over the catalog's, so a user can regroup catalog models too."""
    for family in extra:
        for rank, member in enumerate(family.members):
            if _same_model(model, member):
                return family, rank
    arch = model[len(RANDOM_PREFIX) :] if model.startswith(RANDOM_PREFIX) else REAL_MEMBERS.get(model)
    for family in FAMILIES:
        if arch in family.members:
            return family, family.members.index(arch)
    return None


def member_name(family: Family, rank: int) -> str:
    """A member as a user types it: `random:<arch>` for catalog ladders, the path for local ones."""
    member = family.members[rank]
    return member if family.local else RANDOM_PREFIX + member


def real_weights(model: str) -> bool:
    """Whether quality means anything for this model (random-weight shapes score noise)."""
    return not model.startswith(RANDOM_PREFIX)


@cache
def published_params(arch: str) -> float | None:
    """The parameter count an arch's config states (`_wattlab.parameters`: "1.54B", "494M")."""
    path = CONFIGS_DIR / f"{arch}.json"
    if not path.exists():
        return None
    text = str(json.loads(path.read_text()).get("_wattlab", {}).get("parameters", ""))
    scale = {"B": 1e9, "M": 1e6}.get(text[-1:])
    try:
        return float(text[:-1]) * scale if scale else None
    except ValueError:
        return None


def model_params(model: str) -> float | None:
    """A catalog model's parameter count from its shape's config (None for other models)."""
    arch = model[len(RANDOM_PREFIX) :] if model.startswith(RANDOM_PREFIX) else REAL_MEMBERS.get(model)
    return published_params(arch) if arch else None


__all__ = [
    "FAMILIES",
    "Family",
    "local_family",
    "member_name",
    "member_of",
    "model_params",
    "published_params",
    "real_weights",
]
