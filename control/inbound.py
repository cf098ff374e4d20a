"""Messages from devices: command acks move commands on; `online: true` statuses make them due now.

Receive → parse → batch → write. Parsing is pure (`parse_ack`); a batch of acks is folded per
command by `control.acks.fold` and written in one transaction, so a burst of thousands of acks
costs a few round trips, not thousands.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

import psycopg
from psycopg import AsyncConnection
from pydantic import ValidationError

from control import metrics, queries
from control.acks import Ack, Outcome, Report, fold
from control.queries import Event, Pool, Row
from schemas import state, topics
from schemas.device import MAX_PAYLOAD_BYTES, CommandAck, Status

log = logging.getLogger(__name__)

MAX_BATCH = 1000
# What may wait for the database (an outage, a flood of garbage): beyond either bound a message is
# dropped and counted. Dropping is safe: a command whose ack was dropped is re-sent and acked again
# (acks are idempotent by command id), and a dropped dead letter only loses its record.
MAX_UNREAD = 100_000
MAX_UNREAD_BYTES = 64 * 1024 * 1024
DROP_LOG_INTERVAL_S = 10.0


TOO_LARGE_PAYLOAD_BYTES = 1024  # of a payload refused for its size, only this much is kept
DEAD_LETTER_PAYLOAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    reason: str
    detail: str | None
    payload: bytes  # what is kept of it
    received_at: datetime
    payload_size: int


@dataclass(frozen=True)
class Online:
    """A battery's status said `online: true`."""

    serial: str


Inbound = Ack | DeadLetter | Online


def parse(topic: str, payload: bytes, received_at: datetime, *, retained: bool = False) -> Inbound | None:
    """Turn one MQTT message into an ack, a dead letter, an online event, or nothing to do."""
    parsed = topics.parse(topic)
    if parsed is None:
        return None
    serial, kind = parsed
    if kind == topics.STATUS:
        if retained:
            return None  # replayed on subscribe: old news, not a battery coming online now
        try:
            status = Status.model_validate_json(payload)
        except ValidationError:
            return None  # statuses are ingest's to validate and dead-letter
        return Online(serial) if status.online else None
    if kind != topics.COMMAND_ACK:
        return None
    return parse_ack(topic, serial, payload, received_at)


def parse_ack(topic: str, serial: str, payload: bytes, received_at: datetime) -> Ack | DeadLetter:
    if len(payload) > MAX_PAYLOAD_BYTES:
        return _dead_letter(topic, "too_large", f"{len(payload)} bytes", payload, received_at)
    try:
        ack = CommandAck.model_validate_json(payload)
    except ValidationError as exc:
        try:
            json.loads(payload)
        except ValueError:
            return _dead_letter(
                topic, "invalid_json", str(exc.errors()[0]["msg"])[:500], payload, received_at
            )
        return _dead_letter(topic, "invalid_ack", _describe(exc), payload, received_at)
    return Ack(
        serial=serial,
        id=ack.id,
        stage=ack.stage,
        enabled=ack.enabled,
        error=None if ack.error is None else ack.error.replace("\x00", ""),  # PostgreSQL text refuses NUL
        ts=ack.ts,
        received_at=received_at,
        topic=topic,
        payload=payload,
    )


def _kept_bytes(item: Inbound) -> int:
    return 0 if isinstance(item, Online) else len(item.payload)


def _describe(exc: ValidationError) -> str:
    parts = (f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors())
    return "; ".join(parts)[:1000]


