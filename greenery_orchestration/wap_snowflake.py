"""Write-audit-publish on Snowflake: stage the build in `<schema>__staged` schemas, publish by swaps.

On DuckDB (wap.py) a staged relation sits beside the published one and one transaction renames it
over it. Snowflake commits every DDL statement on its own, so there one statement must publish
what readers read together, and that is a schema swap:

- `stage()`, before the staged snapshot and build: each schema dbt fills (staging, intermediate,
  snapshots, marts) is cloned to `<schema>__staged`, zero-copy, so the incremental models and the
  snapshot find their history there and add to it, and a run of a few models carries the rest
  over unchanged. A staged dbt build (`--vars '{staged: true}'`) writes into those schemas
  (dbt_project/macros/generate_schema_name.sql) and runs every test there.
- `publish()`, once every test passed: `alter schema <s>__staged swap with <s>`, one schema at a
  time, marts last, so readers of the marts see all of them change in one statement. A swap
  renames both schema objects, nothing is copied, and the masking policies the post-hooks attached
  in the staged schema go with their columns. Then the views are created again on the published
  names (a view names the schemas it reads, and dbt created it reading `__staged` ones), a row goes
  to ops.publish_log (the table and columns of wap.py), and the leftovers (what was published
  before, now in the `__staged` schemas) are dropped.
- A run that fails a test never calls `publish()`: the published schemas are untouched and the
  failed build stays in the `__staged` schemas until the next `stage()` replaces them.

Schemas rather than `alter database <build> swap with <prod>`: the raw tables and the masking
policies live in prod's database, and a database swap would move them, raw rows loaded during
the build included, to the database being retired.

Grants stay with the object they were made on, and a swap exchanges names, not objects:
- Grants on a schema itself (USAGE for readers) stay with the retired schema object, so after the
  swap the published name has none; and a clone does not copy them either. `publish()` reads them
  (SHOW GRANTS ON SCHEMA) before the swap and grants them again on the new object right after it.
- Future grants on a schema (how a reader role gets SELECT on each table dbt creates) are also the
  schema object's: `stage()` copies them onto the staged schema before dbt creates anything there,
  and `publish()` grants them again on the published name.
- Grants on tables and views: the clone keeps them; a relation dbt rebuilds gets what the future
  grants give (as on every dbt build, in place or not).
The project itself grants nothing on prod's schemas (the clones' grants are chain/clone.py's);
these re-grants keep whatever an administrator granted. Ownership is not re-granted.

Not atomic as a whole: each swap is, and the marts swap is one statement, but a publish that
stops between two swaps has published the layers before it. Do not run `publish()` again then
(it would swap those back); the next run's `stage()` clones what is published and its build
rebuilds every layer.

Both take a DB-API connection of snowflake-connector-python (dagster-snowflake's
`SnowflakeResource.get_connection()`) and name every object in full, database included; Snowflake
makes a schema it creates the session's current one, so a caller should not rely on that after.
On fakesnow (GREENERY_SNOWFLAKE_EMULATED=true) what it cannot run is replaced by the nearest
statements it can (snowflake_emulation.py); what `stage()` and `publish()` return is always what
Snowflake runs.
"""

import json
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from greenery_orchestration import wap
from greenery_orchestration.marts import STAGED
from greenery_orchestration.settings import snowflake_emulated
from greenery_orchestration.wap import PUBLISH_LOG, NothingStaged

log = logging.getLogger(__name__)

# What readers query: swapped last, once everything it is built from is published.
READERS_SCHEMA = "marts"
# The order dbt's layers read each other in: a view recreated after the swaps reads published names.
LAYERS = ("staging", "snapshots", "intermediate")
# wap.create_publish_log's table, in Snowflake's types (DuckDB's `timestamp` is naive: timestamp_ntz).
PUBLISH_LOG_COLUMNS = {
    name: "timestamp_ntz" if data_type == "timestamp" else data_type for name, data_type in wap.PUBLISH_LOG_COLUMNS.items()
}
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")


@dataclass
class Published:
    """What a publish logged (row count of every published and raw table, as in wap.publish), and
    the statements it ran, as Snowflake runs them."""

    row_counts: dict[str, int]
    statements: list[str] = field(default_factory=list)


