"""Load the seven Greenery CSVs into the warehouse's `raw` schema, all or nothing."""

import csv
from collections.abc import Mapping
from pathlib import Path

import duckdb

from greenery_orchestration.rawdata.schema import RAW_SCHEMA, raw_columns


class RawDataError(ValueError):
    """Input that cannot become a raw table; the message names file, column, line and value."""


def load_csv_dir(con: duckdb.DuckDBPyConnection, folder: Path) -> dict[str, int]:
    """Validate every CSV in `folder`, then replace all raw tables in one transaction.

    Returns the row count per table. Nothing is written unless every file is valid.
    """
    con.execute("set TimeZone = 'UTC'")
    for table, columns in raw_columns().items():
        _stage_csv(con, folder / f"{table}.csv", table, columns)
    replace_raw_tables(con, {table: f"_staged_{table}" for table in raw_columns()})
    return _row_counts(con)


def replace_raw_tables(con: duckdb.DuckDBPyConnection, tables: Mapping[str, str]) -> None:
    """Replace the raw tables in one transaction from relations named in `tables`.

    Each name is anything DuckDB can select from in `con` (a table, a view, a registered
    DataFrame or Arrow table) whose columns cast to the declared types.
    """
    con.execute("begin transaction")
    try:
        con.execute(f"create schema if not exists {RAW_SCHEMA}")
        for table, relation in tables.items():
            columns = ", ".join(
                f"cast({name} as {data_type}) as {name}"
                for name, data_type in raw_columns()[table].items()
            )
            con.execute(
                f"create or replace table {RAW_SCHEMA}.{table} as select {columns} from {relation}"
            )
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise


def _stage_csv(con: duckdb.DuckDBPyConnection, path: Path, table: str, columns: dict) -> None:
    """Read one CSV as text into a temp table (rowid = data line - 2) and check every value."""
    if not path.is_file():
        raise RawDataError(f"{path.name}: file missing from {path.parent} (expected {table}.csv)")
    _check_header(path, list(columns))
    try:
        con.execute(
            f"create or replace temp table _text_{table} as "
            "select * from read_csv(?, header = true, all_varchar = true)",
            [str(path)],
        )
    except duckdb.Error as error:
        raise RawDataError(f"{path.name}: not a readable CSV: {error}") from None
    for name, data_type in columns.items():
        _check_values(con, path.name, table, name, data_type)
    casts = ", ".join(f"{_cast(name, data_type)} as {name}" for name, data_type in columns.items())
    con.execute(f"create or replace temp table _staged_{table} as select {casts} from _text_{table}")


def _check_header(path: Path, expected: list[str]) -> None:
    with path.open(newline="") as handle:
        header = next(csv.reader(handle), [])
    missing = [name for name in expected if name not in header]
    unexpected = [name for name in header if name not in expected]
    if missing:
        raise RawDataError(f"{path.name}, line 1: missing column(s) {', '.join(missing)}")
    if unexpected:
        raise RawDataError(f"{path.name}, line 1: unexpected column(s) {', '.join(unexpected)}")


def _check_values(con, file_name: str, table: str, column: str, data_type: str) -> None:
    if data_type == "varchar":
        return
    bad_rows = f"from _text_{table} where {column} is not null and {_try_cast(column, data_type)} is null"
    count, first_rowid = con.execute(f"select count(*), min(rowid) {bad_rows}").fetchall()[0]
    if count:
        (value,) = con.execute(
            f"select {column} from _text_{table} where rowid = ?", [first_rowid]
        ).fetchall()[0]
        raise RawDataError(
            f"{file_name}, column {column}: {count} value(s) do not parse as {data_type}; "
            f"first at line {first_rowid + 2}: {value!r}"
        )


def _cast(column: str, data_type: str) -> str:
    # An offset in a timestamp is honoured, then dropped: raw timestamps are naive UTC.
    if data_type == "timestamp":
        return f"timezone('UTC', cast({column} as timestamptz))"
    return f"cast({column} as {data_type})"


def _try_cast(column: str, data_type: str) -> str:
    return _cast(column, data_type).replace("cast(", "try_cast(", 1)


def _row_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    return {
        table: con.execute(f"select count(*) from {RAW_SCHEMA}.{table}").fetchall()[0][0]
        for table in raw_columns()
    }
