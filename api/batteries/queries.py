"""SQL for the batteries table and its latest reading. Functions take `conn` first and never commit."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

BATTERY_COLUMNS = """
    b.id, b.serial_number, b.status, b.desired_status, b.health_score, b.owner_id, b.dealer_id, b.created_at,
    b.desired_enabled, b.desired_spec, b.reported_enabled, b.reported_spec, b.reported_at,
    b.firmware, b.online, b.last_seen_at
"""


async def insert_battery(
    conn: AsyncConnection, *, serial_number: str, health_score: Decimal, dealer_id: int | None
) -> dict[str, Any] | None:
    """Insert a battery; None when the serial is already taken."""
    cur = await conn.execute(
        f"""INSERT INTO batteries AS b (serial_number, health_score, dealer_id)
            VALUES (%s, %s, %s)
            ON CONFLICT (serial_number) DO NOTHING
            RETURNING {BATTERY_COLUMNS}""",  # noqa: S608 - a constant column list
        (serial_number, health_score, dealer_id),
    )
    return await cur.fetchone()


async def list_batteries(
    conn: AsyncConnection,
    *,
    status: str | None,
    desired_status: str | None = None,
    dealer_id: int | None,
    owner_id: int | None,
    limit: int | None = None,
    offset: int = 0,
) -> list[dict[str, Any]]:
    cur = await conn.execute(
        f"""SELECT {BATTERY_COLUMNS}, c.name AS consumer_name
            FROM batteries b LEFT JOIN consumers c ON c.id = b.owner_id
            WHERE b.deleted_at IS NULL
              AND (%(status)s::text IS NULL OR b.status = %(status)s)
              AND (%(desired)s::text IS NULL OR b.desired_status = %(desired)s)
              AND (%(dealer)s::bigint IS NULL OR b.dealer_id = %(dealer)s)
              AND (%(owner)s::bigint IS NULL OR b.owner_id = %(owner)s)
            ORDER BY b.id LIMIT %(limit)s OFFSET %(offset)s""",  # noqa: S608 - a constant column list
        {
            "status": status,
            "desired": desired_status,
            "dealer": dealer_id,
            "owner": owner_id,
            "limit": limit,
            "offset": offset,
        },
    )
    return await cur.fetchall()


async def get_battery(conn: AsyncConnection, serial: str) -> dict[str, Any] | None:
    cur = await conn.execute(
        f"SELECT {BATTERY_COLUMNS} FROM batteries b WHERE b.serial_number = %s AND b.deleted_at IS NULL",  # noqa: S608
        (serial,),
    )
    return await cur.fetchone()


async def get_latest_reading(conn: AsyncConnection, battery_id: int) -> dict[str, Any] | None:
    cur = await conn.execute(
        "SELECT ts, voltage, current, soc, temperature, lat, lon FROM battery_latest WHERE battery_id = %s",
        (battery_id,),
    )
    return await cur.fetchone()


async def get_pending_command(conn: AsyncConnection, battery_id: int) -> dict[str, Any] | None:
    """The oldest command of this battery that has not reached a final state."""
    cur = await conn.execute(
        """SELECT id, action, spec, status, created_at, sent_at, delivered_at, expires_at, attempts
           FROM commands
           WHERE battery_id = %s AND status IN ('queued', 'sent', 'delivered')
           ORDER BY created_at LIMIT 1""",
        (battery_id,),
    )
    return await cur.fetchone()


async def set_actor(conn: AsyncConnection, actor: str) -> None:
    """Name who acts in this transaction, for the status-change trigger's activity rows."""
    await conn.execute("SELECT set_config('packfleet.actor', %s, true)", (actor,))


async def record_activity(
    conn: AsyncConnection, *, battery_id: int, actor: str, action: str, detail: dict[str, Any] | None = None
) -> None:
    await conn.execute(
        "INSERT INTO battery_activity (battery_id, actor, action, detail) VALUES (%s, %s, %s, %s)",
        (battery_id, actor, action, Jsonb(detail or {})),
    )


