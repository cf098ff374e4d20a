"""Publishing: claim each battery's due head command, record the attempt, publish it at QoS 1.

The claim (`FOR UPDATE SKIP LOCKED`) and the record of the attempt (its next attempt moved into
the future) commit together before the publish, so a second control process never publishes the
same attempt. A process killed between the commit and the publish leaves a command that is
re-sent, with the same id, when its next attempt falls due; re-sends are harmless because the
device treats a repeated id as already done.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from psycopg import AsyncConnection

from control import metrics, queries
from control.queries import Event, Pool, Row
from schemas import topics
from schemas.device import Command

log = logging.getLogger(__name__)

BATCH = 500
PUBLISH_TIMEOUT_S = 10.0
MAX_IDLE_S = 1.0
MAX_CONFIRMING = 4  # batches awaiting PUBACKs at once
RETRY_HOLD_BACKLOG = 1000  # unread device messages beyond which retries wait


def command_payload(row: Row) -> bytes:
    """The contract's JSON for a command row."""
    command = Command(
        id=row["id"],
        action=row["action"],
        spec=row["spec"],
        issued_at=row["created_at"],
        expires_at=row["expires_at"],
    )
    return command.model_dump_json().encode()


@functools.lru_cache(maxsize=64)
def _expiry_properties(seconds: int) -> Properties:
    """PUBLISH properties with this message expiry; paho only reads them, and building one is slow."""
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.MessageExpiryInterval = seconds
    return properties


class Dispatcher:
    """Publishes due commands through whichever MQTT client is connected at the moment."""

    def __init__(
        self,
        pool: Pool,
        *,
        protocol: int,
        retry_base_s: float,
        retry_max_s: float,
        actor: str = "control",
        unread_acks: Callable[[], int] = lambda: 0,
    ) -> None:
        self._pool = pool
        self._unread_acks = unread_acks
        self.actor = actor  # who the audit trail says published: this process
        self._protocol = protocol
        self._retry_base_s = retry_base_s
        self._retry_max_s = retry_max_s
        self._client: aiomqtt.Client | None = None
        self._lock = asyncio.Lock()
        # Batches published and awaiting PUBACKs: the next batch is claimed meanwhile.
        self._slots = asyncio.Semaphore(MAX_CONFIRMING)
        self._confirming: set[asyncio.Task[None]] = set()
        self.wake = asyncio.Event()

    def attach(self, client: aiomqtt.Client | None) -> None:
        self._client = client
        if client is not None:
            self.wake.set()

    async def detach(self) -> None:
        """Stop publishing, once the batches under way have their broker confirmations."""
        async with self._lock:
            self._client = None
            await asyncio.gather(*self._confirming, return_exceptions=True)

    async def loop(self, stop: asyncio.Event) -> None:
        """Publish whenever woken (NOTIFY, a final ack, a battery online, an expiry) or something falls due.

        Sleeping until the next due time keeps retries and rollouts on time between the scheduler's
        sweeps, which remain the backstop.
        """
        while not stop.is_set():
            try:
                await asyncio.wait_for(self.wake.wait(), timeout=await self._next_due_in())
            except TimeoutError:
                pass
            self.wake.clear()
            try:
                await self.run_once()
            except Exception:
                log.exception("dispatch failed; the retry sweep will try again")
                await asyncio.sleep(0.5)

    async def _next_due_in(self) -> float:
        try:
            async with self._pool.connection() as conn:
                return await queries.seconds_to_next_due(conn, cap_s=MAX_IDLE_S)
        except Exception:
            log.exception("could not read the next due time")
            return MAX_IDLE_S

    async def sweep(self) -> int:
        """The scheduler's retry sweep: dispatch what is due, unless a dispatch is already running."""
        if self._lock.locked():
            return 0
        return await self.run_once()

    async def run_once(self) -> int:
        """Publish every due head command; return how many were claimed for publishing."""
        async with self._lock:
            total = 0
            while self._client is not None:
                await self._slots.acquire()
                try:
                    rows = await self._claim()
                except BaseException:
                    self._slots.release()
                    raise
                if not rows:
                    self._slots.release()
                    break
                task = asyncio.create_task(self._confirm(self._client, rows))
                self._confirming.add(task)
                task.add_done_callback(self._confirming.discard)
                total += len(rows)
                if len(rows) < BATCH:
                    break
            return total

    async def _claim(self) -> list[Row]:
        """Claim due head commands and record the attempt, in one committed transaction."""
        at = datetime.now(UTC)
        async with self._pool.connection() as conn, conn.transaction():
            # Acks we have not read yet may answer the commands a retry would re-send: while we are
            # that far behind, send only new commands, or a big fan-out feeds itself with re-sends.
            unread = self._unread_acks() + (len(self._client.messages) if self._client is not None else 0)
            behind = unread > RETRY_HOLD_BACKLOG
            rows = await queries.claim_due(conn, limit=BATCH, first_sends_only=behind)
            if rows:
                await self._record(conn, rows, at)
        return rows

    async def _confirm(self, client: aiomqtt.Client, rows: list[Row]) -> None:
        """Publish a claimed batch; what the broker does not confirm is tried again later.

        Published after the claim's commit: the claim says "next attempt later", so no other
        process takes these meanwhile, and acks never wait for our locks.
        """
        try:
            results = await asyncio.gather(
                *(self._publish(client, row) for row in rows), return_exceptions=True
            )
            failed = [row for row, error in zip(rows, results, strict=True) if error is not None]
            if not failed:
                return
            metrics.PUBLISH_ERRORS.inc(len(failed))
            first = next(r for r in results if r is not None)
            log.warning("broker did not confirm %d publishes: %r", len(failed), first)
            async with self._pool.connection() as conn, conn.transaction():
                await queries.postpone(conn, ids=[r["id"] for r in failed], delay_s=self._retry_base_s)
                await queries.insert_events(
                    conn, [(r["id"], "publish_failed", None, self.actor, repr(first)[:500]) for r in failed]
                )
        except Exception:
            log.exception("could not record failed publishes; their retry time stands")
        finally:
            self._slots.release()

    async def _publish(self, client: aiomqtt.Client, row: Row) -> None:
        properties = None
        if self._protocol == 5:
            # The broker drops it for a device that stays away past expiry: no stale switch-off.
            remaining = (row["expires_at"] - datetime.now(UTC)).total_seconds()
            properties = _expiry_properties(max(1, int(remaining)))
        await client.publish(
            topics.command(row["serial_number"]),
            command_payload(row),
            qos=1,
            properties=properties,
            timeout=PUBLISH_TIMEOUT_S,
        )

    async def _record(self, conn: AsyncConnection[Row], rows: Sequence[Row], at: datetime) -> None:
        """Record the attempt before publishing it; a crash in between costs one retry interval."""
        await queries.mark_sent(
            conn,
            ids=[row["id"] for row in rows],
            published_at=[at] * len(rows),
            base_s=self._retry_base_s,
            max_s=self._retry_max_s,
        )
        events: list[Event] = []
        for row in rows:
            first = row["status"] == "queued"
            metrics.PUBLISHES.labels("first" if first else "retry").inc()
            if first:
                metrics.TRANSITIONS.labels("sent").inc()
            detail = None if first else f"re-sent, attempt {row['attempts'] + 1}"
            events.append((row["id"], "sent", at, self.actor, detail))
        await queries.insert_events(conn, events)
