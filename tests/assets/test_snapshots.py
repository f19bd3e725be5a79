"""The orders snapshot keeps order-status history (SCD type 2), reading the orders loaded since the
last publishing run began."""

import dagster as dg
import duckdb
import pandas as pd

from greenery_orchestration.assets.dbt import FULL_REFRESH_TAG
from greenery_orchestration.cli import main
from greenery_orchestration.rawdata.load_log import load_time, marker_value

SNAPSHOT = dg.AssetKey(["snapshots", "orders_snapshot"])
PUBLISH = dg.AssetKey(["governance", "publish"])
# The columns whose change makes a new version (snapshots/orders_snapshot.sql).
CHECKED = ["status", "tracking_id", "shipping_service", "estimated_delivery_at", "delivered_at"]
ORDERS = 361  # in the course data


def _publishing_run(full_refresh: bool = False):
    from greenery_orchestration.definitions import defs

    result = defs().resolve_job_def("greenery_production").execute_in_process(
        instance=dg.DagsterInstance.get(),
        asset_selection=[SNAPSHOT, PUBLISH],  # readers see it once published; the publish log says when the run began
        tags={FULL_REFRESH_TAG: "true"} if full_refresh else None,
    )
    assert result.success


def _change_orders(warehouse, updates: pd.DataFrame, stamped: bool = True) -> None:
    """Write `updates` (order_id and new values) over raw.orders: as a load does, stamping the rows
    with its time; or, `stamped=False`, edited in place as no load does."""
    stamp = f", _loaded_at = {marker_value(load_time())}" if stamped else ""
    columns = [column for column in updates.columns if column != "order_id"]
    assignments = ", ".join(f"{column} = u.{column}" for column in columns)
    with duckdb.connect(str(warehouse / "prod.duckdb")) as connection:
        connection.register("order_updates", updates)
        changed = connection.execute(
            f"update raw.orders set {assignments}{stamp} from order_updates u where raw.orders.order_id = u.order_id"
        ).fetchone()[0]
    assert changed == len(updates)


def _course_updates(course_data) -> pd.DataFrame:
    updates = pd.read_csv(course_data / "order_updates.csv")
    return updates.assign(estimated_delivery_at=pd.to_datetime(updates.estimated_delivery_at).dt.tz_localize(None))


def _query(warehouse, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(warehouse / "prod.duckdb"), read_only=True) as connection:
        return connection.execute(sql).df()


def _versions(warehouse) -> pd.Series:
    """Versions per order in the published snapshot."""
    return _query(warehouse, "select order_id, count(*) as n from snapshots.orders_snapshot group by order_id"
                  ).set_index("order_id").n


def _current_status(warehouse) -> pd.Series:
    return _query(warehouse, "select order_id, status from snapshots.orders_snapshot where dbt_valid_to is null"
                  ).set_index("order_id").status


def test_order_updates_give_exactly_the_updated_orders_a_second_version(warehouse, course_data):
    assert main(["load-csv", str(course_data)]) == 0
    _publishing_run()
    updates = _course_updates(course_data)
    _change_orders(warehouse, updates)

    _publishing_run()

    with duckdb.connect(str(warehouse / "prod.duckdb"), read_only=True) as connection:
        versions = connection.execute(
            "select order_id, count(*), count(dbt_valid_to), max(case when dbt_valid_to is null then status end) "
            "from snapshots.orders_snapshot group by order_id having count(*) > 1 order by order_id"
        ).fetchall()
        (orders,) = connection.execute("select count(distinct order_id) from snapshots.orders_snapshot").fetchall()[0:1]
    assert sorted(v[0] for v in versions) == sorted(updates.order_id)
    assert all(count == 2 and closed == 1 and current == "shipped" for _, count, closed, current in versions)
    assert orders == (ORDERS,)


