"""SQL for the commands, command_events and command_bulks tables. Functions take `conn` and never commit.

Lock order, everywhere a transaction waits for a lock: battery rows first (by id), then command
rows. The dispatcher and the expiry sweep never wait (SKIP LOCKED), so they cannot deadlock.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

Row = dict[str, Any]
Pool = AsyncConnectionPool[AsyncConnection[Row]]

NOTIFY_CHANNEL = "packfleet_commands"
OPEN = ("queued", "sent", "delivered")
FINAL = ("succeeded", "failed", "expired", "cancelled")

COMMAND_COLUMNS = """
    c.id, c.battery_id, b.serial_number, c.action, c.spec, c.status, c.reason, c.requested_by, c.source,
    c.battery_status, c.status_label, c.attempts, c.next_attempt_at, c.error, c.created_at, c.sent_at,
    c.last_sent_at, c.delivered_at, c.finished_at, c.expires_at, c.device_enabled, c.cancel_reason,
    c.cancelled_by, c.superseded_by, c.bulk_id, c.seq
"""

# An event: (command id, status, time or None for the statement's clock, actor, detail).
Event = tuple[UUID, str, datetime | None, str, str | None]


async def lock_batteries(conn: AsyncConnection[Row], battery_ids: Sequence[int]) -> dict[int, Row]:
    """Lock these batteries (in id order, so concurrent writers never deadlock) and read their state."""
    cur = await conn.execute(
        """SELECT id, serial_number, status, desired_status, status_label, desired_enabled, desired_spec,
                  dealer_id
           FROM batteries WHERE id = ANY(%s) AND deleted_at IS NULL
           ORDER BY id FOR UPDATE""",
        (list(battery_ids),),
    )
    return {row["id"]: row for row in await cur.fetchall()}


async def cancel_superseded(
    conn: AsyncConnection[Row], *, battery_ids: Sequence[int], new_ids: Sequence[UUID], actor: str
) -> list[Row]:
    """Cancel the queued or sent commands of these batteries in favour of the (inserted) new ones."""
    cur = await conn.execute(
        """UPDATE commands c
           SET status = 'cancelled', finished_at = clock_timestamp(), next_attempt_at = NULL,
               cancel_reason = 'superseded by command ' || n.new_id::text, cancelled_by = %s,
               superseded_by = n.new_id
           FROM unnest(%s::bigint[], %s::uuid[]) AS n(battery_id, new_id)
           WHERE c.battery_id = n.battery_id AND c.id <> n.new_id AND c.status IN ('queued', 'sent')
           RETURNING c.id, c.battery_id, c.status, c.cancel_reason, c.finished_at""",
        (actor, list(battery_ids), list(new_ids)),
    )
    return await cur.fetchall()


async def insert_commands(
    conn: AsyncConnection[Row],
    *,
    ids: Sequence[UUID],
    batteries: Sequence[Row],
    action: str,
    spec: str,
    reason: str,
    requested_by: int | None,
    source: str,
    battery_status: str | None,
    status_label: str | None,
    not_before: Sequence[datetime],
    expires_at: Sequence[datetime],
    bulk_id: UUID | None,
) -> list[Row]:
    """Insert one queued command per battery, due at its `not_before`."""
    cur = await conn.execute(
        """INSERT INTO commands AS c (id, battery_id, action, spec, reason, requested_by, source,
                battery_status, status_label, next_attempt_at, expires_at, bulk_id,
                prev_desired_enabled, prev_desired_spec, prev_status)
           SELECT n.id, n.battery_id, %(action)s, %(spec)s, %(reason)s, %(requested_by)s, %(source)s,
                  %(battery_status)s, %(status_label)s, n.not_before, n.expires_at, %(bulk_id)s,
                  n.prev_enabled, n.prev_spec, n.prev_status
           FROM unnest(%(ids)s::uuid[], %(battery_ids)s::bigint[], %(not_before)s::timestamptz[],
                       %(expires_at)s::timestamptz[], %(prev_enabled)s::boolean[], %(prev_spec)s::text[],
                       %(prev_status)s::text[])
                WITH ORDINALITY AS n(id, battery_id, not_before, expires_at, prev_enabled, prev_spec,
                                     prev_status, ord)
           ORDER BY n.ord
           RETURNING c.id, c.battery_id, c.created_at, c.expires_at, c.next_attempt_at""",
        {
            "action": action,
            "spec": spec,
            "reason": reason,
            "requested_by": requested_by,
            "source": source,
            "battery_status": battery_status,
            "status_label": status_label,
            "bulk_id": bulk_id,
            "ids": list(ids),
            "battery_ids": [b["id"] for b in batteries],
            "not_before": list(not_before),
            "expires_at": list(expires_at),
            "prev_enabled": [b["desired_enabled"] for b in batteries],
            "prev_spec": [b["desired_spec"] for b in batteries],
            "prev_status": [b["desired_status"] for b in batteries],
        },
    )
    return await cur.fetchall()


async def insert_events(conn: AsyncConnection[Row], events: Sequence[Event]) -> None:
    """Append audit rows; a None time means 'now' by the statement's clock."""
    if not events:
        return
    await conn.execute(
        """INSERT INTO command_events (command_id, status, at, actor, detail)
           SELECT e.command_id, e.status, coalesce(e.at, clock_timestamp()), e.actor, e.detail
           FROM unnest(%s::uuid[], %s::text[], %s::timestamptz[], %s::text[], %s::text[])
                AS e(command_id, status, at, actor, detail)""",
        (
            [e[0] for e in events],
            [e[1] for e in events],
            [e[2] for e in events],
            [e[3] for e in events],
            [e[4] for e in events],
        ),
    )


