"""The DuckDB environments: a file each, holding prod's tables with the declared PII masked.

An environment that exists is brought up to date in its own file, in one transaction: the tables
whose rows carry a marker (`Changes`) get only the rows newer than the newest they hold, every
other table is copied whole. One that does not exist yet, or that another process holds open, is
written whole into a new file moved over the old one, so a reader sees the old clone or the new
one, never half of one.
"""

import hashlib
import os
import shutil
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import duckdb

from greenery_orchestration import wap
from greenery_orchestration.settings import duckdb_config
from greenery_orchestration.warehouse import Changes, is_lock_conflict

# What the environment's file calls prod while it reads it.
_PROD = "prod"


@dataclass(frozen=True)
class Cloned:
    """What a clone did to one environment: the rows it copied per table (all of a table copied
    whole, the new ones of a table brought up to date), and whether it updated the file in place
    rather than writing a new one over it."""

    rows: dict[str, int]
    in_place: bool


def clone(
    prod: Path, targets: Sequence[Path], pii: dict[str, list[str]], salt: str, changes: Mapping[str, Changes]
) -> dict[Path, Cloned]:
    """Make each file of `targets` hold prod's tables and views, the `pii` columns ("schema.table":
    columns) masked with a SHA-256 salted with `salt`. A failed update leaves that environment as
    it was; the others are still brought up to date. The environments written whole get one
    masked file, copied: copying a file is a fraction of the work of masking prod again."""
    cloned, whole, in_place = {}, [], {}
    try:
        for target in targets:
            connection = _open_in_place(target)
            if connection is None:
                whole.append(target)
            else:
                in_place[target] = connection
        updated, errors = _update_side_by_side(in_place, pii, salt, changes, prod)
        cloned |= {target: Cloned(rows, in_place=True) for target, rows in updated.items()}
    finally:
        for connection in in_place.values():
            connection.close()
    if whole:
        try:
            rows = _write_whole(prod, whole, pii, salt)
        except Exception as error:
            if not errors:
                raise
            errors[whole[0]] = error  # named after the updates' own errors
        else:
            cloned |= {target: Cloned(rows, in_place=False) for target in whole}
    if errors:
        first = next(iter(errors.values()))
        for target, error in list(errors.items())[1:]:
            first.add_note(f"{target.stem} was not updated either: {error}")
        raise first
    return {target: cloned[target] for target in targets}


def _update_side_by_side(
    in_place: dict[Path, duckdb.DuckDBPyConnection], *args
) -> tuple[dict[Path, dict[str, int]], dict[Path, BaseException]]:
    """_update_in_place on each connection at once, each with a share of DuckDB's memory: much of
    an update is DuckDB compressing the new rows into its file (the commit's checkpoint), on one
    core. The rows copied per environment updated, and the error of each that failed."""
    share = duckdb_config(at_once=len(in_place))["memory_limit"].replace("'", "''")
    for connection in in_place.values():
        connection.execute(f"set memory_limit = '{share}'")
    with ThreadPoolExecutor(max_workers=max(len(in_place), 1)) as pool:
        updates = {target: pool.submit(_update_in_place, connection, *args) for target, connection in in_place.items()}
        try:
            wait(updates.values())
        except BaseException:
            # A signal lands on this thread; DuckDB hears it only on the thread it runs on.
            for connection in in_place.values():
                with suppress(duckdb.Error):  # closed: its update ended
                    connection.interrupt()
            raise
    updated = {target: update.result() for target, update in updates.items() if update.exception() is None}
    errors = {target: update.exception() for target, update in updates.items() if update.exception() is not None}
    return updated, errors


def _update_in_place(connection: duckdb.DuckDBPyConnection, *args) -> dict[str, int]:
    """_bring_up_to_date, then close the file (its checkpoint too on this thread)."""
    with connection:
        return _bring_up_to_date(connection, *args)


