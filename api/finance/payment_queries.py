"""SQL for payments, their allocation over instalments and their reversals.

Functions take `conn` first and never commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

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


async def record_allocated(
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
    allocations: Sequence[Allocation],
    penalties: dict[int, Decimal],
    audit_detail: dict[str, Any] | None,
) -> Row | None:
    """Insert a payment, its allocations, what they add to the instalments (and the late fees they
    found due) and its audit entry, in one statement (one round trip: the payment path's cost is
    its statements); None, and nothing written, when the dealer already has this reference. Without
    `audit_detail` the caller writes the audit entry (after what it does next)."""
    ids = sorted({a.instalment_id for a in allocations} | set(penalties))
    by_id = {a.instalment_id: a for a in allocations}
    zero = Decimal(0)
    cur = await conn.execute(
        """WITH p AS (
               INSERT INTO loan_payments (loan_id, dealer_id, reference, amount, paid_on, method,
                   prepaid_principal, recorded_by)
               VALUES (%(loan)s, %(dealer)s, %(reference)s, %(amount)s, %(paid_on)s, %(method)s,
                   %(prepaid)s, %(by)s)
               ON CONFLICT (dealer_id, reference) DO NOTHING
               RETURNING id, loan_id, dealer_id, reference, amount, paid_on, method, prepaid_principal,
                         status, recorded_by, recorded_at),
           n AS (
               SELECT * FROM unnest(%(ids)s::bigint[], %(penalty)s::numeric[], %(penalty_paid)s::numeric[],
                                    %(interest_paid)s::numeric[], %(principal_paid)s::numeric[])
                   AS n(id, penalty, penalty_paid, interest_paid, principal_paid)),
           a AS (
               INSERT INTO payment_allocations (payment_id, instalment_id, penalty, interest, principal)
               SELECT p.id, n.id, n.penalty_paid, n.interest_paid, n.principal_paid
               FROM p, n WHERE n.id = ANY(%(allocated)s::bigint[])),
           u AS (
               UPDATE loan_instalments li
               SET penalty = greatest(li.penalty, n.penalty),
                   penalty_paid = li.penalty_paid + n.penalty_paid,
                   interest_paid = li.interest_paid + n.interest_paid,
                   principal_paid = li.principal_paid + n.principal_paid,
                   paid_at = CASE WHEN li.principal_paid + n.principal_paid = li.principal
                                   AND li.interest_paid + n.interest_paid = li.interest
                                   AND li.penalty_paid + n.penalty_paid = greatest(li.penalty, n.penalty)
                                  THEN now() END
               FROM n WHERE li.id = n.id AND EXISTS (SELECT 1 FROM p)),
           au AS (
               INSERT INTO finance_audit (actor, action, loan_id, payment_id, detail)
               SELECT %(by)s, 'payment_recorded', p.loan_id, p.id, %(detail)s FROM p
               WHERE %(detail)s::jsonb IS NOT NULL)
           SELECT * FROM p""",
        {
            "loan": loan_id,
            "dealer": dealer_id,
            "reference": reference,
            "amount": amount,
            "paid_on": paid_on,
            "method": method,
            "prepaid": prepaid_principal,
            "by": recorded_by,
            "ids": ids,
            "penalty": [penalties.get(i, zero) for i in ids],
            "penalty_paid": [by_id[i].penalty if i in by_id else zero for i in ids],
            "interest_paid": [by_id[i].interest if i in by_id else zero for i in ids],
            "principal_paid": [by_id[i].principal if i in by_id else zero for i in ids],
            "allocated": [a.instalment_id for a in allocations],
            "detail": None if audit_detail is None else Jsonb(audit_detail),
        },
    )
    return await cur.fetchone()


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
