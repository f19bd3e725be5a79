"""The funnel analytics marts on the real course data, each number computed here from the CSVs
with pandas, step by step in plain Python, independently of the SQL."""

import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from greenery_orchestration.assets.dbt import relisted_test_accounts
from greenery_orchestration.settings import DBT_PROJECT_DIR
from tests.funnels import STEPS, reached_steps

# The one account the course data's drop-off comes from: 219 of its 578 sessions.
HIGH_VOLUME_USER = "d1f08820-32e6-4a31-abba-5aa533bc15a9"


@pytest.fixture(scope="module")
def mart(course_run):
    def read(sql: str) -> pd.DataFrame:
        with duckdb.connect(str(course_run.warehouse / "prod.duckdb"), read_only=True) as connection:
            return connection.execute(sql).df()

    return read


@pytest.fixture(scope="module")
def events(course_data) -> pd.DataFrame:
    frame = pd.read_csv(course_data / "events.csv", parse_dates=["created_at"])
    return frame[frame.event_type != "package_shipped"]


def _rates(counts: list[int]) -> tuple[list, list]:
    previous = [None] + [b / a for a, b in zip(counts, counts[1:])]
    start = [c / counts[0] for c in counts]
    return previous, start


def test_fct_funnel_is_ordered_and_nested_and_still_the_seed_funnel(mart, events):
    reached = reached_steps(events, "session_id")
    counts = [int((reached.step_number == n).sum()) for n in (1, 2, 3)]
    actual = mart("select sessions, conversion_from_previous, conversion_from_start from marts.fct_funnel order by step_number")

    assert counts == [578, 467, 361]
    assert actual.sessions.tolist() == counts
    previous, start = _rates(counts)
    assert actual.conversion_from_previous.tolist()[1:] == pytest.approx(previous[1:])
    assert actual.conversion_from_start.tolist() == pytest.approx(start)


def test_fct_funnel_users_counts_users_within_7_days_of_their_first_page_view(mart, events):
    reached = reached_steps(events, "user_id", window=timedelta(days=7))
    counts = [int((reached.step_number == n).sum()) for n in (1, 2, 3)]
    actual = mart("select step_number, funnel_step, users, conversion_from_previous, drop_off_from_previous, "
                  "conversion_from_start from marts.fct_funnel_users order by step_number")

    assert counts == [124, 124, 124]  # on the course data every user who browsed bought within the week
    assert actual.funnel_step.tolist() == STEPS
    assert actual.users.tolist() == counts
    assert actual.conversion_from_start.tolist() == pytest.approx(_rates(counts)[1])


def test_fct_funnel_steps_holds_every_declared_funnel(mart):
    steps = mart("select funnel_name, counting_unit, step_number, units from marts.fct_funnel_steps order by 1, 3")
    sessions = mart("select sessions from marts.fct_funnel order by step_number").sessions.tolist()
    users = mart("select users from marts.fct_funnel_users order by step_number").users.tolist()

    assert steps.funnel_name.unique().tolist() == ["sessions", "users_7_days"]
    assert steps[steps.funnel_name == "sessions"].units.tolist() == sessions
    assert steps[steps.funnel_name == "users_7_days"].units.tolist() == users
    assert steps.groupby("funnel_name").counting_unit.first().to_dict() == {"sessions": "session", "users_7_days": "user"}


def test_fct_funnel_time_to_convert_from_each_steps_first_event(mart, events):
    reached = reached_steps(events, "session_id").pivot(index="path_id", columns="step_number", values="reached_at")
    actual = mart("select * from marts.fct_funnel_time_to_convert").set_index(["from_step", "to_step"])

    assert len(actual) == 3
    for first, second in [(1, 2), (2, 3), (1, 3)]:
        seconds = (reached[second] - reached[first]).dropna().dt.total_seconds().to_numpy()
        row = actual.loc[(STEPS[first - 1], STEPS[second - 1])]
        assert row.conversions == len(seconds)
        assert row.avg_seconds == pytest.approx(seconds.mean())
        assert row.median_seconds == pytest.approx(np.median(seconds))
        assert row.p90_seconds == pytest.approx(np.percentile(seconds, 90))  # linear, as percentile_cont
    assert actual.loc[("page_view", "add_to_cart")].median_seconds == 83  # seconds, on the course data


def test_dim_users_flags_exactly_the_account_far_outside_the_rest(mart, events):
    sessions_per_user = events.groupby("user_id").session_id.nunique()
    flagged = mart("select user_id, sessions from marts.dim_users where is_high_volume_user")
    counted = mart("select user_id, sessions from marts.dim_users where sessions > 0")

    assert sessions_per_user.median() == 3
    assert flagged.user_id.tolist() == [HIGH_VOLUME_USER]
    assert flagged.sessions.tolist() == [219]
    assert dict(zip(counted.user_id, counted.sessions)) == sessions_per_user.to_dict()
    assert mart("select count(*) as n from marts.dim_users where is_test_account").n[0] == 0  # the seed ships empty


