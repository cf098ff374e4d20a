"""Scheduled jobs of the analytics domain (registered by packfleet.scheduler.domain_jobs)."""

from __future__ import annotations

from apscheduler.triggers.interval import IntervalTrigger

from api.analytics import health
from packfleet.scheduled import JobContext, ScheduledJob
from packfleet.settings import Settings


async def _battery_health(context: JobContext) -> object:
    return await health.run(context.pool, context.settings)


def scheduled(settings: Settings) -> list[ScheduledJob]:
    """Battery health from new telemetry, every `health_job_minutes`."""
    return [
        ScheduledJob(
            id="analytics.battery_health",
            run=_battery_health,
            trigger=IntervalTrigger(minutes=settings.health_job_minutes),
            misfire_grace_s=settings.health_job_minutes * 60,
        )
    ]
