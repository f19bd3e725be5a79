"""Python's way into the warehouse, outside dbt."""

from datetime import datetime

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from greenery_orchestration.settings import PROD, duckdb_path


class WarehouseBusy(Exception):
    """A run holds the warehouse's only write lock; try again later."""


def duckdb_resource(environment: str = PROD) -> DuckDBResource:
    return DuckDBResource(database=str(duckdb_path(environment)))


def newest_loaded_at(criteria: dict[dg.AssetKey, dict]) -> dict[dg.AssetKey, datetime | None]:
    """max(loaded_at_field) of each source, read in one short read-only connection."""
    path = duckdb_path(PROD)
    if not path.exists():
        return dict.fromkeys(criteria)
    try:
        connection = duckdb.connect(str(path), read_only=True)
    except duckdb.IOException as error:  # DuckDB allows one writer per file, and no reader beside it
        raise WarehouseBusy(str(error).splitlines()[0]) from None
    with connection:
        return {
            key: _newest(connection, criterion["loaded_at_field"], criterion["relation_name"])
            for key, criterion in criteria.items()
        }


def _newest(connection, column: str, relation: str) -> datetime | None:
    try:
        return connection.execute(f"select max({column}) from {relation}").fetchall()[0][0]
    except duckdb.CatalogException:
        return None
