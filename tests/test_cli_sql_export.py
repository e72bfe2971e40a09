"""`wattlab sql` refuses anything but one read (exit 2, one message, no file touched) and `wattlab
export` prints the absolute path it wrote, takes --out, and never writes over a database."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from wattlab.sessions import commit
from wattlab.sessions.store import Store


def wattlab(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wattlab.cli", *args], capture_output=True, text=True, timeout=120, cwd=cwd
    )


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlexp") / "lab.duckdb"
    with Store(path).writer() as con:
        commit.write_session(
            con, {"session_id": "s1", "name": "t", "kind": "sweep", "status": "finished", "runs_planned": 2}
        )
        for seq, engine in ((1, "llamacpp"), (2, "vllm")):
            commit.write_run(
                con,
                {
                    "run_id": f"s1-{seq:03d}",
                    "session_id": "s1",
                    "seq": seq,
                    "status": "finished",
                    "engine": engine,
                },
            )
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_sql_refuses_copy_over_another_database(db: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.duckdb"
    with Store(other).writer():
        pass
    before = _digest(other)
    target = tmp_path / "x.csv"
    for query in (
        f"COPY (SELECT 1 AS x) TO '{other}' (FORMAT csv)",
        f"COPY runs TO '{target}'",
        f"EXPORT DATABASE '{tmp_path / 'dump'}'",
        f"ATTACH '{other}' AS o",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SELECT * FROM read_csv('/etc/passwd')",
    ):
        done = wattlab("sql", query, "--db", str(db))
        assert done.returncode == 2, (query, done.stdout, done.stderr)
        assert done.stderr.startswith("error: ") and "fix:" in done.stderr, query
        assert "Traceback" not in done.stderr and done.stdout == "", query
    assert _digest(other) == before
    assert not target.exists() and not (tmp_path / "dump").exists()


def test_sql_reads_still_work(db: Path) -> None:
    query = "WITH r AS (SELECT engine FROM runs) SELECT * FROM r ORDER BY 1"
    done = wattlab("sql", query, "--json", "--db", str(db))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [{"engine": "llamacpp"}, {"engine": "vllm"}]


def test_export_prints_the_absolute_path_of_the_default_file(db: Path, tmp_path: Path) -> None:
    done = wattlab("export", "--db", str(db), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    printed = Path(done.stdout.strip())
    assert printed.is_absolute() and printed == (tmp_path / "wattlab-runs.csv").resolve()
    assert printed.read_text().splitlines()[0].startswith("run_id")


def test_export_out_path_and_format_from_its_extension(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "sub" / "runs.json"
    out.parent.mkdir()
    done = wattlab("export", "--out", str(out), "--db", str(db))
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()) == out.resolve()
    assert [r["engine"] for r in json.loads(out.read_text())] == ["llamacpp", "vllm"]


def test_export_refuses_bad_out_paths_before_writing(db: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.duckdb"
    with Store(other).writer():
        pass
    before = _digest(other)
    disguised = tmp_path / "renamed.csv"  # a database under an innocent name
    disguised.write_bytes(other.read_bytes())
    cases = {
        str(tmp_path / "missing" / "runs.csv"): "does not exist",
        str(other): "DuckDB database",
        str(disguised): "DuckDB database",
        str(tmp_path): "is a folder",
        str(db): "DuckDB database",
    }
    for out, says in cases.items():
        done = wattlab("export", "--out", out, "--db", str(db))
        assert done.returncode == 2, (out, done.stderr)
        assert says in done.stderr and "fix:" in done.stderr and "Traceback" not in done.stderr, out
    assert _digest(other) == before
    assert not (tmp_path / "missing").exists()
    assert disguised.read_bytes()[8:12] == b"DUCK"


def test_export_refuses_an_unknown_session(db: Path, tmp_path: Path) -> None:
    done = wattlab("export", "--session", "nope", "--out", str(tmp_path / "r.csv"), "--db", str(db))
    assert done.returncode == 2 and "nope" in done.stderr and "wattlab ls" in done.stderr
    assert not (tmp_path / "r.csv").exists()
