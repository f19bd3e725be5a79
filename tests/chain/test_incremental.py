"""Incremental models give exactly what a full refresh gives, on DuckDB."""

import json
import os
import shutil
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import yaml

from greenery_orchestration import wap
from greenery_orchestration.assets.dbt import INCREMENTAL_MODELS
from greenery_orchestration.cli import main
from greenery_orchestration.marts import FUNNEL_MARTS, STAGED
from greenery_orchestration.rawdata.load_csv import replace_raw_tables, typed_select
from greenery_orchestration.rawdata.load_log import load_time
from greenery_orchestration.rawdata.sample import sample_tables
from greenery_orchestration.settings import DBT_PROJECT_DIR
from tests.funnels import reached_steps
from tests.slices import sliced_events, sliced_tables



def _dbt_build(folder: Path, tmp_path: Path, *flags: str) -> None:
    built = subprocess.run(
        [str(Path(sys.executable).with_name("dbt")), "build", "--quiet", "--target-path", str(tmp_path / "target"), *flags],
        cwd=DBT_PROJECT_DIR, capture_output=True, text=True, check=False,
        env={**os.environ, "GREENERY_WAREHOUSE_DIR": str(folder), "DBT_LOG_PATH": str(tmp_path / "logs")},
    )
    assert built.returncode == 0, built.stdout[-3000:]


def _load(folder: Path, tables: dict, events, append: bool) -> None:
    with duckdb.connect(str(folder / "prod.duckdb")) as connection:
        connection.register("delivery", events)
        if append:  # stamped with its load time, as the loaders stamp it
            connection.execute(f"insert into raw.events by name {typed_select('events', 'delivery', load_time())}")
            return
        for table, rows in tables.items():
            connection.register(f"sample_{table}", rows)
        replace_raw_tables(connection, {t: "delivery" if t == "events" else f"sample_{t}" for t in tables})


def _deliver(folder: Path, delivery: dict, first: bool, changed_orders=None) -> None:
    """A delivery of new rows to every raw table, stamped with its load time as the loaders
    stamp them: the first replaces them; `changed_orders` updates orders delivered before, in
    place, as the shop's system does."""
    with duckdb.connect(str(folder / "prod.duckdb")) as connection:
        for table, rows in delivery.items():
            connection.register(f"delivery_{table}", rows)
        if first:
            replace_raw_tables(connection, {table: f"delivery_{table}" for table in delivery})
            return
        loaded_at = load_time()
        for table in delivery:
            connection.execute(f"insert into raw.{table} by name {typed_select(table, f'delivery_{table}', loaded_at)}")
        if changed_orders is not None:
            connection.register("changed_orders", changed_orders)
            connection.execute("delete from raw.orders where order_id in (select order_id from changed_orders)")
            connection.execute(f"insert into raw.orders by name {typed_select('orders', 'changed_orders', loaded_at)}")


def _marts(folder: Path) -> list[str]:
    with duckdb.connect(str(folder / "prod.duckdb"), read_only=True) as connection:
        return sorted(f"marts.{name}" for (name,) in connection.execute(
            "select table_name from information_schema.tables where table_schema = 'marts'").fetchall())


def _rows_with_builds(folder: Path, relation: str) -> pd.DataFrame:
    with duckdb.connect(str(folder / "prod.duckdb"), read_only=True) as connection:
        return connection.execute(f"select * from {relation}").df()


def _rows(folder: Path, relation: str) -> pd.DataFrame:
    """Every row, without the columns that say when it was built."""
    frame = _rows_with_builds(folder, relation)
    frame = frame.drop(columns=[c for c in ("updated_at", "dbt_updated_at") if c in frame.columns])
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


