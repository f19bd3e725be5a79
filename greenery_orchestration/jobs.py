"""The two jobs of the production chain, one per entry of chain/stages.py."""

import dagster as dg

from greenery_orchestration.chain.stages import CHAIN

DESCRIPTIONS = {
    "greenery_production": "The gate (warehouse file, freshness, tests on raw tables), PII masking, the orders "
    "snapshot, every dbt model with its tests, then the publish of all of it at once.",
    "greenery_docs_and_clone": "Publish the dbt docs, then clone prod to the other environments (PII masked).",
}


def _job(name: str, stages: list):
    executable = [stage for stage in stages if isinstance(stage, dg.AssetsDefinition)]
    # A stage of raw tables is their checks: the gate.
    raw = [spec.key for stage in stages if isinstance(stage, list) for spec in stage]
    return dg.define_asset_job(
        name,
        selection=dg.AssetSelection.assets(*executable) | dg.AssetSelection.checks_for_assets(*raw),
        description=DESCRIPTIONS[name],
    )


greenery_production, greenery_docs_and_clone = (_job(name, stages) for name, stages in CHAIN.items())
