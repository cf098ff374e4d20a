"""SQL for applications, loans, instalments, payments and the audit trail.

Functions take `conn` first and never commit. Lock order: loans (by id), then batteries (control's
order from there on: batteries, then commands).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from api.finance.access import Scope, scope_sql
from api.finance.schedule import Instalment

Row = dict[str, Any]

APPLICATION_COLUMNS = """a.id, a.dealer_id, a.consumer_id, a.battery_id, b.serial_number AS battery_serial,
    a.amount, a.tenure_months, a.interest_rate, a.status, a.nbfc_id, a.approved_amount,
    a.decision_note, a.decided_by, a.decided_at, a.submitted_at, a.disbursement_date, a.created_by,
    a.created_at, l.id AS loan_id"""
APPLICATION_FROM = """finance_applications a JOIN batteries b ON b.id = a.battery_id
    LEFT JOIN loans l ON l.application_id = a.id"""
# An overdue disable in force for a loan: its record open, and its disable command the battery's
# latest not cancelled, and not expired or failed (an operator's command since, or a disable that
# never reached the device, is not one). `battery_disabled_for_overdue` in every answer means this.
# Scalar subqueries, evaluated for the loan's own record only: as EXISTS, PostgreSQL may hash the
# subquery over every open record (each with its battery's latest command) on every call.
DISABLE_IN_FORCE = """coalesce((SELECT latest.id = d.command_id AND latest.status NOT IN ('expired', 'failed')
    FROM overdue_disables d
    CROSS JOIN LATERAL (SELECT c.id, c.status FROM commands c WHERE c.battery_id = d.battery_id
                        AND c.status <> 'cancelled' ORDER BY c.seq DESC LIMIT 1) latest
    WHERE d.loan_id = {loan} AND d.released_at IS NULL LIMIT 1), false)"""
LOAN_COLUMNS = f"""l.id, l.application_id, l.dealer_id, l.consumer_id, l.battery_id,
    b.serial_number AS battery_serial, l.nbfc_id, l.principal, l.interest_rate, l.tenure_months, l.emi,
    l.schedule_start, l.disbursement_date, l.status, l.closed_at, l.created_at,
    (SELECT true FROM overdue_disables d WHERE d.loan_id = l.id AND d.released_at IS NULL LIMIT 1)
        IS NOT NULL AS overdue_disable_open,
    {DISABLE_IN_FORCE.format(loan="l.id")} AS battery_disabled_for_overdue"""  # noqa: S608 - constants
INSTALMENT_COLUMNS = """id, loan_id, emi_number, due_date, principal, interest, amount, penalty,
    principal_paid, interest_paid, penalty_paid, paid_at"""


# --- applications -------------------------------------------------------------------------------


async def battery_for_application(conn: AsyncConnection, battery_id: int) -> Row | None:
    cur = await conn.execute(
        "SELECT id, serial_number, dealer_id, owner_id FROM batteries WHERE id = %s AND deleted_at IS NULL",
        (battery_id,),
    )
    return await cur.fetchone()


async def insert_application(
    conn: AsyncConnection,
    *,
    dealer_id: int,
    consumer_id: int,
    battery_id: int,
    amount: Decimal,
    tenure_months: int,
    interest_rate: Decimal,
    status: str,
    nbfc_id: int | None,
    created_by: str,
) -> int | None:
    """Insert an application; None when the battery already has an undecided one."""
    cur = await conn.execute(
        """INSERT INTO finance_applications (dealer_id, consumer_id, battery_id, amount, tenure_months,
                interest_rate, status, nbfc_id, submitted_at, created_by)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, CASE WHEN %s::bigint IS NULL THEN NULL ELSE now() END, %s)
           ON CONFLICT (battery_id) WHERE status IN ('pending', 'submitted', 'under_review') DO NOTHING
           RETURNING id""",
        (
            dealer_id,
            consumer_id,
            battery_id,
            amount,
            tenure_months,
            interest_rate,
            status,
            nbfc_id,
            nbfc_id,
            created_by,
        ),
    )
    row = await cur.fetchone()
    return None if row is None else row["id"]


async def get_application(conn: AsyncConnection, application_id: int, *, lock: bool = False) -> Row | None:
    cur = await conn.execute(
        f"SELECT {APPLICATION_COLUMNS} FROM {APPLICATION_FROM} WHERE a.id = %s"  # noqa: S608 - constants
        + (" FOR UPDATE OF a" if lock else ""),
        (application_id,),
    )
    return await cur.fetchone()


async def list_applications(
    conn: AsyncConnection,
    *,
    scope: Scope,
    status: str | None,
    consumer_id: int | None,
    limit: int,
    offset: int,
) -> list[Row]:
    cur = await conn.execute(
        f"""SELECT {APPLICATION_COLUMNS} FROM {APPLICATION_FROM}
            WHERE {scope_sql("a")}
              AND (%(status)s::text IS NULL OR a.status = %(status)s)
              AND (%(only_consumer)s::bigint IS NULL OR a.consumer_id = %(only_consumer)s)
            ORDER BY a.id DESC LIMIT %(limit)s OFFSET %(offset)s""",  # noqa: S608 - constants
        {**scope.params(), "status": status, "only_consumer": consumer_id, "limit": limit, "offset": offset},
    )
    return await cur.fetchall()


async def decide_application(
    conn: AsyncConnection,
    application_id: int,
    *,
    status: str,
    approved_amount: Decimal | None,
    interest_rate: Decimal,
    tenure_months: int,
    note: str | None,
    decided_by: str,
) -> None:
    await conn.execute(
        """UPDATE finance_applications SET status = %s, approved_amount = %s, interest_rate = %s,
               tenure_months = %s, decision_note = %s, decided_by = %s, decided_at = now(), updated_at = now()
           WHERE id = %s""",
        (status, approved_amount, interest_rate, tenure_months, note, decided_by, application_id),
    )


async def set_application_status(
    conn: AsyncConnection,
    application_id: int,
    *,
    status: str,
    disbursement_date: date | None = None,
) -> None:
    await conn.execute(
        """UPDATE finance_applications SET status = %s, updated_at = now(),
               disbursement_date = coalesce(%s, disbursement_date)
           WHERE id = %s""",
        (status, disbursement_date, application_id),
    )


async def consumer_applications(conn: AsyncConnection, consumer_id: int) -> list[Row]:
    cur = await conn.execute(
        f"""SELECT {APPLICATION_COLUMNS} FROM {APPLICATION_FROM}
            WHERE a.consumer_id = %s ORDER BY a.id""",  # noqa: S608 - constants
        (consumer_id,),
    )
    return await cur.fetchall()


# --- loans and instalments ----------------------------------------------------------------------


async def insert_loan(
    conn: AsyncConnection,
    *,
    application: Row,
    principal: Decimal,
    interest_rate: Decimal,
    tenure_months: int,
    emi: Decimal,
    schedule_start: date,
    disbursement_date: date | None,
) -> int | None:
    """Insert the loan of an approved application; None when the battery has a running loan."""
    cur = await conn.execute(
        """INSERT INTO loans (application_id, dealer_id, consumer_id, battery_id, nbfc_id, principal,
                interest_rate, tenure_months, emi, schedule_start, disbursement_date)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (battery_id) WHERE status = 'active' DO NOTHING RETURNING id""",
        (
            application["id"],
            application["dealer_id"],
            application["consumer_id"],
            application["battery_id"],
            application["nbfc_id"],
            principal,
            interest_rate,
            tenure_months,
            emi,
            schedule_start,
            disbursement_date,
        ),
    )
    row = await cur.fetchone()
    return None if row is None else row["id"]


async def insert_instalments(conn: AsyncConnection, loan_id: int, rows: Sequence[Instalment]) -> None:
    if not rows:
        return
    await conn.execute(
        """INSERT INTO loan_instalments (loan_id, emi_number, due_date, principal, interest)
           SELECT %s, * FROM unnest(%s::int[], %s::date[], %s::numeric[], %s::numeric[])""",
        (
            loan_id,
            [r.emi_number for r in rows],
            [r.due_date for r in rows],
            [r.principal for r in rows],
            [r.interest for r in rows],
        ),
    )


async def get_loan(conn: AsyncConnection, loan_id: int, *, lock: bool = False) -> Row | None:
    cur = await conn.execute(
        f"SELECT {LOAN_COLUMNS} FROM loans l JOIN batteries b ON b.id = l.battery_id WHERE l.id = %s"  # noqa: S608
        + (" FOR UPDATE OF l" if lock else ""),
        (loan_id,),
    )
    return await cur.fetchone()


async def loan_of_application(
    conn: AsyncConnection, application_id: int, *, lock: bool = False
) -> Row | None:
    cur = await conn.execute(
        f"""SELECT {LOAN_COLUMNS} FROM loans l JOIN batteries b ON b.id = l.battery_id
            WHERE l.application_id = %s"""  # noqa: S608 - constants
        + (" FOR UPDATE OF l" if lock else ""),
        (application_id,),
    )
    return await cur.fetchone()


async def list_loans(
    conn: AsyncConnection,
    *,
    scope: Scope,
    status: str | None,
    consumer_id: int | None,
    limit: int,
    offset: int,
) -> list[Row]:
    cur = await conn.execute(
        f"""SELECT {LOAN_COLUMNS} FROM loans l JOIN batteries b ON b.id = l.battery_id
            WHERE {scope_sql("l")}
              AND (%(status)s::text IS NULL OR l.status = %(status)s)
              AND (%(only_consumer)s::bigint IS NULL OR l.consumer_id = %(only_consumer)s)
            ORDER BY l.id DESC LIMIT %(limit)s OFFSET %(offset)s""",  # noqa: S608 - constants
        {**scope.params(), "status": status, "only_consumer": consumer_id, "limit": limit, "offset": offset},
    )
    return await cur.fetchall()


async def instalments_of(conn: AsyncConnection, loan_ids: Sequence[int]) -> list[Row]:
    """The instalments of these loans, by loan and number."""
    cur = await conn.execute(
        f"""SELECT {INSTALMENT_COLUMNS} FROM loan_instalments
            WHERE loan_id = ANY(%s) ORDER BY loan_id, emi_number""",  # noqa: S608 - constants
        (list(loan_ids),),
    )
    return await cur.fetchall()


async def move_due_dates(
    conn: AsyncConnection, loan_id: int, numbers: Sequence[int], dates: Sequence[date]
) -> None:
    await conn.execute(
        """UPDATE loan_instalments li SET due_date = n.due_date
           FROM unnest(%s::int[], %s::date[]) AS n(emi_number, due_date)
           WHERE li.loan_id = %s AND li.emi_number = n.emi_number""",
        (list(numbers), list(dates), loan_id),
    )


async def set_schedule_start(
    conn: AsyncConnection, loan_id: int, *, start: date, disbursement_date: date
) -> None:
    await conn.execute(
        "UPDATE loans SET schedule_start = %s, disbursement_date = %s WHERE id = %s",
        (start, disbursement_date, loan_id),
    )


async def delete_instalments(conn: AsyncConnection, instalment_ids: Sequence[int]) -> None:
    """Remove instalments a reschedule replaces (never ones a payment touched: allocations refer to them)."""
    await conn.execute("DELETE FROM loan_instalments WHERE id = ANY(%s)", (list(instalment_ids),))


async def set_loan_status(conn: AsyncConnection, loan_id: int, *, closed: bool) -> None:
    await conn.execute(
        """UPDATE loans SET status = CASE WHEN %s THEN 'closed' ELSE 'active' END,
               closed_at = CASE WHEN %s THEN now() END WHERE id = %s""",
        (closed, closed, loan_id),
    )


# --- audit trail --------------------------------------------------------------------------------


async def audit(
    conn: AsyncConnection,
    *,
    actor: str,
    action: str,
    application_id: int | None = None,
    loan_id: int | None = None,
    instalment_id: int | None = None,
    payment_id: int | None = None,
    battery_id: int | None = None,
    command_id: UUID | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        """INSERT INTO finance_audit (actor, action, application_id, loan_id, instalment_id, payment_id,
               battery_id, command_id, detail)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        (
            actor,
            action,
            application_id,
            loan_id,
            instalment_id,
            payment_id,
            battery_id,
            command_id,
            Jsonb(detail or {}),
        ),
    )


