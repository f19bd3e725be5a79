"""A synthetic Greenery shop: the seven raw tables, shaped like the course data, at any size.

Everything is drawn from one `numpy.random.Generator`, so a seed (and an `end`) fixes every
row. Rows are built per kind in whole arrays (no Python loop per row): sessions expand into
page views with `np.repeat`, and UUID text is written as bytes into fixed-width numpy
matrices whose rows are copied straight into Arrow string buffers.

The shape follows the real course data: about 3.2 page views per session (1..10), about half
of the viewed products added to cart, about 81% of sessions adding something and 62% checking
out; one order per checkout holding exactly the products added in that session; about one
order in nine with a promo; order status by age (preparing, then shipped, then delivered).
Per session that is about 6 events (3.2 page views, 1.7 adds, 0.62 checkouts and, when the
window is long enough for orders to ship, ~0.6 package_shipped).

Events are grouped, not sorted by time: all page views and adds to cart (session by session,
in time order within a session), then all checkouts, then all package shipments.

`append_sample` adds the next hours of the shop to raw tables that may hold anything (the course
data, say): its sessions browse and order the products and promos already in the raw tables,
so every id an appended row refers to exists.

`conversion` scales a step's rate for the window generated ({"checkout": 0.3}: a checkout that
broke for those hours), to see the conversion anomaly alerts fire on a day known to be bad.
"""

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from greenery_orchestration.rawdata.load_csv import replace_raw_tables, rollback, typed_select
from greenery_orchestration.rawdata.load_log import load_time, record_load
from greenery_orchestration.rawdata.schema import RAW_SCHEMA, declared_columns, load_marker, raw_columns

SITE = "https://greenary.com"

# Session shape, measured on the course data (counts of sessions with 1..10 page views).
PAGE_VIEW_WEIGHTS = np.array([104, 99, 153, 92, 73, 35, 14, 4, 3, 1], dtype=float)
ADD_TO_CART_RATE = 0.52  # per viewed product; gives ~81% of sessions with an add to cart
CHECKOUT_RATE_WITH_CART = 0.77  # of sessions with a cart; gives ~62% of all sessions
# The funnel steps whose rate `conversion` scales, and that rate.
CONVERSION_RATES = {"add_to_cart": ADD_TO_CART_RATE, "checkout": CHECKOUT_RATE_WITH_CART}
PROMO_RATE = 1 / 9
SECONDS_BETWEEN_EVENTS = (8, 150)  # a session lasts from seconds to some tens of minutes
MAX_QUANTITY = 3

HOUR = 3600
DAY = 24 * HOUR
# The shortest window: the longest session (10 page views, 10 adds, a checkout, ~50 minutes)
# must fit inside it.
MIN_WINDOW = HOUR
SHIP_AFTER = (2 * HOUR, 12 * HOUR)  # checkout -> package_shipped
TRANSIT = (1 * DAY, 6 * DAY)  # package_shipped -> delivered
ESTIMATED_DAYS = (2, 8)  # checkout -> estimated delivery, whole days

USERS_PER_SESSION = 1 / 4
MIN_USERS = 40

EVENT_TYPES = ["page_view", "add_to_cart", "checkout", "package_shipped"]
PAGE_VIEW, ADD_TO_CART, CHECKOUT, PACKAGE_SHIPPED = range(4)
URL_PREFIXES = [f"{SITE}/product/", f"{SITE}/product/", f"{SITE}/checkout/", f"{SITE}/shipping/"]

SHIPPING_SERVICES = ["ups", "fedex", "usps", "dhl"]
SHIPPING_SERVICE_WEIGHTS = np.array([0.5, 0.29, 0.18, 0.03])

PRODUCT_NAMES = [
    "Hoya Carnosa", "Kentia Palm", "Prayer Plant", "Chinese Evergreen", "Parlor Palm",
    "Croton", "Dieffenbachia", "Peperomia Hope", "Rattlesnake Plant", "Staghorn Fern",
    "Maidenhair Fern", "Bromeliad", "Air Plant", "Polka Dot Plant", "Nerve Plant",
    "String of Hearts", "Burro's Tail", "Echeveria", "Haworthia", "Christmas Cactus",
    "Cast Iron Plant", "Umbrella Tree", "Norfolk Island Pine", "Wax Begonia", "Purple Shamrock",
    "Olive Tree", "Lemon Lime Dracaena", "Zebra Plant", "Kalanchoe", "Venus Flytrap",
]  # fmt: skip
PRICE_DOLLARS = (12, 96)
PRICE_CENTS = np.array([0, 25, 50, 75, 95])

PROMO_IDS = ["spring-sale", "green thumb", "repot-week", "Fern Friday", "welcome", "leafy-loyalty"]
PROMO_DISCOUNT = (2, 21)  # whole dollars
CATALOGUE = ("products", "promos")  # what sessions browse and orders use; appends keep it

