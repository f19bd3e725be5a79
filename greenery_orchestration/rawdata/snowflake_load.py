"""`greenery load-csv` and `greenery sample` on the Snowflake target: the raw tables of
`<database>.raw` and the load log `<database>.ops.load_log`, written through a connection of
snowflake-connector-python (what dagster-snowflake's `SnowflakeResource.get_connection()` yields).

What reaches Snowflake is decided as on DuckDB: the CSVs are validated and typed by the DuckDB
loader itself (`stage_csv_dir`, in an in-memory DuckDB), the sample comes from the same generator,
and every row is cast to the types the dbt sources declare before it leaves this process. Only
the write differs, in two steps:

1. Upload: the rows go into session-private temporary tables with `write_pandas`, in batches,
   so neither a big file nor a big sample is held as one frame. The raw tables are untouched.
2. Publish: one transaction deletes and re-inserts every raw table (`append`: inserts only) from
   the temporary tables, stamping each row with the load's time (the load marker), and adds the
   load log's row, then commits. Readers see the old rows or the new, never a mix.

Not `alter table ... swap with ...` from permanent staging tables: each swap is a DDL statement
that Snowflake commits on its own, so seven swaps and a log row cannot be one unit (a failure
or a reader between two swaps sees a mix), and a swap puts a new table object under the raw
name, without the masking policies the chain attached to the old one's PII columns: raw PII
would be readable until the next run's masking step. DML in one transaction is atomic on
Snowflake and keeps the tables, their policies and grants; it costs a server-side copy of the
rows, small next to uploading them. The same statements run on fakesnow, so the tests run what
production runs; nothing here depends on GREENERY_SNOWFLAKE_EMULATED.

The session's current schema is left at `<database>.raw` (temporary tables are made there).

DDL cannot join the transaction (Snowflake commits before every DDL statement), so what must
exist is created before it: the schemas, the load log, and the raw tables on a first load (with
the declared types; dropped again if the load fails), and the load marker on a raw table from
before it. A raw table whose declared columns have other types stops the load before anything
is written: inserting would convert silently.
"""

import warnings
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa

from greenery_orchestration.rawdata.csv_file import RawDataError
from greenery_orchestration.rawdata.load_csv import load_csv_source, stage_csv_dir, typed_select
from greenery_orchestration.rawdata.load_log import COLUMNS as LOAD_LOG_COLUMNS
from greenery_orchestration.rawdata.load_log import LOAD_LOG, load_row, load_time, marker_value
from greenery_orchestration.rawdata.sample import CATALOGUE, Appended, plan_append, raw_catalogue, sample_source, sample_tables
from greenery_orchestration.rawdata.schema import RAW_SCHEMA, declared_columns, load_marker, raw_columns

if TYPE_CHECKING:  # the connector loads when a Snowflake load runs, not with this module
    from snowflake.connector import SnowflakeConnection

__all__ = [
    "LOADING_SUFFIX", "snowflake_append_sample", "snowflake_load_csv_dir", "snowflake_load_failure",
    "snowflake_load_sql", "snowflake_type", "snowflake_write_sample",
]

# Rows per write_pandas call: bounds the memory a load holds beside DuckDB's copy.
BATCH_ROWS = 1_000_000
# The temporary table a raw table's new rows wait in, `<table>__loading`, private to the session.
LOADING_SUFFIX = "__loading"

# The dbt sources declare DuckDB types; these are the Snowflake types the models are written for.
# TIMESTAMP_NTZ spelled out: plain TIMESTAMP follows the account's TIMESTAMP_TYPE_MAPPING.
_SNOWFLAKE_TYPES = {
    "varchar": "varchar",
    "integer": "integer",  # NUMBER(38,0)
    "bigint": "integer",
    "double": "float",
    "timestamp": "timestamp_ntz",
    "date": "date",
    "boolean": "boolean",
}
# How information_schema.columns reports each type above: its data_type, and a scale for NUMBER.
_REPORTED = {"varchar": ("TEXT", None), "integer": ("NUMBER", 0), "float": ("FLOAT", None),
             "timestamp_ntz": ("TIMESTAMP_NTZ", None), "date": ("DATE", None), "boolean": ("BOOLEAN", None)}


