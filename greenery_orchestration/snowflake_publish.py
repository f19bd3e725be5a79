"""The publish step of write-audit-publish on Snowflake, as the SQL it will run.

Not used yet: Snowflake builds in place for now (warehouse_snowflake.py `stages_builds`), and this is the
publish its staged build is to end with. That build writes each schema dbt fills (staging,
intermediate, snapshots, marts) as `<schema>__staged`, first cloned from the published schema
(zero-copy, so the incremental models and the snapshot keep their history), and tests it there.
Publishing then swaps each staged schema with the published one: a rename of both, no copy, with
the masking policies attached to their columns (the post-hook attaches them after each build).

Schemas rather than `alter database <build> swap with <prod>`: the raw tables and the masking
policies live in prod's database, and a database swap would move them, raw rows loaded during
the build included, to the database being retired.

What the staged build will also have to do: recreate the views on the published names after the
swap (a view names the schemas it reads: `__staged` ones, before), as wap.py does on DuckDB; and
grant on the schemas again, since a grant stays with the schema object it was made on.
"""

from collections.abc import Iterable

from greenery_orchestration.marts import STAGED

# What readers query: swapped last, once everything it is built from is published.
READERS_SCHEMA = "marts"


def snowflake_swap_sql(database: str, schemas: Iterable[str]) -> list[str]:
    """Statements that publish the staged `schemas` of `database`, marts last. A schema that was
    never published is created empty first (a swap needs both), so the first publish is the same
    as every other. Each swap is atomic; the swaps together are not, since Snowflake commits each
    DDL statement: readers of the marts see them change in one statement."""
    statements = []
    for schema in sorted(set(schemas), key=lambda name: (name == READERS_SCHEMA, name)):
        published = f"{database}.{schema}"
        statements += [
            f"create schema if not exists {published}",
            f"alter schema {published}{STAGED} swap with {published}",
        ]
    return statements
