"""The one way a user's own SQL reaches the database: `wattlab sql` and the console's SQL screen.

A lab's query box must never write, read or delete files: `COPY (SELECT 1) TO 'other.duckdb'` on a
plain read-only connection overwrites another database, and `read_csv('/etc/passwd')` reads any file.
Two guards, both DuckDB's own:

1. The text is split and typed by DuckDB's parser; exactly one statement, of type SELECT (which
   covers SELECT, WITH, FROM-first, VALUES, TABLE, SHOW, DESCRIBE, SUMMARIZE), is accepted.
2. It runs on a private in-memory DuckDB that attaches the database read-only, then turns
   `enable_external_access` off and locks the configuration. A file name reached any other way
   (a table function, a replacement scan) is refused by DuckDB itself.

Guard 2 cannot be a `config=` of `duckdb.connect(path)`: DuckDB shares one instance per file in a
process and refuses a second with another configuration (the console's screens hold readers too).
Writing files is `wattlab export`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wattlab.errors import StoreError

if TYPE_CHECKING:
    from wattlab.sessions.store import Store

TABLES = "sessions, runs, run_energy, requests, quality, samples, marks, domains"
_FIX = f"check the SQL; tables: {TABLES}"
_READS = "SELECT, WITH, FROM, VALUES, TABLE, SHOW, DESCRIBE or SUMMARIZE"
_EXPORT = "to write a file use `wattlab export --format csv|parquet|json --out PATH`"
ALIAS = "wattlab"  # the attached database's catalog name (SHOW ALL TABLES shows it)


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool  # more than max_rows rows existed; only the first max_rows are in rows


def _refused(message: str, fix: str) -> StoreError:
    return StoreError(message, fix=fix, title="Query refused")


def _sql_error(exc: Exception) -> StoreError:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if "disabled by configuration" in text or "configuration has been locked" in text:
        return _refused(f"the query box cannot touch files or settings ({text})", _EXPORT)
    return StoreError(text, fix=_FIX, title="SQL error")


def _open(store: Store, timeout_s: float = 10.0) -> Any:
    """A private in-memory DuckDB with the database attached read-only and no file system access."""
    import duckdb

    from wattlab.sessions.store import retry_while_locked

    if not store.path.exists():
        with store.reader(timeout_s=timeout_s):  # creates the empty database, schema included
            pass

    def attach() -> Any:
        con = duckdb.connect(":memory:")
        try:
            con.execute(f"ATTACH ? AS {ALIAS} (READ_ONLY)", [str(store.path)])
        except duckdb.Error:
            con.close()
            raise
        return con

    con = retry_while_locked(
        attach, store.path, timeout_s, fix="wait for it to finish, close it, or use --db to read another file"
    )
    try:
        con.execute(f"USE {ALIAS}")
        # One-way switches: external access cannot be turned back on, and locking the configuration
        # stops any SET even if one slipped past the statement check.
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except duckdb.Error:
        con.close()
        raise
    return con


def read_statement(con: Any, text: str) -> str:
    """The one read statement in `text`, as DuckDB parsed it; StoreError naming anything else."""
    import duckdb

    try:
        statements = con.extract_statements(text)
    except duckdb.Error as exc:
        raise _sql_error(exc) from exc
    if not statements:
        raise StoreError(
            "the query is empty", fix="type a query, e.g. SELECT * FROM runs LIMIT 10", title="SQL error"
        )
    if len(statements) > 1:
        raise _refused(
            f"the text holds {len(statements)} statements; one query runs at a time",
            "remove the extra statements (and their semicolons)",
        )
    statement = statements[0]
    if statement.type != duckdb.StatementType.SELECT:
        kind = statement.type.name.replace("_", " ")
        first = statement.query.strip().split(None, 1)[0].upper() if statement.query.strip() else kind
        what = f"{kind} statements" if first == kind else f"{kind} statements ({first} ...)"
        raise _refused(
            f"only queries that read the database run here; {what} are refused",
            f"use {_READS}; {_EXPORT}",
        )
    return str(statement.query).strip().rstrip(";").strip()


def run_read_query(store: Store, text: str, max_rows: int | None = None) -> QueryResult:
    """Run a user's query, read-only and without file access; at most `max_rows` rows fetched.

    With max_rows the query runs as `SELECT * FROM (query) LIMIT max_rows + 1` (a SELECT over
    samples can be 10M rows). Errors are StoreError carrying DuckDB's first line and a fix.
    """
    import duckdb

    con = _open(store)
    try:
        query = read_statement(con, text)
        try:
            if max_rows is None:
                cur = con.execute(query)
            else:
                # The newline ends a trailing `-- comment` before the closing parenthesis.
                cur = con.execute(f"SELECT * FROM ({query}\n) LIMIT {int(max_rows) + 1}")
            columns = [d[0] for d in cur.description] if cur.description else []
            rows = cur.fetchall()
        except duckdb.Error as exc:
            raise _sql_error(exc) from exc
    finally:
        con.close()
    if max_rows is not None and len(rows) > max_rows:
        return QueryResult(columns, rows[:max_rows], True)
    return QueryResult(columns, rows, False)
