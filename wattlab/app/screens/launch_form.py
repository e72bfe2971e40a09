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
    return fixed, axes, session_settings(raw)


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
    elif field.id == "workload":
        tasks = [(f"task: {t.name} ({t.metric})", TASK_PREFIX + t.name) for t in catalog.tasks()]
        options = [("synthetic (token-length bins)", SYNTHETIC), *tasks]
    else:
        options = list({"device": DEVICES, "mode": MODES, "decoding": DECODINGS}[field.id])
    return Select(options, value=value, allow_blank=False, id=field.id, compact=True)