async def set_desired(
    conn: AsyncConnection[Row], *, desired: Sequence[Row], status_label: str | None
) -> None:
    """Set each battery's desired state (`id`, `enabled`, `spec`, `status`); its `status` is the
    device's to confirm."""
    await conn.execute(
        """UPDATE batteries b
           SET desired_enabled = d.enabled, desired_spec = d.spec, desired_status = d.status,
               status_label = coalesce(%s, b.status_label), updated_at = now()
           FROM unnest(%s::bigint[], %s::boolean[], %s::text[], %s::text[]) AS d(id, enabled, spec, status)
           WHERE b.id = d.id""",
        (
            status_label,
            [d["id"] for d in desired],
            [d["enabled"] for d in desired],
            [d["spec"] for d in desired],
            [d["status"] for d in desired],
        ),
    )


async def notify(conn: AsyncConnection[Row]) -> None:
    """Wake the control processes when this transaction commits."""
    await conn.execute("SELECT pg_notify(%s, '')", (NOTIFY_CHANNEL,))


async def get_command(conn: AsyncConnection[Row], command_id: UUID, *, lock: bool = False) -> Row | None:
    cur = await conn.execute(
        f"""SELECT {COMMAND_COLUMNS}, c.prev_desired_enabled, c.prev_desired_spec, c.prev_status
            FROM commands c JOIN batteries b ON b.id = c.battery_id
            WHERE c.id = %s {"FOR UPDATE OF c" if lock else ""}""",  # noqa: S608 - constant fragments
        (command_id,),
    )
    return await cur.fetchone()


async def has_newer_command(conn: AsyncConnection[Row], *, battery_id: int, seq: int) -> bool:
    cur = await conn.execute(
        "SELECT 1 FROM commands WHERE battery_id = %s AND seq > %s LIMIT 1", (battery_id, seq)
    )
    return await cur.fetchone() is not None


async def cancel_command(conn: AsyncConnection[Row], *, command_id: UUID, reason: str, actor: str) -> Row:
    cur = await conn.execute(
        """UPDATE commands SET status = 'cancelled', finished_at = clock_timestamp(), next_attempt_at = NULL,
               cancel_reason = %s, cancelled_by = %s
           WHERE id = %s RETURNING id, finished_at""",
        (reason, actor, command_id),
    )
    row = await cur.fetchone()
    assert row is not None  # the caller holds the row lock
    return row