def stage(connection, database: str, schemas: Iterable[str]) -> list[str]:
    """Clone each of `schemas` in `database` to `<schema>__staged` (replacing a failed build's),
    with the published schema's future grants, for a staged dbt build to write into. A schema
    never published yet is created empty first, so that its staged clone is one too. Returns the
    statements, as Snowflake runs them."""
    session = _Session(connection)
    for schema in publish_order(schemas):
        published, staged = _name(database, schema), _name(database, schema + STAGED)
        session.run(f"create schema if not exists {published}")
        session.run(f"create or replace schema {staged} clone {published}")
        for statement in future_grant_sql(staged, session.rows(f"show future grants in schema {published}")):
            session.run(statement)
    return session.statements


def publish(
    connection, database: str, schemas: Iterable[str], run_id: str, code_version: str, *, run_started_at: datetime | None
) -> Published:
    """Swap each staged schema of `database` with its published one, marts last, granting again
    what was granted on the published schema; recreate the views on the published names; log the
    publish in ops.publish_log (the run began at `run_started_at`, naive UTC); drop what was
    published before. Raises NothingStaged, before
    changing anything, when a staged schema is missing or was not cloned by `stage()`. Returns
    the logged row counts and the statements, as Snowflake runs them."""
    session = _Session(connection)
    order = publish_order(schemas)
    existing = {
        row["schema_name"].upper()
        for row in session.rows(f"select schema_name from {_name(database)}.information_schema.schemata")
    }
    _check_staged(session, database, order, existing)
    for schema in order:
        published = _name(database, schema)
        grants = session.rows(f"show grants on schema {published}") if schema.upper() in existing else []
        future = session.rows(f"show future grants in schema {published}") if schema.upper() in existing else []
        for statement in swap_sql(database, [schema]):
            session.run(statement)
        for statement in [*schema_grant_sql(published, grants), *future_grant_sql(published, future)]:
            session.run(statement)
    _recreate_views(session, database, order)
    counts = _row_counts(session, database)
    published_at = datetime.now(UTC).replace(tzinfo=None)
    for statement in publish_log_sql(database, run_id, published_at, code_version, counts, run_started_at):
        session.run(statement)
    for schema in order:
        session.run(f"drop schema if exists {_name(database, schema + STAGED)} cascade")
    return Published(counts, session.statements)


def last_publish(connection, database: str) -> tuple[str, datetime] | None:
    """The run id and time (naive UTC) of the newest publish, if any (wap.last_publish's answer)."""
    schema, table = PUBLISH_LOG.split(".")
    cursor = connection.cursor()
    found = cursor.execute(
        f"select count(*) from {_name(database)}.information_schema.tables "
        f"where table_schema = '{schema.upper()}' and table_name = '{table.upper()}'"
    ).fetchall()
    if not found[0][0]:
        return None
    row = cursor.execute(
        f"select run_id, published_at from {_name(database, PUBLISH_LOG)} order by published_at desc limit 1"
    ).fetchone()
    return (row[0], row[1]) if row else None


def publish_order(schemas: Iterable[str]) -> list[str]:
    """`schemas` in the order they are staged and published: dbt's layers in the order they read
    each other, any other schema after them, marts last."""
    unique = {_check(schema).lower() for schema in schemas}
    rank = {name: number for number, name in enumerate(LAYERS)}
    return sorted(unique, key=lambda name: (name == READERS_SCHEMA, rank.get(name, len(LAYERS)), name))


def dbt_schemas(manifest: dict) -> list[str]:
    """The schemas dbt fills with models, snapshots and seeds, as published (from a staged parse too),
    in publish order: what `stage()` and `publish()` take."""
    return publish_order(
        node["schema"].removesuffix(STAGED)
        for node in manifest["nodes"].values()
        if node["resource_type"] in ("model", "snapshot", "seed")
    )


def swap_sql(database: str, schemas: Iterable[str]) -> list[str]:
    """The statements that swap each staged schema in, in publish order. A schema never published
    is created empty first (a swap needs both)."""
    statements = []
    for schema in publish_order(schemas):
        published = _name(database, schema)
        statements += [f"create schema if not exists {published}", f"alter schema {published}{STAGED} swap with {published}"]
    return statements


def schema_grant_sql(schema: str, grants: Sequence[dict]) -> list[str]:
    """GRANT statements that give `schema` (database.schema) what `grants` (SHOW GRANTS ON SCHEMA
    rows, as dicts with lower-case keys) gave the schema object before it, ownership aside."""
    statements = []
    for grant in grants:
        if grant["privilege"].upper() == "OWNERSHIP":
            continue
        statements.append(
            f"grant {grant['privilege'].lower()} on schema {schema} to {_grantee(grant['granted_to'], grant['grantee_name'])}"
            + (" with grant option" if str(grant.get("grant_option")).lower() == "true" else "")
        )
    return statements


