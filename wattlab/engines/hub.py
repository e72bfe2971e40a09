"""Hugging Face hub ids (`org/name`), for boxes that are online.

Files land in the hub's own cache (HF_HOME), so a second run finds them offline. Any failure
(no network, a gated or missing repo, HF_HUB_OFFLINE=1) becomes one ModelError with the fix.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from wattlab.errors import EngineNotInstalled, ModelError

# The files a transformers/vLLM checkpoint needs; everything else in a repo (other formats,
# images, GGUFs, onnx) stays on the hub.
CHECKPOINT_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken"]


def _hub(hub_id: str):  # type: ignore[no-untyped-def]
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise ModelError(
            f"cannot fetch {hub_id!r}: HF_HUB_OFFLINE is set, so the hub is not asked",
            fix="unset HF_HUB_OFFLINE on a box that is online, or give the model's local path",
            title="Model not fetched",
        )
    if importlib.util.find_spec("huggingface_hub") is None:
        raise EngineNotInstalled(
            "hub ids need huggingface_hub, which is not installed",
            fix="pip install 'wattlab[transformers]', or give a local path",
        )
    import huggingface_hub

    return huggingface_hub


def _failed(hub_id: str, exc: Exception) -> ModelError:
    return ModelError(
        f"could not fetch {hub_id!r} from the Hugging Face hub: {type(exc).__name__}: {exc}",
        fix="check the id and that this box is online (and logged in for gated models: hf auth login), "
        "or download the model elsewhere and give its local path",
        title="Model not fetched",
    )


def fetch_checkpoint(hub_id: str) -> Path:
    """Download (or find in the hub cache) a checkpoint's config, tokenizer and safetensors."""
    hub = _hub(hub_id)
    try:
        path = Path(str(hub.snapshot_download(hub_id, allow_patterns=CHECKPOINT_PATTERNS)))
    except Exception as exc:  # network, auth and not-found errors all end the same way for the user
        raise _failed(hub_id, exc) from exc
    if not (path / "config.json").exists():
        raise ModelError(
            f"{hub_id!r} has no config.json, so it is not a transformers checkpoint",
            fix="for a GGUF-only repo use --engine llamacpp; else pick the model's main repo",
        )
    return path


def fetch_gguf(hub_id: str, variant: str) -> Path:
    """Download the repo's GGUF whose name carries `variant` (e.g. Q4_K_M), else its only GGUF."""
    hub = _hub(hub_id)
    try:
        files = [f for f in hub.list_repo_files(hub_id) if f.lower().endswith(".gguf")]
    except Exception as exc:
        raise _failed(hub_id, exc) from exc
    matching = [f for f in files if variant.lower() in Path(f).name.lower()]
    choice = matching or (files if len(files) == 1 else [])
    if not choice:
        raise ModelError(
            f"{hub_id!r} has no GGUF file for {variant}"
            + (f" (it has: {', '.join(files)})" if files else ""),
            fix="choose a variant the repo has, or a repo that ships GGUF files",
        )
    try:
        return Path(str(hub.hf_hub_download(hub_id, sorted(choice, key=len)[0])))
    except Exception as exc:
        raise _failed(hub_id, exc) from exc