def test_a_run_reads_the_orders_loaded_since_the_last_publishing_run_and_a_full_refresh_every_order(
    warehouse, course_data
):
    assert main(["load-csv", str(course_data)]) == 0
    _publishing_run()
    updates = _course_updates(course_data)
    loaded, edited = updates.iloc[:2], updates.iloc[2:]
    _change_orders(warehouse, loaded)
    _change_orders(warehouse, edited, stamped=False)

    _publishing_run()

    # The same change, loaded or edited in place: only the loaded orders are read.
    versions, current = _versions(warehouse), _current_status(warehouse)
    assert versions.sum() == ORDERS + len(loaded)
    assert list(versions[loaded.order_id]) == [2, 2] and list(current[loaded.order_id]) == ["shipped", "shipped"]
    assert list(versions[edited.order_id]) == [1] and list(current[edited.order_id]) == ["preparing"]

    _publishing_run(full_refresh=True)

    versions, current = _versions(warehouse), _current_status(warehouse)
    assert versions.sum() == ORDERS + len(updates)
    assert list(versions[edited.order_id]) == [2] and list(current[edited.order_id]) == ["shipped"]


def test_a_staged_run_writes_only_its_changes_and_readers_see_them_once_published(warehouse, course_data):
    """The snapshot stages its new and closed versions beside the published history (no copy of
    it), and the publish merges them in: the history equals what the changes make of it."""
    assert main(["load-csv", str(course_data)]) == 0
    _publishing_run()
    before = _query(warehouse, "select * from snapshots.orders_snapshot")
    updates = _course_updates(course_data)
    _change_orders(warehouse, updates)
    from greenery_orchestration.definitions import defs

    staged = defs().resolve_job_def("greenery_production").execute_in_process(
        instance=dg.DagsterInstance.get(), asset_selection=[SNAPSHOT]
    )

    assert staged.success
    delta = _query(warehouse, "select order_id, status, dbt_valid_to is null as current from snapshots.orders_snapshot__delta")
    assert len(delta) == 2 * len(updates)  # each changed order: its closed version and its new one
    assert sorted(delta.order_id.unique()) == sorted(updates.order_id)
    assert set(zip(delta.status, delta.current)) == {("preparing", False), ("shipped", True)}
    assert _query(warehouse, "select count(*) as n from snapshots.orders_snapshot__staged").n[0] == ORDERS + len(updates)
    assert _query(warehouse, "select * from snapshots.orders_snapshot").equals(before)  # readers see no change yet

    _publishing_run()

    versions = _versions(warehouse)
    assert versions.sum() == ORDERS + len(updates) and set(versions[updates.order_id]) == {2}


def test_a_new_column_of_the_orders_joins_the_history_and_keeps_every_version(warehouse, course_data):
    """dbt's own materialization adds the column, on a staged copy of the history."""
    assert main(["load-csv", str(course_data)]) == 0
    _publishing_run()
    with duckdb.connect(str(warehouse / "prod.duckdb")) as connection:
        connection.execute("alter table raw.orders add column gift_note varchar")
    updates = _course_updates(course_data).assign(gift_note="for mum")
    _change_orders(warehouse, updates)

    _publishing_run()

    history = _query(warehouse, "select order_id, gift_note, dbt_valid_to is null as current from snapshots.orders_snapshot")
    assert len(history) == ORDERS + len(updates)
    assert sorted(history[history.gift_note == "for mum"].order_id) == sorted(updates.order_id)
    assert history[history.gift_note == "for mum"].current.all()


def test_a_history_from_before_the_load_marker_reads_every_order(warehouse, course_data):
    assert main(["load-csv", str(course_data)]) == 0
    _publishing_run()
    updates = _course_updates(course_data)
    _change_orders(warehouse, updates, stamped=False)
    with duckdb.connect(str(warehouse / "prod.duckdb")) as connection:
        connection.execute("alter table snapshots.orders_snapshot drop column _loaded_at")

    _publishing_run()

    versions = _versions(warehouse)
    assert versions.sum() == ORDERS + len(updates)
    assert list(versions[updates.order_id]) == [2] * len(updates)


