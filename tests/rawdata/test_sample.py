"""The synthetic Greenery data set: shaped like the real shop, consistent, and deterministic."""

from datetime import datetime, timedelta, timezone

import duckdb
import pytest

from greenery_orchestration.rawdata.load_csv import replace_raw_tables
from greenery_orchestration.rawdata.sample import sample_tables
from greenery_orchestration.rawdata.schema import raw_columns

END = datetime(2024, 3, 15, 18, 30, 45, 500_000, tzinfo=timezone.utc)
DAYS = 5
SESSIONS_PER_DAY = 800
# The window in DuckDB's terms: naive UTC.
WINDOW_END = END.replace(tzinfo=None)
WINDOW_START = WINDOW_END - timedelta(days=DAYS)
UUID_PATTERN = "^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"


@pytest.fixture(scope="module")
def tables():
    return sample_tables(seed=42, days=DAYS, sessions_per_day=SESSIONS_PER_DAY, end=END)


@pytest.fixture(scope="module")
def con(tables):
    """The sample loaded the way the pipeline loads it: through replace_raw_tables."""
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    for table, arrow_table in tables.items():
        con.register(f"sample_{table}", arrow_table)
    replace_raw_tables(con, {table: f"sample_{table}" for table in tables})
    yield con
    con.close()


def rows(con, sql, params=None):
    return con.execute(sql, params or []).fetchall()


def value(con, sql, params=None):
    (row,) = rows(con, sql, params)
    return row[0] if len(row) == 1 else row


def test_the_seven_tables_have_the_declared_columns_in_order(tables):
    assert list(tables) == list(raw_columns())
    for table, columns in raw_columns().items():
        assert tables[table].column_names == list(columns), table


def test_tables_load_into_duckdb_with_every_row(con, tables):
    for table, columns in raw_columns().items():
        assert value(con, f"select count(*) from raw.{table}") == tables[table].num_rows
        # Nothing was lost in the casts: every column keeps its non-null values.
        counts = value(con, f"select {', '.join(f'count({name})' for name in columns)} from raw.{table}")
        counts = counts if isinstance(counts, tuple) else (counts,)
        expected = tuple(len(tables[table]) - tables[table][name].null_count for name in columns)
        assert counts == expected, table


def test_sizes_look_like_the_shop(con):
    sessions = value(con, "select count(distinct session_id) from raw.events")
    assert 0.95 * DAYS * SESSIONS_PER_DAY <= sessions <= DAYS * SESSIONS_PER_DAY
    assert value(con, "select count(*) from raw.products") == 30
    assert value(con, "select count(*) from raw.promos") == 6
    users = value(con, "select count(*) from raw.users")
    assert users >= 40
    # Users come back: far fewer users than sessions, most of them with several sessions.
    assert users < sessions / 2
    returning = value(
        con,
        "select count(*) from (select user_id from raw.events group by 1 "
        "having count(distinct session_id) > 1)",
    )
    assert returning > users / 2


def test_keys_are_unique(con):
    for table, key in [
        ("addresses", "address_id"),
        ("users", "user_id"),
        ("products", "product_id"),
        ("promos", "promo_id"),
        ("orders", "order_id"),
        ("events", "event_id"),
        ("order_items", "order_id, product_id"),
    ]:
        total, distinct = value(con, f"select count(*), count(distinct ({key})) from raw.{table}")
        assert total == distinct, table
    assert value(con, "select count(distinct address_id) = count(*) from raw.users")  # one address each
    assert value(con, "select count(distinct tracking_id) = count(tracking_id) from raw.orders")


def test_ids_are_uuids(con):
    for table, column in [
        ("addresses", "address_id"),
        ("users", "user_id"),
        ("users", "address_id"),
        ("products", "product_id"),
        ("orders", "order_id"),
        ("orders", "tracking_id"),
        ("events", "event_id"),
        ("events", "session_id"),
        ("events", "user_id"),
        ("events", "order_id"),
        ("events", "product_id"),
    ]:
        bad = value(
            con,
            f"select count(*) from raw.{table} where {column} is not null "
            f"and not regexp_full_match({column}, '{UUID_PATTERN}')",
        )
        assert bad == 0, f"{table}.{column}"
    assert value(con, "select count(*) from raw.orders where tracking_id is not null") > 0


