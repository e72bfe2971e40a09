"""Launch's form, as data: the fields, their defaults, and turning what was typed into run settings.

`build(raw)` is pure (strings in, settings out) so every rule is tested without a terminal; a
value that cannot be used raises ConfigError naming the field and how to write it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wattlab.errors import ConfigError
from wattlab.sessions.spec import SessionSettings

SYNTHETIC = "synthetic"
TASK_PREFIX = "task:"


@dataclass(frozen=True)
class Field:
    id: str
    label: str
    kind: str  # "select" | "input"
    default: str = ""
    placeholder: str = ""


# In display order; two (narrow) or three (wide) per row.
FIELDS: tuple[Field, ...] = (
    Field("engine", "Engine", "select"),
    Field("model", "Model", "select"),
    Field("quant", "Variant", "select"),
    Field("device", "Device", "select", "auto"),
    Field("workload", "Workload", "select", SYNTHETIC),
    Field("custom_model", "Other model", "input", "", "path or hub id (optional)"),
    Field("input_tokens", "Input tokens", "input", "128", "e.g. 128,512"),
    Field("output_tokens", "Output tokens", "input", "64", "e.g. 64,256"),
    Field("batch_sizes", "Batch sizes", "input", "1", "e.g. 1,8,32"),
    Field("requests", "Requests", "input", "", "one batch"),
    Field("mode", "Mode", "select", "offline"),
    Field("rate", "Rate (req/s)", "input", "", "all at once"),
    Field("decoding", "Decoding", "select", "greedy"),
    Field("temperature", "Temperature", "input", "1.0"),
    # model and GPU levers (RunSpec.transform ... mem_clock_mhz); menus follow engine, model, device.
    # Each menu with its free text beside it (two fields a row on a narrow screen).
    Field("transform", "Transform", "select", ""),
    Field("transform_text", "Other transform", "input", "", "e.g. none,prune:mlp:0.5"),
    Field("speculative", "Speculative", "select", ""),
    Field("speculative_text", "Other specul.", "input", "", "e.g. ngram:2,ngram:8"),
    Field("power_limit_w", "Power limit W", "input", "", "GPU cap, e.g. 200,300"),
    Field("sm_clock_mhz", "SM clock MHz", "input", "", "GPU lock, e.g. 1410"),
    Field("mem_clock_mhz", "Mem clock MHz", "input", "", "GPU lock, e.g. 2619"),
    Field("repeats", "Repeats", "input", "1"),
    Field("name", "Session name", "input", "", "optional"),
    Field("idle_s", "Idle baseline s", "input", "3"),
    Field("cooldown_s", "Cooldown s", "input", "0", "seconds or settle"),
    Field("country", "Grid country", "input", "", "ISO code, e.g. FRA"),
    Field("pue", "PUE", "input", "1.0"),
)

DEVICES = (("auto", "auto"), ("cpu", "cpu"), ("cuda (GPU 0)", "cuda"))
MODES = (("offline (batch)", "offline"), ("online (arrivals)", "online"))
DECODINGS = (("greedy", "greedy"), ("sample", "sample"), ("beam (4)", "beam"))


def parse_int_list(label: str, text: str, minimum: int = 1) -> list[int]:
    """'1, 8,32' -> [1, 8, 32]; duplicates dropped, order kept. An empty item (',4', '1,,4', '4,')
    is refused: it is how a half-typed list looks (typing ',4' over a selected '1')."""
    values: list[int] = []
    text = text.strip()
    if text and any(not p.strip() for p in text.replace(";", ",").split(",")):
        raise ConfigError(
            f"{label}: {text!r} has an empty item",
            fix=f"write whole numbers separated by commas, e.g. {label_example(label)}",
        )
    for part in text.replace(";", ",").replace(" ", ",").split(","):
        if not part:
            continue
        try:
            value = int(part)
        except ValueError:
            raise ConfigError(
                f"{label}: {part!r} is not a whole number",
                fix=f"write numbers separated by commas, e.g. {label_example(label)}",
            ) from None
        if value < minimum:
            raise ConfigError(f"{label}: {value} is below {minimum}", fix=f"use values of at least {minimum}")
        if value not in values:
            values.append(value)
    if not values:
        raise ConfigError(f"{label} is empty", fix=f"give at least one value, e.g. {label_example(label)}")
    return values


def label_example(label: str) -> str:
    if "atch" in label:
        return "1,8,32"
    return "64,256" if "utput" in label else "128,512"


def parse_int(label: str, text: str, minimum: int = 1) -> int:
    """One whole number: a field that takes a single value refuses a list ('4,8' is not read as 4)."""
    values = parse_int_list(label, text, minimum)
    if len(values) > 1 or "," in text or ";" in text:
        raise ConfigError(
            f"{label} takes one number, got {text.strip()!r}",
            fix="lists are for Input tokens, Output tokens and Batch sizes; type one number here",
        )
    return values[0]


def parse_number(label: str, text: str, *, allow_empty: bool = False, positive: bool = True) -> float | None:
    text = text.strip()
    if not text:
        if allow_empty:
            return None
        raise ConfigError(f"{label} is empty", fix="type a number")
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(
            f"{label}: {text!r} is not a number", fix="type a number such as 2 or 0.5"
        ) from None
    if positive and value <= 0:
        raise ConfigError(f"{label} must be above 0, got {text}", fix="type a positive number")
    return value


def build(raw: dict[str, str]) -> tuple[dict[str, Any], dict[str, list[Any]], SessionSettings]:
    """(fixed run settings, grid axes, session settings) from the form's raw values."""
    model = raw.get("custom_model", "").strip() or raw["model"]
    fixed: dict[str, Any] = {
        "engine": raw["engine"],
        "model": model,
        "device": raw.get("device") or "auto",
        "mode": raw.get("mode") or "offline",
        "decoding": raw.get("decoding") or "greedy",
    }
    if raw.get("quant"):
        fixed["quant"] = raw["quant"]
    axes: dict[str, list[Any]] = {"batch_size": parse_int_list("Batch sizes", raw.get("batch_sizes", ""))}
    workload = raw.get("workload") or SYNTHETIC
    if workload.startswith(TASK_PREFIX):
        fixed["task"] = workload[len(TASK_PREFIX) :]
        if raw.get("requests", "").strip():
            fixed["limit"] = parse_int("Task items", raw["requests"])
        if raw.get("output_tokens", "").strip():
            axes["output_tokens"] = parse_int_list("Output tokens", raw["output_tokens"])
    else:
        axes["input_tokens"] = parse_int_list("Input tokens", raw.get("input_tokens", ""))
        axes["output_tokens"] = parse_int_list("Output tokens", raw.get("output_tokens", ""))
        if raw.get("requests", "").strip():
            fixed["requests"] = parse_int("Requests", raw["requests"])
    rate = parse_number("Rate", raw.get("rate", ""), allow_empty=True)
    if rate is not None:
        if fixed["mode"] != "online":
            raise ConfigError("a rate only applies to online mode", fix="set Mode to online, or clear Rate")
        fixed["rate"] = rate
    if fixed["decoding"] == "sample":
        fixed["temperature"] = parse_number("Temperature", raw.get("temperature", "1.0"))
    if fixed["decoding"] == "beam":
        fixed["num_beams"] = 4
    fixed["repeats"] = parse_int("Repeats", raw.get("repeats", "1") or "1")
    lever_fixed, lever_axes = parse_levers(raw)
    fixed.update(lever_fixed)
    axes.update(lever_axes)
    return fixed, axes, session_settings(raw)


