"""Engine options (EngineConfig.options): the knobs each engine accepts, their types and meaning.

Each engine declares its own in its spec (engines/specs/<name>.py); COMMON_OPTIONS come on top.
Light on purpose (no engine import): the catalog validates a user's options against them, and the
CLI and console can list them. Keys marked internal are set by the catalog itself.
"""

from __future__ import annotations

from typing import Any

from wattlab.engines.spec import COMMON_OPTIONS, Option
from wattlab.errors import ConfigError


def options_of(engine: str) -> tuple[Option, ...]:
    """Every option `engine` accepts: the common ones, then its own (from its spec)."""
    from wattlab.engines import spec_of

    return spec_of(engine).all_options


def validate(engine: str, options: dict[str, Any]) -> dict[str, Any]:
    """Check option names, types, allowed values and ranges for `engine` (the first problem is
    raised; `problems` lists them all); ints are accepted where floats are expected."""
    found = problems(engine, options)
    if found:
        raise found[0]
    return {key: _coerced(options_by_name(engine)[key], value) for key, value in options.items()}


def options_by_name(engine: str) -> dict[str, Option]:
    return {o.name: o for o in options_of(engine)}


def _coerced(option: Option, value: Any) -> Any:
    if option.type is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def problems(engine: str, options: dict[str, Any], device: str | None = None) -> list[ConfigError]:
    """Every problem of `options` for `engine` on `device` ("cpu" | "gpu" | None: not known):
    unknown names, wrong types, values outside the option's choices or range, options or values
    that do not apply on that device, and values needing a package that is not installed."""
    import importlib.util

    declared = options_of(engine)
    known = {o.name: o for o in declared}
    out: list[ConfigError] = []
    for key, value in options.items():
        option = known.get(key)
        if option is None:
            public = ", ".join(o.name for o in declared if not o.internal)
            out.append(ConfigError(f"the {engine} engine has no option {key!r}", fix=f"use one of: {public}"))
            continue
        value = _coerced(option, value)
        if not isinstance(value, option.type) or (option.type is int and isinstance(value, bool)):
            out.append(
                ConfigError(
                    f"option {key!r} of the {engine} engine must be {option.type.__name__}, not {value!r}",
                    fix=f"{key}: {option.help}",
                )
            )
            continue
        for text in option.problems(value, device):
            fix = f"{key}: {option.describe()}"
            if "only on a GPU" in text:
                fix = f"run it with device = cuda on a GPU box, or drop {key}" + (
                    f" (on CPU use {', '.join(str(c) for c in option.choices if c not in option.gpu_values)})"
                    if option.gpu_values
                    else ""
                )
            elif "only on the CPU" in text:
                fix = f"drop {key} for GPU runs"
            out.append(ConfigError(f"the {engine} engine's option {text}", fix=fix))
        for wanted, module in option.needs:
            if value == wanted and importlib.util.find_spec(module) is None:
                out.append(
                    ConfigError(
                        f"the {engine} engine's option {key} = {value!r} needs the {module} package, "
                        "which is not installed",
                        fix=f"pip install {module.replace('_', '-')} (builds against your CUDA torch), "
                        f"or use {key} = " + " or ".join(repr(c) for c in option.choices if c != value),
                    )
                )
    return out


__all__ = ["COMMON_OPTIONS", "Option", "options_by_name", "options_of", "problems", "validate"]
