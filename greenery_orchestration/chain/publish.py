"""The publish step: this run's audited build becomes what readers see, in one transaction."""

from collections.abc import Sequence
from datetime import UTC, datetime

import dagster as dg

from greenery_orchestration import wap
from greenery_orchestration.assets.dbt import dbt_relations, greenery_snapshots
from greenery_orchestration.assets.sources import GATE_STEP
from greenery_orchestration.project import dbt_code_version
from greenery_orchestration.settings import target
from greenery_orchestration.warehouse import WAREHOUSE_POOL, Warehouse


def publish(deps: Sequence[dg.AssetKey]) -> dg.AssetsDefinition:
    """The publish step, after `deps`: every model of the build (chain/stages.py), so that a failed
    test anywhere holds the whole publish back; and after the snapshot, which it publishes too
    (a run of the snapshot alone must not publish before the snapshot is built)."""
    return dg.asset(
        key=wap.PUBLISH_KEY,
        deps=sorted({*deps, *greenery_snapshots.keys}, key=str),
        group_name="governance",
        kinds={target()},
        owners=["team:data-platform"],
        pool=WAREHOUSE_POOL,
        description="Write-audit-publish: the models and the snapshot this run built and tested become what "
        "readers see, all at once, with a row in ops.publish_log (run, time, code version, row counts).",
    )(_publish)


def _publish(context: dg.AssetExecutionContext, warehouse: dg.ResourceParam[Warehouse]) -> dg.MaterializeResult:
    built = dbt_relations(_materialized_in_this_run(context))
    counts = warehouse.publish(
        built.values(), context.run.run_id, dbt_code_version(), run_started_at=_run_started_at(context)
    )
    context.log.info(f"Published {len(built)} relations built by this run")
    return dg.MaterializeResult(
        metadata={
            "relations": len(built),
            "code_version": dbt_code_version(),
            "row_counts": dg.MetadataValue.json(counts),
        }
    )


def _run_started_at(context: dg.AssetExecutionContext) -> datetime | None:
    """When this run began (naive UTC), if its gate ran: it tested every raw row loaded before
    then, and the next gate reads the rows loaded since (dbt_project/macros/raw_new_rows.sql).
    None for a run of a few assets without the gate (from the UI): the next gate reads from where
    the last run with a gate began."""
    records = context.instance.get_records_for_run(
        context.run.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS, limit=10_000
    ).records
    if GATE_STEP not in {record.event_log_entry.step_key for record in records}:
        return None
    started = context.instance.get_run_record_by_id(context.run.run_id).start_time
    return datetime.fromtimestamp(started, UTC).replace(tzinfo=None)


def _materialized_in_this_run(context: dg.AssetExecutionContext) -> set[dg.AssetKey]:
    """What this run built, so a run that built a few models publishes those and no leftovers."""
    records = context.instance.get_records_for_run(
        context.run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=10_000
    ).records
    return {record.event_log_entry.dagster_event.asset_key for record in records}