# --- model and GPU levers (grammar: engines/levers.py; what an engine runs: its spec) --------------
NONE = "none"  # in a lever's free text: the run without it (so one Add sweeps "none,prune:layers:2")
CAP_FIELDS = ("power_limit_w", "sm_clock_mhz", "mem_clock_mhz")
CAP_HINT = "GPU caps (power limit, clocks) apply to a GPU run: set Device to cuda"
CAP_OFF = "GPU only: Device cuda"  # a greyed-out cap's placeholder
TRANSFORMS = ("prune:magnitude:0.5", "prune:layers:2", "prune:mlp:0.25", "lora:16", "lora:16:merged")
GPU_TRANSFORMS = ("prune:2:4",)  # semi-structured sparsity runs on Ampere+ GPUs only
NGRAM_DRAFTS = (2, 4, 8)
DRAFT_TOKENS = 4


def transform_choices(engine: str, gpu: bool, model: str = "") -> list[tuple[str, str]]:
    """The Transform menu for `engine`: (label, value), "" first meaning none. Engines that load
    weights (Hugging Face checkpoints, GGUF files) can be given a transformed model; a served or
    hidden test engine cannot. vLLM adds multi-LoRA serving. A random-weight model is made at load,
    so only unmerged LoRA adapters apply to it (the preflight says why the rest do not)."""
    from wattlab.engines import registry

    spec = registry().get(engine)
    if spec is None or spec.model_kind not in ("hf", "gguf"):
        return [("none (engine serves a fixed model)", "")]
    if model.startswith("random:"):
        return [("none", ""), ("lora:16", "lora:16")]
    values = list(TRANSFORMS) + (list(GPU_TRANSFORMS) if gpu else [])
    if engine == "vllm":
        values.append("lora:16:x4")
    return [("none", ""), *((v, v) for v in values)]


