"""SQL of the service desk (technicians, tickets, history). Functions take `conn` first, never commit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection, sql

TICKET_COLUMNS = """
    t.id, t.battery_id, b.serial_number AS battery_serial, t.dealer_id, t.consumer_id, t.issue_category,
    t.description, t.assigned_to, t.status, t.priority, t.location, t.latitude, t.longitude,
    t.resolution_notes, t.parts_used, t.labor_hours::float8 AS labor_hours, t.customer_rating, t.source,
    t.auto_kind, t.sla_due_at, t.created_at, t.updated_at, t.assigned_at, t.started_at, t.resolved_at,
    t.closed_at
"""
TECHNICIAN_COLUMNS = """
    u.id, u.name, u.phone, u.active, u.role, p.location, p.latitude, p.longitude, p.status, p.skills,
    p.rating::float8 AS rating, p.experience_years, p.current_load, p.created_at, p.updated_at
"""


@dataclass(frozen=True)
class TicketScope:
    """Which tickets a caller reaches; None is no restriction on that column."""

    dealer_id: int | None = None
    consumer_id: int | None = None
    technician_id: int | None = None

    def params(self) -> dict[str, Any]:
        return {"s_dealer": self.dealer_id, "s_consumer": self.consumer_id, "s_tech": self.technician_id}


SCOPE_SQL = """(%(s_dealer)s::bigint IS NULL OR t.dealer_id = %(s_dealer)s)
    AND (%(s_consumer)s::bigint IS NULL OR t.consumer_id = %(s_consumer)s)
    AND (%(s_tech)s::bigint IS NULL OR t.assigned_to = %(s_tech)s)"""


async def set_actor(conn: AsyncConnection, actor: str, note: str | None = None) -> None:
    """Name who acts (and why) in this transaction, for the ticket-history trigger."""
    await conn.execute(
        "SELECT set_config('packfleet.actor', %s, true), set_config('packfleet.note', %s, true)",
        (actor, note or ""),
    )


async def read_snapshot(conn: AsyncConnection) -> None:
    """Make this transaction one read-only snapshot, planned for each statement's parameters: a
    prepared statement's generic plan keeps every branch of `$1 IS NULL OR dealer_id = $1`."""
    await conn.execute(
        "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY;"
        " SET LOCAL plan_cache_mode = force_custom_plan"
    )


# --- batteries, as tickets need them ------------------------------------------------------------------


async def battery_for_ticket(conn: AsyncConnection, battery_id: int) -> dict[str, Any] | None:
    """A live battery with its dealer, owner and last GPS fix."""
    cur = await conn.execute(
        """SELECT b.id, b.serial_number, b.dealer_id, b.owner_id, l.lat, l.lon
           FROM batteries b LEFT JOIN battery_latest l ON l.battery_id = b.id
           WHERE b.id = %s AND b.deleted_at IS NULL""",
        (battery_id,),
    )
    return await cur.fetchone()


# --- technicians -------------------------------------------------------------------------------------


async def get_user(conn: AsyncConnection, user_id: int) -> dict[str, Any] | None:
    cur = await conn.execute("SELECT id, phone, name, role, active FROM users WHERE id = %s", (user_id,))
    return await cur.fetchone()


async def user_by_phone(conn: AsyncConnection, phone: str) -> dict[str, Any] | None:
    cur = await conn.execute("SELECT id, phone, name, role, active FROM users WHERE phone = %s", (phone,))
    return await cur.fetchone()


async def insert_technician_user(conn: AsyncConnection, *, phone: str, name: str) -> dict[str, Any] | None:
    cur = await conn.execute(
        """INSERT INTO users (phone, name, role) VALUES (%s, %s, 'technician')
           ON CONFLICT (phone) DO NOTHING RETURNING id""",
        (phone, name),
    )
    return await cur.fetchone()


async def insert_profile(conn: AsyncConnection, user_id: int, fields: dict[str, Any]) -> bool:
    """Add a technician profile; False when the user already has one."""
    cur = await conn.execute(
        """INSERT INTO technicians (user_id, skills, rating, experience_years, location, latitude, longitude,
                                    status)
           VALUES (%(id)s, %(skills)s, %(rating)s, %(experience_years)s, %(location)s, %(latitude)s,
                   %(longitude)s, %(status)s)
           ON CONFLICT (user_id) DO NOTHING RETURNING user_id""",
        {"id": user_id, **fields},
    )
    return await cur.fetchone() is not None


