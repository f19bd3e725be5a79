"""The dbt project as Dagster sees it, and the dbt CLI resource that runs it."""

import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any

from dagster_dbt import DbtCliResource, DbtProject
from packaging import version

from greenery_orchestration.settings import DBT_PROJECT_DIR, target, warehouse_dir

greenery_project = DbtProject(
    project_dir=DBT_PROJECT_DIR,
    target=target(),
    # A folder per target: a manifest names its target's relations, and a DuckDB run and a
    # Snowflake run on one machine must not read each other's.
    target_path=Path("target") / target(),
)
# Under `dagster dev` the manifest is re-parsed on load; everywhere else it is prepared once
# (`greenery prepare`, the image build) and only read here.
greenery_project.prepare_if_dev()


# A staged build (write-audit-publish, wap.py) gives its relations other names, which dbt decides
# while parsing: its parse is another than that of every other invocation.
STAGED = {"staged": True}
# The tests on raw tables and the orders snapshot read every raw row, not only those loaded since
# they last read them (dbt_project/macros/loaded_since_last_run.sql): what a full refresh asks.
EVERY_RAW_ROW = {"every_raw_row": True}


def dbt_vars(*variables: Mapping[str, Any]) -> tuple[str, ...]:
    """The `--vars` argument of a dbt invocation, with the vars of every mapping: dbt takes one
    `--vars`. Written the same way for the same vars, in any order: each text is a parse of its
    own (_variables)."""
    merged = {name: value for mapping in variables for name, value in mapping.items()}
    if not merged:
        return ()
    return ("--vars", "{" + ", ".join(f"{name}: {json.dumps(merged[name])}" for name in sorted(merged)) + "}")


STAGED_VARS = dbt_vars(STAGED)
# dbt's partial parses, one per fingerprint of what a parse reads (the project, the variables it
# reads, the connection, the vars), so that each is made once: dbt parses the whole project again
# in an invocation whose vars or connection differ from those of the parse it was handed.
PARSES = "parses"


class GreeneryDbtCliResource(DbtCliResource):
    """dbt as Dagster runs it, with the warehouse folder pinned to an absolute path, and every
    invocation handed the partial parse of its own settings.

    dbt runs inside the project folder, so a relative GREENERY_WAREHOUSE_DIR would point at a
    different warehouse than the one Python code reads.
    """

    def cli(self, args: Sequence[str], *, target_path: Path | None = None, context=None, **kwargs):
        _pin_warehouse_dir()
        target = greenery_project.manifest_path.parent
        prune_invocation_folders(target)
        if target_path is None and list(args[:1]) != ["parse"]:
            variables = _variables(args)
            parse = _cached_parse(variables) or self._parse(variables)
            # dagster-dbt copies the target folder's parse only into a folder that has none.
            target_path = target / _invocation_name(context)
            target_path.mkdir(parents=True)
            shutil.copy(parse, target_path / "partial_parse.msgpack")
        return super().cli(args, target_path=target_path, context=context, **kwargs)

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> None:
        # dagster-dbt loads the profile and registers a dbt adapter in this process before every
        # invocation (0.7-2.7 s each, measured), only for `fetch_row_counts` and
        # `fetch_column_metadata`, which the project never asks for: dbt itself runs in its own
        # process either way.
        return None

    @cached_property
    def _cli_version(self) -> version.Version:
        # dagster-dbt asks `dbt --version`, which asks pypi.org for the newest release: nothing may
        # leave the machine, and the executable is this environment's dbt-core (dbt_resource()).
        from dbt.version import __version__  # noqa: PLC0415

        return version.parse(__version__)

    def _parse(self, variables: Sequence[str]) -> Path:
        target = greenery_project.manifest_path.parent
        with _parse_lock():
            if cached := _cached_parse(variables):  # another process parsed meanwhile
                return cached
            scratch = target / f".parse-{uuid.uuid4().hex[:7]}"
            self.cli(["parse", "--quiet", *variables], target_path=scratch).wait()
            parse = _keep_parse(scratch / "partial_parse.msgpack", variables)
            shutil.rmtree(scratch, ignore_errors=True)
            return parse


def _cached_parse(variables: Sequence[str]) -> Path | None:
    path = _parse_path(variables)
    if path.exists():
        path.touch()  # in use: not pruned
        return path
    return None


def _parse_path(variables: Sequence[str]) -> Path:
    digest = parse_fingerprint(Path(greenery_project.project_dir), variables)[:16]
    return greenery_project.manifest_path.parent / PARSES / f"{digest}.msgpack"


def _keep_parse(parsed: Path, variables: Sequence[str]) -> Path:
    path = _parse_path(variables)
    path.parent.mkdir(exist_ok=True)
    scratch = path.with_name(f".{uuid.uuid4().hex[:7]}")
    shutil.copy(parsed, scratch)
    os.replace(scratch, path)  # whole or not at all, for a process reading it meanwhile
    return path