def _spec_methods(engine: str) -> list[Any]:
    """The engine's speculative-decoding methods from its spec; before specs declared them, ngram on
    the engines that load weights (the preflight is the judge)."""
    from wattlab.engines import registry

    spec = registry().get(engine)
    if spec is None:
        return []
    if hasattr(spec, "speculation"):
        return list(spec.speculation)
    return [_Ngram()] if spec.model_kind in ("hf", "gguf") else []


@dataclass(frozen=True)
class _Ngram:
    method: str = "ngram"
    devices: tuple[str, ...] = ("cpu", "gpu")


def speculative_choices(engine: str, model: str, device: str) -> list[tuple[str, str]]:
    """The Speculative menu: prompt lookup at a few draft lengths, and a draft model where the engine
    runs one: the smallest member of the model's family (same vocabulary, engines/families.py)."""
    from wattlab.engines.families import member_name, member_of

    where = {"cpu": "cpu", "cuda": "gpu"}.get(device)
    choices = [("none", "")]
    for method in _spec_methods(engine):
        if where is not None and where not in method.devices:
            continue
        if method.method == "ngram":
            choices += [(f"ngram:{k} (prompt lookup)", f"ngram:{k}") for k in NGRAM_DRAFTS]
        elif method.method == "draft":
            found = member_of(model)
            if found is not None and found[1] < len(found[0].members) - 1:
                draft = member_name(found[0], len(found[0].members) - 1)
                value = f"draft:{draft}:{DRAFT_TOKENS}"
                choices.append((f"{value} (family's smallest)", value))
    return choices


def _lever_values(label: str, selected: str, text: str, parse: Any) -> list[str | None]:
    """The values of a lever: the free text's comma list (NONE: unset) when typed, else the menu's."""
    text = text.strip()
    if not text:
        return [selected or None]
    values: list[str | None] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            raise ConfigError(f"{label}: {text!r} has an empty item", fix="separate values with commas")
        value = None if part.lower() == NONE else part
        if value is not None:
            parse(value)  # the grammar's ConfigError names the value and the forms allowed
        if value not in values:
            values.append(value)
    return values


