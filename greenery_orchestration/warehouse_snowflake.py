"""The production warehouse: a Snowflake database, reached through dagster-snowflake's resource."""

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import dagster as dg
from dagster_snowflake import SnowflakeResource

from greenery_orchestration import wap_snowflake
from greenery_orchestration.marts import STAGED
from greenery_orchestration.settings import snowflake_emulated, snowflake_endpoint, snowflake_environment, snowflake_key_pair
from greenery_orchestration.warehouse import Changes, WarehouseUnusable, newest_sql

if TYPE_CHECKING:
    import pandas as pd

    from greenery_orchestration.rawdata.sample import Appended

    from greenery_orchestration.wap import Relation


# Snowflake's error for an object that does not exist (or that the role may not see).
_DOES_NOT_EXIST = 2003


class SnowflakeWarehouse(SnowflakeResource):
    """SNOWFLAKE_DATABASE: its schema raw, the schemas dbt builds, and a clone per environment."""

    kind: ClassVar[str] = "snowflake"

    @property
    def location(self) -> str:
        return f"Snowflake database {self.database}"

    def read_sql(self, sql: str) -> "pd.DataFrame":
        import pandas as pd  # noqa: PLC0415

        with self.get_connection() as connection:
            cursor = connection.cursor()
            cursor.execute(sql)
            frame = pd.DataFrame(cursor.fetchall(), columns=[column[0] for column in cursor.description])
        return frame.rename(columns=str.lower)

    def newest_loaded_at(self, criteria: Mapping[dg.AssetKey, dict]) -> dict[dg.AssetKey, datetime | None]:
        import pandas as pd  # noqa: PLC0415

        from snowflake.connector.errors import ProgrammingError  # noqa: PLC0415

        newest = {}
        for key, criterion in criteria.items():
            try:
                value = self.read_sql(newest_sql(criterion))["newest"].iloc[0]
            except ProgrammingError as error:
                if error.errno != _DOES_NOT_EXIST:
                    raise
                value = None  # not loaded yet: no rows, as on DuckDB, not a failed sensor tick
            newest[key] = None if pd.isna(value) else pd.Timestamp(value).tz_localize(None).to_pydatetime()
        return newest

    def check_usable(self, need_raw: bool = True) -> None:
        if not need_raw:
            return
        tables = self.read_sql(
            f"select count(*) as tables from {self.database}.information_schema.tables where lower(table_schema) = 'raw'"
        )["tables"].iloc[0]
        if not tables:
            raise WarehouseUnusable(
                f"no raw tables in {self.location}: run `greenery sample` or `greenery load-csv DIR` first"
            )

    def load_csv(self, folder: Path) -> dict[str, int]:
        from greenery_orchestration.rawdata.snowflake_load import snowflake_load_csv_dir  # noqa: PLC0415

        with self.get_connection() as connection:
            return snowflake_load_csv_dir(connection, folder, database=self.database)

    def write_sample(self, **spec) -> dict[str, int]:
        from greenery_orchestration.rawdata.snowflake_load import snowflake_write_sample  # noqa: PLC0415

        with self.get_connection() as connection:
            return snowflake_write_sample(connection, database=self.database, **spec)

    def append_sample(self, **spec) -> "Appended":
        from greenery_orchestration.rawdata.snowflake_load import snowflake_append_sample  # noqa: PLC0415

        with self.get_connection() as connection:
            return snowflake_append_sample(connection, database=self.database, **spec)

    def write_failure(self, error: Exception) -> str | None:
        from snowflake.connector.errors import Error  # noqa: PLC0415

        from greenery_orchestration.rawdata.snowflake_load import snowflake_load_failure  # noqa: PLC0415

        return snowflake_load_failure(error) if isinstance(error, Error) else None

    def catalog_digest(self) -> str | None:
        # dbt-snowflake's catalog holds each table's row count and bytes: every run changes it.
        return None

    def staged_relation(self, schema: str, name: str) -> str:
        return f"{schema}{STAGED}.{name}"

    def stage_build(self) -> None:
        # Every schema dbt fills, zero-copy: the snapshot's history and the incremental models' rows.
        with self.get_connection() as connection:
            wap_snowflake.stage(connection, self.database, _dbt_schemas())

    def publish(
        self, built: Iterable["Relation"], run_id: str, code_version: str, *, run_started_at: datetime | None
    ) -> dict[str, int]:
        with self.get_connection() as connection:
            published = wap_snowflake.publish(
                connection, self.database, _dbt_schemas(), run_id, code_version, run_started_at=run_started_at
            )
            return published.row_counts

    def last_publish(self) -> tuple[str, datetime] | None:
        with self.get_connection() as connection:
            return wap_snowflake.last_publish(connection, self.database)

    def clone(
        self, environments: list[str], pii: dict[str, list[str]], changes: Mapping[str, Changes]
    ) -> Iterable[tuple[str, dict]]:
        # Masking policies travel with a zero-copy clone: `pii` is already masked there. And a
        # zero-copy clone copies no rows, whatever changed: `changes` would save nothing.
        for environment in environments:
            database, role = snowflake_environment(environment)
            statements = snowflake_clone_sql(self.database, database, role)
            with self.get_connection() as connection:
                cursor = connection.cursor()
                if snowflake_emulated():
                    statements = _emulated_clone_sql(cursor, self.database, database)
                for statement in statements:
                    cursor.execute(statement)
            yield environment, {"database": database, "role": role}


