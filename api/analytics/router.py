"""Analytics & Reporting endpoints (spec: ienerzy-bms-api.md, "Analytics & Reporting")."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query

from api.analytics import service
from api.analytics.models import BatteryHealthAnalytics, ServiceMetrics
from api.deps import ConnDep, CurrentUser, SettingsDep
from api.errors import error_responses

router = APIRouter(prefix="/api/analytics", tags=["Analytics & Reporting"])

ERRORS = error_responses(400, 401, 403, 429)
MAX_ID = 2**63 - 1
DealerFilter = Annotated[int | None, Query(ge=1, le=MAX_ID, description="admin only: one dealer's figures")]
From = Annotated[date | None, Query(alias="from", description="first day of the period (UTC)")]
To = Annotated[date | None, Query(alias="to", description="last day of the period (UTC)")]


@router.get(
    "/battery-health",
    response_model=BatteryHealthAnalytics,
    responses=ERRORS,
    summary="Battery health analytics",
)
async def battery_health(
    conn: ConnDep,
    principal: CurrentUser,
    settings: SettingsDep,
    dealer_id: DealerFilter = None,
    start: From = None,
    end: To = None,
) -> dict:
    """Health bands of the fleet now (from each battery's health score, which the health job estimates
    from its telemetry), the monthly trend of the daily estimates with the tickets opened each month
    (`from`/`to`; default the last twelve months), and predictive maintenance: batteries needing
    service (below the service threshold, or an anomaly) and at risk (the trend crosses it within
    the horizon)."""
    return await service.battery_health(
        conn, principal=principal, settings=settings, dealer_id=dealer_id, start=start, end=end
    )


@router.get(
    "/service-metrics", response_model=ServiceMetrics, responses=ERRORS, summary="Service performance metrics"
)
async def service_metrics(
    conn: ConnDep, principal: CurrentUser, dealer_id: DealerFilter = None, start: From = None, end: To = None
) -> dict:
    """Tickets by status, resolution times and SLA compliance, each technician's resolved tickets and
    customer satisfaction, and tickets per issue category, over the tickets opened in the period (a
    technician: their own)."""
    return await service.service_metrics(conn, principal=principal, dealer_id=dealer_id, start=start, end=end)
