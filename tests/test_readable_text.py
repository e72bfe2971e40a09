"""Text a user can read and copy: fix text keeps its `[extra]` brackets in every table and message,
ids are never cut (the shortest unique end is shown and `show`/`compare` take it back), narrow
terminals drop whole columns with energy last, and compare headers tell runs apart."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from wattlab import cli, cli_views
from wattlab.analysis.queries import resolve_id, short_ids
from wattlab.columns import fit_columns
from wattlab.errors import ConfigError
from wattlab.sessions import commit
from wattlab.sessions.result import RunResult
from wattlab.sessions.store import Store

# Two sessions with ids as the runner makes them; both have a run 001, so `001` is ambiguous.
SESSIONS = ("261122-100000-a3f9", "261122-110000-b7c2")


def _run(session_id: str, seq: int, engine: str, bs: int, j_per_token: float) -> dict:
    return {
        "run_id": f"{session_id}-{seq:03d}",
        "session_id": session_id,
        "seq": seq,
        "status": "finished",
        "engine": engine,
        "model": "smollm2-135m-instruct",
        "quant": "Q4_1",
        "batch_size": bs,
        "mode": "offline",
        "input_tokens": 128,
        "output_tokens": 64,
        "requests": bs,
        "tokens_out": 64 * bs,
        "duration_s": 2.0,
        "throughput_tok_s": 32.0 * bs,
        "e2e_p50_s": 1.5,
        "j_per_token": j_per_token,
        "energy_j": j_per_token * 64 * bs,
        "energy_method": "counter",
        "started_at": "2026-11-22T10:00:00",
    }


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("readable") / "w.duckdb"
    with Store(path).writer() as con:
        for i, sid in enumerate(SESSIONS):
            commit.write_session(
                con,
                {
                    "session_id": sid,
                    "name": f"study {i}",
                    "kind": "sweep",
                    "status": "finished",
                    "created_at": f"2026-11-22T1{i}:00:00",
                    "runs_planned": 3,
                },
            )
            for seq, (engine, bs, jpt) in enumerate(
                [("llamacpp", 1, 0.5), ("llamacpp", 8, 0.1), ("transformers", 8, 0.2)], start=1
            ):
                commit.write_run(con, _run(sid, seq, engine, bs, jpt))
    return path


def wattlab(*args: str, columns: int = 80) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": str(columns)}
    return subprocess.run(
        [sys.executable, "-m", "wattlab.cli", *args], capture_output=True, text=True, timeout=120, env=env
    )


def _column(table_text: str, index: int) -> list[str]:
    """The cells of one column of a rich table's body (rows between │ borders)."""
    return [line.split("│")[index + 1].strip() for line in table_text.splitlines() if line.startswith("│")]


def _header(table_text: str) -> list[str]:
    """Each column's header, its lines joined (rows between ┃ borders, above the ┡ rule)."""
    lines = [line for line in table_text.split("┡")[0].splitlines() if line.startswith("┃")]
    cells = [[c.strip() for c in line.split("┃")[1:-1]] for line in lines]
    return [" ".join(filter(None, col)) for col in zip(*cells, strict=True)]


# --- ids -----------------------------------------------------------------------------------------
def test_short_ids_are_the_shortest_unique_end_and_keep_the_random_part() -> None:
    runs = [f"{s}-{n:03d}" for s in SESSIONS for n in (1, 2)]
    assert short_ids(runs) == {r: r[14:] for r in runs}  # `a3f9-001`: never the bare `001`
    assert short_ids(SESSIONS) == {s: s[-4:] for s in SESSIONS}
    # Two sessions whose random parts collide: their runs need the time too.
    twin = "261122-120000-a3f9-001"
    assert short_ids([runs[0]], [twin])[runs[0]] == "100000-a3f9-001"
    # Ids of any other shape: whole segments from the end, and never the end of another id.
    assert short_ids(["s1-001", "s2-001", "s11-002"]) == {
        "s1-001": "s1-001",
        "s2-001": "s2-001",
        "s11-002": "002",
    }
    assert short_ids(["x-001", "ax-001"])["x-001"] == "x-001"


