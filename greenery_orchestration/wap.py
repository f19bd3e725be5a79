"""Write-audit-publish: what readers see changes all at once, and only after every test passed.

A production build writes every model and snapshot under `<name>__staged` beside the relation
readers use (dbt_project/macros/generate_alias_name.sql); an incremental model stages only its new
rows, and the snapshot only its new and closed versions, as `<name>__delta`, with `<name>__staged`
a view of the table as it will be (macros/materializations/incremental.sql, snapshot.sql). Every
blocking test runs on the staged relations.
Publishing is one DuckDB transaction: staged tables are renamed over the published ones (no
copy), deltas are merged in by key (a scan of the published keys, from the delta's earliest
`merge_since` value on where the model declares one, and the new rows), views are
recreated on the published names, and a row goes to the publish log. A failed run publishes
nothing and leaves its staged relations for inspection until the next run rebuilds them.
"""

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import duckdb

from greenery_orchestration.marts import STAGED

PUBLISH_KEY = dg.AssetKey(["governance", "publish"])
DELTA = "__delta"  # macros/materializations/incremental.sql
PUBLISH_LOG = "ops.publish_log"
# Its columns, in DuckDB's types (wap_snowflake writes them in Snowflake's); timestamps naive UTC.
PUBLISH_LOG_COLUMNS = {
    "run_id": "varchar",
    "published_at": "timestamp",
    "code_version": "varchar",
    "row_counts": "varchar",  # JSON: {"raw.events": 32000, ...}
    # When the publishing run began, if it ran the gate: that tested the raw rows loaded before
    # then, and the next gate reads those loaded since (dbt_project/macros/loaded_since_last_run.sql).
    # Null for a run of a few assets without the gate, and in older rows.
    "run_started_at": "timestamp",
}


@dataclass(frozen=True)
class Relation:
    """A dbt model or snapshot as readers see it: `schema.name`, with the unique key an
    incremental model merges on (none: it appends) and its `merge_since` column, if any."""

    schema: str
    name: str
    unique_key: tuple[str, ...] = ()
    since: str | None = None

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"


def relation(node: Mapping[str, Any], name: str | None = None) -> Relation:
    """A dbt node's relation, by its alias or `name`, with how its deltas merge."""
    return Relation(node["schema"], name or node["alias"], merge_key(node), merge_since(node))


def merge_key(node: Mapping[str, Any]) -> tuple[str, ...]:
    """The columns by which the rows of a dbt node's staged delta replace published ones: an
    incremental model's `unique_key` (one name or a list; none for a model that appends); a
    snapshot's version id, since its rows are versions of what its `unique_key` names."""
    if node["resource_type"] == "snapshot":
        return (snapshot_column(node, "dbt_scd_id"),)
    key = node["config"].get("unique_key") or ()
    return (key,) if isinstance(key, str) else tuple(key)


def merge_since(node: Mapping[str, Any]) -> str | None:
    """The column an incremental model declares as `meta: {merge_since: <column>}`: a rebuilt
    row's value there is never later than that of the row it replaces, so a merge need not match
    the published rows earlier than the delta's earliest (macros/materializations/incremental.sql)."""
    return ((node["config"].get("meta") or {}).get("merge_since")) if node["resource_type"] == "model" else None


def since_condition(alias: str, column: str | None, earliest: object) -> tuple[str, dict[str, object]]:
    """The rows of `alias` that rows whose earliest `column` value is `earliest` can replace, as
    SQL and its parameters: all of them when there is no such column or no such row."""
    if column is None or earliest is None:
        return "true", {}
    return f'({alias}."{column}" >= $earliest or {alias}."{column}" is null)', {"earliest": earliest}


def snapshot_column(node: Mapping[str, Any], name: str) -> str:
    """A snapshot's meta column (`dbt_scd_id`, `dbt_valid_to`, ...) under the name it configures."""
    return (node["config"].get("snapshot_meta_column_names") or {}).get(name) or name


class NothingStaged(Exception):
    """A relation this run should have built has no staged version to publish."""


