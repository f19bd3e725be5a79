"""Clone prod to the other environments, with every declared PII column masked."""

import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import dagster as dg
import duckdb

from greenery_orchestration.assets.sources import raw_manifest
from greenery_orchestration.chain.masking import pii_columns
from greenery_orchestration.settings import duckdb_memory_limit, target
from greenery_orchestration.wap import create_views
from greenery_orchestration.warehouse import WAREHOUSE_POOL, WAREHOUSE_RETRY, Warehouse

ENVIRONMENTS = ["dev", "ci"]


def clone_duckdb(
    prod: Path, target: Path, pii: dict[str, list[str]], salt: str, also_to: Sequence[Path] = ()
) -> dict[str, int]:
    """Copy every table of `prod` into a new file at `target`, masking the declared PII columns
    with a salted SHA-256, and recreate its views over those masked tables. The file is written
    beside `target` and moved over it at the end, so a reader sees the old clone or the new one,
    never half of one. A copy of the same file goes to each path in `also_to`, moved into place
    the same way: environments hold the same masked data, and copying a file is a fraction of the
    work of masking prod again. Returns the rows copied per table.
    """
    targets = [target, *also_to]
    partials = [path.with_name(path.name + ".partial") for path in targets]
    try:
        for partial in partials:
            partial.unlink(missing_ok=True)
        copied = _copy_masked(prod, partials[0], pii, salt)
        for partial in partials[1:]:
            shutil.copyfile(partials[0], partial)
    except BaseException:
        for partial in partials:
            partial.unlink(missing_ok=True)
        raise
    for path, partial in zip(targets, partials, strict=True):
        Path(f"{path}.wal").unlink(missing_ok=True)
        os.replace(partial, path)
    return copied


def _copy_masked(prod: Path, partial: Path, pii: dict[str, list[str]], salt: str) -> dict[str, int]:
    copied = {}
    with duckdb.connect(str(partial), config={"memory_limit": duckdb_memory_limit()}) as connection:
        connection.execute("attach ? as prod (read_only)", [str(prod)])
        tables = connection.execute(
            "select schema_name, table_name from duckdb_tables() "
            "where database_name = 'prod' and not temporary order by all"
        ).fetchall()
        views = connection.execute(
            "select schema_name, sql from duckdb_views() "
            "where database_name = 'prod' and not internal and not temporary order by all"
        ).fetchall()
        for schema in sorted({schema for schema, _ in [*tables, *views]}):
            connection.execute(f'create schema if not exists "{schema}"')
        for schema, name in tables:
            masked = set(pii.get(f"{schema}.{name}", []))
            columns = [
                _masked(column, salt) if column in masked else f'"{column}"'
                for (column,) in connection.execute(
                    "select column_name from duckdb_columns() where database_name = 'prod' "
                    "and schema_name = ? and table_name = ? order by column_index",
                    [schema, name],
                ).fetchall()
            ]
            connection.execute(
                f'create table "{schema}"."{name}" as select {", ".join(columns)} from prod."{schema}"."{name}"'
            )
            copied[f"{schema}.{name}"] = connection.execute(
                f'select count(*) from "{schema}"."{name}"'
            ).fetchall()[0][0]
        # Views are recreated, not copied: they read the masked tables, cost nothing to clone, and
        # with prod detached a view that reached into prod would fail here rather than leak.
        connection.execute("detach prod")
        create_views(connection, [sql for _, sql in views])
    return copied


def _masked(column: str, salt: str) -> str:
    escaped = salt.replace("'", "''")
    return f"'masked_' || left(sha256('{escaped}' || cast(\"{column}\" as varchar)), 16) as \"{column}\""


def snowflake_clone_sql(prod_database: str, environment_database: str, role: str) -> list[str]:
    """Zero-copy clone of prod, readable by the environment's role; policies travel with it."""
    return [
        f"create or replace database {environment_database} clone {prod_database}",
        f"grant usage on database {environment_database} to role {role}",
        f"grant usage on all schemas in database {environment_database} to role {role}",
        f"grant select on all tables in database {environment_database} to role {role}",
        f"grant select on all views in database {environment_database} to role {role}",
    ]


def snowflake_environment(environment: str) -> tuple[str, str]:
    """The environment's database and role: GREENERY_<ENV>_DATABASE / _ROLE, else <PROD>_<ENV>, <ENV>_ROLE."""
    prefix = f"GREENERY_{environment.upper()}"
    database = os.environ.get(f"{prefix}_DATABASE") or f"{os.environ['SNOWFLAKE_DATABASE']}_{environment}".upper()
    return database, os.environ.get(f"{prefix}_ROLE") or f"{environment}_ROLE".upper()


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
    for environment, metadata in warehouse.clone(ENVIRONMENTS, pii_columns(manifest)):
        context.log.info(f"Cloned prod into {environment}, PII masked: {metadata}")
        yield dg.MaterializeResult(asset_key=["environments", environment], metadata=metadata)