def test_show_takes_an_abbreviation_and_refuses_an_ambiguous_one(db: Path) -> None:
    store = Store(db)
    full = f"{SESSIONS[1]}-002"
    assert resolve_id(store, "runs", "run_id", "b7c2-002") == full  # the end `ls` shows
    assert resolve_id(store, "sessions", "session_id", "261122-11") == SESSIONS[1]  # a start works too
    assert resolve_id(store, "sessions", "session_id", "a3f9") == SESSIONS[0]
    with pytest.raises(ConfigError) as err:
        resolve_id(store, "runs", "run_id", "001")
    assert f"{SESSIONS[0]}-001" in err.value.message and f"{SESSIONS[1]}-001" in err.value.message
    assert "type more" in (err.value.fix or "")
    out = wattlab("show", "001", "--db", str(db))
    assert out.returncode == 2 and "matches several runs" in out.stderr and "Traceback" not in out.stderr


def test_ls_at_80_columns_shows_ids_show_takes_back_and_keeps_energy(db: Path) -> None:
    out = wattlab("ls", SESSIONS[1], "--db", str(db), columns=80)
    assert out.returncode == 0, out.stderr
    assert all(len(line) <= 80 for line in out.stdout.splitlines())
    assert "…" not in out.stdout  # nothing cut
    header = " ".join(_header(out.stdout))
    assert "J/token" in header and "energy J" in header and "method" in header
    ids = _column(out.stdout, 0)
    assert len(ids) == 3
    for shown, seq in zip(ids, (1, 2, 3), strict=True):
        run = json.loads(wattlab("show", shown, "--json", "--db", str(db)).stdout)
        assert run["run_id"] == f"{SESSIONS[1]}-{seq:03d}"
    sessions = wattlab("ls", "--db", str(db), columns=80).stdout
    assert set(_column(sessions, 0)) == set(SESSIONS)  # session ids whole
    assert "energy J" in " ".join(_header(sessions))


def test_compare_headers_tell_three_runs_apart(db: Path) -> None:
    runs = [f"{SESSIONS[0]}-001", f"{SESSIONS[0]}-002", f"{SESSIONS[1]}-002"]
    out = wattlab("compare", *runs, "--db", str(db), columns=80)
    assert out.returncode == 0, out.stderr
    headers = _header(out.stdout)[1:]
    assert len(set(headers)) == 3, headers
    assert headers[0].startswith("a3f9-001") and "bs1" in headers[0] and "bs8" in headers[1]
    assert headers[2].startswith("b7c2-002")
    for h in headers:  # what a header shows is an id `show` takes
        assert json.loads(wattlab("show", h.split()[0], "--json", "--db", str(db)).stdout)["run_id"] in runs


def test_fit_columns_drops_by_priority_and_keeps_the_rest() -> None:
    widths = {"id": 20, "engine": 12, "model": 21, "energy": 8}
    assert fit_columns(widths, ("model", "engine", "energy"), 200) == ["id", "engine", "model", "energy"]
    assert fit_columns(widths, ("model", "engine", "energy"), 60) == ["id", "engine", "energy"]
    assert fit_columns(widths, ("model", "engine", "energy"), 10) == ["id"]  # ids are never dropped


# --- brackets in fix text --------------------------------------------------------------------------
@pytest.fixture
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Output wide enough that a fix is never wrapped across lines."""
    monkeypatch.setattr(cli_views, "console", Console(width=250, highlight=False))


@pytest.fixture
def transformers_missing(monkeypatch: pytest.MonkeyPatch) -> str:
    """The transformers engine reported as not installed, through the real status code."""
    import wattlab.engines as engines

    real = engines._installed_version
    monkeypatch.setattr(
        engines, "_installed_version", lambda group: None if "transformers" in group else real(group)
    )
    fix = engines.status_of("transformers").fix
    assert fix and "[" in fix
    return fix


def test_doctor_table_keeps_the_brackets_of_a_fix(
    wide_console: None, transformers_missing: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert transformers_missing in out
    assert re.search(r"wattlab\[transformers\]", out)


def test_run_summary_keeps_the_brackets_of_a_fix(
    wide_console: None, transformers_missing: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from wattlab.engines import get_engine_class
    from wattlab.errors import WattlabError

    with pytest.raises(WattlabError) as err:
        get_engine_class("transformers")
    cli_views.print_run(
        RunResult(
            run_id="r1",
            session_id="s1",
            status="failed",
            engine="transformers",
            model="m[1]",
            error=err.value.message,
            error_fix=err.value.fix,
        )
    )
    out = capsys.readouterr().out
    assert f"fix: {transformers_missing}" in out and "m[1]" in out
