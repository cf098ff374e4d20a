"""Scheduled jobs of the analytics domain (registered by packfleet.scheduler.domain_jobs)."""

from __future__ import annotations

from apscheduler.triggers.interval import IntervalTrigger

from api.analytics import health
from packfleet import scheduler  # the module (it imports this one to register the jobs)
from packfleet.settings import Settings


async def _battery_health(context: scheduler.JobContext) -> object:
    return await health.run(context.pool, context.settings)


def scheduled(settings: Settings) -> list[scheduler.ScheduledJob]:
    """Battery health from new telemetry, every `health_job_minutes`."""
    return [
        scheduler.ScheduledJob(
            id="analytics.battery_health",
            run=_battery_health,
            trigger=IntervalTrigger(minutes=settings.health_job_minutes),
            misfire_grace_s=settings.health_job_minutes * 60,
        )
    ]
