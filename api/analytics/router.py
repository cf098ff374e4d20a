"""Analytics & Reporting endpoints (spec: ienerzy-bms-api.md, "Analytics & Reporting")."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.analytics import service
from api.analytics.models import (
    BatteryHealthAnalytics,
    CollectionAnalytics,
    DealerDashboard,
    LenderReportFilters,
    NbfcPortfolioAnalytics,
    ReportFilters,
    ServiceMetrics,
)
from api.deps import ConnDep, CurrentUser, SettingsDep
from api.errors import error_responses

router = APIRouter(prefix="/api/analytics", tags=["Analytics & Reporting"])

ERRORS = error_responses(400, 401, 403, 429)
Filters = Annotated[ReportFilters, Query()]
LenderFilters = Annotated[LenderReportFilters, Query()]


@router.get("/dealer-dashboard", response_model=DealerDashboard, responses=ERRORS, summary="Dealer dashboard")
async def dealer_dashboard(conn: ConnDep, principal: CurrentUser, filters: Filters) -> dict:
    """A dealer's consumers (by KYC status) and batteries (by status, with their mean health) as they
    are now; the finance applications and service tickets opened in the period (all by default)."""
    return await service.dealer_dashboard(conn, principal=principal, filters=filters)


@router.get(
    "/nbfc-portfolio",
    response_model=NbfcPortfolioAnalytics,
    responses=ERRORS,
    summary="NBFC portfolio analytics",
)
async def nbfc_portfolio(
    conn: ConnDep, principal: CurrentUser, settings: SettingsDep, filters: LenderFilters
) -> dict:
    """The applications opened in the period (all by default), how many were approved and disbursed,
    for how much; applications, approvals and disbursements per month; and the running loans' risk
    today: the share with an instalment past due, and the EMI amounts collected of those due so far.
    An NBFC sees the applications sent to it, a dealer its own."""
    return await service.nbfc_portfolio(conn, principal=principal, settings=settings, filters=filters)


@router.get(
    "/collection-report",
    response_model=CollectionAnalytics,
    responses=ERRORS,
    summary="Collection analytics",
    operation_id="analytics_collection_report",  # finance and nbfc have one of the same name
)
async def collection_report(
    conn: ConnDep, principal: CurrentUser, settings: SettingsDep, filters: LenderFilters
) -> dict:
    """The EMIs due in the period (default: the last 30 days, up to today): how many were paid and
    how much of their amount was collected; the payments of each day, and how many of them paid an
    instalment already past due; the unpaid ones by days past due."""
    return await service.collection_report(conn, principal=principal, settings=settings, filters=filters)


@router.get(
    "/battery-health",
    response_model=BatteryHealthAnalytics,
    responses=ERRORS,
    summary="Battery health analytics",
)
async def battery_health(
    conn: ConnDep, principal: CurrentUser, settings: SettingsDep, filters: Filters
) -> dict:
    """Health bands of the fleet now (from each battery's health score, which the health job estimates
    from its telemetry), the monthly trend of the daily estimates with the tickets opened each month
    (`from`/`to`; default the last twelve months), and predictive maintenance: batteries needing
    service (below the service threshold, or an anomaly) and at risk (the trend crosses it within
    the horizon)."""
    return await service.battery_health(conn, principal=principal, settings=settings, filters=filters)


@router.get(
    "/service-metrics", response_model=ServiceMetrics, responses=ERRORS, summary="Service performance metrics"
)
async def service_metrics(conn: ConnDep, principal: CurrentUser, filters: Filters) -> dict:
    """Tickets by status, resolution times and SLA compliance, each technician's resolved tickets and
    customer satisfaction, and tickets per issue category, over the tickets opened in the period (a
    technician: their own)."""
    return await service.service_metrics(conn, principal=principal, filters=filters)
