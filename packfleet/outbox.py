"""The outbox pattern, written once for every outbox table (SMS, lender calls).

A domain writes a row into its outbox table in the business transaction (so the message exists
exactly when the business change does) and calls `notify_workers` there. A worker, one loop per
outbox table in the `packfleet scheduler` process, delivers the row:

1. claim: in one committed transaction, due rows are locked `FOR UPDATE SKIP LOCKED`, marked
   `sending`, their `attempts` counted and `next_attempt_at` moved to the end of a lease. No other
   worker (another process, or this one) takes a claimed row until the lease ends.
2. send: the domain's sender is called with the row, outside any transaction, and hands the row's
   `idempotency_key` to the remote side, so a re-send of the same row is a no-op there.
3. record: the remote's id (`sent`), or the error: retried after an exponential backoff with
   jitter (`queued`), or `failed` after `max_attempts` or a `PermanentError`. The record applies
   only while the claim is still this worker's (`attempts` is the fencing token).

A worker stopped between claim and record leaves a `sending` row whose lease runs out; it is then
claimed again and re-sent with the same key. A send is cut off at half the lease, so a live worker
never overlaps with the next claim. Rows past `send_before`, and rows whose last allowed attempt
never recorded an outcome, become `failed`. Each outcome is counted (Prometheus) and logged.

Workers wake on `NOTIFY packfleet_outbox '<table>'` (one listening connection per process) and
poll every `outbox_poll_seconds` as a fallback, sleeping no longer than until the next row falls
due. Two worker processes at once are safe.

Columns every outbox table has (the domain adds its own; `table_ddl` prints them)::

    id bigserial PRIMARY KEY, status, attempts, next_attempt_at, last_attempt_at,
    idempotency_key (unique), dedupe_key (unique when set), provider, provider_message_id,
    error, send_before, created_at, sent_at

`provider` is the name of the sender that took the row (SMS provider, lender client) and
`provider_message_id` the remote's id for it (message id, lender reference).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from prometheus_client import Counter, Gauge, Histogram
from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool

from packfleet.settings import Settings

log = logging.getLogger(__name__)

CHANNEL = "packfleet_outbox"
OPEN = ("queued", "sending")
RECONNECT_MAX_S = 30.0
LISTEN_CHECK_S = 30.0  # a silent listening connection is checked this often

OUTCOMES = Counter(
    "packfleet_outbox_messages_total",
    "Outbox delivery outcomes: sent, retried (an attempt failed, another follows), failed (given up)",
    ["outbox", "result"],
)
SEND_SECONDS = Histogram("packfleet_outbox_send_seconds", "Time of one send attempt", ["outbox"])
DEPTH = Gauge("packfleet_outbox_queue_depth", "Rows not yet sent nor given up", ["outbox"])
OLDEST = Gauge("packfleet_outbox_oldest_age_seconds", "Age of the oldest row not yet sent", ["outbox"])

Row = dict[str, Any]
Pool = AsyncConnectionPool[AsyncConnection[Row]]
Sender = Callable[[Row], Awaitable[str | None]]


class PermanentError(Exception):
    """The remote refused the row for good (a bad number, a rejected body): no retry."""


@dataclass(frozen=True)
class Outbox:
    """One outbox table and how its rows are delivered."""

    table: str
    sender: Sender  # returns the remote's id; raises PermanentError, or anything else to retry
    sender_name: str  # recorded in `provider`
    max_attempts: int = 8
    retry_base_s: float = 5.0
    retry_max_s: float = 900.0
    lease_s: float = 60.0
    batch: int = 20
    close: Callable[[], Awaitable[None]] | None = None  # releases the sender's client at shutdown

    @classmethod
    def configured(
        cls,
        settings: Settings,
        *,
        table: str,
        sender: Sender,
        sender_name: str,
        close: Callable[[], Awaitable[None]] | None = None,
    ) -> Outbox:
        """An outbox with the attempts, backoff, lease and batch of the `outbox_*` settings."""
        return cls(
            table=table,
            sender=sender,
            sender_name=sender_name,
            max_attempts=settings.outbox_max_attempts,
            retry_base_s=settings.outbox_retry_base_seconds,
            retry_max_s=settings.outbox_retry_max_seconds,
            lease_s=settings.outbox_lease_seconds,
            batch=settings.outbox_batch,
            close=close,
        )

    def backoff_s(self, attempts: int) -> float:
        """The wait after the `attempts`-th failed attempt: doubling from the base, capped, with
        jitter so that rows failed together by an outage do not all come back at once."""
        cap = min(self.retry_max_s, self.retry_base_s * 2.0 ** (attempts - 1))
        return cap * random.uniform(0.8, 1.0)


@dataclass
class Delivered:
    """What one pass of a worker did."""

    sent: int = 0
    retried: int = 0
    failed: int = 0
    superseded: int = 0  # outcomes not recorded: the claim had run out and the row was taken again


def table_ddl(table: str, domain_columns: str = "") -> str:
    """A CREATE TABLE for a new outbox: the columns this module needs, the domain's, the indexes."""
    extra = f"\n    {domain_columns.strip().rstrip(',')}," if domain_columns.strip() else ""
    return f"""CREATE TABLE {table} (
    id                   bigserial PRIMARY KEY,{extra}
    status               text NOT NULL DEFAULT 'queued'
                         CHECK (status IN ('queued', 'sending', 'sent', 'failed')),
    attempts             integer NOT NULL DEFAULT 0,
    next_attempt_at      timestamptz NOT NULL DEFAULT now(),
    last_attempt_at      timestamptz,
    idempotency_key      text NOT NULL UNIQUE DEFAULT gen_random_uuid()::text,
    dedupe_key           text UNIQUE,
    provider             text,
    provider_message_id  text,
    error                text,
    send_before          timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    sent_at              timestamptz
);
CREATE INDEX {table}_due ON {table} (next_attempt_at) WHERE status IN ('queued', 'sending');
"""


