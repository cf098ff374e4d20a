"""SQL aggregates over the finance tables (migration 0040, owned by api/finance; read here, never
written). Functions take `conn` first and never commit; scopes are api.finance.access's.

Instalment amounts are EMI amounts (principal + interest); what was collected of them is what was
allocated to their principal and interest (late fees are counted apart by finance).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from psycopg import AsyncConnection

from api.finance.access import Scope, scope_sql

Row = dict[str, Any]

_CREATED_IN = """(%(from)s::date IS NULL OR a.created_at >= %(from)s::date)
    AND (%(to)s::date IS NULL OR a.created_at < %(to)s::date + 1)"""


def _params(scope: Scope, start: date | None, end: date | None, **extra: Any) -> dict[str, Any]:
    return {**scope.params(), "from": start, "to": end, **extra}


async def applications(conn: AsyncConnection, scope: Scope, start: date | None, end: date | None) -> Row:
    """Applications opened in the period, what became of them, and the loans disbursed from them."""
    cur = await conn.execute(
        f"""SELECT count(*) AS total,
                   count(*) FILTER (WHERE a.status IN ('approved', 'disbursed')) AS approved,
                   count(*) FILTER (WHERE a.status = 'disbursed') AS disbursed,
                   coalesce(sum(l.principal) FILTER (WHERE l.disbursement_date IS NOT NULL), 0)
                       AS total_disbursed,
                   round(avg(l.principal) FILTER (WHERE l.disbursement_date IS NOT NULL), 2) AS avg_loan
            FROM finance_applications a LEFT JOIN loans l ON l.application_id = a.id
            WHERE {scope_sql("a")} AND {_CREATED_IN}""",  # noqa: S608 - constant fragments
        _params(scope, start, end),
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def monthly_trends(
    conn: AsyncConnection, scope: Scope, start: date | None, end: date | None
) -> list[Row]:
    """Per month: applications opened, approvals decided, loans disbursed and their amount."""
    cur = await conn.execute(
        f"""WITH opened AS (
                SELECT date_trunc('month', a.created_at)::date AS month, count(*) AS applications
                FROM finance_applications a WHERE {scope_sql("a")} AND {_CREATED_IN} GROUP BY 1),
            approved AS (
                SELECT date_trunc('month', a.decided_at)::date AS month, count(*) AS approvals
                FROM finance_applications a
                WHERE a.status IN ('approved', 'disbursed') AND {scope_sql("a")}
                  AND (%(from)s::date IS NULL OR a.decided_at >= %(from)s::date)
                  AND (%(to)s::date IS NULL OR a.decided_at < %(to)s::date + 1)
                GROUP BY 1),
            paid_out AS (
                SELECT date_trunc('month', l.disbursement_date)::date AS month, count(*) AS disbursements,
                       sum(l.principal) AS amount
                FROM loans l
                WHERE l.disbursement_date IS NOT NULL AND {scope_sql("l")}
                  AND (%(from)s::date IS NULL OR l.disbursement_date >= %(from)s::date)
                  AND (%(to)s::date IS NULL OR l.disbursement_date <= %(to)s::date)
                GROUP BY 1)
            SELECT month, coalesce(applications, 0) AS applications, coalesce(approvals, 0) AS approvals,
                   coalesce(disbursements, 0) AS disbursements, coalesce(amount, 0) AS amount
            FROM opened FULL JOIN approved USING (month) FULL JOIN paid_out USING (month)
            ORDER BY month""",  # noqa: S608 - constant fragments
        _params(scope, start, end),
    )
    return await cur.fetchall()


async def risk(conn: AsyncConnection, scope: Scope, today: date) -> Row:
    """Running loans, those with an instalment past due, and the EMI amounts due so far and collected
    (one pass over the instalments due)."""
    cur = await conn.execute(
        f"""SELECT
                (SELECT count(*) FROM loans l WHERE l.status = 'active' AND {scope_sql("l")}) AS active,
                count(DISTINCT li.loan_id) FILTER (
                    WHERE li.paid_at IS NULL AND li.due_date < %(today)s AND l.status = 'active') AS overdue,
                sum(li.amount) AS amount_due, sum(li.principal_paid + li.interest_paid) AS collected
            FROM loan_instalments li JOIN loans l ON l.id = li.loan_id
            WHERE li.due_date <= %(today)s AND {scope_sql("l")}""",  # noqa: S608 - constant fragments
        {**scope.params(), "today": today},
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def instalments_due(conn: AsyncConnection, scope: Scope, start: date, end: date, today: date) -> Row:
    """Instalments due in the period (up to today): paid, overdue (by days past due), amounts."""
    cur = await conn.execute(
        f"""SELECT count(*) AS due,
                   count(*) FILTER (WHERE li.paid_at IS NOT NULL) AS collected,
                   count(*) FILTER (WHERE li.paid_at IS NULL AND li.due_date < %(today)s) AS overdue,
                   count(*) FILTER (WHERE li.paid_at IS NULL AND %(today)s - li.due_date BETWEEN 1 AND 7)
                       AS overdue_1_7,
                   count(*) FILTER (WHERE li.paid_at IS NULL AND %(today)s - li.due_date BETWEEN 8 AND 15)
                       AS overdue_8_15,
                   count(*) FILTER (WHERE li.paid_at IS NULL AND %(today)s - li.due_date > 15) AS overdue_15,
                   coalesce(sum(li.amount), 0) AS amount_due,
                   coalesce(sum(li.principal_paid + li.interest_paid), 0) AS amount_collected
            FROM loan_instalments li JOIN loans l ON l.id = li.loan_id
            WHERE li.due_date BETWEEN %(from)s AND least(%(to)s::date, %(today)s) AND {scope_sql("l")}""",  # noqa: S608
        _params(scope, start, end, today=today),
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def daily_collections(conn: AsyncConnection, scope: Scope, start: date, end: date) -> list[Row]:
    """Recorded payments per day received, and how many of them paid an instalment already overdue."""
    cur = await conn.execute(
        f"""WITH paid AS (
                SELECT p.id, p.paid_on, p.amount FROM loan_payments p JOIN loans l ON l.id = p.loan_id
                WHERE p.status = 'recorded' AND p.paid_on BETWEEN %(from)s AND %(to)s AND {scope_sql("l")}),
            late AS (
                SELECT DISTINCT pa.payment_id FROM paid
                JOIN payment_allocations pa ON pa.payment_id = paid.id
                JOIN loan_instalments li ON li.id = pa.instalment_id
                WHERE li.due_date < paid.paid_on)
            SELECT paid.paid_on AS date, count(*) AS collections, sum(paid.amount) AS amount,
                   count(late.payment_id) AS overdue_collections
            FROM paid LEFT JOIN late ON late.payment_id = paid.id
            GROUP BY paid.paid_on ORDER BY paid.paid_on""",  # noqa: S608 - constant fragments
        _params(scope, start, end),
    )
    return await cur.fetchall()