def test_three_incremental_deliveries_equal_one_full_refresh(tmp_path):
    tables = sample_tables(seed=3, days=2, sessions_per_day=300, end=datetime.now(UTC))
    slices = sliced_events(tables["events"])
    deliveries = sliced_tables(tables, slices)
    incremental, full = tmp_path / "incremental", tmp_path / "full"
    incremental.mkdir(), full.mkdir()

    for number, delivery in enumerate(deliveries.rows):
        last = number == len(deliveries.rows) - 1
        _deliver(incremental, delivery, first=number == 0, changed_orders=deliveries.changed_order if last else None)
        # An id named before its row arrives fails the references' tests, and a failed test
        # skips what follows it: they judge the data, here the merges are under test.
        _dbt_build(incremental, tmp_path, "--exclude", "test_name:relationships", "test_name:relationships_in_source")
    _load(full, tables, tables["events"], append=False)
    _dbt_build(full, tmp_path, "--full-refresh")

    # Every incremental model and every mart, the funnel marts among them.
    compared = sorted({*INCREMENTAL_MODELS, *_marts(full)})
    assert {f"marts.{key.path[-1]}" for key in FUNNEL_MARTS.values()} <= set(compared)
    assert _marts(incremental) == _marts(full)
    for relation in compared:
        rows = _rows(incremental, relation)
        assert len(rows), relation
        pd.testing.assert_frame_equal(rows, _rows(full, relation), obj=relation)
    events = _rows(incremental, "marts.fct_events")
    assert slices.late_event_id in set(events.event_id)
    assert len(events) == tables["events"].num_rows
    split = _rows(incremental, "marts.fct_sessions").set_index("session_id").loc[slices.split_session_id]
    assert split.page_views + split.add_to_carts + split.checkouts > 1
    # The order that shipped after its first delivery, the order and the user delivered after
    # the events naming them: as the raw tables hold them in the end.
    orders = _rows(incremental, "marts.fct_orders").set_index("order_id")
    changed = deliveries.changed_order.to_pylist()[0]
    assert orders.loc[changed["order_id"], ["order_status", "tracking_id"]].tolist() == ["shipped", changed["tracking_id"]]
    items = tables["order_items"].to_pandas()
    assert orders.loc[deliveries.late_order_id, "products_ordered"] == (items.order_id == deliveries.late_order_id).sum() > 0
    user_events = tables["events"].to_pandas()
    user_sessions = user_events[(user_events.user_id == deliveries.late_user_id) & (user_events.event_type != "package_shipped")]
    users = _rows(incremental, "marts.dim_users").set_index("user_id")
    assert users.loc[deliveries.late_user_id, "sessions"] == user_sessions.session_id.nunique() > 0


def test_full_refresh_flag_rebuilds_what_incremental_runs_keep(course_run, warehouse):
    """Built rows lost from a mart: no new row names them, so an incremental run leaves them out
    (and the reconciliation with raw stops it: test_contracts.py); `--full-refresh` rebuilds them."""
    prod = warehouse / "prod.duckdb"
    shutil.copy(course_run.warehouse / "prod.duckdb", prod)  # the course data, built and published
    with duckdb.connect(str(prod)) as connection:
        connection.execute("delete from marts.fct_events where created_at < (select min(created_at) + interval 6 hour from marts.fct_events)")
        ((raw_events,),) = connection.execute("select count(*) from raw.events").fetchall()

    def built_events():
        with duckdb.connect(str(prod), read_only=True) as connection:
            return connection.execute("select count(*) from marts.fct_events").fetchall()[0][0]

    assert built_events() < raw_events
    assert main(["run", "--full-refresh", "--allow-stale"]) == 0  # the course data ends in February 2021
    assert built_events() == raw_events


def _dbt_test(folder: Path, tmp_path: Path, select: str, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).with_name("dbt")), "test", "--select", select, "--target-path", str(tmp_path / "target"),
         *flags],
        cwd=DBT_PROJECT_DIR, capture_output=True, text=True, check=False,
        env={**os.environ, "GREENERY_WAREHOUSE_DIR": str(folder), "DBT_LOG_PATH": str(tmp_path / "logs")},
    )


