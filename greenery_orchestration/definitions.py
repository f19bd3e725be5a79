"""The Greenery code location: assembles what the other modules define."""

import dagster as dg

from greenery_orchestration.assets.dbt import greenery_dbt_models
from greenery_orchestration.assets.sources import raw_source_specs
from greenery_orchestration.jobs import greenery_production
from greenery_orchestration.progress import progress_logger
from greenery_orchestration.project import dbt_resource
from greenery_orchestration.warehouse import duckdb_resource


@dg.definitions
def defs() -> dg.Definitions:
    # Resources are built when the code location loads, so they follow its environment.
    return dg.Definitions(
        assets=[*raw_source_specs(), greenery_dbt_models],
        jobs=[greenery_production],
        resources={"dbt": dbt_resource(), "warehouse": duckdb_resource()},
        loggers={"progress": progress_logger},
    )