def future_grant_sql(schema: str, grants: Sequence[dict]) -> list[str]:
    """GRANT ... ON FUTURE ... IN SCHEMA statements giving `schema` the future grants in `grants`
    (SHOW FUTURE GRANTS IN SCHEMA rows, as dicts with lower-case keys)."""
    statements = []
    for grant in grants:
        kind = grant["grant_on"].lower().replace("_", " ")
        statements.append(
            f"grant {grant['privilege'].lower()} on future {kind}s in schema {schema} "
            f"to {_grantee(grant['grant_to'], grant['grantee_name'])}"
            + (" with grant option" if str(grant.get("grant_option")).lower() == "true" else "")
        )
    return statements


def publish_log_sql(
    database: str, run_id: str, published_at: datetime, code_version: str, counts: dict[str, int],
    run_started_at: datetime | None,
) -> list[str]:
    """The publish-log table, created if missing (a log from before a column gains it), and this
    publish's row."""
    schema = PUBLISH_LOG.split(".")[0]
    log = _name(database, PUBLISH_LOG)
    columns = ", ".join(f"{name} {data_type}" for name, data_type in PUBLISH_LOG_COLUMNS.items())
    row = {
        "run_id": _literal(run_id), "published_at": _timestamp(published_at), "code_version": _literal(code_version),
        "row_counts": _literal(json.dumps(counts, sort_keys=True)), "run_started_at": _timestamp(run_started_at) if run_started_at else "null",
    }
    return [
        f"create schema if not exists {_name(database, schema)}",
        f"create table if not exists {log} ({columns})",
        *(f"alter table {log} add column if not exists {name} {data_type}" for name, data_type in PUBLISH_LOG_COLUMNS.items()),
        f"insert into {log} ({', '.join(row)}) values ({', '.join(row.values())})",
    ]


def _timestamp(moment: datetime) -> str:
    return f"cast({_literal(f'{moment:%Y-%m-%d %H:%M:%S.%f}')} as timestamp_ntz)"


def published_view_sql(definition: str, schemas: Iterable[str]) -> str:
    """A view's DDL (as Snowflake keeps it: the statement that created it) on the published names:
    every `<schema>__staged` of `schemas` read as `<schema>`, and created or replaced."""
    for schema in schemas:
        definition = re.sub(rf"\b({re.escape(schema)}){STAGED}\b", r"\1", definition, flags=re.IGNORECASE)
    definition = definition.strip().rstrip(";").strip()
    return re.sub(r"^create\s+(?!or\s+replace\b)", "create or replace ", definition, count=1, flags=re.IGNORECASE)


def masking_sql(view: str, references: Sequence[dict]) -> list[str]:
    """The masking policies `references` (policy_references rows, as dicts with lower-case keys)
    attached to the columns of `view`, attached again: CREATE OR REPLACE VIEW drops them."""
    return [
        f"alter view {view} modify column {reference['ref_column_name']} set masking policy "
        f"{reference['policy_db']}.{reference['policy_schema']}.{reference['policy_name']} force"
        for reference in references
        if reference.get("policy_kind", "MASKING_POLICY").upper() == "MASKING_POLICY"
    ]


def _check_staged(session: "_Session", database: str, schemas: list[str], existing: set[str]) -> None:
    """Raise NothingStaged unless each staged schema is there and holds every relation its published
    schema holds, as a clone of it does after any build (dbt replaces relations, it drops none). dbt
    creates a missing schema it builds into: without this, a build that was not staged first would
    publish its schemas with none of what it did not build, the snapshot's history included."""
    listed = ", ".join(f"'{name.upper()}'" for schema in schemas for name in (schema, schema + STAGED))
    relations: dict[str, set[str]] = {}
    for view in ("tables", "views"):  # fakesnow lists views apart only
        for row in session.rows(
            f"select table_schema, table_name from {_name(database)}.information_schema.{view} "
            f"where table_schema in ({listed})"
        ):
            relations.setdefault(row["table_schema"].upper(), set()).add(row["table_name"].lower())
    problems = []
    for schema in schemas:
        staged = f"{database}.{schema}{STAGED}"
        if (schema + STAGED).upper() not in existing:
            problems.append(f"{staged} is missing")
        elif lacking := sorted(relations.get(schema.upper(), set()) - relations.get((schema + STAGED).upper(), set())):
            problems.append(f"{staged} lacks {', '.join(lacking)} of {database}.{schema}")
    if problems:
        raise NothingStaged(f"{'; '.join(problems)}: not staged by wap_snowflake.stage(), nothing was published")