async def restore_desired(conn: AsyncConnection[Row], *, command: Row) -> None:
    """Put the battery back to the desired state it had before this (cancelled) command.

    That is the state before the first command of its chain of supersessions: cancelling the
    last of "disable, then enable" returns to what was wanted before the disable, not to it.
    """
    await conn.execute(
        """WITH RECURSIVE chain AS (
               SELECT id, prev_desired_enabled, prev_desired_spec, prev_status, battery_status, 0 AS depth
               FROM commands WHERE id = %(id)s
               UNION ALL
               SELECT c.id, c.prev_desired_enabled, c.prev_desired_spec, c.prev_status, c.battery_status,
                      chain.depth + 1
               FROM commands c JOIN chain ON c.superseded_by = chain.id
           ),
           first AS (SELECT * FROM chain ORDER BY depth DESC LIMIT 1),
           touched AS (SELECT bool_or(battery_status IS NOT NULL) AS status FROM chain)
           UPDATE batteries b
           SET desired_enabled = coalesce(first.prev_desired_enabled, b.desired_enabled),
               desired_spec = coalesce(first.prev_desired_spec, b.desired_spec),
               status = CASE WHEN touched.status THEN coalesce(first.prev_status, b.status) ELSE b.status END,
               updated_at = now()
           FROM first, touched
           WHERE b.id = %(battery_id)s""",
        {"id": command["id"], "battery_id": command["battery_id"]},
    )


# --- the dispatcher -------------------------------------------------------------------------------


async def claim_due(conn: AsyncConnection[Row], *, limit: int, first_sends_only: bool = False) -> list[Row]:
    """Lock the due head command of each battery that has one; skip what another process holds.

    A head is a battery's oldest open command (no older open one exists), so at most one command
    per battery is in flight and they go in order. After a concurrent update PostgreSQL re-checks
    these conditions on the newest row version, so a command another process has just published
    (its next attempt now in the future) is skipped. Call inside a transaction.
    """
    # Right after a bulk insert the statistics still say "few open commands", and the planner
    # then picks a nested loop that rescans every open command per candidate (seconds at 5,000).
    # Merge or hash anti-joins stay linear whatever the statistics say.
    await conn.execute("SET LOCAL enable_nestloop = off")
    cur = await conn.execute(
        """SELECT c.id, c.battery_id, c.action, c.spec, c.status, c.attempts, c.created_at, c.expires_at
           FROM commands c
           WHERE c.status IN ('queued', 'sent', 'delivered') AND (NOT %s OR c.status = 'queued')
             AND c.next_attempt_at <= clock_timestamp() AND c.expires_at > clock_timestamp()
             AND NOT EXISTS (SELECT 1 FROM commands older
                             WHERE older.battery_id = c.battery_id AND older.seq < c.seq
                               AND older.status IN ('queued', 'sent', 'delivered'))
           ORDER BY c.next_attempt_at
           LIMIT %s
           FOR UPDATE OF c SKIP LOCKED""",
        (first_sends_only, limit),
    )
    rows = await cur.fetchall()
    await conn.execute("SET LOCAL enable_nestloop TO DEFAULT")
    if rows:
        cur = await conn.execute(
            "SELECT id, serial_number FROM batteries WHERE id = ANY(%s)", ([r["battery_id"] for r in rows],)
        )
        serials = {b["id"]: b["serial_number"] for b in await cur.fetchall()}
        for row in rows:
            row["serial_number"] = serials[row["battery_id"]]
    return rows


async def mark_sent(
    conn: AsyncConnection[Row],
    *,
    ids: Sequence[UUID],
    published_at: Sequence[datetime],
    base_s: float,
    max_s: float,
) -> list[Row]:
    """Record publishes; the next attempt waits base * 2^(attempts-1), capped, with 10% jitter."""
    cur = await conn.execute(
        """UPDATE commands c
           SET status = CASE WHEN c.status = 'queued' THEN 'sent' ELSE c.status END,
               attempts = c.attempts + 1,
               sent_at = coalesce(c.sent_at, p.at),
               last_sent_at = p.at,
               next_attempt_at = p.at + make_interval(
                   secs => least(%s * power(2, c.attempts), %s) * (1 + random() * 0.1))
           FROM unnest(%s::uuid[], %s::timestamptz[]) AS p(id, at)
           WHERE c.id = p.id
           RETURNING c.id, c.status, c.attempts, c.next_attempt_at""",
        (base_s, max_s, list(ids), list(published_at)),
    )
    return await cur.fetchall()


