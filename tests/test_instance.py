"""The Dagster instance: SQLite in DAGSTER_HOME by default, PostgreSQL when DAGSTER_PG_* is set."""

import os
import uuid

import dagster as dg
import pytest

from greenery_orchestration.cli import main
from greenery_orchestration.settings import ensure_dagster_home, instance_config

PG = {
    "DAGSTER_PG_HOST": os.environ.get("GREENERY_TEST_PG_HOST", "127.0.0.1"),
    "DAGSTER_PG_PORT": os.environ.get("GREENERY_TEST_PG_PORT", "5432"),
    "DAGSTER_PG_USER": os.environ.get("GREENERY_TEST_PG_USER", "greenery"),
    "DAGSTER_PG_PASSWORD": os.environ.get("GREENERY_TEST_PG_PASSWORD", "greenery"),
}


@pytest.fixture
def postgres_database():
    """A fresh database on the PostgreSQL that scripts/test-services.sh starts on 127.0.0.1."""
    import psycopg2

    connect = {"host": PG["DAGSTER_PG_HOST"], "port": PG["DAGSTER_PG_PORT"], "user": PG["DAGSTER_PG_USER"],
               "password": PG["DAGSTER_PG_PASSWORD"]}
    try:
        admin = psycopg2.connect(dbname="postgres", connect_timeout=5, **connect)
    except psycopg2.OperationalError as error:
        pytest.skip(f"no PostgreSQL at {connect['host']}:{connect['port']} (scripts/test-services.sh starts one "
                    f"where it can): {str(error).strip()}")
    admin.autocommit = True
    name = f"dagster_test_{uuid.uuid4().hex[:8]}"
    admin.cursor().execute(f"create database {name}")
    yield name, lambda: psycopg2.connect(dbname=name, **connect)
    admin.cursor().execute(f"drop database {name} with (force)")
    admin.close()


def test_sqlite_in_dagster_home_by_default(monkeypatch):
    monkeypatch.delenv("DAGSTER_PG_HOST", raising=False)
    config = instance_config()
    assert "storage:" not in config
    assert "enabled: false" in config  # telemetry
    assert "QueuedRunCoordinator" in config


def test_the_instance_runs_against_postgresql(postgres_database, tmp_path, monkeypatch, warehouse):
    name, connect = postgres_database
    for key, value in {**PG, "DAGSTER_PG_DB": name}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    assert main(["sample", "--days", "1", "--sessions-per-day", "100"]) == 0

    ensure_dagster_home()
    from greenery_orchestration.definitions import defs

    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        result = defs().resolve_job_def("greenery_production").execute_in_process(
            instance=instance, asset_selection=[dg.AssetKey(["snapshots", "orders_snapshot"])]
        )
    assert result.success
    with connect() as connection, connection.cursor() as cursor:
        cursor.execute("select run_id, status from runs")
        assert cursor.fetchall() == [(result.run_id, "SUCCESS")]
        cursor.execute("select count(*) from event_logs where run_id = %s and dagster_event_type = 'ASSET_MATERIALIZATION'",
                       [result.run_id])
        assert cursor.fetchone() == (1,)
    written = (tmp_path / "home" / "dagster.yaml").read_text()
    assert "password:\n        env: DAGSTER_PG_PASSWORD" in written  # a reference, never the secret
