"""SQL for the SMS outbox (delivery itself is packfleet/outbox.py's). Functions take `conn` first and
never commit."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

TABLE = "sms_outbox"
MESSAGE_COLUMNS = (
    "id, to_phone, body, kind, status, attempts, provider, provider_message_id, error, secret, "
    "dedupe_key, consumer_id, requested_by, created_at, sent_at"
)


async def insert_message(
    conn: AsyncConnection,
    *,
    to: str,
    body: str,
    kind: str,
    dedupe_key: str | None,
    secret: bool,
    send_before: datetime | None,
    consumer_id: int | None,
    requested_by: int | None,
) -> int | None:
    """Insert a queued message; None when `dedupe_key` is already taken (it waits for a concurrent
    insert of the same key to commit or roll back, as a unique index does)."""
    cur = await conn.execute(
        """INSERT INTO sms_outbox (to_phone, body, kind, dedupe_key, secret, send_before, consumer_id,
                                   requested_by)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING RETURNING id""",
        (to, body, kind, dedupe_key, secret, send_before, consumer_id, requested_by),
    )
    row = await cur.fetchone()
    return None if row is None else row["id"]


async def message_id_by_dedupe_key(conn: AsyncConnection, dedupe_key: str) -> int | None:
    cur = await conn.execute("SELECT id FROM sms_outbox WHERE dedupe_key = %s", (dedupe_key,))
    row = await cur.fetchone()
    return None if row is None else row["id"]


async def message(conn: AsyncConnection, message_id: int) -> dict[str, Any] | None:
    cur = await conn.execute(f"SELECT {MESSAGE_COLUMNS} FROM sms_outbox WHERE id = %s", (message_id,))  # noqa: S608
    return await cur.fetchone()


async def dealer_consumer_by_phone(
    conn: AsyncConnection, *, dealer_id: int, phone: str
) -> dict[str, Any] | None:
    """The dealer's consumer with this phone (a dealer texts only its own consumers)."""
    cur = await conn.execute(
        "SELECT id, dealer_id, name, phone FROM consumers WHERE dealer_id = %s AND phone = %s",
        (dealer_id, phone),
    )
    return await cur.fetchone()


async def battery_by_id(conn: AsyncConnection, battery_id: int) -> dict[str, Any] | None:
    cur = await conn.execute(
        """SELECT id, serial_number, dealer_id, owner_id, status FROM batteries
           WHERE id = %s AND deleted_at IS NULL""",
        (battery_id,),
    )
    return await cur.fetchone()


async def insert_messages(conn: AsyncConnection, messages: list[dict[str, Any]]) -> int:
    """Insert queued messages in one statement, skipping dedupe keys already taken; return how many."""
    cur = await conn.execute(
        """INSERT INTO sms_outbox (to_phone, body, kind, dedupe_key, consumer_id)
           SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::bigint[])
           ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING""",
        (
            [m["to"] for m in messages],
            [m["text"] for m in messages],
            [m["kind"] for m in messages],
            [m["dedupe_key"] for m in messages],
            [m["consumer_id"] for m in messages],
        ),
    )
    return cur.rowcount
