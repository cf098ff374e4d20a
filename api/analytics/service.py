"""Analytics use cases: each figure an SQL aggregate over the caller's scope (a dealer its own, an
admin all or one dealer's, a technician their tickets)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from psycopg import AsyncConnection

from api.analytics import finance_queries, queries
from api.analytics.models import LenderReportFilters, ReportFilters, days, percent
from api.analytics.queries import Scope
from api.auth.tokens import Principal
from api.errors import BadRequest, Forbidden
from api.finance.access import Scope as FinanceScope
from api.finance.access import scope_for as finance_scope_for
from api.finance.loans import business_today
from packfleet.settings import Settings

CATEGORIES = ("performance", "charging", "mechanical", "electrical", "other")
TREND_MONTHS = 12  # health_trends without `from`: the last twelve months
COLLECTION_DAYS = 30  # the collection report without `from`: as finance's own report


def scope_for(principal: Principal, *, dealer_id: int | None, technicians: bool = False) -> Scope:
    """The caller's scope: 403 for roles these figures are not for."""
    if principal.role == "admin":
        return Scope(dealer_id=dealer_id)
    if principal.role == "dealer":
        return Scope(dealer_id=principal.dealer_id)
    if technicians and principal.role == "technician":
        return Scope(technician_id=principal.user_id)
    raise Forbidden("Insufficient permissions for this operation")


def check_period(filters: ReportFilters) -> None:
    if filters.start is not None and filters.end is not None and filters.start > filters.end:
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
    conn: AsyncConnection, *, principal: Principal, settings: Settings, filters: ReportFilters
) -> dict[str, Any]:
    scope = scope_for(principal, dealer_id=filters.dealer_id)
    check_period(filters)
    end = filters.end or datetime.now(UTC).date()
    start = filters.start or _month_start(end, TREND_MONTHS - 1)
    async with queries.snapshot(conn):
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
    conn: AsyncConnection, *, principal: Principal, filters: ReportFilters
) -> dict[str, Any]:
    scope = scope_for(principal, dealer_id=filters.dealer_id, technicians=True)
    check_period(filters)
    start, end = filters.start, filters.end
    async with queries.snapshot(conn):
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


# --- finance --------------------------------------------------------------------------------------


async def _finance_scope(
    conn: AsyncConnection, principal: Principal, filters: LenderReportFilters
) -> FinanceScope:
    """A dealer its own, an NBFC its lender's, an admin all (or the dealer / lender asked for)."""
    scope = await finance_scope_for(conn, principal, "admin", "dealer", "nbfc")
    check_period(filters)
    if principal.role == "admin":
        return FinanceScope(dealer_id=filters.dealer_id, nbfc_id=filters.nbfc_id)
    return scope


async def dealer_dashboard(
    conn: AsyncConnection, *, principal: Principal, filters: ReportFilters
) -> dict[str, Any]:
    """Consumers and batteries now; applications and tickets opened in the period (all by default)."""
    scope = scope_for(principal, dealer_id=filters.dealer_id)
    check_period(filters)
    start, end = filters.start, filters.end
    async with queries.snapshot(conn):
        consumers = await queries.consumer_counts(conn, scope)
        batteries = await queries.battery_counts(conn, scope)
        finance_scope = FinanceScope(dealer_id=scope.dealer_id)
        finance = await finance_queries.applications(conn, finance_scope, start, end)
        tickets = await queries.ticket_totals(conn, scope, start, end)
    return {
        "consumer_metrics": {
            "total_consumers": consumers["total"],
            "verified_consumers": consumers["verified"],
            "pending_consumers": consumers["pending"],
        },
        "battery_metrics": {
            "total_batteries": batteries["total"],
            "active_batteries": batteries["active"],
            "maintenance_batteries": batteries["maintenance"],
            "avg_health_score": batteries["avg_health"],
        },
        "finance_metrics": {
            "total_applications": finance["total"],
            "approved_applications": finance["approved"],
            "disbursed_applications": finance["disbursed"],
            "total_disbursed": finance["total_disbursed"],
        },
        "service_metrics": {
            "total_tickets": tickets["total"],
            "resolved_tickets": tickets["resolved"],
            "avg_resolution_time": days(tickets["avg_s"]),
        },
    }


async def nbfc_portfolio(
    conn: AsyncConnection, *, principal: Principal, settings: Settings, filters: LenderReportFilters
) -> dict[str, Any]:
    """Applications of the period and their loans, the monthly trend, and the portfolio's risk today."""
    scope = await _finance_scope(conn, principal, filters)
    start, end = filters.start, filters.end
    async with queries.snapshot(conn):
        found = await finance_queries.applications(conn, scope, start, end)
        trends = await finance_queries.monthly_trends(conn, scope, start, end)
        risk = await finance_queries.risk(conn, scope, business_today(settings))
    return {
        "portfolio_summary": {
            "total_applications": found["total"],
            "approval_rate": percent(found["approved"], found["total"]),
            "disbursement_rate": percent(found["disbursed"], found["total"]),
            "total_disbursed": found["total_disbursed"],
            "avg_loan_amount": found["avg_loan"],
        },
        "monthly_trends": [{**t, "month": t["month"].strftime("%Y-%m")} for t in trends],
        "risk_metrics": {
            "overdue_rate": percent(risk["overdue"], risk["active"]),
            "collection_efficiency": percent(risk["collected"] or 0, risk["amount_due"] or 0),
            "avg_credit_score": None,  # finance records no credit score (see the field's description)
        },
    }


async def collection_report(
    conn: AsyncConnection, *, principal: Principal, settings: Settings, filters: LenderReportFilters
) -> dict[str, Any]:
    """Instalments due in the period (default the last 30 days) and what was collected of them, the
    payments of each day, and the overdue ones by days past due."""
    scope = await _finance_scope(conn, principal, filters)
    today = business_today(settings)
    end = filters.end or today
    start = filters.start or end - timedelta(days=COLLECTION_DAYS - 1)
    async with queries.snapshot(conn):
        due = await finance_queries.instalments_due(conn, scope, start, end, today)
        daily = await finance_queries.daily_collections(conn, scope, start, end)
    return {
        "collection_summary": {
            "total_emi_due": due["due"],
            "collected_emi": due["collected"],
            "overdue_emi": due["overdue"],
            "collection_rate": percent(due["collected"], due["due"]),
            "total_amount_due": due["amount_due"],
            "amount_collected": due["amount_collected"],
        },
        "daily_collections": daily,
        "overdue_analysis": {
            "days_1_7": due["overdue_1_7"],
            "days_8_15": due["overdue_8_15"],
            "days_over_15": due["overdue_15"],
            "total_overdue": due["overdue"],
        },
    }