def _recreate_views(session: "_Session", database: str, schemas: list[str]) -> None:
    """Every published view that reads a `__staged` schema, created again on the published names,
    with the masking policies it had. After every swap, so each name it reads exists."""
    published = ", ".join(f"'{schema.upper()}'" for schema in schemas)
    views = session.rows(
        f"select table_schema, table_name, view_definition from {_name(database)}.information_schema.views "
        f"where table_schema in ({published}) order by table_schema, table_name"
    )
    for view in views:
        if not re.search(rf"{STAGED}\b", view["view_definition"], re.IGNORECASE):
            continue
        name = _name(database, view["table_schema"].lower(), view["table_name"].lower())
        references = session.rows(
            f"select * from table({_name(database)}.information_schema.policy_references("
            f"ref_entity_name => '{name}', ref_entity_domain => 'view'))"
        )
        session.run(published_view_sql(view["view_definition"], schemas))
        for statement in masking_sql(name, references):
            session.run(statement)


def _row_counts(session: "_Session", database: str) -> dict[str, int]:
    """Rows of every table but the publish log's and the leftovers, as `schema.table` (lower case)."""
    tables = session.rows(
        f"select table_schema, table_name from {_name(database)}.information_schema.tables "
        f"where table_type = 'BASE TABLE' and table_schema not in ('INFORMATION_SCHEMA', '{PUBLISH_LOG.split('.')[0].upper()}') "
        f"and table_schema not ilike '%{STAGED}' order by table_schema, table_name"
    )
    if not tables:
        return {}
    names = [f"{table['table_schema']}.{table['table_name']}".lower() for table in tables]
    # One round trip; Snowflake answers count(*) from each table's metadata.
    counted = session.rows(" union all ".join(
        f"select '{name}' as relation, count(*) as row_count from {_name(database, *name.split('.'))}" for name in names
    ))
    return {row["relation"]: int(row["row_count"]) for row in counted}


class _Session:
    """Where stage() and publish() run their statements and read what they need: on Snowflake as
    written; on fakesnow (GREENERY_SNOWFLAKE_EMULATED=true) through the emulator, which runs the
    nearest statements fakesnow can and answers what it cannot read. The one place that switches.
    `statements` holds what Snowflake runs, either way."""

    def __init__(self, connection):
        self.cursor = connection.cursor()
        self.statements: list[str] = []
        self.emulator = None
        if snowflake_emulated():
            from greenery_orchestration.snowflake_emulation import Emulator  # noqa: PLC0415

            self.emulator = Emulator(self.cursor)

    def run(self, statement: str) -> None:
        self.statements.append(statement)
        if self.emulator is not None:
            self.emulator.run(statement)
        else:
            self.cursor.execute(statement)

    def rows(self, query: str) -> list[dict]:
        """The rows of `query`, as dicts with lower-case keys."""
        if self.emulator is not None:
            return self.emulator.rows(query)
        return _dicts(self.cursor, self.cursor.execute(query).fetchall())


def _dicts(cursor, rows) -> list[dict]:
    names = [column[0].lower() for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in rows]


def _grantee(kind: str, name: str) -> str:
    # SHOW GRANTS names a database role with its database: DB.ROLE.
    parts = name.split(".") if kind.upper() == "DATABASE_ROLE" else [name]
    return f"{kind.lower().replace('_', ' ')} {'.'.join(_quoted(part) for part in parts)}"


def _quoted(name: str) -> str:
    """A name as SHOW returns it (the stored case), as an identifier that resolves to it."""
    return name if re.fullmatch(r"[A-Z_][A-Z0-9_$]*", name) else '"' + name.replace('"', '""') + '"'


def _check(name: str) -> str:
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"not a plain Snowflake identifier: {name!r}")
    return name


def _name(*parts: str) -> str:
    return ".".join(_check(part) for part in ".".join(parts).split("."))


def _literal(value: str) -> str:
    # Snowflake reads backslash escapes inside single-quoted strings.
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
