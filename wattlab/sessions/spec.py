"""What to run: a RunSpec (one configuration) and a Sweep (a TOML grid of them).

A sweep file:

    [session]                       # optional: how the session measures
    name = "batch study"
    idle_s = 5                      # idle baseline before the first run (s)
    cooldown_s = 2                  # pause after each run (s), or "settle": until power is near idle
    country = "FRA"                 # grid carbon intensity (ISO code); or intensity_g_per_kwh = 56
    pue = 1.2

    [defaults]                      # any run field, applied to every run
    model = "smollm2-135m-instruct"
    input_tokens = 128
    output_tokens = 64

    [grid]                          # lists: every combination becomes a run
    engine = ["llamacpp", "transformers"]
    batch_size = [1, 8]

    [[runs]]                        # optional extra runs, each on top of [defaults]
    engine = "vllm"
    mode = "online"
    rate = 4.0

Engine options (engines/specs/<engine>.py) are the `options` table of a run: in [defaults] or
[[runs]] as `options.max_num_seqs = 64` (or `options = { ... }`), and in [grid] each option is an
axis of its own: `options.enforce_eager = [true, false]` (also written `[grid.options]`). A run's
options are its defaults' with its grid point's and its [[runs]] entry's on top.

Runs are ordered so those sharing model/variant/engine are adjacent (one engine load serves them).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from wattlab.engines.levers import parse_speculative, parse_transform
from wattlab.errors import ConfigError

DEFAULT_MODEL = "smollm2-135m-instruct"
# Warmup runs one batch of the run's own prompts with the output cut to this many tokens: every decode
# step runs the same kernels, so a few dozen steps select them and ramp the clocks up, while a warmup
# at full output length took longer than the measured window itself.
WARMUP_OUTPUT_TOKENS = 32


@dataclass(frozen=True)
class RunSpec:
    """One run's settings. Field names are the TOML keys and (with dashes) the CLI flags."""

    engine: str = "llamacpp"
    model: str = DEFAULT_MODEL
    quant: str | None = None  # GGUF type (Q4_1, Q8_0, F16) or dtype (fp32, bf16, fp16)
    device: str = "auto"  # cpu | cuda | cuda:N | auto
    batch_size: int = 1
    input_tokens: int = 128
    output_tokens: int | None = None  # default: 64, or the task's own budget for tasks
    requests: int | None = None  # default: batch_size (one full batch)
    mode: str = "offline"  # offline | online
    rate: float | None = None  # online arrivals, requests/s (None: all at once)
    burstiness: float = 1.0
    max_concurrency: int | None = None  # online: default batch_size
    decoding: str = "greedy"  # greedy | sample | beam
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    num_beams: int = 1
    seed: int = 0
    workload: str = "synthetic"  # synthetic | prompts | task
    prompts_file: str | None = None
    input_bin: tuple[int, int] | None = None
    task: str | None = None
    task_file: str | None = None
    task_format: str | None = None
    limit: int | None = None
    chat: bool = True
    exact_output: bool = True  # synthetic: ignore EOS until output_tokens
    warmup_requests: int | None = None  # default: one batch of the run's prompts (see warmup_shape)
    repeats: int = 1
    timeout_s: float | None = None
    options: dict[str, Any] = field(default_factory=dict)  # engine knobs: n_gpu_layers, ...
    # Levers (engines/levers.py says the grammar; the preflight checks the engine and device allow them)
    transform: str | None = None  # prune:magnitude:0.5, prune:2:4, prune:layers:4, prune:mlp:0.25, lora:16
    speculative: str | None = None  # ngram:K (prompt lookup), draft:MODEL:K
    power_limit_w: float | None = None  # GPU power cap for the run (restored after it)
    sm_clock_mhz: int | None = None  # locked GPU SM clock (restored after it)
    mem_clock_mhz: int | None = None  # locked GPU memory clock (restored after it)

    def __post_init__(self) -> None:
        validate(self)

    @property
    def output_tokens_or_default(self) -> int:
        return self.output_tokens or 64

    @property
    def n_requests(self) -> int:
        return int(self.requests or self.batch_size)

    def warmup_shape(self) -> tuple[int, int]:
        """(requests, output-token cap) of the warmup: one batch (or warmup_requests) of the run's
        own prompts, each generating at most WARMUP_OUTPUT_TOKENS."""
        n = self.batch_size if self.warmup_requests is None else self.warmup_requests
        return n, min(self.output_tokens_or_default, WARMUP_OUTPUT_TOKENS)

    def workload_dict(self) -> dict[str, Any]:
        kind = "task" if (self.task or self.task_file) else self.workload
        if kind == "prompts" and not self.prompts_file:
            raise ConfigError("workload 'prompts' needs prompts_file", fix="set prompts_file = 'path.jsonl'")
        return {
            "kind": kind,
            "requests": self.requests if kind != "synthetic" else self.n_requests,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens if kind == "task" else self.output_tokens_or_default,
            "seed": self.seed,
            "mode": self.mode,
            "rate": self.rate,
            "burstiness": self.burstiness,
            "path": self.prompts_file,
            "input_bin": list(self.input_bin) if self.input_bin else None,
            "task": self.task,
            "task_file": self.task_file,
            "task_format": self.task_format,
            "limit": self.limit,
            "chat": self.chat,
            "exact_output": self.exact_output,
        }

    def decoding_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.decoding,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "num_beams": self.num_beams,
            "seed": self.seed,
        }

    def load_key(self) -> tuple[Any, ...]:
        """Runs with the same load key reuse one loaded engine (a transform changes the weights and
        speculation is set when the engine loads, so both are part of it)."""
        return (
            self.engine,
            self.model,
            self.quant,
            self.device,
            json.dumps(self.options, sort_keys=True),
            self.transform,
            self.speculative,
        )

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if d["input_bin"] is not None:
            d["input_bin"] = list(d["input_bin"])
        return d

    def key(self, repeat: int = 0) -> str:
        """A stable identity of these settings (and repeat index), for resuming sweeps. Lever fields
        left unset are left out, so a sweep started before they existed resumes with the same keys."""
        settings = {k: v for k, v in self.as_dict().items() if not (k in LEVER_FIELDS and v is None)}
        blob = json.dumps({**settings, "repeats": None, "_repeat": repeat}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def label(self) -> str:
        q = f"/{self.quant}" if self.quant else ""
        what = self.task or f"{self.input_tokens}in/{self.output_tokens_or_default}out"
        return f"{self.engine} {self.model}{q} bs{self.batch_size} {self.mode} {what}"


_FIELDS = {f.name: f for f in fields(RunSpec)}
LEVER_FIELDS = ("transform", "speculative", "power_limit_w", "sm_clock_mhz", "mem_clock_mhz")
_CHOICES = {
    "mode": ("offline", "online"),
    "decoding": ("greedy", "sample", "beam"),
    "workload": ("synthetic", "prompts", "task"),
}


def validate(spec: RunSpec) -> None:
    """Reject impossible settings with the field name and the fix."""
    for name, allowed in _CHOICES.items():
        value = getattr(spec, name)
        if value not in allowed:
            raise ConfigError(
                f"{name} = {value!r} is not one of {', '.join(allowed)}", fix=f"set {name} to one of them"
            )
    positive = ("batch_size", "input_tokens", "output_tokens", "repeats", "num_beams")
    for name in positive:
        if getattr(spec, name) is not None and getattr(spec, name) < 1:
            raise ConfigError(f"{name} must be at least 1, got {getattr(spec, name)}", fix=f"set {name} >= 1")
    if spec.requests is not None and spec.requests < 1:
        raise ConfigError(f"requests must be at least 1, got {spec.requests}", fix="set requests >= 1")
    if spec.warmup_requests is not None and spec.warmup_requests < 0:
        raise ConfigError("warmup_requests cannot be negative", fix="use 0 to skip warmup")
    if spec.rate is not None and spec.rate <= 0:
        raise ConfigError(f"rate must be positive, got {spec.rate}", fix="requests per second, e.g. rate = 2")
    if spec.decoding == "beam" and spec.num_beams < 2:
        raise ConfigError("decoding = 'beam' needs num_beams >= 2", fix="set num_beams = 4, say")
    if spec.temperature <= 0 and spec.decoding == "sample":
        raise ConfigError("sampling needs temperature > 0", fix="use decoding = 'greedy' for temperature 0")
    if not 0 < spec.top_p <= 1:
        raise ConfigError(f"top_p must be in (0, 1], got {spec.top_p}", fix="e.g. top_p = 0.9")
    if spec.transform is not None:
        parse_transform(spec.transform)
    if spec.speculative is not None:
        parse_speculative(spec.speculative)
    if spec.power_limit_w is not None and spec.power_limit_w <= 0:
        raise ConfigError(f"power_limit_w must be positive, got {spec.power_limit_w:g}", fix="e.g. 300")
    for name in ("sm_clock_mhz", "mem_clock_mhz"):
        value = getattr(spec, name)
        if value is not None and value <= 0:
            raise ConfigError(f"{name} must be positive, got {value}", fix=f"e.g. {name} = 1410")


def _coerce(name: str, value: Any, where: str) -> Any:
    """Check a TOML/CLI value against the RunSpec field's type; error names the key and line."""
    f = _FIELDS.get(name)
    if f is None:
        raise ConfigError(
            f"unknown key {name!r}{where}",
            fix=f"known keys: {', '.join(sorted(_FIELDS))}",
        )
    typ = str(f.type)
    ok: bool
    if value is None:
        ok = "None" in typ
    elif typ.startswith("int"):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif typ.startswith("float"):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif typ.startswith("bool"):
        ok = isinstance(value, bool)
    elif typ.startswith("str"):
        ok = isinstance(value, str)
    elif typ.startswith("tuple"):
        ok = isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(v, int) for v in value)
        value = tuple(value) if ok else value
    elif typ.startswith("dict"):
        ok = isinstance(value, dict)
    else:
        ok = True
    if not ok:
        raise ConfigError(
            f"{name}{where} has the wrong type: {value!r} (expected {typ.replace(' | None', ' or none')})",
            fix=f"give {name} a value of type {typ}",
        )
    return value


