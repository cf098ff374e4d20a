"""The finance jobs: declared for the business scheduler, daily at the configured local time, and
run through the scheduler's pool."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient

from api.finance import jobs
from packfleet import scheduler
from packfleet.db import open_pool
from tests.api.conftest import World
from tests.api.finance.conftest import age_warnings, loan
from tests.conftest import make_settings


def test_declared_daily_at_the_local_time() -> None:
    settings = make_settings("postgresql://unused/unused", finance_job_time="09:30")
    (daily,) = jobs.scheduled(settings)
    assert daily.id == "finance.auto_disable" and daily.id in {j.id for j in scheduler.domain_jobs(settings)}
    fire = daily.trigger.get_next_fire_time(None, datetime.now(UTC))
    local = fire.astimezone(ZoneInfo("Asia/Kolkata"))
    assert (local.hour, local.minute) == (9, 30)
    full = make_settings("postgresql://unused/unused", finance_disable_mode="full")
    assert [j.id for j in jobs.scheduled(full)] == ["finance.auto_disable", "finance.discharge_follow_up"]
    assert jobs.scheduled(make_settings("postgresql://unused/unused", finance_jobs_enabled=False)) == []


def test_the_job_runs_on_the_scheduler_pool(client: TestClient, world: World, database_url: str) -> None:
    made = loan(client, world, months_ago=1, days_ago=12, amount=1200, tenure=12, rate=0)
    settings = make_settings(database_url, finance_disable_grace_hours=0)
    (daily,) = jobs.scheduled(settings)

    async def go() -> object:
        async with open_pool(database_url, name="test-scheduler", max_size=2) as pool:
            return await daily.run(scheduler.JobContext(pool=pool, settings=settings))

    asyncio.run(go())  # warns
    age_warnings(world.conn, made["id"])
    result = asyncio.run(go())
    assert isinstance(result, dict) and result["disabled"] >= 1
    command = world.conn.execute(
        "SELECT reason, source FROM commands WHERE battery_id = %s", (made["battery"]["id"],)
    ).fetchone()
    assert command == {"reason": "emi_overdue", "source": "finance"}
