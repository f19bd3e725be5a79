"""The seed's funnel steps reached, computed from raw events with pandas, step by step in plain
Python, independently of the SQL."""

from datetime import timedelta

import pandas as pd

STEPS = ["page_view", "add_to_cart", "checkout"]


def reached_steps(events: pd.DataFrame, path: str, window: timedelta | None = None) -> pd.DataFrame:
    """When each path (a session or a user) reached each step, ordered: the first page view,
    then the first add to cart at or after it, then the first checkout at or after that, all
    within `window` of the first page view when given."""
    rows = []
    for path_id, group in events.groupby(path):
        times = {step: sorted(group.loc[group.event_type == step, "created_at"]) for step in STEPS}
        if not times["page_view"]:
            continue
        started = reached = times["page_view"][0]
        rows.append((path_id, group.user_id.iloc[0], 1, started, started))
        for number, step in enumerate(STEPS[1:], start=2):
            later = [t for t in times[step] if t >= reached and (window is None or t <= started + window)]
            if not later:
                break
            reached = later[0]
            rows.append((path_id, group.user_id.iloc[0], number, started, reached))
    return pd.DataFrame(rows, columns=["path_id", "user_id", "step_number", "started_at", "reached_at"])