async def audit_many(conn: AsyncConnection, *, actor: str, action: str, entries: Sequence[Row]) -> None:
    """One audit row per entry (keys: loan_id, instalment_id, battery_id, command_id, detail)."""
    if not entries:
        return
    await conn.execute(
        """INSERT INTO finance_audit (actor, action, loan_id, instalment_id, battery_id, command_id, detail)
           SELECT %s, %s, * FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::uuid[], %s::jsonb[])""",
        (
            actor,
            action,
            [e.get("loan_id") for e in entries],
            [e.get("instalment_id") for e in entries],
            [e.get("battery_id") for e in entries],
            [e.get("command_id") for e in entries],
            [Jsonb(e.get("detail") or {}) for e in entries],
        ),
    )


async def audit_trail(conn: AsyncConnection, *, loan_id: int, application_id: int) -> list[Row]:
    """Everything recorded about a loan and the application it came from, oldest first."""
    cur = await conn.execute(
        """SELECT id, at, actor, action, application_id, loan_id, instalment_id, payment_id, battery_id,
                  command_id, detail
           FROM finance_audit WHERE loan_id = %s OR application_id = %s ORDER BY id""",
        (loan_id, application_id),
    )
    return await cur.fetchall()


# --- reports ------------------------------------------------------------------------------------


