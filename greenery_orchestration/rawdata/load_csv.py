"""Load the seven Greenery CSVs into the warehouse's `raw` schema, all or nothing."""

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import duckdb

from greenery_orchestration.rawdata.csv_file import RawDataError, read_header, stage_text
from greenery_orchestration.rawdata.load_log import load_time, marker_value, record_load
from greenery_orchestration.rawdata.schema import RAW_SCHEMA, load_marker, pii_columns, raw_columns

__all__ = [
    "RawDataError", "is_write_failure", "load_csv_dir", "load_csv_source", "replace_raw_tables", "rollback",
    "stage_csv_dir", "typed_select", "write_failure",
]

_SHOWN_VALUE_CHARS = 40
# What the operating system said (in DuckDB's or Python's message), and what it means here.
_WRITE_FAILURES = {
    "no space left": "the disk is full",
    "disk quota": "the disk quota is used up",
    "file too large": "the file has reached the largest size this process may write",
    "read-only file system": "the file system is read-only",
    "permission denied": "it is not writable (permission denied)",
}


def check_folder(folder: Path) -> None:
    """Raise RawDataError unless `folder` is a folder (before the warehouse is even opened)."""
    if not folder.is_dir():
        problem = "is not a folder" if folder.exists() else "does not exist"
        raise RawDataError(f"{folder}: the folder {problem}")


def load_csv_dir(con: duckdb.DuckDBPyConnection, folder: Path, source: str | None = None) -> dict[str, int]:
    """Validate every CSV in `folder`, then replace all raw tables in one transaction.

    Returns the row count per table. Nothing is written unless every file is valid. The load is
    logged (see load_log) as `source`, by default 'load-csv <folder name>'.
    """
    staged = stage_csv_dir(con, folder)
    return replace_raw_tables(con, staged, source=source or load_csv_source(folder))


def load_csv_source(folder: Path) -> str:
    """The load log's `source` of `greenery load-csv`, on either warehouse."""
    return f"load-csv {folder.resolve().name}"


def stage_csv_dir(con: duckdb.DuckDBPyConnection, folder: Path) -> dict[str, str]:
    """Validate every CSV in `folder` and cast it into a temp table of `con`; returns {table:
    temp table}. Raises RawDataError, in one line, at the first problem; writes nothing else."""
    check_folder(folder)
    con.execute("set TimeZone = 'UTC'")
    for table, columns in raw_columns().items():
        _stage_csv(con, folder / f"{table}.csv", table, columns)
    return {table: f"_staged_{table}" for table in raw_columns()}


def replace_raw_tables(
    con: duckdb.DuckDBPyConnection, tables: Mapping[str, str], source: str = "replace_raw_tables"
) -> dict[str, int]:
    """Replace the raw tables in one transaction from relations named in `tables`, and log the
    load (mode 'replace', `source`) in that transaction; every row is stamped with the load's
    time. Returns the row count per table.

    Each name is anything DuckDB can select from in `con` (a table, a view, a registered
    DataFrame or Arrow table) whose columns cast to the declared types.
    """
    loaded_at = load_time()
    con.execute("begin transaction")
    try:
        con.execute(f"create schema if not exists {RAW_SCHEMA}")
        for table, relation in tables.items():
            con.execute(f"create or replace table {RAW_SCHEMA}.{table} as {typed_select(table, relation, loaded_at)}")
        counts = {
            table: con.execute(f"select count(*) from {RAW_SCHEMA}.{table}").fetchall()[0][0]
            for table in tables
        }
        record_load(con, "replace", source, counts, loaded_at=loaded_at)
        con.execute("commit")
    except BaseException:
        rollback(con)
        raise
    return counts


def typed_select(table: str, relation: str, loaded_at: datetime | None = None) -> str:
    """DuckDB SQL selecting the raw `table`'s columns, in order and cast to their declared types,
    from `relation`; with `loaded_at` (a load's time), the load marker too, stamped with it."""
    columns = [f"cast({name} as {data_type}) as {name}" for name, data_type in raw_columns()[table].items()]
    if loaded_at is not None:
        columns.append(f"{marker_value(loaded_at)} as {load_marker()}")
    return f"select {', '.join(columns)} from {relation}"


def rollback(con: duckdb.DuckDBPyConnection) -> None:
    """Roll back the open transaction. After a fatal error (a full disk) DuckDB may refuse even
    that, having dropped the transaction itself; the error to report is the first one."""
    try:
        con.execute("rollback")
    except duckdb.Error:
        pass


