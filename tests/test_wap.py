"""Publishing a staged build: all of it in one transaction, or none of it."""

import json
from datetime import datetime

import duckdb
import pytest

from greenery_orchestration import wap

EVENTS = wap.Relation("marts", "fct_events", ("event_id",))
FUNNEL = wap.Relation("marts", "fct_funnel")
FUNNEL_VIEW = wap.Relation("staging", "stg_funnel")
STARTED = datetime(2026, 3, 1, 9, 30)  # when the publishing run began


@pytest.fixture
def warehouse(tmp_path):
    """Published: 3 events, a funnel table and a view on it. Staged: a delta of 2 events (one
    replaces event e2, one is new), a rebuilt funnel and the view on the staged funnel."""
    with duckdb.connect(str(tmp_path / "prod.duckdb")) as connection:
        connection.execute("""
            create schema marts; create schema staging; create schema raw;
            create table raw.events as select 'e' || i as event_id from range(4) t(i);
            create table marts.fct_events as select * from (values ('e0', 'old'), ('e1', 'old'), ('e2', 'old')) t(event_id, note);
            create table marts.fct_events__delta as select * from (values ('e2', 'new'), ('e3', 'new')) t(event_id, note);
            create view marts.fct_events__staged as
                select * from marts.fct_events where event_id not in (select event_id from marts.fct_events__delta)
                union all select * from marts.fct_events__delta;
            create table marts.fct_funnel as select 1 as sessions;
            create table marts.fct_funnel__staged as select 2 as sessions;
            create view staging.stg_funnel as select sessions from marts.fct_funnel;
            create view staging.stg_funnel__staged as select sessions * 10 as sessions from marts.fct_funnel__staged;
        """)
        yield connection


def _rows(connection, sql):
    return sorted(connection.execute(sql).fetchall())


def test_a_publish_merges_deltas_renames_tables_recreates_views_and_logs(warehouse):
    counts = wap.publish(warehouse, [EVENTS, FUNNEL, FUNNEL_VIEW], "run-1", "abc123", run_started_at=STARTED)

    assert _rows(warehouse, "select * from marts.fct_events") == [("e0", "old"), ("e1", "old"), ("e2", "new"), ("e3", "new")]
    assert _rows(warehouse, "select * from marts.fct_funnel") == [(2,)]
    assert _rows(warehouse, "select * from staging.stg_funnel") == [(20,)]  # reads the published table now
    assert _rows(warehouse, "select sql from duckdb_views() where view_name = 'stg_funnel'")[0][0].count("__staged") == 0
    assert counts == {"marts.fct_events": 4, "marts.fct_funnel": 1, "raw.events": 4}
    (logged,) = warehouse.execute("select run_id, code_version, row_counts, run_started_at from ops.publish_log").fetchall()
    assert logged[:2] == ("run-1", "abc123") and json.loads(logged[2]) == counts and logged[3] == STARTED
    assert wap.last_publish(warehouse)[0] == "run-1"
    leftovers = warehouse.execute(
        "select table_name from duckdb_tables() where table_name like '%\\_\\_%' escape '\\' "
        "union all select view_name from duckdb_views() where view_name like '%\\_\\_%' escape '\\'"
    ).fetchall()
    assert leftovers == []


def test_a_publish_log_from_before_run_started_at_gains_it(warehouse):
    warehouse.execute("create schema ops")
    warehouse.execute("create table ops.publish_log (run_id varchar, published_at timestamp, code_version varchar, "
                      "row_counts varchar)")
    warehouse.execute("insert into ops.publish_log values ('run-0', timestamp '2026-02-01 10:00', 'old', '{}')")

    wap.publish(warehouse, [EVENTS, FUNNEL, FUNNEL_VIEW], "run-1", "abc123", run_started_at=STARTED)

    columns = warehouse.execute("select column_name from duckdb_columns() where table_name = 'publish_log' "
                                "order by column_index").fetchall()
    assert [name for (name,) in columns] == list(wap.PUBLISH_LOG_COLUMNS)
    assert _rows(warehouse, "select run_id, run_started_at from ops.publish_log") == [("run-0", None), ("run-1", STARTED)]


def test_a_publish_that_fails_changes_nothing(warehouse):
    before = {
        sql: _rows(warehouse, sql)
        for sql in ["select * from marts.fct_events", "select * from marts.fct_funnel", "select * from staging.stg_funnel"]
    }
    missing = wap.Relation("marts", "fct_orders")  # this run "built" it, but nothing is staged

    with pytest.raises(wap.NothingStaged, match=r"marts\.fct_orders: .*fct_orders__staged is missing"):
        wap.publish(warehouse, [EVENTS, FUNNEL, FUNNEL_VIEW, missing], "run-1", "abc123", run_started_at=STARTED)

    assert {sql: _rows(warehouse, sql) for sql in before} == before
    assert wap.last_publish(warehouse) is None
    assert warehouse.execute("select count(*) from marts.fct_events__delta").fetchone() == (2,)  # kept


def test_a_first_build_publishes_a_whole_table(warehouse):
    warehouse.execute("drop table marts.fct_events; drop view marts.fct_events__staged; drop table marts.fct_events__delta")
    warehouse.execute("create table marts.fct_events__staged as select 'e9' as event_id, 'full' as note")
    wap.publish(warehouse, [EVENTS], "run-1", "abc123", run_started_at=STARTED)
    assert _rows(warehouse, "select * from marts.fct_events") == [("e9", "full")]


def test_a_view_of_a_view_is_published_after_the_view_it_reads(warehouse):
    """The views are created in the publish's transaction, where DuckDB cannot try one again once
    it failed: a view that reads another (named first, by sort order) must come after it."""
    warehouse.execute("""
        create schema intermediate;
        create view intermediate.a_funnel_tenfold as select sessions from staging.stg_funnel;
        create view intermediate.a_funnel_tenfold__staged as select sessions from staging.stg_funnel__staged;
    """)
    built = [EVENTS, FUNNEL, FUNNEL_VIEW, wap.Relation("intermediate", "a_funnel_tenfold")]

    wap.publish(warehouse, built, "run-2", "code-2", run_started_at=STARTED)

    assert _rows(warehouse, "select * from intermediate.a_funnel_tenfold") == [(20,)]


def test_views_that_read_each_other_in_a_cycle_are_refused_before_any_is_created():
    statements = ["create view s.a as select * from s.b", "create view s.b as select * from s.a"]
    with duckdb.connect() as connection, pytest.raises(ValueError, match="in a cycle"):
        wap.create_views(connection, statements)