def _penalty_sql() -> str:
    """The late fee owed on an instalment today: the one charged, or what the policy charges now."""
    return """CASE WHEN li.penalty = 0 AND %(fee_on)s AND li.due_date + %(fee_after)s::int < %(today)s
                   THEN round(%(fee)s::numeric + li.amount * %(fee_percent)s::numeric / 100, 2)
                   ELSE li.penalty END"""


async def overdue_instalments(
    conn: AsyncConnection,
    *,
    scope: Scope,
    today: date,
    min_days: int,
    fee: Decimal,
    fee_percent: Decimal,
    fee_after_days: int,
    limit: int,
    offset: int,
) -> list[Row]:
    """Unpaid instalments at least `min_days` past due, the most overdue first, each row with the
    totals over all of them (`total_count`, `total_outstanding`)."""
    cur = await conn.execute(
        f"""WITH overdue AS (
                SELECT li.id, li.loan_id, li.emi_number, li.due_date, li.amount,
                       li.amount + {_penalty_sql()} - li.principal_paid - li.interest_paid - li.penalty_paid
                           AS outstanding,
                       li.principal_paid + li.interest_paid + li.penalty_paid > 0 AS touched,
                       l.principal AS loan_amount, l.tenure_months, l.consumer_id, l.dealer_id,
                       c.name AS consumer_name, c.phone AS consumer_phone, b.serial_number AS battery_serial,
                       %(today)s - li.due_date AS overdue_days
                FROM loan_instalments li
                JOIN loans l ON l.id = li.loan_id
                JOIN consumers c ON c.id = l.consumer_id
                JOIN batteries b ON b.id = l.battery_id
                WHERE li.paid_at IS NULL AND li.due_date <= %(today)s - %(min_days)s::int
                  AND l.status = 'active' AND {scope_sql("l")})
            SELECT *, count(*) OVER () AS total_count, sum(outstanding) OVER () AS total_outstanding
            FROM overdue ORDER BY due_date, id LIMIT %(limit)s OFFSET %(offset)s""",  # noqa: S608
        {
            **scope.params(),
            "today": today,
            "min_days": min_days,
            "fee_on": fee > 0 or fee_percent > 0,
            "fee": fee,
            "fee_percent": fee_percent,
            "fee_after": fee_after_days,
            "limit": limit,
            "offset": offset,
        },
        prepare=False,  # never a generic plan: "%(dealer)s IS NULL OR …" needs the values to use an index
    )
    return await cur.fetchall()


async def collections_by_day(conn: AsyncConnection, *, scope: Scope, start: date, end: date) -> list[Row]:
    """Recorded (not reversed) payments per day received."""
    cur = await conn.execute(
        f"""SELECT p.paid_on AS collection_date, count(*) AS collections_count, sum(p.amount) AS total
            FROM loan_payments p JOIN loans l ON l.id = p.loan_id
            WHERE p.status = 'recorded' AND p.paid_on BETWEEN %(start)s AND %(end)s
              AND (%(dealer)s::bigint IS NULL OR p.dealer_id = %(dealer)s)
              AND {scope_sql("l")}
            GROUP BY p.paid_on ORDER BY p.paid_on""",  # noqa: S608 - constants
        {**scope.params(), "start": start, "end": end},
        prepare=False,  # as overdue_instalments: a generic plan of the scope's ORs reads every payment
    )
    return await cur.fetchall()
