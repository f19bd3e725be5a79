"""Every dbt model and snapshot as an asset, every dbt test as an asset check."""

from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets
from dagster_duckdb import DuckDBResource

from greenery_orchestration import funnel
from greenery_orchestration.project import greenery_project

WAREHOUSE_POOL = "warehouse"

# Marts whose materialization carries the funnel itself, by how funnel.read_funnel reads them.
FUNNEL_REPORTS = {
    dg.AssetKey(["marts", "fct_funnel"]): "step",
    dg.AssetKey(["marts", "fct_product_funnel"]): "product",
}


class GreeneryTranslator(DagsterDbtTranslator):
    """Keys mirror the warehouse: `marts/fct_funnel`, and `raw/events` for the sources."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return dg.AssetKey([dbt_resource_props["schema"], dbt_resource_props["name"]])
        return super().get_asset_key(dbt_resource_props)


@dbt_assets(
    manifest=greenery_project.manifest_path,
    project=greenery_project,
    dagster_dbt_translator=GreeneryTranslator(
        DagsterDbtTranslatorSettings(enable_source_tests_as_checks=True)
    ),
    pool=WAREHOUSE_POOL,
)
def greenery_dbt_models(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: DuckDBResource
) -> Iterator:
    # dagster-dbt 0.29 reads `context.op`, deprecated on AssetExecutionContext: hand it the
    # op context it wants, so every run stays free of deprecation warnings.
    invocation = dbt.cli(["build"], context=context.op_execution_context, raise_on_error=False)
    # dbt holds the warehouse's only write lock until it exits: report the funnel after that.
    held_back = []
    for event in invocation.stream():
        if isinstance(event, dg.Output) and context.asset_key_for_output(event.output_name) in FUNNEL_REPORTS:
            held_back.append(event)
        else:
            yield event
    for output in held_back:
        yield output.with_metadata({**output.metadata, **_funnel_metadata(context, warehouse, output)})
    if not invocation.is_successful():
        raise invocation.get_error()


def _funnel_metadata(context, warehouse: DuckDBResource, output: dg.Output) -> dict:
    by = FUNNEL_REPORTS[context.asset_key_for_output(output.output_name)]
    with warehouse.get_connection() as connection:
        frame = funnel.read_funnel(connection, by)
    title = "Sessions per funnel step" if by == "step" else "Sessions per product and step"
    return {
        "funnel": funnel.as_table_metadata(frame),
        "funnel_chart": dg.MetadataValue.md(funnel.funnel_chart_markdown(frame, title)),
    }
