"""Model files wattlab makes once and caches under `models_dir()`.

- A Hugging Face checkpoint de-quantized from a GGUF (transformers and vLLM load it). Its weights
  are the GGUF's rounded values in fp32, so transformers/vLLM see the same model as llama.cpp up to
  kernel numerics.
- GGUF variants (Q8_0, F16, Q4_K_M, ...) requantized by llama.cpp's own quantizer. Honest caveat:
  variants made from a Q4_1 source inherit its rounding. Their size, speed and energy differences
  are real; their quality differences reflect requantization only, not what a variant made from
  the original bf16 weights would score.
- A tokenizer directory (the bundled SmolLM2 tokenizer) and random-weight model directories
  (a shipped architecture config.json plus that tokenizer).
- Random-weight GGUF files for llama.cpp (random_gguf.py writes the F16 one in the arch's real
  shape; other types are llama.cpp's quantization of it), keyed by arch + type.

Every build runs under a per-target lock file (two runners deriving at once wait, not collide)
and lands by an atomic rename, so a killed build never leaves a half-written model in place.
Heavy imports (transformers, torch, llama_cpp) happen inside the build functions only.

The engine worker never derives in its own process: derive_in_child() runs the builds in a
short-lived child (`python -m wattlab.engines.derive`), so a crash or a leak of the writer or of
llama.cpp's quantizer never shares the process that then creates the CUDA context and loads the
model; a crashed child is a ModelError naming the step. The child's stderr is the worker log.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wattlab.errors import ConfigError, EngineNotInstalled, ModelError, WattlabError
from wattlab.paths import models_dir

if TYPE_CHECKING:
    from wattlab.engines.base import EngineConfig

CONFIGS_DIR = Path(__file__).with_name("configs")
SOURCE_NOTE = "wattlab-source.json"  # written into every derived directory: what it was made from


def source_key(path: Path) -> str:
    """A short id of a source file's identity (path, size, mtime): a changed file derives anew."""
    st = path.stat()
    digest = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()
    return digest[:10]


@contextlib.contextmanager
def _lock(target: Path) -> Iterator[None]:
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / f".{target.name}.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# Called as each build starts (step, target) and as it is about to land (step + " (landing)",
# target); the derivation child reports both to its parent.
_step_hook: Callable[[str, Path], None] | None = None


def build_once(target: Path, build: Callable[[Path], None], step: str = "building") -> Path:
    """Return `target`, building it first (into a temporary sibling, then renamed) if it is absent.

    build(tmp) writes the file or directory at `tmp`; `step` says what that is, in words ("writing
    random:tiny-llama as an F16 GGUF"). Concurrent callers wait on the lock; the second finds the
    target present and returns at once.
    """
    if target.exists():
        return target
    with _lock(target):
        if target.exists():
            return target
        # Holding the lock, no live builder of this target exists: any temp is a killed build's
        # leftover (a half-written file never counts, and a 16 GB one is worth reclaiming).
        for stale in target.parent.glob(f".{target.name}.tmp-*"):
            _remove(stale)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        try:
            if _step_hook is not None:
                _step_hook(step, target)
            build(tmp)
            if _step_hook is not None:
                _step_hook(step + " (landing)", target)
            os.rename(tmp, target)
        finally:
            _remove(tmp)
    return target


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


def _write_note(directory: Path, **fields: object) -> None:
    (directory / SOURCE_NOTE).write_text(json.dumps({**fields, "made_unix_s": time.time()}, indent=1))