def test_references_resolve(con):
    orphans = {
        "event user": "select user_id from raw.events except select user_id from raw.users",
        "event product": "select product_id from raw.events where product_id is not null "
        "except select product_id from raw.products",
        "event order": "select order_id from raw.events where order_id is not null "
        "except select order_id from raw.orders",
        "item order": "select order_id from raw.order_items except select order_id from raw.orders",
        "item product": "select product_id from raw.order_items except select product_id from raw.products",
        "order user": "select user_id from raw.orders except select user_id from raw.users",
        "order promo": "select promo_id from raw.orders where promo_id is not null "
        "except select promo_id from raw.promos",
        "user address": "select address_id from raw.users except select address_id from raw.addresses",
        "order without items": "select order_id from raw.orders except select order_id from raw.order_items",
        "order without checkout": "select order_id from raw.orders "
        "except select order_id from raw.events where event_type = 'checkout'",
    }
    for name, sql in orphans.items():
        assert rows(con, sql) == [], name
    # Orders ship to their user's address.
    assert value(
        con,
        "select count(*) from raw.orders o join raw.users u using (user_id) "
        "where o.address_id != u.address_id",
    ) == 0


def test_page_urls_and_ids_match_the_event_type(con):
    by_type = dict(
        (event_type, (total, right))
        for event_type, total, right in rows(
            con,
            """
            select event_type, count(*), count(*) filter (where case
                when event_type in ('page_view', 'add_to_cart') then
                    page_url = 'https://greenary.com/product/' || product_id and order_id is null
                when event_type = 'checkout' then
                    page_url = 'https://greenary.com/checkout/' || order_id and product_id is null
                when event_type = 'package_shipped' then
                    page_url = 'https://greenary.com/shipping/' || order_id and product_id is null
            end)
            from raw.events group by 1
            """,
        )
    )
    assert set(by_type) == {"page_view", "add_to_cart", "checkout", "package_shipped"}
    for event_type, (total, right) in by_type.items():
        assert total == right, event_type


def test_sessions_belong_to_one_user_and_read_in_time_order(con):
    assert value(
        con,
        "select count(*) from (select session_id from raw.events group by 1 "
        "having count(distinct user_id) > 1)",
    ) == 0
    # Browsing and checkout happen within minutes; the checkout comes last.
    longest, late_browsing = value(
        con,
        """
        select max(last_browse - first_event), count(*) filter (where checkout_at <= last_browse)
        from (
            select session_id,
                min(created_at) as first_event,
                max(created_at) filter (where event_type in ('page_view', 'add_to_cart')) as last_browse,
                max(created_at) filter (where event_type = 'checkout') as checkout_at
            from raw.events group by 1
        )
        """,
    )
    assert timedelta(minutes=1) < longest < timedelta(hours=1)
    assert late_browsing == 0
    fewest, most = value(
        con,
        """
        select min(n), max(n) from (
            select count(*) as n from raw.events where event_type = 'page_view' group by session_id
        )
        """,
    )
    assert fewest == 1 and 7 <= most <= 10


def test_every_add_to_cart_follows_a_page_view_of_that_product(con):
    assert value(
        con,
        """
        select count(*) from raw.events a
        where a.event_type = 'add_to_cart' and not exists (
            select 1 from raw.events v
            where v.event_type = 'page_view' and v.session_id = a.session_id
              and v.product_id = a.product_id and v.created_at < a.created_at
        )
        """,
    ) == 0


def test_each_checkout_orders_exactly_what_its_session_put_in_the_cart(con):
    assert value(
        con,
        """
        select count(*) from (
            select session_id from raw.events where event_type = 'checkout'
            group by 1 having count(*) > 1
        )
        """,
    ) == 0
    mismatches = rows(
        con,
        """
        with cart as (
            select c.order_id, a.product_id
            from raw.events c join raw.events a using (session_id)
            where c.event_type = 'checkout' and a.event_type = 'add_to_cart'
        )
        (select order_id, product_id from cart except select order_id, product_id from raw.order_items)
        union all
        (select order_id, product_id from raw.order_items except select order_id, product_id from cart)
        """,
    )
    assert mismatches == []
    # The order is the checkout: same user, same moment.
    assert value(
        con,
        """
        select count(*) from raw.orders o join raw.events c
            on c.order_id = o.order_id and c.event_type = 'checkout'
        where c.user_id != o.user_id or c.created_at != o.created_at
        """,
    ) == 0
    low, high = value(con, "select min(quantity), max(quantity) from raw.order_items")
    assert (low, high) == (1, 3)


