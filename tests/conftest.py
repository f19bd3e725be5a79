"""Shared fixtures: a throwaway Dagster instance and warehouse per test, the real course data."""

import os
import shutil
from pathlib import Path

import pytest

from greenery_orchestration.settings import REPO_DIR

COURSE_DATA = REPO_DIR.parent / "shared" / "greenery"


@pytest.fixture(scope="session", autouse=True)
def dagster_home(tmp_path_factory) -> Path:
    """One instance for the session, configured by the project's own dagster.yaml."""
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copy(REPO_DIR / "dagster.yaml", home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    return home


@pytest.fixture(scope="session", autouse=True)
def dbt_manifest(dagster_home) -> Path:
    """Parse the dbt project once, before any test imports the definitions built from it."""
    from greenery_orchestration.project import prepare_manifest

    return prepare_manifest()


@pytest.fixture
def warehouse(tmp_path, monkeypatch) -> Path:
    """An empty warehouse folder of this test's own."""
    folder = tmp_path / "warehouse"
    folder.mkdir()
    monkeypatch.setenv("GREENERY_WAREHOUSE_DIR", str(folder))
    return folder


@pytest.fixture(scope="session")
def course_data() -> Path:
    if not (COURSE_DATA / "events.csv").exists():
        pytest.skip(f"the course data is not at {COURSE_DATA}")
    return COURSE_DATA


@pytest.fixture(scope="session")
def built_course_warehouse(course_data, tmp_path_factory) -> Path:
    """A warehouse folder with the course data loaded and `greenery run` done, once a session."""
    from greenery_orchestration.cli import main

    folder = tmp_path_factory.mktemp("course_warehouse")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GREENERY_WAREHOUSE_DIR", str(folder))
        assert main(["load-csv", str(course_data)]) == 0
        assert main(["run"]) == 0
    return folder
