"""`greenery load-csv` and `greenery sample` on Snowflake (rawdata/snowflake_load.py), through the
real connector against fakesnow's HTTP server. What the tables hold is checked against what was
put in, read without the loader: the CSVs through pandas, the sample through the DuckDB path.

Every test writes a Snowflake database of its own, so no test sees another's tables.
"""

import hashlib
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import snowflake.connector
import sqlglot
from sqlglot import exp

from greenery_orchestration.rawdata.csv_file import RawDataError
from greenery_orchestration.rawdata.load_log import LOAD_LOG
from greenery_orchestration.rawdata.sample import CATALOGUE, append_to_raw, write_sample
from greenery_orchestration.rawdata.schema import declared_columns, load_marker, raw_columns
from greenery_orchestration.rawdata.snowflake_load import (
    snowflake_append_sample,
    snowflake_load_csv_dir,
    snowflake_load_failure,
    snowflake_load_sql,
    snowflake_type,
    snowflake_write_sample,
)

DBT = str(Path(sys.executable).with_name("dbt"))
DBT_TIMEOUT_SECONDS = 300
TABLES = list(raw_columns())
# What information_schema says of each declared type: what the dbt models are written for.
SNOWFLAKE_TYPES = {"varchar": ("TEXT", None), "integer": ("NUMBER", 0), "double": ("FLOAT", None),
                   "timestamp": ("TIMESTAMP_NTZ", None)}
SAMPLE = {"seed": 5, "days": 2, "sessions_per_day": 80}

@pytest.fixture
def connection(snowflake_server):
    with snowflake_server.in_process(), snowflake_server.connect() as connection:
        yield connection


@pytest.fixture
def database(connection, request) -> str:
    name = "LOAD_" + re.sub(r"\W", "_", request.node.name).upper()
    connection.cursor().execute(f"create or replace database {name}")
    return name


# --- what the tables hold, computed apart from the loader -------------------------------------


