"""SQL the command endpoints read with. Functions take `conn` first and never commit."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from api.commands.models import BulkFilter
from control.queries import COMMAND_COLUMNS

Row = dict[str, Any]


async def list_battery_commands(
    conn: AsyncConnection[Any], *, battery_id: int, limit: int, offset: int
) -> list[Row]:
    """A battery's commands, newest first."""
    cur = await conn.execute(
        f"""SELECT {COMMAND_COLUMNS} FROM commands c JOIN batteries b ON b.id = c.battery_id
            WHERE c.battery_id = %s ORDER BY c.seq DESC LIMIT %s OFFSET %s""",  # noqa: S608 - constant columns
        (battery_id, limit, offset),
    )
    return await cur.fetchall()


async def get_command(conn: AsyncConnection[Any], command_id: UUID) -> Row | None:
    cur = await conn.execute(
        f"""SELECT {COMMAND_COLUMNS}, b.dealer_id FROM commands c JOIN batteries b ON b.id = c.battery_id
            WHERE c.id = %s""",  # noqa: S608 - constant columns
        (command_id,),
    )
    return await cur.fetchone()


async def command_events(conn: AsyncConnection[Any], command_id: UUID) -> list[Row]:
    cur = await conn.execute(
        "SELECT status, at, actor, detail FROM command_events WHERE command_id = %s ORDER BY at, id",
        (command_id,),
    )
    return await cur.fetchall()


async def batteries_by_serial(conn: AsyncConnection[Any], serials: Sequence[str]) -> list[Row]:
    cur = await conn.execute(
        """SELECT id, serial_number, dealer_id FROM batteries
           WHERE serial_number = ANY(%s) AND deleted_at IS NULL""",
        (list(serials),),
    )
    return await cur.fetchall()


async def batteries_matching(
    conn: AsyncConnection[Any], *, selector: BulkFilter, limit: int, today: date
) -> list[Row]:
    """Batteries matching every field of the filter; `overdue_days` counts back from `today` (the
    finance calendar's)."""
    cur = await conn.execute(
        """SELECT id, serial_number, dealer_id FROM batteries
           WHERE deleted_at IS NULL
             AND (%(dealer)s::bigint IS NULL OR dealer_id = %(dealer)s)
             AND (%(status)s::text IS NULL OR status = %(status)s)
             AND (%(desired)s::text IS NULL OR desired_status = %(desired)s)
             AND (%(online)s::boolean IS NULL OR online = %(online)s)
             AND (%(reported)s::boolean IS NULL
                  OR (reported_charging AND reported_discharging) = %(reported)s)
             AND (%(in_sync)s::boolean IS NULL OR in_sync = %(in_sync)s)
             AND (%(overdue)s::int IS NULL OR id IN (
                     SELECT l.battery_id FROM loans l JOIN loan_instalments li ON li.loan_id = l.id
                     WHERE l.status = 'active' AND li.paid_at IS NULL
                       AND li.due_date <= %(today)s::date - %(overdue)s::int))
           ORDER BY id LIMIT %(limit)s""",
        {
            "dealer": selector.dealer_id,
            "status": selector.status,
            "desired": selector.desired_status,
            "online": selector.online,
            "reported": selector.reported_enabled,
            "in_sync": selector.in_sync,
            "overdue": selector.overdue_days,
            "today": today,
            "limit": limit,
        },
    )
    return await cur.fetchall()


async def insert_bulk(
    conn: AsyncConnection[Any],
    *,
    bulk_id: UUID,
    action: str,
    spec: str,
    battery_status: str | None,
    reason: str,
    requested_by: int,
    dealer_id: int | None,
    selector: dict[str, Any],
    total: int,
    rate_per_s: float,
) -> Row:
    cur = await conn.execute(
        """INSERT INTO command_bulks (id, action, spec, battery_status, reason, requested_by, dealer_id,
                                      selector, total, rate_per_s)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING *""",
        (
            bulk_id,
            action,
            spec,
            battery_status,
            reason,
            requested_by,
            dealer_id,
            Jsonb(selector),
            total,
            rate_per_s,
        ),
    )
    row: Row | None = await cur.fetchone()
    assert row is not None
    return row


async def get_bulk(conn: AsyncConnection[Any], bulk_id: UUID) -> Row | None:
    cur = await conn.execute("SELECT * FROM command_bulks WHERE id = %s", (bulk_id,))
    return await cur.fetchone()


async def bulk_counts(conn: AsyncConnection[Any], bulk_id: UUID) -> dict[str, int]:
    cur = await conn.execute(
        "SELECT status, count(*) AS n FROM commands WHERE bulk_id = %s GROUP BY status", (bulk_id,)
    )
    return {row["status"]: row["n"] for row in await cur.fetchall()}
