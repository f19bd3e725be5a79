"""What happens between and after runs: the second job, alerts, and raw-data freshness."""

import json
from datetime import UTC, datetime, timedelta

import dagster as dg

from greenery_orchestration import alerts
from greenery_orchestration.assets.sources import freshness_criteria, freshness_limit, freshness_status
from greenery_orchestration.jobs import greenery_docs_and_clone, greenery_production
from greenery_orchestration.settings import freshness_sensor_seconds
from greenery_orchestration.warehouse import Warehouse, WarehouseBusy

CHAIN_JOBS = [greenery_production, greenery_docs_and_clone]


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[greenery_production],
    request_job=greenery_docs_and_clone,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="After every successful production run: publish the docs and clone prod.",
)
def docs_and_clone_after_production(context: dg.RunStatusSensorContext) -> dg.RunRequest:
    return dg.RunRequest(run_key=context.dagster_run.run_id, tags={"greenery/after_run": context.dagster_run.run_id})


@dg.run_failure_sensor(
    monitored_jobs=CHAIN_JOBS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alert on a failed run of either job, naming its failed steps and checks.",
)
def alert_on_failed_run(context: dg.RunFailureSensorContext) -> None:
    _send_run_alert(context)


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=CHAIN_JOBS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alert on a successful run whose checks warned (a run-failure sensor never sees them).",
)
def alert_on_warnings(context: dg.RunStatusSensorContext) -> None:
    _send_run_alert(context)


def _send_run_alert(context: dg.RunStatusSensorContext) -> None:
    alert = alerts.run_alert(context.instance, context.dagster_run)
    if alert:
        alerts.send(alert)


@dg.sensor(
    minimum_interval_seconds=freshness_sensor_seconds(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Newest row of each raw source with dbt freshness thresholds; alerts once when a "
    "source goes stale and once when it recovers.",
)
def raw_freshness_sensor(
    context: dg.SensorEvaluationContext, warehouse: dg.ResourceParam[Warehouse]
) -> dg.SensorResult | dg.SkipReason:
    criteria = freshness_criteria()
    try:
        newest = warehouse.newest_loaded_at(criteria)
    except WarehouseBusy as busy:
        return dg.SkipReason(f"warehouse busy, trying again next tick: {busy}")
    now = datetime.now(UTC)
    was_stale = json.loads(context.cursor) if context.cursor else {}
    is_stale, observations = {}, []
    for key, criterion in criteria.items():
        limit = freshness_limit(criterion["error_after"])
        status, age = freshness_status(criterion, newest[key], now)
        name = key.to_user_string()
        is_stale[name] = status == "error"
        observed = "no rows" if age is None else _hours(age)
        if is_stale[name] != was_stale.get(name, False):
            alerts.send(alerts.freshness_alert(key, is_stale[name], observed, _hours(limit)))
        observations.append(
            dg.AssetObservation(
                asset_key=key,
                metadata={
                    "newest_row_at": str(newest[key]),
                    "age_hours": None if age is None else round(age / timedelta(hours=1), 1),
                    "error_after_hours": round(limit / timedelta(hours=1), 1),
                    "stale": is_stale[name],
                },
            )
        )
    return dg.SensorResult(asset_events=observations, cursor=json.dumps(is_stale))


def _hours(age: timedelta) -> str:
    return f"{age / timedelta(hours=1):.1f} h"
