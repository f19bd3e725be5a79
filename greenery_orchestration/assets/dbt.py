"""Every dbt model and snapshot as an asset, every dbt test as a blocking asset check.

The snapshot and the models are two steps, so a run shows the analysts' order: the PII masking,
then the orders snapshot, then the build of the models. On DuckDB both write staged relations
that only the publish step shows readers (wap.py).
"""

import csv
import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets
from dagster_dbt.asset_utils import get_manifest_and_translator_from_dbt_assets

from greenery_orchestration import wap
from greenery_orchestration.assets.examples import failing_examples
from greenery_orchestration.dbt_errors import dbt_failure
from greenery_orchestration.marts import BUILD_STAMP, FUNNEL_MARTS, MART_FRESHNESS
from greenery_orchestration.progress import NOTICE
from greenery_orchestration.project import EVERY_RAW_ROW, STAGED, dbt_vars, greenery_project
from greenery_orchestration.rawdata.load_log import newest_replacement_since
from greenery_orchestration.settings import DBT_PROJECT_DIR, docs_url
from greenery_orchestration.warehouse import WAREHOUSE_POOL, Warehouse

# The incremental model every other one follows: one row per raw event it has read.
INCREMENTAL_EVENTS = "marts.fct_events"
# The seed of known test accounts the funnel paths leave out, and where a build publishes it.
TEST_ACCOUNTS_SEED = DBT_PROJECT_DIR / "seeds" / "test_accounts.csv"
TEST_ACCOUNTS = "staging.test_accounts"
# A run tag, so a run launched from the UI or the CLI can ask for it.
FULL_REFRESH_TAG = "greenery/full_refresh"

# Marts whose materialization carries the funnel itself, by how funnel.read_funnel reads them.
FUNNEL_REPORTS = {FUNNEL_MARTS[by]: by for by in ("step", "product")}


class GreeneryTranslator(DagsterDbtTranslator):
    """Keys mirror the warehouse (`marts/fct_funnel`, `raw/events`). The nodes that read only raw
    tables, or nothing (a seed), also depend on `follows`, the stage before theirs (the order is
    chain/stages.py's)."""

    def __init__(self, follows: Iterable[dg.AssetKey] = ()):
        super().__init__()
        self.follows = list(follows)

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return dg.AssetKey([dbt_resource_props["schema"], dbt_resource_props["name"]])
        return super().get_asset_key(dbt_resource_props)

    def get_asset_spec(self, manifest, unique_id, project) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        parents = self.get_resource_props(manifest, unique_id).get("depends_on", {}).get("nodes", [])
        # A seed reads nothing before it: it follows the stage before too.
        if self.follows and all(parent.startswith("source.") for parent in parents):
            spec = spec.merge_attributes(deps=self.follows)
        if spec.key.path[0] == "marts":
            spec = spec.replace_attributes(freshness_policy=MART_FRESHNESS)
        return spec

    def get_asset_check_spec(self, asset_spec, manifest, unique_id, project) -> dg.AssetCheckSpec | None:
        check_spec = super().get_asset_check_spec(asset_spec, manifest, unique_id, project)
        # A failed test fails the step and, through the job, everything after it.
        return check_spec._replace(blocking=True) if check_spec else None


PII_MASKING_KEY = dg.AssetKey(["governance", "pii_masking"])


def tests_on_raw_tables(manifest: dict) -> dict[str, dict]:
    """The dbt tests that read raw tables only, by id. The gate runs them, before anything writes
    (assets/sources.py); the build does not run them again."""
    return {
        unique_id: node
        for unique_id, node in manifest["nodes"].items()
        if node["resource_type"] == "test"
        and node["depends_on"]["nodes"]
        and all(parent.startswith("source.") for parent in node["depends_on"]["nodes"])
    }


def is_incremental(node: Mapping[str, Any]) -> bool:
    return node["resource_type"] == "model" and node["config"].get("materialized") == "incremental"


def incremental_models(manifest: dict) -> list[str]:
    """Every incremental model's published relation, `schema.name` in lower case."""
    return sorted(f"{node['schema']}.{node['alias']}".lower() for node in manifest["nodes"].values() if is_incremental(node))


_MANIFEST = json.loads(greenery_project.manifest_path.read_text())
_RAW_TESTS = tests_on_raw_tables(_MANIFEST)
INCREMENTAL_MODELS = incremental_models(_MANIFEST)