async def postpone(conn: AsyncConnection[Row], *, ids: Sequence[UUID], delay_s: float) -> None:
    """Try these again later: the broker did not confirm their publish."""
    await conn.execute(
        """UPDATE commands SET next_attempt_at = clock_timestamp() + make_interval(secs => %s)
           WHERE id = ANY(%s)""",
        (delay_s, list(ids)),
    )


async def expire_due(conn: AsyncConnection[Row], *, limit: int) -> list[Row]:
    """Expire open commands past their expiry that no other transaction holds."""
    cur = await conn.execute(
        """UPDATE commands c
           SET status = 'expired', finished_at = clock_timestamp(), next_attempt_at = NULL
           FROM (SELECT id FROM commands
                 WHERE status IN ('queued', 'sent', 'delivered') AND expires_at <= clock_timestamp()
                 ORDER BY expires_at LIMIT %s FOR UPDATE SKIP LOCKED) due
           WHERE c.id = due.id
           RETURNING c.id, c.battery_id, c.expires_at, c.finished_at, c.attempts""",
        (limit,),
    )
    return await cur.fetchall()


async def nudge(conn: AsyncConnection[Row], *, serials: Sequence[str]) -> int:
    """Make the undelivered commands of these (just online) batteries due now.

    A delivered command is not re-sent: the device has it. A sent one may have been published
    while the battery was away, so it goes again (same id; the device treats it as done if not).
    """
    cur = await conn.execute(
        """UPDATE commands c SET next_attempt_at = clock_timestamp()
           FROM batteries b
           WHERE b.serial_number = ANY(%s) AND c.battery_id = b.id
             AND c.status IN ('queued', 'sent') AND c.next_attempt_at > clock_timestamp()""",
        (list(serials),),
    )
    return cur.rowcount


async def seconds_to_next_due(conn: AsyncConnection[Row], *, cap_s: float) -> float:
    """Seconds until the next open command falls due (past-due ones wait behind their battery's head)."""
    cur = await conn.execute(
        """SELECT least(extract(epoch FROM min(next_attempt_at) - clock_timestamp()), %s) AS s
           FROM commands
           WHERE status IN ('queued', 'sent', 'delivered') AND next_attempt_at > clock_timestamp()""",
        (cap_s,),
    )
    row = await cur.fetchone()
    value = row["s"] if row is not None else None
    return cap_s if value is None else max(0.0, float(value))


async def open_counts(conn: AsyncConnection[Row]) -> dict[str, int]:
    cur = await conn.execute(
        """SELECT status, count(*) AS n FROM commands
           WHERE status IN ('queued', 'sent', 'delivered') GROUP BY status"""
    )
    counts = {status: 0 for status in OPEN}
    counts.update({row["status"]: row["n"] for row in await cur.fetchall()})
    return counts


# --- acknowledgements -----------------------------------------------------------------------------


async def lock_batteries_of_commands(conn: AsyncConnection[Row], ids: Sequence[UUID]) -> dict[int, Row]:
    """Lock the batteries of these commands (in id order), before their command rows; their state."""
    cur = await conn.execute(
        """SELECT id, status, desired_status, reported_enabled, reported_spec, reported_at FROM batteries
           WHERE id IN (SELECT battery_id FROM commands WHERE id = ANY(%s))
           ORDER BY id FOR UPDATE""",
        (list(ids),),
    )
    return {row["id"]: row for row in await cur.fetchall()}


async def lock_commands(conn: AsyncConnection[Row], ids: Sequence[UUID]) -> list[Row]:
    cur = await conn.execute(
        """SELECT c.id, c.battery_id, b.serial_number, c.action, c.spec, c.battery_status, c.status,
                  c.sent_at, c.last_sent_at, c.delivered_at, c.finished_at
           FROM commands c JOIN batteries b ON b.id = c.battery_id
           WHERE c.id = ANY(%s) ORDER BY c.id FOR UPDATE OF c""",
        (list(ids),),
    )
    return await cur.fetchall()


