"""Battery Management endpoints (spec: ienerzy-bms-api.md, "Battery Management")."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import TypeAdapter

from api.batteries import service
from api.batteries.models import (
    AssignRequest,
    BatteryCreate,
    activity_body,
    battery_body,
    control_body,
    telemetry_body,
)
from api.deps import ConnDep, CurrentUser, SettingsDep, authenticate
from api.direct_route import DirectRoute, direct_openapi

router = APIRouter(prefix="/api/batteries", tags=["batteries"])


@router.get("")
async def list_batteries(
    conn: ConnDep,
    principal: CurrentUser,
    status: Literal["active", "inactive", "maintenance"] | None = Query(
        default=None, description="the status the device confirmed"
    ),
    desired_status: Literal["active", "inactive", "maintenance"] | None = Query(
        default=None, description="the status asked for (not yet confirmed where it differs)"
    ),
    dealer_id: int | None = Query(default=None),
    limit: int | None = Query(
        default=None, ge=1, le=10_000, description="optional page size (all by default)"
    ),
    offset: int = Query(default=0, ge=0),
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


@router.get("/health-report")
async def health_report(
    conn: ConnDep, principal: CurrentUser, settings: SettingsDep, dealer_id: int | None = Query(default=None)
) -> dict[str, Any]:
    """Fleet health per status over the batteries the caller may see (admin may filter by dealer),
    with the predictive-maintenance figures of /api/analytics/battery-health."""
    return await service.health_report(conn, principal=principal, settings=settings, dealer_id=dealer_id)


@router.post("", status_code=201)
async def create_battery(conn: ConnDep, principal: CurrentUser, body: BatteryCreate) -> dict[str, Any]:
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
    openapi_extra=direct_openapi(serial="the battery's serial number (asset tag)"),
)


@router.put("/{serial}/assign")
async def assign_battery(
    conn: ConnDep, principal: CurrentUser, serial: str, body: AssignRequest
) -> dict[str, Any]:
    """Give the battery to one of its dealer's consumers (`consumer_id: null` takes it back)."""
    row = await service.assign_battery(conn, principal=principal, serial=serial, consumer_id=body.consumer_id)
    return battery_body(row)


@router.get("/{serial}/activity")
async def battery_activity(
    conn: ConnDep,
    principal: CurrentUser,
    serial: str,
    limit: int = Query(default=100, ge=1, le=500),
    offset: int = Query(default=0, ge=0),
) -> list[dict[str, Any]]:
    """Who changed what on the battery, newest first."""
    rows = await service.battery_activity(
        conn, principal=principal, serial=serial, limit=limit, offset=offset
    )
    return [activity_body(r) for r in rows]