@dbt_assets(
    manifest=greenery_project.manifest_path,
    project=greenery_project,
    select="resource_type:snapshot",
    dagster_dbt_translator=GreeneryTranslator(follows=[PII_MASKING_KEY]),
    name="snapshot_orders",
    pool=WAREHOUSE_POOL,
)
def greenery_snapshots(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: dg.ResourceParam[Warehouse]
) -> Iterator:
    warehouse.stage_build()
    # It reads the orders loaded after the newest load its history holds; a full refresh, every order.
    yield from _dbt_build(context, dbt, warehouse, every_raw_row=is_full_refresh(context.run))


@dbt_assets(
    manifest=greenery_project.manifest_path,
    project=greenery_project,
    exclude=" ".join(["resource_type:snapshot", *(node["name"] for node in _RAW_TESTS.values())]),
    dagster_dbt_translator=GreeneryTranslator(follows=greenery_snapshots.keys),
    name="build_models",
    pool=WAREHOUSE_POOL,
)
def greenery_models(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: dg.ResourceParam[Warehouse]
) -> Iterator:
    full_refresh = is_full_refresh(context.run)
    replaced = None if full_refresh else (
        raw_data_replaced(warehouse.read_sql) or relisted_test_accounts(warehouse.read_sql, TEST_ACCOUNTS_SEED)
    )
    if replaced:
        # Merging into what the incremental models hold would keep rows that are no longer right.
        context.log.warning(f"{NOTICE}{replaced}: rebuilding the incremental models from scratch (a full refresh).")
        full_refresh = True
    # dbt holds the warehouse's only write lock until it exits: report the funnel after that.
    held_back = []
    for event in _dbt_build(context, dbt, warehouse, ["--full-refresh"] if full_refresh else []):
        if isinstance(event, dg.Output) and context.asset_key_for_output(event.output_name) in FUNNEL_REPORTS:
            held_back.append(event)
        else:
            yield event
    for output in held_back:
        yield output.with_metadata({**output.metadata, **_funnel_metadata(context, warehouse, output)})


def is_full_refresh(run: dg.DagsterRun) -> bool:
    """Whether the run was launched with the tag greenery/full_refresh=true: to rebuild the
    incremental models whole, and test and snapshot every raw row."""
    return run.tags.get(FULL_REFRESH_TAG, "").lower() == "true"


def raw_data_replaced(query, incremental: Iterable[str] = INCREMENTAL_MODELS) -> str | None:
    """Why the raw data is not what the incremental models were built on, if it is not: an
    incremental model built by an older version (no build stamp to merge by), a load logged as a
    replacement since their last build, or events they hold that are gone from the raw table
    (whatever tool deleted them). Cheap at any size: counts and two point lookups."""
    wanted = ", ".join(f"'{relation}'" for relation in incremental)
    columns = query(
        "select lower(table_schema) || '.' || lower(table_name) as relation, lower(column_name) as name "
        f"from information_schema.columns where lower(table_schema) || '.' || lower(table_name) in ({wanted})"
    )
    stamped = columns.groupby("relation")["name"].agg(lambda names: BUILD_STAMP in set(names))
    for relation, has_stamp in sorted(stamped.items()):
        if not has_stamp:
            return f"{relation} was built by an older version (no {BUILD_STAMP})"
    if INCREMENTAL_EVENTS not in stamped:
        return None  # never built: the first build reads everything anyway
    built = query(f"select max({BUILD_STAMP}) as last_build, count(*) as events from {INCREMENTAL_EVENTS}")
    last_build, built_events = built["last_build"].iloc[0], int(built["events"].iloc[0])
    if built_events == 0:
        return None
    replaced = newest_replacement_since(query, last_build)
    if replaced:
        return f"The raw tables were replaced at {replaced:%Y-%m-%d %H:%M:%S} UTC, after the last build"
    raw_events = int(query("select count(*) as events from raw.events")["events"].iloc[0])
    if raw_events < built_events:
        return f"raw.events holds {raw_events:,} events, fewer than the {built_events:,} already built"
    # The oldest and the newest event built, looked up by time first so the scan skips old blocks.
    probes = [
        query(f"select event_id, created_at from {INCREMENTAL_EVENTS} order by created_at {order}, event_id limit 1")
        for order in ("asc", "desc")
    ]
    for event_id, created_at in ((probe["event_id"].iloc[0], probe["created_at"].iloc[0]) for probe in probes):
        quoted = str(event_id).replace("'", "''")
        found = query(
            f"select count(*) as n from raw.events where created_at = {_timestamp(created_at)} "
            f"and event_id = '{quoted}'"
        )
        if int(found["n"].iloc[0]) == 0:
            return f"Event {event_id} of {created_at:%Y-%m-%d %H:%M:%S} is built but gone from raw.events"
    return None


