"""PII masking, from the `meta: {pii: true}` declarations in the dbt YAML (and nowhere else)."""

from collections.abc import Sequence

import dagster as dg
from dagster_dbt import DbtCliResource

from greenery_orchestration.assets.dbt import PII_MASKING_KEY
from greenery_orchestration.assets.sources import raw_manifest
from greenery_orchestration.dbt_errors import dbt_failure
from greenery_orchestration.rawdata.schema import is_pii
from greenery_orchestration.settings import target
from greenery_orchestration.warehouse import WAREHOUSE_POOL


def pii_columns(manifest: dict) -> dict[str, list[str]]:
    """{"schema.relation": [PII columns]} for every source, model and snapshot that declares any."""
    found = {}
    for node in [*manifest["sources"].values(), *manifest["nodes"].values()]:
        if node["resource_type"] not in ("source", "model", "snapshot"):
            continue
        columns = [name for name, column in node["columns"].items() if is_pii(column)]
        if columns:
            relation = node["identifier"] if node["resource_type"] == "source" else node["alias"]
            found[f"{node['schema']}.{relation}"] = columns
    return found


def pii_masking(deps: Sequence[dg.AssetKey]) -> dg.AssetsDefinition:
    """The masking step, after `deps`: the stage before it (chain/stages.py)."""
    return dg.asset(
        key=PII_MASKING_KEY,
        deps=deps,
        group_name="governance",
        kinds={"dbt"},
        owners=["team:data-platform"],
        pool=WAREHOUSE_POOL,
        description="Masking policies on every PII column declared in the dbt YAML (Snowflake); "
        "on DuckDB, prod keeps clear values and the environment clones are masked instead.",
    )(_apply_masking)


def _apply_masking(context: dg.AssetExecutionContext, dbt: DbtCliResource) -> dg.MaterializeResult:
    # DuckDB has no masking policies: a dbt invocation there would only start dbt (~2.5 s a run).
    if target() == "snowflake":
        invocation = dbt.cli(["run-operation", "apply_pii_masking"], raise_on_error=False).wait()
        if failure := dbt_failure(invocation):
            raise failure
    else:
        context.log.info(f"No masking policies on {target()}: prod keeps clear values, and the other "
                         "environments get masked values when they are cloned from prod.")
    manifest, _, _ = raw_manifest()
    declared = pii_columns(manifest)
    context.log.info(f"PII columns declared: {sum(map(len, declared.values()))} in {len(declared)} relations")
    return dg.MaterializeResult(
        metadata={"pii_columns": dg.MetadataValue.json(declared), "relations": len(declared)}
    )
