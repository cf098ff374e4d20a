"""Finance reports: the overdue accounts and the collection report, scoped to the caller."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from psycopg import AsyncConnection

from api.auth.tokens import Principal
from api.errors import BadRequest
from api.finance import queries
from api.finance.access import Scope, scope_for
from api.finance.loans import business_today, penalty_policy
from packfleet.settings import Settings

Row = dict[str, Any]
MAX_REPORT_DAYS = 3660


async def overdue_accounts(
    conn: AsyncConnection, *, principal: Principal, settings: Settings, min_days: int, limit: int, offset: int
) -> Row:
    """Unpaid instalments at least `min_days` past due, the oldest first, with totals over all pages."""
    scope = await scope_for(conn, principal, "admin", "dealer", "consumer", "nbfc")
    policy = penalty_policy(settings)

    async def page(limit: int, offset: int) -> list[Row]:
        return await queries.overdue_instalments(
            conn,
            scope=scope,
            today=business_today(settings),
            min_days=min_days,
            fee=policy.fee,
            fee_percent=policy.percent,
            fee_after_days=policy.after_days,
            limit=limit,
            offset=offset,
        )

    rows = await page(limit, offset)
    # The totals come with every row; a page past the end has none, so ask for the first row.
    totals = rows[:1] or (await page(1, 0) if offset else [])
    return {
        "overdue_accounts": [{**r, "status": "partial" if r["touched"] else "pending"} for r in rows],
        "total_overdue": totals[0]["total_count"] if totals else 0,
        "total_overdue_amount": totals[0]["total_outstanding"] if totals else Decimal("0"),
    }


async def collection_report(
    conn: AsyncConnection,
    *,
    principal: Principal,
    settings: Settings,
    start: date | None,
    end: date | None,
) -> Row:
    """Recorded payments per day between `start` and `end` (default: the last 30 days)."""
    scope = await scope_for(conn, principal, "admin", "dealer", "nbfc")
    end = end or business_today(settings)
    start = start or end - timedelta(days=29)
    if start > end:
        raise BadRequest(
            [{"field": "start_date", "message": "must not be after end_date"}],
            error="Invalid fields: start_date",
        )
    if (end - start).days >= MAX_REPORT_DAYS:
        raise BadRequest(
            [{"field": "start_date", "message": f"a report covers at most {MAX_REPORT_DAYS} days"}],
            error="Invalid fields: start_date",
        )
    return await report_between(conn, scope=scope, start=start, end=end)


async def report_between(conn: AsyncConnection, *, scope: Scope, start: date, end: date) -> Row:
    rows = await queries.collections_by_day(conn, scope=scope, start=start, end=end)
    count = sum(r["collections_count"] for r in rows)
    total = sum((r["total"] for r in rows), Decimal("0.00"))
    days = (end - start).days + 1
    return {
        "collection_report": [
            {
                "collection_date": r["collection_date"],
                "collections_count": r["collections_count"],
                "total_collected": r["total"],
                "avg_collection": _per(r["total"], r["collections_count"]),
            }
            for r in rows
        ],
        "summary": {
            "total_collections": count,
            "total_amount_collected": total,
            "avg_daily_collection": _per(total, days),
        },
        "start_date": start,
        "end_date": end,
    }


def _per(total: Decimal, n: int) -> Decimal:
    return (total / n).quantize(Decimal("0.01")) if n else Decimal("0.00")