def relisted_test_accounts(query, seed_path: Path) -> str | None:
    """Why the funnel paths built so far count the wrong accounts, if they do: the seed of test
    accounts lists accounts other than the ones the last build published. Paths are rebuilt only
    when their sessions get new events, so the sessions of an account listed since would stay in
    the funnels (and an account no longer listed would stay out) until a full refresh."""
    published = query(
        "select count(*) as n from information_schema.tables "
        f"where lower(table_schema) || '.' || lower(table_name) = '{TEST_ACCOUNTS}'"
    )
    if int(published["n"].iloc[0]) == 0:
        return None  # never built: the first build reads the seed anyway
    built = {str(user_id) for user_id in query(f"select user_id from {TEST_ACCOUNTS}")["user_id"]}
    with seed_path.open(newline="") as seed:
        listed = {row["user_id"] for row in csv.DictReader(seed)}
    if listed == built:
        return None
    changes = [f"{label}: {', '.join(sorted(ids))}" for label, ids in
               (("newly listed", listed - built), ("no longer listed", built - listed)) if ids]
    return f"The test accounts of {seed_path.name} differ from {TEST_ACCOUNTS} ({'; '.join(changes)})"


def _timestamp(value) -> str:
    return f"cast('{value:%Y-%m-%d %H:%M:%S.%f}' as timestamp)"


def dbt_relations(keys: Iterable[dg.AssetKey]) -> dict[dg.AssetKey, wap.Relation]:
    """The relation readers see for each dbt model, snapshot and seed among `keys`."""
    manifest, translator, _ = get_manifest_and_translator_from_dbt_assets([greenery_models])
    relations = {}
    for node in manifest["nodes"].values():
        if node["resource_type"] in ("model", "snapshot", "seed"):
            relations[translator.get_asset_key(node)] = wap.relation(node)
    wanted = set(keys)
    return {key: relation for key, relation in relations.items() if key in wanted}


def _dbt_build(
    context: dg.AssetExecutionContext,
    dbt: DbtCliResource,
    warehouse: Warehouse,
    flags: list[str] = (),
    *,
    every_raw_row: bool = False,
) -> Iterator:
    """`dbt build` of the selection, staged (reading every raw row if asked); a dbt error that
    is not a failed test fails the step."""
    flags = [*flags, *dbt_vars(STAGED, EVERY_RAW_ROW if every_raw_row else {})]
    # dagster-dbt 0.29 reads `context.op`, deprecated on AssetExecutionContext: hand it the
    # op context it wants, so every run stays free of deprecation warnings.
    invocation = dbt.cli(["build", *flags], context=context.op_execution_context, raise_on_error=False)
    failed_checks = []
    for event in invocation.stream():
        if isinstance(event, dg.AssetCheckResult) and not event.passed:
            failed_checks.append(event)
        else:
            yield event
    # dbt has exited and released the warehouse: each failed check names (or describes) its failing rows.
    examples = {}
    if failed_checks and (invocation.target_path / "run_results.json").exists():
        results = invocation.get_artifact("run_results.json")["results"]
        examples = failing_examples(warehouse.read_sql, invocation.manifest, results)
    for check in failed_checks:
        yield check.with_metadata({**check.metadata, **examples.get(check.metadata["unique_id"].value, {})})
    # Failed blocking checks fail the step with a message that names them; any other error
    # fails it here, with dbt's own first line.
    if failure := dbt_failure(invocation, ignore_failed_tests=bool(failed_checks)):
        raise failure


def _funnel_metadata(context, warehouse: Warehouse, output: dg.Output) -> dict:
    # pandas and matplotlib load only in the step that draws the funnel, not with the definitions.
    from greenery_orchestration import funnel, report  # noqa: PLC0415

    by = FUNNEL_REPORTS[context.asset_key_for_output(output.output_name)]
    # The numbers of this build, as they will be published if every test passes.
    frame = funnel.read_funnel(warehouse.read_sql, by, staged=warehouse.staged_relation)
    title = "Sessions per funnel step" if by == "step" else "Sessions per product and step"
    metadata = {
        "funnel": funnel.as_table_metadata(frame),
        "funnel_chart": dg.MetadataValue.md(funnel.funnel_chart_markdown(frame, title)),
    }
    if by == "step":
        # The docs step rewrites the report once this build is published.
        metadata["report"] = dg.MetadataValue.url(f"{docs_url()}/{report.REPORT_DIR}/")
    return metadata
