"""The orders snapshot keeps order-status history (SCD type 2)."""

import dagster as dg
import duckdb
import pandas as pd

from greenery_orchestration.cli import main

SNAPSHOT = dg.AssetKey(["snapshots", "orders_snapshot"])
PUBLISH = dg.AssetKey(["governance", "publish"])


def _snapshot_once():
    from greenery_orchestration.definitions import defs

    result = defs().resolve_job_def("greenery_production").execute_in_process(
        instance=dg.DagsterInstance.get(), asset_selection=[SNAPSHOT, PUBLISH]  # readers see it once published
    )
    assert result.success


def test_order_updates_give_exactly_the_updated_orders_a_second_version(warehouse, course_data):
    assert main(["load-csv", str(course_data)]) == 0
    _snapshot_once()
    updates = pd.read_csv(course_data / "order_updates.csv")
    with duckdb.connect(str(warehouse / "prod.duckdb")) as connection:
        connection.register("order_updates", updates)
        connection.execute(
            "update raw.orders set tracking_id = u.tracking_id, shipping_service = u.shipping_service, "
            "estimated_delivery_at = cast(u.estimated_delivery_at as timestamptz), status = u.status "
            "from order_updates u where raw.orders.order_id = u.order_id"
        )

    _snapshot_once()

    with duckdb.connect(str(warehouse / "prod.duckdb"), read_only=True) as connection:
        versions = connection.execute(
            "select order_id, count(*), count(dbt_valid_to), max(case when dbt_valid_to is null then status end) "
            "from snapshots.orders_snapshot group by order_id having count(*) > 1 order by order_id"
        ).fetchall()
        (orders,) = connection.execute("select count(distinct order_id) from snapshots.orders_snapshot").fetchall()[0:1]
    assert sorted(v[0] for v in versions) == sorted(updates.order_id)
    assert all(count == 2 and closed == 1 and current == "shipped" for _, count, closed, current in versions)
    assert orders == (361,)