async def list_activity(
    conn: AsyncConnection, battery_id: int, *, limit: int, offset: int
) -> list[dict[str, Any]]:
    cur = await conn.execute(
        """SELECT id, at, actor, action, detail FROM battery_activity WHERE battery_id = %s
           ORDER BY at DESC, id DESC LIMIT %s OFFSET %s""",
        (battery_id, limit, offset),
    )
    return await cur.fetchall()


async def get_consumer(conn: AsyncConnection, consumer_id: int) -> dict[str, Any] | None:
    cur = await conn.execute("SELECT id, dealer_id, name FROM consumers WHERE id = %s", (consumer_id,))
    return await cur.fetchone()


async def set_owner(
    conn: AsyncConnection, battery_id: int, *, owner_id: int | None, dealer_id: int | None
) -> dict[str, Any]:
    cur = await conn.execute(
        f"""UPDATE batteries AS b SET owner_id = %s, dealer_id = %s, updated_at = now() WHERE id = %s
            RETURNING {BATTERY_COLUMNS}""",  # noqa: S608 - a constant column list
        (owner_id, dealer_id, battery_id),
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def health_by_status(
    conn: AsyncConnection, *, dealer_id: int | None, owner_id: int | None
) -> list[dict[str, Any]]:
    """Count and health score spread per status, plus what the latest readings say."""
    cur = await conn.execute(
        """SELECT b.status, count(*) AS count,
                  round(avg(b.health_score), 1) AS avg_health,
                  min(b.health_score) AS min_health, max(b.health_score) AS max_health,
                  sum(b.health_score) AS health_sum,
                  count(l.battery_id) AS reporting,
                  count(*) FILTER (WHERE b.online) AS online,
                  count(*) FILTER (WHERE NOT b.in_sync) AS awaiting_confirmation,
                  count(*) FILTER (WHERE l.soc < 20) AS low_soc,
                  count(*) FILTER (WHERE l.ts < now() - interval '1 hour') AS stale,
                  avg(l.soc) AS avg_soc
           FROM batteries b LEFT JOIN battery_latest l ON l.battery_id = b.id
           WHERE b.deleted_at IS NULL
             AND (%(dealer)s::bigint IS NULL OR b.dealer_id = %(dealer)s)
             AND (%(owner)s::bigint IS NULL OR b.owner_id = %(owner)s)
           GROUP BY b.status ORDER BY b.status""",
        {"dealer": dealer_id, "owner": owner_id},
    )
    return await cur.fetchall()


async def get_battery_details(conn: AsyncConnection, serials: list[str]) -> list[dict[str, Any]]:
    """Live batteries with these serials, each with its latest reading and oldest open command, in
    one round trip (api/batteries/details.py gathers the serials of concurrent requests)."""
    cur = await conn.execute(
        f"""SELECT {BATTERY_COLUMNS},
                   l.battery_id IS NOT NULL AS r_present, l.ts AS r_ts, l.voltage AS r_voltage,
                   l.current AS r_current, l.soc AS r_soc, l.temperature AS r_temperature,
                   l.lat AS r_lat, l.lon AS r_lon,
                   p.id AS p_id, p.action AS p_action, p.spec AS p_spec, p.status AS p_status,
                   p.created_at AS p_created_at, p.sent_at AS p_sent_at, p.delivered_at AS p_delivered_at,
                   p.expires_at AS p_expires_at, p.attempts AS p_attempts
            FROM batteries b
            LEFT JOIN battery_latest l ON l.battery_id = b.id
            LEFT JOIN LATERAL (
                SELECT id, action, spec, status, created_at, sent_at, delivered_at, expires_at, attempts
                FROM commands c
                WHERE c.battery_id = b.id AND c.status IN ('queued', 'sent', 'delivered')
                ORDER BY c.created_at LIMIT 1) p ON true
            WHERE b.serial_number = ANY(%s) AND b.deleted_at IS NULL""",  # noqa: S608 - a constant column list
        (serials,),
    )
    return await cur.fetchall()
