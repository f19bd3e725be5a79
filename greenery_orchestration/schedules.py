"""When the chain runs by itself."""

import dagster as dg

from greenery_orchestration.jobs import greenery_production
from greenery_orchestration.settings import production_cron


def production_schedule() -> dg.ScheduleDefinition:
    """settings.production_cron: every 3 hours, 06:00 to 21:00 UTC, by default."""
    cron, timezone = production_cron()
    return dg.ScheduleDefinition(
        name="greenery_production_schedule",
        job=greenery_production,
        cron_schedule=cron,
        execution_timezone=timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
