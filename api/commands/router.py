"""Remote control endpoints: battery control, battery-pack enable, commands and bulk rollouts."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from api.auth.tokens import Principal
from api.batteries.models import battery_body
from api.commands import service
from api.commands.models import (
    BatteryPackEnable,
    BulkRequest,
    BulkStatus,
    CancelRequest,
    Command,
    CommandDetail,
    CommandRefused,
    ControlledBattery,
    ControlRequest,
    PackCommandPending,
    PackEnabled,
    bulk_body,
    command_body,
    event_body,
    iso,
)
from api.deps import ConnDep, PoolDep, SettingsDep, require_roles
from api.errors import Conflict, error_responses
from api.finance.loans import business_today
from api.shapes import Offset
from api.tags import Tag

# Tags per route: battery control and pack enable are in the spec's sections of their resources.
router = APIRouter(prefix="/api", responses=error_responses(401, 403, 429))

Commander = Annotated[Principal, Depends(require_roles(*service.COMMANDING_ROLES))]
MAX_WAIT_S = 30.0


@router.post(
    "/batteries/{serial}/control",
    response_model=ControlledBattery,
    tags=[Tag.BATTERY_MANAGEMENT],
    summary="Control battery status",
    responses=error_responses(400, 404, 413),
)
async def control_battery(
    conn: ConnDep, principal: Commander, settings: SettingsDep, serial: str, body: ControlRequest
) -> dict[str, Any]:
    """Switch a battery on (`active`/`activate`) or off (`inactive`/`deactivate`/`maintenance`).

    The answer is the battery: `desired_status` is what was asked, `status` stays what the device
    has confirmed until it applies the command (`command`, also at /api/commands/{id}).
    """
    found = await service.control_battery(
        conn, principal=principal, serial=serial, body=body, ttl_s=settings.command_ttl_seconds
    )
    return {**battery_body(found["battery"]), "command": command_body(found["command"])}


@router.get(
    "/batteries/{serial}/commands",
    response_model=list[Command],
    tags=[Tag.COMMANDS],
    summary="List the commands sent to a battery",
    responses=error_responses(400, 404),
)
async def battery_commands(
    conn: ConnDep,
    principal: Commander,
    serial: str,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[Offset, Query()] = 0,
) -> list[dict[str, Any]]:
    """The commands sent to a battery, newest first, with their status and timestamps."""
    rows = await service.battery_commands(
        conn, principal=principal, serial=serial, limit=limit, offset=offset
    )
    return [command_body(r) for r in rows]


@router.post(
    "/battery_pack/{i}/enable",
    response_model=PackEnabled,
    tags=[Tag.BATTERY_PACKS],
    summary="Enable or disable an individual battery pack",
    responses={
        202: {"model": PackCommandPending, "description": "Issued, not yet applied within the wait"},
        409: {"model": CommandRefused, "description": "The device did not apply it (rejected or expired)"},
        **error_responses(400, 404, 413),
    },
)
async def battery_pack_enable(
    pool: PoolDep,
    principal: Commander,
    settings: SettingsDep,
    i: str,
    body: BatteryPackEnable,
    wait: Annotated[
        float,
        Query(ge=0, le=MAX_WAIT_S, allow_inf_nan=False, description="seconds to wait for the device"),
    ] = 5.0,
) -> Any:
    """Enable or disable a battery pack; 200 once the device applied it, else 202 with the command."""
    row, finished = await service.battery_pack_enable(
        pool,
        principal=principal,
        asset_tag=i,
        body=body,
        ttl_s=settings.command_ttl_seconds,
        wait_s=wait,
    )
    if finished and row["status"] == "succeeded":
        return {"issuedAt": iso(row["created_at"]), "enabledAt": iso(row["finished_at"])}
    if finished:
        raise Conflict(
            {"command": command_body(row)},
            error=f"The battery pack did not apply the command: {row['status']}",
            code=f"COMMAND_{row['status'].upper()}",
        )
    pending = PackCommandPending(
        id=row["id"], status=row["status"], issuedAt=row["created_at"], command=Command(**command_body(row))
    )
    return JSONResponse(pending.model_dump(mode="json"), status_code=202)


@router.post(
    "/commands/bulk",
    status_code=202,
    response_model=BulkStatus,
    tags=[Tag.COMMANDS],
    summary="Roll a command out to many batteries",
    responses=error_responses(400, 404, 413),
)
async def create_bulk(
    conn: ConnDep, principal: Commander, settings: SettingsDep, body: BulkRequest
) -> dict[str, Any]:
    """One command per listed or matching battery, rolled out at a bounded rate."""
    found = await service.create_bulk(
        conn,
        principal=principal,
        body=body,
        ttl_s=settings.command_ttl_seconds,
        max_rate=settings.command_bulk_rate_per_s,
        today=business_today(settings),
    )
    return bulk_body(found["bulk"], found["counts"])


@router.get(
    "/commands/bulk/{bulk_id:uuid}",
    response_model=BulkStatus,
    tags=[Tag.COMMANDS],
    summary="Follow a bulk roll-out",
    responses=error_responses(404),
)
async def get_bulk(conn: ConnDep, principal: Commander, bulk_id: UUID) -> dict[str, Any]:
    """How many commands of a bulk request reached each state."""
    found = await service.bulk_detail(conn, principal=principal, bulk_id=bulk_id)
    return bulk_body(found["bulk"], found["counts"])


@router.get(
    "/commands/{command_id:uuid}",
    response_model=CommandDetail,
    tags=[Tag.COMMANDS],
    summary="Get a command and its audit trail",
    responses=error_responses(404),
)
async def get_command(conn: ConnDep, principal: Commander, command_id: UUID) -> dict[str, Any]:
    """A command with its audit trail (every transition: who, why, when)."""
    found = await service.command_detail(conn, principal=principal, command_id=command_id)
    return {**command_body(found["command"]), "events": [event_body(e) for e in found["events"]]}


@router.post(
    "/commands/{command_id:uuid}/cancel",
    response_model=CommandDetail,
    tags=[Tag.COMMANDS],
    summary="Cancel a queued or sent command",
    responses=error_responses(400, 404, 409, 413),
)
async def cancel_command(
    conn: ConnDep, principal: Commander, command_id: UUID, body: CancelRequest | None = None
) -> dict[str, Any]:
    """Cancel a queued or sent command (a delivered one is already being applied)."""
    found = await service.cancel(
        conn, principal=principal, command_id=command_id, reason=body.reason if body else None
    )
    return {**command_body(found["command"]), "events": [event_body(e) for e in found["events"]]}
