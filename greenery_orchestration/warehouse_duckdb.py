"""The embedded warehouse: one DuckDB file per environment, in GREENERY_WAREHOUSE_DIR."""

from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from greenery_orchestration import wap
from greenery_orchestration.settings import PROD, duckdb_path, warehouse_dir
from greenery_orchestration.warehouse import WarehouseBusy, WarehouseUnusable, is_lock_conflict, newest_sql

if TYPE_CHECKING:
    import pandas as pd


class DuckDBWarehouse(DuckDBResource):
    """prod.duckdb, and a file per environment beside it."""

    kind: ClassVar[str] = "duckdb"

    @property
    def location(self) -> str:
        return self.database

    @property
    def stages_builds(self) -> bool:
        return True

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

    def stage_snapshots(self, snapshots: Iterable[wap.Relation]) -> None:
        with self.get_connection() as connection:
            wap.stage_snapshots(connection, snapshots)

    def publish(self, built: Iterable[wap.Relation], run_id: str, code_version: str) -> dict[str, int]:
        with self.get_connection() as connection:
            return wap.publish(connection, built, run_id, code_version)

    def last_publish(self) -> tuple[str, datetime] | None:
        with self.get_connection() as connection:
            return wap.last_publish(connection)

    def clone(self, environments: list[str], pii: dict[str, list[str]]) -> Iterable[tuple[str, dict]]:
        from greenery_orchestration.chain.clone import clone_duckdb  # noqa: PLC0415
        from greenery_orchestration.chain.masking import masking_salt  # noqa: PLC0415

        paths = [duckdb_path(environment) for environment in environments]
        copied = clone_duckdb(Path(self.database), paths[0], pii, masking_salt(warehouse_dir()), also_to=paths[1:])
        for environment, path in zip(environments, paths, strict=True):
            yield environment, {"path": str(path), "tables": len(copied), "rows": sum(copied.values())}


def duckdb_warehouse() -> DuckDBWarehouse:
    return DuckDBWarehouse(database=str(duckdb_path(PROD)))


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
        raise WarehouseUnusable(f"no warehouse at {path}: run `greenery sample` or `greenery load-csv DIR` first")
    try:
        with duckdb.connect(str(path), read_only=True) as connection:
            needed = _DUCKDB_HEADER_BYTES + _last_data_block(connection) * _block_size(connection)
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
