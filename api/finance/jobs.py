"""Scheduled jobs of the finance domain (registered by packfleet.scheduler.domain_jobs)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from api.finance import overdue
from api.finance.access import Scope
from packfleet.scheduled import JobContext, ScheduledJob
from packfleet.settings import Settings

FOLLOW_UP_MINUTES = 15


async def _auto_disable(context: JobContext) -> object:
    async with context.pool.connection() as conn:
        result = await overdue.run(
            conn,
            settings=context.settings,
            scope=Scope(),
            threshold_days=context.settings.finance_overdue_threshold_days,
            actor="job:finance.auto_disable",
        )
    return {
        "disabled": result["disabled_count"],
        "warned": result["warned_count"],
        "deferred": len(result["deferred"]),
    }


async def _discharge_follow_up(context: JobContext) -> object:
    async with context.pool.connection() as conn:
        return await overdue.follow_up(
            conn, settings=context.settings, actor="job:finance.discharge_follow_up"
        )


def scheduled(settings: Settings) -> list[ScheduledJob]:
    """The daily overdue run (warnings, disables) at `finance_job_time` in the business's time zone;
    in full-disable mode, every 15 minutes, cutting discharge of the disabled batteries now at rest."""
    if not settings.finance_jobs_enabled:
        return []
    hour, minute = (int(part) for part in settings.finance_job_time.split(":"))
    jobs = [
        ScheduledJob(
            id="finance.auto_disable",
            run=_auto_disable,
            trigger=CronTrigger(hour=hour, minute=minute, timezone=ZoneInfo(settings.finance_timezone)),
            misfire_grace_s=12 * 3600,  # a scheduler down at that time still runs it the same day
        )
    ]
    if settings.finance_disable_mode == "full":
        jobs.append(
            ScheduledJob(
                id="finance.discharge_follow_up",
                run=_discharge_follow_up,
                trigger=IntervalTrigger(minutes=FOLLOW_UP_MINUTES),
                misfire_grace_s=FOLLOW_UP_MINUTES * 60,
            )
        )
    return jobs
