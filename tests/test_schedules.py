"""The production schedule, evaluated through Dagster's testing API."""

import itertools
from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg
from dagster._utils.schedules import cron_string_iterator

from greenery_orchestration.schedules import production_schedule


def test_by_default_every_three_hours_from_six_to_twenty_one_and_requests_the_production_job():
    schedule = production_schedule()

    assert schedule.cron_schedule == "0 6-21/3 * * *"
    assert schedule.execution_timezone == "UTC"
    # The ticks as Dagster's scheduler computes them, over one day.
    start = datetime(2026, 11, 25, tzinfo=ZoneInfo("UTC")).timestamp()
    ticks = itertools.islice(cron_string_iterator(start, schedule.cron_schedule, "UTC"), 7)
    assert [tick.hour for tick in ticks] == [6, 9, 12, 15, 18, 21, 6]
    context = dg.build_schedule_context(scheduled_execution_time=datetime(2026, 11, 25, 9, tzinfo=ZoneInfo("UTC")))
    (request,) = schedule.evaluate_tick(context).run_requests
    assert schedule.job_name == "greenery_production"
    assert request.job_name in (None, "greenery_production")  # None: the schedule's own job
    assert request.tags["dagster/schedule_name"] == "greenery_production_schedule"


def test_cron_and_timezone_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("GREENERY_SCHEDULE_CRON", "30 7 * * 1-5")
    monkeypatch.setenv("GREENERY_SCHEDULE_TIMEZONE", "Europe/Amsterdam")

    schedule = production_schedule()

    assert schedule.cron_schedule == "30 7 * * 1-5"
    assert schedule.execution_timezone == "Europe/Amsterdam"
