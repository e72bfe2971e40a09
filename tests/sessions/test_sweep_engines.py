"""A sweep across every installed engine lands complete in DuckDB (issue: 3 engines, 2 batch sizes,
offline + online), with every run's figures, energy rows, request rows and samples."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from wattlab.engines import installed_engines
from wattlab.sessions.store import Store

pytestmark = pytest.mark.slow

LOCAL_ENGINES = [e for e in ("llamacpp", "transformers", "vllm") if e in installed_engines()]


@pytest.mark.skipif(
    len(LOCAL_ENGINES) < 2, reason=f"needs at least two engines installed, have {LOCAL_ENGINES}"
)
def test_a_sweep_over_every_engine_lands_complete(tmp_path: Path) -> None:
    online = [e for e in LOCAL_ENGINES if e in ("llamacpp", "vllm")]
    runs = "".join(
        f'\n[[runs]]\nengine = "{e}"\nmode = "online"\nrate = 4.0\nrequests = 3\nbatch_size = 2\n'
        for e in online
    )
    sweep = tmp_path / "engines.toml"
    sweep.write_text(
        f"""
[session]
name = "every engine"
idle_s = 0.3

[defaults]
input_tokens = 32
output_tokens = 8
requests = 2

[grid]
engine = {LOCAL_ENGINES!r}
batch_size = [1, 2]
{runs}""".replace("'", '"')
    )
    db = tmp_path / "w.duckdb"
    out = subprocess.run(
        [sys.executable, "-m", "wattlab.cli", "sweep", str(sweep), "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    store = Store(db)
    rows = store.query_dicts("SELECT * FROM runs ORDER BY seq")
    assert len(rows) == 2 * len(LOCAL_ENGINES) + len(online)
    if len(LOCAL_ENGINES) == 3:
        assert len(rows) >= 8
    assert {r["engine"] for r in rows} == set(LOCAL_ENGINES)
    assert {r["mode"] for r in rows} == {"offline", "online"} if online else {"offline"}
    for r in rows:
        assert r["status"] == "finished", (r["engine"], r["error"])
        for col in (
            "duration_s",
            "throughput_tok_s",
            "ttft_p50_s",
            "e2e_p50_s",
            "energy_j",
            "j_per_token",
            "gco2e",
        ):
            assert r[col] is not None and r[col] > 0, (r["run_id"], col)
        assert r["energy_method"] in ("counter", "integrated", "estimated")
        n_req = store.query(
            "SELECT count(*), sum(output_tokens) FROM requests WHERE run_id = ?", [r["run_id"]]
        )[1][0]
        assert n_req[0] == r["requests"] and n_req[1] == r["tokens_out"] == r["requests"] * 8
        windows = {
            w for (w,) in store.query("SELECT window_name FROM run_energy WHERE run_id = ?", [r["run_id"]])[1]
        }
        assert "measured" in windows and "warmup" in windows
    # One engine load per engine and quantization: runs after the first reuse the worker.
    loads = store.query("SELECT engine, count(*) FROM runs WHERE worker_reused = false GROUP BY engine")[1]
    assert all(n == 1 for _, n in loads), loads
    assert store.query("SELECT status FROM sessions")[1] == [("finished",)]
    assert store.query("SELECT count(*) FROM samples")[1][0][0] > 0
