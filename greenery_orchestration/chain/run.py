"""The chain in this process, through the same definitions the schedule launches."""

import dagster as dg

from greenery_orchestration.definitions import defs

CHAIN = ["greenery_production"]


def run_chain() -> bool:
    """Run each job of the chain in turn on the DAGSTER_HOME instance; stop at a failure."""
    definitions = defs()
    with dg.DagsterInstance.get() as instance:
        for job_name in CHAIN:
            result = definitions.resolve_job_def(job_name).execute_in_process(
                instance=instance,
                run_config={"loggers": {"progress": {}}},
                raise_on_error=False,
            )
            if not result.success:
                return False
    return True
