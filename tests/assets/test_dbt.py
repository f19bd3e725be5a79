"""The asset graph against the dbt manifest: every model and snapshot an asset, every test a check."""

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from greenery_orchestration.assets.dbt import INCREMENTAL_MODELS, raw_data_replaced, relisted_test_accounts
from greenery_orchestration.rawdata.load_log import load_time, record_load
from greenery_orchestration.settings import DBT_PROJECT_DIR


@pytest.fixture(scope="module")
def manifest(dbt_manifest):
    return json.loads(dbt_manifest.read_text())


@pytest.fixture(scope="module")
def asset_graph():
    from greenery_orchestration.definitions import defs

    return defs().resolve_asset_graph()


def _nodes(manifest, resource_type):
    return [n for n in manifest["nodes"].values() if n["resource_type"] == resource_type]


def test_every_model_and_snapshot_is_an_asset_keyed_by_schema(manifest, asset_graph):
    expected = {
        dg.AssetKey([n["schema"], n["name"]])
        for n in _nodes(manifest, "model") + _nodes(manifest, "snapshot") + _nodes(manifest, "seed")
    }
    dbt_assets = {key for key in asset_graph.get_all_asset_keys() if "dbt" in asset_graph.get(key).kinds}
    dbt_assets -= {dg.AssetKey(["governance", "pii_masking"]), dg.AssetKey(["docs", "dbt_docs"])}  # run dbt commands
    assert dbt_assets == expected
    materializable = dbt_assets
    assert dg.AssetKey(["marts", "fct_funnel"]) in materializable
    assert dg.AssetKey(["snapshots", "orders_snapshot"]) in materializable


def test_every_raw_table_is_an_external_asset_the_staging_models_read(asset_graph):
    raw = {key for key in asset_graph.get_all_asset_keys() if key.path[0] == "raw"}
    assert raw == {
        dg.AssetKey(["raw", t])
        for t in ["addresses", "events", "order_items", "orders", "products", "promos", "users"]
    }
    for key in raw:
        node = asset_graph.get(key)
        assert not node.is_materializable
        assert node.group_name == "raw"
        assert node.description
    assert dg.AssetKey(["raw", "events"]) in asset_graph.get(
        dg.AssetKey(["staging", "stg_greenery__events"])
    ).parent_keys


def test_every_dbt_test_is_an_asset_check(manifest, asset_graph):
    test_names = {n["name"] for n in _nodes(manifest, "test")}
    check_names = {key.name for key in asset_graph.asset_check_keys}
    assert len(test_names) > 50
    assert check_names == test_names | {"source_freshness"}  # the gate: dbt source freshness


def test_assets_are_grouped_by_layer_with_owners_kinds_descriptions_and_columns(asset_graph):
    expected_groups = {
        "staging": "staging", "intermediate": "intermediate", "marts": "marts", "snapshots": "snapshots",
        "governance": "governance", "docs": "docs", "environments": "environments",
    }
    for key in asset_graph.get_all_asset_keys():
        node = asset_graph.get(key)
        if not node.is_materializable:
            continue
        assert node.group_name == expected_groups[key.path[0]], key
        assert node.owners, key
        assert {"dbt", "duckdb"} & set(node.kinds), key
        assert node.description, key

    funnel = asset_graph.get(dg.AssetKey(["marts", "fct_funnel"]))
    columns = {c.name: c.type for c in funnel.metadata["dagster/column_schema"].columns}
    assert columns["sessions"] == "bigint"
    assert list(columns)[:3] == ["step_number", "funnel_step", "sessions"]


def test_loading_the_definitions_reads_the_manifest_without_parsing(dbt_manifest):
    before = dbt_manifest.stat().st_mtime_ns
    loaded = subprocess.run(
        [sys.executable, "-c", "from greenery_orchestration.definitions import defs; defs()"],
        capture_output=True, text=True, check=False,
    )
    assert loaded.returncode == 0, loaded.stderr
    assert dbt_manifest.stat().st_mtime_ns == before


