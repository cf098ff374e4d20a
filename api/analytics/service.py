"""Analytics use cases: each figure an SQL aggregate over the caller's scope (a dealer its own, an
admin all or one dealer's, a technician their tickets)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from psycopg import AsyncConnection

from api.analytics import queries
from api.analytics.models import days, percent
from api.analytics.queries import Scope
from api.auth.tokens import Principal
from api.errors import BadRequest, Forbidden
from packfleet.settings import Settings

CATEGORIES = ("performance", "charging", "mechanical", "electrical", "other")
TREND_MONTHS = 12  # health_trends without `from`: the last twelve months


def scope_for(principal: Principal, *, dealer_id: int | None, technicians: bool = False) -> Scope:
    """The caller's scope: 403 for roles these figures are not for."""
    if principal.role == "admin":
        return Scope(dealer_id=dealer_id)
    if principal.role == "dealer":
        return Scope(dealer_id=principal.dealer_id)
    if technicians and principal.role == "technician":
        return Scope(technician_id=principal.user_id)
    raise Forbidden("Insufficient permissions for this operation")


def check_period(start: date | None, end: date | None) -> None:
    if start is not None and end is not None and start > end:
        raise BadRequest(
            [{"field": "from", "message": "must not be after `to`"}], error="Invalid fields: from, to"
        )


def _month_start(day: date, back: int = 0) -> date:
    index = day.year * 12 + day.month - 1 - back
    return date(index // 12, index % 12 + 1, 1)


async def predictive_maintenance(conn: AsyncConnection, scope: Scope, settings: Settings) -> dict[str, Any]:
    """Needing service and at risk, with the cost of the visits (the same figures as the health report)."""
    found = await queries.predictive(
        conn,
        scope,
        threshold=settings.health_service_threshold,
        horizon_days=settings.health_risk_horizon_days,
    )
    return {
        "batteries_needing_service": found["needing"],
        "estimated_service_cost": Decimal(found["needing"]) * settings.service_visit_cost,
        "risk_batteries": found["at_risk"],
    }


async def battery_health(
    conn: AsyncConnection,
    *,
    principal: Principal,
    settings: Settings,
    dealer_id: int | None,
    start: date | None,
    end: date | None,
) -> dict[str, Any]:
    scope = scope_for(principal, dealer_id=dealer_id)
    check_period(start, end)
    end = end or datetime.now(UTC).date()
    start = start or _month_start(end, TREND_MONTHS - 1)
    total, bands = await queries.health_bands(conn, scope)
    health = await queries.monthly_health(conn, scope, start, end)
    tickets = await queries.monthly_tickets(conn, scope, start, end)
    return {
        "fleet_health": {
            name: {"count": b["count"], "percentage": percent(b["count"], total), "avg_health": b["avg"]}
            for name, b in bands.items()
        },
        "health_trends": [
            {
                "month": month.strftime("%Y-%m"),
                "avg_health": None if health.get(month) is None else round(health[month], 1),
                "maintenance_count": tickets.get(month, 0),
            }
            for month in sorted(set(health) | set(tickets))
        ],
        "predictive_maintenance": await predictive_maintenance(conn, scope, settings),
    }


async def service_metrics(
    conn: AsyncConnection,
    *,
    principal: Principal,
    dealer_id: int | None,
    start: date | None,
    end: date | None,
) -> dict[str, Any]:
    scope = scope_for(principal, dealer_id=dealer_id, technicians=True)
    check_period(start, end)
    totals = await queries.ticket_totals(conn, scope, start, end)
    technicians = await queries.technician_performance(conn, scope, start, end)
    categories = await queries.issue_categories(conn, scope, start, end)
    return {
        "ticket_metrics": {
            "total_tickets": totals["total"],
            "open_tickets": totals["open"],
            "assigned_tickets": totals["assigned"],
            "in_progress_tickets": totals["in_progress"],
            "resolved_tickets": totals["resolved"],
        },
        "resolution_times": {
            "avg_resolution_time": days(totals["avg_s"]),
            "fastest_resolution": days(totals["min_s"]),
            "slowest_resolution": days(totals["max_s"]),
            "sla_compliance": percent(totals["within_sla"], totals["resolved_n"]),
        },
        "technician_performance": [
            {
                "technician_id": t["technician_id"],
                "name": t["name"],
                "tickets_resolved": t["tickets_resolved"],
                "avg_resolution_time": days(t["avg_s"]),
                "customer_satisfaction": t["customer_satisfaction"],
            }
            for t in technicians
        ],
        "issue_categories": {c: categories.get(c, 0) for c in CATEGORIES},
    }
