"""Data contracts: breakage that used to pass now stops the production run, with a named check.

Each chain test damages a copy of the course data (never ../shared), loads it with
`greenery load-csv` and runs `greenery run --allow-stale`; every expected count, and the keys of
the rows a check may name as its example, is computed here, with pandas, from the damaged copy.
The volume and reconciliation tests are also checked with dbt alone on a copy of the course
warehouse, which is cheaper than a chain run per case.
"""

import json
import os
import shutil
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd

from greenery_orchestration.cli import main
from greenery_orchestration.rawdata.load_log import load_time, record_load
from greenery_orchestration.settings import DBT_PROJECT_DIR
from greenery_orchestration.wap import create_publish_log

TABLES = ["addresses", "events", "order_items", "orders", "products", "promos", "users"]
CARRIERS = {"ups", "fedex", "usps", "dhl", ""}
FUTURE_TOLERANCE = timedelta(hours=1)  # the dbt var future_tolerance_hours
CSV_TIME = "%Y-%m-%dT%H:%M:%SZ"

# Every check this contract adds, by the asset it is on: each must pass on the course data.
NEW_CHECKS = {
    "raw/events": [
        "source_not_null_greenery_events_order_id__checkout_and_package_shipped",
        "source_relationships_greenery_events_order_id__greenery_orders",
        "source_not_in_future_greenery_events_created_at",
        "source_not_empty_nor_shrunk_greenery_events",
    ],
    "raw/orders": [
        "source_not_in_future_greenery_orders_created_at",
        "source_not_null_greenery_orders_created_at",
        "source_not_null_greenery_orders_status",
        "source_accepted_values_greenery_orders_shipping_service",
        "source_greenery_orders_shipped_have_tracking_id_and_shipping_service",
        "source_greenery_orders_delivered_have_delivered_at",
        "source_not_empty_nor_shrunk_greenery_orders",
    ],
    **{f"raw/{t}": [f"source_not_empty_nor_shrunk_greenery_{t}"]
       for t in ["addresses", "order_items", "products", "promos", "users"]},
    "marts/fct_events": ["fct_events_reconciles_with_raw_events"],
    "marts/fct_funnel": ["fct_funnel_page_view_sessions_reconcile_with_raw_events"],
    "marts/fct_orders": ["fct_orders_reconciles_with_raw_orders__count", "fct_orders_reconciles_with_raw_orders__revenue"],
}


def _utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _read(folder: Path, table: str) -> pd.DataFrame:
    """A course CSV exactly as written: every field text, empty fields empty."""
    return pd.read_csv(folder / f"{table}.csv", dtype=str, keep_default_na=False)


def _write(folder: Path, table: str, frame: pd.DataFrame) -> None:
    frame.to_csv(folder / f"{table}.csv", index=False)