def test_tests_of_incremental_models_read_the_rows_of_the_newest_build(tmp_path):
    tables = sample_tables(seed=5, days=2, sessions_per_day=200, end=datetime.now(UTC))
    slices = sliced_events(tables["events"])
    _load(tmp_path, tables, slices.deliveries[0], append=False)
    _dbt_build(tmp_path, tmp_path)
    _load(tmp_path, tables, slices.deliveries[1], append=True)
    _dbt_build(tmp_path, tmp_path)
    prod = str(tmp_path / "prod.duckdb")
    with duckdb.connect(prod) as connection:
        builds = dict(connection.execute(
            "select dbt_updated_at = (select max(dbt_updated_at) from marts.fct_events), count(*) "
            "from marts.fct_events group by all"
        ).fetchall())
        # The first build's rows, and the second build's (the events loaded since): both are there.
        assert builds[False] > 0 and builds[True] > 0
        connection.execute(
            "insert into marts.fct_events select * from marts.fct_events "
            "where dbt_updated_at < (select max(dbt_updated_at) from marts.fct_events) limit 1"
        )

    # Its row tests; its reconciliation with raw reads every row, so sees any duplicate.
    row_tests = "fct_events,test_name:unique fct_events,test_name:not_null"
    old_duplicate = _dbt_test(tmp_path, tmp_path, row_tests)
    with duckdb.connect(prod) as connection:
        connection.execute(
            "insert into marts.fct_events select * from marts.fct_events "
            "where dbt_updated_at = (select max(dbt_updated_at) from marts.fct_events) limit 1"
        )
    new_duplicate = _dbt_test(tmp_path, tmp_path, row_tests)

    assert old_duplicate.returncode == 0, old_duplicate.stdout[-2000:]  # an earlier build's rows: tested then
    assert new_duplicate.returncode == 1
    assert "unique_fct_events_event_id" in new_duplicate.stdout and "Got 1 result" in new_duplicate.stdout

    # A staged build (write-audit-publish) writes the new rows to fct_events__delta, beside the
    # published table and its duplicates: its tests read that delta, not the staged view over both;
    # the unique test of fct_events, which appends, reads every row with an id the delta holds.
    _load(tmp_path, tables, slices.deliveries[2], append=True)
    staged = ("--vars", "{staged: true}")
    _dbt_build(tmp_path, tmp_path, "--select", "+fct_events", "--exclude", "test_type:data", *staged)
    clean_delta = _dbt_test(tmp_path, tmp_path, row_tests, *staged)
    with duckdb.connect(prod) as connection:
        connection.execute("insert into marts.fct_events__delta select * from marts.fct_events__delta limit 1")
    duplicate_in_delta = _dbt_test(tmp_path, tmp_path, row_tests, *staged)
    with duckdb.connect(prod) as connection:
        connection.execute("create or replace table marts.fct_events__delta as select distinct * from marts.fct_events__delta")
        ((published_id,),) = connection.execute("select min(event_id) from marts.fct_events").fetchall()
        connection.execute("update marts.fct_events__delta set event_id = ? "
                           "where event_id = (select min(event_id) from marts.fct_events__delta)", [published_id])
    repeats_published = _dbt_test(tmp_path, tmp_path, row_tests, *staged)

    assert clean_delta.returncode == 0, clean_delta.stdout[-2000:]
    assert duplicate_in_delta.returncode == 1 and "Got 1 result" in duplicate_in_delta.stdout
    assert repeats_published.returncode == 1, repeats_published.stdout[-2000:]
    assert "unique_fct_events_event_id" in repeats_published.stdout and "Got 1 result" in repeats_published.stdout
    compiled = {path.stem: path.read_text() for path in (tmp_path / "target" / "compiled").rglob("*_fct_events_event_id.sql")}
    assert '"fct_events__delta"' in compiled["not_null_fct_events_event_id"]
    assert "fct_events__staged" not in compiled["not_null_fct_events_event_id"]
    assert '"fct_events__staged"' in compiled["unique_fct_events_event_id"]
    assert '"fct_events__delta"' in compiled["unique_fct_events_event_id"]


def _sessions_per_step(connection) -> list[int]:
    return [n for (n,) in connection.execute("select sessions from marts.fct_funnel order by step_number").fetchall()]


def _sessions_per_event_type(connection) -> list[int]:
    """The funnel's steps counted from the raw events, as the course's are (README)."""
    return [connection.execute("select count(distinct session_id) from raw.events where event_type = ?", [step]).fetchone()[0]
            for step in ("page_view", "add_to_cart", "checkout")]