async def get_technician(conn: AsyncConnection, user_id: int) -> dict[str, Any] | None:
    cur = await conn.execute(
        f"""SELECT {TECHNICIAN_COLUMNS} FROM technicians p JOIN users u ON u.id = p.user_id
            WHERE p.user_id = %s""",  # noqa: S608 - a constant column list
        (user_id,),
    )
    return await cur.fetchone()


async def list_technicians(
    conn: AsyncConnection, *, status: str | None, skill: str | None, limit: int, offset: int
) -> list[dict[str, Any]]:
    cur = await conn.execute(
        f"""SELECT {TECHNICIAN_COLUMNS} FROM technicians p JOIN users u ON u.id = p.user_id
            WHERE (%(status)s::text IS NULL OR p.status = %(status)s)
              AND (%(skill)s::text IS NULL OR %(skill)s = ANY (p.skills))
            ORDER BY u.id LIMIT %(limit)s OFFSET %(offset)s""",  # noqa: S608 - a constant column list
        {"status": status, "skill": skill, "limit": limit, "offset": offset},
    )
    return await cur.fetchall()


_PROFILE_FIELDS = ("skills", "rating", "experience_years", "location", "latitude", "longitude", "status")


async def update_profile(conn: AsyncConnection, user_id: int, fields: dict[str, Any]) -> None:
    """Change the given profile fields (and the name, on the user)."""
    if "name" in fields:
        await conn.execute("UPDATE users SET name = %s WHERE id = %s", (fields["name"], user_id))
    sets = [
        sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder(k))
        for k in _PROFILE_FIELDS
        if k in fields
    ]
    await conn.execute(
        sql.SQL("UPDATE technicians SET {} WHERE user_id = %(id)s").format(
            sql.SQL(", ").join([*sets, sql.SQL("updated_at = now()")])
        ),
        {"id": user_id, **{k: v for k, v in fields.items() if k in _PROFILE_FIELDS}},
    )


async def candidates(
    conn: AsyncConnection, *, max_load: int, skills: tuple[str, ...], location: str | None, lock: bool
) -> list[dict[str, Any]]:
    """Available technicians of active users below the load limit (with one of `skills`, if any;
    at `location`, if given). With `lock`, their rows are locked in id order, so that concurrent
    assignments see each other's loads and never both take a last free slot."""
    query = f"""SELECT {TECHNICIAN_COLUMNS} FROM technicians p JOIN users u ON u.id = p.user_id
                WHERE p.status = 'available' AND u.active AND u.role = 'technician'
                  AND p.current_load < %(max_load)s
                  AND (cardinality(%(skills)s::text[]) = 0 OR p.skills && %(skills)s::text[])
                  AND (%(location)s::text IS NULL OR lower(p.location) = lower(%(location)s))
                ORDER BY p.user_id"""  # noqa: S608 - constant column list
    if lock:
        query += " FOR UPDATE OF p"
    cur = await conn.execute(query, {"max_load": max_load, "skills": list(skills), "location": location})
    return await cur.fetchall()