def test_order_amounts_add_up_with_promo_discounts(con):
    bad_cost, bad_total, promo_orders, orders, low_shipping, high_shipping = value(
        con,
        """
        select
            count(*) filter (where abs(o.order_cost - i.cost) > 0.005),
            count(*) filter (where abs(o.order_total
                - (o.order_cost + o.shipping_cost - coalesce(p.discount, 0))) > 0.005),
            count(o.promo_id),
            count(*),
            min(o.shipping_cost),
            max(o.shipping_cost)
        from raw.orders o
        join (
            select order_id, round(sum(price * quantity), 2) as cost
            from raw.order_items join raw.products using (product_id) group by 1
        ) i using (order_id)
        left join raw.promos p using (promo_id)
        """,
    )
    assert bad_cost == 0
    assert bad_total == 0
    assert 0.06 < promo_orders / orders < 0.17  # about one in nine
    assert 1 <= low_shipping and high_shipping < 10
    # Amounts are in cents, and a discount never makes a total negative.
    assert value(
        con,
        "select count(*) from raw.orders where order_total <= 0 "
        "or round(order_cost, 2) != order_cost or round(order_total, 2) != order_total",
    ) == 0


def test_status_decides_the_shipping_fields(con):
    counts = dict(
        rows(
            con,
            """
            select status, count(*) filter (where case status
                when 'preparing' then tracking_id is null and shipping_service is null
                    and estimated_delivery_at is null and delivered_at is null
                when 'shipped' then tracking_id is not null and shipping_service is not null
                    and estimated_delivery_at is not null and delivered_at is null
                when 'delivered' then tracking_id is not null and shipping_service is not null
                    and estimated_delivery_at is not null and delivered_at is not null
            end) - count(*)
            from raw.orders group by 1
            """,
        )
    )
    assert counts == {"preparing": 0, "shipped": 0, "delivered": 0}
    services = {row[0] for row in rows(con, "select distinct shipping_service from raw.orders")}
    assert services == {None, "ups", "fedex", "usps", "dhl"}
    # Status follows age: every preparing order is younger than every delivered one.
    youngest_delivered, oldest_preparing = value(
        con,
        "select max(created_at) filter (where status = 'delivered'), "
        "min(created_at) filter (where status = 'preparing') from raw.orders",
    )
    assert youngest_delivered < oldest_preparing


def test_shipped_orders_have_one_package_shipped_event_in_their_session(con):
    shipped_orders = value(con, "select count(*) from raw.orders where status != 'preparing'")
    assert shipped_orders > 0
    matched, wrong = value(
        con,
        """
        select count(*), count(*) filter (where
            s.session_id != c.session_id or s.user_id != o.user_id
            or s.created_at <= o.created_at or s.created_at > ?
            or o.status = 'preparing' or s.created_at > coalesce(o.delivered_at, s.created_at))
        from raw.events s
        join raw.orders o using (order_id)
        join raw.events c on c.order_id = o.order_id and c.event_type = 'checkout'
        where s.event_type = 'package_shipped'
        """,
        [WINDOW_END],
    )
    assert (matched, wrong) == (shipped_orders, 0)


def test_timestamps_fall_in_the_window(con):
    for table, column in [
        ("events", "created_at"),
        ("orders", "created_at"),
        ("orders", "delivered_at"),
    ]:
        outside = value(
            con,
            f"select count(*) from raw.{table} where {column} < ? or {column} > ?",
            [WINDOW_START, WINDOW_END],
        )
        assert outside == 0, f"{table}.{column}"
    assert value(con, "select count(*) from raw.orders where estimated_delivery_at < created_at") == 0
    # Sessions start all through the window, not just at one end.
    busy_days = value(
        con,
        "select count(distinct floor(epoch(created_at - ?) / 86400)) from raw.events",
        [WINDOW_START],
    )
    assert busy_days == DAYS


def test_users_sign_up_before_their_first_visit(con):
    assert value(
        con,
        "select count(*) from raw.users where updated_at < created_at or updated_at > ?",
        [WINDOW_END],
    ) == 0
    assert value(
        con,
        """
        select count(*) from raw.users u
        join (select user_id, min(created_at) as first_visit from raw.events group by 1) e using (user_id)
        where u.created_at >= e.first_visit
        """,
    ) == 0