def _cap_values(label: str, text: str, kind: type) -> list[float | int]:
    values: list[float | int] = []
    for part in (p.strip() for p in text.replace(";", ",").split(",")):
        try:
            value = kind(part)
        except ValueError:
            whole = "a whole number of MHz" if kind is int else "a number of watts"
            example = label_example_cap(label)
            raise ConfigError(f"{label}: {part!r} is not {whole}", fix=f"e.g. {example}") from None
        if value <= 0:
            raise ConfigError(f"{label} must be above 0, got {part}", fix=f"e.g. {label_example_cap(label)}")
        if value not in values:
            values.append(value)
    return values


def label_example_cap(label: str) -> str:
    return "200,300" if "W" in label else "1410"


def parse_levers(raw: dict[str, str]) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """(fixed levers, grid axes) from the Transform/Speculative menus, their free text (a comma list
    is an axis; `none` is the run without) and the GPU caps (a comma list of caps is an axis)."""
    from wattlab.engines.levers import parse_speculative, parse_transform

    fixed: dict[str, Any] = {}
    axes: dict[str, list[Any]] = {}
    levers = (
        ("transform", "Transform", parse_transform),
        ("speculative", "Speculative", parse_speculative),
    )
    for key, label, parse in levers:
        values = _lever_values(label, raw.get(key, ""), raw.get(key + "_text", ""), parse)
        if len(values) > 1:
            axes[key] = values
        elif values[0] is not None:
            fixed[key] = values[0]
    caps = (("power_limit_w", "Power limit W", float), ("sm_clock_mhz", "SM clock MHz", int),
            ("mem_clock_mhz", "Mem clock MHz", int))  # fmt: skip
    for key, label, kind in caps:
        text = raw.get(key, "").strip()
        if not text:
            continue
        numbers = _cap_values(label, text, kind)
        if len(numbers) > 1:
            axes[key] = numbers
        else:
            fixed[key] = numbers[0]
    return fixed, axes


# --- engine options (the engine's spec decides which; engines/specs/<engine>.py) -------------------
OPTION_ID = "opt-"  # widget id prefix of an engine option's control
DEFAULT_CHOICE = ""  # a Select's "engine default" entry


def launch_options(engine: str) -> list[Any]:
    """The options Launch offers for `engine`: its own, public ones (not the common or internal)."""
    from wattlab.engines import registry

    spec = registry().get(engine)
    return [o for o in (spec.options if spec else ()) if not o.internal]


def option_hint(option: Any) -> str:
    where = "" if set(option.devices) == {"cpu", "gpu"} else f" [{'/'.join(option.devices)} only]"
    return f"{option.describe()}{where}"


def option_control(option: Any) -> Any:
    """A Select for booleans and choices (first entry: the engine's default), else an Input that
    takes one value or, for numbers, a comma list (each value becomes a grid axis point)."""
    from textual.widgets import Input, Select

    wid = OPTION_ID + option.name
    if option.type is bool or option.choices:
        values = (True, False) if option.type is bool else option.choices
        default = "default" if option.default is None else f"default ({_text(option.default)})"
        entries = [(default, DEFAULT_CHOICE)] + [(_text(v), _text(v)) for v in values]
        return Select(entries, value=DEFAULT_CHOICE, allow_blank=False, id=wid, compact=True)
    many = ", list ok" if option.type in (int, float) else ""
    return Input("", placeholder=f"default{many} ({option_hint(option)})", id=wid, compact=True)


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def parse_options(engine: str, raw: dict[str, str]) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """(fixed options, grid axes named options.<name>) from the option controls' raw values
    ({option name: text}); each value is checked against the engine's spec (type, choices, range).
    Devices are checked when the run is added (the preflight knows the run's device)."""
    by_name = {o.name: o for o in launch_options(engine)}
    fixed: dict[str, Any] = {}
    axes: dict[str, list[Any]] = {}
    for name, text in raw.items():
        option, text = by_name.get(name), text.strip()
        if option is None or not text:
            continue
        values = [_parse_option(option, part.strip()) for part in text.split(",") if part.strip()]
        for value in values:
            problems = option.problems(value)
            if problems:
                raise ConfigError(f"{engine} option {problems[0]}", fix=f"{name}: {option.describe()}")
        values = list(dict.fromkeys(values))
        if len(values) == 1:
            fixed[name] = values[0]
        else:
            axes["options." + name] = values
    return fixed, axes