async def lock_technicians(conn: AsyncConnection, user_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Lock these technicians' rows in id order (the load trigger's order) and read them."""
    cur = await conn.execute(
        f"""SELECT {TECHNICIAN_COLUMNS} FROM technicians p JOIN users u ON u.id = p.user_id
            WHERE p.user_id = ANY(%s) ORDER BY p.user_id FOR UPDATE OF p""",  # noqa: S608
        (user_ids,),
    )
    return {r["id"]: r for r in await cur.fetchall()}


# --- tickets -----------------------------------------------------------------------------------------


async def insert_ticket(conn: AsyncConnection, fields: dict[str, Any]) -> int:
    cur = await conn.execute(
        """INSERT INTO service_tickets (battery_id, dealer_id, consumer_id, issue_category, description,
                                        location, latitude, longitude, priority, opened_by, sla_due_at)
           VALUES (%(battery_id)s, %(dealer_id)s, %(consumer_id)s, %(issue_category)s, %(description)s,
                   %(location)s, %(latitude)s, %(longitude)s, %(priority)s, %(opened_by)s,
                   now() + make_interval(secs => %(sla_seconds)s))
           RETURNING id""",
        fields,
    )
    row = await cur.fetchone()
    assert row is not None
    return row["id"]


async def insert_health_ticket(
    conn: AsyncConnection, *, battery_id: int, kind: str, category: str, reason: str, sla_seconds: float
) -> int | None:
    """A high-priority ticket of the health job; None while the battery has an active one for `kind`."""
    cur = await conn.execute(
        """INSERT INTO service_tickets (battery_id, dealer_id, consumer_id, issue_category, description,
                                        priority, source, auto_kind, sla_due_at)
           SELECT b.id, b.dealer_id, b.owner_id, %(category)s, %(reason)s, 'high', 'health', %(kind)s,
                  now() + make_interval(secs => %(sla)s)
           FROM batteries b WHERE b.id = %(battery)s AND b.deleted_at IS NULL
           ON CONFLICT (battery_id, auto_kind)
               WHERE auto_kind IS NOT NULL AND status IN ('open', 'assigned', 'in_progress')
           DO NOTHING RETURNING id""",
        {"category": category, "reason": reason, "kind": kind, "battery": battery_id, "sla": sla_seconds},
    )
    row = await cur.fetchone()
    return None if row is None else int(row["id"])


async def get_ticket(conn: AsyncConnection, ticket_id: int, *, lock: bool = False) -> dict[str, Any] | None:
    query = f"""SELECT {TICKET_COLUMNS}, l.lat AS battery_lat, l.lon AS battery_lon
                FROM service_tickets t JOIN batteries b ON b.id = t.battery_id
                LEFT JOIN battery_latest l ON l.battery_id = t.battery_id
                WHERE t.id = %s"""  # noqa: S608 - a constant column list
    cur = await conn.execute(query + (" FOR UPDATE OF t" if lock else ""), (ticket_id,))
    return await cur.fetchone()


async def list_tickets(
    conn: AsyncConnection, scope: TicketScope, *, filters: dict[str, Any], limit: int, offset: int
) -> list[dict[str, Any]]:
    cur = await conn.execute(
        f"""SELECT {TICKET_COLUMNS} FROM service_tickets t JOIN batteries b ON b.id = t.battery_id
            WHERE {SCOPE_SQL}
              AND (%(status)s::text IS NULL OR t.status = %(status)s)
              AND (%(battery_id)s::bigint IS NULL OR t.battery_id = %(battery_id)s)
              AND (%(issue_category)s::text IS NULL OR t.issue_category = %(issue_category)s)
              AND (%(priority)s::text IS NULL OR t.priority = %(priority)s)
              AND (%(assigned_to)s::bigint IS NULL OR t.assigned_to = %(assigned_to)s)
            ORDER BY t.created_at DESC, t.id DESC LIMIT %(limit)s OFFSET %(offset)s""",  # noqa: S608
        {**scope.params(), **filters, "limit": limit, "offset": offset},
        prepare=False,  # planned for this scope each time (a generic plan keeps every OR branch)
    )
    return await cur.fetchall()


async def active_tickets(
    conn: AsyncConnection, scope: TicketScope, *, limit: int, offset: int
) -> list[dict[str, Any]]:
    """Open, assigned and in-progress tickets, newest first, with battery, consumer and technician."""
    cur = await conn.execute(
        f"""SELECT t.id, t.battery_id, t.issue_category, t.description, t.assigned_to, t.status, t.priority,
                   t.location, b.serial_number AS battery_serial, c.name AS consumer_name,
                   c.phone AS consumer_phone, u.name AS technician_name, t.sla_due_at, t.created_at
            FROM service_tickets t
            JOIN batteries b ON b.id = t.battery_id
            LEFT JOIN consumers c ON c.id = t.consumer_id
            LEFT JOIN users u ON u.id = t.assigned_to
            WHERE t.status IN ('open', 'assigned', 'in_progress') AND {SCOPE_SQL}
            ORDER BY t.created_at DESC, t.id DESC LIMIT %(limit)s OFFSET %(offset)s""",  # noqa: S608
        {**scope.params(), "limit": limit, "offset": offset},
    )
    return await cur.fetchall()


async def active_summary(conn: AsyncConnection, scope: TicketScope) -> dict[str, int]:
    cur = await conn.execute(
        f"""SELECT count(*) FILTER (WHERE t.status = 'open') AS open,
                   count(*) FILTER (WHERE t.status = 'assigned') AS assigned,
                   count(*) FILTER (WHERE t.status = 'in_progress') AS in_progress
            FROM service_tickets t
            WHERE t.status IN ('open', 'assigned', 'in_progress') AND {SCOPE_SQL}""",  # noqa: S608
        scope.params(),
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def assign(
    conn: AsyncConnection,
    ticket_id: int,
    *,
    technician_id: int,
    priority: str | None,
    sla_seconds: float | None,
) -> None:
    """Give the ticket to the technician (a new priority resets the SLA from the ticket's creation)."""
    await conn.execute(
        """UPDATE service_tickets
           SET assigned_to = %(tech)s, status = 'assigned',
               assigned_at = CASE WHEN assigned_to IS DISTINCT FROM %(tech)s THEN now() ELSE assigned_at END,
               priority = coalesce(%(priority)s, priority),
               sla_due_at = CASE WHEN %(sla)s::float8 IS NULL THEN sla_due_at
                                 ELSE created_at + make_interval(secs => %(sla)s) END,
               updated_at = now()
           WHERE id = %(id)s""",
        {"tech": technician_id, "priority": priority, "sla": sla_seconds, "id": ticket_id},
    )


_MOVE_TIMES = {
    "in_progress": "started_at = now()",
    "resolved": "resolved_at = now()",
    "closed": "closed_at = now()",
    # Reopened: back to open and unassigned; the work of the last round stays in the history.
    "open": "assigned_to = NULL, assigned_at = NULL, started_at = NULL, resolved_at = NULL",
}
_UPDATE_FIELDS = ("description", "resolution_notes", "parts_used", "labor_hours", "location")


async def update_ticket(
    conn: AsyncConnection, ticket_id: int, *, status: str | None, fields: dict[str, Any]
) -> None:
    """Move the ticket to `status` (stamping the move's time) and change the given fields."""
    sets = [
        sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder(k))
        for k in _UPDATE_FIELDS
        if k in fields
    ]
    if status is not None:
        sets.append(sql.SQL("status = {}").format(sql.Placeholder("status")))
        sets.append(sql.SQL(_MOVE_TIMES[status]))
    sets.append(sql.SQL("updated_at = now()"))
    await conn.execute(
        sql.SQL("UPDATE service_tickets SET {} WHERE id = %(id)s").format(sql.SQL(", ").join(sets)),
        {**{k: v for k, v in fields.items() if k in _UPDATE_FIELDS}, "status": status, "id": ticket_id},
    )


