"""The real `greenery` command on a warehouse of the test's own, and what its raw tables hold."""

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from greenery_orchestration.rawdata.load_log import LOAD_LOG
from greenery_orchestration.rawdata.schema import raw_columns

GREENERY = str(Path(sys.executable).with_name("greenery"))


@dataclass
class Workspace:
    """A warehouse folder and a Dagster home of one test's own, and `greenery` run against them."""

    warehouse: Path
    env: dict

    @property
    def database(self) -> Path:
        return self.warehouse / "prod.duckdb"

    def greenery(self, *args: str, **options) -> subprocess.CompletedProcess:
        return subprocess.run(
            [GREENERY, *args], env=self.env, capture_output=True, text=True, timeout=600, **options
        )

    def fingerprint(self) -> dict:
        """Every raw table's row count and content hash (of its CSV columns: a load of the same data
        is the same data), and the load log's rows."""
        with duckdb.connect(str(self.database), read_only=True) as connection:
            tables = {
                table: connection.execute(
                    f"select count(*), sum(hash({', '.join(columns)}))::varchar from raw.{table}").fetchone()
                for table, columns in raw_columns().items()
            }
            tables[LOAD_LOG] = connection.execute(f"select * from {LOAD_LOG} order by loaded_at").fetchall()
        return tables


def workspace_in(folder: Path) -> Workspace:
    warehouse = folder / "warehouse"
    warehouse.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "GREENERY_WAREHOUSE_DIR": str(warehouse),
        "DAGSTER_HOME": str(folder / "dagster_home"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    return Workspace(warehouse, env)


@pytest.fixture
def workspace(tmp_path) -> Workspace:
    return workspace_in(tmp_path)


@pytest.fixture(scope="module")
def course_warehouse(tmp_path_factory, course_data) -> Path:
    """The course data loaded by `greenery load-csv`, once a module (tests copy the file)."""
    space = workspace_in(tmp_path_factory.mktemp("course"))
    loaded = space.greenery("load-csv", str(course_data))
    assert loaded.returncode == 0, loaded.stderr
    return space.database


@pytest.fixture
def loaded(workspace, course_warehouse) -> Workspace:
    """A workspace whose raw tables hold the course data (a previous good load)."""
    shutil.copy(course_warehouse, workspace.database)
    return workspace


@pytest.fixture
def csv_dir(tmp_path, course_data) -> Path:
    """A writable copy of the course CSVs."""
    folder = tmp_path / "csv"
    folder.mkdir()
    for table in raw_columns():
        shutil.copy(course_data / f"{table}.csv", folder / f"{table}.csv")
        (folder / f"{table}.csv").chmod(0o644)
    return folder