def write_failure(path: Path, error: Exception) -> str:
    """Why writing `path` failed, in one line of our own: DuckDB's message may carry more than
    the cause, and the cause is all a user can act on."""
    text = str(error).lower()
    reason = next(
        (meaning for said, meaning in _WRITE_FAILURES.items() if said in text),
        "the disk is full or the file is not writable",
    )
    return f"could not write {path}: {reason}"


def is_write_failure(error: Exception) -> bool:
    """Whether `error` is the warehouse's disk refusing a write (full, read-only, over a size
    limit), rather than another process holding the file or a bug.

    A full disk can surface as DuckDB's FatalException too: when a commit writes a checkpoint
    straight into the file and that fails. The commit then does not happen (the file's header,
    written last, still points at the old tables) and the tables stay as they were.
    """
    from greenery_orchestration.warehouse import is_lock_conflict  # noqa: PLC0415 - loads Dagster

    text = str(error).lower()
    if is_lock_conflict(error):
        return False  # another process holds the file: main() says so
    if isinstance(error, duckdb.FatalException):
        return "could not write" in text or any(said in text for said in _WRITE_FAILURES)
    return isinstance(error, duckdb.IOException | OSError)


def _stage_csv(con: duckdb.DuckDBPyConnection, path: Path, table: str, columns: dict) -> None:
    """Read one CSV as text (rowid = data row - 1), check every value, and cast it into the
    temp table _staged_<table>."""
    if not path.is_file():
        raise RawDataError(f"{path.name}: file missing from {path.parent} (expected {table}.csv)")
    header = read_header(path)
    _check_header(path.name, header, list(columns))
    stage_text(con, path, f"_text_{table}", header)
    for name, data_type in columns.items():
        _check_values(con, path.name, table, name, data_type)
    casts = ", ".join(f"{_cast(name, data_type)} as {name}" for name, data_type in columns.items())
    con.execute(f"create or replace temp table _staged_{table} as select {casts} from _text_{table}")
    con.execute(f"drop table _text_{table}")  # the text copy would double the memory held


def _check_header(file_name: str, header: list[str], expected: list[str]) -> None:
    missing = [name for name in expected if name not in header]
    unexpected = [name or "(no name)" for name in header if name not in expected]
    repeated = sorted({name for name in header if header.count(name) > 1})
    for problem, names in [("missing", missing), ("unexpected", unexpected), ("repeated", repeated)]:
        if names:
            raise RawDataError(f"{file_name}, line 1: {problem} column(s) {', '.join(names)}")


def _check_values(con, file_name: str, table: str, column: str, data_type: str) -> None:
    if data_type == "varchar":
        return
    bad_rows = f"from _text_{table} where {column} is not null and {_try_cast(column, data_type)} is null"
    count, first_rowid = con.execute(f"select count(*), min(rowid) {bad_rows}").fetchall()[0]
    if not count:
        return
    where = f"first at line {_line_of(con, table, first_rowid)}"
    if column in pii_columns()[table]:
        # Personal data stays out of terminals and logs, even when it is malformed.
        shown = f"{where} (not shown: {column} is personal data)"
    else:
        value = con.execute(f"select {column} from _text_{table} where rowid = ?", [first_rowid]).fetchall()[0][0]
        shown = f"{where}: {_shown(value)}"
    raise RawDataError(f"{file_name}, column {column}: {count} value(s) do not parse as {data_type}; {shown}")


def _line_of(con, table: str, rowid: int) -> int:
    """The file line a row starts on: below the header, after the rows before it, counting the
    line breaks inside their quoted values."""
    newlines = " + ".join(f"coalesce(length({name}) - length(replace({name}, chr(10), '')), 0)"
                          for name in raw_columns()[table])
    ((inside,),) = con.execute(
        f"select coalesce(sum({newlines}), 0) from _text_{table} where rowid < ?", [rowid]
    ).fetchall()
    return rowid + 2 + int(inside)


def _shown(value: str) -> str:
    if len(value) <= _SHOWN_VALUE_CHARS:
        return repr(value)
    return f"{value[:_SHOWN_VALUE_CHARS]!r}... ({len(value)} characters)"


def _cast(column: str, data_type: str) -> str:
    # An offset in a timestamp is honoured, then dropped: raw timestamps are naive UTC.
    if data_type == "timestamp":
        return f"timezone('UTC', cast({column} as timestamptz))"
    return f"cast({column} as {data_type})"


def _try_cast(column: str, data_type: str) -> str:
    return _cast(column, data_type).replace("cast(", "try_cast(", 1)
