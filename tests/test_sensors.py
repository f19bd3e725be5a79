"""The sensors, evaluated through Dagster's testing API against real runs and a real warehouse."""


import dagster as dg
import duckdb

from greenery_orchestration.cli import main
from tests.conftest import another_writer
from greenery_orchestration.warehouse import warehouse_resource
from greenery_orchestration.sensors import (
    alert_on_failed_run,
    docs_and_clone_after_production,
    raw_freshness_sensor,
)


def _latest_run_and_event(instance, job_name, event_type):
    (run,) = instance.get_runs(dg.RunsFilter(job_name=job_name), limit=1)
    (record,) = instance.get_records_for_run(run.run_id, of_type=event_type).records
    return run, record.event_log_entry.dagster_event


def test_a_successful_production_run_requests_docs_and_clone_once(course_run):
    with course_run.instance() as instance:
        run, success = _latest_run_and_event(instance, "greenery_production", dg.DagsterEventType.RUN_SUCCESS)
        context = dg.build_run_status_sensor_context(
            sensor_name=docs_and_clone_after_production.name,
            dagster_event=success,
            dagster_instance=instance,
            dagster_run=run,
        )
        request = docs_and_clone_after_production(context)
    assert request.run_key == run.run_id  # one docs-and-clone run per production run
    assert docs_and_clone_after_production.job_name == "greenery_docs_and_clone"


def test_a_failed_run_alerts_with_its_failed_check_and_a_link(warehouse, course_data, alert_inbox):
    assert main(["load-csv", str(course_data)]) == 0
    assert main(["run"]) == 1  # stale: the gate fails the run
    alert_inbox.received.clear()
    with dg.DagsterInstance.get() as instance:
        run, failure = _latest_run_and_event(instance, "greenery_production", dg.DagsterEventType.RUN_FAILURE)
        context = dg.build_run_status_sensor_context(
            sensor_name=alert_on_failed_run.name,
            dagster_event=failure,
            dagster_instance=instance,
            dagster_run=run,
        ).for_run_failure()
        alert_on_failed_run(context)
    (alert,) = alert_inbox.received
    assert alert["title"] == "[greenery] greenery_production failed"
    assert "source_freshness on raw/events" in alert["message"]
    assert f"http://127.0.0.1:3000/runs/{run.run_id}" in alert["message"]


def test_freshness_sensor_alerts_once_per_incident_and_once_on_recovery(warehouse, course_data, alert_inbox):
    assert main(["load-csv", str(course_data)]) == 0

    first = raw_freshness_sensor(dg.build_sensor_context(instance=dg.DagsterInstance.get(), resources={"warehouse": warehouse_resource()}))
    assert sorted(alert_inbox.titles()) == ["[greenery] raw/events is stale", "[greenery] raw/orders is stale"]
    assert "past its error threshold of 24.0 h" in alert_inbox.received[0]["message"]
    stale_ages = {o.asset_key.to_user_string(): o.metadata["stale"].value for o in first.asset_events}
    assert stale_ages == {"raw/events": True, "raw/orders": True}

    second = raw_freshness_sensor(dg.build_sensor_context(instance=dg.DagsterInstance.get(), resources={"warehouse": warehouse_resource()}, cursor=first.cursor))
    assert len(alert_inbox.received) == 2  # still stale: no new alert

    with duckdb.connect(str(warehouse / "prod.duckdb")) as connection:  # a clock wrong upstream
        connection.execute("update raw.events set created_at = timestamp '2099-01-01' "
                           "where event_id = (select max(event_id) from raw.events)")
    third = raw_freshness_sensor(dg.build_sensor_context(instance=dg.DagsterInstance.get(), resources={"warehouse": warehouse_resource()}, cursor=second.cursor))
    assert len(alert_inbox.received) == 2  # a row from the future is no fresh data

    with duckdb.connect(str(warehouse / "prod.duckdb")) as connection:
        connection.execute("update raw.events set created_at = timezone('UTC', now()) - interval 1 hour "
                           "where event_id = (select min(event_id) from raw.events)")
    raw_freshness_sensor(dg.build_sensor_context(instance=dg.DagsterInstance.get(), resources={"warehouse": warehouse_resource()}, cursor=third.cursor))
    assert alert_inbox.titles()[2:] == ["[greenery] raw/events is fresh again"]
    assert alert_inbox.received[2]["type"] == "success"


def test_freshness_sensor_skips_while_a_run_writes_the_warehouse(warehouse, course_data, alert_inbox):
    assert main(["load-csv", str(course_data)]) == 0
    with another_writer(warehouse / "prod.duckdb"):
        result = raw_freshness_sensor(
            dg.build_sensor_context(instance=dg.DagsterInstance.get(), resources={"warehouse": warehouse_resource()})
        )
    assert isinstance(result, dg.SkipReason)
    assert "warehouse busy" in result.skip_message
    assert alert_inbox.received == []
