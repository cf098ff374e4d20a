"""SQL for the SMS outbox. Functions take `conn` first and never commit."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection


async def insert_message(conn: AsyncConnection, *, provider: str, to: str, body: str, kind: str) -> int:
    cur = await conn.execute(
        "INSERT INTO sms_outbox (provider, to_phone, body, kind) VALUES (%s, %s, %s, %s) RETURNING id",
        (provider, to, body, kind),
    )
    row = await cur.fetchone()
    assert row is not None
    return row["id"]


async def mark_sent(conn: AsyncConnection, message_id: int, *, provider_message_id: str) -> None:
    await conn.execute(
        "UPDATE sms_outbox SET status = 'sent', sent_at = now(), provider_message_id = %s WHERE id = %s",
        (provider_message_id, message_id),
    )


async def mark_failed(conn: AsyncConnection, message_id: int, *, error: str) -> None:
    await conn.execute(
        "UPDATE sms_outbox SET status = 'failed', error = %s WHERE id = %s", (error, message_id)
    )


async def latest_for(conn: AsyncConnection, to: str, *, kind: str | None = None) -> dict[str, Any] | None:
    cur = await conn.execute(
        """SELECT * FROM sms_outbox WHERE to_phone = %s AND (%s::text IS NULL OR kind = %s)
           ORDER BY id DESC LIMIT 1""",
        (to, kind, kind),
    )
    return await cur.fetchone()
