"""The raw tables' columns and types, read from the dbt sources YAML (declared only there)."""

from functools import cache

import yaml

from greenery_orchestration.settings import SOURCES_YAML

RAW_SCHEMA = "raw"


@cache
def raw_columns() -> dict[str, dict[str, str]]:
    """{table: {column: DuckDB type}} in file order, for the seven Greenery raw tables."""
    return {
        table["name"]: {column["name"]: column["data_type"] for column in table["columns"]}
        for table in _source_tables()
    }


@cache
def pii_columns() -> dict[str, frozenset[str]]:
    """{table: columns declared `meta: {pii: true}`}: values an error message must never show."""
    return {
        table["name"]: frozenset(column["name"] for column in table["columns"] if is_pii(column))
        for table in _source_tables()
    }


def _source_tables() -> list[dict]:
    (source,) = yaml.safe_load(SOURCES_YAML.read_text())["sources"]
    return source["tables"]


def is_pii(column: dict) -> bool:
    return bool(_meta(column).get("pii"))


def is_load_marker(column: dict) -> bool:
    """Whether the column is declared `meta: {load_marker: true}`: each row holds when it was
    loaded, so rows above a copy's newest are the rows loaded since."""
    return bool(_meta(column).get("load_marker"))


def _meta(column: dict) -> dict:
    # dbt takes `meta` under `config` (current) or beside it (older projects); honour both.
    return {**column.get("meta", {}), **column.get("config", {}).get("meta", {})}
