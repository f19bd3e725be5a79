"""The incremental models on the Snowflake target, as a user runs them: `greenery sample`, `run`,
`sample --append`, `run` in subprocesses against fakesnow's HTTP server, compared with a full
refresh of the same raw rows."""

import sys
from pathlib import Path

from greenery_orchestration.assets.dbt import INCREMENTAL_MODELS
from greenery_orchestration.marts import FUNNEL_MARTS
from greenery_orchestration.rawdata.load_log import load_time
from tests.snowflake_server.conftest import COMMAND_TIMEOUT_SECONDS


# Every incremental model and every funnel mart, and the marts that read late rows.
COMPARED = sorted({*INCREMENTAL_MODELS, *(f"marts.{key.path[-1]}" for key in FUNNEL_MARTS.values()), "marts.dim_users"})


def _rows(cursor, database: str, relation: str) -> list[tuple]:
    cursor.execute(f"select * from {database}.{relation}")
    columns = [column[0].lower() for column in cursor.description]
    keep = [i for i, name in enumerate(columns) if name not in ("dbt_updated_at", "updated_at")]
    return sorted((tuple(str(row[i]) for i in keep) for row in cursor.fetchall()))


def _execute(snowflake_server, database: str, *statements: str) -> None:
    with snowflake_server.in_process(), snowflake_server.connect(database) as connection:
        cursor = connection.cursor()
        for statement in statements:
            cursor.execute(statement)


def test_generated_data_incremental_runs_equal_a_full_refresh(account, snowflake_server, tmp_path):
    """sample, run, sample --append, run: what the incremental models kept equals a full refresh
    of the same raw rows (dbt in another database of the account, from per-table clones), and an
    order built before ships meanwhile. (Rows delivered late, after a build over the events naming
    them, are compared on the Snowflake SQL in tests/test_snowflake.py, and on DuckDB.)"""
    for command in (["sample", "--days", "2", "--sessions-per-day", "150"], ["run"],
                    ["sample", "--append", "--hours", "3", "--sessions-per-day", "400"]):
        done = account(*command)
        assert done.returncode == 0, (command, done.stdout[-4000:], done.stderr[-3000:])
    changed = "(select min(order_id) from raw.orders where status = 'preparing')"
    now = f"cast('{load_time():%Y-%m-%d %H:%M:%S.%f}' as timestamp_ntz)"  # as a loader stamps it
    _execute(snowflake_server, account.database,
             f"update raw.orders set status = 'shipped', tracking_id = 'late-tracking', shipping_service = 'ups', "
             f"_loaded_at = {now} where order_id = {changed}")
    done = account("run")
    assert done.returncode == 0, done.stdout[-4000:]
    assert "rebuilding the incremental models from scratch" not in done.stdout  # an append: incremental

    full = f"{account.database}_FULL"
    with snowflake_server.in_process(), snowflake_server.connect() as connection:
        cursor = connection.cursor()
        cursor.execute(f"create database {full}")
        cursor.execute(f"create schema {full}.raw")
        cursor.execute(f"create schema {full}.ops")
        cursor.execute(f"select table_schema, table_name from {account.database}.information_schema.tables "
                       "where lower(table_schema) in ('raw', 'ops') and table_type = 'BASE TABLE'")
        for schema, table in cursor.fetchall():
            cursor.execute(f"create table {full}.{schema}.{table} clone {account.database}.{schema}.{table}")
    built = snowflake_server.run(
        [str(Path(sys.executable).with_name("dbt")), "build", "--full-refresh", "--exclude", "resource_type:snapshot"],
        timeout=COMMAND_TIMEOUT_SECONDS,
        env={"SNOWFLAKE_DATABASE": full, "DBT_TARGET_PATH": str(tmp_path / "target"), "DBT_LOG_PATH": str(tmp_path / "logs")},
    )
    assert built.returncode == 0, built.stdout[-4000:]
    with snowflake_server.in_process(), snowflake_server.connect() as connection:
        cursor = connection.cursor()
        for relation in COMPARED:
            incremental, refreshed = _rows(cursor, account.database, relation), _rows(cursor, full, relation)
            assert incremental == refreshed, relation
            assert incremental, relation
        cursor.execute(f"select count(*) from {account.database}.marts.fct_orders where tracking_id = 'late-tracking' "
                       "and order_status = 'shipped'")
        assert cursor.fetchall() == [(1,)]