def snowflake_type(declared: str) -> str:
    """The Snowflake type of a column declared `declared` (a DuckDB type) in the dbt sources."""
    try:
        return _SNOWFLAKE_TYPES[declared.lower()]
    except KeyError:
        raise ValueError(f"no Snowflake type for the declared type {declared!r}") from None


def snowflake_load_csv_dir(
    connection: "SnowflakeConnection", folder: Path, *, database: str, source: str | None = None
) -> dict[str, int]:
    """`greenery load-csv` on Snowflake: validate the seven CSVs in `folder` exactly as the DuckDB
    loader does, then replace `<database>.raw`'s tables and log the load, all or nothing.

    Returns the row count per table. Raises RawDataError (one line, no PII value) when a file
    does not validate or a raw table has other column types than declared; nothing is written
    then. A Snowflake error rolls the load back and is raised as it is (see
    snowflake_load_failure for a line to show).
    """
    with duckdb.connect() as duck:
        staged = stage_csv_dir(duck, folder)
        return _load(connection, duck, staged, database=database, mode="replace",
                     source=source or load_csv_source(folder))


def snowflake_write_sample(connection: "SnowflakeConnection", *, database: str, **spec) -> dict[str, int]:
    """`greenery sample` on Snowflake: `sample_tables(**spec)` replaces `<database>.raw`'s tables,
    logged as write_sample logs it, all or nothing. Returns the row count per table."""
    tables = sample_tables(**spec)
    with duckdb.connect() as duck:
        for table, rows in tables.items():
            duck.register(f"sample_{table}", rows)
        return _load(connection, duck, {table: f"sample_{table}" for table in tables}, database=database,
                     mode="replace", source=sample_source(spec))


def snowflake_append_sample(
    connection: "SnowflakeConnection", *, database: str, seed: int, hours: int, sessions_per_day: int,
    until: datetime | None = None, conversion: dict[str, float] | None = None,
) -> Appended:
    """`greenery sample --append` on Snowflake: the next `hours` of the shop after the newest
    event in `<database>.raw.events`, never past `until` (default now), browsing the products
    and promos in its raw tables; added, with its load log row, in one transaction.

    Raises NothingToAppend when less than an hour is left, ValueError when there are no raw
    events to append after.
    """
    newest = _newest_event(connection, database)
    with duckdb.connect() as duck:
        catalogue = _raw_catalogue(connection, duck, database)
        tables, appended, source = plan_append(
            newest, catalogue, seed=seed, hours=hours, sessions_per_day=sessions_per_day, until=until,
            conversion=conversion,
        )
        for table, rows in tables.items():
            duck.register(f"sample_{table}", rows)
        _load(connection, duck, {table: f"sample_{table}" for table in tables}, database=database,
              mode="append", source=source)
    return appended


def snowflake_load_sql(database: str, tables: list[str], mode: str, loaded_at: datetime) -> list[str]:
    """The statements of a load's transaction (between `begin` and `commit`), as run: every
    table's rows from its `<table>__loading` temporary table, stamped `loaded_at` (the load's
    time), then the load log's row, whose five values are bound as `%s` (the connector's default
    paramstyle, pyformat)."""
    statements = []
    marker = load_marker()
    for table in tables:
        published = f"{database}.{RAW_SCHEMA}.{table}"
        columns = ", ".join(raw_columns()[table])
        stamp = marker_value(loaded_at, snowflake_type(declared_columns()[table][marker]))
        if mode == "replace":
            statements.append(f"delete from {published}")
        statements.append(
            f"insert into {published} ({columns}, {marker}) select {columns}, {stamp} from {table}{LOADING_SUFFIX}"
        )
    placeholders = ", ".join(["%s"] * len(LOAD_LOG_COLUMNS))
    statements.append(f"insert into {database}.{LOAD_LOG} ({', '.join(LOAD_LOG_COLUMNS)}) values ({placeholders})")
    return statements


