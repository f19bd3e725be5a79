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
