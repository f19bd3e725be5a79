"""What wap_snowflake.py runs on Snowflake, run on fakesnow instead: the nearest statements it can.

Loaded only when GREENERY_SNOWFLAKE_EMULATED=true (wap_snowflake._Session), as dbt_project/emulation/
is for dbt. fakesnow (Snowflake's SQL translated onto DuckDB) cannot:
- clone a schema (`create or replace schema X clone Y`): X is created empty and every table of Y
  cloned into it one by one (fakesnow copies the rows), every view created again from its text;
- rename or swap schemas (`alter schema X swap with Y`), nor move a table to another schema: the
  objects of the two schemas change places by the same copies, through a third schema;
- grant, or show grants (`grant ...`, `show grants on schema`, `show future grants in schema`):
  skipped, and read as none;
- masking policies (`alter view ... set masking policy`, `information_schema.policy_references`):
  skipped, and read as none.
Every other statement runs as written. Each substitution is logged at debug level. fakesnow keeps a
view's text as DuckDB prints it (`CREATE VIEW S.V AS ...`, no database): the copies create it from
that text, which fakesnow reads as Snowflake SQL again.
"""

import logging
import re

from greenery_orchestration.marts import STAGED

log = logging.getLogger(__name__)

_NAME = r"([A-Za-z0-9_$]+)\.([A-Za-z0-9_$]+)"
CLONE_SCHEMA = re.compile(rf"create or replace schema {_NAME} clone {_NAME}", re.IGNORECASE)
SWAP_SCHEMA = re.compile(rf"alter schema {_NAME} swap with {_NAME}", re.IGNORECASE)
SKIPPED = re.compile(r"(grant\s|alter view \S+ modify column \S+ set masking policy)", re.IGNORECASE)
READ_AS_NONE = re.compile(r"(show (future )?grants\s|.*\binformation_schema\.policy_references\()", re.IGNORECASE | re.DOTALL)
VIEW_HEADER = re.compile(r"^\s*create\s+(or\s+replace\s+)?view\s+\S+\s+as\s+", re.IGNORECASE)
SWAP_SCRATCH = "__emulated_swap"


class Emulator:
    def __init__(self, cursor):
        self.cursor = cursor

    def run(self, statement: str) -> None:
        if match := CLONE_SCHEMA.fullmatch(statement.strip()):
            database, clone, _, source = match.groups()
            log.debug("Emulated Snowflake: fakesnow cannot clone a schema; copying instead: %s", statement)
            self._execute(f"drop schema if exists {database}.{clone} cascade")
            self._execute(f"create schema {database}.{clone}")
            self._copy(database, source, clone)
        elif match := SWAP_SCHEMA.fullmatch(statement.strip()):
            database, first, _, second = match.groups()
            log.debug("Emulated Snowflake: fakesnow cannot swap schemas; exchanging their objects instead: %s", statement)
            scratch = first + SWAP_SCRATCH
            self._execute(f"drop schema if exists {database}.{scratch} cascade")
            self._execute(f"create schema {database}.{scratch}")
            self._move(database, second, scratch)
            self._move(database, first, second)
            self._move(database, scratch, first)
            self._execute(f"drop schema {database}.{scratch} cascade")
        elif SKIPPED.match(statement.strip()):
            log.debug("Emulated Snowflake: fakesnow has no grants or masking policies; skipped: %s", statement)
        else:
            self._execute(statement)

    def rows(self, query: str) -> list[dict]:
        if READ_AS_NONE.match(query.strip()):
            log.debug("Emulated Snowflake: fakesnow has no grants or policies; read as none: %s", query)
            return []
        self.cursor.execute(query)
        names = [column[0].lower() for column in self.cursor.description]
        return [dict(zip(names, row, strict=True)) for row in self.cursor.fetchall()]

    def _execute(self, statement: str) -> None:
        log.debug("Emulated Snowflake: ran %s", statement)
        self.cursor.execute(statement)

    def _objects(self, database: str, schema: str) -> tuple[list[str], list[tuple[str, str]]]:
        tables = self.rows(
            f"select table_name from {database}.information_schema.tables "
            f"where table_schema = '{schema.upper()}' and table_type = 'BASE TABLE' order by table_name"
        )
        views = self.rows(
            f"select table_name, view_definition from {database}.information_schema.views "
            f"where table_schema = '{schema.upper()}' order by table_name"
        )
        return [t["table_name"] for t in tables], [(v["table_name"], v["view_definition"]) for v in views]

    def _copy(self, database: str, source: str, target: str) -> tuple[list[str], list[str]]:
        tables, views = self._objects(database, source)
        for table in tables:
            self._execute(f"create table {database}.{target}.{table} clone {database}.{source}.{table}")
        # A view is bound when it is created: each once the views it reads exist.
        pending = [(name, VIEW_HEADER.sub(f"create view {database}.{target}.{name} as ", sql, count=1).rstrip().rstrip(";"))
                   for name, sql in views]
        while pending:
            failed = []
            for name, sql in pending:
                try:
                    self._execute(sql)
                except Exception:  # noqa: BLE001 - a view it reads is not there yet
                    failed.append((name, sql))
            if len(failed) == len(pending):
                if published := self._on_published_names(target, failed):
                    pending = published
                    continue
                self._execute(failed[0][1])  # raises the error of a view that cannot be created
            pending = failed
        return tables, [name for name, _ in views]

    @staticmethod
    def _on_published_names(target: str, views: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Views swapped into a published schema that read a staged schema already swapped (and so
        emptied): Snowflake binds a view when it is read, and wap_snowflake recreates such a view on
        the published names after the swaps; here it cannot be created until then, so it is created
        on the published names now. [] when that changes nothing."""
        if target.lower().endswith((STAGED, SWAP_SCRATCH)):
            return []
        published = [(name, re.sub(rf"\b([A-Za-z0-9_$]+){STAGED}\.", r"\1.", sql, flags=re.IGNORECASE)) for name, sql in views]
        if published == views:
            return []
        log.debug("Emulated Snowflake: views on published names, before wap_snowflake recreates them: %s", [n for n, _ in views])
        return published

    def _move(self, database: str, source: str, target: str) -> None:
        tables, views = self._copy(database, source, target)
        for view in views:
            self._execute(f"drop view {database}.{source}.{view}")
        for table in tables:
            self._execute(f"drop table {database}.{source}.{table}")