FIRST_NAMES = [
    "Ava", "Ben", "Chloe", "Daniel", "Elena", "Felix", "Grace", "Hugo", "Iris", "Jonah",
    "Keira", "Liam", "Maya", "Nolan", "Olivia", "Priya", "Quinn", "Rosa", "Samir", "Tessa",
    "Umar", "Vera", "Wes", "Ximena", "Yusuf", "Zoe", "Amara", "Bruno", "Camila", "Dmitri",
    "Esme", "Farah", "Gideon", "Hana", "Idris", "Julia", "Kenji", "Lena", "Mateo", "Nadia",
]  # fmt: skip
LAST_NAMES = [
    "Abbott", "Bennett", "Calloway", "Delgado", "Ellison", "Fairbanks", "Gallo", "Haddad",
    "Ibarra", "Jensen", "Kowalski", "Lindgren", "Mwangi", "Nakamura", "Okafor", "Pereira",
    "Quintero", "Rasmussen", "Sato", "Thornton", "Underwood", "Vasquez", "Whitfield", "Xu",
    "Yilmaz", "Zimmerman", "Ashby", "Brandt", "Castellano", "Dunmore", "Everly", "Fitzroy",
    "Greer", "Holloway", "Iverson", "Juarez", "Keane", "Lockwood", "Moreau", "Nilsen",
]  # fmt: skip
EMAIL_DOMAINS = ["example.com", "example.net", "example.org", "mail.example.com"]
STREET_NAMES = [
    "Willow", "Juniper", "Magnolia", "Hawthorn", "Larkspur", "Foxglove", "Primrose", "Thistle",
    "Bramble", "Clover", "Sorrel", "Yarrow", "Heather", "Alder", "Hazel", "Rowan", "Aspen",
    "Cypress", "Laurel", "Sage", "Basil", "Marigold", "Poppy", "Orchard", "Riverbend",
    "Millstone", "Quarry", "Harbor", "Beacon", "Lantern",
]  # fmt: skip
STREET_SUFFIXES = [
    "Street", "Avenue", "Lane", "Road", "Court", "Drive", "Way", "Place", "Trail", "Terrace",
    "Circle", "Crossing", "Parkway", "Hill", "Alley", "Point", "Plaza", "Pass",
]  # fmt: skip
# US states with rough populations (millions), so big states get more customers.
STATES = {
    "California": 39, "Texas": 30, "Florida": 22, "New York": 20, "Pennsylvania": 13,
    "Illinois": 12.5, "Ohio": 11.8, "Georgia": 11, "North Carolina": 10.7, "Michigan": 10,
    "New Jersey": 9.3, "Virginia": 8.7, "Washington": 7.8, "Arizona": 7.4, "Tennessee": 7.1,
    "Massachusetts": 7, "Indiana": 6.8, "Missouri": 6.2, "Maryland": 6.2, "Wisconsin": 5.9,
    "Colorado": 5.8, "Minnesota": 5.7, "South Carolina": 5.3, "Alabama": 5.1, "Louisiana": 4.6,
    "Kentucky": 4.5, "Oregon": 4.2, "Oklahoma": 4, "Connecticut": 3.6, "Utah": 3.4,
    "Iowa": 3.2, "Nevada": 3.2, "Arkansas": 3, "Mississippi": 2.9, "Kansas": 2.9,
    "New Mexico": 2.1, "Nebraska": 2, "Idaho": 1.9, "West Virginia": 1.8, "Hawaii": 1.4,
    "New Hampshire": 1.4, "Maine": 1.4, "Montana": 1.1, "Rhode Island": 1.1, "Delaware": 1,
    "South Dakota": 0.9, "North Dakota": 0.8, "Alaska": 0.7, "District of Columbia": 0.7,
    "Vermont": 0.6, "Wyoming": 0.6,
}  # fmt: skip

# The two lowercase hex digits of each byte value, as 2-byte text packed in a uint16.
_HEX_PAIRS = np.frombuffer("".join(f"{b:02x}" for b in range(256)).encode(), dtype=np.uint16)
_UUID_GROUPS = [(0, 8), (9, 13), (14, 18), (19, 23), (24, 36)]  # text columns of the 8-4-4-4-12 groups
_HEX_GROUPS = [(0, 8), (8, 12), (12, 16), (16, 20), (20, 32)]
_INT32_MAX = 2**31 - 1


