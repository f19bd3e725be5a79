"""The dbt docs and the funnel report as a static site, published to a folder and served on 127.0.0.1."""

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource

from greenery_orchestration.dbt_errors import dbt_failure
from greenery_orchestration.settings import docs_dir
from greenery_orchestration.warehouse import WAREHOUSE_POOL, Warehouse

DBT_DOCS_KEY = dg.AssetKey(["docs", "dbt_docs"])


def publish(generated: Path, site: Path, pages: Mapping[str, str]) -> list[str]:
    """Replace `site` with the generated docs and `pages` ({path in the site: HTML}) in one rename,
    so readers never see half a site, nor docs and a report of two different runs."""
    staging = site.with_name(site.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    shutil.copy(generated / "static_index.html", staging / "index.html")
    for artifact in ["manifest.json", "catalog.json"]:
        shutil.copy(generated / artifact, staging / artifact)
    for path, page in pages.items():
        (staging / path).parent.mkdir(parents=True, exist_ok=True)
        (staging / path).write_text(page, encoding="utf-8")
    retired = site.with_name(site.name + ".old")
    shutil.rmtree(retired, ignore_errors=True)
    if site.exists():
        site.rename(retired)
    staging.rename(site)
    shutil.rmtree(retired, ignore_errors=True)
    return sorted(path.name for path in site.iterdir())


def dbt_docs(deps: Sequence[dg.AssetKey]) -> dg.AssetsDefinition:
    """The docs step, after `deps`: the stage before it (chain/stages.py)."""
    return dg.asset(
        key=DBT_DOCS_KEY,
        deps=deps,
        group_name="docs",
        kinds={"dbt"},
        owners=["team:analytics-engineering"],
        pool=WAREHOUSE_POOL,
        description="The dbt docs as one static page, and the funnel report of the published marts at "
        "report/, published together to GREENERY_DOCS_DIR (`greenery docs` serves both).",
    )(_generate_docs)


def _generate_docs(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: dg.ResourceParam[Warehouse]
) -> dg.MaterializeResult:
    # pandas loads in this step only, not with the definitions.
    from greenery_orchestration import report  # noqa: PLC0415

    invocation = dbt.cli(["docs", "generate", "--static"], raise_on_error=False).wait()
    if failure := dbt_failure(invocation):
        raise failure
    # dbt has exited: the warehouse is free to read. The report is of what readers see, the published marts.
    page = report.render(report.read_report(warehouse.read_sql), warehouse.last_publish())
    site = docs_dir()
    files = publish(invocation.target_path, site, {report.REPORT_PAGE: page})
    context.log.info(f"Published the dbt docs and the funnel report to {site}")
    return dg.MaterializeResult(
        metadata={"path": str(site), "files": files, "report": dg.MetadataValue.path(str(site / report.REPORT_PAGE))}
    )