REQUIRED_COLUMNS = frozenset(
    {
        "id",
        "status",
        "attempts",
        "next_attempt_at",
        "last_attempt_at",
        "idempotency_key",
        "dedupe_key",
        "provider",
        "provider_message_id",
        "error",
        "send_before",
        "created_at",
        "sent_at",
    }
)


async def notify_workers(conn: AsyncConnection[Row], table: str) -> None:
    """Wake the table's workers when the caller's transaction commits (call it where you insert)."""
    await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, table))


async def missing_columns(conn: AsyncConnection[Row], table: str) -> set[str]:
    """The outbox columns the table lacks (all of them when there is no such table)."""
    cur = await conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = %s AND table_schema = "
        "current_schema()",
        (table,),
    )
    return set(REQUIRED_COLUMNS) - {row["column_name"] for row in await cur.fetchall()}


async def give_up_due(conn: AsyncConnection[Row], box: Outbox) -> list[Row]:
    """Fail the due rows past `send_before` or out of attempts (the last one crashed mid-send)."""
    cur = await conn.execute(
        sql.SQL(
            """UPDATE {t} SET status = 'failed', error = CASE
                   WHEN send_before <= now() THEN 'not sent before ' || send_before::text
                   ELSE 'no outcome recorded for the last attempt (worker stopped while sending)' END
               WHERE id IN (SELECT id FROM {t} WHERE status IN ('queued', 'sending')
                            AND next_attempt_at <= now() AND (attempts >= %s OR send_before <= now())
                            LIMIT 1000 FOR UPDATE SKIP LOCKED)
               RETURNING id, attempts, error"""
        ).format(t=sql.Identifier(box.table)),
        (box.max_attempts,),
    )
    return await cur.fetchall()


