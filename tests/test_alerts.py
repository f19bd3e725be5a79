"""Alerts and `greenery run` carry the cause of a failed step: dbt's or DuckDB's first line and
the model that failed, from real runs on a real warehouse, received by a real HTTP server."""

import re
import shutil
import subprocess

import dagster as dg
import duckdb
import pytest

from greenery_orchestration.alerts import check_line
from greenery_orchestration.cli import main


@pytest.fixture
def small_disk(tmp_path, monkeypatch):
    """The warehouse folder on an 8 MB tmpfs: the sample's raw tables fit, with 1 MB left after
    them, where the models' ~3 MB do not."""
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    monkeypatch.setenv("GREENERY_WAREHOUSE_DIR", str(folder))
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def _failure_alert(inbox) -> dict:
    (alert,) = inbox.received
    assert alert["title"] == "[greenery] greenery_production failed"
    return alert


def _after_alert_line(shown: str) -> str:
    """What `greenery run` prints under its `alert (failure): …` line."""
    return shown[shown.index("alert (failure): [greenery] greenery_production failed"):]


def test_a_full_disk_alerts_with_duckdbs_error_and_the_model_it_stopped(small_disk, alert_inbox, capsys):
    assert main(["sample"]) == 0
    free = shutil.disk_usage(small_disk).free
    (small_disk / "filler").write_bytes(b"\0" * (free - 1024 * 1024))
    capsys.readouterr()

    assert main(["run"]) == 1

    shown = capsys.readouterr().out
    cause = re.compile(
        r'step build_models: model (marts|intermediate)\.\w+: TransactionContext Error: Failed to commit: '
        rf'Could not write file "{re.escape(str(small_disk))}/prod\.duckdb\.wal": No space left on device'
    )
    message = _failure_alert(alert_inbox)["message"]
    assert cause.search(message), message
    assert cause.search(_after_alert_line(shown)), shown
    for text in (message, shown):
        assert "Traceback" not in text and "The dbt CLI process" not in text


def test_a_model_selecting_a_column_the_raw_table_lacks_alerts_with_the_binder_error(warehouse, alert_inbox, capsys):
    assert main(["sample"]) == 0
    with duckdb.connect(str(warehouse / "prod.duckdb")) as connection:
        connection.execute("alter table raw.orders drop column promo_id")
    capsys.readouterr()

    assert main(["run"]) == 1

    shown = capsys.readouterr().out
    cause = (
        "- step build_models: model staging.stg_greenery__orders: "
        'Binder Error: Referenced column "promo_id" not found in FROM clause!'
    )
    message = _failure_alert(alert_inbox)["message"]
    assert cause in message.splitlines()
    assert f"  {cause}" in _after_alert_line(shown).splitlines()
    for text in (message, shown):
        assert "Traceback" not in text and "The dbt CLI process" not in text and "Candidate bindings" not in text


def test_a_test_that_cannot_run_is_reported_as_its_error_not_as_zero_failing_rows(warehouse, alert_inbox, capsys):
    assert main(["sample"]) == 0
    with duckdb.connect(str(warehouse / "prod.duckdb")) as connection:
        connection.execute("alter table raw.events drop column event_type")
    capsys.readouterr()

    assert main(["run"]) == 1

    shown = capsys.readouterr().out
    test = "source_accepted_values_greenery_events_event_type__page_view__add_to_cart__checkout__package_shipped"
    message = _failure_alert(alert_inbox)["message"]
    # Another raw test reads event_type too: it cannot run either.
    line = (f'- step raw_data_gate: test {test} on raw.events: Binder Error: Referenced column "event_type" not found '
            "in FROM clause! (and 1 more failure(s))")
    assert line in message.splitlines()
    assert f"  {line}" in _after_alert_line(shown).splitlines()
    assert "failing row(s)" not in message


def test_a_check_whose_test_describes_its_rows_reads_as_those_descriptions():
    evaluation = dg.AssetCheckEvaluation(
        asset_key=dg.AssetKey(["marts", "fct_funnel_daily"]),
        check_name="fct_funnel_daily_conversion_within_trailing_range",
        passed=False,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"dagster_dbt/failed_row_count": 2, "failing_rows": ["add_to_cart on …", "checkout on …"]},
    )
    assert check_line(evaluation) == (
        "WARN check fct_funnel_daily_conversion_within_trailing_range on marts/fct_funnel_daily: "
        "2 failing row(s), threshold 0: add_to_cart on …; checkout on …"
    )
