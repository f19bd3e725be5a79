"""The dbt project as Dagster sees it, and the dbt CLI resource that runs it."""

import hashlib
import os
import re
import shutil
import sys
import time
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
        _pin_warehouse_dir()
        prune_invocation_folders(greenery_project.manifest_path.parent)
        return super().cli(args, **kwargs)


def _pin_warehouse_dir() -> None:
    os.environ["GREENERY_WAREHOUSE_DIR"] = str(warehouse_dir())


# Long enough to read the artifacts of yesterday's failed run, short enough that a service
# invoking dbt every few hours never fills its disk.
INVOCATION_FOLDER_RETENTION_SECONDS = 24 * 3600


def prune_invocation_folders(target: Path, now: float | None = None) -> list[str]:
    """Delete the folders dagster-dbt left in `target`, one per dbt invocation, once they are a day old."""
    cutoff = (now or time.time()) - INVOCATION_FOLDER_RETENTION_SECONDS
    pruned = []
    for folder in target.glob("*/"):
        # `compiled` and `run` are dbt's own, from runs outside Dagster.
        if folder.name not in ("compiled", "run") and folder.stat().st_mtime < cutoff:
            shutil.rmtree(folder, ignore_errors=True)
            pruned.append(folder.name)
    return sorted(pruned)


def dbt_resource() -> GreeneryDbtCliResource:
    # The dbt installed beside this Python, so an unactivated virtualenv works too.
    return GreeneryDbtCliResource(
        project_dir=greenery_project, dbt_executable=str(Path(sys.executable).with_name("dbt"))
    )


def prepare_manifest() -> bool:
    """Parse the dbt project into the manifest the assets are built from, unless the manifest
    was parsed from these very files and settings. Returns whether dbt parsed."""
    fingerprint_path = greenery_project.manifest_path.with_name("manifest.fingerprint")
    _pin_warehouse_dir()  # as dbt will see it, so the digest is the same before and after a parse
    fingerprint = project_fingerprint(Path(greenery_project.project_dir))
    if greenery_project.manifest_path.exists() and fingerprint_path.exists():
        if fingerprint_path.read_text() == fingerprint:
            return False
    dbt_resource().cli(["parse", "--quiet"], target_path=greenery_project.target_path).wait()
    fingerprint_path.write_text(fingerprint)
    return True


# Secrets stay out of the digest, as dbt keeps them out of its own partial-parsing check. Every
# other setting counts, the warehouse path and memory limit too: dbt reparses the whole project
# in every invocation when the connection settings differ from those of the last parse.
_SECRETS = re.compile(r"PASSWORD|PASSPHRASE|SALT")


def dbt_code_version() -> str:
    """A short digest of the dbt project's files: which code built what a publish logged."""
    digest = hashlib.sha256()
    for path, content in _project_files(Path(greenery_project.project_dir)):
        digest.update(f"{path}\n".encode() + content)
    return digest.hexdigest()[:12]


def _project_files(project_dir: Path):
    for path in sorted(project_dir.rglob("*")):
        relative = path.relative_to(project_dir)
        if path.is_file() and relative.parts[0] not in ("target", "logs", "dbt_packages"):
            yield relative, path.read_bytes()


def project_fingerprint(project_dir: Path) -> str:
    """A digest of what a parse reads: every project file, and the environment variables the
    project names in `env_var(...)`, with the dbt version and the target."""
    from dbt.version import __version__ as dbt_version  # noqa: PLC0415

    digest = hashlib.sha256(f"dbt {dbt_version}\n".encode())
    names = {b"GREENERY_TARGET"}
    for relative, content in _project_files(project_dir):
        digest.update(f"{relative}\n".encode() + content)
        if relative.suffix in (".sql", ".yml", ".yaml"):
            names |= set(re.findall(rb"env_var\(\s*['\"]([A-Za-z0-9_]+)['\"]", content))
    for name in sorted(name.decode() for name in names):
        if not _SECRETS.search(name):
            digest.update(f"{name}={os.environ.get(name)}\n".encode())
    return digest.hexdigest()