def test_fct_funnel_breakdown_by_buyer_type_state_and_volume(mart, events, course_data):
    reached = reached_steps(events, "session_id")
    orders = pd.read_csv(course_data / "orders.csv", parse_dates=["created_at"])
    users = pd.read_csv(course_data / "users.csv").merge(pd.read_csv(course_data / "addresses.csv"), on="address_id", how="left")
    first_order = orders.groupby("user_id").created_at.min()
    starts = reached[reached.step_number == 1].set_index("path_id")
    per_session = pd.DataFrame({
        "buyer_type": [
            "returning_buyer" if user in first_order and first_order[user] < started else "new_buyer"
            for user, started in zip(starts.user_id, starts.started_at)
        ],
        "state": starts.user_id.map(users.set_index("user_id").state).fillna("unknown").to_numpy(),
        "is_high_volume_user": np.where(starts.user_id == HIGH_VOLUME_USER, "true", "false"),
    }, index=starts.index)
    actual = mart("select * from marts.fct_funnel_breakdown").set_index(["dimension", "dimension_value", "step_number"])

    for dimension in per_session.columns:
        for value, sessions in per_session.groupby(dimension).groups.items():
            counts = [int(reached[(reached.step_number == n) & reached.path_id.isin(sessions)].shape[0]) for n in (1, 2, 3)]
            previous, start = _rates(counts)
            for n in (1, 2, 3):
                row = actual.loc[(dimension, value, n)]
                assert row.sessions == counts[n - 1], (dimension, value, n)
                assert row.conversion_from_start == pytest.approx(start[n - 1])
    volume = actual.loc["is_high_volume_user"].sessions
    # The whole drop-off is one account: the other users' sessions all convert.
    assert volume.loc[("false", 3)] == volume.loc[("false", 1)] == 359
    assert [volume.loc[("true", n)] for n in (1, 2, 3)] == [219, 108, 2]
    assert set(actual.index.get_level_values(0)) == {"buyer_type", "state", "is_high_volume_user"}


def test_fct_product_funnel_counts_ordered_steps_and_abandoned_carts(mart, events, course_data):
    items = pd.read_csv(course_data / "order_items.csv")
    products = pd.read_csv(course_data / "products.csv").set_index("product_id")
    counts = {product: [0, 0, 0, 0] for product in products.index}  # viewed, added, purchased, abandoned
    for (session, product), group in events[events.product_id.notna()].groupby(["session_id", "product_id"]):
        views = sorted(group.loc[group.event_type == "page_view", "created_at"])
        if not views:
            continue
        counts[product][0] += 1
        adds = sorted(t for t in group.loc[group.event_type == "add_to_cart", "created_at"] if t >= views[0])
        if not adds:
            continue
        counts[product][1] += 1
        session_events = events[events.session_id == session]
        checkouts = session_events[(session_events.event_type == "checkout") & (session_events.created_at >= adds[0])]
        bought = items[items.order_id.isin(checkouts.order_id) & (items.product_id == product)]
        counts[product][2 if len(bought) else 3] += 1
    actual = mart("select * from marts.fct_product_funnel").set_index("product_id")

    for product, (viewed, added, purchased, abandoned) in counts.items():
        row = actual.loc[product]
        assert (row.sessions_viewed, row.sessions_added_to_cart, row.sessions_purchased) == (viewed, added, purchased)
        assert row.sessions_abandoned_cart == abandoned
        assert row.abandoned_cart_value == pytest.approx(abandoned * products.price[product])
    assert actual.abandoned_cart_value.sum() > 0


def test_fct_funnel_daily_has_every_day_and_trailing_week(mart, events):
    reached = reached_steps(events, "session_id")
    reached["day"] = reached.started_at.dt.tz_localize(None).dt.normalize()
    daily = mart("select * from marts.fct_funnel_daily order by session_date, step_number")
    days = pd.date_range(reached.day.min(), reached.day.max(), freq="D")

    assert sorted(set(daily.session_date)) == list(days)
    for step in (1, 2, 3):
        per_day = reached[reached.step_number == step].groupby("day").size().reindex(days, fill_value=0)
        rows = daily[daily.step_number == step]
        assert rows.sessions.tolist() == per_day.tolist()
        assert rows.sessions_7d.tolist() == per_day.rolling(7, min_periods=1).sum().astype(int).tolist()
    # Three days of data: too little history for a range, and only the newest day is incomplete.
    assert daily.expected_conversion_low.isna().all()
    assert not daily.is_conversion_anomaly.any()
    assert daily.groupby("session_date").is_complete_day.first().tolist() == [True, True, False]


