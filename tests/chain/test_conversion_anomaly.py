"""Conversion anomaly alerts end to end: generated traffic, the chain run in this process, alerts
received by a real HTTP server. Normal days say nothing; a day whose checkout broke (`greenery
sample --conversion`) warns once it is complete, with numbers checked against the raw events, and
the warning holds nothing back: the run succeeds and publishes."""

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd

from greenery_orchestration import wap
from greenery_orchestration.assets.dbt import greenery_models
from greenery_orchestration.cli import main
from greenery_orchestration.rawdata.load_log import LOAD_LOG

CHECK = "fct_funnel_daily_conversion_within_trailing_range"
# Some 160 sessions a day add to cart: each day has the 100 (min_sessions) that make it judged.
SESSIONS_PER_DAY = "200"
# How far rounding to a tenth of a percent moves a share.
ROUNDING = 0.0005 + 1e-12


def _read(database: Path, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(database), read_only=True) as connection:
        return connection.execute(sql).df()


def _checkout_per_day(database: Path) -> pd.DataFrame:
    """From the raw events, without the models: per day a session started (its first page view),
    the sessions with an add to cart at or after it, and of those the sessions with a checkout at or
    after that add to cart; and the rate."""
    events = _read(database, "select session_id, event_type, created_at from raw.events")
    of_type = {kind: events[events.event_type == kind] for kind in ("page_view", "add_to_cart", "checkout")}
    viewed = of_type["page_view"].groupby("session_id").created_at.min().rename("viewed")
    adds = of_type["add_to_cart"].join(viewed, on="session_id")
    added = adds[adds.created_at >= adds.viewed].groupby("session_id").created_at.min().rename("added")
    checkouts = of_type["checkout"].join(added, on="session_id", how="inner")
    checked_out = set(checkouts.loc[checkouts.created_at >= checkouts.added, "session_id"])
    sessions = pd.DataFrame(added).join(viewed)
    sessions["checked_out"] = sessions.index.isin(checked_out)
    per_day = sessions.groupby(sessions.viewed.dt.date).agg(
        added=("checked_out", "size"), checked_out=("checked_out", "sum")
    )
    per_day["rate"] = per_day.checked_out / per_day.added
    return per_day


def _expected_range(per_day: pd.DataFrame, day: date) -> tuple[float, float]:
    """Mean -/+ 3 sd of the rates of the 14 days before `day` with 100 sessions or more at add to cart."""
    before = per_day[(per_day.index >= day - timedelta(days=14)) & (per_day.index < day) & (per_day.added >= 100)]
    mean, sd = before.rate.mean(), before.rate.std(ddof=1)
    return mean - 3 * sd, mean + 3 * sd


def _evaluations(instance: dg.DagsterInstance, run_id: str) -> dict[str, dg.AssetCheckEvaluation]:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    return {e.check_name: e for e in (r.event_log_entry.dagster_event.asset_check_evaluation_data for r in records)}


def _newest_production_run(instance: dg.DagsterInstance) -> dg.DagsterRun:
    (run,) = instance.get_runs(dg.RunsFilter(job_name="greenery_production"), limit=1)
    return run


def test_a_broken_checkout_warns_once_its_day_is_complete_and_normal_days_do_not(warehouse, alert_inbox):
    database = warehouse / "prod.duckdb"
    # Whole days ending the midnight before yesterday: a whole day and an hour or more fit after them.
    today = (datetime.now(UTC) - timedelta(hours=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    broken_day = (today - timedelta(days=1)).date()
    assert main(["sample", "--days", "10", "--sessions-per-day", SESSIONS_PER_DAY,
                 "--end", (today - timedelta(days=1)).isoformat()]) == 0
    # The newest event is a day old: --allow-stale makes that a warning, not the subject here.
    assert main(["run", "--allow-stale"]) == 0

    with dg.DagsterInstance.get() as instance:
        normal = _evaluations(instance, _newest_production_run(instance).run_id)[CHECK]
    assert normal.passed
    judged = _read(
        database, "select * from marts.fct_funnel_daily where is_complete_day order by session_date desc, step_number"
    )
    # The newest complete day was judged against a range (else passing says nothing), and was normal.
    assert judged.expected_conversion_low.iloc[:3].notna().sum() == 2
    assert not judged.is_conversion_anomaly.any()
    assert all(CHECK not in alert["message"] for alert in alert_inbox.received)
    alert_inbox.received.clear()

    # The next day and today's first hour (so the day is complete), with 30% of the usual
    # checkouts: 25 hours whatever the time of day, so the same rows every run (appending up to
    # now drew other rows each hour, and some hours made a normal step look anomalous too).
    assert main(["sample", "--append", "--hours", "25", "--sessions-per-day", SESSIONS_PER_DAY,
                 "--conversion", "checkout=0.3"]) == 0
    assert main(["run"]) == 0

    with dg.DagsterInstance.get() as instance:
        run = _newest_production_run(instance)
        warned = _evaluations(instance, run.run_id)[CHECK]
        published = instance.get_latest_materialization_event(wap.PUBLISH_KEY)
    assert (warned.passed, warned.severity) == (False, dg.AssetCheckSeverity.WARN)
    # The check is blocking, as the translator makes every dbt test; warning, it holds nothing back.
    (spec,) = [spec for spec in greenery_models.check_specs if spec.name == CHECK]
    assert spec.blocking
    assert published.run_id == run.run_id and run.status == dg.DagsterRunStatus.SUCCESS

    (alert,) = [alert for alert in alert_inbox.received if CHECK in alert["message"]]
    assert alert["title"] == "[greenery] greenery_production warning"
    line = re.search(
        rf"- WARN check {CHECK} on marts/fct_funnel_daily: (\d+) failing row\(s\), threshold 0: "
        rf"checkout on {broken_day}: (\d+\.\d)% of add_to_cart sessions, "
        r"expected (-?\d+\.\d)%–(-?\d+\.\d)% \(mean ± 3 sd of the 14 days before\)",
        alert["message"],
    )
    assert line, alert["message"]
    observed, low, high = (float(number) / 100 for number in line.groups()[1:])
    per_day = _checkout_per_day(database)
    assert abs(observed - per_day.rate[broken_day]) <= ROUNDING
    expected_low, expected_high = _expected_range(per_day, broken_day)
    assert abs(low - expected_low) <= ROUNDING and abs(high - expected_high) <= ROUNDING
    assert observed < low < high
    assert 0.15 < observed < 0.35  # 30% of the usual 77%

    # What readers now see is this run's build, the broken day flagged.
    flagged = _read(database, f"select funnel_step from marts.fct_funnel_daily where session_date = '{broken_day}' "
                              "and is_conversion_anomaly")
    assert "checkout" in flagged.funnel_step.tolist()
    assert _read(database, f"select source from {LOAD_LOG} order by loaded_at desc limit 1").source[0].startswith(
        f"sample --append seed=42 sessions-per-day={SESSIONS_PER_DAY} conversion=checkout=0.3 from ")
