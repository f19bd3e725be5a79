"""What a terminal shows of a run, driven by the events Dagster logs."""

import io
import logging
import time

import dagster as dg
from dagster._core.execution.plan.objects import StepSuccessData

from greenery_orchestration import progress


def _record(event_type: dg.DagsterEventType, step: str | None = None, data=None) -> logging.LogRecord:
    event = dg.DagsterEvent(
        event_type_value=event_type.value, job_name="greenery_production", step_key=step, event_specific_data=data
    )
    record = logging.LogRecord("dagster", logging.DEBUG, __file__, 0, "", None, None)
    record.dagster_meta = {"dagster_event": event, "run_id": "1234abcd-0000", "job_name": "greenery_production"}
    return record


def test_a_silent_step_gets_a_heartbeat_and_its_duration_at_the_end(monkeypatch):
    monkeypatch.setattr(progress, "HEARTBEAT_SECONDS", 0.5)
    terminal = io.StringIO()
    with progress.to_terminal(terminal, verbose=False):
        handler = progress._ProgressHandler()
        handler.emit(_record(dg.DagsterEventType.STEP_START, "build_models"))
        print("1 of 18 START sql table model marts.fct_events")  # what dagster-dbt echoes of dbt
        time.sleep(1.8)
        handler.emit(_record(dg.DagsterEventType.STEP_SUCCESS, "build_models", StepSuccessData(1800.0)))
        handler.emit(_record(dg.DagsterEventType.RUN_SUCCESS))

    lines = terminal.getvalue().splitlines()
    assert lines[0] == "  step build_models started"
    beats = [line for line in lines if line.startswith("  ... running: build_models")]
    assert 2 <= len(beats) <= 4  # one per half second of silence, from the first half second on
    assert lines[-2].startswith("  step build_models finished in 1.")
    assert lines[-1] == "run 1234abcd of greenery_production succeeded"
    assert not any("START sql" in line for line in lines)  # dbt's lines only with --verbose


def test_verbose_shows_dbt_lines_without_colour_off_a_terminal():
    terminal = io.StringIO()
    with progress.to_terminal(terminal, verbose=True):
        print("1 of 18 OK created sql table model marts.fct_events \x1b[32m[OK in 0.1s]\x1b[0m")
    assert terminal.getvalue() == "1 of 18 OK created sql table model marts.fct_events [OK in 0.1s]\n"