def _require(module: str, extra: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise EngineNotInstalled(
            f"deriving this model needs {module}, which is not installed",
            fix=f"pip install 'wattlab[{extra}]'",
        )


# --- Hugging Face checkpoint from a GGUF -----------------------------------------------------


def hf_checkpoint_path(gguf: Path) -> Path:
    return models_dir() / "hf" / f"{gguf.stem}-{source_key(gguf)}"


def ensure_hf_checkpoint(gguf: Path) -> Path:
    """The transformers/vLLM checkpoint de-quantized from `gguf` (fp32), built on first use (~20 s)."""
    return build_once(
        hf_checkpoint_path(gguf),
        lambda tmp: _build_hf_checkpoint(gguf, tmp),
        f"de-quantizing {gguf.name} to a Hugging Face checkpoint",
    )


def _build_hf_checkpoint(gguf: Path, out: Path) -> None:
    _require("transformers", "transformers")
    _require("gguf", "transformers")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
    except Exception as exc:  # transformers raises many types for unsupported GGUF architectures
        raise ModelError(
            f"transformers cannot convert {gguf} to a checkpoint: {exc}",
            fix="use the llamacpp engine for this GGUF, or give a Hugging Face checkpoint directory",
        ) from exc
    # The weights are plain fp32 tensors now; without this, save_pretrained records a "gguf"
    # quantization that neither transformers nor vLLM can load back.
    setattr(model, "hf_quantizer", None)  # noqa: B010 - typed as a module attribute by transformers
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    config_path = out / "config.json"
    config = json.loads(config_path.read_text())
    config.pop("quantization_config", None)
    config_path.write_text(json.dumps(config, indent=2))
    _write_note(out, kind="hf-from-gguf", source=str(gguf))


# --- tokenizer and random-weight model directories -------------------------------------------


def ensure_tokenizer_dir(gguf: Path) -> Path:
    """The Hugging Face tokenizer files of `gguf`, without its weights (for random-weight models).

    Reuses a derived checkpoint's tokenizer when one exists.
    """
    checkpoint = hf_checkpoint_path(gguf)
    if (checkpoint / "tokenizer.json").exists():
        return checkpoint
    target = models_dir() / "tokenizers" / f"{gguf.stem}-{source_key(gguf)}"

    def build(tmp: Path) -> None:
        _require("transformers", "transformers")
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(str(tmp))
        _write_note(tmp, kind="tokenizer-from-gguf", source=str(gguf))

    return build_once(target, build, f"extracting the tokenizer of {gguf.name}")


def random_config_path(arch: str) -> Path:
    path = CONFIGS_DIR / f"{arch}.json"
    if not path.exists():
        raise ModelError(f"no shipped architecture config named {arch!r}", fix="see `wattlab models`")
    return path


def ensure_random_dir(arch: str, tokenizer_dir: Path | None) -> Path:
    """A directory with the architecture's config.json and (when given) tokenizer files.

    transformers builds random weights from it; vLLM loads it with load_format="dummy".
    """
    config_path = random_config_path(arch)
    tag = source_key(config_path) + (f"-{tokenizer_dir.name}" if tokenizer_dir else "-bytes")
    target = models_dir() / "random" / f"{arch}-{tag}"

    def build(tmp: Path) -> None:
        tmp.mkdir(parents=True)
        config = json.loads(config_path.read_text())
        config.pop("_wattlab", None)  # provenance notes stay out of the loadable config
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        if tokenizer_dir is not None:
            for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
                if (tokenizer_dir / name).exists():
                    shutil.copy2(tokenizer_dir / name, tmp / name)
        _write_note(tmp, kind="random-weights", arch=arch, tokenizer=str(tokenizer_dir or "bytes"))

    return build_once(target, build, f"writing the random:{arch} config directory")


# --- GGUF requantization ---------------------------------------------------------------------


def gguf_variant_path(source: Path, variant: str) -> Path:
    return models_dir() / "gguf" / f"{source.stem}-{source_key(source)}.{variant}.gguf"


def ensure_gguf_variant(source: Path, variant: str) -> Path:
    """`source` requantized to `variant` by llama.cpp's quantizer (allow_requantize), cached."""
    from wattlab.engines.gguf_meta import FILE_TYPE_IDS

    if variant not in FILE_TYPE_IDS:
        raise ConfigError(f"unknown GGUF type {variant!r}", fix=f"use one of: {', '.join(FILE_TYPE_IDS)}")
    return build_once(
        gguf_variant_path(source, variant),
        lambda tmp: _quantize(source, tmp, variant),
        f"quantizing {source.name} to {variant} with llama.cpp's quantizer",
    )


def _quantize(source: Path, out: Path, variant: str) -> None:
    _require("llama_cpp", "llamacpp")
    import llama_cpp

    from wattlab.engines.gguf_meta import FILE_TYPE_IDS
    from wattlab.engines.llamacpp_log import quiet_llama_logs

    quiet_llama_logs()  # its per-tensor report goes to wattlab's log buffer, not the terminal
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FILE_TYPE_IDS[variant]
    params.nthread = os.cpu_count() or 1
    params.allow_requantize = True  # the source is already quantized (Q4_1 for the bundled model)
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(out).encode(), params)
    if status != 0 or not out.exists():
        raise ModelError(
            f"llama.cpp could not quantize {source} to {variant} (status {status})",
            fix="check free disk space under the models dir, or choose another variant",
        )


