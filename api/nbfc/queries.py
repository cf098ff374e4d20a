"""SQL for lenders, their outbox, webhook events and nonces, collection reports and the portfolio.

Functions take `conn` first and never commit.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from api.finance.access import Scope, scope_sql

Row = dict[str, Any]
OUTBOX = "nbfc_outbox"


async def lender_by_code(conn: AsyncConnection, code: str) -> Row | None:
    cur = await conn.execute("SELECT * FROM nbfc_lenders WHERE code = %s AND active", (code,))
    return await cur.fetchone()


async def lender_by_id(conn: AsyncConnection, lender_id: int) -> Row | None:
    cur = await conn.execute("SELECT * FROM nbfc_lenders WHERE id = %s AND active", (lender_id,))
    return await cur.fetchone()


async def active_lenders(conn: AsyncConnection) -> list[Row]:
    cur = await conn.execute("SELECT * FROM nbfc_lenders WHERE active ORDER BY id LIMIT 2")
    return await cur.fetchall()


async def queue_call(
    conn: AsyncConnection,
    *,
    lender_id: int,
    kind: str,
    idempotency_key: str,
    payload: dict[str, Any],
    application_id: int | None = None,
    report_id: int | None = None,
) -> int:
    """Queue a call to a lender (the key is also the lender's Idempotency-Key); the same key twice
    is one row."""
    cur = await conn.execute(
        """INSERT INTO nbfc_outbox (nbfc_id, kind, application_id, report_id, idempotency_key, payload)
           VALUES (%s, %s, %s, %s, %s, %s)
           ON CONFLICT (idempotency_key) DO UPDATE SET idempotency_key = EXCLUDED.idempotency_key
           RETURNING id""",
        (lender_id, kind, application_id, report_id, idempotency_key, Jsonb(payload)),
    )
    row = await cur.fetchone()
    assert row is not None
    return row["id"]


async def call_of(
    conn: AsyncConnection, *, application_id: int | None = None, report_id: int | None = None
) -> Row | None:
    cur = await conn.execute(
        """SELECT id, status, attempts, provider_message_id, error, sent_at FROM nbfc_outbox
           WHERE application_id = %s OR report_id = %s ORDER BY id DESC LIMIT 1""",
        (application_id, report_id),
    )
    return await cur.fetchone()


# --- webhooks -----------------------------------------------------------------------------------


async def remember_signature(conn: AsyncConnection, *, lender_id: int, signature: str) -> bool:
    """Keep an accepted signature; False when it was seen before (a replayed request)."""
    cur = await conn.execute(
        """INSERT INTO nbfc_webhook_nonces (nbfc_id, signature) VALUES (%s, %s)
           ON CONFLICT DO NOTHING RETURNING signature""",
        (lender_id, signature),
    )
    return await cur.fetchone() is not None


async def forget_signatures(conn: AsyncConnection, *, before: datetime) -> int:
    cur = await conn.execute("DELETE FROM nbfc_webhook_nonces WHERE seen_at < %s", (before,))
    return cur.rowcount


async def event(conn: AsyncConnection, *, lender_id: int, event_key: str) -> Row | None:
    cur = await conn.execute(
        "SELECT * FROM nbfc_webhook_events WHERE nbfc_id = %s AND event_key = %s", (lender_id, event_key)
    )
    return await cur.fetchone()


async def insert_event(
    conn: AsyncConnection,
    *,
    lender_id: int,
    event_key: str,
    application_id: int | None,
    status: str | None,
    outcome: str,
    http_status: int,
    response: dict[str, Any],
    body: dict[str, Any],
) -> bool:
    """Record an event and its answer; False when the same event was recorded meanwhile."""
    cur = await conn.execute(
        """INSERT INTO nbfc_webhook_events (nbfc_id, event_key, application_id, status, outcome, http_status,
               response, body)
           VALUES (%s, %s, (SELECT id FROM finance_applications WHERE id = %s), %s, %s, %s, %s, %s)
           ON CONFLICT (nbfc_id, event_key) DO NOTHING RETURNING id""",
        (lender_id, event_key, application_id, status, outcome, http_status, Jsonb(response), Jsonb(body)),
    )
    return await cur.fetchone() is not None


# --- collection reports -------------------------------------------------------------------------


async def insert_report(
    conn: AsyncConnection,
    *,
    dealer_id: int,
    lender_id: int,
    report_date: date,
    collection_data: dict[str, Any],
    created_by: str,
) -> Row | None:
    """Insert the dealer's report of a day for a lender; None when it exists already."""
    cur = await conn.execute(
        """INSERT INTO nbfc_collection_reports (dealer_id, nbfc_id, report_date, collection_data, created_by)
           VALUES (%s, %s, %s, %s, %s)
           ON CONFLICT (dealer_id, nbfc_id, report_date) DO NOTHING RETURNING *""",
        (dealer_id, lender_id, report_date, Jsonb(collection_data), created_by),
    )
    return await cur.fetchone()


async def report(conn: AsyncConnection, *, dealer_id: int, lender_id: int, report_date: date) -> Row | None:
    cur = await conn.execute(
        "SELECT * FROM nbfc_collection_reports WHERE dealer_id = %s AND nbfc_id = %s AND report_date = %s",
        (dealer_id, lender_id, report_date),
    )
    return await cur.fetchone()


async def overdue_count(conn: AsyncConnection, *, scope: Scope, on: date, timezone: str) -> int:
    """Instalments due before `on` and not fully paid by the end of that day (business calendar)."""
    cur = await conn.execute(
        f"""SELECT count(*) AS n FROM loan_instalments li JOIN loans l ON l.id = li.loan_id
            WHERE {scope_sql("l")} AND li.due_date < %(on)s
              AND (li.paid_at IS NULL OR (li.paid_at AT TIME ZONE %(tz)s)::date > %(on)s)""",  # noqa: S608
        {**scope.params(), "on": on, "tz": timezone},
    )
    row = await cur.fetchone()
    assert row is not None
    return row["n"]


# --- portfolio ----------------------------------------------------------------------------------


async def portfolio_summary(conn: AsyncConnection, *, scope: Scope) -> Row:
    """Applications sent to lenders in scope, by outcome, and what was disbursed."""
    cur = await conn.execute(
        f"""SELECT count(*) AS total_applications,
                   count(*) FILTER (WHERE a.status IN ('approved', 'disbursed')) AS approved_count,
                   count(*) FILTER (WHERE a.status = 'disbursed') AS disbursed_count,
                   count(*) FILTER (WHERE a.status = 'rejected') AS rejected_count,
                   coalesce(sum(l.principal) FILTER (WHERE a.status = 'disbursed'), 0) AS total_disbursed,
                   round(avg(a.interest_rate) FILTER (WHERE a.status IN ('approved', 'disbursed')), 2)
                       AS avg_interest_rate
            FROM finance_applications a LEFT JOIN loans l ON l.application_id = a.id
            WHERE a.nbfc_id IS NOT NULL AND {scope_sql("a")}""",  # noqa: S608 - constant fragments
        scope.params(),
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def monthly_trend(conn: AsyncConnection, *, scope: Scope, since: date, timezone: str) -> list[Row]:
    """Per month since `since`: applications made, and the amount disbursed (by disbursement date)."""
    cur = await conn.execute(
        f"""WITH made AS (
                SELECT date_trunc('month', a.created_at AT TIME ZONE %(tz)s)::date AS month, count(*) AS n
                FROM finance_applications a
                WHERE a.nbfc_id IS NOT NULL AND {scope_sql("a")} AND a.created_at >= %(since)s
                GROUP BY 1),
            paid_out AS (
                SELECT date_trunc('month', a.disbursement_date)::date AS month, sum(l.principal) AS amount
                FROM finance_applications a JOIN loans l ON l.application_id = a.id
                WHERE a.nbfc_id IS NOT NULL AND {scope_sql("a")} AND a.status = 'disbursed'
                  AND a.disbursement_date >= %(since)s
                GROUP BY 1)
            SELECT month, coalesce(made.n, 0) AS applications,
                   coalesce(paid_out.amount, 0) AS amount_disbursed
            FROM made FULL JOIN paid_out USING (month) ORDER BY month""",  # noqa: S608 - constant fragments
        {**scope.params(), "since": since, "tz": timezone},
    )
    return await cur.fetchall()
