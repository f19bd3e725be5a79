"""Python's way into the warehouse, outside dbt: one class per target behind one interface.

`warehouse_resource()` chooses the class once, from GREENERY_TARGET (settings.py), as the dbt
profile does; it is the Dagster resource `warehouse`, and the CLI uses the same object. Nothing
else in the package asks which target it runs on: what differs lives in `DuckDBWarehouse`
(warehouse_duckdb.py) and `SnowflakeWarehouse` (warehouse_snowflake.py).
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import dagster as dg

from greenery_orchestration.settings import future_tolerance, target

if TYPE_CHECKING:  # pandas loads when a frame is read, not with the definitions
    import pandas as pd

    from greenery_orchestration.rawdata.sample import Appended
    from greenery_orchestration.wap import Relation

# The pool of every step that writes the warehouse: DuckDB allows one writer per file.
WAREHOUSE_POOL = "warehouse"
# Transient connection errors (a lock held for a moment, a dropped network) deserve a retry.
WAREHOUSE_RETRY = dg.RetryPolicy(max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL)


class WarehouseBusy(Exception):
    """A run holds the warehouse's only write lock; try again later."""


class WarehouseUnusable(Exception):
    """The warehouse is missing its raw data, corrupt or truncated: nothing should write to it."""


@dataclass(frozen=True)
class Changes:
    """How a table's rows say which are new since a copy of it was taken: those whose `marker` is
    above the copy's newest; a new row replaces the copy's row with the same `unique_key` (an
    incremental model's merge), and with no key it is one more row (an append-only raw table).
    A snapshot also changes rows it wrote before: the run that writes an order's new version
    closes the old one, setting its `closed_by` (dbt_valid_to) to that run's time, above the
    copy's newest marker too. A model's `since` column (wap.merge_since) bounds the copy's rows a
    new row can replace."""

    marker: str
    unique_key: tuple[str, ...] = ()
    closed_by: str | None = None
    since: str | None = None


class Warehouse(Protocol):
    """What the chain, the sensors and the CLI need of a warehouse."""

    kind: str  # the dbt target and the assets' kind: "duckdb" or "snowflake"

    @property
    def location(self) -> str:
        """Where it is, for messages: a file, or an account's database."""

    def read_sql(self, sql: str) -> "pd.DataFrame":
        """One query's result, with lower-case column names, in one short connection."""

    def newest_loaded_at(self, criteria: Mapping[dg.AssetKey, dict]) -> dict[dg.AssetKey, datetime | None]:
        """max(loaded_at_field) of each source (naive UTC), ignoring rows dated in the future; raises
        WarehouseBusy when a writer holds the warehouse."""

    def check_usable(self, need_raw: bool = True) -> None:
        """Raise WarehouseUnusable, in one line, unless the warehouse can be read and written (and
        holds raw tables when `need_raw`). Cheap: no table is scanned."""

    def load_csv(self, folder: Path) -> dict[str, int]:
        """Replace the raw tables with the seven validated CSVs in `folder` and log the load, all or
        nothing (rawdata/load_csv.py); returns the rows per table."""

    def write_sample(self, **spec) -> dict[str, int]:
        """Replace the raw tables with a synthetic shop (rawdata/sample.py), all or nothing."""

    def append_sample(self, **spec) -> "Appended":
        """Add the shop's next hours after the newest raw event, all or nothing."""

    def write_failure(self, error: Exception) -> str | None:
        """One line of our own for an error that kept a load from writing (a full disk, the
        account refusing), or None for any other error. Never the warehouse's own message, which
        may quote a value."""

    def catalog_digest(self) -> str | None:
        """A digest of what `dbt docs generate` reads from the warehouse into its catalog, or None
        when that changes with every run."""

    def staged_relation(self, schema: str, name: str) -> str:
        """Where a production build writes `schema.name` before it is published."""

    def stage_build(self) -> None:
        """Before a staged build: give it the published history (the snapshots' versions, the
        incremental models' rows) to add this run's to."""

    def publish(
        self, built: Iterable["Relation"], run_id: str, code_version: str, *, run_started_at: datetime | None
    ) -> dict[str, int]:
        """Make this run's staged build what readers see, all at once, with a publish-log row
        (the run began at `run_started_at`, naive UTC); returns the row count per table."""

    def last_publish(self) -> tuple[str, datetime] | None:
        """The run id and time (naive UTC) of the newest publish."""

    def clone(
        self, environments: list[str], pii: dict[str, list[str]], changes: Mapping[str, Changes]
    ) -> Iterable[tuple[str, dict]]:
        """Copy prod into each environment with PII masked, the tables of `changes` ("schema.table")
        by their new rows where the environment holds the older ones; yields (environment, metadata)."""


def warehouse_resource() -> "Warehouse":
    if target() == "snowflake":
        # Imported only here: dagster-snowflake and its connector take seconds to load.
        from greenery_orchestration.warehouse_snowflake import snowflake_warehouse  # noqa: PLC0415

        return snowflake_warehouse()
    from greenery_orchestration.warehouse_duckdb import duckdb_warehouse  # noqa: PLC0415

    return duckdb_warehouse()


def open_warehouse() -> "Warehouse":
    """The warehouse outside a run (the CLI, an alert), its settings resolved as a run's are."""
    # In a `with`: resolving them enters a throwaway Dagster instance, which otherwise stays this
    # thread's current one after it is gone, and a later load of the definitions fails on it.
    # Neither warehouse holds anything that the exit would release.
    with warehouse_resource().process_config_and_initialize_cm() as warehouse:
        return warehouse


def is_lock_conflict(error: Exception) -> bool:
    """Whether DuckDB refused the file because another process holds its one write lock."""
    return "could not set lock" in str(error).lower()


def newest_sql(criterion: dict) -> str:
    """The query of a source's newest row, by its dbt freshness criterion."""
    # Rows dated in the future are errors the raw tests stop at, not fresh data.
    field = criterion["loaded_at_field"]
    limit = datetime.now(UTC).replace(tzinfo=None) + future_tolerance()
    return (
        f"select max({field}) as newest from {criterion['relation_name']} "
        f"where {field} <= cast('{limit:%Y-%m-%d %H:%M:%S}' as timestamp)"
    )