def _open_in_place(target: Path) -> duckdb.DuckDBPyConnection | None:
    """The environment's file open for writing, or None when it must be written whole."""
    if not target.exists():
        return None
    try:
        return _connect(target)
    except duckdb.Error as error:
        # A reader holds the file open: it keeps reading the old file once a new one replaces it.
        if is_lock_conflict(error):
            return None
        raise


def _connect(path: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(path), config=duckdb_config())


def _write_whole(prod: Path, targets: list[Path], pii: dict[str, list[str]], salt: str) -> dict[str, int]:
    partials = [path.with_name(path.name + ".partial") for path in targets]
    try:
        for partial in partials:
            partial.unlink(missing_ok=True)
        with _connect(partials[0]) as connection:
            rows = _bring_up_to_date(connection, pii, salt, {}, prod)
        for partial in partials[1:]:
            shutil.copyfile(partials[0], partial)
    except BaseException:
        for partial in partials:
            partial.unlink(missing_ok=True)
        raise
    for path, partial in zip(targets, partials, strict=True):
        Path(f"{path}.wal").unlink(missing_ok=True)
        os.replace(partial, path)
    return rows


def _bring_up_to_date(
    connection: duckdb.DuckDBPyConnection,
    pii: dict[str, list[str]],
    salt: str,
    changes: Mapping[str, Changes],
    prod: Path,
) -> dict[str, int]:
    """Make the connection's database hold what prod holds, in one transaction; the rows copied per table."""
    connection.execute(f"attach ? as {_PROD} (read_only)", [str(prod)])
    tables, own_tables = _tables(connection, _PROD), _tables(connection, None)
    views = _views(connection, _PROD)
    schemas = {schema for schema, _ in [*tables, *views]}
    copied = {}
    connection.execute("begin")
    try:
        own_views = _views(connection, None)
        for schema, name in own_views:
            connection.execute(f"drop view {_quoted(schema, name)}")
        for schema, name in own_tables.keys() - tables.keys():
            connection.execute(f"drop table {_quoted(schema, name)}")
        for schema in {schema for schema, _ in [*own_tables, *own_views]} - schemas - {"main"}:
            connection.execute(f'drop schema "{schema}" cascade')
        for schema in sorted(schemas):
            connection.execute(f'create schema if not exists "{schema}"')
        for (schema, name), columns in tables.items():
            table = _Table(schema, name, columns, frozenset(pii.get(f"{schema}.{name}", ())) & columns.keys(), salt)
            change = changes.get(f"{schema}.{name}")
            new = None
            own_columns = list(own_tables.get((schema, name), {}).items())
            if change and change.marker in columns and own_columns == list(table.clone_columns.items()):
                new = _copy_new_rows(connection, table, change)
            copied[f"{schema}.{name}"] = _copy_whole(connection, table) if new is None else new
        # Views are recreated, not copied: they read the masked tables, cost nothing to clone, and
        # with prod detached a view that reached into prod would fail here rather than leak.
        connection.execute(f"detach {_PROD}")
        wap.create_views(connection, list(views.values()))
        connection.execute("commit")
    except BaseException:
        connection.execute("rollback")
        raise
    return copied


@dataclass(frozen=True)
class _Table:
    schema: str
    name: str
    columns: dict[str, str]  # prod's, name: type, in order
    masked: frozenset[str]
    salt: str

    @property
    def quoted(self) -> str:
        return _quoted(self.schema, self.name)

    @property
    def clone_columns(self) -> dict[str, str]:
        """The clone's columns: a masked value is text."""
        return {column: "VARCHAR" if column in self.masked else kind for column, kind in self.columns.items()}

    @property
    def masking(self) -> str:
        """The clone's comment: which columns it masked, with which salt. The rows a clone keeps
        were masked by an earlier one: a column declared PII since, or a new salt, needs them all."""
        digest = hashlib.sha256(f"{self.salt}\0{sorted(self.masked)}".encode()).hexdigest()[:16]
        return f"greenery clone, masked {digest}"

    def select(self, columns: Sequence[str] | None = None) -> str:
        """prod's rows of `columns` (all by default), masked."""
        return ", ".join(
            _masked(column, self.salt) if column in self.masked else f'"{column}"'
            for column in (columns or self.columns)
        )