def canonical(value, declared: str):
    """One value as comparable text, whichever side it was read from."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if declared == "timestamp":
        moment = pd.Timestamp(value)
        return (moment.tz_convert(None) if moment.tzinfo else moment).isoformat()
    return repr({"integer": int, "double": float}.get(declared, str)(value))


def digest(table: str, rows) -> tuple[int, str]:
    """Row count and a hash of the rows as a multiset (order does not matter)."""
    types = list(raw_columns()[table].values())
    lines = sorted(repr([canonical(v, t) for v, t in zip(row, types, strict=True)]) for row in rows)
    return len(lines), hashlib.sha256("\n".join(lines).encode()).hexdigest()


def csv_digest(folder: Path, table: str) -> tuple[int, str]:
    # Only an empty field is null, as DuckDB reads it: pandas would read 'NA' or 'null' as null too.
    frame = pd.read_csv(folder / f"{table}.csv", dtype=str, keep_default_na=False, na_values=[""])
    return digest(table, frame[list(raw_columns()[table])].itertuples(index=False))


def snowflake_contents(connection, database: str) -> dict:
    """Every raw table's row count and digest, and the load log's rows: what a load may change."""
    cursor = connection.cursor()
    tables = {row[0].lower() for row in cursor.execute(
        f"select table_name from {database}.information_schema.tables where table_schema = 'RAW'").fetchall()}
    contents = {}
    for table in TABLES:
        if table in tables:
            contents[table] = digest(table, read_rows(cursor, f"{database}.raw.{table}", raw_columns()[table]))
    logs = cursor.execute(
        f"select count(*) from {database}.information_schema.tables where table_schema = 'OPS' and table_name = 'LOAD_LOG'"
    ).fetchall()[0][0]
    contents[LOAD_LOG] = cursor.execute(f"select * from {database}.{LOAD_LOG} order by loaded_at").fetchall() if logs else None
    return contents


def read_rows(cursor, relation: str, columns: dict[str, str]) -> list[list]:
    """The rows of `relation`. fakesnow's server (0.12.1) sends a null timestamp to the client as
    1970-01-01 (its Arrow struct has no validity), so each timestamp comes with `is null`."""
    selected = [f"{c}, {c} is null" if t == "timestamp" else c for c, t in columns.items()]
    rows = []
    for fetched in cursor.execute(f"select {', '.join(selected)} from {relation}").fetchall():
        values, row = iter(fetched), []
        for declared in columns.values():
            value = next(values)
            if declared == "timestamp" and next(values):
                value = None
            row.append(value)
        rows.append(row)
    return rows


def duckdb_contents(path: Path) -> dict:
    with duckdb.connect(str(path), read_only=True) as connection:
        return {
            table: digest(table, connection.execute(f"select {', '.join(raw_columns()[table])} from raw.{table}").fetchall())
            for table in TABLES
        }


def stamps(connection, database: str) -> dict[str, dict]:
    """{raw table: {load marker value: rows}} (every row the loader wrote has one: none is null)."""
    cursor = connection.cursor()
    return {
        table: dict(cursor.execute(
            f"select {load_marker()}, count(*) from {database}.raw.{table} group by 1").fetchall())
        for table in TABLES
    }


def load_log(connection, database: str) -> list[tuple]:
    return connection.cursor().execute(
        f"select mode, source, row_counts from {database}.{LOAD_LOG} order by loaded_at").fetchall()


# --- a statement that fails at the server ------------------------------------------------------


class FailingConnection:
    """The real connection, except that one statement reaches Snowflake naming a table that does
    not exist: the server refuses it, as it would a statement on a table dropped meanwhile."""

    def __init__(self, connection, statement: re.Pattern, table: str):
        self._connection, self._statement, self._table = connection, statement, table
        self.failed = 0

    def cursor(self, *args, **kwargs):
        return _FailingCursor(self, self._connection.cursor(*args, **kwargs))

    def __getattr__(self, name):
        return getattr(self._connection, name)


class _FailingCursor:
    def __init__(self, owner: FailingConnection, cursor):
        self._owner, self._cursor = owner, cursor

    def execute(self, command, *args, **kwargs):
        owner = self._owner
        # write_pandas names its table in a bound parameter, identifier(?).
        params = kwargs.get("params") or ()
        if owner._statement.search(command) and (owner._table in command or owner._table in params):
            owner.failed += 1
            command = command.replace(owner._table, "NO_SUCH_TABLE")
            if params:
                kwargs["params"] = tuple("NO_SUCH_TABLE" if p == owner._table else p for p in params)
        self._cursor.execute(command, *args, **kwargs)
        return self

    def __getattr__(self, name):
        return getattr(self._cursor, name)


# --- the tests ---------------------------------------------------------------------------------


def test_the_course_data_loads_as_the_csvs_hold_it_with_the_declared_types(connection, database, course_data):
    counts = snowflake_load_csv_dir(connection, course_data, database=database)

    expected = {table: csv_digest(course_data, table) for table in TABLES}
    contents = snowflake_contents(connection, database)
    assert {table: contents[table] for table in TABLES} == expected
    assert counts == {table: rows for table, (rows, _) in expected.items()}
    described = connection.cursor().execute(
        f"select table_name, column_name, data_type, numeric_scale from {database}.information_schema.columns "
        "where table_schema = 'RAW'"
    ).fetchall()
    assert {(t.lower(), c.lower()): (d, s) for t, c, d, s in described} == {
        (table, column): SNOWFLAKE_TYPES[declared]
        for table, columns in declared_columns().items() for column, declared in columns.items()
    }
    assert load_log(connection, database) == [("replace", f"load-csv {course_data.name}", json.dumps(counts))]
    ((loaded_at,),) = connection.cursor().execute(f"select loaded_at from {database}.{LOAD_LOG}").fetchall()
    assert stamps(connection, database) == {table: {loaded_at: rows} for table, rows in counts.items()}


def test_a_bad_csv_loads_nothing_and_says_so_in_one_line_without_the_value(connection, database, tmp_path):
    end = datetime(2026, 3, 1, tzinfo=UTC)
    snowflake_write_sample(connection, database=database, end=end, **SAMPLE)
    before = snowflake_contents(connection, database)
    folder = tmp_path / "csv"
    write_sample(folder, end=end + timedelta(days=1), **SAMPLE)
    addresses = pd.read_csv(folder / "addresses.csv", dtype=str)
    addresses.loc[5, "zipcode"] = "9021O Elm Street"  # zipcode is declared PII
    addresses.to_csv(folder / "addresses.csv", index=False)

    with pytest.raises(RawDataError) as raised:
        snowflake_load_csv_dir(connection, folder, database=database)

    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("addresses.csv, column zipcode: 1 value(s) do not parse as integer; first at line 7")
    assert "9021O" not in message and "Elm" not in message
    assert snowflake_contents(connection, database) == before


@pytest.mark.parametrize("where", ["upload", "transaction"])
def test_a_load_that_fails_changes_nothing(connection, database, where, tmp_path):
    # The last table's write fails: its upload (COPY INTO its temporary table, before anything
    # is published), or its insert inside the transaction, after six tables were replaced.
    end = datetime(2026, 3, 1, tzinfo=UTC)
    snowflake_write_sample(connection, database=database, end=end, **SAMPLE)
    before = snowflake_contents(connection, database)
    statement, table = {
        "upload": (re.compile(r"^COPY INTO identifier"), "USERS__LOADING"),
        "transaction": (re.compile(rf"^insert into {database}\.raw\.users "), f"{database}.raw.users"),
    }[where]
    failing = FailingConnection(connection, statement, table)

    with pytest.raises(Exception) as raised:
        snowflake_write_sample(failing, database=database, end=end + timedelta(days=1), **SAMPLE)

    assert failing.failed == 1
    assert type(raised.value).__module__.startswith("snowflake.connector")
    assert snowflake_load_failure(raised.value) == "Snowflake refused the load (error 002003, SQL state 42S02)"
    assert snowflake_contents(connection, database) == before
    # The session that failed goes on, its temporary tables gone.
    cursor = connection.cursor()
    assert cursor.execute("select 1").fetchall() == [(1,)]
    with pytest.raises(snowflake.connector.errors.ProgrammingError, match="USERS__LOADING"):
        cursor.execute("select count(*) from users__loading")


def test_a_first_load_that_fails_leaves_no_table_behind(connection, database, tmp_path):
    failing = FailingConnection(connection, re.compile(rf"^insert into {database}\.raw\.users "), f"{database}.raw.users")

    with pytest.raises(Exception, match="NO_SUCH_TABLE"):
        snowflake_write_sample(failing, database=database, end=datetime(2026, 3, 1, tzinfo=UTC), **SAMPLE)

    assert snowflake_contents(connection, database) == {LOAD_LOG: None}


def test_a_raw_table_of_other_types_stops_the_load_before_it_writes(connection, database, tmp_path):
    cursor = connection.cursor()
    cursor.execute(f"create schema {database}.raw")
    columns = raw_columns()["addresses"]
    cursor.execute(f"create table {database}.raw.addresses ({', '.join(f'{c} varchar' for c in columns)})")

    with pytest.raises(RawDataError) as raised:
        snowflake_write_sample(connection, database=database, end=datetime(2026, 3, 1, tzinfo=UTC), **SAMPLE)

    assert str(raised.value) == (
        f"{database}.RAW.ADDRESSES.ZIPCODE on Snowflake is TEXT where the dbt sources declare integer (integer); "
        "alter or drop it (and load again) so that it matches the dbt sources"
    )
    assert snowflake_contents(connection, database) == {"addresses": (0, digest("addresses", [])[1]), LOAD_LOG: None}


@pytest.fixture(scope="module")
def sampled(snowflake_server, tmp_path_factory) -> dict:
    """`greenery sample`, then `sample --append`, on Snowflake and on DuckDB alike."""
    now = datetime.now(UTC).replace(microsecond=0)
    spec = {**SAMPLE, "end": now - timedelta(hours=5)}
    append = {"seed": SAMPLE["seed"], "hours": 3, "sessions_per_day": 400, "until": now}
    database = "LOAD_SAMPLED"
    with snowflake_server.in_process(), snowflake_server.connect() as connection:
        connection.cursor().execute(f"create or replace database {database}")
        written = snowflake_write_sample(connection, database=database, **spec)
        after_sample = snowflake_contents(connection, database)
        stamped_by_sample = stamps(connection, database)
        appended = snowflake_append_sample(connection, database=database, **append)
        after_append = snowflake_contents(connection, database)
        stamped_by_append = stamps(connection, database)
        log = load_log(connection, database)
        loaded_at = [at for (at,) in connection.cursor().execute(
            f"select loaded_at from {database}.{LOAD_LOG} order by loaded_at").fetchall()]
    reference = tmp_path_factory.mktemp("duckdb") / "prod.duckdb"
    write_sample(reference, **spec)
    reference_appended = append_to_raw(reference, **append)
    return {
        "database": database, "written": written, "appended": appended, "after_sample": after_sample,
        "after_append": after_append, "log": log, "reference": duckdb_contents(reference),
        "stamped_by_sample": stamped_by_sample, "stamped_by_append": stamped_by_append, "loaded_at": loaded_at,
        "reference_appended": reference_appended,
    }


def test_sample_then_append_grow_by_what_was_generated(sampled):
    written, appended = sampled["written"], sampled["appended"]
    after_sample, after_append = sampled["after_sample"], sampled["after_append"]
    assert {table: after_sample[table][0] for table in TABLES} == written
    assert set(appended.counts) == set(TABLES) - set(CATALOGUE)
    assert appended.counts["events"] > 0
    assert {table: after_append[table][0] for table in TABLES} == {
        table: written[table] + appended.counts.get(table, 0) for table in TABLES
    }
    assert {table: after_append[table] for table in CATALOGUE} == {table: after_sample[table] for table in CATALOGUE}
    # The same rows as the DuckDB path's, for the same seed, window and newest event.
    assert appended == sampled["reference_appended"]
    assert {table: after_append[table] for table in TABLES} == sampled["reference"]
    assert [(mode, json.loads(counts)) for mode, _, counts in sampled["log"]] == [
        ("replace", written), ("append", appended.counts),
    ]
    assert sampled["log"][1][1].startswith(f"sample --append seed={SAMPLE['seed']} ")


def test_each_load_stamps_the_rows_it_writes_with_its_log_rows_time(sampled):
    sample_at, append_at = sampled["loaded_at"]
    written, added = sampled["written"], sampled["appended"].counts
    assert sample_at < append_at
    assert sampled["stamped_by_sample"] == {table: {sample_at: rows} for table, rows in written.items()}
    # The append stamps only the rows it adds.
    assert sampled["stamped_by_append"] == {
        table: {sample_at: rows, **({append_at: added[table]} if table in added else {})}
        for table, rows in written.items()
    }


def test_a_raw_table_from_before_the_marker_gains_it_instead_of_stopping_the_load(connection, database):
    cursor = connection.cursor()
    cursor.execute(f"create schema {database}.raw")
    columns = ", ".join(f"{name} {snowflake_type(kind)}" for name, kind in raw_columns()["promos"].items())
    cursor.execute(f"create table {database}.raw.promos ({columns})")
    cursor.execute(f"insert into {database}.raw.promos (promo_id, discount, status) values ('old', 5, 'active')")

    written = snowflake_write_sample(connection, database=database, end=datetime(2026, 3, 1, tzinfo=UTC), **SAMPLE)

    ((loaded_at,),) = cursor.execute(f"select loaded_at from {database}.{LOAD_LOG}").fetchall()
    assert stamps(connection, database) == {table: {loaded_at: rows} for table, rows in written.items()}


def test_the_dbt_sources_and_staging_models_build_on_the_loaded_tables(snowflake_server, sampled, tmp_path):
    # A publish before the loads, of ten times the rows: the raw tables look shrunk, unless the
    # volume tests read the load log's replace after it (as they must) and drop the baseline.
    database = sampled["database"]
    published_at = sampled["appended"].start - timedelta(days=3)
    then = {f"raw.{table}": 10 * rows for table, (rows, _) in sampled["after_append"].items() if table in TABLES}
    with snowflake_server.in_process(), snowflake_server.connect() as connection:
        cursor = connection.cursor()
        cursor.execute(f"create or replace table {database}.ops.publish_log "
                       "(run_id varchar, published_at timestamp_ntz, code_version varchar, row_counts varchar)")
        cursor.execute(f"insert into {database}.ops.publish_log values ('before-the-loads', %s, 'x', %s)",
                       [published_at, json.dumps(then)])

    done = snowflake_server.run(
        [DBT, "build", "--indirect-selection", "cautious", "--select", "source:greenery",
         *(f"stg_greenery__{table}" for table in TABLES)],
        timeout=DBT_TIMEOUT_SECONDS,
        env={"SNOWFLAKE_DATABASE": database, "DBT_TARGET_PATH": str(tmp_path),
             "DBT_LOG_PATH": str(tmp_path / "logs"), "DBT_USE_COLORS": "false"},
    )
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:] + snowflake_server.server_log()
    results = json.loads((tmp_path / "run_results.json").read_text())["results"]
    assert {r["status"] for r in results} == {"success", "pass"}
    assert {r["unique_id"].split(".")[-1] for r in results if r["unique_id"].startswith("model.")} == {
        f"stg_greenery__{table}" for table in TABLES
    }
    volume_tests = [r for r in results if "not_empty_nor_shrunk" in r["unique_id"]]
    assert len(volume_tests) == len(TABLES)


@pytest.mark.parametrize("mode", ["replace", "append"])
def test_the_transaction_holds_dml_only(mode):
    # Snowflake commits before any DDL statement: one inside would end the transaction early.
    statements = snowflake_load_sql("GREENERY", TABLES, mode, datetime(2026, 3, 1))
    parsed = [sqlglot.parse_one(s.replace("%s", "?"), read="snowflake") for s in statements]
    assert all(isinstance(p, exp.Delete | exp.Insert) for p in parsed)
    targets = [p.this.sql("snowflake") if isinstance(p, exp.Delete) else p.this.this.sql("snowflake") for p in parsed]
    per_table = ["DELETE", "INSERT"] if mode == "replace" else ["INSERT"]
    assert [type(p).__name__.upper() for p in parsed] == per_table * len(TABLES) + ["INSERT"]
    assert targets[-1] == "GREENERY.ops.load_log"
    assert set(targets[:-1]) == {f"GREENERY.raw.{table}" for table in TABLES}
