"""The business scheduler: jobs run on their trigger, failures are counted, not raised."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from packfleet import scheduler
from tests.conftest import make_settings


def _count(job_id: str, result: str) -> float:
    value = scheduler.JOB_RUNS.labels(job_id, result)._value.get()
    return float(value)


def test_jobs_run_with_the_pool_and_failures_are_counted(database_url: str) -> None:
    seen: list[int] = []

    async def reads_the_database(context: scheduler.JobContext) -> int:
        async with context.pool.connection() as conn:
            row = await (await conn.execute("SELECT count(*) AS n FROM schema_migrations")).fetchone()
        seen.append(row["n"])
        return row["n"]

    async def fails(_: scheduler.JobContext) -> None:
        raise RuntimeError("boom")

    soon = DateTrigger(datetime.now(UTC) + timedelta(milliseconds=200))
    jobs = [
        scheduler.ScheduledJob("test.reads", reads_the_database, IntervalTrigger(seconds=0.2)),
        scheduler.ScheduledJob("test.fails", fails, soon),
    ]
    failed_before = _count("test.fails", "error")

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(scheduler.run(make_settings(database_url), stop, jobs=jobs))
        for _ in range(100):
            if len(seen) >= 2 and _count("test.fails", "error") > failed_before:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, timeout=10)

    asyncio.run(main())
    assert len(seen) >= 2 and seen[0] > 0
    assert _count("test.reads", "ok") >= 2
    assert _count("test.fails", "error") == failed_before + 1


def test_every_domain_job_has_a_unique_id(database_url: str) -> None:
    ids = [job.id for job in scheduler.domain_jobs(make_settings(database_url))]
    assert len(ids) == len(set(ids))
    assert all("." in job_id for job_id in ids)


def test_the_metrics_exporter_listens_where_the_settings_say() -> None:
    import socket
    import urllib.request

    from packfleet.metrics import serve_metrics
    from tests.services import free_port

    port = free_port()
    serve_metrics(port, "0.0.0.0")
    address = socket.gethostbyname(socket.gethostname())  # not loopback: reachable from outside too
    with urllib.request.urlopen(f"http://{address}:{port}/metrics", timeout=5) as answer:
        assert answer.status == 200 and b"python_info" in answer.read()
