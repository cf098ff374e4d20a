"""The business scheduler: every domain's scheduled jobs on one APScheduler 3.x scheduler.

It runs in a process of its own (`packfleet scheduler`; `packfleet up` runs it beside the other
services) so that a job's time is kept whether or not an API or control process is up, and so that
one slow job never delays an API request or a device acknowledgement. Control keeps its own
sub-second sweeps (retries, expiry) in the control process: they are part of talking to devices.

Like `cli.py` and `up.py`, this module is a composition root: it imports each domain's `jobs`
module and registers what `scheduled(settings)` returns there. Every job must be safe to run twice
and from two processes at once (the domains key their work, for example with an advisory lock or a
unique key), because a second scheduler can run during a deploy and a paused process resumes late.
A job missed while the process was paused or down runs once when it can (`coalesce`), if it is
still within its `misfire_grace_s`.

The outbox workers (SMS, lender calls; packfleet/outbox.py) run here too, each a loop of its own
beside the scheduler, from what the domains' `jobs` modules declare (`domain_outboxes`): they are
business deliveries that must go on whether or not an API process is up, they are woken by NOTIFY
rather than by a clock, and a slow gateway holds up no job and no request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from prometheus_client import Counter, Histogram

from api.analytics import jobs as analytics_jobs
from api.finance import jobs as finance_jobs
from api.messaging import jobs as messaging_jobs
from api.nbfc import jobs as nbfc_jobs
from api.telemetry import jobs as telemetry_jobs
from ingest import jobs as ingest_jobs
from packfleet.db import open_pool
from packfleet.metrics import serve_metrics
from packfleet.outbox import Outbox, run_workers

# Re-exported: the domains' jobs modules name them as scheduler.JobContext, scheduler.ScheduledJob.
from packfleet.scheduled import JobContext as JobContext
from packfleet.scheduled import ScheduledJob as ScheduledJob
from packfleet.settings import Settings

log = logging.getLogger(__name__)

JOB_RUNS = Counter("packfleet_scheduler_job_runs_total", "Scheduled job runs", ["job", "result"])
JOB_SECONDS = Histogram("packfleet_scheduler_job_seconds", "Scheduled job duration", ["job"])


def domain_jobs(settings: Settings) -> list[ScheduledJob]:
    """Every domain's jobs, as their `jobs` modules declare them for these settings."""
    jobs: list[ScheduledJob] = []
    jobs += telemetry_jobs.scheduled(settings)
    jobs += analytics_jobs.scheduled(settings)
    jobs += finance_jobs.scheduled(settings)
    jobs += nbfc_jobs.scheduled(settings)
    jobs += ingest_jobs.scheduled(settings)
    return jobs


def domain_outboxes(settings: Settings) -> list[Outbox]:
    """Every domain's outbox tables and their senders, as their `jobs` modules declare them."""
    return [*messaging_jobs.outboxes(settings), *nbfc_jobs.outboxes(settings)]


def _guarded(job: ScheduledJob, context: JobContext) -> Callable[[], Awaitable[None]]:
    """The job as the scheduler calls it: timed, counted, and logged instead of raised."""

    async def run() -> None:
        started = time.monotonic()
        try:
            result = await job.run(context)
        except Exception:
            JOB_RUNS.labels(job.id, "error").inc()
            log.exception("job failed", extra={"job": job.id})
            return
        finally:
            JOB_SECONDS.labels(job.id).observe(time.monotonic() - started)
        JOB_RUNS.labels(job.id, "ok").inc()
        log.info("job done", extra={"job": job.id, "result": result, "seconds": time.monotonic() - started})

    return run


def build_scheduler(jobs: Sequence[ScheduledJob], context: JobContext) -> AsyncIOScheduler:
    """A scheduler (UTC) with each job registered once under its id."""
    scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop(), timezone=UTC)
    for job in jobs:
        scheduler.add_job(
            _guarded(job, context),
            job.trigger,
            id=job.id,
            name=job.id,
            replace_existing=True,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=job.misfire_grace_s,
        )
    return scheduler


async def run(
    settings: Settings,
    stop: asyncio.Event,
    *,
    jobs: Sequence[ScheduledJob] | None = None,
    outboxes: Sequence[Outbox] | None = None,
) -> None:
    """Run the scheduled jobs and the outbox workers until `stop` is set."""
    serve_metrics(settings.metrics_port, settings.metrics_host)
    chosen_outboxes = list(outboxes) if outboxes is not None else domain_outboxes(settings)
    database_url = settings.require_database_url()
    async with open_pool(database_url, name="scheduler", max_size=4 + len(chosen_outboxes)) as pool:
        chosen = list(jobs) if jobs is not None else domain_jobs(settings)
        scheduler = build_scheduler(chosen, JobContext(pool=pool, settings=settings))
        scheduler.start()
        log.info("scheduler started", extra={"jobs": [j.id for j in chosen]})
        try:
            await run_workers(pool, database_url, chosen_outboxes, stop, poll_s=settings.outbox_poll_seconds)
            await stop.wait()
        finally:
            scheduler.shutdown(wait=False)
            log.info("scheduler stopped")
