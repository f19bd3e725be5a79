"""The embedded warehouse: one DuckDB file per environment, in GREENERY_WAREHOUSE_DIR."""

import hashlib
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from greenery_orchestration import wap
from greenery_orchestration.clone_duckdb import clone
from greenery_orchestration.marts import STAGED
from greenery_orchestration.settings import PROD, duckdb_config, duckdb_path, masking_salt, warehouse_dir
from greenery_orchestration.warehouse import Changes, WarehouseBusy, WarehouseUnusable, is_lock_conflict, newest_sql

if TYPE_CHECKING:
    import pandas as pd

    from greenery_orchestration.rawdata.sample import Appended


class DuckDBWarehouse(DuckDBResource):
    """prod.duckdb, and a file per environment beside it."""

    kind: ClassVar[str] = "duckdb"

    @property
    def location(self) -> str:
        return self.database

    def read_sql(self, sql: str) -> "pd.DataFrame":
        with self.get_connection() as connection:
            return connection.execute(sql).df().rename(columns=str.lower)

    def newest_loaded_at(self, criteria: Mapping[dg.AssetKey, dict]) -> dict[dg.AssetKey, datetime | None]:
        path = Path(self.database)
        if not path.exists():
            return dict.fromkeys(criteria)
        # Not the resource's connection: it retries a locked file for minutes, and a sensor tick
        # should rather skip and look again at the next one.
        try:
            connection = duckdb.connect(str(path), read_only=True)
        except duckdb.IOException as error:  # DuckDB allows one writer per file, and no reader beside it
            raise WarehouseBusy(str(error).splitlines()[0]) from None
        with connection:
            return {key: _newest(connection, criterion) for key, criterion in criteria.items()}

    def check_usable(self, need_raw: bool = True) -> None:
        check_duckdb_warehouse(Path(self.database), need_raw)

    def load_csv(self, folder: Path) -> dict[str, int]:
        from greenery_orchestration.rawdata.load_csv import load_csv_dir  # noqa: PLC0415

        with duckdb.connect(self._created()) as connection:
            return load_csv_dir(connection, folder)

    def write_sample(self, **spec) -> dict[str, int]:
        from greenery_orchestration.rawdata.sample import write_sample  # noqa: PLC0415

        return write_sample(Path(self._created()), **spec)

    def append_sample(self, **spec) -> "Appended":
        from greenery_orchestration.rawdata.sample import append_to_raw  # noqa: PLC0415

        return append_to_raw(Path(self.database), **spec)

    def write_failure(self, error: Exception) -> str | None:
        from greenery_orchestration.rawdata.load_csv import is_write_failure, write_failure  # noqa: PLC0415

        return write_failure(Path(self.database), error) if is_write_failure(error) else None

    def _created(self) -> str:
        Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        return self.database

    def catalog_digest(self) -> str | None:
        # What dbt-duckdb's catalog query reads (its macros/catalog.sql): names, types and
        # comments, no row counts, so new rows leave it as it was.
        frame = self.read_sql(
            "select 'table' as kind, schema_name, table_name as name, null as column_index, null as column_name, "
            "null as data_type, comment from duckdb_tables() where database_name = current_database() "
            "union all select 'view', schema_name, view_name, null, null, null, comment from duckdb_views() "
            "where database_name = current_database() and not internal "
            "union all select 'column', schema_name, table_name, column_index, column_name, data_type, comment "
            "from duckdb_columns() where database_name = current_database() and not internal "
            "order by all"
        )
        return hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()

    def staged_relation(self, schema: str, name: str) -> str:
        return f"{schema}.{name}{STAGED}"

    def stage_build(self) -> None:
        # Nothing to copy: the snapshot and the incremental models stage only their changes,
        # beside the published history they read (wap.py).
        return None

    def publish(
        self, built: Iterable[wap.Relation], run_id: str, code_version: str, *, run_started_at: datetime | None
    ) -> dict[str, int]:
        with self.get_connection() as connection:
            return wap.publish(connection, built, run_id, code_version, run_started_at=run_started_at)

    def last_publish(self) -> tuple[str, datetime] | None:
        with self.get_connection() as connection:
            return wap.last_publish(connection)

    def clone(
        self, environments: list[str], pii: dict[str, list[str]], changes: Mapping[str, Changes]
    ) -> Iterable[tuple[str, dict]]:
        paths = [duckdb_path(environment) for environment in environments]
        cloned = clone(Path(self.database), paths, pii, masking_salt(warehouse_dir()), changes)
        for environment, path in zip(environments, paths, strict=True):
            yield environment, {
                "path": str(path),
                "tables": len(cloned[path].rows),
                "rows_copied": sum(cloned[path].rows.values()),
                "in_place": cloned[path].in_place,
            }


