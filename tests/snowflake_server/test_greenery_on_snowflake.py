"""The whole service on the Snowflake target, as a user runs it: `greenery` commands in
subprocesses with GREENERY_TARGET=snowflake, reaching fakesnow's HTTP server through the real
connector, dbt-snowflake and dagster-snowflake. Nothing is patched in those processes."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from greenery_orchestration.assets.dbt import INCREMENTAL_MODELS
from greenery_orchestration.marts import FUNNEL_MARTS
from greenery_orchestration.rawdata.load_log import load_time
from greenery_orchestration.settings import DBT_PROJECT_DIR
from tests.conftest import COURSE_DATA
from tests.snowflake_server.conftest import COMMAND_TIMEOUT_SECONDS, GREENERY
from tests.webserver import Dagster, free_port, wait_until_up


# One tick of the freshness sensor, in a process of the Snowflake target (its manifest names
# Snowflake's relations), as the daemon evaluates it.
SENSOR_TICK = """
import dagster as dg
from greenery_orchestration.sensors import raw_freshness_sensor
from greenery_orchestration.warehouse import warehouse_resource
with dg.DagsterInstance.ephemeral() as instance:
    raw_freshness_sensor(dg.build_sensor_context(instance=instance, resources={"warehouse": warehouse_resource()}))