def sample_tables(
    *,
    seed: int,
    sessions_per_day: int,
    end: datetime,
    days: int | None = None,
    hours: int | None = None,
    start: datetime | None = None,
    catalogue: dict[str, pa.Table] | None = None,
    stream: int | None = None,
    conversion: dict[str, float] | None = None,
) -> dict[str, pa.Table]:
    """A synthetic Greenery data set of `days` (or `hours`, or since `start`) ending at `end`
    (tz-aware datetimes), deterministic for `seed`, the window and the catalogue.

    Returns the seven raw tables (addresses, events, order_items, orders, products, promos,
    users) as Arrow tables with the columns of `raw_columns()`, in order. Timestamps are naive
    UTC with whole seconds; every event and order timestamp lies in the window. The window is
    at least an hour long.

    The catalogue is `catalogue` ({'products': ..., 'promos': ...} with the raw columns, e.g.
    `raw_catalogue`) when given, else drawn from `seed` alone: windows generated with one seed
    and different ends share it and can be appended to each other without key collisions.

    `conversion` scales the rate of a step ({"checkout": 0.3}; see conversion_rates). The random
    draws are the same whatever it is: with it, the same sessions convert less (or more).
    """
    rates = conversion_rates(conversion)
    lo, hi, window_us = _window(end, days=days, hours=hours, start=start)
    if sessions_per_day < 1:
        raise ValueError("sessions_per_day must be at least 1")
    n_sessions = max(1, round(sessions_per_day * window_us / (DAY * 1_000_000)))
    catalogue = catalogue or seed_catalogue(seed)
    product_ids, price_cents, promo_ids, promo_discount_cents = _catalogue_arrays(catalogue)

    # Everything after the catalogue from a stream of its own: by default one per window length,
    # so a sample's numbers do not depend on when it ends (the README shows what `make run`
    # prints, whenever it runs); appends pass their end, so consecutive windows differ.
    rng = np.random.default_rng([seed, window_us if stream is None else stream])
    columns = dict(catalogue)
    sessions = _sessions(rng, n_sessions, len(price_cents), lo, hi, rates)
    n_users = max(MIN_USERS, int(n_sessions * USERS_PER_SESSION))
    session_user = rng.integers(n_users, size=sessions["count"])
    orders = _orders(rng, sessions, price_cents, promo_discount_cents, hi)
    user_ids, address_ids = _uuids(rng, n_users), _uuids(rng, n_users)
    columns["users"] = _users(rng, user_ids, address_ids, session_user, sessions["start"], hi)
    columns["addresses"] = _addresses(rng, address_ids)
    order_ids = _uuids(rng, orders["count"])
    columns["orders"] = _orders_columns(rng, orders, order_ids, user_ids, address_ids, session_user, promo_ids)
    columns["order_items"] = {
        "order_id": _text((order_ids, orders["item_order"])),
        "product_id": _text((product_ids, orders["item_product"])),
        "quantity": pa.array(orders["item_quantity"], pa.int32()),
    }
    columns["events"] = _events(rng, sessions, orders, session_user, user_ids, product_ids, order_ids)

    return {
        table: pa.table([columns[table][name] for name in names], names=list(names))
        for table, names in raw_columns().items()
    }


def conversion_rates(factors: dict[str, float] | None = None) -> dict[str, float]:
    """CONVERSION_RATES, each scaled by the step's factor in `factors`. `add_to_cart` is the chance
    to add each product viewed, so the share of sessions adding any falls less than the factor;
    `checkout` is the share of sessions with a cart that check out. Raises ValueError, one line,
    for a step that is not there or a factor that makes no rate (below 0, above 100%)."""
    rates = dict(CONVERSION_RATES)
    for step, factor in (factors or {}).items():
        if step not in rates:
            raise ValueError(f"no step {step!r} to scale: choose {' or '.join(CONVERSION_RATES)}")
        highest = 1 / rates[step]
        if not 0 <= factor <= highest:  # NaN too
            raise ValueError(
                f"{step}={factor:g} would make the {step} rate {rates[step] * factor:.1%} (it is {rates[step]:.0%}): "
                f"the factor must lie between 0 and {math.floor(highest * 100) / 100:g}"
            )
        rates[step] *= factor
    return rates


def conversion_text(factors: dict[str, float] | None) -> str:
    """` conversion=checkout=0.3` for the load log's source, or nothing."""
    return "".join(f" conversion={step}={factor:g}" for step, factor in sorted((factors or {}).items()))


def seed_catalogue(seed: int) -> dict[str, pa.Table]:
    """The products and promos of `seed`'s shop, as raw tables."""
    rng = np.random.default_rng(seed)
    products, promos = _products(rng), _promos(rng)
    return {
        table: pa.table([columns[name] for name in raw_columns()[table]], names=list(raw_columns()[table]))
        for table, columns in [("products", products), ("promos", promos)]
    }


def raw_catalogue(connection: duckdb.DuckDBPyConnection) -> dict[str, pa.Table]:
    """The products and promos in the warehouse's raw tables, one row per key, in key order
    (so that a seed and a window give one sample)."""
    keys = {"products": "product_id", "promos": "promo_id"}
    return {
        table: connection.sql(
            f"select distinct on ({key}) * from {RAW_SCHEMA}.{table} where {key} is not null order by {key}"
        ).to_arrow_table()
        for table, key in keys.items()
    }


@dataclass(frozen=True)
class Appended:
    """What `append_to_raw` added: the window's first and last second (naive UTC) and the rows."""

    start: datetime
    end: datetime
    counts: dict[str, int]


class NothingToAppend(Exception):
    """Less than an hour lies between the newest raw event and the latest allowed end (now)."""


