"""The load log: one row in the warehouse per load of the raw tables.

Every load (`greenery load-csv`, `greenery sample`, `greenery sample --append`) records what it
wrote in the transaction that changes the raw tables, so the log and the raw data never
disagree: a load that fails leaves no row. Readers use it to tell that raw data was replaced or
added to since they last looked, and by what.
"""

import json
import uuid
from datetime import UTC, datetime

import duckdb

LOAD_LOG = "ops.load_log"
MODES = ("replace", "append")

_COLUMNS = {
    "load_id": "varchar not null",  # a UUID
    "loaded_at": "timestamp not null",  # naive UTC, like every timestamp in the warehouse
    "mode": "varchar not null",  # 'replace' (every raw table rewritten) or 'append'
    "source": "varchar not null",  # what loaded, e.g. 'load-csv greenery' or 'sample seed=42 ...'
    "row_counts": "varchar not null",  # JSON: {table: rows written by this load}
}


def record_load(
    connection: duckdb.DuckDBPyConnection, mode: str, source: str, row_counts: dict[str, int]
) -> str:
    """Add this load's row to the log and return its load_id.

    Call it inside the transaction that writes the raw tables: the row then commits, or rolls
    back, with them.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    schema = LOAD_LOG.split(".")[0]
    connection.execute(f"create schema if not exists {schema}")
    columns = ", ".join(f"{name} {definition}" for name, definition in _COLUMNS.items())
    connection.execute(f"create table if not exists {LOAD_LOG} ({columns})")
    load_id = str(uuid.uuid4())
    connection.execute(
        f"insert into {LOAD_LOG} ({', '.join(_COLUMNS)}) values (?, ?, ?, ?, ?)",
        [load_id, datetime.now(UTC).replace(tzinfo=None), mode, source, json.dumps(row_counts)],
    )
    return load_id


def newest_load(connection: duckdb.DuckDBPyConnection) -> dict | None:
    """The newest load as {load_id, loaded_at (naive UTC datetime), mode, source, row_counts
    (dict)}, or None when nothing was ever logged (no log table: data older than the log)."""
    try:
        rows = connection.execute(
            f"select {', '.join(_COLUMNS)} from {LOAD_LOG} order by loaded_at desc limit 1"
        ).fetchall()
    except duckdb.CatalogException:
        return None
    if not rows:
        return None
    load = dict(zip(_COLUMNS, rows[0], strict=True))
    load["row_counts"] = json.loads(load["row_counts"])
    return load
