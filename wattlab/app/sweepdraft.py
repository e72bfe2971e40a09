"""The sweep being assembled in Launch: rows of run settings, checked, counted and saved as TOML.

Each "Add" expands the form's lists (batch sizes, token lengths) into rows and checks every row
with `make_spec`, so a bad combination is refused with the ConfigError's message before anything
starts. Saving writes the TOML `wattlab sweep` reads: settings shared by every row go to
[defaults]; if the rest is a full grid it becomes [grid] (via `dump_sweep`), otherwise one
[[runs]] block per row. Loading goes through `load_sweep`, so the console and the CLI agree on
what a file means.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from wattlab.errors import ConfigError
from wattlab.sessions.spec import (
    RunSpec,
    SessionSettings,
    Sweep,
    dump_sweep,
    make_spec,
    toml_value,
    with_options,
)

_DEFAULTS: dict[str, Any] = {
    f.name: (f.default_factory() if callable(f.default_factory) else f.default)  # type: ignore[misc]
    for f in fields(RunSpec)
}
ALWAYS = ("engine", "model")  # written even when equal to the default, so a file reads on its own


def row_of(spec: RunSpec) -> dict[str, Any]:
    """A spec as the settings that differ from RunSpec's defaults (plus engine and model)."""
    values = spec.as_dict()
    return {k: v for k, v in values.items() if k in ALWAYS or v != _normal(_DEFAULTS[k])}


def _normal(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _enc(value: Any) -> str:
    """A value's identity for comparing rows (lists and dicts included)."""
    return json.dumps(value, sort_keys=True, default=str)


def _key(row: dict[str, Any]) -> str:
    return _enc(row)


@dataclass
class SweepDraft:
    session: SessionSettings = field(default_factory=SessionSettings)
    rows: list[dict[str, Any]] = field(default_factory=list)

    # --- editing --------------------------------------------------------------------------------
    @staticmethod
    def expand(fixed: dict[str, Any], axes: dict[str, list[Any]]) -> list[dict[str, Any]]:
        """Every combination of `axes` on top of `fixed`, each checked by `make_spec`.

        Raises ConfigError naming the first bad combination.
        """
        names = list(axes)
        rows: list[dict[str, Any]] = []
        for combo in itertools.product(*(axes[n] for n in names)):
            point = dict(zip(names, combo, strict=True))
            try:
                spec = make_spec(with_options(fixed, point))  # options.<name> axes join `options`
            except ConfigError as exc:
                where = ", ".join(f"{k} {v}" for k, v in point.items() if len(axes[k]) > 1)
                raise ConfigError(
                    f"{exc.message}" + (f" (at {where})" if where else ""), fix=exc.fix
                ) from exc
            rows.append(row_of(spec))
        return rows

    def extend(self, rows: list[dict[str, Any]]) -> tuple[int, int]:
        """Append rows not already present. Returns (added, already present)."""
        present = {_key(r) for r in self.rows}
        added = 0
        for row in rows:
            if _key(row) not in present:
                self.rows.append(row)
                present.add(_key(row))
                added += 1
        return added, len(rows) - added

    def add(self, fixed: dict[str, Any], axes: dict[str, list[Any]]) -> tuple[int, int]:
        """expand + extend: nothing is added when any combination is bad."""
        return self.extend(self.expand(fixed, axes))

    def remove(self, index: int) -> None:
        if 0 <= index < len(self.rows):
            del self.rows[index]

    def clear(self) -> None:
        self.rows.clear()

    # --- reading --------------------------------------------------------------------------------
    def specs(self) -> list[RunSpec]:
        return [make_spec(r) for r in self.rows]

    @property
    def run_count(self) -> int:
        return sum(int(r.get("repeats", 1)) for r in self.rows)

    def describe(self) -> str:
        """The runs in a few words: "llamacpp bs1, bs4 · 128→64 tok" (engines with their batch
        sizes, then the workloads), for the line above Launch's buttons."""
        by_engine: dict[str, list[str]] = {}
        workloads: list[str] = []
        for spec in self.specs():
            sizes = by_engine.setdefault(spec.engine, [])
            if f"bs{spec.batch_size}" not in sizes:
                sizes.append(f"bs{spec.batch_size}")
            tokens = f"{spec.input_tokens}→{spec.output_tokens_or_default} tok"
            what = f"task {spec.task}" if spec.task else tokens
            if what not in workloads:
                workloads.append(what)
        engines = "; ".join(f"{engine} {', '.join(sizes)}" for engine, sizes in by_engine.items())
        return f"{engines} · {', '.join(workloads)}" if engines else ""

    def default_name(self, now: Any = None) -> str:
        """A readable session name for a sweep started from the console without one:
        "console 20:04 llamacpp bs1,4"."""
        import datetime as dt

        when = (now or dt.datetime.now()).strftime("%H:%M")
        by_engine: dict[str, list[str]] = {}
        for spec in self.specs():
            sizes = by_engine.setdefault(spec.engine, [])
            if str(spec.batch_size) not in sizes:
                sizes.append(str(spec.batch_size))
        engines = " ".join(f"{engine} bs{','.join(sizes)}" for engine, sizes in by_engine.items())
        return f"console {when} {engines}".strip()

    def planned(self) -> list[dict[str, Any]]:
        """One dict per run to execute (repeats expanded), for the duration estimate."""
        out = []
        for spec in self.specs():
            item = {
                "engine": spec.engine,
                "model": spec.model,
                "quant": spec.quant,
                "batch_size": spec.batch_size,
                "requests": spec.n_requests,
                "output_tokens": spec.output_tokens_or_default,
            }
            out.extend([item] * spec.repeats)
        return out

    # --- files ----------------------------------------------------------------------------------
    def to_toml(self) -> str:
        if not self.rows:
            raise ConfigError(
                "the sweep has no runs", fix="add at least one combination (a) before saving or starting"
            )
        keys = [k for k in _DEFAULTS if any(k in r for r in self.rows)]  # RunSpec's field order
        full = [{k: r.get(k, _normal(_DEFAULTS[k])) for k in keys} for r in self.rows]
        common = {k: full[0][k] for k in keys if all(_enc(f[k]) == _enc(full[0][k]) for f in full)}
        varying = [k for k in keys if k not in common]
        if not varying:  # one row: [grid] needs an axis, so the engine is the axis
            varying = ["engine"]
            common.pop("engine")
        axes = {k: list(dict.fromkeys(_enc(f[k]) for f in full)) for k in varying}
        product = 1
        for values in axes.values():
            product *= len(values)
        is_grid = product == len(full) and all(f[k] is not None for f in full for k in varying)
        if is_grid:
            grid = {k: [json.loads(v) for v in vals] for k, vals in axes.items()}
            return dump_sweep(self.session, common, grid)
        text = dump_sweep(self.session, common, {})
        blocks = []
        for f in full:
            lines = ["[[runs]]"] + [f"{k} = {toml_value(f[k])}" for k in varying if f[k] is not None]
            blocks.append("\n".join(lines))
        return text + "\n" + "\n\n".join(blocks) + "\n"

    @classmethod
    def from_sweep(cls, sweep: Sweep) -> SweepDraft:
        rows: list[dict[str, Any]] = []
        seen: set[str] = set()
        for spec, repeat in sweep.runs:
            if repeat:
                continue
            row = row_of(spec)
            if _key(row) not in seen:
                seen.add(_key(row))
                rows.append(row)
        return cls(session=sweep.session, rows=rows)

    @classmethod
    def load(cls, path: str | Path) -> SweepDraft:
        from wattlab.sessions.spec import load_sweep

        return cls.from_sweep(load_sweep(path))
