"""The dbt docs and the funnel report as a static site, published to a folder and served on 127.0.0.1.

The report is of each run's published marts. The dbt docs show the project and the warehouse's
tables and columns, which most runs leave as they were: they are generated again only when those
changed (docs_digest), and otherwise published as they are."""

import hashlib
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource

from greenery_orchestration.dbt_errors import dbt_failure
from greenery_orchestration.project import invocation_fingerprint
from greenery_orchestration.settings import docs_dir
from greenery_orchestration.warehouse import WAREHOUSE_POOL, Warehouse

DBT_DOCS_KEY = dg.AssetKey(["docs", "dbt_docs"])
DOCS_FILES = ["index.html", "manifest.json", "catalog.json"]
# In the site beside them: what they were generated from (docs_digest).
DOCS_DIGEST = "docs-digest.txt"


def publish(docs: Mapping[str, Path], site: Path, pages: Mapping[str, str]) -> list[str]:
    """Replace `site` with the dbt docs `docs` ({name in the site: file}) and `pages` ({path in
    the site: its text}) in one rename, so readers never see half a site, nor docs and a report
    of two different runs."""
    staging = site.with_name(site.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name, path in docs.items():
        shutil.copy(path, staging / name)
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


def generated_docs(target: Path) -> dict[str, Path]:
    """What `dbt docs generate --static` wrote to `target`, by the names the site gives them."""
    return {name: target / ("static_index.html" if name == "index.html" else name) for name in DOCS_FILES}


def docs_digest(warehouse: Warehouse) -> str | None:
    """A digest of what the dbt docs are made of: the dbt project as dbt parses it (its files, the
    settings it reads, the connection) and the warehouse's catalog; None when the catalog changes
    with every run."""
    catalog = warehouse.catalog_digest()
    if catalog is None:
        return None
    return hashlib.sha256(f"{invocation_fingerprint()}\n{catalog}".encode()).hexdigest()


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

    site = docs_dir()
    digest = docs_digest(warehouse)
    # Most runs add rows and change neither the project nor a column: the docs would come out the
    # same, and generating them is a dbt invocation (~5 s, more on a large warehouse).
    kept = digest is not None and _read(site / DOCS_DIGEST) == digest and all((site / n).exists() for n in DOCS_FILES)
    if kept:
        docs = {name: site / name for name in DOCS_FILES}
    else:
        invocation = dbt.cli(["docs", "generate", "--static"], raise_on_error=False).wait()
        if failure := dbt_failure(invocation):
            raise failure
        docs = generated_docs(invocation.target_path)
    # dbt has exited: the warehouse is free to read. The report is of what readers see, the published marts.
    page = report.render(report.read_report(warehouse.read_sql), warehouse.last_publish())
    files = publish(docs, site, {report.REPORT_PAGE: page, **({DOCS_DIGEST: digest} if digest else {})})
    context.log.info(
        f"Published the funnel report to {site}, with the dbt docs "
        + ("as they were: the dbt project and the warehouse's columns have not changed" if kept else "generated anew")
    )
    return dg.MaterializeResult(
        metadata={
            "path": str(site),
            "files": files,
            "report": dg.MetadataValue.path(str(site / report.REPORT_PAGE)),
            "dbt_docs": "kept" if kept else "generated",
        }
    )


def _read(path: Path) -> str | None:
    return path.read_text() if path.exists() else None

