"""The freshness gate: stale raw data stops the chain before masking, with an alert."""

import shutil
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from greenery_orchestration.cli import main


def test_stale_raw_data_stops_the_chain_before_masking_and_alerts(warehouse, course_data, alert_inbox, capsys):
    assert main(["load-csv", str(course_data)]) == 0

    assert main(["run"]) == 1

    with dg.DagsterInstance.get() as instance:
        (run,) = instance.get_runs(dg.RunsFilter(job_name="greenery_production"), limit=1)
        materialized = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    assert run.status == dg.DagsterRunStatus.FAILURE
    assert materialized == []  # no masking, no snapshot, no model
    with duckdb.connect(str(warehouse / "prod.duckdb"), read_only=True) as connection:
        schemas = {s for (s,) in connection.execute("select distinct table_schema from information_schema.tables").fetchall()}
    assert schemas == {"raw", "ops"}  # the raw tables and their load log, nothing built

    shown = capsys.readouterr().out
    assert "ERROR check source_freshness on raw/events: newest row" in shown
    assert "error after 24 hour(s)" in shown and "greenery run --allow-stale" in shown
    (alert,) = alert_inbox.received
    assert alert["type"] == "failure"
    assert alert["title"] == "[greenery] greenery_production failed"
    for expected in [
        "ERROR check source_freshness on raw/events: newest row",
        "(at 2021-02-12T08:55:36+00:00)",  # the newest event of the course data
        "threshold: warn after 12 hour(s), error after 24 hour(s)",
        "ERROR check source_freshness on raw/orders",
        "step raw_data_gate: 2 blocking asset checks failed with ERROR severity",
        f"/runs/{run.run_id}",
    ]:
        assert expected in alert["message"]


def test_allow_stale_builds_and_alerts_a_warning(course_run):
    (alert,) = [a for a in course_run.alerts if "greenery_production" in a["title"]]
    assert alert["type"] == "warning"
    assert "succeeded with warnings" in alert["message"]
    assert "WARN check source_freshness on raw/events" in alert["message"]
    assert (course_run.warehouse / "prod.duckdb").exists()
    assert (course_run.warehouse / "dev.duckdb").exists()


@pytest.mark.parametrize(("age", "status"), [
    (timedelta(hours=11, minutes=59), "pass"), (timedelta(hours=12, minutes=1), "warn"),
    (timedelta(hours=24, minutes=1), "error"), (None, "error"),
])
def test_the_gate_judges_each_source_by_its_dbt_thresholds(age, status):
    from greenery_orchestration.assets.sources import _freshness_result

    criterion = {"warn_after": {"count": 12, "period": "hour"}, "error_after": {"count": 1, "period": "day"}}
    checked_at = datetime(2026, 12, 5, 12, tzinfo=UTC)
    newest = None if age is None else checked_at.replace(tzinfo=None) - age  # naive UTC, as the warehouse holds it
    result = _freshness_result(dg.AssetKey(["raw", "events"]), criterion, newest, checked_at, allow_stale=False)
    allowed = _freshness_result(dg.AssetKey(["raw", "events"]), criterion, newest, checked_at, allow_stale=True)

    assert result.metadata["status"].value == status
    assert result.passed is allowed.passed is (status == "pass")
    if status != "pass":  # --allow-stale makes a stale source a warning
        assert result.severity == (dg.AssetCheckSeverity.ERROR if status == "error" else dg.AssetCheckSeverity.WARN)
        assert allowed.severity == dg.AssetCheckSeverity.WARN
    assert result.metadata["age_hours"].value == (None if age is None else round(age / timedelta(hours=1), 1))