class InboundWorker:
    """Writes what devices said, in batches, from a queue the MQTT reader fills."""

    def __init__(
        self,
        pool: Pool,
        *,
        wake_dispatcher: Callable[[], None],
        max_unread: int = MAX_UNREAD,
        max_unread_bytes: int = MAX_UNREAD_BYTES,
    ) -> None:
        self._pool = pool
        self._wake = wake_dispatcher
        self.queue: asyncio.Queue[Inbound] = asyncio.Queue()
        self._max_unread = max_unread
        self._max_unread_bytes = max_unread_bytes
        self.unread_bytes = 0
        self._online_waiting: set[str] = set()  # one waiting Online per battery is as good as many
        self._dropped_since_log = 0
        self._last_drop_log = 0.0

    def put(self, topic: str, payload: bytes, *, retained: bool = False) -> None:
        item = parse(topic, payload, datetime.now(UTC), retained=retained)
        if item is None:
            return
        if isinstance(item, Online):
            if item.serial in self._online_waiting:
                return
            self._online_waiting.add(item.serial)  # bounded by the fleet, so never dropped
        elif self.queue.qsize() >= self._max_unread or self.unread_bytes >= self._max_unread_bytes:
            self._drop(item)
            return
        self.unread_bytes += _kept_bytes(item)
        self.queue.put_nowait(item)

    def _drop(self, item: Ack | DeadLetter) -> None:
        metrics.INBOUND_DROPPED.labels("ack" if isinstance(item, Ack) else "dead_letter").inc()
        self._dropped_since_log += 1
        now = time.monotonic()
        if now - self._last_drop_log >= DROP_LOG_INTERVAL_S:
            log.error(
                "dropped %d device messages: %d wait for the database (%d bytes)",
                self._dropped_since_log,
                self.queue.qsize(),
                self.unread_bytes,
            )
            self._dropped_since_log = 0
            self._last_drop_log = now

    def _taken(self, batch: Sequence[Inbound]) -> None:
        for item in batch:
            self.unread_bytes -= _kept_bytes(item)
            if isinstance(item, Online):
                self._online_waiting.discard(item.serial)

    async def run(self, stop: asyncio.Event) -> None:
        """Process until `stop`, then drain what is already queued."""
        while True:
            if stop.is_set() and self.queue.empty():
                return
            try:
                first = await asyncio.wait_for(self.queue.get(), timeout=0.5)
            except TimeoutError:
                continue
            batch = [first]
            while len(batch) < MAX_BATCH and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            self._taken(batch)
            await self._process_with_retry(batch)

    async def _process_with_retry(self, batch: list[Inbound]) -> None:
        """Record a batch; wait out database outages, and isolate a message the database refuses."""
        refused = await self._until_refused(batch, tries=3)
        if refused is None:
            return
        for item in batch:  # one by one, to find the message the database refuses
            refused = await self._until_refused([item], tries=1)
            if refused is None:
                continue
            if isinstance(item, Ack):
                letter = _letter(item, "unprocessable", f"{type(refused).__name__}: {refused}"[:1000])
                if await self._until_refused([letter], tries=1) is None:
                    continue
            log.error("dropped a device message the database refuses: %r", item)

    async def _until_refused(self, batch: Sequence[Inbound], *, tries: int) -> Exception | None:
        """Process, retrying through outages however long; the error once it was refused `tries` times."""
        delay = 0.2
        failures = 0
        while True:
            try:
                await self.process(batch)
                return None
            except (psycopg.OperationalError, psycopg.errors.DeadlockDetected):
                # The database is away (the pool's timeout is one of these), or a deadlock was broken.
                log.warning(
                    "could not record %d device messages; retrying in %.1fs", len(batch), delay, exc_info=True
                )
            except Exception as exc:
                failures += 1
                log.exception("recording %d device messages failed (%d of %d)", len(batch), failures, tries)
                if failures >= tries:
                    return exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def process(self, batch: Sequence[Inbound]) -> None:
        acks = [m for m in batch if isinstance(m, Ack)]
        letters = [m for m in batch if isinstance(m, DeadLetter)]
        online = sorted({m.serial for m in batch if isinstance(m, Online)})
        async with self._pool.connection() as conn:
            finished = False
            if acks:
                more_letters, finished = await self._record_acks(conn, acks)
                letters += more_letters
            if letters:
                async with conn.transaction():
                    await queries.insert_dead_letters(
                        conn,
                        [
                            {
                                "topic": d.topic,
                                "reason": d.reason,
                                "detail": d.detail,
                                "payload": d.payload,
                                "payload_size": d.payload_size,
                                "received_at": d.received_at,
                            }
                            for d in letters
                        ],
                    )
                for d in letters:
                    metrics.DEAD_LETTERS.labels(d.reason).inc()
                reasons = sorted({d.reason for d in letters})
                log.warning("dead-lettered %d control messages", len(letters), extra={"reasons": reasons})
            nudged = 0
            if online:
                async with conn.transaction():
                    nudged = await queries.nudge(conn, serials=online)
        if finished or nudged:
            self._wake()

    async def _record_acks(
        self, conn: AsyncConnection[Row], acks: Sequence[Ack]
    ) -> tuple[list[DeadLetter], bool]:
        """Fold and write a batch of acks; return the dead letters and whether any command ended."""
        by_command: dict[UUID, list[Ack]] = defaultdict(list)
        for ack in acks:
            by_command[ack.id].append(ack)
        letters: list[DeadLetter] = []
        finished = False
        async with conn.transaction():
            batteries = await queries.lock_batteries_of_commands(conn, list(by_command))
            commands = {row["id"]: row for row in await queries.lock_commands(conn, list(by_command))}
            updates: list[Row] = []
            reports: dict[int, list[tuple[Report, str | None]]] = defaultdict(list)
            events: list[Event] = []
            for command_id, its_acks in by_command.items():
                command = commands.get(command_id)
                if command is None:
                    metrics.ACKS.labels("unknown_command").inc(len(its_acks))
                    letters += [_letter(a, "unknown_command", f"no command {command_id}") for a in its_acks]
                    continue
                out = fold(command, its_acks)
                owner = f"command {command_id} is for {command['serial_number']}"
                letters += [_letter(a, "ack_from_wrong_battery", owner) for a in out.wrong_battery]
                metrics.ACKS.labels("wrong_battery").inc(len(out.wrong_battery))
                self._collect(command, out, updates, events)
                reports[command["battery_id"]] += [(r, command["battery_status"]) for r in out.reports]
                finished = finished or out.finished_at is not None and command["finished_at"] is None
            await queries.apply_acks(conn, updates)
            await queries.update_reported(conn, _reported_states(batteries, reports), actor="device")
            await queries.insert_events(conn, events)
        return letters, finished

    @staticmethod
    def _collect(command: Row, out: Outcome, updates: list[Row], events: list[Event]) -> None:
        if out.changed:
            updates.append(
                {
                    "id": command["id"],
                    "status": out.status,
                    "delivered_at": out.delivered_at,
                    "finished_at": out.finished_at,
                    "error": out.error,
                    "device_enabled": out.device_enabled,
                }
            )
        for status, at, actor, detail in out.events:
            events.append((command["id"], status, at, actor, detail))
            metrics.TRANSITIONS.labels(status).inc()
        for ack, why in out.ignored:
            events.append((command["id"], "ack_ignored", ack.received_at, "device", f"{ack.stage}: {why}"))
            metrics.ACKS.labels("ignored").inc()
        for ack, kind, description in out.contradictions:
            metrics.CONTRADICTIONS.labels(kind).inc()
            log.error(
                "a device contradicts the command it acknowledged",
                extra={
                    "serial": command["serial_number"],
                    "command_id": str(command["id"]),
                    "kind": kind,
                    "command_status": out.status,
                    "detail": description,
                    "payload": ack.payload[:500].decode("utf-8", "replace"),
                },
            )
        metrics.ACKS.labels("accepted").inc(len(out.events))
        for stage, seconds in out.latencies:
            metrics.ACK_LATENCY.labels(stage).observe(seconds)