def test_replaced_raw_data_rebuilds_the_incremental_models_by_itself(course_run, warehouse, capsys):
    """Another data set, loaded or left behind by any tool, must not merge into the last one's sessions."""
    prod = warehouse / "prod.duckdb"
    shutil.copy(course_run.warehouse / "prod.duckdb", prod)  # the course data, built and published
    assert main(["sample", "--days", "1", "--sessions-per-day", "100"]) == 0
    capsys.readouterr()

    assert main(["run"]) == 0

    shown = capsys.readouterr().out
    assert "The raw tables were replaced at" in shown and "rebuilding the incremental models from scratch" in shown
    with duckdb.connect(str(prod), read_only=True) as connection:
        funnel, expected = _sessions_per_step(connection), _sessions_per_event_type(connection)
    assert funnel == expected and expected[0] < 578  # the sample's funnel, nothing of the course's left

    # A tool that deletes raw rows writes no load log: the built events that are gone say it.
    with duckdb.connect(str(prod)) as connection:
        (session,) = connection.execute(
            "select session_id from raw.events order by created_at, event_id limit 1").fetchone()
        (built,) = connection.execute("select count(*) from raw.events").fetchone()
        connection.execute("delete from raw.events where session_id = ?", [session])
        (left,) = connection.execute("select count(*) from raw.events").fetchone()
    assert main(["run"]) == 0

    shown = capsys.readouterr().out
    assert f"raw.events holds {left:,} events, fewer than the {built:,} already built" in shown
    assert "rebuilding the incremental models from scratch" in shown
    with duckdb.connect(str(prod), read_only=True) as connection:
        assert connection.execute("select count(*) from marts.fct_sessions where session_id = ?", [session]).fetchone() == (0,)


def test_raw_tables_from_before_the_load_marker_rebuild_every_order_and_add_the_events_not_built_yet(tmp_path):
    """No load since the upgrade gave raw.orders and raw.events their load marker: nothing says
    which orders changed, so fct_orders rebuilds them all, and an order updated in place is seen;
    fct_events, which appends, adds the events it does not hold, not every event a second time."""
    tables = sample_tables(seed=7, days=1, sessions_per_day=100, end=datetime.now(UTC))
    slices = sliced_events(tables["events"])
    _load(tmp_path, tables, slices.deliveries[0], append=False)
    _dbt_build(tmp_path, tmp_path)
    _load(tmp_path, tables, slices.deliveries[1], append=True)
    with duckdb.connect(str(tmp_path / "prod.duckdb")) as connection:
        connection.execute("alter table raw.orders drop column _loaded_at")
        connection.execute("alter table raw.events drop column _loaded_at")
        connection.execute("update raw.orders set status = 'delivered', delivered_at = created_at + interval 3 day "
                           "where status = 'shipped'")
        (delivered,) = connection.execute("select count(*) from raw.orders where status = 'delivered'").fetchone()
        raw = {event_id for (event_id,) in connection.execute("select event_id from raw.events").fetchall()}

    _dbt_build(tmp_path, tmp_path)

    orders = _rows(tmp_path, "marts.fct_orders")
    assert (orders.order_status == "delivered").sum() == delivered > 0
    assert orders.is_delivered.sum() == delivered
    events = _rows(tmp_path, "marts.fct_events")
    assert len(events) == len(raw) > len(slices.deliveries[0])
    assert set(events.event_id) == raw


def test_the_run_after_a_first_load_rebuilds_only_the_orders_loaded_since(tmp_path):
    """DuckDB has one writer per file: a load stamped before a build began was read by it. The
    next build rebuilds the orders of the loads after it, not every order of a first load made
    minutes (within lookback_hours) before the first build."""
    tables = sample_tables(seed=11, days=2, sessions_per_day=200, end=datetime.now(UTC))
    deliveries = sliced_tables(tables, sliced_events(tables["events"]))
    first, second = deliveries.rows[:2]
    _deliver(tmp_path, first, first=True)
    _dbt_build(tmp_path, tmp_path, "--exclude", "test_name:relationships", "test_name:relationships_in_source")
    _deliver(tmp_path, second, first=False)
    _dbt_build(tmp_path, tmp_path, "--exclude", "test_name:relationships", "test_name:relationships_in_source")

    loaded_since = {*second["orders"]["order_id"].to_pylist(), *second["order_items"]["order_id"].to_pylist()}
    orders = _rows_with_builds(tmp_path, "marts.fct_orders")
    rebuilt = set(orders.order_id[orders.dbt_updated_at == orders.dbt_updated_at.max()])
    assert len(orders) > len(loaded_since) > 0
    assert rebuilt == loaded_since & set(orders.order_id)