# --- random-weight GGUF files (llama.cpp's `random:<arch>`) -----------------------------------

# Bits per weight of each type, to check free disk space before quantizing (llama.cpp's figures,
# rounded up; the fallback types of mixed quants make the real file a little larger or smaller).
_BITS_PER_WEIGHT = {
    "F32": 32.0, "F16": 16.0, "BF16": 16.0, "Q8_0": 8.5, "Q6_K": 6.6, "Q5_K_M": 5.7, "Q5_K_S": 5.6,
    "Q5_1": 6.0, "Q5_0": 5.5, "Q4_K_M": 4.9, "Q4_K_S": 4.6, "Q4_1": 5.0, "Q4_0": 4.5, "Q3_K_L": 4.3,
    "Q3_K_M": 3.9, "Q3_K_S": 3.5, "Q2_K": 3.4,
}  # fmt: skip


def random_gguf_path(arch: str, variant: str, tokenizer_gguf: Path) -> Path:
    """Where `random:<arch>` as GGUF type `variant` is cached: keyed by the arch's config, the
    tokenizer's source, the writer's format version and seed, and the type."""
    from wattlab.engines import random_gguf

    config_key = source_key(random_config_path(arch))
    tag = hashlib.sha256(
        f"{config_key}|{source_key(tokenizer_gguf)}|{random_gguf.FORMAT_VERSION}|{random_gguf.SEED}".encode()
    ).hexdigest()[:10]
    return models_dir() / "random-gguf" / f"{arch}-{tag}.{variant}.gguf"


def ensure_random_gguf(arch: str, variant: str, tokenizer_gguf: Path) -> Path:
    """`random:<arch>` as a GGUF of type `variant`, built on first use and cached.

    F16 is written directly (random_gguf.py); any other type is llama.cpp's quantization of the F16
    file (which stays cached: it is the source of every other type of the arch).
    """
    from wattlab.engines import random_gguf
    from wattlab.engines.gguf_meta import FILE_TYPE_IDS

    if variant not in FILE_TYPE_IDS:
        raise ConfigError(f"unknown GGUF type {variant!r}", fix=f"use one of: {', '.join(FILE_TYPE_IDS)}")
    config = json.loads(random_config_path(arch).read_text(encoding="utf-8"))
    config.pop("_wattlab", None)
    f16 = random_gguf_path(arch, "F16", tokenizer_gguf)

    def write_f16(tmp: Path) -> None:
        _require("gguf", "llamacpp")
        random_gguf.write_random_gguf(arch, config, tokenizer_gguf, tmp)

    source = build_once(f16, write_f16, f"writing random:{arch} as an F16 GGUF")
    if variant == "F16":
        return source
    target = random_gguf_path(arch, variant, tokenizer_gguf)

    def quantize(tmp: Path) -> None:
        params = random_gguf.f16_file_bytes(random_gguf.arch_shape(arch, config)) / 2
        need = int(params * _BITS_PER_WEIGHT.get(variant, 16.0) / 8)
        random_gguf.check_free_space(tmp.parent, need, f"random:{arch} as {variant}")
        _quantize(source, tmp, variant)

    return build_once(target, quantize, f"quantizing random:{arch} to {variant} with llama.cpp's quantizer")


# --- the derivation child ----------------------------------------------------------------------

# Test hook: a derivation child whose step contains this text segfaults as that step's file is about
# to land (its temp file written, not renamed), like a crash in the writer or the quantizer.
CRASH_ENV = "WATTLAB_TEST_DERIVE_CRASH"