def append_to_raw(
    warehouse: Path, *, seed: int, hours: int, sessions_per_day: int, until: datetime | None = None,
    conversion: dict[str, float] | None = None,
) -> Appended:
    """The next `hours` of the shop after the newest raw event, but never past `until` (default
    now), added to the raw tables of the warehouse file in one transaction with its load-log row.

    New users, addresses, orders and events; they browse and order the products and promos
    already in the raw tables, which are kept as they are. Raises NothingToAppend when the
    window would be shorter than an hour, and ValueError when there is nothing to append to.
    """
    if not warehouse.exists():
        raise ValueError(f"no warehouse at {warehouse}: run `greenery sample` or `greenery load-csv` first")
    with duckdb.connect(str(warehouse)) as connection:
        tables, appended, source = plan_append(
            _newest_event(connection, warehouse), raw_catalogue(connection),
            seed=seed, hours=hours, sessions_per_day=sessions_per_day, until=until, conversion=conversion,
        )
        _insert_rows(connection, tables, source)
    return appended


def plan_append(
    newest: datetime, catalogue: dict[str, pa.Table], *, seed: int, hours: int, sessions_per_day: int,
    until: datetime | None = None, conversion: dict[str, float] | None = None,
) -> tuple[dict[str, pa.Table], Appended, str]:
    """What `append_to_raw` adds after the newest raw event (naive UTC), browsing `catalogue`
    (see raw_catalogue), on either warehouse: the new rows of every table but the catalogue's,
    what they span, and the load log's `source`. Raises NothingToAppend as append_to_raw does."""
    start, end = _append_window(newest, hours, until or datetime.now(UTC))
    tables = sample_tables(
        seed=seed, sessions_per_day=sessions_per_day, start=start, end=end, catalogue=catalogue,
        stream=int(end.timestamp()), conversion=conversion,
    )
    lo, hi, _ = _window(end, start=start)
    counts = {table: rows.num_rows for table, rows in tables.items() if table not in CATALOGUE}
    appended = Appended(_naive_utc(lo), _naive_utc(hi), counts)
    source = (
        f"sample --append seed={seed} sessions-per-day={sessions_per_day}{conversion_text(conversion)} "
        f"from {appended.start:%Y-%m-%dT%H:%M:%SZ} to {appended.end:%Y-%m-%dT%H:%M:%SZ}"
    )
    return {table: tables[table] for table in counts}, appended, source


def append_sample(warehouse: Path, **spec) -> dict[str, int]:
    """`append_to_raw(warehouse, **spec)`, returning only the row counts (what bench/run.py reads)."""
    return append_to_raw(warehouse, **spec).counts


def write_sample(target: Path, **spec) -> dict[str, int]:
    """Write `sample_tables(**spec)` into a warehouse file's raw tables (`*.duckdb`), in one
    transaction with its load-log row, or as the seven CSVs `greenery load-csv` reads into a
    folder. Returns row counts.
    """
    tables = sample_tables(**spec)
    with duckdb.connect(str(target) if target.suffix == ".duckdb" else ":memory:") as connection:
        for table, rows in tables.items():
            connection.register(f"sample_{table}", rows)
        if target.suffix == ".duckdb":
            relations = {table: f"sample_{table}" for table in tables}
            replace_raw_tables(connection, relations, source=sample_source(spec))
        else:
            target.mkdir(parents=True, exist_ok=True)
            for table in tables:
                path = str(target / f"{table}.csv").replace("'", "''")
                connection.execute(
                    f"copy sample_{table} to '{path}' (header, timestampformat '%Y-%m-%dT%H:%M:%SZ')"
                )
    return {table: rows.num_rows for table, rows in tables.items()}


