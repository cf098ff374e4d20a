"""Queue an SMS in the caller's transaction (the outbox worker, api/messaging/jobs.py, sends it); the
Communication Services use cases."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from api.auth.models import E164
from api.auth.tokens import Principal
from api.errors import Conflict, Forbidden, NotFound
from api.messaging import queries, templates
from api.messaging.templates import Sms
from packfleet.outbox import OPEN, notify_workers

log = logging.getLogger(__name__)

_E164 = re.compile(E164)
MAX_TEXT = 1600  # ten concatenated SMS segments; gateways refuse longer


class InvalidPhone(ValueError):
    """Not an E.164 number (`+` and 7 to 15 digits, no leading zero)."""


def is_e164(phone: str) -> bool:
    return _E164.fullmatch(phone) is not None


async def queue_sms(
    conn: AsyncConnection,
    *,
    to: str,
    kind: str,
    text: str,
    dedupe_key: str | None,
    secret: bool = False,
    send_before: datetime | None = None,
    consumer_id: int | None = None,
    requested_by: int | None = None,
) -> int:
    """Queue one message and return its outbox id; it is sent once the caller's transaction commits.

    The same `dedupe_key` twice (namespace it: `"overdue_warning:instalment:42"`) stores one
    message and returns the first one's id, also when two transactions race. `secret` texts (codes)
    have their digits masked once delivered; a message not sent by `send_before` is given up.
    Raises InvalidPhone, or ValueError for an empty or over-long text, before touching the database,
    so the caller's transaction is unharmed and can go on.
    """
    if not is_e164(to):
        raise InvalidPhone(f"not an E.164 phone number: {to!r}")
    if not text.strip() or len(text) > MAX_TEXT:
        raise ValueError(f"an SMS text has 1 to {MAX_TEXT} characters")
    message_id = await queries.insert_message(
        conn,
        to=to,
        body=text,
        kind=kind,
        dedupe_key=dedupe_key,
        secret=secret,
        send_before=send_before,
        consumer_id=consumer_id,
        requested_by=requested_by,
    )
    if message_id is None:
        assert dedupe_key is not None
        existing = await queries.message_id_by_dedupe_key(conn, dedupe_key)
        assert existing is not None  # the conflicting row is committed (or ours)
        return existing
    await notify_workers(conn, queries.TABLE)
    log.info("sms queued", extra={"outbox_id": message_id, "kind": kind, "dedupe_key": dedupe_key})
    return message_id


@dataclass(frozen=True)
class Outgoing:
    """One message for `queue_sms_many`."""

    to: str
    kind: str
    text: str
    dedupe_key: str | None
    consumer_id: int | None = None


async def queue_sms_many(conn: AsyncConnection, messages: Sequence[Outgoing]) -> list[tuple[Outgoing, str]]:
    """`queue_sms` for many messages in one statement (a job warning thousands of consumers); the
    same checks and dedupe keys. Returns the messages refused before queuing, with why."""
    refused: list[tuple[Outgoing, str]] = []
    rows = []
    for message in messages:
        if not is_e164(message.to):
            refused.append((message, f"not an E.164 phone number: {message.to!r}"))
        elif not message.text.strip() or len(message.text) > MAX_TEXT:
            refused.append((message, f"an SMS text has 1 to {MAX_TEXT} characters"))
        else:
            rows.append(vars(message))
    if rows:
        queued = await queries.insert_messages(conn, rows)
        if queued:
            await notify_workers(conn, queries.TABLE)
        log.info("sms queued", extra={"count": queued, "kinds": sorted({r["kind"] for r in rows})})
    return refused


# The Communication Services endpoints (api/messaging/router.py) ---------------------------------

SENDING_ROLES = ("admin", "dealer")
POLL_S = 0.05


async def send_message(
    pool: AsyncConnectionPool[Any],
    *,
    principal: Principal,
    to: str,
    sms: Sms,
    secret: bool = False,
    idempotency_key: str | None,
    wait_s: float,
) -> dict[str, Any]:
    """Queue a message from an admin, or from a dealer to one of its consumers, then wait up to
    `wait_s` for the worker's outcome; return the outbox row."""
    _may_send(principal)
    async with pool.connection() as conn, conn.transaction():
        message_id = await _queue_for(
            conn, principal=principal, to=to, sms=sms, secret=secret, idempotency_key=idempotency_key
        )
    return await _outcome(pool, message_id, wait_s)


