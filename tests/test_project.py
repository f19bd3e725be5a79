"""The dbt manifest is parsed again exactly when what a parse reads has changed; dbt's
per-invocation folders do not pile up."""

import json
import os
import shutil
import time

import yaml

from greenery_orchestration.project import (
    EVERY_RAW_ROW,
    STAGED,
    STAGED_VARS,
    dbt_vars,
    dbt_resource,
    greenery_project,
    parse_fingerprint,
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
    # The warehouse's folder: another parse (dbt checks the connection), the same manifest.
    parse = parse_fingerprint(project)
    monkeypatch.setenv("GREENERY_WAREHOUSE_DIR", str(tmp_path / "elsewhere"))
    assert project_fingerprint(project) == second
    assert parse_fingerprint(project) != parse
    assert parse_fingerprint(project, STAGED_VARS) not in (parse, parse_fingerprint(project))

    model = project / "models" / "marts" / "product" / "fct_funnel.sql"
    model.write_text(model.read_text() + "\n-- edited\n")
    assert project_fingerprint(project) not in (first, second)


def test_vars_given_together_are_one_argument_written_one_way_whatever_their_order():
    # dbt takes one `--vars`, and a parse is kept per its text: one text for the same vars.
    both = dbt_vars(STAGED, EVERY_RAW_ROW)
    assert both == dbt_vars(EVERY_RAW_ROW, STAGED)
    assert both[0] == "--vars" and len(both) == 2
    assert yaml.safe_load(both[1]) == {"staged": True, "every_raw_row": True}
    assert yaml.safe_load(STAGED_VARS[1]) == {"staged": True}
    assert dbt_vars({}) == ()  # no --vars at all: the parse of a plain invocation


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


def test_each_parse_is_made_once_for_staged_and_unstaged_invocations_alike(tmp_path, monkeypatch):
    """dbt parses the whole project again when vars or the connection differ from those of the
    parse it was handed: each invocation is handed the parse of its own settings, made once."""
    monkeypatch.setenv("GREENERY_WAREHOUSE_DIR", str(tmp_path / "a warehouse of its own"))
    prepare_manifest()  # the same manifest: only the connection is new

    def listed(*variables):
        invocation = dbt_resource().cli(["ls", "--quiet", "--select", "fct_funnel", *variables]).wait()
        log = (invocation.target_path / "dbt.log").read_text()
        manifest = json.loads((invocation.target_path / "manifest.json").read_text())
        aliases = [node["alias"] for node in manifest["nodes"].values() if node["name"] == "fct_funnel"]
        return "Nothing changed, skipping partial parsing" in log, aliases

    # Each parsed aside once, before the invocation, which then skips parsing.
    assert listed(*STAGED_VARS) == (True, ["fct_funnel__staged"])
    assert listed() == (True, ["fct_funnel"])
    parses = greenery_project.manifest_path.parent / "parses"
    for variables in [STAGED_VARS, ()]:
        assert (parses / f"{parse_fingerprint(DBT_PROJECT_DIR, variables)[:16]}.msgpack").exists()


def test_no_dbt_adapter_is_set_up_in_the_calling_process(tmp_path, monkeypatch):
    """dbt runs in its own process; the caller's only sets up an adapter for metadata the project
    never fetches (seconds per invocation)."""
    from dbt.adapters.factory import FACTORY, reset_adapters

    monkeypatch.setenv("GREENERY_WAREHOUSE_DIR", str(tmp_path))
    reset_adapters()
    invocation = dbt_resource().cli(["ls", "--quiet", "--select", "fct_funnel"]).wait()
    assert invocation.is_successful()
    assert invocation.adapter is None
    assert FACTORY.adapters == {}
