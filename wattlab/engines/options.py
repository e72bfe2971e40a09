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
    """Check option names and types for `engine`; ints are accepted where floats are expected."""
    declared = options_of(engine)
    known = {o.name: o for o in declared}
    checked: dict[str, Any] = {}
    for key, value in options.items():
        option = known.get(key)
        if option is None:
            public = ", ".join(o.name for o in declared if not o.internal)
            raise ConfigError(f"the {engine} engine has no option {key!r}", fix=f"use one of: {public}")
        if option.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, option.type) or (option.type is int and isinstance(value, bool)):
            raise ConfigError(
                f"option {key!r} of the {engine} engine must be {option.type.__name__}, not {value!r}",
                fix=f"{key}: {option.help}",
            )
        checked[key] = value
    return checked


__all__ = ["COMMON_OPTIONS", "Option", "options_of", "validate"]
