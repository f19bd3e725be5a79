"""When the chain runs by itself."""

import os

import dagster as dg

from greenery_orchestration.jobs import greenery_production


def production_schedule() -> dg.ScheduleDefinition:
    """GREENERY_SCHEDULE_CRON (default every 3 hours, 06:00 to 21:00) in GREENERY_SCHEDULE_TIMEZONE."""
    return dg.ScheduleDefinition(
        name="greenery_production_schedule",
        job=greenery_production,
        cron_schedule=os.environ.get("GREENERY_SCHEDULE_CRON", "0 6-21/3 * * *"),
        execution_timezone=os.environ.get("GREENERY_SCHEDULE_TIMEZONE", "UTC"),
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
