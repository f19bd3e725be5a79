"""The chain in this process: the same jobs, the same order and the same alerts as under the daemon."""

import os
import sys

import dagster as dg

from greenery_orchestration import alerts, progress
from greenery_orchestration.assets.dbt import FULL_REFRESH_TAG
from greenery_orchestration.assets.sources import GATE_STEP
from greenery_orchestration.chain import guard
from greenery_orchestration.chain.stages import JOB_NAMES
from greenery_orchestration.definitions import defs



def run_chain(
    allow_stale: bool = False, full_refresh: bool = False, verbose: bool = False, turn: guard.Turn | None = None
) -> bool:
    """Run each job in turn on the DAGSTER_HOME instance, alerting as the sensors would; stop at a failure.

    The jobs run in `turn`, the command's hold on the warehouse (guard.warehouse_turn; taken here
    when not given), and no job starts once a signal asked to stop (guard.Stopped)."""
    if turn is None:
        with guard.warehouse_turn() as turn:
            return run_chain(allow_stale, full_refresh, verbose, turn)
    definitions = defs()
    # dbt colours its lines only for a terminal that will show them.
    os.environ["DBT_USE_COLORS"] = str(verbose and sys.stdout.isatty()).lower()
    instance = turn.instance
    terminal = sys.stdout  # inside, stdout is dbt's echo, shown only with --verbose
    with progress.to_terminal(terminal, verbose):
        for job_name in JOB_NAMES:
            run_config = {"loggers": {"progress": {}}}
            if job_name == "greenery_production":
                run_config["ops"] = {GATE_STEP: {"config": {"allow_stale": allow_stale}}}
            # A stopped run is no failure to alert on; and no job starts after it (guard.Stopped).
            with turn.job() as run_id:
                result = definitions.resolve_job_def(job_name).execute_in_process(
                    instance=instance,
                    run_config=run_config,
                    run_id=run_id,
                    tags={**turn.tags, **({FULL_REFRESH_TAG: "true"} if full_refresh else {})},
                    raise_on_error=False,
                )
            alert = alerts.run_alert(instance, result.dagster_run)
            if alert:
                print(f"alert ({alert.level}): {alert.title}", file=terminal)
                # What the alert says failed, so the terminal holds the cause without the UI.
                for line in alert.body.splitlines():
                    if line.startswith("- "):
                        print(f"  {line}", file=terminal)
                alerts.send(alert)
            if not result.success:
                turn.succeeded = False
                if not allow_stale and _stale_sources(instance, result.dagster_run.run_id):
                    print(
                        "Raw data is older than its freshness threshold (above). Load newer data, or build on "
                        "this historical data anyway with `greenery run --allow-stale`.",
                        file=terminal,
                    )
                return False
    return True


def _stale_sources(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    evaluations = [r.event_log_entry.dagster_event.asset_check_evaluation_data for r in records]
    return [e.asset_key.to_user_string() for e in evaluations if e.check_name == "source_freshness" and not e.passed]
