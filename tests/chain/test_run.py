"""The chain on the real course data, every funnel number checked against pandas over the CSVs."""

import base64
import re

import dagster as dg
import duckdb
import pandas as pd
import pytest

from greenery_orchestration.cli import main
from greenery_orchestration.rawdata.sample import CHECKOUT_RATE_WITH_CART


STEPS = ["page_view", "add_to_cart", "checkout"]


@pytest.fixture(scope="module")
def built_warehouse(course_run):
    return course_run.warehouse / "prod.duckdb"


def _mart(path, sql):
    with duckdb.connect(str(path), read_only=True) as connection:
        return connection.execute(sql).df()


def _expected_funnel(course_data) -> pd.DataFrame:
    events = pd.read_csv(course_data / "events.csv")
    sessions = [events.loc[events.event_type == step, "session_id"].nunique() for step in STEPS]
    expected = pd.DataFrame({"step_number": [1, 2, 3], "funnel_step": STEPS, "sessions": sessions})
    previous = expected["sessions"].shift(1)
    expected["conversion_from_previous"] = expected["sessions"] / previous
    expected["drop_off_from_previous"] = 1 - expected["sessions"] / previous
    expected["conversion_from_start"] = expected["sessions"] / sessions[0]
    return expected


def _expected_product_funnel(course_data) -> pd.DataFrame:
    events = pd.read_csv(course_data / "events.csv")
    items = pd.read_csv(course_data / "order_items.csv")
    products = pd.read_csv(course_data / "products.csv")

    def pairs(frame):
        return set(zip(frame.session_id, frame.product_id))

    viewed = pairs(events[events.event_type == "page_view"])
    added = pairs(events[events.event_type == "add_to_cart"]) & viewed
    checkouts = events.loc[events.event_type == "checkout", ["session_id", "order_id"]]
    purchased = pairs(checkouts.merge(items, on="order_id")) & added
    rows = []
    for product_id, name in zip(products.product_id, products.name):
        counts = [sum(1 for _, p in step if p == product_id) for step in (viewed, added, purchased)]
        rows.append({"product_id": product_id, "product_name": name, "sessions_viewed": counts[0],
                     "sessions_added_to_cart": counts[1], "sessions_purchased": counts[2]})
    expected = pd.DataFrame(rows)
    expected["view_to_cart_rate"] = expected.sessions_added_to_cart / expected.sessions_viewed
    expected["cart_to_purchase_rate"] = expected.sessions_purchased / expected.sessions_added_to_cart
    expected["view_to_purchase_rate"] = expected.sessions_purchased / expected.sessions_viewed
    return expected.sort_values("product_id").reset_index(drop=True)


def test_fct_funnel_matches_counts_from_the_raw_events(built_warehouse, course_data):
    actual = _mart(built_warehouse, "select * exclude (updated_at) from marts.fct_funnel order by step_number")
    expected = _expected_funnel(course_data)

    assert expected.sessions.tolist() == [578, 467, 361]  # the course's published funnel
    pd.testing.assert_frame_equal(actual, expected, check_dtype=False)


def test_fct_product_funnel_matches_counts_from_the_raw_events(built_warehouse, course_data):
    actual = _mart(
        built_warehouse, "select * exclude (updated_at, sessions_abandoned_cart, abandoned_cart_value) from marts.fct_product_funnel "
        "order by product_id"
    )
    expected = _expected_product_funnel(course_data)

    assert len(actual) == 30
    pd.testing.assert_frame_equal(actual, expected, check_dtype=False)


def test_fct_funnel_daily_adds_up_to_the_funnel(built_warehouse):
    daily = _mart(built_warehouse, "select funnel_step, sum(sessions) as sessions from marts.fct_funnel_daily group by 1")
    total = _mart(built_warehouse, "select funnel_step, sessions from marts.fct_funnel")
    assert dict(zip(daily.funnel_step, daily.sessions)) == dict(zip(total.funnel_step, total.sessions))


def test_the_funnel_materializations_carry_the_table_and_a_chart(course_run):
    with course_run.instance() as instance:
        for mart, rows in [("fct_funnel", 3), ("fct_product_funnel", 30)]:
            event = instance.get_latest_materialization_event(dg.AssetKey(["marts", mart]))
            metadata = event.asset_materialization.metadata
            assert len(metadata["funnel"].records) == rows
            chart = re.fullmatch(r"!\[.+\]\(data:image/png;base64,(.+)\)", metadata["funnel_chart"].value)
            assert base64.b64decode(chart.group(1)).startswith(b"\x89PNG")
        steps = instance.get_latest_materialization_event(dg.AssetKey(["marts", "fct_funnel"]))
        records = steps.asset_materialization.metadata["funnel"].records
        assert [r.data["sessions"] for r in records] == [578, 467, 361]
        # Rates as people read them, as in the terminal: 467 / 578 and 361 / 578.
        assert [r.data["conversion_from_start"] for r in records] == ["100.0%", "80.8%", "62.5%"]


