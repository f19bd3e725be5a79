"""Clone prod to the other environments, with every declared PII column masked."""

from collections.abc import Iterator, Sequence

import dagster as dg

from greenery_orchestration.assets.dbt import is_incremental
from greenery_orchestration.assets.sources import raw_manifest
from greenery_orchestration.chain.masking import pii_columns
from greenery_orchestration.marts import BUILD_STAMP
from greenery_orchestration.rawdata.schema import is_load_marker
from greenery_orchestration.settings import target
from greenery_orchestration.wap import merge_key, merge_since, snapshot_column
from greenery_orchestration.warehouse import WAREHOUSE_POOL, WAREHOUSE_RETRY, Changes, Warehouse

ENVIRONMENTS = ["dev", "ci"]


def environment_clones(deps: Sequence[dg.AssetKey]) -> dg.AssetsDefinition:
    """The clone step, after `deps`: the stage before it (chain/stages.py)."""
    return dg.multi_asset(
        specs=[
            dg.AssetSpec(
                ["environments", environment],
                deps=deps,
                group_name="environments",
                kinds={target()},
                owners=["team:data-platform"],
                description=f"The {environment} environment: a copy of prod that only ever holds masked PII "
                f"(on DuckDB `{environment}.duckdb`, on Snowflake a zero-copy clone with its masking policies).",
            )
            for environment in ENVIRONMENTS
        ],
        name="environments",
        pool=WAREHOUSE_POOL,
        retry_policy=WAREHOUSE_RETRY,
    )(_clone)


def _clone(context: dg.AssetExecutionContext, warehouse: dg.ResourceParam[Warehouse]) -> Iterator:
    manifest, _, _ = raw_manifest()
    for environment, metadata in warehouse.clone(ENVIRONMENTS, pii_columns(manifest), table_changes(manifest)):
        context.log.info(f"Cloned prod into {environment}, PII masked: {metadata}")
        yield dg.MaterializeResult(asset_key=["environments", environment], metadata=metadata)


def table_changes(manifest: dict) -> dict[str, Changes]:
    """{"schema.table": how its new rows show} for the tables whose rows carry a marker: each
    incremental model (stamped with the build's start, merged by its unique key), each snapshot of
    the `check` strategy (its versions stamped with the snapshot's time, which also closes the
    versions they follow) and each raw table with a column declared `meta: {load_marker: true}`
    (appended to)."""
    changes = {}
    for node in manifest["nodes"].values():
        if is_incremental(node):
            changes[f"{node['schema']}.{node['alias']}"] = Changes(
                BUILD_STAMP, merge_key(node), since=merge_since(node)
            )
        # A `timestamp` snapshot stamps versions with the source's own times, which can be older
        # than the copy's newest: only `check` stamps them with the time of the run.
        elif node["resource_type"] == "snapshot" and node["config"].get("strategy") == "check":
            changes[f"{node['schema']}.{node['alias']}"] = Changes(
                snapshot_column(node, "dbt_updated_at"), merge_key(node), closed_by=snapshot_column(node, "dbt_valid_to")
            )
    for source in manifest["sources"].values():
        markers = [name for name, column in source["columns"].items() if is_load_marker(column)]
        if markers:
            changes[f"{source['schema']}.{source['identifier']}"] = Changes(markers[0])
    return changes