async def send_battery_status(
    pool: AsyncConnectionPool[Any],
    *,
    principal: Principal,
    battery_id: int,
    to: str,
    status: str,
    text: str | None,
    idempotency_key: str | None,
    wait_s: float,
) -> dict[str, Any]:
    """As `send_message`, about a battery (a dealer's own); without a text, the status's notice."""
    _may_send(principal)
    async with pool.connection() as conn, conn.transaction():
        battery = await queries.battery_by_id(conn, battery_id)
        if battery is None or (principal.role == "dealer" and battery["dealer_id"] != principal.dealer_id):
            raise NotFound(f"No battery found with id {battery_id}", error="Battery not found")
        if text is None:
            sms = templates.battery_status(battery_serial=battery["serial_number"], status=status)
        else:
            sms = templates.Sms(templates.BATTERY_STATUS, text)
        message_id = await _queue_for(
            conn, principal=principal, to=to, sms=sms, secret=False, idempotency_key=idempotency_key
        )
    return await _outcome(pool, message_id, wait_s)


def _may_send(principal: Principal) -> None:
    if principal.role not in SENDING_ROLES:
        raise Forbidden("Insufficient permissions for this operation")


async def _queue_for(
    conn: AsyncConnection,
    *,
    principal: Principal,
    to: str,
    sms: Sms,
    secret: bool,
    idempotency_key: str | None,
) -> int:
    """Queue the caller's message (a dealer's only to its own consumers). The same
    `Idempotency-Key` from the same user is the first message again; with another recipient or
    text it is a 409."""
    consumer_id = None
    if principal.role == "dealer":
        assert principal.dealer_id is not None
        consumer = await queries.dealer_consumer_by_phone(conn, dealer_id=principal.dealer_id, phone=to)
        if consumer is None:
            raise NotFound(f"None of your consumers has the phone number {to}", error="Consumer not found")
        consumer_id = consumer["id"]
    message_id = await queue_sms(
        conn,
        to=to,
        kind=sms.kind,
        text=sms.text,
        dedupe_key=None if idempotency_key is None else f"api:{principal.user_id}:{idempotency_key}",
        secret=secret,
        consumer_id=consumer_id,
        requested_by=principal.user_id,
    )
    if idempotency_key is not None:
        row = await queries.message(conn, message_id)
        assert row is not None
        if not _same_message(row, to=to, sms=sms):
            raise Conflict(
                "This Idempotency-Key was used for a different message", error="Idempotency-Key reused"
            )
    return message_id


async def _outcome(pool: AsyncConnectionPool[Any], message_id: int, wait_s: float) -> dict[str, Any]:
    """The message's row once sent or given up, or as it is after `wait_s` (a connection per look,
    so a waiting request holds none of the pool's few)."""
    deadline = time.monotonic() + wait_s
    while True:
        async with pool.connection() as conn:
            row = await queries.message(conn, message_id)
        assert row is not None
        if row["status"] not in OPEN or time.monotonic() >= deadline:
            return row
        await asyncio.sleep(POLL_S)


def _same_message(row: dict[str, Any], *, to: str, sms: Sms) -> bool:
    def masked(text: str) -> str:  # a delivered secret's digits are masked in the outbox
        return re.sub(r"[0-9]", "X", text) if row["secret"] else text

    return (row["to_phone"], row["kind"], masked(row["body"])) == (to, sms.kind, masked(sms.text))


def delivery(row: dict[str, Any]) -> dict[str, Any]:
    """The delivery fields of an answer: `queued` until the provider accepted, then `sent`."""
    status = "queued" if row["status"] in OPEN else row["status"]
    return {
        "success": status != "failed",
        "message_id": row["provider_message_id"] if status == "sent" else None,
        "status": status,
        "outbox_id": row["id"],
        "error": row["error"] if status == "failed" else None,
    }
