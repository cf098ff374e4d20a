"""Ingest's scheduled jobs: dead letters are kept for their retention, then purged in batches."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from ingest import jobs
from packfleet import scheduler
from packfleet.db import open_pool
from tests.conftest import make_settings
from tests.ingest.conftest import scalar


def test_old_dead_letters_are_purged_in_batches_by_two_schedulers_at_once(
    fresh_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = fresh_database_url
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """INSERT INTO dead_letters (topic, reason, received_at, payload, payload_size)
               SELECT 'batteries/B/telemetry', 'invalid_json',
                      now() - interval '15 days' - n * interval '1 s', '\\x7b'::bytea, 1
               FROM generate_series(1, 12000) n"""
        )
        conn.execute(
            """INSERT INTO dead_letters (topic, reason, received_at, payload, payload_size)
               SELECT 'batteries/B/telemetry', 'invalid_json', now() - interval '13 days', '\\x7b'::bytea, 1
               FROM generate_series(1, 50)"""
        )
    monkeypatch.setattr(jobs, "PURGE_BATCH_ROWS", 1000)
    settings = make_settings(url, dead_letter_retention_days=14)
    [job] = [j for j in scheduler.domain_jobs(settings) if j.id == "ingest.purge_dead_letters"]

    async def purge_from_two_schedulers() -> list[dict[str, int]]:
        async with (
            open_pool(url, name="scheduler-a", max_size=1) as a,
            open_pool(url, name="scheduler-b", max_size=1) as b,
        ):
            return list(
                await asyncio.gather(
                    job.run(scheduler.JobContext(pool=a, settings=settings)),
                    job.run(scheduler.JobContext(pool=b, settings=settings)),
                )
            )

    results = asyncio.run(purge_from_two_schedulers())
    assert sum(r["deleted"] for r in results) == 12_000 and all(r["batches"] >= 1 for r in results)
    assert sum(r["batches"] for r in results) >= 12  # a thousand at a time, never one huge DELETE
    assert scalar(url, "SELECT count(*) FROM dead_letters") == 50  # within the retention: kept
    again = asyncio.run(purge_from_two_schedulers())
    assert [r["deleted"] for r in again] == [0, 0]
