"""Battery Management endpoints (spec: ienerzy-bms-api.md, "Battery Management")."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import Field, TypeAdapter

from api.batteries import service
from api.batteries.models import (
    ActivityEntry,
    AssignRequest,
    Battery,
    BatteryCreate,
    BatteryDetail,
    BatteryListItem,
    BatteryStatus,
    HealthReport,
    activity_body,
    battery_body,
    control_body,
    telemetry_body,
)
from api.deps import ConnDep, CurrentUser, SettingsDep, authenticate
from api.direct_route import DirectRoute, direct_openapi
from api.errors import error_responses
from api.shapes import Blank, Id, Offset
from api.tags import Tag

router = APIRouter(
    prefix="/api/batteries", tags=[Tag.BATTERY_MANAGEMENT], responses=error_responses(401, 403, 429)
)

DealerFilter = Annotated[Id | None, Blank, Query(description="admin only: one dealer's batteries")]


@router.get(
    "", response_model=list[BatteryListItem], summary="List all batteries", responses=error_responses(400)
)
async def list_batteries(
    conn: ConnDep,
    principal: CurrentUser,
    status: Annotated[
        BatteryStatus | None, Blank, Query(description="the status the device confirmed")
    ] = None,
    desired_status: Annotated[
        BatteryStatus | None,
        Blank,
        Query(description="the status asked for (not yet confirmed where it differs)"),
    ] = None,
    dealer_id: DealerFilter = None,
    limit: Annotated[
        Annotated[int, Field(ge=1, le=10_000)] | None,
        Blank,
        Query(description="optional page size (all by default)"),
    ] = None,
    offset: Annotated[Offset, Query()] = 0,
) -> list[dict[str, Any]]:
    """The batteries the caller may see, with their consumer's name (spec: all; a page when asked)."""
    rows = await service.list_batteries(
        conn,
        principal=principal,
        status=status,
        desired_status=desired_status,
        dealer_id=dealer_id,
        limit=limit,
        offset=offset,
    )
    return [battery_body(r) for r in rows]


@router.get(
    "/health-report",
    response_model=HealthReport,
    summary="Get battery health report",
    responses=error_responses(400),
)
async def health_report(
    conn: ConnDep, principal: CurrentUser, settings: SettingsDep, dealer_id: DealerFilter = None
) -> dict[str, Any]:
    """Fleet health per status over the batteries the caller may see (admin may filter by dealer),
    with the predictive-maintenance figures of /api/analytics/battery-health."""
    return await service.health_report(conn, principal=principal, settings=settings, dealer_id=dealer_id)


@router.post(
    "",
    status_code=201,
    response_model=Battery,
    summary="Add new battery",
    responses=error_responses(400, 404, 409, 413),  # 404: no such dealer
)
async def create_battery(conn: ConnDep, principal: CurrentUser, body: BatteryCreate) -> dict[str, Any]:
    """Register a battery (admin): serials are registered by the operator and batteries allocated
    to dealers (README: "Who registers batteries")."""
    return battery_body(await service.create_battery(conn, principal=principal, body=body))


_DETAIL = TypeAdapter(dict[str, Any])


async def get_battery(request: Request) -> Response:
    """The battery, its latest telemetry and its control state (desired, reported, pending command)."""
    principal = await authenticate(request)
    serial = request.path_params["serial"]
    found = await service.battery_detail(
        request.app.state.battery_details, principal=principal, serial=serial
    )
    pending = found["pending"]
    if pending is not None:
        pending = {**pending, "id": str(pending["id"])}
    body = {
        "battery": battery_body(found["battery"]),
        "telemetry": telemetry_body(found["reading"]),
        "control": control_body(found["battery"], pending),
    }
    return Response(_DETAIL.dump_json(body), media_type="application/json")


router.add_api_route(
    "/{serial}",
    get_battery,
    methods=["GET"],
    route_class_override=DirectRoute,
    response_model=BatteryDetail,  # documentation only: the endpoint answers itself
    summary="Get battery details",
    responses=error_responses(400, 404),
    openapi_extra=direct_openapi(serial="the battery's serial number (asset tag)"),
)


@router.put(
    "/{serial}/assign",
    response_model=Battery,
    summary="Assign battery to consumer",
    responses=error_responses(400, 404, 409, 413),
)
async def assign_battery(
    conn: ConnDep, principal: CurrentUser, serial: str, body: AssignRequest
) -> dict[str, Any]:
    """Give the battery to one of its dealer's consumers (`consumer_id: null` takes it back)."""
    row = await service.assign_battery(conn, principal=principal, serial=serial, consumer_id=body.consumer_id)
    return battery_body(row)


@router.get(
    "/{serial}/activity",
    response_model=list[ActivityEntry],
    summary="Get a battery's activity log",
    responses=error_responses(400, 404),
)
async def battery_activity(
    conn: ConnDep,
    principal: CurrentUser,
    serial: str,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[Offset, Query()] = 0,
) -> list[dict[str, Any]]:
    """Who changed what on the battery, newest first."""
    rows = await service.battery_activity(
        conn, principal=principal, serial=serial, limit=limit, offset=offset
    )
    return [activity_body(r) for r in rows]