async def claim_due(conn: AsyncConnection[Row], box: Outbox, *, limit: int) -> list[Row]:
    """Claim up to `limit` due rows for one attempt each (commit before sending)."""
    cur = await conn.execute(
        sql.SQL(
            """WITH due AS (
                   SELECT id FROM {t}
                   WHERE status IN ('queued', 'sending') AND next_attempt_at <= now() AND attempts < %s
                     AND (send_before IS NULL OR send_before > now())
                   ORDER BY next_attempt_at LIMIT %s FOR UPDATE SKIP LOCKED)
               UPDATE {t} AS o SET status = 'sending', attempts = o.attempts + 1, provider = %s,
                   last_attempt_at = now(), next_attempt_at = now() + make_interval(secs => %s)
               FROM due WHERE o.id = due.id
               RETURNING o.*"""
        ).format(t=sql.Identifier(box.table)),
        (box.max_attempts, limit, box.sender_name, box.lease_s),
    )
    return await cur.fetchall()


async def record_sent(conn: AsyncConnection[Row], box: Outbox, row: Row, remote_id: str | None) -> bool:
    cur = await conn.execute(
        sql.SQL(
            """UPDATE {t} SET status = 'sent', provider_message_id = %s, sent_at = now(), error = NULL
               WHERE id = %s AND attempts = %s AND status = 'sending'"""
        ).format(t=sql.Identifier(box.table)),
        (remote_id, row["id"], row["attempts"]),
    )
    return cur.rowcount == 1


async def record_failure(
    conn: AsyncConnection[Row], box: Outbox, row: Row, *, error: str, retry_in_s: float | None
) -> bool:
    """Queue the row again after `retry_in_s`, or fail it for good when that is None."""
    cur = await conn.execute(
        sql.SQL(
            """UPDATE {t} SET error = %s,
                   status = CASE WHEN %s::float8 IS NULL THEN 'failed' ELSE 'queued' END,
                   next_attempt_at = now() + make_interval(secs => coalesce(%s::float8, 0))
               WHERE id = %s AND attempts = %s AND status = 'sending'"""
        ).format(t=sql.Identifier(box.table)),
        (error[:1000], retry_in_s, retry_in_s, row["id"], row["attempts"]),
    )
    return cur.rowcount == 1


