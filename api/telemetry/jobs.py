"""Telemetry's scheduled jobs: the plain-PostgreSQL rollup refresh and retention (no-ops on TimescaleDB)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any

from apscheduler.triggers.interval import IntervalTrigger
from psycopg import AsyncConnection

from api.telemetry import rollups
from packfleet.scheduled import JobContext, ScheduledJob
from packfleet.settings import Settings


@asynccontextmanager
async def _autocommit(context: JobContext) -> AsyncIterator[AsyncConnection]:
    """A pooled connection in autocommit mode, so each chunk's transaction commits on its own."""
    async with context.pool.connection() as conn:
        await conn.set_autocommit(True)
        try:
            yield conn
        finally:
            await conn.set_autocommit(False)


async def refresh_rollups(context: JobContext) -> dict[str, Any]:
    async with _autocommit(context) as conn:
        return asdict(await rollups.refresh(conn))


async def prune_telemetry(context: JobContext) -> dict[str, Any]:
    settings = context.settings
    async with _autocommit(context) as conn:
        done = await rollups.prune(
            conn, keep=settings.telemetry_retention, batch=settings.telemetry_retention_batch_rows
        )
        return asdict(done)


def scheduled(settings: Settings) -> list[ScheduledJob]:
    return [
        ScheduledJob(
            id="telemetry.refresh_rollups",
            run=refresh_rollups,
            trigger=IntervalTrigger(seconds=settings.telemetry_rollup_refresh_seconds),
            misfire_grace_s=settings.telemetry_rollup_refresh_seconds,
        ),
        ScheduledJob(id="telemetry.retention", run=prune_telemetry, trigger=IntervalTrigger(hours=1)),
    ]
