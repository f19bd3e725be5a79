"""The freshness gate: stale raw data stops the chain before masking, with an alert."""

import dagster as dg
import duckdb

from greenery_orchestration.cli import main


def test_stale_raw_data_stops_the_chain_before_masking_and_alerts(warehouse, course_data, alert_inbox, capsys):
    assert main(["load-csv", str(course_data)]) == 0

    assert main(["run"]) == 1

    with dg.DagsterInstance.get() as instance:
        (run,) = instance.get_runs(dg.RunsFilter(job_name="greenery_production"), limit=1)
        materialized = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    assert run.status == dg.DagsterRunStatus.FAILURE
    assert materialized == []  # no masking, no snapshot, no model
    with duckdb.connect(str(warehouse / "prod.duckdb"), read_only=True) as connection:
        schemas = {s for (s,) in connection.execute("select distinct table_schema from information_schema.tables").fetchall()}
    assert schemas == {"raw", "ops"}  # the raw tables and their load log, nothing built

    shown = capsys.readouterr().out
    assert "ERROR check source_freshness on raw/events: newest row" in shown
    assert "error after 24 hour(s)" in shown and "greenery run --allow-stale" in shown
    (alert,) = alert_inbox.received
    assert alert["type"] == "failure"
    assert alert["title"] == "[greenery] greenery_production failed"
    for expected in [
        "ERROR check source_freshness on raw/events: newest row",
        "(at 2021-02-12T08:55:36+00:00)",  # the newest event of the course data
        "threshold: warn after 12 hour(s), error after 24 hour(s)",
        "ERROR check source_freshness on raw/orders",
        "step raw_data_gate: 2 blocking asset checks failed with ERROR severity",
        f"/runs/{run.run_id}",
    ]:
        assert expected in alert["message"]


def test_allow_stale_builds_and_alerts_a_warning(course_run):
    (alert,) = [a for a in course_run.alerts.received if "greenery_production" in a["title"]]
    assert alert["type"] == "warning"
    assert "succeeded with warnings" in alert["message"]
    assert "WARN check source_freshness on raw/events" in alert["message"]
    assert (course_run.warehouse / "prod.duckdb").exists()
    assert (course_run.warehouse / "dev.duckdb").exists()


def test_the_gate_refuses_a_truncated_warehouse_before_any_step_writes(course_run, tmp_path, monkeypatch):
    """The daemon's path: no `greenery run` looked at the file first."""
    import shutil

    from greenery_orchestration.definitions import defs

    folder = tmp_path / "warehouse"
    folder.mkdir()
    damaged = folder / "prod.duckdb"
    shutil.copy(course_run.warehouse / "prod.duckdb", damaged)
    with damaged.open("r+b") as handle:
        handle.truncate(damaged.stat().st_size * 2 // 3)
    before = damaged.read_bytes()
    monkeypatch.setenv("GREENERY_WAREHOUSE_DIR", str(folder))

    result = defs().resolve_job_def("greenery_production").execute_in_process(
        instance=dg.DagsterInstance.get(), raise_on_error=False
    )

    (failure,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert failure.step_key == "raw_data_gate"
    assert f"Failure: {damaged} is truncated (" in failure.step_failure_data.error.message
    assert result.get_asset_materialization_events() == []
    assert damaged.read_bytes() == before
