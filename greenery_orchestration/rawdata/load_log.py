"""The load log: one row in the warehouse per load of the raw tables.

Every load (`greenery load-csv`, `greenery sample`, `greenery sample --append`) records what it
wrote in the transaction that changes the raw tables, so the log and the raw data never
disagree: a load that fails leaves no row. Readers use it to tell that raw data was replaced or
added to since they last looked, and by what. The rows a load writes carry its `loaded_at` in
their load marker column (schema.load_marker): one `load_time()` is both.
"""

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import duckdb

if TYPE_CHECKING:
    import pandas as pd

LOAD_LOG = "ops.load_log"
_SCHEMA, _TABLE = LOAD_LOG.split(".")
MODES = ("replace", "append")

COLUMNS = {
    "load_id": "varchar not null",  # a UUID
    "loaded_at": "timestamp not null",  # naive UTC, like every timestamp in the warehouse
    "mode": "varchar not null",  # 'replace' (every raw table rewritten) or 'append'
    "source": "varchar not null",  # what loaded, e.g. 'load-csv greenery' or 'sample seed=42 ...'
    "row_counts": "varchar not null",  # JSON: {table: rows written by this load}
}


def load_time() -> datetime:
    """A load's time (naive UTC): its log row's `loaded_at` and the load marker of the rows it writes."""
    return datetime.now(UTC).replace(tzinfo=None)


def marker_value(loaded_at: datetime, data_type: str = "timestamp") -> str:
    """The load marker of the rows of the load at `loaded_at`, as a SQL expression of `data_type`."""
    return f"cast('{loaded_at:%Y-%m-%d %H:%M:%S.%f}' as {data_type})"


def record_load(
    connection: duckdb.DuckDBPyConnection, mode: str, source: str, row_counts: dict[str, int], *, loaded_at: datetime
) -> str:
    """Add this load's row to the log and return its load_id.

    Call it inside the transaction that writes the raw tables: the row then commits, or rolls
    back, with them. `loaded_at` is the load_time() the rows were stamped with.
    """
    row = load_row(mode, source, row_counts, loaded_at=loaded_at)
    connection.execute(f"create schema if not exists {_SCHEMA}")
    columns = ", ".join(f"{name} {definition}" for name, definition in COLUMNS.items())
    connection.execute(f"create table if not exists {LOAD_LOG} ({columns})")
    connection.execute(f"insert into {LOAD_LOG} ({', '.join(COLUMNS)}) values (?, ?, ?, ?, ?)", list(row.values()))
    return row["load_id"]


def load_row(mode: str, source: str, row_counts: dict[str, int], *, loaded_at: datetime) -> dict:
    """The log's row for a load at `loaded_at` (see load_time), {column: value} in COLUMNS' order,
    on either warehouse."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    return {
        "load_id": str(uuid.uuid4()),
        "loaded_at": loaded_at,
        "mode": mode,
        "source": source,
        "row_counts": json.dumps(row_counts),
    }


def newest_replacement_since(query: Callable[[str], "pd.DataFrame"], since: datetime) -> datetime | None:
    """When the raw tables were last replaced after `since` (naive UTC), or None: read with
    `query` (SQL to a frame, on whichever warehouse), so the run's own connection is used."""
    present = query(
        "select count(*) as n from information_schema.tables "
        f"where lower(table_schema) = '{_SCHEMA}' and lower(table_name) = '{_TABLE}'"
    )
    if int(present["n"].iloc[0]) == 0:
        return None  # raw data older than the log
    newest = query(
        f"select max(loaded_at) as loaded_at from {LOAD_LOG} "
        f"where mode = 'replace' and loaded_at > cast('{since:%Y-%m-%d %H:%M:%S.%f}' as timestamp)"
    )["loaded_at"].iloc[0]
    return None if newest is None or newest != newest else newest.to_pydatetime()