def test_the_dbt_project_parses_without_deprecations(tmp_path):
    parsed = subprocess.run(
        [str(Path(sys.executable).with_name("dbt")), "parse", "--no-partial-parse", "--log-format", "json",
         "--target-path", str(tmp_path / "target")],
        cwd=DBT_PROJECT_DIR, capture_output=True, text=True, check=False,
        env={**os.environ, "DBT_LOG_PATH": str(tmp_path)},
    )
    assert parsed.returncode == 0, parsed.stdout[-2000:]
    events = [json.loads(line)["info"] for line in parsed.stdout.splitlines() if line.startswith("{")]
    assert any(e["name"] == "ParsePerfInfoPath" for e in events)  # the parse ran to the end
    deprecations = [e["msg"] for e in events if "Deprecation" in e["name"] or e["level"] == "warn"]
    assert deprecations == []


def test_the_chain_order_is_lineage_and_marts_carry_a_freshness_policy(asset_graph):
    masking, snapshot = dg.AssetKey(["governance", "pii_masking"]), dg.AssetKey(["snapshots", "orders_snapshot"])
    assert {key.path[0] for key in asset_graph.get(masking).parent_keys} == {"raw"}
    assert masking in asset_graph.get(snapshot).parent_keys
    assert asset_graph.get(snapshot).parent_keys == {masking, dg.AssetKey(["raw", "orders"])}
    # The build's first models follow the snapshot; the models after them follow those.
    assert asset_graph.get(dg.AssetKey(["staging", "stg_greenery__users"])).parent_keys == {
        snapshot, dg.AssetKey(["raw", "users"])
    }
    # A seed reads nothing: it follows the snapshot too.
    assert asset_graph.get(dg.AssetKey(["staging", "test_accounts"])).parent_keys == {snapshot}
    # Incremental: it also reads which users and addresses were loaded since its newest build.
    assert asset_graph.get(dg.AssetKey(["marts", "dim_users"])).parent_keys == {
        *(dg.AssetKey(["staging", name]) for name in ("stg_greenery__addresses", "stg_greenery__users", "test_accounts")),
        dg.AssetKey(["intermediate", "int_users__aggregated"]), dg.AssetKey(["raw", "addresses"]), dg.AssetKey(["raw", "users"]),
    }
    assert asset_graph.get(dg.AssetKey(["intermediate", "int_users__aggregated"])).parent_keys == {
        dg.AssetKey(["intermediate", "int_sessions__aggregated"]), dg.AssetKey(["marts", "fct_orders"]),
    }
    publish = dg.AssetKey(["governance", "publish"])
    models = {key for key in asset_graph.get_all_asset_keys() if key.path[0] in ("staging", "intermediate", "marts")}
    assert asset_graph.get(publish).parent_keys == {*models, snapshot}  # everything it publishes
    assert asset_graph.get(dg.AssetKey(["docs", "dbt_docs"])).parent_keys == {publish}
    assert asset_graph.get(dg.AssetKey(["environments", "dev"])).parent_keys == {dg.AssetKey(["docs", "dbt_docs"])}

    for key in asset_graph.get_all_asset_keys():
        policy = asset_graph.get(key).freshness_policy
        if key.path[0] == "marts":
            assert policy.fail_window.to_timedelta().total_seconds() == 12 * 3600, key
        else:
            assert policy is None, key


@pytest.fixture
def built_events(tmp_path):
    """marts.fct_events built from raw.events at 10:00, as an incremental build leaves them."""
    with duckdb.connect(str(tmp_path / "prod.duckdb")) as connection:
        connection.execute("create schema raw; create schema marts")
        connection.execute(
            "create table raw.events as select 'e' || i as event_id, timestamp '2026-03-01 08:00' + i * interval 1 minute "
            "as created_at from range(100) t(i)"
        )
        connection.execute(
            "create table marts.fct_events as select *, timestamp '2026-03-01 10:00' as dbt_updated_at from raw.events"
        )
        yield connection


def _replaced(connection) -> str | None:
    return raw_data_replaced(lambda sql: connection.execute(sql).df())