def _new_sessions(views: pd.DataFrame, copies: int, at: datetime) -> pd.DataFrame:
    """`copies` new sessions of one page view each per row of `views`, at `at`."""
    sessions = views.loc[views.index.repeat(copies)].reset_index(drop=True)
    sessions["event_id"] = [str(uuid.uuid4()) for _ in range(len(sessions))]
    sessions["session_id"] = [str(uuid.uuid4()) for _ in range(len(sessions))]
    sessions["created_at"] = at
    return sessions


def _flagged(folder: Path) -> set[str]:
    users = _rows(folder, "marts.dim_users")
    return set(users.user_id[users.is_high_volume_user])


def test_a_new_median_turns_the_high_volume_flag_of_a_user_with_nothing_new(tmp_path):
    """dim_users flags a user with more than `high_volume_sessions_over_median` times the median
    user's sessions. The other users' new sessions raise the median: the next build unflags an
    account that got nothing new, as a full refresh would."""
    over_median = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text())["vars"]["high_volume_sessions_over_median"]
    tables = sample_tables(seed=17, days=1, sessions_per_day=100, end=datetime.now(UTC))
    events = tables["events"].to_pandas()
    views = events[events.event_type == "page_view"].drop_duplicates("user_id")
    heavy, others = views.iloc[:1], views.iloc[1:]
    sessions = events.groupby("user_id").session_id.nunique()
    # Just over the threshold: the heavy user's sessions, to more than over_median x the median.
    extra = over_median * int(sessions.median()) + 1 - sessions[heavy.user_id.iloc[0]]
    first = pd.concat([events, _new_sessions(heavy, extra, events.created_at.max())])
    later = _new_sessions(others, 2, events.created_at.max() + timedelta(minutes=5))

    def flagged_by_pandas(delivered: pd.DataFrame) -> set[str]:
        per_user = delivered.groupby("user_id").session_id.nunique()
        return set(per_user[per_user > over_median * per_user.median()].index)

    schema = tables["events"].schema
    _deliver(tmp_path, {**tables, "events": pa.Table.from_pandas(first, schema=schema, preserve_index=False)}, first=True)
    _dbt_build(tmp_path, tmp_path)
    flagged_first = _flagged(tmp_path)
    _deliver(tmp_path, {"events": pa.Table.from_pandas(later, schema=schema, preserve_index=False)}, first=False)
    _dbt_build(tmp_path, tmp_path)

    assert flagged_first == flagged_by_pandas(first) == set(heavy.user_id)
    assert _flagged(tmp_path) == flagged_by_pandas(pd.concat([first, later])) == set()