def _copy(course_data: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "csv"
    folder.mkdir()
    for table in TABLES:
        shutil.copy(course_data / f"{table}.csv", folder / f"{table}.csv")
    return folder


def write_publish_log(
    database: Path, published_at: datetime, row_counts: dict[str, int], run_id: str = "run-1",
    run_started_at: datetime | None = None,
) -> None:
    """A row of ops.publish_log as the publish step writes it (one row per successful publish)."""
    with duckdb.connect(str(database)) as connection:
        create_publish_log(connection)
        connection.execute(
            "insert into ops.publish_log (run_id, published_at, code_version, row_counts, run_started_at) "
            "values (?, ?, 'test', ?, ?)",
            [run_id, published_at, json.dumps(row_counts), run_started_at],
        )


def _check_line(name: str, asset: str, count: int) -> str:
    return f"ERROR check {name} on {asset}: {count} failing row(s), threshold 0"


def _error_lines(shown: str) -> set[str]:
    return {line.strip() for line in shown.splitlines() if line.strip().startswith("ERROR check")}


def _examples(lines: set[str]) -> dict[str, str | None]:
    """{check line without its example: the example key it names, or None}."""
    return {head: example or None for head, _, example in (line.partition(", e.g. ") for line in lines)}


def _alert_lines(message: str) -> set[str]:
    return {line.removeprefix("- ") for line in message.splitlines() if line.startswith("- ERROR check")}


def _latest_run_evaluations(instance: dg.DagsterInstance) -> tuple[dg.DagsterRun, list]:
    (run,) = instance.get_runs(dg.RunsFilter(job_name="greenery_production"), limit=1)
    records = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    return run, [r.event_log_entry.dagster_event.asset_check_evaluation_data for r in records]


# --- a clean copy passes ------------------------------------------------------------------------


def test_every_contract_check_passes_on_the_course_data(course_run):
    with course_run.instance() as instance:
        _, evaluations = _latest_run_evaluations(instance)
    outcome = {(e.asset_key.to_user_string(), e.check_name): e.passed for e in evaluations}
    expected = {(asset, name) for asset, names in NEW_CHECKS.items() for name in names}
    assert {key: outcome.get(key) for key in expected} == dict.fromkeys(expected, True)
    # Said once, on the source: the staging model no longer repeats these.
    assert not [name for _, name in outcome if "stg_greenery__orders_shipping_service" in name]
    assert not [name for _, name in outcome if name.startswith("relationships_stg_greenery__events_order_id")]


# --- bullets 1, 2, 3 and 5: raw data that must not reach the snapshot or the marts -----------------


def test_broken_raw_data_stops_the_run_with_one_named_check_per_breakage(
    warehouse, course_data, tmp_path, capsys, alert_inbox
):
    """Independent breakages in one damaged copy: the raw tests all run in one step, so each
    reports on its own."""
    baseline = {f"raw.{t}": len(_read(course_data, t)) for t in TABLES}
    folder = _copy(course_data, tmp_path)
    now = _utc_now()
    future = (now + timedelta(days=2)).strftime(CSV_TIME)

    events = _read(folder, "events")
    checkouts = events.index[events.event_type == "checkout"]
    events.loc[checkouts[:3], "order_id"] = ""  # checkouts without an order
    events.loc[checkouts[3:5], "order_id"] = [str(uuid.uuid4()) for _ in range(2)]  # of an order that does not exist
    page_views = events.index[events.event_type == "page_view"]
    events.loc[page_views[:4], "created_at"] = future  # a clock two days ahead
    _write(folder, "events", events)

    orders = _read(folder, "orders")
    orders.loc[orders.index[0], "created_at"] = (now + timedelta(days=5)).strftime(CSV_TIME)
    shipped = orders.index[orders.status == "shipped"]
    orders.loc[shipped[:2], "shipping_service"] = "royal-mail"
    _write(folder, "orders", orders)

    users = _read(folder, "users")
    kept = users.iloc[: int(len(users) * 0.8)]  # a fifth of the users gone
    _write(folder, "users", pd.concat([kept, kept.iloc[[3]]]))  # and one loaded twice
    _write(folder, "promos", _read(folder, "promos").iloc[:0])  # an empty table
    addresses = _read(folder, "addresses")
    addresses.loc[addresses.index[2], "address_id"] = ""  # a row only its PII tells apart
    _write(folder, "addresses", addresses)

    started = _utc_now()
    assert main(["load-csv", str(folder)]) == 0
    # The last successful publish saw the whole course data; no replace was logged since. Its run
    # began before this load: its gate did not read the damaged rows, this run's does.
    write_publish_log(warehouse / "prod.duckdb", _utc_now(), {**baseline, "marts.fct_funnel": 3}, run_started_at=started)
    capsys.readouterr()

    assert main(["run", "--allow-stale"]) == 1

    # What each check must count, and the keys of its failing rows, from the damaged CSVs.
    events, orders = _read(folder, "events"), _read(folder, "orders")
    users, promos, addresses = _read(folder, "users"), _read(folder, "promos"), _read(folder, "addresses")
    limit = _utc_now() + FUTURE_TOLERANCE
    with_order = events[events.event_type.isin(["checkout", "package_shipped"])]
    no_order = with_order[with_order.order_id == ""]
    ordered = events[events.order_id != ""]
    future_events = events[pd.to_datetime(events.created_at).dt.tz_localize(None) > limit]
    future_orders = orders[pd.to_datetime(orders.created_at).dt.tz_localize(None) > limit]
    unknown_order = ordered[~ordered.order_id.isin(set(orders.order_id))]
    bad_carrier = orders[~orders.shipping_service.isin(CARRIERS)]
    twice = users.user_id[users.user_id.duplicated()]
    of_no_user = orders[~orders.user_id.isin(set(users.user_id))]  # the orders of the users gone

    def keys(column: str, values: pd.Series) -> set[str]:
        return {f"{column} {value}" for value in values}

    expected = {  # check line: the example keys it may name (None: it names none)
        _check_line("source_not_null_greenery_events_order_id__checkout_and_package_shipped", "raw/events",
                    len(no_order)): keys("event_id", no_order.event_id),
        _check_line("source_relationships_greenery_events_order_id__greenery_orders", "raw/events",
                    len(unknown_order)): keys("event_id", unknown_order.event_id),
        _check_line("source_not_in_future_greenery_events_created_at", "raw/events",
                    len(future_events)): keys("event_id", future_events.event_id),
        _check_line("source_not_in_future_greenery_orders_created_at", "raw/orders",
                    len(future_orders)): keys("order_id", future_orders.order_id),
        _check_line("source_accepted_values_greenery_orders_shipping_service", "raw/orders",
                    len(bad_carrier)): keys("order_id", bad_carrier.order_id),
        _check_line("source_unique_greenery_users_user_id", "raw/users", int(twice.nunique())): keys("user_id", twice),
        _check_line("source_relationships_greenery_orders_user_id__greenery_users", "raw/orders",
                    len(of_no_user)): keys("order_id", of_no_user.order_id),
        # The address without an id has no key to name: nothing else of it is shown.
        _check_line("source_not_null_greenery_addresses_address_id", "raw/addresses",
                    int((addresses.address_id == "").sum())): None,
        # Rows missing against the last publish: 25 of 130 users (more than 10%), all 6 promos; a
        # count, with no row to name.
        _check_line("source_not_empty_nor_shrunk_greenery_users", "raw/users",
                    baseline["raw.users"] - len(users)): None,
        _check_line("source_not_empty_nor_shrunk_greenery_promos", "raw/promos",
                    baseline["raw.promos"] - len(promos)): None,
    }
    shown = capsys.readouterr().out
    examples = _examples(_error_lines(shown))
    assert set(examples) == set(expected)
    for line, allowed in expected.items():
        assert examples[line] in allowed if allowed else examples[line] is None, (line, examples[line])
    failure = alert_inbox.received[-1]
    assert failure["type"] == "failure" and "greenery_production failed" in failure["title"]
    assert _examples(_alert_lines(failure["message"])) == examples
    # No declared PII value is shown, the address whose row failed included.
    everyone, every_address = _read(course_data, "users"), _read(course_data, "addresses")
    for value in [*everyone.email, *everyone.phone_number, *every_address.address]:
        assert value not in shown and value not in failure["message"]

    with dg.DagsterInstance.get() as instance:
        run, evaluations = _latest_run_evaluations(instance)
        built = {
            r.event_log_entry.dagster_event.asset_key.to_user_string()
            for r in instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
        }
    # The snapshot records nothing that failed the tests on what it reads, and no model is built.
    assert built == set()
    # Freshness is not steered by the rows two days ahead: the newest row it sees is the
    # newest one within the tolerance, so the course data is still (allowed) stale.
    freshness = {e.asset_key.to_user_string(): e for e in evaluations if e.check_name == "source_freshness"}
    newest = pd.to_datetime(events.created_at).dt.tz_localize(None)
    newest = newest[newest <= limit].max()
    assert freshness["raw/events"].severity == dg.AssetCheckSeverity.WARN
    assert freshness["raw/events"].metadata["max_loaded_at"].value.startswith(newest.strftime("%Y-%m-%dT%H:%M:%S"))
    assert freshness["raw/orders"].severity == dg.AssetCheckSeverity.WARN


# --- bullet 4: the marts reconcile with raw --------------------------------------------------------


def test_marts_that_lost_raw_rows_stop_the_run(course_run, course_data, warehouse, capsys, alert_inbox):
    """Events written into raw by hand, without the load marker the loaders stamp: the incremental
    models take the rows loaded since their newest build, so these miss fct_events and the funnel
    paths, and the reconciliations with raw stop the run before publish."""
    shutil.copy(course_run.warehouse / "prod.duckdb", warehouse / "prod.duckdb")
    events = _read(course_data, "events")
    products = _read(course_data, "products").product_id.tolist()
    user = _read(course_data, "users").user_id.iloc[0]
    backfilled = pd.to_datetime(events.created_at).dt.tz_localize(None).min() + timedelta(hours=1)
    sessions = [str(uuid.uuid4()), str(uuid.uuid4())]
    rows = [(str(uuid.uuid4()), session, user, f"https://greenary.com/product/{product}", backfilled, "page_view", None, product)
            for session, product in [(sessions[0], products[0]), (sessions[0], products[1]), (sessions[1], products[2])]]
    with duckdb.connect(str(warehouse / "prod.duckdb")) as connection:
        connection.executemany(
            "insert into raw.events (event_id, session_id, user_id, page_url, created_at, event_type, order_id, product_id) "
            "values (?, ?, ?, ?, ?, ?, ?, ?)", rows,
        )
    capsys.readouterr()

    assert main(["run", "--allow-stale"]) == 1

    expected = {  # whole lines: a reconciliation counts, it has no failing row to name
        _check_line("fct_events_reconciles_with_raw_events", "marts/fct_events", len(rows)),
        # The two sessions' page views are missing from the funnel paths.
        _check_line("fct_funnel_page_view_sessions_reconcile_with_raw_events", "marts/fct_funnel", len(sessions)),
    }
    shown = capsys.readouterr().out
    assert _error_lines(shown) == expected
    assert "rebuilding the incremental models from scratch" not in shown  # an append: incremental
    for line in expected:
        assert f"- {line}" in alert_inbox.received[-1]["message"]
    with duckdb.connect(str(warehouse / "prod.duckdb"), read_only=True) as connection:
        assert connection.execute("select count(*) from marts.fct_events").fetchone() == (len(events),)


# --- the volume and reconciliation tests with dbt alone ---------------------------------------------


def _dbt_test(folder: Path, tmp_path: Path, select: str) -> dict[str, tuple[str, int]]:
    """{test name: (status, failures)} of `dbt test --select select` on folder/prod.duckdb."""
    target = tmp_path / "target"
    tested = subprocess.run(
        [str(Path(sys.executable).with_name("dbt")), "test", "--select", select, "--target-path", str(target)],
        cwd=DBT_PROJECT_DIR, capture_output=True, text=True, check=False,
        env={**os.environ, "GREENERY_WAREHOUSE_DIR": str(folder), "DBT_LOG_PATH": str(tmp_path / "logs")},
    )
    assert tested.returncode in (0, 1), tested.stdout[-3000:]
    results = json.loads((target / "run_results.json").read_text())["results"]
    return {r["unique_id"].split(".")[2]: (r["status"], r["failures"]) for r in results}


def test_the_volume_check_compares_with_the_last_publish_unless_a_replace_was_logged(course_run, course_data, tmp_path):
    folder = tmp_path / "warehouse"
    folder.mkdir()
    database = folder / "prod.duckdb"
    shutil.copy(course_run.warehouse / "prod.duckdb", database)
    rows = {f"raw.{t}": len(_read(course_data, t)) for t in TABLES}
    select = "test_name:not_empty_nor_shrunk"

    def failed(results):
        return {name: failures for name, (status, failures) in results.items() if status != "pass"}

    # No publish log yet (a first run): only emptiness counts.
    with duckdb.connect(str(database)) as connection:
        connection.execute("drop table ops.publish_log")  # the course run's
    assert failed(_dbt_test(folder, tmp_path, select)) == {}

    # The newest publish counts, not an older one: users 130 now against 200 (35% fewer, over
    # 10%), events 3,553 against 5% more (within 10%), the older publish's 100,000 users ignored.
    write_publish_log(database, _utc_now() - timedelta(days=1), {"raw.users": 100_000}, run_id="older")
    write_publish_log(database, _utc_now(), {
        **rows, "raw.users": 200, "raw.events": int(rows["raw.events"] * 1.05), "marts.fct_funnel": 3,
    })
    assert failed(_dbt_test(folder, tmp_path, select)) == {
        "source_not_empty_nor_shrunk_greenery_users": 200 - rows["raw.users"],
    }

    # A replace logged after that publish was meant: the baseline starts again, but an empty
    # table still fails.
    with duckdb.connect(str(database)) as connection:
        connection.execute("delete from raw.promos")
        record_load(connection, "replace", "test: a deliberate replace", {}, loaded_at=load_time())
    assert failed(_dbt_test(folder, tmp_path, select)) == {"source_not_empty_nor_shrunk_greenery_promos": 1}


def test_fct_orders_reconciles_count_and_revenue_with_raw_orders(course_run, course_data, tmp_path):
    folder = tmp_path / "warehouse"
    folder.mkdir()
    shutil.copy(course_run.warehouse / "prod.duckdb", folder / "prod.duckdb")
    orders = _read(course_data, "orders")
    gone = sorted(orders.order_id)[:2]
    with duckdb.connect(str(folder / "prod.duckdb")) as connection:
        connection.execute("delete from marts.fct_orders where order_id in (?, ?)", gone)
        connection.execute("update marts.fct_orders set order_total = order_total + 0.5 "
                           "where order_id = (select max(order_id) from marts.fct_orders)")

    results = _dbt_test(folder, tmp_path, "fct_orders,test_name:reconciles_with")

    assert results == {
        "fct_orders_reconciles_with_raw_orders__count": ("fail", len(gone)),  # orders missing
        "fct_orders_reconciles_with_raw_orders__revenue": ("fail", 1),  # one sum off by more than a cent
    }