def _parse_option(option: Any, text: str) -> Any:
    if option.type is bool:
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
    elif option.type is int:
        try:
            return int(text)
        except ValueError:
            pass
    elif option.type is float:
        try:
            return float(text)
        except ValueError:
            pass
    else:
        return text
    raise ConfigError(
        f"{option.name}: {text!r} is not {'a whole number' if option.type is int else option.type.__name__}",
        fix=f"{option.name}: {option.describe()}",
    )


def session_settings(raw: dict[str, str]) -> SessionSettings:
    cooldown_text = raw.get("cooldown_s", "0").strip() or "0"
    cooldown: float | str
    if cooldown_text == "settle":
        cooldown = "settle"
    else:
        cooldown = parse_number("Cooldown s", cooldown_text, positive=False) or 0.0
        if cooldown < 0:
            raise ConfigError("Cooldown s cannot be negative", fix="use 0 for none, or settle")
    idle = parse_number("Idle baseline s", raw.get("idle_s", "3") or "3", positive=False) or 0.0
    if idle < 0:
        raise ConfigError("Idle baseline s cannot be negative", fix="use 0 to skip the idle baseline")
    country = raw.get("country", "").strip().upper() or None
    if country and not (country.isalpha() and len(country) in (2, 3)):
        raise ConfigError(
            f"Grid country {country!r} is not an ISO country code", fix="e.g. FRA, DEU, USA (or leave empty)"
        )
    return SessionSettings(
        name=raw.get("name", "").strip() or None,
        idle_s=idle,
        cooldown_s=cooldown,
        country=country,
        pue=parse_number("PUE", raw.get("pue", "1.0") or "1.0") or 1.0,
    )


def raw_from_session(settings: SessionSettings) -> dict[str, str]:
    """The session fields of the form, from a loaded sweep's [session]."""
    return {
        "name": settings.name or "",
        "idle_s": f"{settings.idle_s:g}",
        "cooldown_s": settings.cooldown_s
        if isinstance(settings.cooldown_s, str)
        else f"{settings.cooldown_s:g}",
        "country": settings.country or "",
        "pue": f"{settings.pue:g}",
    }


def control(field: Field, catalog: Any) -> Any:
    """The widget for a field: an Input, or a Select filled from the catalog."""
    from textual.widgets import Input, Select

    if field.kind == "input":
        return Input(field.default, placeholder=field.placeholder, id=field.id, compact=True)
    options: list[tuple[str, str]]
    value = field.default
    if field.id == "engine":
        options = [(name, name) for name in catalog.engine_names()]  # relabelled when the probe answers
        value = catalog.default_engine()
    elif field.id == "model":
        options = [(m.name + ("" if m.available else " — missing"), m.name) for m in catalog.models()]
        value = catalog.default_model()
    elif field.id == "quant":
        options, value = [("reading…", "")], ""
    elif field.id == "transform":
        options, value = transform_choices(catalog.default_engine(), gpu=False), ""
    elif field.id == "speculative":
        options, value = [("none", "")], ""
    elif field.id == "workload":
        tasks = [(f"task: {t.name} ({t.metric})", TASK_PREFIX + t.name) for t in catalog.tasks()]
        options = [("synthetic (token-length bins)", SYNTHETIC), *tasks]
    else:
        options = list({"device": DEVICES, "mode": MODES, "decoding": DECODINGS}[field.id])
    return Select(options, value=value, allow_blank=False, id=field.id, compact=True)