"""


def _sensor_tick(account) -> None:
    ticked = account.python(SENSOR_TICK)
    assert ticked.returncode == 0, ticked.stderr[-3000:]


def _funnel_sessions(output: str) -> list[int]:
    rows = [line.split("|") for line in output.splitlines() if line.startswith("|") and line.split("|")[1].strip().isdigit()]
    return [int(row[3]) for row in rows]


def _rows(cursor, database: str, relation: str) -> list[tuple]:
    cursor.execute(f"select * from {database}.{relation}")
    columns = [column[0].lower() for column in cursor.description]
    keep = [i for i, name in enumerate(columns) if name not in ("dbt_updated_at", "updated_at")]
    return sorted((tuple(str(row[i]) for i in keep) for row in cursor.fetchall()))


@pytest.mark.skipif(not (COURSE_DATA / "events.csv").exists(), reason=f"the course data is not at {COURSE_DATA}")
def test_load_run_funnel_and_next_run_on_snowflake(account, snowflake_server, tmp_path):
    """load-csv, run, funnel: the course funnel; then `sample --append` and an order that ships,
    and the next run merges them: what the incremental models and the funnel marts hold equals a
    full refresh of the same raw rows (dbt in another database of the account, from per-table
    clones). Rows delivered late, after a build over the events naming them, are compared on the
    Snowflake SQL in tests/test_snowflake.py, and on DuckDB."""
    started = time.time()
    loaded = account("load-csv", str(COURSE_DATA))
    assert loaded.returncode == 0, loaded.stdout[-3000:] + loaded.stderr[-3000:]
    events = pd.read_csv(COURSE_DATA / "events.csv")
    assert f"raw.events: {len(events):,} rows" in loaded.stdout

    # The course data ends in February 2021: the gate stops a run, and alerts through the webhook.
    stopped = account("run")
    assert stopped.returncode == 1, stopped.stdout[-3000:] + stopped.stderr[-3000:]
    assert "ERROR check source_freshness on raw/events: newest row" in stopped.stdout
    (failure,) = account.inbox.received
    assert failure["type"] == "failure" and failure["title"] == "[greenery] greenery_production failed"
    assert "- ERROR check source_freshness on raw/events: newest row" in failure["message"]
    # The freshness sensor, reading through dagster-snowflake, alerts once per stale source.
    _sensor_tick(account)
    stale = [alert["title"] for alert in account.inbox.received[1:]]
    assert stale == ["[greenery] raw/events is stale", "[greenery] raw/orders is stale"], stale

    ran = account("run", "--allow-stale")
    assert ran.returncode == 0, ran.stdout[-5000:] + ran.stderr[-3000:]
    # The funnel `run` prints, and `funnel` reads again, through the connector.
    expected = [
        events.loc[events.event_type == step, "session_id"].nunique()
        for step in ("page_view", "add_to_cart", "checkout")
    ]
    assert expected == [578, 467, 361]
    assert _funnel_sessions(ran.stdout) == expected
    shown = account("funnel")
    assert shown.returncode == 0, shown.stderr[-3000:]
    assert f"Snowflake database {account.database}" in shown.stdout
    assert _funnel_sessions(shown.stdout) == expected

    # The clones hold prod's tables (fakesnow's nearest to a zero-copy clone: per-table clones).
    with snowflake_server.in_process(), snowflake_server.connect() as connection:
        cursor = connection.cursor()
        counts = {}
        for database in (account.database, f"{account.database}_DEV", f"{account.database}_CI"):
            cursor.execute(f"select count(*) from {database}.marts.fct_events")
            counts[database] = cursor.fetchone()[0]
    assert set(counts.values()) == {len(events)}, counts

    # No secret in anything a user or an alert reader sees: output, alerts, the event log and
    # the instance's files, the published docs, and the artifacts and logs of this test's dbt runs.
    secret = snowflake_server.env["SNOWFLAKE_PASSWORD"]
    seen = loaded.stdout + loaded.stderr + ran.stdout + ran.stderr + shown.stdout + str(account.inbox.received)
    assert secret not in seen
    dbt_runs = [path for path in (DBT_PROJECT_DIR / "target" / "snowflake").rglob("*") if path.stat().st_mtime >= started]
    assert [path for path in dbt_runs if path.name == "dbt.log"], "no dbt log was scanned"
    written = [*Path(account.env["DAGSTER_HOME"]).rglob("*"), *Path(account.env["GREENERY_DOCS_DIR"]).rglob("*"), *dbt_runs]
    for path in written:
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path

    appended = account("sample", "--append", "--hours", "3", "--sessions-per-day", "400")
    assert appended.returncode == 0, appended.stdout[-4000:] + appended.stderr[-3000:]
    changed = "(select min(order_id) from raw.orders where status = 'preparing')"
    now = f"cast('{load_time():%Y-%m-%d %H:%M:%S.%f}' as timestamp_ntz)"  # as a loader stamps it
    with snowflake_server.in_process(), snowflake_server.connect(account.database) as connection:
        connection.cursor().execute(
            f"update raw.orders set status = 'shipped', tracking_id = 'late-tracking', shipping_service = 'ups', "
            f"_loaded_at = {now} where order_id = {changed}")
    ran = account("run", "--allow-stale")
    assert ran.returncode == 0, ran.stdout[-4000:]
    assert "rebuilding the incremental models from scratch" not in ran.stdout  # an append: incremental

    full = f"{account.database}_FULL"
    with snowflake_server.in_process(), snowflake_server.connect() as connection:
        cursor = connection.cursor()
        cursor.execute(f"create database {full}")
        cursor.execute(f"create schema {full}.raw")
        cursor.execute(f"create schema {full}.ops")
        cursor.execute(f"select table_schema, table_name from {account.database}.information_schema.tables "
                       "where lower(table_schema) in ('raw', 'ops') and table_type = 'BASE TABLE'")
        for schema, table in cursor.fetchall():
            cursor.execute(f"create table {full}.{schema}.{table} clone {account.database}.{schema}.{table}")
    built = snowflake_server.run(
        [str(Path(sys.executable).with_name("dbt")), "build", "--full-refresh", "--exclude", "resource_type:snapshot"],
        timeout=COMMAND_TIMEOUT_SECONDS,
        env={"SNOWFLAKE_DATABASE": full, "DBT_TARGET_PATH": str(tmp_path / "target"), "DBT_LOG_PATH": str(tmp_path / "logs")},
    )
    assert built.returncode == 0, built.stdout[-4000:]
    compared = sorted({*INCREMENTAL_MODELS, *(f"marts.{key.path[-1]}" for key in FUNNEL_MARTS.values())})
    with snowflake_server.in_process(), snowflake_server.connect() as connection:
        cursor = connection.cursor()
        for relation in compared:
            incremental, refreshed = _rows(cursor, account.database, relation), _rows(cursor, full, relation)
            assert incremental == refreshed, relation
            assert incremental, relation
        cursor.execute(f"select (select count(*) from {account.database}.raw.events), "
                       f"(select count(*) from {account.database}.marts.fct_events)")
        raw_events, built_events = cursor.fetchone()
        assert raw_events == built_events > len(events)
        cursor.execute(f"select count(*) from {account.database}.marts.fct_orders where tracking_id = 'late-tracking' "
                       "and order_status = 'shipped'")
        assert cursor.fetchall() == [(1,)]


def test_greenery_ui_on_snowflake_serves_the_asset_graph_duckdb_does(account, snowflake_server, tmp_path):
    from greenery_orchestration.definitions import defs  # this process: the DuckDB target

    graph = defs().resolve_asset_graph()
    expected = {
        key.to_user_string(): sorted(parent.to_user_string() for parent in graph.get(key).parent_keys)
        for key in graph.get_all_asset_keys()
    }
    port = free_port()
    log_path = tmp_path / "ui.log"
    with log_path.open("w") as log:
        ui = subprocess.Popen(
            [GREENERY, "ui", "--port", str(port)], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
            env={**snowflake_server.env, **account.env, "GREENERY_SCHEDULE_CRON": "0 0 1 1 *"},
        )
        try:
            dagster = Dagster(port)
            wait_until_up(dagster, ui, log_path)
            nodes = dagster.gql("{ assetNodes { assetKey { path } dependencyKeys { path } kinds } }")["assetNodes"]
        finally:
            ui.send_signal(signal.SIGTERM)
            ui.wait(timeout=60)
    served = {"/".join(n["assetKey"]["path"]): sorted("/".join(d["path"]) for d in n["dependencyKeys"]) for n in nodes}
    assert served == expected
    assert {"snowflake"} <= {kind for node in nodes for kind in node["kinds"]}
    assert "duckdb" not in {kind for node in nodes for kind in node["kinds"]}