def duckdb_warehouse() -> DuckDBWarehouse:
    # Capped as dbt's connections are (profiles.yml): the publish's merge joins every key of the
    # published events, and DuckDB's own default is 80% of the machine (5 GiB in one run at 100M).
    return DuckDBWarehouse(database=str(duckdb_path(PROD)), connection_config=duckdb_config())


def _newest(connection, criterion: dict) -> datetime | None:
    try:
        return connection.execute(newest_sql(criterion)).fetchall()[0][0]
    except duckdb.CatalogException:
        return None


# DuckDB's file: three 4 KiB headers, then blocks of `block_size` bytes numbered from 0.
_DUCKDB_HEADER_BYTES = 3 * 4096


def check_duckdb_warehouse(path: Path, need_raw: bool = True) -> None:
    """Raise WarehouseUnusable, in one line naming `path`, unless it is a whole DuckDB file
    (with raw tables when `need_raw`). Cheap: reads the header and the catalog, not the data."""
    if not path.exists():
        first = "`greenery sample` or `greenery load-csv DIR`" if need_raw else "`greenery sample` and `greenery run`"
        raise WarehouseUnusable(f"no warehouse at {path}: run {first} first")
    state = _file_state(path)
    try:
        with duckdb.connect(str(path), read_only=True) as connection:
            needed = 0 if _found_whole.get(path) == state else (
                _DUCKDB_HEADER_BYTES + _last_data_block(connection) * _block_size(connection)
            )
            raw_tables = connection.execute(
                "select count(*) from duckdb_tables() where database_name = current_database() and schema_name = 'raw'"
            ).fetchall()[0][0]
    except duckdb.Error as error:
        if is_lock_conflict(error):
            raise  # held by a run: the caller says so
        raise WarehouseUnusable(f"{path} is not a readable DuckDB database (corrupt?); restore it or move it "
                                "away and load the data again") from None
    # A write-ahead log left by a crash holds blocks the file does not have yet.
    if path.stat().st_size < needed and not Path(f"{path}.wal").exists():
        raise WarehouseUnusable(
            f"{path} is truncated ({path.stat().st_size:,} bytes, its tables need {needed:,}); restore it or "
            "move it away and load the data again"
        )
    if need_raw and not raw_tables:
        raise WarehouseUnusable(f"no raw tables in {path}: run `greenery sample` or `greenery load-csv DIR` first")
    if state[0] >= needed:  # not when only a write-ahead log let it pass
        _found_whole[path] = state


# The files found whole, with their size and modification time then: unchanged since, they still
# are. The check reads every table's storage (0.24 s at 10M events, ~0.7 s at 30M), and
# `greenery run` checks its file before its turn, in it and in the gate's step.
_found_whole: dict[Path, tuple[int, int]] = {}


def _file_state(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def _block_size(connection) -> int:
    return connection.execute(
        "select block_size from pragma_database_size() where database_name = current_database()"
    ).fetchall()[0][0]


def _last_data_block(connection) -> int:
    """How many blocks the file must hold for the newest-numbered block of table data to be in it."""
    tables = connection.execute(
        "select schema_name, table_name from duckdb_tables() where database_name = current_database()"
    ).fetchall()
    last = -1
    for schema, table in tables:
        quoted = f'"{schema}"."{table}"'.replace("'", "''")
        ((block,),) = connection.execute(
            f"select max(block_id) from pragma_storage_info('{quoted}') where persistent"
        ).fetchall()
        last = max(last, block if block is not None else -1)
    return last + 1
