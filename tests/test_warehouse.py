"""The warehouse resource follows GREENERY_TARGET; the Snowflake path runs on fakesnow."""

import hashlib
from datetime import datetime

import dagster as dg
import duckdb
import fakesnow
import pytest
from dagster_duckdb import DuckDBResource
from dagster_snowflake import SnowflakeResource

from greenery_orchestration.warehouse import Changes, open_warehouse, warehouse_resource

EVENTS = dg.AssetKey(["raw", "events"])


@pytest.fixture
def snowflake_env(monkeypatch):
    monkeypatch.setenv("GREENERY_TARGET", "snowflake")
    for name, value in {
        "SNOWFLAKE_ACCOUNT": "greenery", "SNOWFLAKE_USER": "dagster", "SNOWFLAKE_PASSWORD": "s3cret-pw",
        "SNOWFLAKE_ROLE": "TRANSFORMER", "SNOWFLAKE_WAREHOUSE": "TRANSFORMING", "SNOWFLAKE_DATABASE": "GREENERY",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SNOWFLAKE_PRIVATE_KEY_PATH", raising=False)


def test_duckdb_by_default(warehouse):
    resource = warehouse_resource()
    assert isinstance(resource, DuckDBResource)
    assert resource.database == str(warehouse / "prod.duckdb")


def test_the_duckdb_warehouse_clones_every_environment_and_says_what_it_copied(warehouse, monkeypatch):
    monkeypatch.setenv("GREENERY_MASKING_SALT", "pepper")
    with duckdb.connect(str(warehouse / "prod.duckdb")) as connection:
        connection.execute(
            "create schema raw; create table raw.users as select * from (values "
            "('a@example.com', timestamp '2026-03-01 09:00'), ('b@example.com', timestamp '2026-03-01 09:00')) "
            "as users(email, _loaded_at)"
        )
    resource = open_warehouse()
    pii, changes = {"raw.users": ["email"]}, {"raw.users": Changes("_loaded_at")}

    first = dict(resource.clone(["dev", "ci"], pii, changes))
    with duckdb.connect(str(warehouse / "prod.duckdb")) as connection:
        connection.execute("insert into raw.users values ('c@example.com', timestamp '2026-03-01 12:00')")
    second = dict(resource.clone(["dev", "ci"], pii, changes))

    for environment in ("dev", "ci"):
        path = str(warehouse / f"{environment}.duckdb")
        assert first[environment] == {"path": path, "tables": 1, "rows_copied": 2, "in_place": False}
        assert second[environment] == {"path": path, "tables": 1, "rows_copied": 1, "in_place": True}
        with duckdb.connect(path, read_only=True) as connection:
            emails = sorted(email for (email,) in connection.execute("select email from raw.users").fetchall())
        assert emails == sorted(
            "masked_" + hashlib.sha256(f"pepper{email}@example.com".encode()).hexdigest()[:16] for email in "abc"
        )


def test_snowflake_reads_newest_rows_through_dagster_snowflake(snowflake_env, tmp_path):
    assert isinstance(warehouse_resource(), SnowflakeResource)
    with fakesnow.patch(db_path=str(tmp_path)):
        resource = warehouse_resource().process_config_and_initialize()  # as a run gets it: variables resolved
        with resource.get_connection() as connection:
            cursor = connection.cursor()
            cursor.execute("create schema if not exists GREENERY.raw")
            cursor.execute("create or replace table GREENERY.raw.events (event_id varchar, created_at timestamp_ntz)")
            cursor.execute("insert into GREENERY.raw.events values ('a', '2026-11-24 10:00:00'), ('b', '2026-11-25 09:30:00')")
        newest = resource.newest_loaded_at({EVENTS: {"loaded_at_field": "created_at", "relation_name": "GREENERY.raw.events"}})
        counted = resource.read_sql("select count(*) as events from GREENERY.raw.events")
    assert newest == {EVENTS: datetime(2026, 11, 25, 9, 30)}
    assert counted["events"].tolist() == [2]


def test_snowflake_credentials_are_resolved_late_and_never_shown(snowflake_env):
    resource = warehouse_resource()
    # The resource holds references to the variables, not their values.
    assert "s3cret-pw" not in repr(resource)
    assert "s3cret-pw" not in str(resource.model_dump())


def test_snowflake_goes_to_the_account_url_unless_told_otherwise(snowflake_env, monkeypatch):
    for variable in ("SNOWFLAKE_HOST", "SNOWFLAKE_PORT", "SNOWFLAKE_PROTOCOL"):
        monkeypatch.delenv(variable, raising=False)
    # No cloud metadata probes at login either way (only workload identity auth needs them).
    assert warehouse_resource().additional_snowflake_connection_args == {"platform_detection_timeout_seconds": 0.0}

    monkeypatch.setenv("SNOWFLAKE_HOST", "127.0.0.1")
    monkeypatch.setenv("SNOWFLAKE_PORT", "8080")
    monkeypatch.setenv("SNOWFLAKE_PROTOCOL", "")  # empty: not passed, the connector's https stays
    assert warehouse_resource().additional_snowflake_connection_args == {
        "host": "127.0.0.1", "port": 8080, "platform_detection_timeout_seconds": 0.0,
    }

    monkeypatch.setenv("SNOWFLAKE_PORT", "80a")
    with pytest.raises(ValueError, match="SNOWFLAKE_PORT must be a port number, not '80a'"):
        warehouse_resource()


def test_a_warehouse_found_whole_is_checked_again_once_its_file_changed(tmp_path, monkeypatch):
    from greenery_orchestration import warehouse_duckdb
    from greenery_orchestration.warehouse import WarehouseUnusable
    from greenery_orchestration.warehouse_duckdb import check_duckdb_warehouse

    path = tmp_path / "prod.duckdb"
    with duckdb.connect(str(path)) as connection:
        # The catalog ends up in the blocks `dropped` freed, before the events' data: a cut file still opens.
        connection.execute("create table dropped as select hash(range) as id from range(1000000); checkpoint")
        connection.execute("create schema raw; create table raw.events as select hash(range) as id from range(1000000)")
        connection.execute("checkpoint; drop table dropped; checkpoint")
    scans = []
    scan = warehouse_duckdb._last_data_block
    monkeypatch.setattr(warehouse_duckdb, "_last_data_block", lambda connection: scans.append(1) or scan(connection))
    check_duckdb_warehouse(path)  # whole
    check_duckdb_warehouse(path)
    assert len(scans) == 1  # unchanged: not read again
    with path.open("r+b") as handle:
        handle.truncate(path.stat().st_size * 2 // 3)

    with pytest.raises(WarehouseUnusable, match=r"prod\.duckdb is truncated"):
        check_duckdb_warehouse(path)


def test_dbt_and_the_python_writers_connect_to_duckdb_with_the_same_settings(warehouse):
    """One memory limit and no insertion order for every writer: dbt's models, the publish, the clones."""
    import json

    from greenery_orchestration.clone_duckdb import _connect
    from greenery_orchestration.project import dbt_resource

    settings = "select current_setting('memory_limit') as memory_limit, " \
               "current_setting('preserve_insertion_order') as preserve_insertion_order"
    invocation = dbt_resource().cli(["show", "--inline", settings, "--output", "json"])
    (shown,) = [json.loads(event.raw_event["data"]["preview"]) for event in invocation.stream_raw_events()
                if event.raw_event["info"]["name"] == "ShowNode"]
    with warehouse_resource().get_connection() as connection:
        publish = connection.execute(settings).fetchone()
    with _connect(warehouse / "dev.duckdb") as connection:
        clone = connection.execute(settings).fetchone()

    assert [tuple(row.values()) for row in shown] == [publish] == [clone]
    assert publish[1] is False


def test_opening_the_warehouse_outside_a_run_leaves_no_dagster_instance_behind(warehouse, dbt_manifest):
    """Resolving the resource enters a throwaway instance. Left open, it is closed when the
    warehouse goes: after the instance that was current when it opened, which it then made
    current again, closed; the next load of the definitions in this thread failed on it."""
    import gc

    from greenery_orchestration.definitions import defs

    with dg.DagsterInstance.get():  # as `greenery run` holds its turn's instance
        opened = open_warehouse()
    del opened  # kept past the instance: the funnel printed after the run reads it
    gc.collect()

    assert defs().resolve_asset_graph().get_all_asset_keys()