async def set_feedback(conn: AsyncConnection, ticket_id: int, *, rating: int, comment: str | None) -> None:
    await conn.execute(
        """UPDATE service_tickets SET customer_rating = %s, customer_feedback = %s, updated_at = now()
           WHERE id = %s""",
        (rating, comment, ticket_id),
    )


async def history(conn: AsyncConnection, ticket_id: int) -> list[dict[str, Any]]:
    cur = await conn.execute(
        """SELECT h.id, h.at, h.actor, u.name AS actor_name, h.action, h.from_status, h.to_status,
                  h.from_technician_id, h.to_technician_id, h.changes, h.note
           FROM service_ticket_history h
           LEFT JOIN users u
               ON u.id = CASE WHEN h.actor ~ '^user:[0-9]{1,18}$' THEN substr(h.actor, 6)::bigint END
           WHERE h.ticket_id = %s ORDER BY h.at, h.id""",
        (ticket_id,),
    )
    return await cur.fetchall()


async def ticket_counts_by_battery(
    conn: AsyncConnection, battery_ids: list[int]
) -> dict[int, dict[str, int]]:
    """Per battery: its tickets, and those still active."""
    cur = await conn.execute(
        """SELECT battery_id, count(*) AS total,
                  count(*) FILTER (WHERE status IN ('open', 'assigned', 'in_progress')) AS active
           FROM service_tickets WHERE battery_id = ANY(%s) GROUP BY battery_id""",
        (battery_ids,),
    )
    return {r["battery_id"]: {"total": r["total"], "active": r["active"]} for r in await cur.fetchall()}


async def recent_consumer_tickets(
    conn: AsyncConnection, battery_ids: list[int], limit: int
) -> list[dict[str, Any]]:
    cur = await conn.execute(
        """SELECT t.id, t.issue_category, t.status, b.serial_number AS battery_serial, t.created_at
           FROM service_tickets t JOIN batteries b ON b.id = t.battery_id
           WHERE t.battery_id = ANY(%s) ORDER BY t.created_at DESC, t.id DESC LIMIT %s""",
        (battery_ids, limit),
    )
    return await cur.fetchall()
