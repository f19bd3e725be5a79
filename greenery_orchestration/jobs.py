"""The jobs a schedule, a sensor or a person launches."""

import dagster as dg

from greenery_orchestration.assets.dbt import greenery_dbt_models

greenery_production = dg.define_asset_job(
    "greenery_production",
    # The dbt tests on the raw sources are checks of the raw assets: select them too.
    selection=dg.AssetSelection.assets(greenery_dbt_models)
    | dg.AssetSelection.checks_for_assets(*greenery_dbt_models.dependency_keys),
    description="Snapshot the orders and build every dbt model with its tests.",
)
