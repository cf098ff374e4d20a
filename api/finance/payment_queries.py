"""SQL for payments, their allocation over instalments and their reversals.

Functions take `conn` first and never commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from psycopg import AsyncConnection

from api.finance.schedule import Allocation

Row = dict[str, Any]

PAYMENT_COLUMNS = """p.id, p.loan_id, p.dealer_id, p.reference, p.amount, p.paid_on, p.method,
    p.prepaid_principal, p.status, p.recorded_by, p.recorded_at, r.reversed_at, r.reason AS reversal_reason"""


async def payment_by_reference(conn: AsyncConnection, *, dealer_id: int, reference: str) -> Row | None:
    cur = await conn.execute(
        f"""SELECT {PAYMENT_COLUMNS} FROM loan_payments p LEFT JOIN payment_reversals r ON r.payment_id = p.id
            WHERE p.dealer_id = %s AND p.reference = %s""",  # noqa: S608 - constants
        (dealer_id, reference),
    )
    return await cur.fetchone()


async def get_payment(conn: AsyncConnection, payment_id: int) -> Row | None:
    cur = await conn.execute(
        f"""SELECT {PAYMENT_COLUMNS} FROM loan_payments p LEFT JOIN payment_reversals r ON r.payment_id = p.id
            WHERE p.id = %s""",  # noqa: S608 - constants
        (payment_id,),
    )
    return await cur.fetchone()


async def insert_payment(
    conn: AsyncConnection,
    *,
    loan_id: int,
    dealer_id: int,
    reference: str,
    amount: Decimal,
    paid_on: date,
    method: str,
    prepaid_principal: Decimal,
    recorded_by: str,
) -> Row | None:
    """Insert a payment and return it; None when the dealer already has one with this reference."""
    cur = await conn.execute(
        """INSERT INTO loan_payments (loan_id, dealer_id, reference, amount, paid_on, method,
               prepaid_principal, recorded_by)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (dealer_id, reference) DO NOTHING
           RETURNING id, loan_id, dealer_id, reference, amount, paid_on, method, prepaid_principal, status,
                     recorded_by, recorded_at""",
        (loan_id, dealer_id, reference, amount, paid_on, method, prepaid_principal, recorded_by),
    )
    return await cur.fetchone()


async def insert_allocations(
    conn: AsyncConnection, payment_id: int, allocations: Sequence[Allocation]
) -> None:
    if not allocations:
        return
    await conn.execute(
        """INSERT INTO payment_allocations (payment_id, instalment_id, penalty, interest, principal)
           SELECT %s, * FROM unnest(%s::bigint[], %s::numeric[], %s::numeric[], %s::numeric[])""",
        (
            payment_id,
            [a.instalment_id for a in allocations],
            [a.penalty for a in allocations],
            [a.interest for a in allocations],
            [a.principal for a in allocations],
        ),
    )


async def apply_to_instalments(
    conn: AsyncConnection, allocations: Sequence[Allocation], penalties: dict[int, Decimal]
) -> None:
    """Add what a payment paid to its instalments (and the late fees it found due); mark the paid ones."""
    ids = sorted({a.instalment_id for a in allocations} | set(penalties))
    if not ids:
        return
    by_id = {a.instalment_id: a for a in allocations}
    zero = Decimal(0)
    await conn.execute(
        """UPDATE loan_instalments li
           SET penalty = greatest(li.penalty, n.penalty),
               penalty_paid = li.penalty_paid + n.penalty_paid,
               interest_paid = li.interest_paid + n.interest_paid,
               principal_paid = li.principal_paid + n.principal_paid,
               paid_at = CASE WHEN li.principal_paid + n.principal_paid = li.principal
                               AND li.interest_paid + n.interest_paid = li.interest
                               AND li.penalty_paid + n.penalty_paid = greatest(li.penalty, n.penalty)
                              THEN now() END
           FROM unnest(%s::bigint[], %s::numeric[], %s::numeric[], %s::numeric[], %s::numeric[])
                AS n(id, penalty, penalty_paid, interest_paid, principal_paid)
           WHERE li.id = n.id""",
        (
            ids,
            [penalties.get(i, zero) for i in ids],
            [by_id[i].penalty if i in by_id else zero for i in ids],
            [by_id[i].interest if i in by_id else zero for i in ids],
            [by_id[i].principal if i in by_id else zero for i in ids],
        ),
    )


async def take_back_allocations(conn: AsyncConnection, payment_id: int) -> None:
    """Re-open what a payment paid (its late fees stay charged: the instalments were late)."""
    await conn.execute(
        """UPDATE loan_instalments li
           SET penalty_paid = li.penalty_paid - a.penalty, interest_paid = li.interest_paid - a.interest,
               principal_paid = li.principal_paid - a.principal, paid_at = NULL
           FROM (SELECT instalment_id, sum(penalty) AS penalty, sum(interest) AS interest,
                        sum(principal) AS principal
                 FROM payment_allocations WHERE payment_id = %s GROUP BY instalment_id) a
           WHERE li.id = a.instalment_id""",
        (payment_id,),
    )


async def insert_reversal(conn: AsyncConnection, *, payment_id: int, reason: str, reversed_by: str) -> bool:
    """Record the reversal; False when the payment was already reversed."""
    cur = await conn.execute(
        """INSERT INTO payment_reversals (payment_id, reason, reversed_by) VALUES (%s, %s, %s)
           ON CONFLICT (payment_id) DO NOTHING RETURNING id""",
        (payment_id, reason, reversed_by),
    )
    if await cur.fetchone() is None:
        return False
    await conn.execute("UPDATE loan_payments SET status = 'reversed' WHERE id = %s", (payment_id,))
    return True


async def allocations_of(conn: AsyncConnection, payment_ids: Sequence[int]) -> list[Row]:
    cur = await conn.execute(
        """SELECT a.payment_id, a.instalment_id, li.emi_number, a.penalty, a.interest, a.principal
           FROM payment_allocations a JOIN loan_instalments li ON li.id = a.instalment_id
           WHERE a.payment_id = ANY(%s) ORDER BY a.payment_id, a.id""",
        (list(payment_ids),),
    )
    return await cur.fetchall()


async def payments_of_loan(conn: AsyncConnection, loan_id: int, *, limit: int, offset: int) -> list[Row]:
    cur = await conn.execute(
        f"""SELECT {PAYMENT_COLUMNS} FROM loan_payments p LEFT JOIN payment_reversals r ON r.payment_id = p.id
            WHERE p.loan_id = %s ORDER BY p.id DESC LIMIT %s OFFSET %s""",  # noqa: S608 - constants
        (loan_id, limit, offset),
    )
    return await cur.fetchall()
