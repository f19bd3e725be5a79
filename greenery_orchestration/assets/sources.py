"""The seven raw tables, loaded outside Dagster, as external assets the models depend on."""

import dagster as dg
from dagster_dbt.asset_utils import get_manifest_and_translator_from_dbt_assets

from greenery_orchestration.assets.dbt import greenery_dbt_models

RAW_GROUP = "raw"


def raw_source_specs() -> list[dg.AssetSpec]:
    """One spec per dbt source table, keyed as the models see it, documented from the dbt YAML."""
    manifest, translator, project = get_manifest_and_translator_from_dbt_assets([greenery_dbt_models])
    return [
        _as_raw_table(translator.get_asset_spec(manifest, unique_id, project))
        for unique_id in manifest["sources"]
    ]


def _as_raw_table(spec: dg.AssetSpec) -> dg.AssetSpec:
    # Keep the table name and column schema; drop dagster-dbt's bookkeeping of the dbt node.
    metadata = {k: v for k, v in spec.metadata.items() if not k.startswith("dagster_dbt/")}
    return spec.replace_attributes(
        group_name=RAW_GROUP,
        kinds={"duckdb"},
        metadata=metadata,
        owners=["team:data-platform"],
    )
