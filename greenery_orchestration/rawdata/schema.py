"""The raw tables' columns and types, read from the dbt sources YAML (declared only there)."""

from functools import cache

import yaml

from greenery_orchestration.settings import SOURCES_YAML

RAW_SCHEMA = "raw"


@cache
def raw_columns() -> dict[str, dict[str, str]]:
    """{table: {column: DuckDB type}} in file order, for the seven Greenery raw tables."""
    (source,) = yaml.safe_load(SOURCES_YAML.read_text())["sources"]
    return {
        table["name"]: {column["name"]: column["data_type"] for column in table["columns"]}
        for table in source["tables"]
    }