def snowflake_load_failure(error: Exception) -> str:
    """A line saying that Snowflake refused a load, without Snowflake's message: it may quote a
    row's values (personal data) or name the account. Its error code and SQL state are enough to
    look the cause up."""
    errno = getattr(error, "errno", None)
    sqlstate = getattr(error, "sqlstate", None)
    code = f" (error {errno:06d}{f', SQL state {sqlstate}' if sqlstate else ''})" if isinstance(errno, int) else ""
    return f"Snowflake refused the load{code}"


def _load(
    connection: "SnowflakeConnection", duck: duckdb.DuckDBPyConnection, relations: Mapping[str, str], *,
    database: str, mode: str, source: str,
) -> dict[str, int]:
    """Upload `relations` (DuckDB relations of `duck`, one per raw table) and publish them; see
    the module's docstring."""
    cursor = connection.cursor()
    tables = list(relations)
    created: list[str] = []
    loading: list[str] = []
    try:
        _prepare(cursor, database, tables, created)
        # Temporary tables are created in the current schema: fakesnow refuses qualified ones.
        cursor.execute(f"use schema {database}.{RAW_SCHEMA}")
        counts = {}
        for table, relation in relations.items():
            declared = ", ".join(f"{name} {snowflake_type(kind)}" for name, kind in raw_columns()[table].items())
            cursor.execute(f"create or replace temporary table {table}{LOADING_SUFFIX} ({declared})")
            loading.append(f"{table}{LOADING_SUFFIX}")
            counts[table] = _upload(connection, duck, table, relation)
        loaded_at = load_time()
        row = load_row(mode, source, counts, loaded_at=loaded_at)
        *moves, log = snowflake_load_sql(database, tables, mode, loaded_at)
        # A caller's session without autocommit holds the uploads in an open transaction; it ends
        # here, so that `begin` starts the load's own.
        cursor.execute("commit")
        cursor.execute("begin")
        try:
            for statement in moves:
                cursor.execute(statement)
            cursor.execute(log, list(row.values()))
            cursor.execute("commit")
        except BaseException:
            _quietly(cursor, "rollback")
            raise
    except BaseException:
        for relation in created:
            _quietly(cursor, f"drop table if exists {relation}")
        raise
    finally:
        for temporary in loading:
            _quietly(cursor, f"drop table if exists {temporary}")
    return counts


def _prepare(cursor, database: str, tables: list[str], created: list[str]) -> None:
    """Create what the load's transaction writes to and is missing, adding each table to
    `created` (for a failed load to drop). Raises RawDataError, before anything is created, for a
    raw table of other column types."""
    schemas = {RAW_SCHEMA.upper(), LOAD_LOG.split(".")[0].upper()}
    cursor.execute(
        f"select table_schema, table_name, column_name, data_type, numeric_scale from {database}.information_schema.columns "
        f"where table_schema in ({', '.join(repr(s) for s in sorted(schemas))})"
    )
    present: dict[tuple[str, str], dict[str, tuple]] = {}
    for schema, table, column, data_type, scale in cursor.fetchall():
        present.setdefault((schema.lower(), table.lower()), {})[column.lower()] = (data_type, scale)
    for table in tables:
        if (RAW_SCHEMA, table) in present:
            _check_columns(database, table, present[(RAW_SCHEMA, table)])
    for schema in sorted(schemas):
        cursor.execute(f"create schema if not exists {database}.{schema.lower()}")
    marker = load_marker()
    for table in tables:
        relation = f"{database}.{RAW_SCHEMA}.{table}"
        if (RAW_SCHEMA, table) not in present:
            declared = ", ".join(f"{name} {snowflake_type(kind)}" for name, kind in declared_columns()[table].items())
            cursor.execute(f"create table {relation} ({declared})")
            created.append(relation)
        elif marker not in present[(RAW_SCHEMA, table)]:
            # A raw table loaded before the marker: its rows keep a null one.
            cursor.execute(f"alter table {relation} add column {marker} {snowflake_type(declared_columns()[table][marker])}")
    if tuple(LOAD_LOG.split(".")) not in present:
        log_columns = ", ".join(f"{name} {definition.replace('timestamp', 'timestamp_ntz')}"
                                for name, definition in LOAD_LOG_COLUMNS.items())
        cursor.execute(f"create table {database}.{LOAD_LOG} ({log_columns})")
        created.append(f"{database}.{LOAD_LOG}")