def publish(
    connection: duckdb.DuckDBPyConnection, built: Iterable[Relation], run_id: str, code_version: str, *,
    run_started_at: datetime | None,
) -> dict[str, int]:
    """Publish the staged versions of `built` in one transaction, with a publish-log row (the run
    began at `run_started_at`, naive UTC); then drop whatever staged relations are left. Returns
    the row count of every published table and raw table, as logged."""
    built = sorted(built, key=str)
    connection.execute("begin transaction")
    try:
        views = [statement for relation in built if (statement := _publish_one(connection, relation))]
        create_views(connection, views)
        counts = _row_counts(connection)
        create_publish_log(connection)
        row = {
            "run_id": run_id, "published_at": datetime.now(UTC).replace(tzinfo=None), "code_version": code_version,
            "row_counts": json.dumps(counts, sort_keys=True), "run_started_at": run_started_at,
        }
        connection.execute(
            f"insert into {PUBLISH_LOG} ({', '.join(row)}) values ({', '.join('?' * len(row))})", list(row.values())
        )
        connection.execute("commit")
    except BaseException:
        connection.execute("rollback")
        raise
    drop_staged(connection)
    return counts


def create_publish_log(connection: duckdb.DuckDBPyConnection) -> None:
    """One row per publish: its run, when (naive UTC), the dbt code's version, the row count of
    every table as published, raw tables included, and when the run began. A log from before a
    column gains it."""
    connection.execute("create schema if not exists ops")
    columns = ", ".join(f"{name} {data_type}" for name, data_type in PUBLISH_LOG_COLUMNS.items())
    connection.execute(f"create table if not exists {PUBLISH_LOG} ({columns})")
    for name, data_type in PUBLISH_LOG_COLUMNS.items():
        connection.execute(f"alter table {PUBLISH_LOG} add column if not exists {name} {data_type}")


def last_publish(connection: duckdb.DuckDBPyConnection) -> tuple[str, datetime] | None:
    """The run id and time (naive UTC) of the newest publish, if any."""
    try:
        return connection.execute(f"select run_id, published_at from {PUBLISH_LOG} order by published_at desc limit 1").fetchone()
    except duckdb.CatalogException:
        return None


def drop_staged(connection: duckdb.DuckDBPyConnection) -> list[str]:
    """Drop every staged relation and delta: a failed build's, once a later one is published."""
    dropped = []
    for schema, name, kind in _objects(connection):
        if name.endswith((STAGED, DELTA)):
            connection.execute(f"drop {kind} if exists {_quoted(schema, name)}")
            dropped.append(f"{schema}.{name}")
    return dropped


def _publish_one(connection: duckdb.DuckDBPyConnection, relation: Relation) -> str | None:
    """Publish a table or a delta; for a view, drop the staged one and return the statement that
    creates it on the published names (DuckDB binds a view when it is created: tables first)."""
    schema, name = relation.schema, relation.name
    published, staged = _quoted(schema, name), _quoted(schema, name + STAGED)
    staged_kind, published_kind = _kind(connection, schema, name + STAGED), _kind(connection, schema, name)
    delta = _kind(connection, schema, name + DELTA) == "table"
    if staged_kind is None:
        raise NothingStaged(f"{relation}: this run built it, but {schema}.{name}{STAGED} is missing")
    if staged_kind == "view" and delta:
        # An incremental model: the new rows replace the published rows with the same key (with
        # no key, they are added).
        columns = ", ".join(f'"{c}"' for c in _columns(connection, schema, name))
        delta_table = _quoted(schema, name + DELTA)
        if relation.unique_key:
            matches = " and ".join(f'delta."{key}" = published."{key}"' for key in relation.unique_key)
            earliest = (
                connection.execute(f'select min("{relation.since}") from {delta_table}').fetchone()[0]
                if relation.since else None
            )
            since, parameters = since_condition("published", relation.since, earliest)
            connection.execute(
                f"delete from {published} as published where {since} "
                f"and exists (select 1 from {delta_table} as delta where {matches})",
                parameters,
            )
        connection.execute(f"insert into {published} ({columns}) select {columns} from {delta_table}")
        connection.execute(f"drop view {staged}")
        connection.execute(f"drop table {delta_table}")
        return None
    if published_kind:
        connection.execute(f"drop {published_kind} {published}")
    if staged_kind == "table":
        connection.execute(f'alter table {staged} rename to "{name}"')
        return None
    # A view names what it reads: the staged names become the published ones.
    (sql,) = connection.execute(
        "select sql from duckdb_views() where database_name = current_database() and schema_name = ? "
        "and view_name = ?",
        [schema, name + STAGED],
    ).fetchone()
    connection.execute(f"drop view {staged}")
    return _unstaged(sql)


