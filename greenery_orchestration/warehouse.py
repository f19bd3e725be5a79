"""Python's way into the warehouse, outside dbt."""

from dagster_duckdb import DuckDBResource

from greenery_orchestration.settings import PROD, duckdb_path


def duckdb_resource(environment: str = PROD, read_only: bool = False) -> DuckDBResource:
    """DuckDB allows one writer per file: readers open read-only, briefly."""
    return DuckDBResource(
        database=str(duckdb_path(environment)),
        connection_config={"access_mode": "READ_ONLY" if read_only else "AUTOMATIC"},
    )