def test_a_funnel_declared_in_yaml_and_a_listed_test_account(course_run, events, tmp_path):
    """A third funnel is a few lines of vars (here: any order, counted per user, within a session),
    and an account listed in the seed test_accounts leaves every funnel, by the full refresh the
    listing calls for: the paths already built keep counting it otherwise."""
    project = tmp_path / "dbt_project"
    shutil.copytree(DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs"))
    tester = events.user_id.value_counts().index[1]  # a real user with sessions, not the high-volume one
    (project / "seeds" / "test_accounts.csv").write_text(f"user_id,reason\n{tester},QA account\n")
    warehouse = tmp_path / "warehouse"
    warehouse.mkdir()
    shutil.copy(course_run.warehouse / "prod.duckdb", warehouse / "prod.duckdb")
    funnels = (
        "{funnels: {sessions: {steps: [page_view, add_to_cart, checkout]}, "
        "carts_any_order: {steps: [add_to_cart, page_view], order: any, window: session, unit: user}}}"
    )
    dbt = Path(sys.executable).with_name("dbt")

    def build(*flags: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(dbt), "build", "--exclude", "resource_type:snapshot", "--vars", funnels,
             "--project-dir", str(project), "--profiles-dir", str(project), *flags],
            env={**os.environ, "GREENERY_WAREHOUSE_DIR": str(warehouse)},
            capture_output=True, text=True, timeout=600,
        )

    def tester_sessions_in_funnel() -> int:
        with duckdb.connect(str(warehouse / "prod.duckdb"), read_only=True) as connection:
            return connection.execute(
                "select count(*) from intermediate.int_funnel_steps__reached where funnel_name = 'sessions' "
                "and step_number = 1 and user_id = ?", [tester]).fetchone()[0]

    with duckdb.connect(str(warehouse / "prod.duckdb"), read_only=True) as connection:
        reason = relisted_test_accounts(lambda sql: connection.execute(sql).df(), project / "seeds" / "test_accounts.csv")
    assert reason == f"The test accounts of test_accounts.csv differ from staging.test_accounts (newly listed: {tester})"
    # No new events: an incremental build rebuilds none of the tester's paths, and the funnel's
    # reconciliation with the raw events (which leave the tester out) fails.
    incremental = build()
    viewed = events[(events.user_id == tester) & (events.event_type == "page_view")]
    assert incremental.returncode == 1
    assert "Failure in test fct_funnel_page_view_sessions_reconcile_with_raw_events" in incremental.stdout
    assert tester_sessions_in_funnel() == viewed.session_id.nunique() > 0
    refreshed = build("--full-refresh")  # what the models step runs when relisted_test_accounts gives a reason
    assert refreshed.returncode == 0, refreshed.stdout[-3000:]
    assert tester_sessions_in_funnel() == 0

    customers = events[events.user_id != tester]
    sessions = reached_steps(customers, "session_id")
    per_session = customers.groupby("session_id").agg(user_id=("user_id", "first"), types=("event_type", set))
    users_with = [
        per_session[per_session.types.map(lambda types: steps <= types)].user_id.nunique()
        for steps in ({"add_to_cart"}, {"add_to_cart", "page_view"})
    ]
    with duckdb.connect(str(warehouse / "prod.duckdb"), read_only=True) as connection:
        steps = connection.execute("select funnel_name, step_number, units from marts.fct_funnel_steps order by 1, 2").df()
        flagged = connection.execute("select user_id from marts.dim_users where is_test_account").df()

    assert steps[steps.funnel_name == "sessions"].units.tolist() == [int((sessions.step_number == n).sum()) for n in (1, 2, 3)]
    assert steps[steps.funnel_name == "sessions"].units.iloc[0] < 578  # the tester's sessions are gone
    assert steps[steps.funnel_name == "carts_any_order"].units.tolist() == users_with
    assert flagged.user_id.tolist() == [tester]


@pytest.mark.parametrize(("setting", "refusal"), [
    ("window: -5", "funnel carts: window must be `session` or a number of minutes, not -5"),
    ("unit: visitor", "funnel carts: unit must be one of session, user, not visitor"),
])
def test_a_funnel_declared_wrong_is_refused_with_its_name_and_setting(tmp_path, setting, refusal):
    funnels = "{funnels: {carts: {steps: [add_to_cart, checkout], " + setting + "}}}"
    compiled = subprocess.run(
        [str(Path(sys.executable).with_name("dbt")), "compile", "--select", "int_funnel_steps__reached",
         "--vars", funnels, "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
         "--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path)],
        env={**os.environ, "GREENERY_WAREHOUSE_DIR": str(tmp_path)}, capture_output=True, text=True, timeout=300,
    )
    assert compiled.returncode == 2  # dbt: an error, not a failing test
    assert refusal in compiled.stdout, compiled.stdout[-3000:]