def _window(
    end: datetime, *, days: int | None = None, hours: int | None = None, start: datetime | None = None
) -> tuple[int, int, int]:
    """The window's first and last whole second (since the epoch) and its length in microseconds."""
    if any(moment is not None and moment.utcoffset() is None for moment in (end, start)):
        raise ValueError("end and start must be timezone-aware datetimes")
    end_us = _epoch_us(end)
    if start is not None:
        window_us = end_us - _epoch_us(start)
    else:
        window_us = (hours if hours is not None else (days or 0) * 24) * HOUR * 1_000_000
    if window_us < MIN_WINDOW * 1_000_000:
        raise ValueError("the window (days, hours, or start to end) must be at least one hour")
    hi = end_us // 1_000_000  # last whole second <= end
    lo = -((window_us - end_us) // 1_000_000)  # first whole second >= window start
    return lo, hi, window_us


def _epoch_us(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def _naive_utc(second: int) -> datetime:
    return datetime(1970, 1, 1) + timedelta(seconds=second)


def _newest_event(connection: duckdb.DuckDBPyConnection, warehouse: Path) -> datetime:
    try:
        ((newest,),) = connection.execute(f"select max(created_at) from {RAW_SCHEMA}.events").fetchall()
    except duckdb.CatalogException:
        newest = None
    if newest is None:
        raise ValueError(
            f"no raw events in {warehouse} to append after: run `greenery sample` or `greenery load-csv` first"
        )
    return newest


def _append_window(newest: datetime, hours: int, until: datetime) -> tuple[datetime, datetime]:
    """From just after the newest raw event (naive UTC) for `hours`, cut at `until`."""
    start = newest.replace(tzinfo=UTC) + timedelta(seconds=1)
    end = min(start + timedelta(hours=hours), until)
    if end - start < timedelta(seconds=MIN_WINDOW):
        raise NothingToAppend(
            "Nothing to append: less than an hour lies between the newest raw event "
            f"({newest:%Y-%m-%d %H:%M:%S} UTC) and {until.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC, and an "
            "appended window lasts at least an hour and ends by then"
        )
    return start, end


def _insert_rows(connection: duckdb.DuckDBPyConnection, tables: dict[str, pa.Table], source: str) -> None:
    """Add `tables`' rows to the raw tables, stamped with the load's time, and log the load, in one
    transaction. A raw table from before the load marker gains it (null on its rows)."""
    loaded_at = load_time()
    marker = load_marker()
    connection.execute("begin transaction")
    try:
        for table, rows in tables.items():
            connection.register(f"sample_{table}", rows)
            connection.execute(
                f"alter table {RAW_SCHEMA}.{table} add column if not exists {marker} {declared_columns()[table][marker]}"
            )
            connection.execute(
                f"insert into {RAW_SCHEMA}.{table} by name {typed_select(table, f'sample_{table}', loaded_at)}"
            )
        counts = {table: rows.num_rows for table, rows in tables.items()}
        record_load(connection, "append", source, counts, loaded_at=loaded_at)
        connection.execute("commit")
    except BaseException:
        rollback(connection)
        raise


def sample_source(spec: dict) -> str:
    """The load log's `source` of `greenery sample`: every setting that decides the data."""
    if spec.get("start"):
        window = f"start={spec['start'].astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"
    else:
        window = f"hours={spec['hours']}" if spec.get("hours") else f"days={spec.get('days')}"
    return (
        f"sample seed={spec['seed']} {window} sessions-per-day={spec['sessions_per_day']} "
        f"end={spec['end'].astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}{conversion_text(spec.get('conversion'))}"
    )


def _catalogue_arrays(catalogue: dict[str, pa.Table]):
    """Product ids (see _id_text), prices in cents, promo ids and discounts in cents."""
    products, promos = catalogue["products"], catalogue["promos"]
    if products.num_rows == 0:
        raise ValueError("there are no products to browse (raw.products is empty)")
    price_cents = np.rint(pc.fill_null(products["price"], 0.0).to_numpy() * 100).astype(np.int64)
    discount_cents = pc.fill_null(promos["discount"], 0).to_numpy().astype(np.int64) * 100
    product_ids = _id_text(products["product_id"].to_pylist())
    return product_ids, price_cents, promos["promo_id"].to_pylist(), discount_cents


def _id_text(ids: list[str]) -> np.ndarray | pa.Array:
    """Ids as the byte matrix `_text` copies rows from when they share one width (UUIDs do), else
    as Arrow strings (slower, but ids of any shape will do)."""
    encoded = [value.encode() for value in ids]
    if len({len(value) for value in encoded}) == 1 and encoded[0]:
        return np.frombuffer(b"".join(encoded), dtype=np.uint8).reshape(len(encoded), -1)
    return pa.array(ids, pa.string())


def _products(rng):
    n = len(PRODUCT_NAMES)
    price_cents = rng.integers(*PRICE_DOLLARS, size=n) * 100 + rng.choice(PRICE_CENTS, size=n)
    ids = _uuids(rng, n)
    return {
        "product_id": _text((ids, None)),
        "name": pa.array(PRODUCT_NAMES),
        "price": pa.array(price_cents / 100),
        "inventory": pa.array(rng.integers(10, 101, size=n), pa.int32()),
    }


def _promos(rng):
    n = len(PROMO_IDS)
    discount = rng.integers(*PROMO_DISCOUNT, size=n)
    active = rng.random(n) < 0.25
    active[rng.integers(n)] = True  # at least one running promo
    return {
        "promo_id": pa.array(PROMO_IDS),
        "discount": pa.array(discount, pa.int32()),
        "status": pa.array(np.where(active, "active", "inactive")),
    }


def _sessions(rng, n_sessions, n_products, lo, hi, rates):
    """The browsing of every session (page views and adds to cart), then its checkout, if any.

    Within a session: page view, (add to cart of that product), page view, ..., (checkout),
    seconds to minutes apart. Browsing events are laid out session by session.
    """
    weights = PAGE_VIEW_WEIGHTS / PAGE_VIEW_WEIGHTS.sum()
    # A small catalogue (raw tables of anyone's) caps the views: a session views distinct products.
    n_views = np.minimum(rng.choice(len(weights), size=n_sessions, p=weights) + 1, n_products)
    view_session = np.repeat(np.arange(n_sessions), n_views)
    first_view = np.cumsum(n_views) - n_views
    view_rank = np.arange(len(view_session)) - np.repeat(first_view, n_views)
    # Distinct products per session: walk the catalogue from a popular start by a coprime stride.
    popularity = rng.gamma(2.0, size=n_products)
    start_product = rng.choice(n_products, size=n_sessions, p=popularity / popularity.sum())
    stride = rng.choice(_strides(n_products), size=n_sessions)
    view_product = (np.repeat(start_product, n_views) + view_rank * np.repeat(stride, n_views)) % n_products

    added = rng.random(len(view_session)) < rates["add_to_cart"]
    adds_before = np.cumsum(added) - added  # adds before this view, over all sessions
    adds_before -= np.repeat(adds_before[first_view], n_views)  # ... within its session
    n_adds = np.bincount(view_session[added], minlength=n_sessions)
    checks_out = (n_adds > 0) & (rng.random(n_sessions) < rates["checkout"])

    n_browse = n_views + n_adds
    first_browse = np.cumsum(n_browse) - n_browse
    view_event = np.repeat(first_browse, n_views) + view_rank + adds_before
    add_event = view_event[added] + 1
    total = int(n_browse.sum())
    browse_type = np.full(total, PAGE_VIEW, dtype=np.int8)
    browse_type[add_event] = ADD_TO_CART
    browse_product = np.empty(total, dtype=np.int64)
    browse_product[view_event] = view_product
    browse_product[add_event] = view_product[added]

    # Seconds after the session's first event; the start keeps the whole session in the window.
    gap = rng.integers(*SECONDS_BETWEEN_EVENTS, size=total)
    gap[first_browse] = 0
    offset = np.cumsum(gap)
    offset -= np.repeat(offset[first_browse], n_browse)
    last_browse = offset[first_browse + n_browse - 1]
    checkout_offset = last_browse + rng.integers(*SECONDS_BETWEEN_EVENTS, size=n_sessions)
    duration = np.where(checks_out, checkout_offset, last_browse)
    start = lo + (rng.random(n_sessions) * (hi - lo - duration + 1)).astype(np.int64)
    browse_session = np.repeat(np.arange(n_sessions), n_browse)
    return {
        "count": n_sessions,
        "start": start,
        "browse_session": browse_session,
        "browse_type": browse_type,
        "browse_product": browse_product,
        "browse_time": np.repeat(start, n_browse) + offset,
        "checkout_time": (start + checkout_offset)[checks_out],
        "view_session": view_session,
        "view_product": view_product,
        "added": added,
        "checks_out": checks_out,
    }


def _strides(n_products: int) -> np.ndarray:
    """Steps coprime with the number of products: walking by one visits each product once."""
    return np.array([s for s in range(1, n_products) if math.gcd(s, n_products) == 1] or [1])


def _orders(rng, sessions, price_cents, promo_discount_cents, hi):
    """One order per checkout, holding the products added to cart in its session."""
    order_session = np.flatnonzero(sessions["checks_out"])
    n = len(order_session)
    order_of_session = np.full(sessions["count"], -1)
    order_of_session[order_session] = np.arange(n)
    in_order = sessions["added"] & sessions["checks_out"][sessions["view_session"]]
    item_order = order_of_session[sessions["view_session"][in_order]]
    item_product = sessions["view_product"][in_order]
    item_quantity = rng.integers(1, MAX_QUANTITY + 1, size=len(item_order))
    cost = np.bincount(item_order, weights=price_cents[item_product] * item_quantity, minlength=n)
    cost = np.rint(cost).astype(np.int64)
    shipping = rng.integers(100, 1000, size=n)
    # With no promos in the catalogue, draw as if there were one, and apply none.
    discounts = promo_discount_cents if len(promo_discount_cents) else np.zeros(1, dtype=np.int64)
    promo = rng.integers(len(discounts), size=n)
    discount = discounts[promo]
    has_promo = (rng.random(n) < PROMO_RATE) & (discount < cost) & (len(promo_discount_cents) > 0)

    created = sessions["checkout_time"]
    shipped_at = created + rng.integers(*SHIP_AFTER, size=n)
    delivered_at = shipped_at + rng.integers(*TRANSIT, size=n)
    return {
        "count": n,
        "session": order_session,
        "item_order": item_order,
        "item_product": item_product,
        "item_quantity": item_quantity,
        "created": created,
        "cost_cents": cost,
        "shipping_cents": shipping,
        "total_cents": cost + shipping - np.where(has_promo, discount, 0),
        "promo": np.where(has_promo, promo, -1),
        "shipped_at": shipped_at,
        "is_shipped": shipped_at <= hi,
        "delivered_at": delivered_at,
        "is_delivered": delivered_at <= hi,
        "estimated_at": created + rng.integers(*ESTIMATED_DAYS, size=n) * DAY,
    }


def _orders_columns(rng, orders, order_ids, user_ids, address_ids, session_user, promo_ids):
    n = orders["count"]
    user = session_user[orders["session"]]
    shipped, delivered = orders["is_shipped"], orders["is_delivered"]
    weights = SHIPPING_SERVICE_WEIGHTS / SHIPPING_SERVICE_WEIGHTS.sum()
    service = rng.choice(len(SHIPPING_SERVICES), size=n, p=weights)
    tracking_ids = _uuids(rng, int(shipped.sum()))
    status = np.where(delivered, 2, np.where(shipped, 1, 0))
    return {
        "order_id": _text((order_ids, None)),
        "user_id": _text((user_ids, user)),
        "promo_id": _pick(promo_ids, orders["promo"], valid=orders["promo"] >= 0),
        "address_id": _text((address_ids, user)),
        "created_at": _timestamps(orders["created"]),
        "order_cost": pa.array(orders["cost_cents"] / 100),
        "shipping_cost": pa.array(orders["shipping_cents"] / 100),
        "order_total": pa.array(orders["total_cents"] / 100),
        "tracking_id": _text((tracking_ids, None), valid=shipped),
        "shipping_service": _pick(SHIPPING_SERVICES, service, valid=shipped),
        "estimated_delivery_at": _timestamps(orders["estimated_at"], valid=shipped),
        "delivered_at": _timestamps(orders["delivered_at"], valid=delivered),
        "status": _pick(["preparing", "shipped", "delivered"], status),
    }


def _events(rng, sessions, orders, session_user, user_ids, product_ids, order_ids):
    """Browsing events (session by session), then checkouts, then package shipments.

    Rows are grouped that way, not sorted by time: each group's page urls have one width,
    which lets the text columns be written as whole byte blocks.
    """
    shipped = np.flatnonzero(orders["is_shipped"])
    n_browse, n_orders, n_shipped = len(sessions["browse_type"]), orders["count"], len(shipped)
    event_session = np.concatenate(
        [sessions["browse_session"], orders["session"], orders["session"][shipped]]
    )
    event_type = np.concatenate(
        [
            sessions["browse_type"],
            np.full(n_orders, CHECKOUT, np.int8),
            np.full(n_shipped, PACKAGE_SHIPPED, np.int8),
        ]
    )
    event_time = np.concatenate([sessions["browse_time"], orders["created"], orders["shipped_at"][shipped]])
    session_ids = _uuids(rng, sessions["count"])
    event_ids = _uuids(rng, len(event_type))
    browse_product = sessions["browse_product"]
    return {
        "event_id": _text((event_ids, None)),
        "session_id": _text((session_ids, event_session)),
        "user_id": _text((user_ids, session_user[event_session])),
        "page_url": _text(
            (_prefixed(f"{SITE}/product/", product_ids), browse_product),
            (_prefixed(f"{SITE}/checkout/", order_ids), None),
            (_prefixed(f"{SITE}/shipping/", order_ids[shipped]), None),
        ),
        "created_at": _timestamps(event_time),
        "event_type": _pick(EVENT_TYPES, event_type),
        "order_id": _text((None, n_browse), (order_ids, None), (order_ids, shipped)),
        "product_id": _text((product_ids, browse_product), (None, n_orders + n_shipped)),
    }


def _users(rng, user_ids, address_ids, session_user, session_start, hi):
    n = len(user_ids)
    first_seen = np.full(n, hi, dtype=np.int64)
    np.minimum.at(first_seen, session_user, session_start)
    created = first_seen - rng.integers(HOUR, 365 * DAY, size=n)
    updated = created + (rng.random(n) * (hi - created + 1)).astype(np.int64)
    first = rng.integers(len(FIRST_NAMES), size=n)
    last = rng.integers(len(LAST_NAMES), size=n)
    firsts, lasts = pa.array(FIRST_NAMES), pa.array(LAST_NAMES)
    email = pc.binary_join_element_wise(
        pc.utf8_lower(pc.take(firsts, first)),
        ".",
        pc.utf8_lower(pc.take(lasts, last)),
        pc.cast(pa.array(np.arange(1, n + 1)), pa.string()),
        "@",
        pc.take(pa.array(EMAIL_DOMAINS), rng.integers(len(EMAIL_DOMAINS), size=n)),
        "",
    )
    phone = pc.binary_join_element_wise(
        _digits(rng.integers(201, 990, size=n), 3),
        _digits(rng.integers(100, 1000, size=n), 3),
        _digits(rng.integers(0, 10000, size=n), 4),
        "-",
    )
    return {
        "user_id": _text((user_ids, None)),
        "first_name": pc.take(firsts, first),
        "last_name": pc.take(lasts, last),
        "email": email,
        "phone_number": phone,
        "created_at": _timestamps(created),
        "updated_at": _timestamps(updated),
        "address_id": _text((address_ids, None)),
    }


def _addresses(rng, address_ids):
    n = len(address_ids)
    number = np.floor(10 ** rng.uniform(0, 5, size=n)).astype(np.int64)  # 1 to 5 digits
    street = pc.binary_join_element_wise(
        pc.cast(pa.array(number), pa.string()),
        pc.take(pa.array(STREET_NAMES), rng.integers(len(STREET_NAMES), size=n)),
        pc.take(pa.array(STREET_SUFFIXES), rng.integers(len(STREET_SUFFIXES), size=n)),
        " ",
    )
    weights = np.array(list(STATES.values()))
    return {
        "address_id": _text((address_ids, None)),
        "address": street,
        "zipcode": pa.array(rng.integers(1001, 99951, size=n), pa.int32()),  # leading zeros lost
        "state": pc.take(pa.array(list(STATES)), rng.choice(len(STATES), size=n, p=weights / weights.sum())),
        "country": pa.array(np.full(n, "United States")),
    }


def _uuids(rng, n: int) -> np.ndarray:
    """`n` random version-4 UUIDs as text, one per row of an (n, 36) uint8 matrix."""
    raw = np.frombuffer(rng.bytes(16 * n), dtype=np.uint8).reshape(n, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    hexed = _HEX_PAIRS[raw].view(np.uint8).reshape(n, 32)
    text = np.empty((n, 36), dtype=np.uint8)
    text[:, [8, 13, 18, 23]] = ord("-")
    for (start, stop), (lo, hi) in zip(_UUID_GROUPS, _HEX_GROUPS):
        text[:, start:stop] = hexed[:, lo:hi]
    return text


def _prefixed(prefix: str, text: np.ndarray | pa.Array) -> np.ndarray | pa.Array:
    """Each row of a byte matrix (or each Arrow string) after the same prefix."""
    if isinstance(text, pa.Array):
        return pc.binary_join_element_wise(prefix, text, "")
    head = np.frombuffer(prefix.encode(), dtype=np.uint8)
    return np.hstack([np.broadcast_to(head, (len(text), len(head))), text])


def _text(*blocks, valid=None) -> pa.Array:
    """An Arrow string column written block by block from fixed-width byte matrices.

    Each block is (matrix, index): the matrix's rows picked by `index` (all rows if None), or
    (None, count) for that many nulls. With `valid`, the blocks' values fill the rows where
    `valid` is true, in order, and the other rows are null. A block's matrix may also be an
    Arrow string array (see _id_text), without `valid`.
    """
    if any(isinstance(table, pa.Array) for table, _ in blocks):
        return _arrow_text(blocks)
    counts = [index if table is None else len(table if index is None else index) for table, index in blocks]
    widths = [0 if table is None else table.shape[1] for table, _ in blocks]
    lengths = np.repeat(np.array(widths, dtype=np.int64), counts)
    present = None if all(table is not None for table, _ in blocks) else lengths > 0
    if valid is not None:
        lengths = np.zeros(len(valid), dtype=np.int64)
        lengths[valid] = np.repeat(np.array(widths, dtype=np.int64), counts)
        if present is not None:
            valid = valid.copy()
            valid[valid] = present
        present = valid
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if len(blocks) == 1 and blocks[0][1] is None and blocks[0][0].flags.c_contiguous:
        data = blocks[0][0].reshape(-1)  # a whole matrix: its bytes are the data, no copy
        blocks = []
    else:
        data = np.empty(int(offsets[-1]), dtype=np.uint8)
    position = 0
    for (table, index), count, width in zip(blocks, counts, widths):
        if table is None:
            continue
        out = data[position : position + count * width].reshape(count, width)
        if index is None:
            out[...] = table
        else:
            np.take(table, index, axis=0, out=out)
        position += count * width
    if offsets[-1] <= _INT32_MAX:
        string_type, offsets = pa.string(), offsets.astype(np.int32)
    else:
        string_type = pa.large_string()
    bitmap = None if present is None else pa.py_buffer(np.packbits(present, bitorder="little"))
    return pa.Array.from_buffers(
        string_type,
        len(lengths),
        [bitmap, pa.py_buffer(offsets), pa.py_buffer(data)],
        null_count=0 if present is None else int(len(present) - np.count_nonzero(present)),
    )


def _arrow_text(blocks) -> pa.Array:
    """`_text` of blocks some of which hold Arrow strings: slower, but only appends to raw tables
    with ids of uneven width (not UUIDs) come here."""
    parts = []
    for table, index in blocks:
        if table is None:
            part = pa.nulls(index, pa.large_string())
        elif isinstance(table, pa.Array):
            part = table if index is None else table.take(pa.array(index))
        else:
            part = _text((table, index))
        parts.append(part.cast(pa.large_string()))
    return pa.concat_arrays(parts)


def _pick(values: list[str], index: np.ndarray, valid=None) -> pa.Array:
    """values[index] as Arrow strings, null where not `valid`."""
    return pc.take(pa.array(values, pa.string()), pa.array(index, mask=None if valid is None else ~valid))


def _timestamps(seconds: np.ndarray, valid=None) -> pa.Array:
    mask = None if valid is None else ~valid
    return pa.array(seconds.astype(np.int64) * 1_000_000, type=pa.timestamp("us"), mask=mask)


def _digits(numbers: np.ndarray, width: int) -> pa.Array:
    return pc.utf8_lpad(pc.cast(pa.array(numbers), pa.string()), width, "0")