def test_people_and_places_look_real(con):
    assert value(
        con,
        "select count(*) from raw.users "
        "where not regexp_full_match(phone_number, '[0-9]{3}-[0-9]{3}-[0-9]{4}') "
        "or not regexp_full_match(email, '[a-z.0-9]+@[a-z.]+') or first_name = '' or last_name = ''",
    ) == 0
    assert value(
        con,
        "select count(*) from raw.addresses where country != 'United States' "
        "or zipcode not between 1 and 99999 or not regexp_full_match(address, '[0-9]+ [A-Za-z ]+')",
    ) == 0
    assert value(con, "select count(distinct state) from raw.addresses") > 20
    assert value(con, "select count(*) from raw.addresses where state = 'California'") > 0


def test_catalogue_has_prices_stock_and_promos(con):
    assert value(con, "select count(*) from raw.products where price <= 0 or inventory < 0 or name = ''") == 0
    assert value(con, "select count(distinct name) from raw.products") == 30
    statuses = dict(rows(con, "select status, count(*) from raw.promos group by 1"))
    assert set(statuses) <= {"active", "inactive"} and statuses.get("active", 0) >= 1
    assert value(con, "select count(*) from raw.promos where discount <= 0") == 0


def test_funnel_matches_the_real_shop(con):
    views_per_session, add_share, checkout_share, added_per_viewed = value(
        con,
        """
        select avg(views), avg((adds > 0)::int), avg((checkouts > 0)::int), sum(adds) / sum(views)
        from (
            select session_id,
                count(*) filter (where event_type = 'page_view') as views,
                count(*) filter (where event_type = 'add_to_cart') as adds,
                count(*) filter (where event_type = 'checkout') as checkouts
            from raw.events group by 1
        )
        """,
    )
    assert 2.8 < views_per_session < 3.6
    assert 0.7 < add_share < 0.9
    assert 0.5 < checkout_share < 0.75
    assert 0.4 < added_per_viewed < 0.65
    assert value(
        con,
        """
        select count(*) from (
            select session_id from raw.events group by 1
            having count(*) filter (where event_type = 'checkout') > 0
               and count(*) filter (where event_type = 'add_to_cart') = 0
        )
        """,
    ) == 0


def test_same_seed_same_data_other_seed_other_data(tables):
    again = sample_tables(seed=42, days=DAYS, sessions_per_day=SESSIONS_PER_DAY, end=END)
    other = sample_tables(seed=43, days=DAYS, sessions_per_day=SESSIONS_PER_DAY, end=END)
    for table in raw_columns():
        assert again[table].equals(tables[table]), table
    for table in ["addresses", "events", "order_items", "orders", "products", "users"]:
        assert not other[table].equals(tables[table]), table
    assert set(other["events"]["event_id"].to_pylist()).isdisjoint(tables["events"]["event_id"].to_pylist())


def test_end_in_another_time_zone_means_the_same_instant():
    end = datetime(2024, 3, 15, 20, 0, tzinfo=timezone(timedelta(hours=2)))
    in_utc = end.astimezone(timezone.utc)
    shifted = sample_tables(seed=5, days=1, sessions_per_day=50, end=end)
    same = sample_tables(seed=5, days=1, sessions_per_day=50, end=in_utc)
    assert shifted["events"].equals(same["events"])
    latest = max(shifted["events"]["created_at"].to_pylist())
    assert latest <= in_utc.replace(tzinfo=None)


def test_naive_end_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        sample_tables(seed=1, days=1, sessions_per_day=10, end=datetime(2024, 3, 15))


