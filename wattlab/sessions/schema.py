"""The DuckDB schema of a wattlab database, with versioned migrations.

One file holds every session. Tables:

sessions     one row per session (a single run or a sweep): where, when, meters, carbon settings.
domains      the power domains a session's meters read (gpu0, cpu-package-0, soc-total, ...).
runs         one row per run: its settings, status and every headline figure with its method.
run_energy   energy per run, window (load, warmup, measured, prefill, decode, steady) and domain.
requests     one row per request: token counts, scheduled time, queue/TTFT/TPOT/E2E, token times,
             output text (audit).
quality      task metrics per run (metric -> value).
samples      the raw power/telemetry timeline of each session.
marks        the named instants of each session (load_start, run_start, ...).

Units are in column names (_s, _j, _w, _mib, _ns, g_per_kwh). Every energy figure has a sibling
`*_method` column ('counter' | 'integrated' | 'estimated') and a coverage (0..1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # duckdb is imported on first use, not at console start
    import duckdb

SCHEMA_VERSION = 5

_V1 = [
    """
    CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)
    """,
    """
    CREATE TABLE IF NOT EXISTS sessions (
        session_id      VARCHAR PRIMARY KEY,
        name            VARCHAR,
        kind            VARCHAR,            -- 'run' | 'sweep'
        status          VARCHAR,            -- 'running' | 'finished' | 'interrupted' | 'failed'
        created_at      TIMESTAMP,
        ended_at        TIMESTAMP,
        host            VARCHAR,
        platform        VARCHAR,
        wattlab_version VARCHAR,
        runs_planned    INTEGER,
        sweep_hash      VARCHAR,
        spec_json       JSON,
        meters_json     JSON,               -- meters used, and those missing with the reason
        carbon_json     JSON,               -- grid intensity, its source, PUE
        idle_json       JSON,               -- idle baseline power per domain (W) and how measured
        spool_dir       VARCHAR
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS domains (
        session_id       VARCHAR,
        domain_id        VARCHAR,
        kind             VARCHAR,
        meter            VARCHAR,
        label            VARCHAR,
        device           VARCHAR,
        has_counter      BOOLEAN,
        estimated        BOOLEAN,
        counter_period_s DOUBLE,
        parent           VARCHAR,
        idle_power_w     DOUBLE
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS runs (
        run_id              VARCHAR PRIMARY KEY,
        session_id          VARCHAR,
        seq                 INTEGER,
        run_key             VARCHAR,        -- identity of the settings, for resuming a sweep
        status              VARCHAR,        -- 'finished' | 'failed' | 'interrupted'
        error               VARCHAR,
        error_fix           VARCHAR,
        started_at          TIMESTAMP,
        ended_at            TIMESTAMP,
        engine              VARCHAR,
        engine_version      VARCHAR,
        model               VARCHAR,
        quant               VARCHAR,
        device              VARCHAR,
        devices             VARCHAR,        -- meter devices the run used: 'cpu,gpu:0'
        params              BIGINT,         -- model parameter count when known
        mode                VARCHAR,        -- 'offline' | 'online'
        workload            VARCHAR,        -- 'synthetic' | 'prompts:<file>' | 'task:<name>'
        task                VARCHAR,
        batch_size          INTEGER,
        input_tokens        INTEGER,        -- requested input length (synthetic) or mean
        output_tokens       INTEGER,        -- requested output length
        requests            INTEGER,
        rate                DOUBLE,
        burstiness          DOUBLE,
        max_concurrency     INTEGER,
        decoding            VARCHAR,
        temperature         DOUBLE,
        top_p               DOUBLE,
        top_k               INTEGER,
        num_beams           INTEGER,
        seed                INTEGER,
        repeat              INTEGER,
        worker_reused       BOOLEAN,
        load_s              DOUBLE,
        load_energy_j       DOUBLE,
        load_energy_method  VARCHAR,
        warmup_s            DOUBLE,
        duration_s          DOUBLE,
        tokens_in           BIGINT,
        tokens_out          BIGINT,
        requests_ok         INTEGER,
        throughput_tok_s    DOUBLE,
        total_tok_s         DOUBLE,
        requests_per_s      DOUBLE,
        ttft_p50_s DOUBLE, ttft_p90_s DOUBLE, ttft_p99_s DOUBLE, ttft_mean_s DOUBLE,
        tpot_p50_s DOUBLE, tpot_p90_s DOUBLE, tpot_p99_s DOUBLE, tpot_mean_s DOUBLE,
        itl_p50_s  DOUBLE, itl_p90_s  DOUBLE, itl_p99_s  DOUBLE,
        e2e_p50_s  DOUBLE, e2e_p90_s  DOUBLE, e2e_p99_s  DOUBLE, e2e_mean_s DOUBLE,
        energy_j            DOUBLE,         -- gross energy of the measured window, attributed domains
        energy_net_j        DOUBLE,         -- minus idle power x duration
        energy_method       VARCHAR,
        energy_coverage     DOUBLE,
        energy_domains      VARCHAR,        -- the domains summed (measured ones, when any)
        steady_energy_j     DOUBLE,
        steady_tokens       BIGINT,
        steady_j_per_token  DOUBLE,
        j_per_token         DOUBLE,         -- measured-window energy / output tokens
        j_per_token_net     DOUBLE,
        j_per_request       DOUBLE,
        tokens_per_j        DOUBLE,
        wh_per_1k_requests  DOUBLE,
        gco2e               DOUBLE,
        gco2e_per_request   DOUBLE,
        gco2e_per_1k_requests DOUBLE,
        carbon_g_per_kwh    DOUBLE,
        carbon_source       VARCHAR,
        pue                 DOUBLE,
        mean_power_w        DOUBLE,
        peak_power_w        DOUBLE,
        util_mean_pct       DOUBLE,
        peak_mem_mib        DOUBLE,
        quality             DOUBLE,         -- the task's headline metric, when a task ran
        quality_metric      VARCHAR,
        green_index         DOUBLE,
        t0_ns               BIGINT,         -- measured window on the session clock
        t1_ns               BIGINT,
        flags               VARCHAR,
        spec_json           JSON,
        result_json         JSON            -- everything above and more, as the CLI prints it
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS run_energy (
        run_id        VARCHAR,
        session_id    VARCHAR,
        window_name   VARCHAR,
        domain_id     VARCHAR,
        energy_j      DOUBLE,
        net_energy_j  DOUBLE,
        method        VARCHAR,
        coverage      DOUBLE,
        gaps          INTEGER,
        duration_s    DOUBLE,
        mean_power_w  DOUBLE,
        peak_power_w  DOUBLE,
        idle_power_w  DOUBLE,
        flags         VARCHAR
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS requests (
        run_id          VARCHAR,
        session_id      VARCHAR,
        request_id      INTEGER,
        input_tokens    INTEGER,
        output_tokens   INTEGER,
        arrival_ns      BIGINT,
        first_token_ns  BIGINT,
        end_ns          BIGINT,
        ttft_s          DOUBLE,
        tpot_s          DOUBLE,
        e2e_s           DOUBLE,
        token_ns        BIGINT[],
        finish_reason   VARCHAR,
        output_text     VARCHAR,
        error           VARCHAR
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS quality (
        run_id     VARCHAR,
        session_id VARCHAR,
        task       VARCHAR,
        metric     VARCHAR,
        value      DOUBLE,
        n          INTEGER
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS samples (
        session_id    VARCHAR,
        t_ns          BIGINT,
        domain_id     VARCHAR,
        power_w       DOUBLE,
        energy_j      DOUBLE,
        util_pct      DOUBLE,
        mem_util_pct  DOUBLE,
        mem_used_mib  DOUBLE,
        clock_mhz     DOUBLE,
        temp_c        DOUBLE,
        power_limit_w DOUBLE,
        error         VARCHAR
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS marks (
        session_id VARCHAR,
        run_id     VARCHAR,
        t_ns       BIGINT,
        name       VARCHAR,
        data       JSON
    )
    """,
    "CREATE INDEX IF NOT EXISTS runs_session ON runs(session_id)",
]

# Version 2: a run that shared its devices with other work (another wattlab session, a foreign GPU
# process) says so: NULL when it ran alone, else the reason ("session 261129-... ran on gpu0").
_V2 = ["ALTER TABLE runs ADD COLUMN IF NOT EXISTS overlap VARCHAR"]

# Version 3: what peak_mem_mib measured (sessions/peakmem.py KINDS): 'gpu' (NVML per process),
# 'gpu-device' (device memory above its pre-load level), 'host' (RSS of the engine's process
# tree) or 'engine' (the engine's own figure). NULL on older runs.
_V3 = ["ALTER TABLE runs ADD COLUMN IF NOT EXISTS peak_mem_kind VARCHAR"]

# Version 4: latency in its parts. queue = scheduled (the engine first works on a request) - arrival;
# TTFT from arrival (client, what a client sees) and from scheduling (service, the engine's speed).
# The headline ttft_* is the service TTFT offline, the client TTFT online; ttft_basis says which.
# Older runs measured TTFT from arrival only: they become basis 'client' with their client columns
# filled, and no service TTFT or queue time (their scheduled times were not recorded).
_V4 = [
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS ttft_basis VARCHAR",
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS ttft_client_p50_s DOUBLE",
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS ttft_client_p90_s DOUBLE",
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS ttft_client_p99_s DOUBLE",
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS ttft_client_mean_s DOUBLE",
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS ttft_service_p50_s DOUBLE",
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS ttft_service_p90_s DOUBLE",
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS ttft_service_p99_s DOUBLE",
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS ttft_service_mean_s DOUBLE",
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS queue_p50_s DOUBLE",
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS queue_p90_s DOUBLE",
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS queue_p99_s DOUBLE",
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS queue_mean_s DOUBLE",
    "ALTER TABLE requests ADD COLUMN IF NOT EXISTS scheduled_ns BIGINT",
    "ALTER TABLE requests ADD COLUMN IF NOT EXISTS queue_s DOUBLE",
    "ALTER TABLE requests ADD COLUMN IF NOT EXISTS ttft_service_s DOUBLE",
    "UPDATE runs SET ttft_basis = 'client', ttft_client_p50_s = ttft_p50_s, ttft_client_p90_s = ttft_p90_s, "
    "ttft_client_p99_s = ttft_p99_s, ttft_client_mean_s = ttft_mean_s "
    "WHERE ttft_p50_s IS NOT NULL AND ttft_basis IS NULL",
]

# Version 5: the levers of the optimization issues and where a run ran.
# transform: the model transformation applied before serving (prune:..., lora:...; NULL: none).
# speculative: the drafting method (ngram:K, draft:MODEL:K; NULL: none), with what the engine reported:
#   draft tokens proposed, accepted, acceptance rate, output tokens per target-model step.
# power_limit_w / sm_clock_mhz / mem_clock_mhz: the GPU caps the run asked for (NULL: left as found);
#   throttle_json: the GPU's clock-event (throttle) reasons seen during the run, per GPU;
#   power_violation_s / thermal_violation_s: time the GPU spent held back by its power / thermal limit
#   during the measured window (NVML violation counters), summed over the run's GPUs.
# node_id / hostname: the machine the run executed on (a Ray node on a cluster; this host otherwise).
_V5 = [
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS transform VARCHAR",
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS speculative VARCHAR",
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS spec_draft_tokens BIGINT",
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS spec_accepted_tokens BIGINT",
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS spec_acceptance_rate DOUBLE",
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS spec_tokens_per_step DOUBLE",
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS power_limit_w DOUBLE",
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS sm_clock_mhz INTEGER",
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS mem_clock_mhz INTEGER",
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS throttle_json JSON",
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS power_violation_s DOUBLE",
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS thermal_violation_s DOUBLE",
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS node_id VARCHAR",
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS hostname VARCHAR",
]

# Each migration takes the database from version i to i + 1. Append, never edit.
MIGRATIONS: list[list[str]] = [_V1, _V2, _V3, _V4, _V5]


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_version'"
    ).fetchone()
    if not exists or not exists[0]:
        return 0
    row = con.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def migrate(con: duckdb.DuckDBPyConnection) -> int:
    """Bring the database up to SCHEMA_VERSION. Returns the version it started from."""
    start = current_version(con)
    if start > SCHEMA_VERSION:
        from wattlab.errors import StoreError

        raise StoreError(
            f"this database has schema version {start}, newer than this wattlab ({SCHEMA_VERSION})",
            fix="upgrade wattlab (pip install -U wattlab), or use --db to open another file",
        )
    for version in range(start, SCHEMA_VERSION):
        con.execute("BEGIN TRANSACTION")
        try:
            for statement in MIGRATIONS[version]:
                con.execute(statement)
            con.execute("DELETE FROM schema_version")
            con.execute("INSERT INTO schema_version VALUES (?)", [version + 1])
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
    return start