@contextmanager
def _parse_lock():
    """One parse at a time: a code location, a CLI run and the daemon's runs may start together."""
    target = greenery_project.manifest_path.parent
    target.mkdir(parents=True, exist_ok=True)
    with open(target / ".parse.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _variables(args: Sequence[str]) -> tuple[str, ...]:
    """The invocation's `--vars` and their value: its parse must be made with them, else dbt
    parses the whole project again."""
    return next((tuple(args[i : i + 2]) for i in range(len(args) - 1) if args[i] == "--vars"), ())


def _invocation_name(context) -> str:
    # As dagster-dbt names its invocation folders: the step and the run, when there is one.
    unique = uuid.uuid4().hex[:7]
    return f"{context.op.name}-{context.run.run_id[:7]}-{unique}" if context is not None else unique


def _pin_warehouse_dir() -> None:
    os.environ["GREENERY_WAREHOUSE_DIR"] = str(warehouse_dir())


# Long enough to read the artifacts of yesterday's failed run, short enough that a service
# invoking dbt every few hours never fills its disk.
INVOCATION_FOLDER_RETENTION_SECONDS = 24 * 3600


def prune_invocation_folders(target: Path, now: float | None = None) -> list[str]:
    """Delete the folders dagster-dbt left in `target`, one per dbt invocation, and the parses no
    invocation used, once they are a day old."""
    cutoff = (now or time.time()) - INVOCATION_FOLDER_RETENTION_SECONDS
    pruned = []
    for parse in (target / PARSES).glob("*.msgpack"):
        if parse.stat().st_mtime < cutoff:
            parse.unlink(missing_ok=True)
            pruned.append(f"{PARSES}/{parse.name}")
    for folder in target.glob("*/"):
        # `compiled` and `run` are dbt's own, from runs outside Dagster.
        if folder.name not in ("compiled", "run", PARSES) and folder.stat().st_mtime < cutoff:
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
    target = greenery_project.manifest_path.parent
    fingerprint_path = target / "manifest.fingerprint"
    _pin_warehouse_dir()  # as dbt will see it, so the digest is the same before and after a parse
    fingerprint = project_fingerprint(Path(greenery_project.project_dir))
    with _parse_lock():
        if greenery_project.manifest_path.exists() and fingerprint_path.exists():
            if fingerprint_path.read_text() == fingerprint:
                return False
        fingerprint_path.unlink(missing_ok=True)
        # Parsed aside and moved in file by file: a dbt invocation starting meanwhile reads a whole one.
        scratch = target / f".parse-{uuid.uuid4().hex[:7]}"
        dbt_resource().cli(["parse", "--quiet"], target_path=scratch).wait()
        _keep_parse(scratch / "partial_parse.msgpack", ())
        for artifact in scratch.iterdir():
            if artifact.is_file():
                os.replace(artifact, target / artifact.name)
        shutil.rmtree(scratch)
        fingerprint_path.write_text(fingerprint)
    return True


# Secrets stay out of the digests, as dbt keeps them out of its own partial-parsing check.
_SECRETS = re.compile(r"PASSWORD|PASSPHRASE|SALT")
# Settings of the connection that no node of the manifest names (DuckDB's database is the file's
# name, not its folder): a new warehouse folder needs a new parse, not a new manifest.
_CONNECTION_ONLY = {"GREENERY_WAREHOUSE_DIR", "GREENERY_DUCKDB_MEMORY_LIMIT", "SNOWFLAKE_THREADS"}


def dbt_code_version() -> str:
    """A short digest of the dbt project's files: which code built what a publish logged."""
    digest = hashlib.sha256()
    for path, content in _project_files(Path(greenery_project.project_dir)):
        digest.update(f"{path}\n".encode() + content)
    return digest.hexdigest()[:12]


def _project_files(project_dir: Path):
    paths = []
    for folder, subfolders, files in os.walk(project_dir):
        if Path(folder) == project_dir:
            # Not walked at all: the target folder holds a folder per dbt invocation.
            subfolders[:] = [name for name in subfolders if name not in ("target", "logs", "dbt_packages")]
        paths += [Path(folder) / name for name in files]
    for path in sorted(paths):
        yield path.relative_to(project_dir), path.read_bytes()


def project_fingerprint(project_dir: Path) -> str:
    """A digest of what the manifest is made of: every project file, and the environment variables
    the project names in `env_var(...)` but the connection-only ones, with the dbt version and the
    target."""
    return _fingerprint(project_dir, with_connection=False)


def invocation_fingerprint() -> str:
    """parse_fingerprint of the project as a dbt invocation without vars sees it."""
    _pin_warehouse_dir()
    return parse_fingerprint(Path(greenery_project.project_dir))


def parse_fingerprint(project_dir: Path, variables: Sequence[str] = ()) -> str:
    """A digest of what dbt checks before it reuses a parse: the manifest's, the whole connection
    and the vars."""
    return _fingerprint(project_dir, with_connection=True, extra=" ".join(variables))


def _fingerprint(project_dir: Path, with_connection: bool, extra: str = "") -> str:
    from dbt.version import __version__ as dbt_version  # noqa: PLC0415

    digest = hashlib.sha256(f"dbt {dbt_version}\n{extra}\n".encode())
    names = {b"GREENERY_TARGET"}
    for relative, content in _project_files(project_dir):
        digest.update(f"{relative}\n".encode() + content)
        if relative.suffix in (".sql", ".yml", ".yaml"):
            names |= set(re.findall(rb"env_var\(\s*['\"]([A-Za-z0-9_]+)['\"]", content))
    for name in sorted(name.decode() for name in names):
        if not _SECRETS.search(name) and (with_connection or name not in _CONNECTION_ONLY):
            digest.update(f"{name}={os.environ.get(name)}\n".encode())
    return digest.hexdigest()
