"""Ingest's scheduled jobs (on the business scheduler): the dead-letter table's retention."""

from __future__ import annotations

from datetime import timedelta
from typing import Final

from apscheduler.triggers.interval import IntervalTrigger

from ingest import queries
from packfleet.scheduled import JobContext, ScheduledJob
from packfleet.settings import Settings

PURGE_BATCH_ROWS: Final = 5000  # one short transaction each: never one huge DELETE


async def purge_dead_letters(context: JobContext) -> dict[str, int]:
    """Delete dead letters older than PACKFLEET_DEAD_LETTER_RETENTION_DAYS, a batch at a time.

    Safe twice and from two schedulers at once: each batch locks its rows with SKIP LOCKED, so two
    purges split the old rows between them and neither waits for the other.
    """
    older_than = timedelta(days=context.settings.dead_letter_retention_days)
    deleted = batches = 0
    async with context.pool.connection() as conn:
        await conn.set_autocommit(True)
        try:
            while True:
                n = await queries.purge_dead_letters(conn, older_than=older_than, limit=PURGE_BATCH_ROWS)
                deleted, batches = deleted + n, batches + 1
                if n < PURGE_BATCH_ROWS:
                    return {"deleted": deleted, "batches": batches}
        finally:
            await conn.set_autocommit(False)


def scheduled(settings: Settings) -> list[ScheduledJob]:
    return [
        ScheduledJob(id="ingest.purge_dead_letters", run=purge_dead_letters, trigger=IntervalTrigger(hours=1))
    ]
