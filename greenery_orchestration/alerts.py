"""Alerts: what went wrong, where, by how much, and a link to the run, sent to GREENERY_ALERT_URLS.

GREENERY_ALERT_URLS is a comma-separated list of apprise URLs (slack://…, msteams://…,
mailto://…, json://host:port/path), so a team picks its channels without code changes.
"""

import logging
import re
from dataclasses import dataclass

import dagster as dg

from greenery_orchestration import wap
from greenery_orchestration.dbt_errors import first_line
from greenery_orchestration.settings import alert_urls, ui_url
from greenery_orchestration.warehouse import open_warehouse

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Alert:
    level: str  # "failure", "warning" or "success" (a recovery)
    title: str
    body: str




def send(alert: Alert) -> bool:
    """Deliver to every configured URL; True when all took it. URLs are never logged: they hold tokens."""
    import apprise  # noqa: PLC0415 - loads every notification plugin; only needed to send

    urls = alert_urls()
    if not urls:
        logger.warning("No GREENERY_ALERT_URLS set; alert not sent: %s", alert.title)
        return False
    notifier = apprise.Apprise()
    for url in urls:
        notifier.add(url)
    delivered = bool(notifier.notify(title=alert.title, body=alert.body, notify_type=alert.level))
    if not delivered:
        logger.error("Alert not delivered to every GREENERY_ALERT_URLS target: %s", alert.title)
    return delivered


def run_alert(instance: dg.DagsterInstance, run: dg.DagsterRun) -> Alert | None:
    """The alert a finished run calls for: its failure, or the checks that warned; else None."""
    failed_checks = [f"- {check_line(e)}" for e in _failed_check_evaluations(instance, run.run_id)]
    link = f"{ui_url()}/runs/{run.run_id}"
    if run.status == dg.DagsterRunStatus.FAILURE:
        lines = [
            f"Run {run.run_id[:8]} of {run.job_name} failed.",
            *_step_failures(instance, run.run_id),
            *failed_checks,
            *_unpublished_build(instance, run.run_id),
        ]
        return Alert("failure", f"[greenery] {run.job_name} failed", "\n".join([*lines, f"Run: {link}"]))
    if failed_checks:
        lines = [f"Run {run.run_id[:8]} of {run.job_name} succeeded with warnings.", *failed_checks]
        return Alert("warning", f"[greenery] {run.job_name} warning", "\n".join([*lines, f"Run: {link}"]))
    return None


def freshness_alert(source: dg.AssetKey, stale: bool, observed: str, threshold: str) -> Alert:
    name = source.to_user_string()
    if stale:
        return Alert(
            "failure",
            f"[greenery] {name} is stale",
            f"Source {name}: newest row is {observed} old, past its error threshold of {threshold}.\n"
            f"Asset: {ui_url()}/assets/{name}",
        )
    return Alert(
        "success",
        f"[greenery] {name} is fresh again",
        f"Source {name}: newest row is {observed} old, within {threshold}.\nAsset: {ui_url()}/assets/{name}",
    )


def _failed_check_evaluations(instance: dg.DagsterInstance, run_id: str) -> list:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    evaluations = [r.event_log_entry.dagster_event.asset_check_evaluation_data for r in records]
    return [e for e in evaluations if not e.passed]


def check_line(evaluation) -> str:
    """A failed or warned check: its severity, name and asset, what was observed and the threshold,
    and what its failing rows say of themselves, or the key of one, when there is one."""
    metadata = {key: value.value for key, value in evaluation.metadata.items()}
    severity = evaluation.severity.value if evaluation.severity else "ERROR"
    if "age_hours" in metadata:
        observed = "no rows, " if metadata["age_hours"] is None else (
            f"newest row {metadata['age_hours']} h old (at {metadata.get('max_loaded_at')}), ")
        observed += f"threshold: warn after {metadata.get('warn_after')}, error after {metadata.get('error_after')}"
    elif metadata.get("status") == "error":
        # A dbt test that could not run counts no rows: its cause is the step's failure.
        observed = "the test did not run (dbt error)"
    elif "dagster_dbt/failed_row_count" in metadata:
        observed = f"{metadata['dagster_dbt/failed_row_count']} failing row(s), threshold 0"
        if metadata.get("failing_rows"):  # the first few rows, as the test describes them (assets/examples.py)
            observed += ": " + "; ".join(metadata["failing_rows"])
        elif metadata.get("example_key"):  # the key of one failing row (assets/examples.py)
            observed += f", e.g. {metadata['example_key']}"
    else:
        observed = first_line(str(metadata.get("error", ""))) or "failed"
    return f"{severity} check {evaluation.check_name} on {evaluation.asset_key.to_user_string()}: {observed}"


def _unpublished_build(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """Where a run that built but did not publish left its build (wap.py), for inspection."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    built = {record.event_log_entry.dagster_event.asset_key for record in records}
    if not built or wap.PUBLISH_KEY in built:
        return []
    warehouse = open_warehouse()
    return [
        "Nothing was published: readers still see the last good build. This run's build is kept until the next "
        f"run, as the relations named {warehouse.staged_relation('<schema>', '<name>')} in {warehouse.location}."
    ]


def _step_failures(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records
    return [
        f"- step {event.step_key}: {error_summary(event.step_failure_data)}"
        for event in (record.event_log_entry.dagster_event for record in records)
    ]


def error_summary(failure) -> str:
    """One line of what failed a step (its StepFailureData): a dg.Failure's description, else the
    first line of the error inside Dagster's wrapping, without the class path."""
    user_failure = failure.user_failure_data
    if user_failure is not None and user_failure.description and user_failure.description.strip():
        return user_failure.description.strip().splitlines()[0]
    error = failure.error
    while error is not None and error.cause is not None and error.cls_name == "DagsterExecutionStepExecutionError":
        error = error.cause
    if error is None or not error.message.strip():
        return "failed"
    first = error.message.strip().splitlines()[0]
    return re.sub(rf"^[\w.]*{error.cls_name}: ", "", first)
