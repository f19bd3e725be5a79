"""The two jobs of the production chain."""

import dagster as dg

from greenery_orchestration.assets.dbt import greenery_models, greenery_snapshots
from greenery_orchestration.chain.clone import environment_clones
from greenery_orchestration.chain.docs import dbt_docs
from greenery_orchestration.chain.masking import pii_masking
from greenery_orchestration.chain.publish import publish

RAW_TABLES = [key for key in greenery_models.dependency_keys if key.path[0] == "raw"]

greenery_production = dg.define_asset_job(
    "greenery_production",
    # The freshness gate and the dbt tests on raw tables are checks of the raw assets.
    selection=dg.AssetSelection.assets(pii_masking, greenery_snapshots, greenery_models, publish)
    | dg.AssetSelection.checks_for_assets(*RAW_TABLES),
    description="Freshness gate, PII masking, orders snapshot, every dbt model with its tests, then the "
    "publish of all of it at once.",
)

greenery_docs_and_clone = dg.define_asset_job(
    "greenery_docs_and_clone",
    selection=dg.AssetSelection.assets(dbt_docs, environment_clones),
    description="Publish the dbt docs, then clone prod to the other environments (PII masked).",
)