def _reported_states(
    batteries: dict[int, Row], reports: dict[int, list[tuple[Report, str | None]]]
) -> list[Row]:
    """Each battery's reported state after its acks' reports (those newer than what is stored), with
    the status that makes where it changes."""
    reported: list[Row] = []
    for battery_id, its_reports in reports.items():
        battery = batteries.get(battery_id)
        if battery is None:  # deleted since
            continue
        stored_at = battery["reported_at"]
        newer = sorted((r for r in its_reports if stored_at is None or stored_at <= r[0].at), key=_at)
        if not newer:
            continue
        known = battery["reported_enabled"]
        switches = None if known is None else state.switches(known, battery["reported_spec"])
        for report, _ in newer:
            switches = state.after_command(switches, enable=report.enabled, spec=report.spec)
        assert switches is not None
        enabled, spec = state.canonical(switches)
        report, wanted = newer[-1]
        status = state.status_of(
            switches, wanted=wanted or battery["desired_status"], current=battery["status"]
        )
        reported.append(
            {
                "battery_id": battery_id,
                "enabled": enabled,
                "spec": spec,
                "at": report.at,
                "status": status if status != battery["status"] else None,
                "was": battery["status"],
            }
        )
    return reported


def _at(item: tuple[Report, str | None]) -> datetime:
    return item[0].at


def _letter(ack: Ack, reason: str, detail: str) -> DeadLetter:
    return _dead_letter(ack.topic, reason, detail, ack.payload, ack.received_at)


def _dead_letter(topic: str, reason: str, detail: str, payload: bytes, received_at: datetime) -> DeadLetter:
    kept = TOO_LARGE_PAYLOAD_BYTES if reason == "too_large" else DEAD_LETTER_PAYLOAD_BYTES
    return DeadLetter(topic, reason, detail, payload[:kept], received_at, len(payload))
