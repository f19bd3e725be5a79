"""The dbt manifest is parsed again exactly when what a parse reads has changed; dbt's
per-invocation folders do not pile up."""

import os
import shutil
import time

from greenery_orchestration.project import (
    greenery_project,
    prepare_manifest,
    project_fingerprint,
    prune_invocation_folders,
)
from greenery_orchestration.settings import DBT_PROJECT_DIR


def _copy_of_project(tmp_path):
    copy = tmp_path / "dbt_project"
    shutil.copytree(DBT_PROJECT_DIR, copy, ignore=shutil.ignore_patterns("target", "logs"))
    return copy


def test_the_fingerprint_follows_project_files_and_the_variables_the_project_reads(tmp_path, monkeypatch):
    project = _copy_of_project(tmp_path)
    monkeypatch.setenv("SNOWFLAKE_DATABASE", "ANALYTICS")
    first = project_fingerprint(project)
    assert project_fingerprint(project) == first

    (project / "target").mkdir()
    (project / "target" / "run_results.json").write_text("{}")
    monkeypatch.setenv("SNOWFLAKE_PASSWORD", "a different secret")  # a secret: never in the digest
    monkeypatch.setenv("UNRELATED_VARIABLE", "x")
    assert project_fingerprint(project) == first

    monkeypatch.setenv("SNOWFLAKE_DATABASE", "ANALYTICS_V2")  # the database the manifest names
    second = project_fingerprint(project)
    assert second != first
    # A connection setting: dbt would reparse in every invocation after it changes.
    monkeypatch.setenv("GREENERY_WAREHOUSE_DIR", str(tmp_path / "elsewhere"))
    third = project_fingerprint(project)
    assert third not in (first, second)

    model = project / "models" / "marts" / "product" / "fct_funnel.sql"
    model.write_text(model.read_text() + "\n-- edited\n")
    assert project_fingerprint(project) not in (first, second, third)


def test_an_unchanged_project_is_not_parsed_again():
    prepare_manifest()  # whatever state the manifest was in, it is current now
    manifest = greenery_project.manifest_path
    parsed_at = manifest.stat().st_mtime_ns

    assert prepare_manifest() is False
    assert manifest.stat().st_mtime_ns == parsed_at

    fingerprint = manifest.with_name("manifest.fingerprint")
    fingerprint.write_text("parsed from other files")
    assert prepare_manifest() is True
    assert manifest.stat().st_mtime_ns > parsed_at


def test_invocation_folders_are_pruned_once_a_day_old(tmp_path):
    now = time.time()
    for name, age_hours in [("greenery_models-1a2b3c4-5d6e7f8", 30), ("9f8e7d6", 25), ("0a1b2c3", 2), ("compiled", 48)]:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "run_results.json").write_text("{}")
        os.utime(folder, (now - age_hours * 3600,) * 2)
    (tmp_path / "manifest.json").write_text("{}")
    os.utime(tmp_path / "manifest.json", (now - 72 * 3600,) * 2)

    assert prune_invocation_folders(tmp_path, now=now) == ["9f8e7d6", "greenery_models-1a2b3c4-5d6e7f8"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0a1b2c3", "compiled", "manifest.json"]