def derive_in_child(config: EngineConfig) -> None:
    """Build `config`'s missing derived files (models.ensure_files) in a short-lived child process.

    The child's stderr is ours (the worker log). A WattlabError there is raised here as itself; a
    child that dies (a signal, an exit without an answer) is a ModelError naming the model, the
    variant and the step it was on, with the partial files it left, if any.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "wattlab.engines.derive", json.dumps(config.as_dict(), default=str)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    step: str | None = None
    target: Path | None = None
    answer: dict[str, Any] | None = None
    try:
        for raw in proc.stdout:
            with contextlib.suppress(ValueError):
                msg = json.loads(raw)
                if "step" in msg:
                    step, target = msg["step"], Path(msg["target"])
                else:
                    answer = msg
        code = proc.wait()
    except BaseException:  # interrupted here: the child goes too (its temp files are reclaimed later)
        proc.kill()
        proc.wait()
        raise
    finally:
        proc.stdout.close()
    if answer is not None and answer.get("ok") and code == 0:
        return
    if answer is not None and answer.get("error"):
        import wattlab.errors as errors

        cls = getattr(errors, str(answer["error"]), None)
        if not (isinstance(cls, type) and issubclass(cls, WattlabError)):
            cls = ModelError
        raise cls(str(answer.get("message")), fix=answer.get("fix"), title=answer.get("title"))
    if code < 0:
        try:
            how = f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"was killed by signal {-code}"
        if -code == signal.SIGKILL:
            how += " (often the kernel's out-of-memory killer)"
    else:
        how = f"exited with code {code} without an answer"
    what = f"{config.model} as {config.variant}"
    doing = f" while {step.removesuffix(' (landing)')}" if step else ""
    partial = _leftovers(target) if target is not None else []
    if partial:
        fix = (
            f"delete the partial files under {partial[0].parent} ({', '.join(p.name for p in partial)}) "
            "and retry; if it crashes again, try another variant or engine"
        )
    else:
        fix = "retry (the worker log has the child's last lines); if it crashes again, try another variant"
    raise ModelError(
        f"deriving the files of {what} failed: the derivation child {how}{doing}",
        fix=fix,
        title="Model derivation crashed",
    )


def _leftovers(target: Path) -> list[Path]:
    """Partial files a crashed build of `target` left: its temp siblings (never the target itself,
    which only ever appears whole, by rename)."""
    with contextlib.suppress(OSError):
        return sorted(target.parent.glob(f".{target.name}.tmp-*"))
    return []


def _die_with_parent() -> None:
    """Linux: this process gets SIGKILL when its parent (the engine worker) dies."""
    import ctypes

    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _child_main(argv: list[str]) -> int:
    import faulthandler

    from wattlab.engines import derive  # this module as the builds see it (not `__main__`)
    from wattlab.engines.base import EngineConfig
    from wattlab.engines.models import ensure_files

    # Replies go on a private copy of stdout; fd 1 itself joins the log (native code prints there).
    reply = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    faulthandler.enable(file=sys.stderr, all_threads=True)
    _die_with_parent()
    crash_on = os.environ.get(CRASH_ENV)

    def send(item: dict[str, Any]) -> None:
        reply.write(json.dumps(item) + "\n")
        reply.flush()

    def on_step(step: str, target: Path) -> None:
        print(f"[derive {os.getpid()}] {step}: {target}", file=sys.stderr, flush=True)
        send({"step": step, "target": str(target)})
        if crash_on and crash_on in step and step.endswith("(landing)"):
            import ctypes

            ctypes.string_at(0)  # a real SIGSEGV, for tests

    derive._step_hook = on_step
    try:
        ensure_files(EngineConfig.from_dict(json.loads(argv[0])))
    except WattlabError as exc:
        send(exc.as_dict())
        return 1
    except Exception as exc:
        failed = ModelError(
            f"deriving the model's files failed: {type(exc).__name__}: {exc}", fix="see the worker log"
        )
        send(failed.as_dict())
        return 1
    send({"ok": True})
    return 0


if __name__ == "__main__":
    raise SystemExit(_child_main(sys.argv[1:]))