def test_the_gate_reads_freshness_once_another_process_lets_go_of_the_file(tmp_path):
    """A sensor tick or a CLI command may hold the DuckDB file's one lock as the gate starts."""
    from greenery_orchestration.assets.sources import _when_unlocked
    from greenery_orchestration.warehouse import WarehouseBusy
    from greenery_orchestration.warehouse_duckdb import DuckDBWarehouse

    path = tmp_path / "prod.duckdb"
    with duckdb.connect(str(path)) as connection:
        connection.execute("create schema raw; create table raw.events (created_at timestamp)")
        connection.execute("insert into raw.events values ('2026-12-01 10:00:00')")
    key = dg.AssetKey(["raw", "events"])
    criteria = {key: {"loaded_at_field": "created_at", "relation_name": "raw.events"}}
    warehouse = DuckDBWarehouse(database=str(path))
    hold = "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True); time.sleep(3)"
    with subprocess.Popen([sys.executable, "-c", hold, str(path)], stdout=subprocess.PIPE, text=True) as holder:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(WarehouseBusy):  # what a sensor tick gets: it skips and looks again
            warehouse.newest_loaded_at(criteria)
        assert _when_unlocked(lambda: warehouse.newest_loaded_at(criteria)) == {key: datetime(2026, 12, 1, 10)}
    assert holder.returncode == 0


