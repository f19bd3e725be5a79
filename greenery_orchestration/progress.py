"""A logger that prints one line per step, materialization and failed check, for terminals."""

import logging
import sys

import dagster as dg

from greenery_orchestration.alerts import error_summary

_LINES = {
    dg.DagsterEventType.RUN_START: "run {run} of {job} started",
    dg.DagsterEventType.STEP_START: "  step {step} started",
    dg.DagsterEventType.STEP_SUCCESS: "  step {step} succeeded",
    dg.DagsterEventType.STEP_FAILURE: "  step {step} FAILED: {message}",
    dg.DagsterEventType.ASSET_MATERIALIZATION: "    materialized {asset}",
    dg.DagsterEventType.RUN_SUCCESS: "run {run} of {job} succeeded",
    dg.DagsterEventType.RUN_FAILURE: "run {run} of {job} FAILED: {message}",
}


class _ProgressHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", {})
        event: dg.DagsterEvent | None = meta.get("dagster_event")
        if event is None:
            return
        line = _line(event, meta)
        if line:
            print(line, file=sys.stdout, flush=True)


def _line(event: dg.DagsterEvent, meta: dict) -> str | None:
    if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
        evaluation = event.asset_check_evaluation_data
        if evaluation.passed:
            return None
        failed_rows = evaluation.metadata.get("dagster_dbt/failed_row_count")
        age = evaluation.metadata.get("age_hours")
        detail = f": {failed_rows.value} failing row(s)" if failed_rows else f": newest row {age.value} h old" if age else ""
        outcome = "WARNED" if evaluation.severity == dg.AssetCheckSeverity.WARN else "FAILED"
        return f"    check {evaluation.check_name} on {evaluation.asset_key.to_user_string()} {outcome}{detail}"
    template = _LINES.get(event.event_type)
    if template is None:
        return None
    asset_key = event.asset_key
    return template.format(
        run=meta.get("run_id", "")[:8],
        job=meta.get("job_name"),
        step=event.step_key,
        asset=asset_key.to_user_string() if asset_key else "",
        message=_failure_message(event),
    )


def _failure_message(event: dg.DagsterEvent) -> str:
    error = getattr(event.event_specific_data, "error", None)
    return error_summary(error) if error is not None else event.message or ""


@dg.logger(description="One line per step, materialization and failed check, on stdout.")
def progress_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    logger = logging.Logger("greenery_progress", level=logging.DEBUG)
    logger.addHandler(_ProgressHandler())
    return logger
