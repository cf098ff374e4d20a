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
    CancelRequest,
    ControlRequest,
    bulk_body,
    command_body,
    event_body,
    iso,
)
from api.deps import ConnDep, PoolDep, SettingsDep, require_roles
from api.errors import Conflict
from api.finance.loans import business_today

router = APIRouter(prefix="/api", tags=["commands"])

Commander = Annotated[Principal, Depends(require_roles(*service.COMMANDING_ROLES))]
MAX_WAIT_S = 30.0


@router.post("/batteries/{serial}/control")
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


@router.get("/batteries/{serial}/commands")
async def battery_commands(
    conn: ConnDep,
    principal: Commander,
    serial: str,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[dict[str, Any]]:
    """The commands sent to a battery, newest first, with their status and timestamps."""
    rows = await service.battery_commands(
        conn, principal=principal, serial=serial, limit=limit, offset=offset
    )
    return [command_body(r) for r in rows]


@router.post("/battery_pack/{i}/enable", responses={202: {"description": "Issued, not yet applied"}})
async def battery_pack_enable(
    pool: PoolDep,
    principal: Commander,
    settings: SettingsDep,
    i: str,
    body: BatteryPackEnable,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT_S, description="seconds to wait for the device")] = 5.0,
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
    return JSONResponse(
        {
            "id": str(row["id"]),
            "status": row["status"],
            "issuedAt": iso(row["created_at"]),
            "command": command_body(row),
        },
        status_code=202,
    )


@router.post("/commands/bulk", status_code=202)
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


@router.get("/commands/bulk/{bulk_id}")
async def get_bulk(conn: ConnDep, principal: Commander, bulk_id: UUID) -> dict[str, Any]:
    """How many commands of a bulk request reached each state."""
    found = await service.bulk_detail(conn, principal=principal, bulk_id=bulk_id)
    return bulk_body(found["bulk"], found["counts"])


@router.get("/commands/{command_id}")
async def get_command(conn: ConnDep, principal: Commander, command_id: UUID) -> dict[str, Any]:
    """A command with its audit trail (every transition: who, why, when)."""
    found = await service.command_detail(conn, principal=principal, command_id=command_id)
    return {**command_body(found["command"]), "events": [event_body(e) for e in found["events"]]}


@router.post("/commands/{command_id}/cancel")
async def cancel_command(
    conn: ConnDep, principal: Commander, command_id: UUID, body: CancelRequest | None = None
) -> dict[str, Any]:
    """Cancel a queued or sent command (a delivered one is already being applied)."""
    found = await service.cancel(
        conn, principal=principal, command_id=command_id, reason=body.reason if body else None
    )
    return {**command_body(found["command"]), "events": [event_body(e) for e in found["events"]]}