def snowflake_clone_sql(prod_database: str, environment_database: str, role: str) -> list[str]:
    """Zero-copy clone of prod, readable by the environment's role; policies travel with it."""
    return [
        f"create or replace database {environment_database} clone {prod_database}",
        f"grant usage on database {environment_database} to role {role}",
        f"grant usage on all schemas in database {environment_database} to role {role}",
        f"grant select on all tables in database {environment_database} to role {role}",
        f"grant select on all views in database {environment_database} to role {role}",
    ]


def _emulated_clone_sql(cursor, prod_database: str, environment_database: str) -> list[str]:
    """fakesnow's nearest to a database clone: its `database … clone` makes an empty database, and
    it has no grants; a table clone copies the rows. Views are not cloned."""
    cursor.execute(
        f"select table_schema, table_name from {prod_database}.information_schema.tables "
        "where table_type = 'BASE TABLE' and lower(table_schema) <> 'information_schema' order by 1, 2"
    )
    tables = cursor.fetchall()
    statements = [f"create database if not exists {environment_database}"]
    statements += [f"create schema if not exists {environment_database}.{schema}" for schema in sorted({s for s, _ in tables})]
    for schema, name in tables:  # fakesnow's `create or replace … clone` fails on an existing table
        statements += [
            f"drop table if exists {environment_database}.{schema}.{name}",
            f"create table {environment_database}.{schema}.{name} clone {prod_database}.{schema}.{name}",
        ]
    return statements


def _dbt_schemas() -> list[str]:
    from greenery_orchestration.project import greenery_project  # noqa: PLC0415

    return wap_snowflake.dbt_schemas(json.loads(greenery_project.manifest_path.read_text()))


def snowflake_warehouse() -> SnowflakeWarehouse:
    # EnvVar: resolved when a run or sensor starts, and never shown in the UI or the logs.
    return SnowflakeWarehouse(
        account=dg.EnvVar("SNOWFLAKE_ACCOUNT"),
        user=dg.EnvVar("SNOWFLAKE_USER"),
        role=dg.EnvVar("SNOWFLAKE_ROLE"),
        warehouse=dg.EnvVar("SNOWFLAKE_WAREHOUSE"),
        database=dg.EnvVar("SNOWFLAKE_DATABASE"),
        **(
            {"private_key_path": dg.EnvVar("SNOWFLAKE_PRIVATE_KEY_PATH")}
            if snowflake_key_pair()
            else {"password": dg.EnvVar("SNOWFLAKE_PASSWORD")}
        ),
        # The resource has no fields for host, port and protocol. Without the zero timeout the
        # connector probes cloud metadata endpoints at every login, which only workload
        # identity authentication needs; dbt-snowflake turns the probe off the same way.
        additional_snowflake_connection_args={**snowflake_endpoint(), "platform_detection_timeout_seconds": 0.0},
    )