def test_raw_data_as_built_is_not_replaced_and_appends_are_not_either(built_events):
    assert _replaced(built_events) is None
    built_events.execute("insert into raw.events values ('new', timestamp '2026-03-01 11:00')")
    record_load(built_events, "append", "sample --append", {"events": 1}, loaded_at=load_time())
    assert _replaced(built_events) is None


def test_a_replacement_logged_after_the_build_is_seen(built_events):
    # Logged now, long after 10:00.
    record_load(built_events, "replace", "load-csv", {"events": 100}, loaded_at=load_time())
    assert _replaced(built_events).startswith("The raw tables were replaced at ")


@pytest.mark.parametrize("gone", ["e0", "e99"])
def test_the_oldest_or_newest_built_event_gone_from_raw_is_seen(built_events, gone):
    built_events.execute("update raw.events set event_id = 'other' where event_id = ?", [gone])
    assert _replaced(built_events).startswith(f"Event {gone} of ")


def test_fewer_raw_events_than_built_is_seen(built_events):
    built_events.execute("delete from raw.events where event_id = 'e50'")
    assert _replaced(built_events) == "raw.events holds 99 events, fewer than the 100 already built"


def test_a_build_of_an_older_version_is_rebuilt(built_events):
    built_events.execute("alter table marts.fct_events drop column dbt_updated_at")
    assert _replaced(built_events) == "marts.fct_events was built by an older version (no dbt_updated_at)"


def test_the_incremental_models_are_read_from_the_manifest():
    assert INCREMENTAL_MODELS == [
        "intermediate.int_funnel_steps__reached", "intermediate.int_session_products__aggregated",
        "intermediate.int_sessions__aggregated", "intermediate.int_users__aggregated",
        "marts.dim_users", "marts.fct_events", "marts.fct_orders", "marts.fct_sessions",
    ]


@pytest.mark.parametrize("older", ["intermediate.int_funnel_steps__reached", "marts.fct_orders"])
def test_any_incremental_model_built_without_a_build_stamp_is_rebuilt(built_events, older):
    """A model an older version built as a table: merging into it would keep whatever it holds."""
    schema = older.split(".")[0]
    built_events.execute(f"create schema if not exists {schema}")
    built_events.execute(f"create table {older} as select 'p1' as path_id")
    assert _replaced(built_events) == f"{older} was built by an older version (no dbt_updated_at)"
    built_events.execute(f"alter table {older} add column dbt_updated_at timestamp")
    assert _replaced(built_events) is None


@pytest.fixture
def seed(tmp_path):
    path = tmp_path / "test_accounts.csv"
    path.write_text("user_id,reason\nu1,QA account\n")
    return path


def test_a_seed_as_published_changes_nothing_and_nothing_published_neither(seed, tmp_path):
    with duckdb.connect(str(tmp_path / "prod.duckdb")) as connection:
        assert relisted_test_accounts(lambda sql: connection.execute(sql).df(), seed) is None
        connection.execute("create schema staging")
        connection.execute("create table staging.test_accounts as select 'u1' as user_id, 'QA account' as reason")
        assert relisted_test_accounts(lambda sql: connection.execute(sql).df(), seed) is None


def test_test_accounts_listed_or_unlisted_since_the_last_build_are_seen(seed, tmp_path):
    seed.write_text("user_id,reason\nu1,QA account\nu2,load test\n")
    with duckdb.connect(str(tmp_path / "prod.duckdb")) as connection:
        connection.execute("create schema staging")
        connection.execute("create table staging.test_accounts as select * from (values ('u1', 'QA'), ('u3', 'staff')) t(user_id, reason)")
        assert relisted_test_accounts(lambda sql: connection.execute(sql).df(), seed) == (
            "The test accounts of test_accounts.csv differ from staging.test_accounts (newly listed: u2; no longer listed: u3)"
        )


def test_nothing_built_yet_needs_no_rebuild(tmp_path):
    with duckdb.connect(str(tmp_path / "empty.duckdb")) as connection:
        assert _replaced(connection) is None
