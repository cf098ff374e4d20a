"""The NBFC domain's outbox worker and jobs (registered by packfleet.scheduler)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from apscheduler.triggers.interval import IntervalTrigger

from api.nbfc import queries
from api.nbfc.client import nbfc_outbox
from packfleet.outbox import Outbox
from packfleet.scheduled import JobContext, ScheduledJob
from packfleet.settings import Settings


def outboxes(settings: Settings) -> list[Outbox]:
    return [nbfc_outbox(settings)]


async def _forget_signatures(context: JobContext) -> object:
    """Signatures older than twice the tolerance cannot come back (their timestamp is stale)."""
    before = datetime.now(UTC) - timedelta(seconds=2 * context.settings.nbfc_webhook_tolerance_s)
    async with context.pool.connection() as conn, conn.transaction():
        return {"forgotten": await queries.forget_signatures(conn, before=before)}


def scheduled(settings: Settings) -> list[ScheduledJob]:
    return [
        ScheduledJob(
            id="nbfc.forget_webhook_signatures", run=_forget_signatures, trigger=IntervalTrigger(hours=1)
        )
    ]