def test_a_snapshot_not_built_yet_reads_every_order(warehouse, course_data):
    # The publish log says a run began after every order was loaded, but there is no history to
    # add to: the snapshot starts with every order, not with none.
    assert main(["load-csv", str(course_data)]) == 0
    _publishing_run()
    with duckdb.connect(str(warehouse / "prod.duckdb")) as connection:
        connection.execute("drop table snapshots.orders_snapshot")

    _publishing_run()

    assert _query(warehouse, "select count(*) as n, count(distinct order_id) as orders from snapshots.orders_snapshot"
                  ).iloc[0].tolist() == [ORDERS, ORDERS]


def test_the_history_is_what_a_snapshot_of_every_order_keeps_after_a_sequence_of_loads(warehouse, course_data):
    """Orders shipped, delivered, shipped again with another carrier, put back to preparing,
    reloaded unchanged, loaded new: after each load a run; the snapshot holds, per order, each
    state it was in at a run and differing from the state before, as a snapshot that reads every
    order each run keeps it (computed here from raw.orders as each run saw it)."""
    assert main(["load-csv", str(course_data)]) == 0
    seen = []

    def run():
        _publishing_run()
        seen.append(_query(warehouse, "select * from raw.orders"))

    run()
    orders = seen[0].sort_values("order_id")
    preparing = orders[orders.status == "preparing"].order_id.tolist()
    shipped = orders[orders.status == "shipped"].order_id.tolist()
    assert len(preparing) >= 7 and len(shipped) >= 5
    when = pd.Timestamp("2021-02-20 12:00:00")

    _change_orders(warehouse, pd.DataFrame({
        "order_id": preparing[:6], "status": "shipped", "tracking_id": [f"T-{i}" for i in range(6)],
        "shipping_service": "ups", "estimated_delivery_at": when,
    }))
    run()
    _change_orders(warehouse, pd.DataFrame({
        "order_id": preparing[:3] + shipped[:2], "status": "delivered", "delivered_at": when,
    }))
    _change_orders(warehouse, pd.DataFrame({"order_id": preparing[3:5], "shipping_service": "fedex"}))
    _change_orders(warehouse, pd.DataFrame({  # back to how it was loaded: a third version, the first's values
        "order_id": preparing[5:6], "status": "preparing", "tracking_id": [None], "shipping_service": [None],
        "estimated_delivery_at": [pd.NaT],
    }).astype({"tracking_id": "string", "shipping_service": "string", "estimated_delivery_at": "datetime64[us]"}))
    _change_orders(warehouse, orders[orders.order_id.isin(shipped[2:4])][["order_id", *CHECKED]])  # unchanged
    with duckdb.connect(str(warehouse / "prod.duckdb")) as connection:  # new orders, as an append loads them
        connection.execute(
            f"insert into raw.orders select * replace (order_id || '-new' as order_id, "
            f"{marker_value(load_time())} as _loaded_at) from raw.orders where order_id in ('{shipped[4]}', '{preparing[6]}')"
        )
    run()
    _change_orders(warehouse, pd.DataFrame({"order_id": [preparing[6] + "-new"], "status": "shipped"}))
    run()

    states = pd.concat([frame.assign(run=i) for i, frame in enumerate(seen)], ignore_index=True)
    states = states.sort_values(["order_id", "run"], ignore_index=True)
    values, before = states[CHECKED], states.groupby("order_id")[CHECKED].shift()
    differs = (values != before) & ~(values.isna() & before.isna())  # a missing value equals a missing value
    new_state = (states.order_id != states.order_id.shift()) | differs.any(axis=1)
    expected = states[new_state].drop(columns="run").reset_index(drop=True)
    history = _query(warehouse, "select * from snapshots.orders_snapshot order by order_id, dbt_valid_from")

    pd.testing.assert_frame_equal(history[list(expected.columns)], expected, check_exact=True)
    current = history.groupby("order_id").cumcount(ascending=False) == 0
    assert (history.dbt_valid_to.isna() == current).all()
    # What the loads changed, counted by hand: 6 + 5 + 2 + 1 new versions, 2 new orders, 1 of them changed.
    assert len(history) == ORDERS + 6 + 5 + 2 + 1 + 2 + 1
