"""Raw events delivered in three slices, the way late and boundary-spanning data really arrives."""

from dataclasses import dataclass
from datetime import timedelta

import pandas as pd
import pyarrow as pa


@dataclass
class Slices:
    deliveries: list[pa.Table]
    split_session_id: str  # has events in the first and in the second delivery
    late_event_id: str  # happened before the second delivery's newest event, delivered in the third


def sliced_events(events: pa.Table) -> Slices:
    frame = events.to_pandas().sort_values("created_at", kind="stable").reset_index(drop=True)
    second_cut = frame["created_at"].quantile(0.75)
    sessions = frame[frame.event_type != "package_shipped"].groupby("session_id")["created_at"].agg(["min", "max"])
    # The first cut falls in the middle of the multi-event session that starts nearest before
    # 40% of the events, so that session is delivered in two parts.
    spanning = sessions[(sessions["max"] > sessions["min"]) & (sessions["min"] <= frame["created_at"].quantile(0.4))]
    split_session = spanning["min"].idxmax()
    first_cut = spanning.loc[split_session, "min"] + (spanning.loc[split_session, "max"] - spanning.loc[split_session, "min"]) / 2

    delivery = pd.Series(2, index=frame.index)
    delivery[frame.created_at < first_cut] = 0
    delivery[(frame.created_at >= first_cut) & (frame.created_at < second_cut)] = 1
    # Late, but within the lookback: an hour before the second delivery's newest event.
    late_candidates = frame[(delivery == 1) & (frame.created_at < second_cut - timedelta(hours=1))
                            & (frame.event_type == "page_view")]
    late = late_candidates.index[-1]
    delivery[late] = 2
    deliveries = [pa.Table.from_pandas(frame[delivery == d], schema=events.schema, preserve_index=False)
                  for d in range(3)]
    return Slices(deliveries, split_session, frame.loc[late, "event_id"])


@dataclass
class Deliveries:
    """Every raw table delivered with the events' slices, as a shop's systems deliver them: half the
    orders (with their items) and new users one delivery after the events that name them, and an order
    first delivered `preparing` that has shipped by the last delivery (its row updated in place)."""

    rows: list[dict[str, pa.Table]]  # per delivery, the rows each raw table gets
    changed_order: pa.Table  # the order's row as the last delivery updates it
    late_order_id: str  # named by a checkout in the first delivery, delivered in the second
    late_user_id: str  # has events in the first delivery, delivered in the second


def sliced_tables(tables: dict[str, pa.Table], slices: Slices) -> Deliveries:
    last = len(slices.deliveries) - 1
    first_seen = {}  # the delivery that first names an id
    for number, delivery in enumerate(slices.deliveries):
        frame = delivery.to_pandas()
        for column in ("user_id", "order_id"):
            for named in frame[column].dropna().unique():
                first_seen.setdefault((column, named), number)

    def later(column: str, ids: pd.Series) -> pd.Series:
        """Every other id one delivery after the events that first name it, the rest with them."""
        seen = ids.map(lambda named: first_seen.get((column, named), 0))
        return (seen + (ids.index % 2 == 0)).clip(upper=last)

    orders, users = tables["orders"].to_pandas(), tables["users"].to_pandas()
    order_delivery = later("order_id", orders.order_id)
    user_delivery = later("user_id", users.user_id)
    item_delivery = tables["order_items"].to_pandas().order_id.map(dict(zip(orders.order_id, order_delivery)))
    by_table = {"orders": order_delivery, "users": user_delivery, "order_items": item_delivery}

    # An order delivered before the last delivery, shipped by then: first seen still preparing.
    shipped = orders[(order_delivery < last) & (orders.status == "shipped")]
    changed = shipped.index[-1]
    first_version = orders.copy()
    first_version.loc[changed, ["status", "tracking_id", "shipping_service", "estimated_delivery_at"]] = (
        "preparing", None, None, pd.NaT)

    rows = []
    for number, events in enumerate(slices.deliveries):
        delivery = {"events": events}
        for table, rows_of in tables.items():
            if table == "events":
                continue
            if table in by_table:
                frame = first_version if table == "orders" else rows_of.to_pandas()
                rows_of = pa.Table.from_pandas(frame[by_table[table] == number], schema=rows_of.schema, preserve_index=False)
            elif number:
                continue  # the catalogue and addresses: all in the first delivery
            delivery[table] = rows_of
        rows.append(delivery)
    late_orders = orders[(order_delivery == 1) & orders.order_id.map(lambda o: first_seen.get(("order_id", o)) == 0)]
    late_users = users[(user_delivery == 1) & users.user_id.map(lambda u: first_seen.get(("user_id", u)) == 0)]
    return Deliveries(
        rows,
        pa.Table.from_pandas(orders.loc[[changed]], schema=tables["orders"].schema, preserve_index=False),
        late_orders.order_id.iloc[0],
        late_users.user_id.iloc[0],
    )
