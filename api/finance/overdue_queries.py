"""SQL of the overdue warnings and auto-disables (tables overdue_warnings, overdue_disables).

Functions take `conn` first and never commit. "The oldest unpaid instalment" of a loan decides how
overdue it is; a battery has at most one open disable record.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection

from api.finance.access import Scope, scope_sql
from api.finance.queries import DISABLE_IN_FORCE

Row = dict[str, Any]

OWED = "li.amount + li.penalty - li.principal_paid - li.interest_paid - li.penalty_paid"

# The oldest unpaid instalment of each active loan in scope, with what the SMS and decisions need.
_OLDEST_UNPAID = f"""
    SELECT DISTINCT ON (li.loan_id)
           li.loan_id, li.id AS instalment_id, li.due_date, l.battery_id, l.consumer_id, l.dealer_id,
           b.serial_number AS battery_serial, b.desired_charging, b.desired_discharging,
           c.name AS consumer_name, c.phone AS consumer_phone
    FROM loan_instalments li
    JOIN loans l ON l.id = li.loan_id
    JOIN batteries b ON b.id = l.battery_id AND b.deleted_at IS NULL
    JOIN consumers c ON c.id = l.consumer_id
    WHERE li.paid_at IS NULL AND li.due_date <= %(cutoff)s AND l.status = 'active' AND {scope_sql("l")}
      AND (%(loans)s::bigint[] IS NULL OR l.id = ANY(%(loans)s))
    ORDER BY li.loan_id, li.due_date, li.emi_number"""  # noqa: S608 - constant fragments


async def to_warn(conn: AsyncConnection, *, scope: Scope, today: date, cutoff: date) -> list[Row]:
    """Loans whose oldest unpaid instalment is overdue and due on or before `cutoff` (the disable is
    near), not warned about it yet, and whose battery is not disabled for an overdue already."""
    cur = await conn.execute(
        f"""SELECT o.*, (SELECT sum({OWED})
                         FROM loan_instalments li
                         WHERE li.loan_id = o.loan_id AND li.paid_at IS NULL AND li.due_date < %(today)s)
                        AS overdue_amount
            FROM ({_OLDEST_UNPAID}) o
            WHERE o.due_date < %(today)s
              AND NOT EXISTS (SELECT 1 FROM overdue_warnings w WHERE w.instalment_id = o.instalment_id)
              AND NOT EXISTS (SELECT 1 FROM overdue_disables d
                              WHERE d.battery_id = o.battery_id AND d.released_at IS NULL)""",  # noqa: S608
        {**scope.params(), "today": today, "cutoff": cutoff, "loans": None},
    )
    return await cur.fetchall()


async def insert_warnings(
    conn: AsyncConnection, rows: Sequence[Row], *, disable_from: Sequence[date]
) -> set[int]:
    """Record warnings; return the instalments this call warned about (not a concurrent one)."""
    cur = await conn.execute(
        """INSERT INTO overdue_warnings (instalment_id, loan_id, disable_from)
           SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::date[])
           ON CONFLICT (instalment_id) DO NOTHING RETURNING instalment_id""",
        ([r["instalment_id"] for r in rows], [r["loan_id"] for r in rows], list(disable_from)),
    )
    return {r["instalment_id"] for r in await cur.fetchall()}


async def to_disable(
    conn: AsyncConnection,
    *,
    scope: Scope,
    today: date,
    threshold_days: int,
    warned_before: datetime,
    loan_ids: Sequence[int] | None = None,
) -> list[Row]:
    """Loans overdue beyond the threshold whose battery has no open disable record, unless an
    operator already overrode a disable for the same instalment. `warned` says whether the consumer
    was warned (about an instalment still unpaid) before `warned_before`, by an earlier transaction,
    with the warning's `disable_from` reached; the battery's latest
    reading comes along for the at-rest check."""
    cur = await conn.execute(
        f"""SELECT o.*, %(today)s - o.due_date AS overdue_days,
                   (SELECT sum({OWED})
                    FROM loan_instalments li
                    WHERE li.loan_id = o.loan_id AND li.paid_at IS NULL AND li.due_date < %(today)s)
                       AS overdue_amount,
                   EXISTS (SELECT 1 FROM overdue_warnings w
                           JOIN loan_instalments wi ON wi.id = w.instalment_id
                           WHERE w.loan_id = o.loan_id AND wi.paid_at IS NULL
                             AND w.disable_from <= %(today)s
                             AND w.warned_at <= %(warned_before)s AND w.warned_at < now()) AS warned,
                   bl.ts AS reading_ts, bl.current AS reading_current
            FROM ({_OLDEST_UNPAID}) o
            LEFT JOIN battery_latest bl ON bl.battery_id = o.battery_id
            WHERE NOT EXISTS (SELECT 1 FROM overdue_disables d
                              WHERE d.battery_id = o.battery_id AND d.released_at IS NULL)
              AND NOT EXISTS (SELECT 1 FROM overdue_disables d
                              WHERE d.instalment_id = o.instalment_id AND d.release_reason = 'operator')
            ORDER BY o.loan_id""",  # noqa: S608 - constant fragments
        {
            **scope.params(),
            "today": today,
            "cutoff": date.fromordinal(today.toordinal() - threshold_days - 1),
            "warned_before": warned_before,
            "loans": None if loan_ids is None else list(loan_ids),
        },
    )
    return await cur.fetchall()


async def lock_loans(conn: AsyncConnection, loan_ids: Sequence[int]) -> None:
    """Lock these loans in id order (payments lock them too: neither waits on the other in a cycle)."""
    await conn.execute("SELECT id FROM loans WHERE id = ANY(%s) ORDER BY id FOR UPDATE", (list(loan_ids),))


async def insert_disables(conn: AsyncConnection, rows: Sequence[Row]) -> list[Row]:
    """One open record per disabled battery (the open-battery key refuses a second one)."""
    cur = await conn.execute(
        """INSERT INTO overdue_disables (loan_id, battery_id, instalment_id, overdue_days, spec, command_id)
           SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::int[], %s::text[], %s::uuid[])
           RETURNING id, battery_id""",
        (
            [r["loan_id"] for r in rows],
            [r["battery_id"] for r in rows],
            [r["instalment_id"] for r in rows],
            [r["overdue_days"] for r in rows],
            [r["spec"] for r in rows],
            [r["command_id"] for r in rows],
        ),
    )
    return await cur.fetchall()


async def open_disables(
    conn: AsyncConnection, *, scope: Scope, loan_id: int | None = None, lock: bool = False
) -> list[Row]:
    """Open records, each with its battery's latest command not cancelled (a command cancelled by an
    operator put the desired state back: it overrides nothing; ours cancelled or superseded leaves
    another one latest) and latest reading; `lock` locks the
    records and their batteries (in battery order; lock the loans first)."""
    cur = await conn.execute(
        f"""SELECT d.id, d.loan_id, d.battery_id, d.instalment_id, d.spec, d.command_id, d.overdue_days,
                   b.serial_number AS battery_serial, c.name AS consumer_name, c.phone AS consumer_phone,
                   l.consumer_id, latest.id AS latest_command_id, latest.status AS latest_command_status,
                   bl.ts AS reading_ts, bl.current AS reading_current
            FROM overdue_disables d
            JOIN loans l ON l.id = d.loan_id
            JOIN batteries b ON b.id = d.battery_id
            JOIN consumers c ON c.id = l.consumer_id
            LEFT JOIN LATERAL (SELECT id, status FROM commands
                               WHERE battery_id = d.battery_id AND status <> 'cancelled'
                               ORDER BY seq DESC LIMIT 1) latest ON true
            LEFT JOIN battery_latest bl ON bl.battery_id = d.battery_id
            WHERE d.released_at IS NULL AND {scope_sql("l")}
              AND (%(loan)s::bigint IS NULL OR d.loan_id = %(loan)s)
            ORDER BY d.battery_id"""  # noqa: S608 - constant fragments
        + (" FOR UPDATE OF d, b" if lock else ""),
        {**scope.params(), "loan": loan_id},
    )
    return await cur.fetchall()


async def release(
    conn: AsyncConnection,
    disable_id: int,
    *,
    reason: str,
    enable_command_id: UUID | None = None,
    payment_id: int | None = None,
) -> None:
    await conn.execute(
        """UPDATE overdue_disables SET released_at = now(), release_reason = %s, enable_command_id = %s,
               released_by_payment_id = %s
           WHERE id = %s AND released_at IS NULL""",
        (reason, enable_command_id, payment_id, disable_id),
    )


async def replace_command(conn: AsyncConnection, disable_id: int, *, old: UUID, new: UUID, spec: str) -> bool:
    """Point an open record at a newer disable command of ours; False if someone else did first."""
    cur = await conn.execute(
        """UPDATE overdue_disables SET command_id = %s, spec = %s
           WHERE id = %s AND command_id = %s AND released_at IS NULL""",
        (new, spec, disable_id, old),
    )
    return cur.rowcount == 1


async def overdue_amount(conn: AsyncConnection, loan_id: int, today: date) -> Decimal:
    """What is owed on the loan's instalments past their due date (late fees charged included)."""
    cur = await conn.execute(
        """SELECT coalesce(sum(amount + penalty - principal_paid - interest_paid - penalty_paid), 0) AS owed
           FROM loan_instalments WHERE loan_id = %s AND paid_at IS NULL AND due_date < %s""",
        (loan_id, today),
    )
    row = await cur.fetchone()
    assert row is not None
    return row["owed"]