async def queue_stats(conn: AsyncConnection[Row], box: Outbox) -> Row:
    """Rows open, the oldest one's age and the seconds until the next falls due (None: none open)."""
    cur = await conn.execute(
        sql.SQL(
            """SELECT count(*) AS depth,
                      coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS oldest_s,
                      extract(epoch FROM min(next_attempt_at) - clock_timestamp())::float8 AS due_in_s
               FROM {t} WHERE status IN ('queued', 'sending')"""
        ).format(t=sql.Identifier(box.table))
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def deliver_due(pool: Pool, box: Outbox, stop: asyncio.Event | None = None) -> Delivered:
    """Deliver every row due now, a batch at a time (until `stop` is set); return what happened."""
    done = Delivered()
    while stop is None or not stop.is_set():
        async with pool.connection() as conn, conn.transaction():
            for row in await give_up_due(conn, box):
                done.failed += 1
                OUTCOMES.labels(box.table, "failed").inc()
                log.error("outbox row given up", extra={"outbox": box.table, **row})
            rows = await claim_due(conn, box, limit=box.batch)
        if not rows:
            return done
        await asyncio.gather(*(_deliver(pool, box, row, done) for row in rows))
        if len(rows) < box.batch:
            return done
    return done


async def _deliver(pool: Pool, box: Outbox, row: Row, done: Delivered) -> None:
    """Send one claimed row and record the outcome."""
    started = time.monotonic()
    retry_in_s: float | None = None
    remote_id: str | None = None
    try:
        async with asyncio.timeout(box.lease_s / 2):  # well before the claim can be taken again
            remote_id = await box.sender(row)
        error = None
    except PermanentError as exc:
        error = f"rejected: {exc}"
    except Exception as exc:  # anything else may pass: try again later
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if row["attempts"] < box.max_attempts:
            retry_in_s = box.backoff_s(row["attempts"])
    SEND_SECONDS.labels(box.table).observe(time.monotonic() - started)
    fields = {"outbox": box.table, "row_id": row["id"], "attempt": row["attempts"]}
    async with pool.connection() as conn, conn.transaction():
        if error is None:
            recorded = await record_sent(conn, box, row, remote_id)
        else:
            recorded = await record_failure(conn, box, row, error=error, retry_in_s=retry_in_s)
    if not recorded:
        done.superseded += 1
        log.warning("outbox outcome not recorded: the row was claimed again", extra=fields)
        return
    if error is None:
        done.sent += 1
        OUTCOMES.labels(box.table, "sent").inc()
        log.info("outbox row sent", extra={**fields, "remote_id": remote_id})
    elif retry_in_s is not None:
        done.retried += 1
        OUTCOMES.labels(box.table, "retried").inc()
        log.warning(
            "outbox send failed; will retry", extra={**fields, "error": error, "retry_in_s": retry_in_s}
        )
    else:
        done.failed += 1
        OUTCOMES.labels(box.table, "failed").inc()
        log.error("outbox row failed", extra={**fields, "error": error})


async def run_workers(
    pool: Pool,
    database_url: str,
    outboxes: Sequence[Outbox],
    stop: asyncio.Event,
    *,
    poll_s: float,
) -> None:
    """Deliver each outbox's rows until `stop` is set (one loop per outbox, one listener)."""
    if not outboxes:
        return
    async with pool.connection() as conn:
        for box in outboxes:
            if missing := await missing_columns(conn, box.table):
                raise RuntimeError(f"outbox table {box.table} lacks the columns {sorted(missing)}")
    wakes = {box.table: asyncio.Event() for box in outboxes}
    listener = asyncio.create_task(_listen(database_url, wakes), name="outbox-listener")
    loops = [
        asyncio.create_task(_work(pool, box, wakes[box.table], stop, poll_s), name=f"outbox-{box.table}")
        for box in outboxes
    ]
    log.info("outbox workers started", extra={"outboxes": [b.table for b in outboxes]})
    try:
        await stop.wait()
        for wake in wakes.values():
            wake.set()
        await asyncio.gather(*loops)  # each ends after its current pass
    finally:
        listener.cancel()
        for task in loops:
            task.cancel()
        await asyncio.gather(listener, *loops, return_exceptions=True)
        for box in outboxes:
            if box.close is not None:
                await box.close()
        log.info("outbox workers stopped")


async def _work(pool: Pool, box: Outbox, wake: asyncio.Event, stop: asyncio.Event, poll_s: float) -> None:
    while not stop.is_set():
        wake.clear()
        wait_s = poll_s
        try:
            await deliver_due(pool, box, stop)
            async with pool.connection() as conn:
                stats = await queue_stats(conn, box)
            DEPTH.labels(box.table).set(stats["depth"])
            OLDEST.labels(box.table).set(stats["oldest_s"])
            if stats["due_in_s"] is not None:
                wait_s = min(poll_s, max(stats["due_in_s"], 0.0))
        except Exception:
            log.exception("outbox pass failed; trying again", extra={"outbox": box.table})
            wait_s = min(poll_s, 1.0)
        try:
            await asyncio.wait_for(wake.wait(), timeout=wait_s)
        except TimeoutError:
            pass


async def _listen(database_url: str, wakes: dict[str, asyncio.Event]) -> None:
    """Set a table's event on each NOTIFY for it; reconnect when the connection is lost."""
    delay = 0.5
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(
                database_url, autocommit=True, application_name="packfleet-outbox-listener"
            ) as conn:
                await conn.execute(f"LISTEN {CHANNEL}")
                for wake in wakes.values():  # what was queued while nobody listened
                    wake.set()
                delay = 0.5
                while True:
                    async for notice in conn.notifies(timeout=LISTEN_CHECK_S):
                        if (woken := wakes.get(notice.payload)) is not None:
                            woken.set()
                    # quiet for a while: make sure the connection is still there
                    await asyncio.wait_for(conn.execute("SELECT 1"), timeout=LISTEN_CHECK_S)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("outbox listener lost; polling meanwhile", extra={"error": repr(exc)})
        await asyncio.sleep(delay)
        delay = min(delay * 2, RECONNECT_MAX_S)
