"""Clones carry no raw PII; prod keeps its clear values and its numbers."""

import duckdb
import pandas as pd
import pytest

from greenery_orchestration.warehouse_duckdb import clone_duckdb
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


def test_a_clone_replaces_the_environment_whole_while_a_reader_holds_the_old_one(tmp_path):
    prod, dev = tmp_path / "prod.duckdb", tmp_path / "dev.duckdb"
    with duckdb.connect(str(prod)) as connection:
        connection.execute("create schema raw; create table raw.users as select 'a@example.com' as email, 1 as n")
    clone_duckdb(prod, dev, {"raw.users": ["email"]}, salt="s")
    reader = duckdb.connect(str(dev), read_only=True)
    with duckdb.connect(str(prod)) as connection:
        connection.execute("insert into raw.users values ('b@example.com', 2)")

    copied = clone_duckdb(prod, dev, {"raw.users": ["email"]}, salt="s")

    assert copied == {"raw.users": 2}
    assert reader.execute("select count(*) from raw.users").fetchall() == [(1,)]  # the old file, whole
    reader.close()
    with duckdb.connect(str(dev), read_only=True) as connection:
        emails = [e for (e,) in connection.execute("select email from raw.users order by n").fetchall()]
    assert len(emails) == 2 and all(e.startswith("masked_") for e in emails)
    assert not (tmp_path / "dev.duckdb.partial").exists()


def test_a_failed_clone_leaves_the_previous_environment(tmp_path):
    prod, dev = tmp_path / "prod.duckdb", tmp_path / "dev.duckdb"
    with duckdb.connect(str(prod)) as connection:
        connection.execute("create schema raw; create table raw.users as select 'a@example.com' as email")
    clone_duckdb(prod, dev, {"raw.users": ["email"]}, salt="s")

    with pytest.raises(duckdb.Error):
        clone_duckdb(tmp_path / "missing.duckdb", dev, {}, salt="s")

    with duckdb.connect(str(dev), read_only=True) as connection:
        assert connection.execute("select count(*) from raw.users").fetchall() == [(1,)]


def test_the_snowflake_clone_is_zero_copy_and_granted_to_the_environment_role():
    statements = snowflake_clone_sql("GREENERY_PROD", "GREENERY_DEV", "DEV_ROLE")
    assert statements[0] == "create or replace database GREENERY_DEV clone GREENERY_PROD"
    assert all(s.endswith("to role DEV_ROLE") for s in statements[1:])


def test_views_are_recreated_over_the_masked_tables(tmp_path):
    prod, dev = tmp_path / "prod.duckdb", tmp_path / "dev.duckdb"
    with duckdb.connect(str(prod)) as connection:
        connection.execute(
            "create schema raw; create schema staging; create schema marts;"
            "create table raw.users as select 'a@example.com' as email, 1 as n;"
            "create view staging.stg_users as select lower(email) as email, n from raw.users;"
            # a view over a view, named so that it sorts (and is first tried) before the one it reads
            "create view marts.active_users as select email from staging.stg_users where n > 0;"
        )

    copied = clone_duckdb(prod, dev, {"raw.users": ["email"], "staging.stg_users": ["email"]}, salt="s")

    assert copied == {"raw.users": 1}
    with duckdb.connect(str(dev), read_only=True) as connection:
        kinds = connection.execute(
            "select table_schema || '.' || table_name, table_type from information_schema.tables order by 1"
        ).fetchall()
        (email,) = connection.execute("select email from marts.active_users").fetchall()[0]
    assert kinds == [("marts.active_users", "VIEW"), ("raw.users", "BASE TABLE"), ("staging.stg_users", "VIEW")]
    assert email.startswith("masked_")


def test_a_view_that_reads_another_database_fails_the_clone(tmp_path):
    prod, other, dev = tmp_path / "prod.duckdb", tmp_path / "other.duckdb", tmp_path / "dev.duckdb"
    with duckdb.connect(str(other)) as connection:
        connection.execute("create table secrets as select 'a@example.com' as email")
    with duckdb.connect(str(prod)) as connection:
        connection.execute(f"attach '{other}' as other (read_only)")
        connection.execute("create view leak as select email from other.secrets")

    with pytest.raises(duckdb.Error):
        clone_duckdb(prod, dev, {}, salt="s")

    assert not dev.exists() and not (tmp_path / "dev.duckdb.partial").exists()


def test_one_masked_clone_is_copied_to_every_other_environment(tmp_path):
    prod, dev, ci = tmp_path / "prod.duckdb", tmp_path / "dev.duckdb", tmp_path / "ci.duckdb"
    with duckdb.connect(str(prod)) as connection:
        connection.execute("create schema raw; create table raw.users as select 'a@example.com' as email, 1 as n")
        connection.execute("create view raw.emails as select email from raw.users")

    copied = clone_duckdb(prod, dev, {"raw.users": ["email"]}, salt="s", also_to=[ci])

    assert copied == {"raw.users": 1}
    rows = {}
    for environment in (dev, ci):
        with duckdb.connect(str(environment), read_only=True) as connection:
            rows[environment.stem] = connection.execute("select email from raw.emails").fetchall()
    assert rows["dev"] == rows["ci"] and rows["dev"][0][0].startswith("masked_")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ci.duckdb", "dev.duckdb", "prod.duckdb"]