def test_events_later_than_the_lookback_reach_their_sessions_and_funnel_paths_without_a_full_refresh(tmp_path):
    """A page view and an add to cart delivered a day after they happened, long after
    lookback_hours: the build after their load rebuilds their sessions from all their events,
    and their funnel paths (the add to cart's session now at step 2, its user's 7-day path), as
    counted from all the events; fct_events takes both. The page view is its session's first
    event: the rebuilt session and paths start earlier than the rows they replace, which the
    merges of a staged build and its publish bound by those starts (`merge_since`) must still
    find."""
    tables = sample_tables(seed=13, days=2, sessions_per_day=100, end=datetime.now(UTC))
    events = tables["events"].to_pandas()
    old = events.created_at < events.created_at.max() - timedelta(days=1)
    of_its_type_in_session = events.groupby(["session_id", "event_type"]).event_id.transform("size")
    first_of_session = events.created_at == events.groupby("session_id").created_at.transform("min")
    of_its_product_in_session = events.groupby(["session_id", "product_id"]).event_id.transform("size")
    view = events[old & (events.event_type == "page_view") & (of_its_type_in_session > 1) & first_of_session
                  & (of_its_product_in_session > 1)].iloc[-1]
    cart = events[old & (events.event_type == "add_to_cart") & (of_its_type_in_session == 1)
                  & (events.session_id != view.session_id)].iloc[-1]
    is_late = events.event_id.isin([view.event_id, cart.event_id])
    _deliver(tmp_path, {**tables, "events": pa.Table.from_pandas(events[~is_late], preserve_index=False)}, first=True)
    _dbt_build(tmp_path, tmp_path)
    _deliver(tmp_path, {"events": pa.Table.from_pandas(events[is_late], preserve_index=False)}, first=False)
    _dbt_build(tmp_path, tmp_path, "--vars", "{staged: true}")
    manifest = json.loads((tmp_path / "target" / "manifest.json").read_text())
    relations = [wap.relation(node, node["alias"].removesuffix(STAGED)) for node in manifest["nodes"].values()
                 if node["resource_type"] in ("model", "snapshot", "seed")]
    assert {r.name: r.since for r in relations if r.since} == {
        "int_sessions__aggregated": "session_started_at", "fct_sessions": "session_started_at",
        "int_funnel_steps__reached": "started_at", "int_session_products__aggregated": "first_event_at",
    }
    with duckdb.connect(str(tmp_path / "prod.duckdb")) as connection:
        wap.publish(connection, relations, "late-events", "test", run_started_at=None)

    counted = events[events.event_type != "package_shipped"]
    session_events = counted[counted.session_id == view.session_id]
    sessions = _rows(tmp_path, "marts.fct_sessions")
    assert sessions.session_id.is_unique and _rows(tmp_path, "intermediate.int_sessions__aggregated").session_id.is_unique
    session = sessions.set_index("session_id").loc[view.session_id]
    assert session.page_views == (session_events.event_type == "page_view").sum() > 1
    assert session.session_started_at == session_events.created_at.min() == view.created_at
    assert {view.event_id, cart.event_id} <= set(_rows(tmp_path, "marts.fct_events").event_id)
    products = _rows(tmp_path, "intermediate.int_session_products__aggregated")
    assert not products.duplicated(["session_id", "product_id"]).any()
    (product,) = products[(products.session_id == view.session_id) & (products.product_id == view.product_id)].itertuples()
    product_events = session_events[session_events.product_id == view.product_id]
    assert product.first_event_at == product_events.created_at.min() == view.created_at
    assert product.has_viewed and product.last_event_at == product_events.created_at.max() > view.created_at

    expected = {
        "sessions": reached_steps(counted, "session_id"),
        "users_7_days": reached_steps(counted, "user_id", window=timedelta(days=7)),
    }
    assert 2 in set(expected["sessions"].step_number[expected["sessions"].path_id == cart.session_id])
    built = _rows(tmp_path, "intermediate.int_funnel_steps__reached")
    for funnel, paths in expected.items():
        columns = list(paths.columns)
        actual = built[built.funnel_name == funnel][columns].astype(paths.dtypes.to_dict())
        pd.testing.assert_frame_equal(
            actual.sort_values(columns).reset_index(drop=True), paths.sort_values(columns).reset_index(drop=True),
            obj=funnel,
        )


def test_a_release_that_adds_a_column_to_an_incremental_model_asks_for_a_full_refresh(tmp_path):
    """A warehouse built before `first_event_at` existed: the next build stops at that model and
    says how to go on, naming the new column."""
    tables = sample_tables(seed=5, days=1, sessions_per_day=50, end=datetime.now(UTC))
    _deliver(tmp_path, tables, first=True)
    _dbt_build(tmp_path, tmp_path)
    with duckdb.connect(str(tmp_path / "prod.duckdb")) as connection:
        connection.execute("alter table intermediate.int_session_products__aggregated drop column first_event_at")

    built = subprocess.run(
        [str(Path(sys.executable).with_name("dbt")), "build", "--quiet", "--select", "int_session_products__aggregated",
         "--target-path", str(tmp_path / "target")],
        cwd=DBT_PROJECT_DIR, capture_output=True, text=True, check=False,
        env={**os.environ, "GREENERY_WAREHOUSE_DIR": str(tmp_path), "DBT_LOG_PATH": str(tmp_path / "logs")},
    )

    assert built.returncode == 1
    assert ("Rebuild int_session_products__aggregated with a full refresh (greenery run --full-refresh): "
            "its columns changed (added first_event_at)") in built.stdout
