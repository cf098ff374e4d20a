"""Command use cases, scoped to the caller: a dealer commands only its own batteries; each says why."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import date, timedelta
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from api.auth.tokens import Principal
from api.batteries import queries as battery_queries
from api.batteries.service import visible_battery
from api.commands import queries
from api.commands.models import ACTIONS, BatteryPackEnable, BulkRequest, ControlRequest
from api.errors import BadRequest, Conflict, Forbidden, NotFound
from control import commands as control
from control.errors import CommandNotFound, NotCancellable

COMMANDING_ROLES = ("admin", "dealer")
MAX_BULK_FILTER = 100_000
POLL_S = 0.02


def _ttl(requested: int | None, default_s: int) -> timedelta:
    return timedelta(seconds=requested if requested is not None else default_s)


async def control_battery(
    conn: AsyncConnection[Any], *, principal: Principal, serial: str, body: ControlRequest, ttl_s: int
) -> dict[str, Any]:
    """The spec's battery control: queue the command and set the desired state and status; return the
    battery (whose `status` changes once the device confirms) and the command."""
    async with conn.transaction():  # committed before we answer: control hears of it at once
        battery = await visible_battery(conn, principal=principal, serial=serial)
        action, status = ACTIONS[body.action]
        command = await control.issue_command(
            conn,
            battery_id=battery["id"],
            action=action,
            spec="both",
            reason=body.reason or f"{body.action} requested through the API",
            requested_by=principal.user_id,
            source="api",
            expires_in=_ttl(body.expires_in_seconds, ttl_s),
            battery_status=status,
        )
    updated = await battery_queries.get_battery(conn, serial)
    issued = await queries.get_command(conn, command["id"])
    assert updated is not None and issued is not None
    return {"battery": updated, "command": issued}


async def battery_pack_enable(
    pool: AsyncConnectionPool[Any],
    *,
    principal: Principal,
    asset_tag: str,
    body: BatteryPackEnable,
    ttl_s: int,
    wait_s: float,
) -> tuple[dict[str, Any], bool]:
    """Issue the battery-pack enable/disable and wait up to `wait_s` for the device to apply it.

    Returns the command row and whether it reached a final state within the wait. Connections are
    taken per poll, so a waiting request does not hold one of the pool's few connections.
    """
    async with pool.connection() as conn:
        battery = await visible_battery(conn, principal=principal, serial=asset_tag)
        command = await control.issue_command(
            conn,
            battery_id=battery["id"],
            action=body.operation_type,
            spec=body.operation_specifications,
            reason=body.reason or f"battery pack {body.operation_type} ({body.operation_specifications})",
            requested_by=principal.user_id,
            source="api",
            expires_in=_ttl(body.expires_in_seconds, ttl_s),
            status_label=body.status_label,
        )
    deadline = time.monotonic() + wait_s
    while True:
        async with pool.connection() as conn:
            row = await queries.get_command(conn, command["id"])
        assert row is not None
        if row["finished_at"] is not None or time.monotonic() >= deadline:
            return row, row["finished_at"] is not None
        await asyncio.sleep(POLL_S)


async def battery_commands(
    conn: AsyncConnection[Any], *, principal: Principal, serial: str, limit: int, offset: int
) -> list[dict[str, Any]]:
    battery = await visible_battery(conn, principal=principal, serial=serial)
    return await queries.list_battery_commands(conn, battery_id=battery["id"], limit=limit, offset=offset)


async def visible_command(
    conn: AsyncConnection[Any], *, principal: Principal, command_id: UUID
) -> dict[str, Any]:
    """The command if the caller may see its battery; 404 otherwise."""
    row = await queries.get_command(conn, command_id)
    if row is None or (principal.role == "dealer" and row["dealer_id"] != principal.dealer_id):
        raise NotFound(f"No command with id {command_id}", error="Command not found")
    return row


async def command_detail(
    conn: AsyncConnection[Any], *, principal: Principal, command_id: UUID
) -> dict[str, Any]:
    row = await visible_command(conn, principal=principal, command_id=command_id)
    return {"command": row, "events": await queries.command_events(conn, command_id)}


async def cancel(
    conn: AsyncConnection[Any], *, principal: Principal, command_id: UUID, reason: str | None
) -> dict[str, Any]:
    async with conn.transaction():
        await visible_command(conn, principal=principal, command_id=command_id)
        try:
            await control.cancel_command(
                conn,
                command_id=command_id,
                reason=reason or "cancelled through the API",
                requested_by=principal.user_id,
                source="api",
            )
        except CommandNotFound:
            raise NotFound(f"No command with id {command_id}", error="Command not found") from None
        except NotCancellable as exc:
            raise Conflict(
                f"Only a queued or sent command can be cancelled; this one is {exc.status}",
                error="Command cannot be cancelled",
                code="COMMAND_NOT_CANCELLABLE",
            ) from None
    return await command_detail(conn, principal=principal, command_id=command_id)


async def create_bulk(
    conn: AsyncConnection[Any],
    *,
    principal: Principal,
    body: BulkRequest,
    ttl_s: int,
    max_rate: float,
    today: date,
) -> dict[str, Any]:
    """Queue one command per selected battery, rolled out at most `max_rate` per second."""
    async with conn.transaction():
        dealer_scope = principal.dealer_id if principal.role == "dealer" else None
        if body.serials is not None:
            wanted = list(dict.fromkeys(body.serials))
            found = await queries.batteries_by_serial(conn, wanted)
            visible = {
                b["serial_number"]: b for b in found if dealer_scope is None or b["dealer_id"] == dealer_scope
            }
            missing = [s for s in wanted if s not in visible]
            if missing:
                raise NotFound(
                    {"missing": missing[:100], "count": len(missing)},
                    error="Battery not found",
                )
            batteries = [visible[s] for s in wanted]
            selector: dict[str, Any] = {"serials": wanted}
        else:
            assert body.filter is not None
            selector_filter = body.filter
            if dealer_scope is not None:
                if selector_filter.dealer_id not in (None, dealer_scope):
                    raise Forbidden("A dealer commands only its own batteries")
                selector_filter = selector_filter.model_copy(update={"dealer_id": dealer_scope})
            if not selector_filter.model_dump(exclude_none=True):
                raise BadRequest("A filter needs at least one field", error="Empty filter")
            batteries = await queries.batteries_matching(
                conn, selector=selector_filter, limit=MAX_BULK_FILTER + 1, today=today
            )
            if len(batteries) > MAX_BULK_FILTER:
                raise BadRequest(
                    f"The filter matches more than {MAX_BULK_FILTER} batteries", error="Too many batteries"
                )
            selector = {"filter": selector_filter.model_dump(exclude_none=True)}
        if body.action in ACTIONS:
            action, battery_status = ACTIONS[body.action]
        else:
            action, battery_status = ("enable" if body.action == "enable" else "disable"), None
        rate = min(body.rate_per_s or max_rate, max_rate)
        ttl = _ttl(body.expires_in_seconds, ttl_s)
        rollout_s = (len(batteries) - 1) / rate
        if rollout_s > ttl.total_seconds():
            # Commands would still be going out after the first ones expired unapplied.
            raise BadRequest(
                [
                    {
                        "field": "rate_per_s",
                        "message": f"at {rate:g}/s the roll-out takes {rollout_s:.0f} s, longer than its "
                        f"commands live ({ttl.total_seconds():.0f} s, expires_in_seconds)",
                    }
                ],
                error="Invalid fields: rate_per_s, expires_in_seconds",
            )
        bulk_id = uuid.uuid4()
        bulk = await queries.insert_bulk(
            conn,
            bulk_id=bulk_id,
            action=action,
            spec=body.spec,
            battery_status=battery_status,
            reason=body.reason,
            requested_by=principal.user_id,
            dealer_id=dealer_scope,
            selector=selector,
            total=len(batteries),
            rate_per_s=rate,
        )
        if batteries:
            await control.issue_commands(
                conn,
                battery_ids=[b["id"] for b in batteries],
                action=action,
                spec=body.spec,
                reason=body.reason,
                requested_by=principal.user_id,
                source="api:bulk",
                expires_in=ttl,
                battery_status=battery_status,
                rate_per_s=rate,
                bulk_id=bulk_id,
            )
    return {"bulk": bulk, "counts": await queries.bulk_counts(conn, bulk_id)}


async def bulk_detail(conn: AsyncConnection[Any], *, principal: Principal, bulk_id: UUID) -> dict[str, Any]:
    bulk = await queries.get_bulk(conn, bulk_id)
    if bulk is None or (principal.role == "dealer" and bulk["dealer_id"] != principal.dealer_id):
        raise NotFound(f"No bulk command with id {bulk_id}", error="Bulk command not found")
    return {"bulk": bulk, "counts": await queries.bulk_counts(conn, bulk_id)}