def test_the_gate_refuses_a_truncated_warehouse_before_any_step_writes(course_run, tmp_path, monkeypatch):
    """The daemon's path: no `greenery run` looked at the file first."""
    import shutil

    from greenery_orchestration.definitions import defs

    folder = tmp_path / "warehouse"
    folder.mkdir()
    damaged = folder / "prod.duckdb"
    shutil.copy(course_run.warehouse / "prod.duckdb", damaged)
    with damaged.open("r+b") as handle:
        handle.truncate(damaged.stat().st_size * 2 // 3)
    before = damaged.read_bytes()
    monkeypatch.setenv("GREENERY_WAREHOUSE_DIR", str(folder))

    result = defs().resolve_job_def("greenery_production").execute_in_process(
        instance=dg.DagsterInstance.get(), raise_on_error=False
    )

    (failure,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert failure.step_key == "raw_data_gate"
    assert f"Failure: {damaged} is truncated (" in failure.step_failure_data.error.message
    assert result.get_asset_materialization_events() == []
    assert damaged.read_bytes() == before


# --- the tests on raw tables read what was loaded since the last publishing run began ---------


def _failed_checks(instance: dg.DagsterInstance) -> dict[str, int]:
    """{check name: failing rows} of the newest production run's failed checks."""
    (run,) = instance.get_runs(dg.RunsFilter(job_name="greenery_production"), limit=1)
    records = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    evaluations = [r.event_log_entry.dagster_event.asset_check_evaluation_data for r in records]
    return {
        e.check_name: e.metadata["dagster_dbt/failed_row_count"].value
        for e in evaluations if not e.passed and e.check_name != "source_freshness"
    }


@pytest.fixture
def published(course_run, warehouse) -> dict:
    """A copy of the course warehouse, published once by `greenery run`: when that run began and
    published, and the raw rows as it tested them."""
    shutil.copy(course_run.warehouse / "prod.duckdb", warehouse / "prod.duckdb")
    with duckdb.connect(str(warehouse / "prod.duckdb"), read_only=True) as connection:
        ((started, published_at),) = connection.execute(
            "select run_started_at, published_at from ops.publish_log").fetchall()
        ((loaded_at,),) = connection.execute("select distinct _loaded_at from raw.events").fetchall()
        ((user_id,),) = connection.execute("select min(user_id) from raw.users").fetchall()
        ((order_id,),) = connection.execute("select min(order_id) from raw.orders").fetchall()
        ((item,),) = connection.execute(
            "select min({'order_id': order_id, 'product_id': product_id}) from raw.order_items").fetchall()
        ((promos,),) = connection.execute("select count(*) from raw.promos").fetchall()
    return {"database": warehouse / "prod.duckdb", "started": started, "published_at": published_at,
            "loaded_at": loaded_at, "user_id": user_id, "order_id": order_id, "item": item, "promos": promos}


def _insert(database: Path, table: str, rows: list[dict]) -> None:
    with duckdb.connect(str(database)) as connection:
        for row in rows:
            connection.execute(
                f"insert into raw.{table} ({', '.join(row)}) values ({', '.join('?' * len(row))})", list(row.values()))


def _event(loaded_at: datetime | None, **values) -> dict:
    return {"event_id": str(uuid.uuid4()), "session_id": str(uuid.uuid4()), "event_type": "page_view",
            "created_at": datetime(2021, 2, 12, 9), "_loaded_at": loaded_at, **values}


def test_the_gate_tests_the_raw_rows_loaded_since_the_last_publishing_run_began(published, capsys):
    started, published_at = published["started"], published["published_at"]
    assert published["loaded_at"] < started < published_at  # loaded, then the run began, then published
    now = datetime.now(UTC).replace(tzinfo=None)
    _insert(published["database"], "events", [
        # Bad, but loaded before the run began: that run's gate read it, this one does not.
        _event(started - timedelta(seconds=1), event_type="bogus"),
        # Loaded while that run went on: not read by its gate, so by this one.
        _event(started + (published_at - started) / 2, session_id=None),
        # A new child of an old parent: relationships reads every parent.
        _event(now, event_type="checkout", order_id=published["order_id"]),
        # No marker (a row written some other way than by the loaders): read.
        _event(None, created_at=None),
    ])
    # A new row repeating a key an old row holds: unique reads the old row too.
    _insert(published["database"], "users", [{"user_id": published["user_id"], "_loaded_at": now}])
    # The same of a key of two columns; and new children of no parent.
    _insert(published["database"], "order_items", [
        {**published["item"], "quantity": 1, "_loaded_at": now},
        {"order_id": "no-such-order", "product_id": published["item"]["product_id"], "quantity": 1, "_loaded_at": now},
    ])
    _insert(published["database"], "orders", [{
        "order_id": str(uuid.uuid4()), "user_id": "no-such-user", "created_at": datetime(2021, 2, 12, 9),
        "status": "preparing", "_loaded_at": now,
    }])
    with duckdb.connect(str(published["database"])) as connection:
        connection.execute("delete from raw.promos")  # old rows gone: the volume test reads every row

    assert main(["run", "--allow-stale"]) == 1

    with dg.DagsterInstance.get() as instance:
        assert _failed_checks(instance) == {
            "source_not_null_greenery_events_session_id": 1,
            "source_not_null_greenery_events_created_at": 1,
            "source_unique_greenery_users_user_id": 1,
            "source_unique_combination_of_columns_greenery_order_items_order_id__product_id": 1,
            "source_relationships_greenery_order_items_order_id__greenery_orders": 1,
            "source_relationships_greenery_orders_user_id__greenery_users": 1,
            "source_not_empty_nor_shrunk_greenery_promos": published["promos"],
        }

    # A full refresh reads every row: the old bad row too.
    assert main(["run", "--allow-stale", "--full-refresh"]) == 1

    with dg.DagsterInstance.get() as instance:
        assert _failed_checks(instance) == {
            "source_not_null_greenery_events_session_id": 1,
            "source_not_null_greenery_events_created_at": 1,
            "source_accepted_values_greenery_events_event_type__page_view__add_to_cart__checkout__package_shipped": 1,
            "source_unique_greenery_users_user_id": 1,
            "source_unique_combination_of_columns_greenery_order_items_order_id__product_id": 1,
            "source_relationships_greenery_order_items_order_id__greenery_orders": 1,
            "source_relationships_greenery_orders_user_id__greenery_users": 1,
            "source_not_empty_nor_shrunk_greenery_promos": published["promos"],
        }
    capsys.readouterr()


def test_a_run_without_the_gate_leaves_the_rows_loaded_before_it_to_the_next_gate(published, capsys):
    """A run of a few assets from the UI (here the snapshot and the publish) publishes, but tested
    no raw row: the next gate still reads every row loaded since the last run that had a gate."""
    from greenery_orchestration.definitions import defs

    _insert(published["database"], "events", [_event(datetime.now(UTC).replace(tzinfo=None), session_id=None)])
    result = defs().resolve_job_def("greenery_production").execute_in_process(
        instance=dg.DagsterInstance.get(),
        asset_selection=[dg.AssetKey(["snapshots", "orders_snapshot"]), dg.AssetKey(["governance", "publish"])],
    )
    assert result.success
    with duckdb.connect(str(published["database"]), read_only=True) as connection:
        logged = connection.execute("select run_started_at from ops.publish_log order by published_at").fetchall()
    assert logged == [(published["started"],), (None,)]

    assert main(["run", "--allow-stale"]) == 1

    with dg.DagsterInstance.get() as instance:
        assert _failed_checks(instance) == {"source_not_null_greenery_events_session_id": 1}
    capsys.readouterr()
