"""The Snowflake target through its real clients, against fakesnow's HTTP server: the connector's
write_pandas, dbt-snowflake in a subprocess, dagster-snowflake's resource. Nothing is patched:
each client reads SNOWFLAKE_HOST, SNOWFLAKE_PORT and SNOWFLAKE_PROTOCOL as production would."""

import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import snowflake.connector
from dagster_snowflake import SnowflakeResource
from snowflake.connector.pandas_tools import write_pandas

from greenery_orchestration.rawdata.schema import declared_columns, raw_columns
from greenery_orchestration.warehouse import warehouse_resource
from tests.test_snowflake import sample_raw_tables

DBT = str(Path(sys.executable).with_name("dbt"))
DBT_TIMEOUT_SECONDS = 300  # a dbt invocation here takes 5-15 s; never wait forever on one
STAGING = {table: f"stg_greenery__{table}" for table in raw_columns()}

@pytest.fixture(scope="module")
def raw_tables(snowflake_server) -> dict[str, pd.DataFrame]:
    """A small synthetic shop, written into RAW the way production loads Snowflake: write_pandas."""
    tables = sample_raw_tables(end=datetime.now(timezone.utc))
    with snowflake_server.in_process(), snowflake_server.connect() as connection:
        cursor = connection.cursor()
        cursor.execute("create schema if not exists raw")
        for table, columns in declared_columns().items():
            declared = ", ".join(f"{name} {data_type}" for name, data_type in columns.items())
            cursor.execute(f"create or replace table raw.{table} ({declared})")
            # Unquoted: the frame's lower-case names resolve to the table's columns, as on Snowflake.
            success, chunks, rows, _ = write_pandas(
                connection, tables[table], table.upper(), database="GREENERY", schema="RAW", quote_identifiers=False,
            )
            assert (success, chunks, rows) == (True, 1, len(tables[table])), table
    return tables


def dbt(snowflake_server, target: Path, *args: str):
    return snowflake_server.run(
        [DBT, *args], timeout=DBT_TIMEOUT_SECONDS,
        env={"DBT_TARGET_PATH": str(target), "DBT_LOG_PATH": str(target / "logs"), "DBT_USE_COLORS": "false"},
    )


def test_dbt_snowflake_connects_to_the_server_the_profile_names(snowflake_server, tmp_path):
    done = dbt(snowflake_server, tmp_path, "debug")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:] + snowflake_server.server_log()
    assert "Connection test: [OK connection ok]" in done.stdout
    for line in ("host: 127.0.0.1", f"port: {snowflake_server.port}", "protocol: http", "account: fakesnow"):
        assert line in done.stdout
    assert snowflake_server.env["SNOWFLAKE_PASSWORD"] not in done.stdout + done.stderr


def test_write_pandas_fills_every_raw_table(snowflake_server, raw_tables):
    with snowflake_server.in_process(), snowflake_server.connect(schema="RAW") as connection:
        cursor = connection.cursor()
        for table, frame in raw_tables.items():
            assert cursor.execute(f"select count(*) from {table}").fetchall() == [(len(frame),)], table
        newest, sessions = cursor.execute(
            "select max(created_at), count(distinct session_id) from events"
        ).fetchall()[0]
    events = raw_tables["events"]
    assert pd.Timestamp(newest) == events.created_at.max()
    assert sessions == events.session_id.nunique()