def test_every_check_but_freshness_passed_in_the_run(course_run):
    with course_run.instance() as instance:
        (run,) = instance.get_runs(dg.RunsFilter(job_name="greenery_production"), limit=1)
        evaluations = [
            record.event_log_entry.dagster_event.asset_check_evaluation_data
            for record in instance.get_records_for_run(
                run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
            ).records
        ]
    assert len(evaluations) > 50
    failed = {(e.asset_key.to_user_string(), e.check_name, e.severity) for e in evaluations if not e.passed}
    # February 2021 is stale: --allow-stale turned the gate into warnings.
    assert failed == {
        ("raw/events", "source_freshness", dg.AssetCheckSeverity.WARN),
        ("raw/orders", "source_freshness", dg.AssetCheckSeverity.WARN),
    }


SECRETS = {
    "GREENERY_MASKING_SALT": "salt-s3cret-4711",
    "SNOWFLAKE_PASSWORD": "pw-s3cret-4711",
    "DAGSTER_PG_PASSWORD": "pg-s3cret-4711",
}


def test_the_chain_passes_every_check_on_sample_data_loaded_from_csv(warehouse, tmp_path, capsys, monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    assert main(["sample", "--days", "2", "--sessions-per-day", "300", "--csv-dir", str(tmp_path / "csv")]) == 0
    assert main(["load-csv", str(tmp_path / "csv")]) == 0

    assert main(["run"]) == 0

    captured = capsys.readouterr()
    shown = captured.out
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs(limit=2)
        logged = "".join(dg.serialize_value(entry) for run in runs for entry in instance.all_logs(run.run_id))
    assert len(runs) == 2 and len(logged) > 10_000
    for secret in SECRETS.values():
        assert secret not in shown + captured.err
        assert secret not in logged  # no secret in the event log
    assert "run " in shown and "of greenery_production succeeded" in shown
    assert "step build_models finished in" in shown and "25 asset(s) materialized" in shown
    assert "START" not in shown and "\x1b[" not in shown  # dbt's per-node lines only with --verbose
    funnel = _mart(warehouse / "prod.duckdb", "select sessions, conversion_from_previous from marts.fct_funnel order by step_number")
    assert funnel.sessions[0] == 600  # every synthetic session views a product
    assert funnel.sessions[0] > funnel.sessions[1] > funnel.sessions[2] > 0
    # The generator's known rate: a session with a cart checks out with probability 0.77 (4 sd of ~470 carts).
    assert abs(funnel.conversion_from_previous[2] - CHECKOUT_RATE_WITH_CART) < 0.08


def test_bad_raw_data_fails_the_run_and_keeps_the_last_good_marts(warehouse, course_data, capsys, alert_inbox):
    assert main(["load-csv", str(course_data)]) == 0
    assert main(["run", "--allow-stale"]) == 0
    with duckdb.connect(str(warehouse / "prod.duckdb")) as connection:
        # Written as a load writes rows, stamped: the gate reads what was loaded since the last
        # publishing run began (dbt_project/macros/loaded_since_last_run.sql).
        connection.execute("update raw.events set event_type = 'wishlist', _loaded_at = timezone('UTC', now()) "
                           "where event_type = 'checkout'")
    capsys.readouterr()

    assert main(["run", "--allow-stale"]) == 1

    shown = capsys.readouterr().out
    failed = [line for line in shown.splitlines() if line.strip().startswith("ERROR check")]
    assert len(failed) == 1
    assert "source_accepted_values_greenery_events_event_type" in failed[0]
    assert "on raw/events: 361 failing row(s), threshold 0" in failed[0]  # one per checkout in the data
    funnel = _mart(warehouse / "prod.duckdb", "select sessions from marts.fct_funnel order by step_number")
    assert funnel.sessions.tolist() == [578, 467, 361]
    failure = alert_inbox.received[-1]
    assert failure["type"] == "failure"
    assert "greenery_production failed" in failure["title"]
    assert "check source_accepted_values_greenery_events_event_type" in failure["message"]
    assert "on raw/events: 361 failing row(s), threshold 0" in failure["message"]
    assert "/runs/" in failure["message"]
    assert "of greenery_docs_and_clone" not in shown  # the second job never starts

    assert main(["funnel"]) == 0
    with dg.DagsterInstance.get() as instance:
        failed, built = instance.get_runs(dg.RunsFilter(job_name="greenery_production"), limit=2)
    shown = capsys.readouterr().out
    assert f"Built by run {built.run_id[:8]} at " in shown
    assert f"WARNING: the newest run, {failed.run_id[:8]} at " in shown and ", failed and published nothing: these numbers are older." in shown
    assert shown.index("WARNING") < shown.index("| page_view")  # above the table


def _materialized_in_latest_run(job_name: str) -> set[str]:
    with dg.DagsterInstance.get() as instance:
        (run,) = instance.get_runs(dg.RunsFilter(job_name=job_name), limit=1)
        records = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
        return {r.event_log_entry.dagster_event.asset_key.to_user_string() for r in records}


def _published(path) -> dict[str, tuple]:
    """Every relation a build writes and readers see, by name: a view's definition, a table's columns, row count and
    a digest of its rows."""
    with duckdb.connect(str(path), read_only=True) as connection:
        state = {
            f"{schema}.{name}": ("view", sql)
            for schema, name, sql in connection.execute(
                "select schema_name, view_name, sql from duckdb_views() where not internal and not temporary"
            ).fetchall()
        }
        for schema, name in connection.execute("select schema_name, table_name from duckdb_tables()").fetchall():
            columns = connection.execute(
                "select list(column_name order by column_index) from duckdb_columns() "
                "where schema_name = ? and table_name = ?", [schema, name],
            ).fetchone()[0]
            rows = connection.execute(f'select count(*), sum(hash(t)) from "{schema}"."{name}" t').fetchone()
            state[f"{schema}.{name}"] = ("table", columns, *rows)
    return {
        name: value for name, value in state.items()
        if not name.startswith(("raw.", "ops.")) and not name.endswith(("__staged", "__delta"))
    }


def test_a_run_that_fails_its_tests_publishes_nothing(warehouse, course_data, capsys, alert_inbox):
    """An order item of an unknown product fails a test of the build, while an order that shipped
    gives the snapshot a new version: readers see no part of that build, the snapshot included."""
    assert main(["load-csv", str(course_data)]) == 0
    assert main(["run", "--allow-stale"]) == 0
    items = pd.read_csv(course_data / "order_items.csv")
    order = items.order_id.value_counts().index[0]  # an order with several products
    good = items[items.order_id == order]
    orders = pd.read_csv(course_data / "orders.csv")
    shipped = sorted(orders[orders.status == "preparing"].order_id)[0]
    before = _published(warehouse / "prod.duckdb")
    with duckdb.connect(str(warehouse / "prod.duckdb")) as connection:
        connection.execute("insert into raw.order_items (order_id, product_id, quantity) values (?, 'no-such-product', 50)",
                           [order])
        # Stamped, as a load writes it: the snapshot reads the orders loaded since the last
        # publishing run began.
        connection.execute("update raw.orders set status = 'shipped', tracking_id = 'T-1', shipping_service = 'ups', "
                           "_loaded_at = timezone('UTC', now()) where order_id = ?", [shipped])
    capsys.readouterr()

    assert main(["run", "--allow-stale"]) == 1

    assert _published(warehouse / "prod.duckdb") == before  # every row and every definition
    path = warehouse / "prod.duckdb"
    with duckdb.connect(str(path), read_only=True) as connection:
        assert connection.execute("select count(*) from ops.publish_log").fetchone() == (1,)
        published = connection.execute(
            "select products_ordered, units_ordered from marts.fct_orders where order_id = ?", [order]
        ).fetchone()
        # The failed build, kept for inspection: the model whose test failed (dbt built nothing after
        # it), and the snapshot's new version.
        staged = connection.execute(
            "select count(*) from staging.stg_greenery__order_items__staged where product_id = 'no-such-product'"
        ).fetchone()
        versions = [
            connection.execute(f"select count(*) from snapshots.{name} where order_id = ?", [shipped]).fetchone()[0]
            for name in ("orders_snapshot", "orders_snapshot__staged")
        ]
    assert published == (len(good), good.quantity.sum())
    assert staged == (1,)
    assert versions == [1, 2]
    built = _materialized_in_latest_run("greenery_production")
    assert "governance/publish" not in built
    shown = capsys.readouterr().out
    # The one failing row, named by the order item's key (the order and the product).
    (line,) = [line.strip() for line in shown.splitlines()
               if line.strip().startswith("ERROR check relationships_stg_greenery__order_items_product_id")]
    assert line.endswith(f": 1 failing row(s), threshold 0, e.g. order_id {order}, product_id no-such-product")
    assert "of greenery_docs_and_clone" not in shown
    message = alert_inbox.received[-1]["message"]
    assert f"- {line}\n" in message
    assert "Nothing was published: readers still see the last good build." in message
    assert f"<schema>.<name>__staged in {path}" in message
