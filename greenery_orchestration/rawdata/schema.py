"""The raw tables' columns and types, read from the dbt sources YAML (declared only there)."""

from functools import cache

import yaml

from greenery_orchestration.settings import SOURCES_YAML

RAW_SCHEMA = "raw"


@cache
def declared_columns() -> dict[str, dict[str, str]]:
    """{table: {column: DuckDB type}} in file order, for the seven Greenery raw tables: every
    column a raw table holds, the load marker included (what creates the tables reads this)."""
    return {
        table["name"]: {column["name"]: column["data_type"] for column in table["columns"]}
        for table in _source_tables()
    }


@cache
def raw_columns() -> dict[str, dict[str, str]]:
    """declared_columns() without the load marker: the columns of a raw CSV, which the loader
    validates a file against (the loader adds the marker)."""
    return {
        table: {name: data_type for name, data_type in columns.items() if name != load_marker()}
        for table, columns in declared_columns().items()
    }


@cache
def load_marker() -> str:
    """The column that says which load wrote a row (declared `meta: {load_marker: true}`, on every
    raw table): that load's `loaded_at` in the load log."""
    (marker,) = {
        column["name"] for table in _source_tables() for column in table["columns"] if _meta(column).get("load_marker")
    }
    return marker


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


def _meta(column: dict) -> dict:
    # dbt takes `meta` under `config` (current) or beside it (older projects); honour both.
    return {**column.get("meta", {}), **column.get("config", {}).get("meta", {})}