def test_append_adds_the_next_hours_after_the_newest_event_without_key_collisions(tmp_path):
    from greenery_orchestration.rawdata.sample import append_sample, write_sample

    warehouse = tmp_path / "prod.duckdb"
    write_sample(warehouse, seed=7, days=1, sessions_per_day=400, end=END)
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        ((newest_before, events_before, products_before),) = connection.execute(
            "select (select max(created_at) from raw.events), (select count(*) from raw.events), "
            "(select count(*) from raw.products)"
        ).fetchall()

    added = append_sample(warehouse, seed=7, hours=3, sessions_per_day=400)

    with duckdb.connect(str(warehouse), read_only=True) as connection:
        ((events_after, distinct_events, oldest_new, newest_new),) = connection.execute(
            "select count(*), count(distinct event_id), "
            "min(created_at) filter (where created_at > ?), max(created_at) from raw.events",
            [newest_before],
        ).fetchall()
        ((orphans,),) = connection.execute(
            "select count(*) from raw.order_items i left join raw.products p using (product_id) "
            "where p.product_id is null"
        ).fetchall()
        ((products_after,),) = connection.execute("select count(*) from raw.products").fetchall()
    assert added["events"] > 0 and events_after == events_before + added["events"]
    assert distinct_events == events_after  # no key collides with the first window's
    assert oldest_new > newest_before
    assert newest_new <= newest_before + timedelta(hours=3, seconds=1)
    assert products_after == products_before and orphans == 0  # the catalogue is shared


def test_a_window_from_start_to_end_holds_every_timestamp():
    start = datetime(2024, 3, 15, 6, 0, 0, 250_000, tzinfo=timezone.utc)
    end = datetime(2024, 3, 15, 8, 30, tzinfo=timezone.utc)
    events = sample_tables(seed=2, start=start, end=end, sessions_per_day=2400)["events"]
    times = events["created_at"].to_pylist()
    assert min(times) >= datetime(2024, 3, 15, 6, 0, 1) and max(times) <= datetime(2024, 3, 15, 8, 30)
    assert 200 < len({*events["session_id"].to_pylist()}) < 300  # 2.5 hours of 100 sessions an hour

    with pytest.raises(ValueError, match="at least one hour"):
        sample_tables(seed=2, start=end - timedelta(minutes=59), end=end, sessions_per_day=10)


@pytest.fixture
def odd_shop(tmp_path):
    """A warehouse whose catalogue is nothing like the sample's: four products with ids of
    uneven width (one without a price), and no promos."""
    from greenery_orchestration.rawdata.sample import write_sample

    warehouse = tmp_path / "prod.duckdb"
    write_sample(warehouse, seed=1, days=1, sessions_per_day=50, end=END)
    with duckdb.connect(str(warehouse)) as connection:
        connection.execute("delete from raw.products")
        connection.execute(
            "insert into raw.products (product_id, name, price, inventory) values ('p-1', 'Fern', 12.5, 3), "
            "('product-two', 'Moss', 4.0, 1), ('3', 'Ivy', 7.25, 9), ('x', 'Cactus', null, 2)"
        )
        connection.execute("delete from raw.promos")
    return warehouse


def test_append_browses_and_orders_only_the_catalogue_in_the_raw_tables(odd_shop):
    from greenery_orchestration.rawdata.sample import append_to_raw

    with duckdb.connect(str(odd_shop), read_only=True) as connection:
        ((newest,),) = connection.execute("select max(created_at) from raw.events").fetchall()
        old_orders = {row[0] for row in connection.execute("select order_id from raw.orders").fetchall()}

    appended = append_to_raw(odd_shop, seed=4, hours=12, sessions_per_day=2000)

    assert appended.start == newest + timedelta(seconds=1)
    assert appended.end == newest + timedelta(hours=12, seconds=1)
    with duckdb.connect(str(odd_shop), read_only=True) as connection:
        new_orders = "select order_id from raw.orders where order_id not in (select unnest(?))"
        products = {row[0] for row in connection.execute("select product_id from raw.products").fetchall()}
        viewed = {row[0] for row in connection.execute(
            "select distinct product_id from raw.events where created_at > ? and product_id is not null",
            [newest],
        ).fetchall()}
        ordered = connection.execute(
            f"select product_id, count(*) over (partition by order_id, product_id) from raw.order_items "
            f"where order_id in ({new_orders})", [list(old_orders)]
        ).fetchall()
        promos = connection.execute(f"select count(promo_id) from raw.orders where order_id in ({new_orders})",
                                    [list(old_orders)]).fetchall()[0][0]
        urls = connection.execute(
            "select count(*) from raw.events where created_at > ? and product_id is not null "
            "and page_url != 'https://greenary.com/product/' || product_id", [newest]
        ).fetchall()[0][0]
    assert viewed == products  # every one of the four, and nothing else
    assert ordered and {product for product, _ in ordered} <= products
    assert max(repeats for _, repeats in ordered) == 1  # a product once per order
    assert promos == 0 and urls == 0
    assert appended.counts["orders"] > 0 and appended.counts["order_items"] == len(ordered)


