"""Launch's background jobs, as plain functions run in thread workers (no widget touched here).

Each returns its result or raises a WattlabError; the screen's job runner turns either into a
message for the UI thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wattlab.app.sweepdraft import SweepDraft
from wattlab.errors import ConfigError, WattlabError


def read_variants(catalog: Any, model: str, engine: str) -> tuple[str, str, list[str] | WattlabError]:
    """(model, engine, the variants allowed or why there are none): reads at most a GGUF header."""
    try:
        return model, engine, catalog.variants(model, engine)
    except WattlabError as exc:
        return model, engine, exc


def expand_checked(catalog: Any, fixed: dict[str, Any], axes: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The runs an Add makes, after checking the variant against what the engine and model allow."""
    allowed = catalog.variants(fixed["model"], fixed["engine"])
    if fixed.get("quant") and fixed["quant"] not in allowed:
        raise ConfigError(
            f"the {fixed['engine']} engine cannot run {fixed['model']} as {fixed['quant']}",
            fix=f"choose one of: {', '.join(allowed)}",
        )
    rows = SweepDraft.expand(fixed, axes)
    _check_options(rows)
    return rows


def _check_options(rows: list[dict[str, Any]]) -> None:
    """Refuse options that do not apply on a run's device (flash attention on the CPU, ...)."""
    from wattlab.engines import options as engine_options
    from wattlab.sessions.plan import run_device_kind
    from wattlab.sessions.spec import make_spec

    for row in rows:
        spec = make_spec(row)
        found = engine_options.problems(spec.engine, dict(spec.options), run_device_kind(spec))
        if found:
            raise found[0]


def estimate(store: Any, planned: list[dict[str, Any]], settings: Any) -> dict[str, Any]:
    from wattlab.app.data import estimate as estimate_seconds

    cooldown = 0.0 if isinstance(settings.cooldown_s, str) else float(settings.cooldown_s)
    return estimate_seconds(store, planned, settings.idle_s, cooldown)


def write_sweep(path: str, text: str) -> str:
    """Write a sweep TOML; returns the path written."""
    if not text:
        raise ConfigError("the sweep has no runs", fix="add at least one combination (ctrl+n) first")
    target = Path(path).expanduser()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot write {target}: {exc.strerror or exc}", fix="choose a writable path"
        ) from exc
    return str(target)


def load_sweep(path: str) -> tuple[str, SweepDraft]:
    return path, SweepDraft.load(path)


def start_sweep(text: str, data_dir: Path, db: str | None) -> tuple[str, Path]:
    """Write the sweep into the data dir and start a detached runner on it: (session id, runner log).

    The TOML is parsed first exactly as the runner will parse it, and checked by the same preflight
    as `wattlab sweep` (engines installed, models, files, token lengths, devices): a sweep that cannot
    run is refused here with every problem listed, and nothing starts.
    """
    from wattlab.sessions.launch import start_detached
    from wattlab.sessions.plan import preflight
    from wattlab.sessions.runner import new_session_id
    from wattlab.sessions.spec import parse_sweep

    session_id = new_session_id()
    path = data_dir / "sweeps" / f"{session_id}.toml"
    preflight(parse_sweep(text, "the sweep"))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        log = start_detached(path, session_id=session_id, db=db)
    except OSError as exc:
        raise ConfigError(f"cannot start the sweep: {exc}", fix=f"check that {data_dir} is writable") from exc
    return session_id, log