def create_views(connection: duckdb.DuckDBPyConnection, statements: list[str]) -> None:
    """Run the CREATE VIEW statements, each after the views among them that it reads: DuckDB binds
    a view when it is created, and a failed statement aborts the publish's transaction, so there
    is no trying again later."""
    names = {statement: _view_name(statement) for statement in statements}
    pending = list(statements)
    while pending:
        ready = [
            statement for statement in pending
            if not any(other is not statement and _reads(statement, names[other]) for other in pending)
        ]
        if not ready:
            raise ValueError(f"views that read each other in a cycle: {sorted(map(str, names.values()))}")
        for statement in ready:
            connection.execute(statement)
        pending = [statement for statement in pending if statement not in ready]


_IDENTIFIER = r'(?:"[^"]+"|[\w$]+)'


def _view_name(statement: str) -> tuple[str, ...]:
    """The view a CREATE VIEW statement creates: (schema, name), or (name,) when unqualified."""
    match = re.match(rf"\s*create\s+(?:or\s+replace\s+)?view\s+({_IDENTIFIER}(?:\.{_IDENTIFIER})*)", statement, re.IGNORECASE)
    if not match:
        raise ValueError(f"not a CREATE VIEW statement: {statement[:80]}")
    return tuple(part.strip('"') for part in re.findall(_IDENTIFIER, match.group(1)))[-2:]


def _reads(statement: str, view: tuple[str, ...]) -> bool:
    """Whether the statement's query names `view` (bare or quoted, with or without its database)."""
    query = statement[statement.lower().index(" as ") :]
    name = r"\s*\.\s*".join(f'"?{re.escape(part)}"?' for part in view)
    return re.search(rf"(?<![\w$]){name}(?![\w$])", query, re.IGNORECASE) is not None


def _unstaged(sql: str) -> str:
    """A staged view's SQL on the published names (DuckDB writes identifiers bare or quoted)."""
    return re.sub(rf'{STAGED}(?=["\s.,;)]|$)', "", sql)


def _row_counts(connection: duckdb.DuckDBPyConnection) -> dict[str, int]:
    counts = {}
    for schema, name, kind in _objects(connection):
        if kind == "table" and schema != "ops" and not name.endswith((STAGED, DELTA)):
            counts[f"{schema}.{name}"] = connection.execute(f"select count(*) from {_quoted(schema, name)}").fetchone()[0]
    return counts


def _objects(connection: duckdb.DuckDBPyConnection) -> list[tuple[str, str, str]]:
    return connection.execute(
        "select schema_name, table_name, 'table' from duckdb_tables() where database_name = current_database() "
        "union all select schema_name, view_name, 'view' from duckdb_views() "
        "where database_name = current_database() and not internal and not temporary order by all"
    ).fetchall()


def _kind(connection: duckdb.DuckDBPyConnection, schema: str, name: str) -> str | None:
    found = connection.execute(
        "select 'table' from duckdb_tables() where database_name = current_database() and schema_name = ? "
        "and table_name = ? union all select 'view' from duckdb_views() where database_name = current_database() "
        "and schema_name = ? and view_name = ?",
        [schema, name, schema, name],
    ).fetchall()
    return found[0][0] if found else None


def _columns(connection: duckdb.DuckDBPyConnection, schema: str, name: str) -> list[str]:
    return [
        column
        for (column,) in connection.execute(
            "select column_name from duckdb_columns() where database_name = current_database() "
            "and schema_name = ? and table_name = ? order by column_index",
            [schema, name],
        ).fetchall()
    ]


def _quoted(schema: str, name: str) -> str:
    return f'"{schema}"."{name}"'
