"""The Greenery code location: assembles what the other modules define."""

import dagster as dg

from greenery_orchestration.assets.sources import raw_data_gate
from greenery_orchestration.chain.stages import ASSETS
from greenery_orchestration.jobs import greenery_docs_and_clone, greenery_production
from greenery_orchestration.progress import progress_logger
from greenery_orchestration.project import dbt_resource
from greenery_orchestration.schedules import production_schedule
from greenery_orchestration.sensors import (
    alert_on_failed_run,
    alert_on_warnings,
    docs_and_clone_after_production,
    raw_freshness_sensor,
)
from greenery_orchestration.warehouse import warehouse_resource


@dg.definitions
def defs() -> dg.Definitions:
    # Built when the code location loads, so resources and schedule follow its environment.
    return dg.Definitions(
        assets=ASSETS,
        asset_checks=[raw_data_gate()],
        jobs=[greenery_production, greenery_docs_and_clone],
        schedules=[production_schedule()],
        sensors=[
            docs_and_clone_after_production,
            alert_on_failed_run,
            alert_on_warnings,
            raw_freshness_sensor,
        ],
        resources={"dbt": dbt_resource(), "warehouse": warehouse_resource()},
        loggers={"progress": progress_logger},
    )
