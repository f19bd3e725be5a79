"""The chain in this process: the same jobs, the same order and the same alerts as under the daemon."""

import dagster as dg

from greenery_orchestration import alerts
from greenery_orchestration.assets.dbt import FULL_REFRESH_TAG
from greenery_orchestration.definitions import defs

CHAIN = ["greenery_production", "greenery_docs_and_clone"]


def run_chain(allow_stale: bool = False, full_refresh: bool = False) -> bool:
    """Run each job in turn on the DAGSTER_HOME instance, alerting as the sensors would; stop at a failure."""
    definitions = defs()
    with dg.DagsterInstance.get() as instance:
        for job_name in CHAIN:
            run_config = {"loggers": {"progress": {}}}
            if job_name == "greenery_production":
                run_config["ops"] = {"source_freshness_gate": {"config": {"allow_stale": allow_stale}}}
            result = definitions.resolve_job_def(job_name).execute_in_process(
                instance=instance,
                run_config=run_config,
                tags={FULL_REFRESH_TAG: "true"} if full_refresh else None,
                raise_on_error=False,
            )
            alert = alerts.run_alert(instance, result.dagster_run)
            if alert:
                print(f"alert ({alert.level}): {alert.title}")
                alerts.send(alert)
            if not result.success:
                return False
    return True