async def disabled_for_overdue(conn: AsyncConnection, loan_id: int) -> bool:
    """Whether an overdue disable of the loan is in force (queries.DISABLE_IN_FORCE)."""
    cur = await conn.execute(f"SELECT {DISABLE_IN_FORCE.format(loan='%s')} AS in_force", (loan_id,))
    row = await cur.fetchone()
    assert row is not None
    return bool(row["in_force"])


async def has_overdue(conn: AsyncConnection, loan_id: int, today: date) -> bool:
    cur = await conn.execute(
        "SELECT 1 FROM loan_instalments WHERE loan_id = %s AND paid_at IS NULL AND due_date < %s LIMIT 1",
        (loan_id, today),
    )
    return await cur.fetchone() is not None


async def lock_battery(conn: AsyncConnection, battery_id: int) -> None:
    await conn.execute("SELECT id FROM batteries WHERE id = %s FOR UPDATE", (battery_id,))


async def enable_of_payment(conn: AsyncConnection, payment_id: int) -> UUID | None:
    cur = await conn.execute(
        "SELECT enable_command_id FROM overdue_disables WHERE released_by_payment_id = %s LIMIT 1",
        (payment_id,),
    )
    row = await cur.fetchone()
    return None if row is None else row["enable_command_id"]


async def released_by_payment(conn: AsyncConnection, payment_id: int) -> Row | None:
    """The disable a payment released (paid), with the battery's latest command not cancelled now."""
    cur = await conn.execute(
        """SELECT d.id, d.loan_id, d.battery_id, d.enable_command_id,
                  (SELECT c.id FROM commands c WHERE c.battery_id = d.battery_id AND c.status <> 'cancelled'
                   ORDER BY c.seq DESC LIMIT 1) AS latest_command_id
           FROM overdue_disables d
           WHERE d.released_by_payment_id = %s AND d.release_reason = 'paid'""",
        (payment_id,),
    )
    return await cur.fetchone()
