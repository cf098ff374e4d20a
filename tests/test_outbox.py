"""The generic outbox (packfleet/outbox.py) on a table of the test's own, made by `table_ddl`."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from packfleet import outbox
from packfleet.db import open_pool
from packfleet.outbox import Outbox, PermanentError


@pytest.fixture
def table(db: psycopg.Connection) -> Iterator[str]:
    name = f"outbox_test_{uuid.uuid4().hex[:8]}"
    db.execute(outbox.table_ddl(name, "payload text NOT NULL"))
    yield name
    db.execute(f"DROP TABLE {name}")


def _queue(db: psycopg.Connection, table: str, *payloads: str, **columns: Any) -> list[int]:
    names = ", ".join(["payload", *columns])
    marks = ", ".join(["%s"] * (1 + len(columns)))
    return [
        db.execute(
            f"INSERT INTO {table} ({names}) VALUES ({marks}) RETURNING id",  # noqa: S608
            (p, *columns.values()),
        ).fetchone()["id"]
        for p in payloads
    ]


def _rows(db: psycopg.Connection, table: str) -> list[dict[str, Any]]:
    return db.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()  # noqa: S608


def _count(table: str, result: str) -> float:
    return float(outbox.OUTCOMES.labels(table, result)._value.get())


class Remote:
    """A sender that fails its first `fail` calls, and remembers each key it was given."""

    def __init__(self, fail: int = 0, error: type[Exception] = ConnectionError, hang: bool = False) -> None:
        self.fail, self.error, self.hang = fail, error, hang
        self.calls: list[tuple[str, str]] = []
        self.called = asyncio.Event()

    async def __call__(self, row: dict[str, Any]) -> str:
        self.calls.append((row["idempotency_key"], row["payload"]))
        self.called.set()
        if self.hang:
            await asyncio.sleep(3600)
        if self.fail:
            self.fail -= 1
            raise self.error("remote down")
        return f"R-{row['id']}"


def _box(table: str, remote: Remote, **kw: Any) -> Outbox:
    defaults: dict[str, Any] = {"retry_base_s": 0.05, "retry_max_s": 0.2, "lease_s": 30.0, "max_attempts": 5}
    return Outbox(table=table, sender=remote, sender_name="remote", **{**defaults, **kw})


async def _deliver_until_settled(url: str, box: Outbox, *, within: float = 10.0) -> None:
    async with open_pool(url, name="test-outbox", max_size=4) as pool:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            await outbox.deliver_due(pool, box)
            async with pool.connection() as conn:
                if (await outbox.queue_stats(conn, box))["depth"] == 0:
                    return
            await asyncio.sleep(0.05)
    raise AssertionError("rows still open")


def test_the_ddl_makes_an_outbox_and_a_table_without_its_columns_is_refused(
    database_url: str, db: psycopg.Connection, table: str
) -> None:
    async def check() -> None:
        async with open_pool(database_url, name="test-outbox") as pool:
            async with pool.connection() as conn:
                assert await outbox.missing_columns(conn, table) == set()
                assert "idempotency_key" in await outbox.missing_columns(conn, "dealers")
            with pytest.raises(RuntimeError, match="lacks the columns"):
                await outbox.run_workers(
                    pool, database_url, [_box("dealers", Remote())], asyncio.Event(), poll_s=1
                )

    asyncio.run(check())


def test_a_failing_remote_is_retried_with_backoff_then_sent_once(
    database_url: str, db: psycopg.Connection, table: str
) -> None:
    remote = Remote(fail=2)
    (row_id,) = _queue(db, table, "hello")
    before = (_count(table, "retried"), _count(table, "sent"))
    asyncio.run(_deliver_until_settled(database_url, _box(table, remote)))
    (row,) = _rows(db, table)
    assert (row["status"], row["attempts"], row["provider_message_id"], row["error"]) == (
        "sent",
        3,
        f"R-{row_id}",
        None,
    )
    assert row["provider"] == "remote" and row["sent_at"] is not None
    assert [key for key, _ in remote.calls] == [row["idempotency_key"]] * 3  # one key for every attempt
    assert (_count(table, "retried"), _count(table, "sent")) == (before[0] + 2, before[1] + 1)


def test_backoff_doubles_up_to_its_cap_with_jitter() -> None:
    box = _box("t", Remote(), retry_base_s=5, retry_max_s=60)
    waits = [box.backoff_s(n) for n in range(1, 7)]
    for wait, full in zip(waits, [5, 10, 20, 40, 60, 60], strict=True):
        assert 0.8 * full <= wait <= full


def test_out_of_attempts_or_refused_for_good_is_failed_and_counted(
    database_url: str, db: psycopg.Connection, table: str
) -> None:
    _queue(db, table, "down")
    failed_before = _count(table, "failed")
    asyncio.run(_deliver_until_settled(database_url, _box(table, Remote(fail=99), max_attempts=3)))
    (row,) = _rows(db, table)
    assert (row["status"], row["attempts"], row["error"]) == ("failed", 3, "ConnectionError: remote down")

    db.execute(f"DELETE FROM {table}")  # noqa: S608
    _queue(db, table, "refused")
    refusing = Remote(fail=1, error=PermanentError)
    asyncio.run(_deliver_until_settled(database_url, _box(table, refusing)))
    (row,) = _rows(db, table)
    assert (row["status"], row["attempts"], row["error"]) == ("failed", 1, "rejected: remote down")
    assert _count(table, "failed") == failed_before + 2


def test_a_row_past_send_before_is_given_up_without_sending(
    database_url: str, db: psycopg.Connection, table: str
) -> None:
    _queue(db, table, "late", send_before="2000-01-01T00:00:00Z")
    remote = Remote()
    asyncio.run(_deliver_until_settled(database_url, _box(table, remote)))
    (row,) = _rows(db, table)
    assert row["status"] == "failed" and row["error"].startswith("not sent before 2000-01-01")
    assert remote.calls == []


def test_a_claim_holds_the_row_until_its_lease_ends_and_a_stale_claim_records_nothing(
    database_url: str, db: psycopg.Connection, table: str
) -> None:
    (row_id,) = _queue(db, table, "once")
    box = _box(table, Remote(), lease_s=1.0)

    async def scenario() -> None:
        async with open_pool(database_url, name="test-outbox", max_size=2) as pool:
            async with pool.connection() as conn, conn.transaction():
                (first,) = await outbox.claim_due(conn, box, limit=10)  # then "crash": never sent
            async with pool.connection() as conn, conn.transaction():
                assert await outbox.claim_due(conn, box, limit=10) == []  # held by the lease
            await asyncio.sleep(1.1)
            async with pool.connection() as conn, conn.transaction():
                (second,) = await outbox.claim_due(conn, box, limit=10)
            assert second["idempotency_key"] == first["idempotency_key"]
            assert (first["attempts"], second["attempts"]) == (1, 2)
            async with pool.connection() as conn, conn.transaction():
                assert not await outbox.record_sent(conn, box, first, "late")  # fenced out
                assert await outbox.record_sent(conn, box, second, "R-2")

    asyncio.run(scenario())
    (row,) = _rows(db, table)
    assert (row["id"], row["status"], row["provider_message_id"]) == (row_id, "sent", "R-2")


def test_a_send_that_hangs_is_cut_at_half_the_lease_and_retried(
    database_url: str, db: psycopg.Connection, table: str
) -> None:
    _queue(db, table, "slow")
    box = _box(table, Remote(hang=True), lease_s=1.0, retry_base_s=30)

    async def once() -> outbox.Delivered:
        async with open_pool(database_url, name="test-outbox", max_size=2) as pool:
            return await outbox.deliver_due(pool, box)

    started = time.monotonic()
    done = asyncio.run(once())
    assert done.retried == 1 and time.monotonic() - started < 5
    (row,) = _rows(db, table)
    assert (row["status"], row["attempts"], row["error"]) == ("queued", 1, "TimeoutError")


def test_workers_wake_on_notify_long_before_their_poll(
    database_url: str, db: psycopg.Connection, table: str
) -> None:
    remote = Remote()

    async def scenario() -> float:
        stop = asyncio.Event()
        async with open_pool(database_url, name="test-outbox", max_size=4) as pool:
            workers = asyncio.create_task(
                outbox.run_workers(pool, database_url, [_box(table, remote)], stop, poll_s=60)
            )
            await asyncio.sleep(0.5)  # listening, and idle until the poll 60 s away
            async with pool.connection() as conn, conn.transaction():
                await conn.execute(f"INSERT INTO {table} (payload) VALUES ('wake')")  # noqa: S608
                await outbox.notify_workers(conn, table)
                queued = time.monotonic()
            await asyncio.wait_for(remote.called.wait(), 10)
            took = time.monotonic() - queued
            stop.set()
            await asyncio.wait_for(workers, 10)
            return took

    assert asyncio.run(scenario()) < 2
    assert [payload for _, payload in remote.calls] == ["wake"]


def _worker_process(url: str, table: str, barrier: Any) -> None:
    """One worker process: delivers until nothing is open, each send written to `<table>_sends`."""

    async def send(row: dict[str, Any]) -> str:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(
                f"INSERT INTO {table}_sends (idempotency_key, pid) VALUES (%s, %s)",  # noqa: S608
                (row["idempotency_key"], os.getpid()),
            )
        await asyncio.sleep(0.02)
        return f"R-{row['id']}"

    box = Outbox(table=table, sender=send, sender_name="remote", lease_s=30.0, batch=5)

    async def go() -> None:
        async with open_pool(url, name="test-outbox-proc", max_size=3) as pool:
            barrier.wait(30)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                await outbox.deliver_due(pool, box)
                async with pool.connection() as conn, conn.transaction():
                    if (await outbox.queue_stats(conn, box))["depth"] == 0:
                        return

    asyncio.run(go())


def test_two_worker_processes_send_each_row_once(
    database_url: str, db: psycopg.Connection, table: str
) -> None:
    import multiprocessing

    db.execute(f"CREATE TABLE {table}_sends (idempotency_key text NOT NULL, pid int NOT NULL)")
    try:
        _queue(db, table, *[f"m{i}" for i in range(60)])
        context = multiprocessing.get_context("spawn")
        barrier = context.Barrier(2)
        procs = [
            context.Process(target=_worker_process, args=(database_url, table, barrier)) for _ in range(2)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
            assert p.exitcode == 0
        sends = db.execute(
            f"SELECT idempotency_key, count(*) AS n FROM {table}_sends GROUP BY 1"  # noqa: S608
        ).fetchall()
        assert len(sends) == 60 and {s["n"] for s in sends} == {1}
        assert {r["status"] for r in _rows(db, table)} == {"sent"}
        both = db.execute(f"SELECT count(DISTINCT pid) AS n FROM {table}_sends").fetchone()  # noqa: S608
        assert both["n"] == 2  # both processes took rows
    finally:
        db.execute(f"DROP TABLE {table}_sends")
