"""The incremental models on the Snowflake target, as a user runs them: `greenery sample`, `run`,
`sample --append`, `run` in subprocesses against fakesnow's HTTP server, compared with a full
refresh of the same raw rows."""

import sys
from pathlib import Path

from tests.snowflake_server.conftest import COMMAND_TIMEOUT_SECONDS


COMPARED = ["marts.fct_events", "marts.fct_sessions", "marts.fct_funnel", "marts.fct_orders", "marts.dim_users"]


def _rows(cursor, database: str, relation: str) -> list[tuple]:
    cursor.execute(f"select * from {database}.{relation}")
    columns = [column[0].lower() for column in cursor.description]
    keep = [i for i, name in enumerate(columns) if name not in ("dbt_updated_at", "updated_at")]
    return sorted((tuple(str(row[i]) for i in keep) for row in cursor.fetchall()))


def test_generated_data_incremental_runs_equal_a_full_refresh(account, snowflake_server, tmp_path):
    """sample, run, sample --append, run: what the incremental models kept equals a full refresh
    of the same raw rows (dbt in another database of the account, from per-table clones)."""
    for command in (["sample", "--days", "2", "--sessions-per-day", "150"], ["run"],
                    ["sample", "--append", "--hours", "3", "--sessions-per-day", "400"], ["run"]):
        done = account(*command)
        assert done.returncode == 0, (command, done.stdout[-4000:], done.stderr[-3000:])
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