def make_spec(values: dict[str, Any], where: str = "") -> RunSpec:
    # TOML has no null: "none" is how a grid says "this run without the lever" (transform = ["none", ...]).
    values = {k: None if k in ("transform", "speculative") and v == "none" else v for k, v in values.items()}
    coerced = {k: _coerce(k, v, where) for k, v in values.items()}
    return RunSpec(**coerced)


@dataclass
class SessionSettings:
    name: str | None = None
    idle_s: float = 3.0
    cooldown_s: float | str = 0.0  # seconds, or "settle"
    country: str | None = None
    intensity_g_per_kwh: float | None = None
    pue: float = 1.0
    meters: str = "auto"
    gpus: list[str] | None = None
    tdp_w: float | None = None
    power_hz: float = 10.0
    counter_hz: float = 2.0
    cluster: str | None = None  # a Ray cluster's address: the sweep runs there (wattlab/cluster/)

    def __post_init__(self) -> None:
        for name in ("power_hz", "counter_hz", "pue"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or value <= 0:
                raise ConfigError(
                    f"[session] {name} must be a positive number, got {value!r}", fix=f"e.g. {name} = 1.0"
                )
        if not isinstance(self.idle_s, int | float) or self.idle_s < 0:
            raise ConfigError(f"[session] idle_s must be >= 0, got {self.idle_s!r}", fix="e.g. idle_s = 3")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_SESSION_FIELDS = {f.name for f in fields(SessionSettings)}
# `wattlab run` flags whose names differ from the RunSpec field they set.
CLI_FLAGS = {"prompts_file": "--prompts", "options": "--option", "warmup_requests": "--warmup"}


@dataclass
class Sweep:
    session: SessionSettings
    runs: list[tuple[RunSpec, int]]  # (spec, repeat index)
    source: str = ""
    text: str = ""  # the TOML source, so a preflight problem can name its line

    def where(self, key: str) -> str:
        """Where a run field is set, for messages: the sweep file's line, or the CLI flag.
        An engine option is named `options.<name>`."""
        option = key.removeprefix(OPTION_PREFIX) if key.startswith(OPTION_PREFIX) else None
        if not self.text:
            if option:
                return f"--option {option}=..."
            return CLI_FLAGS.get(key, "--" + key.replace("_", "-"))
        for section in ("grid", "runs", "defaults"):
            line = _line_of(self.text, section, key)
            if line is None and option:  # [grid.options] tables, then an inline `options = {...}`
                line = _line_of(self.text, f"{section}.options", option) or _line_of(
                    self.text, section, "options"
                )
            if line:
                return f"{self.source} line {line}: [{section}] {key}"
        return f"{self.source}: the default {key}"

    def hash(self) -> str:
        blob = json.dumps([s.key(r) for s, r in self.runs], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _line_of(text: str, section: str | None, key: str) -> int | None:
    """Line number of `key = ...` (within [section] when given), for error messages."""
    current: str | None = None
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        header = re.match(r"^\[\[?\s*([\w.-]+)\s*\]\]?", stripped)
        if header:
            current = header.group(1)
            continue
        if re.match(rf"^{re.escape(key)}\s*=", stripped) and (section is None or current == section):
            return lineno
    return None


def _where(path: str, text: str, section: str, key: str) -> str:
    line = _line_of(text, section, key)
    return f" in [{section}] of {path}" + (f" (line {line})" if line else "")


def parse_sweep(text: str, path: str = "<sweep>") -> Sweep:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}", fix="fix the syntax at the line shown") from exc
    unknown_sections = set(doc) - {"session", "defaults", "grid", "runs"}
    if unknown_sections:
        name = sorted(unknown_sections)[0]
        raise ConfigError(
            f"unknown section [{name}] in {path}" + (f" (line {_line_of(text, None, name) or '?'})"),
            fix="sections are [session], [defaults], [grid] and [[runs]]",
        )
    raw_session = doc.get("session", {})
    for key in raw_session:
        if key not in _SESSION_FIELDS:
            raise ConfigError(
                f"unknown key {key!r}{_where(path, text, 'session', key)}",
                fix=f"[session] keys: {', '.join(sorted(_SESSION_FIELDS))}",
            )
    session = SessionSettings(**raw_session)
    if isinstance(session.cooldown_s, str) and session.cooldown_s != "settle":
        raise ConfigError(
            f"cooldown_s = {session.cooldown_s!r}{_where(path, text, 'session', 'cooldown_s')}",
            fix='use a number of seconds or "settle"',
        )
    defaults = doc.get("defaults", {})
    for key, value in defaults.items():
        _coerce(key, value, _where(path, text, "defaults", key))
    grid = doc.get("grid", {})
    axes: list[tuple[str, list[Any]]] = []
    for key, values in grid.items():
        where = _where(path, text, "grid", key)
        if key == "options" and isinstance(values, dict):  # one axis per engine option
            for name, option_values in values.items():
                option_values = option_values if isinstance(option_values, list) else [option_values]
                if not option_values:
                    raise ConfigError(
                        f"grid axis 'options.{name}'{_where(path, text, 'grid', 'options.' + name)} is an "
                        "empty list",
                        fix="give it at least one value",
                    )
                axes.append((OPTION_PREFIX + name, option_values))
            continue
        values = values if isinstance(values, list) else [values]
        if not values:
            raise ConfigError(f"grid axis {key!r}{where} is an empty list", fix="give it at least one value")
        for v in values:
            _coerce(key, v, where)
        axes.append((key, values))
    explicit = doc.get("runs", [])
    if not isinstance(explicit, list):
        raise ConfigError(
            f"runs in {path} must be an array of tables ([[runs]])", fix="write [[runs]] blocks"
        )

    if not axes and not explicit:
        raise ConfigError(f"{path} defines no runs", fix="add a [grid] with at least one axis, or [[runs]]")
    specs: list[RunSpec] = []
    if axes:
        names = [k for k, _ in axes]
        for combo in itertools.product(*(v for _, v in axes)):
            values = with_options(defaults, dict(zip(names, combo, strict=True)))
            try:
                specs.append(make_spec(values))
            except ConfigError as exc:
                raise ConfigError(
                    f"{path}: the grid point {dict(zip(names, combo, strict=True))} — {exc.message}",
                    fix=exc.fix,
                ) from exc
    for i, run in enumerate(explicit):
        for key, value in run.items():
            _coerce(key, value, f" in [[runs]] #{i + 1} of {path}")
        specs.append(make_spec(with_options(defaults, run)))
    if not specs:
        raise ConfigError(f"{path} defines no runs", fix="add a [grid] with at least one axis, or [[runs]]")

    # Keep runs that share an engine load together, in first-seen order.
    order: dict[tuple[Any, ...], int] = {}
    for s in specs:
        order.setdefault(s.load_key(), len(order))
    specs.sort(key=lambda s: order[s.load_key()])
    runs = [(s, r) for s in specs for r in range(s.repeats)]
    return Sweep(session=session, runs=runs, source=path, text=text)


OPTION_PREFIX = "options."


def with_options(defaults: dict[str, Any], point: dict[str, Any]) -> dict[str, Any]:
    """A run's fields: `point` over `defaults`, with their engine options merged (not replaced) and
    `options.<name>` grid axes folded into the options table."""
    options = dict(defaults.get("options") or {})
    values = {**defaults}
    for key, value in point.items():
        if key.startswith(OPTION_PREFIX):
            options[key.removeprefix(OPTION_PREFIX)] = value
        elif key == "options" and isinstance(value, dict):
            options.update(value)
        else:
            values[key] = value
    if options:
        values["options"] = options
    return values


def load_sweep(path: str | Path) -> Sweep:
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read sweep file {p}: {exc.strerror}", fix="check the path") from exc
    return parse_sweep(text, str(p))


def toml_value(v: Any) -> str:
    """A value as TOML source (strings quoted, lists and inline tables nested)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    return repr(v)


def dump_sweep(sweep_session: SessionSettings, defaults: dict[str, Any], grid: dict[str, list[Any]]) -> str:
    """Write a sweep as the TOML `wattlab sweep` reads (the console's Save uses this)."""

    lines = ["[session]"]
    for k, v in sweep_session.as_dict().items():
        if v is not None:
            lines.append(f"{k} = {toml_value(v)}")
    lines += ["", "[defaults]"]
    lines += [f"{k} = {toml_value(v)}" for k, v in defaults.items() if v is not None]
    lines += ["", "[grid]"]
    lines += [f"{k} = {toml_value(v)}" for k, v in grid.items()]
    return "\n".join(lines) + "\n"