def _check_columns(database: str, table: str, present: dict[str, tuple]) -> None:
    where = f"{database}.{RAW_SCHEMA}.{table}".upper()
    fix = "alter or drop it (and load again) so that it matches the dbt sources"
    for name, kind in declared_columns()[table].items():
        expected = snowflake_type(kind)
        reported, scale = _REPORTED[expected]
        if name not in present:
            if name == load_marker():
                continue  # the load adds it (_prepare)
            raise RawDataError(f"{where} on Snowflake has no column {name} ({expected}); {fix}")
        data_type, actual_scale = present[name]
        if data_type != reported or (scale is not None and actual_scale != scale):
            shown = f"{data_type}({actual_scale})" if data_type == "NUMBER" else data_type
            raise RawDataError(f"{where}.{name.upper()} on Snowflake is {shown} where the dbt sources declare "
                               f"{expected} ({kind}); {fix}")


def _upload(connection, duck: duckdb.DuckDBPyConnection, table: str, relation: str) -> int:
    import pandas as pd  # noqa: PLC0415
    from snowflake.connector.pandas_tools import write_pandas  # noqa: PLC0415

    rows = 0
    for batch in duck.sql(typed_select(table, relation)).to_arrow_reader(BATCH_ROWS):
        # Arrow-backed columns keep nullable integers integers and timestamps microseconds.
        frame = pa.Table.from_batches([batch]).to_pandas(types_mapper=pd.ArrowDtype)
        with warnings.catch_warnings():
            # The connector asks pandas 3 a question it deprecates; not ours to fix.
            warnings.filterwarnings("ignore", "is_datetime64tz_dtype is deprecated")
            # Unquoted: the frame's lower-case names resolve to the table's columns. Logical
            # types: Parquet timestamps are read as timestamps, not as numbers.
            success, _, written, _ = write_pandas(
                connection, frame, f"{table}{LOADING_SUFFIX}".upper(), quote_identifiers=False,
                use_logical_type=True,
            )
        if not success or written != len(frame):
            raise RuntimeError(f"Snowflake took {written} of {len(frame)} rows for raw.{table}")
        rows += written
    return rows


def _newest_event(connection, database: str) -> datetime:
    from snowflake.connector.errors import ProgrammingError  # noqa: PLC0415

    events = f"{database}.{RAW_SCHEMA}.events"
    try:
        # The count, not a null max, says "no events": fakesnow's server sends a null timestamp
        # as 1970-01-01.
        ((newest, dated),) = connection.cursor().execute(
            f"select max(created_at), count(created_at) from {events}").fetchall()
    except ProgrammingError as error:
        if error.errno != 2003:  # does not exist or not authorized
            raise
        dated = 0
    if not dated:
        raise ValueError(
            f"no raw events in {events.upper()} on Snowflake to append after: run `greenery sample` or "
            "`greenery load-csv` first"
        )
    return newest


def _raw_catalogue(connection, duck: duckdb.DuckDBPyConnection, database: str) -> dict[str, pa.Table]:
    """The products and promos in Snowflake's raw tables, chosen as raw_catalogue chooses them on
    DuckDB (the same rows, the same order), so a seed and a window give the same append."""
    cursor = connection.cursor()
    duck.execute(f"create schema if not exists {RAW_SCHEMA}")
    for table in CATALOGUE:
        columns = list(raw_columns()[table])
        cursor.execute(f"select {', '.join(columns)} from {database}.{RAW_SCHEMA}.{table}")
        fetched = cursor.fetch_arrow_all(force_return_table=True).rename_columns(columns)
        duck.register(f"fetched_{table}", fetched)
        duck.execute(f"create table {RAW_SCHEMA}.{table} as {typed_select(table, f'fetched_{table}')}")
    return raw_catalogue(duck)


def _quietly(cursor, statement: str) -> None:
    """Run a statement of cleanup. If it fails (the session is gone), the error to report is the
    one that led here; a closed session's temporary tables and open transaction end with it."""
    from snowflake.connector.errors import Error  # noqa: PLC0415

    try:
        cursor.execute(statement)
    except Error:
        pass