def test_append_stops_at_until_and_refuses_a_window_under_an_hour(tmp_path):
    from greenery_orchestration.rawdata.sample import NothingToAppend, append_to_raw, write_sample

    warehouse = tmp_path / "prod.duckdb"
    write_sample(warehouse, seed=7, days=1, sessions_per_day=400, end=END)
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        ((newest,),) = connection.execute("select max(created_at) from raw.events").fetchall()
    until = newest.replace(tzinfo=timezone.utc) + timedelta(hours=2)

    appended = append_to_raw(warehouse, seed=7, hours=5, sessions_per_day=400, until=until)

    assert appended.end == until.replace(tzinfo=None)  # 5 hours asked, cut at `until`
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        ((latest,),) = connection.execute("select max(created_at) from raw.events").fetchall()
    assert latest <= appended.end
    with pytest.raises(NothingToAppend, match="less than an hour"):
        too_soon = latest.replace(tzinfo=timezone.utc) + timedelta(minutes=59)
        append_to_raw(warehouse, seed=7, hours=5, sessions_per_day=400, until=too_soon)


def test_a_sample_has_the_same_numbers_whenever_it_ends():
    """The README shows what `make run` prints: the funnel must not depend on the day it runs."""

    def sessions_per_step(end):
        events = sample_tables(seed=42, days=3, sessions_per_day=400, end=end)["events"].to_pandas()
        return events.groupby("event_type")["session_id"].nunique().to_dict()

    monday = datetime(2026, 1, 5, 9, 30, tzinfo=timezone.utc)
    assert sessions_per_step(monday) == sessions_per_step(monday + timedelta(days=200, seconds=17))


def _step_rates(tables) -> tuple[float, float]:
    """From the rows: the share of sessions adding to cart, and of those, the share checking out."""
    types = tables["events"].to_pandas().groupby("session_id")["event_type"].agg(set)
    added = types.map(lambda seen: "add_to_cart" in seen)
    checked_out = types.map(lambda seen: "checkout" in seen)
    return added.mean(), checked_out[added].mean()


def test_conversion_scales_the_rate_of_the_step_asked_and_no_other(tables):
    from greenery_orchestration.rawdata.sample import ADD_TO_CART_RATE, PAGE_VIEW_WEIGHTS

    def scaled(**conversion):
        return sample_tables(seed=42, days=DAYS, sessions_per_day=SESSIONS_PER_DAY, end=END, conversion=conversion)

    add_share, checkout_share = _step_rates(tables)
    broken_checkout = scaled(checkout=0.3)
    # The same draws: the same sessions add to cart, and fewer of them check out.
    assert _step_rates(broken_checkout)[0] == add_share
    assert _step_rates(broken_checkout)[1] == pytest.approx(0.3 * checkout_share, rel=0.1)
    assert scaled(checkout=0.3)["events"].equals(broken_checkout["events"])  # deterministic per seed

    # add_to_cart scales the chance per product viewed: a session of n views adds with 1 - (1 - p)^n.
    views = PAGE_VIEW_WEIGHTS / PAGE_VIEW_WEIGHTS.sum()
    halved = sum(share * (1 - (1 - ADD_TO_CART_RATE / 2) ** n) for n, share in enumerate(views, start=1))
    fewer_adds = _step_rates(scaled(add_to_cart=0.5))
    assert fewer_adds[0] == pytest.approx(halved, abs=0.03)
    assert fewer_adds[0] < add_share - 0.1
    assert fewer_adds[1] == pytest.approx(checkout_share, abs=0.03)


@pytest.mark.parametrize(
    ("conversion", "message"),
    [
        ({"basket": 0.5}, "no step 'basket' to scale: choose add_to_cart or checkout"),
        ({"checkout": 2},
         r"^checkout=2 would make the checkout rate 154.0% \(it is 77%\): the factor must lie between 0 and 1.29$"),
        ({"add_to_cart": -0.1}, "the factor must lie between 0 and 1.92"),
    ],
)
def test_a_conversion_that_makes_no_rate_is_refused(conversion, message):
    with pytest.raises(ValueError, match=message):
        sample_tables(seed=1, days=1, sessions_per_day=10, end=END, conversion=conversion)
