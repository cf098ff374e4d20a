"""SQL for users and one-time passwords. Functions take `conn` first and never commit."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

USER_COLUMNS = "id, phone, name, role, dealer_id, consumer_id, active"


async def user_by_phone(conn: AsyncConnection, phone: str) -> dict[str, Any] | None:
    cur = await conn.execute(f"SELECT {USER_COLUMNS} FROM users WHERE phone = %s AND active", (phone,))  # noqa: S608
    return await cur.fetchone()


async def insert_user(
    conn: AsyncConnection,
    *,
    phone: str,
    name: str,
    role: str,
    dealer_id: int | None,
    consumer_id: int | None = None,
) -> dict[str, Any] | None:
    """Insert a user; None when the phone already belongs to one."""
    cur = await conn.execute(
        f"""INSERT INTO users (phone, name, role, dealer_id, consumer_id) VALUES (%s, %s, %s, %s, %s)
            ON CONFLICT (phone) DO NOTHING RETURNING {USER_COLUMNS}""",  # noqa: S608
        (phone, name, role, dealer_id, consumer_id),
    )
    return await cur.fetchone()


async def supersede_codes(conn: AsyncConnection, phone: str) -> None:
    await conn.execute(
        "UPDATE otp_codes SET superseded = true WHERE phone = %s AND consumed_at IS NULL AND NOT superseded",
        (phone,),
    )


async def insert_code(
    conn: AsyncConnection, *, phone: str, user_id: int | None, code_hash: bytes, expires_at: datetime
) -> int:
    cur = await conn.execute(
        """INSERT INTO otp_codes (phone, user_id, code_hash, expires_at) VALUES (%s, %s, %s, %s)
           RETURNING id""",
        (phone, user_id, code_hash, expires_at),
    )
    row = await cur.fetchone()
    assert row is not None
    return row["id"]


async def latest_code(conn: AsyncConnection, phone: str) -> dict[str, Any] | None:
    """The newest code sent to the phone that is still the one to use."""
    cur = await conn.execute(
        """SELECT id, user_id, code_hash, expires_at, attempts, consumed_at FROM otp_codes
           WHERE phone = %s AND NOT superseded ORDER BY id DESC LIMIT 1""",
        (phone,),
    )
    return await cur.fetchone()


async def count_attempt(conn: AsyncConnection, code_id: int, *, max_attempts: int) -> int | None:
    """Count one try against a live code; None when it is used up, expired or locked."""
    cur = await conn.execute(
        """UPDATE otp_codes SET attempts = attempts + 1
           WHERE id = %s AND consumed_at IS NULL AND expires_at > now() AND attempts < %s
           RETURNING attempts""",
        (code_id, max_attempts),
    )
    row = await cur.fetchone()
    return None if row is None else row["attempts"]


async def consume_code(conn: AsyncConnection, code_id: int) -> bool:
    cur = await conn.execute(
        "UPDATE otp_codes SET consumed_at = now() WHERE id = %s AND consumed_at IS NULL RETURNING id",
        (code_id,),
    )
    return await cur.fetchone() is not None


async def user_by_id(conn: AsyncConnection, user_id: int) -> dict[str, Any] | None:
    cur = await conn.execute(f"SELECT {USER_COLUMNS} FROM users WHERE id = %s AND active", (user_id,))  # noqa: S608
    return await cur.fetchone()
