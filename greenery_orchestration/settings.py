"""Where things live, set by environment variables with safe defaults.

Everything is read when it is needed, never at import, so a process that changes its
environment (a test, a CLI flag) sees the change.
"""

import os
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = REPO_DIR / "dbt_project"
SOURCES_YAML = DBT_PROJECT_DIR / "models" / "staging" / "greenery" / "_greenery__sources.yml"

PROD = "prod"


def warehouse_dir() -> Path:
    """The folder of the embedded warehouse: one DuckDB file per environment."""
    return Path(os.environ.get("GREENERY_WAREHOUSE_DIR", "warehouse")).resolve()


def duckdb_path(environment: str = PROD) -> Path:
    return warehouse_dir() / f"{environment}.duckdb"


def dagster_home() -> Path:
    """The Dagster instance folder: DAGSTER_HOME, or .dagster in the working directory."""
    return Path(os.environ.get("DAGSTER_HOME", ".dagster")).resolve()


def ensure_dagster_home() -> Path:
    """Point DAGSTER_HOME at an instance folder holding the project's dagster.yaml.

    Dagster reads the file (telemetry off, the run queue, the warehouse pool) on its first
    command, so it must be in place before any.
    """
    home = dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text((REPO_DIR / "dagster.yaml").read_text())
    os.environ["DAGSTER_HOME"] = str(home)
    return home