async def apply_acks(conn: AsyncConnection[Row], updates: Sequence[Row]) -> None:
    """Write the folded outcome of a batch of acks: one row per command that changed."""
    if not updates:
        return
    await conn.execute(
        """UPDATE commands c
           SET status = u.status, delivered_at = u.delivered_at, finished_at = u.finished_at,
               error = coalesce(u.error, c.error),
               device_enabled = coalesce(u.device_enabled, c.device_enabled),
               next_attempt_at = CASE WHEN u.finished_at IS NULL THEN c.next_attempt_at END
           FROM unnest(%s::uuid[], %s::text[], %s::timestamptz[], %s::timestamptz[], %s::text[],
                       %s::boolean[])
                AS u(id, status, delivered_at, finished_at, error, device_enabled)
           WHERE c.id = u.id""",
        (
            [u["id"] for u in updates],
            [u["status"] for u in updates],
            [u["delivered_at"] for u in updates],
            [u["finished_at"] for u in updates],
            [u["error"] for u in updates],
            [u["device_enabled"] for u in updates],
        ),
    )


async def update_reported(conn: AsyncConnection[Row], reports: Sequence[Row], *, actor: str) -> None:
    """Record what devices said they are now (`battery_id`, `enabled`, `spec`, `at`), unless the battery
    already has a newer report, and the `status` that makes where it changes (None: unchanged).

    Only those whose status changes (from `was`) name `status` and `updated_at`, which fire the
    pack-list NOTIFY (migration 0035), and get an activity row naming `actor`: a report alone shows
    in no list.
    """
    changing = [r for r in reports if r["status"] is not None]
    staying = [r for r in reports if r["status"] is None]
    if changing:
        # One INSERT logs the status changes (the row trigger stays quiet: migration 0036).
        await conn.execute("SELECT set_config('packfleet.status_logged', 'yes', true)")
        await conn.execute(
            """WITH changed AS (
                   UPDATE batteries b
                   SET reported_enabled = r.enabled, reported_spec = r.spec, reported_at = r.at,
                       status = r.status, updated_at = now()
                   FROM unnest(%s::bigint[], %s::boolean[], %s::text[], %s::timestamptz[], %s::text[],
                               %s::text[]) AS r(id, enabled, spec, at, status, was)
                   WHERE b.id = r.id AND (b.reported_at IS NULL OR b.reported_at <= r.at)
                   RETURNING b.id, r.was, r.status)
               INSERT INTO battery_activity (battery_id, actor, action, detail)
               SELECT id, %s, 'status_changed', jsonb_build_object('from', was, 'to', status) FROM changed""",
            [*_columns(changing, "battery_id", "enabled", "spec", "at", "status", "was"), actor],
        )
        await conn.execute("SELECT set_config('packfleet.status_logged', '', true)")
    if staying:
        await conn.execute(
            """UPDATE batteries b SET reported_enabled = r.enabled, reported_spec = r.spec, reported_at = r.at
               FROM unnest(%s::bigint[], %s::boolean[], %s::text[], %s::timestamptz[])
                    AS r(id, enabled, spec, at)
               WHERE b.id = r.id AND (b.reported_at IS NULL OR b.reported_at <= r.at)""",
            _columns(staying, "battery_id", "enabled", "spec", "at"),
        )


def _columns(rows: Sequence[Row], *names: str) -> list[list[Any]]:
    return [[row[name] for row in rows] for name in names]


async def insert_dead_letters(conn: AsyncConnection[Row], letters: Sequence[Row]) -> None:
    if not letters:
        return
    await conn.execute(
        """INSERT INTO dead_letters (topic, reason, detail, received_at, payload, payload_size)
           SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[], %s::bytea[],
                                %s::int[])""",
        (
            [d["topic"] for d in letters],
            [d["reason"] for d in letters],
            [d["detail"] for d in letters],
            [d["received_at"] for d in letters],
            [d["payload"] for d in letters],
            [d["payload_size"] for d in letters],
        ),
    )