def test_dbt_builds_the_staging_layer_and_dagster_snowflake_reads_it(snowflake_server, raw_tables, tmp_path, monkeypatch):
    done = dbt(snowflake_server, tmp_path, "build", "--select", "source:greenery", *STAGING.values(),
               "--indirect-selection", "cautious")  # their tests, not the marts' tests reading a source
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:] + snowflake_server.server_log()
    results = json.loads((tmp_path / "run_results.json").read_text())["results"]
    built = {r["unique_id"].split(".")[-1] for r in results if r["unique_id"].startswith("model.")}
    assert built == set(STAGING.values())
    assert {r["status"] for r in results} == {"success", "pass"}
    # The staging models' tests ran too, and their sources', which hold the keys' and references' tests.
    tested = {r["unique_id"].split(".")[2] for r in results if r["unique_id"].startswith("test.")}
    assert {"source_unique_combination_of_columns_greenery_order_items_order_id__product_id",
            "source_relationships_greenery_orders_user_id__greenery_users"} <= tested
    assert len(tested) > 30

    # The code location's resource, configured from the same environment, reads what dbt built.
    for name, value in snowflake_server.env.items():
        if name.startswith(("SNOWFLAKE_", "GREENERY_")):
            monkeypatch.setenv(name, value)
    resource = warehouse_resource()
    assert isinstance(resource, SnowflakeResource)
    assert resource.additional_snowflake_connection_args == {
        "host": "127.0.0.1", "port": snowflake_server.port, "protocol": "http", "platform_detection_timeout_seconds": 0.0,
    }
    with snowflake_server.in_process():
        resource = resource.process_config_and_initialize()  # as a run gets it: variables resolved
        counts = resource.read_sql(" union all ".join(
            f"select '{table}' as source, count(*) as staged from GREENERY.staging.{model}" for table, model in STAGING.items()
        ))
        newest = resource.newest_loaded_at({
            dg.AssetKey(["raw", table]): {"loaded_at_field": "created_at", "relation_name": f"GREENERY.raw.{table}"}
            for table in ("events", "orders")
        })
    assert dict(zip(counts.source, counts.staged, strict=True)) == {table: len(frame) for table, frame in raw_tables.items()}
    assert newest == {dg.AssetKey(["raw", table]): raw_tables[table].created_at.max().to_pydatetime()
                      for table in ("events", "orders")}


def test_the_emulation_macros_load_from_the_environment_in_server_mode(snowflake_server, raw_tables, tmp_path):
    # The chain's masking step: fakesnow has no masking policies, so the emulation skips them.
    done = dbt(snowflake_server, tmp_path, "run-operation", "apply_pii_masking", "--log-format", "json", "--debug")
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:] + snowflake_server.server_log()
    messages = [json.loads(line)["info"]["msg"] for line in done.stdout.splitlines() if line.startswith("{")]
    assert any(m.startswith("Emulated Snowflake: fakesnow has no masking policies; skipped: ") for m in messages)
    assert any(m.startswith("Masking: ") and m.endswith("statement(s) applied.") for m in messages)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["macros"]["macro.greenery.run_query"]["original_file_path"] == "emulation/fakesnow_emulation.sql"


def test_a_statement_fakesnow_cannot_run_fails_at_once(snowflake_server, raw_tables):
    # fakesnow answers it with HTTP 500, which the connector would retry until network_timeout
    # (dbt sets none); the launcher turns it into Snowflake's error response for a statement.
    started = time.monotonic()
    with snowflake_server.in_process(60), snowflake_server.connect(schema="RAW") as connection:
        with pytest.raises(snowflake.connector.errors.ProgrammingError, match="fakesnow cannot run this statement"):
            connection.cursor().execute("copy into events from (select 1 from (select 1 as a))")
        # The session goes on.
        assert connection.cursor().execute("select count(*) from events").fetchall() == [(len(raw_tables["events"]),)]
    assert time.monotonic() - started < 15


GUARD_CHECK = """
import sitecustomize  # loaded from tests/snowflake_server/loopback_only by PYTHONPATH, and armed
sitecustomize._hook("socket.connect", (None, ("127.0.0.1", 1)))
sitecustomize._hook("socket.connect", (None, "/run/some.sock"))
try:
    sitecustomize._hook("socket.connect", (None, ("192.0.2.1", 443)))
except OSError as error:
    print(error)
"""


def test_processes_started_with_the_environment_reach_loopback_only(snowflake_server, tmp_path):
    # The guard's hook is called directly, not through a connection: nothing may leave even if it failed.
    log = tmp_path / "outbound.log"
    done = snowflake_server.run([sys.executable, "-c", GUARD_CHECK], timeout=60, cwd=tmp_path,
                                env={"GREENERY_TEST_OUTBOUND_LOG": str(log)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "tests connect to 127.0.0.0/8 only, not 192.0.2.1"
    assert log.read_text().split()[1:] == ["socket.connect", "192.0.2.1"]
