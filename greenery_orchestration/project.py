"""The dbt project as Dagster sees it, and the dbt CLI resource that runs it."""

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject

from greenery_orchestration.settings import DBT_PROJECT_DIR, warehouse_dir

greenery_project = DbtProject(
    project_dir=DBT_PROJECT_DIR,
    target=os.environ.get("GREENERY_TARGET", "duckdb"),
)
# Under `dagster dev` the manifest is re-parsed on load; everywhere else it is prepared once
# (`greenery prepare`, the image build) and only read here.
greenery_project.prepare_if_dev()


class GreeneryDbtCliResource(DbtCliResource):
    """dbt as Dagster runs it, with the warehouse folder pinned to an absolute path.

    dbt runs inside the project folder, so a relative GREENERY_WAREHOUSE_DIR would point at a
    different warehouse than the one Python code reads.
    """

    def cli(self, args: Sequence[str], **kwargs):
        os.environ["GREENERY_WAREHOUSE_DIR"] = str(warehouse_dir())
        return super().cli(args, **kwargs)


def dbt_resource() -> GreeneryDbtCliResource:
    # The dbt installed beside this Python, so an unactivated virtualenv works too.
    return GreeneryDbtCliResource(
        project_dir=greenery_project, dbt_executable=str(Path(sys.executable).with_name("dbt"))
    )


def prepare_manifest() -> Path:
    """Parse the dbt project into the manifest the assets are built from."""
    dbt_resource().cli(["parse", "--quiet"], target_path=greenery_project.target_path).wait()
    return greenery_project.manifest_path
