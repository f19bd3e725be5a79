"""Python's way into the warehouse, outside dbt: dagster-duckdb's resource on DuckDB,
dagster-snowflake's on Snowflake, chosen by GREENERY_TARGET like the dbt profile.
"""

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

if TYPE_CHECKING:  # pandas loads when a frame is read, not with the definitions
    import pandas as pd

from greenery_orchestration.settings import PROD, duckdb_path, future_tolerance, snowflake_endpoint, target

# The pool of every step that writes the warehouse: DuckDB allows one writer per file.
WAREHOUSE_POOL = "warehouse"
# Transient connection errors (a lock held for a moment, a dropped network) deserve a retry.
WAREHOUSE_RETRY = dg.RetryPolicy(max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL)


class WarehouseBusy(Exception):
    """A run holds the warehouse's only write lock; try again later."""


def warehouse_resource() -> dg.ConfigurableResource:
    if target() == "snowflake":
        # Imported only here: dagster-snowflake and its connector take seconds to load.
        from dagster_snowflake import SnowflakeResource  # noqa: PLC0415

        # EnvVar: resolved when a run or sensor starts, and never shown in the UI or the logs.
        key_path = os.environ.get("SNOWFLAKE_PRIVATE_KEY_PATH")
        return SnowflakeResource(
            account=dg.EnvVar("SNOWFLAKE_ACCOUNT"),
            user=dg.EnvVar("SNOWFLAKE_USER"),
            role=dg.EnvVar("SNOWFLAKE_ROLE"),
            warehouse=dg.EnvVar("SNOWFLAKE_WAREHOUSE"),
            database=dg.EnvVar("SNOWFLAKE_DATABASE"),
            **(
                {"private_key_path": dg.EnvVar("SNOWFLAKE_PRIVATE_KEY_PATH")}
                if key_path
                else {"password": dg.EnvVar("SNOWFLAKE_PASSWORD")}
            ),
            # The resource has no fields for host, port and protocol. Without the zero timeout the
            # connector probes cloud metadata endpoints at every login, which only workload
            # identity authentication needs; dbt-snowflake turns the probe off the same way.
            additional_snowflake_connection_args={
                **snowflake_endpoint(), "platform_detection_timeout_seconds": 0.0,
            },
        )
    return DuckDBResource(database=str(duckdb_path(PROD)))


def read_sql(warehouse: dg.ConfigurableResource, sql: str) -> "pd.DataFrame":
    """One query's result, on either warehouse, with lower-case column names."""
    import pandas as pd  # noqa: PLC0415

    with warehouse.get_connection() as connection:
        if isinstance(warehouse, DuckDBResource):
            frame = connection.execute(sql).df()
        else:
            cursor = connection.cursor()
            cursor.execute(sql)
            frame = pd.DataFrame(cursor.fetchall(), columns=[c[0] for c in cursor.description])
    return frame.rename(columns=str.lower)


def newest_loaded_at(
    warehouse: dg.ConfigurableResource, criteria: dict[dg.AssetKey, dict]
) -> dict[dg.AssetKey, datetime | None]:
    """max(loaded_at_field) of each source, in one short read."""
    if not isinstance(warehouse, DuckDBResource):
        return {key: _newest_on_snowflake(warehouse, criterion) for key, criterion in criteria.items()}
    path = duckdb_path(PROD)
    if not path.exists():
        return dict.fromkeys(criteria)
    # Not the resource's connection: it retries a locked file for minutes, and a sensor tick
    # should rather skip and look again at the next one.
    try:
        connection = duckdb.connect(str(path), read_only=True)
    except duckdb.IOException as error:  # DuckDB allows one writer per file, and no reader beside it
        raise WarehouseBusy(str(error).splitlines()[0]) from None
    with connection:
        return {key: _newest(connection, criterion) for key, criterion in criteria.items()}


def _newest_sql(criterion: dict) -> str:
    # Rows dated in the future are errors the raw tests stop at, not fresh data.
    field = criterion["loaded_at_field"]
    limit = datetime.now(UTC).replace(tzinfo=None) + future_tolerance()
    return (
        f"select max({field}) as newest from {criterion['relation_name']} "
        f"where {field} <= cast('{limit:%Y-%m-%d %H:%M:%S}' as timestamp)"
    )


def _newest(connection, criterion: dict) -> datetime | None:
    try:
        return connection.execute(_newest_sql(criterion)).fetchall()[0][0]
    except duckdb.CatalogException:
        return None


def _newest_on_snowflake(warehouse: dg.ConfigurableResource, criterion: dict) -> datetime | None:
    import pandas as pd  # noqa: PLC0415

    frame = read_sql(warehouse, _newest_sql(criterion))
    value = frame["newest"].iloc[0]
    return None if pd.isna(value) else pd.Timestamp(value).tz_localize(None).to_pydatetime()


def is_lock_conflict(error: Exception) -> bool:
    """Whether DuckDB refused the file because another process holds its one write lock."""
    return "could not set lock" in str(error).lower()


class WarehouseUnusable(Exception):
    """The warehouse file is missing its raw data, corrupt or truncated: nothing should write to it."""


# DuckDB's file: three 4 KiB headers, then blocks of `block_size` bytes numbered from 0.
_DUCKDB_HEADER_BYTES = 3 * 4096


def check_duckdb_warehouse(path: Path, need_raw: bool = True) -> None:
    """Raise WarehouseUnusable, in one line naming `path`, unless it is a whole DuckDB file
    (with raw tables when `need_raw`). Cheap: reads the header and the catalog, not the data."""
    if not path.exists():
        raise WarehouseUnusable(f"no warehouse at {path}: run `greenery sample` or `greenery load-csv DIR` first")
    try:
        with duckdb.connect(str(path), read_only=True) as connection:
            needed = _DUCKDB_HEADER_BYTES + _last_data_block(connection) * _block_size(connection)
            raw_tables = connection.execute(
                "select count(*) from duckdb_tables() where database_name = current_database() and schema_name = 'raw'"
            ).fetchall()[0][0]
    except duckdb.Error as error:
        if is_lock_conflict(error):
            raise  # held by a run: the caller says so
        raise WarehouseUnusable(f"{path} is not a readable DuckDB database (corrupt?); restore it or move it "
                                "away and load the data again") from None
    # A write-ahead log left by a crash holds blocks the file does not have yet.
    if path.stat().st_size < needed and not Path(f"{path}.wal").exists():
        raise WarehouseUnusable(
            f"{path} is truncated ({path.stat().st_size:,} bytes, its tables need {needed:,}); restore it or "
            "move it away and load the data again"
        )
    if need_raw and not raw_tables:
        raise WarehouseUnusable(f"no raw tables in {path}: run `greenery sample` or `greenery load-csv DIR` first")


def _block_size(connection) -> int:
    return connection.execute(
        "select block_size from pragma_database_size() where database_name = current_database()"
    ).fetchall()[0][0]


def _last_data_block(connection) -> int:
    """How many blocks the file must hold for the newest-numbered block of table data to be in it."""
    tables = connection.execute(
        "select schema_name, table_name from duckdb_tables() where database_name = current_database()"
    ).fetchall()
    last = -1
    for schema, table in tables:
        quoted = f'"{schema}"."{table}"'.replace("'", "''")
        ((block,),) = connection.execute(
            f"select max(block_id) from pragma_storage_info('{quoted}') where persistent"
        ).fetchall()
        last = max(last, block if block is not None else -1)
    return last + 1
