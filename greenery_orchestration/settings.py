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
