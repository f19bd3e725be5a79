"""Clones carry no raw PII; prod keeps its clear values and its numbers."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from greenery_orchestration.chain.clone import table_changes
from greenery_orchestration.chain.masking import pii_columns
from greenery_orchestration.clone_duckdb import clone
from greenery_orchestration.settings import DBT_PROJECT_DIR, masking_salt
from greenery_orchestration.warehouse import Changes
from greenery_orchestration.warehouse_snowflake import snowflake_clone_sql


def _pii_values(prod):
    # Some first names are also US state names ("Georgia"): a state is not a leak.
    with duckdb.connect(str(prod), read_only=True) as connection:
        rows = connection.execute(
            "(select first_name from raw.users union select last_name from raw.users "
            "union select email from raw.users union select phone_number from raw.users "
            "union select address from raw.addresses) except select state from raw.addresses"
        ).fetchall()
    return {value for (value,) in rows}


def _relations(connection):
    return connection.execute(
        "select table_schema, table_name from information_schema.tables "
        "where table_catalog = current_database() order by all"
    ).fetchall()


@pytest.mark.parametrize("environment", ["dev", "ci"])
def test_no_raw_pii_value_in_any_column_of_any_relation_of_a_clone(course_run, course_data, environment):
    prod = course_run.warehouse / "prod.duckdb"
    pii = _pii_values(prod)
    assert _first_email(course_data) in pii and len(pii) > 500

    with duckdb.connect(str(course_run.warehouse / f"{environment}.duckdb"), read_only=True) as connection:
        connection.execute("create temp table pii as select unnest(?) as value", [sorted(pii)])
        relations = _relations(connection)
        leaks = []
        for schema, name in relations:
            for (column,) in connection.execute(
                "select column_name from information_schema.columns "
                "where table_catalog = current_database() and table_schema = ? and table_name = ?",
                [schema, name],
            ).fetchall():
                (hits,) = connection.execute(
                    f'select count(*) from "{schema}"."{name}" where cast("{column}" as varchar) in (select value from pii)'
                ).fetchall()[0]
                if hits:
                    leaks.append(f"{schema}.{name}.{column}: {hits}")
        masked_join = connection.execute(
            "select count(*) from marts.dim_users d join staging.stg_greenery__users s "
            "on d.user_id = s.user_id and d.email = s.email"
        ).fetchall()[0][0]
    assert len(relations) > 25  # raw, staging, intermediate, marts and the snapshot
    assert leaks == []
    assert masked_join == 130  # the same email masks to the same value everywhere


def _first_email(course_data) -> str:
    return pd.read_csv(course_data / "users.csv")["email"].iloc[0]


def test_prod_keeps_clear_values(course_run, course_data):
    with duckdb.connect(str(course_run.warehouse / "prod.duckdb"), read_only=True) as connection:
        emails = {e for (e,) in connection.execute("select email from marts.dim_users").fetchall()}
    assert _first_email(course_data) in emails


def test_the_snowflake_clone_is_zero_copy_and_granted_to_the_environment_role():
    statements = snowflake_clone_sql("GREENERY_PROD", "GREENERY_DEV", "DEV_ROLE")
    assert statements[0] == "create or replace database GREENERY_DEV clone GREENERY_PROD"
    assert all(s.endswith("to role DEV_ROLE") for s in statements[1:])


def test_the_incremental_models_and_the_snapshot_are_cloned_by_their_stamps_and_unique_keys(dbt_manifest):
    changes = table_changes(json.loads(dbt_manifest.read_text()))

    raw = {key: change for key, change in changes.items() if key.startswith("raw.")}
    # As the models' config blocks say.
    assert {key: change for key, change in changes.items() if key not in raw} == {
        "intermediate.int_sessions__aggregated": Changes("dbt_updated_at", ("session_id",), since="session_started_at"),
        "intermediate.int_session_products__aggregated": Changes(
            "dbt_updated_at", ("session_id", "product_id"), since="first_event_at"
        ),
        "intermediate.int_funnel_steps__reached": Changes("dbt_updated_at", ("funnel_name", "path_id"), since="started_at"),
        "intermediate.int_users__aggregated": Changes("dbt_updated_at", ("user_id",)),
        "marts.fct_events": Changes("dbt_updated_at"),  # appended (on DuckDB)
        "marts.fct_sessions": Changes("dbt_updated_at", ("session_id",), since="session_started_at"),
        "marts.fct_orders": Changes("dbt_updated_at", ("order_id",)),
        "marts.dim_users": Changes("dbt_updated_at", ("user_id",)),
        "snapshots.orders_snapshot": Changes("dbt_updated_at", ("dbt_scd_id",), closed_by="dbt_valid_to"),
    }
    # Every raw table carries the load marker its source declares.
    assert raw == {
        f"raw.{table}": Changes("_loaded_at")
        for table in ("addresses", "events", "order_items", "orders", "products", "promos", "users")
    }


def _column(name: str, meta: dict | None = None, config_meta: dict | None = None) -> dict:
    return {"name": name, "meta": meta or {}, "config": {"meta": config_meta or {}}}


def test_raw_tables_are_cloned_by_their_declared_load_marker_and_check_snapshots_by_their_columns():
    def model(name, materialized, unique_key=None):
        return {"resource_type": "model", "schema": "marts", "alias": name,
                "config": {"materialized": materialized, "unique_key": unique_key}}

    manifest = {
        "nodes": {
            "model.g.fct_a": model("fct_a", "incremental", "a_id"),
            "model.g.fct_b": model("fct_b", "incremental", ["b_id", "day"]),
            "model.g.dim_c": model("dim_c", "table", "c_id"),
            # Stamped with the source's updated_at, which can be older than a clone's newest stamp.
            "snapshot.g.orders_snapshot": {"resource_type": "snapshot", "schema": "snapshots", "alias": "orders_snapshot",
                                           "config": {"unique_key": "order_id", "strategy": "timestamp"}},
            "snapshot.g.items_snapshot": {"resource_type": "snapshot", "schema": "snapshots", "alias": "items_snapshot",
                                          "config": {"unique_key": "item_id", "strategy": "check", "snapshot_meta_column_names": {
                                              "dbt_valid_to": "valid_until", "dbt_scd_id": None}}},
        },
        "sources": {
            "source.g.greenery.events": {"schema": "raw", "identifier": "events", "columns": {
                "event_id": _column("event_id"), "_loaded_at": _column("_loaded_at", config_meta={"load_marker": True}),
            }},
            "source.g.greenery.users": {"schema": "raw", "identifier": "users", "columns": {
                "email": _column("email", config_meta={"pii": True}), "loaded": _column("loaded", meta={"load_marker": True}),
            }},
            "source.g.greenery.promos": {"schema": "raw", "identifier": "promos", "columns": {
                "promo_id": _column("promo_id"),
            }},
        },
    }

    assert table_changes(manifest) == {
        "marts.fct_a": Changes("dbt_updated_at", ("a_id",)),
        "marts.fct_b": Changes("dbt_updated_at", ("b_id", "day")),
        "snapshots.items_snapshot": Changes("dbt_updated_at", ("dbt_scd_id",), closed_by="valid_until"),
        "raw.events": Changes("_loaded_at"),
        "raw.users": Changes("loaded"),
    }


def test_the_next_clone_updates_the_environments_in_place_to_what_a_whole_clone_holds(course_run, tmp_path, dbt_manifest):
    """On the course build: what a next run adds (raw rows loaded later, an incremental model's
    rows rebuilt and new, a table rebuilt whole) reaches dev and ci by their markers."""
    folder = tmp_path / "warehouse"
    shutil.copytree(course_run.warehouse, folder, ignore=shutil.ignore_patterns("docs-site"))
    prod = folder / "prod.duckdb"
    with duckdb.connect(str(prod)) as connection:
        connection.execute(
            "insert into raw.events select * replace ('late-' || event_id as event_id, now()::timestamp as _loaded_at) "
            "from raw.events order by event_id limit 3"
        )
        # Rebuilt sessions replace theirs by key; one session is new. fct_events appends: one event is new.
        connection.execute(
            "create temp table rebuilt as select * replace (now()::timestamp as dbt_updated_at) "
            "from marts.fct_sessions order by session_id limit 2"
        )
        connection.execute("delete from marts.fct_sessions where session_id in (select session_id from rebuilt)")
        connection.execute("insert into marts.fct_sessions select * from rebuilt")
        connection.execute(
            "insert into marts.fct_sessions select * replace ('new-' || session_id as session_id) from rebuilt limit 1"
        )
        connection.execute(
            "insert into marts.fct_events select * replace ('new-' || event_id as event_id, now()::timestamp as dbt_updated_at) "
            "from marts.fct_events order by event_id limit 1"
        )
        connection.execute("update marts.dim_products set product_name = product_name || ' (renamed)' "
                            "where product_id = (select min(product_id) from marts.dim_products)")
        # An order that ships, loaded as a loader stamps it: the snapshot's next run closes its
        # version and writes a new one.
        (shipped,) = connection.execute(
            "update raw.orders set status = 'shipped', tracking_id = 'late-tracking', _loaded_at = now()::timestamp "
            "where order_id = (select min(order_id) from raw.orders where status = 'preparing') returning order_id"
        ).fetchone()
    snapshot = subprocess.run(
        [str(Path(sys.executable).with_name("dbt")), "snapshot", "--quiet", "--target-path", str(tmp_path / "target")],
        cwd=DBT_PROJECT_DIR, capture_output=True, text=True, check=False,
        env={**os.environ, "GREENERY_WAREHOUSE_DIR": str(folder), "DBT_LOG_PATH": str(tmp_path / "logs")},
    )
    assert snapshot.returncode == 0, snapshot.stdout[-3000:]
    manifest = json.loads(dbt_manifest.read_text())
    pii, salt = pii_columns(manifest), masking_salt(folder)
    environments = [folder / "dev.duckdb", folder / "ci.duckdb"]

    cloned = clone(prod, environments, pii, salt, table_changes(manifest))

    for environment in environments:
        assert cloned[environment].in_place
        assert cloned[environment].rows["raw.events"] == 3
        assert cloned[environment].rows["marts.fct_sessions"] == 3
        assert cloned[environment].rows["marts.fct_events"] == 1
        assert cloned[environment].rows["raw.users"] == 0
        assert cloned[environment].rows["snapshots.orders_snapshot"] == 2  # the closed version and the new one
    fresh = tmp_path / "fresh.duckdb"
    clone(prod, [fresh], pii, salt, {})
    expected = _every_row(fresh)
    assert len(expected["marts.fct_sessions"]) == _course_rows(course_run, "fct_sessions") + 1  # two replaced, one new
    assert len(expected["marts.fct_events"]) == _course_rows(course_run, "fct_events") + 1
    versions = [row for row in expected["snapshots.orders_snapshot"] if shipped in row]
    assert len(versions) == 2
    for environment in environments:
        assert _every_row(environment) == expected


def _course_rows(course_run, mart: str) -> int:
    with duckdb.connect(str(course_run.warehouse / "prod.duckdb"), read_only=True) as connection:
        return connection.execute(f"select count(*) from marts.{mart}").fetchone()[0]


def _every_row(path) -> dict[str, list[tuple]]:
    with duckdb.connect(str(path), read_only=True) as connection:
        return {
            f"{schema}.{name}": sorted(connection.execute(f'select * from "{schema}"."{name}"').fetchall(), key=repr)
            for schema, name in _relations(connection)
        }