def _copy_whole(connection: duckdb.DuckDBPyConnection, table: _Table) -> int:
    connection.execute(f"create or replace table {table.quoted} as select {table.select()} from {_PROD}.{table.quoted}")
    connection.execute(f"comment on table {table.quoted} is '{table.masking}'")
    return connection.execute(f"select count(*) from {table.quoted}").fetchone()[0]


def _copy_new_rows(connection: duckdb.DuckDBPyConnection, table: _Table, change: Changes) -> int | None:
    """Copy prod's rows newer than the newest the clone holds, replacing the clone's rows with the
    same key; the rows copied, or None when the table must be copied whole: the clone's rows are
    not prod's older ones (written into since, restamped by a full refresh, masked otherwise) or
    prod lost some."""
    marker = f'"{change.marker}"'
    (comment,) = connection.execute(
        "select comment from duckdb_tables() where database_name = current_database() "
        "and schema_name = ? and table_name = ?",
        [table.schema, table.name],
    ).fetchone()
    if comment != table.masking:
        return None
    prod_rows, prod_oldest, prod_newest = connection.execute(
        f"select count(*), min({marker}), max({marker}) from {_PROD}.{table.quoted}"
    ).fetchone()
    (newest,) = connection.execute(f"select max({marker}) from {table.quoted}").fetchone()
    # When every row is new (a full refresh restamped them all), copying is cheaper than merging.
    if newest is None or prod_oldest is None or prod_oldest > newest:
        return None
    copied = 0
    if prod_newest > newest:
        newer = f"from {_PROD}.{table.quoted} where $newest < {marker}"
        if change.closed_by:
            newer += f' or $newest < "{change.closed_by}"'
        if change.unique_key:
            matches = " and ".join(f'own."{key}" = new."{key}"' for key in change.unique_key)
            earliest = (
                connection.execute(f'select min("{change.since}") {newer}', {"newest": newest}).fetchone()[0]
                if change.since else None
            )
            since, parameters = wap.since_condition("own", change.since, earliest)
            connection.execute(
                f"delete from {table.quoted} as own using (select {table.select(change.unique_key)} {newer}) as new "
                f"where {matches} and {since}",
                {"newest": newest, **parameters},
            )
        (copied,) = connection.execute(
            f"insert into {table.quoted} select {table.select()} {newer}", {"newest": newest}
        ).fetchone()
    if connection.execute(f"select count(*), max({marker}) from {table.quoted}").fetchone() != (prod_rows, prod_newest):
        return None
    return copied


def _tables(connection: duckdb.DuckDBPyConnection, database: str | None) -> dict[tuple[str, str], dict[str, str]]:
    """{(schema, table): {column: type}} of `database` (None: the connection's own)."""
    tables = {}
    for schema, name, column, kind in connection.execute(
        "select schema_name, table_name, column_name, data_type "
        "from duckdb_columns() as c join duckdb_tables() as t using (database_name, schema_name, table_name) "
        "where database_name = coalesce(?, current_database()) and not t.temporary "
        "order by schema_name, table_name, column_index",
        [database],
    ).fetchall():
        tables.setdefault((schema, name), {})[column] = kind
    return tables


def _views(connection: duckdb.DuckDBPyConnection, database: str | None) -> dict[tuple[str, str], str]:
    """{(schema, view): its CREATE VIEW statement} of `database` (None: the connection's own)."""
    return {
        (schema, name): sql
        for schema, name, sql in connection.execute(
            "select schema_name, view_name, sql from duckdb_views() where database_name = coalesce(?, current_database()) "
            "and not internal and not temporary order by all",
            [database],
        ).fetchall()
    }


def _masked(column: str, salt: str) -> str:
    escaped = salt.replace("'", "''")
    return f"'masked_' || left(sha256('{escaped}' || cast(\"{column}\" as varchar)), 16) as \"{column}\""


def _quoted(schema: str, name: str) -> str:
    return f'"{schema}"."{name}"'
