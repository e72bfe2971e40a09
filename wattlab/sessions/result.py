"""RunResult: one run's record, typed, from execute through the spool and DuckDB to the readers.

Its *column fields* are exactly the `runs` table's columns (sessions/schema.py; a test keeps them in
step). After them come fields that are not `runs` columns, in two groups:

- detail rows, each going to its own table: `energy` -> run_energy, `requests_detail` -> requests,
  `quality_detail` -> quality;
- extras kept only inside the `result_json` column (and the spool): `error_title`,
  `quality_metrics`, `quality_items`, `green_index_inputs`, `transform_note`.

A run's result is built once (execute.execute_run, or execute.base_row / failed for a run that did
not finish) and changed only by copying it (`replace`). The spool holds `as_dict()` and recovery
reads it back with `from_spool()`; DuckDB gets `to_row()` plus the detail rows, and readers get
`from_row()` (queries.get_run). An unknown name is an error everywhere, naming it, so schema drift is
caught where it happens. For display code a RunResult is also a read-only Mapping of its fields
(`run.get("energy_j")`, `run["model"]`); the runner, execute and commit use attributes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from wattlab.errors import StoreError


@dataclass(frozen=True, eq=True)
class RunResult(Mapping[str, Any]):
    # --- the runs table's columns, in its order -----------------------------------------------------
    run_id: str
    session_id: str
    seq: int | None = None
    run_key: str | None = None
    status: str | None = None
    error: str | None = None
    error_fix: str | None = None
    started_at: str | dt.datetime | None = None
    ended_at: str | dt.datetime | None = None
    engine: str | None = None
    engine_version: str | None = None
    model: str | None = None
    quant: str | None = None
    device: str | None = None
    devices: str | None = None
    params: int | None = None
    mode: str | None = None
    workload: str | None = None
    task: str | None = None
    batch_size: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    requests: int | None = None
    rate: float | None = None
    burstiness: float | None = None
    max_concurrency: int | None = None
    decoding: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    num_beams: int | None = None
    seed: int | None = None
    repeat: int | None = None
    worker_reused: bool | None = None
    load_s: float | None = None
    load_energy_j: float | None = None
    load_energy_method: str | None = None
    warmup_s: float | None = None
    duration_s: float | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    requests_ok: int | None = None
    throughput_tok_s: float | None = None
    total_tok_s: float | None = None
    requests_per_s: float | None = None
    ttft_p50_s: float | None = None
    ttft_p90_s: float | None = None
    ttft_p99_s: float | None = None
    ttft_mean_s: float | None = None
    tpot_p50_s: float | None = None
    tpot_p90_s: float | None = None
    tpot_p99_s: float | None = None
    tpot_mean_s: float | None = None
    itl_p50_s: float | None = None
    itl_p90_s: float | None = None
    itl_p99_s: float | None = None
    e2e_p50_s: float | None = None
    e2e_p90_s: float | None = None
    e2e_p99_s: float | None = None
    e2e_mean_s: float | None = None
    energy_j: float | None = None
    energy_net_j: float | None = None
    energy_method: str | None = None
    energy_coverage: float | None = None
    energy_domains: str | None = None
    steady_energy_j: float | None = None
    steady_tokens: int | None = None
    steady_j_per_token: float | None = None
    j_per_token: float | None = None
    j_per_token_net: float | None = None
    j_per_request: float | None = None
    tokens_per_j: float | None = None
    wh_per_1k_requests: float | None = None
    gco2e: float | None = None
    gco2e_per_request: float | None = None
    gco2e_per_1k_requests: float | None = None
    carbon_g_per_kwh: float | None = None
    carbon_source: str | None = None
    pue: float | None = None
    mean_power_w: float | None = None
    peak_power_w: float | None = None
    util_mean_pct: float | None = None
    peak_mem_mib: float | None = None
    quality: float | None = None
    quality_metric: str | None = None
    green_index: float | None = None
    t0_ns: int | None = None
    t1_ns: int | None = None
    flags: str | None = None
    spec_json: Any = None
    result_json: Any = None
    overlap: str | None = None
    peak_mem_kind: str | None = None  # what peak_mem_mib measured: gpu | gpu-device | host | engine
    # latency in its parts (schema v4): ttft_* above is the headline, ttft_basis says which TTFT it is
    ttft_basis: str | None = None  # "service" (from scheduling; offline) | "client" (from arrival)
    ttft_client_p50_s: float | None = None
    ttft_client_p90_s: float | None = None
    ttft_client_p99_s: float | None = None
    ttft_client_mean_s: float | None = None
    ttft_service_p50_s: float | None = None
    ttft_service_p90_s: float | None = None
    ttft_service_p99_s: float | None = None
    ttft_service_mean_s: float | None = None
    queue_p50_s: float | None = None
    queue_p90_s: float | None = None
    queue_p99_s: float | None = None
    queue_mean_s: float | None = None
    # the levers (schema v5): transform, speculation and its counts, GPU caps and throttling, node
    transform: str | None = None
    speculative: str | None = None
    spec_draft_tokens: int | None = None
    spec_accepted_tokens: int | None = None
    spec_acceptance_rate: float | None = None
    spec_tokens_per_step: float | None = None
    power_limit_w: float | None = None
    sm_clock_mhz: int | None = None
    mem_clock_mhz: int | None = None
    throttle_json: Any = None
    power_violation_s: float | None = None
    thermal_violation_s: float | None = None
    node_id: str | None = None
    hostname: str | None = None

    # --- detail rows for their own tables (not runs columns) ---------------------------------------
    energy: list[dict[str, Any]] = field(default_factory=list)  # -> run_energy
    requests_detail: list[dict[str, Any]] = field(default_factory=list)  # -> requests
    quality_detail: list[dict[str, Any]] = field(default_factory=list)  # -> quality

    # --- extras kept only in result_json (not runs columns) ----------------------------------------
    error_title: str | None = None  # the failure's short title, for the console
    quality_metrics: dict[str, float] | None = None  # every metric of the task: {metric: value}
    quality_items: list[Any] | None = None  # per-item scores of the task
    green_index_inputs: dict[str, Any] | None = None  # the Green AI index's formula, or why none
    transform_note: dict[str, Any] | None = None  # what the transform did (engines/transforms.run_note)

    # --- construction -------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunResult:
        """From `as_dict()` output (or any mapping of field names). An unknown name is an error."""
        _check_names(data, "a run result")
        return cls(**data)

    @classmethod
    def from_spool(cls, data: Mapping[str, Any]) -> RunResult:
        """From a spool's run_start row or run_end result.

        Spools outlive versions: recovery may ingest one written by an older wattlab. A name this
        version retired (RETIRED_KEYS, where a removed field must be added) is dropped; any other
        unknown name is still an error, so a spool from a newer version is not half-read."""
        return cls.from_dict({k: v for k, v in data.items() if k not in RETIRED_KEYS})

    @classmethod
    def from_row(
        cls,
        row: Mapping[str, Any],
        *,
        energy: list[dict[str, Any]] | None = None,
        quality_detail: list[dict[str, Any]] | None = None,
        requests_detail: list[dict[str, Any]] | None = None,
    ) -> RunResult:
        """From a `SELECT * FROM runs` row (and the run's detail rows). JSON columns are parsed; the
        extras come back from result_json, `quality_metrics` from the quality rows."""
        _check_names(row, "the runs row", allowed=COLUMNS)
        values = {k: _parse_json(row[k]) if k in JSON_COLUMNS else row[k] for k in row}
        stored = values.get("result_json")
        extras: dict[str, Any] = {}
        if isinstance(stored, dict):
            extras = {k: stored[k] for k in EXTRA_FIELDS if k in stored}
        if quality_detail:
            extras["quality_metrics"] = {q["metric"]: q["value"] for q in quality_detail}
        return cls(
            **values,
            **extras,
            energy=list(energy or []),
            quality_detail=list(quality_detail or []),
            requests_detail=list(requests_detail or []),
        )

    def replace(self, **changes: Any) -> RunResult:
        """A copy with some fields changed. An unknown name is an error."""
        _check_names(changes, "a run result")
        return dataclasses.replace(self, **changes)

    # --- output -------------------------------------------------------------------------------------
    def as_dict(self) -> dict[str, Any]:
        """Every field, as JSON-ready values for the spool (`from_spool` reads it back)."""
        return {name: getattr(self, name) for name in FIELDS}

    def to_row(self) -> dict[str, Any]:
        """The runs-table row: the column fields, with result_json the whole record but its request
        rows (kept as written when this result was read back from the database)."""
        row = {name: getattr(self, name) for name in COLUMNS}
        if row["result_json"] is None:
            row["result_json"] = {
                k: v for k, v in self.as_dict().items() if k not in ("requests_detail", "result_json")
            }
        return row

    def detail_rows(self) -> dict[str, list[dict[str, Any]]]:
        """The rows of the run's own tables: {table: rows}, each row with run_id and session_id."""
        ids = {"run_id": self.run_id, "session_id": self.session_id}
        return {
            "run_energy": [{**r, **ids} for r in self.energy],
            "requests": [{**r, **ids} for r in self.requests_detail],
            "quality": [{**r, **ids} for r in self.quality_detail],
        }

    # --- a read-only Mapping of the fields, for display code ----------------------------------------
    def __getitem__(self, name: str) -> Any:
        if name not in _FIELD_SET:
            raise KeyError(name)
        return getattr(self, name)

    def __iter__(self) -> Iterator[str]:
        return iter(FIELDS)

    def __len__(self) -> int:
        return len(FIELDS)

    __hash__ = None  # type: ignore[assignment]  # lists inside: not hashable


FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(RunResult))
DETAIL_FIELDS: dict[str, str] = {
    "energy": "run_energy",
    "requests_detail": "requests",
    "quality_detail": "quality",
}
EXTRA_FIELDS: tuple[str, ...] = (
    "error_title",
    "quality_metrics",
    "quality_items",
    "green_index_inputs",
    "transform_note",
)
COLUMNS: tuple[str, ...] = tuple(f for f in FIELDS if f not in DETAIL_FIELDS and f not in EXTRA_FIELDS)
JSON_COLUMNS = frozenset({"spec_json", "result_json"})
# Names older versions wrote into spooled results that this version no longer has (none yet). A field
# removed from RunResult goes here, so recovering an older spool drops it instead of failing.
RETIRED_KEYS: frozenset[str] = frozenset()
_FIELD_SET = frozenset(FIELDS)


def _check_names(data: Mapping[str, Any], what: str, allowed: Any = _FIELD_SET) -> None:
    unknown = [k for k in data if k not in allowed]
    if unknown:
        raise StoreError(
            f"{what} has unknown field(s) {', '.join(map(repr, sorted(unknown)))}: not in RunResult",
            fix="add the field to wattlab/sessions/result.py and a schema migration, or drop the key",
            title="Unknown run field",
        )


def _parse_json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value
